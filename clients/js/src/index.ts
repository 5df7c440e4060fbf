// layer4's chat client for browsers and Node ≥ 20 (there, pass the `ws` package's
// WebSocket as `options.WebSocket`). See README.md for the API and docs/protocol.md of
// the repository for the wire protocol it speaks.

export { ChatClient } from "./client.js";
export type { ClientEvents, ClientOptions, ConnectionState, NetworkStatus } from "./client.js";
export type { WebSocketConstructor, WebSocketLike } from "./connection.js";
export { ChatError, LocalError, RefusedError, StoppedError } from "./errors.js";
export { Close, validId, validRoom } from "./protocol.js";
export type { ChatMessage, ClientMsg, ErrorCode, Format, ServerMsg } from "./protocol.js";
export { backoffDelay, Heartbeat, Pacer } from "./timing.js";
