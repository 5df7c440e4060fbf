//! The other hosts' ready instances, for the one upstream: each host of
//! `[nginx] hosts` is asked for its live table over its TCP API, all at once,
//! each within `host_timeout`. What a host answered is kept in
//! `<home>/nginx/hosts.json` (0600); a host that does not answer keeps its last
//! known servers, rendered `backup` (nginx sends to them only when no other
//! server is up), until `stale_after` has passed since it last answered, and is
//! left out after that. Every such decision comes back as a sentence.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Server, ready_servers};
use crate::client::{Client, Remote};
use crate::config::{HostSpec, NginxSpec};
use crate::wire::types::StatusReport;

/// Largest `hosts.json` read back (64 hosts of 1,024 servers is ~1.5 MB).
const MAX_CACHE: u64 = 16 << 20;

/// Most servers one host contributes; beyond this its answer is refused.
pub const MAX_SERVERS_PER_HOST: usize = 1024;

/// The servers of every host, and what was decided for the hosts that did not answer.
#[derive(Debug, Default)]
pub struct Gathered {
    pub servers: Vec<Server>,
    pub notes: Vec<String>,
}

/// What a host last answered.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Known {
    /// Unix seconds of its last answer.
    seen: u64,
    /// (port, instance) of each ready instance then.
    servers: Vec<(u16, u32)>,
}

/// `hosts.json`: per app, per API URL.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cache {
    apps: BTreeMap<String, BTreeMap<String, Known>>,
}

pub fn cache_path(home: &Path) -> PathBuf {
    home.join("nginx").join("hosts.json")
}

/// A client of `host`'s daemon, with `token` when one is given (the tables are open:
/// the token travels only for changes).
pub fn client(home: &Path, host: &HostSpec, token: Option<String>, timeout: Duration) -> Result<Client, String> {
    let remote = Remote::new(&host.api, token, host.ca_file.as_deref(), timeout)?;
    Ok(Client::remote(home, Arc::new(remote)))
}

/// The ready servers in a host's answer, checked: no port 0, no instance twice, at
/// most [`MAX_SERVERS_PER_HOST`]. A host that breaks these gave no usable table.
pub(super) fn checked(spec: &NginxSpec, host: &HostSpec, status: &StatusReport) -> Result<Vec<Server>, String> {
    let servers = ready_servers(spec, &status.instances, &host.address, &host.api);
    if servers.len() > MAX_SERVERS_PER_HOST {
        return Err(format!("it lists {} ready instances, more than {MAX_SERVERS_PER_HOST}", servers.len()));
    }
    let (mut instances, mut ports) = (std::collections::HashSet::new(), std::collections::HashSet::new());
    for s in &servers {
        if s.port == 0 || !instances.insert(s.instance) || !ports.insert(s.port) {
            return Err(format!("its table is inconsistent (instance {} on port {})", s.instance, s.port));
        }
    }
    Ok(servers)
}

/// `local` (this host's ready servers) and those of every `[nginx] hosts` entry.
/// With `persist`, what each host answered is kept for when it does not.
pub async fn gather(spec: &NginxSpec, home: &Path, local: Vec<Server>, persist: bool) -> Gathered {
    let mut out = Gathered { servers: local, notes: Vec::new() };
    if spec.hosts.is_empty() {
        return out;
    }
    let asks = spec.hosts.iter().map(|host| async move {
        let client = client(home, host, None, spec.host_timeout)?;
        let status = tokio::time::timeout(spec.host_timeout, client.get::<StatusReport>("/api/v1/status")).await;
        match status {
            Ok(Ok(s)) => checked(spec, host, &s),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", spec.host_timeout.as_millis())),
        }
    });
    let answers = futures_util::future::join_all(asks).await;
    let mut cache = read_cache(home, &mut out.notes);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let known = cache.apps.entry(spec.app.clone()).or_default();
    for (host, answer) in spec.hosts.iter().zip(answers) {
        match answer {
            Ok(servers) => {
                if servers.is_empty() {
                    out.notes.push(format!("{} has no ready instance of {}", host.api, spec.app));
                }
                let entry = Known { seen: now, servers: servers.iter().map(|s| (s.port, s.instance)).collect() };
                known.insert(host.api.clone(), entry);
                out.servers.extend(servers);
            }
            Err(why) => match known.get(&host.api) {
                Some(k) if now.saturating_sub(k.seen) <= spec.stale_after.as_secs() => {
                    out.notes.push(format!(
                        "{} gave no table ({why}): its {} last known server(s), from {} s ago, are kept as backup",
                        host.api,
                        k.servers.len(),
                        now.saturating_sub(k.seen)
                    ));
                    out.servers.extend(k.servers.iter().map(|&(port, instance)| Server {
                        host: host.address.clone(),
                        port,
                        instance,
                        origin: host.api.clone(),
                        backup: true,
                    }));
                }
                Some(k) => out.notes.push(format!(
                    "{} gave no table ({why}) and last gave one {} s ago, more than stale_after ({} s): left out",
                    host.api,
                    now.saturating_sub(k.seen),
                    spec.stale_after.as_secs()
                )),
                None => out.notes.push(format!("{} gave no table ({why}) and never did: left out", host.api)),
            },
        }
    }
    // Hosts no longer listed are forgotten.
    known.retain(|api, _| spec.hosts.iter().any(|h| h.api == *api));
    if persist && let Err(e) = write_cache(home, &cache) {
        out.notes.push(format!("cannot keep the hosts' last known servers in {}: {e}", cache_path(home).display()));
    }
    out
}

/// `hosts.json`, or an empty cache (with a note) when it cannot be read.
fn read_cache(home: &Path, notes: &mut Vec<String>) -> Cache {
    use std::io::Read;
    let path = cache_path(home);
    let file = match crate::trust::open_owned(&path, "the hosts' last known servers") {
        Ok(Some(f)) => f,
        Ok(None) => return Cache::default(),
        Err(e) => {
            notes.push(format!("{e}; no last known servers"));
            return Cache::default();
        }
    };
    let mut text = Vec::new();
    let read = file.take(MAX_CACHE + 1).read_to_end(&mut text);
    match read.map_err(|e| e.to_string()).and_then(|n| {
        if n as u64 > MAX_CACHE {
            Err(format!("larger than {MAX_CACHE} bytes"))
        } else {
            serde_json::from_slice(&text).map_err(|e| e.to_string())
        }
    }) {
        Ok(cache) => cache,
        Err(e) => {
            notes.push(format!("{} is unreadable ({e}); no last known servers", path.display()));
            Cache::default()
        }
    }
}

fn write_cache(home: &Path, cache: &Cache) -> std::io::Result<()> {
    let path = cache_path(home);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let bytes = serde_json::to_vec(cache).map_err(std::io::Error::other)?;
    crate::fsutil::atomic_write(&path, &bytes, 0o600)
}
