//! layer4's supervisor: the library behind the `l4ctl` binary.
//!
//! - [`config`] reads and validates the TOML config file.
//! - [`lifecycle`] is the pure state machine of one instance (no I/O).

pub mod config;
pub mod lifecycle;
