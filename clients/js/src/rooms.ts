// What the client keeps per room so the application sees each message exactly once and
// in order across reconnects: the rooms it follows, the last sequence number delivered
// in each, and the sends not yet acked (resent with their ids after a reconnect,
// oldest first). Pure bookkeeping: the connection loop decides when to act on it.

import type { ChatMessage, ClientMsg } from "./protocol.js";

/** A send the server has not acked yet. */
export interface Pending {
  room: string;
  id: string;
  body: string;
  resolve: (seq: number) => void;
  reject: (error: Error) => void;
}

/** What a delivered message means for the application. */
export type Delivery =
  | { kind: "deliver"; gap?: { from: number; to: number } }
  | { kind: "duplicate" }
  | { kind: "not_followed" };

export class Rooms {
  /** Followed rooms and the last seq delivered (undefined until the first `joined`). */
  private readonly last = new Map<string, number | undefined>();
  /** Unacked sends, oldest first. */
  private readonly pending: Pending[] = [];

  follow(room: string): void {
    if (!this.last.has(room)) this.last.set(room, undefined);
  }

  /** Stops following: its unacked sends are returned (to be rejected). */
  unfollow(room: string): Pending[] {
    this.last.delete(room);
    const dropped = this.pending.filter((p) => p.room === room);
    this.removeWhere((p) => p.room === room);
    return dropped;
  }

  follows(room: string): boolean {
    return this.last.has(room);
  }

  lastSeq(room: string): number | undefined {
    return this.last.get(room);
  }

  rooms(): string[] {
    return [...this.last.keys()];
  }

  /** A new connection's first requests: `resume` for rooms with a seq, `join` for the rest. */
  reconnectRequests(): ClientMsg[] {
    const seen: Record<string, number> = {};
    const out: ClientMsg[] = [];
    let any = false;
    for (const [room, seq] of this.last) {
      if (seq === undefined) out.push({ type: "join", room });
      else {
        seen[room] = seq;
        any = true;
      }
    }
    return any ? [{ type: "resume", rooms: seen }, ...out] : out;
  }

  /** A `join` for one room: with `since` once it has a seq. */
  joinRequest(room: string): ClientMsg {
    const since = this.last.get(room);
    return since === undefined ? { type: "join", room } : { type: "join", room, since };
  }

  /** `joined`: a fresh room starts at the room's head; a known one waits for its replay. */
  joined(room: string, seq: number): void {
    if (this.last.has(room) && this.last.get(room) === undefined) this.last.set(room, seq);
  }

  /** `resume_too_far` after `joined` at `head`: the skipped range, and the room moves on. */
  skipTo(room: string, head: number): { from: number; to: number } | undefined {
    const last = this.last.get(room);
    if (!this.last.has(room) || last === undefined || head <= last) return undefined;
    this.last.set(room, head);
    return { from: last + 1, to: head };
  }

  /** A `message`: delivered once, in order; a jump is reported as a gap, never hidden. */
  message(m: ChatMessage): Delivery {
    if (!this.last.has(m.room)) return { kind: "not_followed" };
    const last = this.last.get(m.room);
    if (last !== undefined && m.seq <= last) return { kind: "duplicate" };
    this.last.set(m.room, m.seq);
    if (last !== undefined && m.seq > last + 1) return { kind: "deliver", gap: { from: last + 1, to: m.seq - 1 } };
    return { kind: "deliver" };
  }

  add(p: Pending): void {
    this.pending.push(p);
  }

  /** The pending send with `id`, taken out. */
  take(id: string): Pending | undefined {
    const i = this.pending.findIndex((p) => p.id === id);
    return i < 0 ? undefined : this.pending.splice(i, 1)[0];
  }

  /** Unacked sends (of one room, or all), oldest first. */
  unacked(room?: string): Pending[] {
    return this.pending.filter((p) => room === undefined || p.room === room);
  }

  /** Every unacked send, taken out (the client stops). */
  drain(): Pending[] {
    return this.pending.splice(0);
  }

  private removeWhere(pred: (p: Pending) => boolean): void {
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const p = this.pending[i];
      if (p && pred(p)) this.pending.splice(i, 1);
    }
  }
}
