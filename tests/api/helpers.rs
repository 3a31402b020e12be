//! Test harness: the real daemon on a loopback port, a temporary data directory, and the
//! fake channel (`fakes.rs`) that records every activity the bot sends.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pricewatch::app::App;
use pricewatch::ops::config::Config;
use serde_json::{json, Value};

use crate::fakes::{FakeChannel, Recorded};

/// The configuration every test starts from: port 0, the given data directory, and the
/// bot's commands alone: nothing is fetched (the example URLs do not exist, and a
/// failed first check would remove the watch). The watch-loop tests turn it on.
pub fn test_config(data: &Path) -> Config {
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.storage.path = data.to_owned();
    config.schedule.enabled = false;
    config
}

/// How long a test waits for something it cannot trigger itself before it fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// Polls `check` until it returns `Ok`, failing the test with its last `Err` (what it
/// still waits for) if [`DEADLINE`] passes first. For what only the daemon's own tasks
/// do (a first check, a delivery); what a test can trigger, it triggers
/// (`App::tick_now`, `App::deliver_now`) and asserts on the report.
pub async fn eventually<T, E, F, Fut>(mut check: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        match check().await {
            Ok(found) => return found,
            Err(waiting) if tokio::time::Instant::now() >= until => {
                panic!("waited {DEADLINE:?} for {waiting}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Waits until `channel` has received `n` activities in all, and returns them.
pub async fn wait_for(channel: &FakeChannel, n: usize) -> Vec<Recorded> {
    eventually(|| async {
        let got = channel.received();
        if got.len() >= n {
            Ok(got)
        } else {
            Err(format!("{n} activities; got {got:?}"))
        }
    })
    .await
}

pub struct TestApp {
    pub app: Option<App>,
    pub url: String,
    pub channel: FakeChannel,
    pub client: reqwest::Client,
    pub data: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut app = Self::spawn_with(test_config(&data)).await;
        app._dir = Some(dir);
        app
    }

    pub async fn spawn_with(config: Config) -> TestApp {
        Self::spawn_with_clock(config, Arc::new(pricewatch::clock::SystemClock)).await
    }

    pub async fn spawn_with_clock(
        config: Config,
        clock: Arc<dyn pricewatch::clock::Clock>,
    ) -> TestApp {
        let service = pricewatch::app::ServiceHooks::systemd(&config);
        Self::spawn_with_service(config, clock, service).await
    }

    /// The daemon telling `service` what it would tell systemd.
    pub async fn spawn_with_service(
        config: Config,
        clock: Arc<dyn pricewatch::clock::Clock>,
        service: pricewatch::app::ServiceHooks,
    ) -> TestApp {
        if std::env::var_os("TEST_LOG").is_some() {
            pricewatch::ops::telemetry::init(&config.log);
        }
        let data = config.storage.path.clone();
        let app = App::start_with_service(&config, clock, service)
            .await
            .expect("daemon starts");
        TestApp {
            url: format!("http://{}/api/messages", app.local_addr()),
            app: Some(app),
            channel: FakeChannel::start().await,
            client: reqwest::Client::new(),
            data,
            _dir: None,
        }
    }

    /// Stops the daemon gracefully, keeping the data directory and the fake channel.
    pub async fn stop(&mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await.expect("clean stop");
        }
    }

    /// Starts a new daemon on the same data directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        let app = App::start(&test_config(&self.data)).await.expect("restart");
        self.url = format!("http://{}/api/messages", app.local_addr());
        self.app = Some(app);
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().expect("running")
    }

    pub async fn post_raw(
        &self,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, String) {
        let r = self
            .client
            .post(&self.url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    }

    /// Posts `activity` with `authorization` as the whole `Authorization` header (none
    /// when `None`); returns the status, the body and the `WWW-Authenticate` header.
    pub async fn post_with(
        &self,
        authorization: Option<&str>,
        activity: &Value,
    ) -> (u16, String, Option<String>) {
        let mut request = self.client.post(&self.url).json(activity);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        let challenge = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, r.text().await.unwrap(), challenge)
    }

    pub async fn post(&self, activity: &Value) -> (u16, String) {
        self.post_raw("application/json", serde_json::to_vec(activity).unwrap())
            .await
    }

    /// A message in `conversation` from user `u1`, on the emulator channel.
    pub fn message(&self, conversation: &str, text: &str) -> Value {
        json!({
            "type": "message",
            "id": format!("in-{}", text.len()),
            "timestamp": "2026-11-25T12:00:00.000Z",
            "channelId": "emulator",
            "serviceUrl": self.channel.url,
            "from": {"id": "u1", "name": "Ada", "role": "user"},
            "recipient": {"id": "bot1", "name": "pricewatch", "role": "bot"},
            "conversation": {"id": conversation},
            "locale": "en-US",
            "text": text,
        })
    }

    /// Waits until the fake channel has received `n` activities in all, and returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Recorded> {
        wait_for(&self.channel, n).await
    }

    /// Waits until every queued message has been delivered (or dead-lettered): after it,
    /// anything the channel has not received was never queued.
    pub async fn outbox_drained(&self) {
        let store = self.app().store();
        eventually(|| async {
            let left = store.stats().await.unwrap().outbox;
            if left == 0 {
                Ok(())
            } else {
                Err(format!("the outbox to empty; {left} left"))
            }
        })
        .await
    }

    /// Sends a message and returns the text of the single reply it produced.
    pub async fn say(&self, conversation: &str, text: &str) -> String {
        self.channel.take();
        let (status, body) = self.post(&self.message(conversation, text)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, "", "a handled activity has an empty body");
        let got = self.channel.take();
        assert_eq!(got.len(), 1, "one reply to {text:?}, got {got:?}");
        got[0].text().to_owned()
    }
}
