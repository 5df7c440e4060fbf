#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write;

use super::*;

/// An environment of `pairs`, in development unless `pairs` name `APP_ENV` or `NODE_ENV`
/// (most tests here are about other settings; production needs a secret).
fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let mut map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    if !map.contains_key("APP_ENV") && !map.contains_key("NODE_ENV") {
        map.insert("APP_ENV".into(), "development".into());
    }
    move |k| map.get(k).cloned()
}

/// Exactly `pairs`.
fn only(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| map.get(k).cloned()
}

const GOOD_SECRET: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn without_app_env_or_node_env_saying_development_it_is_production() {
    let err = Settings::from_sources(None, only(&[])).unwrap_err().to_string();
    assert!(err.contains("JWT_SECRET") && err.contains("openssl rand -base64 48"), "{err}");
    let s = Settings::from_sources(None, only(&[("JWT_SECRET", GOOD_SECRET)])).unwrap();
    assert!(!s.is_development() && !s.limits.registration_open);
    // PM2 users set NODE_ENV; APP_ENV wins when both are set.
    assert!(Settings::from_sources(None, only(&[("NODE_ENV", "development")])).unwrap().is_development());
    let prod = only(&[("NODE_ENV", "production"), ("JWT_SECRET", "short-secret-0123")]);
    assert!(Settings::from_sources(None, prod).unwrap_err().to_string().contains("at least 32 bytes in production"));
    let both = only(&[("NODE_ENV", "production"), ("APP_ENV", "development")]);
    assert!(Settings::from_sources(None, both).unwrap().is_development());
}

#[test]
fn production_refuses_a_short_blank_or_placeholder_secret() {
    for (secret, says) in [
        ("0123456789abcdef0123456789abcde", "at least 32 bytes in production (it has 31)"),
        (&" ".repeat(40), "only whitespace"),
        (PLACEHOLDER_SECRET, "placeholder of config/.env.example"),
    ] {
        let err = Settings::from_sources(None, only(&[("APP_ENV", "production"), ("JWT_SECRET", secret)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(says) && err.contains("openssl rand -base64 48"), "{secret:?}: {err}");
        assert!(!err.contains(secret.trim()) || secret.trim().is_empty() || secret == PLACEHOLDER_SECRET, "{err}");
    }
    let ok = only(&[("APP_ENV", "production"), ("JWT_SECRET", GOOD_SECRET)]);
    assert_eq!(Settings::from_sources(None, ok).unwrap().jwt_secret, GOOD_SECRET.as_bytes());
}

#[test]
fn defaults_follow_the_plan() {
    let s = Settings::from_sources(None, env(&[])).unwrap();
    assert_eq!(s.port, 3001);
    assert_eq!(s.max_connections, 2500);
    assert_eq!(s.heartbeat_interval, Duration::from_secs(25));
    assert_eq!(s.connection_timeout, Duration::from_secs(60));
    assert_eq!(s.message_batch_size, 100);
    assert_eq!(s.max_message_size, 64 * 1024);
    assert_eq!(s.database_url, "sqlite://data/chat.db");
    assert!(s.jwt_secret_generated && s.is_development());
}

#[test]
fn port_wins_over_websocket_port() {
    let s = Settings::from_sources(None, env(&[("WEBSOCKET_PORT", "4000")])).unwrap();
    assert_eq!(s.port, 4000);
    let s = Settings::from_sources(None, env(&[("WEBSOCKET_PORT", "4000"), ("PORT", "4100")])).unwrap();
    assert_eq!(s.port, 4100);
}

#[test]
fn every_bad_value_is_reported_by_name() {
    let e = Settings::from_sources(
        None,
        env(&[("PORT", "70000"), ("MAX_CONNECTIONS", "lots"), ("APP_ENV", "production"), ("HOST", "localhost")]),
    )
    .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("PORT (environment): 70000 is out of range"), "{text}");
    assert!(text.contains("MAX_CONNECTIONS (environment): \"lots\" is not a whole number"), "{text}");
    assert!(text.contains("JWT_SECRET: is required when APP_ENV is \"production\""), "{text}");
    assert!(text.contains("HOST (environment)"), "{text}");
    assert_eq!(e.0.len(), 4);
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    let e = Settings::from_sources(None, env(&[("JWT_SECRET", "short-secret")])).unwrap_err();
    assert!(!e.to_string().contains("short-secret"), "{e}");
    let s = Settings::from_sources(
        None,
        env(&[("JWT_SECRET", "a-very-long-secret-value"), ("DATABASE_URL", "postgres://u:hunter2@db/chat")]),
    )
    .unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains("hunter2") && !debug.contains("a-very-long-secret-value"), "{debug}");
    assert!(debug.contains("postgres://u:***@db/chat"), "{debug}");
}

#[test]
fn file_values_are_overridden_by_the_environment_and_errors_carry_positions() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "port = 5000\nmax_connections = 10\nheartbeat_interval = \"x\"\nbogus = 1").unwrap();
    let e = Settings::from_sources(Some(f.path()), env(&[("PORT", "5001")])).unwrap_err();
    let text = e.to_string();
    assert!(text.contains(":3:22 (heartbeat_interval): \"x\" is not a whole number"), "{text}");
    assert!(text.contains(":4:1: unknown key `bogus`"), "{text}");

    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "port = 5000\nmax_connections = 10").unwrap();
    let s = Settings::from_sources(Some(f.path()), env(&[("PORT", "5001")])).unwrap();
    assert_eq!((s.port, s.max_connections), (5001, 10));
}

#[test]
fn the_timeout_must_exceed_the_heartbeat() {
    let e = Settings::from_sources(None, env(&[("HEARTBEAT_INTERVAL", "5000"), ("CONNECTION_TIMEOUT", "5000")]))
        .unwrap_err();
    assert!(e.to_string().contains("CONNECTION_TIMEOUT (environment): must be longer"), "{e}");
}

/// Every variable `config/.env.example` sets or shows commented out is one the server
/// accepts, with a valid value (the commented examples are checked too).
#[test]
fn the_shipped_env_example_is_valid_settings() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/.env.example");
    let text = std::fs::read_to_string(path).unwrap();
    let mut pairs = HashMap::new();
    for line in text.lines() {
        let line = line.trim().trim_start_matches('#').trim();
        let Some((key, value)) = line.split_once('=') else { continue };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
            continue; // prose
        }
        let value = value.split(" #").next().unwrap_or("").trim();
        pairs.insert(key.to_string(), value.to_string());
    }
    assert!(pairs.contains_key("JWT_SECRET") && pairs.contains_key("MAX_CONNECTIONS"), "{pairs:?}");
    for key in pairs.keys() {
        assert!(known().any(|v| v == key) || key == "RUST_LOG", "unknown variable {key} in .env.example");
    }
    // As shipped, its secret is the placeholder, refused in production ...
    let err = Settings::from_sources(None, |k| pairs.get(k).cloned()).unwrap_err().to_string();
    assert!(err.contains("placeholder"), "{err}");
    // ... and with a real one every value it shows is valid (the key files it names
    // exist on the deploying machine: here, files made like them).
    pairs.insert("JWT_SECRET".into(), GOOD_SECRET.into());
    let keys = tempfile::tempdir().unwrap();
    let (public, jwks) = super::tokens_tests::example_key_files(keys.path());
    pairs.insert("JWT_PUBLIC_KEY".into(), public.display().to_string());
    pairs.insert("JWT_JWKS_FILE".into(), jwks.display().to_string());
    let settings = Settings::from_sources(None, |k| pairs.get(k).cloned()).unwrap();
    assert_eq!(settings.max_connections, 2500);
    assert!(settings.database_url.starts_with("postgres://"));
    assert_eq!(settings.tokens.keys.len(), 2);
}

#[test]
fn more_than_one_worker_needs_redis_and_a_shared_secret() {
    let err = Settings::from_sources(None, env(&[("L4_INSTANCES", "3")])).unwrap_err().to_string();
    assert!(err.contains("REDIS_URL: is required with 3 workers (L4_INSTANCES)"), "{err}");
    assert!(err.contains("without Redis every worker would keep its own copy of each room"), "{err}");
    assert!(err.contains("JWT_SECRET") && err.contains("reject the others' tokens"), "{err}");
    let ok = env(&[("L4_INSTANCES", "3"), ("REDIS_URL", "redis://127.0.0.1:6379"), ("JWT_SECRET", "0123456789abcdef")]);
    assert_eq!(Settings::from_sources(None, ok).unwrap().instances, 3);
    assert_eq!(Settings::from_sources(None, env(&[("L4_INSTANCES", "1")])).unwrap().instances, 1);
}

#[test]
fn the_redis_prefix_defaults_to_l4_and_must_be_a_plain_name() {
    assert_eq!(Settings::from_sources(None, env(&[])).unwrap().redis_prefix, "l4");
    assert_eq!(
        Settings::from_sources(None, env(&[("REDIS_PREFIX", "chat-prod.eu_1")])).unwrap().redis_prefix,
        "chat-prod.eu_1"
    );
    for bad in ["", "has space", "a:b", &"x".repeat(65)] {
        let err = Settings::from_sources(None, env(&[("REDIS_PREFIX", bad)])).unwrap_err().to_string();
        assert!(err.contains("REDIS_PREFIX") && err.contains("must be 1 to 64 letters"), "{bad:?}: {err}");
    }
}

#[test]
fn api_keys_are_taken_from_32_printable_characters_and_never_echoed() {
    let at_limit = "k".repeat(32);
    let s = Settings::from_sources(None, env(&[("API_KEYS", &format!("{at_limit}, "))])).unwrap();
    assert_eq!(s.publish.keys, vec![at_limit.into_bytes()]);
    assert!(!format!("{s:?}").contains("kkkk"), "Debug shows no key");
    let short = "s".repeat(31);
    let err = Settings::from_sources(None, env(&[("API_KEYS", &format!("{}, {short}", "k".repeat(40)))]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("key 2 must be at least 32 printable characters") && !err.contains(&short), "{err}");
}
