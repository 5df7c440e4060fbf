//! README "TLS": the worker reaches a PostgreSQL and a Redis that speak only TLS, in each
//! of libpq's modes and with client certificates, and `chat-server --check` says in one
//! sentence why a setting cannot work (a CA not trusted, a certificate for another name,
//! a refused password or certificate) instead of "settings ok".

use std::process::Command;

use layer4_chat_client::protocol::Format;

use crate::helper::{SECRET, Server, joined, messages};
use crate::pki::{CERT_USER, TlsServers};

/// `chat-server --check` with exactly `env` (production, a good secret): exit code,
/// stdout and stderr.
fn check(env: &[(&str, String)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .arg("--check")
        .env_clear()
        .env("JWT_SECRET", SECRET)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    for secret in [crate::pki::PG_PASSWORD, crate::pki::REDIS_PASSWORD] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "a password was printed:\n{stdout}{stderr}");
    }
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// The one sentence `--check` fails with for `env` (exit 1, nothing on stdout).
fn refused(env: &[(&str, String)]) -> String {
    let (code, stdout, stderr) = check(env);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(!stdout.contains("settings ok"), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "one sentence: {stderr}");
    stderr
}

fn accepted(env: &[(&str, String)]) -> String {
    let (code, stdout, stderr) = check(env);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("settings ok"), "{stdout}");
    stdout
}

#[test]
fn postgres_over_tls_connects_in_each_mode_and_says_why_it_cannot() {
    let Some(s) = TlsServers::start() else { return };
    let ca = s.pki.ca.display().to_string();
    let db = |url: String| [("DATABASE_URL", url)];
    // Encrypted without a check, as libpq's require.
    let out = accepted(&db(s.pg_url("127.0.0.1", "sslmode=require")));
    assert!(out.contains("connected over TLS"), "{out}");
    // The chain and the name, with the private CA.
    accepted(&db(s.pg_url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}"))));
    // A password in the query is as secret as one in the authority.
    let in_query =
        format!("postgres://chat@localhost:{}/chat?password={}&sslmode=require", s.pg_port, crate::pki::PG_PASSWORD);
    assert!(accepted(&db(in_query)).contains("password=***"));
    // Without the CA: public roots only.
    let why = refused(&db(s.pg_url("localhost", "sslmode=verify-full")));
    assert!(why.contains("the server's certificate is not signed by a CA this worker trusts"), "{why}");
    assert!(why.contains("sslrootcert="), "{why}");
    // A name the certificate does not have.
    let why = refused(&db(s.pg_url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}"))));
    assert!(why.contains("not valid for the name 127.0.0.1 (it is for"), "{why}");
    // libpq's require with a root certificate checks the chain (here with the name, as
    // verify-full): another CA's file fails.
    let other = tempfile::tempdir().unwrap();
    let stranger = crate::pki::Pki::make(other.path()).ca.display().to_string();
    let why = refused(&db(s.pg_url("127.0.0.1", &format!("sslmode=require&sslrootcert={stranger}"))));
    assert!(why.contains("not signed by a CA this worker trusts"), "{why}");
    // A wrong password, and a server that refuses connections without TLS.
    let bad = format!("postgres://chat:wrong@127.0.0.1:{}/chat?sslmode=require", s.pg_port);
    let why = refused(&db(bad));
    assert!(why.contains("the server refused the password of user chat"), "{why}");
    let why = refused(&db(s.pg_url("127.0.0.1", "sslmode=disable")));
    assert!(why.contains("the server refused the login: "), "{why}");
    // A client certificate for the user that logs in with one, and that user without it.
    let (cert, key) = (s.pki.client_cert.display(), s.pki.client_key.display());
    let with_cert = format!(
        "postgres://{CERT_USER}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={ca}&sslcert={cert}&sslkey={key}",
        s.pg_port
    );
    accepted(&db(with_cert));
    let without =
        format!("postgres://{CERT_USER}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={ca}", s.pg_port);
    let why = refused(&db(without));
    assert!(why.contains("the server refused the login: "), "{why}");
}

#[test]
fn tls_settings_that_cannot_work_are_refused_before_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::pki::Pki::make(dir.path());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pki.client_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let url = format!(
        "postgres://u@localhost:1/db?sslmode=verify-everything&sslrootcert={}&sslcert={}&sslkey={}",
        dir.path().join("missing.crt").display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let (code, stdout, stderr) = check(&[
        ("DATABASE_URL", url),
        ("REDIS_URL", "rediss://localhost:1/#insecure".into()),
        ("REDIS_CA_FILE", pki.client_key.display().to_string()),
        ("REDIS_CLIENT_CERT", pki.client_cert.display().to_string()),
    ]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    for expected in [
        "sslmode=verify-everything is not one of disable, prefer, require, verify-full",
        "missing.crt: No such file or directory",
        "has mode 644: a private key must not be readable by others (chmod 600)",
        "#insecure turns off the server's certificate check and is refused unless APP_ENV=development",
        "REDIS_CA_FILE (environment): the file",
        "holds no PEM certificate",
        "REDIS_CLIENT_KEY: must be set with REDIS_CLIENT_CERT",
    ] {
        assert!(stderr.contains(expected), "{expected:?} missing from:\n{stderr}");
    }
}

#[test]
fn verify_ca_other_spellings_and_pgssl_variables_are_refused_with_the_reason() {
    let (code, stdout, stderr) = check(&[
        ("DATABASE_URL", "postgres://u@localhost:1/db?sslmode=verify-ca&ssl-root-cert=/x&sslmode=require".into()),
        ("PGSSLMODE", "disable".into()),
    ]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    for expected in [
        "verify-ca would also take any public CA's certificate for any name: use verify-full",
        "spell ssl-root-cert as sslrootcert",
        "gives sslmode more than once",
        "PGSSLMODE (environment): is not read: give sslmode=... in DATABASE_URL",
    ] {
        assert!(stderr.contains(expected), "{expected:?} missing from:\n{stderr}");
    }
}

#[test]
fn redis_over_tls_needs_its_ca_and_a_client_certificate_and_says_why() {
    let Some(s) = TlsServers::start() else { return };
    let sqlite = ("DATABASE_URL", format!("sqlite://{}/chat.db", s.dir.path().display()));
    let files = s.redis_files();
    let mut env = vec![sqlite.clone(), ("REDIS_URL", s.redis_url("localhost"))];
    env.extend(files.iter().cloned());
    let out = accepted(&env);
    assert!(out.contains("PING answered over TLS"), "{out}");
    // The system roots (/etc/ssl/certs) do not know the private CA.
    let why = refused(&[sqlite.clone(), ("REDIS_URL", s.redis_url("localhost")), files[1].clone(), files[2].clone()]);
    assert!(why.contains("not signed by a CA this worker trusts (set REDIS_CA_FILE"), "{why}");
    // The certificate is for localhost.
    let mut wrong_name = env.clone();
    wrong_name[1] = ("REDIS_URL", s.redis_url("127.0.0.1"));
    let why = refused(&wrong_name);
    assert!(why.contains("not valid for the name 127.0.0.1"), "{why}");
    // The server requires a client certificate.
    let why = refused(&[sqlite.clone(), ("REDIS_URL", s.redis_url("localhost")), files[0].clone()]);
    assert!(why.contains("REDIS_URL: localhost:"), "{why}");
    assert!(why.contains("client certificate"), "{why}");
    // A wrong password.
    let mut wrong = env.clone();
    wrong[1] = ("REDIS_URL", format!("rediss://:wrong@localhost:{}", s.redis_port));
    let why = refused(&wrong);
    assert!(why.contains("the server refused the password"), "{why}");
}

#[tokio::test]
async fn two_workers_share_a_room_through_tls_redis_and_store_in_tls_postgres() {
    let Some(s) = TlsServers::start() else { return };
    let ca = s.pki.ca.display().to_string();
    let url = s.pg_url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}"));
    let files = s.redis_files();
    let mut env: Vec<(&str, &str)> = vec![("DATABASE_URL", &url), ("L4_INSTANCES", "2")];
    let redis = s.redis_url("localhost");
    env.push(("REDIS_URL", &redis));
    env.extend(files.iter().map(|(k, v)| (*k, v.as_str())));
    let a = Server::start(&env).await;
    let b = Server::start(&env).await;
    let mut reader = b.client(1, "reader", Format::MsgPack);
    let mut writer = a.client(2, "writer", Format::Json);
    joined(&mut reader, "tls-room").await;
    joined(&mut writer, "tls-room").await;
    for i in 0..50 {
        writer.send("tls-room", &format!("m{i}")).await.unwrap();
    }
    let got = messages(&mut reader, 50).await;
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        (0..50).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=50).collect::<Vec<_>>());
}
