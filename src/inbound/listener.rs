//! The HTTP listener: accepts connections and serves the routes on each, with every
//! connection bounded in time and all of them in number, so that clients that connect
//! and send nothing, or send slowly, cannot use up the daemon's file descriptors.
//!
//! HTTP/1.1 only: the Bot Framework channels and Azure speak HTTP/1.1 to bots, and
//! serving one protocol keeps the limits below exact.
//!
//! **Time** ([`ListenerConfig`]), with nginx's meaning:
//! - *header*: a connection must send a complete request head within `header_timeout`
//!   of opening, and a kept-alive one within `header_timeout` of the first byte of its
//!   next request;
//! - *idle*: a connection with no request in flight that sends no byte for
//!   `idle_timeout` is closed (a new connection that sends nothing is both idle and
//!   without a head, so the shorter limit closes it);
//! - *body*: reading a request's body is bounded by the endpoint
//!   ([`crate::inbound::endpoint`]), which answers 408.
//!
//! hyper's own `header_read_timeout` is not used. In hyper 1.12 its timer starts when the
//! connection's head is first read for (the first poll, so at accept with the HTTP/1
//! builder) and again as soon as a response is written, and bytes arriving do not
//! restart it: it would bound a kept-alive connection's idle wait by the header limit,
//! so `idle_timeout` could never be longer. (hyper-util's `auto` builder, which warp uses,
//! reads the first bytes to guess the protocol before any timer runs, so a connection
//! that sends nothing is never closed at all.) Instead each connection's `Phase` is
//! tracked here, from its reads, its requests and the end of its responses, and
//! `deadline` says when it must go.
//!
//! **Number**: at most `max_connections` are open, lowered at start-up to what the
//! process's open-file limit allows ([`effective_cap`]). At the cap a new connection is
//! still accepted and the connection idle longest is closed to make room (`admission`),
//! so turns keep being served however many idle connections a client opens; only when
//! every connection has a request in flight does accepting wait, and new connections
//! wait in the kernel's backlog.
//!
//! The decisions (deadlines, admission, the cap, whose fault an error is) are pure
//! functions with their unit tests; the rest is I/O around them. Their times are
//! microseconds on tokio's monotonic clock, which its timers use: the crate's `Clock` is
//! wall time, which can jump.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::error::Chain;

/// The listener's limits, from `[server]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Longest a client may take to send a request head.
    pub header_timeout: Duration,
    /// Longest a connection may stay open with no request in flight and no byte sent.
    pub idle_timeout: Duration,
    /// Most connections open at once, before the open-file limit lowers it.
    pub max_connections: usize,
}

/// Descriptors kept back from connections for everything else the daemon opens: sled's
/// files (about ten), the runtime's and the standard streams (a handful), and the
/// outbound HTTP pools (the fetcher's concurrent checks, 32 by default, and the
/// Connector's pooled connections to the channels). 64 covers them at the defaults; a
/// tenth of a larger limit leaves room for a raised `fetch.global_concurrency` and for
/// the moments when closed connections have not yet given their descriptor back.
const RESERVE_MIN: u64 = 64;
const RESERVE_DIVISOR: u64 = 10;

/// What the soft limit is raised to when the hard limit is unlimited: Linux refuses more
/// than `fs.nr_open`, whose default is 2^20.
const UNLIMITED_TARGET: u64 = 1 << 20;

/// How often at most a warning that can repeat under load (accept failures, the cap
/// reached) is logged; the ones skipped are counted in the next.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// The pause after an accept failure that is not one client's (no descriptors, no
/// memory): accepting again at once would spin, and connections closing meanwhile free
/// what it lacked.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Serves `service` on `listener` until `shutdown` is cancelled, then stops accepting,
/// asks every connection to finish gracefully (idle ones close at once) and returns
/// when the last one has ended. Dropping the returned future (aborting its task) closes
/// every connection.
///
/// Before returning the future it raises the process's open-file limit and logs the
/// effective connection cap, so that line comes before the daemon says it listens.
pub fn serve<S, B>(
    listener: TcpListener,
    service: S,
    config: ListenerConfig,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let soft_limit = raise_fd_limit();
    let cap = effective_cap(config.max_connections, soft_limit);
    if cap < config.max_connections {
        tracing::info!(
            max_connections = cap,
            configured = config.max_connections,
            open_file_limit = soft_limit,
            "connection cap lowered to fit the open-file limit (raise LimitNOFILE to allow more)"
        );
    } else {
        tracing::info!(
            max_connections = cap,
            open_file_limit = soft_limit,
            "connection cap"
        );
    }
    let mut http = http1::Builder::new();
    // No hyper timer: the deadlines are this module's (see the module documentation).
    http.header_read_timeout(None);
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        header: micros(config.header_timeout),
        idle: micros(config.idle_timeout),
        http,
        slots: Mutex::new(HashMap::new()),
        room: Notify::new(),
        waiting: AtomicBool::new(false),
    });
    let server = Server {
        shared,
        cap,
        service,
        shutdown,
        tasks: JoinSet::new(),
        next_id: 0,
        accept_warnings: Throttle::new(WARN_EVERY),
        cap_warnings: Throttle::new(WARN_EVERY),
        busy_warnings: Throttle::new(WARN_EVERY),
    };
    server.run(listener)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as Go's runtime does at start-up
/// (systemd starts services with 1024 soft, a limit kept for `select()`, and 524288
/// hard), and returns the soft limit now in force; `None` when it is unlimited or the
/// platform has none.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let limit = getrlimit(Resource::Nofile);
        let target = limit.maximum.unwrap_or(UNLIMITED_TARGET);
        match limit.current {
            Some(soft) if soft < target => {
                let raised = Rlimit {
                    current: Some(target),
                    maximum: limit.maximum,
                };
                match setrlimit(Resource::Nofile, raised) {
                    Ok(()) => {
                        tracing::debug!(from = soft, to = target, "raised the open-file limit");
                        Some(target)
                    }
                    Err(e) => {
                        tracing::warn!(
                            error = %Chain(&io::Error::from(e)),
                            soft,
                            target,
                            "cannot raise the open-file limit"
                        );
                        Some(soft)
                    }
                }
            }
            current => current,
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection cap in force: the configured one, lowered so that connections leave
/// a reserve (a tenth of the limit, at least 64) of the open-file limit
/// `soft_limit` (`None`: unlimited) to the rest of the daemon; never below one.
pub fn effective_cap(configured: usize, soft_limit: Option<u64>) -> usize {
    let Some(limit) = soft_limit else {
        return configured.max(1);
    };
    let reserve = (limit / RESERVE_DIVISOR).max(RESERVE_MIN);
    let room = usize::try_from(limit.saturating_sub(reserve)).unwrap_or(usize::MAX);
    configured.min(room).max(1)
}

/// Where a connection is between requests, which decides its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Accepted, no request head complete yet.
    Fresh = 0,
    /// Kept alive after a response, no byte of the next request yet.
    Waiting = 1,
    /// Kept alive, the next request's head has begun.
    Head = 2,
    /// A request is in flight: from its complete head to the end of its response.
    Busy = 3,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        match value {
            0 => Phase::Fresh,
            1 => Phase::Waiting,
            2 => Phase::Head,
            _ => Phase::Busy,
        }
    }
}

/// Which limit closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Limit {
    Header,
    Idle,
}

/// A connection's phase and its times, in microseconds since the listener started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timing {
    phase: Phase,
    /// When the phase began: the accept, the end of the last response, or the first
    /// byte of the next request.
    since: u64,
    /// When the last byte arrived outside a request (or the phase began).
    last_byte: u64,
}

/// When a connection in `t` is to be closed and by which limit (`header` and `idle` in
/// microseconds); `None` while a request is in flight, which the body limit and the
/// turn's own timeouts bound instead.
fn deadline(t: Timing, header: u64, idle: u64) -> Option<(u64, Limit)> {
    let idle_at = (t.last_byte.saturating_add(idle), Limit::Idle);
    let header_at = (t.since.saturating_add(header), Limit::Header);
    match t.phase {
        Phase::Busy => None,
        Phase::Waiting => Some(idle_at),
        Phase::Fresh | Phase::Head => Some(if header_at.0 <= idle_at.0 {
            header_at
        } else {
            idle_at
        }),
    }
}

/// A connection as the accept loop sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotView {
    Busy,
    /// No request in flight since `since`.
    Idle {
        since: u64,
    },
    /// Chosen to make room, not closed yet.
    Closing,
}

/// What the accept loop does with one more connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admission<K> {
    /// There is room.
    Admit,
    /// Close this one, idle longest, to make room.
    Evict(K),
    /// One already closing will make room: wait for it.
    Closing,
    /// Every connection has a request in flight: wait for one to end or turn idle.
    Wait,
}

/// Decides for `open` connections under `cap`; `slots` (the same connections) is only
/// read at the cap.
fn admission<K>(
    cap: usize,
    open: usize,
    slots: impl IntoIterator<Item = (K, SlotView)>,
) -> Admission<K> {
    if open < cap {
        return Admission::Admit;
    }
    let mut oldest: Option<(u64, K)> = None;
    for (key, view) in slots {
        match view {
            SlotView::Busy => {}
            // Its descriptor is about to be free; closing another would cost a client
            // its connection for nothing.
            SlotView::Closing => return Admission::Closing,
            SlotView::Idle { since } => {
                if oldest.as_ref().is_none_or(|(s, _)| since < *s) {
                    oldest = Some((since, key));
                }
            }
        }
    }
    match oldest {
        Some((_, key)) => Admission::Evict(key),
        None => Admission::Wait,
    }
}

/// Whose fault a connection's error is, which decides how loud its log line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Blame {
    /// The client or the network: it went away mid-request, reset, sent something that
    /// is not HTTP. Routine on the internet, a `debug` line.
    Peer,
    /// This side: a service or response body failed. A bug, a `warn` line.
    Us,
}

fn blame(error: &hyper::Error) -> Blame {
    if error.is_user() {
        Blame::Us
    } else {
        Blame::Peer
    }
}

/// Accept failures that concern one connection only (it was reset or aborted before it
/// was accepted, or carries a pending network error, which Linux's `accept` reports):
/// the next accept takes the next one.
fn is_peer_accept_error(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted
            | ConnectionReset
            | ConnectionRefused
            | Interrupted
            | NetworkDown
            | NetworkUnreachable
            | HostUnreachable
            | TimedOut
    ) {
        return true;
    }
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        let raw = e.raw_os_error();
        [Errno::PROTO, Errno::NOPROTOOPT, Errno::OPNOTSUPP]
            .iter()
            .any(|errno| raw == Some(errno.raw_os_error()))
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// Lets a repeated warning through at most once per period, counting the ones held.
#[derive(Debug)]
struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            held: 0,
        }
    }

    /// `Some(held since the last one)` when a warning may be logged at `now`.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now < last + self.every => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Marks "busy" in [`Slot::idle_since`].
const BUSY: u64 = u64::MAX;

/// One open connection's state. Its phase and times are written only by its own task
/// (from its reads, its service and its response body, all polled inside that task);
/// the accept loop reads `idle_since` and sets `closing`.
#[derive(Debug)]
struct Slot {
    peer: SocketAddr,
    phase: AtomicU8,
    since: AtomicU64,
    last_byte: AtomicU64,
    /// When its idle stretch began, for the eviction choice; [`BUSY`] with a request in
    /// flight.
    idle_since: AtomicU64,
    closing: AtomicBool,
    /// Told when the accept loop closes it to make room.
    evict: Notify,
}

impl Slot {
    fn new(peer: SocketAddr, now: u64) -> Slot {
        Slot {
            peer,
            phase: AtomicU8::new(Phase::Fresh as u8),
            since: AtomicU64::new(now),
            last_byte: AtomicU64::new(now),
            idle_since: AtomicU64::new(now),
            closing: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }

    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    fn timing(&self) -> Timing {
        Timing {
            phase: self.phase(),
            since: self.since.load(Ordering::Relaxed),
            last_byte: self.last_byte.load(Ordering::Relaxed),
        }
    }

    fn view(&self) -> SlotView {
        if self.closing.load(Ordering::SeqCst) {
            return SlotView::Closing;
        }
        match self.idle_since.load(Ordering::SeqCst) {
            BUSY => SlotView::Busy,
            since => SlotView::Idle { since },
        }
    }

    fn bytes_read(&self, now: u64) {
        match self.phase() {
            Phase::Busy => {}
            Phase::Waiting => {
                self.since.store(now, Ordering::Relaxed);
                self.last_byte.store(now, Ordering::Relaxed);
                self.phase.store(Phase::Head as u8, Ordering::Relaxed);
            }
            Phase::Fresh | Phase::Head => self.last_byte.store(now, Ordering::Relaxed),
        }
    }

    fn request_started(&self) {
        self.phase.store(Phase::Busy as u8, Ordering::Relaxed);
        self.idle_since.store(BUSY, Ordering::SeqCst);
    }

    fn response_done(&self, now: u64) {
        self.since.store(now, Ordering::Relaxed);
        self.last_byte.store(now, Ordering::Relaxed);
        self.phase.store(Phase::Waiting as u8, Ordering::Relaxed);
        self.idle_since.store(now, Ordering::SeqCst);
    }
}

/// What the accept loop and the connections share.
struct Shared {
    epoch: Instant,
    /// `header_timeout` and `idle_timeout`, in microseconds.
    header: u64,
    idle: u64,
    http: http1::Builder,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    /// Woken when a connection ends, or turns idle while the accept loop waits.
    room: Notify,
    /// The accept loop waits for a connection to end or turn idle.
    waiting: AtomicBool,
}

impl Shared {
    fn now(&self) -> u64 {
        micros(self.epoch.elapsed())
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<u64, Arc<Slot>>> {
        // A panic while holding the map leaves it consistent (inserts and removals are
        // single calls), so a poisoned lock is used as is.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn turned_idle(&self) {
        if self.waiting.load(Ordering::SeqCst) {
            self.room.notify_one();
        }
    }
}

/// Removes a connection from the shared map when its task ends, however it ends.
struct Registered {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.slots().remove(&self.id);
        self.shared.room.notify_one();
    }
}

struct Server<S> {
    shared: Arc<Shared>,
    cap: usize,
    service: S,
    shutdown: CancellationToken,
    /// Owned here so that dropping the server ends every connection.
    tasks: JoinSet<()>,
    next_id: u64,
    accept_warnings: Throttle,
    cap_warnings: Throttle,
    busy_warnings: Throttle,
}

impl<S, B> Server<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    async fn run(mut self, listener: TcpListener) {
        'accepting: loop {
            // Accept only when there is room or an idle connection to close for it;
            // otherwise new connections wait in the kernel's backlog.
            if matches!(self.decide(false), Admission::Closing | Admission::Wait) {
                if !self.wait_for_room().await {
                    break;
                }
                continue;
            }
            let accepted = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                Some(joined) = self.tasks.join_next() => {
                    reaped(joined);
                    continue;
                }
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    if !self.accept_failed(e).await {
                        break;
                    }
                    continue;
                }
            };
            loop {
                match self.decide(true) {
                    Admission::Admit => break,
                    Admission::Evict(_) | Admission::Closing | Admission::Wait => {
                        if !self.wait_for_room().await {
                            break 'accepting;
                        }
                    }
                }
            }
            self.spawn(stream, peer);
        }
        drop(listener);
        tracing::debug!("listener closed; waiting for the open connections to finish");
        while let Some(joined) = self.tasks.join_next().await {
            reaped(joined);
        }
    }

    /// [`admission`] over the open connections; with `evict`, tells the chosen one to
    /// close.
    fn decide(&mut self, evict: bool) -> Admission<u64> {
        let slots = self.shared.slots();
        let decision = admission(
            self.cap,
            slots.len(),
            slots.iter().map(|(id, slot)| (*id, slot.view())),
        );
        match decision {
            Admission::Evict(id) if evict => {
                if let Some(slot) = slots.get(&id) {
                    slot.closing.store(true, Ordering::SeqCst);
                    slot.evict.notify_one();
                }
                drop(slots);
                if let Some(held) = self.cap_warnings.admit(Instant::now()) {
                    tracing::warn!(
                        max_connections = self.cap,
                        held,
                        "at the connection cap: closing the connections idle longest to accept new ones"
                    );
                }
            }
            Admission::Wait => {
                drop(slots);
                if let Some(held) = self.busy_warnings.admit(Instant::now()) {
                    tracing::warn!(
                        max_connections = self.cap,
                        held,
                        "at the connection cap with a request in flight on every connection: new connections wait"
                    );
                }
            }
            _ => {}
        }
        decision
    }

    /// Waits until a connection ends or turns idle; `false` on shutdown.
    async fn wait_for_room(&mut self) -> bool {
        let shared = self.shared.clone();
        let room = shared.room.notified();
        let mut room = pin!(room);
        room.as_mut().enable();
        shared.waiting.store(true, Ordering::SeqCst);
        // A connection that turned idle before `waiting` was set did not notify: look
        // again now that any later change will.
        let open = matches!(self.decide(false), Admission::Admit | Admission::Evict(_));
        let go_on = open
            || tokio::select! {
                biased;
                () = self.shutdown.cancelled() => false,
                () = room => true,
                Some(joined) = self.tasks.join_next() => {
                    reaped(joined);
                    true
                }
            };
        shared.waiting.store(false, Ordering::SeqCst);
        go_on
    }

    /// Logs an accept failure and, unless it was one client's, pauses; `false` on
    /// shutdown.
    async fn accept_failed(&mut self, e: io::Error) -> bool {
        if is_peer_accept_error(&e) {
            tracing::debug!(error = %Chain(&e), "a connection failed before it was accepted");
            return true;
        }
        if let Some(held) = self.accept_warnings.admit(Instant::now()) {
            tracing::warn!(
                error = %Chain(&e),
                held,
                open = self.shared.slots().len(),
                "cannot accept connections; retrying shortly"
            );
        }
        tokio::select! {
            () = self.shutdown.cancelled() => false,
            () = tokio::time::sleep(ACCEPT_PAUSE) => true,
        }
    }

    fn spawn(&mut self, stream: TcpStream, peer: SocketAddr) {
        tracing::debug!(%peer, "connection accepted");
        let id = self.next_id;
        self.next_id += 1;
        let slot = Arc::new(Slot::new(peer, self.shared.now()));
        self.shared.slots().insert(id, slot.clone());
        let registered = Registered {
            shared: self.shared.clone(),
            id,
        };
        self.tasks.spawn(connection(
            stream,
            slot,
            registered,
            self.service.clone(),
            self.shutdown.clone(),
        ));
    }
}

/// A connection task's end: a panic is a bug, said once.
fn reaped(joined: Result<(), JoinError>) {
    if let Err(e) = joined {
        if e.is_panic() {
            tracing::error!(error = %Chain(&e), "a connection task panicked");
        }
    }
}

/// How a connection ended.
enum End {
    Served(Result<(), hyper::Error>),
    TimedOut(Limit),
    Evicted,
}

/// Serves one connection until it ends, a deadline passes, or the accept loop closes it.
async fn connection<S, B>(
    stream: TcpStream,
    slot: Arc<Slot>,
    registered: Registered,
    service: S,
    shutdown: CancellationToken,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let shared = registered.shared.clone();
    let io = TokioIo::new(Watched {
        stream,
        slot: slot.clone(),
        epoch: shared.epoch,
    });
    let routes = Routes {
        service,
        slot: slot.clone(),
        shared: shared.clone(),
    };
    let mut conn = pin!(shared.http.serve_connection(io, routes));
    let mut timer = pin!(tokio::time::sleep_until(shared.epoch));
    let mut armed: Option<u64> = None;
    let mut evicted = pin!(slot.evict.notified());
    let mut stopping = pin!(shutdown.cancelled());
    let mut draining = false;
    let end = poll_fn(|cx: &mut Context<'_>| {
        if !draining && stopping.as_mut().poll(cx).is_ready() {
            // Finishes a request in flight and closes; an idle connection closes at once.
            conn.as_mut().graceful_shutdown();
            draining = true;
        }
        if let Poll::Ready(served) = conn.as_mut().poll(cx) {
            return Poll::Ready(End::Served(served));
        }
        if evicted.as_mut().poll(cx).is_ready() {
            return Poll::Ready(End::Evicted);
        }
        // hyper has just run: the phase may have changed, and with it the deadline.
        if let Some((at, limit)) = deadline(slot.timing(), shared.header, shared.idle) {
            if armed != Some(at) {
                timer
                    .as_mut()
                    .reset(shared.epoch + Duration::from_micros(at));
                armed = Some(at);
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(End::TimedOut(limit));
            }
        }
        Poll::Pending
    })
    .await;
    let peer = slot.peer;
    match end {
        End::Served(Ok(())) => tracing::debug!(%peer, "connection ended"),
        End::Served(Err(e)) => match blame(&e) {
            Blame::Peer => tracing::debug!(%peer, error = %Chain(&e), "connection ended"),
            Blame::Us => tracing::warn!(%peer, error = %Chain(&e), "connection failed"),
        },
        End::TimedOut(Limit::Header) => tracing::debug!(
            %peer,
            "connection closed: no complete request head within server.header_timeout"
        ),
        End::TimedOut(Limit::Idle) => {
            tracing::debug!(%peer, "connection closed: idle for server.idle_timeout")
        }
        End::Evicted => tracing::debug!(
            %peer,
            "connection closed: idle longest when the connection cap was reached"
        ),
    }
    // The socket closes here, then `registered` makes its room known.
}

/// The routes, marking the connection busy from a request's head to the end of its
/// response.
struct Routes<S> {
    service: S,
    slot: Arc<Slot>,
    shared: Arc<Shared>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Routes<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + Unpin + 'static,
{
    type Response = Response<Tracked<B>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.slot.request_started();
        let done = ResponseDone {
            slot: self.slot.clone(),
            shared: self.shared.clone(),
        };
        let mut service = self.service.clone();
        Box::pin(async move {
            poll_fn(|cx| service.poll_ready(cx)).await?;
            let response = service.call(request).await?;
            Ok(response.map(|body| Tracked { body, _done: done }))
        })
    }
}

/// Marks the connection idle when dropped: hyper drops a response body once it has
/// written it (or when the request is abandoned).
struct ResponseDone {
    slot: Arc<Slot>,
    shared: Arc<Shared>,
}

impl Drop for ResponseDone {
    fn drop(&mut self) {
        self.slot.response_done(self.shared.now());
        self.shared.turned_idle();
    }
}

/// A response body that marks its connection idle when hyper is done with it.
struct Tracked<B> {
    body: B,
    _done: ResponseDone,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, noting each read in the connection's [`Slot`].
struct Watched {
    stream: TcpStream,
    slot: Arc<Slot>,
    epoch: Instant,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.slot.bytes_read(micros(self.epoch.elapsed()));
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn timing(phase: Phase, since: u64, last_byte: u64) -> Timing {
        Timing {
            phase,
            since,
            last_byte,
        }
    }

    #[test]
    fn a_new_silent_connection_goes_at_the_shorter_limit() {
        // Nothing sent since the accept at 10 s: both limits apply.
        let t = timing(Phase::Fresh, 10 * S, 10 * S);
        assert_eq!(deadline(t, 60 * S, 75 * S), Some((70 * S, Limit::Header)));
        assert_eq!(deadline(t, 3 * S, S), Some((11 * S, Limit::Idle)));
    }

    #[test]
    fn a_dribbled_head_goes_at_the_header_limit_however_often_bytes_come() {
        // Accepted at 0, a byte every second: the idle limit keeps moving, the header
        // limit does not.
        for last in [S, 5 * S, 59 * S] {
            let t = timing(Phase::Fresh, 0, last);
            assert_eq!(deadline(t, 60 * S, 75 * S), Some((60 * S, Limit::Header)));
        }
        // On a kept-alive connection the head's time counts from its first byte.
        let t = timing(Phase::Head, 100 * S, 130 * S);
        assert_eq!(deadline(t, 60 * S, 75 * S), Some((160 * S, Limit::Header)));
        // A head that stops arriving is idle before its header limit when idle is shorter.
        let t = timing(Phase::Head, 100 * S, 101 * S);
        assert_eq!(deadline(t, 60 * S, 10 * S), Some((111 * S, Limit::Idle)));
    }

    #[test]
    fn a_kept_alive_connection_waits_the_idle_limit_not_the_header_one() {
        let t = timing(Phase::Waiting, 20 * S, 20 * S);
        assert_eq!(deadline(t, 2 * S, 75 * S), Some((95 * S, Limit::Idle)));
    }

    #[test]
    fn a_request_in_flight_has_no_connection_deadline() {
        assert_eq!(deadline(timing(Phase::Busy, 0, 0), S, S), None);
    }

    #[test]
    fn the_phase_follows_reads_requests_and_responses() {
        let slot = Slot::new("127.0.0.1:1".parse().unwrap(), 5);
        slot.bytes_read(7);
        assert_eq!(
            slot.timing(),
            timing(Phase::Fresh, 5, 7),
            "still from the accept"
        );
        assert_eq!(slot.view(), SlotView::Idle { since: 5 });
        slot.request_started();
        slot.bytes_read(9);
        assert_eq!(
            slot.timing(),
            timing(Phase::Busy, 5, 7),
            "body bytes change nothing"
        );
        assert_eq!(slot.view(), SlotView::Busy);
        slot.response_done(12);
        assert_eq!(slot.timing(), timing(Phase::Waiting, 12, 12));
        assert_eq!(slot.view(), SlotView::Idle { since: 12 });
        slot.bytes_read(20);
        assert_eq!(slot.timing(), timing(Phase::Head, 20, 20));
        slot.bytes_read(25);
        assert_eq!(slot.timing(), timing(Phase::Head, 20, 25));
        assert_eq!(
            slot.view(),
            SlotView::Idle { since: 12 },
            "idle since the response"
        );
        slot.closing.store(true, Ordering::SeqCst);
        assert_eq!(slot.view(), SlotView::Closing);
    }

    #[test]
    fn below_the_cap_every_connection_is_admitted_without_looking() {
        let never = std::iter::from_fn(|| -> Option<(u8, SlotView)> {
            panic!("the slots are read only at the cap")
        });
        assert_eq!(admission(10, 9, never), Admission::Admit);
    }

    #[test]
    fn at_the_cap_the_connection_idle_longest_makes_room() {
        let slots = [
            (1, SlotView::Idle { since: 50 }),
            (2, SlotView::Busy),
            (3, SlotView::Idle { since: 20 }),
            (4, SlotView::Idle { since: 30 }),
        ];
        assert_eq!(admission(4, 4, slots), Admission::Evict(3));
        // Over the cap (a smaller cap than connections open) likewise.
        assert_eq!(admission(2, 4, slots), Admission::Evict(3));
    }

    #[test]
    fn at_the_cap_with_every_connection_busy_accepting_waits() {
        let slots = [(1, SlotView::Busy), (2, SlotView::Busy)];
        assert_eq!(admission(2, 2, slots), Admission::Wait);
        assert_eq!(admission(2, 0, []), Admission::<u8>::Admit);
    }

    #[test]
    fn a_connection_already_closing_is_waited_for_rather_than_closing_another() {
        let slots = [
            (1, SlotView::Idle { since: 1 }),
            (2, SlotView::Closing),
            (3, SlotView::Busy),
        ];
        assert_eq!(admission(3, 3, slots), Admission::Closing);
    }

    #[test]
    fn the_cap_leaves_a_reserve_of_the_open_file_limit() {
        // systemd's default soft limit when it cannot be raised: a tenth is 102 > 64.
        assert_eq!(effective_cap(10_000, Some(1024)), 922);
        // A small limit keeps at least 64 back.
        assert_eq!(effective_cap(10_000, Some(256)), 192);
        // Raised to systemd's hard limit: the configured cap stands.
        assert_eq!(effective_cap(10_000, Some(524_288)), 10_000);
        assert_eq!(effective_cap(10_000, Some(11_112)), 10_000);
        assert_eq!(effective_cap(10_000, Some(11_110)), 9_999);
        // Unlimited, or absurdly small: never zero.
        assert_eq!(effective_cap(500, None), 500);
        assert_eq!(effective_cap(500, Some(10)), 1);
    }

    #[test]
    fn raising_the_limit_leaves_the_soft_limit_at_the_hard_one() {
        let soft = raise_fd_limit();
        let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(soft, now.current);
        if let (Some(soft), Some(hard)) = (now.current, now.maximum) {
            assert_eq!(soft, hard);
        }
    }

    #[test]
    fn repeated_warnings_are_held_and_counted() {
        let mut throttle = Throttle::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(throttle.admit(t0), Some(0));
        assert_eq!(throttle.admit(t0 + Duration::from_secs(1)), None);
        assert_eq!(throttle.admit(t0 + Duration::from_millis(4999)), None);
        assert_eq!(throttle.admit(t0 + Duration::from_secs(5)), Some(2));
        assert_eq!(throttle.admit(t0 + Duration::from_secs(6)), None);
        assert_eq!(throttle.admit(t0 + Duration::from_secs(60)), Some(1));
    }

    #[test]
    fn accept_errors_of_one_client_are_told_from_resource_exhaustion() {
        for kind in [
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::ConnectionReset,
        ] {
            assert!(is_peer_accept_error(&io::Error::from(kind)), "{kind:?}");
        }
        let proto = io::Error::from_raw_os_error(rustix::io::Errno::PROTO.raw_os_error());
        assert!(is_peer_accept_error(&proto));
        for errno in [
            rustix::io::Errno::MFILE,
            rustix::io::Errno::NFILE,
            rustix::io::Errno::NOBUFS,
            rustix::io::Errno::NOMEM,
        ] {
            let e = io::Error::from_raw_os_error(errno.raw_os_error());
            assert!(!is_peer_accept_error(&e), "{e}");
        }
    }

    /// How a test client leaves after writing its bytes.
    #[derive(Clone, Copy, Debug)]
    enum Leave {
        /// Drops the socket: reads and writes fail on the server's side.
        Drop,
        /// Closes its sending half only, and reads whatever comes back.
        HalfClose,
        /// Stays until the server is done.
        Stay,
    }

    /// How a real hyper connection ends when a client sends `client` and leaves as told.
    async fn connection_end(
        client: &[u8],
        leave: Leave,
        failing_service: bool,
    ) -> Result<(), hyper::Error> {
        use tokio::io::AsyncWriteExt;

        let (server_io, mut client_io) = tokio::io::duplex(4096);
        let service = hyper::service::service_fn(move |request: Request<Incoming>| async move {
            let mut body = request.into_body();
            while let Some(Ok(_)) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {}
            if failing_service {
                Err(io::Error::other("the service failed"))
            } else {
                Ok(Response::new(String::from("{}")))
            }
        });
        let served =
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(server_io), service));
        client_io.write_all(client).await.unwrap();
        let kept = match leave {
            Leave::Drop => {
                drop(client_io);
                None
            }
            Leave::HalfClose => {
                client_io.shutdown().await.unwrap();
                Some(client_io)
            }
            Leave::Stay => Some(client_io),
        };
        let end = tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .unwrap_or_else(|_| panic!("{leave:?}: the connection did not end"))
            .unwrap();
        drop(kept);
        end
    }

    const CUT: &[u8] =
        b"POST /api/messages HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"type\":";

    #[tokio::test]
    async fn a_client_gone_mid_request_or_speaking_garbage_is_its_own_fault() {
        // Gone altogether: the answer cannot be written.
        let cut = connection_end(CUT, Leave::Drop, false).await.unwrap_err();
        assert_eq!(blame(&cut), Blame::Peer, "{cut:?}");
        // Gone half-way: the body fails (the endpoint answers 400), the connection ends
        // without an error.
        assert!(connection_end(CUT, Leave::HalfClose, false).await.is_ok());
        let garbage = connection_end(b"\x16\x03\x01\x02\x00 not http\r\n\r\n", Leave::Stay, false)
            .await
            .unwrap_err();
        assert!(garbage.is_parse(), "{garbage:?}");
        assert_eq!(blame(&garbage), Blame::Peer);
    }

    #[tokio::test]
    async fn a_failing_service_is_ours() {
        let failed = connection_end(
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}",
            Leave::Stay,
            true,
        )
        .await
        .unwrap_err();
        assert_eq!(blame(&failed), Blame::Us, "{failed:?}");
    }
}
