// The dashboard: the live instance table (status every 2 s, and at once on each event of
// the stream), per app CPU and memory charts over the last hour (the daemon's history,
// then live figures), restart and crash timelines, crash reports and log lines (these
// two need the token over TCP, as the API rules), and the actions, each confirmed first.

import { ApiError, type Crash, type History, type Instance, type LogLine, type Status, events, get, post, setToken, token } from "./api.ts";
import { COLOURS, type Point, WINDOW_MS, chartStart, drawChart, drawStrip } from "./charts.ts";
import { bytes, clock, node } from "./format.ts";
import { renderTable } from "./table.ts";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const TIMELINE = 200;

let rows: Instance[] = [];
const series = new Map<string, { cpu: Point[]; mem: Point[] }>();
const histMarks = new Map<string, { at_ms: number; kind: string; title: string }[]>();
const liveMarks: { app: string; at_ms: number; kind: string; title: string }[] = [];
let pending: { what: string; path: string; body: unknown } | undefined;
/** The timeline, newest first: what the history held when the page opened, then live events. */
const timeline: { at: number; cls: string; text: string }[] = [];
const seeded = new Set<string>();

function addToTimeline(at: number, cls: string, text: string): void {
  const i = timeline.findIndex((e) => e.at < at);
  timeline.splice(i < 0 ? timeline.length : i, 0, { at, cls, text });
  timeline.length = Math.min(timeline.length, TIMELINE);
  $("timeline").replaceChildren(...timeline.map((e) => node("li", `${clock(e.at)} ${e.text}`, e.cls)));
}

function say(text: string, error = false): void {
  const m = $("message");
  m.textContent = text;
  m.className = error ? "error" : "ok";
}

function act(what: string, path: string, body: unknown = {}): void {
  pending = { what, path, body };
  $("confirm-text").textContent = `${what[0]?.toUpperCase()}${what.slice(1)}?`;
  $("confirm").hidden = false;
}

async function confirmed(): Promise<void> {
  $("confirm").hidden = true;
  const p = pending;
  pending = undefined;
  if (!p) return;
  say(`${p.what}…`);
  try {
    const r = await post<{ failed?: string[] }>(p.path, p.body);
    if (r.failed?.length) say(`${p.what}: ${r.failed.join(", ")} did not come up`, true);
    else say(`${p.what}: done`);
  } catch (e) {
    say(`${p.what}: ${e instanceof Error ? e.message : String(e)}`, true);
  }
  refreshSoon();
}

function seriesOf(key: string): { cpu: Point[]; mem: Point[] } {
  let s = series.get(key);
  if (!s) series.set(key, (s = { cpu: [], mem: [] }));
  return s;
}

/** At most one status request at a time; asks made meanwhile make one more after it. */
let refreshing: Promise<void> | undefined;
let again = false;

function refreshSoon(): void {
  if (refreshing) {
    again = true;
    return;
  }
  refreshing = refresh(false).finally(() => {
    refreshing = undefined;
    if (again) {
      again = false;
      refreshSoon();
    }
  });
}

/** The table (and, from the 2 s timer only, a chart point per instance). */
async function refresh(point: boolean): Promise<void> {
  let status: Status;
  try {
    status = await get<Status>("/api/v1/status");
  } catch (e) {
    say(`the daemon does not answer: ${e instanceof Error ? e.message : String(e)}`, true);
    return;
  }
  rows = status.instances;
  const now = Date.now();
  for (const i of point ? rows : []) {
    const s = seriesOf(`${i.app}:${i.instance}`);
    s.cpu.push([now, i.cpu_percent ?? null]);
    s.mem.push([now, i.memory_bytes ?? null]);
    for (const list of [s.cpu, s.mem]) while (list.length && (list[0]?.[0] ?? now) < now - WINDOW_MS) list.shift();
  }
  const live = new Set(rows.map((r) => `${r.app}:${r.instance}`));
  for (const key of series.keys()) if (!live.has(key)) series.delete(key);
  renderTable($<HTMLTableSectionElement>("instances").querySelector("tbody") as HTMLTableSectionElement, rows, act);
  renderApps(now);
  const select = $<HTMLSelectElement>("log-app");
  const apps = [...new Set(rows.map((r) => r.app))];
  if (select.options.length !== apps.length || apps.some((a, n) => select.options[n]?.value !== a)) {
    const keep = select.value;
    select.replaceChildren(...apps.map((a) => Object.assign(node("option", a), { value: a })));
    if (apps.includes(keep)) select.value = keep;
  }
}

async function loadHistory(app: string): Promise<void> {
  const h = await get<History>(`/api/v1/apps/${encodeURIComponent(app)}/history`).catch(() => undefined);
  if (!h) return;
  const marks: { at_ms: number; kind: string; title: string }[] = [];
  for (const i of h.instances) {
    const s = seriesOf(`${i.app}:${i.instance}`);
    // The daemon's buckets before the first live point of each series.
    const merge = (list: Point[], values: (number | null)[]): Point[] => {
      const firstLive = list[0]?.[0] ?? Infinity;
      const past = values.map((v, n): Point => [(i.start + n * h.step_secs) * 1000, v]).filter(([t]) => t < firstLive);
      return [...past, ...list];
    };
    s.cpu = merge(s.cpu, i.cpu_percent);
    s.mem = merge(s.mem, i.memory_bytes);
    for (const m of i.marks) marks.push({ at_ms: m.at_ms, kind: m.kind, title: `${clock(m.at_ms)} ${i.app}:${i.instance} ${m.kind} (${m.detail})` });
  }
  // The past goes on the timeline once, when the page first learns of the app.
  if (!seeded.has(app)) {
    seeded.add(app);
    for (const i of h.instances) for (const m of i.marks) addToTimeline(m.at_ms, `ev-${m.kind}`, `${i.app}:${i.instance} ${markText(m.kind, m.detail)}`);
  }
  histMarks.set(app, marks);
  renderApps(Date.now());
}

function renderApps(now: number): void {
  const root = $("apps");
  const apps = [...new Set(rows.map((r) => r.app))];
  for (const card of [...root.children] as HTMLElement[]) if (!apps.includes(card.dataset.app ?? "")) card.remove();
  for (const app of apps) {
    let card = [...root.children].find((c) => (c as HTMLElement).dataset.app === app) as HTMLElement | undefined;
    if (!card) {
      card = appCard(app);
      root.append(card);
      void loadHistory(app);
    }
    const insts = rows.filter((r) => r.app === app);
    const keys = insts.map((r) => `${r.app}:${r.instance}`);
    const cpuSvg = card.querySelector("svg.cpu") as SVGSVGElement;
    const memSvg = card.querySelector("svg.memory") as SVGSVGElement;
    const cpu = keys.map((k) => seriesOf(k).cpu);
    const mem = keys.map((k) => seriesOf(k).mem);
    const from = chartStart([...cpu, ...mem], now);
    const span = `last ${Math.round((now - from) / 60_000)} min`;
    const topCpu = drawChart(cpuSvg, cpu, from, now);
    const topMem = drawChart(memSvg, mem, from, now, insts[0]?.memory_ceiling_bytes ?? undefined);
    (card.querySelector(".title-cpu") as HTMLElement).textContent = `CPU, ${span} (highest ${topCpu.toFixed(1)}%)`;
    (card.querySelector(".title-memory") as HTMLElement).textContent = `memory, ${span} (highest ${bytes(topMem)})`;
    const marks = [...(histMarks.get(app) ?? []), ...liveMarks.filter((m) => m.app === app)];
    drawStrip(card.querySelector("svg.strip") as SVGSVGElement, marks, from, now);
    const legend = card.querySelector(".legend") as HTMLElement;
    legend.replaceChildren(
      ...insts.map((r, n) => {
        const s = node("span", `■ ${r.instance} `);
        s.style.color = COLOURS[n % COLOURS.length] ?? "";
        return s;
      }),
      node("span", insts[0]?.memory_ceiling_bytes ? ` ceiling ${bytes(insts[0].memory_ceiling_bytes)}` : ""),
    );
    (card.querySelector(".count") as HTMLElement).textContent = `${insts.length} instance${insts.length === 1 ? "" : "s"}`;
  }
}

function appCard(app: string): HTMLElement {
  const card = node("div", undefined, "app");
  card.dataset.app = app;
  const head = node("div", undefined, "app-head");
  const name = encodeURIComponent(app);
  const count = () => rows.filter((r) => r.app === app).length;
  const btn = (text: string, f: () => void) => Object.assign(node("button", text), { type: "button", onclick: f });
  head.append(
    node("b", app),
    node("span", "", "count"),
    btn("reload", () => act(`reload ${app}`, `/api/v1/apps/${name}/reload`)),
    btn("scale −", () => act(`scale ${app} to ${count() - 1}`, `/api/v1/apps/${name}/scale`, { instances: count() - 1 })),
    btn("scale +", () => act(`scale ${app} to ${count() + 1}`, `/api/v1/apps/${name}/scale`, { instances: count() + 1 })),
  );
  const svg = (cls: string) => {
    const s = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    s.setAttribute("class", cls);
    return s;
  };
  const charts = node("div", undefined, "charts");
  const cpu = node("div");
  cpu.append(node("div", "CPU", "chart-title title-cpu"), svg("chart cpu"));
  const mem = node("div");
  mem.append(node("div", "memory", "chart-title title-memory"), svg("chart memory"));
  charts.append(cpu, mem);
  card.append(head, charts, node("div", "restarts and crashes", "chart-title"), svg("strip"), node("div", "", "legend"));
  return card;
}

/** A mark of the history as the timeline says it. */
function markText(kind: string, detail: string): string {
  if (kind === "restart") return `restarted (${detail})`;
  if (kind === "crash") return `crash report: ${detail}`;
  if (kind === "memory") return "memory ceiling reached";
  return `${kind} (${detail})`;
}

function onEvent(e: Record<string, unknown>): void {
  const app = String(e.app ?? "");
  const who = `${app}:${String(e.instance ?? "")}`;
  const now = Date.now();
  let text = "";
  switch (e.type) {
    case "state": {
      text = `${who} ${String(e.from)} → ${String(e.to)}`;
      const row = rows.find((r) => `${r.app}:${r.instance}` === who);
      if (row) {
        row.state = String(e.to);
        row.pid = typeof e.pid === "number" ? e.pid : null;
        renderTable($("instances").querySelector("tbody") as HTMLTableSectionElement, rows, act);
      }
      break;
    }
    case "restart":
      text = `${who} restarted (${String(e.reason)}), ${String(e.restarts)} restarts`;
      liveMarks.push({ app, at_ms: now, kind: "restart", title: `${clock(now)} ${text}` });
      break;
    case "crash":
      text = `${who} crash report: ${String(e.reason)}`;
      liveMarks.push({ app, at_ms: now, kind: "crash", title: `${clock(now)} ${text}` });
      void loadCrashes();
      break;
    case "memory":
      text = `${who} memory ceiling: ${bytes(Number(e.rss_bytes))} of ${bytes(Number(e.ceiling_bytes))}`;
      liveMarks.push({ app, at_ms: now, kind: "memory", title: `${clock(now)} ${text}` });
      break;
    default:
      return;
  }
  while (liveMarks.length > 500 || (liveMarks[0] && liveMarks[0].at_ms < now - WINDOW_MS)) liveMarks.shift();
  addToTimeline(now, `ev-${String(e.type)}`, text);
  refreshSoon();
}

async function follow(): Promise<void> {
  for (;;) {
    await events(onEvent, new AbortController().signal).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** A section that needs the token: its content, or the API's sentence why not. */
async function guarded<T>(into: HTMLElement, path: string, show: (v: T) => Node[]): Promise<void> {
  try {
    into.replaceChildren(...show(await get<T>(path)));
  } catch (e) {
    const why = e instanceof ApiError ? e.message : String(e);
    into.replaceChildren(node("p", why, "note"));
  }
}

async function loadCrashes(): Promise<void> {
  await guarded<{ crashes: Crash[] }>($("crashes"), "/api/v1/crashes?limit=20", ({ crashes }) =>
    crashes.length === 0
      ? [node("p", "No crash reports.", "note")]
      : crashes.map((c) => {
          const d = node("div", undefined, "crash");
          const how = [c.reason, c.signal, c.exit_code == null ? "" : `exit ${c.exit_code}`].filter(Boolean).join(" ");
          d.append(node("b", `${c.at} ${c.app}:${c.instance} ${how}${c.count > 1 ? ` ×${c.count}` : ""}`));
          if (c.panic) d.append(node("pre", `panic: ${c.panic.message} ${c.panic.location ?? ""}`));
          d.append(node("pre", c.stderr_tail.split("\n").slice(-12).join("\n")));
          return d;
        }),
  );
}

/** The selected app's newest lines, fetched every 5 s (and on a change of app or token);
 * the filter applies to them in the page, so typing asks nothing of the daemon. */
let logLines: string[] | undefined;
let logsLoading = false;

async function loadLogs(): Promise<void> {
  const app = $<HTMLSelectElement>("log-app").value;
  if (!app || logsLoading) return;
  logsLoading = true;
  try {
    logLines = undefined;
    await guarded<{ lines: LogLine[] }>($("logs"), `/api/v1/apps/${encodeURIComponent(app)}/logs?lines=200`, ({ lines }) => {
      logLines = lines.map((l) => l.line);
      return [];
    });
  } finally {
    logsLoading = false;
  }
  showLogs();
}

function showLogs(): void {
  if (!logLines) return; // the sentence why not stays
  const filter = $<HTMLInputElement>("log-filter").value.toLowerCase();
  const text = logLines.filter((l) => !filter || l.toLowerCase().includes(filter)).join("\n");
  $("logs").replaceChildren(document.createTextNode(text || "(no lines)"));
}

function showToken(): void {
  $("token-state").textContent = token() ? "token set for this tab" : "read-only (no token)";
}

async function boot(): Promise<void> {
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $<HTMLInputElement>("token");
    setToken(input.value.trim() || null);
    input.value = "";
    showToken();
    void loadCrashes();
    void loadLogs();
  });
  $("forget").addEventListener("click", () => {
    setToken(null);
    showToken();
  });
  $("confirm-yes").addEventListener("click", () => void confirmed());
  $("confirm-no").addEventListener("click", () => {
    $("confirm").hidden = true;
    pending = undefined;
  });
  $("log-app").addEventListener("change", () => void loadLogs());
  $("log-filter").addEventListener("input", showLogs);
  showToken();
  const health = await get<{ version: string; pid: number }>("/api/v1/health").catch(() => undefined);
  if (health) $("daemon").textContent = `daemon ${health.version}, pid ${health.pid}`;
  await refresh(true);
  void follow();
  void loadCrashes();
  void loadLogs();
  setInterval(() => void refresh(true), 2000);
  setInterval(() => {
    for (const app of new Set(rows.map((r) => r.app))) void loadHistory(app);
  }, 30_000);
  setInterval(() => {
    void loadCrashes();
    void loadLogs();
  }, 5000);
}

void boot();
