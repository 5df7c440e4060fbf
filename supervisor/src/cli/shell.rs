//! What `l4ctl` gives the shell and the terminal: completions
//! (`l4ctl completions bash|zsh|fish|elvish|powershell`) and the man page
//! (`l4ctl man`), both generated from the same clap definitions as the parser;
//! whether to colour (a terminal, unless `--no-color` or a non-empty `NO_COLOR`,
//! <https://no-color.org>); and one sentence for PM2 verbs layer4 spells
//! differently or does not have, instead of clap's unrelated suggestion.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::CommandFactory;

use super::Cli;

static COLOUR: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Decide once per run: colours on stdout when it is a terminal, without
/// `--no-color` and without a non-empty `NO_COLOR`.
pub(super) fn decide_colour(cli: &Cli) {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let _ = COLOUR.set(!cli.no_color && !no_color && std::io::stdout().is_terminal());
}

/// Whether this run colours its output.
pub(super) fn colour() -> bool {
    COLOUR.get().copied().unwrap_or(false)
}

pub(super) fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "l4ctl", &mut std::io::stdout());
    ExitCode::SUCCESS
}

pub(super) fn man() -> ExitCode {
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(Cli::command()).render(&mut out) {
        eprintln!("l4ctl: cannot render the man page: {e}");
        return ExitCode::from(1);
    }
    let _ = std::io::stdout().write_all(&out);
    ExitCode::SUCCESS
}

/// PM2 commands and what to run instead (PM2's own spelling, lower-cased).
const PM2_VERBS: &[(&str, &str)] = &[
    ("env", "`l4ctl describe APP` (variable names; values are never shown)"),
    ("jlist", "`l4ctl status --json`"),
    ("prettylist", "`l4ctl status --json`"),
    ("version", "`l4ctl --version`"),
    ("sendsignal", "`l4ctl signal SIGNAL APP`"),
    ("reloadlogs", "`l4ctl reload-logs`"),
    ("dump", "nothing: the daemon saves its apps on every change (`l4ctl save` says where)"),
    ("install", "nothing: log rotation is built in ([apps.log_rotate]); layer4 has no modules"),
    ("module:install", "nothing: layer4 has no modules"),
    ("ecosystem", "`l4ctl import ecosystem.config.js` for a PM2 file; config/layer4.toml is a commented example"),
    ("init", "`l4ctl import ecosystem.config.js` for a PM2 file; config/layer4.toml is a commented example"),
    ("deploy", "your own deploy script or CI, then `l4ctl reload APP` on each host"),
    ("plus", "the status API (/metrics for Prometheus, /api/v1/events) instead of PM2.io"),
    ("link", "the status API (/metrics for Prometheus, /api/v1/events) instead of PM2.io"),
    ("ping", "`l4ctl status` (exit 1 when no daemon runs)"),
    ("pid", "`l4ctl status --json` (every pid)"),
    ("id", "`l4ctl status` (the id column)"),
    ("trigger", "`l4ctl signal SIGNAL APP` (layer4 has no PM2.io actions)"),
    ("serve", "a static file server of your choice, started with `l4ctl start`"),
];

/// The sentence for `args` when it starts with a PM2 verb layer4 lacks, else `None`.
pub fn pm2_verb(args: &[String]) -> Option<String> {
    let mut rest = args.iter().skip(1);
    let verb = loop {
        let a = rest.next()?;
        match a.as_str() {
            "-c" | "--config" | "--home" => {
                rest.next();
            }
            flag if flag.starts_with('-') => {}
            _ => break a,
        }
    };
    let lower = verb.to_ascii_lowercase();
    let known =
        Cli::command().get_subcommands().any(|c| c.get_name() == lower || c.get_all_aliases().any(|a| a == lower));
    if known {
        return None;
    }
    PM2_VERBS.iter().find(|(v, _)| *v == lower).map(|(_, what)| format!("l4ctl: `pm2 {verb}` in layer4 is {what}"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_positional_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_positionals() {
                if arg.get_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "l4ctl", &mut missing);
        assert!(missing.is_empty(), "positional arguments without help: {missing:?}");
    }

    #[test]
    fn pm2_verbs_get_the_layer4_way_and_layer4_verbs_are_left_alone() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(super::pm2_verb(&args(&["l4ctl", "monit"])).is_none(), "monit is a layer4 command");
        assert!(
            super::pm2_verb(&args(&["l4ctl", "--home", "/x", "jlist"])).is_some(),
            "an option's value is not the verb"
        );
        assert!(super::pm2_verb(&args(&["l4ctl", "jlist"])).unwrap().contains("status --json"));
        assert!(super::pm2_verb(&args(&["l4ctl", "status"])).is_none());
        assert!(super::pm2_verb(&args(&["l4ctl", "save"])).is_none(), "save is a layer4 command");
        assert!(super::pm2_verb(&args(&["l4ctl", "frobnicate"])).is_none(), "clap's own error then");
    }
}
