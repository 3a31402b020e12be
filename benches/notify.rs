//! Fan-out end to end (issue 17, point 5): what an operator gets from `POST /api/notify`.
//!
//! Each run, in a fresh temporary directory:
//! 1. `pricewatch import` writes N conversations (default 10,000) on the `emulator`
//!    channel into an empty store, every one's `serviceUrl` the fake Connector below;
//! 2. nginx (Debian package `nginx-light` or `nginx`), a child process with its own
//!    configuration (`daemon off`, one process, loopback), is the Connector: it answers
//!    `POST /v3/conversations/{id}/activities` with 201 and `{"id":"1"}`, and writes each
//!    arrival to an access log with `$msec` (its clock, milliseconds since the epoch);
//! 3. the release daemon starts as a child process (`pricewatch serve`, local-development
//!    mode, no rate limits on the Emulator channel, the admin token in a file named by
//!    `notify.admin_token_file`);
//! 4. one `POST /api/notify` (no conversation named: every stored one) is timed to its
//!    202, then the access log is read until N arrivals are in it.
//!
//! Reported per run: the time from the request to the 202 (queueing and flushing N
//! announcements), from the 202 to the first and the last arrival, the sending rate (N
//! over the time from the 202 to the last arrival), the total (request to last arrival),
//! the daemon's and nginx's CPU over the run, and a check that every conversation got
//! exactly one message. Then the median and the spread over the runs.
//!
//! `cargo bench --bench notify`. Overrides: `PW_BENCH_CONVERSATIONS` (10,000),
//! `PW_BENCH_RUNS` (5), `PW_BENCH_BIN` (another `pricewatch` executable, to compare two
//! builds with the same harness), `PW_BENCH_LOG` (the daemon's `RUST_LOG`, default
//! `warn,pricewatch::app=info` as in the turns benchmark; `info` is the shipped default,
//! which logs a line per delivered message).
//! Exit status: 0 when every run was sound (even if the target is missed), 1 when a run is
//! broken (a message lost or sent twice, a non-202), 2 when nginx is not installed.
//! Without `--bench` (as `cargo test --benches` runs it): one run of 200 conversations,
//! skipped when nginx is missing.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use pricewatch::ops::transfer::{
    AccountRecord, ConversationAccountRecord, ConversationRecord, HeaderRecord, Record, VERSION,
};

#[path = "common/listening.rs"]
mod listening;
#[path = "common/procstat.rs"]
mod procstat;

use listening::listening_addr;

use procstat::{cpu_seconds, env_usize};

/// Issue 17: request to last message for 10,000 conversations.
const TARGET_TOTAL_S: f64 = 0.45;
/// The seed's notify loop on botbuilder-js, 10,000 conversations, same kind of fake
/// Connector (issue 17's figure, not re-measured here: no route to fetch the SDK).
const SDK_TOTAL_S: (f64, f64) = (5.8, 7.1);
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
const LISTENING: &str = "pricewatch is listening";
const DEFAULT_LOG: &str = "warn,pricewatch::app=info";
/// How long the last arrivals may take before a run is declared broken.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("notify bench FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let Some(nginx) = find_nginx() else {
        if smoke {
            println!("notify bench (smoke): nginx is not installed, skipping");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("notify bench: nginx is not installed: apt-get install -y nginx-light");
        return Ok(ExitCode::from(2));
    };
    let (conversations, runs) = if smoke {
        println!("notify bench: smoke run (started without --bench); figures are not meaningful");
        (200, 1)
    } else {
        (
            env_usize("PW_BENCH_CONVERSATIONS", 10_000),
            env_usize("PW_BENCH_RUNS", 5),
        )
    };
    let log = std::env::var("PW_BENCH_LOG").unwrap_or_else(|_| DEFAULT_LOG.to_owned());
    println!(
        "notify bench: {conversations} emulator conversations, {runs} runs, nginx {}, daemon {} with RUST_LOG={log}",
        nginx.display(),
        binary().display()
    );
    let mut results = Vec::with_capacity(runs);
    for i in 1..=runs {
        let r = one_run(&nginx, conversations, &log).with_context(|| format!("run {i}"))?;
        println!(
            "run {i}: 202 after {:.3} s; first arrival +{:.3} s, last +{:.3} s after the 202; \
             {:.0} messages/s; total {:.3} s; daemon CPU {:.2} s, nginx CPU {:.2} s",
            r.queued_s,
            r.first_after_202_s,
            r.sending_s,
            r.rate(),
            r.total_s,
            r.daemon_cpu_s,
            r.nginx_cpu_s
        );
        results.push(r);
    }
    report(&results, conversations);
    Ok(ExitCode::SUCCESS)
}

struct RunResult {
    conversations: usize,
    queued_s: f64,
    first_after_202_s: f64,
    sending_s: f64,
    total_s: f64,
    daemon_cpu_s: f64,
    nginx_cpu_s: f64,
}

impl RunResult {
    fn rate(&self) -> f64 {
        self.conversations as f64 / self.sending_s.max(0.001)
    }
}

fn one_run(nginx: &Path, conversations: usize, log: &str) -> anyhow::Result<RunResult> {
    let dir = tempfile::Builder::new()
        .prefix("pricewatch-notify-bench-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let connector = Nginx::start(nginx, dir.path())?;
    let service_url = format!("http://{}", connector.addr);
    let config = write_config(dir.path())?;
    let export = dir.path().join("conversations.jsonl");
    write_export(&export, &service_url, conversations)?;
    let import = Command::new(binary())
        .arg("import")
        .arg("--config")
        .arg(&config)
        .arg(&export)
        .env("RUST_LOG", "warn")
        .output()
        .context("cannot run pricewatch import")?;
    if !import.status.success() {
        bail!(
            "pricewatch import failed ({}): {}",
            import.status,
            String::from_utf8_lossy(&import.stderr)
        );
    }
    let mut daemon = Daemon::start(dir.path(), &config, log)?;
    let daemon_stat = format!("/proc/{}/stat", daemon.child.id());
    let nginx_stat = format!("/proc/{}/stat", connector.child.id());
    let cpu_before = (cpu(&daemon_stat)?, cpu(&nginx_stat)?);

    let body =
        serde_json::json!({ "text": "The bench announces: prices are being watched." }).to_string();
    let requested = epoch_s();
    let (status, answer) = post(daemon.addr, "/api/notify", &body)?;
    let accepted = epoch_s();
    if status != 202 {
        bail!("POST /api/notify answered {status}: {answer}");
    }
    let queued: serde_json::Value =
        serde_json::from_str(&answer).with_context(|| format!("202 body {answer:?}"))?;
    if queued["queued"].as_u64() != Some(conversations as u64) {
        bail!("the 202 says {answer}, for {conversations} conversations");
    }
    let arrivals = connector.wait_for(conversations)?;
    let cpu_after = (cpu(&daemon_stat)?, cpu(&nginx_stat)?);
    check_once_each(&arrivals, conversations)?;
    let first = arrivals.iter().map(|a| a.at_s).fold(f64::MAX, f64::min);
    let last = arrivals.iter().map(|a| a.at_s).fold(0.0, f64::max);
    let exit = daemon.stop()?;
    if !exit.success() {
        bail!("the daemon exited with {exit} after SIGTERM");
    }
    Ok(RunResult {
        conversations,
        queued_s: accepted - requested,
        first_after_202_s: first - accepted,
        sending_s: last - accepted,
        total_s: last - requested,
        daemon_cpu_s: cpu_after.0 - cpu_before.0,
        nginx_cpu_s: cpu_after.1 - cpu_before.1,
    })
}

fn report(results: &[RunResult], conversations: usize) {
    let machine = cpu_model().unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!("## notify fan-out, {conversations} conversations ({cores} cores, {machine})");
    println!();
    println!("| run | request → 202 | 202 → first | 202 → last | messages/s | total | daemon CPU | nginx CPU |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, r) in results.iter().enumerate() {
        println!(
            "| {} | {:.3} s | {:.3} s | {:.3} s | {:.0} | {:.3} s | {:.2} s | {:.2} s |",
            i + 1,
            r.queued_s,
            r.first_after_202_s,
            r.sending_s,
            r.rate(),
            r.total_s,
            r.daemon_cpu_s,
            r.nginx_cpu_s
        );
    }
    let stat = |f: fn(&RunResult) -> f64| {
        let mut v: Vec<f64> = results.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let show = |name: &str, (median, lo, hi): (f64, f64, f64), unit: &str, digits: usize| {
        println!(
            "- {name}: median {median:.digits$}{unit} (spread {lo:.digits$}–{hi:.digits$}{unit})"
        );
    };
    println!();
    show("request → 202 (queueing)", stat(|r| r.queued_s), " s", 3);
    show("202 → last message", stat(|r| r.sending_s), " s", 3);
    show("sending rate", stat(RunResult::rate), " messages/s", 0);
    let total = stat(|r| r.total_s);
    show("total, request → last message", total, " s", 3);
    show("daemon CPU", stat(|r| r.daemon_cpu_s), " s", 2);
    println!("- every conversation got exactly one message, in every run");
    if conversations == 10_000 {
        let met = if total.0 <= TARGET_TOTAL_S {
            "met"
        } else {
            "missed"
        };
        println!(
            "- target ≤ {TARGET_TOTAL_S} s: {met}; {:.1}–{:.1}× the SDK loop's {}–{} s (median {:.1}×)",
            SDK_TOTAL_S.0 / total.2,
            SDK_TOTAL_S.1 / total.1,
            SDK_TOTAL_S.0,
            SDK_TOTAL_S.1,
            (SDK_TOTAL_S.0 + SDK_TOTAL_S.1) / 2.0 / total.0
        );
    }
}

// ---------------------------------------------------------------------------------------
// The store and the daemon

fn write_config(dir: &Path) -> anyhow::Result<PathBuf> {
    let token = dir.join("admin-token");
    std::fs::write(&token, format!("{ADMIN_TOKEN}\n")).context("cannot write the token")?;
    let config = dir.join("pricewatch.toml");
    // TOML strings through the toml crate: a temporary path may hold any character.
    let string = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\n[storage]\npath = {}\n[log]\nlevel = \"warn\"\n\
             [schedule]\nenabled = false\n[notify]\nadmin_token_file = {}\n",
            string(&dir.join("data")),
            string(&token)
        ),
    )
    .context("cannot write the daemon's config")?;
    Ok(config)
}

/// An export holding only conversations: what `pricewatch import` reads into an empty
/// store in one transaction.
fn write_export(path: &Path, service_url: &str, conversations: usize) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).context("cannot write the export")?;
    let mut out = std::io::BufWriter::new(file);
    let line = |out: &mut std::io::BufWriter<std::fs::File>, r: &Record| -> anyhow::Result<()> {
        serde_json::to_writer(&mut *out, r)?;
        out.write_all(b"\n")?;
        Ok(())
    };
    line(
        &mut out,
        &Record::Header(HeaderRecord {
            version: VERSION,
            exported_at: "2026-12-04T00:00:00Z".into(),
        }),
    )?;
    for i in 0..conversations {
        line(
            &mut out,
            &Record::Conversation(ConversationRecord {
                channel_id: "emulator".into(),
                service_url: service_url.to_owned(),
                conversation: ConversationAccountRecord {
                    id: conversation_id(i),
                    name: None,
                    is_group: None,
                    conversation_type: None,
                    tenant_id: None,
                },
                user: Some(AccountRecord {
                    id: format!("user-{i}"),
                    name: Some("Bench User".into()),
                    aad_object_id: None,
                    role: Some("user".into()),
                }),
                bot: AccountRecord {
                    id: "pricewatch-bot".into(),
                    name: Some("pricewatch".into()),
                    aad_object_id: None,
                    role: Some("bot".into()),
                },
                locale: Some(if i % 4 == 0 { "fr-FR" } else { "en-US" }.into()),
                unreachable: None,
            }),
        )?;
    }
    out.flush().context("cannot write the export")?;
    Ok(())
}

/// Ids that need no percent-encoding, so the access log's URI names them as they are.
fn conversation_id(i: usize) -> String {
    format!("bench-conversation-{i:06}")
}

struct Daemon {
    child: Child,
    addr: SocketAddr,
    stopped: bool,
}

impl Daemon {
    fn start(dir: &Path, config: &Path, log: &str) -> anyhow::Result<Daemon> {
        let mut child = Command::new(binary())
            .arg("serve")
            .arg("--config")
            .arg(config)
            .current_dir(dir)
            .env("RUST_LOG", log)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start the pricewatch binary")?;
        let stderr = child.stderr.take().context("stderr is piped")?;
        let (tx, rx) = mpsc::channel::<String>();
        // Drains stderr for the daemon's whole life, so the pipe never fills; warnings
        // beyond the local-development notice are shown.
        std::thread::spawn(move || {
            let reader = BufReader::new(stderr);
            for line in reader.lines().map_while(Result::ok) {
                if line.contains("ERROR") {
                    eprintln!("daemon: {line}");
                }
                let _ = tx.send(line);
            }
        });
        let mut daemon = Daemon {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stopped: false,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .map_err(|_| anyhow!("no \"{LISTENING}\" line from the daemon within 30 s"))?;
            if line.contains(LISTENING) {
                daemon.addr = listening_addr(&line)?;
                return Ok(daemon);
            }
        }
    }

    fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        terminate(&mut self.child, "-TERM")?;
        self.stopped = true;
        self.child.wait().context("cannot wait for the daemon")
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

fn terminate(child: &mut Child, signal: &str) -> anyhow::Result<()> {
    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args([signal, &pid])
        .status()
        .context("cannot run kill")?;
    if !status.success() {
        bail!("kill {signal} {pid} failed ({status})");
    }
    Ok(())
}

/// One HTTP/1.1 request on its own connection; the status and the body.
fn post(addr: SocketAddr, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).context("cannot connect to the daemon")?;
    stream.set_nodelay(true)?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .context("cannot read the answer")?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP answer: {answer:?}"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

// ---------------------------------------------------------------------------------------
// The fake Connector

/// The daemon under test: this build's, unless `PW_BENCH_BIN` names another.
fn binary() -> PathBuf {
    std::env::var_os("PW_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pricewatch")))
}

fn find_nginx() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

struct Nginx {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

struct Arrival {
    at_s: f64,
    conversation: String,
}

impl Nginx {
    fn start(nginx: &Path, dir: &Path) -> anyhow::Result<Nginx> {
        let root = dir.join("nginx");
        std::fs::create_dir_all(root.join("temp")).context("cannot create nginx's directory")?;
        // A free port: taken from the kernel, released, and given to nginx at once.
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log = root.join("arrivals.log");
        let r = root.display();
        // Keep-alive without a request limit: the Bot Framework's Connector keeps its
        // connections open, and nginx's default of 1,000 requests per connection would
        // make the daemon reconnect every 1,000 messages.
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {r}/nginx.pid;\n\
             error_log {r}/error.log warn;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {r}/temp/body;\n  \
             proxy_temp_path {r}/temp/proxy;\n  fastcgi_temp_path {r}/temp/fastcgi;\n  \
             uwsgi_temp_path {r}/temp/uwsgi;\n  scgi_temp_path {r}/temp/scgi;\n  \
             log_format arrivals '$msec $request_uri $status';\n  \
             keepalive_requests 1000000;\n  keepalive_timeout 60s;\n  \
             server {{\n    listen {addr};\n    \
             location ~ ^/v3/conversations/[^/]+/activities$ {{\n      \
             access_log {log} arrivals;\n      default_type application/json;\n      \
             return 201 '{{\"id\":\"1\"}}';\n    }}\n    \
             location / {{ return 404; }}\n  }}\n}}\n",
            log = log.display()
        );
        let conf = root.join("nginx.conf");
        std::fs::write(&conf, config).context("cannot write nginx.conf")?;
        let child = Command::new(nginx)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start nginx")?;
        let mut me = Nginx { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = me.child.try_wait()? {
                let mut err = String::new();
                if let Some(mut e) = me.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                bail!("nginx exited at start ({status}): {err}");
            }
            if Instant::now() > deadline {
                bail!("nginx does not listen on {addr} after 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(me)
    }

    /// The arrivals, once `expected` are in the log (each line is written as its request
    /// ends, unbuffered). Looks at the file's size every 20 ms and reads it only when it
    /// has stopped growing, so the reading costs the run little.
    fn wait_for(&self, expected: usize) -> anyhow::Result<Vec<Arrival>> {
        let deadline = Instant::now() + ARRIVAL_TIMEOUT;
        let mut last_size = 0;
        let mut last_read = u64::MAX;
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let size = std::fs::metadata(&self.log).map_or(0, |m| m.len());
            if size > 0 && size == last_size && size != last_read {
                last_read = size;
                let arrivals = self.arrivals()?;
                if arrivals.len() >= expected {
                    // A little longer, so a duplicate sent late is seen too.
                    std::thread::sleep(Duration::from_millis(300));
                    return self.arrivals();
                }
            }
            last_size = size;
            if Instant::now() > deadline {
                let got = self.arrivals().map_or(0, |a| a.len());
                bail!("{got} of {expected} messages arrived within {ARRIVAL_TIMEOUT:?}");
            }
        }
    }

    fn arrivals(&self) -> anyhow::Result<Vec<Arrival>> {
        let text = std::fs::read_to_string(&self.log).context("cannot read the access log")?;
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut f = l.split(' ');
                let (Some(at), Some(uri), Some(status)) = (f.next(), f.next(), f.next()) else {
                    bail!("bad access log line {l:?}");
                };
                if status != "201" {
                    bail!("nginx answered {status}: {l:?}");
                }
                let conversation = uri
                    .strip_prefix("/v3/conversations/")
                    .and_then(|r| r.strip_suffix("/activities"))
                    .ok_or_else(|| anyhow!("not a send: {l:?}"))?;
                Ok(Arrival {
                    at_s: at.parse().with_context(|| format!("bad $msec in {l:?}"))?,
                    conversation: conversation.to_owned(),
                })
            })
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = terminate(&mut self.child, "-QUIT");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn check_once_each(arrivals: &[Arrival], conversations: usize) -> anyhow::Result<()> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(conversations);
    for a in arrivals {
        *seen.entry(a.conversation.as_str()).or_default() += 1;
    }
    let twice = seen.values().filter(|&&n| n > 1).count();
    let missing = (0..conversations)
        .filter(|&i| !seen.contains_key(conversation_id(i).as_str()))
        .count();
    if twice > 0 || missing > 0 || seen.len() != conversations {
        bail!(
            "{} arrivals: {twice} conversations got more than one message, {missing} got none, \
             {} unknown",
            arrivals.len(),
            seen.len() + missing - conversations
        );
    }
    Ok(())
}

fn cpu(stat: &str) -> anyhow::Result<f64> {
    cpu_seconds(stat).ok_or_else(|| anyhow!("cannot read {stat}"))
}

fn epoch_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
}
