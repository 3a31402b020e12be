//! Crash recovery: the real `pricewatch` binary killed with SIGKILL at random moments
//! while a driver creates watches and moves prices, restarted on the same data directory
//! each time, then run once more without kills until its outbox is empty. What must
//! hold is checked at the end (`model.rs` decides, from what the channel received, what
//! the store kept and when the kills were):
//!
//! - every acknowledged watch exists: a `watch` turn answered 200 whose reply (stored
//!   or "you already watch") reached the channel;
//! - every first price and alert the store committed reached the channel at least once,
//!   and nothing reached it that the store does not account for (durable before told);
//! - a message arrived twice only across a kill;
//! - no conversation received more than its rate limit allows in any window, across
//!   restarts too;
//! - every start opened the store and reached its listening line, with no error logged.
//!
//! The run is seeded: the seed is printed first, `PW_CRASH_SEED=<seed>` replays the same
//! choices (what the driver does and when it kills; the daemon's own timing still
//! varies), `PW_CRASH_KILLS=<n>` kills more often than the default 50.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/fakes.rs"]
mod fakes;
#[path = "crash/model.rs"]
mod model;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use pricewatch::clock::{Clock, SystemClock};
use pricewatch::random::{RandomSource, SplitMix64};
use pricewatch::store::Store;
use rust_decimal::Decimal;
use serde_json::json;
use tokio::task::JoinSet;

use daemon::{write_config, RunningDaemon};
use fakes::{open_store, FakeChannel, FakeShop, Page, Recorded};
use model::{Arrival, Kill};

const PRODUCTS: usize = 60;
const CONVERSATIONS: usize = 8;
const DEFAULT_KILLS: usize = 50;
/// Turns in flight at once: enough that a kill often lands in the middle of one.
const TURNS_IN_FLIGHT: usize = 6;
/// `[rate_limits.emulator] per_conversation`: small enough that deliveries queue behind it.
const RATE_COUNT: usize = 2;
/// The window is 1 s; it is checked over 980 ms because the channel stamps an arrival
/// when its handler runs, which a loaded test machine delays by a few milliseconds more
/// than the daemon's own margin allows for. A burst after a restart (sends a few
/// milliseconds apart) is caught all the same.
const RATE_SPAN_MS: u64 = 980;

/// The daemon under test: checks every second for due products (a new watch's product is
/// checked at once), a short digest window so that deliveries happen between kills, the
/// fake shop allowed on loopback with no gap between requests, and a small rate limit.
/// The trigger settings are written out because the model replays them.
fn config(checks: bool) -> String {
    format!(
        "\n[alerts]\ndigest_window = \"100ms\"\nhysteresis = 2\nconfirmations = 1\n\
         default_drop = 20\nmax_watches_per_conversation = 200\n\n\
         [schedule]\nenabled = {checks}\ntick = \"* * * * * *\"\ninterval = \"1m\"\njitter = 50\n\n\
         [fetch]\nallow_networks = [\"127.0.0.0/8\"]\nhost_gap = \"0s\"\nper_host_concurrency = 8\n\n\
         [rate_limits.emulator]\nper_conversation = [\"{RATE_COUNT}/1s\"]\nper_channel = []\n"
    )
}

struct Rng(SplitMix64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n.max(1)
    }

    fn ms(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

fn now_ms() -> u64 {
    SystemClock.now_ms()
}

/// Each product's price: high (100.00 and up) or low (50.00 and up), moved by the
/// driver. Every move takes the product's next number of cents, so no product ever shows
/// the same amount twice and a message's amount names the check that read it.
struct Prices {
    moves: Vec<i64>,
    low: Vec<bool>,
}

impl Prices {
    fn new() -> Prices {
        Prices {
            moves: vec![0; PRODUCTS],
            low: vec![false; PRODUCTS],
        }
    }

    fn text(&self, p: usize) -> String {
        let base = if self.low[p] { 50 } else { 100 };
        let cents = base * 100 + self.moves[p];
        format!("{}.{:02}", cents / 100, cents % 100)
    }

    fn flip(&mut self, p: usize) -> String {
        self.moves[p] += 1;
        // Far below a line (80 % of a reference of 100.00 or more): every low price is an
        // alert for an armed watch, every high one re-arms it.
        assert!(self.moves[p] < 1_000, "too many moves of one product");
        self.low[p] = !self.low[p];
        self.text(p)
    }
}

fn page(p: usize, price: &str) -> Page {
    Page::product(&format!("Item P{p}"), price)
}

/// One turn the driver posted.
#[derive(Debug)]
struct Turn {
    conversation: usize,
    id: String,
    /// The product of a `watch` turn.
    watch: Option<usize>,
    status: Result<u16, String>,
}

struct Driver {
    rng: Rng,
    shop: FakeShop,
    channel: FakeChannel,
    client: reqwest::Client,
    prices: Prices,
    /// Watches acknowledged so far, by conversation and product.
    acknowledged: BTreeSet<(usize, usize)>,
    turns: JoinSet<Turn>,
    done: Vec<Turn>,
    next_id: u64,
    last_moved: usize,
}

impl Driver {
    fn activity(&mut self, conversation: usize, text: &str) -> (String, serde_json::Value) {
        self.next_id += 1;
        let id = format!("t{}", self.next_id);
        let activity = json!({
            "type": "message", "id": id, "channelId": "emulator",
            "serviceUrl": self.channel.url, "locale": "en-US",
            "from": {"id": format!("u{conversation}")}, "recipient": {"id": "bot"},
            "conversation": {"id": format!("c{conversation}")}, "text": text,
        });
        (id, activity)
    }

    /// Posts a turn in the background; its outcome is collected later.
    fn post(&mut self, addr: &str, conversation: usize, text: &str, watch: Option<usize>) {
        let (id, activity) = self.activity(conversation, text);
        let client = self.client.clone();
        let url = format!("http://{addr}/api/messages");
        self.turns.spawn(async move {
            let status = client
                .post(url)
                .json(&activity)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string());
            Turn {
                conversation,
                id,
                watch,
                status,
            }
        });
    }

    /// A `watch` turn, mostly for the product moved last: its first check steps every
    /// watch of the product at once, so moved prices turn into alerts within a segment
    /// instead of at the next scheduled check (a minute later).
    fn watch(&mut self, addr: &str) {
        let product = if self.rng.below(10) < 6 {
            self.last_moved
        } else {
            self.rng.below(PRODUCTS as u64) as usize
        };
        let open: Vec<usize> = (0..CONVERSATIONS)
            .filter(|c| !self.acknowledged.contains(&(*c, product)))
            .collect();
        let conversation = if open.is_empty() {
            self.rng.below(CONVERSATIONS as u64) as usize
        } else {
            open[self.rng.below(open.len() as u64) as usize]
        };
        let text = format!("watch {}/p/{product}", self.shop.base);
        self.post(addr, conversation, &text, Some(product));
    }

    fn move_price(&mut self) {
        let p = self.rng.below(PRODUCTS as u64) as usize;
        let price = self.prices.flip(p);
        self.shop.put(&format!("/p/{p}"), page(p, &price));
        self.last_moved = p;
    }

    /// One step: a watch, a price move or a `list`.
    fn step(&mut self, addr: &str) {
        match self.rng.below(100) {
            0..45 => self.watch(addr),
            45..92 => self.move_price(),
            _ => {
                let c = self.rng.below(CONVERSATIONS as u64) as usize;
                self.post(addr, c, "list", None);
            }
        }
    }

    /// Drives until `until`, a step every 20 to 120 ms, with at most [`TURNS_IN_FLIGHT`]
    /// turns outstanding.
    async fn drive(&mut self, addr: &str, until: tokio::time::Instant) {
        while tokio::time::Instant::now() < until {
            while self.turns.len() >= TURNS_IN_FLIGHT {
                if let Some(Ok(turn)) = self.turns.join_next().await {
                    self.finished(turn);
                }
            }
            self.step(addr);
            let pause = self.rng.ms(20, 120);
            tokio::time::sleep_until(until.min(tokio::time::Instant::now() + pause)).await;
        }
    }

    /// Waits for every turn in flight (after a kill they end at once).
    async fn settle(&mut self) {
        while let Some(joined) = self.turns.join_next().await {
            let turn = joined.expect("a turn task");
            self.finished(turn);
        }
    }

    /// A `watch` turn is acknowledged when it was answered 200 and its reply (stored, or
    /// already watched) reached the channel: the user was told the watch exists.
    fn finished(&mut self, turn: Turn) {
        if let (Ok(200), Some(product)) = (&turn.status, turn.watch) {
            let path = format!(
                "/v3/conversations/c{}/activities/{}",
                turn.conversation, turn.id
            );
            let confirmed = self.channel.received().iter().any(|r| {
                r.path == path
                    && (r.text().starts_with("Watch #")
                        || r.text().starts_with("You already watch"))
            });
            if confirmed {
                self.acknowledged.insert((turn.conversation, product));
            }
        }
        self.done.push(turn);
    }
}

/// Lines of a daemon's log that say something went wrong.
fn errors_in(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(" ERROR ") || l.contains("cannot open the data directory"))
        .map(str::to_owned)
        .collect()
}

/// `pricewatch_outbox_messages` from the daemon's `/metrics`.
async fn outbox_size(client: &reqwest::Client, addr: &str) -> Option<u64> {
    let text = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("pricewatch_outbox_messages "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

async fn start(file: &Path, seed: u64) -> RunningDaemon {
    RunningDaemon::start(file)
        .await
        .unwrap_or_else(|log| panic!("PW_CRASH_SEED={seed}: a start failed: {log}"))
}

fn proactive(received: &[Recorded]) -> Vec<Arrival> {
    received
        .iter()
        .filter_map(|r| {
            // A reply's path ends in the activity it answers; a proactive message's does not.
            let conversation = r
                .path
                .strip_prefix("/v3/conversations/")?
                .strip_suffix("/activities")?;
            Some(Arrival {
                conversation: conversation.to_owned(),
                at_ms: r.at_ms,
                text: r.text().to_owned(),
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_loses_nothing_acknowledged_or_committed() {
    let seed = env_number("PW_CRASH_SEED").unwrap_or_else(now_ms);
    let kills = env_number("PW_CRASH_KILLS").map_or(DEFAULT_KILLS, |k| k as usize);
    // Printed first (and shown by `cargo test` when the test fails), so any run replays.
    println!("crash harness: PW_CRASH_SEED={seed} PW_CRASH_KILLS={kills}");
    let started = std::time::Instant::now();

    let shop = FakeShop::start().await;
    let prices = Prices::new();
    for p in 0..PRODUCTS {
        shop.put(&format!("/p/{p}"), page(p, &prices.text(p)));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), &config(true));
    let mut driver = Driver {
        rng: Rng(SplitMix64::new(seed)),
        shop,
        channel: FakeChannel::start().await,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        prices,
        acknowledged: BTreeSet::new(),
        turns: JoinSet::new(),
        done: Vec::new(),
        next_id: 0,
        last_moved: 0,
    };

    let mut kill_times = Vec::new();
    let mut errors = Vec::new();
    for run in 0..kills {
        let daemon = start(&file, seed).await;
        let addr = daemon.addr.clone();
        let until = tokio::time::Instant::now() + driver.rng.ms(150, 1_500);
        driver.drive(&addr, until).await;
        // Where the kill lands: anywhere, right after a turn was posted (mid-turn), or
        // right after the channel received something (mid-delivery, before the daemon has
        // made the message's removal durable).
        match driver.rng.below(3) {
            0 => {}
            1 => {
                driver.watch(&addr);
                tokio::time::sleep(driver.rng.ms(0, 15)).await;
            }
            _ => {
                let seen = driver.channel.count();
                let give_up = tokio::time::Instant::now() + Duration::from_millis(1_500);
                while driver.channel.count() == seen && tokio::time::Instant::now() < give_up {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                tokio::time::sleep(driver.rng.ms(0, 10)).await;
            }
        }
        let from_ms = now_ms();
        let log = daemon.kill9();
        kill_times.push(Kill {
            from_ms,
            to_ms: now_ms(),
        });
        errors.extend(
            errors_in(&log)
                .into_iter()
                .map(|l| format!("run {run}: {l}")),
        );
        driver.settle().await;
    }

    // The last run: no kill, no checks (so nothing new is committed), until the outbox is
    // empty; then a clean stop, and the store read back.
    write_config(dir.path(), &config(false));
    let daemon = start(&file, seed).await;
    let drain_until = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if outbox_size(&driver.client, &daemon.addr).await == Some(0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < drain_until,
            "PW_CRASH_SEED={seed}: the outbox did not drain within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, log) = daemon.terminate();
    assert_eq!(
        code,
        Some(0),
        "PW_CRASH_SEED={seed}: the last run's exit:\n{log}"
    );
    errors.extend(
        errors_in(&log)
            .into_iter()
            .map(|l| format!("last run: {l}")),
    );

    let store = open_store(&dir.path().join("data")).unwrap();
    let snapshot = store.snapshot().await.unwrap();
    drop(store);
    let received = driver.channel.received();
    let arrivals = proactive(&received);
    let mut failures = Vec::new();

    let held: BTreeSet<(usize, usize)> = snapshot
        .watches
        .iter()
        .filter_map(|w| {
            let c = w
                .conversation
                .conversation_id
                .strip_prefix('c')?
                .parse()
                .ok()?;
            let p = model::product_of(w.url.as_str()).ok()? as usize;
            Some((c, p))
        })
        .collect();
    let lost_watches: Vec<_> = driver.acknowledged.difference(&held).collect();
    for &&(c, p) in &lost_watches {
        // Every turn about it, with what the bot replied, to see how it was acknowledged.
        let turns: Vec<String> = driver
            .done
            .iter()
            .filter(|t| t.conversation == c && t.watch == Some(p))
            .map(|t| {
                let path = format!("/v3/conversations/c{c}/activities/{}", t.id);
                let reply = received
                    .iter()
                    .find(|r| r.path == path)
                    .map(|r| format!("{} at {}", r.text(), r.at_ms));
                format!("{} {:?}: {reply:?}", t.id, t.status)
            })
            .collect();
        failures.push(format!(
            "acknowledged watch missing: /p/{p} in c{c}; its turns: {turns:#?}"
        ));
    }
    if !snapshot.queued.is_empty() || !snapshot.dead_letters.is_empty() {
        failures.push(format!(
            "left in the outbox: {:?}; dead letters: {:?}",
            snapshot.queued, snapshot.dead_letters
        ));
    }
    let committed = model::committed(&snapshot, Decimal::TWO).unwrap_or_else(|e| {
        failures.push(format!("the store disagrees with itself: {e}"));
        BTreeSet::new()
    });
    let got = model::received(&arrivals).unwrap_or_else(|e| {
        failures.push(format!("an unexpected message: {e}"));
        BTreeMap::new()
    });
    let lost: Vec<_> = committed.iter().filter(|k| !got.contains_key(k)).collect();
    if !lost.is_empty() {
        failures.push(format!("committed but never delivered: {lost:#?}"));
    }
    let phantom: Vec<_> = got.keys().filter(|k| !committed.contains(k)).collect();
    if !phantom.is_empty() {
        failures.push(format!("delivered but not committed: {phantom:#?}"));
    }
    let duplicates = model::unexplained_duplicates(&got, &kill_times);
    if !duplicates.is_empty() {
        failures.push(format!(
            "delivered twice with no kill in between (key, first, again): {duplicates:#?}"
        ));
    }
    let too_fast = model::rate_violations(&arrivals, RATE_COUNT, RATE_SPAN_MS);
    for (conversation, most, times) in &too_fast {
        let near: Vec<_> = kill_times
            .iter()
            .filter(|k| k.to_ms + RATE_SPAN_MS >= times[0] && k.from_ms <= times[times.len() - 1])
            .collect();
        failures.push(format!(
            "{conversation}: {most} messages within {RATE_SPAN_MS} ms (limit {RATE_COUNT}), \
             at {times:?}; kills around them: {near:?}"
        ));
    }
    if !errors.is_empty() {
        failures.push(format!("errors logged: {errors:#?}"));
    }

    let alerts = committed
        .iter()
        .filter(|k| k.kind == model::Kind::Alert)
        .count();
    let repeats: usize = got.values().map(|t| t.len() - 1).sum();
    println!(
        "crash harness: {kills} kills in {:.1?}; {} turns, {} watches acknowledged, {} held; \
         {} first prices and {alerts} alerts committed; {} proactive messages received, \
         {repeats} repeats across kills",
        started.elapsed(),
        driver.done.len(),
        driver.acknowledged.len(),
        snapshot.watches.len(),
        committed.len() - alerts,
        arrivals.len(),
    );
    assert!(
        failures.is_empty(),
        "PW_CRASH_SEED={seed} PW_CRASH_KILLS={kills}:\n{}",
        failures.join("\n")
    );
    // A harness that saw no alerts proves nothing about them.
    assert!(
        alerts >= 10,
        "PW_CRASH_SEED={seed}: only {alerts} alerts were committed"
    );
}
