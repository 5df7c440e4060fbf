//! The workflows over a fake actor: reload waves, the start confirmation, and what
//! counts as failed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fake::{self, row};
use super::msg::{Error, Msg, Op, Target};
use super::rollout::{Rollout, judge};
use super::settle::failures;
use crate::lifecycle::State;

/// An app of `n` online instances (pid 100 + index) whose replace gives pid 200 +
/// index, except for the instances in `failing`, whose new run dies (the old one
/// stays). Records every message as a word.
fn reloading(n: u32, failing: &'static [u32], seen: Arc<Mutex<Vec<String>>>) -> super::Handle {
    let mut rows: Vec<_> = (0..n).map(|i| row("web", i, Some(100 + i), State::Online, Some(60_000))).collect();
    fake::handle(move |msg| match msg {
        Msg::Describe { app, reply } => {
            let _ = reply.send(Ok(fake::description(&app, rows.clone(), 3)));
        }
        Msg::ReplaceInstance { index, reply, .. } => {
            seen.lock().unwrap().push(format!("replace {index}"));
            let r = &mut rows[index as usize];
            let _ = reply.send(Ok((r.pid, false)));
            if failing.contains(&index) {
                r.last_exit = fake::exit("not ready within 1s (listen_timeout)");
            } else {
                r.pid = Some(200 + index);
            }
        }
        Msg::Wait { reply, .. } => {
            let _ = reply.send(());
        }
        Msg::Status { reply } => {
            seen.lock().unwrap().push("status".into());
            let _ = reply.send(fake::status(rows.clone()));
        }
        other => panic!("unexpected {other:?}"),
    })
}

#[tokio::test]
async fn a_rolling_reload_goes_wave_by_wave_and_stops_after_the_wave_with_a_failure() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let h = reloading(6, &[2], seen.clone());
    let plan = h.plan_reload("web", Some(2)).await.unwrap();
    assert_eq!(plan.plan, Rollout { app: "web".into(), instances: vec![0, 1, 2, 3, 4, 5], parallel: 2, renew: false });
    let mut steps = Vec::new();
    let err = h.reload(&plan, |r| steps.push((r.instance, r.ok, r.pid))).await.unwrap_err();
    assert_eq!(steps, vec![(0, true, Some(200)), (1, true, Some(201)), (2, false, Some(102)), (3, true, Some(203))]);
    assert!(matches!(&err, Error::ReloadFailed(r) if r.instance == 2));
    assert_eq!(
        err.to_string(),
        "web:2 was not replaced: not ready within 1s (listen_timeout); the old run (pid 102) keeps serving; the reload stopped there"
    );
    let seen = seen.lock().unwrap().clone();
    let at = |word: &str| seen.iter().position(|w| w == word).unwrap();
    // Both steps of a wave are judged (a status each) before the next wave starts.
    let statuses_before_2 = seen[..at("replace 2")].iter().filter(|w| *w == "status").count();
    assert_eq!(statuses_before_2, 2, "{seen:?}");
    assert!(!seen.contains(&"replace 4".to_owned()), "the wave after the failure never starts: {seen:?}");
}

#[tokio::test]
async fn a_reload_without_failures_reports_every_instance_online() {
    let h = reloading(3, &[], Arc::default());
    let plan = h.plan_reload("web", None).await.unwrap();
    assert_eq!(plan.plan.parallel, 3, "the app's reload_parallel");
    let mut steps = 0;
    let report = h.reload(&plan, |_| steps += 1).await.unwrap();
    assert_eq!((steps, report.apps, report.failed), (3, vec!["web".to_owned()], Vec::<String>::new()));
    assert!(report.status.instances.iter().all(|i| i.pid.is_some_and(|p| p >= 200)));
}

#[tokio::test]
async fn one_rolling_reload_per_app_at_a_time() {
    let h = reloading(2, &[], Arc::default());
    let first = h.plan_reload("web", None).await.unwrap();
    let again = h.plan_reload("web", None).await.unwrap_err();
    assert_eq!(again.to_string(), "a rolling reload of `web` is under way; wait for it to end");
    assert!(h.plan_reload("api", None).await.is_ok(), "another app is not held");
    drop(first);
    assert!(h.plan_reload("web", None).await.is_ok(), "given back when the reload ends");
}

#[test]
fn waves_take_parallel_at_a_time_and_zero_counts_as_one() {
    let d = fake::description("web", (0..7).map(|i| row("web", i, None, State::Online, None)).collect(), 3);
    let waves = |p| Rollout::plan(&d, p).waves().map(<[u32]>::to_vec).collect::<Vec<_>>();
    assert_eq!(waves(None), vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    assert_eq!(waves(Some(0)).len(), 7);
    assert_eq!(waves(Some(9)), vec![(0..7).collect::<Vec<_>>()]);
}

#[test]
fn a_step_is_ok_only_with_a_new_pid_online_and_says_why_otherwise() {
    let online = row("web", 0, Some(7), State::Online, Some(1));
    assert!(judge("web", 0, Some(6), Some(&online), 1).ok);
    assert!(!judge("web", 0, Some(7), Some(&online), 1).ok, "the same run still serves");
    let gone = judge("web", 0, Some(6), None, 1);
    assert_eq!((gone.ok, gone.state.as_str(), gone.error.as_deref()), (false, "deleted", Some("deleted")));
    let mut crashed = row("web", 0, None, State::WaitingRestart, None);
    crashed.last_exit = fake::exit("");
    crashed.last_exit.as_mut().unwrap().error = None;
    assert_eq!(judge("web", 0, Some(6), Some(&crashed), 1).error.as_deref(), Some("crashed with exit code 1"));
}

#[tokio::test]
async fn a_start_waits_until_the_youngest_instance_has_been_up_long_enough() {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let h = fake::handle(move |msg| match msg {
        Msg::Control { target: Target::App(app), op: Op::Start, reply } => {
            let _ = reply.send(Ok(vec![app]));
        }
        Msg::Wait { reply, .. } => {
            let _ = reply.send(());
        }
        Msg::Status { reply } => {
            let mut seen = seen.lock().unwrap();
            seen.push(std::time::Instant::now());
            // Up 100 ms at the first look; dead (waiting to restart) at the second.
            let mut r = row("web", 0, Some(10), State::Online, Some(100));
            if seen.len() > 1 {
                r = row("web", 0, None, State::WaitingRestart, None);
                r.last_exit = fake::exit("exited at once");
            }
            let _ = reply.send(fake::status(vec![r]));
        }
        other => panic!("unexpected {other:?}"),
    });
    let report = h.start(super::Start::App("web".into())).await.unwrap();
    assert_eq!(report.failed, vec!["web:0 is waiting-restart: exited at once".to_owned()]);
    let asked = asked.lock().unwrap();
    assert!(asked.len() >= 2, "{asked:?}");
    assert!(asked[1] - asked[0] >= Duration::from_millis(149), "slept until it had been up 250 ms: {asked:?}");
}

#[test]
fn what_counts_as_failed_depends_on_whether_the_action_started_it() {
    let mut errored = row("web", 3, None, State::Errored, None);
    errored.last_exit = fake::exit("port 80 is already in use");
    let table = fake::status(vec![
        row("web", 0, Some(1), State::Online, Some(1)),
        row("web", 1, Some(2), State::Starting, Some(1)),
        row("web", 2, None, State::Stopped, None),
        errored,
        row("other", 0, None, State::Starting, None),
    ]);
    let apps = ["web".to_owned()];
    assert_eq!(failures(&table, &apps, false), vec!["web:1 is starting"]);
    assert_eq!(failures(&table, &apps, true), vec!["web:1 is starting", "web:3 is errored: port 80 is already in use"]);
}

#[tokio::test]
async fn every_request_to_a_gone_actor_says_the_daemon_is_shutting_down() {
    let h = fake::gone();
    assert!(matches!(h.status().await, Err(Error::ShuttingDown)));
    assert!(matches!(h.control(Target::All, Op::Stop).await, Err(Error::ShuttingDown)));
    assert!(matches!(h.start(super::Start::File { path: "rel.toml".into(), env: None, only: None }).await,
        Err(Error::Invalid(m)) if m == "config path must be absolute"));
}
