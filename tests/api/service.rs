//! The daemon as a systemd service: what it tells the service manager, through the real
//! `$NOTIFY_SOCKET` protocol for the binary, and through a recorder for a daemon whose
//! watch loop the test blocks.

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pricewatch::app::ServiceHooks;
use pricewatch::clock::{Clock, ManualClock, SystemClock};
use pricewatch::ops::service::{ServiceManager, Signal};
use serde_json::{json, Value};

use crate::fakes::{FakeChannel, FakeShop, Page};
use crate::helpers::{eventually, test_config, TestApp};
use crate::process::{activity, post_activity, write_config, KillOnDrop};

/// A service manager that keeps what it was told, with a watchdog interval.
struct Recorder {
    interval: Duration,
    signals: Mutex<Vec<(Instant, Signal)>>,
}

impl ServiceManager for Recorder {
    fn notify(&self, signals: &[Signal]) {
        let now = Instant::now();
        let mut all = self.signals.lock().unwrap();
        all.extend(signals.iter().map(|s| (now, s.clone())));
    }

    fn watchdog_interval(&self) -> Option<Duration> {
        Some(self.interval)
    }
}

impl Recorder {
    fn pings(&self) -> usize {
        let all = self.signals.lock().unwrap();
        all.iter().filter(|(_, s)| *s == Signal::Watchdog).count()
    }

    /// Waits until the pings have grown by `n`.
    async fn pings_grow(&self, n: usize) {
        let from = self.pings();
        eventually(|| async {
            let now = self.pings();
            if now >= from + n {
                Ok(())
            } else {
                Err(format!("{n} more watchdog pings; {} so far", now - from))
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_watch_loop_stops_the_watchdog_pings() {
    let shop = FakeShop::start().await;
    shop.put("/p/1", Page::product("Kettle", "40.00"));
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.schedule.enabled = true;
    config.schedule.tick = "* * * * * *".into();
    // Due again every second (below what a loaded file may set), so the loop's own ticks
    // fetch it.
    config.schedule.interval = Duration::from_secs(1);
    config.schedule.jitter = 0;
    config.fetch.allow_networks = vec!["127.0.0.0/8".into()];
    config.fetch.host_gap = Duration::ZERO;
    config.fetch.timeout = Duration::from_secs(60);
    let recorder = Arc::new(Recorder {
        interval: Duration::from_millis(100),
        signals: Mutex::new(Vec::new()),
    });
    let t = TestApp::spawn_with_service(
        config,
        Arc::new(pricewatch::clock::SystemClock),
        ServiceHooks {
            manager: recorder.clone(),
            stale_after: Duration::from_millis(1500),
            wrap_store: None,
        },
    )
    .await;
    assert_eq!(
        t.post(&t.message("c1", &format!("watch {}/p/1", shop.base)))
            .await
            .0,
        200
    );
    let ready = recorder
        .signals
        .lock()
        .unwrap()
        .iter()
        .any(|(_, s)| *s == Signal::Ready);
    assert!(ready, "READY=1 once serving");
    recorder.pings_grow(5).await;
    assert_eq!(readyz(&t).await, (200, json!({"status": "ready"})));
    let fetched = shop.hits();
    eventually(|| async {
        match shop.hits() > fetched {
            true => Ok(()),
            false => Err("a scheduled check of the product"),
        }
    })
    .await;

    // The shop stops answering: the loop's next check hangs (its timeout is a minute),
    // so the loop no longer goes round and the pings stop.
    shop.hold();
    let stopped = eventually(|| async {
        let before = recorder.pings();
        tokio::time::sleep(Duration::from_millis(600)).await;
        match recorder.pings() == before {
            true => Ok(before),
            false => Err("the pings to stop"),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(recorder.pings(), stopped, "no ping while the loop is stuck");
    let (status, body) = readyz(&t).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["failing"].as_array().map(Vec::len), Some(1), "{body}");
    assert!(
        body["failing"][0]
            .as_str()
            .unwrap()
            .starts_with("watch loop"),
        "{body}"
    );
    let alive = t
        .client
        .get(health_url(&t, "healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(alive.status(), 200, "alive all the same");

    // Answered again, the loop goes round and the pings resume.
    shop.release();
    recorder.pings_grow(3).await;
    assert_eq!(readyz(&t).await.0, 200);
}

pub(crate) fn health_url(t: &TestApp, name: &str) -> String {
    t.url.replace("/api/messages", &format!("/{name}"))
}

/// `GET /readyz`: the status and the JSON body.
pub(crate) async fn readyz(t: &TestApp) -> (u16, Value) {
    let r = t.client.get(health_url(t, "readyz")).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn health_endpoints_answer_get_only() {
    let t = TestApp::spawn().await;
    let r = t
        .client
        .get(health_url(&t, "healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "alive"}));
    assert_eq!(readyz(&t).await, (200, json!({"status": "ready"})));
    let r = t
        .client
        .post(health_url(&t, "readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = t
        .client
        .get(health_url(&t, "readyzz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// Reads every datagram that arrives on `socket` until `until` says stop.
fn messages(socket: &UnixDatagram, log: &mut Vec<(Instant, String)>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        for line in text.lines() {
            log.push((Instant::now(), line.to_owned()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_speaks_sd_notify() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let file = write_config(dir.path(), "\n[schedule]\nenabled = false\n");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_pricewatch"))
        .args(["serve", "--config"])
        .arg(&file)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut daemon = KillOnDrop(Some(child));

    let mut log: Vec<(Instant, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.iter().any(|(_, l)| l == "READY=1") {
        assert!(Instant::now() < deadline, "no READY=1: {log:?}");
        messages(&socket, &mut log);
    }
    // READY=1 means the listener answers: the address is in the daemon's log, which the
    // test reads only now.
    let mut stderr = daemon.0.as_mut().unwrap().stderr.take().unwrap();
    let addr = {
        use std::io::Read;
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stderr.read(&mut buf).unwrap();
            assert!(n > 0, "the daemon ended: {text}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if let Some(rest) = text.split("addr=").nth(1) {
                if rest.contains(char::is_whitespace) {
                    break rest.split_whitespace().next().unwrap().to_owned();
                }
            }
        }
    };
    let channel = FakeChannel::start().await;
    let help = activity("emulator", &channel.url, "c1", "help");
    assert_eq!(post_activity(&addr, &help).await, 200);
    assert!(
        log.iter()
            .any(|(_, l)| l.starts_with("STATUS=") && l.contains("watches")),
        "a STATUS= line with READY=1: {log:?}"
    );

    // Pings at half the 200 ms interval.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        messages(&socket, &mut log);
    }
    let pings = log
        .iter()
        .filter(|(at, l)| *at >= start && l == "WATCHDOG=1")
        .count();
    assert!(
        (5..=15).contains(&pings),
        "{pings} pings in a second: {log:?}"
    );

    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.iter().any(|(_, l)| l == "STOPPING=1") {
        assert!(Instant::now() < deadline, "no STOPPING=1: {log:?}");
        messages(&socket, &mut log);
    }
    let mut child = daemon.0.take().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[tokio::test]
async fn a_reload_applies_new_rate_limits_and_trigger_defaults_at_once() {
    use crate::notify::{post, with_token, TOKEN};
    let (t, dir) = with_token().await;
    t.say("c1", "help").await;
    let announce = || async {
        let (status, body) = post(&t, Some(TOKEN), &json!({"text": "maintenance"})).await;
        assert_eq!(status, 202, "{body}");
    };
    // The Emulator's built-in limits let two announcements through at once.
    announce().await;
    announce().await;
    t.wait_for(2).await;
    t.channel.take();

    let mut config = test_config(&t.data);
    config.notify.admin_token_file = Some(dir.path().join("admin-token"));
    config.alerts.default_drop = rust_decimal::Decimal::from(35);
    config.rate_limits.insert(
        "emulator".into(),
        toml::from_str("per_conversation = [\"1/2s\"]\nper_channel = [\"10/1s\"]").unwrap(),
    );
    config.server.bind = "127.0.0.1:1".parse().unwrap();
    let outcome = t.app().reload(&config).await.unwrap();
    assert_eq!(
        outcome.applied,
        ["alerts.default_drop", "rate_limits.emulator"]
    );
    assert_eq!(outcome.restart, ["server.bind"]);

    // One every 2 s now, and the two sent just before the reload count: the first waits
    // for the spacing too, the second for the next.
    announce().await;
    announce().await;
    t.app().deliver_now().await.unwrap();
    assert!(
        t.channel.received().is_empty(),
        "the sends before the reload count against the new limit"
    );
    t.wait_for(1).await;
    t.app().deliver_now().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        t.channel.take().len(),
        1,
        "the second waits for the new limit"
    );
    let reply = t.say("c2", "watch https://shop.example/p/1").await;
    assert!(reply.contains("35%"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_new_log_level_and_keeps_running_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let base = "\n[schedule]\nenabled = false\n";
    let file = write_config(dir.path(), &format!("{base}\n[log]\nlevel = \"info\"\n"));
    let daemon = crate::process::LoggedDaemon::start(&file).await;
    let channel = FakeChannel::start().await;
    let help = activity("emulator", &channel.url, "c1", "help");
    assert_eq!(post_activity(&daemon.addr, &help).await, 200);
    assert!(
        !daemon.text().contains("turn handled"),
        "no debug line at info"
    );
    let pid = daemon.pid();
    let hangup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };

    write_config(
        dir.path(),
        &format!("{base}\n[log]\nlevel = \"info,pricewatch=debug\"\n"),
    );
    hangup();
    eventually(|| async {
        match daemon.text().contains("configuration reloaded") {
            true => Ok(()),
            false => Err("the reload to be logged"),
        }
    })
    .await;
    assert!(
        daemon.text().contains("applied=log.level"),
        "{}",
        daemon.text()
    );
    assert_eq!(post_activity(&daemon.addr, &help).await, 200);
    eventually(|| async {
        match daemon.text().contains("turn handled") {
            true => Ok(()),
            false => Err("a debug line after the reload"),
        }
    })
    .await;

    // A bad file: every error logged, nothing changed, still serving.
    write_config(
        dir.path(),
        &format!("{base}\n[alerts]\ndefault_drop = 120\n"),
    );
    hangup();
    eventually(|| async {
        match daemon.text().contains("the running configuration is kept") {
            true => Ok(()),
            false => Err("the refusal to be logged"),
        }
    })
    .await;
    let text = daemon.text();
    assert!(
        text.contains("reload refused") && text.contains("alerts.default_drop"),
        "{text}"
    );
    assert_eq!(post_activity(&daemon.addr, &help).await, 200);
    let log = String::from_utf8(daemon.stop()).unwrap();
    assert_eq!(log.matches("configuration reloaded").count(), 1, "{log}");
}

#[tokio::test]
async fn ops_bind_moves_health_and_metrics_to_their_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.server.ops_bind = Some("127.0.0.1:0".parse().unwrap());
    let t = TestApp::spawn_with(config).await;
    let ops = t.app().ops_addr().expect("an operations address");
    assert_ne!(ops, t.app().local_addr());
    for name in ["healthz", "readyz", "metrics"] {
        let on_bot = t.client.get(health_url(&t, name)).send().await.unwrap();
        assert_eq!(on_bot.status(), 404, "{name} is not on the bot's address");
        let on_ops = t
            .client
            .get(format!("http://{ops}/{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(on_ops.status(), 200, "{name} on the operations address");
    }
    let r = t
        .client
        .post(format!("http://{ops}/api/messages"))
        .json(&t.message("c1", "help"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "no activities on the operations address");
    assert!(t.say("c1", "help").await.contains("watch"));

    // Local development keeps every address on loopback.
    let mut exposed = test_config(&dir.path().join("other"));
    exposed.server.ops_bind = Some("0.0.0.0:0".parse().unwrap());
    let err = pricewatch::app::App::start(&exposed).await.err().unwrap();
    assert!(err.to_string().contains("server.ops_bind"), "{err}");
}

#[tokio::test]
async fn a_reload_turns_the_schedule_on_changes_its_cron_and_turns_it_off() {
    let shop = FakeShop::start().await;
    shop.set_price("/p/1", "200.00");
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    config.schedule.enabled = false;
    config.fetch.allow_networks = vec!["127.0.0.0/8".into()];
    config.fetch.host_gap = Duration::ZERO;
    // The daemon's clock, moved on to make the checked products due again.
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let t = TestApp::spawn_with_clock(config.clone(), clock.clone()).await;
    let paused = t.say("c1", &format!("watch {}", shop.url("/p/1"))).await;
    assert!(paused.contains("paused"), "{paused}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(shop.hits(), 0, "no check while the schedule is off");

    // On, every second: the paused watch's product is checked at the next tick, and a new
    // watch is told that checks run.
    config.schedule.enabled = true;
    config.schedule.tick = "* * * * * *".into();
    let outcome = t.app().reload(&config).await.unwrap();
    assert_eq!(outcome.applied, ["schedule.enabled", "schedule.tick"]);
    assert!(outcome.restart.is_empty(), "{:?}", outcome.restart);
    eventually(|| async {
        match shop.hits() {
            0 => Err("a scheduled check"),
            _ => Ok(()),
        }
    })
    .await;
    let running = t.say("c2", &format!("watch {}", shop.url("/p/2"))).await;
    assert!(!running.contains("paused"), "{running}");

    // A cron that never comes while the test runs: the every-second job is gone.
    config.schedule.tick = "0 0 0 1 1 * 2999".into();
    let outcome = t.app().reload(&config).await.unwrap();
    assert_eq!(outcome.applied, ["schedule.tick"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = shop.hits();
    clock.advance_ms(7 * 24 * 3_600_000);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(shop.hits(), settled, "the old cron still ticks");

    // Off: a new watch is told that checks are paused, and none is made.
    config.schedule.enabled = false;
    t.app().reload(&config).await.unwrap();
    let paused = t.say("c3", &format!("watch {}", shop.url("/p/3"))).await;
    assert!(paused.contains("paused"), "{paused}");
    clock.advance_ms(7 * 24 * 3_600_000);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(shop.hits(), settled);
}
