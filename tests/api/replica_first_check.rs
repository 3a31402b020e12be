//! A new watch's first check on a replica that does not fetch the shop, while the replica
//! that does has a check of the same product in flight, begun before the watch was stored.
//! Two daemons in this process on one PostgreSQL schema (`PRICEWATCH_TEST_POSTGRES_URL`;
//! skipped without), one shop the test holds mid-answer.

use std::sync::Arc;
use std::time::Duration;

use pricewatch::clock::{Clock, ManualClock};
use pricewatch::domain::ProductUrl;

use crate::fakes::FakeShop;
use crate::helpers::{eventually, test_config, TestApp};
use crate::postgres::TestDatabase;

const MINUTE: u64 = 60_000;
/// A cron tick that never comes while the test runs: it ticks with `App::tick_now`.
const NO_SCHEDULED_TICK: &str = "0 0 0 1 1 * 2999";

async fn replica(db: &TestDatabase, dir: &std::path::Path, clock: Arc<ManualClock>) -> TestApp {
    let mut config = test_config(&dir.join("data"));
    config.schedule.enabled = true;
    config.schedule.tick = NO_SCHEDULED_TICK.into();
    config.fetch.allow_networks = vec!["127.0.0.0/8".into()];
    config.fetch.host_gap = Duration::ZERO;
    db.configure(&mut config, dir);
    TestApp::spawn_with_clock(config, clock).await
}

/// Before, the replica fetching the shop recorded its check (begun before the watch was
/// stored) with the next due time an interval away, over the "due now" the other replica
/// had set for the new watch: its first price waited for the next scheduled check. Now
/// the other replica waits for that check to be recorded, then makes the product due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_check_left_to_another_replica_survives_its_check_in_flight() {
    let Some(db) = TestDatabase::new("a_first_check_left_to_another_replica_survives") else {
        return;
    };
    let shop = FakeShop::start().await;
    shop.set_price("/p/1", "100.00");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let clock_a = Arc::new(ManualClock::new(now));
    let a = replica(&db, dir_a.path(), clock_a.clone()).await;
    let b = replica(&db, dir_b.path(), Arc::new(ManualClock::new(now))).await;

    // A watches first: its first check takes the shop's lease, which A then keeps.
    let url = shop.url("/p/1");
    assert_eq!(
        a.post(&a.message("c1", &format!("watch {url}"))).await.0,
        200
    );
    let got = a.wait_for(2).await;
    assert!(got.iter().any(|r| r.text().contains("100.00")), "{got:?}");

    // A's scheduled check of the product reaches the shop, which holds it there.
    clock_a.advance_ms(34 * MINUTE);
    shop.hold();
    let hits = shop.hits();
    let (tick, ()) = tokio::join!(a.app().tick_now(), async {
        eventually(|| async {
            (shop.hits() > hits)
                .then_some(())
                .ok_or("A's check has not reached the shop")
        })
        .await;
        // B's user watches the same product: B does not fetch the shop, so it leaves the
        // first check to A, whose check in flight read the watches before this one existed.
        assert_eq!(
            b.post(&b.message("c2", &format!("watch {url}"))).await.0,
            200
        );
        // Time for B's first check to find A's check in flight. (Were it later, it would
        // find none, and the test would pass without exercising the wait.)
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        shop.release();
    });
    let tick = tick.unwrap();
    assert_eq!(tick.checked, 1, "{tick:?}");

    // B's first check sees A's check recorded and the new watch still without a price,
    // and makes the product due: A's next tick reads the new watch.
    let product_url = ProductUrl::parse(&url, 2048).unwrap();
    let store = a.app().store();
    eventually(|| async {
        let due = store
            .product(&product_url)
            .await
            .unwrap()
            .unwrap()
            .next_due_ms;
        (due <= clock_a.now_ms())
            .then_some(())
            .ok_or(format!("not due: {due} > {}", clock_a.now_ms()))
    })
    .await;
    let tick = a.app().tick_now().await.unwrap();
    assert_eq!(tick.checked, 1, "{tick:?}");
    let got = b.wait_for(2).await;
    assert!(
        got.iter().any(|r| r.text().contains("100.00")),
        "B's user got no first price: {got:?}"
    );
}
