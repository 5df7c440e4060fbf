//! README "Posting from the backend": `POST /api/rooms/{room}/messages` with an API key
//! stores and delivers like a member's send (one order with the members' sends,
//! idempotent by id, to every worker through Redis), `GET` pages the history, and every
//! refusal has its status and code.

use layer4_chat_client::protocol::Format;

use crate::fanout::Redis;
use crate::helper::*;

const KEY: &str = "backend-key-0123456789abcdef-0123456789";

/// One request from 127.0.0.1 with `key` as the bearer: status, `Retry-After`, JSON body.
async fn call(
    port: u16,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, Option<u64>, serde_json::Value) {
    let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    let (status, retry, body) = raw_http([127, 0, 0, 1].into(), port, method, path, &auth, body).await;
    (status, retry, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
}

fn post_body(id: &str, body: &str, author: Option<&str>) -> String {
    let mut v = serde_json::json!({ "id": id, "body": body });
    if let Some(a) = author {
        v["author"] = a.into();
    }
    v.to_string()
}

#[tokio::test]
async fn a_post_is_delivered_like_a_send_once_per_id_and_the_history_is_read_back() {
    let server = Server::start(&[("API_KEYS", KEY)]).await;
    let mut member = server.client(1, "ann", Format::Json);
    joined(&mut member, "news").await;
    let (status, _, answer) = call(
        server.port,
        "POST",
        "/api/rooms/news/messages",
        Some(KEY),
        &post_body("n-1", "hello from billing", Some("billing")),
    )
    .await;
    assert_eq!(
        (status, answer["seq"].as_u64(), answer["duplicate"].as_bool()),
        (201, Some(1), Some(false)),
        "{answer}"
    );
    let got = messages(&mut member, 1).await;
    assert_eq!(
        (got[0].user.as_str(), got[0].body.as_str(), got[0].id.as_str()),
        ("billing", "hello from billing", "n-1")
    );
    // The same id again: the first sequence, nothing delivered twice.
    let (status, _, answer) = call(
        server.port,
        "POST",
        "/api/rooms/news/messages",
        Some(KEY),
        &post_body("n-1", "hello from billing", Some("billing")),
    )
    .await;
    assert_eq!((status, answer["seq"].as_u64(), answer["duplicate"].as_bool()), (200, Some(1), Some(true)), "{answer}");
    member.send("news", "a member's reply").await.unwrap();
    let got = messages(&mut member, 1).await;
    assert_eq!((got[0].seq, got[0].body.as_str()), (2, "a member's reply"), "no second copy of n-1 came first");
    let (status, _, page) = call(server.port, "GET", "/api/rooms/news/messages?limit=10", Some(KEY), "").await;
    assert_eq!(status, 200, "{page}");
    let bodies: Vec<&str> = page["messages"].as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!((bodies, page["more"].as_bool()), (vec!["hello from billing", "a member's reply"], Some(false)));
    let (_, _, older) = call(server.port, "GET", "/api/rooms/news/messages?before=2&limit=10", Some(KEY), "").await;
    assert_eq!(older["messages"].as_array().unwrap().len(), 1, "{older}");
}

#[tokio::test]
async fn every_refusal_has_its_status_and_code() {
    let server = Server::start(&[("API_KEYS", KEY), ("MAX_MESSAGE_SIZE", "1024")]).await;
    let path = "/api/rooms/r/messages";
    let ok = post_body("x-1", "fine", None);
    let cases = [
        (None, ok.clone(), 401, "missing_api_key"),
        (Some("backend-key-0123456789abcdef-0123456780"), ok.clone(), 401, "invalid_api_key"),
        (Some(KEY), post_body("x 2", "fine", None), 400, "bad_id"),
        (Some(KEY), post_body("x-3", "", None), 400, "bad_body"),
        (Some(KEY), "{\"id\":\"x-4\"}".to_owned(), 400, "malformed"),
    ];
    for (key, body, status, code) in cases {
        let (got, _, answer) = call(server.port, "POST", path, key, &body).await;
        assert_eq!((got, answer["error"].as_str()), (status, Some(code)), "{answer}");
        assert!(!answer.to_string().contains("backend-key"), "no key is echoed: {answer}");
    }
    let big = post_body("x-5", &"y".repeat(2000), None);
    let (got, _, answer) = call(server.port, "POST", path, Some(KEY), &big).await;
    assert_eq!((got, answer["error"].as_str()), (413, Some("too_large")), "{answer}");
    let (got, _, answer) = call(server.port, "POST", "/api/rooms/bad%20room/messages", Some(KEY), &ok).await;
    assert_eq!((got, answer["error"].as_str()), (400, Some("bad_room")), "{answer}");
    // API_RATE of 3 a second (a burst of 3): posts in a row meet 429 with Retry-After.
    let slow = Server::start(&[("API_KEYS", KEY), ("API_RATE", "3")]).await;
    let mut limited = None;
    for i in 0..30 {
        let (got, retry, answer) =
            call(slow.port, "POST", path, Some(KEY), &post_body(&format!("y-{i}"), "b", None)).await;
        if got == 429 {
            limited = Some((retry, answer));
            break;
        }
    }
    let (retry, answer) = limited.expect("API_RATE was never reached");
    assert!(answer["error"] == "rate_limited" && retry.is_some_and(|r| r >= 1), "{answer} {retry:?}");
    // Without API_KEYS the routes are closed.
    let closed = Server::start(&[]).await;
    let (got, _, answer) = call(closed.port, "POST", path, Some(KEY), &ok).await;
    assert_eq!((got, answer["error"].as_str()), (403, Some("publishing_disabled")), "{answer}");
    let (got, _, _) = call(closed.port, "GET", path, Some(KEY), "").await;
    assert_eq!(got, 403);
}

#[tokio::test]
async fn posts_and_members_sends_share_one_order_and_reach_another_worker_through_redis() {
    let redis = Redis::start();
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::create(Backend::Postgres, tmp.path()).await;
    let env = [("API_KEYS", KEY), ("REDIS_URL", &redis.url()), ("DATABASE_URL", &db.url), ("L4_INSTANCES", "2")];
    let a = Server::start(&env).await;
    let b = Server::start(&env).await;
    let mut reader = b.client(1, "reader", Format::MsgPack);
    joined(&mut reader, "mixed").await;
    let mut member = a.client(2, "member", Format::Json);
    joined(&mut member, "mixed").await;
    let port = a.port;
    let posting = tokio::spawn(async move {
        for i in 0..40 {
            let (status, _, answer) = call(
                port,
                "POST",
                "/api/rooms/mixed/messages",
                Some(KEY),
                &post_body(&format!("p-{i}"), &format!("post {i}"), Some("backend")),
            )
            .await;
            assert_eq!(status, 201, "{answer}");
        }
    });
    for i in 0..40 {
        member.send("mixed", &format!("send {i}")).await.unwrap();
    }
    posting.await.unwrap();
    let got = messages(&mut reader, 80).await;
    assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=80).collect::<Vec<_>>(), "one order, no gap");
    for (who, prefix) in [("backend", "post "), ("member", "send ")] {
        let mine: Vec<&str> = got.iter().filter(|m| m.user == who).map(|m| m.body.as_str()).collect();
        let want: Vec<String> = (0..40).map(|i| format!("{prefix}{i}")).collect();
        assert_eq!(mine, want.iter().map(String::as_str).collect::<Vec<_>>(), "{who}'s in the order sent");
    }
}
