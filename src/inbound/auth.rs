//! Inbound authentication: the one place that decides whether an activity may be believed.
//!
//! The HTTP layer calls [`InboundAuth::verify`] after parsing and before the bot sees the
//! activity, so nothing (the conversation reference above all) is stored from an activity
//! that failed it. Today the only mode is local development, where the Bot Framework SDKs
//! accept everything and ignore the header; Bot Framework token validation (issuer,
//! audience, signature, `serviceurl` claim) is added here as a second variant, and the
//! daemon refuses to start with an app id until then (see `app::check_mode`).

use crate::inbound::activity::ValidActivity;

/// How inbound activities are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundAuth {
    /// No app id configured: authentication is off, as in the SDKs and the Emulator.
    /// Only safe because the daemon then listens on loopback alone.
    LocalDevelopment,
}

/// Why an activity was not believed. Answered with 401, as both SDKs do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no Authorization header")]
    MissingToken,
}

/// Who sent the activity, once verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Local development: unauthenticated.
    Anonymous,
}

impl InboundAuth {
    /// Checks the `Authorization` header against the activity.
    pub fn verify(
        &self,
        _authorization: Option<&str>,
        _activity: &ValidActivity,
    ) -> Result<Caller, AuthError> {
        match self {
            // The SDKs ignore any header when auth is disabled, so a token the Emulator
            // sends anyway must not be refused either.
            InboundAuth::LocalDevelopment => Ok(Caller::Anonymous),
        }
    }
}
