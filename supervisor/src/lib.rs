//! layer4's supervisor: the library behind the `l4ctl` binary.
//!
//! - [`config`] reads and validates the TOML config file.
//! - [`lifecycle`] is the pure state machine of one instance (no I/O).

pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod fsutil;
pub mod lifecycle;
pub mod telemetry;
