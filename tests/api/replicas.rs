//! Replicas as an operator runs them: real `pricewatch serve` processes sharing one
//! PostgreSQL schema (`PRICEWATCH_TEST_POSTGRES_URL`; skipped without it), one shop host
//! and one channel. The work is split so that each product is checked once per interval
//! and each alert sent once; a watch made on one replica is listed by the other; a replica
//! killed while it fetches, or while it delivers, is taken over within the lease time plus
//! one interval; and the channel's limit holds for all replicas together.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::stream::{self, StreamExt};
use serde_json::Value;

use crate::daemon::activity;
use crate::fakes::{most_in_any_span, FakeChannel, FakeShop, Page, Recorded};
use crate::postgres::TestDatabase;
use crate::process::LoggedDaemon;

const PRODUCTS: usize = 200;
/// `storage.postgres_lease`: the shortest allowed, so that a takeover is quick.
pub(crate) const LEASE: Duration = Duration::from_secs(3);
/// `schedule.tick`: every second.
const TICK: Duration = Duration::from_secs(1);
/// `schedule.interval`: the shortest allowed. The test makes products due itself, so a
/// cycle starts when it says, and the next one, a minute later, never comes in its time.
const INTERVAL: Duration = Duration::from_secs(60);
/// `fetch.per_host_concurrency`: at most this many checks are in flight when the replica
/// fetching the shop is killed, so at most this many are checked twice.
const PER_HOST: usize = 2;
/// `[rate_limits.emulator] per_channel`: sends per second to the channel, for the whole bot.
const CHANNEL_PER_SECOND: usize = 20;
const CHANNEL: &str = "emulator";
/// What the channel may count above its limit in one second, as the fake sees it: it
/// stamps an arrival when its handler runs, and on a loaded machine sends bunch by up to
/// some 100 ms between the limiter's admission and that stamp (two sends 50 ms apart were
/// once stamped 1 ms apart; 22 in 1 s were seen), far beyond the limiter's 10 ms margin.
/// Two replicas sending at once would put some 40 in a second; that they never do is
/// checked exactly from their logs.
const STAMP_JITTER_SENDS: usize = 3;
/// Slack on top of what the design promises, for a loaded machine.
const SLACK: Duration = Duration::from_secs(10);

/// A `pricewatch serve` on the test's schema, telling the shop who it is by its user agent.
pub(crate) struct Replica {
    pub(crate) agent: String,
    pub(crate) daemon: LoggedDaemon,
    _dir: tempfile::TempDir,
}

impl Replica {
    pub(crate) async fn start(db: &TestDatabase, agent: &str) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let url_file = dir.path().join("postgres-url");
        std::fs::write(&url_file, db.config.url.expose()).unwrap();
        let file = dir.path().join("pricewatch.toml");
        std::fs::write(
            &file,
            format!(
                "[server]\nbind = \"127.0.0.1:0\"\n\n\
                 [storage]\npath = {data:?}\nbackend = \"postgres\"\n\
                 postgres_url_file = {url:?}\npostgres_schema = \"{schema}\"\n\
                 postgres_lease = \"{lease}s\"\n\n\
                 [schedule]\ntick = \"* * * * * *\"\ninterval = \"1m\"\njitter = 0\n\n\
                 [fetch]\nallow_networks = [\"127.0.0.0/8\"]\nhost_gap = \"0s\"\n\
                 per_host_concurrency = {PER_HOST}\nuser_agent = \"{agent}\"\n\n\
                 [rate_limits.{CHANNEL}]\nper_conversation = []\n\
                 per_channel = [\"{CHANNEL_PER_SECOND}/1s\"]\n",
                data = dir.path().join("data").display().to_string(),
                url = url_file.display().to_string(),
                schema = db.schema(),
                lease = LEASE.as_secs(),
            ),
        )
        .unwrap();
        let daemon = LoggedDaemon::start(&file).await;
        Replica {
            agent: agent.to_owned(),
            daemon,
            _dir: dir,
        }
    }
}

pub(crate) fn conversation(i: usize) -> String {
    format!("c{i:03}")
}

pub(crate) fn path(i: usize) -> String {
    format!("/p/{i}")
}

/// Product `i`'s page at `price` EUR, its title naming it ("Item 007") in what the bot says.
pub(crate) fn page(i: usize, price: &str) -> Page {
    Page::product(&format!("Item {i:03}"), price)
}

fn put_prices(shop: &FakeShop, price: &str, delay: Duration) {
    for i in 0..PRODUCTS {
        shop.put(&path(i), page(i, price).after(delay));
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Polls `check` every 100 ms until it returns `Ok`, failing the test with its last `Err`
/// once `deadline` has passed.
pub(crate) async fn until<T, F, Fut>(deadline: Instant, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    loop {
        match check().await {
            Ok(found) => return found,
            Err(waiting) if Instant::now() >= deadline => panic!("gave up waiting for {waiting}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The conversation a proactive message went to; `None` for a reply, whose path names
/// the activity it answers.
/// Waits until a first price reached each of `products` conversations and nothing is
/// left queued.
pub(crate) async fn first_prices_sent(
    channel: &FakeChannel,
    pg: &Db,
    products: usize,
    deadline: Instant,
) {
    until(deadline, || async {
        let received = channel.received();
        let first_prices: HashSet<&str> = received
            .iter()
            .filter(|r| r.text().contains("I will tell you when"))
            .filter_map(proactive_to)
            .collect();
        if first_prices.len() == products && pg.queued().await == 0 {
            Ok(())
        } else {
            Err(format!(
                "first prices: {} of {products}",
                first_prices.len()
            ))
        }
    })
    .await;
}

pub(crate) fn proactive_to(r: &Recorded) -> Option<&str> {
    r.path
        .strip_prefix("/v3/conversations/")?
        .strip_suffix("/activities")
}

fn is_alert(r: &Recorded) -> bool {
    r.text().starts_with("Price alert:")
}

/// Arrival times (ms) of the alerts each conversation got among `received[from..]`.
fn alerts_since(received: &[Recorded], from: usize) -> BTreeMap<String, Vec<u64>> {
    let mut alerts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in received[from..].iter().filter(|r| is_alert(r)) {
        if let Some(c) = proactive_to(r) {
            alerts.entry(c.to_owned()).or_default().push(r.at_ms);
        }
    }
    alerts
}

/// Which replicas (user agents) fetched each product page, in order, from request `from` on.
fn fetches_since(shop: &FakeShop, from: usize) -> BTreeMap<String, Vec<String>> {
    let mut fetches: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in shop.requests().into_iter().skip(from) {
        fetches.entry(r.path).or_default().push(r.user_agent);
    }
    fetches
}

/// Each product page fetched exactly once from request `from` on.
fn assert_fetched_once(shop: &FakeShop, from: usize, cycle: &str) {
    let fetches = fetches_since(shop, from);
    let twice: Vec<_> = fetches.iter().filter(|(_, by)| by.len() != 1).collect();
    assert!(
        twice.is_empty(),
        "{cycle}: products fetched more than once: {twice:?}"
    );
    assert_eq!(fetches.len(), PRODUCTS, "{cycle}: products fetched");
}

/// A runtime beside the test's, shut down without waiting when dropped (a runtime may not
/// be dropped inside another one).
struct Background(Option<tokio::runtime::Runtime>);

impl Background {
    fn new() -> Background {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        Background(Some(runtime))
    }

    fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.as_ref().unwrap().spawn(task)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The test's own connection to the replicas' schema.
pub(crate) struct Db(pub(crate) tokio_postgres::Client);

impl Db {
    /// Starts a cycle now: the scheduler picks up products by this column.
    async fn make_all_due(&self) {
        self.0
            .execute("UPDATE products SET next_due_ms = 0", &[])
            .await
            .unwrap();
    }

    /// Products not yet recorded since [`Db::make_all_due`] (still due, or claimed).
    async fn unrecorded(&self) -> i64 {
        self.count("SELECT count(*) FROM products WHERE next_due_ms = 0 OR claimed_by IS NOT NULL")
            .await
    }

    /// Messages still queued (dead letters apart).
    pub(crate) async fn queued(&self) -> i64 {
        self.count("SELECT count(*) FROM outbox WHERE dead_ms IS NULL")
            .await
    }

    async fn count(&self, sql: &str) -> i64 {
        self.0.query_one(sql, &[]).await.unwrap().get(0)
    }

    /// The pid of the replica holding the channel's delivery lease: the holder is
    /// `machine:pid:nonce`.
    async fn delivering_pid(&self) -> Option<u32> {
        let row = self
            .0
            .query_opt(
                "SELECT holder FROM leases WHERE name = $1",
                &[&format!("deliver:{CHANNEL}")],
            )
            .await
            .unwrap()?;
        let holder: String = row.get(0);
        holder.rsplit(':').nth(1)?.parse().ok()
    }
}

/// Runs one undisturbed cycle at `price` and waits until every product is recorded.
/// Returns the index of the cycle's first shop request.
async fn quiet_cycle(shop: &FakeShop, db: &Db, price: &str) -> usize {
    let from = shop.requests().len();
    put_prices(shop, price, Duration::ZERO);
    db.make_all_due().await;
    let deadline = Instant::now() + INTERVAL;
    until(deadline, || async {
        let fetched = fetches_since(shop, from).len();
        let unrecorded = db.unrecorded().await;
        if fetched == PRODUCTS && unrecorded == 0 {
            Ok(())
        } else {
            Err(format!(
                "a cycle at {price}: {fetched} products fetched, {unrecorded} not recorded"
            ))
        }
    })
    .await;
    from
}

/// A cycle back at the first price, which re-arms every watch (the trigger fires once per
/// crossing) and says nothing.
async fn rearm(shop: &FakeShop, channel: &FakeChannel, db: &Db) {
    let messages = channel.received().len();
    let from = quiet_cycle(shop, db, "100.00").await;
    assert_fetched_once(shop, from, "a re-arming cycle");
    assert_eq!(db.queued().await, 0, "re-arming queues nothing");
    assert_eq!(
        channel.received().len(),
        messages,
        "re-arming sends nothing"
    );
}

/// Waits until every conversation got an alert among the messages from `from` on and the
/// outbox is empty (nothing more can come); returns the alerts.
async fn all_alerted(
    channel: &FakeChannel,
    db: &Db,
    from: usize,
    deadline: Instant,
) -> BTreeMap<String, Vec<u64>> {
    until(deadline, || async {
        let alerts = alerts_since(&channel.received(), from);
        let queued = db.queued().await;
        if alerts.len() == PRODUCTS && queued == 0 {
            Ok(alerts)
        } else {
            Err(format!(
                "alerts to every conversation: {} got one, {queued} messages queued",
                alerts.len()
            ))
        }
    })
    .await
}

/// After a replica was killed at `killed_ms`: an alert came twice only if its first copy
/// was sent before the kill (sent, not yet recorded as sent), never more than twice.
fn assert_duplicates_only_across_the_kill(alerts: &BTreeMap<String, Vec<u64>>, killed_ms: u64) {
    for (c, at) in alerts {
        assert!(at.len() <= 2, "{c} got {} alerts: {at:?}", at.len());
        if at.len() == 2 {
            // The dead process's last bytes may still be on their way: half a second.
            assert!(
                at[0] <= killed_ms + 500,
                "{c} got its alert twice, both after the kill at {killed_ms}: {at:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_split_the_work_and_take_over_from_a_killed_one() {
    let Some(db) = TestDatabase::new("two_replicas_split_the_work_and_take_over_from_a_killed_one")
    else {
        return;
    };
    let started = Instant::now();
    let mut kills = Vec::new();
    let mut logs: Vec<(String, String)> = Vec::new();
    let shop = FakeShop::start().await;
    shop.record_requests();
    put_prices(&shop, "100.00", Duration::ZERO);
    // The channel stamps each arrival on a runtime of its own: on the test's, the polls
    // below would hold a stamp back now and then, and bunch arrivals that were apart.
    let stamping = Background::new();
    let channel = stamping.spawn(FakeChannel::start()).await.unwrap();
    let mut live = vec![
        Replica::start(&db, "replica-a").await,
        Replica::start(&db, "replica-b").await,
    ];
    // The replicas created the schema.
    let pg = Db(db.config.connect().await.unwrap());

    // 200 watches, one per conversation so that each alert is a message of its own, sent
    // to the two replicas in turn.
    let client = reqwest::Client::new();
    let addrs: Vec<String> = live.iter().map(|r| r.daemon.addr.clone()).collect();
    let statuses: Vec<u16> = stream::iter(0..PRODUCTS)
        .map(|i| {
            let mut watch = activity(
                CHANNEL,
                &channel.url,
                &conversation(i),
                &format!("watch {}", shop.url(&path(i))),
            );
            watch["id"] = format!("w{i}").into();
            let (client, addr) = (&client, &addrs[i % 2]);
            async move { post(client, addr, &watch).await }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    // Each first check once, whichever replica got the watch: the one holding the shop's
    // lease checks it, the other leaves it to that one's next tick.
    first_prices_sent(&channel, &pg, PRODUCTS, Instant::now() + INTERVAL).await;
    assert_fetched_once(&shop, 0, "first checks");

    // A watch sent to one replica is in the other's list.
    for (i, asked) in [(0, 1), (1, 0)] {
        let mut list = activity(CHANNEL, &channel.url, &conversation(i), "list");
        list["id"] = format!("list{i}").into();
        assert_eq!(post(&client, &addrs[asked], &list).await, 200);
        let reply_path = format!("/v3/conversations/{}/activities/list{i}", conversation(i));
        let received = channel.received();
        let reply = received
            .iter()
            .find(|r| r.path == reply_path)
            .unwrap_or_else(|| panic!("no reply to list on {}", live[asked].agent));
        assert!(
            reply.text().contains(&format!("Item {i:03}")) && reply.text().contains("100.00"),
            "{} lists what {} was told: {}",
            live[asked].agent,
            live[1 - asked].agent,
            reply.text()
        );
    }

    // 1, 2. An undisturbed cycle, every price 25 % down: each product checked once, each
    // alert delivered once.
    let from_message = channel.received().len();
    let from_fetch = quiet_cycle(&shop, &pg, "75.00").await;
    let alerts = all_alerted(&channel, &pg, from_message, Instant::now() + INTERVAL).await;
    assert_fetched_once(&shop, from_fetch, "the quiet cycle");
    let received = channel.received();
    for (c, at) in &alerts {
        assert_eq!(at.len(), 1, "{c} got its alert {} times", at.len());
    }
    for r in &received[from_message..] {
        assert!(
            proactive_to(r).is_none() || (is_alert(r) && r.text().contains("75.00")),
            "only the alerts: {}",
            r.text()
        );
    }

    // 4. The replica fetching the shop is killed mid-cycle; the other finishes it.
    rearm(&shop, &channel, &pg).await;
    let from_message = channel.received().len();
    let from_fetch = shop.requests().len();
    // Slow pages: the cycle takes seconds, one replica fetching PER_HOST at a time.
    put_prices(&shop, "75.00", Duration::from_millis(100));
    pg.make_all_due().await;
    let deadline = Instant::now() + INTERVAL;
    let fetcher = until(deadline, || async {
        let requests = shop.requests();
        let cycle = &requests[from_fetch..];
        match cycle.last() {
            Some(last) if cycle.len() >= PRODUCTS / 5 => Ok(last.user_agent.clone()),
            _ => Err(format!("the slow cycle under way: {} fetches", cycle.len())),
        }
    })
    .await;
    let index = live.iter().position(|r| r.agent == fetcher).unwrap();
    let killed = live.remove(index);
    logs.push((killed.agent.clone(), killed.daemon.kill9()));
    let killed_at = Instant::now();
    let killed_ms = now_ms();
    kills.push(killed_ms);
    let killed_fetch = shop.requests().len();
    let survivor = live[0].agent.clone();
    let before_kill = fetches_since(&shop, from_fetch);
    assert!(
        before_kill.values().flatten().all(|a| *a == fetcher),
        "one replica fetches the shop at a time: {before_kill:?}"
    );

    // The survivor takes the shop over once the dead one's lease has run out, at its next
    // tick.
    until(killed_at + LEASE + TICK + SLACK, || async {
        let requests = shop.requests();
        if requests[killed_fetch..]
            .iter()
            .any(|r| r.user_agent == survivor)
        {
            Ok(())
        } else {
            Err(format!("{survivor} to fetch after {fetcher} was killed"))
        }
    })
    .await;
    let alerts = all_alerted(&channel, &pg, from_message, killed_at + LEASE + INTERVAL).await;
    assert_eq!(pg.unrecorded().await, 0, "every product recorded");
    let fetches = fetches_since(&shop, from_fetch);
    assert_eq!(fetches.len(), PRODUCTS, "every product fetched");
    let again: Vec<_> = fetches.iter().filter(|(_, by)| by.len() > 1).collect();
    assert!(
        again.len() <= PER_HOST,
        "only the checks in flight at the kill are made again: {again:?}"
    );
    for (p, by) in &again {
        assert_eq!(
            by.as_slice(),
            [fetcher.clone(), survivor.clone()],
            "{p}: in flight at the kill, then the survivor's"
        );
    }
    assert_duplicates_only_across_the_kill(&alerts, killed_ms);

    // 4. The replica delivering the channel's messages is killed while alerts are queued;
    // the other sends them all.
    live.push(Replica::start(&db, "replica-c").await);
    rearm(&shop, &channel, &pg).await;
    let from_message = channel.received().len();
    let from_fetch = quiet_cycle(&shop, &pg, "75.00").await;
    assert_fetched_once(&shop, from_fetch, "the cycle before the delivery kill");
    // The channel's limit keeps most alerts queued for seconds: some are out, most wait.
    let deadline = Instant::now() + INTERVAL;
    until(deadline, || async {
        let sent = alerts_since(&channel.received(), from_message).len();
        if sent >= PRODUCTS / 10 {
            Ok(())
        } else {
            Err(format!("alerts on their way: {sent}"))
        }
    })
    .await;
    let pid = pg
        .delivering_pid()
        .await
        .expect("a replica holds the delivery lease");
    let index = live
        .iter()
        .position(|r| r.daemon.pid() == pid)
        .unwrap_or_else(|| panic!("the delivery lease is held by pid {pid}, not a replica"));
    let killed = live.remove(index);
    let deliverer = killed.agent.clone();
    logs.push((killed.agent.clone(), killed.daemon.kill9()));
    let killed_at = Instant::now();
    let killed_ms = now_ms();
    kills.push(killed_ms);
    let sent_before = alerts_since(&channel.received(), from_message).len();
    assert!(
        sent_before < PRODUCTS,
        "{deliverer} sent every alert before it was killed: nothing was left to take over"
    );
    let alerts = all_alerted(&channel, &pg, from_message, killed_at + LEASE + INTERVAL).await;
    assert_duplicates_only_across_the_kill(&alerts, killed_ms);
    eprintln!(
        "{deliverer} killed after {sent_before} alerts; {} sent twice",
        alerts.values().filter(|at| at.len() > 1).count()
    );

    // 5. One replica sends to the channel at a time: when the sender changes (a takeover,
    // or a lease that ran out while its holder was idle), the last one had stopped a
    // third of the lease time before the next could start, so its window could not
    // overlap the next one's. Told by the daemons' logs, which no stamping delay moves.
    for r in &live {
        logs.push((r.agent.clone(), r.daemon.text()));
    }
    let delivered = deliveries(&logs);
    assert!(
        delivered.len() >= 4 * PRODUCTS,
        "{} deliveries logged",
        delivered.len()
    );
    let mut handovers = Vec::new();
    for pair in delivered.windows(2) {
        let ((before, from), (after, to)) = (&pair[0], &pair[1]);
        if from != to {
            let gap = after.duration_since(*before).unwrap_or_default();
            handovers.push((from.clone(), to.clone(), gap));
            assert!(
                gap >= LEASE / 6,
                "{to} sent {gap:?} after {from}: both were sending to the channel"
            );
        }
    }
    // And the channel saw no more than its limit in any second, give or take the fake's
    // stamping (replies are answers, sent at once and not limited, so they are left out).
    let received = channel.received();
    let sends: Vec<u64> = received
        .iter()
        .filter(|r| proactive_to(r).is_some())
        .map(|r| r.at_ms)
        .collect();
    let most = most_in_any_span(&sends, 1_000);
    assert!(
        most <= CHANNEL_PER_SECOND + STAMP_JITTER_SENDS,
        "{most} sends within 1 s to a channel limited to {CHANNEL_PER_SECOND}/s: \
         {:?}; kills at {kills:?}; handovers {handovers:?}",
        densest_second(&received)
    );
    // Each first price once, the kills notwithstanding.
    let mut first_prices: BTreeMap<&str, usize> = BTreeMap::new();
    for r in received
        .iter()
        .filter(|r| r.text().contains("I will tell you when"))
    {
        *first_prices
            .entry(proactive_to(r).unwrap_or(""))
            .or_default() += 1;
    }
    assert!(
        first_prices.len() == PRODUCTS && first_prices.values().all(|n| *n == 1),
        "{first_prices:?}"
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM outbox WHERE dead_ms IS NOT NULL")
            .await,
        0,
        "no dead letters"
    );
    for replica in live {
        replica.daemon.stop();
    }
    eprintln!(
        "two replicas: {} sends, at most {most} within 1 s ({} within 900 ms), \
         handovers {handovers:?}, in {:?}",
        sends.len(),
        most_in_any_span(&sends, 900),
        started.elapsed()
    );
}

/// When each replica logged a message delivered (the channel took it), in time order.
fn deliveries(logs: &[(String, String)]) -> Vec<(SystemTime, String)> {
    let mut all = Vec::new();
    for (agent, log) in logs {
        for line in log.lines().filter(|l| l.contains("message delivered")) {
            let at = line.split_whitespace().next().unwrap_or("");
            let at = humantime::parse_rfc3339(at).unwrap_or_else(|e| panic!("{e}: {line}"));
            all.push((at, agent.clone()));
        }
    }
    all.sort();
    all
}

/// The proactive sends of the busiest second: when (ms since the epoch) and what, for a
/// failure to show.
fn densest_second(received: &[Recorded]) -> Vec<(u64, String)> {
    let sends: Vec<&Recorded> = received
        .iter()
        .filter(|r| proactive_to(r).is_some())
        .collect();
    let mut best: &[&Recorded] = &[];
    for (i, r) in sends.iter().enumerate() {
        let n = sends[i..]
            .iter()
            .take_while(|s| s.at_ms < r.at_ms + 1_000)
            .count();
        if n > best.len() {
            best = &sends[i..i + n];
        }
    }
    best.iter()
        .map(|r| (r.at_ms, r.text().chars().take(40).collect()))
        .collect()
}

pub(crate) async fn post(client: &reqwest::Client, addr: &str, activity: &Value) -> u16 {
    client
        .post(format!("http://{addr}/api/messages"))
        .json(activity)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}
