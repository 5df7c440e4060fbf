//! README "Web page": `GET /` serves the chat page built into the binary with a strict
//! Content-Security-Policy and ETags (a repeat is a 304 without a body), `WEB_ROOT`
//! serves a team's own build read once at start (a file someone else could replace is
//! refused, naming it), and `WEB_UI=off` serves none.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::helper::*;

/// One request from 127.0.0.1: status, headers (lower-case names) and body.
pub async fn request(server: &Server, method: &str, path: &str, headers: &str) -> (u16, Vec<(String, String)>, String) {
    raw_request([127, 0, 0, 1].into(), server.port, method, path, headers, "").await
}

#[tokio::test]
async fn the_embedded_page_has_a_strict_csp_and_revalidates_with_etags() {
    let server = Server::start(&[]).await;
    let (status, headers, body) = request(&server, "GET", "/", "").await;
    assert_eq!(status, 200);
    assert!(body.contains("<script type=\"module\" src=\"/assets/app.js\">"), "{body}");
    assert!(header(&headers, "content-type").starts_with("text/html"));
    let csp = header(&headers, "content-security-policy");
    for rule in ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
        assert!(csp.contains(rule), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(header(&headers, "cache-control"), "no-cache");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    for asset in ["/assets/app.js", "/assets/style.css"] {
        let (status, headers, body) = request(&server, "GET", asset, "").await;
        assert!(status == 200 && !body.is_empty(), "{asset}: {status}");
        let etag = header(&headers, "etag").to_string();
        assert!(etag.starts_with('"') && etag.len() > 2, "{etag}");
        let (status, again, body) = request(&server, "GET", asset, &format!("If-None-Match: {etag}\r\n")).await;
        assert_eq!((status, body.as_str(), header(&again, "etag")), (304, "", etag.as_str()), "{asset}");
        let (status, _, _) = request(&server, "GET", asset, "If-None-Match: \"stale\"\r\n").await;
        assert_eq!(status, 200);
        let (status, head, body) = request(&server, "HEAD", asset, "").await;
        assert!(status == 200 && body.is_empty() && header(&head, "content-length") != "0", "{asset}");
    }
    // Not a file of the page, or not a read: 404 with the JSON error body.
    for (method, path) in [("GET", "/nope"), ("GET", "/assets/../index.html"), ("POST", "/")] {
        let (status, _, body) = request(&server, method, path, "").await;
        assert!(status == 404 && body.contains("not_found"), "{method} {path}: {status} {body}");
    }
}

#[tokio::test]
async fn web_root_serves_a_teams_build_and_web_ui_off_serves_none() {
    let build = tempfile::tempdir().unwrap();
    std::fs::create_dir(build.path().join("assets")).unwrap();
    std::fs::write(build.path().join("index.html"), "<!doctype html><title>ours</title>").unwrap();
    std::fs::write(build.path().join("assets/main-3f2a.js"), "console.log(1)").unwrap();
    std::fs::write(build.path().join(".gitkeep"), "").unwrap();
    let root = build.path().display().to_string();
    let server = Server::start(&[("WEB_ROOT", root.as_str())]).await;
    let (status, _, body) = request(&server, "GET", "/", "").await;
    assert!(status == 200 && body.contains("<title>ours</title>"), "{status} {body}");
    let (status, headers, _) = request(&server, "GET", "/assets/main-3f2a.js", "").await;
    assert!(status == 200 && header(&headers, "content-type").starts_with("text/javascript"));
    assert_eq!(request(&server, "GET", "/assets/app.js", "").await.0, 404, "the embedded page is not mixed in");
    assert_eq!(request(&server, "GET", "/.gitkeep", "").await.0, 404, "dot files are not served");
    drop(server);
    let off = Server::start(&[("WEB_UI", "off")]).await;
    assert_eq!(request(&off, "GET", "/", "").await.0, 404);
    assert_eq!(request(&off, "GET", "/api/health/websocket", "").await.0, 200);
}

/// `chat-server --check` with `WEB_ROOT`: exit code and stderr.
fn check(root: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .arg("--check")
        .env_clear()
        .env("JWT_SECRET", SECRET)
        .env("WEB_ROOT", root)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_web_root_file_someone_else_could_replace_or_a_symlink_is_refused_at_start() {
    let build = tempfile::tempdir().unwrap();
    std::fs::write(build.path().join("index.html"), "<!doctype html>").unwrap();
    let page = build.path().join("page.js");
    std::fs::write(&page, "x").unwrap();
    std::fs::set_permissions(&page, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, err) = check(build.path());
    assert!(code == 2 && err.contains("WEB_ROOT") && err.contains("/page.js: the file has mode 666"), "{code} {err}");
    std::fs::remove_file(&page).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &page).unwrap();
    let (code, err) = check(build.path());
    assert!(code == 2 && err.contains("/page.js: is a symbolic link"), "{code} {err}");
    std::fs::remove_file(&page).unwrap();
    std::fs::remove_file(build.path().join("index.html")).unwrap();
    let (code, err) = check(build.path());
    assert!(code == 2 && err.contains("holds no index.html"), "{code} {err}");
}
