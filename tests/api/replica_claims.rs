//! The store side of replicas (`Store::replicas`): two `PgStore`s on one schema are two
//! replicas (two lease holders). PostgreSQL only; sled is one process and has none.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use pricewatch::domain::{CheckRecord, NewOutbox, NewWatch, OutboxMessage, ProductUrl, Rule};
use pricewatch::inbound::activity::ConversationKey;
use pricewatch::store::postgres::PgStore;
use pricewatch::store::{AddWatch, Held, Store};
use rust_decimal::Decimal;

use crate::fakes::open_store;
use crate::postgres::TestDatabase;

const LONG: Duration = Duration::from_secs(30);

fn key(channel: &str, conv: &str) -> ConversationKey {
    ConversationKey {
        channel_id: channel.into(),
        conversation_id: conv.into(),
    }
}

fn url(u: &str) -> ProductUrl {
    ProductUrl::parse(u, 2048).unwrap()
}

async fn watch(s: &Arc<dyn Store>, conv: &ConversationKey, u: &str) {
    let added = s
        .add_watch(
            NewWatch {
                conversation: conv.clone(),
                user: None,
                url: url(u),
                rule: Rule::Drop {
                    percent: Decimal::from(20),
                },
                created_at_ms: 1,
            },
            1000,
        )
        .await
        .unwrap();
    assert!(matches!(added, AddWatch::Added(_)), "{added:?}");
}

fn message(alert_id: &str, conv: &ConversationKey) -> NewOutbox {
    NewOutbox {
        alert_id: alert_id.into(),
        conversation: conv.clone(),
        watch_id: None,
        message: OutboxMessage::FirstCheckFailed {
            url: "https://shop.example/p/1".into(),
            reason: "test".into(),
        },
    }
}

/// Two replicas of one schema, or `None` without a server.
async fn two_replicas(test: &str) -> Option<(TestDatabase, Arc<dyn Store>, Arc<dyn Store>)> {
    let db = TestDatabase::new(test)?;
    let a: Arc<dyn Store> = Arc::new(PgStore::open(&db.config).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PgStore::open(&db.config).await.unwrap());
    Some((db, a, b))
}

async fn hold(s: &Arc<dyn Store>, names: &[&str], ttl: Duration) -> Vec<Held> {
    let names = names.iter().map(|n| n.to_string()).collect();
    s.replicas().unwrap().hold(names, ttl).await.unwrap()
}

fn held(name: &str, taken_over: bool) -> Held {
    Held {
        name: name.into(),
        taken_over,
    }
}

#[test]
fn a_sled_store_is_one_process_and_shares_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("data")).unwrap();
    assert!(store.replicas().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_has_one_holder_until_it_runs_out_or_is_given_back() {
    let Some((_db, a, b)) =
        two_replicas("a_lease_has_one_holder_until_it_runs_out_or_is_given_back").await
    else {
        return;
    };
    assert_ne!(
        a.replicas().unwrap().holder(),
        b.replicas().unwrap().holder()
    );
    let short = Duration::from_millis(600);
    // Names asked twice count once.
    assert_eq!(
        hold(&a, &["host:x", "deliver:c", "host:x"], short).await,
        vec![held("deliver:c", true), held("host:x", true)]
    );
    assert_eq!(hold(&b, &["host:x", "deliver:c"], short).await, vec![]);
    // Renewed by its holder: nobody else had it meanwhile.
    assert_eq!(
        hold(&a, &["host:x"], short).await,
        vec![held("host:x", false)]
    );
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    // Run out: taken over by the other replica, and then not the first's any more.
    assert_eq!(
        hold(&b, &["host:x", "deliver:c"], LONG).await,
        vec![held("deliver:c", true), held("host:x", true)]
    );
    assert_eq!(hold(&a, &["host:x", "deliver:c"], LONG).await, vec![]);
    // Given back: free at once with no tail; with a tail, only after it.
    let rb = b.replicas().unwrap();
    rb.release(vec!["host:x".into()], Duration::ZERO)
        .await
        .unwrap();
    rb.release(vec!["deliver:c".into()], Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(
        hold(&a, &["host:x", "deliver:c"], LONG).await,
        vec![held("host:x", true)]
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        hold(&a, &["deliver:c"], LONG).await,
        vec![held("deliver:c", true)]
    );
    // Leases are counted by prefix, whoever holds them, while they last.
    hold(&a, &["poller:a"], LONG).await;
    hold(&b, &["poller:b"], Duration::from_millis(300)).await;
    let ra = a.replicas().unwrap();
    assert_eq!(ra.count_held("poller:").await.unwrap(), 2);
    assert_eq!(ra.count_held("deliver:").await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(ra.count_held("poller:").await.unwrap(), 1);
    // A renewal never shortens a lease held longer on purpose (a shop's Retry-After).
    assert_eq!(hold(&a, &["host:y"], LONG).await.len(), 1);
    assert_eq!(
        hold(&a, &["host:y"], Duration::from_millis(1)).await.len(),
        1
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(hold(&b, &["host:y"], LONG).await, vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_products_are_claimed_by_one_replica_until_checked_or_the_claim_runs_out() {
    let Some((_db, a, b)) =
        two_replicas("due_products_are_claimed_by_one_replica_until_checked_or_the_claim_runs_out")
            .await
    else {
        return;
    };
    let conv = key("msteams", "c");
    let shop: Vec<String> = (0..3)
        .map(|i| format!("https://shop.example/p/{i}"))
        .collect();
    for u in &shop {
        watch(&a, &conv, u).await;
    }
    watch(&a, &conv, "http://[::1]:8080/p/9").await;
    let due = |s: Arc<dyn Store>| async move {
        let mut urls: Vec<String> = s
            .due_products(10, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.url.as_str().to_owned())
            .collect();
        urls.sort();
        urls
    };
    assert_eq!(due(b.clone()).await.len(), 4);
    // A shop another replica holds is left out of the due products, the host as the URL
    // gives it (an IPv6 address in brackets, without the port).
    hold(&a, &["host:shop.example", "host:[::1]"], LONG).await;
    assert_eq!(due(b.clone()).await, Vec::<String>::new());
    assert_eq!(due(a.clone()).await.len(), 4);
    let ra = a.replicas().unwrap();
    let rb = b.replicas().unwrap();
    let mut claimed = ra.claim_products(shop.clone(), 10, LONG).await.unwrap();
    claimed.sort();
    assert_eq!(claimed, shop);
    assert_eq!(
        rb.claim_products(shop.clone(), 10, LONG).await.unwrap(),
        Vec::<String>::new()
    );
    // A claim alone, on a shop nobody holds, keeps the product from the other replica too.
    let free = "https://free.example/p/1".to_owned();
    watch(&a, &conv, &free).await;
    assert_eq!(due(b.clone()).await, vec![free.clone()]);
    assert_eq!(
        ra.claim_products(vec![free.clone()], 10, LONG)
            .await
            .unwrap(),
        vec![free.clone()]
    );
    assert_eq!(due(b.clone()).await, Vec::<String>::new());
    assert_eq!(
        rb.claim_products(vec![free.clone()], 10, LONG)
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    // The other replica sees the claim (a check in flight); the claimer does not count
    // its own, and a product nobody claimed is claimed by nobody else.
    assert!(rb.claimed_elsewhere(shop[0].clone()).await.unwrap());
    assert!(!ra.claimed_elsewhere(shop[0].clone()).await.unwrap());
    assert!(!rb
        .claimed_elsewhere("https://unknown.example/p/1".into())
        .await
        .unwrap());
    // A product's claim ends with its check, which also makes it not due: nobody claims it.
    let product = a.product(&url(&shop[0])).await.unwrap().unwrap();
    let mut next = product.clone();
    next.next_due_ms = 1_000_000;
    a.record_check(CheckRecord {
        product: next,
        change: None,
        watches: vec![],
        messages: vec![],
        now_ms: 10,
    })
    .await
    .unwrap();
    assert_eq!(
        rb.claim_products(vec![shop[0].clone()], 10, LONG)
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    assert!(!rb.claimed_elsewhere(shop[0].clone()).await.unwrap());
    // A new watch's first check claims it whenever it is due; one left to the replica
    // fetching the shop makes it due now, never later than it was.
    let is_due = |s: Arc<dyn Store>, u: String| async move {
        s.due_products(100, 100)
            .await
            .unwrap()
            .iter()
            .any(|p| p.url.as_str() == u)
    };
    assert!(!is_due(a.clone(), shop[0].clone()).await);
    ra.make_due(shop[0].clone(), 100).await.unwrap();
    let made_due = a.product(&url(&shop[0])).await.unwrap().unwrap();
    assert_eq!(made_due.next_due_ms, 100);
    assert!(is_due(a.clone(), shop[0].clone()).await);
    ra.make_due(shop[0].clone(), 5_000).await.unwrap();
    assert_eq!(
        a.product(&url(&shop[0]))
            .await
            .unwrap()
            .unwrap()
            .next_due_ms,
        100
    );
    let mut later = made_due.clone();
    later.next_due_ms = 1_000_000;
    a.record_check(CheckRecord {
        product: later,
        change: None,
        watches: vec![],
        messages: vec![],
        now_ms: 100,
    })
    .await
    .unwrap();
    assert_eq!(
        ra.claim_products(vec![shop[0].clone()], u64::MAX, LONG)
            .await
            .unwrap(),
        vec![shop[0].clone()]
    );
    // A claim that runs out (its replica died) is the other's to take.
    assert_eq!(
        ra.claim_products(vec![shop[1].clone()], 10, Duration::from_millis(300))
            .await
            .unwrap()
            .len(),
        1
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rb.claim_products(vec![shop[1].clone()], 10, LONG)
            .await
            .unwrap(),
        vec![shop[1].clone()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_claiming_together_split_the_products_without_overlap() {
    let Some((_db, a, b)) =
        two_replicas("replicas_claiming_together_split_the_products_without_overlap").await
    else {
        return;
    };
    let conv = key("msteams", "c");
    let urls: Vec<String> = (0..200)
        .map(|i| format!("https://shop.example/p/{i}"))
        .collect();
    for u in &urls {
        watch(&a, &conv, u).await;
    }
    // Each claims in slices, both at once, as two ticks would.
    let claim = |s: Arc<dyn Store>| {
        let urls = urls.clone();
        async move {
            let mut got = Vec::new();
            for chunk in urls.chunks(10) {
                let r = s.replicas().unwrap();
                got.extend(r.claim_products(chunk.to_vec(), 10, LONG).await.unwrap());
            }
            got
        }
    };
    let (x, y) = tokio::join!(
        tokio::spawn(claim(a.clone())),
        tokio::spawn(claim(b.clone()))
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    let xs: HashSet<&String> = x.iter().collect();
    let ys: HashSet<&String> = y.iter().collect();
    assert!(
        xs.is_disjoint(&ys),
        "claimed by both: {:?}",
        xs.intersection(&ys)
    );
    assert_eq!(xs.len() + ys.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_are_claimed_by_the_replica_holding_their_channel() {
    let Some((_db, a, b)) =
        two_replicas("queued_messages_are_claimed_by_the_replica_holding_their_channel").await
    else {
        return;
    };
    let (teams, slack) = (key("msteams", "t"), key("slack", "s"));
    let queued = a
        .queue_messages(
            vec![
                message("t1", &teams),
                message("s1", &slack),
                message("t2", &teams),
            ],
            5,
        )
        .await
        .unwrap();
    let ids: Vec<u64> = queued.iter().map(|e| e.id).collect();
    let alerts = |entries: &[pricewatch::domain::OutboxEntry]| {
        entries
            .iter()
            .map(|e| e.alert_id.clone())
            .collect::<Vec<_>>()
    };
    // A channel another replica delivers is left out of the due messages.
    hold(&a, &["deliver:msteams"], LONG).await;
    assert_eq!(alerts(&b.due_messages(10, 100).await.unwrap()), ["s1"]);
    assert_eq!(
        alerts(&a.due_messages(10, 100).await.unwrap()),
        ["t1", "s1", "t2"]
    );
    let (ra, rb) = (a.replicas().unwrap(), b.replicas().unwrap());
    // Claimed in queue order; claimed once; not before they are due.
    assert_eq!(
        alerts(
            &ra.claim_messages(vec![ids[2], ids[0]], 10, LONG)
                .await
                .unwrap()
        ),
        ["t1", "t2"]
    );
    assert_eq!(
        alerts(&rb.claim_messages(ids.clone(), 10, LONG).await.unwrap()),
        ["s1"]
    );
    // Another's claim hides a message from the due ones; one's own does not.
    assert_eq!(
        alerts(&a.due_messages(10, 100).await.unwrap()),
        ["t1", "t2"]
    );
    assert_eq!(alerts(&b.due_messages(10, 100).await.unwrap()), ["s1"]);
    assert_eq!(
        alerts(&ra.claim_messages(ids.clone(), 1, LONG).await.unwrap()),
        Vec::<String>::new()
    );
    // A replica that stops gives its claims back with its leases.
    rb.release(vec![], Duration::ZERO).await.unwrap();
    assert_eq!(
        alerts(&a.due_messages(10, 100).await.unwrap()),
        ["t1", "s1", "t2"]
    );
    assert_eq!(
        alerts(&ra.claim_messages(vec![ids[1]], 10, LONG).await.unwrap()),
        ["s1"]
    );
    // Delivered: gone, claim and all.
    a.remove_delivered(ids.clone()).await.unwrap();
    assert_eq!(a.due_messages(10, 100).await.unwrap(), vec![]);
}
