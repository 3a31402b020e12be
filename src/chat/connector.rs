//! The chat's Connector endpoint on loopback: the `serviceUrl` the bot posts to, for its
//! replies and for the proactive messages it sends later. It takes what a channel's
//! Connector takes (the Connector API's send, reply and update routes) and hands each
//! activity to the chat as it arrives.

use std::net::SocketAddr;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use warp::http::StatusCode;
use warp::Filter;

/// What the chat's display queue carries, in the order it must be shown.
#[derive(Debug)]
pub enum Arrival {
    /// An activity the bot sent; `update` when it replaces one already shown
    /// (`PUT …/activities/{id}`).
    Activity { activity: Value, update: bool },
    /// Not from the bot: the chat's mark, answered once everything queued before it has
    /// been shown (the bot posts a turn's replies before it answers the turn, so a mark
    /// queued after that answer comes after them).
    Shown(tokio::sync::oneshot::Sender<()>),
}

/// The running endpoint; dropping it stops it.
pub struct ConnectorEndpoint {
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A bot's activity is small; a bound keeps a confused sender from filling memory.
const BODY_LIMIT: u64 = 1024 * 1024;

impl ConnectorEndpoint {
    /// Listens on `127.0.0.1:port` (0 for any), or on any free port when `port` is taken and
    /// `fallback` allows it; arrivals go to `arrivals`.
    pub async fn start(
        port: u16,
        fallback: bool,
        arrivals: mpsc::UnboundedSender<Arrival>,
    ) -> std::io::Result<ConnectorEndpoint> {
        let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => l,
            Err(e) if fallback && port != 0 && e.kind() == std::io::ErrorKind::AddrInUse => {
                tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?
            }
            Err(e) => return Err(e),
        };
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(
            warp::serve(routes(arrivals))
                .incoming(listener)
                .graceful(async {
                    let _ = stopped.await;
                })
                .run(),
        );
        Ok(ConnectorEndpoint { addr, _stop: stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `serviceUrl` to give the bot.
    pub fn service_url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

fn routes(
    arrivals: mpsc::UnboundedSender<Arrival>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    type Counter = std::sync::Arc<std::sync::atomic::AtomicU64>;
    let counter: Counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let with = warp::any().map(move || Shared {
        tx: arrivals.clone(),
        counter: counter.clone(),
    });
    // POST /v3/conversations/{id}/activities and …/activities/{replyToId}
    let send = warp::post()
        .and(warp::path!(
            "v3" / "conversations" / String / "activities" / ..
        ))
        .and(warp::path::tail())
        .and(warp::body::content_length_limit(BODY_LIMIT))
        .and(warp::body::bytes())
        .and(with.clone())
        .map(
            |_conversation: String, _tail: warp::path::Tail, body: bytes::Bytes, s: Shared| {
                accept(&s.tx, &s.counter, &body, false)
            },
        );
    let update = warp::put()
        .and(warp::path!(
            "v3" / "conversations" / String / "activities" / String
        ))
        .and(warp::body::content_length_limit(BODY_LIMIT))
        .and(warp::body::bytes())
        .and(with)
        .map(
            |_conversation: String, _id: String, body: bytes::Bytes, s: Shared| {
                accept(&s.tx, &s.counter, &body, true)
            },
        );
    send.or(update)
        .unify()
        .recover(|_rejection: warp::Rejection| async {
            Ok::<_, std::convert::Infallible>(error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "this chat takes activities at POST /v3/conversations/{id}/activities",
            ))
        })
        .unify()
}

/// What each request's handler needs.
#[derive(Clone)]
struct Shared {
    tx: mpsc::UnboundedSender<Arrival>,
    counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

fn accept(
    tx: &mpsc::UnboundedSender<Arrival>,
    counter: &std::sync::atomic::AtomicU64,
    body: &[u8],
    update: bool,
) -> warp::reply::Response {
    let activity: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "BadArgument",
                "the body is not an activity (a JSON object)",
            )
        }
    };
    let id = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    // The chat may be closing: the bot then sees its message accepted, which it was.
    let _ = tx.send(Arrival::Activity { activity, update });
    warp::reply::with_status(
        warp::reply::json(&json!({ "id": format!("chat-activity-{id}") })),
        StatusCode::OK,
    )
    .into_response()
}

fn error(status: StatusCode, code: &str, message: &str) -> warp::reply::Response {
    warp::reply::with_status(
        warp::reply::json(&json!({"error": {"code": code, "message": message}})),
        status,
    )
    .into_response()
}

use warp::Reply as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn takes_sends_replies_and_updates_and_refuses_the_rest() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let endpoint = ConnectorEndpoint::start(0, false, tx).await.unwrap();
        let base = endpoint.service_url();
        let http = reqwest::Client::new();
        let post = |path: &str, body: &'static str| {
            http.post(format!("{base}{path}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        let r = post(
            "v3/conversations/chat-1/activities",
            r#"{"type":"message","text":"a"}"#,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        let id: Value = r.json().await.unwrap();
        assert!(id["id"].as_str().unwrap().starts_with("chat-activity-"));
        let r = post(
            "v3/conversations/chat%3A1/activities/act-9",
            r#"{"type":"message","text":"b"}"#,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        let r = http
            .put(format!("{base}v3/conversations/chat-1/activities/act-9"))
            .body(r#"{"type":"message","text":"c"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let got: Vec<(String, bool)> = (0..3)
            .map(|_| {
                let Arrival::Activity { activity, update } = rx.try_recv().unwrap() else {
                    panic!("not an activity");
                };
                (activity["text"].as_str().unwrap().to_owned(), update)
            })
            .collect();
        assert_eq!(
            got,
            [("a".into(), false), ("b".into(), false), ("c".into(), true)]
        );
        let r = post("v3/conversations/chat-1/activities", "[1,2]")
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = post("v3/conversations/chat-1/members", "{}").await.unwrap();
        assert_eq!(r.status(), 404);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "NotFound");
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_taken_port_falls_back_to_a_free_one_only_when_allowed() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let first = ConnectorEndpoint::start(0, false, tx.clone())
            .await
            .unwrap();
        let port = first.addr().port();
        let e = ConnectorEndpoint::start(port, false, tx.clone())
            .await
            .err()
            .unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        let second = ConnectorEndpoint::start(port, true, tx).await.unwrap();
        assert_ne!(second.addr().port(), port);
    }
}
