//! Integration tests for the chat server: the real binary over real sockets, against
//! SQLite and a real PostgreSQL (127.0.0.1:5432).
#![allow(clippy::unwrap_used)]

mod helper;

mod accounts;
mod client;
mod cluster;
mod conformance;
mod e2e;
mod fanout;
mod gateway;
mod grafana_and_prometheus;
mod limits;
mod netns;
mod pki;
mod publish;
mod redis_cluster;
mod redis_sentinel;
mod redis_sentinel_limits;
mod resume;
mod rooms;
mod several_hosts;
mod telemetry;
mod tls;
mod tokens;
mod web;
mod wss;
