//! README "Client library, `l4chat`, `l4load`": the command-line tools refuse what they
//! cannot do with one sentence and exit codes a script can test. (Their traffic is
//! tested against real servers in chat-server's tests, which use these binaries; this
//! binary also makes `cargo test --workspace` build them.)
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn run(bin: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin).args(args).env_remove("L4_TOKEN").env_remove("L4_SERVER").output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn l4chat_names_a_bad_server_address_and_a_ca_file_without_certificates() {
    let l4chat = env!("CARGO_BIN_EXE_l4chat");
    let (code, err) = run(l4chat, &["--server", "ftp://127.0.0.1:1", "health"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("expected http://host:port or https://host"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let (code, err) = run(l4chat, &["--ca-file", not_pem.to_str().unwrap(), "health"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--ca-file") && err.contains("no PEM certificate"), "{err}");
}

#[test]
fn l4load_loads_loopback_only_and_refuses_a_bad_ca_file() {
    let l4load = env!("CARGO_BIN_EXE_l4load");
    let (code, err) = run(l4load, &["idle", "--url", "wss://chat.example.com/ws", "--connections", "1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("only targets 127.0.0.1 / localhost"), "{err}");
    let (code, err) = run(l4load, &["idle", "--url", "wss://localhost:1/ws", "--ca-file", "/nonexistent.pem"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--ca-file /nonexistent.pem"), "{err}");
}
