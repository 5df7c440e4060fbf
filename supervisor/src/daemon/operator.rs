//! An operator's direct actions on instances that change no lifecycle state:
//! `l4ctl signal` (PM2's `sendSignal`: a signal to the main process of each
//! online instance, the old run while a reload replaces it; never to the
//! daemon's own or another app's) and `l4ctl
//! reset` (restart counters back to zero, through the lifecycle as
//! `Fact::ResetCounters`), and which instances a [`Target`] names.

use nix::sys::signal::Signal;

use super::supervisor::Supervisor;
use super::{Error, Target};
use crate::lifecycle::Fact;
use crate::wire::types::Signalled;

/// The (app, instance) pairs `target` names; an unknown app or instance is an error.
pub(super) fn instances_of(sup: &Supervisor, target: &Target) -> Result<Vec<(String, u32)>, Error> {
    let of_app = |name: &String| -> Vec<(String, u32)> {
        sup.apps.get(name).map(|a| a.instances.iter().map(|i| (name.clone(), i.index)).collect()).unwrap_or_default()
    };
    match target {
        Target::All => Ok(sup.apps.iter().filter(|(_, a)| !a.deleting).flat_map(|(n, _)| of_app(n)).collect()),
        Target::App(n) if sup.apps.contains_key(n) => Ok(of_app(n)),
        Target::App(n) | Target::Instance(n, _) if !sup.apps.contains_key(n) => Err(Error::UnknownApp(n.clone())),
        Target::Instance(n, index) if sup.inst(n, *index).is_some() => Ok(vec![(n.clone(), *index)]),
        Target::Instance(n, index) => {
            let count = sup.apps.get(n).map_or(0, |a| a.instances.len());
            Err(Error::Invalid(format!(
                "`{n}` has no instance {index} (it has {count}: {n}:0 to {n}:{})",
                count.saturating_sub(1)
            )))
        }
        Target::App(n) => Err(Error::UnknownApp(n.clone())),
    }
}

/// Send `signal` to the main process of every running instance `target` names.
pub(super) fn signal(sup: &Supervisor, target: &Target, signal: Signal) -> Result<Vec<Signalled>, Error> {
    let mut sent = Vec::new();
    for (app, index) in instances_of(sup, target)? {
        // The run that serves: while a replace is under way, the old one (the new
        // run may not have set up its handlers yet); else an online run.
        let serving = sup.inst(&app, index).and_then(|i| match &i.lc.retiree {
            Some(old) => Some(old.pid),
            None => i.lc.pid.filter(|_| i.lc.state == crate::lifecycle::State::Online),
        });
        let Some(pid) = serving else { continue };
        let Ok(raw) = i32::try_from(pid) else { continue };
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), signal).is_ok() {
            tracing::info!(app = %app, instance = index, pid, signal = %signal, "signal sent");
            sent.push(Signalled { app, instance: index, pid });
        }
    }
    if sent.is_empty() {
        return Err(Error::Invalid("no online instance to signal".to_owned()));
    }
    Ok(sent)
}

/// Zero the restart counters of every instance `target` names.
pub(super) fn reset(sup: &mut Supervisor, target: &Target) -> Result<Vec<String>, Error> {
    let instances = instances_of(sup, target)?;
    let mut apps: Vec<String> = Vec::new();
    for (app, index) in instances {
        sup.feed(&app, index, Fact::ResetCounters);
        if !apps.contains(&app) {
            apps.push(app);
        }
    }
    Ok(apps)
}
