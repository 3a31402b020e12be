//! What the daemon's text log shows of hostile ids: the real binary, its stderr captured.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fakes::FakeChannel;
use crate::process::{write_config, KillOnDrop};

const FORGED: &str = "c1\n2026-12-03T00:00:00Z  INFO pricewatch: forged";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cannot_forge_or_flood_a_text_log_line() {
    let dir = tempfile::tempdir().unwrap();
    // Debug for pricewatch only: the turn's events (and with them its span's fields) are
    // logged at debug; other crates' debug lines are noise here.
    let file = write_config(
        dir.path(),
        "\n[schedule]\nenabled = false\n\n[log]\nlevel = \"info,pricewatch=debug\"\nformat = \"text\"\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_pricewatch"))
        .args(["serve", "--config"])
        .arg(&file)
        // The config's level and format, whatever the test runner's environment says.
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut daemon = KillOnDrop(Some(child));
    // Raw bytes, not lines: a stray control byte must be seen as it was written.
    let log = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut buf = [0; 8192];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                log.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let addr = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
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
        }
    };

    let channel = FakeChannel::start().await;
    let long = format!("long-{}", "x".repeat(995));
    assert_eq!(long.chars().count(), 1000);
    let client = reqwest::Client::new();
    for conversation in [FORGED, long.as_str()] {
        let activity = serde_json::json!({
            "type": "message", "id": "m1", "channelId": "emulator", "serviceUrl": channel.url,
            "from": {"id": "u1"}, "recipient": {"id": "b1"}, "conversation": {"id": conversation},
            "text": "help",
        });
        let r = client
            .post(format!("http://{addr}/api/messages"))
            .json(&activity)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(channel.received().len(), 2, "both turns were answered");

    let mut child = daemon.0.take().unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
    reader.join().unwrap();
    let log = log.lock().unwrap().clone();
    let text = String::from_utf8(log.clone()).unwrap();

    // Both turns were logged with their conversation.
    let escaped = r"conversation=c1\n2026-12-03T00:00:00Z  INFO pricewatch: forged";
    assert!(text.contains(escaped), "{text}");
    let shortened = format!("conversation={}…(+800 chars)", &long[..200]);
    assert!(text.contains(&shortened), "{text}");
    for line in text.lines() {
        assert!(
            !line.starts_with("2026-12-03T00:00:00Z"),
            "forged line: {line}"
        );
        assert!(
            !line.contains(&long[..201]),
            "too much of the long id: {line}"
        );
    }
    let stray = log
        .iter()
        .position(|&b| (b < 0x20 && b != b'\n') || b == 0x7f);
    assert_eq!(stray, None, "a control byte in the log:\n{text}");
}
