//! The bot's outbound OAuth token (docs/rules.md, "Modes and the bot's token"): the client-credentials grant
//! against the Bot Framework's Azure AD authority, cached and refreshed 5 minutes before it
//! expires, one refresh at a time however many sends are waiting.
//!
//! Written here rather than taken from an OAuth crate: the grant is one form POST, and
//! what matters (the early refresh on our clock, a single flight, a fresh token after the
//! Connector rejects one) is this module's policy, not the protocol.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;

use crate::clock::Clock;
use crate::ops::metrics::Metrics;
use crate::secret::Secret;
use crate::shown::Shown;

/// What every Bot Framework Connector accepts.
pub const BOT_FRAMEWORK_SCOPE: &str = "https://api.botframework.com/.default";
/// A token counts as expired this long before it does (what the SDKs do).
pub const REFRESH_EARLY: Duration = Duration::from_secs(300);

/// The token endpoint for an app registration: the `botframework.com` authority for
/// multi-tenant bots, the bot's own tenant for single-tenant ones.
pub fn default_endpoint(tenant: Option<&str>) -> String {
    let authority = tenant
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or("botframework.com");
    format!("https://login.microsoftonline.com/{authority}/oauth2/v2.0/token")
}

#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub endpoint: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: String,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot build the token client")]
    Client(#[source] reqwest::Error),
    #[error("the token endpoint answered {status}: {detail}")]
    Refused { status: u16, detail: String },
    /// Without the URL: the request's form carries the app password.
    #[error("cannot reach the token endpoint")]
    Transport(#[source] reqwest::Error),
    #[error("the token endpoint's answer is not a token: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    /// Seconds; Azure AD v1 endpoints send it as a string.
    expires_in: NumberOrString,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(u64),
    Text(String),
}

#[derive(Deserialize)]
struct AadError {
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Clone)]
struct Cached {
    token: Arc<str>,
    /// When a send must stop using it: its expiry less [`REFRESH_EARLY`].
    refresh_at_ms: u64,
}

/// Gets and caches the bot's token. Shared by every send (wrap it in an `Arc`).
pub struct TokenClient {
    http: reqwest::Client,
    config: TokenConfig,
    clock: Arc<dyn Clock>,
    cached: RwLock<Option<Cached>>,
    /// Held while a token is being fetched: the sends that find no valid token queue here
    /// and take the one the first of them fetched.
    refreshing: tokio::sync::Mutex<()>,
    /// Counts the tokens fetched (set by the daemon).
    metrics: std::sync::OnceLock<Arc<Metrics>>,
}

impl std::fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenClient")
            .field("endpoint", &self.config.endpoint)
            .field("client_id", &self.config.client_id)
            .finish()
    }
}

impl TokenClient {
    pub fn new(config: TokenConfig, clock: Arc<dyn Clock>) -> Result<Self, TokenError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            // The request carries the app password: no proxy, no redirect elsewhere.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(TokenError::Client)?;
        Ok(TokenClient {
            http,
            config,
            clock,
            cached: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            metrics: std::sync::OnceLock::new(),
        })
    }

    /// Counts the tokens fetched in `metrics` from now on (once; later calls are ignored).
    pub fn count_in(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// A valid token: the cached one, or a new one when it is due for refresh.
    pub async fn token(&self) -> Result<Arc<str>, TokenError> {
        if let Some(token) = self.valid(None) {
            return Ok(token);
        }
        let _flight = self.refreshing.lock().await;
        // Another send may have refreshed it while this one waited.
        if let Some(token) = self.valid(None) {
            return Ok(token);
        }
        self.fetch().await
    }

    /// A token other than `rejected`, which the Connector answered 401 to: the cached one
    /// if another send has already replaced it, else a new one.
    pub async fn replace(&self, rejected: &str) -> Result<Arc<str>, TokenError> {
        let _flight = self.refreshing.lock().await;
        if let Some(token) = self.valid(Some(rejected)) {
            return Ok(token);
        }
        self.fetch().await
    }

    fn valid(&self, not: Option<&str>) -> Option<Arc<str>> {
        let now = self.clock.now_ms();
        let cached = self.cached.read().unwrap_or_else(|p| p.into_inner());
        cached
            .as_ref()
            .filter(|c| now < c.refresh_at_ms && not != Some(&*c.token))
            .map(|c| Arc::clone(&c.token))
    }

    async fn fetch(&self) -> Result<Arc<str>, TokenError> {
        let asked_at = self.clock.now_ms();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.config.client_id.as_str()),
            ("client_secret", self.config.client_secret.expose()),
            ("scope", self.config.scope.as_str()),
        ];
        let response = self
            .http
            .post(&self.config.endpoint)
            .form(&form)
            .send()
            .await
            .map_err(|e| TokenError::Transport(e.without_url()))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| TokenError::Transport(e.without_url()))?;
        if !(200..300).contains(&status) {
            return Err(TokenError::Refused {
                status,
                detail: aad_detail(&body),
            });
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let expires_in = match parsed.expires_in {
            NumberOrString::Number(n) => n,
            NumberOrString::Text(t) => t
                .trim()
                .parse()
                .map_err(|_| TokenError::Malformed(format!("expires_in {t:?}")))?,
        };
        if parsed.access_token.is_empty() {
            return Err(TokenError::Malformed("empty access_token".to_owned()));
        }
        // Counted from when it was asked for, so a slow answer errs on the early side.
        let refresh_at_ms = asked_at
            + expires_in
                .saturating_mul(1000)
                .saturating_sub(REFRESH_EARLY.as_millis() as u64);
        let token: Arc<str> = Arc::from(parsed.access_token);
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) = Some(Cached {
            token: Arc::clone(&token),
            refresh_at_ms,
        });
        if let Some(m) = self.metrics.get() {
            m.token_refreshed();
        }
        tracing::info!(
            endpoint = %Shown::id(&self.config.endpoint),
            expires_in,
            "outbound token obtained"
        );
        Ok(token)
    }
}

/// Azure AD's `error: error_description` (never the request, which holds the secret).
fn aad_detail(body: &[u8]) -> String {
    match serde_json::from_slice::<AadError>(body) {
        Ok(AadError {
            error: Some(e),
            error_description,
        }) => {
            let first_line = error_description
                .as_deref()
                .and_then(|d| d.lines().next())
                .unwrap_or("");
            format!("{e}: {first_line}")
                .trim_end_matches([':', ' '])
                .to_owned()
        }
        _ => String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_per_tenant_mode() {
        assert_eq!(
            default_endpoint(None),
            "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token"
        );
        assert_eq!(
            default_endpoint(Some(" 11111111-2222-3333-4444-555555555555 ")),
            "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/oauth2/v2.0/token"
        );
        assert_eq!(default_endpoint(Some("")), default_endpoint(None));
    }

    #[test]
    fn azure_errors_are_summarised_without_the_request() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x"}"#;
        assert_eq!(
            aad_detail(body),
            "invalid_client: AADSTS7000215: Invalid client secret provided."
        );
        assert_eq!(aad_detail(b"  busy "), "busy");
    }
}
