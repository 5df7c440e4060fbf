//! `l4ctl-daemon`: the daemon alone, so that what stays resident carries no CLI
//! code. `l4ctl` starts it; `l4ctl daemon` execs it in the foreground.

use std::process::ExitCode;

use clap::Parser;
use layer4_supervisor::wire::daemon_args::DaemonArgs;

fn main() -> ExitCode {
    let args = DaemonArgs::parse();
    if args.guard {
        return layer4_supervisor::guard::run(&args);
    }
    layer4_supervisor::server::run(&args)
}
