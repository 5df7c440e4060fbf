// One WebSocket, from opening to its end: the handshake and `welcome` timeouts, the
// heartbeat (a ping when nothing was sent for a while; dead when nothing arrives after
// it), frames paced under the server's request rate, and exactly one report of how it
// ended. What to do next (reconnect, resume, stop) is the client's decision.

import { Heartbeat, type HeartbeatRules, Pacer } from "./timing.js";
import { type ClientMsg, decode, encode, type Format, PROTOCOLS, type ServerMsg } from "./protocol.js";

/** The part of the WebSocket API used here: the browser's, or the `ws` package's in Node. */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export type Welcome = Extract<ServerMsg, { type: "welcome" }>;

export type ConnectionEnd =
  /** It never reached `welcome`: refused, unreachable, or too slow. */
  | { kind: "failed"; reason: string }
  /** The server (or the network) closed it after `welcome`. */
  | { kind: "closed"; code: number; reason: string }
  /** The heartbeat found it dead. */
  | { kind: "dead"; reason: string }
  /** The client dropped it. */
  | { kind: "dropped"; reason: string };

export interface ConnectionOptions extends HeartbeatRules {
  url: string;
  format: Format;
  WebSocket: WebSocketConstructor;
  connectTimeoutMs: number;
  welcomeTimeoutMs: number;
  /** A monotonic clock in milliseconds. */
  now: () => number;
}

export interface ConnectionHooks {
  welcome(w: Welcome): void;
  message(msg: ServerMsg): void;
  end(end: ConnectionEnd): void;
}

export class Connection {
  private readonly ws: WebSocketLike;
  private welcomed = false;
  private ended = false;
  private heartbeat: Heartbeat | undefined;
  private pacer: Pacer | undefined;
  private readonly queue: ClientMsg[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private pumpTimer: ReturnType<typeof setTimeout> | undefined;
  maxMessageSize = Infinity;

  constructor(
    private readonly options: ConnectionOptions,
    private readonly hooks: ConnectionHooks,
  ) {
    this.ws = new options.WebSocket(options.url, PROTOCOLS[options.format]);
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => this.opened();
    this.ws.onmessage = (event) => this.received(event.data);
    this.ws.onclose = (event) => this.closed(event.code, event.reason);
    this.ws.onerror = () => {};
    this.arm(options.connectTimeoutMs, () => this.drop("no WebSocket handshake within the connect timeout", "failed"));
  }

  get isWelcomed(): boolean {
    return this.welcomed;
  }

  /** Queues a request; frames leave paced, and only after `welcome`. */
  send(msg: ClientMsg): void {
    if (this.ended) return;
    this.queue.push(msg);
    this.pump();
  }

  /** Ends it from this side (reported as `kind`, `dropped` unless said otherwise). */
  drop(reason: string, kind: "dropped" | "failed" | "dead" = "dropped"): void {
    if (this.ended) return;
    try {
      this.ws.close(1000, reason.slice(0, 100));
    } catch {
      // Not open yet, or already closing: nothing else to do.
    }
    this.finish({ kind, reason });
  }

  private opened(): void {
    if (this.ended) return;
    this.arm(this.options.welcomeTimeoutMs, () => this.drop("no welcome within the welcome timeout", "failed"));
  }

  private received(data: unknown): void {
    if (this.ended) return;
    const now = this.options.now();
    this.heartbeat?.received(now);
    const msg = decode(this.options.format, data);
    if (msg === undefined) return;
    if (!this.welcomed) {
      if (msg.type !== "welcome") return;
      this.welcomed = true;
      this.maxMessageSize = msg.max_message_size;
      this.heartbeat = new Heartbeat(this.options, now);
      this.pacer = Pacer.forServer(msg.max_requests_per_second, now);
      this.hooks.welcome(msg);
      this.beat();
      this.pump();
      return;
    }
    this.hooks.message(msg);
  }

  private closed(code: number, reason: string): void {
    if (this.ended) return;
    if (this.welcomed) this.finish({ kind: "closed", code, reason });
    else this.finish({ kind: "failed", reason: `closed before welcome (${code}${reason ? ` ${reason}` : ""})` });
  }

  private finish(end: ConnectionEnd): void {
    this.ended = true;
    clearTimeout(this.timer);
    clearTimeout(this.pumpTimer);
    this.ws.onopen = this.ws.onmessage = this.ws.onclose = null;
    this.hooks.end(end);
  }

  private arm(ms: number, then: () => void): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(then, ms);
  }

  /** The heartbeat's next look: ping, or declare the connection dead. */
  private beat(): void {
    const heartbeat = this.heartbeat;
    if (this.ended || heartbeat === undefined) return;
    const now = this.options.now();
    const { action, next } = heartbeat.check(now);
    if (action === "dead") {
      this.drop("nothing arrived within the heartbeat's limit", "dead");
      return;
    }
    if (action === "ping") {
      heartbeat.pinged(now);
      this.queue.unshift({ type: "ping", t: now });
      this.pump();
      this.beat();
      return;
    }
    this.arm(Math.max(1, next - now), () => this.beat());
  }

  private pump(): void {
    if (!this.welcomed || this.ended || this.pumpTimer !== undefined) return;
    const pacer = this.pacer;
    while (this.queue.length > 0 && pacer) {
      const now = this.options.now();
      const wait = pacer.take(now);
      if (wait > 0) {
        this.pumpTimer = setTimeout(() => {
          this.pumpTimer = undefined;
          this.pump();
        }, wait);
        return;
      }
      const msg = this.queue.shift() as ClientMsg;
      try {
        this.ws.send(encode(this.options.format, msg));
      } catch (e) {
        this.drop(`send failed: ${String(e)}`, "dead");
        return;
      }
      this.heartbeat?.sent(now);
    }
  }
}
