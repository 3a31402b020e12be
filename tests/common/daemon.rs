//! The `pricewatch` binary as a child process, for the test targets that drive the real
//! daemon (`tests/api/process.rs` and its neighbours, `tests/crash.rs`): a config file in a
//! temporary directory, the process killed and reaped whatever way a test ends, and the
//! activities a channel posts to it. Included with `#[path]`, like `fakes.rs`.
// Each test target uses the part it needs.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Writes `pricewatch.toml` in `dir`: loopback on port 0, the data in `dir/data`, and
/// `extra` after that.
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let file = dir.join("pricewatch.toml");
    let data = dir.join("data");
    std::fs::write(
        &file,
        format!(
            "[server]\nbind = \"127.0.0.1:0\"\n\n[storage]\npath = {:?}\n{extra}",
            data.display().to_string()
        ),
    )
    .unwrap();
    file
}

/// Kills the daemon if the test fails before stopping it.
pub struct KillOnDrop(pub Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A `message` activity as a channel posts it to the daemon.
pub fn activity(
    channel_id: &str,
    service_url: &str,
    conversation: &str,
    text: &str,
) -> serde_json::Value {
    serde_json::json!({
        "type": "message", "id": "m1", "channelId": channel_id, "serviceUrl": service_url,
        "from": {"id": "u1"}, "recipient": {"id": "b1"}, "conversation": {"id": conversation},
        "text": text,
    })
}

/// POSTs `activity` to `/api/messages` of the daemon at `addr`; returns the status.
pub async fn post_activity(addr: &str, activity: &serde_json::Value) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{addr}/api/messages"))
        .json(activity)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `pricewatch serve --config FILE` whose whole stderr is kept, started with `RUST_LOG`
/// at `info` so that its listening line is there to be read.
pub struct RunningDaemon {
    child: KillOnDrop,
    pub addr: String,
    log: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl RunningDaemon {
    /// Starts the daemon and waits (30 s at most) for its listening line; `Err` carries
    /// the log when it exits or stays silent instead.
    pub async fn start(file: &Path) -> Result<RunningDaemon, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pricewatch"))
            .args(["serve", "--config"])
            .arg(file)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the daemon: {e}"))?;
        let mut stderr = child.stderr.take().expect("a piped stderr");
        let child = KillOnDrop(Some(child));
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
        let mut daemon = RunningDaemon {
            child,
            addr: String::new(),
            log,
            reader: Some(reader),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = daemon.text();
            let listening = text
                .lines()
                .find(|l| l.contains("pricewatch is listening") && l.contains("addr="));
            if let Some(line) = listening {
                let rest = line.split("addr=").nth(1).unwrap_or("");
                daemon.addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                return Ok(daemon);
            }
            let exited = daemon
                .child
                .0
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                let log = daemon.finish();
                return Err(format!(
                    "the daemon exited ({status}) before listening:\n{log}"
                ));
            }
            if Instant::now() >= deadline {
                let log = daemon.finish();
                return Err(format!("no listening line within 30 s:\n{log}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.0.as_ref().map_or(0, Child::id)
    }

    /// The log so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// SIGKILL: no drain, no flush; returns the whole log once the process is reaped.
    pub fn kill9(mut self) -> String {
        if let Some(mut child) = self.child.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.finish()
    }

    /// SIGTERM, and waits for the exit; returns its status code and the whole log.
    pub fn terminate(mut self) -> (Option<i32>, String) {
        let mut code = None;
        if let Some(mut child) = self.child.0.take() {
            let sent = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !sent {
                let _ = child.kill();
            }
            code = child.wait().ok().and_then(|s| s.code());
        }
        (code, self.finish())
    }

    /// Kills the process if still running, waits for the end of its stderr, and returns
    /// the log.
    fn finish(&mut self) -> String {
        if let Some(mut child) = self.child.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.text()
    }
}
