//! The store failing under the daemon: a store that refuses writes (a full disk, as sled
//! reports one) and one whose writes never return (sled's flush on a full disk). The
//! turns still get their answer, `/readyz` says what is wrong, alerts wait in the
//! outbox, the daemon stops on time, and all of it recovers once the store does.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pricewatch::app::ServiceHooks;
use pricewatch::domain::{
    ChangePoint, CheckRecord, NewOutbox, NewWatch, OutboxEntry, Product, ProductUrl, Rule,
    Unreachable, Watch,
};
use pricewatch::inbound::activity::{ConversationKey, ConversationReference};
use pricewatch::store::{
    AddWatch, Recipient, ReferenceChange, Snapshot, Store, StoreError, StoreFuture, StoreStats,
};

use crate::helpers::{eventually, test_config, TestApp};

const WORKING: u8 = 0;
/// Writes fail at once with an I/O error, as sled answers on a full disk.
const FAILING: u8 = 1;
/// Writes block their thread until the mode changes, as sled's flush on a full disk.
const HANGING: u8 = 2;

/// A store whose writes fail or hang on demand; reads always work. It also counts the
/// calls delivery makes per pass.
struct Faulty {
    inner: Arc<dyn Store>,
    mode: Arc<AtomicU8>,
    calls: Arc<Calls>,
}

#[derive(Default)]
struct Calls {
    remove_delivered: AtomicUsize,
    removed: AtomicUsize,
    recipients: AtomicUsize,
}

impl Faulty {
    /// Holds a write back as the mode says. Blocking on purpose: a hang must not be
    /// something the runtime could poll around, since sled's is not.
    fn gate(&self) -> Result<(), StoreError> {
        loop {
            match self.mode.load(Ordering::SeqCst) {
                WORKING => return Ok(()),
                FAILING => {
                    return Err(StoreError::Io(Arc::new(std::io::Error::from_raw_os_error(
                        28, // ENOSPC
                    ))));
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn write<'a, T: Send + 'a>(&'a self, call: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        Box::pin(async move {
            self.gate()?;
            call.await
        })
    }
}

impl Store for Faulty {
    fn upsert_reference<'a>(
        &'a self,
        reference: &'a ConversationReference,
    ) -> StoreFuture<'a, ReferenceChange> {
        self.write(self.inner.upsert_reference(reference))
    }
    fn reference<'a>(
        &'a self,
        key: &'a ConversationKey,
    ) -> StoreFuture<'a, Option<ConversationReference>> {
        self.inner.reference(key)
    }
    fn add_watch(&self, watch: NewWatch, max: usize) -> StoreFuture<'_, AddWatch> {
        self.write(self.inner.add_watch(watch, max))
    }
    fn watches<'a>(&'a self, key: &'a ConversationKey) -> StoreFuture<'a, Vec<Watch>> {
        self.inner.watches(key)
    }
    fn remove_watches<'a>(
        &'a self,
        key: &'a ConversationKey,
        ids: &'a [u64],
    ) -> StoreFuture<'a, Vec<Watch>> {
        self.write(self.inner.remove_watches(key, ids))
    }
    fn change_rule<'a>(
        &'a self,
        key: &'a ConversationKey,
        id: u64,
        rule: Rule,
    ) -> StoreFuture<'a, Option<(Watch, Watch)>> {
        self.write(self.inner.change_rule(key, id, rule))
    }
    fn set_on_hold<'a>(
        &'a self,
        key: &'a ConversationKey,
        ids: &'a [u64],
        on_hold: bool,
    ) -> StoreFuture<'a, Vec<Watch>> {
        self.write(self.inner.set_on_hold(key, ids, on_hold))
    }
    fn stats(&self) -> StoreFuture<'_, StoreStats> {
        self.inner.stats()
    }
    fn due_products(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<Product>> {
        self.inner.due_products(now_ms, limit)
    }
    fn product<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Option<Product>> {
        self.inner.product(url)
    }
    fn product_watches<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Vec<Watch>> {
        self.inner.product_watches(url)
    }
    fn record_check(&self, check: CheckRecord) -> StoreFuture<'_, Vec<OutboxEntry>> {
        self.write(self.inner.record_check(check))
    }
    fn history<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Vec<ChangePoint>> {
        self.inner.history(url)
    }
    fn latest_point<'a>(&'a self, url: &'a ProductUrl) -> StoreFuture<'a, Option<ChangePoint>> {
        self.inner.latest_point(url)
    }
    fn prune_history(&self, before_ms: u64) -> StoreFuture<'_, usize> {
        self.write(self.inner.prune_history(before_ms))
    }
    fn due_messages(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        self.inner.due_messages(now_ms, limit)
    }
    fn queued_message(&self, id: u64) -> StoreFuture<'_, Option<OutboxEntry>> {
        self.inner.queued_message(id)
    }
    fn remove_delivered(&self, ids: Vec<u64>) -> StoreFuture<'_, ()> {
        self.calls.remove_delivered.fetch_add(1, Ordering::SeqCst);
        self.calls.removed.fetch_add(ids.len(), Ordering::SeqCst);
        self.write(self.inner.remove_delivered(ids))
    }
    fn schedule_retry(&self, id: u64, next_attempt_ms: u64, error: String) -> StoreFuture<'_, ()> {
        self.write(self.inner.schedule_retry(id, next_attempt_ms, error))
    }
    fn queue_messages(
        &self,
        messages: Vec<NewOutbox>,
        now_ms: u64,
    ) -> StoreFuture<'_, Vec<OutboxEntry>> {
        self.write(self.inner.queue_messages(messages, now_ms))
    }
    fn conversations(&self) -> StoreFuture<'_, Vec<ConversationKey>> {
        self.inner.conversations()
    }
    fn defer_messages(&self, ids: Vec<u64>, next_attempt_ms: u64) -> StoreFuture<'_, ()> {
        self.write(self.inner.defer_messages(ids, next_attempt_ms))
    }
    fn move_to_dead_letters(&self, id: u64, error: String, now_ms: u64) -> StoreFuture<'_, bool> {
        self.write(self.inner.move_to_dead_letters(id, error, now_ms))
    }
    fn dead_letters(&self, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        self.inner.dead_letters(limit)
    }
    fn queued_messages(&self, limit: usize) -> StoreFuture<'_, Vec<OutboxEntry>> {
        self.inner.queued_messages(limit)
    }
    fn requeue_dead_letter(&self, id: u64, now_ms: u64) -> StoreFuture<'_, bool> {
        self.write(self.inner.requeue_dead_letter(id, now_ms))
    }
    fn mark_unreachable<'a>(
        &'a self,
        key: &'a ConversationKey,
        mark: Unreachable,
    ) -> StoreFuture<'a, usize> {
        self.write(self.inner.mark_unreachable(key, mark))
    }
    fn unreachable<'a>(&'a self, key: &'a ConversationKey) -> StoreFuture<'a, Option<Unreachable>> {
        self.inner.unreachable(key)
    }
    fn recipients(&self, wanted: Vec<(ConversationKey, bool)>) -> StoreFuture<'_, Vec<Recipient>> {
        self.calls.recipients.fetch_add(1, Ordering::SeqCst);
        self.inner.recipients(wanted)
    }
    fn snapshot(&self) -> StoreFuture<'_, Snapshot> {
        self.inner.snapshot()
    }
    fn restore_snapshot(&self, snapshot: Snapshot) -> StoreFuture<'_, ()> {
        self.write(self.inner.restore_snapshot(snapshot))
    }
    fn flush(&self) -> StoreFuture<'_, ()> {
        self.write(self.inner.flush())
    }
    fn writable(&self) -> Result<(), StoreError> {
        match self.mode.load(Ordering::SeqCst) {
            FAILING => self.gate(),
            _ => self.inner.writable(),
        }
    }
}

/// Ends every fault when dropped.
struct Release(Arc<AtomicU8>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.store(WORKING, Ordering::SeqCst);
    }
}

/// The daemon on a store whose faults the returned switch sets.
async fn on_faulty_store(
    configure: impl FnOnce(&mut pricewatch::ops::config::Config),
) -> (TestApp, Arc<AtomicU8>, tempfile::TempDir) {
    let (t, mode, _, dir) = on_counting_store(configure).await;
    (t, mode, dir)
}

/// [`on_faulty_store`], with the store's call counts.
async fn on_counting_store(
    configure: impl FnOnce(&mut pricewatch::ops::config::Config),
) -> (TestApp, Arc<AtomicU8>, Arc<Calls>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.storage.timeout = Duration::from_secs(1);
    config.server.shutdown_grace = Duration::from_secs(2);
    configure(&mut config);
    let mode = Arc::new(AtomicU8::new(WORKING));
    let mut service = ServiceHooks::systemd(&config);
    service.stale_after = Duration::from_secs(2);
    let switch = mode.clone();
    let calls = Arc::new(Calls::default());
    let counts = calls.clone();
    service.wrap_store = Some(Box::new(move |inner| {
        Arc::new(Faulty {
            inner,
            mode: switch,
            calls: counts,
        })
    }));
    let t = TestApp::spawn_with_service(config, Arc::new(pricewatch::clock::SystemClock), service)
        .await;
    (t, mode, calls, dir)
}

async fn readyz(t: &TestApp) -> (u16, serde_json::Value) {
    let r = t
        .client
        .get(format!("http://{}/readyz", t.app().local_addr()))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn a_store_that_cannot_write_gets_the_user_told_and_recovers() {
    let (t, mode, _dir) = on_faulty_store(|_| {}).await;
    mode.store(FAILING, Ordering::SeqCst);

    let (status, body) = t
        .post(&t.message("c1", "watch https://shop.example/p/1"))
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("StorageUnavailable"), "{body}");
    let told = t.wait_for(1).await;
    let text = told[0].body["text"].as_str().unwrap();
    assert!(text.contains("could not save"), "{text}");
    let (status, body) = readyz(&t).await;
    assert_eq!(status, 503);
    assert!(
        body["failing"][0].as_str().unwrap().starts_with("store:"),
        "{body}"
    );

    // Space is back: the same turn goes through, and the daemon is ready again.
    mode.store(WORKING, Ordering::SeqCst);
    assert_eq!(readyz(&t).await.0, 200);
    let reply = t.say("c1", "watch https://shop.example/p/1").await;
    assert!(reply.contains("Watch #1"), "{reply}");
}

/// Queues an announcement for each of `n` conversations (`c0`… on the test's channel).
async fn queue_fan_out(t: &TestApp, n: usize) {
    t.say("c0", "help").await;
    t.channel.take();
    let store = t.app().store();
    let key = |i: usize| ConversationKey {
        channel_id: "emulator".into(),
        conversation_id: format!("c{i}"),
    };
    let first = store.reference(&key(0)).await.unwrap().unwrap();
    let others = (1..n).map(|i| {
        let mut r = first.clone();
        r.conversation.id = format!("c{i}");
        let store = store.clone();
        async move { store.upsert_reference(&r).await.unwrap() }
    });
    futures_util::future::join_all(others).await;
    let announcements = (0..n)
        .map(|i| NewOutbox {
            alert_id: format!("a{i}"),
            conversation: key(i),
            watch_id: None,
            message: pricewatch::domain::OutboxMessage::Announcement {
                text: "maintenance tonight".into(),
            },
        })
        .collect();
    let now = pricewatch::clock::Clock::now_ms(&pricewatch::clock::SystemClock);
    assert_eq!(
        store
            .queue_messages(announcements, now)
            .await
            .unwrap()
            .len(),
        n
    );
}

#[tokio::test]
async fn a_fan_out_asks_the_store_per_pass_not_per_message() {
    const N: usize = 600;
    let (t, _mode, calls, _dir) = on_counting_store(|_| {}).await;
    queue_fan_out(&t, N).await;

    let started = std::time::Instant::now();
    t.app().deliver_now().await.unwrap();
    let seconds = started.elapsed().as_secs() as usize;
    assert_eq!(t.wait_for(N).await.len(), N);
    t.outbox_drained().await;
    // One pass took all 600 (a pass takes up to 1,000): one read of the recipients, and
    // the removals in batches of 256 (and one a second besides, however few), where each
    // message used to be a call of its own.
    let removals = calls.remove_delivered.load(Ordering::SeqCst);
    assert_eq!(calls.removed.load(Ordering::SeqCst), N);
    assert!(
        (3..=6 + seconds).contains(&removals),
        "{removals} removal calls in {seconds} s"
    );
    let reads = calls.recipients.load(Ordering::SeqCst);
    assert!((1..=3).contains(&reads), "{reads} recipient reads");
}

#[tokio::test]
async fn a_pass_cut_off_before_its_removals_sends_nothing_twice() {
    const N: usize = 400;
    let (t, _mode, _calls, _dir) = on_counting_store(|_| {}).await;
    queue_fan_out(&t, N).await;
    let app = t.app();

    // Cut the pass off (as a shutdown does) after about 100 sends, fewer than a batch of
    // removals: the channel stalls by itself at 100, so nothing more is accepted (but what
    // was on its way), and the pass is dropped.
    t.channel.stall_after(100, Duration::from_secs(30));
    let pass = app.deliver_now();
    let watch_channel = async {
        eventually(|| async {
            t.channel
                .is_stalled()
                .then_some(())
                .ok_or("fewer than 100 sent")
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::select! {
        _ = pass => panic!("the pass ended before it was cut off"),
        _ = watch_channel => {}
    }
    let accepted = t.channel.count();
    assert!(
        accepted < 256,
        "{accepted} sent: a batch was removed already"
    );

    t.channel.stall_for(Duration::ZERO);
    eventually(|| async {
        app.deliver_now().await.map_err(|e| e.to_string())?;
        match app.store().stats().await.map_err(|e| e.to_string())?.outbox {
            0 => Ok(()),
            n => Err(format!("{n} still queued")),
        }
    })
    .await;
    // Only a message whose 201 was on its way when the pass was dropped goes twice.
    let total = t.channel.count();
    assert!(
        (N..=N + 32).contains(&total),
        "{total} arrivals for {N} messages"
    );
}

#[tokio::test]
async fn queued_alerts_wait_while_the_store_cannot_record_a_send() {
    let (t, mode, _dir) = on_faulty_store(|_| {}).await;
    t.say("c1", "help").await;
    t.channel.take();
    // An announcement queued just before the disk fills up.
    let key = ConversationKey {
        channel_id: "emulator".into(),
        conversation_id: "c1".into(),
    };
    mode.store(FAILING, Ordering::SeqCst);
    let store = t.app().store();
    let now = pricewatch::clock::Clock::now_ms(&pricewatch::clock::SystemClock);
    mode.store(WORKING, Ordering::SeqCst);
    let queued = store
        .queue_messages(
            vec![NewOutbox {
                alert_id: "a1".into(),
                conversation: key,
                watch_id: None,
                message: pricewatch::domain::OutboxMessage::Announcement {
                    text: "maintenance tonight".into(),
                },
            }],
            now,
        )
        .await;
    mode.store(FAILING, Ordering::SeqCst);
    assert_eq!(queued.unwrap().len(), 1);

    // Nothing is sent while a send could not be recorded: it would go out again at every
    // pass.
    let report = t.app().deliver_now().await;
    assert!(report.is_err(), "{report:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        t.channel.received().is_empty(),
        "{:?}",
        t.channel.received()
    );
    let stats = t.app().store().stats().await.unwrap();
    assert_eq!(stats.outbox, 1, "{stats:?}");

    mode.store(WORKING, Ordering::SeqCst);
    t.wait_for(1).await;
    t.outbox_drained().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.channel.received().len(), 1, "sent exactly once");
}

#[tokio::test]
async fn a_store_whose_writes_hang_neither_stalls_the_daemon_nor_its_stop() {
    let (mut t, mode, _dir) = on_faulty_store(|_| {}).await;
    t.say("c1", "help").await;
    mode.store(HANGING, Ordering::SeqCst);
    // A failed assertion must not leave the store's threads hanging: the runtime's end
    // waits for them.
    let _release = Release(mode.clone());

    // The turn waits for the store's time limit, then gets its answer.
    let url = t.url.clone();
    let client = t.client.clone();
    let turn = t.message("c2", "watch https://shop.example/p/1");
    let stuck = tokio::spawn(async move {
        let r = client.post(&url).json(&turn).send().await.unwrap();
        r.status().as_u16()
    });
    // Meanwhile the daemon answers, on this test's single runtime thread too.
    let started = Instant::now();
    let r = t
        .client
        .get(format!("http://{}/healthz", t.app().local_addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(stuck.await.unwrap(), 503);
    assert!(started.elapsed() < Duration::from_secs(10));
    let (status, body) = readyz(&t).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("did not answer"), "{body}");
    // It does not come back by itself: the delivery loop stops showing it is alive, so
    // that the watchdog has the service manager restart the daemon.
    crate::helpers::eventually(|| async {
        let (_, body) = readyz(&t).await;
        match body
            .to_string()
            .contains("delivery loop: has not gone round")
        {
            true => Ok(()),
            false => Err(format!("the delivery loop to stall: {body}")),
        }
    })
    .await;

    // A stop ends within the grace period (and the final flush's second), the store
    // still hanging.
    let started = Instant::now();
    let app = t.app.take().unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(10), app.stop()).await;
    let took = started.elapsed();
    assert!(stopped.is_ok(), "the stop hung");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop; `None` where this
/// machine does not let the test mount one (not root, no mount namespace).
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

/// The binary on a small real file system that fills up: conversations whose ids are
/// 150 KB each, each with a watch, until the disk is at the reserve. Then it is told, it
/// recovers when space is freed, and SIGTERM stops it on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_on_a_full_tmpfs_answers_recovers_and_stops() {
    let Some(disk) = Tmpfs::mount("6m") else {
        eprintln!("skipped: this machine does not let the test mount a tmpfs");
        return;
    };
    let ballast = disk.0.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 2 << 20]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = disk.0.path().join("data");
    let file = dir.path().join("pricewatch.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\nshutdown_grace = \"2s\"\n\
             [storage]\npath = {:?}\nmin_free = 1048576\ntimeout = \"2s\"\n\
             [schedule]\nenabled = false\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let daemon = crate::daemon::RunningDaemon::start(&file).await.unwrap();
    let channel = crate::fakes::FakeChannel::start().await;
    let big = "x".repeat(150_000);
    let mut refused = None;
    for i in 0..40 {
        let conversation = format!("c{i}-{big}");
        let watch = crate::daemon::activity(
            "emulator",
            &channel.url,
            &conversation,
            &format!("watch https://shop.example/p/{i}"),
        );
        let status = crate::daemon::post_activity(&daemon.addr, &watch).await;
        if status != 200 {
            assert_eq!(status, 503, "{}", daemon.text());
            refused = Some(i);
            break;
        }
    }
    let refused = refused.expect("the disk filled up within 40 conversations");
    assert!(refused > 0, "the first conversation was refused already");
    // A user who writes now is told (a short conversation id: the fake channel takes no
    // 150 KB path).
    let hello = crate::daemon::activity("emulator", &channel.url, "short", "list");
    assert_eq!(
        crate::daemon::post_activity(&daemon.addr, &hello).await,
        503
    );
    crate::helpers::eventually(|| async {
        let told = channel.received().iter().any(|r| {
            r.body["text"]
                .as_str()
                .is_some_and(|t| t.contains("could not save"))
        });
        match told {
            true => Ok(()),
            false => Err("the apology"),
        }
    })
    .await;
    let readyz = reqwest::get(format!("http://{}/readyz", daemon.addr))
        .await
        .unwrap();
    assert_eq!(readyz.status(), 503);
    assert!(readyz.text().await.unwrap().contains("nearly full"));

    // Space is freed: the refused conversation goes through, with no restart.
    std::fs::remove_file(&ballast).unwrap();
    let again = crate::daemon::activity(
        "emulator",
        &channel.url,
        &format!("c{refused}-{big}"),
        &format!("watch https://shop.example/p/{refused}"),
    );
    assert_eq!(
        crate::daemon::post_activity(&daemon.addr, &again).await,
        200
    );
    let readyz = reqwest::get(format!("http://{}/readyz", daemon.addr))
        .await
        .unwrap();
    assert_eq!(readyz.status(), 200);

    let started = Instant::now();
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(started.elapsed() < Duration::from_secs(4), "{log}");
}

/// On PostgreSQL `/readyz` asks whether the database answers, not how much it holds:
/// counting (what `/metrics` shows) grows with the data and waits on a table another session
/// holds locked, the readiness check does neither. Before, `/readyz` counted, and a slow
/// count made every replica unready at once.
#[tokio::test]
async fn readyz_on_postgres_does_not_count() {
    let Some(db) = crate::postgres::TestDatabase::new("readyz_on_postgres_does_not_count") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    db.configure(&mut config, dir.path());
    // The server cancels the waiting count: a statement timeout, not the store's own time
    // limit (which would mark the store stuck, a different failure).
    config.storage.postgres_statement_timeout = Duration::from_secs(1);
    let t = TestApp::spawn_with(config).await;
    assert_eq!(readyz(&t).await.0, 200);

    let locker = db.config.connect().await.unwrap();
    locker
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE \"{}\".watches IN ACCESS EXCLUSIVE MODE",
            db.schema()
        ))
        .await
        .unwrap();
    // Counting waits for the lock until the server gives up.
    let counted = t.app().store().stats().await;
    assert!(counted.is_err(), "{counted:?}");
    let (status, body) = readyz(&t).await;
    assert_eq!(status, 200, "{body}");

    locker.batch_execute("ROLLBACK").await.unwrap();
    let counted = t.app().store().stats().await.unwrap();
    assert_eq!(counted.watches, 0);
    assert_eq!(readyz(&t).await.0, 200);
}
