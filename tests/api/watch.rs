//! The watch loop against a real local shop whose prices the tests change: one fetch per
//! product however many watch it, the trigger's alerts and notices queued durably, and
//! no second fetch of a product already being checked.

use std::sync::Arc;
use std::time::Duration;

use pricewatch::clock::{Clock, ManualClock};
use pricewatch::delivery::run::Wake;
use pricewatch::domain::Event;
use pricewatch::domain::ProductUrl;
use pricewatch::domain::{NewWatch, OutboxMessage, Rule};
use pricewatch::inbound::activity::ConversationKey;
use pricewatch::price::engine::PriceEngine;
use pricewatch::price::extract::Extractor;
use pricewatch::price::fetch::{FetchConfig, Fetcher};
use pricewatch::price::rules::Rules;
use pricewatch::store::Store;
use pricewatch::watch::gate::GateConfig;
use pricewatch::watch::plan::PlanConfig;
use pricewatch::watch::schedule::ScheduleConfig;
use pricewatch::watch::trigger::TriggerConfig;
use pricewatch::watch::watcher::Watcher;
use rust_decimal::Decimal;
use warp::http::StatusCode;

use crate::fakes::{open_store, FakeShop, Page};
use crate::helpers::{eventually, test_config, TestApp};

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;

fn url(shop: &FakeShop, path: &str) -> ProductUrl {
    ProductUrl::parse(&shop.url(path), 2048).unwrap()
}

struct Loop {
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    watcher: Watcher,
    _dir: tempfile::TempDir,
}

fn conversation(id: &str) -> ConversationKey {
    ConversationKey {
        channel_id: "emulator".into(),
        conversation_id: id.into(),
    }
}

impl Loop {
    fn new() -> Loop {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = open_store(&dir.path().join("data")).unwrap();
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let fetch = FetchConfig {
            allow_networks: vec!["127.0.0.0/8".into()],
            ..FetchConfig::default()
        };
        let engine = PriceEngine::new(
            Fetcher::new(&fetch).unwrap(),
            Extractor::new(Rules::default(), 5 << 20),
        );
        let plan = PlanConfig {
            trigger: TriggerConfig::default(),
            schedule: ScheduleConfig::default(),
        };
        let gate = GateConfig {
            host_gap: Duration::ZERO,
            ..GateConfig::default()
        };
        let year = Duration::from_secs(365 * 24 * 3600);
        let watcher = Watcher::new(
            store.clone(),
            engine,
            clock.clone(),
            plan,
            gate,
            year,
            Wake::default(),
        );
        Loop {
            store,
            clock,
            watcher,
            _dir: dir,
        }
    }

    async fn watch(&self, conv: &str, url: &ProductUrl) {
        let new = NewWatch {
            conversation: conversation(conv),
            user: None,
            url: url.clone(),
            rule: Rule::Drop {
                percent: Decimal::from(20),
            },
            created_at_ms: self.clock.now_ms(),
        };
        self.store.add_watch(new, 50).await.unwrap();
    }

    /// Moves the clock just past the product's next check, whatever its backoff.
    async fn advance_to_due(&self, url: &ProductUrl) {
        let due = self.store.product(url).await.unwrap().unwrap().next_due_ms;
        let now = self.clock.now_ms();
        self.clock.advance_ms(due.saturating_sub(now) + 1);
    }

    /// Moves the clock past every product's next check (interval plus the largest jitter).
    fn later(&self) {
        self.clock.advance_ms(34 * MINUTE);
    }

    /// The outbox's messages, oldest first, removed from it.
    async fn drain(&self) -> Vec<OutboxMessage> {
        let ready = self.store.due_messages(u64::MAX, 1000).await.unwrap();
        for e in &ready {
            self.store.remove_delivered(vec![e.id]).await.unwrap();
        }
        ready.into_iter().map(|e| e.message).collect()
    }
}

fn alerts(messages: &[OutboxMessage]) -> Vec<(Decimal, Decimal)> {
    messages
        .iter()
        .filter_map(|m| match m {
            OutboxMessage::Watch {
                event:
                    Event::Fired {
                        price,
                        drop_percent,
                        ..
                    },
                ..
            } => Some((*price, *drop_percent)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_shared_product_is_fetched_once_and_a_25_percent_drop_alerts_once() {
    let shop = FakeShop::start().await;
    shop.set_price("/p/1", "200.00");
    shop.set_price("/p/2", "50.00");
    let l = Loop::new();
    l.watch("a", &url(&shop, "/p/1")).await;
    l.watch("b", &url(&shop, "/p/1")).await;
    l.watch("b", &url(&shop, "/p/2")).await;

    let report = l.watcher.tick().await.unwrap();
    assert_eq!((report.checked, report.queued), (2, 3));
    assert_eq!(shop.hits(), 2, "one fetch per product");
    let first = l.drain().await;
    assert!(first.iter().all(|m| matches!(
        m,
        OutboxMessage::Watch {
            event: Event::ReferenceSet { .. },
            ..
        }
    )));
    // Not due yet: nothing is fetched.
    assert_eq!(l.watcher.tick().await.unwrap().checked, 0);
    assert_eq!(shop.hits(), 2);

    // 10% down: no alert.
    shop.set_price("/p/1", "180.00");
    l.later();
    l.watcher.tick().await.unwrap();
    assert!(alerts(&l.drain().await).is_empty());

    // 25% down: exactly one alert per watch, with the right numbers.
    shop.set_price("/p/1", "150.00");
    l.later();
    l.watcher.tick().await.unwrap();
    let fired = alerts(&l.drain().await);
    assert_eq!(
        fired,
        vec![(Decimal::from(150), Decimal::new(250, 1)); 2],
        "both watchers, 25.0%"
    );
    // Staying low: no second alert.
    l.later();
    l.watcher.tick().await.unwrap();
    assert!(l.drain().await.is_empty());
    // History keeps the three distinct prices.
    let history = l.store.history(&url(&shop, "/p/1")).await.unwrap();
    let prices: Vec<String> = history.iter().map(|p| p.amount.to_string()).collect();
    assert_eq!(prices, ["200.00", "180.00", "150.00"]);

    // A year and more later, history older than the retention is gone; the current price stays.
    l.clock.advance_ms(400 * 24 * HOUR);
    l.watcher.tick().await.unwrap();
    let history = l.store.history(&url(&shop, "/p/1")).await.unwrap();
    let prices: Vec<String> = history.iter().map(|p| p.amount.to_string()).collect();
    assert_eq!(prices, ["150.00"]);
}

#[tokio::test]
async fn a_shop_failing_for_a_day_is_reported_once() {
    let shop = FakeShop::start().await;
    shop.set_price("/p/1", "99.00");
    let l = Loop::new();
    l.watch("a", &url(&shop, "/p/1")).await;
    l.watcher.tick().await.unwrap();
    l.drain().await;

    shop.put(
        "/p/1",
        Page::product("Skillet /p/1", "99.00").with_status(500),
    );
    let mut notices = Vec::new();
    let start = l.clock.now_ms();
    while l.clock.now_ms() < start + 30 * HOUR {
        l.advance_to_due(&url(&shop, "/p/1")).await;
        l.watcher.tick().await.unwrap();
        notices.extend(l.drain().await);
    }
    assert_eq!(notices.len(), 1, "{notices:?}");
    let OutboxMessage::CannotRead { reason, .. } = &notices[0] else {
        panic!("{notices:?}");
    };
    assert!(reason.contains("500"), "{reason}");
    // The watch is kept, and is told once when the page is readable again.
    shop.set_price("/p/1", "99.00");
    l.advance_to_due(&url(&shop, "/p/1")).await;
    l.watcher.tick().await.unwrap();
    let back = l.drain().await;
    assert!(
        matches!(back.as_slice(), [OutboxMessage::ReadableAgain { .. }]),
        "{back:?}"
    );
}

#[tokio::test]
async fn a_first_check_without_a_price_removes_the_watch_and_says_why() {
    let shop = FakeShop::start().await;
    let l = Loop::new();
    l.watch("a", &url(&shop, "/p/missing")).await;
    l.watcher
        .first_check(&url(&shop, "/p/missing"))
        .await
        .unwrap();
    let messages = l.drain().await;
    let [OutboxMessage::FirstCheckFailed { reason, .. }] = messages.as_slice() else {
        panic!("{messages:?}");
    };
    assert!(reason.contains("404"), "{reason}");
    assert!(l
        .store
        .watches(&conversation("a"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(l.store.stats().await.unwrap().products, 0);
}

#[tokio::test]
async fn a_tick_never_fetches_a_product_that_is_already_being_checked() {
    let shop = FakeShop::start().await;
    shop.set_price("/p/slow", "10.00");
    let l = Loop::new();
    l.watch("a", &url(&shop, "/p/slow")).await;
    // The shop holds the first tick's fetch until the second tick is over.
    shop.hold();
    let (first, second) = tokio::join!(l.watcher.tick(), async {
        eventually(|| async {
            if shop.hits() == 1 {
                Ok(())
            } else {
                Err("the first tick's fetch")
            }
        })
        .await;
        let second = l.watcher.tick().await;
        shop.release();
        second
    });
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(
        second.checked, 0,
        "the product in flight is not checked again"
    );
    assert_eq!(first.checked + second.checked, 1);
    assert_eq!(shop.hits(), 1);
}

#[tokio::test]
async fn a_first_check_waiting_for_a_ticks_check_of_its_product_does_not_fetch_it_again() {
    let shop = FakeShop::start().await;
    shop.set_price("/p/slow", "10.00");
    let l = Loop::new();
    let slow = url(&shop, "/p/slow");
    l.watch("a", &slow).await;
    // The tick's fetch is in flight when the new watch's first check comes.
    shop.hold();
    let (tick, first) = tokio::join!(l.watcher.tick(), async {
        eventually(|| async {
            if shop.hits() == 1 {
                Ok(())
            } else {
                Err("the tick's fetch")
            }
        })
        .await;
        let (first, ()) = tokio::join!(l.watcher.first_check(&slow), async {
            // Not for correctness: whether the first check meets the fetch in flight or
            // comes after it, it must not fetch the page again.
            tokio::time::sleep(Duration::from_millis(300)).await;
            shop.release();
        });
        first
    });
    assert_eq!(tick.unwrap().checked, 1);
    assert_eq!(first.unwrap(), 0, "the tick's check queued the first price");
    assert_eq!(shop.hits(), 1, "the page is fetched once");
    let messages = l.drain().await;
    assert_eq!(messages.len(), 1, "one first price: {messages:?}");
}

/// A cron tick that never comes while a test runs (the next is on 1 January 2999).
const NO_SCHEDULED_TICK: &str = "0 0 0 1 1 * 2999";

/// The daemon with the watch loop on, the loopback shop allowed, on a clock the test
/// moves. `tick`: its cron; with [`NO_SCHEDULED_TICK`] the test ticks with
/// `App::tick_now`, so no scheduled tick can take a check whose report it reads.
async fn daemon(clock: Arc<ManualClock>, data: &std::path::Path, tick: &str) -> TestApp {
    TestApp::spawn_with_clock(daemon_config(data, tick), clock).await
}

/// What [`daemon`] starts with.
fn daemon_config(data: &std::path::Path, tick: &str) -> pricewatch::ops::config::Config {
    let mut config = watching(data);
    config.schedule.tick = tick.into();
    config.fetch.host_gap = Duration::ZERO;
    config.alerts.digest_window = Duration::from_millis(300);
    config
}

/// The test configuration with the watch loop on (every second) and the loopback shop
/// allowed.
fn watching(data: &std::path::Path) -> pricewatch::ops::config::Config {
    let mut config = test_config(data);
    config.schedule.enabled = true;
    config.schedule.tick = "* * * * * *".into();
    config.fetch.allow_networks = vec!["127.0.0.0/8".into()];
    config
}

fn real_now() -> u64 {
    pricewatch::clock::SystemClock.now_ms()
}

#[tokio::test]
async fn end_to_end_watch_gets_its_first_price_then_one_alert() {
    first_price_then_one_alert(|_, _| {}).await;
}

#[tokio::test]
async fn end_to_end_on_postgres_as_on_sled() {
    let Some(db) = crate::postgres::TestDatabase::new("end_to_end_on_postgres_as_on_sled") else {
        return;
    };
    first_price_then_one_alert(|config, dir| db.configure(config, dir)).await;
}

/// A watch's first price, then one alert for a 25 % drop and none while it stays low,
/// with `configure` choosing the backend (given the test's temporary directory).
async fn first_price_then_one_alert(
    configure: impl FnOnce(&mut pricewatch::ops::config::Config, &std::path::Path),
) {
    let shop = FakeShop::start().await;
    shop.set_price("/p/1", "199.00");
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(real_now()));
    let mut config = daemon_config(&dir.path().join("data"), NO_SCHEDULED_TICK);
    configure(&mut config, dir.path());
    let t = TestApp::spawn_with_clock(config, clock.clone()).await;

    let watch = t.message("c1", &format!("watch {}/p/1", shop.base));
    assert_eq!(t.post(&watch).await.0, 200);
    // The reply at once, then the first price as a proactive message.
    let got = t.wait_for(2).await;
    let follow_up = got
        .iter()
        .find(|r| r.text().contains("159.20"))
        .unwrap_or_else(|| panic!("{got:?}"));
    assert!(follow_up.text().contains("199.00"), "{}", follow_up.text());
    assert!(
        got[0].text().contains("first price will follow"),
        "{}",
        got[0].text()
    );
    assert_eq!(follow_up.path, "/v3/conversations/c1/activities");
    assert!(
        follow_up.body.get("replyToId").is_none(),
        "proactive, not a reply"
    );

    // 25% down, the next check due: exactly one alert.
    shop.set_price("/p/1", "149.00");
    clock.advance_ms(34 * MINUTE);
    let tick = t.app().tick_now().await.unwrap();
    assert_eq!((tick.checked, tick.queued), (1, 1));
    let got = t.wait_for(3).await;
    let alert = got[2].text();
    assert!(
        alert.contains("149.00") && alert.contains("unwatch 1"),
        "{alert}"
    );
    clock.advance_ms(34 * MINUTE);
    let tick = t.app().tick_now().await.unwrap();
    assert_eq!(
        (tick.checked, tick.queued),
        (1, 0),
        "staying low does not alert again"
    );
    t.outbox_drained().await;
    assert_eq!(t.app().deliver_now().await.unwrap().sent, 0);
    assert_eq!(
        t.channel.received().len(),
        3,
        "staying low does not alert again"
    );

    // list and history show what the loop recorded.
    let list = t.say("c1", "list").await;
    assert!(
        list.contains("149.00") && list.contains("199.00") && list.contains("159.20"),
        "{list}"
    );
    let history = t.say("c1", "history 1").await;
    assert!(
        history.contains("149.00") && history.contains("199.00"),
        "{history}"
    );
    assert!(
        history.chars().any(|c| ('▁'..='█').contains(&c)),
        "{history}"
    );
}

#[tokio::test]
async fn an_alert_committed_but_not_sent_arrives_after_a_restart() {
    let shop = FakeShop::start().await;
    shop.set_price("/p/1", "100.00");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let clock = Arc::new(ManualClock::new(real_now()));
    let mut t = daemon(clock.clone(), &data, "* * * * * *").await;
    t.post(&t.message("c1", &format!("watch {}/p/1", shop.base)))
        .await;
    t.wait_for(2).await;
    // The follow-up is recorded before the channel's answer: wait until it counts as
    // delivered, or the 503 below could answer it too and it would rightly be sent again.
    t.outbox_drained().await;

    // The channel is down when the drop is seen: the alert is committed, not sent.
    t.channel.answer_with(StatusCode::SERVICE_UNAVAILABLE);
    shop.set_price("/p/1", "70.00");
    clock.advance_ms(34 * MINUTE);
    let got = t.wait_for(3).await;
    assert!(got[2].text().contains("70.00"));
    t.stop().await;

    // A new daemon on the same data delivers it once the channel is back.
    t.channel.answer_with(StatusCode::OK);
    let app = pricewatch::app::App::start_with_clock(&watching(&data), clock.clone())
        .await
        .unwrap();
    clock.advance_ms(MINUTE);
    let got = t.wait_for(4).await;
    assert!(got[3].text().contains("70.00"), "{}", got[3].text());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn two_products_dropping_for_one_conversation_make_one_digest() {
    let shop = FakeShop::start().await;
    shop.set_price("/p/1", "100.00");
    shop.set_price("/p/2", "40.00");
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(real_now()));
    let t = daemon(clock.clone(), &dir.path().join("data"), NO_SCHEDULED_TICK).await;
    for p in ["/p/1", "/p/2"] {
        t.post(&t.message("c1", &format!("watch {}{p}", shop.base)))
            .await;
    }
    // Two replies and two first-price follow-ups.
    t.wait_for(4).await;
    shop.set_price("/p/1", "70.00");
    shop.set_price("/p/2", "30.00");
    clock.advance_ms(34 * MINUTE);
    let tick = t.app().tick_now().await.unwrap();
    assert_eq!((tick.checked, tick.queued), (2, 2));
    let got = t.wait_for(5).await;
    let digest = got[4].text();
    assert!(
        digest.contains("70.00") && digest.contains("30.00"),
        "one message for both: {digest}"
    );
    assert!(
        digest.contains("unwatch 1") && digest.contains("unwatch 2"),
        "{digest}"
    );
    t.outbox_drained().await;
    assert_eq!(t.app().deliver_now().await.unwrap().sent, 0);
    assert_eq!(t.channel.received().len(), 5, "no second message");
}
