//! The attribution rules of [`super::Orphans`], on made-up process tables: the daemon
//! is pid 1000, its runs 2000 and 3000.

use std::collections::{HashMap, HashSet};

use nix::sys::signal::Signal::{SIGKILL, SIGTERM};

use super::*;

const ME: i32 = 1000;

/// A process table from `(pid, ppid)` pairs; every process started at tick `pid`.
fn table(rows: &[(i32, i32)]) -> Vec<Stat> {
    rows.iter()
        .map(|&(pid, ppid)| Stat {
            pid,
            state: b'S',
            ppid,
            pgid: pid,
            cpu_ticks: 0,
            threads: 1,
            rss_pages: 1,
            start: pid as u64,
        })
        .collect()
}

fn runs(r: &[i32]) -> HashSet<i32> {
    r.iter().copied().collect()
}

/// Helpers by pid; `forking`: a helper running a user's command was running at every
/// start time.
struct Known {
    pids: &'static [i32],
    forking: bool,
}

impl Helpers for Known {
    fn is_helper(&self, pid: i32, _: u64) -> bool {
        self.pids.contains(&pid)
    }
    fn forking_at(&self, _: u64) -> bool {
        self.forking
    }
}

const NONE: Known = Known { pids: &[], forking: false };

#[test]
fn a_process_seen_in_a_run_s_tree_is_that_run_s_once_re_parented() {
    let mut o = Orphans::default();
    // 2001 is a child of run 2000 (it left the group: setsid), 3001 of run 3000.
    o.scan(&table(&[(2000, ME), (2001, 2000), (3000, ME), (3001, 3000)]), ME, &runs(&[2000, 3000]), &NONE);
    assert_eq!(o.members(2000), vec![2000, 2001]);
    assert!(o.due(&runs(&[2000, 3000]), &HashMap::new()).is_empty(), "nothing is adrift yet");
    // Run 2000 ends: 2001 is re-parented to the daemon, and a child of it with it.
    o.scan(&table(&[(2001, ME), (2002, 2001), (3000, ME), (3001, 3000)]), ME, &runs(&[3000]), &NONE);
    assert_eq!(o.due(&runs(&[3000]), &HashMap::new()), vec![(2001, SIGKILL), (2002, SIGKILL)]);
}

#[test]
fn a_stop_signals_what_came_from_the_stopped_run_and_nothing_else() {
    let mut o = Orphans::default();
    o.scan(&table(&[(2000, ME), (2001, 2000), (3000, ME), (3001, 3000)]), ME, &runs(&[2000, 3000]), &NONE);
    // Both children were re-parented while their runs still run (their parents were
    // not the runs themselves in real life; here the scan saw them in the trees).
    o.scan(&table(&[(2000, ME), (2001, ME), (3000, ME), (3001, ME)]), ME, &runs(&[2000, 3000]), &NONE);
    let stop_2000 = HashMap::from([(2000, SIGTERM)]);
    assert_eq!(o.due(&runs(&[2000, 3000]), &stop_2000), vec![(2001, SIGTERM)]);
    let kill_both = HashMap::from([(2000, SIGKILL), (3000, SIGKILL)]);
    assert_eq!(o.due(&runs(&[2000, 3000]), &kill_both), vec![(2001, SIGKILL), (3001, SIGKILL)]);
}

#[test]
fn one_that_escaped_unseen_ends_when_every_run_it_may_come_from_has() {
    let mut o = Orphans::default();
    // 4000 is adrift at the first scan: any of the two runs may have started it.
    o.scan(&table(&[(2000, ME), (3000, ME), (4000, ME)]), ME, &runs(&[2000, 3000]), &NONE);
    let live = runs(&[2000, 3000]);
    assert!(o.due(&live, &HashMap::from([(2000, SIGTERM)])).is_empty(), "3000 may be its run and is not stopping");
    assert_eq!(o.due(&live, &HashMap::from([(2000, SIGTERM), (3000, SIGKILL)])), vec![(4000, SIGKILL)]);
    // A run started later is not one of its runs.
    o.scan(&table(&[(3000, ME), (4000, ME), (5000, ME)]), ME, &runs(&[3000, 5000]), &NONE);
    assert!(o.due(&runs(&[3000, 5000]), &HashMap::new()).is_empty());
    assert_eq!(o.due(&runs(&[3000, 5000]), &HashMap::from([(3000, SIGTERM)])), vec![(4000, SIGTERM)]);
    assert_eq!(o.due(&runs(&[5000]), &HashMap::new()), vec![(4000, SIGKILL)], "3000 ended");
}

#[test]
fn one_adrift_with_no_run_alive_is_killed_and_helpers_never_are() {
    let mut o = Orphans::default();
    let helper = Known { pids: &[6000], forking: false };
    o.scan(&table(&[(4000, ME), (6000, ME), (6001, 6000), (6002, 6001)]), ME, &runs(&[]), &helper);
    assert_eq!(o.due(&runs(&[]), &HashMap::new()), vec![(4000, SIGKILL)]);
    // What a helper started stays the helper's after the helper is gone.
    o.scan(&table(&[(6001, ME), (6002, 6001)]), ME, &runs(&[]), &NONE);
    o.scan(&table(&[(6002, ME)]), ME, &runs(&[]), &NONE);
    assert!(o.due(&runs(&[]), &HashMap::new()).is_empty());
}

#[test]
fn a_forking_helper_s_window_never_takes_what_a_scan_saw_in_a_run() {
    let mut o = Orphans::default();
    let window = Known { pids: &[], forking: true };
    o.scan(&table(&[(2000, ME), (2001, 2000)]), ME, &runs(&[2000]), &window);
    o.scan(&table(&[(2000, ME), (2001, ME), (4000, ME)]), ME, &runs(&[2000]), &window);
    assert_eq!(
        o.due(&runs(&[2000]), &HashMap::from([(2000, SIGTERM)])),
        vec![(2001, SIGTERM)],
        "2001 was seen in run 2000; 4000, unseen, started while the helper ran"
    );
}

#[test]
fn a_stopping_run_whose_main_process_ended_keeps_what_drains() {
    let mut o = Orphans::default();
    // The shell (2000) died on SIGTERM; its child drains, re-parented, in the run's
    // group; the run is alive until its clean-up.
    let mut t = table(&[(2001, ME), (3000, ME)]);
    t[0].pgid = 2000;
    o.scan(&t, ME, &runs(&[2000, 3000]), &NONE);
    assert!(o.due(&runs(&[2000, 3000]), &HashMap::new()).is_empty());
    assert!(o.due(&runs(&[2000, 3000]), &HashMap::from([(3000, SIGKILL)])).is_empty(), "it is 2000's, not 3000's");
    assert_eq!(o.due(&runs(&[3000]), &HashMap::new()), vec![(2001, SIGKILL)], "2000 was cleaned up");
}

#[test]
fn as_a_container_s_init_the_daemon_leaves_unseen_orphans_alone() {
    let mut o = Orphans::default();
    let t = table(&[(2000, 1), (4000, 1)]);
    o.scan(&t, 1, &runs(&[2000]), &NONE);
    assert!(o.due(&runs(&[]), &HashMap::new()).is_empty());
}

#[test]
fn a_reused_pid_is_a_new_process() {
    let mut o = Orphans::default();
    o.scan(&table(&[(2000, ME), (2001, 2000)]), ME, &runs(&[2000]), &NONE);
    let mut t = table(&[(2000, ME), (2001, ME), (3000, ME)]);
    t[1].start = 99_999; // 2001 ended and its pid went to a process seen nowhere
    o.scan(&t, ME, &runs(&[2000, 3000]), &NONE);
    assert!(o.due(&runs(&[2000, 3000]), &HashMap::from([(2000, SIGTERM)])).is_empty());
}
