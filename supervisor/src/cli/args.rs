//! `l4ctl`'s arguments: the global options and one variant per command, with
//! the help text users see. Parsing only; `cli::dispatch` runs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "l4ctl", version, about = "Run and supervise layer4 apps: a small, fast PM2-like process manager.")]
pub struct Cli {
    /// Config file [default: config/layer4.toml, when it exists].
    #[arg(short, long, global = true, env = "L4_CONFIG")]
    pub config: Option<PathBuf>,
    /// Daemon home (socket, pid file, saved state) [default: the config's `[daemon] home`, else ~/.layer4].
    #[arg(long, global = true, env = "L4_HOME")]
    pub home: Option<PathBuf>,
    /// No colours, even on a terminal (as a non-empty NO_COLOR does).
    #[arg(long, global = true)]
    pub no_color: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the apps of a config file, a loaded app, or a script without a config
    /// file (as `pm2 start app.js`); with no argument, restore the saved apps.
    Start {
        /// A config file (`*.toml`), a loaded app (`app:N` or an id for one instance),
        /// or a script or program to run as a new app.
        target: Option<String>,
        /// Use each app's `[apps.env_NAME]` table.
        #[arg(long = "env", value_name = "NAME")]
        env_name: Option<String>,
        /// A script's app name [default: the script's name without its extension].
        #[arg(long)]
        name: Option<String>,
        /// A script's instances: a number, or `max` (one per CPU).
        #[arg(short = 'i', long = "instances", value_name = "N|max")]
        instances: Option<String>,
        /// A script's port: instance i gets PORT = port + i and binds it itself.
        #[arg(long)]
        port: Option<u16>,
        /// KEY=VALUE in a script's environment (repeat it for more).
        #[arg(long = "env-var", value_name = "KEY=VALUE")]
        env_var: Vec<String>,
        /// Restart a script's instance whose process tree uses more (e.g. 1G).
        #[arg(long, value_name = "SIZE")]
        max_memory_restart: Option<String>,
        /// The program that runs the script [default: by extension, as PM2: .js node, .py python3, ...; `none` runs it].
        #[arg(long)]
        interpreter: Option<String>,
        /// Restart a script's app when a file in the current folder changes (PM2's `--watch`).
        #[arg(long)]
        watch: bool,
        /// Restart a script's app on a cron schedule, local time (e.g. "0 3 * * *").
        #[arg(long, value_name = "CRON")]
        cron_restart: Option<String>,
        /// The script's own arguments, after `--`.
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Stop an app (or `all`, or one instance): kill_signal to every process, SIGKILL after kill_timeout.
    Stop {
        /// An app, `all`, one instance as `app:N`, or an id from `l4ctl status`.
        app: String,
    },
    /// Stop then start an app (or `all`, or one instance).
    Restart {
        /// An app, `all`, one instance as `app:N`, or an id from `l4ctl status`.
        app: String,
    },
    /// Replace an app's instances without downtime (or every app's, with `all`): a new
    /// run starts beside each old one, which stops only once the new one is ready;
    /// stops at the first instance whose new run fails (the old run keeps serving).
    Reload {
        /// An app, `all`, one instance as `app:N`, or an id from `l4ctl status`.
        app: String,
        /// Instances replaced at a time (default: the app's `reload_parallel`, 1).
        #[arg(long)]
        parallel: Option<u32>,
        /// `all`: this host, then each host of the config's `[nginx] hosts` in turn,
        /// through their TCP APIs (each with its `token_env`).
        #[arg(long, value_name = "all")]
        hosts: Option<String>,
    },
    /// Set the number of instances of an app (until the config file is reloaded);
    /// with `[nginx] auto_reload`, nginx follows.
    Scale {
        /// The app.
        app: String,
        /// Its number of instances from now on.
        instances: u32,
    },
    /// Recent crash reports (crashes, memory restarts, failed readiness, survived panics).
    Crashes {
        /// Only this app's reports [default: every app's].
        app: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Render the Nginx config from the live worker table, check it, install it, reload nginx.
    Nginx {
        #[command(subcommand)]
        what: super::nginx::NginxCommand,
    },
    /// Stop an app (or `all`) and forget it.
    #[command(alias = "del")]
    Delete {
        /// An app, or `all`.
        app: String,
    },
    /// Stop every app, then the daemon.
    Kill,
    /// Hand the running daemon over to the l4ctl-daemon now installed at its path, in
    /// place: same pid, no worker restarted, no log line lost.
    Update,
    /// Show every instance: pid, port, state, restarts, uptime, CPU, memory.
    #[command(aliases = ["ls", "list", "ps"])]
    Status {
        /// Print the stable JSON schema (documented in README.md) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A full-screen view of every instance: CPU and memory charts, logs, the last
    /// crash, and keys to restart, reload, stop and scale (as `pm2 monit`).
    #[command(alias = "dashboard")]
    Monit,
    /// Show an app's config, state, last exit and next retry.
    #[command(aliases = ["desc", "info", "show"])]
    Describe {
        /// An app (an id or `app:N` shows its app).
        app: String,
        #[arg(long)]
        json: bool,
    },
    /// Show the last lines of an app's logs (or all apps'), then follow new ones (as
    /// `pm2 logs`; `--nostream` prints and exits).
    Logs {
        /// An app, `all`, one instance as `app:N`, or an id from `l4ctl status` [default: all].
        app: Option<String>,
        /// How many lines of history to show per file (at most 10000; 8 MiB in all).
        #[arg(long, default_value_t = 15, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(..=crate::logs::tail::MAX_LINES as u64))]
        lines: usize,
        /// Keep printing new lines as they are written, across rotations (the default).
        #[arg(short, long, conflicts_with = "nostream")]
        follow: bool,
        /// Print the last lines and exit instead of following (PM2's `--nostream`).
        #[arg(long)]
        nostream: bool,
        /// Put the time each line is shown in front of it (UTC, to the millisecond),
        /// as PM2's `--timestamp`; useful for apps with `time = false`.
        #[arg(long)]
        timestamp: bool,
        /// Only stderr (the error file) instead of the combined file.
        #[arg(long, conflicts_with = "out")]
        err: bool,
        /// Only stdout (the out file) instead of the combined file.
        #[arg(long)]
        out: bool,
        /// Lines exactly as in the files: no `app|instance` prefix, and control
        /// characters are not escaped (without it, all but colours show as `\xNN`).
        #[arg(long)]
        raw: bool,
        /// One JSON object per line: {"app", "instance", "line"}.
        #[arg(long)]
        json: bool,
    },
    /// Empty the current log files of an app (or all apps).
    Flush {
        /// An app [default: every app].
        app: Option<String>,
    },
    /// Reopen every log file (as SIGUSR1), for users of an outside logrotate.
    ReloadLogs,
    /// Read every loaded config file again (as SIGHUP): changed apps restart, an invalid file changes nothing.
    ReloadConfig,
    /// Write a layer4.toml from a PM2 ecosystem file (.js, .cjs, .mjs, .json, .yaml):
    /// every PM2 option becomes its layer4 key or a comment saying what to do instead.
    Import {
        /// The PM2 file: ecosystem.config.js, process.json, ecosystem.yaml, ...
        file: PathBuf,
        /// Where to write [default: layer4.toml beside FILE]; `-` prints it instead.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Replace the output file when it exists.
        #[arg(long)]
        force: bool,
        /// How long `node` may take to evaluate a JavaScript file.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Send a signal to the main process of each running instance (PM2's sendSignal).
    Signal {
        /// A signal name or number: SIGUSR2, USR2, 12.
        signal: String,
        /// An app, `all`, one instance as `app:N`, or an id from `l4ctl status`.
        app: String,
    },
    /// Set the restart counters (↺ in `status`) back to zero.
    Reset {
        /// An app, `all`, one instance as `app:N`, or an id from `l4ctl status`.
        app: String,
    },
    /// Say where the daemon keeps its apps: it saves them on every change (PM2's `save`).
    Save,
    /// Start the saved apps again, as `l4ctl start` with no argument (PM2's `resurrect`).
    Resurrect,
    /// Start the daemon with the machine: write and enable a systemd unit that runs
    /// it as a user (as root; otherwise print the command to run), as `pm2 startup`.
    Startup {
        #[command(flatten)]
        unit: UnitArgs,
        /// Print the unit instead of writing it.
        #[arg(long)]
        print: bool,
        /// Write the unit but do not run systemctl.
        #[arg(long)]
        no_enable: bool,
    },
    /// Stop and remove the unit `l4ctl startup` wrote (the saved apps stay).
    Unstartup {
        #[command(flatten)]
        unit: UnitArgs,
    },
    /// Print a completion script for a shell (e.g. `l4ctl completions bash > /etc/bash_completion.d/l4ctl`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print l4ctl's man page (roff; `install.sh` installs it as l4ctl(1)).
    Man,
    /// Run the daemon in the foreground (for systemd and containers).
    Daemon {
        /// Log to <log_dir>/l4ctl.log (daily rotation) instead of stderr.
        #[arg(long)]
        log_file: bool,
        /// Log folder [default: the config's `[daemon] log_dir`].
        #[arg(long)]
        log_dir: Option<PathBuf>,
        /// With `--config FILE`: load and start that file at once, with this env profile.
        #[arg(long = "env", value_name = "NAME")]
        env_name: Option<String>,
        /// Take only the `[daemon]` settings from `--config`; leave its apps to `l4ctl start`.
        #[arg(long)]
        no_apps: bool,
        /// Start the saved apps at once (after a crash or a reboot), as `l4ctl start` does.
        #[arg(long)]
        restore: bool,
    },
}

/// Which unit `startup` and `unstartup` mean.
#[derive(Debug, Args)]
pub struct UnitArgs {
    /// The init system: only systemd.
    #[arg(default_value = "systemd", value_parser = ["systemd"])]
    pub system: String,
    /// The user whose daemon starts with the machine [default: the one sudo was run by, else you].
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Where the unit goes.
    #[arg(long, default_value = "/etc/systemd/system")]
    pub unit_dir: PathBuf,
}
