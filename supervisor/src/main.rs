//! `l4ctl`: parse the arguments and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    layer4_supervisor::cli::run(layer4_supervisor::cli::Cli::parse())
}
