//! What the daemon asks of the operating system, without deciding anything: reading,
//! signalling and reaping processes ([`procs`]), the registry of its own helper
//! processes ([`helpers`]) and its descriptor budget ([`fds`]). The actor in `daemon/`
//! decides when; crash delivery and the API's helper spawns register here too.

pub mod fds;
pub mod helpers;
pub mod procs;
