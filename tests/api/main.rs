//! Integration tests: the real daemon over real HTTP on loopback.

mod auth;
mod catalog;
mod change_watch;
mod chat;
mod connector;
#[path = "../common/daemon.rs"]
mod daemon;
mod damage;
mod delivery;
mod demo_shop;
#[path = "../common/fakes.rs"]
mod fakes;
mod faults;
mod fetch;
mod french;
mod helpers;
mod listener;
mod logs;
mod metrics;
mod notify;
#[path = "../common/postgres.rs"]
mod postgres;
mod postgres_migrate;
mod process;
mod replica_claims;
mod replica_first_check;
mod replica_shops;
mod replicas;
mod restock;
mod service;
mod shop;
mod slow_channel;
mod storage_faults;
mod store_contract;
#[path = "../common/tokens.rs"]
mod tokens;
mod transfer;
mod watch;

use helpers::{test_config, TestApp};
use serde_json::json;

#[tokio::test]
async fn welcome_on_conversation_update_for_humans_only() {
    let t = TestApp::spawn().await;
    let mut update = t.message("c1", "");
    update["type"] = "conversationUpdate".into();
    update.as_object_mut().unwrap().remove("text");
    update["membersAdded"] = json!([{"id": "bot1"}]);
    let (status, _) = t.post(&update).await;
    assert_eq!(status, 200);
    assert!(
        t.channel.take().is_empty(),
        "no welcome for the bot joining"
    );

    update["membersAdded"] = json!([{"id": "bot1"}, {"id": "u1", "name": "Ada"}]);
    let (status, body) = t.post(&update).await;
    assert_eq!((status, body.as_str()), (200, ""));
    let got = t.channel.take();
    assert_eq!(got.len(), 1);
    assert!(got[0].text().contains("watch <link>"), "{}", got[0].text());
    assert_eq!(got[0].body["from"]["id"], "bot1");
    assert_eq!(got[0].body["recipient"]["id"], "u1");
    assert_eq!(got[0].body["replyToId"], update["id"]);
    assert_eq!(got[0].path, "/v3/conversations/c1/activities/in-0");
    // The conversationUpdate stored the reference too.
    assert_eq!(t.app().store().stats().await.unwrap().references, 1);
}

#[tokio::test]
async fn watch_list_unwatch_round_trip() {
    let t = TestApp::spawn().await;
    let reply = t.say("c1", "help").await;
    assert!(reply.contains("unwatch"), "{reply}");

    let reply = t
        .say(
            "c1",
            "watch https://Shop.Example/p/1?utm_source=x&color=red#reviews",
        )
        .await;
    assert!(reply.contains("#1"), "{reply}");
    assert!(
        reply.contains("https://shop.example/p/1?color=red"),
        "{reply}"
    );
    // These tests run with checks off (schedule.enabled = false), and the reply says so.
    assert!(reply.contains("paused"), "{reply}");
    assert!(reply.contains("20%"), "{reply}");

    // A Teams mention and custom drop.
    let reply = t
        .say(
            "c1",
            "<at>pricewatch</at> WATCH   https://shop.example/p/2 15%",
        )
        .await;
    assert!(reply.contains("#2") && reply.contains("15%"), "{reply}");

    // A Slack-formatted link with a target price.
    let reply = t
        .say(
            "c1",
            "watch <https://shop.example/p/3|shop.example/p/3> below 149.99",
        )
        .await;
    assert!(reply.contains("#3") && reply.contains("149.99"), "{reply}");

    let list = t.say("c1", "list").await;
    for (n, url) in [
        (1, "https://shop.example/p/1?color=red"),
        (2, "https://shop.example/p/2"),
        (3, "https://shop.example/p/3"),
    ] {
        assert!(list.contains(&format!("{n}. {url}")), "{list}");
    }
    // Another conversation sees none of them.
    assert!(t.say("c2", "list").await.contains("not watching anything"));

    let reply = t.say("c1", "unwatch 2").await;
    assert!(reply.contains("#2") && reply.contains("/p/2"), "{reply}");
    let reply = t.say("c1", "unwatch https://shop.example/p/3").await;
    assert!(reply.contains("/p/3"), "{reply}");
    let list = t.say("c1", "list").await;
    assert!(
        list.contains("1. https://shop.example/p/1") && !list.contains("/p/2"),
        "{list}"
    );

    t.say("c1", "watch https://shop.example/p/4").await;
    let reply = t.say("c1", "unwatch all").await;
    assert!(
        reply.contains("2 products") && reply.contains("/p/1") && reply.contains("/p/4"),
        "{reply}"
    );
    assert!(t.say("c1", "list").await.contains("not watching anything"));
    assert_eq!(t.app().store().stats().await.unwrap().watches, 0);

    let reply = t.say("c1", "unwatch 7").await;
    assert!(reply.contains("not watching anything"), "{reply}");
    let reply = t.say("c1", "lsit").await;
    assert!(reply.contains("`list`"), "{reply}");
}

#[tokio::test]
async fn every_refusal_is_explained_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.alerts.max_watches_per_conversation = 2;
    let t = TestApp::spawn_with(config).await;

    let long = format!("https://shop.example/{}", "a".repeat(2048));
    let cases = [
        ("watch ftp://shop.example/p/1", "http or https"),
        ("watch javascript:alert(1)", "http or https"),
        (long.as_str(), "characters long"),
        ("watch https://user:secret@shop.example/p/1", "password"),
        ("watch https://shop.example/p/1 0%", "between 1% and 95%"),
        ("watch https://shop.example/p/1 96%", "between 1% and 95%"),
        (
            "watch https://shop.example/p/1 below 0",
            "not a positive price",
        ),
        (
            "watch https://shop.example/p/1 below -5",
            "not a positive price",
        ),
        ("watch", "Which product"),
        ("unwatch", "Which one"),
    ];
    for (text, expected) in cases {
        let text = if text.starts_with("https://") {
            format!("watch {text}")
        } else {
            text.to_owned()
        };
        let reply = t.say("c1", &text).await;
        assert!(reply.contains(expected), "{text:?} → {reply}");
        assert!(
            !reply.contains("Error") && !reply.contains("panicked"),
            "{reply}"
        );
    }
    assert_eq!(t.app().store().stats().await.unwrap().watches, 0);

    t.say("c1", "watch https://shop.example/p/1").await;
    let reply = t.say("c1", "watch https://SHOP.example/p/1#top").await;
    assert!(
        reply.contains("already watch") && reply.contains("#1"),
        "{reply}"
    );
    t.say("c1", "watch https://shop.example/p/2").await;
    let reply = t.say("c1", "watch https://shop.example/p/3").await;
    assert!(reply.contains("already has 2 watches"), "{reply}");
    assert_eq!(t.app().store().stats().await.unwrap().watches, 2);
}

#[tokio::test]
async fn french_locale_gets_french_replies() {
    let t = TestApp::spawn().await;
    let mut m = t.message("c1", "aide-moi");
    m["locale"] = "fr-FR".into();
    t.post(&m).await;
    let got = t.channel.take();
    assert!(
        got[0].text().contains("Je n'ai pas compris"),
        "{}",
        got[0].text()
    );
    assert_eq!(got[0].body["locale"], "fr-FR");
}

#[tokio::test]
async fn watches_survive_a_restart() {
    let mut t = TestApp::spawn().await;
    t.say("c1", "watch https://shop.example/p/1").await;
    t.say("c1", "watch https://shop.example/p/2 below 10").await;
    let before = t.say("c1", "list").await;
    t.restart().await;
    assert_eq!(t.say("c1", "list").await, before);
    assert_eq!(t.app().store().stats().await.unwrap().references, 1);
    t.stop().await;
}

#[tokio::test]
async fn ids_with_reserved_characters_reach_the_right_path() {
    let t = TestApp::spawn().await;
    let mut m = t.message("19:abc@thread.skype;messageid=1|x", "help");
    m["id"] = "1:2|3".into();
    let (status, _) = t.post(&m).await;
    assert_eq!(status, 200);
    let got = t.channel.take();
    assert_eq!(
        got[0].path,
        "/v3/conversations/19%3Aabc%40thread.skype%3Bmessageid%3D1%7Cx/activities/1%3A2%7C3"
    );
    assert_eq!(
        got[0].body["conversation"]["id"],
        "19:abc@thread.skype;messageid=1|x"
    );
}

#[tokio::test]
async fn malformed_requests_get_their_status_and_change_nothing() {
    let t = TestApp::spawn().await;
    t.say("c0", "watch https://shop.example/p/1").await;
    let before = t.app().store().stats().await.unwrap();

    let mut cases: Vec<(String, &str, Vec<u8>, u16, &str)> = vec![
        (
            "bad json".into(),
            "application/json",
            b"{\"type\": ".to_vec(),
            400,
            "MalformedJson",
        ),
        (
            "array".into(),
            "application/json",
            b"[1,2,3]".to_vec(),
            400,
            "NotAnObject",
        ),
        (
            "string".into(),
            "application/json",
            b"\"message\"".to_vec(),
            400,
            "NotAnObject",
        ),
        (
            "form".into(),
            "application/x-www-form-urlencoded",
            b"type=message".to_vec(),
            415,
            "UnsupportedMediaType",
        ),
        (
            "too large".into(),
            "application/json",
            vec![b' '; 300 * 1024],
            413,
            "PayloadTooLarge",
        ),
    ];
    for field in ["type", "conversation", "channelId", "serviceUrl"] {
        let mut m = t.message("c1", "watch https://shop.example/p/9");
        m.as_object_mut().unwrap().remove(field);
        cases.push((
            format!("no {field}"),
            "application/json",
            serde_json::to_vec(&m).unwrap(),
            400,
            "MissingField",
        ));
    }
    let mut m = t.message("c1", "watch https://shop.example/p/9");
    m["conversation"] = json!({"name": "no id"});
    cases.push((
        "no conversation.id".into(),
        "application/json",
        serde_json::to_vec(&m).unwrap(),
        400,
        "MissingField",
    ));

    for (name, ct, body, status, code) in cases {
        let (got, text) = t.post_raw(ct, body).await;
        assert_eq!(got, status, "{name}: {text}");
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{name}: JSON body, got {text}"));
        assert_eq!(v["error"]["code"], code, "{name}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }

    let r = t.client.get(&t.url).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let r = t.client.put(&t.url).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 405);

    // A chunked body (no Content-Length) over the limit is refused while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![b' '; 8192])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (status, _) = t.post_raw("application/json", body).await;
    assert_eq!(status, 413);

    assert_eq!(t.app().store().stats().await.unwrap(), before);
    assert!(
        t.channel.take().is_empty(),
        "nothing was sent for refused requests"
    );

    // Unknown fields and types are accepted and ignored.
    let mut m = t.message("c1", "");
    m["type"] = "somethingNew".into();
    m["brandNewField"] = json!({"deep": [1, {"x": null}]});
    let (status, body) = t.post(&m).await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(t.channel.take().is_empty());
}

#[tokio::test]
async fn expect_replies_are_answered_in_the_body() {
    let t = TestApp::spawn().await;
    let mut m = t.message("c1", "help");
    m["deliveryMode"] = "expectReplies".into();
    let (status, body) = t.post(&m).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let activities = v["activities"].as_array().unwrap();
    assert_eq!(activities.len(), 1);
    assert!(activities[0]["text"].as_str().unwrap().contains("watch"));
    assert!(
        t.channel.take().is_empty(),
        "nothing is posted to the serviceUrl"
    );
}

#[tokio::test]
async fn a_failing_channel_does_not_fail_the_turn() {
    let t = TestApp::spawn().await;
    t.channel
        .answer_with(warp::http::StatusCode::INTERNAL_SERVER_ERROR);
    let (status, body) = t
        .post(&t.message("c1", "watch https://shop.example/p/1"))
        .await;
    assert_eq!((status, body.as_str()), (200, ""));
    // Delivery may have tried the queued reply again already.
    assert!(!t.channel.take().is_empty(), "the reply was attempted");
    let stats = t.app().store().stats().await.unwrap();
    assert_eq!(stats.watches, 1, "the watch is kept");
    assert_eq!(stats.outbox, 1, "the reply is queued for another try");

    // A channel that is not there at all.
    let mut m = t.message("c1", "list");
    m["serviceUrl"] = "http://127.0.0.1:9/".into();
    let (status, _) = t.post(&m).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_changed_service_url_replaces_the_reference() {
    let t = TestApp::spawn().await;
    t.say("c1", "help").await;
    let second = fakes::FakeChannel::start().await;
    let mut m = t.message("c1", "help");
    m["serviceUrl"] = second.url.clone().into();
    t.post(&m).await;
    assert_eq!(second.received().len(), 1);
    let key = pricewatch::inbound::activity::ConversationKey {
        channel_id: "emulator".into(),
        conversation_id: "c1".into(),
    };
    let stored = t.app().store().reference(&key).await.unwrap().unwrap();
    assert_eq!(stored.service_url, second.url);
    assert_eq!(t.app().store().stats().await.unwrap().references, 1);
}

#[tokio::test]
async fn a_data_directory_in_use_is_a_clear_error() {
    let t = TestApp::spawn().await;
    let err = match pricewatch::app::App::start(&test_config(&t.data)).await {
        Ok(_) => panic!("a second daemon on the same directory must not start"),
        // As a person sees it: the error with its causes.
        Err(e) => pricewatch::error::Chain(&e).to_string(),
    };
    assert!(err.contains(&t.data.display().to_string()), "{err}");
    assert!(err.contains("locked"), "{err}");
}

#[tokio::test]
async fn production_without_a_password_and_exposed_development_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.bot.app_id = "00000000-0000-0000-0000-000000000001".into();
    config.bot.app_password_file = Some(dir.path().join("no-such-file"));
    let err = pricewatch::app::App::start(&config).await.err().unwrap();
    let err = pricewatch::error::Chain(&err).to_string();
    assert!(err.contains("app password"), "{err}");

    config.bot.app_type = pricewatch::ops::config::AppType::UserAssignedMsi;
    let err = pricewatch::app::App::start(&config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("UserAssignedMSI"), "{err}");

    let mut config = test_config(&dir.path().join("data"));
    config.server.bind = "0.0.0.0:0".parse().unwrap();
    let err = pricewatch::app::App::start(&config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("loopback"), "{err}");
    assert!(!dir.path().join("data").exists(), "nothing was opened");
}

#[test]
fn check_config_reports_every_error_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[server]\nbind = \"127.0.0.1:3978\"\nbody_limt = 5\n\n[alerts]\ndefault_drop = 120\n\n[storage]\nflush_every = 12\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pricewatch"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("bad.toml")).collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(":3:") && l.contains("server.body_limt")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(":6:") && l.contains("alerts.default_drop")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(":9:") && l.contains("storage.flush_every")),
        "{stderr}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[server]\nbind = \"127.0.0.1:4000\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pricewatch"))
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn example_config_passes_check_config() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pricewatch"))
        .args([
            "check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/pricewatch.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn invoke_without_a_handler_answers_501_like_the_sdks() {
    let t = TestApp::spawn().await;
    let mut m = t.message("c1", "");
    m["type"] = "invoke".into();
    m["name"] = "adaptiveCard/action".into();
    let (status, body) = t.post(&m).await;
    assert_eq!(status, 501, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "NotImplemented");
    // The reference is stored all the same: the activity was authenticated.
    assert_eq!(t.app().store().stats().await.unwrap().references, 1);
}

#[tokio::test]
async fn hostile_bodies_are_refused_and_the_daemon_keeps_answering() {
    let t = TestApp::spawn().await;
    let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    let deep_in_field = format!(
        r#"{{"type":"message","channelData":{}1{}}}"#,
        "{\"a\":".repeat(20_000),
        "}".repeat(20_000)
    );
    let bodies: Vec<Vec<u8>> = vec![
        deep.into_bytes(),
        deep_in_field.into_bytes(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        b"{\"type\":\"message\",\"text\":\"\\ud800\"}".to_vec(),
        b"null".to_vec(),
        b"{\"type\":\"message\",\"conversation\":{\"id\":7}}".to_vec(),
    ];
    for body in bodies {
        let (status, text) = t.post_raw("application/json", body).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("\"error\""), "{text}");
    }
    assert!(t.say("c1", "help").await.contains("watch"));
}

#[tokio::test]
async fn stopping_after_the_server_already_finished_is_clean() {
    // A cancel makes the idle server finish at once, so by the time the drain starts both
    // the cancellation and the server's end are ready; this must never panic.
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..10 {
        let app = pricewatch::app::App::start(&test_config(&dir.path().join("data")))
            .await
            .unwrap();
        let addr = app.local_addr();
        app.shutdown_token().cancel();
        // The server closes its listener on its way out.
        helpers::eventually(|| async {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => Err("the server to close its listener"),
                Err(_) => Ok(()),
            }
        })
        .await;
        app.run_until_stopped().await.expect("clean stop");
    }
}

#[tokio::test]
async fn a_typed_amount_is_read_as_on_a_page_and_the_reply_shows_how() {
    let t = TestApp::spawn().await;
    // `1.299` on a page is 1299 (a lone separator before three digits groups thousands),
    // so it is in chat too, and the reply shows the amount it understood.
    let reply = t
        .say("c1", "watch https://shop.example/p/1 below 1.299")
        .await;
    assert!(reply.contains("a price of 1,299 or less"), "{reply}");
    let reply = t
        .say("c1", "watch https://shop.example/p/2 below 149,99 €")
        .await;
    assert!(reply.contains("a price of 149.99 or less"), "{reply}");

    let mut m = t.message("c2", "watch https://shop.example/p/3 below 1.299,50");
    m["locale"] = "fr-FR".into();
    let (status, _) = t.post(&m).await;
    assert_eq!(status, 200);
    let got = t.channel.take();
    let reply = got.last().expect("a reply").text();
    assert!(
        reply.contains("un prix de 1\u{202f}299,5 ou moins"),
        "{reply}"
    );
}

#[tokio::test]
async fn a_malformed_command_gets_its_own_help() {
    let t = TestApp::spawn().await;
    for text in ["unwatch 1 2 3", "unwatch all all"] {
        let reply = t.say("c1", text).await;
        assert!(reply.contains("`unwatch 2`"), "{text:?} → {reply}");
        assert!(!reply.contains("After the link"), "{text:?} → {reply}");
    }
    let reply = t.say("c1", "history 1 2").await;
    assert!(reply.contains("`history 2`"), "{reply}");
    assert!(!reply.contains("After the link"), "{reply}");
    let reply = t.say("c1", "watch https://shop.example/p/1 banana").await;
    assert!(reply.contains("After the link"), "{reply}");
}

#[tokio::test]
async fn a_pasted_link_of_10_kb_is_too_long_not_misunderstood() {
    let t = TestApp::spawn().await;
    let link = format!("https://shop.example/{}", "a".repeat(10_000));
    let reply = t.say("c1", &format!("watch {link}")).await;
    assert!(
        reply.contains("10021 characters") && reply.contains("2048"),
        "{reply}"
    );
    assert_eq!(t.app().store().stats().await.unwrap().watches, 0);
}

#[tokio::test]
async fn bidi_and_control_characters_are_not_echoed() {
    let t = TestApp::spawn().await;
    let hidden = [
        '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
        '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}', '\u{0}', '\u{1b}', '\u{7}',
    ];
    let spoof: String = hidden.iter().collect();
    for text in [
        format!("gpj.exe{spoof}txt"),
        format!("watch https://shop.example/p/1 {spoof}banana"),
        format!("watch https://shop.example/p/1 below {spoof}9"),
        format!("unwatch {spoof}x"),
        format!("watch ftp{spoof}://shop.example/p"),
    ] {
        let reply = t.say("c1", &text).await;
        assert!(
            !reply.chars().any(|c| hidden.contains(&c)),
            "{text:?} → {reply:?}"
        );
    }
}
