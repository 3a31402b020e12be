//! One full poll cycle of the watch loop (issue 4): 10,000 products shared by 100,000
//! watches, served by a local shop with ~100 KB product pages, politeness limits raised.
//!
//! 1. **Shop** (a child process: this binary re-executed with `PW_POLL_SHOP=1`, so its CPU
//!    and memory are not the watch loop's; the tests' fake shop, `tests/common/fakes.rs`,
//!    with a page put for each product): the fixture pages of `tests/fixtures/pages/`
//!    whose price comes from the page alone (no site or API rule, no expected error, in
//!    stock, and still read at a loopback URL), each padded to ~100 KB with related-product cards,
//!    gzip-encoded, with an ETag (`If-None-Match` answers 304). Product `i` gets fixture
//!    `i mod F`; where the fixture's amount appears once in the page, its integer part is
//!    varied by product (`PW_POLL_VARIANTS` variants, each checked to read back).
//! 2. **Setup** (timed, not part of the figure): a sled store in a temporary directory
//!    (the daemon's defaults: 32 MiB cache, 500 ms background flush); 100,000 watches
//!    (`add_watch`, 256 in flight so the group-commit flusher shares fsyncs), 10 per
//!    conversation, 10 per product at `http://127.0.0.1:PORT/p/{i}`. All are due.
//! 3. **First cycle** (the figure): one `Watcher::tick` with the real engine (SSRF-guarded
//!    reqwest fetcher, loopback allowlisted; extractor on the blocking pool) through a
//!    `HostGate` of `PW_BENCH_CONCURRENCY` (default 64) global and per host, no gap: every
//!    product fetched and read, every watch gets its reference price and a first-price
//!    message is queued for each (100,000 outbox entries), one flushed transaction per
//!    product. Reported: products/s, this process's CPU seconds per 1,000 products
//!    (`/proc/self/stat`), its peak RSS during the cycle (`VmHWM`, reset before the cycle
//!    through `/proc/self/clear_refs`), the shop's CPU, and CPU by thread name.
//! 4. **Steady cycle**: the clock moved 2 h on, one more tick: every page answers 304.
//! 5. **Idle tick**: what is due read again at once (nothing is), the mean of 20 reads: the
//!    cost of a cron tick between cycles.
//!
//! Checks (exit 1 if one fails): both cycles check every product with no failure; afterwards
//! (read back once both are measured) every watch has a reference price and the outbox holds
//! one message per watch, so the steady cycle queued nothing; the shop answered the steady
//! cycle with 304s only.
//!
//! `PW_BENCH_POSTGRES_URL` runs the same cycles on the PostgreSQL backend (a schema of its
//! own, dropped at the end) and reports the database server's CPU beside the bench's.
//!
//! `cargo bench --bench poll`. Overrides: `PW_BENCH_PRODUCTS`, `PW_BENCH_WATCHES_PER_PRODUCT`,
//! `PW_BENCH_CONCURRENCY`, `PW_POLL_VARIANTS`, and `PW_BENCH_FAST_PATH=0` to read every page
//! with the full HTML scan (the extractor's JSON-LD fast path off). Without `--bench` (as `cargo test --benches`
//! runs it) it is a smoke run: 50 products, 200 watches.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pricewatch::clock::{Clock, SystemClock};
use pricewatch::domain::ProductUrl;
use pricewatch::domain::{NewWatch, Rule};
use pricewatch::inbound::activity::ConversationKey;
use pricewatch::price::engine::PriceEngine;
use pricewatch::price::extract::Extractor;
use pricewatch::price::fetch::{FetchConfig, Fetcher};
use pricewatch::price::rules::Rules;
use pricewatch::store::{AddWatch, Store};
use pricewatch::watch::gate::GateConfig;
use pricewatch::watch::plan::PlanConfig;
use pricewatch::watch::schedule::ScheduleConfig;
use pricewatch::watch::trigger::TriggerConfig;
use pricewatch::watch::watcher::{TickReport, Watcher};
use rust_decimal::Decimal;

#[global_allocator]
static GLOBAL: pricewatch::alloc::Allocator = mimalloc::MiMalloc;

#[path = "../tests/common/fakes.rs"]
mod fakes;
#[path = "../tests/common/fixtures.rs"]
mod fixtures;
#[path = "common/padding.rs"]
mod padding;
#[path = "common/procstat.rs"]
mod procstat;

use procstat::{
    busiest_since, cpu_by_thread, cpu_of_processes_named, cpu_seconds, env_usize, reset_peak,
    status_kb,
};

use fakes::{open_store, FakeShop, Page};
use fixtures::Fixture;
use padding::pad;

const TARGET_PRODUCTS_PER_S: f64 = 2_000.0;
const TARGET_RSS_MB: f64 = 150.0;
const WATCHES_PER_CONVERSATION: usize = 10;
const SETUP_IN_FLIGHT: usize = 256;
/// Reads of what is due, between cycles, averaged.
const IDLE_READS: u32 = 20;

fn main() -> ExitCode {
    // As the daemon does (`MIMALLOC_PURGE_DELAY=1000` measures mimalloc's default).
    pricewatch::alloc::return_freed_memory_promptly();
    if std::env::var_os("PW_POLL_SHOP").is_some() {
        return shop_main();
    }
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("poll bench: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// The shop (child process)
// ---------------------------------------------------------------------------------------

/// One fixture in the rotation: its gzip-encoded page variants.
struct ShopPage {
    variants: Vec<Page>,
}

fn find(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    memchr::memmem::find_iter(hay, needle).collect()
}

fn reads(extractor: &Extractor, body: &[u8], content_type: &str, want: Decimal) -> bool {
    let url = url::Url::parse("http://127.0.0.1:8080/p/0").unwrap();
    let report = extractor.extract(&url, body, Some(content_type));
    matches!(report.price(), Ok((a, _)) if a == want)
}

/// The fixtures that read their expected price at a loopback URL with no rule, padded,
/// each in `variants` prices where the page allows it. Also returns the mean page size.
fn shop_pages(variants: usize) -> (Vec<ShopPage>, Vec<String>, usize, usize) {
    let extractor = Extractor::new(Rules::default(), fixtures::MAX_BYTES);
    let mut pages = Vec::new();
    let mut names = Vec::new();
    let (mut raw_bytes, mut wire_bytes) = (0, 0);
    for name in fixtures::names() {
        let f = Fixture::load(&name);
        let no_rule = |k: &str| f.side.get(k).is_none_or(|r| r.is_null());
        let expected = &f.side["expected"];
        if f.is_json || !no_rule("site_rule") || !no_rule("json_api") {
            continue;
        }
        // An out-of-stock price is no reference price (docs/rules.md, "The trigger"): not a first price.
        if !expected["error"].is_null() || expected["availability"] == "out_of_stock" {
            continue;
        }
        let Some(amount) = expected["amount"].as_str() else {
            continue;
        };
        let Ok(want) = amount.parse::<Decimal>() else {
            continue;
        };
        let body = pad(&f.body);
        if !reads(&extractor, &body, &f.content_type, want) {
            continue; // needs the shop's real URL (a TLD hint, a variant parameter)
        }
        // Vary the price where the amount is written once, exactly as expected.
        let hits = find(&body, amount.as_bytes());
        let (int, frac) = amount.split_once('.').unwrap_or((amount, ""));
        let mut bodies = vec![body.clone()];
        if hits.len() == 1 && variants > 1 {
            if let Ok(int) = int.parse::<u64>() {
                let at = hits[0];
                let with = |v: u64| {
                    let new = if frac.is_empty() {
                        format!("{}", int + v)
                    } else {
                        format!("{}.{frac}", int + v)
                    };
                    let mut b = body[..at].to_vec();
                    b.extend_from_slice(new.as_bytes());
                    b.extend_from_slice(&body[at + amount.len()..]);
                    (b, new.parse::<Decimal>().unwrap())
                };
                let (b, want) = with(1);
                if reads(&extractor, &b, &f.content_type, want) {
                    bodies = (0..variants as u64).map(|v| with(v).0).collect();
                }
            }
        }
        for b in &bodies {
            raw_bytes += b.len();
        }
        let variants: Vec<Page> = bodies
            .into_iter()
            .map(|b| Page::new(&f.content_type, b).gzip())
            .collect();
        wire_bytes += variants.iter().map(|p| p.body.len()).sum::<usize>();
        let n = variants.len();
        names.push(if n > 1 {
            format!("{name} ({n} prices)")
        } else {
            name.clone()
        });
        pages.push(ShopPage { variants });
    }
    let count: usize = pages.iter().map(|p| p.variants.len()).sum::<usize>().max(1);
    (pages, names, raw_bytes / count, wire_bytes / count)
}

/// Serves product `i` at `/p/{i}` for each of `PW_POLL_PRODUCTS` products, prints
/// `PORT <n>` and the rotation, then serves until stdin closes, and prints
/// `SERVED <full> <not_modified>`.
fn shop_main() -> ExitCode {
    let variants = env_usize("PW_POLL_VARIANTS", 8).max(1);
    let products = env_usize("PW_POLL_PRODUCTS", 0);
    let (pages, names, raw, wire) = shop_pages(variants);
    if pages.is_empty() {
        eprintln!("shop: no fixture reads its price at a loopback URL");
        return ExitCode::FAILURE;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let shop = runtime.block_on(FakeShop::start());
    for i in 0..products {
        let page = &pages[i % pages.len()];
        let v = (i / pages.len()) % page.variants.len();
        let etag = format!("\"{}-{v}\"", i % pages.len());
        shop.put(
            &format!("/p/{i}"),
            page.variants[v].clone().with_etag(&etag),
        );
    }
    println!("PORT {}", shop.port);
    println!("PAGES {} {raw} {wire} {}", names.len(), names.join(", "));
    std::io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    println!("SERVED {} {}", shop.full(), shop.not_modified());
    std::io::stdout().flush().unwrap();
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------
// The watch loop (this process)
// ---------------------------------------------------------------------------------------

/// The system clock moved on by a settable offset, so the second cycle finds every
/// product due without waiting half an hour.
struct ShiftedClock(AtomicU64);

impl Clock for ShiftedClock {
    fn now_ms(&self) -> u64 {
        SystemClock.now_ms() + self.0.load(Ordering::SeqCst)
    }
}

struct Shop {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    port: u16,
    pages: String,
}

impl Shop {
    fn start(products: usize, variants: usize) -> Result<Shop, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .env("PW_POLL_SHOP", "1")
            .env("PW_POLL_PRODUCTS", products.to_string())
            .env("PW_POLL_VARIANTS", variants.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the shop: {e}"))?;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = || {
            lines
                .next()
                .and_then(Result::ok)
                .ok_or_else(|| "the shop did not start".to_owned())
        };
        let port = next()?
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .ok_or("the shop printed no port")?;
        let pages = next()?
            .strip_prefix("PAGES ")
            .ok_or("the shop printed no pages")?
            .to_owned();
        Ok(Shop {
            child,
            lines,
            port,
            pages,
        })
    }

    fn cpu(&self) -> f64 {
        cpu_seconds(&format!("/proc/{}/stat", self.child.id())).unwrap_or(0.0)
    }

    /// Closes its stdin and returns (pages served in full, 304s).
    fn stop(mut self) -> (usize, usize) {
        drop(self.child.stdin.take());
        let served = self
            .lines
            .next()
            .and_then(Result::ok)
            .and_then(|l| {
                let mut it = l.strip_prefix("SERVED ")?.split(' ');
                Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
            })
            .unwrap_or((0, 0));
        let _ = self.child.wait();
        served
    }
}

struct Cycle {
    report: TickReport,
    wall: Duration,
    cpu: f64,
    shop_cpu: f64,
    /// The PostgreSQL server's processes (0 on sled).
    db_cpu: f64,
    peak_mb: f64,
    threads: Vec<(String, f64)>,
}

fn run_cycle(
    rt: &tokio::runtime::Runtime,
    watcher: &Watcher,
    shop: &Shop,
) -> Result<Cycle, String> {
    reset_peak();
    let threads0 = cpu_by_thread();
    let cpu0 = cpu_seconds("/proc/self/stat").unwrap_or(0.0);
    let shop0 = shop.cpu();
    let db0 = cpu_of_processes_named("postgres");
    let started = Instant::now();
    let report = rt
        .block_on(watcher.tick())
        .map_err(|e| format!("tick: {e}"))?;
    let wall = started.elapsed();
    let cpu = cpu_seconds("/proc/self/stat").unwrap_or(0.0) - cpu0;
    let shop_cpu = shop.cpu() - shop0;
    let db_cpu = cpu_of_processes_named("postgres") - db0;
    let peak_mb = status_kb("VmHWM:") * 1024.0 / 1e6;
    let threads = busiest_since(&threads0, cpu_by_thread());
    Ok(Cycle {
        report,
        wall,
        cpu,
        shop_cpu,
        db_cpu,
        peak_mb,
        threads,
    })
}

fn run() -> Result<ExitCode, String> {
    let full = std::env::args().any(|a| a == "--bench");
    let products = env_usize("PW_BENCH_PRODUCTS", if full { 10_000 } else { 50 }).max(1);
    let per_product = env_usize("PW_BENCH_WATCHES_PER_PRODUCT", if full { 10 } else { 4 }).max(1);
    let concurrency = env_usize("PW_BENCH_CONCURRENCY", 64).max(1);
    let variants = env_usize("PW_POLL_VARIANTS", if full { 8 } else { 2 });
    let watches = products * per_product;

    let shop = Shop::start(products, variants)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    // `PW_BENCH_POSTGRES_URL`: the same cycle on the PostgreSQL backend, in a schema of its
    // own dropped at the end.
    let postgres = std::env::var("PW_BENCH_POSTGRES_URL").ok().map(|url| {
        pricewatch::store::postgres::PostgresConfig {
            url: pricewatch::secret::Secret::new(url),
            schema: Some(format!("pw_bench_poll_{}", std::process::id())),
            pool_size: 16,
            statement_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            ca_file: None,
        }
    });
    let store: Arc<dyn Store> = match &postgres {
        None => open_store(&dir.path().join("data")).map_err(|e| e.to_string())?,
        Some(config) => Arc::new(
            rt.block_on(pricewatch::store::postgres::PgStore::open(config))
                .map_err(|e| e.to_string())?,
        ),
    };
    let clock = Arc::new(ShiftedClock(AtomicU64::new(0)));

    // Setup: every watch added (and flushed) as the bot would add it.
    let urls: Vec<ProductUrl> = (0..products)
        .map(|i| ProductUrl::parse(&format!("http://127.0.0.1:{}/p/{i}", shop.port), 2048))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("product URL: {e}"))?;
    let setup_started = Instant::now();
    let now = clock.now_ms();
    let added = rt.block_on(async {
        futures_util::stream::iter(0..watches)
            .map(|j| {
                let store = Arc::clone(&store);
                let conversation = j / WATCHES_PER_CONVERSATION;
                let new = NewWatch {
                    conversation: ConversationKey {
                        channel_id: "msteams".to_owned(),
                        conversation_id: format!("19:bench-{conversation}@thread.v2"),
                    },
                    user: None,
                    url: urls[j % products].clone(),
                    rule: Rule::Drop {
                        percent: Decimal::from(20),
                    },
                    created_at_ms: now,
                };
                async move { store.add_watch(new, 1000).await }
            })
            .buffer_unordered(SETUP_IN_FLIGHT)
            .fold(Ok(0usize), |acc, r| async move {
                match (acc, r) {
                    (Ok(n), Ok(AddWatch::Added(_))) => Ok(n + 1),
                    (Ok(n), Ok(_)) => Ok(n),
                    (Err(e), _) => Err(e),
                    (_, Err(e)) => Err(e.to_string()),
                }
            })
            .await
    })?;
    let setup = setup_started.elapsed();
    let setup_peak_mb = status_kb("VmHWM:") * 1024.0 / 1e6;
    if added != watches {
        return Err(format!("{added} of {watches} watches added"));
    }

    let fetch = FetchConfig {
        global_concurrency: concurrency,
        per_host_concurrency: concurrency,
        host_gap: Duration::ZERO,
        allow_networks: vec!["127.0.0.0/8".to_owned()],
        ..FetchConfig::default()
    };
    let fast_path = env_usize("PW_BENCH_FAST_PATH", 1) != 0;
    let engine = PriceEngine::new(
        Fetcher::new(&fetch).map_err(|e| e.to_string())?,
        Extractor::new(Rules::default(), 5 << 20).with_fast_path(fast_path),
    );
    let watcher = Watcher::new(
        store.clone(),
        engine,
        clock.clone(),
        PlanConfig {
            trigger: TriggerConfig::default(),
            schedule: ScheduleConfig::default(),
        },
        GateConfig {
            per_host_concurrency: concurrency,
            host_gap: Duration::ZERO,
            global_concurrency: concurrency,
        },
        Duration::from_secs(365 * 86_400),
        pricewatch::delivery::run::Wake::default(),
    );

    let first = run_cycle(&rt, &watcher, &shop)?;
    // Steady: every product due again, every page unchanged.
    clock.0.store(2 * 3_600_000, Ordering::SeqCst);
    let steady = run_cycle(&rt, &watcher, &shop)?;
    // Between cycles the cron tick still asks what is due every minute and finds nothing:
    // that question's cost, which an index keeps to what is due rather than what is stored.
    let (idle, idle_found) = rt
        .block_on(async {
            let now = clock.now_ms();
            let started = Instant::now();
            let mut found = 0;
            for _ in 0..IDLE_READS {
                found += store.due_products(now, 100_000).await?.len();
            }
            Ok::<_, pricewatch::store::StoreError>((started.elapsed() / IDLE_READS, found))
        })
        .map_err(|e| e.to_string())?;
    // Checked after both cycles (the steady one queues nothing), so that reading every
    // watch back is not counted in the steady cycle's memory.
    let (priced, outbox) = rt
        .block_on(async {
            let mut priced = 0;
            for url in &urls {
                priced += store
                    .product_watches(url)
                    .await?
                    .iter()
                    .filter(|w| w.trigger.reference.is_some())
                    .count();
            }
            Ok::<_, pricewatch::store::StoreError>((priced, store.stats().await?.outbox))
        })
        .map_err(|e| e.to_string())?;

    drop(watcher);
    if let Some(config) = &postgres {
        let schema = config.schema.clone().unwrap_or_default();
        let plain = pricewatch::store::postgres::PostgresConfig {
            schema: None,
            ..config.clone()
        };
        rt.block_on(async {
            let client = plain.connect().await?;
            client
                .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .await
                .map_err(|source| pricewatch::store::postgres::PgError::Query {
                    what: "to drop the bench's schema",
                    source,
                })
        })
        .map_err(|e| e.to_string())?;
    }
    drop(rt);
    let shop_pages = shop.pages.clone();
    let (served_full, served_304) = shop.stop();

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let (page_count, raw, wire, names) = {
        let mut it = shop_pages.splitn(4, ' ');
        (
            it.next().unwrap_or("?").to_owned(),
            it.next().and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0),
            it.next().and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0),
            it.next().unwrap_or("").to_owned(),
        )
    };
    println!("## Poll cycle (`benches/poll.rs`)\n");
    println!(
        "{products} products, {watches} watches in {} conversations; store: {}; {page_count} fixture pages in rotation, {:.0} KB each on average ({:.0} KB gzip on the wire); gate {concurrency} global and per host, no gap; JSON-LD fast path {}; {cores} CPUs visible; {}\n",
        watches.div_ceil(WATCHES_PER_CONVERSATION),
        if postgres.is_some() {
            "PostgreSQL (PW_BENCH_POSTGRES_URL)"
        } else {
            "sled"
        },
        raw / 1e3,
        wire / 1e3,
        if fast_path { "on" } else { "off" },
        if full { "full run" } else { "smoke run (no --bench)" }
    );
    println!("rotation: {names}\n");
    println!(
        "setup: {watches} watches added in {:.1} s ({:.0} watches/s), peak RSS {setup_peak_mb:.1} MB\n",
        setup.as_secs_f64(),
        watches as f64 / setup.as_secs_f64()
    );
    println!("| cycle | products/s | wall | CPU s per 1,000 products | database server CPU s per 1,000 | shop CPU s per 1,000 | peak RSS | checked | queued | failed |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, c) in [
        ("first (200, every page read)", &first),
        ("steady (304)", &steady),
    ] {
        println!(
            "| {name} | {:.0} | {:.2} s | {:.3} | {:.3} | {:.3} | {:.1} MB | {} | {} | {} |",
            c.report.checked as f64 / c.wall.as_secs_f64(),
            c.wall.as_secs_f64(),
            c.cpu / products as f64 * 1000.0,
            c.db_cpu / products as f64 * 1000.0,
            c.shop_cpu / products as f64 * 1000.0,
            c.peak_mb,
            c.report.checked,
            c.report.queued,
            c.report.failed
        );
    }
    for (name, c) in [("first", &first), ("steady", &steady)] {
        let threads: Vec<String> = c
            .threads
            .iter()
            .map(|(n, s)| format!("{n} {s:.2} s"))
            .collect();
        println!(
            "\n{name} cycle CPU: {:.2} s in all ({:.2} cores); by thread: {}",
            c.cpu,
            c.cpu / c.wall.as_secs_f64(),
            threads.join(", ")
        );
    }
    println!(
        "\nidle tick (nothing due, {products} products stored): `due_products` in {:.3} ms (mean of {IDLE_READS}; {idle_found} found)",
        idle.as_secs_f64() * 1000.0
    );
    println!(
        "\nafter both cycles: {priced} of {watches} watches have a reference price; outbox {outbox}. Shop: {served_full} pages served in full, {served_304} answered 304."
    );
    let rate = first.report.checked as f64 / first.wall.as_secs_f64();
    let peak = first.peak_mb.max(steady.peak_mb);
    println!(
        "\nTargets (issue 4, 2 cores): ≥ {TARGET_PRODUCTS_PER_S} products/s: {}; peak RSS < {TARGET_RSS_MB} MB: {}",
        if rate >= TARGET_PRODUCTS_PER_S { "met" } else { "MISSED" },
        if peak < TARGET_RSS_MB { "met" } else { "MISSED" }
    );

    let mut failures = Vec::new();
    for (name, c, queued) in [("first", &first, watches), ("steady", &steady, 0)] {
        if c.report.checked != products || c.report.failed != 0 {
            failures.push(format!(
                "{name} cycle: {:?}, want {products} checked",
                c.report
            ));
        }
        if c.report.queued != queued {
            failures.push(format!(
                "{name} cycle queued {}, want {queued}",
                c.report.queued
            ));
        }
    }
    if priced != watches || outbox != watches {
        failures.push(format!(
            "{priced} watches priced and {outbox} messages queued, want {watches}"
        ));
    }
    if served_full != products || served_304 != products {
        failures.push(format!(
            "shop served {served_full} pages and {served_304} 304s, want {products} each"
        ));
    }
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for f in failures {
            eprintln!("poll bench: {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}
