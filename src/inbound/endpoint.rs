//! The bot endpoint: `POST /api/messages`, as the Bot Framework SDKs answer it; and the
//! operator's `POST /api/notify` (see [`Announcements`]).
//!
//! Checks run cheapest first: method (405), content type (415), size (413), the time the
//! body takes to arrive (408), then the activity itself (400). Every error has a Bot Framework `ErrorResponse` JSON body.
//! A handled activity is 200 with an empty body, or 200 with `{"activities": [...]}` for
//! `expectReplies`.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};
use serde_json::json;
use tracing::Instrument;
use warp::http::{header, HeaderMap, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use serde::Deserialize;

use crate::clock::Clock;
use crate::delivery::connector::Connector;
use crate::delivery::replies::ReplyLanes;
use crate::delivery::retry::{classify, Failure};
use crate::delivery::run::Wake;
use crate::domain::{NewOutbox, OutboxMessage};
use crate::error::Chain;
use crate::inbound::activity::{
    Activity, ActivityError, ConversationKey, OutboundActivity, ValidActivity,
};
use crate::inbound::auth::InboundAuth;
use crate::inbound::bot::{Bot, BotError};
use crate::liveness::Liveness;
use crate::ops::metrics::{Metrics, Stored, TurnOutcome};
use crate::secret::Secret;
use crate::shown::Shown;
use crate::store::{Store, StoreError};

/// What the endpoint needs, shared by every request.
pub struct Endpoint {
    pub auth: InboundAuth,
    pub bot: Bot,
    pub connector: Connector,
    /// Largest accepted body in bytes.
    pub body_limit: u64,
    /// Longest a request's whole body may take to arrive.
    pub body_timeout: Duration,
    /// `None` when no admin token is configured: `/api/notify` is then 404.
    pub announcements: Option<Announcements>,
    pub health: Health,
    /// What `GET /metrics` serves; the turns are counted here.
    pub metrics: Arc<Metrics>,
    pub late_replies: LateReplies,
}

/// Where a turn's replies go when the channel does not take them in time: the outbox,
/// in order behind the conversation's earlier ones ([`crate::delivery::replies`]).
pub struct LateReplies {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// Told when replies were queued, so delivery sends them at once.
    pub wake: Wake,
    /// Shared with delivery.
    pub lanes: Arc<ReplyLanes>,
}

/// What `GET /readyz` looks at.
pub struct Health {
    pub store: Arc<dyn Store>,
    /// The store's sizes for `/metrics`, counted sparingly.
    pub sizes: Arc<crate::ops::sizes::StoreSizes>,
    pub liveness: Arc<Liveness>,
    /// The daemon's clock, for the age of the oldest queued message.
    pub clock: Arc<dyn Clock>,
    /// A loop still for longer than this is not alive (the watchdog's limit).
    pub stale_after: std::time::Duration,
}

/// The sample's `/api/notify`, done right: a POST, an admin bearer token, a message that
/// goes through the outbox (so the rate limits, retries and dead letters apply), and an
/// answer saying how many conversations it was queued for.
pub struct Announcements {
    pub token: Secret,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// Told when announcements were queued, so delivery need not wait for its poll.
    pub wake: Wake,
    pub max_text: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyRequest {
    text: String,
    #[serde(default)]
    conversation: Option<NotifyTarget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NotifyTarget {
    channel_id: String,
    id: String,
}

/// Which endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Everything on one listener (the default).
    All,
    /// `/api/messages` and `/api/notify` only: `server.ops_bind` serves the rest.
    Bot,
    /// `/healthz`, `/readyz` and `/metrics` only, on `server.ops_bind`.
    Ops,
}

/// Passes when `on`, else rejects as "not found" (so the next route is tried).
fn only_if(on: bool) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::any()
        .and_then(move || async move {
            if on {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

/// The daemon's HTTP surface, or the part of it `surface` names.
pub fn routes(
    endpoint: Arc<Endpoint>,
    surface: Surface,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static
{
    let bot = surface != Surface::Ops;
    let ops = surface != Surface::Bot;
    let messages_endpoint = endpoint.clone();
    let messages = only_if(bot)
        .and(warp::path!("api" / "messages"))
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(move |method, headers, body| {
            let endpoint = messages_endpoint.clone();
            async move { messages(&endpoint, method, headers, body).await }
        });
    let notify_endpoint = endpoint.clone();
    let notify = only_if(bot)
        .and(warp::path!("api" / "notify"))
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(move |method, headers, body| {
            let endpoint = notify_endpoint.clone();
            async move { notify(&endpoint, method, headers, body).await }
        });
    let health_endpoint = endpoint.clone();
    let health = only_if(ops)
        .and(warp::path!(String))
        .and(warp::method())
        .and_then(|name: String, method: Method| async move {
            match name.as_str() {
                "healthz" | "readyz" => Ok((name, method)),
                _ => Err(warp::reject::not_found()),
            }
        })
        .untuple_one()
        .then(move |name: String, method: Method| {
            let endpoint = health_endpoint.clone();
            async move { health(&endpoint, &name, method).await }
        });
    let metrics_endpoint = endpoint.clone();
    let metrics = only_if(ops)
        .and(warp::path!("metrics"))
        .and(warp::method())
        .then(move |method: Method| {
            let endpoint = metrics_endpoint.clone();
            async move { metrics(&endpoint, method).await }
        });
    let not_found = warp::any().map(move || {
        error_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            if bot {
                "no such endpoint; the bot listens on POST /api/messages"
            } else {
                "no such endpoint; this address serves /healthz, /readyz and /metrics"
            },
        )
    });
    messages
        .or(notify)
        .unify()
        .or(health)
        .unify()
        .or(metrics)
        .unify()
        .or(not_found)
        .unify()
}

async fn notify<S, B>(endpoint: &Endpoint, method: Method, headers: HeaderMap, body: S) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let Some(announcements) = &endpoint.announcements else {
        return error_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the notify endpoint is off: no admin token is configured (notify.admin_token_file)",
        );
    };
    if method != Method::POST {
        return post_only("use POST to queue an announcement");
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    if !presented.is_some_and(|t| same_secret(t, announcements.token.expose())) {
        tracing::warn!("notify refused: missing or wrong admin token");
        let mut r = error_response(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "send the admin token as Authorization: Bearer <token>",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    if !is_json(&headers) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "send the announcement as application/json",
        );
    }
    let body = match read_limited(&headers, body, endpoint.body_limit, endpoint.body_timeout).await
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let request: NotifyRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!(
                    "expected {{\"text\": \"...\", \"conversation\": {{\"channelId\": \"...\", \"id\": \"...\"}}}} (conversation optional): {e}"
                ),
            )
        }
    };
    let text = request.text.trim();
    if text.is_empty() {
        return error_response(StatusCode::BAD_REQUEST, "BadRequest", "text is empty");
    }
    let chars = text.chars().count();
    if chars > announcements.max_text {
        return error_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!(
                "text has {chars} characters, more than announcements.max_text ({})",
                announcements.max_text
            ),
        );
    }
    match queue_announcement(announcements, text, request.conversation).await {
        Ok(Some(queued)) => {
            tracing::info!(queued, "announcement queued");
            if queued > 0 {
                announcements.wake.announcement_queued();
            }
            warp::reply::with_status(
                warp::reply::json(&json!({ "queued": queued })),
                StatusCode::ACCEPTED,
            )
            .into_response()
        }
        Ok(None) => error_response(
            StatusCode::NOT_FOUND,
            "ConversationNotFound",
            "no conversation with that channelId and id is stored",
        ),
        Err(e) => {
            tracing::error!(error = %Chain(&e), "queueing an announcement failed");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "StorageFailed",
                "the announcement could not be queued; nothing was sent",
            )
        }
    }
}

/// `GET /healthz`: the process answers. `GET /readyz`: it can do its work: the store
/// answers, the watch and delivery loops go round, and in production the signing keys
/// are loaded; otherwise 503 naming what fails.
async fn health(endpoint: &Endpoint, name: &str, method: Method) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return get_only();
    }
    if name == "healthz" {
        return warp::reply::json(&json!({ "status": "alive" })).into_response();
    }
    let health = &endpoint.health;
    let mut failing = Vec::new();
    if let Err(e) = health.store.ping().await {
        failing.push(format!("store: {}", Chain(&e)));
    } else if let Err(e) = health.store.writable() {
        failing.push(format!("store: {}", Chain(&e)));
    }
    for stalled in health.liveness.stalled(health.stale_after) {
        failing.push(format!(
            "{}: has not gone round for more than {}",
            stalled.name(),
            humantime::format_duration(health.stale_after)
        ));
    }
    if let Some(keys) = endpoint.auth.key_status() {
        if keys.keys == 0 {
            failing.push(format!(
                "signing keys: none loaded yet ({})",
                keys.last_error.as_deref().unwrap_or("first fetch pending")
            ));
        }
    }
    if failing.is_empty() {
        warp::reply::json(&json!({ "status": "ready" })).into_response()
    } else {
        warp::reply::with_status(
            warp::reply::json(&json!({ "status": "unready", "failing": failing })),
            StatusCode::SERVICE_UNAVAILABLE,
        )
        .into_response()
    }
}

/// 405 with `Allow: GET, HEAD`: the health and metrics endpoints are read-only.
fn get_only() -> Response {
    let mut r = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "use GET",
    );
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
    r
}

/// `GET /metrics`: every series in the Prometheus text format, with the store's sizes as
/// `ops::sizes` last counted them (left at their last values when the store does not
/// answer; `/readyz` says so).
async fn metrics(endpoint: &Endpoint, method: Method) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return get_only();
    }
    match endpoint.health.sizes.get().await {
        Ok(s) => endpoint.metrics.set_stored(Stored {
            watches: s.watches as u64,
            products: s.products as u64,
            outbox_messages: s.outbox as u64,
            dead_letters: s.dead_letters as u64,
            oldest_queued_seconds: s.oldest_queued_ms.map_or(0, |created| {
                endpoint.health.clock.now_ms().saturating_sub(created) / 1000
            }),
        }),
        Err(e) => tracing::warn!(error = %Chain(&e), "metrics: the store's sizes are not current"),
    }
    match endpoint.metrics.encode() {
        Ok(text) => {
            let mut r = Response::new(text.into());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(crate::ops::metrics::CONTENT_TYPE),
            );
            r
        }
        Err(_) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "MetricsFailed",
            "the metrics could not be written",
        ),
    }
}

/// Queues `text` for the named conversation or every stored one (the store skips those
/// the channel refused); `None` when the named one is not stored.
async fn queue_announcement(
    announcements: &Announcements,
    text: &str,
    target: Option<NotifyTarget>,
) -> Result<Option<usize>, StoreError> {
    let store = &announcements.store;
    let keys = match target {
        Some(t) => {
            let key = ConversationKey {
                channel_id: t.channel_id,
                conversation_id: t.id,
            };
            if store.reference(&key).await?.is_none() {
                return Ok(None);
            }
            vec![key]
        }
        None => store.conversations().await?,
    };
    let now = announcements.clock.now_ms();
    let mut queued = 0;
    // One transaction and one flush per chunk: a flush is the slowest part of queueing,
    // and the chunk bounds the memory a transaction holds on a large store.
    for chunk in keys.chunks(ANNOUNCEMENT_CHUNK) {
        let messages = chunk
            .iter()
            .map(|key| NewOutbox {
                alert_id: format!(
                    "announcement:{now}:{}:{}",
                    key.channel_id, key.conversation_id
                ),
                conversation: key.clone(),
                watch_id: None,
                message: OutboxMessage::Announcement {
                    text: text.to_owned(),
                },
            })
            .collect();
        queued += store.queue_messages(messages, now).await?.len();
    }
    Ok(Some(queued))
}

/// Announcements queued in one transaction.
const ANNOUNCEMENT_CHUNK: usize = 10_000;

/// The token of an `Authorization: Bearer <token>` value. The scheme is matched without
/// regard to case (RFC 7235, 2.1): `bearer` and `BEARER` are the same scheme.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares in constant time (`subtle`, already in the build through rustls), so the
/// time taken does not tell how much of a guess was right.
fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

async fn messages<S, B>(
    endpoint: &Endpoint,
    method: Method,
    headers: HeaderMap,
    body: S,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    if method != Method::POST {
        return post_only("use POST to send activities");
    }
    if !is_json(&headers) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "activities must be sent as application/json",
        );
    }
    let body = match read_limited(&headers, body, endpoint.body_limit, endpoint.body_timeout).await
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let refused = |e: ActivityError, channel: &str| {
        endpoint.metrics.turn(channel, TurnOutcome::Invalid);
        tracing::debug!(error = %Shown::text(Chain(&e)), "activity refused");
        error_response(StatusCode::BAD_REQUEST, e.code(), &e.to_string())
    };
    let activity = match Activity::read(&body) {
        Ok(a) => a,
        // Not even JSON with a channel: counted as `other`.
        Err(e) => return refused(e, ""),
    };
    // A header that is not visible ASCII is no token: the same refusal as a missing one.
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    if let Err(e) = endpoint.auth.verify(authorization, &activity).await {
        endpoint.metrics.turn(
            activity.channel_id.as_deref().unwrap_or(""),
            TurnOutcome::Refused,
        );
        tracing::warn!(
            reason = e.class(),
            channel = %Shown::id(activity.channel_id.as_deref().unwrap_or("")),
            "activity refused: {e}"
        );
        let mut r = error_response(StatusCode::UNAUTHORIZED, e.class(), &e.to_string());
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    // The label, not the id: no copy of the id is kept past validation.
    let channel = crate::ops::metrics::channel_label(activity.channel_id.as_deref().unwrap_or(""));
    let activity = match activity.validate() {
        Ok(a) => a,
        Err(e) => return refused(e, channel),
    };
    let span = tracing::info_span!(
        "turn",
        channel = %Shown::id(&activity.channel_id),
        conversation = %Shown::id(&activity.conversation.id),
        activity_type = %Shown::id(&activity.kind),
    );
    turn(endpoint, activity).instrument(span).await
}

async fn turn(endpoint: &Endpoint, activity: ValidActivity) -> Response {
    let turn = match endpoint.bot.turn(&activity).await {
        Ok(t) => t,
        Err(e) => {
            endpoint
                .metrics
                .turn(&activity.channel_id, TurnOutcome::Failed);
            tracing::error!(error = %Chain(&e), "turn failed");
            let BotError::Reference { source, apology } = e;
            if !activity.expects_replies() {
                send_replies(endpoint, &activity.key(), apology).await;
            }
            // 503 when the storage may come back (a full disk, a store not answering):
            // the channel may send the activity again later.
            return if source.is_unavailable() {
                error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "StorageUnavailable",
                    "the activity could not be stored now; try again later",
                )
            } else {
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "StorageFailed",
                    "the activity could not be stored; try again",
                )
            };
        }
    };
    endpoint
        .metrics
        .turn(&activity.channel_id, TurnOutcome::Handled);
    tracing::debug!(reference = ?turn.reference, replies = turn.replies.len(), "turn handled");
    if activity.expects_replies() {
        return warp::reply::json(&json!({ "activities": turn.replies })).into_response();
    }
    // The user's activity was handled and stored; a channel failure must not make the
    // channel retry it, so the turn answers 200 whatever became of the replies.
    send_replies(endpoint, &activity.key(), turn.replies).await;
    if activity.kind == "invoke" {
        // As the SDKs do when the bot produced no invokeResponse.
        return error_response(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "pricewatch does not handle invoke activities",
        );
    }
    StatusCode::OK.into_response()
}

/// Sends the replies in the order the bot wrote them. From the first one the channel does
/// not take for a reason that may pass, they go to the outbox, as do all of them while
/// the conversation has earlier replies queued: delivery sends them in order, within the
/// rate limits, retrying as it does proactive messages. A reply the channel refuses for
/// good is logged and dropped, as a proactive message would be.
async fn send_replies(endpoint: &Endpoint, key: &ConversationKey, replies: Vec<OutboundActivity>) {
    if replies.is_empty() {
        return;
    }
    let late = &endpoint.late_replies;
    let _lane = late.lanes.enter(key).await;
    let mut queue_from = if late.lanes.has_queued(key) {
        tracing::debug!("earlier replies are queued; these go behind them");
        Some(0)
    } else {
        None
    };
    // A channel that asked for a pause (429/503 with `Retry-After`) gets it from the
    // queued replies too.
    let mut not_before = None;
    for (i, reply) in replies.iter().enumerate() {
        if queue_from.is_some() {
            break;
        }
        let e = match endpoint.connector.send(reply).await {
            Ok(d) => {
                tracing::debug!(
                    status = d.status,
                    activity_id = %Shown::id(d.activity_id.as_deref().unwrap_or("")),
                    "reply sent"
                );
                continue;
            }
            Err(e) => e,
        };
        match classify(&e) {
            Failure::Transient { retry_after, .. } => {
                tracing::warn!(error = %Shown::text(Chain(&e)), status = ?e.status(), "reply not taken; queued for delivery");
                queue_from = Some(i);
                not_before = retry_after;
            }
            Failure::Permanent | Failure::Unreachable => {
                tracing::warn!(error = %Shown::text(Chain(&e)), status = ?e.status(), "reply refused; not retried")
            }
        }
    }
    let Some(from) = queue_from else {
        return;
    };
    let now = late.clock.now_ms();
    let messages: Vec<NewOutbox> = replies
        .into_iter()
        .enumerate()
        .skip(from)
        .map(|(i, reply)| NewOutbox {
            // Unique per turn and reply: two turns never share one (activity ids need
            // not be unique), and the store keeps one entry per id.
            alert_id: format!(
                "reply:{now}:{}:{i}:{}:{}",
                REPLY_SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                key.channel_id,
                key.conversation_id
            ),
            conversation: key.clone(),
            watch_id: None,
            message: OutboxMessage::Reply {
                text: reply.text.unwrap_or_default(),
                reply_to_id: reply.reply_to_id,
            },
        })
        .collect();
    let count = messages.len();
    match late.store.queue_messages(messages, now).await {
        Ok(entries) => {
            for e in &entries {
                late.lanes.queued(key, e.id);
            }
            if let Some(wait) = not_before {
                let at = now.saturating_add(wait.as_millis() as u64);
                let ids = entries.iter().map(|e| e.id).collect();
                if let Err(err) = late.store.defer_messages(ids, at).await {
                    // Only sooner than asked: the reply is queued all the same.
                    tracing::warn!(error = %Chain(&err), "a queued reply could not be deferred");
                }
            }
            late.wake.replies_queued();
        }
        Err(e) => {
            tracing::error!(error = %Chain(&e), replies = count, "queueing replies failed; they are lost")
        }
    }
}

/// Makes each queued reply's id unique within the process (the time makes it unique
/// across restarts).
static REPLY_SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `application/json` or any `+json` type, parameters allowed.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5
            && essence
                .get(essence.len() - 5..)
                .is_some_and(|s| s.eq_ignore_ascii_case("+json"))
            && essence
                .get(..12)
                .is_some_and(|s| s.eq_ignore_ascii_case("application/")))
}

/// Reads the body, refusing it as soon as it is known to exceed `limit`: from the
/// `Content-Length` header when there is one, else while streaming a chunked body. A body
/// that has not all arrived within `timeout` is refused with 408 and its connection
/// closed: a client that stalls mid-body would otherwise hold a connection, and a turn,
/// for as long as it likes (the listener does not time a request in flight).
async fn read_limited<S, B>(
    headers: &HeaderMap,
    body: S,
    limit: u64,
    timeout: Duration,
) -> Result<BytesMut, Response>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    match tokio::time::timeout(timeout, read_body(headers, body, limit)).await {
        Ok(read) => read,
        Err(_) => {
            tracing::debug!(?timeout, "request body timed out");
            let mut r = error_response(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeout",
                &format!(
                    "the body did not arrive within {}",
                    humantime::format_duration(timeout)
                ),
            );
            // The rest of the body may still come; the connection cannot be reused.
            r.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            Err(r)
        }
    }
}

async fn read_body<S, B>(headers: &HeaderMap, mut body: S, limit: u64) -> Result<BytesMut, Response>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            &format!("the body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(4096).min(limit) as usize);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| {
            error_response(
                StatusCode::BAD_REQUEST,
                "BodyReadFailed",
                &format!("the body could not be read: {e}"),
            )
        })?;
        if buf.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            buf.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(buf)
}

/// 405 with `Allow: POST`: both endpoints take POST only.
fn post_only(message: &str) -> Response {
    let mut r = error_response(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message);
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    r
}

/// A Bot Framework `ErrorResponse`.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "error": { "code": code, "message": message } });
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        h
    }

    #[test]
    fn the_bearer_scheme_is_matched_without_regard_to_case() {
        for value in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "BeArEr   abc ",
            " Bearer abc",
        ] {
            assert_eq!(bearer_token(value), Some("abc"), "{value:?}");
        }
        for value in ["Basic abc", "Bearerabc", "Bearer", "Bearer   ", "", "abc"] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(&headers("application/json")));
        assert!(is_json(&headers("application/json; charset=utf-8")));
        assert!(is_json(&headers("Application/JSON")));
        assert!(is_json(&headers("application/activity+json")));
        assert!(!is_json(&headers("text/plain")));
        assert!(!is_json(&headers("text/+json")));
        assert!(!is_json(&headers("application/x-www-form-urlencoded")));
        assert!(!is_json(&HeaderMap::new()));
    }
}
