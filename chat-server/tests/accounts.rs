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

#[tokio::test]
async fn user_names_are_unique_whatever_their_case_and_log_in_as_registered() {
    let server = Server::start(&[]).await;
    http::register(&server.base(), "alice", "password1").await.unwrap();
    match http::register(&server.base(), "ALICE", "password2").await {
        Err(AuthError::Refused { status, error, .. }) => assert_eq!((status, error.as_str()), (409, "name_taken")),
        other => panic!("ALICE beside alice: {other:?}"),
    }
    let session = http::login(&server.base(), "Alice", "password1").await.unwrap();
    assert_eq!(session.user.name, "alice", "the name as registered");
}

/// Whether the user `nobody` can read `path` (root only: None otherwise).
fn nobody_can_read(path: &std::path::Path) -> Option<bool> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let out = std::process::Command::new("runuser")
        .args(["-u", "nobody", "--", "cat"])
        .arg(path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    Some(out.success())
}

#[tokio::test]
async fn the_database_its_wal_and_the_folder_made_for_it_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // A folder others may enter, as /var/lib is: only the server's own modes protect it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = dir.path().join("data").join("chat.db");
    let url = format!("sqlite://{}", db.display());
    let server = Server::start(&[("DATABASE_URL", url.as_str())]).await;
    http::register(&server.base(), "carol", "password1").await.unwrap(); // writes: -wal exists
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(db.parent().unwrap()), 0o700);
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        assert_eq!(mode(&file), 0o600, "{}", file.display());
        // As another user: not readable (a world-readable file beside it is, so this can fail).
        let open = dir.path().join("open.txt");
        std::fs::write(&open, "x").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        if let (Some(theirs), Some(open)) = (nobody_can_read(&file), nobody_can_read(&open)) {
            assert!(open && !theirs, "{}: readable by nobody", file.display());
        }
    }
    drop(server);
    // A database an older version left world-readable is made private at start.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _again = Server::start(&[("DATABASE_URL", url.as_str())]).await;
    assert_eq!(mode(&db), 0o600);
}

#[tokio::test]
async fn in_development_without_a_secret_tokens_survive_a_restart() {
    let mut server = Server::start(&[("APP_ENV", "development"), ("JWT_SECRET", "")]).await;
    let session = http::register(&server.base(), "dave", "password1").await.unwrap();
    let kept = server.dir.path().join("jwt-secret");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777, 0o600);
    server.signal(nix::sys::signal::Signal::SIGTERM);
    server.wait_exit(std::time::Duration::from_secs(10)).await;
    server.spawn().await;
    let mut ws = raw(&server.ws_url(), Some(&session.token), None).await.unwrap();
    let welcome = raw_next(&mut ws, Format::Json).await.unwrap();
    assert!(matches!(welcome, layer4_chat_client::protocol::ServerMsg::Welcome { ref user, .. } if user == "dave"));
}
