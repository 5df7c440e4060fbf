//! Client side of layer4's chat: the wire protocol shared with the server, account
//! calls, and a client that keeps a connection alive across failures and delivers each
//! room's messages to the application exactly once, in order.
//!
//! - [`protocol`]: message types, JSON/MessagePack encodings, close codes.
//! - [`http`]: `register` and `login` for a token.
//! - [`client`]: [`Client`], [`ClientConfig`], [`Event`].

pub mod client;
pub mod http;
pub mod tls;
/// The wire protocol, from its own package (which the server uses too).
pub use layer4_chat_protocol as protocol;
mod session;

pub use client::{Client, ClientConfig, Event, Sender};
