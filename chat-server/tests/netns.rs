//! Hosts for the tests that cross a network: network namespaces joined by a
//! bridge in the root namespace (`ip netns`, veth), each with its own address
//! on a /24 of its own, reachable from the root namespace (where nginx and the
//! test's clients run). Needs root; [`Net::create`] says why not otherwise. A
//! private PostgreSQL for one of them. Everything is removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Namespaces on one bridge.
pub struct Net {
    tag: String,
    /// `10.231.N`: the namespaces are `.11`, `.12`, ...; the bridge is `.1`.
    subnet: String,
    bridge: String,
    pub names: Vec<String>,
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("ip (iproute2)")
}

fn must(args: &[&str]) {
    let out = ip(args);
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl Net {
    /// `n` namespaces, or `None` (with the reason printed) when this cannot run here.
    pub fn create(n: usize) -> Option<Net> {
        // SAFETY: geteuid only reads this process's effective user id.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: network namespaces need root (.ci/test runs as root)");
            return None;
        }
        sweep_leftovers();
        let id = std::process::id() % 100_000;
        let tag = format!("{id:05}");
        // A /24 of 10.231 that no route of this machine uses yet.
        let routes = String::from_utf8_lossy(&ip(&["-4", "route"]).stdout).to_string();
        let third = (0..250).map(|k| (id as usize + k) % 250 + 1).find(|n| !routes.contains(&format!("10.231.{n}.")));
        let net = Net {
            subnet: format!("10.231.{}", third.expect("a free 10.231.N.0/24")),
            bridge: format!("l4b{tag}"),
            names: (0..n).map(|i| format!("l4t{tag}h{i}")).collect(),
            tag,
        };
        let probe = ip(&["link", "add", &net.bridge, "type", "bridge"]);
        if !probe.status.success() {
            eprintln!("skipped: cannot make a bridge here: {}", String::from_utf8_lossy(&probe.stderr));
            return None;
        }
        must(&["addr", "add", &format!("{}.1/24", net.subnet), "dev", &net.bridge]);
        must(&["link", "set", &net.bridge, "up"]);
        for (i, ns) in net.names.iter().enumerate() {
            let (outside, inside) = (net.outside(i), format!("l4n{}{i}", net.tag));
            must(&["netns", "add", ns]);
            must(&["link", "add", &outside, "type", "veth", "peer", "name", &inside]);
            must(&["link", "set", &inside, "netns", ns]);
            must(&["link", "set", &outside, "master", &net.bridge]);
            must(&["link", "set", &outside, "up"]);
            let address = format!("{}/24", net.address(i));
            must(&["netns", "exec", ns, "ip", "addr", "add", &address, "dev", &inside]);
            must(&["netns", "exec", ns, "ip", "link", "set", &inside, "up"]);
            must(&["netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
        }
        Some(net)
    }

    /// The address of namespace `i`.
    pub fn address(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, 11 + i)
    }

    /// The root side of namespace `i`'s link.
    fn outside(&self, i: usize) -> String {
        format!("l4r{}{i}", self.tag)
    }

    /// `program args...` inside namespace `i`.
    pub fn cmd(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[i]]).arg(program);
        c
    }

    /// Cut namespace `i` off the bridge (`up = false`) or join it again.
    pub fn link(&self, i: usize, up: bool) {
        must(&["link", "set", &self.outside(i), if up { "up" } else { "down" }]);
    }

    /// Every process in namespace `i`.
    fn pids(&self, i: usize) -> Vec<i32> {
        let out = ip(&["netns", "pids", &self.names[i]]);
        String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect()
    }
}

/// Namespaces and bridges a killed run of this test left (named after a pid that is
/// gone), removed so that their routes do not shadow this run's.
fn sweep_leftovers() {
    let alive =
        |tag: &str| {
            let Ok(tag) = tag.parse::<u32>() else { return true };
            // The tag is the pid modulo 100,000: any live pid with it counts.
            std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|e| {
                e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()).is_some_and(|pid| pid % 100_000 == tag)
            })
        };
    let namespaces = String::from_utf8_lossy(&ip(&["netns", "list"]).stdout).to_string();
    for name in namespaces.split_whitespace().filter(|n| n.starts_with("l4t") && n.contains('h')) {
        let tag = &name[3..name.find('h').unwrap_or(3)];
        if !alive(tag) {
            let _ = ip(&["netns", "del", name]);
        }
    }
    let links = String::from_utf8_lossy(&ip(&["-o", "link", "show", "type", "bridge"]).stdout).to_string();
    for name in links.lines().filter_map(|l| l.split(": ").nth(1)).filter(|n| n.starts_with("l4b")) {
        if !alive(&name[3..]) {
            let _ = ip(&["link", "del", name]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.names.len() {
            for pid in self.pids(i) {
                // SAFETY: kill only sends a signal.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = ip(&["netns", "del", &self.names[i]]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// A PostgreSQL of the test's own (Debian's binaries, run as `postgres`), trusting
/// every connection, listening on one address inside a namespace.
pub struct Postgres {
    data: PathBuf,
    child: Option<Child>,
    address: String,
    namespace: usize,
}

fn pg_bin(name: &str) -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL's binaries (postgresql package)");
    let mut found: Vec<PathBuf> = versions.flatten().map(|v| v.path().join("bin").join(name)).collect();
    found.sort();
    found.pop().filter(|p| p.is_file()).expect("initdb and postgres")
}

fn as_postgres(data: &Path) {
    let out = Command::new("chown").args(["-R", "postgres:postgres"]).arg(data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

impl Postgres {
    /// Initialise a cluster in `dir/pg` and start it in namespace `namespace` of `net`.
    pub fn start(net: &Net, namespace: usize, dir: &Path) -> Postgres {
        // The postgres user walks into the test's folder.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let data = dir.join("pg");
        std::fs::create_dir_all(&data).unwrap();
        as_postgres(&data);
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("initdb"))
            .args(["--auth=trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let hba = data.join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).unwrap();
        rules.push_str("host all all 0.0.0.0/0 trust\n");
        std::fs::write(&hba, rules).unwrap();
        let mut pg = Postgres { data, child: None, address: net.address(namespace), namespace };
        pg.spawn(net);
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@{}:5432/postgres", self.address)
    }

    fn spawn(&mut self, net: &Net) {
        let child = net
            .cmd(self.namespace, "runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-h", &self.address, "-p", "5432", "-k"])
            .arg(&self.data)
            .args(["-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new("pg_isready").args(["-q", "-h", &self.address, "-p", "5432"]).status();
            if ready.is_ok_and(|s| s.success()) {
                return;
            }
            assert!(Instant::now() < deadline, "PostgreSQL did not start in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop it (fast shutdown: connections are cut) and start it again.
    pub fn restart(&mut self, net: &Net) {
        assert!(self.stop(), "PostgreSQL did not stop in 30 s");
        self.spawn(net);
    }

    /// SIGINT (fast shutdown), then SIGKILL after 30 s; whether it stopped in time.
    fn stop(&mut self) -> bool {
        let pid_file = self.data.join("postmaster.pid");
        let pid = std::fs::read_to_string(&pid_file).ok().and_then(|t| t.lines().next()?.trim().parse::<i32>().ok());
        let mut in_time = true;
        if let Some(pid) = pid {
            // SAFETY: kill only sends a signal (SIGINT: fast shutdown).
            unsafe { libc::kill(pid, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(30);
            // SAFETY: signal 0 only checks that the process exists.
            while unsafe { libc::kill(pid, 0) } == 0 {
                if Instant::now() >= deadline {
                    // SAFETY: as above.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    in_time = false;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        in_time
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Never a panic here (a second one while unwinding would abort and leak it all).
        self.stop();
    }
}
