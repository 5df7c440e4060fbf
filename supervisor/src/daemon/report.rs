//! Turning the supervisor's live table into the API's status and describe answers.
//! Read-only: nothing here changes an instance.

use super::Error;
use super::supervisor::{Inst, Supervisor, ms_since, ms_until};
use crate::config::AppSpec;
use crate::lifecycle::ExitStatus;
use crate::monitor::history::History;
use crate::wire::types::{AppDescription, ExitReport, InstanceStatus, SCHEMA, StatusReport};

pub(super) fn status(sup: &Supervisor) -> StatusReport {
    let mut instances: Vec<InstanceStatus> =
        sup.apps.values().flat_map(|a| a.instances.iter().map(move |i| row(&a.spec, i))).collect();
    instances.sort_by_key(|i| i.id);
    let log_dropped_bytes = sup.apps.keys().map(|name| (name.clone(), sup.logs.counters(name).dropped_bytes)).collect();
    StatusReport { log_dropped_bytes, ..StatusReport::of(instances) }
}

fn row(spec: &AppSpec, inst: &Inst) -> InstanceStatus {
    let lc = &inst.lc;
    InstanceStatus {
        id: inst.id,
        app: spec.name.clone(),
        instance: inst.index,
        pid: lc.pid,
        port: spec.port_of(inst.index),
        state: lc.state,
        restarts: lc.restarts,
        unstable_restarts: lc.unstable,
        uptime_ms: lc.started_at.map(ms_since),
        cpu_percent: lc.pid.and(inst.usage.cpu_percent),
        memory_bytes: lc.pid.and(inst.usage.rss_bytes),
        next_retry_ms: lc.next_retry.map(ms_until),
        last_exit: lc.last_exit.as_ref().map(|e| {
            let (code, signal) = ExitStatus::parts(e.status);
            ExitReport {
                reason: e.reason.to_owned(),
                code,
                signal,
                error: e.error.clone(),
                uptime_ms: e.uptime.as_millis() as u64,
                at: humantime::format_rfc3339_millis(e.at).to_string(),
            }
        }),
        threads: lc.pid.and(inst.usage.threads),
        open_fds: lc.pid.and(inst.usage.fds),
        restarts_by_reason: lc.restarts_by_reason.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        memory_ceiling_bytes: spec.max_memory_restart.map(|m| m.0),
    }
}

pub(super) fn describe(sup: &Supervisor, name: &str) -> Result<AppDescription, Error> {
    let app = sup.apps.get(name).ok_or_else(|| Error::UnknownApp(name.to_owned()))?;
    let mut instances: Vec<InstanceStatus> = app.instances.iter().map(|i| row(&app.spec, i)).collect();
    instances.sort_by_key(|i| i.id);
    Ok(AppDescription {
        schema: SCHEMA,
        name: name.to_owned(),
        config_file: app.source.clone(),
        env_profile: app.env.clone(),
        config: serde_json::to_value(&app.spec).unwrap_or_default(),
        env_names: app.spec.env.keys().cloned().collect(),
        log_files: app.spec.logs.files.clone(),
        log_counters: sup.logs.counters(name),
        instances,
        triggers: None,
    })
}

/// A copy of each instance's ring (under 7 KiB each): the answer is built from it
/// outside the actor ([`super::Handle::history`]).
pub(super) fn history(sup: &Supervisor, name: &str) -> Result<Vec<(u32, u32, History)>, Error> {
    let app = sup.apps.get(name).ok_or_else(|| Error::UnknownApp(name.to_owned()))?;
    Ok(app.instances.iter().map(|i| (i.index, i.id, i.history.clone())).collect())
}

pub(super) fn metrics(sup: &Supervisor) -> crate::wire::metrics::MetricsSnapshot {
    crate::wire::metrics::MetricsSnapshot {
        status: status(sup),
        logs: sup.apps.keys().map(|name| (name.clone(), sup.logs.counters(name))).collect(),
    }
}
