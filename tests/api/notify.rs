//! `POST /api/notify` on the real daemon: off without a token, 401 without the right one,
//! and an announcement queued for every stored conversation (or one) and delivered.

use serde_json::{json, Value};

use crate::helpers::{test_config, TestApp};

pub(crate) const TOKEN: &str = "0123456789abcdef0123456789abcdef";

pub(crate) async fn with_token() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.notify.admin_token_file = Some(token_file);
    (TestApp::spawn_with(config).await, dir)
}

fn notify_url(t: &TestApp) -> String {
    t.url.replace("/api/messages", "/api/notify")
}

pub(crate) async fn post(t: &TestApp, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = t.client.post(notify_url(t)).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn without_an_admin_token_the_endpoint_is_off() {
    let t = TestApp::spawn().await;
    let (status, body) = post(&t, Some(TOKEN), &json!({"text": "hello"})).await;
    assert_eq!(status, 404);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin token"),
        "{body}"
    );
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_401_and_queues_nothing() {
    let (t, _dir) = with_token().await;
    t.say("c1", "help").await;
    t.channel.take();
    for token in [None, Some("wrong"), Some(&TOKEN[..31])] {
        let (status, body) = post(&t, token, &json!({"text": "hello"})).await;
        assert_eq!(status, 401, "{token:?}");
        assert_eq!(body["error"]["code"], "Unauthorized");
    }
    let get = t.client.get(notify_url(&t)).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    assert_eq!(t.app().store().stats().await.unwrap().outbox, 0);
    assert_eq!(t.app().deliver_now().await.unwrap().sent, 0);
    assert!(t.channel.take().is_empty());
}

#[tokio::test]
async fn bad_bodies_say_what_is_wrong() {
    let (t, _dir) = with_token().await;
    let long = "x".repeat(4001);
    for (body, says) in [
        (json!({"txt": "hi"}), "expected"),
        (json!({"text": "   "}), "empty"),
        (json!({"text": long}), "4001 characters"),
        (
            json!({"text": "hi", "conversation": {"channelId": "emulator", "id": "nobody"}}),
            "no conversation",
        ),
    ] {
        let (status, reply) = post(&t, Some(TOKEN), &body).await;
        assert!(status == 400 || status == 404, "{status} {reply}");
        let message = reply["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(says), "{message}");
    }
}

#[tokio::test]
async fn an_announcement_reaches_every_conversation_or_the_one_named() {
    let (t, _dir) = with_token().await;
    t.say("c1", "help").await;
    t.say("c2", "help").await;
    t.channel.take();

    let (status, body) = post(
        &t,
        Some(TOKEN),
        &json!({"text": "Maintenance at 22:00 UTC"}),
    )
    .await;
    assert_eq!((status, &body), (202, &json!({"queued": 2})));
    let got = t.wait_for(2).await;
    let mut paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/v3/conversations/c1/activities",
            "/v3/conversations/c2/activities"
        ]
    );
    assert!(got.iter().all(|r| r.text() == "Maintenance at 22:00 UTC"));
    t.channel.take();

    let (status, body) = post(
        &t,
        Some(TOKEN),
        &json!({"text": "Just you", "conversation": {"channelId": "emulator", "id": "c2"}}),
    )
    .await;
    assert_eq!((status, &body), (202, &json!({"queued": 1})));
    let got = t.wait_for(1).await;
    assert_eq!(got[0].path, "/v3/conversations/c2/activities");
    assert_eq!(got[0].text(), "Just you");
}

#[tokio::test]
async fn a_token_file_with_blanks_around_the_token_still_matches() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}  \n\n")).unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.notify.admin_token_file = Some(token_file);
    let t = TestApp::spawn_with(config).await;
    t.say("c1", "help").await;
    let (status, body) = post(&t, Some(TOKEN), &json!({"text": "hello"})).await;
    assert_eq!((status, body["queued"].as_u64()), (202, Some(1)), "{body}");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let (t, _dir) = with_token().await;
    t.say("c1", "help").await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = t
            .client
            .post(notify_url(&t))
            .header("authorization", format!("{scheme} {TOKEN}"))
            .json(&json!({"text": "hello"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202, "{scheme}");
    }
    let response = t
        .client
        .post(notify_url(&t))
        .header("authorization", format!("Basic {TOKEN}"))
        .json(&json!({"text": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test]
async fn an_announcement_skips_a_conversation_the_channel_refused() {
    let (t, _dir) = with_token().await;
    t.say("c1", "help").await;
    t.say("c2", "help").await;
    t.channel.take();
    let refused = pricewatch::inbound::activity::ConversationKey {
        channel_id: "emulator".into(),
        conversation_id: "c1".into(),
    };
    let mark = pricewatch::domain::Unreachable {
        since_ms: 1,
        reason: "the channel answered 403".into(),
    };
    t.app()
        .store()
        .mark_unreachable(&refused, mark)
        .await
        .unwrap();

    let (status, body) = post(&t, Some(TOKEN), &json!({"text": "To the reachable"})).await;
    assert_eq!((status, &body), (202, &json!({"queued": 1})));
    let got = t.wait_for(1).await;
    assert_eq!(got[0].path, "/v3/conversations/c2/activities");
    // Nothing for c1 was queued, so nothing became a dead letter either.
    let dead = t.app().store().dead_letters(10).await.unwrap();
    assert!(dead.is_empty(), "{dead:?}");
}
