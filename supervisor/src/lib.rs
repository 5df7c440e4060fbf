//! layer4's supervisor: the library behind the `l4ctl` binary.
//!
//! - [`config`] reads and validates the TOML config file.
//! - [`lifecycle`] is the pure state machine of one instance (no I/O).
//! - [`logs`] captures workers' output: files, rotation, `l4ctl logs`.
//! - [`daemon`] runs apps; [`api`] is its control API; [`server`] is the daemon binary's
//!   composition root (the one place that joins the two); [`client`] and [`cli`] are
//!   `l4ctl`'s side.
//! - [`import`] turns a PM2 ecosystem file into a commented `layer4.toml` (`l4ctl import`).
//! - [`crash`] builds crash reports (stderr tail, parsed panics, episodes).
//! - [`trust`] decides which home and log folders, and which files in them, the daemon uses;
//!   [`nofollow`] opens the files there without following symlinks.
//! - [`guard`] restarts a background daemon that dies; [`sdnotify`] tells systemd the daemon is ready, alive (watchdog) and stopping.
//! - [`nginx`] renders, checks and installs the Nginx config from the live worker table.
//! - [`os`] starts, reads, signals and reaps processes, owns their sockets and cgroups, and
//!   keeps the descriptor budget, for the daemon; [`monitor`] samples them and holds the
//!   memory rule.
//! - [`wire`] is the contract the daemon, the API and the CLI share (JSON shapes, home
//!   file names, environment names); it imports none of them.

pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod crash;
pub mod daemon;
pub mod fsutil;
pub mod guard;
pub mod handover;
pub mod import;
pub mod lifecycle;
pub mod logs;
pub mod monitor;
pub mod nginx;
pub mod nofollow;
pub mod os;
pub mod sdnotify;
pub mod server;
pub mod telemetry;
pub mod trust;
pub mod wire;
