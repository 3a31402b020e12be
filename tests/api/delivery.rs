//! Delivery of the outbox to a recording fake channel: rendering, the digest, the card on
//! card channels, retries, Retry-After, dead letters and unreachable conversations.

use std::sync::Arc;
use std::time::Duration;

use pricewatch::clock::{Clock, ManualClock};
use pricewatch::delivery::connector::{Connector, ConnectorConfig, ServiceUrlPolicy};
use pricewatch::delivery::ratelimit::SendLimits;
use pricewatch::delivery::retry::RetryPolicy;
use pricewatch::delivery::Delivery;
use pricewatch::domain::ProductUrl;
use pricewatch::domain::{CheckRecord, NewOutbox, NewWatch, OutboxMessage, Rule, Watch};
use pricewatch::domain::{Event, Reference};
use pricewatch::inbound::activity::{
    ChannelAccount, ConversationAccount, ConversationKey, ConversationReference,
};
use pricewatch::price::Currency;
use pricewatch::store::{AddWatch, Store};
use rust_decimal::Decimal;
use warp::http::StatusCode;

use crate::fakes::{most_in_any_span, open_store, FakeChannel};
use crate::helpers::eventually;

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
    setup_with(channel_id, RetryPolicy::default(), true, false).await
}

/// `limited`: the built-in per-channel rate limits; otherwise none.
async fn setup_with(
    channel_id: &str,
    policy: RetryPolicy,
    allow_loopback: bool,
    limited: bool,
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = open_store(&dir.path().join("data")).unwrap();
    let clock = Arc::new(ManualClock::new(1_764_000_000_000));
    let channel = FakeChannel::start_with_clock(clock.clone()).await;
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
    let connector = Connector::new(
        &ConnectorConfig {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            user_agent: "test".into(),
            // Local development: the fake channel is on loopback.
            policy: ServiceUrlPolicy::new(&[], allow_loopback),
        },
        None,
    )
    .unwrap();
    let limits = if limited {
        SendLimits::new(&Default::default(), clock.clone())
    } else {
        SendLimits::off(clock.clone())
    };
    let delivery = Delivery::new(
        store.clone(),
        connector,
        clock.clone(),
        policy,
        Arc::new(limits),
    );
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
    let waiting = s.store.due_messages(u64::MAX, 10).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].attempts, 1);
    assert!(waiting[0].last_error.as_deref().unwrap().contains("500"));
    // Full jitter under the first ceiling (2 s).
    let now = s.clock.now_ms();
    assert!((now..=now + 2_000).contains(&waiting[0].next_attempt_ms));

    // Not before its next attempt, then delivered once the channel is back.
    s.channel.take();
    s.channel.answer_with(StatusCode::OK);
    if waiting[0].next_attempt_ms > now {
        assert_eq!(s.delivery.pass().await.unwrap().sent, 0);
    }
    s.clock.advance_ms(2_000);
    assert_eq!(s.delivery.pass().await.unwrap().sent, 1);
    let got = s.channel.take();
    assert!(got[0].body["attachments"].is_null(), "no card on Slack");
    assert_eq!(s.store.stats().await.unwrap().outbox, 0);
    assert_eq!(s.delivery.counters().sent, 1);
    assert_eq!(s.delivery.counters().retried, 1);
}

#[tokio::test]
async fn retry_after_in_seconds_or_as_a_date_is_waited_for() {
    for header in ["30", "date"] {
        let s = setup("telegram").await;
        let w = watch(&s, "telegram", "/p/1").await;
        queue(&s, &w, vec![fired(&w, "Skillet", 150)]).await;
        s.channel.answer_with(StatusCode::TOO_MANY_REQUESTS);
        let value = if header == "date" {
            // The real clock: the connector reads HTTP dates against it. 31 s, as a date
            // has whole seconds only.
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(31))
        } else {
            header.to_owned()
        };
        s.channel.answer_retry_after(Some(&value));
        let now = s.clock.now_ms();
        assert_eq!(s.delivery.pass().await.unwrap().retried, 1);
        let waiting = s.store.due_messages(u64::MAX, 10).await.unwrap();
        assert!(
            waiting[0].next_attempt_ms >= now + 29_000,
            "{header}: waits {} ms",
            waiting[0].next_attempt_ms - now
        );
        s.channel.answer_with(StatusCode::OK);
        s.channel.answer_retry_after(None);
        s.clock.advance_ms(28_000);
        assert_eq!(s.delivery.pass().await.unwrap().sent, 0, "{header}");
        assert_eq!(s.channel.take().len(), 1, "only the throttled attempt");
        s.clock
            .advance_ms(waiting[0].next_attempt_ms - now - 28_000);
        assert_eq!(s.delivery.pass().await.unwrap().sent, 1, "{header}");
    }
}

#[tokio::test]
async fn repeated_failures_end_in_a_dead_letter_that_can_be_requeued() {
    let policy = RetryPolicy {
        retry_base: Duration::from_millis(100),
        retry_cap: Duration::from_millis(100),
        max_attempts: 3,
        max_age: Duration::from_secs(3600),
    };
    let s = setup_with("slack", policy, true, false).await;
    let w = watch(&s, "slack", "/p/1").await;
    queue(&s, &w, vec![fired(&w, "Skillet", 150)]).await;
    s.channel.answer_with(StatusCode::BAD_GATEWAY);
    for _ in 0..2 {
        assert_eq!(s.delivery.pass().await.unwrap().retried, 1);
        s.clock.advance_ms(100);
    }
    let report = s.delivery.pass().await.unwrap();
    assert_eq!((report.retried, report.dead), (0, 1));
    assert_eq!(s.channel.take().len(), 3);
    assert!(s.store.due_messages(u64::MAX, 10).await.unwrap().is_empty());
    let dead = s.store.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    assert!(dead[0].last_error.as_deref().unwrap().contains("502"));
    assert_eq!(dead[0].dead_ms, Some(s.clock.now_ms()));

    // The operator re-queues it once the channel is back.
    s.channel.answer_with(StatusCode::OK);
    assert!(s
        .store
        .requeue_dead_letter(dead[0].id, s.clock.now_ms())
        .await
        .unwrap());
    assert!(s.store.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(s.delivery.pass().await.unwrap().sent, 1);
    assert_eq!(s.store.stats().await.unwrap().outbox, 0);
}

#[tokio::test]
async fn a_400_is_dead_at_once() {
    let s = setup("slack").await;
    let w = watch(&s, "slack", "/p/1").await;
    queue(&s, &w, vec![fired(&w, "Skillet", 150)]).await;
    s.channel.answer_with(StatusCode::BAD_REQUEST);
    let report = s.delivery.pass().await.unwrap();
    assert_eq!((report.retried, report.dead), (0, 1));
    assert_eq!(s.store.dead_letters(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_403_dead_letters_pauses_the_watches_until_the_conversation_writes_again() {
    let s = setup("msteams").await;
    let w = watch(&s, "msteams", "/p/1").await;
    let w2 = watch(&s, "msteams", "/p/2").await;
    queue(&s, &w, vec![fired(&w, "Skillet", 150)]).await;
    s.channel.answer_with(StatusCode::FORBIDDEN);
    let report = s.delivery.pass().await.unwrap();
    assert_eq!(report.dead, 1);
    let mark = s.store.unreachable(&key("msteams")).await.unwrap().unwrap();
    assert!(mark.reason.contains("403"), "{}", mark.reason);
    let watches = s.store.watches(&key("msteams")).await.unwrap();
    assert!(watches.iter().all(|w| w.paused), "{watches:?}");

    // Anything else queued for it meanwhile is not even tried.
    queue(&s, &w2, vec![fired(&w2, "Kettle", 150)]).await;
    s.channel.take();
    assert_eq!(s.delivery.pass().await.unwrap().dead, 1);
    assert!(s.channel.take().is_empty());

    // The user writes again: the mark goes and the watches resume.
    let reference = s.store.reference(&key("msteams")).await.unwrap().unwrap();
    s.store.upsert_reference(&reference).await.unwrap();
    assert_eq!(s.store.unreachable(&key("msteams")).await.unwrap(), None);
    let watches = s.store.watches(&key("msteams")).await.unwrap();
    assert!(watches.iter().all(|w| !w.paused), "{watches:?}");
}

#[tokio::test]
async fn a_service_url_the_policy_refuses_is_never_sent_to() {
    let s = setup_with("msteams", RetryPolicy::default(), false, false).await;
    let w = watch(&s, "msteams", "/p/1").await;
    queue(&s, &w, vec![fired(&w, "Skillet", 150)]).await;
    let report = s.delivery.pass().await.unwrap();
    assert_eq!((report.sent, report.dead), (0, 1));
    assert!(s.channel.take().is_empty());
    let dead = s.store.dead_letters(10).await.unwrap();
    assert!(
        dead[0].last_error.as_deref().unwrap().contains("loopback"),
        "{:?}",
        dead[0].last_error
    );
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

/// A message about the product of `w` for the conversation `conv`, rendered on its own.
fn single(w: &Watch, conv: &ConversationKey, n: usize) -> NewOutbox {
    NewOutbox {
        alert_id: format!("note-{}-{n}", conv.channel_id),
        conversation: conv.clone(),
        watch_id: None,
        message: OutboxMessage::FirstCheckFailed {
            url: w.url.as_str().into(),
            reason: format!("note {n}"),
        },
    }
}

#[tokio::test]
async fn two_hundred_messages_to_one_teams_conversation_keep_every_window() {
    let s = setup_with("msteams", RetryPolicy::default(), true, true).await;
    // A Slack conversation with its own channel, to show it is not held back.
    let slack = FakeChannel::start_with_clock(s.clock.clone()).await;
    let mut other = s.store.reference(&key("msteams")).await.unwrap().unwrap();
    other.channel_id = "slack".into();
    other.service_url = slack.url.clone();
    s.store.upsert_reference(&other).await.unwrap();

    let w = watch(&s, "msteams", "/p/1").await;
    let messages = (0..200).map(|n| single(&w, &key("msteams"), n)).collect();
    queue(&s, &w, messages).await;
    queue(&s, &w, vec![single(&w, &key("slack"), 0)]).await;

    let start = s.clock.now_ms();
    let mut passes = 0;
    while s.channel.received().len() < 200 {
        s.delivery.pass().await.unwrap();
        s.clock.advance_ms(250);
        passes += 1;
        assert!(passes < 10_000, "stuck at {}", s.channel.received().len());
    }
    let teams: Vec<u64> = s.channel.received().iter().map(|r| r.at_ms).collect();
    assert_eq!(teams.len(), 200);
    assert!(most_in_any_span(&teams, 1_000) <= 7);
    assert!(most_in_any_span(&teams, 30_000) <= 60);
    assert!(most_in_any_span(&teams, 3_600_000) <= 1_800);
    // Paced at the hourly window's rate (one per 2 s), not slower.
    let span = teams[199] - teams[0];
    assert!((398_000..=450_000).contains(&span), "{span} ms");
    // Slack went out in the first pass, while Teams was being paced.
    let slack_times: Vec<u64> = slack.received().iter().map(|r| r.at_ms).collect();
    assert_eq!(slack_times, [start]);
    // Each message went exactly once; the outbox is empty.
    let mut texts: Vec<String> = s
        .channel
        .received()
        .iter()
        .map(|r| r.text().to_owned())
        .collect();
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), 200);
    assert_eq!(s.store.stats().await.unwrap().outbox, 0);
}

#[tokio::test]
async fn waits_for_a_limit_or_a_retry_after_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_764_000_000_000));
    let channel = FakeChannel::start_with_clock(clock.clone()).await;
    let open = || -> Arc<dyn Store> { open_store(&dir.path().join("data")).unwrap() };
    let delivery = |store: &Arc<dyn Store>| {
        Delivery::new(
            store.clone(),
            loopback_connector(Duration::from_secs(5)),
            clock.clone(),
            RetryPolicy::default(),
            Arc::new(SendLimits::new(&Default::default(), clock.clone())),
        )
    };
    let store = open();
    seed(&store, &clock, &channel.url, "msteams", 4).await;

    // One goes; the rest wait for the conversation's window, durably.
    let first = delivery(&store);
    let report = first.pass().await.unwrap();
    assert_eq!((report.sent, report.deferred), (1, 3));
    drop(first);
    drop(store);

    // A new daemon, with limiters that know nothing: still no burst.
    let store = open();
    let second = delivery(&store);
    assert_eq!(second.pass().await.unwrap().sent, 0);
    clock.advance_ms(1_000);
    assert_eq!(second.pass().await.unwrap().sent, 0);
    clock.advance_ms(1_100);
    assert_eq!(second.pass().await.unwrap().sent, 1);

    // A 429 with Retry-After: the wait survives a restart too.
    channel.answer_with(StatusCode::TOO_MANY_REQUESTS);
    channel.answer_retry_after(Some("30"));
    clock.advance_ms(2_100);
    assert_eq!(second.pass().await.unwrap().retried, 1);
    channel.answer_with(StatusCode::OK);
    channel.answer_retry_after(None);
    drop(second);
    drop(store);
    let store = open();
    let third = delivery(&store);
    clock.advance_ms(20_000);
    assert_eq!(third.pass().await.unwrap().sent, 0);
    clock.advance_ms(10_000);
    assert_eq!(third.pass().await.unwrap().sent, 1);

    let times: Vec<u64> = channel.received().iter().map(|r| r.at_ms).collect();
    assert!(times.windows(2).all(|p| p[1] - p[0] >= 2_000), "{times:?}");
}

/// A local-development Connector (loopback allowed, no token).
fn loopback_connector(timeout: Duration) -> Connector {
    Connector::new(
        &ConnectorConfig {
            timeout,
            connect_timeout: timeout,
            user_agent: "test".into(),
            policy: ServiceUrlPolicy::new(&[], true),
        },
        None,
    )
    .unwrap()
}

/// Stores conversation `c1` of `channel` at `service_url`, a watch in it, and `messages`
/// messages for it, each sent on its own.
async fn seed(
    store: &Arc<dyn Store>,
    clock: &ManualClock,
    service_url: &str,
    channel: &str,
    messages: usize,
) {
    store
        .upsert_reference(&ConversationReference {
            channel_id: channel.into(),
            service_url: service_url.into(),
            conversation: ConversationAccount {
                id: "c1".into(),
                ..Default::default()
            },
            user: None,
            bot: ChannelAccount {
                id: "bot1".into(),
                ..Default::default()
            },
            locale: None,
        })
        .await
        .unwrap();
    let AddWatch::Added(w) = store
        .add_watch(
            NewWatch {
                conversation: key(channel),
                user: None,
                url: ProductUrl::parse("https://shop.example/p/1", 2048).unwrap(),
                rule: Rule::Drop {
                    percent: Decimal::from(20),
                },
                created_at_ms: clock.now_ms(),
            },
            10,
        )
        .await
        .unwrap()
    else {
        panic!("not added");
    };
    let product = store.product(&w.url).await.unwrap().unwrap();
    store
        .record_check(CheckRecord {
            product,
            change: None,
            watches: vec![],
            messages: (0..messages)
                .map(|n| single(&w, &key(channel), n))
                .collect(),
            now_ms: clock.now_ms(),
        })
        .await
        .unwrap();
}

/// A delivery with its own Connector timeout, to a Slack conversation whose serviceUrl
/// is `service_url`, with one message queued.
async fn one_message_to(
    service_url: &str,
    timeout: Duration,
) -> (Arc<dyn Store>, Delivery, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = open_store(&dir.path().join("data")).unwrap();
    let clock = Arc::new(ManualClock::new(1_764_000_000_000));
    seed(&store, &clock, service_url, "slack", 1).await;
    let delivery = Delivery::new(
        store.clone(),
        loopback_connector(timeout),
        clock.clone(),
        RetryPolicy::default(),
        Arc::new(SendLimits::off(clock.clone())),
    );
    (store, delivery, dir)
}

#[tokio::test]
async fn a_channel_that_hangs_past_the_timeout_is_retried_later() {
    let channel = FakeChannel::start().await;
    channel.answer_after(Duration::from_secs(3));
    let (store, delivery, _dir) = one_message_to(&channel.url, Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let report = delivery.pass().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!((report.sent, report.retried, report.dead), (0, 1, 0));
    let waiting = store.due_messages(u64::MAX, 10).await.unwrap();
    assert!(
        waiting[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("did not answer"),
        "{:?}",
        waiting[0].last_error
    );
}

#[tokio::test]
async fn a_dropped_connection_is_retried_later() {
    // Accepts each connection and closes it without a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let (store, delivery, _dir) = one_message_to(&url, Duration::from_secs(2)).await;
    let report = delivery.pass().await.unwrap();
    assert_eq!((report.sent, report.retried, report.dead), (0, 1, 0));
    let waiting = store.due_messages(u64::MAX, 10).await.unwrap();
    assert_eq!(waiting[0].attempts, 1);
    assert!(
        waiting[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("cannot reach"),
        "{:?}",
        waiting[0].last_error
    );
}

#[tokio::test]
async fn a_404_is_unreachable_too() {
    let channel = FakeChannel::start().await;
    channel.answer_with(StatusCode::NOT_FOUND);
    let (store, delivery, _dir) = one_message_to(&channel.url, Duration::from_secs(2)).await;
    assert_eq!(delivery.pass().await.unwrap().dead, 1);
    assert!(store.unreachable(&key("slack")).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_channel_does_not_hold_back_another_channels_messages() {
    let slow = FakeChannel::start().await;
    slow.answer_after(Duration::from_secs(2));
    let fast = FakeChannel::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = open_store(&dir.path().join("data")).unwrap();
    let clock = Arc::new(ManualClock::new(1_764_000_000_000));
    seed(&store, &clock, &slow.url, "slack", 1).await;
    let delivery = Arc::new(Delivery::new(
        store.clone(),
        loopback_connector(Duration::from_secs(5)),
        clock.clone(),
        RetryPolicy::default(),
        Arc::new(SendLimits::off(clock.clone())),
    ));
    // The first pass is stuck on Slack ...
    let d = delivery.clone();
    let first = tokio::spawn(async move { d.pass().await.unwrap() });
    eventually(|| async {
        if slow.received().is_empty() {
            Err("the first pass to reach Slack")
        } else {
            Ok(())
        }
    })
    .await;
    // ... while a message for Telegram, queued meanwhile, goes out in the next one.
    seed(&store, &clock, &fast.url, "telegram", 1).await;
    let started = std::time::Instant::now();
    let second = delivery.pass().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(second.sent, 1, "only Telegram: Slack is the first pass's");
    assert_eq!(fast.received().len(), 1);
    assert_eq!(first.await.unwrap().sent, 1);
    assert_eq!(slow.received().len(), 1, "Slack got its message once");
    assert_eq!(store.stats().await.unwrap().outbox, 0);
}

#[tokio::test]
async fn a_send_held_back_by_a_rate_limit_counts_as_a_wait_for_its_channel() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_764_000_000_000));
    let channel = FakeChannel::start_with_clock(clock.clone()).await;
    let store: Arc<dyn Store> = open_store(&dir.path().join("data")).unwrap();
    seed(&store, &clock, &channel.url, "msteams", 2).await;
    let delivery = Delivery::new(
        store.clone(),
        loopback_connector(Duration::from_secs(5)),
        clock.clone(),
        RetryPolicy::default(),
        Arc::new(SendLimits::new(&Default::default(), clock.clone())),
    );
    let metrics = Arc::new(pricewatch::ops::metrics::Metrics::new());
    delivery.count_in(metrics.clone());

    let report = delivery.pass().await.unwrap();
    assert_eq!((report.sent, report.deferred), (1, 1));
    let text = metrics.encode().unwrap();
    assert!(
        text.contains("pricewatch_rate_limit_waits_total{channel=\"msteams\"} 1\n"),
        "{text}"
    );
}
