//! Network faults between the daemon and the shops and channels it talks to: connections
//! reset, answers that are not HTTP, a server that stops listening, 429 with
//! `Retry-After`, bursts of 5xx, slowness. Throughout, the daemon answers every turn;
//! once the faults end, it delivers every alert, each exactly once (no process dies here,
//! so no send is ever in doubt).
//!
//! The faults stand where the network would, in a [`FaultProxy`] in front of the fake
//! shop and the fake channel; the HTTP-level ones (429, 5xx) come from the fakes. The
//! daemon runs on a manual clock and ticks when the test says, so retries and back-offs
//! are made due by moving the clock, not by waiting.

use std::sync::Arc;
use std::time::Duration;

use pricewatch::clock::{Clock, ManualClock};
use pricewatch::ops::config::Config;
use serde_json::Value;

use crate::fakes::{FakeShop, Fault, FaultProxy, Page};
use crate::helpers::{eventually, test_config, TestApp};

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;
/// A cron tick that never comes while a test runs: the test ticks with `App::tick_now`.
const NO_SCHEDULED_TICK: &str = "0 0 0 1 1 * 2999";
/// How long a turn may take before the test calls it stuck: far above the reply timeout
/// (the test asserts that turns complete, not how fast).
const TURN_LIMIT: Duration = Duration::from_secs(30);

/// The watch loop on (ticked by the test), the loopback shop allowed, quick retries that
/// never give up within a test, and a short reply timeout, so that a turn whose reply
/// cannot be sent still ends soon.
fn faulty_network_config(data: &std::path::Path) -> Config {
    let mut config = test_config(data);
    config.schedule.enabled = true;
    config.schedule.tick = NO_SCHEDULED_TICK.into();
    config.fetch.allow_networks = vec!["127.0.0.0/8".into()];
    config.fetch.host_gap = Duration::ZERO;
    config.fetch.timeout = Duration::from_secs(2);
    config.alerts.digest_window = Duration::from_millis(50);
    config.bot.reply_timeout = Duration::from_secs(2);
    config.delivery.retry_base = Duration::from_secs(1);
    config.delivery.retry_cap = Duration::from_secs(60);
    config.delivery.max_attempts = 1_000;
    config
}

fn real_now() -> u64 {
    pricewatch::clock::SystemClock.now_ms()
}

/// A turn in `conversation` whose replies go to `service_url`.
fn message(t: &TestApp, service_url: &str, conversation: &str, text: &str) -> Value {
    let mut m = t.message(conversation, text);
    m["serviceUrl"] = service_url.into();
    m
}

/// Posts the turn and asserts it was answered 200, however the network behaves.
async fn turn(t: &TestApp, activity: &Value) {
    let (status, body) = tokio::time::timeout(TURN_LIMIT, t.post(activity))
        .await
        .unwrap_or_else(|_| panic!("a turn did not complete within {TURN_LIMIT:?}"));
    assert_eq!(status, 200, "{body}");
}

/// Proactive messages the channel took (answered 2xx) that contain `text`, by
/// conversation.
fn proactive_with(t: &TestApp, text: &str) -> Vec<(String, String)> {
    t.channel
        .received()
        .iter()
        .filter(|r| r.accepted())
        .filter_map(|r| {
            let conversation = r
                .path
                .strip_prefix("/v3/conversations/")?
                .strip_suffix("/activities")?;
            r.text()
                .contains(text)
                .then(|| (conversation.to_owned(), r.text().to_owned()))
        })
        .collect()
}

/// Alerts at `price` the channel received (in `conversation`, or in all), each item of a
/// digest counted.
fn alerts_at(t: &TestApp, price: &str, conversation: Option<&str>) -> usize {
    let needle = format!("is now €{price}");
    proactive_with(t, &needle)
        .iter()
        .filter(|(c, _)| conversation.is_none_or(|want| want == c))
        .map(|(_, text)| text.matches(&needle).count())
        .sum()
}

/// Moves the clock past any retry or back-off the faults left and delivers, until the
/// outbox is empty.
async fn deliver_everything(t: &TestApp, clock: &ManualClock) {
    let store = t.app().store();
    eventually(|| async {
        clock.advance_ms(2 * MINUTE);
        t.app().deliver_now().await.unwrap();
        let left = store.stats().await.unwrap().outbox;
        if left == 0 {
            Ok(())
        } else {
            Err(format!("the outbox to empty; {left} left"))
        }
    })
    .await;
}

/// A channel fault, from the network or from the channel itself.
#[derive(Debug, Clone, Copy)]
enum ChannelFault {
    Net(Fault),
    /// 503, 500, 502, … for the next sends.
    Burst5xx,
    /// 429 with `Retry-After: 2` for the next sends.
    TooMany,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_faults_never_fail_a_turn_and_each_alert_arrives_once_afterwards() {
    let shop = FakeShop::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(real_now()));
    let t = TestApp::spawn_with_clock(
        faulty_network_config(&dir.path().join("data")),
        clock.clone(),
    )
    .await;
    let proxy = FaultProxy::start(&t.channel.url).await;
    let service_url = format!("{}/", proxy.base);
    let conversations = ["c1", "c2", "c3"];
    for (i, c) in conversations.iter().enumerate() {
        shop.set_price(&format!("/p/{i}"), "100.00");
        let watch = format!("watch {}/p/{i}", shop.base);
        turn(&t, &message(&t, &service_url, c, &watch)).await;
    }
    eventually(|| async {
        let n = proactive_with(&t, "Watching ").len();
        if n == 3 {
            Ok(())
        } else {
            Err(format!("3 first prices, got {n}"))
        }
    })
    .await;

    let faults = [
        ChannelFault::Net(Fault::Reset),
        ChannelFault::Net(Fault::Garbage),
        ChannelFault::Net(Fault::Down),
        ChannelFault::Burst5xx,
        ChannelFault::TooMany,
        // Slower than a healthy channel, within the reply timeout.
        ChannelFault::Net(Fault::Slow(Duration::from_millis(700))),
    ];
    for (round, fault) in faults.into_iter().enumerate() {
        // Up again (re-arms every watch), then down to a price of this round's own.
        for i in 0..conversations.len() {
            shop.set_price(&format!("/p/{i}"), "100.00");
        }
        clock.advance_ms(2 * HOUR);
        assert_eq!(t.app().tick_now().await.unwrap().queued, 0, "{fault:?}");
        match fault {
            ChannelFault::Net(f) => proxy.set(f).await,
            ChannelFault::Burst5xx => t.channel.answer_next(&[503, 500, 502, 503, 500, 502]),
            ChannelFault::TooMany => {
                t.channel.answer_retry_after(Some("2"));
                t.channel.answer_next(&[429; 6]);
            }
        }
        let low = format!("50.{round:02}");
        for i in 0..conversations.len() {
            shop.set_price(&format!("/p/{i}"), &low);
        }
        clock.advance_ms(2 * HOUR);
        let tick = t.app().tick_now().await.unwrap();
        assert_eq!((tick.checked, tick.queued), (3, 3), "{fault:?}");
        // The faulty channel meets the delivery loop and the test's passes, and the
        // conversations keep talking to the bot.
        for c in conversations {
            turn(&t, &message(&t, &service_url, c, "list")).await;
            t.app().deliver_now().await.unwrap();
        }
        // The fault was met: nothing taken through the network faults, refusals from the
        // channel's own.
        let needle = format!("is now €{low}");
        match fault {
            ChannelFault::Net(Fault::Slow(_)) => {}
            ChannelFault::Net(_) => assert_eq!(alerts_at(&t, &low, None), 0, "{fault:?}"),
            ChannelFault::Burst5xx | ChannelFault::TooMany => {
                let refused = t
                    .channel
                    .received()
                    .iter()
                    .filter(|r| !r.accepted() && r.text().contains(&needle))
                    .count();
                assert!(refused > 0, "{fault:?}: no alert was refused");
            }
        }
        proxy.set(Fault::Pass).await;
        t.channel.answer_retry_after(None);
        deliver_everything(&t, &clock).await;
        for c in conversations {
            let got = alerts_at(&t, &low, Some(c));
            assert_eq!(got, 1, "{fault:?}: the alert in {c} once");
        }
    }
    assert_eq!(t.app().store().stats().await.unwrap().dead_letters, 0);
}

/// A shop fault, from the network or from the shop itself.
#[derive(Debug, Clone, Copy)]
enum ShopFault {
    Net(Fault),
    /// 503 on this round's checks.
    Unavailable,
    /// 429 with `Retry-After: 120` on this round's checks.
    TooMany,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_faults_never_fail_a_turn_and_each_drop_alerts_once_when_the_shop_is_back() {
    let shop = FakeShop::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(real_now()));
    let t = TestApp::spawn_with_clock(
        faulty_network_config(&dir.path().join("data")),
        clock.clone(),
    )
    .await;
    // One host per product (127.0.0.1, .2, .3), as shops are: a 429 pauses its own host.
    let mut proxies = Vec::new();
    for i in 0..3 {
        proxies.push(FaultProxy::start_at(&format!("127.0.0.{}", i + 1), &shop.base).await);
        shop.set_price(&format!("/p/{i}"), "100.00");
        let watch = format!("watch {}/p/{i}", proxies[i].base);
        turn(&t, &t.message("c1", &watch)).await;
    }
    t.wait_for(6).await;
    assert_eq!(proactive_with(&t, "Watching ").len(), 3);
    let set_all = |price: &str, page: &dyn Fn(Page) -> Page| {
        for i in 0..3 {
            let path = format!("/p/{i}");
            shop.put(
                &path,
                page(Page::product(&format!("Skillet {path}"), price)),
            );
        }
    };

    let faults = [
        ShopFault::Net(Fault::Reset),
        ShopFault::Net(Fault::Garbage),
        ShopFault::Net(Fault::Down),
        ShopFault::Unavailable,
        ShopFault::TooMany,
        ShopFault::Net(Fault::Slow(Duration::from_millis(500))),
    ];
    for (round, fault) in faults.into_iter().enumerate() {
        set_all("100.00", &|p| p);
        clock.advance_ms(2 * HOUR);
        assert_eq!(t.app().tick_now().await.unwrap().queued, 0, "{fault:?}");
        let low = format!("50.{round:02}");
        match fault {
            ShopFault::Net(f) => {
                set_all(&low, &|p| p);
                for p in &proxies {
                    p.set(f).await;
                }
            }
            ShopFault::Unavailable => set_all(&low, &|p| p.with_status(503)),
            ShopFault::TooMany => set_all(&low, &|p| p.with_status(429).with_retry_after("120")),
        }
        clock.advance_ms(2 * HOUR);
        let tick = t.app().tick_now().await.unwrap();
        let slow = matches!(fault, ShopFault::Net(Fault::Slow(_)));
        // Slow is only slow: the checks read the page. Every other fault fails them.
        assert_eq!(tick.queued, if slow { 3 } else { 0 }, "{fault:?}");
        turn(&t, &t.message("c1", "list")).await;
        turn(&t, &t.message("c1", "help")).await;

        for p in &proxies {
            p.set(Fault::Pass).await;
        }
        set_all(&low, &|p| p);
        if !slow {
            // Past the back-off of one failure and the shop's Retry-After.
            clock.advance_ms(HOUR);
            let tick = t.app().tick_now().await.unwrap();
            assert_eq!((tick.checked, tick.queued), (3, 3), "{fault:?}");
        }
        t.outbox_drained().await;
        assert_eq!(alerts_at(&t, &low, None), 3, "{fault:?}: each alert once");
    }
    // A fault of an hour or two is no reason to tell anyone the page cannot be read.
    assert!(proactive_with(&t, "not been able").is_empty());
    assert_eq!(t.app().store().stats().await.unwrap().dead_letters, 0);
}
