// The chat client an application uses: join, leave, send, history, and events. It owns
// the policy around connections (docs/protocol.md §8): reconnect with backoff and full
// jitter, resume every followed room with its last seq and resend every unacked send
// with its id, so each room's messages reach the application exactly once and in
// order; stop for good where retrying cannot help (a refused token, a client bug).
// Browsers never see why an upgrade failed, so after a failed connect the client asks
// the server's probe (`GET /ws/probe`) what the upgrade got.

import { Connection, type ConnectionEnd, type WebSocketConstructor, type Welcome } from "./connection.js";
import { ChatError, LocalError, RefusedError, StoppedError } from "./errors.js";
import { Emitter } from "./events.js";
import { type ChatMessage, Close, encode, FATAL_CLOSES, type Format, frameSize, type ServerMsg, validRoom } from "./protocol.js";
import { probe } from "./probe.js";
import { type Pending, Rooms } from "./rooms.js";
import { backoffDelay } from "./timing.js";

export interface NetworkStatus {
  readonly onLine: boolean;
  addEventListener(type: "online" | "offline", listener: () => void): void;
  removeEventListener(type: "online" | "offline", listener: () => void): void;
}

export interface ClientOptions {
  /** `wss://chat.example.com/ws` */
  url: string;
  /** The connection token, or a function that gets a fresh one before each connect. */
  token: string | (() => string | Promise<string>);
  format?: Format;
  /** Default: the global WebSocket (browsers, Node ≥ 22); in Node 20 pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  /** For the probe after a failed connect; `null` turns the probe off. */
  fetch?: typeof fetch | null;
  /** Default: the browser's `navigator.onLine` and `online`/`offline` events. */
  network?: NetworkStatus | null;
  /** A ping after this long without sending (45 000 ms). */
  pingAfterMs?: number;
  /** Reconnect when nothing arrives within this long of the ping (15 000 ms). */
  pongTimeoutMs?: number;
  connectTimeoutMs?: number;
  welcomeTimeoutMs?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Consecutive failed connects before giving up (default: never). */
  maxAttempts?: number;
  random?: () => number;
  /** A monotonic clock in milliseconds (default `performance.now()`). */
  now?: () => number;
}

export type ConnectionState =
  | { status: "idle" }
  | { status: "connecting"; attempt: number }
  | { status: "open"; user: string }
  | { status: "reconnecting"; delayMs: number; attempt: number; reason: string }
  | { status: "offline" }
  | { status: "closed"; reason: string; error?: Error };

export interface ClientEvents extends Record<string, unknown> {
  state: ConnectionState;
  message: ChatMessage;
  /** Messages `from`..`to` of `room` were not delivered (a resume too far back): page them with `history`. */
  gap: { room: string; from: number; to: number };
  joined: { room: string; seq: number };
  /** A server error no request of the application is waiting for. */
  error: ChatError;
}

interface HistoryRequest {
  room: string;
  before?: number;
  limit?: number;
  sent: boolean;
  resolve: (page: { messages: ChatMessage[]; more: boolean }) => void;
  reject: (error: Error) => void;
}

type Waiter = { resolve: (seq: number) => void; reject: (error: Error) => void };

const DEFAULTS = {
  format: "json" as Format,
  pingAfterMs: 45_000,
  pongTimeoutMs: 15_000,
  connectTimeoutMs: 10_000,
  welcomeTimeoutMs: 10_000,
  backoffBaseMs: 250,
  backoffMaxMs: 10_000,
  maxAttempts: Infinity,
  now: () => performance.now(),
};

/** Open this long, or an `ack`, and a connection counts as healthy (not a `joined`:
 * with the database down, rooms still join from memory while every send fails). */
const HEALTHY_AFTER_MS = 10_000;

export class ChatClient extends Emitter<ClientEvents> {
  private readonly o: typeof DEFAULTS & ClientOptions;
  private readonly rooms = new Rooms();
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly histories: HistoryRequest[] = [];
  /** This connection's `joined` seq per room (for `resume_too_far`). */
  private readonly heads = new Map<string, number>();
  /** Rooms the server said this connection is not in, joined again; their sends wait. */
  private readonly rejoining = new Set<string>();
  private conn: Connection | undefined;
  /** Failed attempts since the last healthy connection (the backoff's exponent). */
  private attempt = 0;
  /** Bumped whenever a pending `open()` must not go on (offline, retry, stop). */
  private generation = 0;
  private healthyTimer: ReturnType<typeof setTimeout> | undefined;
  /** `leave`s sent and not answered, per room (their `not_joined` is no history's). */
  private readonly leaving = new Map<string, number>();
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private current: ConnectionState = { status: "idle" };
  private stopped = false;
  private maxMessageSize = Infinity;
  private readonly idPrefix = randomPrefix();
  private sent = 0;
  private readonly online = () => this.networkBack();
  private readonly offline = () => this.networkGone();

  constructor(options: ClientOptions) {
    super();
    this.o = { ...DEFAULTS, ...options };
  }

  get state(): ConnectionState {
    return this.current;
  }

  /** Starts connecting (once); the client keeps the connection up until `close()`. */
  connect(): this {
    if (this.current.status !== "idle") return this;
    this.network()?.addEventListener("online", this.online);
    this.network()?.addEventListener("offline", this.offline);
    void this.open();
    return this;
  }

  /** Stops for good: the socket is closed and every waiting request is rejected. */
  close(): void {
    this.stop("closed by the application");
  }

  /** Follows `room` (now and after every reconnect); resolves with its seq at the join. */
  join(room: string): Promise<number> {
    if (this.stopped) return Promise.reject(new StoppedError());
    if (!validRoom(room)) return Promise.reject(new LocalError("bad_room", `${JSON.stringify(room)} is not a room name (1-64 of A-Z a-z 0-9 _ - . :)`));
    this.rooms.follow(room);
    return new Promise((resolve, reject) => {
      const list = this.waiters.get(room) ?? [];
      list.push({ resolve, reject });
      this.waiters.set(room, list);
      if (this.conn?.isWelcomed) this.conn.send(this.rooms.joinRequest(room));
    });
  }

  /** Stops following `room`; its unacked sends are given up. */
  leave(room: string): void {
    for (const p of this.rooms.unfollow(room)) p.reject(new StoppedError(`left ${room} before the send was stored`));
    for (const w of this.waiters.get(room) ?? []) w.reject(new StoppedError(`left ${room}`));
    this.waiters.delete(room);
    this.heads.delete(room);
    this.rejoining.delete(room);
    if (this.conn?.isWelcomed) {
      this.leaving.set(room, (this.leaving.get(room) ?? 0) + 1);
      this.conn.send({ type: "leave", room });
    }
  }

  /** Sends `body` to a followed room; resolves with its seq once stored, across reconnects. */
  send(room: string, body: string): Promise<number> {
    if (this.stopped) return Promise.reject(new StoppedError());
    if (!this.rooms.follows(room)) return Promise.reject(new LocalError("not_joined", `join ${room} before sending to it`));
    if (body.length === 0) return Promise.reject(new LocalError("bad_body", "the message is empty"));
    const id = `${this.idPrefix}-${++this.sent}`;
    const size = frameSize(encode(this.o.format, { type: "send", room, id, body }));
    if (size > this.maxMessageSize) {
      return Promise.reject(new LocalError("too_big", `the message takes ${size} bytes; the server takes at most ${this.maxMessageSize}`));
    }
    return new Promise((resolve, reject) => {
      const pending = { room, id, body, resolve, reject };
      this.rooms.add(pending);
      if (this.conn?.isWelcomed && !this.rejoining.has(room)) this.resend(pending);
    });
  }

  /** A send (again) on the current connection, with its id. */
  private resend(p: Pending): void {
    this.conn?.send({ type: "send", room: p.room, id: p.id, body: p.body });
  }

  /** Up to `limit` stored messages of a followed room before seq `before`, oldest first. */
  history(room: string, options: { before?: number; limit?: number } = {}): Promise<{ messages: ChatMessage[]; more: boolean }> {
    if (this.stopped) return Promise.reject(new StoppedError());
    return new Promise((resolve, reject) => {
      const request: HistoryRequest = { room, ...options, sent: false, resolve, reject };
      this.histories.push(request);
      if (this.conn?.isWelcomed) this.sendHistory(request);
    });
  }

  private sendHistory(h: HistoryRequest): void {
    h.sent = true;
    this.conn?.send({ type: "history", room: h.room, before: h.before, limit: h.limit });
  }

  private setState(state: ConnectionState): void {
    this.current = state;
    this.emit("state", state);
  }

  private network(): NetworkStatus | undefined {
    if (this.o.network !== undefined) return this.o.network ?? undefined;
    const g = globalThis as { navigator?: { onLine?: boolean }; addEventListener?: unknown; removeEventListener?: unknown };
    if (typeof g.addEventListener !== "function" || typeof g.navigator?.onLine !== "boolean") return undefined;
    const target = globalThis as unknown as NetworkStatus;
    return {
      get onLine() {
        return g.navigator?.onLine !== false;
      },
      addEventListener: (type, listener) => target.addEventListener(type, listener),
      removeEventListener: (type, listener) => target.removeEventListener(type, listener),
    };
  }

  private async token(): Promise<string> {
    return typeof this.o.token === "function" ? await this.o.token() : this.o.token;
  }

  private async open(): Promise<void> {
    if (this.stopped) return;
    const generation = ++this.generation;
    if (this.network()?.onLine === false) return this.setState({ status: "offline" });
    this.setState({ status: "connecting", attempt: this.attempt });
    let token: string;
    try {
      token = await this.token();
    } catch (e) {
      if (generation === this.generation) this.retry(`no token: ${String(e)}`);
      return;
    }
    // Offline, closed, or another open() meanwhile: this one is stale.
    if (this.stopped || generation !== this.generation) return;
    const WebSocket = this.o.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (WebSocket === undefined) return this.stop("no WebSocket implementation: pass the `ws` package's as options.WebSocket");
    try {
      const url = new URL(this.o.url);
      url.searchParams.set("token", token);
      const conn: Connection = new Connection(
        { ...this.o, url: url.toString(), WebSocket },
        {
          welcome: (w) => conn === this.conn && this.welcomed(w),
          message: (m) => conn === this.conn && this.handle(m),
          end: (end) => void this.ended(conn, end, token),
        },
      );
      this.conn = conn;
    } catch (e) {
      this.stop(`cannot open ${this.o.url}: ${String(e)}`, e instanceof Error ? e : undefined);
    }
  }

  private welcomed(w: Welcome): void {
    // The backoff starts over only once this connection proves healthy: a server that
    // welcomes and then fails every request is not hammered every 250 ms.
    clearTimeout(this.healthyTimer);
    this.healthyTimer = setTimeout(() => this.healthy(), HEALTHY_AFTER_MS);
    this.leaving.clear();
    this.maxMessageSize = w.max_message_size;
    this.heads.clear();
    this.rejoining.clear();
    this.setState({ status: "open", user: w.user });
    const conn = this.conn as Connection;
    for (const request of this.rooms.reconnectRequests()) conn.send(request);
    for (const p of this.rooms.unacked()) this.resend(p);
    for (const h of this.histories) this.sendHistory(h);
  }

  private handle(m: ServerMsg): void {
    switch (m.type) {
      case "joined": {
        this.heads.set(m.room, m.seq);
        this.rooms.joined(m.room, m.seq);
        for (const w of this.waiters.get(m.room) ?? []) w.resolve(m.seq);
        this.waiters.delete(m.room);
        this.emit("joined", { room: m.room, seq: m.seq });
        if (this.rejoining.delete(m.room)) {
          for (const p of this.rooms.unacked(m.room)) this.resend(p);
        }
        return;
      }
      case "message": {
        const { type: _, ...message } = m;
        const delivery = this.rooms.message(message);
        if (delivery.kind !== "deliver") return;
        if (delivery.gap) this.emit("gap", { room: m.room, ...delivery.gap });
        this.emit("message", message);
        return;
      }
      case "ack":
        this.healthy();
        this.rooms.take(m.id)?.resolve(m.seq);
        return;
      case "left":
        this.leftAnswered(m.room);
        return;
      case "history": {
        const i = this.histories.findIndex((h) => h.sent && h.room === m.room);
        if (i >= 0) this.histories.splice(i, 1)[0]?.resolve({ messages: m.messages, more: m.more });
        return;
      }
      case "error":
        return this.serverError(m);
      default:
        return;
    }
  }

  private serverError(e: Extract<ServerMsg, { type: "error" }>): void {
    const error = new ChatError(e.code, e.text, e.room, e.id);
    if (e.id !== undefined) {
      const room = e.room ?? this.rooms.unacked().find((p) => p.id === e.id)?.room;
      if (e.code === "unavailable") return this.reconnect("a send was not stored (storage unavailable)");
      if (e.code === "not_joined" && room !== undefined && this.rooms.follows(room)) {
        if (!this.rejoining.has(room)) {
          this.rejoining.add(room);
          this.conn?.send(this.rooms.joinRequest(room));
        }
        return;
      }
      const pending = this.rooms.take(e.id);
      if (pending) return pending.reject(error);
      return this.emit("error", error);
    }
    if (e.code === "resume_too_far" && e.room !== undefined) {
      const head = this.heads.get(e.room);
      const gap = head === undefined ? undefined : this.rooms.skipTo(e.room, head);
      if (gap) this.emit("gap", { room: e.room, ...gap });
      return;
    }
    if (e.room !== undefined && e.code === "not_joined" && this.leftAnswered(e.room)) return;
    // A join refused (by join(), a resume or a join again after not_joined): the room
    // is no longer followed, and what waits on it is told why.
    const refusedJoin = ["bad_room", "too_many_rooms", "rate_limited"].includes(e.code);
    if (e.room !== undefined && refusedJoin && (this.waiters.has(e.room) || this.rooms.follows(e.room))) {
      const waited = this.waiters.has(e.room);
      for (const w of this.waiters.get(e.room) ?? []) w.reject(error);
      this.waiters.delete(e.room);
      for (const p of this.rooms.unfollow(e.room)) p.reject(error);
      this.rejoining.delete(e.room);
      this.heads.delete(e.room);
      if (!waited) this.emit("error", error);
      return;
    }
    if (e.code === "unavailable" && e.room !== undefined && this.rooms.follows(e.room)) {
      return this.reconnect(`joining ${e.room} failed (storage unavailable)`);
    }
    const history = this.histories.findIndex((h) => h.sent && (e.room === undefined || h.room === e.room));
    if (history >= 0 && (e.code === "not_joined" || e.code === "unavailable")) {
      return this.histories.splice(history, 1)[0]?.reject(error);
    }
    this.emit("error", error);
  }

  /** A `leave` of `room` was answered (`left`, or `not_joined`): true if one was waiting. */
  private leftAnswered(room: string): boolean {
    const n = this.leaving.get(room) ?? 0;
    if (n === 0) return false;
    if (n === 1) this.leaving.delete(room);
    else this.leaving.set(room, n - 1);
    return true;
  }

  private healthy(): void {
    clearTimeout(this.healthyTimer);
    this.attempt = 0;
  }

  /** Drops the connection and connects again after the backoff. */
  private reconnect(reason: string): void {
    const conn = this.conn;
    this.conn = undefined;
    conn?.drop(reason);
    this.afterEnd();
    this.retry(reason);
  }

  /** What every ended connection leaves: history requests to send again. */
  private afterEnd(): void {
    clearTimeout(this.healthyTimer);
    this.leaving.clear();
    for (const h of this.histories) h.sent = false;
  }

  private async ended(conn: Connection, end: ConnectionEnd, token: string): Promise<void> {
    if (conn !== this.conn) return;
    this.conn = undefined;
    this.afterEnd();
    if (this.stopped || end.kind === "dropped") return;
    if (end.kind === "closed") {
      if (end.code === Close.TOKEN_EXPIRED) {
        if (typeof this.o.token === "function") return this.retry("the token expired (4002): getting a new one");
        return this.stop("the token expired (close 4002)", new RefusedError(401, "expired_token", "the token expired"));
      }
      if (FATAL_CLOSES.has(end.code)) {
        return this.stop(`the server closed the connection with ${end.code}${end.reason ? ` (${end.reason})` : ""}`);
      }
      return this.retry(`closed with ${end.code}`);
    }
    if (end.kind === "dead") return this.retry(end.reason);
    // It never reached welcome: ask the server why, as a browser cannot see it.
    const generation = this.generation;
    const fetcher = this.o.fetch === undefined ? globalThis.fetch : this.o.fetch;
    const answer = fetcher ? await probe(fetcher, this.o.url, token, this.o.connectTimeoutMs) : undefined;
    if (this.stopped || generation !== this.generation) return;
    if (answer instanceof RefusedError) {
      const renewable = answer.code === "expired_token" && typeof this.o.token === "function";
      if (answer.fatal && !renewable) return this.stop(answer.message, answer);
      return this.retry(`${answer.status} ${answer.code}`, answer.retryAfterMs ?? 0);
    }
    this.retry(end.reason);
  }

  private retry(reason: string, floorMs = 0): void {
    if (this.stopped) return;
    if (this.attempt >= this.o.maxAttempts) return this.stop(`gave up after ${this.attempt} attempts: ${reason}`);
    const delayMs = backoffDelay(this.attempt, this.o.backoffBaseMs, this.o.backoffMaxMs, this.o.random ?? Math.random, floorMs);
    this.attempt += 1;
    this.generation += 1;
    this.setState({ status: "reconnecting", delayMs, attempt: this.attempt, reason });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.open(), delayMs);
  }

  private networkGone(): void {
    if (this.stopped) return;
    this.generation += 1;
    clearTimeout(this.retryTimer);
    const conn = this.conn;
    this.conn = undefined;
    conn?.drop("the network is offline");
    this.afterEnd();
    this.setState({ status: "offline" });
  }

  private networkBack(): void {
    if (this.stopped || this.conn !== undefined) return;
    if (this.current.status !== "offline" && this.current.status !== "reconnecting") return;
    clearTimeout(this.retryTimer);
    this.attempt = 0;
    void this.open();
  }

  private stop(reason: string, error?: Error): void {
    if (this.stopped) return;
    this.stopped = true;
    this.generation += 1;
    clearTimeout(this.retryTimer);
    clearTimeout(this.healthyTimer);
    const conn = this.conn;
    this.conn = undefined;
    conn?.drop(reason);
    this.network()?.removeEventListener("online", this.online);
    this.network()?.removeEventListener("offline", this.offline);
    const stopped = new StoppedError(reason);
    for (const p of this.rooms.drain()) p.reject(error ?? stopped);
    for (const list of this.waiters.values()) for (const w of list) w.reject(error ?? stopped);
    this.waiters.clear();
    for (const h of this.histories.splice(0)) h.reject(error ?? stopped);
    this.setState(error ? { status: "closed", reason, error } : { status: "closed", reason });
  }
}

/** A random prefix for this client's message ids (ids are unique per user for all time). */
function randomPrefix(): string {
  const bytes = new Uint8Array(9);
  const c = (globalThis as { crypto?: { getRandomValues?: (a: Uint8Array) => Uint8Array } }).crypto;
  if (c?.getRandomValues) c.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return [...bytes].map((b) => b.toString(36).padStart(2, "0")).join("").slice(0, 14);
}
