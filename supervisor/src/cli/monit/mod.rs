//! `l4ctl monit`: a full-screen terminal UI over the control API, as `pm2 monit`
//! is for PM2. The screen is redrawn on every key, every update from the daemon
//! and at least once a second; keys act on the selected instance or its app
//! through the same API routes as `l4ctl restart|reload|stop|start|scale`.
//! ratatui and crossterm live in this CLI only; the daemon serves what it always
//! served (status, events, logs, crashes) and the history ring.

mod feed;
mod model;
mod view;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;

use crate::client::Client;
use crate::wire::types::StatusReport;
use model::{Monit, Update};

/// How often the table, the selected app's logs and its crash report are fetched.
const REFRESH: Duration = Duration::from_secs(1);

pub async fn monit(client: Client) -> ExitCode {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        eprintln!("l4ctl monit: needs a terminal (for a script, use `l4ctl status --json` or `GET /api/v1/events`)");
        return ExitCode::from(2);
    }
    let first = match client.get::<StatusReport>("/api/v1/status").await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("l4ctl monit: {e}");
            return ExitCode::from(1);
        }
    };
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("l4ctl monit: cannot set up the terminal: {e}");
            return ExitCode::from(1);
        }
    };
    let (tx, mut updates) = mpsc::unbounded_channel();
    let mut keys = read_keys();
    feed::events(&client, &tx);
    let mut m = Monit::default();
    m.apply(Update::Status(Ok(first), now()));
    let (selected_tx, selected_rx) = tokio::sync::watch::channel(None);
    feed::poll(&client, &tx, selected_rx, REFRESH);
    // Redraws at least once a second (uptimes move) even when nothing arrives.
    let mut tick = tokio::time::interval(REFRESH);
    let code = loop {
        for app in m.rows.iter().map(|r| r.app.clone()).collect::<std::collections::BTreeSet<_>>() {
            if m.history_asked.insert(app.clone()) {
                feed::history(&client, &tx, &app);
            }
        }
        selected_tx.send_if_modified(|app| {
            let now = m.selected_app().map(str::to_owned);
            (*app != now).then(|| *app = now).is_some()
        });
        if let Err(e) = terminal.draw(|f| view::draw(f, &m, now())) {
            break failed(&format!("drawing: {e}"));
        }
        if m.quit {
            break ExitCode::SUCCESS;
        }
        tokio::select! {
            _ = tick.tick() => {}
            Some(u) = updates.recv() => m.apply(u),
            key = keys.recv() => match key {
                Some(c) => if let Some(action) = m.key(c) {
                    m.message = Some((action.sentence(), false));
                    feed::act(&client, &tx, action);
                },
                None => break failed("the terminal's input ended"),
            },
        }
    };
    ratatui::restore();
    code
}

fn failed(why: &str) -> ExitCode {
    ratatui::restore();
    eprintln!("l4ctl monit: {why}");
    ExitCode::from(1)
}

/// Unix seconds, the charts' time axis.
fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Keys as the model names them (`↑`, `↓`, a character; Esc and Ctrl-C are `q`), read
/// on a thread of their own (crossterm's reads block). A resize is an empty key:
/// the loop redraws at the new size.
fn read_keys() -> mpsc::UnboundedReceiver<char> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(e) = event::read() {
            let c = match e {
                Event::Key(k) if k.kind != KeyEventKind::Release => match k.code {
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => 'q',
                    KeyCode::Char(c) => c,
                    KeyCode::Up => '↑',
                    KeyCode::Down => '↓',
                    KeyCode::Esc => 'q',
                    _ => continue,
                },
                Event::Resize(..) => '\0',
                _ => continue,
            };
            if tx.send(c).is_err() {
                return;
            }
        }
    });
    rx
}
