// The daemon's control API as the page uses it: the same routes as `l4ctl`, with the
// token (kept in sessionStorage only, never in a URL) as `Authorization: Bearer`.

export interface ExitReport { reason: string; code?: number | null; signal?: string | null; at: string }
export interface Instance {
  id: number;
  app: string;
  instance: number;
  pid?: number | null;
  port?: number | null;
  state: string;
  restarts: number;
  uptime_ms?: number | null;
  cpu_percent?: number | null;
  memory_bytes?: number | null;
  memory_ceiling_bytes?: number | null;
  last_exit?: ExitReport | null;
}
export interface Status { schema: number; instances: Instance[] }
export interface Health { version: string; pid: number; uptime_ms: number }
export interface Mark { at_ms: number; kind: string; detail: string }
export interface InstanceHistory { app: string; instance: number; start: number; cpu_percent: (number | null)[]; memory_bytes: (number | null)[]; marks: Mark[] }
export interface History { app: string; step_secs: number; instances: InstanceHistory[] }
export interface Crash {
  id: number; at: string; app: string; instance: number; reason: string; level: string;
  exit_code?: number | null; signal?: string | null; count: number; stderr_tail: string;
  panic?: { message: string; location?: string | null } | null;
}
export interface LogLine { instance?: number | null; line: string }

const TOKEN_KEY = "l4ctl-token";

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value: string | null): void {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An error answer: its status, `code` and the daemon's sentence. */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

function headers(json: boolean): Record<string, string> {
  const h: Record<string, string> = {};
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

async function answer<T>(r: Response): Promise<T> {
  const text = await r.text();
  if (!r.ok) {
    let code = "http", message = `HTTP ${r.status}`;
    try {
      const e = JSON.parse(text) as { error?: { code?: string; message?: string } };
      code = e.error?.code ?? code;
      message = e.error?.message ?? message;
    } catch {
      // not JSON: keep the status line
    }
    throw new ApiError(r.status, code, message);
  }
  return JSON.parse(text) as T;
}

/** Reads give up after this long (the next one follows); actions wait as long as they take. */
const READ_TIMEOUT_MS = 10_000;

export async function get<T>(path: string): Promise<T> {
  const signal = AbortSignal.timeout(READ_TIMEOUT_MS);
  return answer<T>(await fetch(path, { headers: headers(false), cache: "no-store", signal }));
}

export async function post<T>(path: string, body: unknown = {}): Promise<T> {
  return answer<T>(await fetch(path, { method: "POST", headers: headers(true), body: JSON.stringify(body) }));
}

/** `GET /api/v1/events` (read with fetch, so the token can go in a header) until it ends. */
export async function events(onEvent: (e: Record<string, unknown>) => void, signal: AbortSignal): Promise<void> {
  const r = await fetch("/api/v1/events", { headers: headers(false), signal });
  if (!r.ok || !r.body) throw new ApiError(r.status, "events", `the event stream answered ${r.status}`);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trimEnd();
      buf = buf.slice(nl + 1);
      if (line.startsWith("data:")) {
        try {
          onEvent(JSON.parse(line.slice(5)) as Record<string, unknown>);
        } catch {
          // a malformed event is skipped
        }
      }
    }
    if (buf.length > 1 << 20) buf = ""; // no event is this long
  }
}
