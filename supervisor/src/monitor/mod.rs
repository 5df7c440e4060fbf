//! What the daemon measures of its instances and the rules it applies to the
//! figures, without acting: sampling each instance's process tree ([`sample`]), the
//! latest figures of one instance and its growth ([`usage`]), and the memory
//! ceiling's decision ([`memory`], the one place the 1.5x backstop is written), and
//! each instance's last hour for charts ([`history`]).
//! The actor's `daemon/sampling.rs` runs the passes and carries out the verdicts.

pub mod history;
pub mod memory;
pub mod sample;
pub mod usage;
