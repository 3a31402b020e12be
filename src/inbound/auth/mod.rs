//! Inbound authentication: the one place that decides whether an activity may be believed.
//!
//! The HTTP layer calls [`InboundAuth::verify`] after reading the JSON and before the
//! activity is validated or the bot sees it, so nothing (the conversation reference
//! above all) is stored from an activity that failed it, and a missing `channelId` or
//! `serviceUrl` is a refusal here, not a 400 that tells an unauthenticated caller what
//! to fix. Local development accepts everything, as the SDKs do without an app id; with
//! an app id every activity needs a Bot Framework token (`token` holds the rules,
//! `keys` the signing keys).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::inbound::activity::Activity;

pub mod keys;
pub mod token;

use keys::{KeyCache, KeyStatus, Missing};
use token::{ActivityFacts, Lifetime, Route, RouteSettings};

/// `[auth]`: how tokens on inbound activities are checked (production mode only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Tolerance on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub clock_skew: Duration,
    /// Accept tokens the Bot Framework Emulator gets from Azure AD.
    pub emulator_tokens: bool,
    /// How often the signing keys are fetched again.
    #[serde(with = "humantime_serde")]
    pub key_refresh: Duration,
    /// OpenID metadata of the channel token issuer.
    pub openid_metadata_url: String,
    /// OpenID metadata for Emulator tokens.
    pub emulator_openid_metadata_url: String,
}

pub const DEFAULT_OPENID_METADATA_URL: &str =
    "https://login.botframework.com/v1/.well-known/openidconfiguration";
pub const DEFAULT_EMULATOR_OPENID_METADATA_URL: &str =
    "https://login.microsoftonline.com/botframework.com/v2.0/.well-known/openid-configuration";

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            clock_skew: Duration::from_secs(300),
            emulator_tokens: false,
            key_refresh: Duration::from_secs(24 * 3600),
            openid_metadata_url: DEFAULT_OPENID_METADATA_URL.to_owned(),
            emulator_openid_metadata_url: DEFAULT_EMULATOR_OPENID_METADATA_URL.to_owned(),
        }
    }
}

/// How inbound activities are authenticated.
#[derive(Clone)]
pub enum InboundAuth {
    /// No app id configured: authentication is off, as in the SDKs and the Emulator.
    /// Only safe because the daemon then listens on loopback alone.
    LocalDevelopment,
    /// An app id is configured: every activity carries a Bot Framework token.
    BotFramework(Arc<BotFrameworkAuth>),
}

/// Why an activity was not believed. Answered with 401, as both SDKs do; the message
/// names the class of the problem and never echoes the token or its claims.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no Authorization header")]
    MissingToken,
    #[error("the Authorization header is not `Bearer <token>`")]
    MalformedHeader,
    #[error("the token is not a signed JWT")]
    MalformedToken,
    #[error("the token's algorithm is not RS256, RS384 or RS512")]
    DisallowedAlgorithm,
    #[error("the token's header names no key (kid)")]
    MissingKeyId,
    #[error("the token's issuer is not trusted")]
    UntrustedIssuer,
    #[error("Emulator tokens are not accepted (auth.emulator_tokens is off)")]
    EmulatorTokensDisabled,
    #[error("skill tokens are not accepted")]
    SkillToken,
    #[error("the token is signed by a key the issuer does not publish")]
    UnknownKey,
    #[error("the issuer's signing keys are not available yet")]
    KeysUnavailable,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has no `{0}` claim")]
    MissingClaim(&'static str),
    #[error("the token's `{0}` claim has the wrong form")]
    InvalidClaim(&'static str),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is not for this bot (audience)")]
    WrongAudience,
    #[error("the token is not for this bot (app id)")]
    WrongAppId,
    #[error("the signing key does not endorse the activity's channel")]
    ChannelNotEndorsed,
    #[error("the token's serviceurl claim differs from the activity's serviceUrl")]
    ServiceUrlMismatch,
    #[error("the activity has no serviceUrl")]
    NoServiceUrl,
}

impl AuthError {
    /// The reason class, for the `ErrorResponse` code and the log.
    pub fn class(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "MissingToken",
            AuthError::MalformedHeader => "MalformedAuthorization",
            AuthError::MalformedToken => "MalformedToken",
            AuthError::DisallowedAlgorithm => "DisallowedAlgorithm",
            AuthError::MissingKeyId => "MissingKeyId",
            AuthError::UntrustedIssuer => "UntrustedIssuer",
            AuthError::EmulatorTokensDisabled => "EmulatorTokensDisabled",
            AuthError::SkillToken => "SkillTokenRefused",
            AuthError::UnknownKey => "UnknownSigningKey",
            AuthError::KeysUnavailable => "SigningKeysUnavailable",
            AuthError::BadSignature => "InvalidSignature",
            AuthError::MissingClaim(_) => "MissingClaim",
            AuthError::InvalidClaim(_) => "InvalidClaim",
            AuthError::Expired => "TokenExpired",
            AuthError::NotYetValid => "TokenNotYetValid",
            AuthError::WrongAudience => "WrongAudience",
            AuthError::WrongAppId => "WrongAppId",
            AuthError::ChannelNotEndorsed => "ChannelNotEndorsed",
            AuthError::ServiceUrlMismatch => "ServiceUrlMismatch",
            AuthError::NoServiceUrl => "MissingServiceUrl",
        }
    }
}

/// Who sent the activity, once verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Local development: unauthenticated.
    Anonymous,
    /// A Bot Framework channel, through Azure Bot Service.
    Channel,
    /// The Bot Framework Emulator, with an Azure AD token for this bot.
    Emulator,
}

impl InboundAuth {
    /// Checks the `Authorization` header against the activity.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        activity: &Activity,
    ) -> Result<Caller, AuthError> {
        match self {
            // The SDKs ignore any header when auth is disabled, so a token the Emulator
            // sends anyway must not be refused either.
            InboundAuth::LocalDevelopment => Ok(Caller::Anonymous),
            InboundAuth::BotFramework(auth) => auth.verify(authorization, activity).await,
        }
    }

    /// The signing keys' state, `None` in local development.
    pub fn key_status(&self) -> Option<KeyStatus> {
        match self {
            InboundAuth::LocalDevelopment => None,
            InboundAuth::BotFramework(auth) => Some(auth.channel_keys.status()),
        }
    }
}

/// What production mode checks tokens with.
pub struct BotFrameworkAuth {
    app_id: String,
    skew_seconds: i64,
    routing: RouteSettings,
    channel_keys: Arc<KeyCache>,
    /// `None` when Emulator tokens are off.
    emulator_keys: Option<Arc<KeyCache>>,
    clock: Arc<dyn Clock>,
    verified: Mutex<HashMap<String, Verified>>,
}

/// A token whose signature and activity-independent claims were checked. Channels send
/// the same token with every activity for as long as it lives (about an hour), so a
/// turn need not pay for an RSA verification each time: what depends on the time or on
/// the activity is checked again on every use, and the entry is only used while the key
/// set it was verified under is unchanged.
#[derive(Clone)]
struct Verified {
    route: Route,
    lifetime: Lifetime,
    service_url: Option<String>,
    endorsements: Arc<[String]>,
    generation: u64,
}

/// Bound on remembered tokens; past it, expired ones are dropped, then all.
const MAX_VERIFIED: usize = 4096;

/// Settings of [`BotFrameworkAuth`].
pub struct BotFrameworkSettings {
    pub app_id: String,
    /// The bot's tenant when it is single-tenant.
    pub own_tenant: Option<String>,
    pub config: AuthConfig,
}

impl BotFrameworkAuth {
    pub fn new(
        settings: BotFrameworkSettings,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> BotFrameworkAuth {
        let config = &settings.config;
        let channel_keys = Arc::new(KeyCache::new(
            "channel",
            &config.openid_metadata_url,
            http.clone(),
            clock.clone(),
        ));
        let emulator_keys = config.emulator_tokens.then(|| {
            Arc::new(KeyCache::new(
                "Emulator",
                &config.emulator_openid_metadata_url,
                http,
                clock.clone(),
            ))
        });
        BotFrameworkAuth {
            app_id: settings.app_id,
            skew_seconds: config.clock_skew.as_secs().min(i64::MAX as u64) as i64,
            routing: RouteSettings {
                emulator_tokens: config.emulator_tokens,
                own_tenant: settings.own_tenant,
            },
            channel_keys,
            emulator_keys,
            clock,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The key caches, to fetch at start-up and keep fresh.
    pub fn key_caches(&self) -> Vec<Arc<KeyCache>> {
        std::iter::once(self.channel_keys.clone())
            .chain(self.emulator_keys.clone())
            .collect()
    }

    fn keys(&self, route: Route) -> Result<&KeyCache, AuthError> {
        match route {
            Route::Channel => Ok(&self.channel_keys),
            Route::Emulator => self
                .emulator_keys
                .as_deref()
                .ok_or(AuthError::EmulatorTokensDisabled),
        }
    }

    pub async fn verify(
        &self,
        authorization: Option<&str>,
        activity: &Activity,
    ) -> Result<Caller, AuthError> {
        let token = token::bearer(authorization)?;
        let facts = ActivityFacts {
            channel_id: activity.channel_id.as_deref(),
            service_url: activity.service_url.as_deref(),
        };
        let now = (self.clock.now_ms() / 1000) as i64;
        let verified = match self.remembered(token) {
            Some(v) => v,
            None => self.verify_token(token).await?,
        };
        token::check_lifetime(verified.lifetime, now, self.skew_seconds)?;
        token::check_activity(
            facts,
            verified.service_url.as_deref(),
            &verified.endorsements,
        )?;
        Ok(match verified.route {
            Route::Channel => Caller::Channel,
            Route::Emulator => Caller::Emulator,
        })
    }

    fn remembered(&self, token: &str) -> Option<Verified> {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        let v = verified.get(token)?;
        let current = self.keys(v.route).ok()?.generation();
        (v.generation == current).then(|| v.clone())
    }

    /// Everything about the token that does not depend on the time or the activity.
    async fn verify_token(&self, token: &str) -> Result<Verified, AuthError> {
        let unverified = token::read(token)?;
        let route = token::route(&unverified.claims, &self.routing)?;
        let found =
            self.keys(route)?
                .key(&unverified.kid)
                .await
                .map_err(|missing| match missing {
                    Missing::Unknown => AuthError::UnknownKey,
                    Missing::NoKeys => AuthError::KeysUnavailable,
                })?;
        let good = jsonwebtoken::crypto::verify(
            unverified.signature,
            unverified.signed.as_bytes(),
            &found.key.decoding,
            unverified.alg,
        )
        .unwrap_or(false);
        if !good {
            return Err(AuthError::BadSignature);
        }
        let claims = &unverified.claims;
        let lifetime = token::lifetime(claims)?;
        token::check_recipient(route, claims, &self.app_id)?;
        let verified = Verified {
            route,
            lifetime,
            service_url: token::service_url_claim(route, claims)?,
            endorsements: found.key.endorsements.clone().into(),
            generation: found.generation,
        };
        self.remember(token, &verified);
        Ok(verified)
    }

    fn remember(&self, token: &str, verified: &Verified) {
        let now = (self.clock.now_ms() / 1000) as i64;
        let mut map = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_VERIFIED {
            map.retain(|_, v| v.lifetime.expires.saturating_add(self.skew_seconds) >= now);
            if map.len() >= MAX_VERIFIED {
                map.clear();
            }
        }
        map.insert(token.to_owned(), verified.clone());
    }
}
