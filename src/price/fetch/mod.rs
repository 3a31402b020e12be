//! Fetching product pages: one pooled HTTP client behind the SSRF guard.
//!
//! [`Fetcher::fetch`] gets one page, conditionally when the caller has
//! [`Validators`] from the previous fetch, and returns its decoded body, or
//! [`Fetched::NotModified`]. What it will fetch is decided in [`guard`]: the
//! URL is checked before sending and on every redirect hop (the redirect
//! policy), and every resolved address is checked inside the client's DNS
//! resolver, so the connection goes to exactly the address that was checked.
//! The client never uses a proxy: a proxy resolves names itself, past the
//! guard.
//!
//! Bodies are read chunk by chunk and counted after decompression, so a
//! small gzip bomb fails as [`FetchError::TooLarge`] without being inflated
//! in full. Content types are not judged here; the extractor decides what
//! it can read.
//!
//! [`FetchConfig`] is the `[fetch]` section of the configuration, kept beside the
//! fetcher it sets up.

pub mod guard;

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{redirect, StatusCode};
use url::Url;

use serde::{Deserialize, Serialize};

use crate::domain::Validators;
use crate::error::Chain;
use guard::{check_url, Allowlist, GuardedResolver, Lookup, Refusal, ResolveError, SystemLookup};

/// Product pages are HTML, but some shops serve JSON (Shopify `.js`, SAP OCC).
const ACCEPT: &str = "text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.8";

/// `[fetch]`: how product pages are fetched, and the SSRF guard's exceptions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchConfig {
    /// `User-Agent` of every page request; shops block empty or browser-faking ones.
    pub user_agent: String,
    /// `Accept-Language`: shops pick the currency and number format from it.
    /// Empty: not sent.
    pub accept_language: String,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Total time for one page: connection, redirects and the whole body.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Redirects followed before giving up; each hop is checked again.
    pub max_redirects: usize,
    /// Largest page accepted, in bytes after decompression (a gzip bomb is
    /// small on the wire).
    pub max_body: u64,
    /// Ports a URL may name; allowlisted hosts and networks may use any.
    pub ports: Vec<u16>,
    /// Product pages fetched at once, over all shops.
    pub global_concurrency: usize,
    /// Pages fetched at once from one host.
    pub per_host_concurrency: usize,
    /// Shortest time between two requests to one host.
    #[serde(with = "humantime_serde")]
    pub host_gap: Duration,
    /// Host names exempt from the SSRF guard, wherever they resolve to.
    pub allow_hosts: Vec<String>,
    /// CIDR networks exempt from the SSRF guard (kept as text so that a bad
    /// entry is reported by `check-config` with the others, not by serde alone).
    pub allow_networks: Vec<String>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            user_agent: "pricewatch/0.1 (price-watch bot)".to_owned(),
            accept_language: "en-US,en;q=0.8".to_owned(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(20),
            max_redirects: 5,
            max_body: 5 * 1024 * 1024,
            ports: vec![80, 443],
            global_concurrency: 32,
            per_host_concurrency: 2,
            host_gap: Duration::from_secs(1),
            allow_hosts: Vec::new(),
            allow_networks: Vec::new(),
        }
    }
}

impl FetchConfig {
    /// `allow_networks` parsed; a bare address is a one-address network.
    /// Never fails on a configuration that passed validation.
    pub fn networks(&self) -> Result<Vec<ipnet::IpNet>, InvalidNetwork> {
        self.allow_networks
            .iter()
            .map(|text| parse_network(text))
            .collect()
    }
}

/// An `allow_networks` entry that is not a network; `Display` is the message
/// `check-config` reports.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a CIDR network ({reason}; expected e.g. \"10.0.0.0/8\" or \"::1/128\")")]
pub struct InvalidNetwork {
    pub text: String,
    reason: ipnet::AddrParseError,
}

/// One `allow_networks` entry; a bare address is a one-address network.
pub fn parse_network(text: &str) -> Result<ipnet::IpNet, InvalidNetwork> {
    let trimmed = text.trim();
    match trimmed.parse::<ipnet::IpNet>() {
        Ok(net) => Ok(net),
        Err(reason) => match trimmed.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(ipnet::IpNet::from(ip)),
            Err(_) => Err(InvalidNetwork {
                text: text.to_owned(),
                reason,
            }),
        },
    }
}

/// Fetches product pages. Cheap to clone: clones share one pooled client.
#[derive(Clone, Debug)]
pub struct Fetcher {
    client: reqwest::Client,
    /// Also captured by the redirect policy and the resolver; kept here for
    /// the check before the first request.
    allow: Arc<Allowlist>,
    ports: Arc<[u16]>,
    max_body: u64,
}

impl Validators {
    fn from_headers(headers: &HeaderMap) -> Validators {
        Validators {
            etag: header_text(headers, header::ETAG),
            last_modified: header_text(headers, header::LAST_MODIFIED),
        }
    }

    /// A 304 may carry fresh validators; the ones it leaves out still hold.
    fn updated_by(&self, headers: &HeaderMap) -> Validators {
        let fresh = Validators::from_headers(headers);
        Validators {
            etag: fresh.etag.or_else(|| self.etag.clone()),
            last_modified: fresh.last_modified.or_else(|| self.last_modified.clone()),
        }
    }
}

/// The outcome of a successful fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// The page has not changed since the validators were issued (HTTP 304).
    NotModified {
        validators: Validators,
    },
    Page(Page),
}

/// A page that answered 2xx, body decoded (gzip, brotli, deflate) but not
/// interpreted: the charset is the extractor's business.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// Where the page was found, after redirects.
    pub final_url: Url,
    pub status: u16,
    /// The `Content-Type` header as sent, charset included.
    pub content_type: Option<String>,
    pub body: Bytes,
    pub validators: Validators,
}

/// Why a page could not be fetched. The `Display` text is shown to chat
/// users.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Refused(Refusal),
    #[error("the page redirected more than {limit} times")]
    TooManyRedirects { limit: usize },
    #[error("the site took too long to answer")]
    Timeout,
    #[error("cannot reach the site: {0}")]
    Connect(String),
    #[error("the site answered {}", status_words(*.status))]
    Status {
        status: u16,
        /// From `Retry-After`, when the site said how long to wait.
        retry_after: Option<Duration>,
    },
    #[error("the page is larger than {}", size_words(*.limit))]
    TooLarge { limit: u64 },
    #[error("the connection broke while reading the page: {0}")]
    Body(String),
    #[error("the page's compressed content is corrupt: {0}")]
    Decode(String),
    #[error("cannot set up the page fetcher: {0}")]
    Client(String),
}

impl FetchError {
    /// Whether trying again later may succeed: the scheduler backs off and
    /// retries these, and gives up on the others.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Timeout | FetchError::Connect(_) | FetchError::Body(_) => true,
            FetchError::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            FetchError::Refused(_)
            | FetchError::TooManyRedirects { .. }
            | FetchError::TooLarge { .. }
            | FetchError::Decode(_)
            | FetchError::Client(_) => false,
        }
    }

    /// reqwest reports everything as one error type; the guard's refusals
    /// and the redirect limit travel inside it as sources.
    fn from_reqwest(err: reqwest::Error) -> FetchError {
        let mut source = err.source();
        while let Some(cause) = source {
            if let Some(refusal) = cause.downcast_ref::<Refusal>() {
                return FetchError::Refused(refusal.clone());
            }
            match cause.downcast_ref::<ResolveError>() {
                Some(ResolveError::Refused(refusal)) => {
                    return FetchError::Refused(refusal.clone())
                }
                // Names the host, which the io error below it does not.
                Some(other) => return FetchError::Connect(Chain(other).to_string()),
                None => {}
            }
            if let Some(limit) = cause.downcast_ref::<RedirectLimit>() {
                return FetchError::TooManyRedirects { limit: limit.0 };
            }
            source = cause.source();
        }
        if err.is_timeout() {
            FetchError::Timeout
        } else if err.is_decode() {
            FetchError::Decode(root_cause(&err))
        } else if err.is_body() {
            FetchError::Body(root_cause(&err))
        } else {
            FetchError::Connect(root_cause(&err))
        }
    }
}

/// The redirect policy's error when a chain is too long.
#[derive(Debug, thiserror::Error)]
#[error("more than {0} redirects")]
struct RedirectLimit(usize);

impl Fetcher {
    /// A fetcher resolving names with the system resolver.
    pub fn new(cfg: &FetchConfig) -> Result<Fetcher, FetchError> {
        Fetcher::with_lookup(cfg, Arc::new(SystemLookup))
    }

    /// A fetcher resolving names with `lookup`; tests use it to make a name
    /// resolve wherever they need.
    pub fn with_lookup(cfg: &FetchConfig, lookup: Arc<dyn Lookup>) -> Result<Fetcher, FetchError> {
        let networks = cfg
            .networks()
            .map_err(|e| FetchError::Client(format!("fetch.allow_networks: {e}")))?;
        let allow = Allowlist::new(&cfg.allow_hosts, &networks)
            .map_err(|e| FetchError::Client(format!("fetch.allow_hosts: {e}")))?;
        let allow = Arc::new(allow);
        let ports: Arc<[u16]> = cfg.ports.clone().into();

        let mut headers = HeaderMap::new();
        if !cfg.accept_language.is_empty() {
            let value = HeaderValue::from_str(&cfg.accept_language)
                .map_err(|e| FetchError::Client(format!("accept_language: {e}")))?;
            headers.insert(header::ACCEPT_LANGUAGE, value);
        }
        let client = reqwest::Client::builder()
            .user_agent(cfg.user_agent.clone())
            .default_headers(headers)
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.timeout)
            // A proxy resolves names itself, which would bypass the resolver's check.
            .no_proxy()
            .gzip(true)
            .brotli(true)
            .deflate(true)
            .dns_resolver(Arc::new(GuardedResolver::new(allow.clone(), lookup)))
            .redirect(redirect_policy(
                allow.clone(),
                ports.clone(),
                cfg.max_redirects,
            ))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| FetchError::Client(root_cause(&e)))?;
        Ok(Fetcher {
            client,
            allow,
            ports,
            max_body: cfg.max_body,
        })
    }

    /// Fetches `url`, conditionally when `validators` has any.
    pub async fn fetch(&self, url: &Url, validators: &Validators) -> Result<Fetched, FetchError> {
        // The resolver only sees names: IP literals, scheme, credentials and
        // port are checked here, on the very `Url` that is sent.
        check_url(url, &self.allow, &self.ports).map_err(FetchError::Refused)?;
        let mut request = self
            .client
            .get(url.clone())
            .header(header::ACCEPT, HeaderValue::from_static(ACCEPT));
        // A stored validator that is not a valid header value is dropped: an
        // unconditional fetch is still correct.
        for (name, value) in [
            (header::IF_NONE_MATCH, &validators.etag),
            (header::IF_MODIFIED_SINCE, &validators.last_modified),
        ] {
            if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                request = request.header(name, value);
            }
        }
        let mut response = request.send().await.map_err(FetchError::from_reqwest)?;

        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified {
                validators: validators.updated_by(response.headers()),
            });
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                status: status.as_u16(),
                retry_after: retry_after(response.headers(), SystemTime::now()),
            });
        }

        let limit = self.max_body;
        // Known only when the body is not being decompressed.
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(FetchError::TooLarge { limit });
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(FetchError::from_reqwest)? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(FetchError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched::Page(Page {
            final_url: response.url().clone(),
            status: status.as_u16(),
            content_type: header_text(response.headers(), header::CONTENT_TYPE),
            validators: Validators::from_headers(response.headers()),
            body: body.freeze(),
        }))
    }
}

/// Follows at most `max` redirects, each to a URL that passes [`check_url`]
/// (the resolver covers the names; this covers IP literals, scheme,
/// credentials and port). reqwest's custom policies do not detect loops;
/// the cap ends them.
fn redirect_policy(allow: Arc<Allowlist>, ports: Arc<[u16]>, max: usize) -> redirect::Policy {
    redirect::Policy::custom(move |attempt| {
        // `previous` holds the first URL too: it is the number of redirects so far.
        if attempt.previous().len() > max {
            return attempt.error(RedirectLimit(max));
        }
        match check_url(attempt.url(), &allow, &ports) {
            Ok(()) => attempt.follow(),
            Err(reason) => {
                let url = attempt.url().to_string();
                attempt.error(Refusal::Redirect {
                    url,
                    reason: Box::new(reason),
                })
            }
        }
    })
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110 §10.2.3); a date
/// in the past means now.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// The innermost cause ("Connection refused (os error 111)", "invalid peer
/// certificate: UnknownIssuer"): the layers above it are reqwest's and
/// hyper's wrappers ("error sending request for url", "client error
/// (Connect)"), which tell a user nothing.
fn root_cause(err: &reqwest::Error) -> String {
    let mut root: &dyn StdError = err;
    while let Some(cause) = root.source() {
        root = cause;
    }
    root.to_string()
}

fn status_words(status: u16) -> String {
    match StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("HTTP {status} ({reason})"),
        None => format!("HTTP {status}"),
    }
}

fn size_words(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    if bytes >= MIB && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes % KIB == 0 {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let at = |v: &str| retry_after(&headers(&[("retry-after", v)]), now);
        assert_eq!(at("120"), Some(Duration::from_secs(120)));
        assert_eq!(at(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            at("Sun, 06 Nov 1994 08:51:37 GMT"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(at("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(at("soon"), None);
        assert_eq!(at("-5"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn a_304_keeps_the_validators_it_does_not_replace() {
        let old = Validators {
            etag: Some("\"v1\"".into()),
            last_modified: Some("Sun, 06 Nov 1994 08:49:37 GMT".into()),
        };
        assert_eq!(old.updated_by(&HeaderMap::new()), old);
        let new = old.updated_by(&headers(&[("etag", "\"v2\"")]));
        assert_eq!(new.etag.as_deref(), Some("\"v2\""));
        assert_eq!(new.last_modified, old.last_modified);
    }

    #[test]
    fn transient_errors() {
        let status = |s| FetchError::Status {
            status: s,
            retry_after: None,
        };
        for transient in [
            FetchError::Timeout,
            FetchError::Connect("refused".into()),
            FetchError::Body("reset".into()),
            status(500),
            status(503),
            status(429),
            status(408),
        ] {
            assert!(transient.is_transient(), "{transient:?}");
        }
        for permanent in [
            status(404),
            status(403),
            status(410),
            FetchError::Refused(Refusal::Credentials),
            FetchError::TooManyRedirects { limit: 5 },
            FetchError::TooLarge { limit: 1024 },
            FetchError::Decode("bad gzip".into()),
        ] {
            assert!(!permanent.is_transient(), "{permanent:?}");
        }
    }

    #[test]
    fn messages_read_as_sentences() {
        assert_eq!(
            FetchError::Status {
                status: 429,
                retry_after: None
            }
            .to_string(),
            "the site answered HTTP 429 (Too Many Requests)"
        );
        assert_eq!(
            FetchError::TooLarge { limit: 5_242_880 }.to_string(),
            "the page is larger than 5 MiB"
        );
        assert_eq!(
            FetchError::TooLarge { limit: 1500 }.to_string(),
            "the page is larger than 1500 bytes"
        );
        assert_eq!(
            FetchError::TooManyRedirects { limit: 5 }.to_string(),
            "the page redirected more than 5 times"
        );
    }

    #[test]
    fn the_default_config_builds_a_fetcher() {
        assert!(Fetcher::new(&FetchConfig::default()).is_ok());
    }
}
