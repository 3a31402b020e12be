//! The Connector client's outbound token and serviceUrl policy, against a local token
//! endpoint and a local channel (real HTTP servers on loopback).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pricewatch::clock::ManualClock;
use pricewatch::delivery::connector::{
    Connector, ConnectorConfig, ConnectorError, ServiceUrlPolicy,
};
use pricewatch::delivery::token::{TokenClient, TokenConfig, BOT_FRAMEWORK_SCOPE};
use pricewatch::error::Chain;
use pricewatch::inbound::activity::{
    ChannelAccount, ConversationAccount, ConversationReference, OutboundActivity,
};
use pricewatch::secret::Secret;
use warp::http::StatusCode;
use warp::Filter;

use crate::fakes::{serve, FakeChannel};

/// One token request's form fields.
type Form = Vec<(String, String)>;

/// A token endpoint that counts its calls and hands out `tok-1`, `tok-2`, …
struct TokenEndpoint {
    url: String,
    forms: Arc<Mutex<Vec<Form>>>,
    status: Arc<Mutex<StatusCode>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TokenEndpoint {
    async fn start(expires_in: u64) -> TokenEndpoint {
        let forms: Arc<Mutex<Vec<Form>>> = Arc::default();
        let status = Arc::new(Mutex::new(StatusCode::OK));
        let (f, st) = (forms.clone(), status.clone());
        let route = warp::post()
            .and(warp::path!("tenant" / "oauth2" / "v2.0" / "token"))
            .and(warp::body::form())
            .map(move |form: Form| {
                let n = {
                    let mut all = f.lock().unwrap();
                    all.push(form);
                    all.len()
                };
                let status = *st.lock().unwrap();
                let body = if status == StatusCode::OK {
                    serde_json::json!({
                        "token_type": "Bearer",
                        "expires_in": expires_in,
                        "ext_expires_in": expires_in,
                        "access_token": format!("tok-{n}"),
                    })
                } else {
                    serde_json::json!({
                        "error": "invalid_client",
                        "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1",
                    })
                };
                warp::reply::with_status(warp::reply::json(&body), status)
            });
        let (url, stop) = serve(route).await;
        TokenEndpoint {
            url: format!("{url}/tenant/oauth2/v2.0/token"),
            forms,
            status,
            _stop: stop,
        }
    }

    fn calls(&self) -> usize {
        self.forms.lock().unwrap().len()
    }
}

/// Each call's `Authorization` header, as the channel received it.
fn headers(channel: &FakeChannel) -> Vec<Option<String>> {
    channel
        .received()
        .into_iter()
        .map(|r| r.authorization)
        .collect()
}

fn activity(service_url: &str) -> OutboundActivity {
    let reference = ConversationReference {
        channel_id: "msteams".into(),
        service_url: service_url.to_owned(),
        conversation: ConversationAccount {
            id: "a:1".into(),
            tenant_id: Some("tenant-1".into()),
            ..Default::default()
        },
        user: Some(ChannelAccount {
            id: "29:user".into(),
            ..Default::default()
        }),
        bot: ChannelAccount {
            id: "28:bot".into(),
            ..Default::default()
        },
        locale: None,
    };
    OutboundActivity::message(&reference, "Price drop".into())
}

fn connector(
    token: &TokenEndpoint,
    clock: Arc<ManualClock>,
    policy: ServiceUrlPolicy,
) -> (Connector, Arc<TokenClient>) {
    let tokens = Arc::new(
        TokenClient::new(
            TokenConfig {
                endpoint: token.url.clone(),
                client_id: "app-id".into(),
                client_secret: Secret::new("s3cret"),
                scope: BOT_FRAMEWORK_SCOPE.into(),
                timeout: Duration::from_secs(5),
            },
            clock,
        )
        .unwrap(),
    );
    let connector = Connector::new(
        &ConnectorConfig {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            user_agent: "test".into(),
            policy,
        },
        Some(tokens.clone()),
    )
    .unwrap();
    (connector, tokens)
}

/// Loopback is what a test channel can be; in the daemon a token implies it is refused.
fn loopback() -> ServiceUrlPolicy {
    ServiceUrlPolicy::new(&[], true)
}

#[tokio::test]
async fn one_token_serves_many_sends_and_is_refreshed_five_minutes_early() {
    let token = TokenEndpoint::start(3600).await;
    let channel = FakeChannel::start().await;
    let clock = Arc::new(ManualClock::new(1_764_000_000_000));
    let (connector, _) = connector(&token, clock.clone(), loopback());

    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..25 {
        let (c, a) = (connector.clone(), activity(&channel.url));
        sends.spawn(async move { c.send(&a).await });
    }
    while let Some(r) = sends.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(
        token.calls(),
        1,
        "25 simultaneous sends share one token request"
    );
    let form = token.forms.lock().unwrap()[0].clone();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("grant_type"), Some("client_credentials"));
    assert_eq!(get("client_id"), Some("app-id"));
    assert_eq!(get("client_secret"), Some("s3cret"));
    assert_eq!(get("scope"), Some("https://api.botframework.com/.default"));
    assert!(headers(&channel)
        .iter()
        .all(|h| h.as_deref() == Some("Bearer tok-1")));

    // Just before the refresh point (expiry less 5 minutes) the token is still used ...
    clock.advance_ms(3_300_000 - 1);
    connector.send(&activity(&channel.url)).await.unwrap();
    assert_eq!(token.calls(), 1);
    // ... and at it, a new one is fetched.
    clock.advance_ms(1);
    connector.send(&activity(&channel.url)).await.unwrap();
    assert_eq!(token.calls(), 2);
    assert_eq!(
        headers(&channel).last().unwrap().as_deref(),
        Some("Bearer tok-2")
    );
}

#[tokio::test]
async fn a_401_gets_exactly_one_fresh_token_and_one_retry() {
    let token = TokenEndpoint::start(3600).await;
    let channel = FakeChannel::start().await;
    let clock = Arc::new(ManualClock::new(1_764_000_000_000));
    let (connector, _) = connector(&token, clock, loopback());

    channel.answer_next(&[401]);
    let delivered = connector.send(&activity(&channel.url)).await.unwrap();
    assert_eq!(delivered.activity_id.as_deref(), Some("act-2"));
    assert_eq!(token.calls(), 2);
    assert_eq!(
        headers(&channel),
        [
            Some("Bearer tok-1".to_owned()),
            Some("Bearer tok-2".to_owned())
        ]
    );

    // A channel that keeps refusing gets one retry, not a loop.
    channel.answer_next(&[401, 401, 401]);
    let err = connector.send(&activity(&channel.url)).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert_eq!(headers(&channel).len(), 4);
    assert_eq!(token.calls(), 3);
}

#[tokio::test]
async fn the_token_never_goes_to_a_service_url_off_the_allowlist() {
    let token = TokenEndpoint::start(3600).await;
    let channel = FakeChannel::start().await;
    let clock = Arc::new(ManualClock::new(1_764_000_000_000));
    let hosts = vec!["*.botframework.com".to_owned()];
    let (connector, _) = connector(&token, clock, ServiceUrlPolicy::new(&hosts, false));

    let err = connector.send(&activity(&channel.url)).await.unwrap_err();
    assert!(
        matches!(&err, ConnectorError::Untrusted { reason, .. } if reason.to_string().contains("loopback")),
        "{err}"
    );
    // Plain http to an allowlisted name is refused too, before any connection.
    let err = connector
        .send(&activity("http://europe.webchat.botframework.com/"))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Untrusted { .. }), "{err}");
    assert!(headers(&channel).is_empty(), "nothing reached the channel");
    assert_eq!(token.calls(), 0, "no token was even fetched");
}

#[tokio::test]
async fn a_refused_token_request_is_a_clear_error_and_nothing_is_sent() {
    let token = TokenEndpoint::start(3600).await;
    *token.status.lock().unwrap() = StatusCode::UNAUTHORIZED;
    let channel = FakeChannel::start().await;
    let clock = Arc::new(ManualClock::new(1_764_000_000_000));
    let (connector, _) = connector(&token, clock, loopback());

    let err = connector.send(&activity(&channel.url)).await.unwrap_err();
    let text = Chain(&err).to_string();
    assert!(
        text.contains("401") && text.contains("AADSTS7000215") && !text.contains("s3cret"),
        "{text}"
    );
    assert!(headers(&channel).is_empty());
}

#[tokio::test]
async fn local_development_sends_no_token() {
    let channel = FakeChannel::start().await;
    let connector = Connector::new(
        &ConnectorConfig {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            user_agent: "test".into(),
            policy: loopback(),
        },
        None,
    )
    .unwrap();
    connector.send(&activity(&channel.url)).await.unwrap();
    assert_eq!(headers(&channel), [None]);
}

#[tokio::test]
async fn each_token_fetched_counts_once_in_the_metrics() {
    let token = TokenEndpoint::start(3600).await;
    let channel = FakeChannel::start().await;
    let clock = Arc::new(ManualClock::new(1_764_000_000_000));
    let (connector, tokens) = connector(&token, clock.clone(), loopback());
    let metrics = Arc::new(pricewatch::ops::metrics::Metrics::new());
    tokens.count_in(metrics.clone());
    let count = || {
        let text = metrics.encode().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("pricewatch_token_refreshes_total "))
            .unwrap_or_else(|| panic!("{text}"))
            .to_owned()
    };
    assert_eq!(count(), "0");
    for _ in 0..3 {
        connector.send(&activity(&channel.url)).await.unwrap();
    }
    assert_eq!(count(), "1", "the cached token is no refresh");
    clock.advance_ms(3_300_000);
    connector.send(&activity(&channel.url)).await.unwrap();
    assert_eq!(count(), "2");
}
