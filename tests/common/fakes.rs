//! The stand-ins shared by every integration test and benchmark: a channel (a Connector
//! that records what the bot sends and answers as told), a shop (product pages with the
//! HTTP a fetcher meets: status, delay, gzip, validators, redirects), and the store as
//! the daemon opens it. One of each, so that what a fake does is decided in one place;
//! test targets and benchmarks include this file with `#[path]`, like `fixtures.rs`.
//!
//! Both fakes are real HTTP servers on a loopback port, started on the runtime that
//! awaits `start` and stopped when dropped.
// Each test target or benchmark uses the part it needs.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pricewatch::clock::{Clock, SystemClock};
use pricewatch::store::{SledStore, StoreError};
use serde_json::{json, Value};
use warp::http::{Method, Response, StatusCode};
use warp::Filter;

/// The store in `data` with the daemon's default cache and flush period.
pub fn open_store(data: &Path) -> Result<Arc<SledStore>, StoreError> {
    let storage = pricewatch::ops::config::StorageConfig {
        path: data.to_owned(),
        ..Default::default()
    };
    SledStore::open(&storage.sled()).map(Arc::new)
}

/// Serves `route` on a loopback port until the returned sender is dropped; returns
/// `http://127.0.0.1:<port>`.
pub async fn serve<F>(route: F) -> (String, tokio::sync::oneshot::Sender<()>)
where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("a bound address");
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

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

// ---------------------------------------------------------------------------------------
// The channel

/// One activity the bot sent to the fake channel.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The path exactly as sent, still percent-encoded.
    pub path: String,
    pub body: Value,
    pub authorization: Option<String>,
    /// When it arrived, in ms on the channel's clock (the real one unless the test gave
    /// its own).
    pub at_ms: u64,
    /// What the channel answered (0 while the answer is still being decided).
    pub status: u16,
}

impl Recorded {
    pub fn text(&self) -> &str {
        self.body["text"].as_str().unwrap_or("")
    }

    /// The channel took it (2xx): a failed send is recorded too, as the channel saw it.
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// What the channel keeps of each activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Path, body and `Authorization` header, for tests that read what was said.
    Everything,
    /// The arrival times alone: a load benchmark's channel must cost next to nothing.
    Arrivals,
}

/// A Connector stand-in: accepts `POST …/v3/conversations/{id}/activities[/{replyToId}]`
/// (sends and replies), answers `{"id": "act-N"}` with the status it is told, and counts
/// any other request as unexpected.
pub struct FakeChannel {
    /// The `serviceUrl` activities carry, with the trailing slash channels use.
    pub url: String,
    state: Arc<ChannelState>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

struct ChannelState {
    clock: Arc<dyn Clock>,
    keep: Keep,
    log: Mutex<ChannelLog>,
    answer: Mutex<Answer>,
}

#[derive(Default)]
struct ChannelLog {
    /// Arrival of every activity, in µs on the channel's clock.
    arrivals: Vec<u64>,
    /// Every activity, with [`Keep::Everything`].
    received: Vec<Recorded>,
    /// Requests that were not an activity: the bot built a wrong URL.
    unexpected: Vec<String>,
}

struct Answer {
    status: StatusCode,
    /// Statuses for the next answers, before `status` again.
    next: VecDeque<StatusCode>,
    retry_after: Option<String>,
    delay: Duration,
    /// Until then the channel is stalled: see [`FakeChannel::stall_for`].
    stalled_until: Option<tokio::time::Instant>,
    /// Requests that arrived during a stall.
    stalled: usize,
    /// A stall that starts by itself once this many activities were accepted: see
    /// [`FakeChannel::stall_after`].
    stall_after: Option<(usize, Duration)>,
}

impl FakeChannel {
    pub async fn start() -> FakeChannel {
        Self::start_with(Arc::new(SystemClock), Keep::Everything).await
    }

    /// Stamps each arrival with `clock`, so a test on a manual clock can check spacing.
    pub async fn start_with_clock(clock: Arc<dyn Clock>) -> FakeChannel {
        Self::start_with(clock, Keep::Everything).await
    }

    pub async fn start_with(clock: Arc<dyn Clock>, keep: Keep) -> FakeChannel {
        let state = Arc::new(ChannelState {
            clock,
            keep,
            log: Mutex::default(),
            answer: Mutex::new(Answer {
                status: StatusCode::OK,
                next: VecDeque::new(),
                retry_after: None,
                delay: Duration::ZERO,
                stalled_until: None,
                stalled: 0,
                stall_after: None,
            }),
        });
        let s = state.clone();
        let route = warp::method()
            .and(warp::path::full())
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::body::bytes())
            .then(
                move |method: Method, path: warp::path::FullPath, auth: Option<String>, body| {
                    let s = s.clone();
                    async move { s.answer(method, path.as_str(), auth, body).await }
                },
            );
        let (base, stop) = serve(route).await;
        FakeChannel {
            url: format!("{base}/"),
            state,
            _stop: stop,
        }
    }

    /// Every activity received so far (with [`Keep::Everything`]). Fails the test if the
    /// bot sent anything that was not an activity.
    pub fn received(&self) -> Vec<Recorded> {
        self.state.checked_log().received.clone()
    }

    /// Everything received so far, emptying the record.
    pub fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut self.state.checked_log().received)
    }

    /// Arrival times of every activity so far, in µs on the channel's clock.
    pub fn arrivals_us(&self) -> Vec<u64> {
        self.state.lock_log().arrivals.clone()
    }

    /// Activities accepted so far.
    pub fn count(&self) -> usize {
        self.state.lock_log().arrivals.len()
    }

    /// Requests that were not an activity.
    pub fn unexpected(&self) -> usize {
        self.state.lock_log().unexpected.len()
    }

    pub fn answer_with(&self, status: StatusCode) {
        self.state.lock_answer().status = status;
    }

    /// Answers the next requests with these statuses, one each, then as before.
    pub fn answer_next(&self, statuses: &[u16]) {
        let next = statuses
            .iter()
            .map(|&s| StatusCode::from_u16(s).expect("an HTTP status"));
        self.state.lock_answer().next.extend(next);
    }

    /// Sends this `Retry-After` with every answer (`None`: none).
    pub fn answer_retry_after(&self, value: Option<&str>) {
        self.state.lock_answer().retry_after = value.map(str::to_owned);
    }

    /// Records each request at once but answers only after `delay` (a hanging channel).
    pub fn answer_after(&self, delay: Duration) {
        self.state.lock_answer().delay = delay;
    }

    /// Stalls for `duration` from now, then recovers: a request that arrives meanwhile is
    /// held until the stall ends, then answered 503 and never reaches the conversation
    /// (it is not recorded); later requests are answered as before.
    pub fn stall_for(&self, duration: Duration) {
        self.state.lock_answer().stalled_until = Some(tokio::time::Instant::now() + duration);
    }

    /// Like [`FakeChannel::stall_for`], starting by itself once `accepted` activities were
    /// accepted in all: the channel's own count, where a test polling it would see it late
    /// (a fan-out sends hundreds in the time of one poll). Requests already on their way
    /// when it starts may still be accepted.
    pub fn stall_after(&self, accepted: usize, duration: Duration) {
        self.state.lock_answer().stall_after = Some((accepted, duration));
    }

    /// Whether a stall is still on.
    pub fn is_stalled(&self) -> bool {
        self.state
            .lock_answer()
            .stalled_until
            .is_some_and(|until| tokio::time::Instant::now() < until)
    }

    /// Requests that arrived during a stall so far.
    pub fn stalled(&self) -> usize {
        self.state.lock_answer().stalled
    }
}

impl ChannelState {
    async fn answer(
        &self,
        method: Method,
        path: &str,
        authorization: Option<String>,
        body: Bytes,
    ) -> Response<String> {
        let accepted = self.lock_log().arrivals.len();
        let stalled_until = {
            let mut answer = self.lock_answer();
            if let Some((after, duration)) = answer.stall_after {
                if accepted >= after {
                    answer.stalled_until = Some(tokio::time::Instant::now() + duration);
                    answer.stall_after = None;
                }
            }
            let until = answer
                .stalled_until
                .filter(|until| tokio::time::Instant::now() < *until);
            // Counted on arrival: a client that gives up drops this request's handler.
            answer.stalled += usize::from(until.is_some());
            until
        };
        if let Some(until) = stalled_until {
            tokio::time::sleep_until(until).await;
            return Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .body("stalled".to_owned())
                .expect("a static response");
        }
        let at_us = self.clock.now_nanos() / 1_000;
        let activity = method == Method::POST
            && path.starts_with("/v3/conversations/")
            && path.contains("/activities");
        let body = match self.keep {
            Keep::Everything => serde_json::from_slice(&body).ok(),
            Keep::Arrivals => Some(Value::Null),
        };
        let (id, index) = {
            let mut log = self.lock_log();
            let Some(body) = body.filter(|_| activity) else {
                log.unexpected.push(format!("{method} {path}"));
                return Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .body("unexpected request".to_owned())
                    .expect("a static response");
            };
            log.arrivals.push(at_us);
            if self.keep == Keep::Everything {
                log.received.push(Recorded {
                    path: path.to_owned(),
                    body,
                    authorization,
                    at_ms: at_us / 1_000,
                    status: 0,
                });
            }
            let index = log.received.len().checked_sub(1);
            (format!("act-{}", log.arrivals.len()), index)
        };
        let delay = self.lock_answer().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (status, retry_after) = {
            let mut answer = self.lock_answer();
            let status = answer.next.pop_front().unwrap_or(answer.status);
            (status, answer.retry_after.clone())
        };
        if let Some(i) = index.filter(|_| self.keep == Keep::Everything) {
            if let Some(r) = self.lock_log().received.get_mut(i) {
                r.status = status.as_u16();
            }
        }
        let mut reply = Response::builder()
            .status(status)
            .header("content-type", "application/json");
        if let Some(value) = retry_after {
            reply = reply.header("retry-after", value);
        }
        reply
            .body(json!({ "id": id }).to_string())
            .expect("a valid response")
    }

    /// The log, failing the test if the bot sent anything that was not an activity.
    fn checked_log(&self) -> std::sync::MutexGuard<'_, ChannelLog> {
        let log = self.lock_log();
        assert!(
            log.unexpected.is_empty(),
            "requests no channel answers: {:?}",
            log.unexpected
        );
        log
    }

    fn lock_log(&self) -> std::sync::MutexGuard<'_, ChannelLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_answer(&self) -> std::sync::MutexGuard<'_, Answer> {
        self.answer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

// ---------------------------------------------------------------------------------------
// The shop

/// What the shop answers at one address.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: u16,
    /// As sent on the wire (already compressed when `encoding` is set).
    pub body: Bytes,
    pub content_type: String,
    /// `Content-Encoding` of `body`.
    pub encoding: Option<&'static str>,
    /// Sent as `ETag`; an `If-None-Match` equal to it gets a 304.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// A 301 to here instead of the page.
    pub location: Option<String>,
    /// How long the shop takes before it answers.
    pub delay: Duration,
    /// Sent as `Retry-After` (with a 429 or 503, say).
    pub retry_after: Option<String>,
}

impl Page {
    pub fn new(content_type: &str, body: impl Into<Bytes>) -> Page {
        Page {
            status: 200,
            body: body.into(),
            content_type: content_type.to_owned(),
            encoding: None,
            etag: None,
            last_modified: None,
            location: None,
            delay: Duration::ZERO,
            retry_after: None,
        }
    }

    /// A product page whose JSON-LD offer is `price` EUR, in stock.
    pub fn product(name: &str, price: &str) -> Page {
        Page::new(
            "text/html; charset=utf-8",
            format!(
                r#"<html><head><script type="application/ld+json">{{"@type":"Product","name":"{name}","offers":{{"@type":"Offer","price":"{price}","priceCurrency":"EUR","availability":"https://schema.org/InStock"}}}}</script></head><body></body></html>"#
            ),
        )
    }

    /// A permanent redirect to `location`.
    pub fn redirect(location: &str) -> Page {
        Page {
            status: 301,
            location: Some(location.to_owned()),
            ..Page::new("text/plain", Bytes::new())
        }
    }

    /// The same page gzip-encoded on the wire.
    pub fn gzip(self) -> Page {
        Page {
            body: gzip(&self.body).into(),
            encoding: Some("gzip"),
            ..self
        }
    }

    pub fn with_status(self, status: u16) -> Page {
        Page { status, ..self }
    }

    pub fn with_etag(self, etag: &str) -> Page {
        Page {
            etag: Some(etag.to_owned()),
            ..self
        }
    }

    pub fn with_last_modified(self, date: &str) -> Page {
        Page {
            last_modified: Some(date.to_owned()),
            ..self
        }
    }

    pub fn after(self, delay: Duration) -> Page {
        Page { delay, ..self }
    }

    pub fn with_retry_after(self, value: &str) -> Page {
        Page {
            retry_after: Some(value.to_owned()),
            ..self
        }
    }
}

/// A shop serving the pages a test puts, by path, or by host and path for a shop that
/// stands in for several hosts (all resolved to loopback). An unknown address is a 404.
pub struct FakeShop {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    pub port: u16,
    state: Arc<ShopState>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

struct ShopState {
    pages: Mutex<HashMap<String, Page>>,
    /// Every request.
    hits: AtomicUsize,
    /// Requests answered with a page's body, and with 304.
    full: AtomicUsize,
    not_modified: AtomicUsize,
    /// While true, requests wait (after being counted) before they are answered.
    held: tokio::sync::watch::Sender<bool>,
    /// Every request, as it arrived, once [`FakeShop::record_requests`] turned it on (a
    /// benchmark's shop must not grow a log).
    recording: std::sync::atomic::AtomicBool,
    requests: Mutex<Vec<ShopRequest>>,
}

/// One request the shop received, on arrival: which page, who asked, when.
#[derive(Debug, Clone)]
pub struct ShopRequest {
    pub path: String,
    /// The `User-Agent` header: which fetcher asked, when several share the shop.
    pub user_agent: String,
    pub at: std::time::Instant,
}

impl FakeShop {
    pub async fn start() -> FakeShop {
        let state = Arc::new(ShopState {
            pages: Mutex::default(),
            hits: AtomicUsize::new(0),
            full: AtomicUsize::new(0),
            not_modified: AtomicUsize::new(0),
            held: tokio::sync::watch::Sender::new(false),
            recording: std::sync::atomic::AtomicBool::new(false),
            requests: Mutex::default(),
        });
        let s = state.clone();
        let route = warp::path::full()
            .and(warp::header::optional::<String>("host"))
            .and(warp::header::optional::<String>("if-none-match"))
            .and(warp::header::optional::<String>("user-agent"))
            .then(
                move |path: warp::path::FullPath,
                      host: Option<String>,
                      inm: Option<String>,
                      agent: Option<String>| {
                    let s = s.clone();
                    async move {
                        s.record(path.as_str(), agent);
                        s.answer(path.as_str(), host, inm).await
                    }
                },
            );
        let (base, stop) = serve(route).await;
        let port = base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the base URL");
        FakeShop {
            base,
            port,
            state,
            _stop: stop,
        }
    }

    /// Serves `page` at `address`: a path (`/p/1`), or a host and a path
    /// (`shop.example/p/1`), which wins over the path alone.
    pub fn put(&self, address: &str, page: Page) {
        self.state.lock_pages().insert(address.to_owned(), page);
    }

    /// Serves a product page at `path` whose price is `price` EUR.
    pub fn set_price(&self, path: &str, price: &str) {
        self.put(path, Page::product(&format!("Skillet {path}"), price));
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Requests so far, answered or not.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Requests answered with a page's body so far.
    pub fn full(&self) -> usize {
        self.state.full.load(Ordering::SeqCst)
    }

    /// Requests answered 304 so far.
    pub fn not_modified(&self) -> usize {
        self.state.not_modified.load(Ordering::SeqCst)
    }

    /// Holds every request from now on until [`FakeShop::release`]: a check that has
    /// reached the shop stays in flight for as long as the test needs.
    pub fn hold(&self) {
        self.state.held.send_replace(true);
    }

    pub fn release(&self) {
        self.state.held.send_replace(false);
    }

    /// Keeps every request from now on, for [`FakeShop::requests`].
    pub fn record_requests(&self) {
        self.state.recording.store(true, Ordering::SeqCst);
    }

    /// Every request recorded so far, in arrival order.
    pub fn requests(&self) -> Vec<ShopRequest> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ShopState {
    fn record(&self, path: &str, agent: Option<String>) {
        if !self.recording.load(Ordering::SeqCst) {
            return;
        }
        let request = ShopRequest {
            path: path.to_owned(),
            user_agent: agent.unwrap_or_default(),
            at: std::time::Instant::now(),
        };
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request);
    }

    async fn answer(
        &self,
        path: &str,
        host: Option<String>,
        inm: Option<String>,
    ) -> Response<Bytes> {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let page = {
            let pages = self.lock_pages();
            let host = host.as_deref().and_then(|h| h.split(':').next());
            host.and_then(|h| pages.get(&format!("{h}{path}")))
                .or_else(|| pages.get(path))
                .cloned()
        };
        let mut held = self.held.subscribe();
        let _ = held.wait_for(|held| !held).await;
        let Some(page) = page else {
            return Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Bytes::new())
                .expect("a static response");
        };
        if !page.delay.is_zero() {
            tokio::time::sleep(page.delay).await;
        }
        let mut reply = Response::builder();
        if let Some(location) = &page.location {
            return reply
                .status(page.status)
                .header("location", location)
                .body(Bytes::new())
                .expect("a valid redirect");
        }
        if let Some(etag) = &page.etag {
            reply = reply.header("etag", etag);
            if inm.as_deref() == Some(etag.as_str()) {
                self.not_modified.fetch_add(1, Ordering::SeqCst);
                return reply
                    .status(StatusCode::NOT_MODIFIED)
                    .body(Bytes::new())
                    .expect("a valid 304");
            }
        }
        self.full.fetch_add(1, Ordering::SeqCst);
        reply = reply
            .status(page.status)
            .header("content-type", page.content_type.as_str());
        if let Some(encoding) = page.encoding {
            reply = reply.header("content-encoding", encoding);
        }
        if let Some(date) = &page.last_modified {
            reply = reply.header("last-modified", date);
        }
        if let Some(value) = &page.retry_after {
            reply = reply.header("retry-after", value);
        }
        reply.body(page.body).expect("a valid page")
    }

    fn lock_pages(&self) -> std::sync::MutexGuard<'_, HashMap<String, Page>> {
        self.pages.lock().unwrap_or_else(|p| p.into_inner())
    }
}

// ---------------------------------------------------------------------------------------
// Network faults

/// What a [`FaultProxy`] does with connections, new and open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Passes bytes both ways, untouched.
    Pass,
    /// Resets every connection: open ones at once, new ones as soon as they are accepted.
    Reset,
    /// Answers every request with bytes that are not HTTP, then closes.
    Garbage,
    /// Waits this long before passing a new connection's bytes on.
    Slow(Duration),
    /// Not listening: connecting is refused until the fault ends (open connections are
    /// closed too).
    Down,
}

/// A TCP proxy on a loopback port in front of a fake (a shop or a channel), which a test
/// switches between passing traffic and the failures a network shows: resets, garbage,
/// slowness, a server that stops listening for a while. The fakes themselves stay the
/// well-behaved servers they are; the proxy stands where the network would.
pub struct FaultProxy {
    /// `http://<ip>:<port>`: the fake's address through the proxy.
    pub base: String,
    pub port: u16,
    fault: tokio::sync::watch::Sender<Fault>,
    /// Whether the proxy's port is listening now.
    listening: tokio::sync::watch::Receiver<bool>,
    /// Connections accepted so far (while listening).
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy to `target` (`http://127.0.0.1:<port>`, a fake's base), passing traffic.
    pub async fn start(target: &str) -> FaultProxy {
        Self::start_at("127.0.0.1", target).await
    }

    /// A proxy on a loopback address of its own (`127.0.0.2`: another host to a fetcher,
    /// with its own politeness gate).
    pub async fn start_at(ip: &str, target: &str) -> FaultProxy {
        let to = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let port = addr.port();
        let (fault, watch) = tokio::sync::watch::channel(Fault::Pass);
        let accepted = Arc::new(AtomicUsize::new(0));
        let (listening_tx, listening) = tokio::sync::watch::channel(true);
        let task = tokio::spawn(accept_loop(
            listener,
            addr,
            to,
            watch,
            listening_tx,
            accepted.clone(),
        ));
        FaultProxy {
            base: format!("http://{addr}"),
            port,
            fault,
            listening,
            accepted,
            task,
        }
    }

    /// From now on, `fault` (affecting open connections at once); returns once the port
    /// listens, or no longer does, as the fault says.
    pub async fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
        let mut listening = self.listening.clone();
        let _ = listening.wait_for(|l| *l == (fault != Fault::Down)).await;
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    addr: std::net::SocketAddr,
    to: String,
    mut fault: tokio::sync::watch::Receiver<Fault>,
    listening: tokio::sync::watch::Sender<bool>,
    accepted: Arc<AtomicUsize>,
) {
    let mut listener = Some(listener);
    loop {
        if *fault.borrow_and_update() == Fault::Down {
            // Closing the listening socket is what makes a connect fail at once.
            listener = None;
            listening.send_replace(false);
            let _ = fault.wait_for(|f| *f != Fault::Down).await;
            continue;
        }
        let Some(l) = listener.as_ref() else {
            // The port was free a moment ago; another socket may hold it briefly.
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    listener = Some(l);
                    listening.send_replace(true);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
            continue;
        };
        let conn = tokio::select! {
            conn = l.accept() => conn.ok(),
            _ = fault.changed() => None,
        };
        if let Some((client, _)) = conn {
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(proxy_one(client, to.clone(), fault.clone()));
        }
    }
}

/// One connection through the proxy, as the fault in force says.
async fn proxy_one(
    mut client: tokio::net::TcpStream,
    to: String,
    mut fault: tokio::sync::watch::Receiver<Fault>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let current = *fault.borrow_and_update();
    match current {
        Fault::Pass => {}
        Fault::Reset | Fault::Down => {
            let _ = client.set_zero_linger();
            return;
        }
        Fault::Garbage => {
            let mut buf = [0; 4096];
            let _ = client.read(&mut buf).await;
            let _ = client.write_all(b"\x00\x7fnot http at all\r\n\r\n").await;
            let _ = client.shutdown().await;
            return;
        }
        Fault::Slow(delay) => tokio::time::sleep(delay).await,
    }
    let Ok(mut server) = tokio::net::TcpStream::connect(&to).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let passing = |f: &Fault| matches!(f, Fault::Pass | Fault::Slow(_));
    let broken = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        _ = fault.wait_for(|f| !passing(f)) => true,
    };
    if broken {
        // A fault that starts now breaks the connections already open too, as a network
        // failure would: a pooled connection fails on its next request.
        let _ = client.set_zero_linger();
    }
}

/// The most of `times` (in any unit, in any order) that fall in one half-open span of
/// `span`: how a channel counts sends against a window.
pub fn most_in_any_span(times: &[u64], span: u64) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let mut best = 0;
    let mut start = 0;
    for (end, &t) in sorted.iter().enumerate() {
        while sorted[start] + span <= t {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}
