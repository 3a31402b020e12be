//! `GET /metrics` on the real daemon: the counters a turn, a check and a delivered alert
//! move, read back through a Prometheus text parser.

use std::sync::Arc;
use std::time::Duration;

use pricewatch::clock::{Clock, ManualClock};
use serde_json::json;

use crate::fakes::FakeShop;
use crate::helpers::{test_config, TestApp};

/// A cron tick that never comes while the test runs: it ticks with `App::tick_now`.
const NO_SCHEDULED_TICK: &str = "0 0 0 1 1 * 2999";

struct Scrape(prometheus_parse::Scrape);

impl Scrape {
    /// The value of the sample `metric` whose labels include every pair of `labels`; 0
    /// when there is none yet (a labelled counter appears once first moved).
    fn value(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .0
            .samples
            .iter()
            .filter(|s| s.metric == metric)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                other => panic!("{metric} is {other:?}"),
            })
            .collect();
        assert!(found.len() <= 1, "{metric} {labels:?}: {found:?}");
        found.first().copied().unwrap_or(0.0)
    }
}

async fn scrape(t: &TestApp) -> Scrape {
    let r = t
        .client
        .get(format!("http://{}/metrics", t.app().local_addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = r.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    Scrape(prometheus_parse::Scrape::parse(lines).unwrap())
}

#[tokio::test]
async fn a_turn_a_check_and_a_delivered_alert_move_their_counters() {
    let shop = FakeShop::start().await;
    shop.set_price("/p/1", "200.00");
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(pricewatch::clock::SystemClock.now_ms()));
    let mut config = test_config(&dir.path().join("data"));
    config.schedule.enabled = true;
    config.schedule.tick = NO_SCHEDULED_TICK.into();
    config.fetch.allow_networks = vec!["127.0.0.0/8".into()];
    config.fetch.host_gap = Duration::ZERO;
    config.alerts.digest_window = Duration::from_millis(300);
    let t = TestApp::spawn_with_clock(config, clock.clone()).await;

    let handled = [("channel", "emulator"), ("outcome", "handled")];
    let ok = [("outcome", "ok")];
    let sent = [("outcome", "sent")];
    let before = scrape(&t).await;
    assert_eq!(before.value("pricewatch_turns_total", &handled), 0.0);
    assert_eq!(before.value("pricewatch_watches", &[]), 0.0);

    // A turn: the watch command, whose first check queues the first price.
    let watch = t.message("c1", &format!("watch {}/p/1", shop.base));
    assert_eq!(t.post(&watch).await.0, 200);
    t.wait_for(2).await;
    t.outbox_drained().await;
    // And an invalid one: a message with no conversation.
    let mut invalid = t.message("c1", "list");
    invalid.as_object_mut().unwrap().remove("conversation");
    assert_eq!(t.post(&invalid).await.0, 400);
    let after_turn = scrape(&t).await;
    assert_eq!(after_turn.value("pricewatch_turns_total", &handled), 1.0);
    assert_eq!(
        after_turn.value(
            "pricewatch_turns_total",
            &[("channel", "emulator"), ("outcome", "invalid")]
        ),
        1.0
    );
    assert_eq!(after_turn.value("pricewatch_checks_total", &ok), 1.0);
    assert_eq!(after_turn.value("pricewatch_alerts_queued_total", &[]), 1.0);
    assert_eq!(after_turn.value("pricewatch_deliveries_total", &sent), 1.0);
    assert_eq!(after_turn.value("pricewatch_watches", &[]), 1.0);
    assert_eq!(after_turn.value("pricewatch_products", &[]), 1.0);
    assert_eq!(after_turn.value("pricewatch_outbox_messages", &[]), 0.0);

    // A check that finds a 25% drop, and its alert delivered.
    shop.set_price("/p/1", "150.00");
    clock.advance_ms(34 * 60_000);
    let tick = t.app().tick_now().await.unwrap();
    assert_eq!((tick.checked, tick.queued), (1, 1));
    t.wait_for(3).await;
    t.outbox_drained().await;
    let after_alert = scrape(&t).await;
    assert_eq!(after_alert.value("pricewatch_checks_total", &ok), 2.0);
    assert_eq!(
        after_alert.value("pricewatch_alerts_queued_total", &[]),
        2.0
    );
    assert_eq!(after_alert.value("pricewatch_deliveries_total", &sent), 2.0);
    assert_eq!(
        after_alert.value("pricewatch_deliveries_total", &[("outcome", "dead")]),
        0.0
    );
    assert_eq!(
        after_alert.value("pricewatch_turns_total", &handled),
        1.0,
        "a check is no turn"
    );
    assert_eq!(after_alert.value("pricewatch_watches", &[]), 1.0);
}

#[tokio::test]
async fn metrics_answer_get_and_head_only() {
    let t = TestApp::spawn().await;
    let url = format!("http://{}/metrics", t.app().local_addr());
    let r = t.client.post(&url).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    let r = t.client.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_oldest_queued_message_shows_its_age_until_it_is_sent() {
    let shop = FakeShop::start().await;
    shop.set_price("/p/1", "200.00");
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(pricewatch::clock::SystemClock.now_ms()));
    let mut config = test_config(&dir.path().join("data"));
    config.schedule.enabled = true;
    config.schedule.tick = NO_SCHEDULED_TICK.into();
    config.fetch.allow_networks = vec!["127.0.0.0/8".into()];
    let t = TestApp::spawn_with_clock(config, clock.clone()).await;
    assert_eq!(
        scrape(&t)
            .await
            .value("pricewatch_outbox_oldest_age_seconds", &[]),
        0.0
    );

    // The channel is down: the reply and the first price stay queued, and age on the
    // daemon's clock.
    t.channel
        .answer_with(reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let watch = t.message("c1", &format!("watch {}/p/1", shop.base));
    assert_eq!(t.post(&watch).await.0, 200);
    t.wait_for(2).await;
    let store = t.app().store();
    crate::helpers::eventually(|| async {
        match store.stats().await.unwrap().outbox {
            2 => Ok(()),
            n => Err(format!("two queued messages; {n} are")),
        }
    })
    .await;
    clock.advance_ms(95_000);
    let stuck = scrape(&t).await;
    assert_eq!(stuck.value("pricewatch_outbox_messages", &[]), 2.0);
    let age = stuck.value("pricewatch_outbox_oldest_age_seconds", &[]);
    assert!((95.0..100.0).contains(&age), "{age}");

    // The channel is back: once sent, nothing waits and the age is 0 again.
    t.channel.answer_with(reqwest::StatusCode::OK);
    clock.advance_ms(3_600_000);
    t.outbox_drained().await;
    let sent = scrape(&t).await;
    assert_eq!(sent.value("pricewatch_outbox_messages", &[]), 0.0);
    assert_eq!(sent.value("pricewatch_outbox_oldest_age_seconds", &[]), 0.0);
}
