//! Carrying out sampling and the memory ceiling for the supervisor: every
//! `sample_interval` a pass over all running instances. An instance with a
//! ceiling is re-sampled every 100 ms while it is young (its first 5 s), at half
//! its ceiling or more, or growing fast enough to reach it before two more
//! regular samples: a fast leak is caught before it doubles the ceiling.

use super::Msg;
use super::supervisor::Supervisor;
use crate::lifecycle::{Fact, State};
use crate::monitor::memory::{FAST_INTERVAL, Verdict, YOUNG, past_backstop};

impl Supervisor {
    /// A full pass: every running instance's tree, then the memory checks.
    pub(super) fn sample_all(&mut self) {
        let roots: Vec<(u32, i32)> = self
            .apps
            .values()
            .flat_map(|a| a.instances.iter())
            .filter_map(|i| i.lc.pid.map(|p| (i.id, p as i32)))
            .collect();
        let samples = self.sampler.sample(&roots);
        // Without a cgroup per run, a full pass also tracks orphans and ends those
        // whose runs have all ended.
        if let Some(stats) = self.sampler.take_scan() {
            self.scan_orphans(stats);
            self.end_adrift(&Default::default(), &Default::default());
        }
        let ticks = self.ticks_per_sec;
        let now = crate::crash::now_ms() / 1000;
        for inst in self.apps.values_mut().flat_map(|a| a.instances.iter_mut()) {
            if let Some(t) = samples.get(&inst.id) {
                inst.usage.record(t, ticks, true);
                inst.history.record(now, inst.usage.cpu_percent, t.rss_bytes);
            }
        }
        self.sample_retirees();
        self.check_memory();
    }

    /// Old runs still serving while their successors start (a memory replace): their
    /// known processes, for the 1.5x backstop.
    fn sample_retirees(&mut self) {
        let ticks = self.ticks_per_sec;
        for inst in self.apps.values_mut().flat_map(|a| a.instances.iter_mut()) {
            if let Some(old) = inst.retiree.as_mut() {
                let t = self.sampler.resample(&old.usage.pids);
                old.usage.record(&t, ticks, false);
            }
        }
    }

    /// The fast pass: only instances under watch, only their known processes.
    pub(super) fn sample_watched(&mut self) {
        self.fast_pending = false;
        let ticks = self.ticks_per_sec;
        for inst in self.apps.values_mut().flat_map(|a| a.instances.iter_mut()) {
            if inst.usage.watched && matches!(inst.lc.state, State::Online | State::Stopping) {
                let t = self.sampler.resample(&inst.usage.pids);
                inst.usage.record(&t, ticks, false);
            }
        }
        self.sample_retirees();
        self.check_memory();
    }

    fn check_memory(&mut self) {
        let mut facts = Vec::new();
        let mut watching = false;
        let horizon = self.sample_interval * 2;
        let mut kill_retirees = Vec::new();
        for (name, app) in &mut self.apps {
            let Some(ceiling) = app.spec.max_memory_restart else { continue };
            for inst in &mut app.instances {
                // The old run of a memory replace keeps serving until its successor is
                // ready, but never past the 1.5x backstop.
                if let Some(old) = &mut inst.retiree {
                    watching = true;
                    if old.usage.rss_bytes.is_some_and(|rss| past_backstop(rss, ceiling.0)) {
                        old.backstopped = true;
                        tracing::warn!(app = %name, instance = inst.index, pid = old.pid, "the replaced run passed 1.5x the memory ceiling; SIGKILL");
                        kill_retirees.push((old.pgid, old.tag.clone()));
                    }
                }
                // A stop under way (a graceful memory restart included) is still watched
                // for the 1.5x backstop: a leak that ignores SIGTERM is killed, not left
                // to grow for the whole kill_timeout.
                if inst.lc.state == State::Stopping && inst.lc.pid.is_some() {
                    if let Some(rss) = inst.usage.rss_bytes
                        && past_backstop(rss, ceiling.0)
                    {
                        facts.push((name.clone(), inst.index, Fact::MemoryKill, rss, ceiling.0));
                    }
                    inst.usage.watched = true;
                    watching = true;
                    continue;
                }
                let (Some(rss), true) = (inst.usage.rss_bytes, inst.lc.state == State::Online) else {
                    inst.usage.watched = false;
                    continue;
                };
                let verdict = inst.usage.guard.check(rss, ceiling.0, app.spec.memory_samples);
                let young = inst.lc.started_at.is_some_and(|t| t.elapsed() < YOUNG);
                inst.usage.watched = verdict != Verdict::Fine || young || inst.usage.heading_for(ceiling.0, horizon);
                watching |= inst.usage.watched;
                let fact = match verdict {
                    Verdict::Restart => Fact::MemoryExceeded,
                    Verdict::Kill => Fact::MemoryKill,
                    Verdict::Fine | Verdict::Watch => continue,
                };
                tracing::warn!(app = %name, instance = inst.index, rss, ceiling = ceiling.0, action = ?verdict, "memory ceiling reached");
                facts.push((name.clone(), inst.index, fact, rss, ceiling.0));
            }
        }
        if !kill_retirees.is_empty() {
            self.scan_before_signals();
        }
        for (pgid, tag) in kill_retirees {
            super::reaping::signal_run(&mut self.strays, pgid, &tag, nix::sys::signal::Signal::SIGKILL);
        }
        for (name, index, fact, rss, ceiling) in facts {
            self.emit(super::Event::Memory {
                app: name.clone(),
                instance: index,
                rss_bytes: rss,
                ceiling_bytes: ceiling,
            });
            self.feed(&name, index, fact);
        }
        if watching {
            self.arm_fast_sample();
        }
    }

    /// Make sure a `FastSample` comes within `FAST_INTERVAL`.
    pub(super) fn arm_fast_sample(&mut self) {
        if self.fast_pending {
            return;
        }
        self.fast_pending = true;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(FAST_INTERVAL).await;
            let _ = tx.send(Msg::FastSample).await;
        });
    }
}
