//! What the TLS tests stand on: a CA made per test (rcgen) with a server certificate for
//! `localhost` and a client certificate, and private TLS servers of the machine's own
//! PostgreSQL (`initdb` + `postgres` as the `postgres` user, `ssl = on`, client
//! certificates checked for one user) and `redis-server --tls-port` (client certificates
//! required, a password). Both need root (to run PostgreSQL as its own user); without it,
//! or without the server binaries, `TlsServers::start` says why and the test returns.

use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::helper::free_port;

pub const PG_USER: &str = "chat";
pub const PG_PASSWORD: &str = "pg-secret-pass";
/// The PostgreSQL user that logs in with its client certificate (its common name).
pub const CERT_USER: &str = "certuser";
pub const REDIS_PASSWORD: &str = "redis-secret-pass";

/// PEM files of one test's PKI.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    /// A CA, a server certificate for `localhost` only (so 127.0.0.1 is a wrong name),
    /// and a client certificate for [`CERT_USER`], written into `dir` (keys 0600).
    pub fn make(dir: &Path) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(DnType::CommonName, "layer4 test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        server.distinguished_name.push(DnType::CommonName, "localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client.distinguished_name.push(DnType::CommonName, CERT_USER);
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&client_key, &issuer).unwrap();
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            path
        };
        Pki {
            ca: write("ca.crt", ca_cert.pem()),
            server_cert: write("server.crt", server_cert.pem()),
            server_key: write("server.key", server_key.serialize_pem()),
            client_cert: write("client.crt", client_cert.pem()),
            client_key: write("client.key", client_key.serialize_pem()),
        }
    }
}

/// A private PostgreSQL with `ssl = on` and a private TLS-only Redis, both stopped on drop.
pub struct TlsServers {
    // Held only to be dropped; fields drop in order: the servers stop before their folder goes.
    _postgres: Stopped,
    _redis: Stopped,
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub pg_port: u16,
    pub redis_port: u16,
}

/// A server process stopped (with its signal) and reaped when dropped, from the moment
/// it is spawned: a failed assertion while the rest starts leaves nothing running.
struct Stopped(Child, nix::sys::signal::Signal);

impl Stopped {
    /// Panics with `log` if the process has exited.
    fn alive(&mut self, what: &str, log: &Path) {
        if let Ok(Some(status)) = self.0.try_wait() {
            panic!("{what} exited ({status}):\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), self.1);
        let _ = self.0.wait();
    }
}

impl TlsServers {
    /// None (with the reason printed) where this machine cannot run them.
    pub fn start() -> Option<TlsServers> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "skipped: a private PostgreSQL runs as the postgres user, which needs root (.ci/test runs as root)"
            );
            return None;
        }
        let Some(bin) = postgres_bin() else {
            eprintln!(
                "skipped: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)"
            );
            return None;
        };
        let Ok(Some(pg_user)) = nix::unistd::User::from_name("postgres") else {
            eprintln!("skipped: no postgres user on this machine");
            return None;
        };
        let dir = tempfile::Builder::new().prefix("l4tls").tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let pki = Pki::make(dir.path());
        let pg_dir = dir.path().join("pg");
        std::fs::create_dir(&pg_dir).unwrap();
        for (from, to) in [(&pki.server_cert, "server.crt"), (&pki.server_key, "server.key"), (&pki.ca, "ca.crt")] {
            std::fs::copy(from, pg_dir.join(to)).unwrap();
        }
        std::fs::write(pg_dir.join("pw"), PG_PASSWORD).unwrap();
        let (uid, gid) = (pg_user.uid.as_raw(), pg_user.gid.as_raw());
        for entry in std::fs::read_dir(&pg_dir).unwrap() {
            chown(entry.unwrap().path(), Some(uid), Some(gid)).unwrap();
        }
        chown(&pg_dir, Some(uid), Some(gid)).unwrap();
        let as_postgres = |program: &Path| {
            let mut c = Command::new(program);
            c.uid(uid).gid(gid).env_clear().env("HOME", &pg_dir).current_dir(&pg_dir);
            c
        };
        let data = pg_dir.join("data");
        let out = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-E", "UTF8", "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pg_dir.join("pw").display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let hba = format!(
            "local all all trust\nhostssl all {CERT_USER} 127.0.0.1/32 cert\nhostssl all {CERT_USER} ::1/128 cert\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\nhost all all 0.0.0.0/0 reject\nhost all all ::/0 reject\n"
        );
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        let pg_port = free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).unwrap();
        let log_path = dir.path().join("postgres.log");
        let postgres = as_postgres(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &pg_port.to_string(), "-k"])
            .arg(&pg_dir)
            .args(["-c", "listen_addresses=127.0.0.1,::1", "-c", "ssl=on", "-c", "fsync=off"])
            .args([
                "-c",
                "ssl_cert_file=../server.crt",
                "-c",
                "ssl_key_file=../server.key",
                "-c",
                "ssl_ca_file=../ca.crt",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        // SIGQUIT: PostgreSQL's immediate shutdown, which takes its backends along.
        let mut postgres = Stopped(postgres, nix::sys::signal::Signal::SIGQUIT);
        let psql = |sql: &str| {
            Command::new("psql")
                .arg("-h")
                .arg(&pg_dir)
                .args(["-p", &pg_port.to_string(), "-U", "postgres", "-d", "postgres", "-qtAc", sql])
                .output()
                .unwrap()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !psql("SELECT 1").status.success() {
            postgres.alive("the private PostgreSQL", &log_path);
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            assert!(Instant::now() < deadline, "the private PostgreSQL did not start:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
        for sql in [
            format!("CREATE USER {PG_USER} PASSWORD '{PG_PASSWORD}'"),
            format!("CREATE DATABASE {PG_USER} OWNER {PG_USER}"),
            format!("CREATE USER {CERT_USER}"),
        ] {
            let out = psql(&sql);
            assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let redis_port = free_port();
        let redis_log = dir.path().join("redis.log");
        let redis = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &redis_port.to_string(), "--bind", "127.0.0.1 ::1"])
            .arg("--tls-cert-file")
            .arg(&pki.server_cert)
            .arg("--tls-key-file")
            .arg(&pki.server_key)
            .arg("--tls-ca-cert-file")
            .arg(&pki.ca)
            .args(["--tls-auth-clients", "yes", "--requirepass", REDIS_PASSWORD, "--save", "", "--appendonly", "no"])
            .arg("--logfile")
            .arg(&redis_log)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/test installs it)");
        let mut redis = Stopped(redis, nix::sys::signal::Signal::SIGKILL);
        // Ready when its log says so: a bare connect could reach another process that
        // took the port first, and then this one has exited (checked every turn).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&redis_log).unwrap_or_default().contains("Ready to accept connections") {
            redis.alive("the private TLS Redis", &redis_log);
            assert!(Instant::now() < deadline, "the private TLS Redis did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(TlsServers { _postgres: postgres, _redis: redis, dir, pki, pg_port, redis_port })
    }

    /// `postgres://chat:<password>@<host>:<port>/chat?<query>`.
    pub fn pg_url(&self, host: &str, query: &str) -> String {
        format!("postgres://{PG_USER}:{PG_PASSWORD}@{host}:{}/{PG_USER}?{query}", self.pg_port)
    }

    /// `rediss://:<password>@<host>:<port>`.
    pub fn redis_url(&self, host: &str) -> String {
        format!("rediss://:{REDIS_PASSWORD}@{host}:{}", self.redis_port)
    }

    /// REDIS_CA_FILE, REDIS_CLIENT_CERT and REDIS_CLIENT_KEY for this PKI.
    pub fn redis_files(&self) -> [(&'static str, String); 3] {
        let p = |p: &Path| p.display().to_string();
        [
            ("REDIS_CA_FILE", p(&self.pki.ca)),
            ("REDIS_CLIENT_CERT", p(&self.pki.client_cert)),
            ("REDIS_CLIENT_KEY", p(&self.pki.client_key)),
        ]
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb` and `postgres`.
fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}
