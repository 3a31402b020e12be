//! The `pricewatch` binary as an operator runs it: signals, exit codes, start-up errors.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pricewatch::store::Store;

pub(crate) use crate::daemon::{activity, post_activity, write_config, KillOnDrop};
use crate::fakes::{open_store, FakeChannel, FakeShop, Page};
use crate::helpers::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_flushes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    // The watch's URL does not exist: with checks on, its failed first check would
    // rightly remove it before the SIGTERM this test is about.
    let file = write_config(dir.path(), "\n[schedule]\nenabled = false\n");
    let (mut child, addr, log) = spawn_daemon(&file);
    assert!(log.contains("LOCAL-DEVELOPMENT MODE"), "{log}");

    let channel = FakeChannel::start().await;
    let activity = activity(
        "emulator",
        &channel.url,
        "c1",
        "watch https://shop.example/p/1",
    );
    assert_eq!(post_activity(&addr, &activity).await, 200);

    let mut child = child.0.take().unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "exit status after SIGTERM");

    let store = open_store(&dir.path().join("data")).unwrap();
    assert_eq!(store.stats().await.unwrap().watches, 1);
}

/// Runs `pricewatch serve --config FILE`, expects it to exit non-zero, returns its stderr.
fn serve_must_fail(file: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pricewatch"))
        .args(["serve", "--config"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "serve must refuse {}",
        file.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn serve_refuses_a_bad_config_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "\n[alerts]\nmax_watches_per_conversation = 0\n");
    let stderr = serve_must_fail(&file);
    assert!(
        stderr.contains("pricewatch.toml")
            && stderr.contains("alerts.max_watches_per_conversation"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_an_unusable_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\n[storage]\npath = {:?}\n",
            blocker.join("data").display().to_string()
        ),
    )
    .unwrap();
    let stderr = serve_must_fail(&file);
    assert!(stderr.contains("not-a-dir/data"), "{stderr}");
}

#[test]
fn probe_parses_a_price_text_and_fails_without_a_price() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pricewatch"))
            .arg("probe")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--price-text", "CHF 1'049.95", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["amount"], "1049.95");
    assert_eq!(v["currency"], "CHF");

    let out = run(&["--price-text", "$19.99", "--currency-hint", ".com.au"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("currency: AUD"));

    let out = run(&["--price-text", "Call for price"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no amount"));
}

fn probe(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pricewatch"))
        .arg("probe")
        .args(args)
        .output()
        .unwrap()
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/pages/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn probe_reads_a_saved_page_with_its_candidates() {
    let page = fixture("shopify-variant-selected.html");
    let url =
        "https://www.northfield-outfitters.com/products/cast-iron-skillet?variant=44012345678902";
    let out = probe(&["--html", &page, "--url", url, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["amount"], "42.00");
    assert_eq!(v["currency"], "USD");
    assert_eq!(v["method"], "json-ld");
    assert_eq!(v["availability"], "in_stock");
    assert_eq!(v["title"], "Cast Iron Skillet");
    assert_eq!(v["candidates"].as_array().unwrap().len(), 4);
    assert_eq!(v["error"], serde_json::Value::Null);

    // Text output, without the variant: the lowest in-stock offer, every candidate listed.
    let out = probe(&[
        "--html",
        &page,
        "--url",
        "https://www.northfield-outfitters.com/products/cast-iron-skillet",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("price:        34.00 USD"), "{text}");
    assert!(
        text.contains("candidates:   4") && text.contains("* 34.00 USD"),
        "{text}"
    );
}

#[test]
fn probe_says_why_there_is_no_price_and_exits_1() {
    let out = probe(&[
        "--html",
        &fixture("marketplace-spans-no-site-rule.html"),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["amount"], serde_json::Value::Null);
    assert_eq!(v["error"], "no_price");
    assert!(
        v["problem"]
            .as_str()
            .unwrap()
            .contains("looked for JSON-LD"),
        "{v}"
    );

    // The same page with a site rule from a config file.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rules.toml");
    std::fs::write(
        &config,
        "[[site_rule]]\nhost = \"marketplace.example\"\nselector = \"#no-such-element\"\n",
    )
    .unwrap();
    let out = probe(&[
        "--html",
        &fixture("marketplace-spans-no-site-rule.html"),
        "--url",
        "https://www.marketplace.example/dp/1",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("the site rule #no-such-element"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = probe(&["--html", "/nonexistent/page.html"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/page.html"));
}

#[test]
fn probe_refuses_private_addresses_before_any_request() {
    for url in [
        "http://127.0.0.1:9/p",
        "http://0x7f.1/",
        "http://169.254.169.254/latest",
    ] {
        let out = probe(&[url, "--json"]);
        assert_eq!(out.status.code(), Some(1), "{url}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["error"], "fetch_failed", "{url}");
        assert!(
            v["problem"]
                .as_str()
                .unwrap()
                .contains("only fetches public addresses"),
            "{url}: {v}"
        );
    }
}

/// Starts `pricewatch serve --config FILE` and returns it with its address (read from its
/// start-up log line) and the log up to that line.
pub(crate) fn spawn_daemon(file: &std::path::Path) -> (KillOnDrop, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pricewatch"));
    command.args(["serve", "--config"]).arg(file);
    spawn_command(command)
}

/// Starts `command`, which runs the daemon, and returns as [`spawn_daemon`] does.
pub(crate) fn spawn_command(mut command: Command) -> (KillOnDrop, String, String) {
    let mut child = command
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    // Killed and reaped on drop, whichever way this function leaves.
    let child = KillOnDrop(Some(child));
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no listening line in:\n{log}"));
        log.push_str(&line);
        log.push('\n');
        if let Some(rest) = line.split("addr=").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().to_owned();
            return (child, addr, log);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_committed_but_not_sent_arrives_after_a_kill_9() {
    let shop = FakeShop::start().await;
    // Slow enough that the command's reply is out before the first price is read.
    shop.put(
        "/p/1",
        Page::product("Skillet /p/1", "100.00").after(Duration::from_secs(1)),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        dir.path(),
        "\n[schedule]\ntick = \"* * * * * *\"\n\n[fetch]\nallow_networks = [\"127.0.0.0/8\"]\n\n\
         [bot]\nreply_timeout = \"60s\"\n",
    );
    let (mut daemon, addr, _) = spawn_daemon(&file);
    let channel = FakeChannel::start().await;
    let activity = activity(
        "emulator",
        &channel.url,
        "c1",
        &format!("watch {}/p/1", shop.base),
    );
    assert_eq!(post_activity(&addr, &activity).await, 200);
    assert_eq!(channel.received().len(), 1, "the reply");

    // The channel hangs: the first-price message is committed, its send never answered.
    channel.answer_after(Duration::from_secs(120));
    let got = wait_for(&channel, 2).await;
    assert!(got[1].text().contains("80.00"), "{}", got[1].text());
    let mut child = daemon.0.take().unwrap();
    child.kill().unwrap(); // SIGKILL: no shutdown, no flush
    child.wait().unwrap();

    // A new daemon on the same data sends it again; nothing was lost.
    channel.answer_after(Duration::ZERO);
    let (_daemon, _, _) = spawn_daemon(&file);
    let got = wait_for(&channel, 3).await;
    assert!(got[2].text().contains("80.00"), "{}", got[2].text());
    assert_eq!(got[2].path, "/v3/conversations/c1/activities");
}

fn outbox_cmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pricewatch"))
        .arg("outbox")
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_lists_pending_and_dead_and_requeues_on_a_stopped_daemons_data() {
    use pricewatch::domain::ProductUrl;
    use pricewatch::domain::{CheckRecord, NewOutbox, NewWatch, OutboxMessage, Rule};
    use pricewatch::inbound::activity::ConversationKey;
    use pricewatch::store::AddWatch;

    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "");
    let config = pricewatch::ops::config::load(Some(&file), std::iter::empty()).unwrap();
    let open = || open_store(&config.storage.path).unwrap();
    let conv = ConversationKey {
        channel_id: "slack".into(),
        conversation_id: "C42".into(),
    };
    {
        let store = open();
        let AddWatch::Added(w) = store
            .add_watch(
                NewWatch {
                    conversation: conv.clone(),
                    user: None,
                    url: ProductUrl::parse("https://shop.example/p/1", 2048).unwrap(),
                    rule: Rule::Drop { percent: 20.into() },
                    created_at_ms: 1_000,
                },
                10,
            )
            .await
            .unwrap()
        else {
            panic!("not added");
        };
        let message = |alert: &str| NewOutbox {
            alert_id: alert.into(),
            conversation: conv.clone(),
            watch_id: Some(w.id),
            message: OutboxMessage::FirstCheckFailed {
                url: w.url.as_str().into(),
                reason: "404".into(),
            },
        };
        let product = store.product(&w.url).await.unwrap().unwrap();
        let queued = store
            .record_check(CheckRecord {
                product,
                change: None,
                watches: vec![],
                messages: vec![message("a-1"), message("a-2")],
                now_ms: 1_000,
            })
            .await
            .unwrap();
        store
            .schedule_retry(queued[0].id, 5_000, "the channel answered 502: busy".into())
            .await
            .unwrap();
        assert!(store
            .move_to_dead_letters(queued[1].id, "the channel answered 400: bad".into(), 2_000)
            .await
            .unwrap());
    }

    let out = outbox_cmd(&["--config", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("pending: 1") && text.contains("dead: 1"),
        "{text}"
    );
    assert!(
        text.contains("slack C42") && text.contains("alert a-1"),
        "{text}"
    );
    assert!(
        text.contains("last error: the channel answered 502: busy"),
        "{text}"
    );
    assert!(
        text.contains("last error: the channel answered 400: bad"),
        "{text}"
    );

    let out = outbox_cmd(&["retry", "424242", "--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not dead letters: 424242"));

    let out = outbox_cmd(&["retry", "--all-dead", "--config", file.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-queued 1 dead letter(s)"));

    {
        let store = open();
        assert_eq!(store.stats().await.unwrap().outbox, 2);
        assert!(store.dead_letters(10).await.unwrap().is_empty());
        // While something holds the data directory (a running daemon), the command refuses.
        let out = outbox_cmd(&["--config", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("stop the daemon first") && err.contains("locked"),
            "{err}"
        );
    }
}

/// `pricewatch serve --config FILE` as a child process whose whole stderr is kept as raw
/// bytes (a stray control byte must be seen as it was written), for tests that read the
/// daemon's own log.
pub(crate) struct LoggedDaemon {
    daemon: KillOnDrop,
    pub(crate) addr: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl LoggedDaemon {
    /// Starts the daemon with the config's own log level and format (whatever the test
    /// runner's environment says) and waits for its listening line.
    pub(crate) async fn start(file: &std::path::Path) -> LoggedDaemon {
        use std::io::Read;
        let mut child = Command::new(env!("CARGO_BIN_EXE_pricewatch"))
            .args(["serve", "--config"])
            .arg(file)
            .env_remove("RUST_LOG")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let daemon = KillOnDrop(Some(child));
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let reader = {
            let log = std::sync::Arc::clone(&log);
            std::thread::spawn(move || {
                let mut buf = [0; 8192];
                while let Ok(n @ 1..) = stderr.read(&mut buf) {
                    log.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
            if let Some(rest) = text.split("addr=").nth(1) {
                if let Some(addr) = rest
                    .split_whitespace()
                    .next()
                    .filter(|_| rest.contains('\n'))
                {
                    break addr.to_owned();
                }
            }
            assert!(Instant::now() < deadline, "no listening line in:\n{text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        LoggedDaemon {
            daemon,
            addr,
            log,
            reader: Some(reader),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.daemon.0.as_ref().map_or(0, std::process::Child::id)
    }

    /// The log so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// SIGKILL: no shutdown, no lease given back; returns its whole log once reaped.
    pub(crate) fn kill9(mut self) -> String {
        if let Some(mut child) = self.daemon.0.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.text()
    }

    /// Stops the daemon with SIGTERM, checks it exits 0, and returns its whole log.
    pub(crate) fn stop(mut self) -> Vec<u8> {
        let mut child = self.daemon.0.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(child.wait().unwrap().code(), Some(0));
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        let log = self.log.lock().unwrap().clone();
        log
    }
}
