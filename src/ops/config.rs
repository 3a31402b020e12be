//! Daemon configuration.
//!
//! One TOML file (see `config/pricewatch.toml`, embedded as [`EXAMPLE_TOML`]),
//! every key optional, overridable from the environment with
//! `PRICEWATCH__SECTION__KEY=value`. Secrets never live in the file: they are
//! read with [`read_secret`] from a path named in the file or from
//! `$CREDENTIALS_DIRECTORY`.
//!
//! Loading reports every problem at once rather than stopping at the first,
//! so `pricewatch check-config` can list them all. serde stops at its first
//! error, hence the two passes: each key found in the file or the environment
//! is first deserialized on its own (as a one-key document into [`Config`],
//! which keeps the struct definitions the only schema), then the keys that
//! passed are deserialized together and validated semantically.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The fully commented example configuration; parsing it yields [`Config::default`].
pub const EXAMPLE_TOML: &str = include_str!("../../config/pricewatch.toml");

/// Name of the app password under `$CREDENTIALS_DIRECTORY`.
pub const APP_PASSWORD_CREDENTIAL: &str = "app-password";

const ENV_PREFIX: &str = "PRICEWATCH__";
const ENV_SEPARATOR: &str = "__";
const MIB: u64 = 1024 * 1024;
const BODY_LIMIT_RANGE: std::ops::RangeInclusive<u64> = 1024..=64 * MIB;
const MAX_REDIRECTS: usize = 10;
const MIN_CACHE_CAPACITY: u64 = MIB;
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// The whole daemon configuration. `Default` gives the documented defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub bot: BotConfig,
    pub storage: StorageConfig,
    pub alerts: AlertsConfig,
    pub delivery: DeliveryConfig,
    pub notify: NotifyConfig,
    /// `[rate_limits.<channel id>]`: send windows per conversation and per channel; a
    /// channel not listed keeps its built-in row, one unknown to the table uses `default`.
    pub rate_limits: BTreeMap<String, crate::delivery::ratelimit::ChannelLimits>,
    pub schedule: ScheduleSection,
    pub fetch: FetchConfig,
    pub log: LogConfig,
    /// `[[site_rule]]` entries, in file order.
    pub site_rule: Vec<SiteRuleConfig>,
    /// `[[json_api]]` entries, in file order.
    pub json_api: Vec<JsonApiConfig>,
}

/// `[[site_rule]]`: where the price is on the pages of a shop without structured data.
/// Used only when a page gives no JSON-LD, microdata or meta price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteRuleConfig {
    /// The shop's host; its subdomains match too.
    pub host: String,
    /// CSS selector of the element holding the price; the first match counts.
    pub selector: String,
    /// Attribute to read instead of the element's text.
    #[serde(default)]
    pub attribute: Option<String>,
}

/// `[[json_api]]`: where the price is in a shop's product JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonApiConfig {
    /// The API's host (and subdomains); or give `url`.
    #[serde(default)]
    pub host: Option<String>,
    /// A URL pattern where `*` matches anything, query included.
    #[serde(default)]
    pub url: Option<String>,
    /// RFC 6901 JSON pointer to the price.
    pub price_pointer: String,
    /// Pointer to the ISO 4217 code, when the response has one.
    #[serde(default)]
    pub currency_pointer: Option<String>,
    /// The currency when the response does not say.
    #[serde(default)]
    pub currency: Option<String>,
    /// The price is an integer in the currency's minor unit (cents).
    #[serde(default)]
    pub minor_units: bool,
}

/// `[server]`: the HTTP endpoint the channel posts activities to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Listening address.
    pub bind: SocketAddr,
    /// Largest accepted request body, in bytes.
    pub body_limit: u64,
    /// How long in-flight turns may finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 3978)),
            body_limit: 256 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// `[bot]`: Bot Framework identity and Connector client settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BotConfig {
    /// Microsoft App ID; empty means local development with authentication off.
    pub app_id: String,
    pub app_type: AppType,
    /// Required for [`AppType::SingleTenant`].
    pub tenant_id: String,
    /// File holding the app password; see [`BotConfig::app_password`].
    pub app_password_file: Option<PathBuf>,
    /// Display name of the bot.
    pub name: String,
    /// Total timeout of one call to the channel's Connector.
    #[serde(with = "humantime_serde")]
    pub reply_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// OAuth token endpoint for the bot's outbound token; empty means Azure AD's, for the
    /// `botframework.com` authority or `tenant_id` (single-tenant).
    pub token_endpoint: String,
    /// Hosts a `serviceUrl` may name (exact, or `*.suffix`); the bot sends, and sends its
    /// token, nowhere else.
    pub service_url_hosts: Vec<String>,
}

impl Default for BotConfig {
    fn default() -> Self {
        Self {
            app_id: String::new(),
            app_type: AppType::MultiTenant,
            tenant_id: String::new(),
            app_password_file: None,
            name: "pricewatch".to_owned(),
            reply_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            token_endpoint: String::new(),
            service_url_hosts: crate::delivery::connector::DEFAULT_SERVICE_URL_HOSTS
                .iter()
                .map(|h| (*h).to_owned())
                .collect(),
        }
    }
}

impl BotConfig {
    /// True when no app ID is configured: requests are not authenticated.
    pub fn is_local_development(&self) -> bool {
        self.app_id.is_empty()
    }

    /// `token_endpoint`, or Azure AD's for the app type.
    pub fn token_endpoint(&self) -> String {
        if !self.token_endpoint.trim().is_empty() {
            return self.token_endpoint.trim().to_owned();
        }
        let tenant = (self.app_type == AppType::SingleTenant).then_some(self.tenant_id.as_str());
        crate::delivery::token::default_endpoint(tenant)
    }

    /// Reads the app password from `app_password_file`, else from
    /// `<credentials_dir>/app-password`; `Ok(None)` when neither exists.
    pub fn app_password(
        &self,
        credentials_dir: Option<&Path>,
    ) -> Result<Option<Secret>, SecretError> {
        read_secret(
            self.app_password_file.as_deref(),
            credentials_dir,
            APP_PASSWORD_CREDENTIAL,
        )
    }
}

/// How the bot authenticates to Azure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppType {
    #[default]
    MultiTenant,
    SingleTenant,
    #[serde(rename = "UserAssignedMSI")]
    UserAssignedMsi,
}

/// `[storage]`: the sled database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Database directory, relative to the working directory unless absolute.
    pub path: PathBuf,
    /// sled page cache size, in bytes.
    pub cache_capacity: u64,
    /// sled's background flush period.
    #[serde(with = "humantime_serde")]
    pub flush_every: Duration,
    /// How long price history is kept (each product's latest price always stays).
    #[serde(with = "humantime_serde")]
    pub history_retention: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("pricewatch-data"),
            cache_capacity: 32 * MIB,
            flush_every: Duration::from_millis(500),
            history_retention: Duration::from_secs(365 * 24 * 3600),
        }
    }
}

/// `[notify]`: the operator's `POST /api/notify`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// File holding the admin token; see [`NotifyConfig::admin_token`]. Without a token
    /// the endpoint is off (404).
    pub admin_token_file: Option<PathBuf>,
    /// Longest accepted text, in characters.
    pub max_text: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            admin_token_file: None,
            max_text: 4000,
        }
    }
}

/// The credential name of the admin token under `$CREDENTIALS_DIRECTORY`.
pub const ADMIN_TOKEN_CREDENTIAL: &str = "admin-token";
/// Shorter admin tokens are refused at start-up: guessable.
pub const MIN_ADMIN_TOKEN: usize = 16;

impl NotifyConfig {
    /// Reads the admin token from `admin_token_file`, else from
    /// `<credentials_dir>/admin-token`; `Ok(None)` when neither exists.
    pub fn admin_token(
        &self,
        credentials_dir: Option<&Path>,
    ) -> Result<Option<Secret>, SecretError> {
        read_secret(
            self.admin_token_file.as_deref(),
            credentials_dir,
            ADMIN_TOKEN_CREDENTIAL,
        )
    }
}

/// `[delivery]`: how proactive messages are retried and when they are given up on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Ceiling of the first retry's random delay; it doubles with each failure.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Largest retry delay (a channel's `Retry-After` may ask for longer).
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
    /// Failed attempts after which a message becomes a dead letter.
    pub max_attempts: u32,
    /// Age after which a message still failing becomes a dead letter.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let p = crate::delivery::retry::RetryPolicy::default();
        Self {
            retry_base: p.base,
            retry_cap: p.cap,
            max_attempts: p.max_attempts,
            max_age: p.max_age,
        }
    }
}

impl DeliveryConfig {
    pub fn retry_policy(&self) -> crate::delivery::retry::RetryPolicy {
        crate::delivery::retry::RetryPolicy {
            base: self.retry_base,
            cap: self.retry_cap,
            max_attempts: self.max_attempts,
            max_age: self.max_age,
        }
    }
}

/// `[alerts]`: watch behaviour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Price drop, in percent, that triggers an alert when a watch names none.
    #[serde(with = "decimal_number")]
    pub default_drop: Decimal,
    pub max_watches_per_conversation: usize,
    /// How far above the alert line, in percent of the reference (of the target for
    /// `below` watches), a price must rise before the watch can alert again.
    #[serde(with = "decimal_number")]
    pub hysteresis: Decimal,
    /// Consecutive checks that must see the price at or below the line before it alerts.
    pub confirmations: u32,
    /// How long delivery waits after a check queued messages, so that alerts for one
    /// conversation found in the same tick go out as one digest.
    #[serde(with = "humantime_serde")]
    pub digest_window: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            default_drop: Decimal::from(20),
            max_watches_per_conversation: 50,
            hysteresis: Decimal::from(2),
            confirmations: 1,
            digest_window: Duration::from_secs(2),
        }
    }
}

impl AlertsConfig {
    /// The trigger's settings.
    pub fn trigger(&self) -> crate::watch::trigger::TriggerConfig {
        crate::watch::trigger::TriggerConfig {
            hysteresis_percent: self.hysteresis,
            confirmations: self.confirmations,
        }
    }
}

/// `[schedule]`: when products are checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleSection {
    /// Whether products are checked at all; off, the bot still answers and delivers what
    /// is queued, but fetches nothing (a standby instance, or a pause for maintenance).
    pub enabled: bool,
    /// Cron expression (seconds first, UTC) of the tick that looks for due products.
    pub tick: String,
    /// Time between two checks of one product.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Random spread of each check time, in percent of `interval` either way, so that
    /// products added together do not stay in step.
    pub jitter: u32,
    /// First wait after a failed check; it doubles with each further failure.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Longest wait between checks of a failing product.
    #[serde(with = "humantime_serde")]
    pub backoff_cap: Duration,
    /// How long a product may fail before its watchers are told, once.
    #[serde(with = "humantime_serde")]
    pub fail_notice_after: Duration,
}

impl Default for ScheduleSection {
    fn default() -> Self {
        Self {
            enabled: true,
            tick: "0 * * * * *".to_owned(),
            interval: Duration::from_secs(30 * 60),
            jitter: 10,
            backoff_base: Duration::from_secs(60),
            backoff_cap: Duration::from_secs(6 * 3600),
            fail_notice_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl ScheduleSection {
    /// The scheduler's settings.
    pub fn schedule(&self) -> crate::watch::schedule::ScheduleConfig {
        crate::watch::schedule::ScheduleConfig {
            interval: self.interval,
            jitter_percent: self.jitter,
            backoff_base: self.backoff_base,
            backoff_cap: self.backoff_cap,
            fail_notice_after: self.fail_notice_after,
        }
    }
}

impl FetchConfig {
    /// The politeness gate's settings.
    pub fn gate(&self) -> crate::watch::gate::GateConfig {
        crate::watch::gate::GateConfig {
            per_host_concurrency: self.per_host_concurrency,
            min_gap: self.host_gap,
            global_concurrency: self.global_concurrency,
        }
    }
}

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
    /// entry is reported by `validate` with the others, not by serde alone).
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
            max_body: 5 * MIB,
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
/// `validate` reports.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a CIDR network ({reason}; expected e.g. \"10.0.0.0/8\" or \"::1/128\")")]
pub struct InvalidNetwork {
    pub text: String,
    reason: ipnet::AddrParseError,
}

fn parse_network(text: &str) -> Result<ipnet::IpNet, InvalidNetwork> {
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

/// `[log]`: tracing output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// tracing filter directive; `RUST_LOG` wins when set.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The crate's `serde-str` feature makes `Decimal` accept only strings, but
/// the file documents `default_drop = 20` / `12.5` as plain TOML numbers.
mod decimal_number {
    use std::fmt;
    use std::str::FromStr;

    use rust_decimal::Decimal;
    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(*value) {
            Ok(int) if value.fract().is_zero() => serializer.serialize_i64(int),
            _ => serializer.collect_str(value),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        deserializer.deserialize_any(Visitor)
    }

    struct Visitor;

    impl de::Visitor<'_> for Visitor {
        type Value = Decimal;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a decimal number")
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }

        // Going through the shortest round-trip text keeps 12.3 from
        // becoming 12.300000000000000710542735760.
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
            self.visit_str(&v.to_string())
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
            Decimal::from_str(v.trim())
                .map_err(|e| E::custom(format_args!("invalid decimal number {v:?}: {e}")))
        }
    }
}

/// Every problem found while loading a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// The file (or other source) that was loaded.
    pub origin: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.errors.is_empty() {
            return write!(f, "{}: invalid configuration", self.origin);
        }
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// One configuration problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Where the offending value came from: the file name, or the
    /// environment variable's name for an override.
    pub origin: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// Dotted key such as `server.bind`; empty for file-level problems.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The configuration file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {source}", path.display())]
pub struct ReadConfigError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl From<ReadConfigError> for ConfigErrors {
    fn from(err: ReadConfigError) -> Self {
        let origin = err.path.display().to_string();
        ConfigErrors {
            errors: vec![ConfigError {
                origin: origin.clone(),
                line: None,
                key: String::new(),
                message: format!("cannot read file: {}", err.source),
            }],
            origin,
        }
    }
}

/// Loads `path` (`None`: built-in defaults only), applies the
/// `PRICEWATCH__SECTION__KEY` overrides found in `env`, and validates.
/// Production passes `std::env::vars()`.
pub fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    match path {
        None => load_str("<defaults>", "", env),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ReadConfigError {
                path: path.to_owned(),
                source,
            })?;
            load_str(&path.display().to_string(), &text, env)
        }
    }
}

/// Like [`load`] for text already in memory; `origin` names it in messages.
pub fn load_str(
    origin: &str,
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let mut loader = Loader {
        origin,
        text,
        entries: BTreeMap::new(),
        errors: Vec::new(),
    };
    loader.read_file()?;
    loader.read_env(env);
    let config = loader.check_entries();
    let failed: BTreeSet<String> = loader.errors.iter().map(|e| e.key.clone()).collect();
    if let Some(config) = &config {
        for violation in validate(config) {
            if !failed.contains(violation.key) {
                let error = loader.error_at(violation.key, violation.near, violation.message);
                loader.errors.push(error);
            }
        }
    }
    let Loader { mut errors, .. } = loader;
    match config {
        Some(config) if errors.is_empty() => Ok(config),
        _ => {
            // File errors in line order (the parsed table is sorted by key),
            // then overrides by variable name (the environment has no order).
            errors.sort_by_cached_key(|e| {
                (
                    e.origin != origin,
                    e.line.unwrap_or(usize::MAX),
                    e.origin.clone(),
                )
            });
            Err(ConfigErrors {
                origin: origin.to_owned(),
                errors,
            })
        }
    }
}

#[derive(Clone, Debug)]
enum Source {
    File { line: usize },
    Env { var: String, raw: String },
}

struct Entry {
    path: Vec<String>,
    value: toml::Value,
    source: Source,
}

struct Loader<'a> {
    origin: &'a str,
    text: &'a str,
    /// Keyed by dotted key; an override replaces the file's entry.
    entries: BTreeMap<String, Entry>,
    errors: Vec<ConfigError>,
}

impl Loader<'_> {
    fn read_file(&mut self) -> Result<(), ConfigErrors> {
        let root = match toml::de::DeTable::parse(self.text) {
            Ok(root) => root,
            Err(err) => {
                let line = err.span().map(|span| self.line_of(span.start));
                return Err(ConfigErrors {
                    origin: self.origin.to_owned(),
                    errors: vec![ConfigError {
                        origin: self.origin.to_owned(),
                        line,
                        key: String::new(),
                        message: err.message().trim_end().to_owned(),
                    }],
                });
            }
        };
        for (name, value) in root.get_ref().iter() {
            let section = name.get_ref().to_string();
            let line = self.line_of(name.span().start);
            let Some(table) = value.get_ref().as_table() else {
                self.insert_file_value(vec![section], value, line);
                continue;
            };
            // Checked as a whole first so that an unknown section is one
            // error, not one per key inside it.
            if let Err(message) = check(std::slice::from_ref(&section), empty_table(), "section") {
                self.errors.push(ConfigError {
                    origin: self.origin.to_owned(),
                    line: Some(line),
                    key: section,
                    message,
                });
                continue;
            }
            for (key, value) in table.iter() {
                let line = self.line_of(key.span().start);
                let path = vec![section.clone(), key.get_ref().to_string()];
                self.insert_file_value(path, value, line);
            }
        }
        Ok(())
    }

    fn insert_file_value(
        &mut self,
        path: Vec<String>,
        value: &toml::Spanned<toml::de::DeValue<'_>>,
        line: usize,
    ) {
        let key = path.join(".");
        match toml::Value::deserialize(toml::de::ValueDeserializer::from(value.clone())) {
            Ok(value) => {
                let source = Source::File { line };
                self.entries.insert(
                    key,
                    Entry {
                        path,
                        value,
                        source,
                    },
                );
            }
            Err(err) => self.errors.push(ConfigError {
                origin: self.origin.to_owned(),
                line: Some(line),
                key,
                message: err.message().to_owned(),
            }),
        }
    }

    fn read_env(&mut self, env: impl IntoIterator<Item = (String, String)>) {
        for (var, raw) in env {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = rest.split(ENV_SEPARATOR).map(str::to_lowercase).collect();
            if path.len() != 2 || path.iter().any(String::is_empty) {
                self.errors.push(ConfigError {
                    key: path.join("."),
                    message: format!(
                        "expected {ENV_PREFIX}<SECTION>{ENV_SEPARATOR}<KEY>, \
                         e.g. {ENV_PREFIX}SERVER{ENV_SEPARATOR}BIND"
                    ),
                    origin: var,
                    line: None,
                });
                continue;
            }
            let value = match raw.parse::<toml::Value>() {
                Ok(
                    value @ (toml::Value::Integer(_)
                    | toml::Value::Float(_)
                    | toml::Value::Boolean(_)
                    | toml::Value::String(_)
                    | toml::Value::Array(_)),
                ) => value,
                _ => toml::Value::String(raw.clone()),
            };
            let source = Source::Env { var, raw };
            self.entries.insert(
                path.join("."),
                Entry {
                    path,
                    value,
                    source,
                },
            );
        }
    }

    /// Type-checks every entry on its own, then builds the configuration from
    /// those that passed (defaults standing in for the rest), so semantic
    /// checks still run when some keys are broken.
    fn check_entries(&mut self) -> Option<Config> {
        let mut merged = toml::Table::new();
        for (key, entry) in &mut self.entries {
            // File entries passed this in `read_file`; overrides have not.
            let mut result = match entry.path.split_first() {
                Some((section, rest)) if !rest.is_empty() => {
                    check(std::slice::from_ref(section), empty_table(), "section")
                }
                _ => Ok(()),
            }
            .and_then(|()| check(&entry.path, entry.value.clone(), "key"));
            if let (Err(_), Source::Env { raw, .. }) = (&result, &entry.source) {
                // `PRICEWATCH__BOT__NAME=2024` means the string, not a number.
                let as_string = toml::Value::String(raw.clone());
                if entry.value != as_string && check(&entry.path, as_string.clone(), "key").is_ok()
                {
                    entry.value = as_string;
                    result = Ok(());
                }
            }
            match result {
                Ok(()) => insert_path(&mut merged, &entry.path, entry.value.clone()),
                Err(message) => {
                    let (origin, line) = describe(self.origin, &entry.source);
                    self.errors.push(ConfigError {
                        origin,
                        line,
                        key: key.clone(),
                        message: with_secret_hint(&entry.path, message),
                    });
                }
            }
        }
        match toml::Value::Table(merged).try_into::<Config>() {
            Ok(config) => Some(config),
            // Unreachable while each key deserializes on its own, but never
            // worth a panic.
            Err(err) => {
                self.errors.push(ConfigError {
                    origin: self.origin.to_owned(),
                    line: None,
                    key: String::new(),
                    message: err.message().to_owned(),
                });
                None
            }
        }
    }

    /// Locates a semantic error at `key`, or at `near` when `key` was not set
    /// (e.g. a missing `tenant_id` is pointed at the `app_type` requiring it).
    fn error_at(&self, key: &str, near: &str, message: String) -> ConfigError {
        let (origin, line) = match self.entries.get(key).or_else(|| self.entries.get(near)) {
            Some(entry) => describe(self.origin, &entry.source),
            None => (self.origin.to_owned(), None),
        };
        ConfigError {
            origin,
            line,
            key: key.to_owned(),
            message,
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }
}

fn describe(file: &str, source: &Source) -> (String, Option<usize>) {
    match source {
        Source::File { line } => (file.to_owned(), Some(*line)),
        Source::Env { var, .. } => (var.clone(), None),
    }
}

/// Deserializes `value` placed at `path` in an otherwise empty document, so
/// serde's own errors (unknown field, invalid type) describe just this key.
fn check(path: &[String], value: toml::Value, what: &str) -> Result<(), String> {
    let mut root = toml::Table::new();
    insert_path(&mut root, path, value);
    match toml::Value::Table(root).try_into::<Config>() {
        Ok(_) => Ok(()),
        Err(err) => {
            let message = err.message();
            Err(match message.strip_prefix("unknown field") {
                Some(rest) => format!("unknown {what}{rest}"),
                None => message.to_owned(),
            })
        }
    }
}

fn with_secret_hint(path: &[String], message: String) -> String {
    let Some(key) = path.last() else {
        return message;
    };
    let secretish = ["password", "secret", "token"]
        .iter()
        .any(|s| key.contains(s));
    if secretish && !key.ends_with("_file") && message.starts_with("unknown key") {
        format!(
            "{message}; secrets are never read from the configuration: \
             name a file with the matching `*_file` key or use $CREDENTIALS_DIRECTORY"
        )
    } else {
        message
    }
}

fn empty_table() -> toml::Value {
    toml::Value::Table(toml::Table::new())
}

fn insert_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let child = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(child) = child {
                insert_path(child, rest, value);
            }
        }
    }
}

struct Violation {
    key: &'static str,
    near: &'static str,
    message: String,
}

fn validate(config: &Config) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut fail = |key: &'static str, message: String| {
        out.push(Violation {
            key,
            near: key,
            message,
        })
    };

    let body_limit = config.server.body_limit;
    if !BODY_LIMIT_RANGE.contains(&body_limit) {
        fail(
            "server.body_limit",
            format!(
                "must be between {} and {} bytes (64 MiB), got {body_limit}",
                BODY_LIMIT_RANGE.start(),
                BODY_LIMIT_RANGE.end()
            ),
        );
    }
    for (key, duration) in [
        ("server.shutdown_grace", config.server.shutdown_grace),
        ("bot.reply_timeout", config.bot.reply_timeout),
        ("bot.connect_timeout", config.bot.connect_timeout),
        ("storage.flush_every", config.storage.flush_every),
        ("fetch.connect_timeout", config.fetch.connect_timeout),
        ("fetch.timeout", config.fetch.timeout),
    ] {
        if duration.is_zero() {
            fail(key, "must be greater than zero".to_owned());
        }
    }
    if config.storage.path.as_os_str().is_empty() {
        fail("storage.path", "must not be empty".to_owned());
    }
    let cache = config.storage.cache_capacity;
    if cache < MIN_CACHE_CAPACITY {
        fail(
            "storage.cache_capacity",
            format!("must be at least {MIN_CACHE_CAPACITY} bytes (1 MiB), got {cache}"),
        );
    }
    let drop = config.alerts.default_drop;
    if drop < Decimal::ONE || drop > Decimal::from(95) {
        fail(
            "alerts.default_drop",
            format!("must be between 1 and 95 (percent), got {drop}"),
        );
    }
    if config.alerts.max_watches_per_conversation < 1 {
        fail(
            "alerts.max_watches_per_conversation",
            "must be at least 1".to_owned(),
        );
    }
    validate_fetch(&config.fetch, &mut fail);
    validate_schedule(config, &mut fail);
    validate_delivery(&config.delivery, &mut fail);
    if !(1..=28_000).contains(&config.notify.max_text) {
        fail(
            "notify.max_text",
            format!(
                "must be between 1 and 28000, got {}",
                config.notify.max_text
            ),
        );
    }
    for host in &config.bot.service_url_hosts {
        if let Err(message) = check_host_pattern(host) {
            fail("bot.service_url_hosts", message);
        }
    }
    let endpoint = config.bot.token_endpoint.trim();
    if !endpoint.is_empty() {
        match url::Url::parse(endpoint) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
            _ => fail(
                "bot.token_endpoint",
                format!("{endpoint:?} is not an http(s) URL"),
            ),
        }
    }
    if let Err(errors) = crate::price::rules::Rules::compile(&config.site_rule, &config.json_api) {
        for e in errors {
            let key = match e {
                crate::price::rules::RuleError::Site { .. } => "site_rule",
                crate::price::rules::RuleError::Api { .. } => "json_api",
            };
            fail(key, e.to_string());
        }
    }
    if let Err(message) = check_log_level(&config.log.level) {
        fail("log.level", message);
    }
    if config.bot.app_type == AppType::SingleTenant && config.bot.tenant_id.trim().is_empty() {
        out.push(Violation {
            key: "bot.tenant_id",
            near: "bot.app_type",
            message: "required when app_type is \"SingleTenant\"".to_owned(),
        });
    }
    out
}

/// A `service_url_hosts` entry: a host name, or `*.` and a name with at least one dot.
fn check_host_pattern(pattern: &str) -> Result<(), String> {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    let valid = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !valid {
        return Err(format!(
            "{pattern:?} is not a host name or `*.` followed by one (no scheme, port or path)"
        ));
    }
    if pattern.starts_with("*.") && !name.contains('.') {
        return Err(format!("{pattern:?} would match a whole top-level domain"));
    }
    Ok(())
}

fn validate_delivery(d: &DeliveryConfig, fail: &mut impl FnMut(&'static str, String)) {
    if d.retry_base < Duration::from_millis(100) {
        fail(
            "delivery.retry_base",
            format!(
                "must be at least 100ms, got {}",
                humantime::format_duration(d.retry_base)
            ),
        );
    }
    if d.retry_cap < d.retry_base {
        fail(
            "delivery.retry_cap",
            format!(
                "must be at least delivery.retry_base ({}), got {}",
                humantime::format_duration(d.retry_base),
                humantime::format_duration(d.retry_cap)
            ),
        );
    }
    if d.max_attempts < 1 {
        fail("delivery.max_attempts", "must be at least 1".to_owned());
    }
    if d.max_age < Duration::from_secs(60) {
        fail(
            "delivery.max_age",
            format!(
                "must be at least 1m, got {}",
                humantime::format_duration(d.max_age)
            ),
        );
    }
}

fn validate_schedule(config: &Config, fail: &mut impl FnMut(&'static str, String)) {
    if config.storage.history_retention < Duration::from_secs(24 * 3600) {
        fail(
            "storage.history_retention",
            "must be at least 1day".to_owned(),
        );
    }
    let s = &config.schedule;
    if let Err(e) = tokio_cron_scheduler::Job::new_async(s.tick.as_str(), |_, _| Box::pin(async {}))
    {
        fail(
            "schedule.tick",
            format!(
                "{:?} is not a cron expression with seconds (e.g. \"0 * * * * *\", every minute): {e}",
                s.tick
            ),
        );
    }
    if s.interval < Duration::from_secs(60) {
        fail(
            "schedule.interval",
            format!(
                "must be at least 1m (shops are checked politely), got {}",
                humantime::format_duration(s.interval)
            ),
        );
    }
    if s.jitter > 50 {
        fail(
            "schedule.jitter",
            format!("must be between 0 and 50 percent, got {}", s.jitter),
        );
    }
    if s.backoff_base.is_zero() {
        fail(
            "schedule.backoff_base",
            "must be greater than zero".to_owned(),
        );
    }
    if s.backoff_cap < s.backoff_base {
        fail(
            "schedule.backoff_cap",
            "must be at least schedule.backoff_base".to_owned(),
        );
    }
    if s.fail_notice_after.is_zero() {
        fail(
            "schedule.fail_notice_after",
            "must be greater than zero".to_owned(),
        );
    }
    let a = &config.alerts;
    if a.hysteresis < Decimal::ZERO || a.hysteresis > Decimal::from(50) {
        fail(
            "alerts.hysteresis",
            format!("must be between 0 and 50 percent, got {}", a.hysteresis),
        );
    }
    if a.digest_window > Duration::from_secs(600) {
        fail(
            "alerts.digest_window",
            "must be at most 10m: alerts should not wait longer than that".to_owned(),
        );
    }
    if !(1..=10).contains(&a.confirmations) {
        fail(
            "alerts.confirmations",
            format!("must be between 1 and 10, got {}", a.confirmations),
        );
    }
    let f = &config.fetch;
    if !(1..=1024).contains(&f.global_concurrency) {
        fail(
            "fetch.global_concurrency",
            format!("must be between 1 and 1024, got {}", f.global_concurrency),
        );
    }
    if f.per_host_concurrency < 1 || f.per_host_concurrency > f.global_concurrency {
        fail(
            "fetch.per_host_concurrency",
            format!(
                "must be between 1 and fetch.global_concurrency ({}), got {}",
                f.global_concurrency, f.per_host_concurrency
            ),
        );
    }
}

fn validate_fetch(fetch: &FetchConfig, fail: &mut impl FnMut(&'static str, String)) {
    for (key, value) in [
        ("fetch.user_agent", &fetch.user_agent),
        ("fetch.accept_language", &fetch.accept_language),
    ] {
        if let Some(bad) = value
            .chars()
            .find(|&c| c != '\t' && !(' '..='~').contains(&c))
        {
            fail(
                key,
                format!("{bad:?} cannot be sent in an HTTP header (printable ASCII only)"),
            );
        }
    }
    if fetch.user_agent.trim().is_empty() {
        fail("fetch.user_agent", "must not be empty".to_owned());
    }
    if fetch.max_redirects > MAX_REDIRECTS {
        fail(
            "fetch.max_redirects",
            format!(
                "must be between 0 and {MAX_REDIRECTS}, got {}",
                fetch.max_redirects
            ),
        );
    }
    if !BODY_LIMIT_RANGE.contains(&fetch.max_body) {
        fail(
            "fetch.max_body",
            format!(
                "must be between {} and {} bytes (64 MiB), got {}",
                BODY_LIMIT_RANGE.start(),
                BODY_LIMIT_RANGE.end(),
                fetch.max_body
            ),
        );
    }
    if fetch.ports.is_empty() {
        fail(
            "fetch.ports",
            "must name at least one port, e.g. [80, 443]".to_owned(),
        );
    } else if fetch.ports.contains(&0) {
        fail("fetch.ports", "port 0 cannot be fetched".to_owned());
    }
    for host in &fetch.allow_hosts {
        if crate::price::fetch::guard::Allowlist::new(std::slice::from_ref(host), &[]).is_err() {
            fail(
                "fetch.allow_hosts",
                format!("{host:?} is not a host name (write the name alone, without scheme, port or path)"),
            );
        }
    }
    for network in &fetch.allow_networks {
        if let Err(err) = parse_network(network) {
            fail("fetch.allow_networks", err.to_string());
        }
    }
}

/// A deliberately simple subset of tracing's `EnvFilter` syntax:
/// comma-separated `level` or `target=level` (the target may carry span
/// filters, which are not checked).
fn check_log_level(filter: &str) -> Result<(), String> {
    if filter.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    for directive in filter.split(',').map(str::trim) {
        let (target, level) = match directive.rsplit_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        if directive.is_empty() {
            return Err(format!("empty directive in {filter:?}"));
        }
        if target == Some("") {
            return Err(format!("missing target before '=' in {directive:?}"));
        }
        if !LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(format!(
                "invalid level {level:?} in {directive:?}, expected one of {}",
                LOG_LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

/// A secret value; `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("secret file {} is empty", path.display())]
    Empty { path: PathBuf },
}

/// Reads a secret from `explicit` if given (it must exist), else from
/// `<credentials_dir>/<name>` if that exists (systemd `LoadCredential=`),
/// else returns `Ok(None)`. Trailing newlines are dropped. Production passes
/// `std::env::var_os("CREDENTIALS_DIRECTORY")` as `credentials_dir`.
pub fn read_secret(
    explicit: Option<&Path>,
    credentials_dir: Option<&Path>,
    name: &str,
) -> Result<Option<Secret>, SecretError> {
    let (path, optional) = match (explicit, credentials_dir) {
        (Some(path), _) => (path.to_owned(), false),
        (None, Some(dir)) if !dir.as_os_str().is_empty() => (dir.join(name), true),
        (None, _) => return Ok(None),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if optional && err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SecretError::Read { path, source }),
    };
    let value = text.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(SecretError::Empty { path });
    }
    Ok(Some(Secret(value.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn errors(text: &str, vars: &[(&str, &str)]) -> Vec<ConfigError> {
        load_str("test.toml", text, env(vars)).unwrap_err().errors
    }

    /// "origin:line key" of each error, the part tests care most about.
    fn places(errors: &[ConfigError]) -> Vec<String> {
        let place = |e: &ConfigError| match e.line {
            Some(line) => format!("{}:{line} {}", e.origin, e.key),
            None => format!("{} {}", e.origin, e.key),
        };
        errors.iter().map(place).collect()
    }

    #[test]
    fn defaults_equal_the_example_file() {
        let parsed = load_str("pricewatch.toml", EXAMPLE_TOML, env(&[])).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn example_file_sets_every_key() {
        let keys = |table: toml::Table| -> BTreeSet<String> {
            // Top-level arrays are the rule lists, empty by default.
            let sections = table
                .into_iter()
                .filter(|(_, v)| !v.is_array())
                .map(|(s, v)| (s, v.try_into::<toml::Table>().unwrap()));
            sections
                .flat_map(|(s, t)| t.into_iter().map(move |(k, _)| format!("{s}.{k}")))
                .collect()
        };
        let example = keys(EXAMPLE_TOML.parse().unwrap());
        assert_eq!(
            example,
            keys(toml::Table::try_from(Config::default()).unwrap())
        );
        // The one key unset by default, and the rule lists, are shown commented out.
        assert!(EXAMPLE_TOML.contains("\n# app_password_file = "));
        assert!(EXAMPLE_TOML.contains("\n# [[site_rule]]\n# host = "));
        assert!(EXAMPLE_TOML.contains("\n# [[json_api]]\n# url = "));
    }

    #[test]
    fn empty_file_and_no_file_give_defaults() {
        assert_eq!(
            load_str("empty.toml", "", env(&[])).unwrap(),
            Config::default()
        );
        assert_eq!(load(None, env(&[])).unwrap(), Config::default());
    }

    #[test]
    fn every_error_is_reported_with_its_line() {
        let text = "[server]\nbind = \"127.0.0.1:8080\"\nbnd = \"oops\"\n\n\
                    [storage]\ncache_capacity = \"lots\"\n\n\
                    [alerts]\ndefault_drop = 99.5\n";
        let errs = errors(text, &[]);
        assert_eq!(
            places(&errs),
            [
                "test.toml:3 server.bnd",
                "test.toml:6 storage.cache_capacity",
                "test.toml:9 alerts.default_drop"
            ]
        );
        assert_eq!(
            errs[0].to_string(),
            "test.toml:3: server.bnd: unknown key `bnd`, expected one of \
             `bind`, `body_limit`, `shutdown_grace`"
        );
        assert!(errs[1].message.starts_with("invalid type"), "{}", errs[1]);
        assert!(errs[2].message.contains("between 1 and 95"), "{}", errs[2]);
        let all = ConfigErrors {
            origin: "test.toml".into(),
            errors: errs,
        };
        assert_eq!(all.to_string().lines().count(), 3);
    }

    #[test]
    fn unknown_section_is_one_error() {
        let errs = errors(
            "[log]\nlevel = \"debug\"\n\n[servr]\nbind = \"x\"\nport = 1\n",
            &[],
        );
        assert_eq!(places(&errs), ["test.toml:4 servr"]);
        assert!(
            errs[0].message.starts_with("unknown section `servr`"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn syntax_error_is_one_error_with_its_line() {
        let errs = errors("[server]\nbind = \n", &[]);
        assert_eq!(places(&errs), ["test.toml:2 "]);
    }

    #[test]
    fn secrets_in_the_file_are_refused_with_a_hint() {
        let errs = errors("[bot]\napp_password = \"hunter2\"\n", &[]);
        assert_eq!(places(&errs), ["test.toml:2 bot.app_password"]);
        assert!(
            errs[0].message.contains("CREDENTIALS_DIRECTORY"),
            "{}",
            errs[0]
        );
        assert!(!errs[0].to_string().contains("hunter2"));
    }

    #[test]
    fn semantic_errors_are_all_collected() {
        let text = "[server]\nbody_limit = 10\nshutdown_grace = \"0s\"\n\
                    [bot]\napp_type = \"SingleTenant\"\n\
                    [storage]\ncache_capacity = 1000\n\
                    [alerts]\nmax_watches_per_conversation = 0\n\
                    [log]\nlevel = \"info,hyper=loud\"\nformat = \"xml\"\n";
        assert_eq!(
            places(&errors(text, &[])),
            [
                "test.toml:2 server.body_limit",
                "test.toml:3 server.shutdown_grace",
                "test.toml:5 bot.tenant_id",
                "test.toml:7 storage.cache_capacity",
                "test.toml:9 alerts.max_watches_per_conversation",
                "test.toml:11 log.level",
                "test.toml:12 log.format",
            ]
        );
    }

    #[test]
    fn site_and_api_rules_are_compiled_and_checked() {
        let good = "[[site_rule]]\nhost = \"shop.example\"\nselector = \"span.price\"\n\n\
                    [[json_api]]\nurl = \"https://shop.example/products/*.js\"\n\
                    price_pointer = \"/variants/0/price\"\ncurrency = \"USD\"\nminor_units = true\n";
        let config = load_str("test.toml", good, []).unwrap();
        assert_eq!(config.site_rule[0].selector, "span.price");
        assert_eq!(config.site_rule[0].attribute, None);
        assert!(config.json_api[0].minor_units);

        let bad = "[server]\nbind = \"127.0.0.1:1\"\n\n[[site_rule]]\nhost = \"shop.example\"\nselector = \"span[\"\n\n\
                   [[json_api]]\nhost = \"api.example\"\nprice_pointer = \"price\"\n";
        let text = load_str("test.toml", bad, []).unwrap_err().to_string();
        assert!(
            text.contains("test.toml:4: site_rule: site rule 1:"),
            "{text}"
        );
        assert!(
            text.contains("json_api: JSON API rule 1: price_pointer"),
            "{text}"
        );

        let unknown = "[[site_rule]]\nhost = \"a.example\"\nselector = \"b\"\nattr = \"c\"\n";
        let text = load_str("test.toml", unknown, []).unwrap_err().to_string();
        assert!(
            text.contains("test.toml:1: site_rule") && text.contains("attr"),
            "{text}"
        );
    }

    #[test]
    fn defaults_match_the_pure_modules_defaults() {
        let c = Config::default();
        assert_eq!(
            c.alerts.trigger(),
            crate::watch::trigger::TriggerConfig::default()
        );
        assert_eq!(
            c.schedule.schedule(),
            crate::watch::schedule::ScheduleConfig::default()
        );
        assert_eq!(c.fetch.gate(), crate::watch::gate::GateConfig::default());
    }

    #[test]
    fn the_tick_must_be_a_cron_expression() {
        let errors =
            load_str("test.toml", "[schedule]\ntick = \"every minute\"\n", []).unwrap_err();
        assert_eq!(places(&errors.errors), ["test.toml:2 schedule.tick"]);
        assert!(errors.to_string().contains("cron expression"), "{errors}");
        let ok = load_str("test.toml", "[schedule]\ntick = \"*/10 * * * * *\"\n", []).unwrap();
        assert_eq!(ok.schedule.tick, "*/10 * * * * *");
    }

    #[test]
    fn schedule_and_politeness_keys_are_validated() {
        let text = "[schedule]\ninterval = \"30s\"\njitter = 80\nbackoff_base = \"2h\"\nbackoff_cap = \"1h\"\n\
                    [alerts]\nhysteresis = 60\nconfirmations = 0\n\
                    [fetch]\nglobal_concurrency = 4\nper_host_concurrency = 8\n";
        let errors = load_str("test.toml", text, []).unwrap_err();
        assert_eq!(
            places(&errors.errors),
            [
                "test.toml:2 schedule.interval",
                "test.toml:3 schedule.jitter",
                "test.toml:5 schedule.backoff_cap",
                "test.toml:7 alerts.hysteresis",
                "test.toml:8 alerts.confirmations",
                "test.toml:11 fetch.per_host_concurrency",
            ]
        );
        let ok = "[schedule]\ninterval = \"1h 30m\"\n[fetch]\nhost_gap = \"0s\"\n";
        let config = load_str("test.toml", ok, []).unwrap();
        assert_eq!(config.schedule.interval, Duration::from_secs(5400));
        assert!(config.fetch.host_gap.is_zero());
    }

    #[test]
    fn fetch_section_is_validated() {
        let text = "[fetch]\nuser_agent = \"bot\u{e9}\"\nconnect_timeout = \"0s\"\n\
                    max_redirects = 11\nmax_body = 100\nports = []\n\
                    allow_hosts = [\"ok.test\", \"http://shop.test/\"]\n\
                    allow_networks = [\"10.0.0.0/8\", \"10.0.0.0/33\", \"lan\"]\n";
        let errs = errors(text, &[]);
        assert_eq!(
            places(&errs),
            [
                "test.toml:2 fetch.user_agent",
                "test.toml:3 fetch.connect_timeout",
                "test.toml:4 fetch.max_redirects",
                "test.toml:5 fetch.max_body",
                "test.toml:6 fetch.ports",
                "test.toml:7 fetch.allow_hosts",
                "test.toml:8 fetch.allow_networks",
                "test.toml:8 fetch.allow_networks",
            ]
        );
        assert!(errs[2].message.contains("between 0 and 10"), "{}", errs[2]);
        assert!(
            errs[5].message.contains("\"http://shop.test/\""),
            "{}",
            errs[5]
        );
        assert!(
            errs[7]
                .to_string()
                .starts_with("test.toml:8: fetch.allow_networks: \"lan\" is not a CIDR network ("),
            "{}",
            errs[7]
        );
        assert_eq!(
            places(&errors("[fetch]\nports = [80, 0]\n", &[])),
            ["test.toml:2 fetch.ports"]
        );
    }

    #[test]
    fn rate_limit_windows_are_checked() {
        let text = "[rate_limits.msteams]\nper_conversation = [\"7/1s\", \"7\"]\n";
        let errs = errors(text, &[]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].key.starts_with("rate_limits"), "{}", errs[0].key);
        assert!(
            errs[0].message.contains("count/duration"),
            "{}",
            errs[0].message
        );
        let ok = "[rate_limits.slack]\nper_conversation = [\"2/1s\"]\nper_channel = []\n";
        let config = load_str("test.toml", ok, env(&[])).unwrap();
        let slack = &config.rate_limits["slack"];
        assert_eq!(slack.per_conversation[0].count, 2);
        assert!(slack.per_channel.is_empty());
    }

    #[test]
    fn service_url_hosts_and_token_endpoint_are_checked() {
        let text = "[bot]\n\
                    token_endpoint = \"login\"\n\
                    service_url_hosts = [\"smba.trafficmanager.net\", \"https://x.example/\", \"*.com\", \"*.botframework.com\"]\n";
        let errs = errors(text, &[]);
        assert_eq!(
            places(&errs),
            [
                "test.toml:2 bot.token_endpoint",
                "test.toml:3 bot.service_url_hosts",
                "test.toml:3 bot.service_url_hosts",
            ]
        );
        assert!(
            errs[2].message.contains("top-level domain"),
            "{}",
            errs[2].message
        );
        let config = Config::default();
        assert_eq!(
            config.bot.token_endpoint(),
            "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token"
        );
        let single = BotConfig {
            app_type: AppType::SingleTenant,
            tenant_id: "t-1".into(),
            ..BotConfig::default()
        };
        assert_eq!(
            single.token_endpoint(),
            "https://login.microsoftonline.com/t-1/oauth2/v2.0/token"
        );
    }

    #[test]
    fn fetch_allowlist_from_the_environment() {
        let vars = env(&[
            (
                "PRICEWATCH__FETCH__ALLOW_NETWORKS",
                "[\"127.0.0.0/8\", \"::1\"]",
            ),
            ("PRICEWATCH__FETCH__ALLOW_HOSTS", "[\"shop.lan\"]"),
            ("PRICEWATCH__FETCH__TIMEOUT", "300ms"),
            ("PRICEWATCH__FETCH__ACCEPT_LANGUAGE", ""),
        ]);
        let config = load_str("test.toml", "", vars).unwrap();
        let networks = config.fetch.networks().unwrap();
        assert_eq!(
            networks,
            [
                "127.0.0.0/8".parse::<ipnet::IpNet>().unwrap(),
                "::1/128".parse().unwrap()
            ]
        );
        assert_eq!(config.fetch.allow_hosts, ["shop.lan"]);
        assert_eq!(config.fetch.timeout, Duration::from_millis(300));
        assert_eq!(config.fetch.accept_language, "");
    }

    #[test]
    fn a_broken_key_is_not_reported_twice() {
        let text = "[bot]\napp_type = \"SingleTenant\"\ntenant_id = 42\n";
        assert_eq!(places(&errors(text, &[])), ["test.toml:3 bot.tenant_id"]);
    }

    #[test]
    fn env_overrides_values() {
        let vars = env(&[
            ("PRICEWATCH__SERVER__BIND", "127.0.0.1:9000"),
            ("PRICEWATCH__SERVER__BODY_LIMIT", "2048"),
            ("PRICEWATCH__Alerts__Default_Drop", "12.5"),
            ("PRICEWATCH__BOT__NAME", "2024"),
            ("PRICEWATCH__LOG__LEVEL", "\"debug\""),
            ("PRICEWATCH_CONFIG", "ignored"),
            ("PATH", "/usr/bin"),
        ]);
        let config = load_str("test.toml", "[server]\nbind = \"0.0.0.0:80\"\n", vars).unwrap();
        assert_eq!(config.server.bind, SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert_eq!(config.server.body_limit, 2048);
        assert_eq!(config.alerts.default_drop, Decimal::new(125, 1));
        assert_eq!(config.bot.name, "2024");
        assert_eq!(config.log.level, "debug");
    }

    #[test]
    fn bad_env_override_names_the_variable() {
        let errs = errors(
            "[server]\nbind = \"127.0.0.1:80\"\n",
            &[
                ("PRICEWATCH__SERVER__BIND", "localhost"),
                ("PRICEWATCH__SERVER__NOPE", "1"),
                ("PRICEWATCH__SERVR__BIND", "127.0.0.1:1"),
                ("PRICEWATCH__SERVER", "1"),
            ],
        );
        assert_eq!(
            places(&errs),
            [
                "PRICEWATCH__SERVER server",
                "PRICEWATCH__SERVER__BIND server.bind",
                "PRICEWATCH__SERVER__NOPE server.nope",
                "PRICEWATCH__SERVR__BIND servr.bind"
            ]
        );
        assert!(
            errs[3].message.starts_with("unknown section `servr`"),
            "{}",
            errs[3]
        );
        let shown = errs[1].to_string();
        assert!(
            shown.starts_with("PRICEWATCH__SERVER__BIND: server.bind: invalid socket address"),
            "{shown}"
        );
    }

    #[test]
    fn semantic_error_from_env_names_the_variable() {
        let errs = errors(
            "[bot]\napp_id = \"x\"\n",
            &[("PRICEWATCH__BOT__APP_TYPE", "SingleTenant")],
        );
        assert_eq!(places(&errs), ["PRICEWATCH__BOT__APP_TYPE bot.tenant_id"]);
    }

    #[test]
    fn humantime_durations_parse() {
        let text = "[server]\nshutdown_grace = \"1h 30m\"\n[storage]\nflush_every = \"250ms\"\n";
        let config = load_str("test.toml", text, env(&[])).unwrap();
        assert_eq!(config.server.shutdown_grace, Duration::from_secs(90 * 60));
        assert_eq!(config.storage.flush_every, Duration::from_millis(250));
        let errs = errors("[bot]\nreply_timeout = \"soon\"\n", &[]);
        assert_eq!(places(&errs), ["test.toml:2 bot.reply_timeout"]);
    }

    #[test]
    fn enums_and_optional_path_parse() {
        let text = "[bot]\napp_id = \"abc\"\napp_type = \"UserAssignedMSI\"\n\
                    app_password_file = \"secrets/pw\"\n[log]\nformat = \"json\"\n";
        let config = load_str("test.toml", text, env(&[])).unwrap();
        assert_eq!(config.bot.app_type, AppType::UserAssignedMsi);
        assert_eq!(
            config.bot.app_password_file,
            Some(PathBuf::from("secrets/pw"))
        );
        assert!(!config.bot.is_local_development());
        assert!(Config::default().bot.is_local_development());
        assert_eq!(config.log.format, LogFormat::Json);
    }

    #[test]
    fn log_level_check() {
        for ok in [
            "info",
            "pricewatch=debug,warn",
            "WARN",
            "a::b[span{x=1}]=trace",
        ] {
            assert!(check_log_level(ok).is_ok(), "{ok}");
        }
        for bad in ["", "loud", "=info", "info,", "x=verbose"] {
            assert!(check_log_level(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unreadable_file_is_one_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.toml");
        let errs = load(Some(&path), env(&[])).unwrap_err();
        assert_eq!(places(&errs.errors), [format!("{} ", path.display())]);
        let expected = format!("{}: cannot read file: ", path.display());
        assert!(errs.to_string().starts_with(&expected), "{errs}");
    }

    #[test]
    fn load_reads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pricewatch.toml");
        std::fs::write(&path, "[alerts]\ndefault_drop = 0\n").unwrap();
        let errs = load(Some(&path), env(&[])).unwrap_err();
        assert_eq!(
            places(&errs.errors),
            [format!("{}:2 alerts.default_drop", path.display())]
        );
    }

    #[test]
    fn secret_from_explicit_file_trims_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret \n").unwrap();
        let secret = read_secret(Some(&path), Some(dir.path()), "app-password").unwrap();
        assert_eq!(secret.unwrap().expose(), "s3cret ");
    }

    #[test]
    fn secret_from_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        let bot = BotConfig::default();
        assert!(bot.app_password(Some(dir.path())).unwrap().is_none());
        assert!(bot.app_password(None).unwrap().is_none());
        std::fs::write(dir.path().join("app-password"), "from-systemd\r\n").unwrap();
        let secret = bot.app_password(Some(dir.path())).unwrap();
        assert_eq!(secret.unwrap().expose(), "from-systemd");
    }

    #[test]
    fn secret_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = read_secret(Some(&missing), Some(dir.path()), "x").unwrap_err();
        assert!(matches!(err, SecretError::Read { .. }));
        assert!(
            err.to_string().contains(&*missing.to_string_lossy()),
            "{err}"
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = read_secret(Some(&empty), None, "x").unwrap_err();
        assert!(matches!(err, SecretError::Empty { .. }));
    }

    #[test]
    fn secret_is_redacted() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(secret)), "Some([redacted])");
    }
}
