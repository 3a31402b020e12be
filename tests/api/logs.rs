//! What the daemon's text log shows of hostile ids: the real binary, its stderr captured.

use crate::fakes::FakeChannel;
use crate::process::{activity, post_activity, write_config, LoggedDaemon};

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
    let daemon = LoggedDaemon::start(&file).await;
    let addr = daemon.addr.clone();

    let channel = FakeChannel::start().await;
    let long = format!("long-{}", "x".repeat(995));
    assert_eq!(long.chars().count(), 1000);
    for conversation in [FORGED, long.as_str()] {
        let activity = activity("emulator", &channel.url, conversation, "help");
        assert_eq!(post_activity(&addr, &activity).await, 200);
    }
    assert_eq!(channel.received().len(), 2, "both turns were answered");

    let log = daemon.stop();
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
