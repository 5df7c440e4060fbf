//! The watch thread: owns the [`FileWatch`] so that walking a large tree and adding
//! thousands of inotify watches never holds the daemon's one runtime thread (the
//! actor answers `status` meanwhile).
//!
//! Nothing here waits on anything that waits on it: the triggers task sends commands
//! without waiting, `notify`'s thread hands over events without waiting (at most
//! [`EVENT_QUEUE`] queued; past it they are dropped and the next look counts as an
//! overflow: every watched app changed, its folders walked again), and only this
//! thread waits, for the triggers task to take its reports.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::mpsc;

use super::files::FileWatch;
use crate::config::WatchSpec;

/// Kernel events waiting for the watch thread at most.
pub const EVENT_QUEUE: usize = 4096;
/// Reports waiting for the triggers task; when full, the watch thread waits.
const REPORTS: usize = 256;

pub(super) enum Command {
    Set {
        app: String,
        spec: WatchSpec,
    },
    /// Every app's log files (never a change): nothing is walked again.
    Logs(Vec<PathBuf>),
    Remove(String),
}

/// What the watch thread tells the triggers task.
pub(super) enum Report {
    /// What is watched for `app` now, or why nothing is.
    Armed { app: String, result: Result<String, String> },
    /// A change of `app`, and what is watched now (unless its watch stopped).
    Changed { app: String, path: PathBuf, summary: Option<String> },
}

enum Input {
    Command(Command),
    Event(notify::Result<notify::Event>),
    Quit,
}

/// The triggers task's end: commands go in, reports come out.
pub(super) struct Watching {
    tx: mpsc::UnboundedSender<Input>,
}

impl Watching {
    /// Start the thread (and inotify); `ours` are the daemon's folders, never a change.
    pub fn start(ours: Vec<PathBuf>) -> Result<(Watching, mpsc::Receiver<Report>), String> {
        // tokio's channel, read blocking on the thread: one channel implementation in the
        // daemon's code pages rather than two.
        let (tx, mut rx) = mpsc::unbounded_channel::<Input>();
        let queued = Arc::new(AtomicUsize::new(0));
        let overflowed = Arc::new(AtomicBool::new(false));
        let on_event = {
            let (tx, queued, overflowed) = (tx.clone(), queued.clone(), overflowed.clone());
            move |e: notify::Result<notify::Event>| {
                // Reads and opens (a walk opens every folder) are never queued.
                if e.as_ref().is_ok_and(|e| super::entries::noise(&e.kind)) {
                    return;
                }
                if queued.fetch_add(1, Ordering::AcqRel) >= EVENT_QUEUE {
                    queued.fetch_sub(1, Ordering::AcqRel);
                    overflowed.store(true, Ordering::Release);
                } else if tx.send(Input::Event(e)).is_err() {
                    queued.fetch_sub(1, Ordering::AcqRel);
                }
            }
        };
        let files = FileWatch::new(on_event, ours)?;
        let (report_tx, reports) = mpsc::channel(REPORTS);
        std::thread::Builder::new()
            .name("l4-watch".into())
            .spawn(move || serve(files, &mut rx, &queued, &overflowed, &report_tx))
            .map_err(|e| format!("cannot start the watch thread: {e}"))?;
        Ok((Watching { tx }, reports))
    }

    pub fn send(&self, command: Command) {
        let _ = self.tx.send(Input::Command(command));
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.tx.send(Input::Quit);
    }
}

fn serve(
    mut files: FileWatch,
    rx: &mut mpsc::UnboundedReceiver<Input>,
    queued: &AtomicUsize,
    overflowed: &AtomicBool,
    out: &mpsc::Sender<Report>,
) {
    while let Some(input) = rx.blocking_recv() {
        let mut reports = Vec::new();
        match input {
            Input::Quit => return,
            Input::Command(Command::Set { app, spec }) => {
                let result = files.set(&app, &spec);
                reports.push(Report::Armed { app, result });
            }
            Input::Command(Command::Logs(logs)) => files.set_logs(&logs),
            Input::Command(Command::Remove(app)) => files.remove(&app),
            Input::Event(event) => {
                queued.fetch_sub(1, Ordering::AcqRel);
                match event {
                    Ok(event) => reports.extend(look(&mut files, &event)),
                    Err(e) => tracing::warn!(cause = %e, "file watch error"),
                }
            }
        }
        if overflowed.swap(false, Ordering::AcqRel) {
            let lost = notify::Event::new(notify::EventKind::Other).set_flag(notify::event::Flag::Rescan);
            reports.extend(look(&mut files, &lost));
        }
        for r in reports {
            if out.blocking_send(r).is_err() {
                return;
            }
        }
    }
}

/// The reports of one event.
fn look(files: &mut FileWatch, event: &notify::Event) -> Vec<Report> {
    let (changed, stopped) = files.changed(event);
    let names: Vec<String> = stopped.iter().map(|(app, _)| app.clone()).collect();
    let mut out: Vec<Report> = stopped.into_iter().map(|(app, why)| Report::Armed { app, result: Err(why) }).collect();
    for (app, path) in changed {
        // What is watched now (folders come and go); not for an app whose watch stopped.
        let summary = (!names.contains(&app)).then(|| files.summary(&app));
        out.push(Report::Changed { app, path, summary });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn next(r: &mut mpsc::Receiver<Report>) -> Report {
        let r = tokio::time::timeout(Duration::from_secs(60), r.recv()).await;
        r.expect("a report within 60 s").expect("the thread runs")
    }

    /// Walking a tree opens every folder: with more folders than the event queue
    /// holds, those opens once overflowed it, and each overflow walked again, for ever.
    #[tokio::test]
    async fn arming_a_tree_larger_than_the_event_queue_reports_only_real_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("app");
        for i in 0..EVENT_QUEUE + 500 {
            std::fs::create_dir_all(root.join(format!("d{}/e{i}", i / 100))).unwrap();
        }
        let spec =
            WatchSpec { paths: vec![root.clone()], base: root.clone(), ignore: vec![], delay: Duration::from_secs(1) };
        let (w, mut reports) = Watching::start(vec![]).unwrap();
        w.send(Command::Set { app: "a".into(), spec });
        // The root, 46 folders under it, and the leaves.
        let folders = format!("{} folders", 1 + 46 + EVENT_QUEUE + 500);
        match next(&mut reports).await {
            Report::Armed { result: Ok(what), .. } => assert!(what.starts_with(&folders)),
            Report::Armed { result: Err(why), .. } => panic!("{why}"),
            Report::Changed { path, .. } => panic!("a change before any: {}", path.display()),
        }
        std::fs::write(root.join("d7/e777/changed.js"), "x").unwrap();
        match next(&mut reports).await {
            Report::Changed { path, summary, .. } => {
                assert_eq!(path, root.join("d7/e777/changed.js"));
                assert!(summary.is_some_and(|s| s.starts_with(&folders)));
            }
            Report::Armed { result, .. } => panic!("armed again: {result:?}"),
        }
    }
}
