//! `l4ctl`: parse the arguments and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Lossy: clap reads the real (possibly non-UTF-8) arguments; this only looks for a verb.
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    if let Some(sentence) = layer4_supervisor::cli::pm2_verb(&args) {
        eprintln!("{sentence}");
        return ExitCode::from(2);
    }
    if args.len() == 2 && (args[1] == "--version" || args[1] == "-V") {
        return layer4_supervisor::cli::version();
    }
    layer4_supervisor::cli::run(layer4_supervisor::cli::Cli::parse())
}
