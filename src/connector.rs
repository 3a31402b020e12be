//! The adapter: the only module that talks to channels.
//!
//! It posts activities to a conversation's Connector (`serviceUrl`) as the Bot Framework
//! SDKs do: `POST {serviceUrl}/v3/conversations/{id}/activities[/{replyToId}]`, with every
//! path segment percent-encoded. Outbound tokens, per-channel rate limits and retries arrive
//! here later; callers already go through [`Connector::send`] only, so those land without
//! touching them.

use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

use crate::activity::OutboundActivity;

/// Path segments are encoded like JavaScript's `encodeURIComponent` (what the JS SDK's
/// client does) so Teams ids (`19:x@thread.skype;messageid=1`) and Emulator ids
/// (`{uuid}|livechat`) reach the channel intact.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// How the Connector client behaves.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// Total time for one call, connection included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub user_agent: String,
}

/// What the channel answered to a successful send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub status: u16,
    /// The channel's id for the new activity, when it gave one.
    pub activity_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("invalid serviceUrl {url:?}: {reason}")]
    ServiceUrl { url: String, reason: String },
    #[error("the channel answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the channel did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the channel: {0}")]
    Transport(String),
}

impl ConnectorError {
    /// The HTTP status the channel gave, if it got that far.
    pub fn status(&self) -> Option<u16> {
        match self {
            ConnectorError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct ResourceResponse {
    id: Option<String>,
}

/// The Connector client. Cheap to clone: one pooled HTTP client is shared by all clones.
#[derive(Debug, Clone)]
pub struct Connector {
    client: reqwest::Client,
    timeout: Duration,
}

impl Connector {
    pub fn new(config: &ConnectorConfig) -> Result<Self, ConnectorError> {
        let client = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            // A proxy would see the conversation content and, later, the bearer token.
            .no_proxy()
            // A redirect could carry the request (and later the token) to another host.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| ConnectorError::Client(e.to_string()))?;
        Ok(Connector {
            client,
            timeout: config.timeout,
        })
    }

    /// Sends `activity` to its conversation: the reply endpoint when it has a `replyToId`,
    /// the send endpoint otherwise (as the SDKs choose).
    pub async fn send(&self, activity: &OutboundActivity) -> Result<Delivered, ConnectorError> {
        let url = activity_url(
            &activity.service_url,
            &activity.conversation.id,
            activity.reply_to_id.as_deref(),
        )?;
        let response = self
            .client
            .post(url)
            .json(activity)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        if !(200..300).contains(&status) {
            return Err(ConnectorError::Status {
                status,
                body: excerpt(&body),
            });
        }
        let activity_id = serde_json::from_slice::<ResourceResponse>(&body)
            .ok()
            .and_then(|r| r.id);
        Ok(Delivered {
            status,
            activity_id,
        })
    }

    fn transport_error(&self, e: reqwest::Error) -> ConnectorError {
        if e.is_timeout() {
            ConnectorError::Timeout(self.timeout)
        } else if e.is_builder() {
            ConnectorError::ServiceUrl {
                url: e.url().map(|u| u.to_string()).unwrap_or_default(),
                reason: error_chain(&e),
            }
        } else {
            ConnectorError::Transport(error_chain(&e))
        }
    }
}

/// `{serviceUrl}/v3/conversations/{id}/activities[/{replyToId}]`, joined without doubling
/// the slash that serviceUrls usually end with.
///
/// Built as text and parsed once, by the HTTP client: this runs on every reply, and the
/// serviceUrl was already parsed when its activity was accepted.
pub fn activity_url(
    service_url: &str,
    conversation_id: &str,
    reply_to_id: Option<&str>,
) -> Result<String, ConnectorError> {
    let has_scheme = |scheme: &str| {
        service_url
            .get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
    };
    if !(has_scheme("http://") || has_scheme("https://")) {
        return Err(ConnectorError::ServiceUrl {
            url: service_url.to_owned(),
            reason: "not an http(s) URL".to_owned(),
        });
    }
    let mut text = String::with_capacity(service_url.len() + conversation_id.len() + 64);
    text.push_str(service_url.trim_end_matches('/'));
    text.push_str("/v3/conversations/");
    text.extend(utf8_percent_encode(conversation_id, SEGMENT));
    text.push_str("/activities");
    if let Some(id) = reply_to_id {
        text.push('/');
        text.extend(utf8_percent_encode(id, SEGMENT));
    }
    Ok(text)
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
    text.trim().to_owned()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teams_and_emulator_ids_are_percent_encoded() {
        let u = activity_url(
            "https://smba.trafficmanager.net/teams/",
            "19:abc@thread.skype;messageid=1",
            Some("1|2"),
        )
        .unwrap();
        assert_eq!(
            u,
            "https://smba.trafficmanager.net/teams/v3/conversations/19%3Aabc%40thread.skype%3Bmessageid%3D1/activities/1%7C2"
        );
        let u = activity_url("http://localhost:5000", "a b/c?d#e", None).unwrap();
        assert_eq!(
            u,
            "http://localhost:5000/v3/conversations/a%20b%2Fc%3Fd%23e/activities"
        );
    }

    #[test]
    fn non_http_service_urls_are_refused() {
        assert!(activity_url("ftp://x/", "c", None).is_err());
        assert!(activity_url("not a url", "c", None).is_err());
        assert!(activity_url("mailto:a@b", "c", None).is_err());
        assert!(activity_url("HTTPS://x/", "c", None).is_ok());
    }
}
