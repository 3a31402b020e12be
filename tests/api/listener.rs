//! The listener facing the internet: connections that send nothing or dribble are
//! closed in time while turns go on, a stalled body gets 408, a client that leaves
//! mid-request is no warning, and at the open-file limit idle connections make way for
//! turns.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::fakes::FakeChannel;
use crate::helpers::{eventually, test_config, TestApp};
use crate::process::{spawn_command, LoggedDaemon};

/// Raises this process's soft open-file limit to its hard one (the in-process daemon
/// does too, but the test's own sockets come first) and checks that `needed` fit.
fn raise_own_fd_limit(needed: u64) {
    if let Some(soft) = pricewatch::inbound::listener::raise_fd_limit() {
        assert!(
            soft >= needed,
            "this test opens about {needed} files; the hard limit allows {soft} (ulimit -Hn)"
        );
    }
}

/// The test daemon with the given connection limits.
async fn spawn(dir: &tempfile::TempDir, header: u64, idle: u64, body: u64) -> TestApp {
    let mut config = test_config(&dir.path().join("data"));
    config.server.header_timeout = Duration::from_secs(header);
    config.server.idle_timeout = Duration::from_secs(idle);
    config.server.body_timeout = Duration::from_secs(body);
    let mut t = TestApp::spawn_with(config).await;
    // A new connection per turn: a pooled one could be closed by the short idle limit
    // just as a turn is sent on it.
    t.client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    t
}

/// Reads until the server closes the connection; when it did, and what it had sent.
async fn until_closed(stream: &mut (impl AsyncReadExt + Unpin)) -> (Instant, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return (Instant::now(), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

const IDLE_CONNECTIONS: usize = 2000;

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_limit_while_turns_go_on() {
    raise_own_fd_limit(2 * IDLE_CONNECTIONS as u64 + 1000);
    let dir = tempfile::tempdir().unwrap();
    // The header limit is longer: a connection that sends nothing is idle, and the
    // shorter limit closes it.
    let t = spawn(&dir, 4, 1, 60).await;
    let addr = t.app().local_addr();
    let mut ends = JoinSet::new();
    for _ in 0..IDLE_CONNECTIONS {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let connected = Instant::now();
        ends.spawn(async move {
            let closed = tokio::time::timeout(Duration::from_secs(10), until_closed(&mut stream))
                .await
                .expect("closed within 10 s");
            (connected, closed)
        });
    }
    let started = Instant::now();
    let mut turns = 0;
    while started.elapsed() < Duration::from_millis(1800) || turns < 4 {
        let reply = t.say("c1", "help").await;
        assert!(reply.contains("watch"), "{reply}");
        turns += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let mut lifetimes = Vec::with_capacity(IDLE_CONNECTIONS);
    while let Some(end) = ends.join_next().await {
        let (connected, (closed, sent)) = end.unwrap();
        assert!(
            sent.is_empty(),
            "nothing is answered to a silent connection"
        );
        lifetimes.push(closed - connected);
    }
    lifetimes.sort();
    let (shortest, longest) = (lifetimes[0], lifetimes[lifetimes.len() - 1]);
    assert!(
        shortest >= Duration::from_millis(950),
        "closed early: {shortest:?}"
    );
    // Well before the 4 s header limit: the idle limit closed them.
    assert!(
        longest < Duration::from_millis(3000),
        "closed late: {longest:?}"
    );
    // And turns were served all along.
    assert!(t.say("c1", "help").await.contains("watch"));
}

/// Sends `head` one byte a second on `stream` until the server closes it; returns how
/// long after the first byte it closed, and how many bytes were sent.
async fn dribble(stream: TcpStream, head: &[u8]) -> (Duration, usize) {
    let (mut read, mut write) = stream.into_split();
    let reader = tokio::spawn(async move { until_closed(&mut read).await });
    let started = Instant::now();
    let mut sent = 0;
    for byte in head {
        if reader.is_finished() || write.write_all(&[*byte]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (closed, answered) = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("closed")
        .unwrap();
    assert!(
        answered.is_empty(),
        "{}",
        String::from_utf8_lossy(&answered)
    );
    (closed - started, sent)
}

const HEAD: &[u8] = b"POST /api/messages HTTP/1.1\r\nhost: pricewatch\r\n\
    content-type: application/json\r\ncontent-length: 2\r\n\r\n";

/// Reads one response with a `content-length` body: its head and body as text.
async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&got[end + 4..end + 4 + length]).into_owned();
                return (head, body);
            }
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn a_head_sent_a_byte_a_second_is_cut_at_the_header_limit() {
    let dir = tempfile::tempdir().unwrap();
    // The idle limit is longer than a second, so the bytes keep it from applying.
    let t = spawn(&dir, 2, 5, 60).await;
    let addr = t.app().local_addr();

    // On a new connection.
    let (after, sent) = dribble(TcpStream::connect(addr).await.unwrap(), HEAD).await;
    assert!(
        after >= Duration::from_millis(1900) && after < Duration::from_millis(3500),
        "closed {after:?} after the first byte"
    );
    assert!(sent <= 4, "{sent} of {} bytes sent", HEAD.len());

    // On a kept-alive connection: between requests the idle limit applies, so a wait
    // longer than the header limit is fine; the next head's time counts from its first
    // byte.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /api/messages HTTP/1.1\r\nhost: pricewatch\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    assert!(body.contains("MethodNotAllowed"), "{body}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (after, sent) = dribble(stream, HEAD).await;
    assert!(
        after >= Duration::from_millis(1900) && after < Duration::from_millis(3500),
        "closed {after:?} after the first byte of the second head"
    );
    assert!(sent <= 4, "{sent} of {} bytes sent", HEAD.len());
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_and_the_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let t = spawn(&dir, 5, 5, 1).await;
    let mut stream = TcpStream::connect(t.app().local_addr()).await.unwrap();
    let body = serde_json::to_vec(&t.message("c1", "help")).unwrap();
    let head = format!(
        "POST /api/messages HTTP/1.1\r\nhost: pricewatch\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..body.len() / 2]).await.unwrap();
    let started = Instant::now();
    let (closed, answer) = tokio::time::timeout(Duration::from_secs(10), until_closed(&mut stream))
        .await
        .expect("answered and closed");
    let after = closed - started;
    assert!(
        after >= Duration::from_millis(950) && after < Duration::from_millis(3000),
        "{after:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(v["error"]["code"], "RequestTimeout", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("1s"),
        "{v}"
    );
    assert!(t.channel.take().is_empty(), "the activity was not handled");
}

// The real binary, its debug log read from its stderr: a subscriber set in this process
// would share tracing's per-callsite caches with every other test running beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_body_is_a_debug_line_not_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let file = crate::process::write_config(
        dir.path(),
        "\n[schedule]\nenabled = false\n\n[log]\nlevel = \"info,pricewatch::inbound=debug\"\n",
    );
    let daemon = LoggedDaemon::start(&file).await;
    let channel = FakeChannel::start().await;
    let activity = crate::process::activity("emulator", &channel.url, "c1", "help");
    let body = serde_json::to_vec(&activity).unwrap();
    let head = format!(
        "POST /api/messages HTTP/1.1\r\nhost: pricewatch\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    // Only what follows the start-up (which warns that it is in local development)
    // counts.
    let start_up = daemon.text().len();
    // Closed (FIN), then reset (RST), each after half the body.
    for reset in [false, true] {
        let mut stream = TcpStream::connect(&daemon.addr).await.unwrap();
        let client = stream.local_addr().unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body[..body.len() / 2]).await.unwrap();
        // Only once the daemon has accepted the connection may the client go, or the
        // accept itself could fail instead (a reset before accept is no connection).
        let peer = format!("peer={client}");
        eventually(|| async {
            match daemon
                .text()
                .lines()
                .any(|l| l.contains(&peer) && l.contains("connection accepted"))
            {
                true => Ok(()),
                false => Err(format!("the daemon to log {client}")),
            }
        })
        .await;
        if reset {
            stream.set_zero_linger().unwrap();
        }
        drop(stream);
        eventually(|| async {
            let text = daemon.text();
            match text
                .lines()
                .any(|l| l.contains(&peer) && l.contains("connection ended"))
            {
                true => Ok(()),
                false => Err(format!("a line saying {client} ended in:\n{text}")),
            }
        })
        .await;
    }
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/messages", daemon.addr))
        .json(&activity)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let log = String::from_utf8(daemon.stop()).unwrap();
    let after = &log[start_up..];
    for line in after.lines() {
        assert!(
            !line.contains(" WARN ") && !line.contains(" ERROR "),
            "a client leaving is not worth a warning:\n{after}"
        );
    }
}

const FLOOD: usize = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_open_file_limit_idle_connections_make_way_for_turns() {
    raise_own_fd_limit(FLOOD as u64 + 500);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pricewatch.toml");
    // Idle connections would stay a minute: only eviction lets a turn in.
    std::fs::write(
        &file,
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\nheader_timeout = \"60s\"\nidle_timeout = \"60s\"\n\n\
             [storage]\npath = {:?}\n\n[schedule]\nenabled = false\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    // `ulimit -n` without -S or -H sets both: the daemon cannot raise it.
    let mut command = Command::new("sh");
    command
        .args(["-c", "ulimit -n 1024 && exec \"$0\" serve --config \"$1\""])
        .arg(env!("CARGO_BIN_EXE_pricewatch"))
        .arg(&file);
    let (_daemon, addr, log) = spawn_command(command);
    // 1024 less a tenth kept for the store, outbound HTTP and logs.
    assert!(log.contains("max_connections=922"), "{log}");
    let addr: SocketAddr = addr.parse().unwrap();

    // Far less than the idle limit: the daemon keeps accepting (beyond the kernel's
    // backlog) only by closing idle connections.
    let within = Duration::from_secs(10);
    let flood = tokio::time::timeout(within, async {
        let mut idle = Vec::with_capacity(FLOOD);
        for _ in 0..FLOOD {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        idle
    });
    let mut idle = flood.await.expect("all connected within 10 s");
    let channel = FakeChannel::start().await;
    let activity = crate::process::activity("emulator", &channel.url, "c1", "help");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            client
                .post(format!("http://{addr}/api/messages"))
                .json(&activity)
                .send(),
        )
        .await
        .expect("a turn within 5 s")
        .unwrap();
        assert_eq!(r.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    assert_eq!(channel.received().len(), 3, "every turn was answered");
    // The oldest idle connections were the ones closed to make room.
    let (_, sent) = tokio::time::timeout(Duration::from_secs(5), until_closed(&mut idle[0]))
        .await
        .expect("the oldest idle connection was closed");
    assert!(sent.is_empty());
}
