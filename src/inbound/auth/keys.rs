//! The signing keys of one token issuer: its OpenID metadata names a JWKS, which is
//! fetched at start-up, cached, and refreshed on a period and when a token names a key
//! the cache does not hold (at most once a minute, however many tokens do so). A failed
//! refresh keeps the cached keys serving.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::error::Chain;

/// A token naming an unknown key may cause a fetch this often at most, so that a flood
/// of made-up `kid`s cannot turn the daemon into a load generator against the key
/// server (the SDKs allow one an hour; a minute lets a rotation through sooner).
pub const UNKNOWN_KEY_REFRESH_GAP: Duration = Duration::from_secs(60);

/// Larger metadata or key documents are refused (Microsoft's are a few KB).
const MAX_DOCUMENT: usize = 1024 * 1024;

/// First retry after a failed start-up fetch; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// Retry period after a failed periodic refresh, while the cached keys serve.
const STALE_RETRY: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot fetch {0}")]
    Fetch(String, #[source] reqwest::Error),
    #[error("{0} answered HTTP {1}")]
    Status(String, u16),
    #[error("{0} is larger than {MAX_DOCUMENT} bytes")]
    TooLarge(String),
    #[error("{0} is not the expected JSON")]
    Json(String, #[source] serde_json::Error),
    #[error("the OpenID metadata's jwks_uri {0:?} is not an https URL")]
    JwksUri(String),
    #[error("the key set at {0} holds no usable RSA key")]
    NoUsableKey(String),
}

/// One verification key.
pub struct SigningKey {
    pub decoding: DecodingKey,
    /// Channels this key may sign for; empty means any.
    pub endorsements: Vec<String>,
    /// The JWK's own fields, to tell a changed key from the same one refetched.
    material: (String, String),
}

/// What a key lookup found.
pub struct Found {
    pub key: Arc<SigningKey>,
    /// Changes whenever the key set's content changes, so a token verified under an
    /// earlier set is checked again.
    pub generation: u64,
}

/// Why no key was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// The set is known and this `kid` is not in it.
    Unknown,
    /// No key set has been fetched yet.
    NoKeys,
}

/// What an operator (or `/readyz`) can ask about a key cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    pub keys: usize,
    /// When the set now serving was fetched (Unix ms), if one was.
    pub fetched_at_ms: Option<u64>,
    /// Why the last fetch failed, when it did.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct State {
    keys: HashMap<String, Arc<SigningKey>>,
    generation: u64,
    fetched_at_ms: Option<u64>,
    last_attempt_ms: Option<u64>,
    last_error: Option<String>,
}

pub struct KeyCache {
    /// "channel" or "Emulator", for the logs.
    name: &'static str,
    metadata_url: String,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    state: RwLock<State>,
    /// One fetch at a time; callers that waited find the result in `state`.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Deserialize)]
struct Metadata {
    jwks_uri: String,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RsaJwk {
    kty: String,
    kid: String,
    n: String,
    e: String,
    #[serde(default)]
    endorsements: Vec<String>,
}

impl KeyCache {
    pub fn new(
        name: &'static str,
        metadata_url: &str,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> KeyCache {
        KeyCache {
            name,
            metadata_url: metadata_url.to_owned(),
            http,
            clock,
            state: RwLock::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The key named `kid`; an unknown one triggers a refresh unless one was attempted
    /// within [`UNKNOWN_KEY_REFRESH_GAP`].
    pub async fn key(&self, kid: &str) -> Result<Found, Missing> {
        if let Some(found) = self.lookup(kid) {
            return Ok(found);
        }
        let _one_fetch = self.fetching.lock().await;
        // Another caller may have refreshed while this one waited.
        if let Some(found) = self.lookup(kid) {
            return Ok(found);
        }
        let now = self.clock.now_ms();
        let recent = self
            .read()
            .last_attempt_ms
            .is_some_and(|at| now.saturating_sub(at) < UNKNOWN_KEY_REFRESH_GAP.as_millis() as u64);
        if !recent {
            tracing::info!(
                issuer = self.name,
                "a token names an unknown key; refreshing the key set"
            );
            let _ = self.fetch_and_install().await;
            if let Some(found) = self.lookup(kid) {
                return Ok(found);
            }
        }
        if self.read().keys.is_empty() {
            Err(Missing::NoKeys)
        } else {
            Err(Missing::Unknown)
        }
    }

    fn lookup(&self, kid: &str) -> Option<Found> {
        let state = self.read();
        state.keys.get(kid).map(|key| Found {
            key: key.clone(),
            generation: state.generation,
        })
    }

    /// The current generation, to check a cached verification against.
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    pub fn status(&self) -> KeyStatus {
        let state = self.read();
        KeyStatus {
            keys: state.keys.len(),
            fetched_at_ms: state.fetched_at_ms,
            last_error: state.last_error.clone(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: still usable.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Fetches the key set now and installs it; on failure the cached keys stay.
    pub async fn refresh(&self) -> Result<usize, KeyError> {
        let _one_fetch = self.fetching.lock().await;
        self.fetch_and_install().await
    }

    async fn fetch_and_install(&self) -> Result<usize, KeyError> {
        let now = self.clock.now_ms();
        self.write().last_attempt_ms = Some(now);
        let fetched = self.fetch().await;
        let mut state = self.write();
        match fetched {
            Ok(keys) => {
                let n = keys.len();
                if state.last_error.take().is_some() && !state.keys.is_empty() {
                    tracing::info!(issuer = self.name, keys = n, "signing keys fetched again");
                } else {
                    tracing::info!(issuer = self.name, keys = n, "signing keys fetched");
                }
                if !same_keys(&state.keys, &keys) {
                    state.generation += 1;
                    state.keys = keys;
                }
                state.fetched_at_ms = Some(now);
                Ok(n)
            }
            Err(e) => {
                let message = Chain(&e).to_string();
                if state.keys.is_empty() {
                    // Every attempt is logged (they are spaced out by the retry
                    // schedule): until keys arrive every token is refused.
                    tracing::warn!(
                        issuer = self.name,
                        error = %message,
                        "no signing keys yet, so every token is refused until they arrive"
                    );
                } else if state.last_error.is_none() {
                    tracing::warn!(
                        issuer = self.name,
                        error = %message,
                        cached = state.keys.len(),
                        "refreshing the signing keys failed; the cached keys keep serving"
                    );
                }
                state.last_error = Some(message);
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<SigningKey>>, KeyError> {
        let metadata: Metadata = self.get_json(&self.metadata_url).await?;
        let allowed =
            url::Url::parse(&metadata.jwks_uri).is_ok_and(|u| super::token::is_allowed_key_url(&u));
        if !allowed {
            return Err(KeyError::JwksUri(metadata.jwks_uri));
        }
        let jwks: Jwks = self.get_json(&metadata.jwks_uri).await?;
        let mut keys = HashMap::new();
        for value in jwks.keys {
            // Keys that are not RSA, or lack `n`/`e`, are skipped, as in the SDKs.
            let Ok(jwk) = serde_json::from_value::<RsaJwk>(value) else {
                continue;
            };
            if jwk.kty != "RSA" {
                continue;
            }
            let Ok(decoding) = DecodingKey::from_rsa_components(&jwk.n, &jwk.e) else {
                tracing::debug!(issuer = self.name, "a JWK with unreadable n/e was skipped");
                continue;
            };
            keys.insert(
                jwk.kid,
                Arc::new(SigningKey {
                    decoding,
                    endorsements: jwk.endorsements,
                    material: (jwk.n, jwk.e),
                }),
            );
        }
        if keys.is_empty() {
            return Err(KeyError::NoUsableKey(metadata.jwks_uri));
        }
        Ok(keys)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, KeyError> {
        let fetch = |e| KeyError::Fetch(url.to_owned(), e);
        let mut response = self.http.get(url).send().await.map_err(fetch)?;
        let status = response.status();
        if !status.is_success() {
            return Err(KeyError::Status(url.to_owned(), status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT as u64)
        {
            return Err(KeyError::TooLarge(url.to_owned()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch)? {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(KeyError::TooLarge(url.to_owned()));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| KeyError::Json(url.to_owned(), e))
    }

    /// Keeps the cache fresh until cancelled: every `refresh_every` once keys are held;
    /// with backoff from one second to a minute while none are; and every five minutes
    /// (or `refresh_every`, if shorter) after a failed refresh.
    pub async fn run(self: Arc<Self>, refresh_every: Duration, cancel: CancellationToken) {
        let mut retry = FIRST_RETRY;
        loop {
            let wait = match self.status() {
                KeyStatus {
                    keys: 0,
                    last_error: Some(_),
                    ..
                } => {
                    let wait = retry;
                    retry = (retry * 2).min(MAX_RETRY);
                    wait
                }
                KeyStatus {
                    last_error: Some(_),
                    ..
                } => STALE_RETRY.min(refresh_every),
                _ => {
                    retry = FIRST_RETRY;
                    refresh_every
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let _ = self.refresh().await;
        }
    }
}

fn same_keys(a: &HashMap<String, Arc<SigningKey>>, b: &HashMap<String, Arc<SigningKey>>) -> bool {
    a.len() == b.len()
        && a.iter().all(|(kid, key)| {
            b.get(kid).is_some_and(|other| {
                other.material == key.material && other.endorsements == key.endorsements
            })
        })
}

/// The client that fetches key documents: short timeouts, and redirects followed only
/// to addresses a key document may come from.
pub fn http_client(user_agent: &str) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(user_agent)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= 3 {
                attempt.error("too many redirects")
            } else if super::token::is_allowed_key_url(attempt.url()) {
                attempt.follow()
            } else {
                attempt.error("redirect to an address that is not https")
            }
        }))
        .build()
}
