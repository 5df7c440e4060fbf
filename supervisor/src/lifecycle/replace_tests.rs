//! Table tests of readiness and replacement (README, "Readiness and rolling reload").

use super::tests::{CRASH, Clock, policy, ready_policy, sched};
use super::*;

/// Step `lc` through `facts` one at a time, returning each step's actions.
fn steps(lc: &mut Lifecycle, p: &RestartPolicy, clock: &mut Clock, facts: &[(u64, Fact)]) -> Vec<Vec<Action>> {
    facts
        .iter()
        .map(|(advance, fact)| {
            clock.ms += advance;
            lc.step(p, fact.clone(), clock.ctx(0.5))
        })
        .collect()
}

/// An instance online as pid 1 under `p`.
fn online(p: &RestartPolicy, clock: &mut Clock) -> Lifecycle {
    let mut lc = Lifecycle::default();
    steps(&mut lc, p, clock, &[(0, Fact::Start), (0, Fact::Spawned { pid: 1 })]);
    if p.wait_ready {
        lc.step(p, Fact::Ready { pid: 1 }, clock.ctx(0.5));
    }
    assert_eq!((lc.state, lc.pid), (State::Online, Some(1)));
    lc
}

#[test]
fn with_readiness_a_run_is_online_only_when_its_own_pid_says_ready() {
    let p = ready_policy();
    let mut lc = Lifecycle::default();
    let mut clock = Clock::new();
    let got = steps(&mut lc, &p, &mut clock, &[(0, Fact::Start), (0, Fact::Spawned { pid: 7 })]);
    assert_eq!(got[1], vec![Action::AwaitReady, sched(10_000, 1)]);
    assert_eq!(lc.state, State::Starting, "spawned but not ready");
    assert!(!lc.state.is_settled(), "`l4ctl start` waits for readiness");
    assert_eq!(lc.step(&p, Fact::Ready { pid: 8 }, clock.ctx(0.5)), vec![]);
    assert_eq!(lc.state, State::Starting, "another pid's READY=1 is not believed");
    assert_eq!(lc.step(&p, Fact::Ready { pid: 7 }, clock.ctx(0.5)), vec![]);
    assert_eq!(lc.state, State::Online);
    assert_eq!(lc.step(&p, Fact::Timer { epoch: 1 }, clock.ctx(0.5)), vec![], "the readiness timer is stale");
    assert_eq!(lc.state, State::Online);
}

#[test]
fn not_ready_within_listen_timeout_is_killed_and_backs_off_as_unstable() {
    let p = ready_policy();
    let mut lc = Lifecycle::default();
    let mut clock = Clock::new();
    steps(&mut lc, &p, &mut clock, &[(0, Fact::Start), (0, Fact::Spawned { pid: 7 })]);
    assert_eq!(lc.step(&p, Fact::Timer { epoch: 1 }, clock.ctx(0.5)), vec![Action::Kill]);
    assert_eq!(lc.state, State::Stopping);
    let got =
        steps(&mut lc, &p, &mut clock, &[(10, Fact::Exited { status: ExitStatus::Signal(9) }), (0, Fact::GroupGone)]);
    assert_eq!(got[0], vec![Action::AwaitGroup]);
    assert_eq!(got[1], vec![Action::Cleanup, sched(50, lc.epoch)]);
    assert_eq!(lc.state, State::WaitingRestart);
    assert_eq!(lc.unstable, 1);
    let exit = lc.last_exit.as_ref().unwrap();
    assert_eq!(exit.reason, "not-ready");
    assert_eq!(exit.error.as_deref(), Some("not ready within 10s (listen_timeout)"));
    assert_eq!(lc.restart_reason(), "not-ready");
}

#[test]
fn a_replace_keeps_the_old_run_until_the_new_one_is_ready() {
    let p = ready_policy();
    let mut clock = Clock::new();
    let mut lc = online(&p, &mut clock);
    assert_eq!(lc.step(&p, Fact::Replace, clock.ctx(0.5)), vec![Action::Retire, Action::Spawn]);
    assert_eq!((lc.state, lc.pid, lc.retiree.map(|r| r.pid)), (State::Starting, None, Some(1)));
    let got = steps(&mut lc, &p, &mut clock, &[(5, Fact::Spawned { pid: 2 })]);
    assert_eq!(got[0], vec![Action::AwaitReady, sched(10_000, lc.epoch)]);
    assert_eq!(lc.step(&p, Fact::Ready { pid: 1 }, clock.ctx(0.5)), vec![], "the old run's READY=1 is no sign");
    assert_eq!(lc.step(&p, Fact::Ready { pid: 2 }, clock.ctx(0.5)), vec![Action::StopRetiree]);
    assert_eq!((lc.state, lc.pid, lc.retiree), (State::Online, Some(2), None));
    assert_eq!(lc.last_exit.as_ref().map(|e| e.reason), Some("reloaded"));
    assert_eq!(lc.restarts_by_reason.get("reload"), Some(&1));
}

#[test]
fn a_replacement_that_is_not_ready_in_time_is_dropped_and_the_old_run_stays() {
    let p = ready_policy();
    let mut clock = Clock::new();
    let mut lc = online(&p, &mut clock);
    steps(&mut lc, &p, &mut clock, &[(0, Fact::Replace), (0, Fact::Spawned { pid: 2 })]);
    let epoch = lc.epoch;
    assert_eq!(lc.step(&p, Fact::Timer { epoch }, clock.ctx(0.5)), vec![Action::Revert]);
    assert_eq!((lc.state, lc.pid, lc.retiree), (State::Online, Some(1), None));
    assert_eq!(
        lc.last_exit.as_ref().and_then(|e| e.error.clone()).as_deref(),
        Some("not ready within 10s (listen_timeout)")
    );
    assert_eq!(lc.step(&p, Fact::Ready { pid: 2 }, clock.ctx(0.5)), vec![], "the dropped run is nobody");
    assert_eq!(lc.unstable, 0, "the instance itself never stopped serving");
}

#[test]
fn a_replacement_that_crashes_or_fails_to_spawn_reverts_to_the_old_run() {
    let p = ready_policy();
    let mut clock = Clock::new();
    let mut lc = online(&p, &mut clock);
    steps(&mut lc, &p, &mut clock, &[(0, Fact::Replace), (0, Fact::Spawned { pid: 2 })]);
    assert_eq!(lc.step(&p, CRASH, clock.ctx(0.5)), vec![Action::Revert]);
    assert_eq!((lc.state, lc.pid), (State::Online, Some(1)));
    assert_eq!(lc.last_exit.as_ref().map(|e| (e.reason, e.status)), Some(("crashed", Some(ExitStatus::Code(1)))));
    lc.step(&p, Fact::Replace, clock.ctx(0.5));
    assert_eq!(lc.step(&p, Fact::SpawnFailed { error: "no such file".into() }, clock.ctx(0.5)), vec![Action::Revert]);
    assert_eq!((lc.state, lc.pid), (State::Online, Some(1)));
}

#[test]
fn without_readiness_a_replacement_must_survive_min_uptime() {
    let p = policy();
    let mut clock = Clock::new();
    let mut lc = online(&p, &mut clock);
    let got = steps(&mut lc, &p, &mut clock, &[(0, Fact::Replace), (0, Fact::Spawned { pid: 2 })]);
    assert_eq!(got[1], vec![sched(1000, lc.epoch)]);
    assert_eq!(lc.state, State::Starting);
    let epoch = lc.epoch;
    assert_eq!(lc.step(&p, Fact::Timer { epoch }, clock.ctx(0.5)), vec![Action::StopRetiree]);
    assert_eq!((lc.state, lc.pid), (State::Online, Some(2)));
    // One that dies sooner never replaces anything.
    steps(&mut lc, &p, &mut clock, &[(0, Fact::Replace), (0, Fact::Spawned { pid: 3 })]);
    assert_eq!(lc.step(&p, CRASH, clock.ctx(0.5)), vec![Action::Revert]);
    assert_eq!((lc.state, lc.pid), (State::Online, Some(2)));
}

#[test]
fn the_old_run_dying_during_a_replace_leaves_a_plain_start() {
    let p = ready_policy();
    let mut clock = Clock::new();
    let mut lc = online(&p, &mut clock);
    steps(&mut lc, &p, &mut clock, &[(0, Fact::Replace), (0, Fact::Spawned { pid: 2 })]);
    let got = lc.step(&p, Fact::RetireeExited { status: ExitStatus::Signal(9) }, clock.ctx(0.5));
    assert_eq!((got, lc.state, lc.retiree), (vec![], State::Starting, None));
    assert_eq!(lc.step(&p, Fact::Ready { pid: 2 }, clock.ctx(0.5)), vec![]);
    assert_eq!((lc.state, lc.pid), (State::Online, Some(2)));
}

#[test]
fn stop_delete_or_restart_during_a_replace_stop_both_runs() {
    for (fact, then) in [(Fact::Stop, State::Stopped), (Fact::Restart, State::Starting)] {
        let p = ready_policy();
        let mut clock = Clock::new();
        let mut lc = online(&p, &mut clock);
        steps(&mut lc, &p, &mut clock, &[(0, Fact::Replace), (0, Fact::Spawned { pid: 2 })]);
        let got = lc.step(&p, fact.clone(), clock.ctx(0.5));
        assert_eq!(got, vec![Action::StopRetiree, Action::Terminate, sched(5000, lc.epoch)], "{fact:?}");
        assert_eq!((lc.state, lc.retiree), (State::Stopping, None));
        steps(&mut lc, &p, &mut clock, &[(10, Fact::Exited { status: ExitStatus::Signal(15) }), (0, Fact::GroupGone)]);
        assert_eq!(lc.state, then, "{fact:?}");
    }
}

#[test]
fn with_readiness_the_memory_ceiling_replaces_the_run_like_a_reload_step() {
    let p = ready_policy();
    let mut clock = Clock::new();
    let mut lc = online(&p, &mut clock);
    assert_eq!(lc.step(&p, Fact::MemoryExceeded, clock.ctx(0.5)), vec![Action::Retire, Action::Spawn]);
    steps(&mut lc, &p, &mut clock, &[(5, Fact::Spawned { pid: 2 })]);
    assert_eq!(lc.step(&p, Fact::Ready { pid: 2 }, clock.ctx(0.5)), vec![Action::StopRetiree]);
    assert_eq!(lc.last_exit.as_ref().map(|e| e.reason), Some("memory"));
    assert_eq!(lc.restarts_by_reason.get("memory"), Some(&1));
}

#[test]
fn over_the_memory_ceiling_an_app_that_binds_its_own_port_is_restarted_not_overlapped() {
    let p = RestartPolicy { can_overlap: false, ..ready_policy() };
    let mut lc = Lifecycle::default();
    let clock = Clock::new();
    lc.step(&p, Fact::Start, clock.ctx(0.5));
    lc.step(&p, Fact::Spawned { pid: 7 }, clock.ctx(0.5));
    lc.step(&p, Fact::Ready { pid: 7 }, clock.ctx(0.5));
    assert_eq!(lc.state, State::Online);
    let actions = lc.step(&p, Fact::MemoryExceeded, clock.ctx(0.5));
    assert_eq!(lc.state, State::Stopping, "{actions:?}");
    assert!(lc.retiree.is_none() && actions.contains(&Action::Terminate), "{actions:?}");
}
