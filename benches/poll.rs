//! One full poll cycle of the watch loop (issue 4): 10,000 products shared by 100,000
//! watches, served by a local shop with ~100 KB product pages, politeness limits raised.
//!
//! 1. **Shop** (a child process: this binary re-executed with `PW_POLL_SHOP=1`, so its CPU
//!    and memory are not the watch loop's; the tests' fake pages, `tests/common/fakes.rs`,
//!    served with a count of requests per product, on `PW_BENCH_HOSTS` loopback addresses,
//!    each a shop host of its own, default 1): the fixture pages of `tests/fixtures/pages/`
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
//! `PW_BENCH_DAEMONS=n` runs them through `n` release daemons instead of a `Watcher` in this
//! process (more than one needs PostgreSQL): see `mod daemon` below.
//!
//! `cargo bench --bench poll`. Overrides: `PW_BENCH_PRODUCTS`, `PW_BENCH_WATCHES_PER_PRODUCT`,
//! `PW_BENCH_CONCURRENCY`, `PW_POLL_VARIANTS`, and `PW_BENCH_FAST_PATH=0` to read every page
//! with the full HTML scan (the extractor's JSON-LD fast path off). Without `--bench` (as `cargo test --benches`
//! runs it) it is a smoke run: 50 products, 200 watches.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
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

#[path = "common/daemon_log.rs"]
mod daemon_log;
#[path = "../tests/common/fakes.rs"]
mod fakes;
#[path = "../tests/common/fixtures.rs"]
mod fixtures;
#[path = "common/listening.rs"]
mod listening;
#[path = "common/padding.rs"]
mod padding;
#[path = "common/procstat.rs"]
mod procstat;

use procstat::{
    busiest_since, cpu_by_thread, cpu_of_processes_named, cpu_seconds, env_usize, reset_peak,
    status_kb,
};

use fakes::{open_store, Page};
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

/// What the shop serves and how often each product was asked for.
struct ShopState {
    pages: Vec<Page>,
    /// Requests per product, so that a product checked twice in a cycle (or not at all)
    /// shows.
    asked: Vec<AtomicU32>,
    full: AtomicUsize,
    not_modified: AtomicUsize,
    /// Wall-clock µs of the first request since the last `COUNT` (0: none yet), and of the
    /// latest request.
    first_us: AtomicU64,
    last_us: AtomicU64,
}

impl ShopState {
    fn answer(&self, i: usize, inm: Option<String>) -> warp::http::Response<bytes::Bytes> {
        let now = unix_us();
        let _ = self
            .first_us
            .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
        self.last_us.fetch_max(now, Ordering::SeqCst);
        let (Some(page), Some(asked)) = (self.pages.get(i), self.asked.get(i)) else {
            return warp::http::Response::builder()
                .status(404)
                .body(bytes::Bytes::new())
                .expect("a static response");
        };
        asked.fetch_add(1, Ordering::SeqCst);
        let mut reply = warp::http::Response::builder();
        if let Some(etag) = &page.etag {
            reply = reply.header("etag", etag);
            if inm.as_deref() == Some(etag.as_str()) {
                self.not_modified.fetch_add(1, Ordering::SeqCst);
                return reply
                    .status(304)
                    .body(bytes::Bytes::new())
                    .expect("a valid 304");
            }
        }
        self.full.fetch_add(1, Ordering::SeqCst);
        reply = reply
            .status(page.status)
            .header("content-type", page.content_type.as_str());
        if let Some(encoding) = page.encoding {
            reply = reply.header("content-encoding", encoding);
        }
        reply.body(page.body.clone()).expect("a valid page")
    }
}

/// Wall-clock time in µs since the epoch: the shop and this process compare times.
fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Serves product `i` at `/p/{i}` for each of `PW_POLL_PRODUCTS` products on
/// `PW_POLL_HOSTS` loopback addresses (127.0.0.1, 127.0.0.2, …, one port: Linux routes
/// all of 127/8 to the loopback, and each address is another host to the watcher), prints
/// `PORT <n>` and the rotation, then serves until stdin closes, and prints
/// `SERVED <full> <not_modified>`. Each `COUNT` line on stdin is answered with
/// `COUNT <full> <not_modified> <fewest requests of a product> <most> <first µs> <last µs>`.
fn shop_main() -> ExitCode {
    let variants = env_usize("PW_POLL_VARIANTS", 8).max(1);
    let products = env_usize("PW_POLL_PRODUCTS", 0);
    let hosts = env_usize("PW_POLL_HOSTS", 1).clamp(1, 254);
    let (pages, names, raw, wire) = shop_pages(variants);
    if pages.is_empty() {
        eprintln!("shop: no fixture reads its price at a loopback URL");
        return ExitCode::FAILURE;
    }
    let served = (0..products)
        .map(|i| {
            let page = &pages[i % pages.len()];
            let v = (i / pages.len()) % page.variants.len();
            let etag = format!("\"{}-{v}\"", i % pages.len());
            page.variants[v].clone().with_etag(&etag)
        })
        .collect();
    let state = Arc::new(ShopState {
        pages: served,
        asked: (0..products).map(|_| AtomicU32::new(0)).collect(),
        full: AtomicUsize::new(0),
        not_modified: AtomicUsize::new(0),
        first_us: AtomicU64::new(0),
        last_us: AtomicU64::new(0),
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s = state.clone();
    use warp::Filter;
    let route = warp::path!("p" / usize)
        .and(warp::header::optional::<String>("if-none-match"))
        .map(move |i: usize, inm: Option<String>| s.answer(i, inm));
    let port = runtime.block_on(async {
        let first = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let port = first.local_addr().expect("a bound address").port();
        let mut listeners = vec![first];
        for h in 2..=hosts {
            listeners.push(
                tokio::net::TcpListener::bind(format!("127.0.0.{h}:{port}"))
                    .await
                    .expect("the same port on another loopback address"),
            );
        }
        for listener in listeners {
            tokio::spawn(
                warp::serve(route.clone())
                    .incoming(listener)
                    .graceful(std::future::pending::<()>())
                    .run(),
            );
        }
        port
    });
    println!("PORT {port}");
    println!("PAGES {} {raw} {wire} {}", names.len(), names.join(", "));
    std::io::stdout().flush().unwrap();
    for line in std::io::stdin().lines().map_while(Result::ok) {
        if line.trim() == "COUNT" {
            let counts = state.asked.iter().map(|a| a.load(Ordering::SeqCst));
            let (min, max) = counts.fold((u32::MAX, 0), |(lo, hi), c| (lo.min(c), hi.max(c)));
            println!(
                "COUNT {} {} {} {max} {} {}",
                state.full.load(Ordering::SeqCst),
                state.not_modified.load(Ordering::SeqCst),
                if products == 0 { 0 } else { min },
                state.first_us.swap(0, Ordering::SeqCst),
                state.last_us.load(Ordering::SeqCst)
            );
            std::io::stdout().flush().unwrap();
        }
    }
    println!(
        "SERVED {} {}",
        state.full.load(Ordering::SeqCst),
        state.not_modified.load(Ordering::SeqCst)
    );
    std::io::stdout().flush().unwrap();
    drop(runtime);
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

/// The shop's `COUNT` answer.
struct ShopCount {
    full: usize,
    not_modified: usize,
    /// Fewest and most requests any one product got so far.
    fewest: u32,
    most: u32,
    /// Wall-clock µs of the first request since the last count, and of the latest.
    first_us: u64,
    last_us: u64,
}

impl Shop {
    fn start(products: usize, variants: usize, hosts: usize) -> Result<Shop, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .env("PW_POLL_SHOP", "1")
            .env("PW_POLL_HOSTS", hosts.to_string())
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

    fn count(&mut self) -> Result<ShopCount, String> {
        let stdin = self
            .child
            .stdin
            .as_mut()
            .ok_or("the shop's stdin is closed")?;
        writeln!(stdin, "COUNT").map_err(|e| format!("shop: {e}"))?;
        stdin.flush().map_err(|e| format!("shop: {e}"))?;
        let line = self
            .lines
            .next()
            .and_then(Result::ok)
            .ok_or("the shop did not answer COUNT")?;
        let n: Vec<u64> = line
            .strip_prefix("COUNT ")
            .ok_or_else(|| format!("the shop answered {line:?}"))?
            .split(' ')
            .filter_map(|v| v.parse().ok())
            .collect();
        match n[..] {
            [full, not_modified, fewest, most, first_us, last_us] => Ok(ShopCount {
                full: full as usize,
                not_modified: not_modified as usize,
                fewest: fewest as u32,
                most: most as u32,
                first_us,
                last_us,
            }),
            _ => Err(format!("the shop answered {line:?}")),
        }
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
    let hosts = env_usize("PW_BENCH_HOSTS", 1).clamp(1, 254);
    let daemons = env_usize("PW_BENCH_DAEMONS", 0);
    let watches = products * per_product;

    let shop = Shop::start(products, variants, hosts)?;
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
        .map(|i| {
            ProductUrl::parse(
                &format!("http://127.0.0.{}:{}/p/{i}", 1 + i % hosts, shop.port),
                2048,
            )
        })
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
    if daemons > 0 {
        return daemon::run(daemon::Run {
            rt,
            store,
            postgres,
            shop,
            dir: dir.path(),
            products,
            watches,
            hosts,
            daemons,
            setup,
        });
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
        drop_schema(&rt, config)?;
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

// ---------------------------------------------------------------------------------------
// Through the daemon: `PW_BENCH_DAEMONS=n`
// ---------------------------------------------------------------------------------------

/// The same cycles through `n` real daemons (`pricewatch serve` child processes) on the
/// store the setup filled: sled (one daemon) or one PostgreSQL schema shared by all. The
/// daemons start with a tick that does not fire; a cycle is the tick set to every second
/// (config rewritten, SIGHUP to each, as an operator would) until the checks counted in
/// their `/metrics` reach the product count, timed from the shop's first request to the
/// count reached; then the quiet tick again. The schedule's interval is one minute
/// without jitter, so after the first cycle the bench waits for every product to be due
/// again before the steady cycle. The shop counts requests per product: after cycle `c`
/// every product must have been asked for exactly `c` times (none twice in a cycle,
/// none left out).
///
/// The daemons would deliver the 100,000 first-price messages the first cycle queues;
/// that is not the poll cycle, so each conversation has a reference (to a fake channel
/// in this process) and the channel is limited to one message an hour: one is sent,
/// the rest stay queued. Overrides: `PW_BENCH_DAEMON` (another build of the daemon).
mod daemon {
    use super::*;
    use pricewatch::inbound::activity::{
        ChannelAccount, ConversationAccount, ConversationReference,
    };
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};

    const LISTENING: &str = "pricewatch is listening";
    const EXPECTED_WARNING: &str = "LOCAL-DEVELOPMENT MODE";
    const LOG_FILTER: &str = "warn,pricewatch::app=info";
    /// A cron that does not fire during the run (1 January, midnight).
    const QUIET_TICK: &str = "0 0 0 1 1 *";
    const EVERY_SECOND: &str = "* * * * * *";
    const CHECKS_METRIC: &str = "pricewatch_checks_total{";
    /// Longest a cycle may take before the run is declared stuck.
    const CYCLE_LIMIT: Duration = Duration::from_secs(150);
    /// The schedule's interval (the shortest allowed), without jitter.
    const INTERVAL: Duration = Duration::from_secs(60);

    pub struct Run<'a> {
        pub rt: tokio::runtime::Runtime,
        pub store: Arc<dyn Store>,
        pub postgres: Option<pricewatch::store::postgres::PostgresConfig>,
        pub shop: Shop,
        pub dir: &'a Path,
        pub products: usize,
        pub watches: usize,
        pub hosts: usize,
        pub daemons: usize,
        pub setup: Duration,
    }

    fn daemon_binary() -> PathBuf {
        std::env::var_os("PW_BENCH_DAEMON").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_pricewatch")),
            PathBuf::from,
        )
    }

    fn toml_string(s: &str) -> String {
        toml::Value::String(s.to_owned()).to_string()
    }

    struct Daemon {
        child: Child,
        addr: SocketAddr,
        config: PathBuf,
        /// The config without its `[schedule]` table.
        base: String,
        warnings: Arc<std::sync::Mutex<Vec<String>>>,
        stopped: bool,
    }

    impl Daemon {
        fn start(home: &Path, base: String) -> Result<Daemon, String> {
            let config = home.join("pricewatch.toml");
            let mut daemon_config = base.clone();
            daemon_config.push_str(&schedule(QUIET_TICK));
            std::fs::write(&config, daemon_config).map_err(|e| e.to_string())?;
            let mut child = Command::new(daemon_binary())
                .arg("serve")
                .arg("--config")
                .arg(&config)
                .env("RUST_LOG", LOG_FILTER)
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start pricewatch serve: {e}"))?;
            let stderr = child.stderr.take().ok_or("no daemon stderr")?;
            let (rx, warnings) = daemon_log::drain(stderr, EXPECTED_WARNING);
            let mut daemon = Daemon {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                config,
                base,
                warnings,
                stopped: false,
            };
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) if line.contains(LISTENING) => {
                        daemon.addr =
                            listening::listening_addr(&line).map_err(|e| e.to_string())?;
                        return Ok(daemon);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        return Err(format!("the daemon did not start: {:?}", daemon.warnings()))
                    }
                }
            }
        }

        fn warnings(&self) -> Vec<String> {
            self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
        }

        fn pid(&self) -> u32 {
            self.child.id()
        }

        fn cpu(&self) -> f64 {
            cpu_seconds(&format!("/proc/{}/stat", self.pid())).unwrap_or(0.0)
        }

        fn peak_mb(&self) -> f64 {
            std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.split_whitespace().next())
                        .and_then(|v| v.parse::<f64>().ok())
                })
                .map_or(0.0, |kb| kb * 1024.0 / 1e6)
        }

        /// The tick set to `tick`, then SIGHUP.
        fn set_tick(&self, tick: &str) -> Result<(), String> {
            let mut config = self.base.clone();
            config.push_str(&schedule(tick));
            std::fs::write(&self.config, config).map_err(|e| e.to_string())?;
            signal(self.pid(), "-HUP")
        }

        fn stop(&mut self) -> Result<std::process::ExitStatus, String> {
            signal(self.pid(), "-TERM")?;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                    self.stopped = true;
                    return Ok(status);
                }
                if Instant::now() > deadline {
                    return Err("the daemon did not exit within 60 s of SIGTERM".into());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            if !self.stopped {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }

    fn schedule(tick: &str) -> String {
        format!(
            "[schedule]\ntick = \"{tick}\"\ninterval = \"{}s\"\njitter = 0\n",
            INTERVAL.as_secs()
        )
    }

    fn signal(pid: u32, which: &str) -> Result<(), String> {
        let status = Command::new("kill")
            .args([which, &pid.to_string()])
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("kill {which} {pid} failed"));
        }
        Ok(())
    }

    /// Sum of the checks counters in one daemon's `GET /metrics`.
    async fn checks(http: &reqwest::Client, addr: SocketAddr) -> Result<u64, String> {
        let text = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(CHECKS_METRIC))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }

    struct Cycle {
        name: &'static str,
        /// From the shop's first request to the checks counted.
        wall: Duration,
        /// From the SIGHUP to the checks counted.
        from_signal: Duration,
        /// Checks per daemon in this cycle.
        per_daemon: Vec<u64>,
        daemon_cpu: f64,
        db_cpu: f64,
        shop_cpu: f64,
        shop: ShopCount,
        leases: String,
    }

    pub fn run(run: Run<'_>) -> Result<ExitCode, String> {
        let Run {
            rt,
            store,
            postgres,
            mut shop,
            dir,
            products,
            watches,
            hosts,
            daemons: n,
            setup,
        } = run;
        if n > 1 && postgres.is_none() {
            return Err(
                "more than one daemon needs PW_BENCH_POSTGRES_URL (one shared store)".into(),
            );
        }
        // A reference per conversation, at a channel that takes one message an hour.
        let channel = rt.block_on(fakes::FakeChannel::start_with(
            Arc::new(SystemClock),
            fakes::Keep::Arrivals,
        ));
        rt.block_on(async {
            for c in 0..watches.div_ceil(WATCHES_PER_CONVERSATION) {
                let reference = ConversationReference {
                    channel_id: "msteams".to_owned(),
                    service_url: channel.url.clone(),
                    conversation: ConversationAccount {
                        id: format!("19:bench-{c}@thread.v2"),
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
                store.upsert_reference(&reference).await?;
            }
            store.flush().await
        })
        .map_err(|e| format!("references: {e}"))?;
        drop(store);

        let storage = match &postgres {
            None => format!(
                "[storage]\npath = {}\n",
                toml_string(&dir.join("data").display().to_string())
            ),
            Some(config) => {
                let url_file = dir.join("postgres-url");
                std::fs::write(&url_file, config.url.expose()).map_err(|e| e.to_string())?;
                format!(
                    "[storage]\nbackend = \"postgres\"\npostgres_url_file = {}\npostgres_schema = {}\n",
                    toml_string(&url_file.display().to_string()),
                    toml_string(config.schema.as_deref().unwrap_or_default())
                )
            }
        };
        let base = format!(
            "[server]\nbind = \"127.0.0.1:0\"\n[log]\nlevel = \"warn\"\n{storage}\
             [fetch]\nglobal_concurrency = 64\nper_host_concurrency = 64\nhost_gap = \"0s\"\n\
             allow_networks = [\"127.0.0.0/8\"]\nports = [{}]\n\
             [rate_limits.msteams]\nper_conversation = []\nper_channel = [\"1/1h\"]\n",
            shop.port
        );
        let mut started = Vec::new();
        for r in 0..n {
            let home = dir.join(format!("replica-{r}"));
            std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
            started.push(Daemon::start(&home, base.clone())?);
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let lease_client = match &postgres {
            Some(config) => Some(rt.block_on(config.connect()).map_err(|e| e.to_string())?),
            None => None,
        };
        let read_leases = || -> String {
            let Some(client) = &lease_client else {
                return "sled: no leases".to_owned();
            };
            rt.block_on(client.query(
                "SELECT name, holder FROM leases WHERE name LIKE 'host:%' ORDER BY name",
                &[],
            ))
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        let name: String = r.get(0);
                        let holder: String = r.get(1);
                        format!("{name} → {holder}")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|e| format!("leases unreadable: {e}"))
        };

        let mut cycles: Vec<Cycle> = Vec::new();
        let mut totals = vec![0u64; n];
        for (c, name) in ["first (200, every page read)", "steady (304)"]
            .into_iter()
            .enumerate()
        {
            if let Some(prev) = cycles.last() {
                // Every product due again: its last check plus the interval.
                let due_us = prev.shop.last_us + INTERVAL.as_micros() as u64 + 2_000_000;
                let wait = due_us.saturating_sub(unix_us());
                println!(
                    "waiting {:.0} s for every product to be due again",
                    wait as f64 / 1e6
                );
                std::thread::sleep(Duration::from_micros(wait));
            }
            let before: Vec<u64> = started
                .iter()
                .map(|d| rt.block_on(checks(&http, d.addr)))
                .collect::<Result<_, _>>()?;
            let cpu0: f64 = started.iter().map(Daemon::cpu).sum();
            let db0 = cpu_of_processes_named("postgres");
            let shop0 = shop.cpu();
            let _ = shop.count()?; // resets the first request's time
            let signalled = Instant::now();
            let signalled_us = unix_us();
            for d in &started {
                d.set_tick(EVERY_SECOND)?;
            }
            let (done_us, now) = loop {
                let now: Vec<u64> = started
                    .iter()
                    .map(|d| rt.block_on(checks(&http, d.addr)))
                    .collect::<Result<_, _>>()?;
                let sum: u64 = now.iter().zip(&before).map(|(a, b)| a - b).sum();
                if sum >= products as u64 {
                    break (unix_us(), now);
                }
                if signalled.elapsed() > CYCLE_LIMIT {
                    return Err(format!(
                        "{name} cycle: {sum} of {products} checked after {CYCLE_LIMIT:?}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let from_signal = Duration::from_micros(done_us - signalled_us);
            let leases = read_leases();
            for d in &started {
                d.set_tick(QUIET_TICK)?;
            }
            let daemon_cpu = started.iter().map(Daemon::cpu).sum::<f64>() - cpu0;
            let db_cpu = cpu_of_processes_named("postgres") - db0;
            let shop_cpu = shop.cpu() - shop0;
            let count = shop.count()?;
            let per_daemon: Vec<u64> = now.iter().zip(&before).map(|(a, b)| a - b).collect();
            for (t, p) in totals.iter_mut().zip(&per_daemon) {
                *t += p;
            }
            if count.fewest != c as u32 + 1 || count.most != c as u32 + 1 {
                println!(
                    "WARNING: after the {name} cycle products were asked for {}..{} times, want {} each",
                    count.fewest,
                    count.most,
                    c + 1
                );
            }
            cycles.push(Cycle {
                name,
                wall: Duration::from_micros(done_us.saturating_sub(count.first_us)),
                from_signal,
                per_daemon,
                daemon_cpu,
                db_cpu,
                shop_cpu,
                shop: count,
                leases,
            });
        }

        let peaks: Vec<f64> = started.iter().map(Daemon::peak_mb).collect();
        let mut exits = Vec::new();
        let mut warnings = Vec::new();
        for d in &mut started {
            exits.push(d.stop().map_or_else(|e| e, |s| s.to_string()));
            warnings.extend(d.warnings());
        }
        let sent = channel.count();
        drop(lease_client);
        if let Some(config) = &postgres {
            drop_schema(&rt, config)?;
        }
        drop(rt);
        let (served_full, served_304) = shop.stop();

        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!("## Poll cycle through the daemon (`benches/poll.rs`, PW_BENCH_DAEMONS={n})\n");
        println!(
            "{products} products on {hosts} shop host(s) (127.0.0.1..127.0.0.{hosts}, product i on host i mod {hosts}), {watches} watches; store: {}; {n} daemon(s) (`pricewatch serve`, {}); fetch 64 global and per host, no gap; {cores} CPUs visible\n",
            if postgres.is_some() { "PostgreSQL, one schema" } else { "sled" },
            daemon_binary().display()
        );
        println!(
            "setup (in the bench process, before the daemons): {watches} watches added in {:.1} s ({:.0} watches/s)\n",
            setup.as_secs_f64(),
            watches as f64 / setup.as_secs_f64()
        );
        println!("| cycle | products/s | wall (shop's first request → all counted) | from SIGHUP | checks per daemon | daemons' CPU s per 1,000 | database server CPU s per 1,000 | shop CPU s per 1,000 | requests per product (fewest..most, cumulative) | full / 304 (cumulative) |");
        println!("|---|---:|---:|---:|---|---:|---:|---:|---|---|");
        for c in &cycles {
            let checked: u64 = c.per_daemon.iter().sum();
            println!(
                "| {} | {:.0} | {:.2} s | {:.2} s | {} | {:.3} | {:.3} | {:.3} | {}..{} | {} / {} |",
                c.name,
                checked as f64 / c.wall.as_secs_f64().max(1e-9),
                c.wall.as_secs_f64(),
                c.from_signal.as_secs_f64(),
                c.per_daemon
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" + "),
                c.daemon_cpu / products as f64 * 1000.0,
                c.db_cpu / products as f64 * 1000.0,
                c.shop_cpu / products as f64 * 1000.0,
                c.shop.fewest,
                c.shop.most,
                c.shop.full,
                c.shop.not_modified
            );
        }
        for c in &cycles {
            println!("\nhost leases after the {} cycle: {}", c.name, c.leases);
        }
        println!(
            "\ndaemons' peak RSS: {}; exit after SIGTERM: {}; messages sent to the channel: {sent}; shop: {served_full} pages in full, {served_304} 304s",
            peaks
                .iter()
                .map(|p| format!("{p:.1} MB"))
                .collect::<Vec<_>>()
                .join(", "),
            exits.join(", ")
        );
        if !warnings.is_empty() {
            println!("\ndaemon warnings ({}):", warnings.len());
            for w in warnings.iter().take(20) {
                println!("    {w}");
            }
        }
        let mut failures = Vec::new();
        for (c, cycle) in cycles.iter().enumerate() {
            let want = c as u32 + 1;
            if cycle.shop.fewest != want || cycle.shop.most != want {
                failures.push(format!(
                    "after the {} cycle each product was asked for {}..{} times, want {want}",
                    cycle.name, cycle.shop.fewest, cycle.shop.most
                ));
            }
        }
        if exits.iter().any(|e| e != "exit status: 0") {
            failures.push(format!("a daemon did not exit 0: {exits:?}"));
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
}

fn drop_schema(
    rt: &tokio::runtime::Runtime,
    config: &pricewatch::store::postgres::PostgresConfig,
) -> Result<(), String> {
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
    .map_err(|e| e.to_string())
}
