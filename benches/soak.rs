//! Soak (issue 13): turns, polling and alert delivery together, for a long time, against
//! the real release binary in a child process, watching for what only time shows: memory
//! that grows, file descriptors that leak, a data directory that never stops growing,
//! latency that drifts.
//!
//! 1. **Fakes** (this process, `tests/common/fakes.rs`): a shop serving `PW_SOAK_PRODUCTS`
//!    (default 10,000) small JSON-LD product pages at `/p/{i}`, each with an ETag, so an
//!    unchanged page answers 304; a channel (`FakeChannel`, arrivals only) taking the
//!    replies and the alerts.
//! 2. **Setup** (not measured): the store seeded before the daemon starts, as the poll
//!    bench seeds it (`open_store`): one conversation reference per 10 watches (channel
//!    `emulator`, the fake channel as `serviceUrl`), one watch per product (drop of 20 %).
//!    Every product is due at once.
//! 3. **Daemon**: `pricewatch serve` with a tick every second, an interval of one minute
//!    (the shortest allowed) so every product is checked about once a minute, the gate at
//!    32 global and per host with no gap, loopback allowed, and a per-conversation rate
//!    limit high enough that deliveries are not the bottleneck. It logs warnings only.
//! 4. **Load, for `PW_SOAK_SECS`** (default 600): `PW_SOAK_TURN_RATE` turns per second
//!    (default 50, open loop: a turn is sent on time whether or not the previous ones
//!    answered), each from a random seeded conversation, `list` (60 %), `help` (30 %) or
//!    `watch` of a random product (10 %, which adds a watch until the conversation has
//!    every one it asked for, or answers that it already watches it); every
//!    `PW_SOAK_MOVE_SECS` (default 10) 1 % of the products change price, down 25 % or
//!    back up, with a new ETag, so alerts fire all along.
//! 5. **Reports** every `PW_SOAK_REPORT_SECS` (default 30): turns/s and p99 turn latency
//!    over the window, checks/s and deliveries (`GET /metrics`: `pricewatch_checks_total`,
//!    `pricewatch_deliveries_total{outcome="sent"}`), the daemon's RSS, its open file
//!    descriptors (`/proc/<pid>/fd`) and the data directory's size. At the end a summary:
//!    throughput, p99 over the whole run, RSS at the end of the warm-up
//!    (`PW_SOAK_WARMUP_SECS`, default 60: the first full poll cycle, first prices
//!    delivered) against the end, fds likewise, data directory growth.
//!
//! Exit 1 when the run is broken: a turn failed or answered other than 200, the channel got
//! a request that was not an activity, nothing was checked or delivered, the daemon logged
//! an error or did not stop cleanly on SIGTERM. A growth is reported, not failed: a soak is
//! read by a person.
//!
//! `cargo bench --bench soak`. Without `--bench` (as `cargo test --benches` runs it) it is
//! a smoke run: 200 products for 8 seconds.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pricewatch::clock::{Clock, SystemClock};
use pricewatch::domain::{NewWatch, ProductUrl, Rule};
use pricewatch::inbound::activity::{
    ChannelAccount, ConversationAccount, ConversationKey, ConversationReference,
};
use pricewatch::random::{RandomSource, SplitMix64};
use pricewatch::store::{AddWatch, Store};
use rust_decimal::Decimal;

#[path = "../tests/common/fakes.rs"]
mod fakes;
#[path = "common/procstat.rs"]
mod procstat;

use fakes::{open_store, FakeChannel, FakeShop, Keep, Page};
use procstat::env_usize;

const WATCHES_PER_CONVERSATION: usize = 10;
const CHANNEL_ID: &str = "emulator";
const LISTENING: &str = "pricewatch is listening";
/// Warnings every run prints: the bench runs the daemon in local-development mode.
const EXPECTED_WARNING: &str = "LOCAL-DEVELOPMENT MODE";
const HIGH_PRICE: &str = "100.00";
const LOW_PRICE: &str = "75.00";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("soak bench: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Settings {
    secs: u64,
    products: usize,
    turn_rate: u64,
    move_secs: u64,
    report_secs: u64,
    warmup_secs: u64,
    smoke: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let smoke = !std::env::args().any(|a| a == "--bench");
        let secs = env_usize("PW_SOAK_SECS", if smoke { 8 } else { 600 }) as u64;
        Settings {
            secs,
            products: env_usize("PW_SOAK_PRODUCTS", if smoke { 200 } else { 10_000 }).max(10),
            turn_rate: env_usize("PW_SOAK_TURN_RATE", 50).max(1) as u64,
            move_secs: env_usize("PW_SOAK_MOVE_SECS", if smoke { 2 } else { 10 }).max(1) as u64,
            report_secs: env_usize("PW_SOAK_REPORT_SECS", if smoke { 4 } else { 30 }).max(1) as u64,
            warmup_secs: (env_usize("PW_SOAK_WARMUP_SECS", if smoke { 4 } else { 60 }) as u64)
                .min(secs),
            smoke,
        }
    }
}

fn run() -> Result<ExitCode, String> {
    let s = Settings::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(soak(&s))
}

// ---------------------------------------------------------------------------------------
// The shop's prices

/// Each product's current price and page version, so a move gives a new ETag.
struct Prices {
    low: Vec<bool>,
    version: Vec<u32>,
}

fn page(i: usize, low: bool, version: u32) -> Page {
    let price = if low { LOW_PRICE } else { HIGH_PRICE };
    Page::product(&format!("Soak item {i}"), price).with_etag(&format!("\"p{i}-v{version}\""))
}

/// Moves `count` random products: a high price goes down (an alert), a low one back up.
fn move_prices(shop: &FakeShop, prices: &mut Prices, rng: &mut SplitMix64, count: usize) {
    let n = prices.low.len();
    for _ in 0..count {
        let i = (rng.next_u64() % n as u64) as usize;
        prices.low[i] = !prices.low[i];
        prices.version[i] += 1;
        shop.put(
            &format!("/p/{i}"),
            page(i, prices.low[i], prices.version[i]),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Setup

fn conversation_id(c: usize) -> String {
    format!("soak-{c}")
}

async fn seed(
    data: &Path,
    shop: &FakeShop,
    channel: &FakeChannel,
    products: usize,
) -> Result<(), String> {
    let store = open_store(data).map_err(|e| e.to_string())?;
    let conversations = products.div_ceil(WATCHES_PER_CONVERSATION);
    for c in 0..conversations {
        let reference = ConversationReference {
            channel_id: CHANNEL_ID.to_owned(),
            service_url: channel.url.clone(),
            conversation: ConversationAccount {
                id: conversation_id(c),
                ..Default::default()
            },
            user: Some(ChannelAccount {
                id: format!("u{c}"),
                ..Default::default()
            }),
            bot: ChannelAccount {
                id: "b1".to_owned(),
                ..Default::default()
            },
            locale: Some("en-US".to_owned()),
        };
        store
            .upsert_reference(&reference)
            .await
            .map_err(|e| format!("reference: {e}"))?;
    }
    let now = SystemClock.now_ms();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..products {
        let url = ProductUrl::parse(&shop.url(&format!("/p/{i}")), 2048)
            .map_err(|e| format!("product URL: {e}"))?;
        let store = Arc::clone(&store);
        let new = NewWatch {
            conversation: ConversationKey {
                channel_id: CHANNEL_ID.to_owned(),
                conversation_id: conversation_id(i / WATCHES_PER_CONVERSATION),
            },
            user: None,
            url,
            rule: Rule::Drop {
                percent: Decimal::from(20),
            },
            created_at_ms: now,
        };
        tasks.spawn(async move { store.add_watch(new, 1000).await });
        // Enough in flight that the group-commit flusher shares fsyncs.
        while tasks.len() >= 256 {
            check_added(tasks.join_next().await)?;
        }
    }
    while let Some(r) = tasks.join_next().await {
        check_added(Some(r))?;
    }
    store.flush().await.map_err(|e| e.to_string())?;
    Ok(())
}

fn check_added(
    r: Option<Result<Result<AddWatch, pricewatch::store::StoreError>, tokio::task::JoinError>>,
) -> Result<(), String> {
    match r {
        Some(Ok(Ok(AddWatch::Added(_)))) | None => Ok(()),
        Some(Ok(Ok(other))) => Err(format!("seed watch not added: {other:?}")),
        Some(Ok(Err(e))) => Err(format!("seed watch: {e}")),
        Some(Err(e)) => Err(format!("seed task: {e}")),
    }
}

// ---------------------------------------------------------------------------------------
// The daemon

fn config(dir: &Path) -> Result<PathBuf, String> {
    let file = dir.join("pricewatch.toml");
    let data = toml::Value::String(dir.join("data").display().to_string()).to_string();
    let text = format!(
        "[server]\nbind = \"127.0.0.1:0\"\n\n[storage]\npath = {data}\n\n[log]\nlevel = \"warn\"\n\n\
         [alerts]\nmax_watches_per_conversation = 200\n\n\
         [schedule]\nenabled = true\ntick = \"* * * * * *\"\ninterval = \"1m\"\njitter = 10\n\n\
         [fetch]\nallow_networks = [\"127.0.0.0/8\"]\nhost_gap = \"0s\"\n\
         global_concurrency = 32\nper_host_concurrency = 32\n\n\
         [rate_limits.{CHANNEL_ID}]\nper_conversation = [\"50/1s\"]\nper_channel = []\n"
    );
    std::fs::write(&file, text).map_err(|e| format!("cannot write the config: {e}"))?;
    Ok(file)
}

struct Daemon {
    child: Option<Child>,
    addr: String,
    /// Log lines that are neither the listening line nor the expected warning.
    unexpected: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    fn start(config: &Path) -> Result<Daemon, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pricewatch"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn,pricewatch::app=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the daemon: {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let unexpected = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&unexpected);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(LISTENING) {
                    let addr = line.split("addr=").nth(1).unwrap_or("");
                    let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_owned());
                } else if !line.contains(EXPECTED_WARNING)
                    && (line.contains("WARN") || line.contains("ERROR"))
                {
                    seen.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            }
        });
        let mut daemon = Daemon {
            child: Some(child),
            addr: String::new(),
            unexpected,
            reader: Some(reader),
        };
        daemon.addr = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| "the daemon printed no listening line within 60 s".to_owned())?;
        Ok(daemon)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM, then its exit status (killed after 30 s).
    fn stop(&mut self) -> Result<std::process::ExitStatus, String> {
        let mut child = self.child.take().ok_or("already stopped")?;
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if !sent || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the daemon did not stop on SIGTERM within 30 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        Ok(status)
    }

    fn unexpected_log(&self) -> Vec<String> {
        self.unexpected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Measurements

/// One sample of the daemon and its counters.
#[derive(Clone, Copy, Default)]
struct Sample {
    at: f64,
    checks: f64,
    delivered: f64,
    rss_mb: f64,
    fds: usize,
    data_mb: f64,
}

fn proc_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb * 1024.0 / 1e6)
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The sum of every sample of `family` in a Prometheus text exposition whose labels
/// contain `labels` (empty: all).
fn metric_sum(text: &str, family: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn sample(
    client: &reqwest::Client,
    daemon: &Daemon,
    data: &Path,
    started: Instant,
) -> Result<Sample, String> {
    let text = client
        .get(format!("http://{}/metrics", daemon.addr))
        .send()
        .await
        .map_err(|e| format!("GET /metrics: {e}"))?
        .text()
        .await
        .map_err(|e| format!("GET /metrics: {e}"))?;
    Ok(Sample {
        at: started.elapsed().as_secs_f64(),
        checks: metric_sum(&text, "pricewatch_checks_total", ""),
        delivered: metric_sum(&text, "pricewatch_deliveries_total", "outcome=\"sent\""),
        rss_mb: proc_rss_mb(daemon.pid()),
        fds: fd_count(daemon.pid()),
        data_mb: dir_bytes(data) as f64 / 1e6,
    })
}

fn p99_ms(latencies: &mut [Duration]) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    latencies.sort_unstable();
    let i = ((latencies.len() as f64 * 0.99).ceil() as usize).clamp(1, latencies.len()) - 1;
    latencies[i].as_secs_f64() * 1e3
}

/// Turns answered (latency kept per report window and for the whole run) and failed.
#[derive(Default)]
struct Turns {
    window: Vec<Duration>,
    all: Vec<Duration>,
    failed: u64,
    first_failure: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------
// The run

async fn soak(s: &Settings) -> Result<ExitCode, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    let shop = FakeShop::start().await;
    let channel = FakeChannel::start_with(Arc::new(SystemClock), Keep::Arrivals).await;
    let mut prices = Prices {
        low: vec![false; s.products],
        version: vec![0; s.products],
    };
    for i in 0..s.products {
        shop.put(&format!("/p/{i}"), page(i, false, 0));
    }

    let setup = Instant::now();
    seed(&data, &shop, &channel, s.products).await?;
    let conversations = s.products.div_ceil(WATCHES_PER_CONVERSATION);
    println!(
        "setup: {} watches in {conversations} conversations seeded in {:.1} s",
        s.products,
        setup.elapsed().as_secs_f64()
    );

    let config = config(dir.path())?;
    let mut daemon = Daemon::start(&config)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let first = sample(&client, &daemon, &data, started).await?;

    // The turn load: open loop, one turn every 1/rate s.
    let turns = Arc::new(Mutex::new(Turns::default()));
    let sent = Arc::new(AtomicU64::new(0));
    let load = {
        let turns = Arc::clone(&turns);
        let sent = Arc::clone(&sent);
        let client = client.clone();
        let url = format!("http://{}/api/messages", daemon.addr);
        let service_url = channel.url.clone();
        let shop_base = shop.base.clone();
        let products = s.products as u64;
        let period = Duration::from_secs_f64(1.0 / s.turn_rate as f64);
        tokio::spawn(async move {
            let mut rng = SplitMix64::new(7);
            let mut every = tokio::time::interval(period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            loop {
                every.tick().await;
                let n = sent.fetch_add(1, Ordering::Relaxed);
                let c = rng.next_u64() % conversations as u64;
                let text = match rng.next_u64() % 10 {
                    0..=5 => "list".to_owned(),
                    6..=8 => "help".to_owned(),
                    _ => format!("watch {shop_base}/p/{}", rng.next_u64() % products),
                };
                let body = serde_json::json!({
                    "type": "message", "id": format!("m{n}"), "channelId": CHANNEL_ID,
                    "serviceUrl": service_url, "locale": "en-US",
                    "from": {"id": format!("u{c}")}, "recipient": {"id": "b1"},
                    "conversation": {"id": conversation_id(c as usize)},
                    "text": text,
                });
                let client = client.clone();
                let url = url.clone();
                let turns = Arc::clone(&turns);
                tokio::spawn(async move {
                    let t = Instant::now();
                    let r = client.post(&url).json(&body).send().await;
                    let took = t.elapsed();
                    let mut turns = lock(&turns);
                    match r {
                        Ok(r) if r.status().as_u16() == 200 => {
                            turns.window.push(took);
                            turns.all.push(took);
                        }
                        other => {
                            turns.failed += 1;
                            if turns.first_failure.is_none() {
                                turns.first_failure = Some(match other {
                                    Ok(r) => format!("status {}", r.status()),
                                    Err(e) => e.to_string(),
                                });
                            }
                        }
                    }
                });
            }
        })
    };

    println!(
        "\n| t | turns/s | p99 turn | checks/s | deliveries (total) | daemon RSS | fds | data dir |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rng = SplitMix64::new(13);
    let moves_per_step = (s.products / 100).max(1);
    let end = started + Duration::from_secs(s.secs);
    let mut next_move = started + Duration::from_secs(s.move_secs);
    let mut next_report = started + Duration::from_secs(s.report_secs.min(s.secs));
    let warmup_at = started + Duration::from_secs(s.warmup_secs);
    let mut warmup: Option<Sample> = None;
    let mut last = first;
    let mut samples = vec![first];
    loop {
        let now = Instant::now();
        if now >= next_move {
            move_prices(&shop, &mut prices, &mut rng, moves_per_step);
            next_move += Duration::from_secs(s.move_secs);
        }
        if warmup.is_none() && now >= warmup_at {
            warmup = Some(sample(&client, &daemon, &data, started).await?);
        }
        if now >= next_report || now >= end {
            let cur = sample(&client, &daemon, &data, started).await?;
            let mut window = std::mem::take(&mut lock(&turns).window);
            let span = (cur.at - last.at).max(1e-9);
            println!(
                "| {:.0} s | {:.0} | {:.1} ms | {:.0} | {:.0} | {:.1} MB | {} | {:.1} MB |",
                cur.at,
                window.len() as f64 / span,
                p99_ms(&mut window),
                (cur.checks - last.checks) / span,
                cur.delivered,
                cur.rss_mb,
                cur.fds,
                cur.data_mb
            );
            last = cur;
            samples.push(cur);
            next_report += Duration::from_secs(s.report_secs);
            if now >= end {
                break;
            }
        }
        let wake = next_move
            .min(next_report)
            .min(end)
            .min(if warmup.is_none() { warmup_at } else { end });
        tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
    }
    load.abort();
    // Turns still in flight finish (or fail) before the counts are read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end_sample = last;
    let warm = warmup.unwrap_or(first);
    let status = daemon.stop();
    let unexpected_log = daemon.unexpected_log();
    let (mut all, failed, first_failure) = {
        let mut t = lock(&turns);
        (std::mem::take(&mut t.all), t.failed, t.first_failure.take())
    };
    let answered = all.len();
    let span = end_sample.at - first.at;

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\n{} s ({}), {} products and watches, {conversations} conversations, {} turns/s offered, 1 % of prices moved every {} s; {cores} CPUs visible",
        s.secs,
        if s.smoke { "smoke run, no --bench" } else { "full run" },
        s.products,
        s.turn_rate,
        s.move_secs
    );
    println!(
        "turns: {answered} answered ({:.1}/s), {failed} failed, p99 {:.1} ms over the run",
        answered as f64 / span,
        p99_ms(&mut all)
    );
    println!(
        "checks: {:.0} ({:.0}/s); deliveries sent: {:.0}; channel received {} activities (replies and alerts)",
        end_sample.checks - first.checks,
        (end_sample.checks - first.checks) / span,
        end_sample.delivered,
        channel.count()
    );
    println!(
        "daemon RSS: {:.1} MB at start, {:.1} MB at warm-up end ({:.0} s), {:.1} MB at end ({:+.1} MB since warm-up); peak over reports {:.1} MB",
        first.rss_mb,
        warm.rss_mb,
        warm.at,
        end_sample.rss_mb,
        end_sample.rss_mb - warm.rss_mb,
        samples.iter().map(|x| x.rss_mb).fold(0.0, f64::max)
    );
    println!(
        "open fds: {} at start, {} at warm-up end, {} at end",
        first.fds, warm.fds, end_sample.fds
    );
    println!(
        "data directory: {:.1} MB at start, {:.1} MB at warm-up end, {:.1} MB at end",
        first.data_mb, warm.data_mb, end_sample.data_mb
    );

    let mut failures = Vec::new();
    if failed > 0 {
        failures.push(format!(
            "{failed} turns failed, the first: {}",
            first_failure.unwrap_or_default()
        ));
    }
    if answered == 0 {
        failures.push("no turn was answered".to_owned());
    }
    if channel.unexpected() > 0 {
        failures.push(format!(
            "the channel got {} requests that were not activities",
            channel.unexpected()
        ));
    }
    if end_sample.checks <= first.checks {
        failures.push("no product was checked".to_owned());
    }
    if end_sample.delivered <= 0.0 {
        failures.push("no alert was delivered".to_owned());
    }
    match status {
        Ok(st) if st.success() => {}
        Ok(st) => failures.push(format!("the daemon exited with {st} on SIGTERM")),
        Err(e) => failures.push(e),
    }
    let errors: Vec<&String> = unexpected_log
        .iter()
        .filter(|l| l.contains("ERROR"))
        .collect();
    if !errors.is_empty() {
        failures.push(format!(
            "the daemon logged {} errors, the first: {}",
            errors.len(),
            errors[0]
        ));
    }
    if !unexpected_log.is_empty() {
        let mut kinds: HashMap<String, usize> = HashMap::new();
        for l in &unexpected_log {
            let key: String = l.chars().take(120).collect();
            *kinds.entry(key).or_default() += 1;
        }
        println!("daemon warnings: {} lines", unexpected_log.len());
        for (k, n) in kinds.iter().take(5) {
            println!("  {n} × {k}");
        }
    }
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for f in failures {
            eprintln!("soak bench: {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}
