//! The rules on how many instances an app may have and which ports they take,
//! written once for the file's validation and for `l4ctl scale` (which changes
//! `instances` without a file): at most [`MAX_INSTANCES`], ports
//! `port .. port + instances` inside 1..65535, and no port shared with another app.

use std::ops::Range;

use super::AppSpec;

/// Most instances of one app (and most replaced at once by a reload).
pub const MAX_INSTANCES: u32 = 1024;

/// The ports of `instances` instances from `port`, as a range of `u32` (so the end
/// of a range that passes 65535 can be named).
pub fn port_range(port: u16, instances: u32) -> Range<u32> {
    u32::from(port)..u32::from(port) + instances
}

/// Whether every port of the range is a real one (1..65535).
pub fn ports_valid(range: &Range<u32>) -> bool {
    range.start != 0 && range.end <= 65536
}

pub fn overlap(a: &Range<u32>, b: &Range<u32>) -> bool {
    a.start < b.end && b.start < a.end
}

/// Whether `app` may run `n` instances beside `others` (the other loaded apps);
/// the sentence `l4ctl scale` answers when not.
pub fn check_scale<'a>(app: &AppSpec, n: u32, others: impl IntoIterator<Item = &'a AppSpec>) -> Result<(), String> {
    if !(1..=MAX_INSTANCES).contains(&n) {
        return Err(format!("instances must be between 1 and {MAX_INSTANCES}, got {n}"));
    }
    if !app.logs.merge_logs {
        return Err(format!(
            "`{}` has per-instance log files (merge_logs = false): change `instances` in its config file and reload",
            app.name
        ));
    }
    let Some(port) = app.port else { return Ok(()) };
    let range = port_range(port, n);
    if !ports_valid(&range) {
        return Err(format!("ports {}-{} are outside 1..65535", range.start, range.end - 1));
    }
    let taken =
        |o: &&AppSpec| o.name != app.name && o.port.is_some_and(|p| overlap(&range, &port_range(p, o.instances)));
    match others.into_iter().find(taken) {
        Some(other) => Err(format!("ports {}-{} would collide with `{}`", range.start, range.end - 1, other.name)),
        None => Ok(()),
    }
}
