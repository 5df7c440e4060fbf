//! The contract between the daemon, its control API and the CLI: what crosses the
//! control socket (the JSON shapes of [`types`], `schema: 1`), what the daemon hands its
//! API to render (`/metrics`' [`metrics::MetricsSnapshot`]), and where a daemon's files
//! live in its home and which environment names mark its processes ([`home`]), and the
//! daemon binary's arguments ([`daemon_args`]).
//!
//! At the bottom of the crate beside `config/`: it imports nothing of `daemon/`, `api/`
//! or `cli/`, which all import it, so a field added here is one edit, not three.

pub mod daemon_args;
pub mod home;
pub mod metrics;
pub mod types;
