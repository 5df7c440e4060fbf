//! What the daemon asks of the operating system, without deciding anything: reading,
//! signalling and reaping processes ([`procs`]), starting a worker ([`spawn`]), the
//! listening sockets it owns for them ([`sockets`]), a cgroup per run ([`cgroup`]),
//! the registry of its own helper processes ([`helpers`]) and its descriptor budget
//! ([`fds`]). The actor in `daemon/`
//! decides when; crash delivery and the API's helper spawns register here too.

pub mod cgroup;
pub mod exec;
pub mod fds;
pub mod helpers;
pub mod procs;
pub mod sockets;
pub mod spawn;
