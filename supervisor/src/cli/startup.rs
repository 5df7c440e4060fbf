//! `l4ctl startup [systemd] [--user U]` and `l4ctl unstartup`: the daemon as a
//! systemd service that starts with the machine, as `pm2 startup` sets up.
//!
//! The unit (`l4ctl-<user>.service`) runs `l4ctl daemon` as that user with the
//! user's home (`~/.layer4`), so every app the user started, and saved, comes
//! back at boot. It is `Type=notify` with `WatchdogSec=` (the daemon says
//! READY=1 once its apps are back and pings while its actor answers, see
//! `sdnotify`), `KillMode=mixed` (the daemon stops its apps itself) and
//! `Delegate=yes` (one cgroup per run). As root the unit is written to
//! `/etc/systemd/system` and enabled; otherwise the one command to run is printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// How long systemd lets the daemon go without a watchdog ping.
pub const WATCHDOG_SEC: u32 = 30;

/// What `startup` was asked.
#[derive(Debug, Clone)]
pub struct StartupArgs {
    pub user: Option<String>,
    pub unit_dir: PathBuf,
    pub print: bool,
    pub no_enable: bool,
}

/// A value as systemd reads it in `ExecStart=` and `Environment=`: quoted, with
/// `\`, `"` escaped and `%` and `$` doubled (no specifier or variable expansion).
fn quoted(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('%', "%%").replace('$', "$$");
    format!("\"{escaped}\"")
}

/// The unit file for `user` (whose home is `home`), running `exe`, with `path` as
/// the daemon's PATH (as `pm2 startup` keeps it: a `node` from nvm is found at boot).
pub fn unit(exe: &Path, user: &str, home: &Path, path: &str) -> String {
    let l4home = home.join(".layer4");
    let exe = quoted(&exe.display().to_string());
    let l4home_q = quoted(&l4home.display().to_string());
    let env_home = quoted(&format!("L4_HOME={}", l4home.display()));
    let env_path = quoted(&format!("PATH={path}"));
    format!(
        "# Written by `l4ctl startup`; `l4ctl unstartup` removes it.
[Unit]
Description=layer4 supervisor (l4ctl) of {user}
Documentation=man:l4ctl(1)
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
User={user}
WorkingDirectory={home}
Environment={env_home}
Environment={env_path}
ExecStart={exe} --home {l4home_q} daemon --log-file --restore
ExecReload=/bin/kill -HUP $MAINPID
KillMode=mixed
Delegate=yes
TimeoutStartSec=90
TimeoutStopSec=60
WatchdogSec={WATCHDOG_SEC}
Restart=on-failure
RestartSec=1s
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
",
        home = home.display(),
    )
}

/// `l4ctl-<user>.service`.
pub fn unit_name(user: &str) -> String {
    format!("l4ctl-{user}.service")
}

/// The user the unit runs as: `--user`, else the one `sudo` was run by, else ourselves.
fn user_and_home(user: Option<&str>) -> Result<(String, PathBuf), String> {
    let found = match user.map(str::to_owned).or_else(|| std::env::var("SUDO_USER").ok()) {
        Some(name) => nix::unistd::User::from_name(&name).ok().flatten().ok_or(format!("no user named {name:?}"))?,
        None => {
            nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().ok_or("cannot tell who runs l4ctl")?
        }
    };
    Ok((found.name, found.dir))
}

fn systemctl(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("systemctl").args(args).output().map_err(|e| format!("systemctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("systemctl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

pub(super) fn startup(args: &StartupArgs) -> ExitCode {
    let (user, home) = match user_and_home(args.user.as_deref()) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("l4ctl startup: {e}");
            return ExitCode::from(2);
        }
    };
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/local/bin/l4ctl"));
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned());
    let text = unit(&exe, &user, &home, &path);
    if args.print {
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    let path = args.unit_dir.join(unit_name(&user));
    if let Err(e) = crate::fsutil::atomic_write(&path, text.as_bytes(), 0o644) {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            eprintln!(
                "l4ctl startup: writing {} needs root: run `sudo {} startup --user {user}`",
                path.display(),
                exe.display()
            );
        } else {
            eprintln!("l4ctl startup: {}: {e}", path.display());
        }
        return ExitCode::from(1);
    }
    println!("l4ctl: wrote {}", path.display());
    if args.no_enable {
        return ExitCode::SUCCESS;
    }
    let name = unit_name(&user);
    if let Err(e) = systemctl(&["daemon-reload"]).and_then(|()| systemctl(&["enable", &name])) {
        eprintln!("l4ctl startup: the unit is written but not enabled: {e}");
        return ExitCode::from(1);
    }
    match systemctl(&["start", &name]) {
        Ok(()) => {
            println!("l4ctl: {name} is enabled and started: the daemon of {user} starts with the machine");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "l4ctl startup: {name} is enabled (it starts at boot) but did not start now: {e} (is {user}'s daemon already running outside systemd? `l4ctl kill` first)"
            );
            ExitCode::from(1)
        }
    }
}

pub(super) fn unstartup(user: Option<&str>, unit_dir: &Path) -> ExitCode {
    let (user, _) = match user_and_home(user) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("l4ctl unstartup: {e}");
            return ExitCode::from(2);
        }
    };
    let name = unit_name(&user);
    let path = unit_dir.join(&name);
    if !path.exists() {
        println!("l4ctl: {} does not exist: nothing to remove", path.display());
        return ExitCode::SUCCESS;
    }
    // The daemon and its apps stop with the unit; the saved state stays for `l4ctl start`.
    if let Err(e) = systemctl(&["disable", "--now", &name]) {
        eprintln!("l4ctl unstartup: {e} (removing the unit anyway)");
    }
    if let Err(e) = std::fs::remove_file(&path) {
        eprintln!("l4ctl unstartup: {}: {e}", path.display());
        return ExitCode::from(1);
    }
    let _ = systemctl(&["daemon-reload"]);
    println!("l4ctl: removed {}", path.display());
    ExitCode::SUCCESS
}
