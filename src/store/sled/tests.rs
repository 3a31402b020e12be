//! Tests of the store's own methods (opening, references, watches, history), and the
//! fixtures the `check` and `writer` tests share.
//!
//! A file of its own so `mod.rs` stays a readable size; the tests still live beside the
//! code they test.

use super::*;
use crate::domain::ProductUrl;
use crate::domain::Rule;
use crate::inbound::activity::{ChannelAccount, ConversationAccount};
use rust_decimal::Decimal;

pub(super) fn config(dir: &Path) -> SledStoreConfig {
    SledStoreConfig {
        path: dir.join("data"),
        cache_capacity: 4 << 20,
        flush_every: Duration::from_millis(500),
        full_check_at_start: false,
    }
}

pub(super) fn reference(conv: &str, service_url: &str) -> ConversationReference {
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

pub(super) fn new_watch(conv: &ConversationKey, url: &str) -> NewWatch {
    NewWatch {
        conversation: conv.clone(),
        user: None,
        url: ProductUrl::parse(url, 2048).unwrap(),
        rule: Rule::Drop {
            percent: Decimal::from(20),
        },
        created_at_ms: 1,
    }
}

pub(super) fn key(conv: &str) -> ConversationKey {
    ConversationKey {
        channel_id: "msteams".into(),
        conversation_id: conv.into(),
    }
}

pub(super) fn added(result: AddWatch) -> Watch {
    match result {
        AddWatch::Added(w) => w,
        other => panic!("expected a new watch, got {other:?}"),
    }
}

pub(super) fn point(at_ms: u64, amount: i64) -> ChangePoint {
    ChangePoint {
        at_ms,
        amount: Decimal::from(amount),
        currency: crate::price::Currency::parse("EUR").unwrap(),
    }
}

pub(super) fn message(
    alert_id: &str,
    conv: &ConversationKey,
    watch_id: Option<u64>,
) -> crate::domain::NewOutbox {
    crate::domain::NewOutbox {
        alert_id: alert_id.into(),
        conversation: conv.clone(),
        watch_id,
        message: crate::domain::OutboxMessage::FirstCheckFailed {
            url: "https://shop.example/p/1".into(),
            reason: "test".into(),
        },
    }
}

#[tokio::test]
async fn recipients_are_read_in_one_call_in_the_order_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&config(dir.path())).unwrap();
    for conv in ["a", "b"] {
        store
            .upsert_reference(&reference(conv, "https://smba.example/"))
            .await
            .unwrap();
    }
    let w = added(
        store
            .add_watch(new_watch(&key("a"), "https://shop.example/p/1"), 10)
            .await
            .unwrap(),
    );
    let mark = Unreachable {
        since_ms: 5,
        reason: "403".into(),
    };
    store
        .mark_unreachable(&key("b"), mark.clone())
        .await
        .unwrap();
    let got = store
        .recipients(vec![
            (key("b"), true),
            (key("nobody"), true),
            (key("a"), true),
            (key("a"), false),
        ])
        .await
        .unwrap();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0].unreachable, Some(mark));
    assert_eq!(
        got[0]
            .reference
            .as_ref()
            .map(|r| r.conversation.id.as_str()),
        Some("b")
    );
    assert_eq!(got[1], crate::store::Recipient::default());
    assert_eq!(
        got[2].reference,
        Some(reference("a", "https://smba.example/"))
    );
    assert_eq!(got[2].unreachable, None);
    assert_eq!(got[2].watches, [w]);
    assert!(got[3].watches.is_empty(), "not asked for");
}

#[tokio::test]
async fn references_upsert_and_report_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&config(dir.path())).unwrap();
    let r = reference(
        "19:a@thread.skype;messageid=1",
        "https://smba.example/teams/",
    );
    assert_eq!(
        store.upsert_reference(&r).await.unwrap(),
        ReferenceChange::New
    );
    assert_eq!(
        store.upsert_reference(&r).await.unwrap(),
        ReferenceChange::Unchanged
    );
    let mut moved = r.clone();
    moved.service_url = "https://smba.example/emea/".into();
    assert_eq!(
        store.upsert_reference(&moved).await.unwrap(),
        ReferenceChange::ServiceUrlChanged
    );
    let mut renamed = moved.clone();
    renamed.locale = Some("fr-FR".into());
    assert_eq!(
        store.upsert_reference(&renamed).await.unwrap(),
        ReferenceChange::Updated
    );
    assert_eq!(
        store.reference(&r.key()).await.unwrap(),
        Some(renamed.clone())
    );
    assert_eq!(store.stats().await.unwrap().references, 1);
}

#[tokio::test]
async fn watches_survive_reopen_in_creation_order() {
    let dir = tempfile::tempdir().unwrap();
    let conv = reference("c1", "http://x/").key();
    {
        let store = SledStore::open(&config(dir.path())).unwrap();
        for u in [
            "https://a.example/1",
            "https://b.example/2",
            "https://c.example/3",
        ] {
            assert!(matches!(
                store.add_watch(new_watch(&conv, u), 50).await.unwrap(),
                AddWatch::Added(_)
            ));
        }
    }
    let store = SledStore::open(&config(dir.path())).unwrap();
    let urls: Vec<String> = store
        .watches(&conv)
        .await
        .unwrap()
        .iter()
        .map(|w| w.url.to_string())
        .collect();
    assert_eq!(
        urls,
        [
            "https://a.example/1",
            "https://b.example/2",
            "https://c.example/3"
        ]
    );
}

#[tokio::test]
async fn duplicates_and_limits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&config(dir.path())).unwrap();
    let conv = reference("c1", "http://x/").key();
    let other = reference("c2", "http://x/").key();
    store
        .add_watch(new_watch(&conv, "https://a.example/1"), 2)
        .await
        .unwrap();
    assert!(matches!(
        store
            .add_watch(new_watch(&conv, "https://a.example/1"), 2)
            .await
            .unwrap(),
        AddWatch::Duplicate(_)
    ));
    // The same URL in another conversation is a different watch.
    assert!(matches!(
        store
            .add_watch(new_watch(&other, "https://a.example/1"), 2)
            .await
            .unwrap(),
        AddWatch::Added(_)
    ));
    store
        .add_watch(new_watch(&conv, "https://a.example/2"), 2)
        .await
        .unwrap();
    assert_eq!(
        store
            .add_watch(new_watch(&conv, "https://a.example/3"), 2)
            .await
            .unwrap(),
        AddWatch::LimitReached { max: 2 }
    );
    let ids: Vec<u64> = store
        .watches(&conv)
        .await
        .unwrap()
        .iter()
        .map(|w| w.id)
        .collect();
    let removed = store.remove_watches(&conv, &ids[..1]).await.unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(store.watches(&conv).await.unwrap().len(), 1);
    assert_eq!(store.watches(&other).await.unwrap().len(), 1);
    // Removing what is already gone removes nothing.
    assert!(store
        .remove_watches(&conv, &ids[..1])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_duplicate_watch_is_answered_only_once_the_watch_it_names_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SledStore::open(&config(dir.path())).unwrap());
    let conv = key("c");
    let url = "https://shop.example/p/1";
    store.writer.hold_flushes(true);
    let first = tokio::spawn({
        let (store, conv) = (store.clone(), conv.clone());
        async move { store.add_watch(new_watch(&conv, url), 10).await }
    });
    // The first is written, and waits for its flush.
    while store.watches(&conv).await.unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    let second = tokio::spawn({
        let (store, conv) = (store.clone(), conv.clone());
        async move { store.add_watch(new_watch(&conv, url), 10).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !second.is_finished(),
        "the duplicate was answered while the watch it names could still be lost"
    );
    store.writer.hold_flushes(false);
    assert!(matches!(first.await.unwrap().unwrap(), AddWatch::Added(_)));
    assert!(matches!(
        second.await.unwrap().unwrap(),
        AddWatch::Duplicate(_)
    ));
}

#[test]
fn a_locked_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = SledStore::open(&config(dir.path())).unwrap();
    // sled locks with fcntl, which is per process: a second open in-process succeeds or
    // fails depending on the platform, so the cross-process case is an integration test.
    let err = SledStore::open(&SledStoreConfig {
        path: PathBuf::from("/proc/pricewatch-cannot-exist"),
        ..config(dir.path())
    })
    .unwrap_err();
    assert!(err.to_string().contains("/proc/pricewatch-cannot-exist"));
}

#[test]
fn another_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(&config(dir.path())).unwrap();
        let meta = store.db.open_tree("meta").unwrap();
        meta.insert(SCHEMA_KEY, &99u32.to_be_bytes()).unwrap();
        store.db.flush().unwrap();
    }
    let err = SledStore::open(&config(dir.path())).unwrap_err();
    assert!(matches!(err, StoreError::Schema { found: 99, .. }), "{err}");
}

#[tokio::test]
async fn a_product_is_shared_by_its_watches_and_goes_with_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&config(dir.path())).unwrap();
    let (a, b) = (key("a"), key("b"));
    let wa = added(
        store
            .add_watch(new_watch(&a, "https://shop.example/p/1"), 10)
            .await
            .unwrap(),
    );
    let wb = added(
        store
            .add_watch(new_watch(&b, "https://shop.example/p/1"), 10)
            .await
            .unwrap(),
    );
    added(
        store
            .add_watch(new_watch(&b, "https://shop.example/p/2"), 10)
            .await
            .unwrap(),
    );
    assert!(wa.is_pending());
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.watches, stats.products), (3, 2));

    // Due at once (created at 1 ms), each product once, however many watch it.
    let due = store.due_products(1, 100).await.unwrap();
    assert_eq!(due.len(), 2);
    assert!(store.due_products(0, 100).await.unwrap().is_empty());
    let url = wa.url.clone();
    let mut ids: Vec<u64> = store
        .product_watches(&url)
        .await
        .unwrap()
        .iter()
        .map(|w| w.id)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [wa.id, wb.id]);

    let mut product = store.product(&url).await.unwrap().unwrap();
    product.next_due_ms = 1_000;
    let check = CheckRecord {
        product,
        change: Some(point(10, 199)),
        watches: vec![],
        messages: vec![],
        now_ms: 10,
    };
    store.record_check(check).await.unwrap();
    assert_eq!(store.history(&url).await.unwrap(), [point(10, 199)]);

    store.remove_watches(&a, &[wa.id]).await.unwrap();
    assert!(
        store.product(&url).await.unwrap().is_some(),
        "b still watches it"
    );
    store.remove_watches(&b, &[wb.id]).await.unwrap();
    assert!(store.product(&url).await.unwrap().is_none());
    assert!(store.history(&url).await.unwrap().is_empty());
    assert!(store.product_watches(&url).await.unwrap().is_empty());
    assert_eq!(store.stats().await.unwrap().products, 1);
}

#[tokio::test]
async fn pruning_history_keeps_each_products_latest_point() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&config(dir.path())).unwrap();
    let conv = key("c");
    let mut urls = Vec::new();
    for u in ["https://shop.example/p/1", "https://shop.example/p/2"] {
        let w = added(store.add_watch(new_watch(&conv, u), 10).await.unwrap());
        urls.push(w.url.clone());
    }
    for (i, url) in urls.iter().enumerate() {
        let product = store.product(url).await.unwrap().unwrap();
        for at in [10, 20, 30] {
            let check = CheckRecord {
                product: product.clone(),
                change: Some(point(at + i as u64, at as i64)),
                watches: vec![],
                messages: vec![],
                now_ms: at,
            };
            store.record_check(check).await.unwrap();
        }
    }
    assert_eq!(
        store.latest_point(&urls[0]).await.unwrap(),
        Some(point(30, 30))
    );
    assert_eq!(store.prune_history(25).await.unwrap(), 4);
    assert_eq!(store.history(&urls[0]).await.unwrap(), [point(30, 30)]);
    // Everything is old, but the latest point of each product stays: it is the current price.
    assert_eq!(store.prune_history(u64::MAX).await.unwrap(), 0);
    assert_eq!(store.history(&urls[1]).await.unwrap(), [point(31, 30)]);
}

// Snapshots and their restore: the contract suite (tests/api/store_contract.rs), on
// both backends.

#[tokio::test]
async fn a_changed_rule_keeps_reference_and_history_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let conv = key("c");
    let (w, other) = {
        let store = SledStore::open(&config(dir.path())).unwrap();
        let w = added(
            store
                .add_watch(new_watch(&conv, "https://shop.example/p/1"), 10)
                .await
                .unwrap(),
        );
        let other = added(
            store
                .add_watch(new_watch(&conv, "https://shop.example/p/2"), 10)
                .await
                .unwrap(),
        );
        let mut fired = w.clone();
        fired.trigger.reference = Some(crate::domain::Reference {
            amount: Decimal::from(100),
            currency: crate::price::Currency::parse("EUR").unwrap(),
            at_ms: 10,
        });
        fired.trigger.fired = true;
        fired.trigger.below_count = 2;
        let product = store.product(&w.url).await.unwrap().unwrap();
        store
            .record_check(CheckRecord {
                product,
                change: Some(point(10, 100)),
                watches: vec![fired.clone()],
                messages: Vec::new(),
                now_ms: 10,
            })
            .await
            .unwrap();
        let new_rule = Rule::Below {
            amount: Decimal::from(99),
        };
        let (before, after) = store
            .change_rule(&conv, w.id, new_rule.clone())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(before, fired);
        assert_eq!(after.rule, new_rule);
        assert_eq!(after.trigger.reference, fired.trigger.reference);
        assert!(!after.trigger.fired && after.trigger.below_count == 0);
        // The same rule again leaves the alert state alone.
        let mut fired_again = after.clone();
        fired_again.trigger.fired = true;
        let product = store.product(&w.url).await.unwrap().unwrap();
        store
            .record_check(CheckRecord {
                product,
                change: None,
                watches: vec![fired_again.clone()],
                messages: Vec::new(),
                now_ms: 20,
            })
            .await
            .unwrap();
        let (b, a) = store
            .change_rule(&conv, w.id, new_rule.clone())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&b, &a), (&fired_again, &fired_again));
        // A watch of another conversation, or one that is gone, is not found.
        assert!(store
            .change_rule(&key("other"), w.id, new_rule.clone())
            .await
            .unwrap()
            .is_none());
        assert!(store
            .change_rule(&conv, u64::MAX, new_rule)
            .await
            .unwrap()
            .is_none());
        (fired_again, other)
    };
    let store = SledStore::open(&config(dir.path())).unwrap();
    assert_eq!(store.watches(&conv).await.unwrap(), [w.clone(), other]);
    assert_eq!(store.history(&w.url).await.unwrap(), [point(10, 100)]);
}

#[tokio::test]
async fn watches_go_on_hold_and_come_off_it_durably() {
    let dir = tempfile::tempdir().unwrap();
    let conv = key("c");
    let ids = {
        let store = SledStore::open(&config(dir.path())).unwrap();
        let mut ids = Vec::new();
        for u in ["https://a.example/1", "https://b.example/2"] {
            ids.push(added(store.add_watch(new_watch(&conv, u), 10).await.unwrap()).id);
        }
        let held = store.set_on_hold(&conv, &ids, true).await.unwrap();
        assert_eq!(held.len(), 2);
        assert!(held.iter().all(|w| w.on_hold));
        // Already on hold: found, unchanged.
        let again = store.set_on_hold(&conv, &ids[..1], true).await.unwrap();
        assert_eq!(again, held[..1]);
        ids
    };
    let store = SledStore::open(&config(dir.path())).unwrap();
    assert!(store
        .watches(&conv)
        .await
        .unwrap()
        .iter()
        .all(|w| w.on_hold));
    let resumed = store.set_on_hold(&conv, &ids[1..], false).await.unwrap();
    assert_eq!(resumed.len(), 1);
    let now: Vec<bool> = store
        .watches(&conv)
        .await
        .unwrap()
        .iter()
        .map(|w| w.on_hold)
        .collect();
    assert_eq!(now, [true, false]);
    assert!(store
        .set_on_hold(&key("other"), &ids, false)
        .await
        .unwrap()
        .is_empty());
}

#[test]
fn a_watch_written_before_pausing_existed_reads_as_not_on_hold() {
    let conv = key("c");
    let mut w = Watch {
        id: 1,
        conversation: conv,
        user: None,
        url: ProductUrl::parse("https://a.example/1", 2048).unwrap(),
        rule: Rule::Restock,
        created_at_ms: 1,
        trigger: Default::default(),
        paused: false,
        on_hold: false,
    };
    let json = serde_json::to_value(&w).unwrap();
    assert!(json.get("on_hold").is_none(), "{json}");
    assert_eq!(serde_json::from_value::<Watch>(json).unwrap(), w);
    w.on_hold = true;
    let back: Watch = serde_json::from_value(serde_json::to_value(&w).unwrap()).unwrap();
    assert!(back.on_hold);
}
