//! `l4ctl`: parse the arguments and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(sentence) = layer4_supervisor::cli::pm2_verb(&args) {
        eprintln!("{sentence}");
        return ExitCode::from(2);
    }
    layer4_supervisor::cli::run(layer4_supervisor::cli::Cli::parse())
}
