//! The `Store` contract, written once and run against every backend: sled (always, in a
//! temporary directory) and PostgreSQL (when `PRICEWATCH_TEST_POSTGRES_URL` names a
//! server; otherwise that half says it was skipped). A behaviour one backend has and the
//! other lacks fails here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use pricewatch::domain::{
    ChangePoint, CheckRecord, NewOutbox, NewWatch, OutboxEntry, OutboxMessage, ProductUrl,
    Reference, Rule, Unreachable, Watch,
};
use pricewatch::inbound::activity::{
    ChannelAccount, ConversationAccount, ConversationKey, ConversationReference,
};
use pricewatch::price::Currency;
use pricewatch::store::postgres::PgStore;
use pricewatch::store::{AddWatch, Recipient, ReferenceChange, Snapshot, Store, StoreError};
use rust_decimal::Decimal;

use crate::fakes::open_store;
use crate::postgres::TestDatabase;

type Body = fn(Arc<dyn Store>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
type PairBody = fn(Arc<dyn Store>, Arc<dyn Store>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `body` on a fresh sled store, then on a fresh PostgreSQL schema when there is a
/// server to test against.
async fn on_each_backend(name: &str, body: Body) {
    let dir = tempfile::tempdir().unwrap();
    eprintln!("{name}: sled");
    body(open_store(&dir.path().join("data")).unwrap()).await;
    // Declared before the store, so the store (and its pool) goes first.
    let Some(db) = TestDatabase::new(name) else {
        return;
    };
    eprintln!("{name}: postgres");
    body(Arc::new(PgStore::open(&db.config).await.unwrap())).await;
}

/// As [`on_each_backend`], with a second empty store of the same backend.
async fn on_each_backend_pair(name: &str, body: PairBody) {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    eprintln!("{name}: sled");
    body(
        open_store(&one.path().join("data")).unwrap(),
        open_store(&two.path().join("data")).unwrap(),
    )
    .await;
    let (Some(a), Some(b)) = (TestDatabase::new(name), TestDatabase::new(name)) else {
        return;
    };
    eprintln!("{name}: postgres");
    body(
        Arc::new(PgStore::open(&a.config).await.unwrap()),
        Arc::new(PgStore::open(&b.config).await.unwrap()),
    )
    .await;
}

macro_rules! contract {
    ($runner:ident: $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $runner(stringify!($name), |a| Box::pin(behaviours::$name(a))).await;
        }
    )*};
}

contract!(on_each_backend:
    references_upsert_and_report_what_changed,
    watches_are_added_once_within_the_limit_and_listed_oldest_first,
    concurrent_adds_keep_the_duplicate_and_limit_checks,
    checks_removals_and_marks_run_side_by_side,
    rules_change_and_watches_go_on_hold,
    products_are_shared_due_in_order_and_go_with_their_last_watch,
    a_check_is_recorded_whole_skipping_removed_or_changed_watches,
    an_alert_is_queued_once,
    history_is_read_and_pruned_keeping_the_latest_point,
    the_outbox_queues_defers_retries_and_removes,
    dead_letters_are_kept_and_requeued,
    unreachable_conversations_pause_and_resume_their_watches,
    recipients_are_read_in_the_order_asked,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_restored_into_an_empty_store_reads_back_the_same() {
    on_each_backend_pair(
        "a_snapshot_restored_into_an_empty_store_reads_back_the_same",
        |a, b| Box::pin(behaviours::snapshot_round_trip(a, b)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_keeps_the_last_of_what_is_given_twice() {
    on_each_backend_pair("a_restore_keeps_the_last_of_what_is_given_twice", |a, b| {
        Box::pin(behaviours::restore_keeps_the_last_given(a, b))
    })
    .await;
}

fn key(conv: &str) -> ConversationKey {
    ConversationKey {
        channel_id: "msteams".into(),
        conversation_id: conv.into(),
    }
}

fn reference(conv: &str, service_url: &str) -> ConversationReference {
    ConversationReference {
        channel_id: "msteams".into(),
        service_url: service_url.into(),
        conversation: ConversationAccount {
            id: conv.into(),
            ..Default::default()
        },
        user: Some(ChannelAccount {
            id: "u".into(),
            ..Default::default()
        }),
        bot: ChannelAccount {
            id: "b".into(),
            ..Default::default()
        },
        locale: None,
    }
}

fn url(u: &str) -> ProductUrl {
    ProductUrl::parse(u, 2048).unwrap()
}

fn new_watch(conv: &ConversationKey, u: &str) -> NewWatch {
    NewWatch {
        conversation: conv.clone(),
        user: None,
        url: url(u),
        rule: Rule::Drop {
            percent: Decimal::from(20),
        },
        created_at_ms: 1,
    }
}

fn added(result: AddWatch) -> Watch {
    match result {
        AddWatch::Added(w) => w,
        other => panic!("expected a new watch, got {other:?}"),
    }
}

async fn add(s: &Arc<dyn Store>, conv: &ConversationKey, u: &str) -> Watch {
    added(s.add_watch(new_watch(conv, u), 10).await.unwrap())
}

fn point(at_ms: u64, amount: i64) -> ChangePoint {
    ChangePoint {
        at_ms,
        amount: Decimal::from(amount),
        currency: Currency::parse("EUR").unwrap(),
    }
}

fn message(alert_id: &str, conv: &ConversationKey, watch_id: Option<u64>) -> NewOutbox {
    NewOutbox {
        alert_id: alert_id.into(),
        conversation: conv.clone(),
        watch_id,
        message: OutboxMessage::FirstCheckFailed {
            url: "https://shop.example/p/1".into(),
            reason: "test".into(),
        },
    }
}

fn ids(entries: &[OutboxEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.id).collect()
}

fn alerts(entries: &[OutboxEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.alert_id.as_str()).collect()
}

/// A check of `w`'s product with nothing but `messages`.
async fn check_with(
    s: &Arc<dyn Store>,
    w: &Watch,
    messages: Vec<NewOutbox>,
    now_ms: u64,
) -> Vec<OutboxEntry> {
    let product = s.product(&w.url).await.unwrap().unwrap();
    s.record_check(CheckRecord {
        product,
        change: None,
        watches: vec![],
        messages,
        now_ms,
    })
    .await
    .unwrap()
}

/// A snapshot with every id zeroed: what a restore must keep.
fn without_ids(mut s: Snapshot) -> Snapshot {
    for w in &mut s.watches {
        w.id = 0;
    }
    for e in s.queued.iter_mut().chain(&mut s.dead_letters) {
        e.id = 0;
        e.watch_id = e.watch_id.map(|_| 0);
    }
    s
}

mod behaviours {
    use super::*;

    pub async fn references_upsert_and_report_what_changed(s: Arc<dyn Store>) {
        let r = reference(
            "19:a@thread.skype;messageid=1",
            "https://smba.example/teams/",
        );
        assert_eq!(s.reference(&r.key()).await.unwrap(), None);
        assert_eq!(s.upsert_reference(&r).await.unwrap(), ReferenceChange::New);
        assert_eq!(
            s.upsert_reference(&r).await.unwrap(),
            ReferenceChange::Unchanged
        );
        let mut moved = r.clone();
        moved.service_url = "https://smba.example/emea/".into();
        assert_eq!(
            s.upsert_reference(&moved).await.unwrap(),
            ReferenceChange::ServiceUrlChanged
        );
        let mut renamed = moved.clone();
        renamed.locale = Some("fr-FR".into());
        assert_eq!(
            s.upsert_reference(&renamed).await.unwrap(),
            ReferenceChange::Updated
        );
        assert_eq!(s.reference(&r.key()).await.unwrap(), Some(renamed));
        for conv in ["c", "a", "b"] {
            s.upsert_reference(&reference(conv, "https://smba.example/"))
                .await
                .unwrap();
        }
        assert_eq!(s.stats().await.unwrap().references, 4);
        // Key order is sled's: length-prefixed ids, so a shorter id sorts first.
        assert_eq!(
            s.conversations().await.unwrap(),
            [key("a"), key("b"), key("c"), r.key()]
        );
        s.flush().await.unwrap();
    }

    pub async fn watches_are_added_once_within_the_limit_and_listed_oldest_first(
        s: Arc<dyn Store>,
    ) {
        let (conv, other) = (key("c1"), key("c2"));
        let first = added(
            s.add_watch(new_watch(&conv, "https://b.example/1"), 2)
                .await
                .unwrap(),
        );
        assert!(first.is_pending() && !first.paused && !first.on_hold);
        match s
            .add_watch(new_watch(&conv, "https://b.example/1"), 2)
            .await
            .unwrap()
        {
            AddWatch::Duplicate(w) => assert_eq!(w, first),
            other => panic!("expected a duplicate, got {other:?}"),
        }
        // The same URL in another conversation is a different watch.
        let theirs = added(
            s.add_watch(new_watch(&other, "https://b.example/1"), 2)
                .await
                .unwrap(),
        );
        let second = added(
            s.add_watch(new_watch(&conv, "https://a.example/2"), 2)
                .await
                .unwrap(),
        );
        assert!(second.id > first.id && theirs.id > first.id);
        assert_eq!(
            s.add_watch(new_watch(&conv, "https://a.example/3"), 2)
                .await
                .unwrap(),
            AddWatch::LimitReached { max: 2 }
        );
        // Oldest first, not by URL.
        assert_eq!(
            s.watches(&conv).await.unwrap(),
            [first.clone(), second.clone()]
        );
        assert_eq!(s.stats().await.unwrap().watches, 3);

        // Only the conversation's own watches are removed, each once, in the order asked.
        assert!(s
            .remove_watches(&other, &[first.id])
            .await
            .unwrap()
            .is_empty());
        let removed = s
            .remove_watches(&conv, &[second.id, first.id, second.id, u64::MAX])
            .await
            .unwrap();
        assert_eq!(removed, [second.clone(), first.clone()]);
        assert!(s.watches(&conv).await.unwrap().is_empty());
        assert_eq!(s.watches(&other).await.unwrap(), [theirs]);
        assert!(s
            .remove_watches(&conv, &[first.id])
            .await
            .unwrap()
            .is_empty());
        // Room again, and the new watch lists after any before it.
        let third = added(
            s.add_watch(new_watch(&conv, "https://a.example/3"), 2)
                .await
                .unwrap(),
        );
        assert!(third.id > second.id);
    }

    pub async fn concurrent_adds_keep_the_duplicate_and_limit_checks(s: Arc<dyn Store>) {
        let conv = key("busy");
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (s, conv) = (s.clone(), conv.clone());
                tokio::spawn(async move {
                    s.add_watch(new_watch(&conv, &format!("https://shop.example/p/{i}")), 3)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut added_n = 0;
        for t in tasks {
            match t.await.unwrap() {
                AddWatch::Added(_) => added_n += 1,
                AddWatch::LimitReached { max: 3 } => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(added_n, 3);
        assert_eq!(s.watches(&conv).await.unwrap().len(), 3);

        let same = key("same");
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let (s, same) = (s.clone(), same.clone());
                tokio::spawn(async move {
                    s.add_watch(new_watch(&same, "https://shop.example/one"), 10)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        let new: Vec<&Watch> = results
            .iter()
            .filter_map(|r| match r {
                AddWatch::Added(w) => Some(w),
                _ => None,
            })
            .collect();
        assert_eq!(new.len(), 1, "{results:?}");
        for r in &results {
            match r {
                AddWatch::Added(_) => {}
                AddWatch::Duplicate(w) => assert_eq!(w, new[0]),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(s.watches(&same).await.unwrap().len(), 1);
    }

    pub async fn checks_removals_and_marks_run_side_by_side(s: Arc<dyn Store>) {
        // A check of a product, the removal of one of its watches and the pausing of
        // another's conversation, at once, many times: each finishes (a backend that
        // took their locks in different orders would fail one of them), and the
        // store is left consistent.
        for round in 0..20 {
            let (a, b) = (key(&format!("a{round}")), key(&format!("b{round}")));
            let u = format!("https://shop.example/r/{round}");
            let wa = add(&s, &a, &u).await;
            let wb = add(&s, &b, &u).await;
            let product = s.product(&wa.url).await.unwrap().unwrap();
            let bump = |w: &Watch| {
                let mut c = w.clone();
                c.trigger.below_count = 1;
                c
            };
            let check = s.record_check(CheckRecord {
                product,
                change: Some(point(10, round)),
                watches: vec![bump(&wa), bump(&wb)],
                messages: vec![
                    message(&format!("a-{round}"), &a, Some(wa.id)),
                    message(&format!("b-{round}"), &b, Some(wb.id)),
                ],
                now_ms: 10,
            });
            let gone = [wa.id];
            let remove = s.remove_watches(&a, &gone);
            let mark = s.mark_unreachable(
                &b,
                Unreachable {
                    since_ms: 10,
                    reason: "403".into(),
                },
            );
            let (queued, removed, _) = tokio::join!(check, remove, mark);
            // Which of them came first decides what the check queued; that each
            // finished and the store agrees with itself is what is checked.
            let queued = queued.unwrap();
            let removed: Vec<u64> = removed.unwrap().iter().map(|w| w.id).collect();
            assert_eq!(removed, [wa.id]);
            assert!(queued.len() <= 2);
            assert!(s.queued_messages(usize::MAX).await.unwrap().len() >= queued.len());
            assert_eq!(s.watches(&b).await.unwrap().len(), 1);
            assert!(s.watches(&a).await.unwrap().is_empty());
            assert!(s.product(&wa.url).await.unwrap().is_some());
        }
    }

    pub async fn rules_change_and_watches_go_on_hold(s: Arc<dyn Store>) {
        let conv = key("c");
        let w = add(&s, &conv, "https://shop.example/p/1").await;
        let other = add(&s, &conv, "https://shop.example/p/2").await;
        let mut fired = w.clone();
        fired.trigger.reference = Some(Reference {
            amount: Decimal::from(100),
            currency: Currency::parse("EUR").unwrap(),
            at_ms: 10,
        });
        fired.trigger.fired = true;
        fired.trigger.below_count = 2;
        let product = s.product(&w.url).await.unwrap().unwrap();
        s.record_check(CheckRecord {
            product,
            change: Some(point(10, 100)),
            watches: vec![fired.clone()],
            messages: vec![],
            now_ms: 10,
        })
        .await
        .unwrap();
        let rule = Rule::Below {
            amount: Decimal::from(99),
        };
        let (before, after) = s
            .change_rule(&conv, w.id, rule.clone())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(before, fired);
        assert_eq!(after.rule, rule);
        assert_eq!(after.trigger.reference, fired.trigger.reference);
        assert!(!after.trigger.fired && after.trigger.below_count == 0);
        // The same rule again changes nothing.
        let (b, a) = s
            .change_rule(&conv, w.id, rule.clone())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&b, &a), (&after, &after));
        assert!(s
            .change_rule(&key("other"), w.id, rule.clone())
            .await
            .unwrap()
            .is_none());
        assert!(s
            .change_rule(&conv, u64::MAX, rule)
            .await
            .unwrap()
            .is_none());
        assert_eq!(s.watches(&conv).await.unwrap(), [after, other.clone()]);
        assert_eq!(s.history(&w.url).await.unwrap(), [point(10, 100)]);

        let both = [w.id, other.id];
        let held = s.set_on_hold(&conv, &both, true).await.unwrap();
        assert_eq!(held.len(), 2);
        assert!(held.iter().all(|w| w.on_hold));
        assert_eq!(
            s.set_on_hold(&conv, &both[..1], true).await.unwrap(),
            held[..1]
        );
        let resumed = s.set_on_hold(&conv, &[other.id], false).await.unwrap();
        assert_eq!(resumed.len(), 1);
        let now: Vec<bool> = s
            .watches(&conv)
            .await
            .unwrap()
            .iter()
            .map(|w| w.on_hold)
            .collect();
        assert_eq!(now, [true, false]);
        assert!(s
            .set_on_hold(&key("other"), &both, false)
            .await
            .unwrap()
            .is_empty());
    }

    pub async fn products_are_shared_due_in_order_and_go_with_their_last_watch(s: Arc<dyn Store>) {
        let (a, b) = (key("a"), key("b"));
        let wa = add(&s, &a, "https://shop.example/p/1").await;
        let wb = add(&s, &b, "https://shop.example/p/1").await;
        let w2 = add(&s, &b, "https://shop.example/p/2").await;
        let w3 = add(&s, &b, "https://shop.example/p/3").await;
        let stats = s.stats().await.unwrap();
        assert_eq!((stats.watches, stats.products), (4, 3));
        let p = s.product(&wa.url).await.unwrap().unwrap();
        assert_eq!((p.url.clone(), p.next_due_ms), (wa.url.clone(), 1));
        assert!(s
            .product(&url("https://shop.example/none"))
            .await
            .unwrap()
            .is_none());
        let watchers: Vec<u64> = s
            .product_watches(&wa.url)
            .await
            .unwrap()
            .iter()
            .map(|w| w.id)
            .collect();
        assert_eq!(watchers, [wa.id, wb.id]);

        // Each product once, most overdue first, at most `limit`.
        assert!(s.due_products(0, 10).await.unwrap().is_empty());
        assert_eq!(s.due_products(1, 10).await.unwrap().len(), 3);
        for (w, due) in [(&wa, 5_000), (&w2, 3_000), (&w3, 4_000)] {
            let mut product = s.product(&w.url).await.unwrap().unwrap();
            product.next_due_ms = due;
            s.record_check(CheckRecord {
                product,
                change: None,
                watches: vec![],
                messages: vec![],
                now_ms: 10,
            })
            .await
            .unwrap();
        }
        let due = |ps: Vec<pricewatch::domain::Product>| {
            ps.into_iter().map(|p| p.url).collect::<Vec<_>>()
        };
        assert_eq!(due(s.due_products(2_999, 10).await.unwrap()), []);
        assert_eq!(
            due(s.due_products(4_000, 10).await.unwrap()),
            [w2.url.clone(), w3.url.clone()]
        );
        assert_eq!(
            due(s.due_products(u64::MAX, 10).await.unwrap()),
            [w2.url.clone(), w3.url.clone(), wa.url.clone()]
        );
        assert_eq!(
            due(s.due_products(u64::MAX, 2).await.unwrap()),
            [w2.url.clone(), w3.url.clone()]
        );

        // The last watch takes the product and its history with it.
        let mut product = s.product(&wa.url).await.unwrap().unwrap();
        product.next_due_ms = 6_000;
        s.record_check(CheckRecord {
            product,
            change: Some(point(10, 199)),
            watches: vec![],
            messages: vec![],
            now_ms: 10,
        })
        .await
        .unwrap();
        s.remove_watches(&a, &[wa.id]).await.unwrap();
        assert!(s.product(&wa.url).await.unwrap().is_some(), "b watches it");
        assert_eq!(s.history(&wa.url).await.unwrap(), [point(10, 199)]);
        s.remove_watches(&b, &[wb.id]).await.unwrap();
        assert!(s.product(&wa.url).await.unwrap().is_none());
        assert!(s.history(&wa.url).await.unwrap().is_empty());
        assert!(s.product_watches(&wa.url).await.unwrap().is_empty());
        assert_eq!(
            due(s.due_products(u64::MAX, 10).await.unwrap()),
            [w2.url.clone(), w3.url.clone()]
        );
        assert_eq!(s.stats().await.unwrap().products, 2);
        // Added again: a new product, due at once.
        let again = add(&s, &a, "https://shop.example/p/1").await;
        assert!(s.history(&again.url).await.unwrap().is_empty());
        assert_eq!(due(s.due_products(1, 10).await.unwrap()).len(), 1);
        // Due together: in key order, sled's (a shorter URL first, then by bytes).
        let ten = add(&s, &a, "https://shop.example/p/10").await;
        let nine = add(&s, &a, "https://shop.example/p/9").await;
        assert_eq!(
            due(s.due_products(1, 10).await.unwrap()),
            [again.url, nine.url, ten.url]
        );
    }

    pub async fn a_check_is_recorded_whole_skipping_removed_or_changed_watches(s: Arc<dyn Store>) {
        let conv = key("c");
        let w = add(&s, &conv, "https://shop.example/p/1").await;
        let gone = add(&s, &conv, "https://shop.example/p/1?x=2").await;
        let ruled = add(&s, &conv, "https://shop.example/p/1?x=3").await;
        let held = add(&s, &conv, "https://shop.example/p/1?x=4").await;
        let bystander = add(&s, &conv, "https://shop.example/p/1?x=5").await;
        // Meanwhile, while the page was fetched: one removed, one given a new rule, one
        // put on hold.
        s.remove_watches(&conv, &[gone.id]).await.unwrap();
        s.change_rule(
            &conv,
            ruled.id,
            Rule::Below {
                amount: Decimal::from(1),
            },
        )
        .await
        .unwrap();
        s.set_on_hold(&conv, &[held.id], true).await.unwrap();

        let mut product = s.product(&w.url).await.unwrap().unwrap();
        product.title = Some("Skillet".into());
        product.next_due_ms = 5_000;
        let changed = |w: &Watch| {
            let mut c = w.clone();
            c.trigger.below_count = 1;
            c
        };
        let queued = s
            .record_check(CheckRecord {
                product: product.clone(),
                change: Some(point(10, 199)),
                watches: vec![changed(&w), changed(&gone), changed(&ruled), changed(&held)],
                messages: vec![
                    message("w", &conv, Some(w.id)),
                    message("gone", &conv, Some(gone.id)),
                    message("ruled", &conv, Some(ruled.id)),
                    message("held", &conv, Some(held.id)),
                    // About a watch the check did not change, still there: queued.
                    message("bystander", &conv, Some(bystander.id)),
                    // About a watch of another conversation with that id: not there.
                    message("elsewhere", &key("x"), Some(w.id)),
                    message("general", &conv, None),
                ],
                now_ms: 10,
            })
            .await
            .unwrap();
        assert_eq!(alerts(&queued), ["w", "bystander", "general"]);
        assert!(queued.iter().all(|e| e.created_ms == 10
            && e.next_attempt_ms == 10
            && e.attempts == 0
            && e.dead_ms.is_none()));
        assert_eq!(s.queued_messages(10).await.unwrap(), queued);
        assert_eq!(s.product(&w.url).await.unwrap(), Some(product.clone()));
        assert_eq!(s.latest_point(&w.url).await.unwrap(), Some(point(10, 199)));
        let now = s.watches(&conv).await.unwrap();
        assert_eq!(now[0], changed(&w));
        assert_eq!(now[1].trigger.below_count, 0, "the new rule is kept");
        assert!(now[2].on_hold && now[2].trigger.below_count == 0);
        assert_eq!(now[3], bystander);

        // Every watch gone meanwhile: nothing of the check is recorded.
        let p2 = add(&s, &conv, "https://shop.example/p/2").await;
        let mut product = s.product(&p2.url).await.unwrap().unwrap();
        s.remove_watches(&conv, &[p2.id]).await.unwrap();
        product.next_due_ms = 9_000;
        let queued = s
            .record_check(CheckRecord {
                product,
                change: Some(point(20, 5)),
                watches: vec![changed(&p2)],
                messages: vec![message("nobody", &conv, None)],
                now_ms: 20,
            })
            .await
            .unwrap();
        assert!(queued.is_empty());
        assert!(s.product(&p2.url).await.unwrap().is_none());
        assert!(s.history(&p2.url).await.unwrap().is_empty());
        assert_eq!(s.stats().await.unwrap().outbox, 3);
    }

    pub async fn an_alert_is_queued_once(s: Arc<dyn Store>) {
        let conv = key("c");
        let w = add(&s, &conv, "https://shop.example/p/1").await;
        let first = check_with(
            &s,
            &w,
            vec![
                message("a1", &conv, Some(w.id)),
                message("a1", &conv, Some(w.id)),
                message("a2", &conv, None),
            ],
            10,
        )
        .await;
        assert_eq!(alerts(&first), ["a1", "a2"]);
        // The same check recorded again (a retry after a crash) queues nothing new.
        let again = check_with(
            &s,
            &w,
            vec![message("a1", &conv, Some(w.id)), message("a3", &conv, None)],
            20,
        )
        .await;
        assert_eq!(alerts(&again), ["a3"]);
        // Nor does the notify path, for an alert a check queued, and the other way round.
        let notified = s
            .queue_messages(
                vec![message("a2", &conv, None), message("n1", &conv, None)],
                30,
            )
            .await
            .unwrap();
        assert_eq!(alerts(&notified), ["n1"]);
        assert!(check_with(&s, &w, vec![message("n1", &conv, None)], 40)
            .await
            .is_empty());
        let all = s.queued_messages(10).await.unwrap();
        assert_eq!(alerts(&all), ["a1", "a2", "a3", "n1"]);
        let mut sorted = ids(&all);
        sorted.sort_unstable();
        assert_eq!(ids(&all), sorted, "queue order is id order");
        assert_eq!(s.stats().await.unwrap().outbox, 4);
    }

    pub async fn history_is_read_and_pruned_keeping_the_latest_point(s: Arc<dyn Store>) {
        let conv = key("c");
        let mut urls = Vec::new();
        for u in ["https://shop.example/p/1", "https://shop.example/p/2"] {
            urls.push(add(&s, &conv, u).await.url);
        }
        assert!(s.latest_point(&urls[0]).await.unwrap().is_none());
        for (i, url) in urls.iter().enumerate() {
            let product = s.product(url).await.unwrap().unwrap();
            // Recorded out of order: read back by time.
            for at in [20, 10, 30] {
                s.record_check(CheckRecord {
                    product: product.clone(),
                    change: Some(point(at + i as u64, at as i64)),
                    watches: vec![],
                    messages: vec![],
                    now_ms: at,
                })
                .await
                .unwrap();
            }
        }
        assert_eq!(
            s.history(&urls[0]).await.unwrap(),
            [point(10, 10), point(20, 20), point(30, 30)]
        );
        assert_eq!(s.latest_point(&urls[1]).await.unwrap(), Some(point(31, 30)));
        assert_eq!(s.prune_history(25).await.unwrap(), 4);
        assert_eq!(s.history(&urls[0]).await.unwrap(), [point(30, 30)]);
        // Everything is old, but each product's latest point stays: the current price.
        assert_eq!(s.prune_history(u64::MAX).await.unwrap(), 0);
        assert_eq!(s.history(&urls[1]).await.unwrap(), [point(31, 30)]);
    }

    pub async fn the_outbox_queues_defers_retries_and_removes(s: Arc<dyn Store>) {
        let conv = key("c");
        let queued = s
            .queue_messages(
                (0..5)
                    .map(|i| message(&format!("m{i}"), &conv, None))
                    .collect(),
                100,
            )
            .await
            .unwrap();
        let m = ids(&queued);
        assert_eq!(alerts(&queued), ["m0", "m1", "m2", "m3", "m4"]);
        assert_eq!(
            s.queued_message(m[0]).await.unwrap(),
            Some(queued[0].clone())
        );
        assert!(s.queued_message(u64::MAX).await.unwrap().is_none());
        assert!(s.due_messages(99, 10).await.unwrap().is_empty());
        assert_eq!(ids(&s.due_messages(100, 10).await.unwrap()), m);
        // m0 waits for a rate limit, m1 for a retry.
        s.defer_messages(vec![m[0]], 5_000).await.unwrap();
        s.schedule_retry(m[1], 3_000, "503".into()).await.unwrap();
        let retried = s.queued_message(m[1]).await.unwrap().unwrap();
        assert_eq!(
            (
                retried.attempts,
                retried.next_attempt_ms,
                retried.last_error.as_deref()
            ),
            (1, 3_000, Some("503"))
        );
        assert_eq!(
            ids(&s.due_messages(2_999, 10).await.unwrap()),
            [m[2], m[3], m[4]]
        );
        assert_eq!(
            ids(&s.due_messages(3_000, 10).await.unwrap()),
            [m[1], m[2], m[3], m[4]]
        );
        // In queue order, ready and put off alike; at most `limit`.
        assert_eq!(ids(&s.due_messages(5_000, 10).await.unwrap()), m);
        assert_eq!(ids(&s.due_messages(5_000, 2).await.unwrap()), m[..2]);
        assert_eq!(ids(&s.queued_messages(10).await.unwrap()), m);
        assert_eq!(ids(&s.queued_messages(3).await.unwrap()), m[..3]);
        // A deferral never brings an attempt forward, and counts no failure.
        s.defer_messages(vec![m[0]], 4_000).await.unwrap();
        let deferred = s.queued_message(m[0]).await.unwrap().unwrap();
        assert_eq!((deferred.next_attempt_ms, deferred.attempts), (5_000, 0));
        s.defer_messages(vec![m[0], m[2]], 6_000).await.unwrap();
        assert_eq!(
            ids(&s.due_messages(5_999, 10).await.unwrap()),
            [m[1], m[3], m[4]]
        );
        s.schedule_retry(m[1], 7_000, "503".into()).await.unwrap();
        let retried = s.queued_message(m[1]).await.unwrap().unwrap();
        assert_eq!((retried.attempts, retried.next_attempt_ms), (2, 7_000));
        // Nothing happens to what is not queued.
        s.schedule_retry(u64::MAX, 7_000, "x".into()).await.unwrap();
        s.defer_messages(vec![u64::MAX], 7_000).await.unwrap();
        let stats = s.stats().await.unwrap();
        assert_eq!((stats.outbox, stats.oldest_queued_ms), (5, Some(100)));

        // Delivered: removed together whichever part they wait in, one twice and one
        // never queued.
        s.remove_delivered(vec![m[0], m[1], m[3], m[0], 999_999])
            .await
            .unwrap();
        assert_eq!(ids(&s.queued_messages(10).await.unwrap()), [m[2], m[4]]);
        assert!(s.queued_message(m[0]).await.unwrap().is_none());
        assert_eq!(s.stats().await.unwrap().outbox, 2);
        s.remove_delivered(vec![]).await.unwrap();
        // Their alert ids are free again; the others' are not.
        let again = s
            .queue_messages(
                (0..5)
                    .map(|i| message(&format!("m{i}"), &conv, None))
                    .collect(),
                200,
            )
            .await
            .unwrap();
        assert_eq!(alerts(&again), ["m0", "m1", "m3"]);
        assert!(again.iter().all(|e| e.id > m[4]), "new ids come after");
        let stats = s.stats().await.unwrap();
        assert_eq!((stats.outbox, stats.oldest_queued_ms), (5, Some(100)));
        s.remove_delivered(ids(&s.queued_messages(10).await.unwrap()))
            .await
            .unwrap();
        let stats = s.stats().await.unwrap();
        assert_eq!((stats.outbox, stats.oldest_queued_ms), (0, None));
    }

    pub async fn dead_letters_are_kept_and_requeued(s: Arc<dyn Store>) {
        let conv = key("c");
        let queued = s
            .queue_messages(
                (0..3)
                    .map(|i| message(&format!("d{i}"), &conv, None))
                    .collect(),
                100,
            )
            .await
            .unwrap();
        let m = ids(&queued);
        s.schedule_retry(m[1], 500, "503".into()).await.unwrap();
        assert!(s
            .move_to_dead_letters(m[1], "400: bad".into(), 600)
            .await
            .unwrap());
        assert!(!s
            .move_to_dead_letters(m[1], "again".into(), 700)
            .await
            .unwrap());
        assert!(!s
            .move_to_dead_letters(u64::MAX, "never".into(), 700)
            .await
            .unwrap());
        assert!(s
            .move_to_dead_letters(m[0], "410".into(), 800)
            .await
            .unwrap());
        let dead = s.dead_letters(10).await.unwrap();
        assert_eq!(ids(&dead), [m[0], m[1]], "oldest first");
        assert_eq!(
            (
                dead[1].attempts,
                dead[1].last_error.as_deref(),
                dead[1].dead_ms
            ),
            (2, Some("400: bad"), Some(600))
        );
        assert_eq!(ids(&s.dead_letters(1).await.unwrap()), [m[0]]);
        assert_eq!(ids(&s.queued_messages(10).await.unwrap()), [m[2]]);
        assert!(s.queued_message(m[1]).await.unwrap().is_none());
        assert!(s.due_messages(u64::MAX, 10).await.unwrap().len() == 1);
        let stats = s.stats().await.unwrap();
        assert_eq!((stats.outbox, stats.dead_letters), (1, 2));
        // A dead letter no longer holds its alert id.
        let again = s
            .queue_messages(vec![message("d0", &conv, None)], 900)
            .await
            .unwrap();
        assert_eq!(alerts(&again), ["d0"]);
        s.remove_delivered(ids(&again)).await.unwrap();

        // Requeued: due now, no attempts counted, keeping its id and creation time.
        assert!(s.requeue_dead_letter(m[1], 1_000).await.unwrap());
        assert!(!s.requeue_dead_letter(m[1], 1_000).await.unwrap());
        assert!(!s.requeue_dead_letter(m[2], 1_000).await.unwrap(), "queued");
        assert!(!s.requeue_dead_letter(u64::MAX, 1_000).await.unwrap());
        let back = s.queued_message(m[1]).await.unwrap().unwrap();
        assert_eq!(
            (
                back.attempts,
                back.next_attempt_ms,
                back.dead_ms,
                back.created_ms
            ),
            (0, 1_000, None, 100)
        );
        assert_eq!(ids(&s.queued_messages(10).await.unwrap()), [m[1], m[2]]);
        assert_eq!(ids(&s.dead_letters(10).await.unwrap()), [m[0]]);
        // It holds its alert id again.
        assert!(s
            .queue_messages(vec![message("d1", &conv, None)], 1_100)
            .await
            .unwrap()
            .is_empty());
        let stats = s.stats().await.unwrap();
        assert_eq!((stats.outbox, stats.dead_letters), (2, 1));
    }

    pub async fn unreachable_conversations_pause_and_resume_their_watches(s: Arc<dyn Store>) {
        let (conv, other) = (key("gone"), key("fine"));
        s.upsert_reference(&reference("gone", "https://smba.example/"))
            .await
            .unwrap();
        add(&s, &conv, "https://shop.example/p/1").await;
        add(&s, &conv, "https://shop.example/p/2").await;
        let theirs = add(&s, &other, "https://shop.example/p/1").await;
        assert!(s.unreachable(&conv).await.unwrap().is_none());
        let mark = Unreachable {
            since_ms: 5,
            reason: "403".into(),
        };
        assert_eq!(s.mark_unreachable(&conv, mark.clone()).await.unwrap(), 2);
        assert_eq!(s.unreachable(&conv).await.unwrap(), Some(mark.clone()));
        assert!(s.watches(&conv).await.unwrap().iter().all(|w| w.paused));
        assert_eq!(s.watches(&other).await.unwrap(), [theirs]);
        // Marked again: nothing more to pause; the newer mark is kept.
        let later = Unreachable {
            since_ms: 9,
            reason: "404".into(),
        };
        assert_eq!(s.mark_unreachable(&conv, later.clone()).await.unwrap(), 0);
        assert_eq!(s.unreachable(&conv).await.unwrap(), Some(later));
        // Messages for it are not queued by the notify path.
        let queued = s
            .queue_messages(
                vec![message("x", &conv, None), message("y", &other, None)],
                10,
            )
            .await
            .unwrap();
        assert_eq!(alerts(&queued), ["y"]);
        // It writes again (the same reference): the mark goes, the watches resume.
        assert_eq!(
            s.upsert_reference(&reference("gone", "https://smba.example/"))
                .await
                .unwrap(),
            ReferenceChange::Unchanged
        );
        assert!(s.unreachable(&conv).await.unwrap().is_none());
        assert!(s.watches(&conv).await.unwrap().iter().all(|w| !w.paused));
        assert_eq!(
            alerts(
                &s.queue_messages(vec![message("x", &conv, None)], 20)
                    .await
                    .unwrap()
            ),
            ["x"]
        );
    }

    pub async fn recipients_are_read_in_the_order_asked(s: Arc<dyn Store>) {
        for conv in ["a", "b"] {
            s.upsert_reference(&reference(conv, "https://smba.example/"))
                .await
                .unwrap();
        }
        let w1 = add(&s, &key("a"), "https://shop.example/p/1").await;
        let w2 = add(&s, &key("a"), "https://shop.example/p/2").await;
        let mark = Unreachable {
            since_ms: 5,
            reason: "403".into(),
        };
        s.mark_unreachable(&key("b"), mark.clone()).await.unwrap();
        // Marked without a reference (it never wrote): still reported.
        s.mark_unreachable(&key("c"), mark.clone()).await.unwrap();
        assert!(s.recipients(vec![]).await.unwrap().is_empty());
        let got = s
            .recipients(vec![
                (key("b"), true),
                (key("nobody"), true),
                (key("a"), true),
                (key("a"), false),
                (key("c"), false),
            ])
            .await
            .unwrap();
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].unreachable, Some(mark.clone()));
        assert_eq!(
            got[0].reference,
            Some(reference("b", "https://smba.example/"))
        );
        assert!(got[0].watches.is_empty());
        assert_eq!(got[1], Recipient::default());
        assert_eq!(
            got[2],
            Recipient {
                reference: Some(reference("a", "https://smba.example/")),
                unreachable: None,
                watches: vec![w1, w2],
            }
        );
        assert!(got[3].watches.is_empty(), "not asked for");
        assert_eq!(got[3].reference, got[2].reference);
        assert_eq!(
            got[4],
            Recipient {
                reference: None,
                unreachable: Some(mark),
                watches: vec![],
            }
        );
    }

    /// Two conversations (one unreachable), three watches, a price history, queued
    /// messages (one put off), a dead letter and a message whose watch was removed.
    async fn populate(s: &Arc<dyn Store>) {
        let (a, b) = (key("a"), key("b"));
        for conv in ["a", "b"] {
            s.upsert_reference(&reference(conv, "https://smba.example/"))
                .await
                .unwrap();
        }
        let w1 = add(s, &a, "https://shop.example/p/1").await;
        let gone = add(s, &a, "https://shop.example/p/gone").await;
        add(s, &a, "https://shop.example/p/2").await;
        add(s, &b, "https://shop.example/p/1").await;
        let mut product = s.product(&w1.url).await.unwrap().unwrap();
        for (at, amount) in [(10, 199), (20, 150)] {
            product.last_check_ms = Some(at);
            product.next_due_ms = at + 1_000;
            let queued = s
                .record_check(CheckRecord {
                    product: product.clone(),
                    change: Some(point(at, amount)),
                    watches: vec![],
                    messages: vec![
                        message(&format!("alert-{at}"), &a, Some(w1.id)),
                        message(&format!("stale-{at}"), &a, Some(gone.id)),
                    ],
                    now_ms: at,
                })
                .await
                .unwrap();
            assert_eq!(queued.len(), 2);
        }
        s.remove_watches(&a, &[gone.id]).await.unwrap();
        let queued = s.queued_messages(10).await.unwrap();
        assert!(s
            .move_to_dead_letters(queued[0].id, "400: bad".into(), 30)
            .await
            .unwrap());
        s.defer_messages(vec![queued[1].id], 9_000).await.unwrap();
        s.mark_unreachable(
            &b,
            Unreachable {
                since_ms: 40,
                reason: "403".into(),
            },
        )
        .await
        .unwrap();
    }

    /// A snapshot that names a conversation, an unreachable mark, a product and a history
    /// point twice restores each as its last mention says (as sled's batches write it, and
    /// whatever order PostgreSQL's pipelined inserts are sent in).
    pub async fn restore_keeps_the_last_given(source: Arc<dyn Store>, target: Arc<dyn Store>) {
        populate(&source).await;
        let mut taken = source.snapshot().await.unwrap();
        let mut twice = taken.clone();
        let mut conversation = taken.conversations[0].clone();
        conversation.reference.service_url = "https://later.example/".into();
        conversation.unreachable = Some(Unreachable {
            since_ms: 77,
            reason: "404".into(),
        });
        let mut product = taken.products[0].clone();
        product.product.next_due_ms = 5_555;
        product.history = vec![point(10, 123)];
        twice.conversations.push(conversation.clone());
        twice.products.push(product);
        target.restore_snapshot(twice).await.unwrap();

        let restored = target.snapshot().await.unwrap();
        taken.conversations[0] = conversation;
        taken.products[0].product.next_due_ms = 5_555;
        taken.products[0].history[0] = point(10, 123);
        assert_eq!(without_ids(restored), without_ids(taken));
    }

    pub async fn snapshot_round_trip(source: Arc<dyn Store>, target: Arc<dyn Store>) {
        populate(&source).await;
        let taken = source.snapshot().await.unwrap();
        assert_eq!(
            (
                taken.conversations.len(),
                taken.watches.len(),
                taken.products.len(),
                taken.queued.len(),
                taken.dead_letters.len()
            ),
            (2, 3, 2, 3, 1)
        );
        assert_eq!(taken.products[0].history.len(), 2);
        assert!(taken.conversations[1].unreachable.is_some());
        let sorted = |v: Vec<u64>| {
            let mut s = v.clone();
            s.sort_unstable();
            s == v
        };
        assert!(sorted(taken.watches.iter().map(|w| w.id).collect()));
        assert!(sorted(ids(&taken.queued)));

        // Only into an empty store.
        let before = source.stats().await.unwrap();
        let err = source.restore_snapshot(taken.clone()).await.unwrap_err();
        assert!(matches!(err, StoreError::NotEmpty { .. }), "{err:?}");
        assert_eq!(source.stats().await.unwrap(), before);

        // An empty one takes it whole.
        target.restore_snapshot(taken.clone()).await.unwrap();
        let restored = target.snapshot().await.unwrap();
        assert_eq!(without_ids(restored.clone()), without_ids(taken.clone()));
        assert_eq!(target.stats().await.unwrap(), before);
        for conv in [key("a"), key("b")] {
            let urls = |ws: Vec<Watch>| ws.into_iter().map(|w| w.url).collect::<Vec<_>>();
            assert_eq!(
                urls(target.watches(&conv).await.unwrap()),
                urls(source.watches(&conv).await.unwrap())
            );
        }
        // Read through its indexes: a product's watches, what is due, alert ids queued.
        let p1 = &taken.watches[0].url;
        assert_eq!(target.product_watches(p1).await.unwrap().len(), 2);
        assert_eq!(target.due_products(1_019, 10).await.unwrap().len(), 1);
        assert_eq!(target.due_products(1_020, 10).await.unwrap().len(), 2);
        assert_eq!(target.due_messages(8_999, 10).await.unwrap().len(), 2);
        assert_eq!(target.due_messages(9_000, 10).await.unwrap().len(), 3);
        let mut product = target.product(p1).await.unwrap().unwrap();
        product.next_due_ms = 99;
        let again = target
            .record_check(CheckRecord {
                product,
                change: None,
                watches: vec![],
                messages: vec![message("alert-20", &key("a"), Some(restored.watches[0].id))],
                now_ms: 50,
            })
            .await
            .unwrap();
        assert!(again.is_empty(), "an alert id already queued stays once");
        // The message about the removed watch is still about no watch.
        let stale = restored
            .queued
            .iter()
            .find(|e| e.alert_id.starts_with("stale"))
            .unwrap();
        assert!(stale.watch_id.is_some());
        assert!(!restored
            .watches
            .iter()
            .any(|w| Some(w.id) == stale.watch_id));
        // A watch added afterwards lists last; the dead letter can be requeued.
        let new = add(&target, &key("a"), "https://shop.example/p/3").await;
        assert_eq!(target.watches(&key("a")).await.unwrap().last(), Some(&new));
        assert!(restored.watches.iter().all(|w| w.id < new.id));
        assert!(target
            .requeue_dead_letter(restored.dead_letters[0].id, 60)
            .await
            .unwrap());
        target.flush().await.unwrap();
    }
}

/// PostgreSQL only (sled's own tests cover its errors): a record that does not decode is
/// `Corrupt`, and a statement the server refuses is `Io`, which counts as unavailable.
#[tokio::test]
async fn a_bad_record_is_corrupt_and_a_failing_server_unavailable() {
    let Some(db) = TestDatabase::new("a_bad_record_is_corrupt_and_a_failing_server_unavailable")
    else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(PgStore::open(&db.config).await.unwrap());
    let conv = key("c");
    add(&store, &conv, "https://shop.example/p/1").await;
    let client = db.config.connect().await.unwrap();
    client
        .batch_execute(r#"UPDATE watches SET watch = '{"v": 1, "id": "not a number"}'"#)
        .await
        .unwrap();
    let err = store.watches(&conv).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { what: "watch", .. }),
        "{err:?}"
    );
    assert!(!err.is_unavailable());

    client.batch_execute("DROP TABLE history").await.unwrap();
    let err = store
        .history(&url("https://shop.example/p/1"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Io(_)), "{err:?}");
    assert!(err.is_unavailable());
}
