// SVG charts drawn with the DOM (no library, nothing inline for the CSP): one line per
// instance over the last hour (or from 5 minutes before the oldest figure, if later), the memory ceiling dashed, and a strip of marks for
// restarts, crashes and memory-ceiling hits.

const NS = "http://www.w3.org/2000/svg";
export const WINDOW_MS = 3600_000;
/** Missing figures shorter than this are bridged (sample_interval is at most 60 s). */
const BRIDGE_MS = 61_000;
/** The shortest span a chart shows (a daemon that started a minute ago). */
export const MIN_WINDOW_MS = 300_000;
const W = 600;
const H = 110;
export const COLOURS = ["#58a6ff", "#3fb950", "#d29922", "#bc8cff", "#ff7b72", "#39c5cf", "#e3b341", "#8b949e"];

/** One point: unix milliseconds and a value (null: no figure, the line breaks). */
export type Point = [number, number | null];

function el<K extends keyof SVGElementTagNameMap>(name: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** The time the charts start at: an hour ago, or 5 minutes before the oldest figure when that is later. */
export function chartStart(series: Point[][], now: number): number {
  let oldest = now;
  for (const s of series) for (const [t, v] of s) if (v !== null && t < oldest) oldest = t;
  return Math.max(now - WINDOW_MS, Math.min(oldest, now - MIN_WINDOW_MS));
}

/** Replace `svg`'s content with one line per series from `from` (and a dashed `ceiling`),
 * scaled to fit; the highest figure shown, for the title. */
export function drawChart(svg: SVGSVGElement, series: Point[][], from: number, now: number, ceiling?: number): number {
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.replaceChildren();
  const span = Math.max(now - from, 1);
  let top = 0;
  for (const s of series) for (const [t, v] of s) if (t >= from && v !== null && v > top) top = v;
  const highest = top;
  top = top > 0 ? top * 1.15 : 1;
  const x = (t: number) => (((t - from) / span) * W).toFixed(1);
  const y = (v: number) => (H - (v / top) * (H - 4) - 2).toFixed(1);
  series.forEach((s, i) => {
    let run: string[] = [];
    const flush = () => {
      if (run.length > 1) {
        svg.append(el("polyline", { points: run.join(" "), stroke: COLOURS[i % COLOURS.length] ?? "#fff" }));
      }
      run = [];
    };
    // A line breaks where figures are missing for longer than BRIDGE_MS (the instance
    // was not running); shorter holes (a sample_interval above the 5 s buckets) are bridged.
    let lastSeen = -Infinity;
    for (const [t, v] of s) {
      if (t < from || v === null) continue;
      if (t - lastSeen > BRIDGE_MS) flush();
      run.push(`${x(t)},${y(v)}`);
      lastSeen = t;
    }
    flush();
  });
  if (ceiling !== undefined && ceiling <= top) {
    svg.append(el("line", { class: "ceiling", x1: 0, x2: W, y1: y(ceiling), y2: y(ceiling) }));
  }
  return highest;
}

/** Marks over the last hour: a tick per restart, crash or memory-ceiling hit. */
export function drawStrip(svg: SVGSVGElement, marks: { at_ms: number; kind: string; title: string }[], from: number, now: number): void {
  svg.setAttribute("viewBox", `0 0 ${W} 20`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.replaceChildren();
  const span = Math.max(now - from, 1);
  for (const m of marks) {
    if (m.at_ms < from) continue;
    const xx = (((m.at_ms - from) / span) * W).toFixed(1);
    const line = el("line", { class: `mark-${m.kind}`, x1: xx, x2: xx, y1: 2, y2: 18 });
    const title = el("title", {});
    title.textContent = m.title;
    line.append(title);
    svg.append(line);
  }
}
