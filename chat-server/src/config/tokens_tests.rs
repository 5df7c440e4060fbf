//! The backend's token settings: each key file kind taken, each one refused with its
//! sentence (private key, other curve, symlink, writable by others, JWKS problems), and
//! `JWT_SECRET` needed only while this server still signs tokens.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use jsonwebtoken::Algorithm;

use super::*;
use crate::config::web::{MAX_DEPTH, MAX_FILES, WebPage};

fn only(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    move |k| map.get(k).cloned()
}

/// A key pair made by openssl in `dir`: (private PEM path, public PEM path).
fn openssl_key(dir: &Path, name: &str, params: &[&str]) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let ok = Command::new("openssl").arg("genpkey").args(params).arg("-out").arg(&private).output().unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let ok = Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&private).arg("-out").arg(&public).output();
    assert!(ok.unwrap().status.success());
    (private, public)
}

fn rsa(dir: &Path) -> (PathBuf, PathBuf) {
    openssl_key(dir, "rsa", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
}

fn ec(dir: &Path, curve: &str) -> (PathBuf, PathBuf) {
    openssl_key(dir, curve, &["-algorithm", "EC", "-pkeyopt", &format!("ec_paramgen_curve:{curve}")])
}

/// A P-256 public key file and a JWKS file holding the same key, in `dir`.
pub(super) fn example_key_files(dir: &Path) -> (PathBuf, PathBuf) {
    let (_, public) = ec(dir, "P-256");
    let file = dir.join("jwks.json");
    std::fs::write(&file, format!("{{\"keys\":[{}]}}", jwk("k1", &public, ""))).unwrap();
    (public, file)
}

/// Production, registration closed (its default there), no secret, plus `pairs`.
fn backend(pairs: &[(&str, String)]) -> Result<Settings, String> {
    let mut all = vec![("APP_ENV", "production".to_string())];
    all.extend(pairs.iter().cloned());
    Settings::from_sources(None, only(&all)).map_err(|e| e.to_string())
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn an_rsa_or_p256_public_key_is_taken_and_the_secret_is_then_optional() {
    let dir = tempfile::tempdir().unwrap();
    let (_, rsa_pub) = rsa(dir.path());
    let s = backend(&[("JWT_PUBLIC_KEY", path(&rsa_pub))]).unwrap();
    assert_eq!(s.tokens.keys[0].alg, Algorithm::RS256);
    assert!(!s.own_logins() && !s.jwt_secret_generated, "the backend signs every token: no sign-in here");
    let (_, ec_pub) = ec(dir.path(), "P-256");
    let s = backend(&[("JWT_PUBLIC_KEY", path(&ec_pub)), ("JWT_ISSUER", "https://app".into())]).unwrap();
    assert_eq!((s.tokens.keys[0].alg, s.tokens.issuer.as_deref()), (Algorithm::ES256, Some("https://app")));
    // Registration open: this server still signs tokens, so it needs its secret.
    let err = backend(&[("JWT_PUBLIC_KEY", path(&ec_pub)), ("REGISTRATION", "open".into())]).unwrap_err();
    assert!(err.contains("JWT_SECRET: is required"), "{err}");
}

#[test]
fn a_private_key_another_curve_or_no_pem_is_refused_with_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let (rsa_key, _) = rsa(dir.path());
    let err = backend(&[("JWT_PUBLIC_KEY", path(&rsa_key))]).unwrap_err();
    assert!(err.contains("holds a private key") && err.contains("-pubout"), "{err}");
    let (_, p384) = ec(dir.path(), "P-384");
    let err = backend(&[("JWT_PUBLIC_KEY", path(&p384))]).unwrap_err();
    assert!(err.contains("is not an EC P-256 key"), "{err}");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "hello").unwrap();
    let err = backend(&[("JWT_PUBLIC_KEY", path(&junk))]).unwrap_err();
    assert!(err.starts_with("JWT_PUBLIC_KEY (environment): ") && err.contains("holds no PEM"), "{err}");
    let err = backend(&[("JWT_PUBLIC_KEY", path(&dir.path().join("missing.pem")))]).unwrap_err();
    assert!(err.contains("No such file"), "{err}");
}

#[test]
fn a_key_file_someone_else_could_replace_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = rsa(dir.path());
    let link = dir.path().join("link.pub");
    std::os::unix::fs::symlink(&public, &link).unwrap();
    let err = backend(&[("JWT_PUBLIC_KEY", path(&link))]).unwrap_err();
    assert!(err.contains("symbolic link"), "{err}");
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = backend(&[("JWT_PUBLIC_KEY", path(&public))]).unwrap_err();
    assert!(err.contains("mode 666") && err.contains("chmod go-w"), "{err}");
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = backend(&[("JWT_PUBLIC_KEY", path(&public))]).unwrap_err();
    assert!(err.contains("its folder has mode 777"), "{err}");
    // A sticky folder (like /tmp): only the file's owner may replace it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    backend(&[("JWT_PUBLIC_KEY", path(&public))]).unwrap();
    // ... unless another user owns the folder (it may rename the file away).
    let me = unsafe { libc::geteuid() };
    if me == 0 {
        std::os::unix::fs::chown(dir.path(), Some(4242), None).unwrap();
        let err = backend(&[("JWT_PUBLIC_KEY", path(&public))]).unwrap_err();
        assert!(err.contains("its folder is owned by user 4242"), "{err}");
    }
}

#[test]
fn a_small_rsa_key_or_a_point_off_p256_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (_, small) = openssl_key(dir.path(), "rsa1024", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]);
    let err = backend(&[("JWT_PUBLIC_KEY", path(&small))]).unwrap_err();
    assert!(err.contains("RSA key of 1024 bits; at least 2048"), "{err}");
    let (_, k1) = ec(dir.path(), "secp256k1");
    let err = backend(&[("JWT_PUBLIC_KEY", path(&k1))]).unwrap_err();
    assert!(err.contains("is not an EC P-256 key"), "{err}");
    // A failed key is the only error: not also "JWT_SECRET is required".
    assert!(!err.contains("JWT_SECRET"), "{err}");
}

/// A JWKS entry for a public key file, through openssl's text form of the key.
fn jwk(kid: &str, public: &Path, extra: &str) -> String {
    let private = public.with_extension("key");
    let der = std::fs::read(&private).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&der)
        .map(|k| (k, Algorithm::RS256))
        .or_else(|_| jsonwebtoken::EncodingKey::from_ec_pem(&der).map(|k| (k, Algorithm::ES256)))
        .unwrap();
    let mut v = serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(&key.0, key.1).unwrap()).unwrap();
    v["kid"] = kid.into();
    if !extra.is_empty() {
        let more: serde_json::Value = serde_json::from_str(extra).unwrap();
        v.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
    }
    v.to_string()
}

#[test]
fn a_jwks_file_gives_every_signing_key_and_its_problems_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_, rsa_pub) = rsa(dir.path());
    let (_, ec_pub) = ec(dir.path(), "P-256");
    let file = dir.path().join("jwks.json");
    let write = |keys: &[String]| std::fs::write(&file, format!("{{\"keys\":[{}]}}", keys.join(","))).unwrap();
    write(&[jwk("a", &rsa_pub, ""), jwk("b", &ec_pub, ""), jwk("c", &rsa_pub, r#"{"use":"enc"}"#)]);
    let s = backend(&[("JWT_JWKS_FILE", path(&file))]).unwrap();
    let got: Vec<_> = s.tokens.keys.iter().map(|k| (k.kid.clone().unwrap(), k.alg)).collect();
    assert_eq!(got, [("a".to_string(), Algorithm::RS256), ("b".to_string(), Algorithm::ES256)], "enc keys left out");
    write(&[jwk("a", &rsa_pub, ""), jwk("a", &ec_pub, "")]);
    let err = backend(&[("JWT_JWKS_FILE", path(&file))]).unwrap_err();
    assert!(err.contains("names kid \"a\" twice"), "{err}");
    write(&[jwk("a", &rsa_pub, ""), r#"{"kty":"oct","kid":"s","k":"c2VjcmV0"}"#.to_string()]);
    let err = backend(&[("JWT_JWKS_FILE", path(&file))]).unwrap_err();
    assert!(err.contains("key 2 (kid \"s\"): a symmetric (oct) key"), "{err}");
    write(&[jwk("a", &rsa_pub, r#"{"d":"c2VjcmV0"}"#)]);
    let err = backend(&[("JWT_JWKS_FILE", path(&file))]).unwrap_err();
    assert!(err.contains("key 1 holds a private key (member \"d\")"), "{err}");
    write(&[jwk("a", &rsa_pub, r#"{"alg":"RS512"}"#)]);
    let err = backend(&[("JWT_JWKS_FILE", path(&file))]).unwrap_err();
    assert!(err.contains("key 1 (kid \"a\"): algorithm RS512 is not taken"), "{err}");
    std::fs::write(&file, "{").unwrap();
    let err = backend(&[("JWT_JWKS_FILE", path(&file))]).unwrap_err();
    assert!(err.contains("is not a JWKS document"), "{err}");
    // MAX_KEYS: 32 taken (kids told apart), 33 refused.
    let keys: Vec<String> = (0..32).map(|k| jwk(&format!("k{k}"), &rsa_pub, "")).collect();
    std::fs::write(&file, format!("{{\"keys\":[{}]}}", keys.join(","))).unwrap();
    assert_eq!(backend(&[("JWT_JWKS_FILE", path(&file))]).unwrap().tokens.keys.len(), 32);
    let big = format!("{{\"keys\":[{}]}}", vec![jwk("x", &rsa_pub, ""); 33].join(","));
    std::fs::write(&file, big).unwrap();
    let err = backend(&[("JWT_JWKS_FILE", path(&file))]).unwrap_err();
    assert!(err.contains("holds 33 keys; at most 32"), "{err}");
}

#[test]
fn a_key_file_over_one_mebibyte_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.pem");
    std::fs::write(&file, vec![b' '; (keys::MAX_KEY_FILE + 1) as usize]).unwrap();
    let err = backend(&[("JWT_PUBLIC_KEY", path(&file))]).unwrap_err();
    assert!(err.contains("has 1048577 bytes; at most 1048576 are read"), "{err}");
    // At the limit it is read (and then judged as PEM).
    std::fs::write(&file, vec![b' '; keys::MAX_KEY_FILE as usize]).unwrap();
    let err = backend(&[("JWT_PUBLIC_KEY", path(&file))]).unwrap_err();
    assert!(err.contains("holds no PEM"), "{err}");
}

#[test]
fn issuer_and_audience_without_a_backend_key_say_so() {
    let err = backend(&[("JWT_SECRET", "0123456789abcdef0123456789abcdef".into()), ("JWT_AUDIENCE", "chat".into())])
        .unwrap_err();
    assert!(err.contains("JWT_AUDIENCE (environment): applies to the backend's tokens"), "{err}");
}

/// `WEB_ROOT` with `index.html` and `extra` made in it: the settings, or the error.
fn web_root(extra: impl Fn(&Path)) -> Result<Settings, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<!doctype html>").unwrap();
    extra(dir.path());
    let env = [("APP_ENV", "development".to_string()), ("WEB_ROOT", path(dir.path()))];
    Settings::from_sources(None, only(&env)).map_err(|e| e.to_string())
}

#[test]
fn web_root_limits_files_and_depth_at_and_past_them() {
    let files =
        |n: usize| move |d: &Path| (1..n).for_each(|i| std::fs::write(d.join(format!("f{i}.js")), "x").unwrap());
    let s = web_root(files(MAX_FILES)).unwrap();
    assert!(matches!(&s.web, WebPage::Folder(f) if f.len() == MAX_FILES));
    let err = web_root(files(MAX_FILES + 1)).unwrap_err();
    assert!(err.contains("holds more than 1000 files"), "{err}");
    let nested = |depth: usize| {
        move |d: &Path| {
            let deep = (0..depth).fold(d.to_path_buf(), |p, i| p.join(format!("d{i}")));
            std::fs::create_dir_all(&deep).unwrap();
            std::fs::write(deep.join("a.js"), "x").unwrap();
        }
    };
    web_root(nested(MAX_DEPTH)).unwrap();
    let err = web_root(nested(MAX_DEPTH + 1)).unwrap_err();
    assert!(err.contains("more than 8 folders deep"), "{err}");
}
