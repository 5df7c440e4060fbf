//! Table-driven tests of the lifecycle state machine, named after the README's
//! "Restart policy" rules they prove.

use super::*;

pub(super) fn policy() -> RestartPolicy {
    RestartPolicy {
        autorestart: Autorestart::OnFailure,
        stop_exit_codes: vec![0],
        min_uptime: Duration::from_secs(1),
        max_restarts: 3,
        restart_delay: Duration::from_millis(100),
        restart_delay_max: Duration::from_secs(30),
        crash_loop_max_retries: None,
        kill_timeout: Duration::from_secs(5),
        wait_ready: false,
        can_overlap: true,
        listen_timeout: Duration::from_secs(10),
    }
}

pub(super) fn ready_policy() -> RestartPolicy {
    RestartPolicy { wait_ready: true, ..policy() }
}

pub(super) struct Clock {
    pub(super) base: Instant,
    pub(super) ms: u64,
}

impl Clock {
    pub(super) fn new() -> Self {
        Clock { base: Instant::now(), ms: 0 }
    }
    pub(super) fn ctx(&self, jitter: f64) -> Ctx {
        Ctx { now: self.base + Duration::from_millis(self.ms), wall: SystemTime::UNIX_EPOCH, jitter }
    }
}

/// Run `(advance_ms, fact) -> (expected state, expected actions)` rows against one instance.
fn run(policy: &RestartPolicy, rows: &[(u64, Fact, State, Vec<Action>)]) -> Lifecycle {
    let mut lc = Lifecycle::default();
    let mut clock = Clock::new();
    for (i, (advance, fact, state, actions)) in rows.iter().enumerate() {
        clock.ms += advance;
        let got = lc.step(policy, fact.clone(), clock.ctx(0.5));
        assert_eq!((&lc.state, &got), (state, actions), "row {i}: {fact:?}");
    }
    lc
}

pub(super) fn sched(ms: u64, epoch: u64) -> Action {
    Action::Schedule { after: Duration::from_millis(ms), epoch }
}

pub(super) const CRASH: Fact = Fact::Exited { status: ExitStatus::Code(1) };

#[test]
fn start_spawns_and_spawned_is_online() {
    let lc = run(
        &policy(),
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 42 }, State::Online, vec![]),
            (0, Fact::Start, State::Online, vec![]),
        ],
    );
    assert_eq!(lc.pid, Some(42));
    assert_eq!(lc.restarts, 0);
}

#[test]
fn crash_after_stable_run_restarts_at_once() {
    let lc = run(
        &policy(),
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 1 }, State::Online, vec![]),
            (5000, CRASH, State::Starting, vec![Action::Cleanup, Action::Spawn]),
        ],
    );
    assert_eq!(lc.restarts, 1);
    assert_eq!(lc.last_exit.as_ref().map(|e| e.reason), Some("crashed"));
}

#[test]
fn unstable_runs_back_off_exponentially_with_jitter() {
    // jitter 0.5: delays are half of 100, 200, 400 ms.
    let lc = run(
        &policy(),
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 1 }, State::Online, vec![]),
            (10, CRASH, State::WaitingRestart, vec![Action::Cleanup, sched(50, 2)]),
            (50, Fact::Timer { epoch: 2 }, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 2 }, State::Online, vec![]),
            (10, CRASH, State::WaitingRestart, vec![Action::Cleanup, sched(100, 4)]),
            (100, Fact::Timer { epoch: 4 }, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 3 }, State::Online, vec![]),
        ],
    );
    assert_eq!(lc.unstable, 2);
    assert_eq!(lc.restarts, 2);
}

#[test]
fn backoff_is_capped_and_full_jitter() {
    let p = policy();
    assert_eq!(backoff(&p, 1, 0.0), Duration::ZERO);
    assert_eq!(backoff(&p, 1, 1.0), Duration::from_millis(100));
    assert_eq!(backoff(&p, 4, 1.0), Duration::from_millis(800));
    assert_eq!(backoff(&p, 20, 1.0), Duration::from_secs(30));
    assert_eq!(backoff(&p, u32::MAX, 1.0), Duration::from_secs(30));
}

#[test]
fn max_restarts_unstable_runs_enter_crash_loop_which_retries_forever() {
    let p = policy();
    let mut lc = Lifecycle::default();
    let mut clock = Clock::new();
    lc.step(&p, Fact::Start, clock.ctx(0.0));
    for i in 0..50 {
        lc.step(&p, Fact::Spawned { pid: i }, clock.ctx(0.0));
        clock.ms += 10;
        let actions = lc.step(&p, CRASH, clock.ctx(0.0));
        let expected_state = if i + 1 >= p.max_restarts { State::CrashLoop } else { State::WaitingRestart };
        assert_eq!(lc.state, expected_state, "run {i}");
        if lc.state == State::CrashLoop {
            assert_eq!(
                actions,
                vec![Action::Cleanup, Action::Schedule { after: p.restart_delay_max, epoch: lc.epoch }]
            );
            assert_eq!(lc.next_retry, Some(clock.ctx(0.0).now + p.restart_delay_max));
        }
        let epoch = lc.epoch;
        assert_eq!(lc.step(&p, Fact::Timer { epoch }, clock.ctx(0.0)), vec![Action::Spawn]);
    }
    assert_eq!(lc.restarts, 50);
}

#[test]
fn crash_loop_gives_up_only_when_configured() {
    let mut p = policy();
    p.max_restarts = 1;
    p.crash_loop_max_retries = Some(1);
    let lc = run(
        &p,
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 1 }, State::Online, vec![]),
            (
                10,
                CRASH,
                State::CrashLoop,
                vec![Action::Cleanup, Action::Schedule { after: Duration::from_secs(30), epoch: 2 }],
            ),
            (0, Fact::Timer { epoch: 2 }, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 2 }, State::Online, vec![]),
            (10, CRASH, State::Errored, vec![Action::Cleanup]),
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
        ],
    );
    assert_eq!(lc.unstable, 0, "a manual start resets the counters");
}

#[test]
fn a_stable_run_resets_the_unstable_count() {
    let lc = run(
        &policy(),
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 1 }, State::Online, vec![]),
            (10, CRASH, State::WaitingRestart, vec![Action::Cleanup, sched(50, 2)]),
            (50, Fact::Timer { epoch: 2 }, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 2 }, State::Online, vec![]),
            (1500, CRASH, State::Starting, vec![Action::Cleanup, Action::Spawn]),
        ],
    );
    assert_eq!(lc.unstable, 0);
}

#[test]
fn stop_exit_codes_do_not_restart_but_always_does() {
    let clean = Fact::Exited { status: ExitStatus::Code(0) };
    run(
        &policy(),
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 1 }, State::Online, vec![]),
            (10, clean.clone(), State::Stopped, vec![Action::Cleanup]),
        ],
    );
    let mut always = policy();
    always.autorestart = Autorestart::Always;
    run(
        &always,
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 1 }, State::Online, vec![]),
            (5000, clean, State::Starting, vec![Action::Cleanup, Action::Spawn]),
        ],
    );
    let mut never = policy();
    never.autorestart = Autorestart::Never;
    run(
        &never,
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 1 }, State::Online, vec![]),
            (10, Fact::Exited { status: ExitStatus::Signal(9) }, State::Stopped, vec![Action::Cleanup]),
        ],
    );
}

#[test]
fn with_no_stop_exit_codes_exit_0_restarts_as_pm2_and_is_not_a_crash() {
    let pm2 = RestartPolicy { stop_exit_codes: Vec::new(), ..policy() };
    let lc = run(
        &pm2,
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 1 }, State::Online, vec![]),
            (5000, Fact::Exited { status: ExitStatus::Code(0) }, State::Starting, vec![Action::Cleanup, Action::Spawn]),
        ],
    );
    assert_eq!(lc.last_exit.as_ref().map(|e| e.reason), Some("exited"));
}

#[test]
fn stop_terminates_then_kills_after_kill_timeout() {
    let lc = run(
        &policy(),
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 1 }, State::Online, vec![]),
            (0, Fact::Stop, State::Stopping, vec![Action::Terminate, sched(5000, 2)]),
            (5000, Fact::Timer { epoch: 2 }, State::Stopping, vec![Action::Kill]),
            (1, Fact::Exited { status: ExitStatus::Signal(9) }, State::Stopping, vec![Action::AwaitGroup]),
            (0, Fact::GroupGone, State::Stopped, vec![Action::Cleanup]),
            // The kill timer of a finished stop is stale.
            (0, Fact::Timer { epoch: 2 }, State::Stopped, vec![]),
        ],
    );
    assert_eq!(lc.last_exit.as_ref().map(|e| e.reason), Some("stopped"));
}

#[test]
fn stop_while_waiting_cancels_the_restart() {
    run(
        &policy(),
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 1 }, State::Online, vec![]),
            (10, CRASH, State::WaitingRestart, vec![Action::Cleanup, sched(50, 2)]),
            (0, Fact::Stop, State::Stopped, vec![]),
            (50, Fact::Timer { epoch: 2 }, State::Stopped, vec![]),
        ],
    );
}

#[test]
fn restart_stops_then_starts_and_delete_removes() {
    let lc = run(
        &policy(),
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 1 }, State::Online, vec![]),
            (0, Fact::Restart, State::Stopping, vec![Action::Terminate, sched(5000, 2)]),
            (10, Fact::Exited { status: ExitStatus::Signal(15) }, State::Stopping, vec![Action::AwaitGroup]),
            (0, Fact::GroupGone, State::Starting, vec![Action::Cleanup, Action::Spawn]),
            (0, Fact::Spawned { pid: 2 }, State::Online, vec![]),
            (0, Fact::Delete, State::Stopping, vec![Action::Terminate, sched(5000, 4)]),
            (10, Fact::Exited { status: ExitStatus::Signal(15) }, State::Stopping, vec![Action::AwaitGroup]),
            (0, Fact::GroupGone, State::Stopped, vec![Action::Cleanup, Action::Remove]),
        ],
    );
    assert_eq!(lc.restarts, 1);
}

#[test]
fn spawn_failure_counts_as_an_unstable_run() {
    let lc = run(
        &policy(),
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::SpawnFailed { error: "not found".into() }, State::WaitingRestart, vec![sched(50, 2)]),
        ],
    );
    assert_eq!(lc.last_exit.as_ref().map(|e| e.reason), Some("spawn-failed"));
}

#[test]
fn the_group_outliving_its_leader_is_waited_for_until_the_kill_timer() {
    // `sh start.sh` without exec: SIGTERM ends the shell first, the server drains on.
    run(
        &policy(),
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 1 }, State::Online, vec![]),
            (0, Fact::Stop, State::Stopping, vec![Action::Terminate, sched(5000, 2)]),
            (5, Fact::Exited { status: ExitStatus::Signal(15) }, State::Stopping, vec![Action::AwaitGroup]),
            (4995, Fact::Timer { epoch: 2 }, State::Stopping, vec![Action::Kill]),
            (1, Fact::GroupGone, State::Stopped, vec![Action::Cleanup]),
        ],
    );
}

#[test]
fn a_pending_delete_is_not_undone_by_stop_or_start() {
    run(
        &policy(),
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 1 }, State::Online, vec![]),
            (0, Fact::Delete, State::Stopping, vec![Action::Terminate, sched(5000, 2)]),
            (0, Fact::Stop, State::Stopping, vec![]),
            (0, Fact::Restart, State::Stopping, vec![]),
            (10, Fact::Exited { status: ExitStatus::Signal(15) }, State::Stopping, vec![Action::AwaitGroup]),
            (0, Fact::GroupGone, State::Stopped, vec![Action::Cleanup, Action::Remove]),
        ],
    );
}

#[test]
fn a_failed_spawn_is_never_stable_even_with_min_uptime_zero() {
    let mut p = policy();
    p.min_uptime = Duration::ZERO;
    let lc = run(
        &p,
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::SpawnFailed { error: "ENOENT".into() }, State::WaitingRestart, vec![sched(50, 2)]),
        ],
    );
    assert_eq!(lc.unstable, 1);
}

#[test]
fn delete_while_in_crash_loop_removes_at_once() {
    let mut p = policy();
    p.max_restarts = 1;
    run(
        &p,
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 1 }, State::Online, vec![]),
            (
                10,
                CRASH,
                State::CrashLoop,
                vec![Action::Cleanup, Action::Schedule { after: Duration::from_secs(30), epoch: 2 }],
            ),
            (0, Fact::Delete, State::Stopped, vec![Action::Remove]),
            (30_000, Fact::Timer { epoch: 2 }, State::Stopped, vec![]),
        ],
    );
}

#[test]
fn start_while_waiting_cancels_the_old_timer() {
    run(
        &policy(),
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 1 }, State::Online, vec![]),
            (10, CRASH, State::WaitingRestart, vec![Action::Cleanup, sched(50, 2)]),
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 2 }, State::Online, vec![]),
            (50, Fact::Timer { epoch: 2 }, State::Online, vec![]),
        ],
    );
}

#[test]
fn max_restarts_zero_enters_crash_loop_at_once_and_zero_retries_gives_up() {
    let mut p = policy();
    p.max_restarts = 0;
    p.crash_loop_max_retries = Some(0);
    run(
        &p,
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 1 }, State::Online, vec![]),
            (10, CRASH, State::Errored, vec![Action::Cleanup]),
        ],
    );
}

#[test]
fn always_restarts_even_on_a_stop_exit_code() {
    let mut p = policy();
    p.autorestart = Autorestart::Always;
    run(
        &p,
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 1 }, State::Online, vec![]),
            (
                10,
                Fact::Exited { status: ExitStatus::Code(0) },
                State::WaitingRestart,
                vec![Action::Cleanup, sched(50, 2)],
            ),
        ],
    );
}

#[test]
fn counters_saturate_instead_of_overflowing() {
    let p = policy();
    let clock = Clock::new();
    let mut lc = Lifecycle { restarts: u32::MAX, ..Lifecycle::default() };
    lc.step(&p, Fact::Start, clock.ctx(0.0));
    lc.step(&p, Fact::Spawned { pid: 1 }, clock.ctx(0.0));
    lc.unstable = u32::MAX;
    lc.step(&p, CRASH, clock.ctx(0.0));
    assert_eq!(lc.unstable, u32::MAX);
    let epoch = lc.epoch;
    lc.step(&p, Fact::Timer { epoch }, clock.ctx(0.0));
    assert_eq!(lc.restarts, u32::MAX);
}

#[test]
fn memory_restarts_are_graceful_recorded_as_memory_and_counted_by_reason() {
    let lc = run(
        &policy(),
        &[
            (0, Fact::Start, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 1 }, State::Online, vec![]),
            (10, CRASH, State::WaitingRestart, vec![Action::Cleanup, sched(50, 2)]),
            (50, Fact::Timer { epoch: 2 }, State::Starting, vec![Action::Spawn]),
            (0, Fact::Spawned { pid: 2 }, State::Online, vec![]),
            (5000, Fact::MemoryExceeded, State::Stopping, vec![Action::Terminate, sched(5000, 4)]),
            (10, Fact::Exited { status: ExitStatus::Signal(15) }, State::Stopping, vec![Action::AwaitGroup]),
            (0, Fact::GroupGone, State::Starting, vec![Action::Cleanup, Action::Spawn]),
            (0, Fact::Spawned { pid: 3 }, State::Online, vec![]),
            (0, Fact::MemoryKill, State::Stopping, vec![Action::Kill]),
            (1, Fact::Exited { status: ExitStatus::Signal(9) }, State::Stopping, vec![Action::AwaitGroup]),
            (0, Fact::GroupGone, State::Starting, vec![Action::Cleanup, Action::Spawn]),
        ],
    );
    assert_eq!(lc.last_exit.as_ref().map(|e| e.reason), Some("memory"));
    assert_eq!(lc.restarts_by_reason.get("memory"), Some(&2));
    assert_eq!(lc.restarts_by_reason.get("crash"), Some(&1));
    assert_eq!(lc.unstable, 0, "a memory restart does not count as unstable");
}
