//! A damaged store as an operator meets it: the real daemon stored 20 watches and was
//! stopped, then sled's `db` file was damaged; `serve` must refuse to start, say what is
//! missing and what to do, and leave every file as it was; `verify` says the same;
//! `export` saves what is readable without changing anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::fakes::FakeChannel;
use crate::process::{activity, post_activity, write_config, LoggedDaemon};

const WATCHES: usize = 20;

/// A stopped daemon's data directory holding 20 watches in 4 conversations, and its
/// configuration file.
async fn stored_watches(dir: &Path) -> (PathBuf, PathBuf) {
    let file = write_config(dir, "\n[schedule]\nenabled = false\n");
    let daemon = LoggedDaemon::start(&file).await;
    let channel = FakeChannel::start().await;
    for i in 0..WATCHES {
        let conversation = format!("c{}", i % 4);
        let text = format!("watch https://shop.example/p/{i}");
        let a = activity("emulator", &channel.url, &conversation, &text);
        assert_eq!(post_activity(&daemon.addr, &a).await, 200);
    }
    daemon.stop();
    (file, dir.join("data"))
}

/// Every file under `dir` with its bytes, but the clean-close marker: a check that finds
/// the store damaged removes it (so that no later start skips the check), and nothing else.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.ends_with("pricewatch.state.closed") {
            continue;
        }
        if path.is_dir() {
            out.extend(contents(&path));
        } else {
            out.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    out
}

/// Runs `pricewatch ARGS --config FILE` to its end; a daemon that starts instead of
/// refusing is killed after a while, and its output returned all the same.
fn pricewatch(args: &[&str], file: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pricewatch"))
        .args(args)
        .arg("--config")
        .arg(file)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

enum Harm {
    FlipStart,
    ZeroFill,
    Truncate,
}

fn harm(db: &Path, how: Harm) {
    let mut bytes = std::fs::read(db).unwrap();
    match how {
        Harm::FlipStart => bytes.iter_mut().take(64).for_each(|b| *b ^= 0xff),
        Harm::ZeroFill => bytes.iter_mut().for_each(|b| *b = 0),
        Harm::Truncate => bytes.truncate(bytes.len() / 3),
    }
    std::fs::write(db, bytes).unwrap();
}

/// Damages a stored directory and checks that `serve` and `verify` refuse it, saying what
/// is missing and what to do, without changing a byte. Returns the directories.
async fn refused(how: Harm) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = stored_watches(dir.path()).await;
    harm(&data.join("db"), how);
    let before = contents(&data);

    let out = pricewatch(&["serve"], &file);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "serve must refuse (and exit by itself): {:?}\n{stderr}",
        out.status
    );
    for needed in [
        data.to_str().unwrap(),
        "is damaged",
        &format!("watches: {WATCHES} recorded"),
        "left untouched",
        "pricewatch export",
        "pricewatch import",
    ] {
        assert!(stderr.contains(needed), "{needed:?} missing in:\n{stderr}");
    }
    assert!(contents(&data) == before, "serve changed the damaged files");
    assert!(!data.join("pricewatch.state.closed").exists());

    let out = pricewatch(&["verify"], &file);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("watches: {WATCHES} recorded")) && stderr.contains("damaged"),
        "{stderr}"
    );
    assert!(
        contents(&data) == before,
        "verify changed the damaged files"
    );
    (dir, file, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_db_file_flipped_at_its_start_is_refused_and_left_as_it_was() {
    refused(Harm::FlipStart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_filled_db_file_is_refused_and_export_saves_what_is_readable() {
    let (dir, file, data) = refused(Harm::ZeroFill).await;
    let before = contents(&data);
    let saved = dir.path().join("saved.jsonl");
    let out = pricewatch(&["export", "--output", saved.to_str().unwrap()], &file);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "not a whole export: {stderr}");
    assert!(
        stderr.contains("damaged") && stderr.contains("exported what is still readable"),
        "{stderr}"
    );
    assert!(saved.exists(), "what is readable is written all the same");
    assert!(
        contents(&data) == before,
        "export changed the damaged files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_db_file_is_refused_and_left_as_it_was() {
    refused(Harm::Truncate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sound_store_verifies_and_serves_and_verify_waits_for_the_daemon_to_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = stored_watches(dir.path()).await;
    let before = contents(&data);
    let out = pricewatch(&["verify"], &file);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.starts_with("ok: ") && stdout.contains(&format!("{WATCHES} watches")),
        "{stdout}"
    );
    assert!(contents(&data) == before, "verify wrote to the store");

    let daemon = LoggedDaemon::start(&file).await;
    let out = pricewatch(&["verify"], &file);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("stop the daemon first"),
        "{}",
        text(&out.stderr)
    );
    daemon.stop();
    let out = pricewatch(&["verify"], &file);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// The daemon's `store opened` line: which check its start ran.
fn start_check(log: &str) -> &str {
    log.lines()
        .find(|l| l.contains("store opened"))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("check=")))
        .unwrap_or_else(|| panic!("no `store opened` line in:\n{log}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_a_clean_stop_skips_the_copy_and_one_after_a_kill_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (file, data) = stored_watches(dir.path()).await;
    assert!(data.join("pricewatch.state.closed").exists());

    // After SIGTERM: the files are as the marker describes them.
    let daemon = LoggedDaemon::start(&file).await;
    assert_eq!(start_check(&daemon.text()), "ClosedCleanly");
    // Removed while the daemon runs, so that a kill leaves none.
    assert!(!data.join("pricewatch.state.closed").exists());
    let status = Command::new("kill")
        .args(["-KILL", &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    drop(daemon); // waits for it
    assert!(!data.join("pricewatch.state.closed").exists());

    let daemon = LoggedDaemon::start(&file).await;
    let log = text(&daemon.stop());
    assert_eq!(start_check(&log), "CopyCounted");
    // And the clean stop just now leaves the next start the short way again.
    assert!(data.join("pricewatch.state.closed").exists());
    // Every watch is still there whichever way the store was opened.
    let out = pricewatch(&["verify"], &file);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("{WATCHES} watches")),
        "{}",
        text(&out.stdout)
    );
}
