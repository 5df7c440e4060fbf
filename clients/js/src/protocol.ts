// The wire protocol of docs/protocol.md: the messages both ways, the error and close
// codes, the two encodings (`l4.json` text frames, `l4.msgpack` binary frames holding
// maps keyed like the JSON) and the rules a client checks before sending.

import { decode as msgpackDecode, encode as msgpackEncode } from "@msgpack/msgpack";

/** One stored chat message, as delivered live, on replay and in history. */
export interface ChatMessage {
  room: string;
  /** Per-room sequence number, from 1, without gaps. */
  seq: number;
  /** The sender's client-chosen id. */
  id: string;
  /** The sender's name. */
  user: string;
  body: string;
  /** Server time when stored, milliseconds since the Unix epoch. */
  ts: number;
}

export type ClientMsg =
  | { type: "join"; room: string; since?: number }
  | { type: "leave"; room: string }
  | { type: "send"; room: string; id: string; body: string }
  | { type: "history"; room: string; before?: number; limit?: number }
  | { type: "resume"; rooms: Record<string, number> }
  | { type: "ping"; t?: number };

/** Codes of the server's `error` message (§5). */
export type ErrorCode =
  | "malformed"
  | "unknown_type"
  | "bad_room"
  | "bad_id"
  | "bad_body"
  | "not_joined"
  | "too_many_rooms"
  | "rate_limited"
  | "resume_too_far"
  | "unavailable";

export type ServerMsg =
  | {
      type: "welcome";
      user: string;
      heartbeat_ms: number;
      timeout_ms: number;
      max_message_size: number;
      max_requests_per_second?: number;
    }
  | ({ type: "message" } & ChatMessage)
  | { type: "ack"; room: string; id: string; seq: number }
  | { type: "joined"; room: string; seq: number }
  | { type: "left"; room: string }
  | { type: "history"; room: string; messages: ChatMessage[]; more: boolean }
  | { type: "error"; code: ErrorCode; text: string; room?: string; id?: string }
  | { type: "pong"; t?: number };

/** Close codes (§6). */
export const Close = {
  NORMAL: 1000,
  PROTOCOL_ERROR: 1002,
  INVALID_DATA: 1007,
  POLICY: 1008,
  TOO_BIG: 1009,
  RESTART: 1012,
  TIMEOUT: 4000,
  RESUME: 4001,
  TOKEN_EXPIRED: 4002,
} as const;

/** Close codes after which reconnecting cannot help (a client bug, or abuse). */
export const FATAL_CLOSES: ReadonlySet<number> = new Set([
  Close.NORMAL,
  Close.PROTOCOL_ERROR,
  Close.INVALID_DATA,
  Close.POLICY,
  Close.TOO_BIG,
]);

export type Format = "json" | "msgpack";

export const PROTOCOLS: Record<Format, string> = { json: "l4.json", msgpack: "l4.msgpack" };

/** A frame to send: text for `l4.json`, bytes for `l4.msgpack`. */
export function encode(format: Format, msg: ClientMsg): string | Uint8Array {
  return format === "json" ? JSON.stringify(msg) : msgpackEncode(msg, { ignoreUndefined: true });
}

/** A received frame, or undefined when it is not a message this client knows. */
export function decode(format: Format, data: unknown): ServerMsg | undefined {
  let value: unknown;
  try {
    if (format === "json") {
      if (typeof data !== "string") return undefined;
      value = JSON.parse(data);
    } else {
      const bytes = toBytes(data);
      if (bytes === undefined) return undefined;
      value = msgpackDecode(bytes);
    }
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null || typeof (value as { type?: unknown }).type !== "string") {
    return undefined;
  }
  return value as ServerMsg;
}

function toBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return undefined;
}

/** Size of an encoded frame in bytes. */
export function frameSize(frame: string | Uint8Array): number {
  return typeof frame === "string" ? new TextEncoder().encode(frame).length : frame.length;
}

/** Room names: 1-64 characters of `A-Z a-z 0-9 _ - . :`. */
export function validRoom(room: string): boolean {
  return /^[A-Za-z0-9_.:-]{1,64}$/.test(room);
}

/** Message ids: 1-64 printable ASCII characters without space. */
export function validId(id: string): boolean {
  return /^[\x21-\x7e]{1,64}$/.test(id);
}
