//! README "Accounts and tokens", "Health and metrics".

use layer4_chat_client::http::{self, AuthError};
use layer4_chat_client::protocol::Format;

use crate::helper::*;

#[tokio::test]
async fn register_then_login_gives_tokens_that_open_a_websocket() {
    let server = Server::start(&[]).await;
    let session = http::register(&server.base(), "ann", "correct horse").await.unwrap();
    assert_eq!(session.user.name, "ann");
    let again = http::login(&server.base(), "ann", "correct horse").await.unwrap();
    assert_eq!(again.user.id, session.user.id);
    let mut ws = raw(&server.ws_url(), Some(&again.token), None).await.unwrap();
    let welcome = raw_next(&mut ws, Format::Json).await.unwrap();
    assert!(matches!(welcome, layer4_chat_client::protocol::ServerMsg::Welcome { ref user, .. } if user == "ann"));
}

#[tokio::test]
async fn bad_registrations_and_logins_get_specific_errors() {
    let server = Server::start(&[]).await;
    http::register(&server.base(), "bob", "password1").await.unwrap();
    let refused = |r: Result<http::Session, AuthError>| match r {
        Err(AuthError::Refused { status, error, .. }) => (status, error),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(refused(http::register(&server.base(), "bob", "password2").await), (409, "name_taken".into()));
    assert_eq!(refused(http::register(&server.base(), "b", "password2").await), (400, "bad_request".into()));
    assert_eq!(refused(http::register(&server.base(), "carol", "short").await), (400, "bad_request".into()));
    assert_eq!(refused(http::login(&server.base(), "bob", "wrong-password").await), (401, "bad_credentials".into()));
    assert_eq!(refused(http::login(&server.base(), "nobody", "password1").await), (401, "bad_credentials".into()));
    let (status, body) = http::post(&server.base(), "/api/auth/login", "{".into()).await.unwrap();
    assert_eq!(status, 400, "{body:?}");
}

#[tokio::test]
async fn health_and_metrics_report_connections_without_secrets() {
    let server = Server::start(&[]).await;
    let token = server.token(1, "ann");
    let mut ws = raw(&server.ws_url(), Some(&token), None).await.unwrap();
    raw_next(&mut ws, Format::Json).await.unwrap();
    let (status, _, body) = http::get(&server.base(), "/api/health/websocket").await.unwrap();
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["connections"], 1);
    assert_eq!(health["max_connections"], 2500);
    assert!(health["memory_rss_bytes"].as_u64().unwrap() > 1_000_000);
    assert!(health["timestamp"].as_str().unwrap().ends_with('Z'));
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains(SECRET) && !text.contains("chat.db"), "{text}");
    assert_eq!(server.metric("chat_connections_active", &[]).await, 1.0);
    assert_eq!(server.metric("chat_connections_total", &[]).await, 1.0);
}
