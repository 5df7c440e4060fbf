// Test doubles for the client's unit tests: a WebSocket the test plays the server of
// (it opens, sends frames and closes when told), a network that goes offline, and a
// probe answer. Timers are Node's mock timers; `settle()` lets promises run.

import { mock } from "node:test";

import type { ClientMsg, ServerMsg } from "../src/protocol.js";

export class FakeSocket {
  static all: FakeSocket[] = [];
  binaryType = "blob";
  readyState = 0;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  /** What the client sent, decoded. */
  readonly sent: ClientMsg[] = [];
  closedWith: { code?: number; reason?: string } | undefined;

  constructor(
    readonly url: string,
    readonly protocols?: string | string[],
  ) {
    FakeSocket.all.push(this);
  }

  static reset(): void {
    FakeSocket.all = [];
  }

  static last(): FakeSocket {
    const s = FakeSocket.all[FakeSocket.all.length - 1];
    if (!s) throw new Error("no socket was opened");
    return s;
  }

  send(data: string | Uint8Array): void {
    if (this.readyState !== 1) throw new Error("not open");
    this.sent.push(JSON.parse(String(data)) as ClientMsg);
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  // The server's side.
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  welcome(extra: Partial<Extract<ServerMsg, { type: "welcome" }>> = {}): void {
    this.push({
      type: "welcome",
      user: "ann",
      heartbeat_ms: 25_000,
      timeout_ms: 60_000,
      max_message_size: 65_536,
      max_requests_per_second: 1000,
      ...extra,
    });
  }

  push(msg: ServerMsg): void {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }

  /** The server (or the network) ends it. */
  end(code: number, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  sentOf<T extends ClientMsg["type"]>(type: T): Extract<ClientMsg, { type: T }>[] {
    return this.sent.filter((m): m is Extract<ClientMsg, { type: T }> => m.type === type);
  }
}

/** A network whose state the test sets. */
export class FakeNetwork {
  onLine = true;
  private readonly listeners = new Map<string, Set<() => void>>();
  addEventListener(type: string, listener: () => void): void {
    const set = this.listeners.get(type) ?? new Set();
    set.add(listener);
    this.listeners.set(type, set);
  }
  removeEventListener(type: string, listener: () => void): void {
    this.listeners.get(type)?.delete(listener);
  }
  set(onLine: boolean): void {
    this.onLine = onLine;
    for (const l of this.listeners.get(onLine ? "online" : "offline") ?? []) l();
  }
}

/** A fetch that answers every probe with `status` (and a JSON error body). */
export function probeAnswer(status: number, code = "", retryAfter?: number): typeof fetch & { calls: string[] } {
  const calls: string[] = [];
  const f = async (url: string | URL | Request) => {
    calls.push(String(url));
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (retryAfter !== undefined) headers["retry-after"] = String(retryAfter);
    const body = status === 204 ? null : JSON.stringify({ error: code, message: `refused: ${code}` });
    return new Response(body, { status, headers });
  };
  return Object.assign(f as typeof fetch, { calls });
}

/** Lets pending promise callbacks run (setImmediate is not mocked). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

/** Advances the mocked clock by `ms`, letting promises run in between. */
export async function advance(ms: number, step = 50): Promise<void> {
  for (let done = 0; done < ms; done += step) {
    mock.timers.tick(Math.min(step, ms - done));
    await settle();
  }
}

export function useFakeTime(): void {
  mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 });
  FakeSocket.reset();
}
