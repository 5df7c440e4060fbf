// Figures as `l4ctl status` shows them.

export function bytes(b: number): string {
  const k = 1024;
  if (b >= k * k * k) return `${(b / k / k / k).toFixed(1)}G`;
  if (b >= k * k) return `${(b / k / k).toFixed(1)}M`;
  return `${(b / k).toFixed(1)}K`;
}

export function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 1) return `${ms}ms`;
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function clock(ms: number): string {
  return new Date(ms).toISOString().slice(11, 19);
}

/** An element with text (never HTML: log lines and crash reports are the workers' words). */
export function node<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, cls?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
