// What can go wrong, as types an application can tell apart: an `error` message of the
// server (ChatError, with its code), an upgrade the server refused (RefusedError, with
// the HTTP status and code the probe reported), a body the client refuses to send
// (LocalError), and a request given up because the client stopped (StoppedError).

import type { ErrorCode } from "./protocol.js";

/** The server answered a request with `error`. */
export class ChatError extends Error {
  override readonly name = "ChatError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly room?: string,
    readonly id?: string,
  ) {
    super(message);
  }
}

/** The server refused the connection (HTTP status and code of `GET /ws/probe`). */
export class RefusedError extends Error {
  override readonly name = "RefusedError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** `Retry-After` in milliseconds, when the server gave one. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }

  /** Statuses after which trying again cannot help: a bad token, a forbidden origin.
   * (A 404 is a server without the probe, an older release: no answer, not a refusal.) */
  get fatal(): boolean {
    return [400, 401, 403, 426].includes(this.status);
  }
}

/** The client refuses the request itself (the server would close the connection). */
export class LocalError extends Error {
  override readonly name = "LocalError";
  constructor(
    readonly code: "too_big" | "bad_room" | "bad_body" | "not_joined",
    message: string,
  ) {
    super(message);
  }
}

/** The client was closed (by the application or for good) before the answer came. */
export class StoppedError extends Error {
  override readonly name = "StoppedError";
  constructor(message = "the chat client is closed") {
    super(message);
  }
}
