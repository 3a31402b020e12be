//! The adapter: the only module that talks to channels.
//!
//! It posts activities to a conversation's Connector (`serviceUrl`) as the Bot Framework
//! SDKs do: `POST {serviceUrl}/v3/conversations/{id}/activities[/{replyToId}]`, with every
//! path segment percent-encoded. With an app id it signs each call with the bot's token
//! ([`crate::delivery::token`]), and only for a `serviceUrl` the [`ServiceUrlPolicy`] trusts: the
//! token is a password, so it goes to the channel hosts of the allowlist and nowhere else.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

use crate::delivery::token::{TokenClient, TokenError};
use crate::error::Chain;
use crate::inbound::activity::OutboundActivity;

/// The channel hosts a `serviceUrl` may name by default: the Bot Framework's (public and
/// US government clouds) and Teams' (public, GCC, GCC High, DoD).
pub const DEFAULT_SERVICE_URL_HOSTS: &[&str] = &[
    "*.botframework.com",
    "*.botframework.us",
    "*.botframework.azure.us",
    "smba.trafficmanager.net",
    "smba.infra.gcc.teams.microsoft.com",
    "smba.infra.gov.teams.microsoft.us",
    "smba.infra.dod.teams.microsoft.us",
];

/// Which `serviceUrl`s pricewatch sends to (docs/rules.md, "Modes and the bot's token"):
/// https on an allowlisted host; loopback (any scheme) only in local-development mode,
/// where no token is sent.
#[derive(Debug, Clone)]
pub struct ServiceUrlPolicy {
    /// Exact host names, or `*.suffix` for any name under `suffix`.
    hosts: Vec<String>,
    allow_loopback: bool,
}

impl ServiceUrlPolicy {
    pub fn new(hosts: &[String], allow_loopback: bool) -> Self {
        ServiceUrlPolicy {
            hosts: hosts
                .iter()
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            allow_loopback,
        }
    }

    /// `Err` says why the URL is refused.
    pub fn check(&self, service_url: &str) -> Result<(), Refusal> {
        let url = url::Url::parse(service_url).map_err(Refusal::NotAUrl)?;
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).to_string(),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).to_string(),
            None => return Err(Refusal::NoHost),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Credentials);
        }
        if is_loopback(&host) {
            // An operator may list a loopback address by name (a relay on the same
            // machine); a `*.` pattern never matches one.
            return if self.allow_loopback || self.hosts.contains(&host) {
                Ok(())
            } else {
                Err(Refusal::Loopback(host))
            };
        }
        if url.scheme() != "https" {
            return Err(Refusal::NotHttps(url.scheme().to_owned()));
        }
        let allowed = self
            .hosts
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(suffix) => host
                    .strip_suffix(suffix)
                    .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
                None => *pattern == host,
            });
        if allowed {
            Ok(())
        } else {
            Err(Refusal::NotAllowed(host))
        }
    }
}

/// Why a `serviceUrl` gets nothing from pricewatch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a URL ({0})")]
    NotAUrl(url::ParseError),
    #[error("it has no host")]
    NoHost,
    #[error("it carries credentials")]
    Credentials,
    #[error("{0} is loopback, allowed only in local-development mode")]
    Loopback(String),
    #[error("{0} is not https")]
    NotHttps(String),
    #[error("{0} is not on bot.service_url_hosts")]
    NotAllowed(String),
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

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
    pub policy: ServiceUrlPolicy,
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
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("invalid serviceUrl {url:?}: {reason}")]
    ServiceUrl { url: String, reason: String },
    #[error("refusing to send to serviceUrl {url:?}")]
    Untrusted {
        url: String,
        #[source]
        reason: Refusal,
    },
    #[error("cannot get the bot's token")]
    Token(#[from] TokenError),
    #[error("the channel answered {status}: {body}")]
    Status {
        status: u16,
        body: String,
        /// The channel's `Retry-After` (seconds or an HTTP date).
        retry_after: Option<Duration>,
    },
    #[error("the channel did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the channel")]
    Transport(#[source] reqwest::Error),
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

/// One HTTP exchange with the channel.
struct Answer {
    status: u16,
    body: bytes::Bytes,
    retry_after: Option<Duration>,
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
    policy: ServiceUrlPolicy,
    /// `None` in local-development mode: calls go unsigned.
    token: Option<Arc<TokenClient>>,
}

impl Connector {
    pub fn new(
        config: &ConnectorConfig,
        token: Option<Arc<TokenClient>>,
    ) -> Result<Self, ConnectorError> {
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
            .map_err(ConnectorError::Client)?;
        Ok(Connector {
            client,
            timeout: config.timeout,
            policy: config.policy.clone(),
            token,
        })
    }

    /// Sends `activity` to its conversation: the reply endpoint when it has a `replyToId`,
    /// the send endpoint otherwise (as the SDKs choose).
    pub async fn send(&self, activity: &OutboundActivity) -> Result<Delivered, ConnectorError> {
        self.policy
            .check(&activity.service_url)
            .map_err(|reason| ConnectorError::Untrusted {
                url: activity.service_url.clone(),
                reason,
            })?;
        let url = activity_url(
            &activity.service_url,
            &activity.conversation.id,
            activity.reply_to_id.as_deref(),
        )?;
        let token = match &self.token {
            Some(t) => Some(t.token().await?),
            None => None,
        };
        let answer = self.post(&url, activity, token.as_deref()).await?;
        // A token the Connector no longer accepts (revoked, or our clock is off): one fresh
        // token and one more try, never a loop.
        let Answer {
            status,
            body,
            retry_after,
        } = match (answer.status, &self.token, &token) {
            (401, Some(client), Some(used)) => {
                let fresh = client.replace(used).await?;
                self.post(&url, activity, Some(&fresh)).await?
            }
            _ => answer,
        };
        if !(200..300).contains(&status) {
            return Err(ConnectorError::Status {
                status,
                body: excerpt(&body),
                retry_after,
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

    async fn post(
        &self,
        url: &str,
        activity: &OutboundActivity,
        token: Option<&str>,
    ) -> Result<Answer, ConnectorError> {
        let mut request = self.client.post(url).json(activity);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let retry_after =
            crate::price::fetch::retry_after(response.headers(), std::time::SystemTime::now());
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }

    fn transport_error(&self, e: reqwest::Error) -> ConnectorError {
        if e.is_timeout() {
            ConnectorError::Timeout(self.timeout)
        } else if e.is_builder() {
            ConnectorError::ServiceUrl {
                url: e.url().map(|u| u.to_string()).unwrap_or_default(),
                reason: Chain(&e).to_string(),
            }
        } else {
            ConnectorError::Transport(e)
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
    fn service_url_policy() {
        let hosts: Vec<String> = DEFAULT_SERVICE_URL_HOSTS
            .iter()
            .map(|h| (*h).to_owned())
            .collect();
        let production = ServiceUrlPolicy::new(&hosts, false);
        let dev = ServiceUrlPolicy::new(&hosts, true);
        for ok in [
            "https://smba.trafficmanager.net/teams/",
            "https://SMBA.trafficmanager.net./amer/",
            "https://europe.webchat.botframework.com/",
            "https://directline.botframework.com",
            "https://smba.infra.gcc.teams.microsoft.com/gcc/",
        ] {
            assert_eq!(production.check(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("http://smba.trafficmanager.net/teams/", "not https"),
            ("https://botframework.com/", "not on bot.service_url_hosts"),
            (
                "https://evilbotframework.com/",
                "not on bot.service_url_hosts",
            ),
            (
                "https://botframework.com.evil.example/",
                "not on bot.service_url_hosts",
            ),
            (
                "https://x.trafficmanager.net/",
                "not on bot.service_url_hosts",
            ),
            ("https://u:p@smba.trafficmanager.net/", "credentials"),
            ("http://localhost:3979/", "loopback"),
            ("http://127.0.0.1:9/", "loopback"),
            ("http://[::1]:9/", "loopback"),
            ("https://10.0.0.1/", "not on bot.service_url_hosts"),
            ("not a url", "not a URL"),
        ] {
            let err = production.check(bad).unwrap_err();
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
        assert_eq!(dev.check("http://localhost:3979/"), Ok(()));
        assert_eq!(dev.check("http://127.0.0.1:9/"), Ok(()));
        assert!(dev.check("http://example.com/").is_err());

        // Production reaches a loopback address only when it is listed by name.
        let relay =
            ServiceUrlPolicy::new(&["127.0.0.1".to_owned(), "*.localhost".to_owned()], false);
        assert_eq!(relay.check("http://127.0.0.1:9/"), Ok(()));
        assert!(relay.check("http://localhost:9/").is_err());
        assert!(relay.check("http://a.localhost:9/").is_err());
        assert!(relay.check("http://[::1]:9/").is_err());
    }

    #[test]
    fn non_http_service_urls_are_refused() {
        assert!(activity_url("ftp://x/", "c", None).is_err());
        assert!(activity_url("not a url", "c", None).is_err());
        assert!(activity_url("mailto:a@b", "c", None).is_err());
        assert!(activity_url("HTTPS://x/", "c", None).is_ok());
    }
}
