//! Delivery of the outbox to a recording fake channel: rendering, the digest, the card on
//! card channels, and a failed send kept for a later attempt.

use std::sync::Arc;
use std::time::Duration;

use pricewatch::activity::{
    ChannelAccount, ConversationAccount, ConversationKey, ConversationReference,
};
use pricewatch::clock::{Clock, ManualClock};
use pricewatch::command::ProductUrl;
use pricewatch::connector::{Connector, ConnectorConfig, ServiceUrlPolicy};
use pricewatch::delivery::Delivery;
use pricewatch::domain::{CheckRecord, NewOutbox, NewWatch, OutboxMessage, Rule, Watch};
use pricewatch::price::Currency;
use pricewatch::store::{AddWatch, SledStore, SledStoreConfig, Store};
use pricewatch::trigger::{Event, Reference};
use rust_decimal::Decimal;
use warp::http::StatusCode;

use crate::helpers::FakeChannel;

struct Setup {
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    delivery: Delivery,
    channel: FakeChannel,
    _dir: tempfile::TempDir,
}

fn key(channel: &str) -> ConversationKey {
    ConversationKey {
        channel_id: channel.into(),
        conversation_id: "c1".into(),
    }
}

async fn setup(channel_id: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SledStore::open(&SledStoreConfig {
            path: dir.path().join("data"),
            cache_capacity: 4 << 20,
            flush_every: Duration::from_millis(500),
        })
        .unwrap(),
    );
    let channel = FakeChannel::start().await;
    let reference = ConversationReference {
        channel_id: channel_id.into(),
        service_url: channel.url.clone(),
        conversation: ConversationAccount {
            id: "c1".into(),
            ..Default::default()
        },
        user: Some(ChannelAccount {
            id: "u1".into(),
            ..Default::default()
        }),
        bot: ChannelAccount {
            id: "bot1".into(),
            ..Default::default()
        },
        locale: Some("en-US".into()),
    };
    store.upsert_reference(&reference).await.unwrap();
    let clock = Arc::new(ManualClock::new(1_764_000_000_000));
    let connector = Connector::new(
        &ConnectorConfig {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            user_agent: "test".into(),
            // Local development: the fake channel is on loopback.
            policy: ServiceUrlPolicy::new(&[], true),
        },
        None,
    )
    .unwrap();
    let delivery = Delivery::new(store.clone(), connector, clock.clone());
    Setup {
        store,
        clock,
        delivery,
        channel,
        _dir: dir,
    }
}

async fn watch(s: &Setup, channel: &str, path: &str) -> Watch {
    let new = NewWatch {
        conversation: key(channel),
        user: None,
        url: ProductUrl::parse(&format!("https://shop.example{path}"), 2048).unwrap(),
        rule: Rule::Drop {
            percent: Decimal::from(20),
        },
        created_at_ms: s.clock.now_ms(),
    };
    match s.store.add_watch(new, 10).await.unwrap() {
        AddWatch::Added(w) => w,
        other => panic!("{other:?}"),
    }
}

fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}

fn reference() -> Reference {
    Reference {
        amount: Decimal::from(200),
        currency: eur(),
        at_ms: 1_762_000_000_000,
    }
}

fn fired(w: &Watch, title: &str, price: i64) -> NewOutbox {
    NewOutbox {
        alert_id: format!("{}:alert", w.id),
        conversation: w.conversation.clone(),
        watch_id: Some(w.id),
        message: OutboxMessage::Watch {
            url: w.url.as_str().into(),
            title: Some(title.into()),
            event: Event::Fired {
                reference: reference(),
                price: Decimal::from(price),
                currency: eur(),
                line: Decimal::from(160),
                drop_percent: Decimal::new(250, 1),
                at_ms: 1_764_000_000_000,
            },
        },
    }
}

async fn queue(s: &Setup, w: &Watch, messages: Vec<NewOutbox>) {
    let product = s.store.product(&w.url).await.unwrap().unwrap();
    let record = CheckRecord {
        product,
        change: None,
        watches: vec![],
        messages,
        now_ms: s.clock.now_ms(),
    };
    s.store.record_check(record).await.unwrap();
}

#[tokio::test]
async fn alerts_ready_together_go_out_as_one_digest_with_a_card() {
    let s = setup("msteams").await;
    let w1 = watch(&s, "msteams", "/p/1").await;
    let w2 = watch(&s, "msteams", "/p/2").await;
    let first = NewOutbox {
        alert_id: format!("{}:first-price", w1.id),
        conversation: w1.conversation.clone(),
        watch_id: Some(w1.id),
        message: OutboxMessage::Watch {
            url: w1.url.as_str().into(),
            title: Some("Skillet".into()),
            event: Event::ReferenceSet {
                reference: reference(),
                line: Decimal::from(160),
            },
        },
    };
    queue(&s, &w1, vec![first, fired(&w1, "Skillet", 150)]).await;
    queue(&s, &w2, vec![fired(&w2, "Kettle", 150)]).await;

    let report = s.delivery.pass().await.unwrap();
    assert_eq!((report.sent, report.done, report.retried), (2, 3, 0));
    let got = s.channel.take();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].text().contains("Skillet") && got[0].text().contains("€160.00"),
        "{}",
        got[0].text()
    );
    let digest = got[1].text();
    assert!(
        digest.contains("Skillet") && digest.contains("Kettle"),
        "{digest}"
    );
    assert!(
        digest.contains("unwatch 1") && digest.contains("unwatch 2"),
        "{digest}"
    );
    assert!(digest.contains("25.0%"), "{digest}");
    assert_eq!(got[1].path, "/v3/conversations/c1/activities");
    let card = &got[1].body["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert!(card.to_string().contains("unwatch 2"), "{card}");
    assert_eq!(s.store.stats().await.unwrap().outbox, 0);
}

#[tokio::test]
async fn a_failed_send_stays_queued_and_goes_out_later() {
    let s = setup("slack").await;
    let w = watch(&s, "slack", "/p/1").await;
    queue(&s, &w, vec![fired(&w, "Skillet", 150)]).await;
    s.channel.answer_with(StatusCode::INTERNAL_SERVER_ERROR);
    let report = s.delivery.pass().await.unwrap();
    assert_eq!((report.sent, report.retried), (0, 1));
    let waiting = s.store.outbox_ready(u64::MAX, 10).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].attempts, 1);
    assert!(waiting[0].last_error.as_deref().unwrap().contains("500"));

    // Not before its next attempt, then delivered once the channel is back.
    s.channel.take();
    s.channel.answer_with(StatusCode::OK);
    assert_eq!(s.delivery.pass().await.unwrap().sent, 0);
    s.clock.advance_ms(31_000);
    assert_eq!(s.delivery.pass().await.unwrap().sent, 1);
    let got = s.channel.take();
    assert!(got[0].body["attachments"].is_null(), "no card on Slack");
    assert_eq!(s.store.stats().await.unwrap().outbox, 0);
}

#[tokio::test]
async fn a_message_about_a_removed_watch_is_dropped_not_sent() {
    let s = setup("emulator").await;
    let w = watch(&s, "emulator", "/p/1").await;
    queue(&s, &w, vec![fired(&w, "Skillet", 150)]).await;
    s.store
        .remove_watches(&key("emulator"), &[w.id])
        .await
        .unwrap();
    let report = s.delivery.pass().await.unwrap();
    assert_eq!((report.sent, report.done), (0, 1));
    assert!(s.channel.take().is_empty());
}
