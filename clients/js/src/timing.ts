// The client's clocks, as pure rules the connection loop asks: when to reconnect
// (exponential backoff with full jitter, never before a 503's Retry-After), when to
// ping and when the connection is dead (the plan's heartbeat: a ping after 45 s
// without sending, or without receiving; dead when nothing arrives within 15 s of
// it), and when the next frame may go (half the server's rate, bursts of a quarter).
// Times come from one monotonic clock (`performance.now()` in the client).

/** `random(0, min(max, base × 2^attempt))`, and never below `floorMs`. */
export function backoffDelay(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: () => number,
  floorMs = 0,
): number {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.max(floorMs, Math.floor(random() * cap));
}

export interface HeartbeatRules {
  /** Send a ping after this long without sending anything (45 000 ms). */
  pingAfterMs: number;
  /** Dead when nothing arrives within this long of the ping (15 000 ms). */
  pongTimeoutMs: number;
}

export type HeartbeatAction = "ping" | "dead" | null;

/** The heartbeat of one connection. Times are milliseconds of one clock. */
export class Heartbeat {
  private lastSent: number;
  private lastReceived: number;
  private pingSentAt: number | undefined;

  constructor(
    private readonly rules: HeartbeatRules,
    now: number,
  ) {
    this.lastSent = now;
    this.lastReceived = now;
  }

  sent(now: number): void {
    this.lastSent = now;
  }

  /** Any frame counts as life. */
  received(now: number): void {
    this.lastReceived = now;
    this.pingSentAt = undefined;
  }

  pinged(now: number): void {
    this.lastSent = now;
    this.pingSentAt = now;
  }

  /**
   * What is due at `now`, and when to look again. A ping goes when nothing was sent, or
   * nothing arrived, for `pingAfterMs`; the connection is dead only when nothing
   * arrived within `pongTimeoutMs` of a ping actually sent (a timer that fires late, as
   * in a hidden browser tab, pings first rather than dropping a quiet connection).
   */
  check(now: number): { action: HeartbeatAction; next: number } {
    const { pingAfterMs, pongTimeoutMs } = this.rules;
    if (this.pingSentAt !== undefined) {
      const pongBy = this.pingSentAt + pongTimeoutMs;
      return now >= pongBy ? { action: "dead", next: now } : { action: null, next: pongBy };
    }
    const pingAt = Math.min(this.lastSent, this.lastReceived) + pingAfterMs;
    if (now >= pingAt) return { action: "ping", next: now };
    return { action: null, next: pingAt };
  }
}

/** A token bucket: `rate` frames a second, `burst` at once. */
export class Pacer {
  private tokens: number;
  private at: number;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.at = now;
  }

  /** Pacing for a server that allows `maxPerSecond` frames: half of it, bursts of a quarter. */
  static forServer(maxPerSecond: number | undefined, now: number): Pacer {
    const max = maxPerSecond && maxPerSecond > 0 ? maxPerSecond : 1000;
    return new Pacer(Math.max(1, Math.floor(max / 2)), Math.max(1, Math.floor(max / 4)), now);
  }

  private refill(now: number): void {
    // A clock that went back (never with a monotonic one) refills nothing.
    this.tokens = Math.min(this.burst, this.tokens + (Math.max(0, now - this.at) * this.rate) / 1000);
    this.at = Math.max(this.at, now);
  }

  /** Takes a frame's turn: 0 when it may go now, else how long to wait (nothing taken). */
  take(now: number): number {
    this.refill(now);
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil(((1 - this.tokens) * 1000) / this.rate - 1e-6));
  }
}
