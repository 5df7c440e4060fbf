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

fn no_helper(_: i32, _: u64) -> bool {
    false
}

#[test]
fn a_process_seen_in_a_run_s_tree_is_that_run_s_once_re_parented() {
    let mut o = Orphans::default();
    // 2001 is a child of run 2000 (it left the group: setsid), 3001 of run 3000.
    o.scan(&table(&[(2000, ME), (2001, 2000), (3000, ME), (3001, 3000)]), ME, &runs(&[2000, 3000]), no_helper);
    assert_eq!(o.members(2000), vec![2000, 2001]);
    assert!(o.due(&runs(&[2000, 3000]), &HashMap::new()).is_empty(), "nothing is adrift yet");
    // Run 2000 ends: 2001 is re-parented to the daemon, and a child of it with it.
    o.scan(&table(&[(2001, ME), (2002, 2001), (3000, ME), (3001, 3000)]), ME, &runs(&[3000]), no_helper);
    assert_eq!(o.due(&runs(&[3000]), &HashMap::new()), vec![(2001, SIGKILL), (2002, SIGKILL)]);
}

#[test]
fn a_stop_signals_what_came_from_the_stopped_run_and_nothing_else() {
    let mut o = Orphans::default();
    o.scan(&table(&[(2000, ME), (2001, 2000), (3000, ME), (3001, 3000)]), ME, &runs(&[2000, 3000]), no_helper);
    // Both children were re-parented while their runs still run (their parents were
    // not the runs themselves in real life; here the scan saw them in the trees).
    o.scan(&table(&[(2000, ME), (2001, ME), (3000, ME), (3001, ME)]), ME, &runs(&[2000, 3000]), no_helper);
    let stop_2000 = HashMap::from([(2000, SIGTERM)]);
    assert_eq!(o.due(&runs(&[2000, 3000]), &stop_2000), vec![(2001, SIGTERM)]);
    let kill_both = HashMap::from([(2000, SIGKILL), (3000, SIGKILL)]);
    assert_eq!(o.due(&runs(&[2000, 3000]), &kill_both), vec![(2001, SIGKILL), (3001, SIGKILL)]);
}

#[test]
fn one_that_escaped_unseen_ends_when_every_run_it_may_come_from_has() {
    let mut o = Orphans::default();
    // 4000 is adrift at the first scan: any of the two runs may have started it.
    o.scan(&table(&[(2000, ME), (3000, ME), (4000, ME)]), ME, &runs(&[2000, 3000]), no_helper);
    let live = runs(&[2000, 3000]);
    assert!(o.due(&live, &HashMap::from([(2000, SIGTERM)])).is_empty(), "3000 may be its run and is not stopping");
    assert_eq!(o.due(&live, &HashMap::from([(2000, SIGTERM), (3000, SIGKILL)])), vec![(4000, SIGKILL)]);
    // A run started later is not one of its runs.
    o.scan(&table(&[(3000, ME), (4000, ME), (5000, ME)]), ME, &runs(&[3000, 5000]), no_helper);
    assert!(o.due(&runs(&[3000, 5000]), &HashMap::new()).is_empty());
    assert_eq!(o.due(&runs(&[3000, 5000]), &HashMap::from([(3000, SIGTERM)])), vec![(4000, SIGTERM)]);
    assert_eq!(o.due(&runs(&[5000]), &HashMap::new()), vec![(4000, SIGKILL)], "3000 ended");
}

#[test]
fn one_adrift_with_no_run_alive_is_killed_and_helpers_never_are() {
    let mut o = Orphans::default();
    let helper = |pid: i32, _| pid == 6000 || pid == 6001;
    o.scan(&table(&[(4000, ME), (6000, ME), (6001, 6000), (6002, 6001)]), ME, &runs(&[]), helper);
    assert_eq!(o.due(&runs(&[]), &HashMap::new()), vec![(4000, SIGKILL)]);
    // What a helper started stays the helper's after the helper is gone.
    o.scan(&table(&[(6001, ME), (6002, 6001)]), ME, &runs(&[]), helper);
    o.scan(&table(&[(6002, ME)]), ME, &runs(&[]), no_helper);
    assert!(o.due(&runs(&[]), &HashMap::new()).is_empty());
}

#[test]
fn a_reused_pid_is_a_new_process() {
    let mut o = Orphans::default();
    o.scan(&table(&[(2000, ME), (2001, 2000)]), ME, &runs(&[2000]), no_helper);
    let mut t = table(&[(2000, ME), (2001, ME), (3000, ME)]);
    t[1].start = 99_999; // 2001 ended and its pid went to a process seen nowhere
    o.scan(&t, ME, &runs(&[2000, 3000]), no_helper);
    assert!(o.due(&runs(&[2000, 3000]), &HashMap::from([(2000, SIGTERM)])).is_empty());
}
