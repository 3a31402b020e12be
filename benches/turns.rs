//! Inbound-turn throughput of the `pricewatch` daemon.
//!
//! What one "turn" is here: a `message` activity with the text `help`, for one of N
//! conversations (default 10,000), POSTed to `/api/messages`; the daemon upserts the
//! conversation reference (sled), POSTs its reply to the channel's Connector and answers
//! 200. The channel is a fast fake served by this process, so the figure is the daemon's
//! cost, not a network's.
//!
//! The load comes from `wrk -t1 -c32 -d15s` (Debian package `wrk`), as the issue asks, so
//! the numbers compare with the botbuilder-js figures measured the same way. The daemon
//! is the real release binary in a child process, so its peak RSS (`VmHWM`) is its own.
//!
//! Phases:
//! 1. fake channel (own 1-worker runtime, so it does not take both cores);
//! 2. daemon child on 127.0.0.1:0 in a temp dir; its address is read from its log;
//! 3. warm-up: one turn per conversation, so every reference exists. The first turn of a
//!    conversation inserts (and fsyncs) the reference; later turns find it unchanged and
//!    do not write. The warm-up is timed and reported as the "cold" figure;
//! 4. measured run: wrk with a generated Lua script picking a random conversation per
//!    request — the steady state;
//! 5. checks (no non-2xx, no socket errors, one reply per completed turn), peak RSS,
//!    SIGTERM, and a Markdown summary.
//!
//! Run: `cargo bench --bench turns`. Overrides: `PW_BENCH_DURATION` (wrk `-d`, default
//! `15s`), `PW_BENCH_CONNECTIONS` (default 32), `PW_BENCH_CONVERSATIONS` (default 10000),
//! `PW_BENCH_WARMUP_CONCURRENCY` (warm-up turns in flight, default: the connections),
//! `PW_BENCH_AUTH`: `off` (default: local-development mode, no token), `reused` (production
//! mode: every request carries the same RS256 channel token, as a channel sends one token
//! for its lifetime of about an hour) or `distinct` (production mode: 16,384 tokens sent
//! in turn, more than the daemon remembers, so every turn verifies an RSA signature). The
//! keys come from a key server in this process (`tests/common/tokens.rs`), fetched once
//! at start-up and cached by the daemon.
//! `PW_BENCH_REPLICAS=2` (with the PostgreSQL backend set through `PRICEWATCH__STORAGE__*`
//! in the environment, which the daemons inherit) starts two daemons on the one database
//! schema, sends the warm-up turns to them in turn and runs one wrk per daemon, each with
//! half the connections, at the same time: turns/s is the sum, p50 and p99 the worse of
//! the two wrks. `PW_BENCH_DAEMON` runs another build of the daemon (by default the one
//! `cargo bench` built).
//! Exit status: 0 when the run was sound (even if a target is missed), 1 when the run is
//! broken (errors, non-2xx, lost replies), 2 when `wrk` is not installed.
//!
//! Without `--bench` (`cargo test --benches` runs bench targets that way) it does a short
//! smoke run instead, and skips cleanly when `wrk` is missing, so a test run neither takes
//! half a minute nor fails for lack of a benchmarking tool.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

#[path = "../tests/common/fakes.rs"]
mod fakes;
#[path = "common/listening.rs"]
mod listening;
#[path = "common/procstat.rs"]
mod procstat;
#[path = "../tests/common/tokens.rs"]
mod tokens;

use fakes::{FakeChannel, Keep};
use listening::listening_addr;

/// Targets from the issue, for a 2-core machine.
const TARGET_TURNS_PER_S: f64 = 12_000.0;
const TARGET_P99_MS: f64 = 10.0;
const TARGET_RSS_MB: f64 = 60.0;

/// The equivalent botbuilder-js bot under the same wrk load, 2-core machine (issue text).
const JS_TURNS_PER_S: f64 = 1_170.0;
const JS_P99_MS: f64 = 114.0;
const JS_RSS_MB: f64 = 250.0;

/// Only the start-up and shutdown lines (pricewatch::app, INFO) plus anything at WARN or
/// above: the start-up line carries the address, and warnings ("reply failed", "turn
/// failed") are exactly what a broken run would print. A healthy steady state logs
/// nothing, so logging costs the measurement nothing.
const DAEMON_LOG_FILTER: &str = "warn,pricewatch::app=info";
const LISTENING: &str = "pricewatch is listening";
/// The one warning every run prints: the bench uses local-development mode (no app id).
const EXPECTED_WARNING: &str = "LOCAL-DEVELOPMENT MODE";
/// Tokens of the `distinct` mode: four times the daemon's cache of verified tokens, sent
/// round-robin, so none is still remembered when it comes round again.
const DISTINCT_TOKENS: usize = 16_384;
/// What hyper reports for a connection closed mid-request: wrk closes its connections,
/// requests in flight included, when its duration is over. The listener logs such client
/// errors at debug, below this run's filter, so none should show; should one reach the
/// log anyway, at most one per connection is part of a clean run.
const CUT_CONNECTION: &str = "IncompleteMessage";
/// Longest a warm-up turn may take before the daemon is declared stuck.
const WARM_UP_TURN_TIMEOUT: Duration = Duration::from_secs(20);

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!();
            eprintln!("**************************************************************");
            eprintln!("*** turns benchmark FAILED: {e:#}");
            eprintln!("**************************************************************");
            ExitCode::FAILURE
        }
    }
}

/// What to run, from the defaults and the `PW_BENCH_*` overrides.
struct Settings {
    /// wrk's `-d`, passed through verbatim (wrk accepts `15s`, `1m`, `30`).
    duration: String,
    connections: u32,
    conversations: u32,
    /// Turns in flight during the warm-up; the measured run's connections by default.
    warm_up_concurrency: u32,
    /// Short run because the target was started without `--bench`.
    smoke: bool,
    auth: AuthMode,
    /// Daemons sharing one PostgreSQL schema (1 or 2).
    replicas: u32,
}

/// Whether the daemon authenticates, and how the load's tokens vary.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum AuthMode {
    Off,
    Reused,
    Distinct,
}

impl Settings {
    fn from_env(smoke: bool) -> anyhow::Result<Settings> {
        let (duration, connections, conversations) = if smoke {
            ("2s", 8, 200)
        } else {
            ("15s", 32, 10_000)
        };
        let duration = std::env::var("PW_BENCH_DURATION").unwrap_or_else(|_| duration.into());
        if !duration.starts_with(|c: char| c.is_ascii_digit())
            || !duration.chars().all(|c| c.is_ascii_alphanumeric())
        {
            bail!("PW_BENCH_DURATION={duration:?} is not a wrk duration such as 15s or 1m");
        }
        let connections = env_number("PW_BENCH_CONNECTIONS", connections)?;
        Ok(Settings {
            duration,
            connections,
            conversations: env_number("PW_BENCH_CONVERSATIONS", conversations)?,
            warm_up_concurrency: env_number("PW_BENCH_WARMUP_CONCURRENCY", connections)?,
            smoke,
            replicas: match env_number("PW_BENCH_REPLICAS", 1)? {
                1 => 1,
                2 if std::env::var("PRICEWATCH__STORAGE__BACKEND").as_deref() == Ok("postgres") => {
                    2
                }
                2 => bail!(
                    "PW_BENCH_REPLICAS=2 shares one store: it needs \
                     PRICEWATCH__STORAGE__BACKEND=postgres and its URL file and schema"
                ),
                n => bail!("PW_BENCH_REPLICAS={n}: only 1 or 2 replicas are measured"),
            },
            auth: match std::env::var("PW_BENCH_AUTH").as_deref() {
                Err(_) | Ok("off") => AuthMode::Off,
                Ok("reused") => AuthMode::Reused,
                Ok("distinct") => AuthMode::Distinct,
                Ok(other) => bail!("PW_BENCH_AUTH={other:?} is not off, reused or distinct"),
            },
        })
    }
}

fn env_number(name: &str, default: u32) -> anyhow::Result<u32> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => match v.trim().parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("{name}={v:?} is not a positive integer"),
        },
    }
}

fn run() -> anyhow::Result<ExitCode> {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let settings = Settings::from_env(smoke)?;

    let wrk_version = match wrk_version() {
        Some(v) => v,
        None if smoke => {
            println!("turns bench (smoke): wrk is not installed, skipping");
            return Ok(ExitCode::SUCCESS);
        }
        None => {
            eprintln!("turns bench: `wrk` is not on PATH; install it: apt-get install wrk");
            return Ok(ExitCode::from(2));
        }
    };
    if smoke {
        println!("turns bench: smoke run (started without --bench); figures are not meaningful");
    }

    let dir = tempfile::Builder::new()
        .prefix("pricewatch-bench-")
        .tempdir()
        .context("cannot create a temporary directory")?;

    let channel = Channel::start(settings.auth != AuthMode::Off)?;
    println!("fake channel on {}", channel.url);
    let mut body = BodyTemplate::new(&channel.url);
    let daemon_config = match &channel.keys {
        None => String::new(),
        Some(keys) => {
            let count = if settings.auth == AuthMode::Distinct {
                DISTINCT_TOKENS
            } else {
                1
            };
            println!("minting {count} RS256 channel token(s)...");
            body.tokens = mint_tokens(&channel.url, count);
            production_config(dir.path(), keys)?
        }
    };

    let mut daemons = Vec::new();
    for r in 0..settings.replicas {
        // Each replica its own directory (its config, and sled's path, unused on
        // PostgreSQL); the store they share is the database schema.
        let home = dir.path().join(format!("replica-{r}"));
        std::fs::create_dir_all(&home).context("cannot create a replica's directory")?;
        let daemon = Daemon::start(&home, &daemon_config)?;
        println!("daemon pid {} listening on {}", daemon.pid(), daemon.addr);
        daemons.push(daemon);
    }
    let addrs: Vec<SocketAddr> = daemons.iter().map(|d| d.addr).collect();

    // Warm-up, which is also the cold measurement: the first turn of each conversation.
    println!(
        "warm-up: one turn for each of {} conversations ({} concurrent)...",
        settings.conversations, settings.warm_up_concurrency
    );
    let cold = warm_up(
        &addrs,
        &body,
        settings.conversations,
        settings.warm_up_concurrency,
    )
    .map_err(|e| {
        let states: Vec<String> = daemons
            .iter()
            .map(|d| {
                format!(
                    "{}\ndaemon log:\n{}",
                    thread_states(d.pid()),
                    d.log_excerpt()
                )
            })
            .collect();
        anyhow!(
            "warm-up: {e:#}\ndaemon threads (name:kernel wait): {}",
            states.join("\n")
        )
    })?;
    let after_warm_up = channel.replies();
    if after_warm_up < u64::from(settings.conversations) {
        bail!(
            "the fake channel received {after_warm_up} replies for {} warm-up turns; \
             replies are being lost (daemon log below)\n{}",
            settings.conversations,
            daemons[0].log_excerpt()
        );
    }
    let hwm_after_warm_up = daemons
        .iter()
        .map(|d| d.memory().map(|m| m.hwm_kib))
        .collect::<anyhow::Result<Vec<u64>>>()?;

    // The measured run.
    let script = dir.path().join("turns.lua");
    std::fs::write(&script, body.lua_script(settings.conversations))
        .context("cannot write the wrk script")?;
    // One wrk per daemon, the connections split between them, all started together.
    let per_daemon = (settings.connections / settings.replicas).max(1);
    let urls: Vec<String> = addrs
        .iter()
        .map(|a| format!("http://{a}/api/messages"))
        .collect();
    // Shown with the script's base name: the temp dir changes every run.
    let wrk_shown = urls
        .iter()
        .map(|url| {
            format!(
                "wrk -t1 -c{per_daemon} -d{} --latency -s turns.lua {url}",
                settings.duration
            )
        })
        .collect::<Vec<_>>()
        .join(" & ");
    println!("measuring: {wrk_shown}");
    let clk_tck = clock_ticks_per_second();
    let daemon_threads_before: Vec<_> = daemons.iter().map(|d| thread_ticks(d.pid())).collect();
    let self_before = process_ticks("self");
    // The database server's processes (nothing on sled): the replicas share it.
    let db_before = procstat::cpu_of_processes_named("postgres");
    let started = Instant::now();
    let running = urls
        .iter()
        .map(|url| {
            Command::new("wrk")
                .args([
                    "-t1".to_owned(),
                    format!("-c{per_daemon}"),
                    format!("-d{}", settings.duration),
                    "--latency".to_owned(),
                    "-s".to_owned(),
                    script.display().to_string(),
                    url.clone(),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("cannot run wrk")
        })
        .collect::<anyhow::Result<Vec<Child>>>()?;
    let outputs = running
        .into_iter()
        .map(|w| w.wait_with_output().context("cannot wait for wrk"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let wall = started.elapsed();
    let db_cpu = procstat::cpu_of_processes_named("postgres") - db_before;
    let self_after = process_ticks("self");
    let daemon_threads_after: Vec<_> = daemons.iter().map(|d| thread_ticks(d.pid())).collect();
    let replies_during_run = channel.replies() - after_warm_up;
    let mut wrks = Vec::new();
    for output in &outputs {
        let wrk_out = String::from_utf8_lossy(&output.stdout).into_owned();
        let wrk_err = String::from_utf8_lossy(&output.stderr).into_owned();
        println!(
            "--- wrk output ---\n{}{}------------------",
            wrk_out, wrk_err
        );
        if !output.status.success() {
            bail!("wrk failed ({}): {}", output.status, wrk_err.trim());
        }
        wrks.push(WrkResult::parse(&wrk_out)?);
    }
    let wrk = WrkResult::combine(&wrks);

    for daemon in &mut daemons {
        if let Some(status) = daemon.child.try_wait().context("cannot poll the daemon")? {
            bail!(
                "a daemon died during the run ({status})\n{}",
                daemon.log_excerpt()
            );
        }
    }
    // Peak RSS just before stopping: after the run, nothing grows it any more.
    let memories = daemons
        .iter()
        .map(Daemon::memory)
        .collect::<anyhow::Result<Vec<Memory>>>()?;
    // A daemon that does not stop is a finding to report with the figures, not a reason
    // to lose them; `Daemon`'s drop kills it.
    let mut exits = Vec::new();
    let mut stopped_cleanly = true;
    for daemon in &mut daemons {
        match daemon.stop() {
            Ok(status) => {
                stopped_cleanly &= status.success();
                exits.push(status.to_string());
            }
            Err(e) => {
                stopped_cleanly = false;
                exits.push(format!("{e:#}"));
            }
        }
    }
    let exit = exits.join(", ");
    let memory = Memory {
        hwm_kib: memories.iter().map(|m| m.hwm_kib).max().unwrap_or(0),
        rss_kib: memories.iter().map(|m| m.rss_kib).max().unwrap_or(0),
    };

    // Everything needed for the verdict is collected; judge the run's soundness.
    let mut broken = Vec::new();
    if wrk.non_2xx > 0 {
        broken.push(format!("{} Non-2xx or 3xx responses", wrk.non_2xx));
    }
    if wrk.socket_errors > 0 {
        broken.push(format!("socket errors: {}", wrk.socket_errors_text));
    }
    if wrk.requests == 0 {
        broken.push("wrk completed no requests".to_owned());
    }
    if replies_during_run < wrk.requests {
        broken.push(format!(
            "the fake channel received {replies_during_run} replies for {} completed turns",
            wrk.requests
        ));
    }
    let unexpected = channel.unexpected();
    if unexpected > 0 {
        broken.push(format!(
            "the fake channel received {unexpected} requests on an unexpected path"
        ));
    }
    if !stopped_cleanly {
        broken.push(format!(
            "the daemon did not stop cleanly on SIGTERM: {exit}"
        ));
    }
    let log = DaemonLog::merged(&daemons);
    if log.cut_connections > u64::from(settings.connections) {
        broken.push(format!(
            "the daemon saw {} connections cut mid-request, more than wrk's {} connections",
            log.cut_connections, settings.connections
        ));
    }
    if log.unexpected_warnings > 0 {
        broken.push(format!(
            "the daemon logged {} warnings or errors",
            log.unexpected_warnings
        ));
    }

    // CPU per party during the run: the daemon (its threads), wrk (this process's only
    // waited-for child in the window) and the fake channel (the rest of this process,
    // whose main thread only waits for wrk).
    let secs = wall.as_secs_f64().max(1e-9);
    let cores = |ticks: u64| ticks as f64 / clk_tck / secs;
    let mut threads: Vec<ThreadDelta> = daemon_threads_before
        .iter()
        .zip(&daemon_threads_after)
        .flat_map(|(before, after)| thread_deltas(before, after))
        .collect();
    threads.sort_by_key(|t| std::cmp::Reverse(t.user + t.system));
    let daemon_user: u64 = threads.iter().map(|t| t.user).sum();
    let daemon_system: u64 = threads.iter().map(|t| t.system).sum();
    let cpu = match (self_before, self_after) {
        (Some(b), Some(a)) => Some((
            cores(daemon_user + daemon_system),
            cores(a.children.saturating_sub(b.children)),
            cores(a.own.saturating_sub(b.own)),
        )),
        _ => None,
    };

    let machine_cores = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".into());
    let cpu_model = cpu_model().unwrap_or_else(|| "unknown CPU".into());
    let rss_mb = kib_to_mb(memory.hwm_kib);
    let pass = |ok: bool| if ok { "PASS" } else { "MISS" };

    println!();
    println!("## pricewatch inbound-turn throughput");
    println!();
    if settings.smoke {
        println!("**Smoke run (no `--bench`): short and small, the figures are not meaningful.**");
        println!();
    }
    println!("- machine: {machine_cores} cores (available_parallelism), {cpu_model}");
    println!("- load: `{wrk_shown}` ({wrk_version})");
    if settings.replicas > 1 {
        println!(
            "- replicas: {} daemons on one PostgreSQL schema, one wrk each; turns/s is the sum, \
             p50 and p99 the worse wrk's (each: {}); peak RSS the larger daemon's (each: {})",
            settings.replicas,
            wrks.iter()
                .map(|w| format!(
                    "{} turns/s, p50 {:.2} ms, p99 {:.2} ms",
                    thousands(w.requests_per_s),
                    w.p50_ms,
                    w.p99_ms
                ))
                .collect::<Vec<_>>()
                .join("; "),
            memories
                .iter()
                .map(|m| format!("{:.1} MB", kib_to_mb(m.hwm_kib)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "- authentication: {}",
        match settings.auth {
            AuthMode::Off => "off (local-development mode, no token)".to_owned(),
            AuthMode::Reused => "production mode, one RS256 channel token on every request \
                (verified once, then remembered)"
                .to_owned(),
            AuthMode::Distinct => format!(
                "production mode, {DISTINCT_TOKENS} RS256 channel tokens in turn \
                 (each turn verifies a signature)"
            ),
        }
    );
    println!(
        "- turn: `message` \"help\" for a random one of {} conversations; reference upserted, \
         reply POSTed to an in-process fake channel",
        settings.conversations
    );
    println!(
        "- state: steady: every conversation reference existed before measuring, so a turn \
         finds its reference unchanged and writes nothing (the first turn of a conversation \
         inserts and fsyncs: see cold below)"
    );
    println!();
    println!("| metric | pricewatch | target | | botbuilder-js |");
    println!("|---|---:|---|---|---:|");
    println!(
        "| turns/s | {} | >= {} | {} | ~{} |",
        thousands(wrk.requests_per_s),
        thousands(TARGET_TURNS_PER_S),
        pass(wrk.requests_per_s >= TARGET_TURNS_PER_S),
        thousands(JS_TURNS_PER_S)
    );
    println!("| p50 latency | {:.2} ms | | | |", wrk.p50_ms);
    println!(
        "| p99 latency | {:.2} ms | < {TARGET_P99_MS} ms | {} | {JS_P99_MS} ms |",
        wrk.p99_ms,
        pass(wrk.p99_ms < TARGET_P99_MS)
    );
    println!(
        "| peak RSS (VmHWM) | {rss_mb:.1} MB ({:.1} MiB) | < {TARGET_RSS_MB} MB | {} | {JS_RSS_MB} MB |",
        memory.hwm_kib as f64 / 1024.0,
        pass(rss_mb < TARGET_RSS_MB)
    );
    println!();
    println!(
        "- cold (warm-up, first turn of each conversation: insert + fsync; reqwest client, \
         {} concurrent): {} turns/s, p50 {:.2} ms, p99 {:.2} ms, {} turns in {:.2} s",
        settings.warm_up_concurrency,
        thousands(cold.turns as f64 / cold.elapsed.as_secs_f64().max(1e-9)),
        cold.p50_ms,
        cold.p99_ms,
        cold.turns,
        cold.elapsed.as_secs_f64()
    );
    println!(
        "- replies: wrk completed {} turns; the fake channel received {} replies during the \
         run ({})",
        wrk.requests,
        replies_during_run,
        if replies_during_run >= wrk.requests {
            "one per turn: OK"
        } else {
            "LOST REPLIES"
        }
    );
    println!(
        "- errors: {} non-2xx, socket errors: {}",
        wrk.non_2xx,
        if wrk.socket_errors == 0 {
            "none".to_owned()
        } else {
            wrk.socket_errors_text.clone()
        }
    );
    println!(
        "- memory: VmHWM {:.1} MB after warm-up, {rss_mb:.1} MB at the end; VmRSS at the end \
         {:.1} MB",
        kib_to_mb(hwm_after_warm_up.iter().copied().max().unwrap_or(0)),
        kib_to_mb(memory.rss_kib)
    );
    if let Some((d, w, f)) = cpu {
        println!(
            "- CPU during the run (cores, of {machine_cores}): daemon {d:.2} (user {:.2}, \
             kernel {:.2}; {:.0} us per turn), wrk {w:.2}, fake channel {f:.2}",
            cores(daemon_user),
            cores(daemon_system),
            (daemon_user + daemon_system) as f64 / clk_tck * 1e6 / wrk.requests.max(1) as f64
        );
    }
    if db_cpu > 0.0 {
        println!(
            "- database server (its processes) during the run: {:.2} cores, {:.0} us per turn",
            db_cpu / secs,
            db_cpu * 1e6 / wrk.requests.max(1) as f64
        );
    }
    let busy: Vec<String> = threads
        .iter()
        .filter(|t| cores(t.user + t.system) >= 0.01)
        .take(8)
        .map(|t| {
            format!(
                "{} {:.2} (user {:.2}, kernel {:.2})",
                t.name,
                cores(t.user + t.system),
                cores(t.user),
                cores(t.system)
            )
        })
        .collect();
    if !busy.is_empty() {
        println!("- daemon threads (cores): {}", busy.join(", "));
    }
    if log.cut_connections > 0 {
        println!(
            "- daemon log: {} `{CUT_CONNECTION}` errors, connections wrk closed mid-request \
             when its time was up (expected)",
            log.cut_connections
        );
    }
    println!("- daemon exit after SIGTERM: {exit}");
    println!();
    println!("daemon log (filter `{DAEMON_LOG_FILTER}`):");
    println!("{}", log.excerpt());

    if !broken.is_empty() {
        bail!("the run is not valid:\n  - {}", broken.join("\n  - "));
    }
    Ok(ExitCode::SUCCESS)
}

/// `wrk`'s version line, or `None` when it is not installed.
fn wrk_version() -> Option<String> {
    // `wrk --version` prints its banner and exits 1; only a spawn failure means "missing".
    let out = Command::new("wrk")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or("wrk");
    // "wrk debian/4.1.0-3+b2 [epoll] Copyright ...": keep the name and version.
    Some(
        first
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

// ---------------------------------------------------------------------------------------
// The fake channel

/// The tests' fake channel keeping arrival times only, on a runtime of its own.
struct Channel {
    fake: FakeChannel,
    /// The key server production mode fetches its signing keys from.
    keys: Option<tokens::KeyServer>,
    /// The `serviceUrl` activities carry, with the trailing slash channels use.
    url: String,
    // Kept alive for the whole run; dropping it stops the server.
    _runtime: tokio::runtime::Runtime,
}

impl Channel {
    fn start(with_keys: bool) -> anyhow::Result<Channel> {
        // One worker: the daemon and wrk need the machine's cores more than the fake does,
        // and a real channel would not run on the bot's machine at all.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fake-channel")
            .enable_all()
            .build()
            .context("cannot start the fake channel's runtime")?;
        let fake = runtime.block_on(FakeChannel::start_with(
            Arc::new(pricewatch::clock::SystemClock),
            Keep::Arrivals,
        ));
        let keys = with_keys.then(|| {
            let key = tokens::TestKey::load("channel");
            runtime.block_on(tokens::KeyServer::start(
                vec![tokens::Published::of("bench", &key, None)],
                vec![],
            ))
        });
        Ok(Channel {
            url: fake.url.clone(),
            fake,
            keys,
            _runtime: runtime,
        })
    }

    fn replies(&self) -> u64 {
        self.fake.count() as u64
    }

    /// Requests that were not a reply POST: the daemon built a wrong URL.
    fn unexpected(&self) -> usize {
        self.fake.unexpected()
    }
}

// ---------------------------------------------------------------------------------------
// The activity

/// The request body, split around the conversation number so that the warm-up (Rust) and
/// the measured run (Lua) send byte-identical activities.
struct BodyTemplate {
    /// body = parts[0] + n + parts[1] + n + parts[2]
    parts: [String; 3],
    /// `Authorization` tokens, used in turn; none in local-development mode.
    tokens: Vec<String>,
}

impl BodyTemplate {
    fn new(service_url: &str) -> BodyTemplate {
        let service_url = serde_json::to_string(service_url).expect("a string serialises");
        BodyTemplate {
            parts: [
                r#"{"type":"message","id":"m"#.to_owned(),
                format!(
                    r#"","channelId":"emulator","serviceUrl":{service_url},"from":{{"id":"u1","name":"Ada"}},"recipient":{{"id":"bot1","name":"pricewatch"}},"conversation":{{"id":"conv-"#
                ),
                r#""},"locale":"en-US","text":"help"}"#.to_owned(),
            ],
            tokens: Vec::new(),
        }
    }

    /// The `Authorization` header of the `i`th request, if any.
    fn authorization(&self, i: usize) -> Option<String> {
        (!self.tokens.is_empty()).then(|| format!("Bearer {}", self.tokens[i % self.tokens.len()]))
    }

    fn render(&self, n: u32) -> String {
        self.parts.join(&n.to_string())
    }

    /// The wrk script: POST, JSON, a random conversation per request. The complete HTTP
    /// requests are built once in `init`, so wrk's single thread only picks one per request.
    fn lua_script(&self, conversations: u32) -> String {
        let parts: Vec<String> = self.parts.iter().map(|p| lua_string(p)).collect();
        if self.tokens.len() > 1 {
            return self.lua_script_distinct(&parts, conversations);
        }
        let authorization = match self.authorization(0) {
            Some(value) => format!("wrk.headers[\"Authorization\"] = {}\n", lua_string(&value)),
            None => String::new(),
        };
        format!(
            r#"-- generated by benches/turns.rs
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{authorization}
local parts = {{ {parts} }}
local n = {conversations}
local requests = {{}}

function init(args)
  math.randomseed(os.time())
  for i = 1, n do
    requests[i] = wrk.format(nil, nil, nil, table.concat(parts, tostring(i)))
  end
end

function request()
  return requests[math.random(1, n)]
end
"#,
            parts = parts.join(", ")
        )
    }

    /// One prepared request per token, each for a random conversation, sent round-robin:
    /// a token comes round again only after all the others.
    fn lua_script_distinct(&self, parts: &[String], conversations: u32) -> String {
        let tokens: Vec<String> = self.tokens.iter().map(|t| lua_string(t)).collect();
        format!(
            r#"-- generated by benches/turns.rs
wrk.method = "POST"

local parts = {{ {parts} }}
local tokens = {{ {tokens} }}
local n = {conversations}
local requests = {{}}
local next = 0

function init(args)
  math.randomseed(os.time())
  for i = 1, #tokens do
    local headers = {{ ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[i] }}
    requests[i] = wrk.format(nil, nil, headers, table.concat(parts, tostring(math.random(1, n))))
  end
end

function request()
  next = next % #requests + 1
  return requests[next]
end
"#,
            parts = parts.join(", "),
            tokens = tokens.join(",\n")
        )
    }
}

/// `count` channel tokens for `service_url`, valid for two hours, told apart by `jti`;
/// signed on every core (a 2048-bit RSA signature takes about a millisecond).
fn mint_tokens(service_url: &str, count: usize) -> Vec<String> {
    let key = tokens::TestKey::load("channel");
    let now = tokens::now();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = count.div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let key = &key;
                scope.spawn(move || {
                    (w * per..((w + 1) * per).min(count))
                        .map(|i| {
                            let mut claims = tokens::channel_claims(service_url, now);
                            claims["exp"] = serde_json::json!(now + 7200);
                            claims["jti"] = serde_json::json!(format!("bench-{i}"));
                            key.sign(jsonwebtoken::Algorithm::RS256, Some("bench"), &claims)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a minting thread"))
            .collect()
    })
}

/// The `[bot]` and `[auth]` sections of production mode against the local key server
/// (which also answers the bot's own token requests), with the app password in a file.
fn production_config(dir: &Path, keys: &tokens::KeyServer) -> anyhow::Result<String> {
    let password = dir.join("app-password");
    std::fs::write(&password, "bench-secret\n").context("cannot write the app password")?;
    let quoted = |s: &str| toml::Value::String(s.to_owned()).to_string();
    Ok(format!(
        "[bot]\napp_id = {}\napp_password_file = {}\ntoken_endpoint = {}\n\
         service_url_hosts = [\"127.0.0.1\"]\n[auth]\nopenid_metadata_url = {}\n",
        quoted(tokens::APP_ID),
        quoted(&password.display().to_string()),
        quoted(&keys.token_url()),
        quoted(&keys.channel_metadata_url()),
    ))
}

/// A Lua double-quoted string literal.
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            // Decimal escapes are byte-exact for anything else (UTF-8 included).
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------
// The daemon

/// The binary `cargo bench` built, or `PW_BENCH_DAEMON` (another build).
fn daemon_binary() -> std::path::PathBuf {
    std::env::var_os("PW_BENCH_DAEMON").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_BIN_EXE_pricewatch")),
        std::path::PathBuf::from,
    )
}

/// The `pricewatch serve` child. Killed on drop, so no error path leaves it running.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<DaemonLog>>,
    /// The stderr reader; joined after the daemon exits so its last lines are in `log`.
    reader: Option<std::thread::JoinHandle<()>>,
    stopped: bool,
}

struct Memory {
    hwm_kib: u64,
    rss_kib: u64,
}

impl Daemon {
    fn start(dir: &Path, extra_config: &str) -> anyhow::Result<Daemon> {
        let data = dir.join("data");
        let config = dir.join("pricewatch.toml");
        // A TOML string through the toml crate: a temp path may hold any character.
        let data_toml = toml::Value::String(data.display().to_string()).to_string();
        std::fs::write(
            &config,
            format!(
                "[server]\nbind = \"127.0.0.1:0\"\n[storage]\npath = {data_toml}\n[log]\nlevel = \"warn\"\n{extra_config}"
            ),
        )
        .context("cannot write the daemon's config")?;
        let mut child = Command::new(daemon_binary())
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .current_dir(dir)
            // RUST_LOG wins over the configured level.
            .env("RUST_LOG", DAEMON_LOG_FILTER)
            // Plain text, so `addr=` is not wrapped in colour codes.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start the pricewatch binary")?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(DaemonLog::default()));
        let (tx, rx) = mpsc::channel::<String>();
        let sink = log.clone();
        // Drains stderr for the daemon's whole life, so the pipe never fills and blocks it.
        let reader = std::thread::Builder::new()
            .name("daemon-stderr".into())
            .spawn(move || {
                let mut reader = BufReader::new(stderr);
                let mut buf = Vec::new();
                while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                    let line = strip_ansi(String::from_utf8_lossy(&buf).trim_end());
                    buf.clear();
                    if let Ok(mut l) = sink.lock() {
                        l.push(&line);
                    }
                    // Nobody listens after start-up; that is fine.
                    let _ = tx.send(line);
                }
            })
            .context("cannot start the stderr reader")?;
        let mut daemon = Daemon {
            child,
            // Replaced below; the guard must exist before anything can fail.
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            reader: Some(reader),
            stopped: false,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(LISTENING) => {
                    daemon.addr = listening_addr(&line)?;
                    return Ok(daemon);
                }
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = daemon.child.wait().context("cannot wait for the daemon")?;
                    daemon.stopped = true;
                    bail!(
                        "the daemon exited during start-up ({status}):\n{}",
                        daemon.log_excerpt()
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                    "no \"{LISTENING}\" line from the daemon within 30 s:\n{}",
                    daemon.log_excerpt()
                ),
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn memory(&self) -> anyhow::Result<Memory> {
        let path = format!("/proc/{}/status", self.pid());
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| anyhow!("no {name} in {path}"))
        };
        Ok(Memory {
            hwm_kib: field("VmHWM:")?,
            rss_kib: field("VmRSS:")?,
        })
    }

    /// SIGTERM, as systemd stops it, then waits; the daemon finishes turns in flight and
    /// flushes the store within its 10 s grace.
    fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.pid().to_string();
        let kill = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("cannot run kill")?;
        if !kill.success() {
            bail!("kill -TERM {pid} failed ({kill})");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .context("cannot wait for the daemon")?
            {
                self.stopped = true;
                // The pipe closed with the process, so this returns at once.
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("the daemon did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_excerpt(&self) -> String {
        self.log
            .lock()
            .map(|l| l.excerpt())
            .unwrap_or_else(|_| "(log unavailable)".into())
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

/// The daemon's stderr, bounded: the first and last lines, and counts.
#[derive(Default, Clone)]
struct DaemonLog {
    head: Vec<String>,
    tail: VecDeque<String>,
    /// Lines seen, cut-connection lines excepted (those are only counted).
    total: u64,
    /// WARN and ERROR lines other than the local-development notice and cut connections.
    unexpected_warnings: u64,
    /// Connections closed by the client in the middle of a request.
    cut_connections: u64,
}

impl DaemonLog {
    const KEEP: usize = 15;

    /// The logs of several daemons as one: counts added, lines one daemon after another.
    fn merged(daemons: &[Daemon]) -> DaemonLog {
        let mut all = DaemonLog::default();
        for d in daemons {
            let log = d.log.lock().map(|l| l.clone()).unwrap_or_default();
            all.total += log.total;
            all.unexpected_warnings += log.unexpected_warnings;
            all.cut_connections += log.cut_connections;
            all.head.extend(log.head);
            all.tail.extend(log.tail);
        }
        all
    }

    fn push(&mut self, line: &str) {
        if line.contains(CUT_CONNECTION) {
            // Counted and reported once; up to 32 identical lines would drown the log.
            self.cut_connections += 1;
            return;
        }
        self.total += 1;
        if (line.contains(" WARN ") || line.contains("ERROR ")) && !line.contains(EXPECTED_WARNING)
        {
            self.unexpected_warnings += 1;
        }
        if self.head.len() < Self::KEEP {
            self.head.push(line.to_owned());
        } else {
            if self.tail.len() == Self::KEEP {
                self.tail.pop_front();
            }
            self.tail.push_back(line.to_owned());
        }
    }

    fn excerpt(&self) -> String {
        let mut out: Vec<String> = self.head.iter().map(|l| format!("    {l}")).collect();
        let skipped = self.total - (self.head.len() + self.tail.len()) as u64;
        if skipped > 0 {
            out.push(format!("    ... {skipped} more lines ..."));
        }
        out.extend(self.tail.iter().map(|l| format!("    {l}")));
        if out.is_empty() {
            out.push("    (nothing)".into());
        }
        out.join("\n")
    }
}

/// Removes ANSI escape sequences (`ESC [ ... final`), should colours be on anyway.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Warm-up (the cold figure)

struct Cold {
    turns: usize,
    elapsed: Duration,
    p50_ms: f64,
    p99_ms: f64,
}

/// One `help` turn for every conversation, `concurrency` at a time, in order of id.
fn warm_up(
    addrs: &[SocketAddr],
    body: &BodyTemplate,
    conversations: u32,
    concurrency: u32,
) -> anyhow::Result<Cold> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the warm-up runtime")?;
    let client = reqwest::Client::builder()
        .no_proxy()
        // A turn is milliseconds, a first one an fsync more; a turn that takes this long
        // is stuck, and the run must say so rather than hang.
        .timeout(WARM_UP_TURN_TIMEOUT)
        .build()
        .context("cannot build the HTTP client")?;
    // Conversation `i` goes to daemon `i mod n`.
    let urls: Arc<Vec<String>> = Arc::new(
        addrs
            .iter()
            .map(|addr| format!("http://{addr}/api/messages"))
            .collect(),
    );
    let bodies: Arc<Vec<String>> = Arc::new((1..=conversations).map(|n| body.render(n)).collect());
    let next = Arc::new(AtomicU32::new(0));
    let authorizations: Arc<Vec<String>> = Arc::new(
        (0..body.tokens.len())
            .filter_map(|i| body.authorization(i))
            .collect(),
    );
    runtime.block_on(async move {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency.min(conversations) {
            let (client, urls, bodies, next, authorizations) = (
                client.clone(),
                urls.clone(),
                bodies.clone(),
                next.clone(),
                authorizations.clone(),
            );
            tasks.spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(body) = bodies.get(i) else {
                        return anyhow::Ok(latencies);
                    };
                    let t = Instant::now();
                    let mut request = client
                        .post(urls[i % urls.len()].as_str())
                        .header(reqwest::header::CONTENT_TYPE, "application/json");
                    if let Some(value) = authorizations.get(i % authorizations.len().max(1)) {
                        request = request.header(reqwest::header::AUTHORIZATION, value);
                    }
                    let response = request.body(body.clone()).send().await.map_err(|e| {
                        if e.is_timeout() {
                            anyhow!(
                                "the daemon did not answer the warm-up turn for conv-{} \
                                     within {WARM_UP_TURN_TIMEOUT:?}: it is stuck",
                                i + 1
                            )
                        } else {
                            anyhow!("warm-up turn for conv-{} failed: {e:#}", i + 1)
                        }
                    })?;
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    if status != reqwest::StatusCode::OK {
                        bail!("warm-up turn for conv-{} answered {status}: {text}", i + 1);
                    }
                    latencies.push(t.elapsed());
                }
            });
        }
        let mut latencies = Vec::with_capacity(bodies.len());
        while let Some(done) = tasks.join_next().await {
            latencies.extend(done.context("a warm-up task panicked")??);
        }
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        Ok(Cold {
            turns: latencies.len(),
            elapsed,
            p50_ms: percentile_ms(&latencies, 50.0),
            p99_ms: percentile_ms(&latencies, 99.0),
        })
    })
}

/// Nearest-rank percentile of sorted samples.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------------------
// wrk's report

struct WrkResult {
    /// Completed requests ("N requests in 15.00s").
    requests: u64,
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    socket_errors: u64,
    socket_errors_text: String,
}

impl WrkResult {
    /// Several wrks run at once as one load: counts and rates added, latencies the worse.
    fn combine(all: &[WrkResult]) -> WrkResult {
        let worst = |f: fn(&WrkResult) -> f64| all.iter().map(f).fold(0.0, f64::max);
        WrkResult {
            requests: all.iter().map(|w| w.requests).sum(),
            requests_per_s: all.iter().map(|w| w.requests_per_s).sum(),
            p50_ms: worst(|w| w.p50_ms),
            p99_ms: worst(|w| w.p99_ms),
            non_2xx: all.iter().map(|w| w.non_2xx).sum(),
            socket_errors: all.iter().map(|w| w.socket_errors).sum(),
            socket_errors_text: all
                .iter()
                .map(|w| w.socket_errors_text.as_str())
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    /// Parses wrk 4's human report (run with `--latency`).
    fn parse(out: &str) -> anyhow::Result<WrkResult> {
        let mut requests = None;
        let mut requests_per_s = None;
        let (mut p50, mut p99) = (None, None);
        let mut in_distribution = false;
        let mut non_2xx = 0;
        let (mut socket_errors, mut socket_errors_text) = (0, String::new());
        for line in out.lines().map(str::trim) {
            if line.starts_with("Latency Distribution") {
                in_distribution = true;
            } else if in_distribution && line.starts_with("50%") {
                p50 = line.split_whitespace().nth(1).and_then(wrk_time_ms);
            } else if in_distribution && line.starts_with("99%") {
                p99 = line.split_whitespace().nth(1).and_then(wrk_time_ms);
                in_distribution = false;
            } else if let Some(v) = line.strip_prefix("Requests/sec:") {
                requests_per_s = v.trim().parse::<f64>().ok();
            } else if line.contains(" requests in ") {
                requests = line.split_whitespace().next().and_then(|n| n.parse().ok());
            } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
                non_2xx = v
                    .trim()
                    .parse()
                    .with_context(|| format!("cannot read: {line}"))?;
            } else if let Some(v) = line.strip_prefix("Socket errors:") {
                // "connect 0, read 0, write 0, timeout 0"
                socket_errors = v
                    .split(',')
                    .filter_map(|kv| kv.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum();
                socket_errors_text = v.trim().to_owned();
            }
        }
        let missing = |what: &str| anyhow!("no {what} in wrk's output");
        Ok(WrkResult {
            requests: requests.ok_or_else(|| missing("request count"))?,
            requests_per_s: requests_per_s.ok_or_else(|| missing("Requests/sec"))?,
            p50_ms: p50.ok_or_else(|| missing("50% latency"))?,
            p99_ms: p99.ok_or_else(|| missing("99% latency"))?,
            non_2xx,
            socket_errors,
            socket_errors_text,
        })
    }
}

/// A wrk time ("812.00us", "1.23ms", "2.00s", "1.00m", "1.00h") in milliseconds.
fn wrk_time_ms(s: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60e3)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600e3)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

// ---------------------------------------------------------------------------------------
// /proc helpers (Linux only, like the daemon's deployment)

/// CPU time of a process in clock ticks: its own (utime + stime) and that of its
/// waited-for children (cutime + cstime).
#[derive(Clone, Copy)]
struct ProcessTicks {
    own: u64,
    children: u64,
}

/// The fields of a `/proc/.../stat` line after the `(comm)`, plus the comm.
fn stat_fields(path: &str) -> Option<(String, Vec<u64>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    // Field 3 (state) is not a number; keep positions by mapping it to 0.
    let fields = text
        .get(close + 1..)?
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Some((comm, fields))
}

fn process_ticks(pid: &str) -> Option<ProcessTicks> {
    let (_, f) = stat_fields(&format!("/proc/{pid}/stat"))?;
    // After the comm, index 0 is field 3; utime/stime/cutime/cstime are fields 14..17.
    Some(ProcessTicks {
        own: f.get(11)? + f.get(12)?,
        children: f.get(13)? + f.get(14)?,
    })
}

/// Every thread of `pid`: tid -> (name, utime, stime).
fn thread_ticks(pid: u32) -> HashMap<String, (String, u64, u64)> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let tid = task.file_name().to_string_lossy().into_owned();
        if let Some((comm, f)) = stat_fields(&format!("/proc/{pid}/task/{tid}/stat")) {
            if let (Some(u), Some(s)) = (f.get(11), f.get(12)) {
                out.insert(tid, (comm, *u, *s));
            }
        }
    }
    out
}

/// "name:kernel-wait-channel" of every thread, to tell a deadlock (all asleep) from a
/// busy loop when the daemon stops answering.
fn thread_states(pid: u32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return "(unavailable)".into();
    };
    let mut states: Vec<String> = tasks
        .flatten()
        .map(|t| {
            let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
            format!("{}:{}", read("comm").trim(), read("wchan").trim())
        })
        .collect();
    states.sort();
    states.join(", ")
}

/// CPU ticks one thread used between two samples.
struct ThreadDelta {
    /// "comm[tid]"
    name: String,
    user: u64,
    system: u64,
}

/// Per thread, the ticks used between the two samples; threads born in between included.
fn thread_deltas(
    before: &HashMap<String, (String, u64, u64)>,
    after: &HashMap<String, (String, u64, u64)>,
) -> Vec<ThreadDelta> {
    after
        .iter()
        .map(|(tid, (comm, user, system))| {
            let (u0, s0) = before.get(tid).map_or((0, 0), |b| (b.1, b.2));
            ThreadDelta {
                name: format!("{comm}[{tid}]"),
                user: user.saturating_sub(u0),
                system: system.saturating_sub(s0),
            }
        })
        .collect()
}

/// USER_HZ; 100 on every Linux this runs on, asked anyway.
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&t: &f64| t > 0.0)
        .unwrap_or(100.0)
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|m| m.trim().to_owned())
}

/// KiB (as /proc reports) to MB (10^6 bytes, the unit of the targets).
fn kib_to_mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// 12345.6 -> "12,346".
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
