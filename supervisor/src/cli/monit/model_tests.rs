//! The monit model without a terminal: selection, keys, charts' window, history, logs.

use super::{Action, LINE_CHARS, Monit, Pane, Update, WINDOW_SECS};
use crate::wire::types::{AppHistory, InstanceHistory, InstanceStatus, SCHEMA, State, StatusReport};

fn report(rows: &[(&str, u32, State)]) -> StatusReport {
    let instances = rows
        .iter()
        .map(|(app, i, state)| {
            let mut r = InstanceStatus::example(app, *i, Some(100 + i), *state, Some(1000));
            r.cpu_percent = Some(f64::from(*i));
            r.memory_bytes = Some(u64::from(*i + 1) << 20);
            r
        })
        .collect();
    StatusReport::of(instances)
}

#[test]
fn the_selection_follows_its_instance_and_moves_with_the_arrows() {
    let mut m = Monit::default();
    m.apply(Update::Status(Ok(report(&[("api", 0, State::Online), ("web", 0, State::Online)])), 1000.0));
    assert_eq!(m.selected, Some(("api".into(), 0)));
    m.key('↓');
    assert_eq!(m.selected, Some(("web".into(), 0)));
    m.key('↓');
    assert_eq!(m.selected, Some(("web".into(), 0)), "stays on the last row");
    // A new row before it: still the same instance.
    m.apply(Update::Status(
        Ok(report(&[("api", 0, State::Online), ("api", 1, State::Online), ("web", 0, State::Online)])),
        1001.0,
    ));
    assert_eq!(m.selected_index(), Some(2));
    // Its row goes: the first one is selected.
    m.apply(Update::Status(Ok(report(&[("api", 0, State::Online)])), 1002.0));
    assert_eq!(m.selected, Some(("api".into(), 0)));
}

#[test]
fn keys_ask_for_the_actions_on_the_selected_instance_or_its_app() {
    let mut m = Monit::default();
    m.apply(Update::Status(Ok(report(&[("web", 0, State::Online), ("web", 1, State::Stopped)])), 1000.0));
    assert_eq!(m.key('r'), Some(Action::Control { target: "web:0".into(), op: "restart" }));
    assert_eq!(m.key('s'), Some(Action::Control { target: "web:0".into(), op: "stop" }));
    assert_eq!(m.key('R'), Some(Action::Reload("web".into())));
    assert_eq!(m.key('+'), Some(Action::Scale("web".into(), 3)));
    assert_eq!(m.key('-'), Some(Action::Scale("web".into(), 1)));
    m.key('j');
    assert_eq!(m.key('s'), Some(Action::Control { target: "web:1".into(), op: "start" }), "a stopped one starts");
    assert_eq!(m.key('l'), None);
    assert_eq!(m.pane, Pane::Logs);
    m.key('l');
    assert_eq!(m.pane, Pane::Overview);
    assert!(!m.quit);
    m.key('q');
    assert!(m.quit);
}

#[test]
fn scaling_below_one_instance_is_refused_with_a_sentence() {
    let mut m = Monit::default();
    m.apply(Update::Status(Ok(report(&[("web", 0, State::Online)])), 1000.0));
    assert_eq!(m.key('-'), None);
    assert!(m.message.as_ref().is_some_and(|(s, failed)| *failed && s.contains("one instance")));
}

#[test]
fn the_charts_keep_five_minutes_and_start_with_the_daemons_history() {
    let mut m = Monit::default();
    let t0 = 1_764_417_600.0;
    m.apply(Update::Status(Ok(report(&[("web", 0, State::Online)])), t0));
    // 20 buckets of 5 s before the first live point; only the last 5 minutes are kept.
    let h = InstanceHistory {
        app: "web".into(),
        instance: 0,
        id: 0,
        start: t0 as u64 - 400,
        cpu_percent: (0..80).map(|i| Some(f64::from(i))).collect(),
        memory_bytes: (0..80).map(|_| Some(5 << 20)).collect(),
        marks: vec![],
    };
    m.apply(Update::History(AppHistory { schema: SCHEMA, app: "web".into(), step_secs: 5, instances: vec![h] }));
    let ts: Vec<f64> = m.points().map(|p| p.t).collect();
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "oldest first: {ts:?}");
    assert!(ts[0] >= t0 - WINDOW_SECS, "{}", ts[0]);
    assert_eq!(*ts.last().unwrap_or(&0.0), t0);
    for s in 1..=400 {
        m.apply(Update::Status(Ok(report(&[("web", 0, State::Online)])), t0 + f64::from(s)));
    }
    assert_eq!(m.points().count(), WINDOW_SECS as usize + 1);
}

#[test]
fn log_lines_lose_their_control_characters_and_their_excess() {
    let mut m = Monit::default();
    m.apply(Update::Status(Ok(report(&[("web", 0, State::Online)])), 1000.0));
    let long = "x".repeat(LINE_CHARS + 10);
    m.apply(Update::Logs("web".into(), vec![(Some(0), "\u{1b}[2Jhello\u{7}".into()), (None, long)]));
    assert_eq!(m.logs[0], "0| ·[2Jhello·");
    assert_eq!(m.logs[1].chars().count(), LINE_CHARS + 1);
    // Lines of an app that is no longer selected are not shown.
    m.apply(Update::Logs("api".into(), vec![(None, "other".into())]));
    assert_eq!(m.logs.len(), 2);
}

#[test]
fn events_become_short_sentences_and_unknown_ones_are_skipped() {
    let mut m = Monit::default();
    let e = serde_json::json!({"type": "restart", "app": "web", "instance": 1, "reason": "crash", "restarts": 3});
    m.apply(Update::Event(e));
    m.apply(Update::Event(serde_json::json!({"type": "novel"})));
    assert_eq!(m.events.len(), 1);
    assert!(m.events[0].ends_with("web:1 restarted (crash), 3 restarts"), "{}", m.events[0]);
}

#[test]
fn a_late_crash_answer_for_the_app_selected_before_is_not_shown_and_errored_starts() {
    let mut m = Monit::default();
    m.apply(Update::Status(Ok(report(&[("api", 0, State::Errored), ("web", 0, State::Online)])), 1000.0));
    assert_eq!(m.key('s'), Some(Action::Control { target: "api:0".into(), op: "start" }), "errored: start");
    m.key('j');
    m.apply(Update::Crash("api".into(), Some(vec!["api crashed".into()])));
    assert!(m.crash.is_none(), "api is no longer selected");
    m.apply(Update::Crash("web".into(), Some(vec!["web crashed".into()])));
    assert_eq!(m.crash.as_ref().map(|(a, _)| a.as_str()), Some("web"));
}

#[test]
fn a_daemon_that_does_not_answer_is_said_until_a_status_comes_and_the_table_is_kept() {
    let mut m = Monit::default();
    m.apply(Update::Status(Ok(report(&[("web", 0, State::Online)])), 1000.0));
    m.apply(Update::Done("restart web:0: done".into(), false));
    m.apply(Update::Status(Err("the daemon did not answer within 5 s".into()), 1001.0));
    assert_eq!(m.unreachable.as_deref(), Some("the daemon did not answer within 5 s"));
    assert_eq!(m.rows.len(), 1, "the last table stays on screen");
    m.apply(Update::Status(Ok(report(&[("web", 0, State::Online)])), 1002.0));
    assert!(m.unreachable.is_none());
    assert_eq!(m.message.as_ref().map(|(s, _)| s.as_str()), Some("restart web:0: done"));
}
