//! The router in process (`tower::ServiceExt::oneshot`) over a handle to a fake
//! actor: each route parses, asks, and answers with the documented status, code and
//! shape, without a daemon.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::{ApiState, LogReads, router};
use crate::daemon::{Error, Handle, Msg, fake};
use crate::lifecycle::State;
use crate::wire::types::ReloadProgress;

fn state(handle: Handle) -> ApiState {
    ApiState {
        handle,
        started: Instant::now(),
        home: "/nonexistent/home".into(),
        log_dir: "/nonexistent/logs".into(),
        kill: Arc::default(),
        stopping: tokio::sync::watch::channel(false).1,
        api_addr: None,
        api_error: None,
        log_reads: LogReads::default(),
        dashboard: true,
        update: tokio::sync::mpsc::channel(1).0,
        handover: None,
    }
}

/// One app `web` of two online instances; replacing instance 1 fails.
fn web() -> Handle {
    let mut rows: Vec<_> = (0..2).map(|i| fake::row("web", i, Some(100 + i), State::Online, Some(9_000))).collect();
    fake::handle(move |msg| match msg {
        Msg::Status { reply } => drop(reply.send(fake::status(rows.clone()))),
        Msg::Describe { app, reply } if app == "web" => drop(reply.send(Ok(fake::description(&app, rows.clone(), 1)))),
        Msg::Describe { app, reply } => drop(reply.send(Err(Error::UnknownApp(app)))),
        Msg::Wait { reply, .. } => drop(reply.send(())),
        Msg::ReplaceInstance { index, reply, .. } => {
            let r = &mut rows[index as usize];
            let _ = reply.send(Ok((r.pid, false)));
            if index == 1 {
                r.last_exit = fake::exit("crashed with exit code 1");
            } else {
                r.pid = Some(200 + index);
            }
        }
        other => panic!("unexpected {other:?}"),
    })
}

async fn call(handle: Handle, method: &str, path: &str, body: &str) -> (StatusCode, String, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let resp = router(state(handle)).oneshot(req).await.unwrap();
    let status = resp.status();
    let kind = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, kind, String::from_utf8(bytes.to_vec()).unwrap())
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn status_answers_the_table_with_states_spelled_as_always() {
    let (status, _, body) = call(web(), "GET", "/api/v1/status", "").await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    assert_eq!((v["schema"].as_u64(), v["instances"][1]["state"].as_str()), (Some(1), Some("online")));
}

#[tokio::test]
async fn errors_carry_their_status_and_code() {
    let cases = [
        ("GET", "/api/v1/apps/nope", "", StatusCode::NOT_FOUND, "unknown_app"),
        ("POST", "/api/v1/apps/web/frobnicate", "", StatusCode::BAD_REQUEST, "bad_request"),
        ("POST", "/api/v1/apps/web/reload", "{\"parallel\":", StatusCode::BAD_REQUEST, "bad_request"),
        ("POST", "/api/v1/apps/web/reload", "{\"bogus\":1}", StatusCode::UNPROCESSABLE_ENTITY, "bad_request"),
        ("POST", "/api/v1/start", "{\"config\":\"rel.toml\"}", StatusCode::BAD_REQUEST, "bad_request"),
        ("GET", "/api/v1/nowhere", "", StatusCode::NOT_FOUND, "not_found"),
        ("DELETE", "/api/v1/status", "", StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    ];
    for (method, path, body, want, code) in cases {
        let (status, _, text) = call(web(), method, path, body).await;
        assert_eq!((status, json(&text)["error"]["code"].as_str()), (want, Some(code)), "{method} {path}: {text}");
    }
    let big = format!("{{\"app\":\"{}\"}}", "x".repeat(super::BODY_LIMIT));
    let (status, _, text) = call(web(), "POST", "/api/v1/logs/flush", &big).await;
    assert_eq!(
        (status, json(&text)["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"))
    );
    let (status, _, text) = call(fake::gone(), "GET", "/api/v1/status", "").await;
    assert_eq!(
        (status, json(&text)["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("shutting_down"))
    );
}

#[tokio::test]
async fn a_reload_that_fails_answers_409_naming_the_instance_and_its_old_run() {
    let (status, _, text) = call(web(), "POST", "/api/v1/apps/web/reload", "{}").await;
    assert_eq!(status, StatusCode::CONFLICT);
    let error = &json(&text)["error"];
    assert_eq!(error["code"], "reload_failed");
    assert_eq!(
        error["message"],
        "web:1 was not replaced: crashed with exit code 1; the old run (pid 101) keeps serving; the reload stopped there"
    );
    let (status, _, text) = call(web(), "POST", "/api/v1/apps/web/instances/0/replace", "{}").await;
    assert_eq!((status, json(&text)["pid"].as_u64()), (StatusCode::OK, Some(200)));
}

#[tokio::test]
async fn a_reload_with_progress_streams_the_plan_each_step_and_the_end() {
    let (status, kind, text) = call(web(), "POST", "/api/v1/apps/web/reload", "{\"progress\":true}").await;
    assert_eq!((status, kind.as_str()), (StatusCode::OK, "application/x-ndjson"));
    let lines: Vec<ReloadProgress> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        matches!(&lines[0], ReloadProgress::Plan { app, instances, parallel: 1 } if app == "web" && instances == &[0, 1])
    );
    assert!(matches!(&lines[1], ReloadProgress::Replaced(r) if r.ok && r.pid == Some(200)));
    assert!(matches!(&lines[2], ReloadProgress::Replaced(r) if !r.ok && r.instance == 1));
    assert!(matches!(&lines[3], ReloadProgress::Error(e) if e.code == "reload_failed"));
    assert_eq!(lines.len(), 4);
    // An unknown app is refused before any line.
    let (status, kind, _) = call(web(), "POST", "/api/v1/apps/nope/reload", "{\"progress\":true}").await;
    assert_eq!((status, kind.as_str()), (StatusCode::NOT_FOUND, "application/json"));
}

#[tokio::test]
async fn the_dashboard_is_served_with_its_policy_and_a_validator_and_can_be_turned_off() {
    let get = |dashboard: bool, path: &str, etag: Option<&str>| {
        let mut s = state(web());
        s.dashboard = dashboard;
        let mut req = Request::builder().uri(path.to_owned());
        if let Some(tag) = etag {
            req = req.header("if-none-match", tag);
        }
        router(s).oneshot(req.body(Body::empty()).unwrap())
    };
    let page = get(true, "/", None).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let h = page.headers();
    assert!(h["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'; script-src 'self';"));
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let tag = h["etag"].to_str().unwrap().to_owned();
    let body = page.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("/assets/dashboard.js"));
    assert_eq!(get(true, "/", Some(&tag)).await.unwrap().status(), StatusCode::NOT_MODIFIED);
    for asset in ["/assets/dashboard.js", "/assets/dashboard.css"] {
        assert_eq!(get(true, asset, None).await.unwrap().status(), StatusCode::OK, "{asset}");
        assert_eq!(get(false, asset, None).await.unwrap().status(), StatusCode::NOT_FOUND, "{asset}");
    }
    assert_eq!(get(true, "/assets/other.js", None).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(get(false, "/", None).await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn at_most_four_history_answers_are_built_at_once_and_a_fifth_is_told_to_retry() {
    use std::sync::Mutex;
    // The fake actor keeps every history request unanswered, as a busy daemon would.
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    let handle = fake::handle(move |msg| match msg {
        Msg::History { reply, .. } => keep.lock().unwrap().push(reply),
        other => panic!("unexpected {other:?}"),
    });
    let s = state(handle);
    let get = |s: ApiState| {
        let req = Request::builder().uri("/api/v1/apps/web/history").body(Body::empty()).unwrap();
        router(s).oneshot(req)
    };
    let waiting: Vec<_> = (0..super::handlers::HISTORY_READS).map(|_| tokio::spawn(get(s.clone()))).collect();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while held.lock().unwrap().len() < super::handlers::HISTORY_READS {
        assert!(tokio::time::Instant::now() < deadline, "the four reads never reached the actor");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let busy = get(s.clone()).await.unwrap();
    assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(busy.headers()["retry-after"], "1");
    // Answered (here: the actor gone), the places are free again.
    held.lock().unwrap().clear();
    for w in waiting {
        assert_eq!(w.await.unwrap().unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
