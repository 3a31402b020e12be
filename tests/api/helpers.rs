//! Test harness: the real daemon on a loopback port, a temporary data directory, and a
//! fake channel (a real HTTP server) that records every activity the bot sends.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pricewatch::app::App;
use pricewatch::ops::config::Config;
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::Filter;

/// One request the bot made to the fake channel.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The path exactly as sent, still percent-encoded.
    pub path: String,
    pub body: Value,
    /// When it arrived, in ms on the channel's clock (the real one unless the test gave
    /// its own).
    pub at_ms: u64,
}

impl Recorded {
    pub fn text(&self) -> &str {
        self.body["text"].as_str().unwrap_or("")
    }
}

/// A Connector stand-in that accepts both the send and the reply endpoints.
pub struct FakeChannel {
    pub url: String,
    received: Arc<Mutex<Vec<Recorded>>>,
    status: Arc<Mutex<StatusCode>>,
    delay: Arc<Mutex<std::time::Duration>>,
    retry_after: Arc<Mutex<Option<String>>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl FakeChannel {
    pub async fn start() -> FakeChannel {
        Self::start_with_clock(Arc::new(pricewatch::clock::SystemClock)).await
    }

    /// Stamps each arrival with `clock`, so a test on a manual clock can check spacing.
    pub async fn start_with_clock(clock: Arc<dyn pricewatch::clock::Clock>) -> FakeChannel {
        let received: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let status = Arc::new(Mutex::new(StatusCode::OK));
        let delay: Arc<Mutex<std::time::Duration>> = Arc::default();
        let retry_after: Arc<Mutex<Option<String>>> = Arc::default();
        let (rec, st, dl, ra) = (
            received.clone(),
            status.clone(),
            delay.clone(),
            retry_after.clone(),
        );
        let route = warp::post()
            .and(warp::path::full())
            .and(warp::body::json())
            .then(move |path: warp::path::FullPath, body: Value| {
                let (rec, st, dl, ra) = (rec.clone(), st.clone(), dl.clone(), ra.clone());
                let at_ms = clock.now_ms();
                async move {
                    let path = path.as_str().to_owned();
                    assert!(
                        path.starts_with("/v3/conversations/") && path.contains("/activities"),
                        "unexpected path {path}"
                    );
                    let id = {
                        let mut all = rec.lock().unwrap();
                        all.push(Recorded { path, body, at_ms });
                        format!("act-{}", all.len())
                    };
                    let wait = *dl.lock().unwrap();
                    tokio::time::sleep(wait).await;
                    let reply = warp::reply::with_status(
                        warp::reply::json(&json!({ "id": id })),
                        *st.lock().unwrap(),
                    );
                    let retry_after = ra.lock().unwrap().clone().unwrap_or_default();
                    // An empty header value means none (warp needs one reply type).
                    warp::reply::with_header(reply, "retry-after", retry_after)
                }
            });
        let (base, tx) = serve(route).await;
        FakeChannel {
            url: format!("{base}/"),
            received,
            status,
            delay,
            retry_after,
            _shutdown: tx,
        }
    }

    pub fn received(&self) -> Vec<Recorded> {
        self.received.lock().unwrap().clone()
    }

    /// Everything received so far, emptying the record.
    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.received.lock().unwrap())
    }

    pub fn answer_with(&self, status: StatusCode) {
        *self.status.lock().unwrap() = status;
    }

    /// Sends this `Retry-After` with every answer (`None`: none).
    pub fn answer_retry_after(&self, value: Option<&str>) {
        *self.retry_after.lock().unwrap() = value.map(str::to_owned);
    }

    /// Records each request at once but answers only after `delay` (a hanging channel).
    pub fn answer_after(&self, delay: std::time::Duration) {
        *self.delay.lock().unwrap() = delay;
    }
}

/// Serves `route` on a loopback port until the returned sender is dropped; returns
/// `http://127.0.0.1:<port>`.
pub async fn serve<F>(route: F) -> (String, tokio::sync::oneshot::Sender<()>)
where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        warp::serve(route)
            .incoming(listener)
            .graceful(async {
                let _ = rx.await;
            })
            .run(),
    );
    (format!("http://{addr}"), tx)
}

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
        if std::env::var_os("TEST_LOG").is_some() {
            pricewatch::ops::telemetry::init(&config.log);
        }
        let data = config.storage.path.clone();
        let app = App::start_with_clock(&config, clock)
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

    /// Waits (up to 10 s) until the fake channel has received `n` activities in all,
    /// and returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Recorded> {
        for _ in 0..200 {
            let got = self.channel.received();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("expected {n} activities, got {:?}", self.channel.received());
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
