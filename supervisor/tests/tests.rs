//! The one integration-test binary of the supervisor: real `l4ctl` daemons in
//! temp folders, real processes and signals. Test names follow the README
//! sections they prove. `unwrap` is fine here: a panic is a test failure.

#![allow(clippy::unwrap_used)]

mod helper;

mod after_a_panic;
mod api;
mod api_limits;
mod boot;
mod cli;
mod coming_from_pm2;
mod crashes;
mod daemon;
mod delivery;
mod delivery_https;
mod disk;
mod log_folder;
mod log_reads;
mod logs;
mod memory;
mod monit_and_dashboard;
mod nginx;
mod processes;
mod restart;
mod security;
mod several_hosts;
mod several_hosts_limits;
mod update_refusals;
mod updating_in_place;
mod watch_and_cron;
