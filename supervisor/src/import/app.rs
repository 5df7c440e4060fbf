//! One PM2 app to one `[[apps]]` entry (and its `[apps.env...]` tables).
//!
//! Every key of the PM2 app is consumed exactly once: mapped to a layer4 key
//! (with a note where the meaning shifts), or turned into a comment by
//! `options`. PM2's other spellings (aliases, camelCase) are read as PM2 reads
//! them, the main name first. What must not clash between apps (names, log
//! files, instance ports) is checked against the apps before it in [`Taken`],
//! so the result always loads. The choices that keep an app running the same way:
//! - the interpreter PM2 would pick becomes `script` (`program`);
//! - a port (`port`, or `PORT` in `env`) becomes `port` with `socket = "app"`:
//!   a PM2 app binds its port itself; instance i gets port + i behind the
//!   rendered Nginx where PM2's cluster mode shared one port;
//! - `kill_signal = "SIGINT"`, PM2's stop signal, so an app's SIGINT handler still runs.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::emit::{Section, one_line};
use super::keys::Keys;
use super::logs::{expand_home, relative};
use super::{options, program, timing};
use crate::config::{Size, scale};

/// What earlier apps of the file hold: names, log files, instance ports.
#[derive(Debug, Default)]
pub struct Taken {
    pub(super) names: BTreeSet<String>,
    pub(super) logs: BTreeMap<PathBuf, String>,
    pub(super) ports: Vec<(Range<u32>, String)>,
}

/// `[[apps]]` and its env tables for one PM2 app; `base` is the ecosystem file's
/// folder, `out` the folder of the file written.
pub fn convert(app: &Map<String, Value>, base: &Path, out: &Path, taken: &mut Taken) -> Result<Vec<Section>, String> {
    let mut keys = Keys::new(app);
    let mut s = Section::new("[[apps]]");
    let script = match keys.take("script") {
        Some((_, Value::String(s))) if !s.is_empty() => s.clone(),
        Some(_) => return Err("`script` must be a file name or a command".to_owned()),
        None => return Err("`script` is missing".to_owned()),
    };
    let name = match keys.take("name") {
        Some((_, Value::String(n))) => n.clone(),
        other => {
            if let Some((_, v)) = other {
                s.comment(format!(
                    "PM2 name = {}: not a string; PM2's default, the script's name, is used.",
                    one_line(&v.to_string())
                ));
            }
            Path::new(&script).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "app".into())
        }
    };
    let clean = unique(clean_name(&name), &taken.names);
    taken.names.insert(clean.clone());
    if clean == name {
        s.key("name", clean.as_str());
    } else {
        s.key_note(
            "name",
            clean.as_str(),
            format!(
                "PM2 name {}: layer4 names are unique and use letters, digits, '.', '_' and '-'",
                one_line(&format!("{name:?}"))
            ),
        );
    }

    // Where the app runs: PM2 resolves the script and log files from there.
    let app_dir = match keys.take("cwd") {
        Some((_, Value::String(c))) => crate::config::normalize(&base.join(expand_home(c))),
        Some((_, v)) => {
            s.comment(format!(
                "PM2 cwd = {}: not a path; the ecosystem file's folder is used.",
                one_line(&v.to_string())
            ));
            base.to_path_buf()
        }
        None => base.to_path_buf(),
    };
    if app_dir != out {
        s.key("cwd", relative(out, &app_dir).as_str());
    }
    let args = program::words(keys.take("args").map(|(_, v)| v), "args")?;
    let interpreter_args = program::words(keys.take("interpreter_args").map(|(_, v)| v), "interpreter_args")?;
    let interpreter = keys.take("interpreter").map(|(_, v)| v);
    let program = program::resolve(&script, interpreter, interpreter_args, args, &app_dir)?;
    match &program.interpreter {
        Some(_) => s.key_note("script", program.script.as_str(), "the interpreter PM2 ran the script with"),
        None => s.key("script", program.script.as_str()),
    }
    if program.needs_interpreter_none() {
        s.key("interpreter", "none");
    }
    if !program.args.is_empty() {
        s.key("args", program.args.clone());
    }
    for note in &program.notes {
        s.comment(note.as_str());
    }

    let has_instances = keys.entries.iter().any(|(_, k, _)| k == "instances" || k == "i");
    let instances = instances(&mut keys, &mut s)?;
    let cluster = match keys.take("exec_mode") {
        Some((_, Value::String(m))) if m.starts_with("cluster") => true,
        Some((_, v)) => {
            s.comment(format!(
                "PM2 exec_mode = {}: every layer4 instance is its own process, as fork mode.",
                one_line(&v.to_string())
            ));
            false
        }
        // PM2 itself switches a Node app with `instances` to cluster mode.
        None => has_instances && program.interpreter.as_deref() == Some("node"),
    };
    if cluster {
        s.comment("PM2 ran this app in cluster mode: layer4 runs each instance as its own process; with a `port`, instance i listens on port + i and the rendered Nginx spreads connections over them (Node's cluster module shared one port).");
    }
    let env = match keys.take("env") {
        Some((_, Value::Object(env))) => Some(env),
        Some((_, v)) => {
            s.comment(format!("PM2 env = {}: not a table of variables; left out.", one_line(&v.to_string())));
            None
        }
        None => None,
    };
    let port = port(&mut keys, &mut s, env, instances, cluster, &clean, taken)?;
    timing::readiness(&mut keys, &mut s, port.is_some());
    if let Some((_, v)) = keys.take("max_memory_restart") {
        let size = match v {
            Value::String(t) => Size::parse(t).ok().filter(|s| s.0 > 0),
            Value::Number(n) => n.as_u64().filter(|b| *b > 0).map(Size),
            _ => None,
        };
        match size {
            Some(size) => s.key("max_memory_restart", size.to_string()),
            None => s.comment(format!(
                "PM2 max_memory_restart = {}: not a size layer4 reads (\"512M\", \"1G\"); left out.",
                one_line(&v.to_string())
            )),
        }
    }
    timing::restart_policy(&mut keys, &mut s);
    super::triggers::triggers(&mut keys, &mut s);
    super::logs::logs(&mut keys, &mut s, &app_dir, out, &clean, taken);

    let mut sections = vec![s];
    let port_set = port.is_some();
    if let Some(env) = env {
        sections.push(env_table("[apps.env]", env, port_set));
    }
    for (spelling, profile, value) in keys.profiles() {
        let plain = profile.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        match value {
            Value::Object(_) if !plain => sections[0].comment(format!(
                "PM2 {}: not a profile name layer4 accepts (letters, digits, '_', '-'); left out.",
                one_line(spelling)
            )),
            Value::Object(vars) => sections.push(env_table(
                &format!("[apps.{}]", super::emit::toml_key(&format!("env_{profile}"))),
                vars,
                port_set,
            )),
            other => sections[0].comment(format!(
                "PM2 {} = {}: not a table of variables; left out.",
                one_line(spelling),
                one_line(&other.to_string())
            )),
        }
    }
    for (k, v, used) in std::mem::take(&mut keys.shadowed) {
        sections[0].comment(format!(
            "PM2 {} = {}: another spelling of `{}`, which PM2 reads first; left out.",
            one_line(k),
            one_line(&v.to_string()),
            one_line(used)
        ));
    }
    for (k, v) in keys.rest() {
        sections[0].comment(options::no_equivalent(k, v));
    }
    Ok(sections)
}

/// `instances`: a count, or `"max"` for PM2's `"max"`, 0 and negative counts.
fn instances(keys: &mut Keys<'_>, s: &mut Section) -> Result<u32, String> {
    let Some((_, v)) = keys.take("instances") else { return Ok(1) };
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(t) if t == "max" => Some(0),
        Value::String(t) => t.trim().parse::<i64>().ok(),
        _ => None,
    };
    let cpus = crate::config::Instances::Max.resolve();
    match n {
        Some(n) if n > 0 && n <= i64::from(scale::MAX_INSTANCES) => {
            s.key("instances", n);
            Ok(n as u32)
        }
        Some(0) => {
            s.key("instances", "max");
            Ok(cpus)
        }
        Some(n) if n < 0 => {
            s.key_note("instances", "max", format!("PM2 {n}: all CPUs but {}; set a number to keep CPUs free", -n));
            Ok(cpus)
        }
        _ => Err(format!("`instances` must be a number or \"max\", got {}", one_line(&v.to_string()))),
    }
}

/// `port` (PM2's `port`, else `PORT` in `env`) and `socket = "app"`; moved past
/// the instance ports of an earlier app it would overlap.
fn port(
    keys: &mut Keys<'_>,
    s: &mut Section,
    env: Option<&Map<String, Value>>,
    instances: u32,
    cluster: bool,
    name: &str,
    taken: &mut Taken,
) -> Result<Option<u16>, String> {
    let as_port = |v: &Value| match v {
        Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0),
        Value::String(t) => t.trim().parse::<u16>().ok().filter(|p| *p > 0),
        _ => None,
    };
    let increment = keys.take("increment_var").map(|(_, v)| v.clone());
    let (wanted, from_env) = match keys.take("port") {
        Some((_, v)) => (Some(as_port(v).ok_or_else(|| format!("`port` must be 1..65535, got {v}"))?), false),
        None => (env.and_then(|e| e.get("PORT")).and_then(as_port), true),
    };
    let Some(wanted) = wanted else {
        if let Some(v) = increment {
            s.comment(options::no_equivalent("increment_var", &v));
        }
        return Ok(None);
    };
    let mut port = wanted;
    while let Some((_, other)) =
        taken.ports.iter().find(|(r, _)| scale::overlap(r, &scale::port_range(port, instances)))
    {
        let end =
            taken.ports.iter().filter(|(_, o)| o == other).map(|(r, _)| r.end).max().unwrap_or(u32::from(port) + 1);
        port = u16::try_from(end).map_err(|_| format!("no free ports above {wanted} for {instances} instances"))?;
    }
    let range = scale::port_range(port, instances);
    if !scale::ports_valid(&range) {
        return Err(format!("ports {}..{} of {instances} instances are past 65535", range.start, range.end - 1));
    }
    taken.ports.push((range, name.to_owned()));
    let from = if from_env { "PORT from PM2's env" } else { "PM2's port" };
    if port == wanted {
        s.key_note("port", i64::from(port), format!("{from}; instance i gets PORT = port + i"));
    } else {
        s.key_note(
            "port",
            i64::from(port),
            format!("{from} was {wanted}, which an earlier app's instance ports hold; point clients or Nginx here"),
        );
    }
    s.key_note("socket", "app", "the app binds PORT itself, as under PM2");
    s.comment("So `l4ctl reload` replaces each instance by a stop and a start; for no refused connection, have the app take l4ctl's socket (Node: server.listen({ fd: 3 })) and set socket = \"supervisor\".");
    match increment {
        Some(Value::String(v)) if v == "PORT" => {}
        Some(v) => s.comment(options::no_equivalent("increment_var", &v)),
        None if instances > 1 && !cluster => {
            s.comment("PM2 fork mode gave every instance the same PORT; layer4 gives instance i PORT = port + i.")
        }
        None => {}
    }
    Ok(Some(port))
}

/// An `[apps.env...]` table; `PORT` left out when the app has a `port` (layer4 sets it).
fn env_table(header: &str, vars: &Map<String, Value>, port_set: bool) -> Section {
    let mut t = Section::new(header);
    for (k, v) in vars {
        if port_set && k == "PORT" {
            t.comment(format!(
                "PORT = {}: layer4 sets PORT from `port` (port + i for instance i).",
                one_line(&v.to_string())
            ));
            continue;
        }
        if k.is_empty() || k.contains('=') || k.chars().any(char::is_control) {
            t.comment(format!("{}: not a variable name layer4 accepts; left out.", one_line(&format!("{k:?}"))));
            continue;
        }
        match v {
            Value::String(text) => t.key(k, text.as_str()),
            Value::Bool(b) => t.key(k, *b),
            Value::Number(n) if n.is_i64() => t.key(k, n.as_i64().unwrap_or_default()),
            Value::Number(n) => t.key(k, n.to_string()),
            Value::Null => t.comment(format!("{} = null: PM2 passes nothing; left out.", one_line(k))),
            other => t.key_note(k, other.to_string(), "PM2 passed this object as its JSON text"),
        }
    }
    t
}

/// A layer4 app name from PM2's: runs of anything else become one '-'.
fn clean_name(name: &str) -> String {
    let mut clean = String::new();
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' };
        if !(c == '-' && (clean.is_empty() || clean.ends_with('-'))) && clean.len() < 60 {
            clean.push(c);
        }
    }
    let clean = clean.trim_end_matches('-').to_owned();
    if clean.is_empty() || ["all", ".", ".."].contains(&clean.as_str()) { format!("app-{clean}") } else { clean }
}

/// `name`, or `name-2`, `name-3`, ... when an earlier app has it.
fn unique(name: String, names: &BTreeSet<String>) -> String {
    if !names.contains(&name) {
        return name;
    }
    (2..).map(|n| format!("{name}-{n}")).find(|n| !names.contains(n)).unwrap_or(name)
}
