//! README "Tokens from your backend": a worker takes connection tokens the app's
//! backend signs (RS256 and ES256, keys made here by openssl, in a JWKS file with two
//! keys told apart by `kid`), with any string `sub` and the name from a claim; checks
//! issuer, audience and expiry with a reason each; closes its own sign-in; and treats
//! one `sub` as one user across connections (its limit, its idempotent sends).

use std::path::{Path, PathBuf};
use std::process::Command;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use layer4_chat_client::protocol::{ClientMsg, Format, ServerMsg};
use serde_json::json;

use crate::helper::*;

const ISSUER: &str = "https://app.example";
const AUDIENCE: &str = "chat";

/// A key pair made by openssl in `dir`: the signing key and the public key's path.
fn key_pair(dir: &Path, name: &str, params: &[&str]) -> (EncodingKey, PathBuf) {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let out = Command::new("openssl").arg("genpkey").args(params).arg("-out").arg(&private).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&private).arg("-out").arg(&public).output();
    assert!(out.unwrap().status.success());
    let pem = std::fs::read(&private).unwrap();
    let key = if name.starts_with("rsa") {
        EncodingKey::from_rsa_pem(&pem).unwrap()
    } else {
        EncodingKey::from_ec_pem(&pem).unwrap()
    };
    (key, public)
}

struct App {
    rsa: EncodingKey,
    ec: EncodingKey,
    jwks: PathBuf,
}

impl App {
    /// An RSA and a P-256 key, published in one JWKS file as `rsa-1` and `ec-1`.
    fn new(dir: &Path) -> App {
        let (rsa, _) = key_pair(dir, "rsa", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
        let (ec, _) = key_pair(dir, "ec", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
        let jwk = |key: &EncodingKey, alg, kid: &str| {
            let mut v = serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(key, alg).unwrap()).unwrap();
            v["kid"] = kid.into();
            v
        };
        let jwks = dir.join("jwks.json");
        let doc = json!({ "keys": [jwk(&rsa, Algorithm::RS256, "rsa-1"), jwk(&ec, Algorithm::ES256, "ec-1")] });
        std::fs::write(&jwks, doc.to_string()).unwrap();
        App { rsa, ec, jwks }
    }

    /// A token as the backend signs it: `claims` over a valid default set.
    fn token(&self, alg: Algorithm, kid: Option<&str>, claims: serde_json::Value) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let mut all = json!({ "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600 });
        all.as_object_mut().unwrap().extend(claims.as_object().unwrap().clone());
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        let key = if alg == Algorithm::RS256 { &self.rsa } else { &self.ec };
        jsonwebtoken::encode(&header, &all, key).unwrap()
    }
}

async fn start(backend: &App, extra: &[(&str, &str)]) -> Server {
    start_on(Backend::Sqlite, backend, extra).await
}

async fn start_on(store: Backend, backend: &App, extra: &[(&str, &str)]) -> Server {
    let jwks = backend.jwks.display().to_string();
    let mut env = vec![
        ("JWT_JWKS_FILE", jwks.as_str()),
        ("JWT_ISSUER", ISSUER),
        ("JWT_AUDIENCE", AUDIENCE),
        ("JWT_NAME_CLAIM", "display_name"),
        ("REGISTRATION", "closed"),
        // No secret of its own: the backend signs every token.
        ("JWT_SECRET", ""),
    ];
    env.extend_from_slice(extra);
    Server::start_on(store, &env).await
}

/// The 401's code and message for a token, from the upgrade route.
async fn refused(server: &Server, token: &str) -> (u16, String, String) {
    let (status, _, body) =
        raw_http([127, 0, 0, 1].into(), server.port, "GET", &format!("/ws?token={token}"), "", "").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    (status, v["error"].as_str().unwrap_or("").to_string(), v["message"].as_str().unwrap_or("").to_string())
}

async fn welcome(ws: &mut RawWs) -> String {
    match raw_next(ws, Format::Json).await {
        Ok(ServerMsg::Welcome { user, .. }) => user,
        other => panic!("no welcome: {other:?}"),
    }
}

/// Sends `id` to `room` (joined) and returns the acked sequence number.
async fn send(ws: &mut RawWs, room: &str, id: &str, body: &str) -> u64 {
    let msg = ClientMsg::Send { room: room.into(), id: id.into(), body: body.into() };
    raw_send(ws, Format::Json, &msg).await;
    loop {
        match raw_next(ws, Format::Json).await {
            Ok(ServerMsg::Ack { id: acked, seq, .. }) if acked == id => return seq,
            Ok(ServerMsg::Error { code, text, .. }) => panic!("{code:?}: {text}"),
            Ok(_) => {}
            Err(code) => panic!("closed {code:?}"),
        }
    }
}

async fn join(ws: &mut RawWs, room: &str) {
    raw_send(ws, Format::Json, &ClientMsg::Join { room: room.into(), since: None }).await;
    loop {
        if let Ok(ServerMsg::Joined { .. }) = raw_next(ws, Format::Json).await {
            return;
        }
    }
}

#[tokio::test]
async fn rs256_and_es256_tokens_of_the_backend_chat_with_any_sub_and_the_name_claim() {
    let dir = tempfile::tempdir().unwrap();
    let backend = App::new(dir.path());
    let server = start(&backend, &[]).await;
    let ann =
        backend.token(Algorithm::RS256, Some("rsa-1"), json!({ "sub": "u-7f3a@app", "display_name": "Ann Smith" }));
    // Without the name claim, the name is `sub`.
    let bob = backend.token(Algorithm::ES256, Some("ec-1"), json!({ "sub": "42" }));
    let mut a = raw(&server.ws_url(), Some(&ann), None).await.unwrap();
    let mut b = raw(&server.ws_url(), Some(&bob), None).await.unwrap();
    assert_eq!((welcome(&mut a).await, welcome(&mut b).await), ("Ann Smith".to_string(), "42".to_string()));
    join(&mut a, "lobby").await;
    join(&mut b, "lobby").await;
    assert_eq!(send(&mut a, "lobby", "a-1", "hello bob").await, 1);
    loop {
        match raw_next(&mut b, Format::Json).await {
            Ok(ServerMsg::Message(m)) => {
                assert_eq!((m.user.as_str(), m.body.as_str(), m.seq), ("Ann Smith", "hello bob", 1));
                break;
            }
            Ok(_) => {}
            Err(code) => panic!("closed {code:?}"),
        }
    }
    // The server's own sign-in is closed: accounts are the backend's.
    let creds = json!({ "username": "ann", "password": "password-123" }).to_string();
    let (status, _, body) = raw_http([127, 0, 0, 1].into(), server.port, "POST", "/api/auth/login", "", &creds).await;
    assert!(status == 403 && body.contains("registration_closed"), "{status} {body}");
    let (status, _, _) = raw_http([127, 0, 0, 1].into(), server.port, "POST", "/api/auth/register", "", &creds).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_backend_token_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let backend = App::new(dir.path());
    let server = start(&backend, &[]).await;
    let sub = json!({ "sub": "ann" });
    let cases = [
        (
            "wrong issuer",
            backend.token(Algorithm::RS256, Some("rsa-1"), json!({ "sub": "ann", "iss": "https://evil" })),
            "invalid_token",
            "issuer",
        ),
        (
            "wrong audience",
            backend.token(Algorithm::ES256, Some("ec-1"), json!({ "sub": "ann", "aud": "other" })),
            "invalid_token",
            "audience",
        ),
        (
            "expired",
            backend.token(Algorithm::RS256, Some("rsa-1"), json!({ "sub": "ann", "exp": 1_000_000 })),
            "expired_token",
            "expired",
        ),
        ("unknown kid", backend.token(Algorithm::RS256, Some("rsa-9"), sub.clone()), "invalid_token", "no key"),
        // Signed by the RSA key but naming the EC key: the algorithm is not that key's.
        (
            "kid of another algorithm",
            backend.token(Algorithm::RS256, Some("ec-1"), sub.clone()),
            "invalid_token",
            "no key",
        ),
        (
            "no exp",
            backend.token(Algorithm::RS256, Some("rsa-1"), json!({ "sub": "ann", "exp": null })),
            "invalid_token",
            "lacks a claim",
        ),
        (
            "a number sub (RFC 7519: a string)",
            backend.token(Algorithm::RS256, Some("rsa-1"), json!({ "sub": 42 })),
            "invalid_token",
            "sub as a string",
        ),
        (
            "empty sub",
            backend.token(Algorithm::RS256, Some("rsa-1"), json!({ "sub": "" })),
            "invalid_token",
            "sub must be",
        ),
        (
            "long name",
            backend.token(Algorithm::RS256, Some("rsa-1"), json!({ "sub": "ann", "display_name": "x".repeat(65) })),
            "invalid_token",
            "name 1-64",
        ),
    ];
    for (what, token, code, says) in cases {
        let (status, got_code, message) = refused(&server, &token).await;
        assert_eq!((status, got_code.as_str()), (401, code), "{what}: {message}");
        assert!(message.contains(says), "{what}: {message}");
    }
    // At the limits: a 255-byte sub and a 64-character name are taken.
    let at_limit = backend.token(
        Algorithm::ES256,
        Some("ec-1"),
        json!({ "sub": "s".repeat(255), "display_name": "é".repeat(64) }),
    );
    let mut ws = raw(&server.ws_url(), Some(&at_limit), None).await.unwrap();
    assert_eq!(welcome(&mut ws).await, "é".repeat(64));
    let long_sub = backend.token(Algorithm::ES256, Some("ec-1"), json!({ "sub": "s".repeat(256) }));
    assert_eq!(refused(&server, &long_sub).await.0, 401);
    // HS256 is this server's own kind, and it has no secret: whoever made the token.
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({ "sub": "1", "name": "x", "exp": 9_999_999_999u64 }),
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(refused(&server, &forged).await.1, "invalid_token");
}

#[tokio::test]
async fn a_pem_key_without_issuer_or_audience_takes_tokens_without_kid_and_refuses_any_audience() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = key_pair(dir.path(), "rsa-pem", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let server = Server::start(&[
        ("JWT_PUBLIC_KEY", public.display().to_string().as_str()),
        ("REGISTRATION", "closed"),
        ("JWT_SECRET", ""),
    ])
    .await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let sign = |claims: serde_json::Value, kid: Option<&str>| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    // No kid, or a kid the PEM key does not have: the one key without a kid.
    for kid in [None, Some("v7")] {
        let token = sign(json!({ "sub": "ann", "name": "Ann", "exp": now + 60 }), kid);
        let mut ws = raw(&server.ws_url(), Some(&token), None).await.unwrap();
        assert_eq!(welcome(&mut ws).await, "Ann");
    }
    // A token made for some audience is not for this server when it names none.
    let token = sign(json!({ "sub": "ann", "exp": now + 60, "aud": "billing" }), None);
    let (status, _, message) = refused(&server, &token).await;
    assert!(status == 401 && message.contains("audience"), "{status} {message}");
}

#[tokio::test]
async fn a_token_without_kid_needs_exactly_one_key_of_its_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    let backend = App::new(dir.path());
    let server = start(&backend, &[]).await;
    // The JWKS holds one RS256 key: a token without kid is that key's.
    let token = backend.token(Algorithm::RS256, None, json!({ "sub": "ann" }));
    let mut ws = raw(&server.ws_url(), Some(&token), None).await.unwrap();
    assert_eq!(welcome(&mut ws).await, "ann");
}

#[tokio::test]
async fn one_sub_is_one_user_across_tokens_and_connections_on_sqlite() {
    one_sub_is_one_user(Backend::Sqlite).await;
}

#[tokio::test]
async fn one_sub_is_one_user_across_tokens_and_connections_on_postgres() {
    one_sub_is_one_user(Backend::Postgres).await;
}

async fn one_sub_is_one_user(store: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let backend = App::new(dir.path());
    let server = start_on(store, &backend, &[("MAX_CONNECTIONS_PER_USER", "1")]).await;
    let ann = |alg, kid| backend.token(alg, Some(kid), json!({ "sub": "ann@app", "display_name": "Ann" }));
    let mut first = raw(&server.ws_url(), Some(&ann(Algorithm::RS256, "rsa-1")), None).await.unwrap();
    welcome(&mut first).await;
    // The same sub under the other key is the same user: its second connection is refused.
    let second = ann(Algorithm::ES256, "ec-1");
    let (status, _, body) = raw_http(
        [127, 0, 0, 1].into(),
        server.port,
        "GET",
        "/ws",
        &format!("Authorization: Bearer {second}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
        "",
    )
    .await;
    assert!(status == 429 && body.contains("too_many_connections"), "{status} {body}");
    join(&mut first, "r").await;
    assert_eq!(send(&mut first, "r", "m-1", "once").await, 1);
    drop(first);
    // A new connection of the same sub resending the id gets the first sequence back;
    // another sub with the same id is another message.
    let again = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let Ok(mut ws) = raw(&server.ws_url(), Some(&second), None).await {
                welcome(&mut ws).await;
                return ws;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the first connection's place is given back");
    let mut again = again;
    join(&mut again, "r").await;
    assert_eq!(send(&mut again, "r", "m-1", "once").await, 1, "the resend is the same message");
    let bob = backend.token(Algorithm::RS256, Some("rsa-1"), json!({ "sub": "bob@app" }));
    let mut b = raw(&server.ws_url(), Some(&bob), None).await.unwrap();
    welcome(&mut b).await;
    join(&mut b, "r").await;
    assert_eq!(send(&mut b, "r", "m-1", "mine").await, 2);
}
