//! Replies a slow channel does not take in time are queued and delivered later, once
//! each and in order.

use std::time::Duration;

use pricewatch::clock::Clock;

use crate::helpers::{eventually, test_config, TestApp};

/// What each conversation said, in order; each `watch` reply names its product.
const TURNS: usize = 4;

fn product(n: usize) -> String {
    format!("https://shop.example/p/{n}")
}

/// The products named in the replies the channel received for `conversation`, in the
/// order they arrived.
fn products_received(t: &TestApp, conversation: &str) -> Vec<String> {
    t.channel
        .received()
        .iter()
        .filter(|r| r.body["conversation"]["id"] == conversation)
        .map(|r| {
            (1..=TURNS + 1)
                .map(product)
                .find(|p| r.text().contains(p.as_str()))
                .unwrap_or_else(|| format!("unexpected reply: {}", r.text()))
        })
        .collect()
}

#[tokio::test]
async fn replies_a_stalled_channel_missed_arrive_once_each_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.bot.reply_timeout = Duration::from_millis(500);
    config.delivery.retry_base = Duration::from_millis(200);
    config.delivery.retry_cap = Duration::from_secs(1);
    config.delivery.max_attempts = 1_000;
    let t = TestApp::spawn_with(config).await;

    // The only real wait of the suite this long: a channel that hangs for 15 s.
    t.channel.stall_for(Duration::from_secs(15));
    for n in 1..=TURNS {
        for conversation in ["c1", "c2"] {
            let mut m = t.message(conversation, &format!("watch {}", product(n)));
            m["id"] = format!("in-{conversation}-{n}").into();
            let (status, body) = t.post(&m).await;
            assert_eq!((status, body.as_str()), (200, ""), "the turn is handled");
        }
    }
    assert!(
        t.channel.is_stalled(),
        "the turns were all taken during the stall"
    );
    assert!(t.channel.received().is_empty());

    // Right after the channel recovers, a turn's reply could go straight through; it must
    // not overtake the replies queued before it.
    eventually(|| async {
        if t.channel.is_stalled() {
            Err("the stall to end")
        } else {
            Ok(())
        }
    })
    .await;
    let mut m = t.message("c1", &format!("watch {}", product(TURNS + 1)));
    m["id"] = format!("in-c1-{}", TURNS + 1).into();
    assert_eq!(t.post(&m).await.0, 200);

    t.wait_for(2 * TURNS + 1).await;
    t.outbox_drained().await;
    let expected = |turns: usize| (1..=turns).map(product).collect::<Vec<_>>();
    assert_eq!(products_received(&t, "c1"), expected(TURNS + 1));
    assert_eq!(products_received(&t, "c2"), expected(TURNS));
    // Still replies to the activities they answer.
    for r in t.channel.received() {
        let conversation = r.body["conversation"]["id"].as_str().unwrap().to_owned();
        let n = (1..=TURNS + 1)
            .find(|n| r.text().contains(&product(*n)))
            .unwrap();
        let id = format!("in-{conversation}-{n}");
        assert_eq!(r.body["replyToId"], id.as_str());
        assert_eq!(
            r.path,
            format!("/v3/conversations/{conversation}/activities/{id}")
        );
    }
    assert!(t.channel.stalled() > 0, "the stall swallowed requests");
    assert_eq!(t.app().store().stats().await.unwrap().dead_letters, 0);
}

#[tokio::test]
async fn a_queued_reply_survives_a_restart() {
    let mut t = TestApp::spawn().await;
    t.channel
        .answer_with(warp::http::StatusCode::INTERNAL_SERVER_ERROR);
    let (status, _) = t.post(&t.message("c1", "help")).await;
    assert_eq!(status, 200);
    assert_eq!(t.app().store().stats().await.unwrap().outbox, 1);
    t.stop().await;

    t.channel.answer_with(warp::http::StatusCode::OK);
    t.channel.take();
    t.restart().await;
    let got = t.wait_for(1).await;
    assert!(got[0].text().contains("unwatch"), "{}", got[0].text());
    assert_eq!(got[0].body["replyToId"], "in-4");
    t.outbox_drained().await;
    t.stop().await;
}

#[tokio::test]
async fn a_reply_the_channel_refuses_is_not_retried() {
    let t = TestApp::spawn().await;
    t.channel.answer_with(warp::http::StatusCode::BAD_REQUEST);
    let (status, _) = t.post(&t.message("c1", "help")).await;
    assert_eq!(status, 200);
    assert_eq!(t.channel.take().len(), 1);
    let stats = t.app().store().stats().await.unwrap();
    assert_eq!((stats.outbox, stats.dead_letters), (0, 0));
}

#[tokio::test]
async fn a_reply_the_channel_asks_to_hold_waits_for_its_retry_after() {
    let t = TestApp::spawn().await;
    t.channel.answer_next(&[429]);
    t.channel.answer_retry_after(Some("120"));
    let before = pricewatch::clock::SystemClock.now_ms();
    let (status, _) = t.post(&t.message("c1", "help")).await;
    assert_eq!(status, 200);
    let queued = t.app().store().queued_messages(10).await.unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert!(
        queued[0].next_attempt_ms >= before + 120_000,
        "{} is before the channel's Retry-After",
        queued[0].next_attempt_ms
    );
}
