//! `l4ctl-daemon`: the daemon alone, so that what stays resident carries no CLI
//! code. `l4ctl` starts it; `l4ctl daemon` execs it in the foreground.

use std::process::ExitCode;

use layer4_supervisor::wire::daemon_args::{DaemonArgs, Parsed, USAGE};

fn main() -> ExitCode {
    let args = match DaemonArgs::parse_from(std::env::args_os().skip(1), |k| std::env::var_os(k)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::HandoverSchema) => {
            println!("{}", layer4_supervisor::handover::SCHEMA);
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("l4ctl-daemon {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("l4ctl-daemon: {e}");
            return ExitCode::from(2);
        }
    };
    if args.guard {
        return layer4_supervisor::guard::run(&args);
    }
    layer4_supervisor::server::run(&args)
}
