//! Daemon configuration.
//!
//! One TOML file (see `config/pricewatch.toml`, embedded as [`EXAMPLE_TOML`]),
//! every key optional, overridable from the environment with
//! `PRICEWATCH__SECTION__KEY=value`. Secrets never live in the file: they are
//! read with [`read_secret`] from a path named in the file or from
//! `$CREDENTIALS_DIRECTORY`.
//!
//! This file holds [`Config`], which is the schema, and the sections that belong
//! to no one component, with their defaults. A component's own section lives
//! beside the component and is only assembled here (`[fetch]` in
//! [`crate::price::fetch`], `[auth]` in [`crate::inbound::auth`], the rule lists in [`crate::price::rules`], `[[catalog]]` in
//! [`crate::price::catalog`], `[schedule]`
//! in [`crate::watch::schedule`], `[delivery]` in [`crate::delivery::retry`],
//! `[rate_limits]` in [`crate::delivery::ratelimit`], `[log]` in
//! [`crate::ops::telemetry`]): components never depend on the configuration.
//! Loading (`load`), the semantic checks (`validate`) and reading secrets
//! (`secret`) live in their own files and are re-exported here.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::delivery::ratelimit::ChannelLimits;
use crate::delivery::retry::RetryPolicy;
use crate::inbound::auth::AuthConfig;
use crate::inbound::listener::ListenerConfig;
use crate::ops::telemetry::LogConfig;
use crate::price::catalog::{CatalogConfig, CatalogError, Catalogs};
use crate::price::engine::{extractor_from_config, EngineError, PriceEngine};
use crate::price::extract::Extractor;
use crate::price::fetch::FetchConfig;
use crate::price::rules::{JsonApiConfig, RuleError, Rules, SiteRuleConfig};
use crate::secret::Secret;
use crate::store::postgres::PostgresConfig;
use crate::store::SledStoreConfig;
use crate::watch::schedule::ScheduleConfig;
use crate::watch::trigger::TriggerConfig;

mod load;
mod secret;
mod validate;

pub use load::{load, load_str, ConfigError, ConfigErrors, ReadConfigError};
pub use secret::{
    read_secret, read_token, SecretError, ADMIN_TOKEN_CREDENTIAL, APP_PASSWORD_CREDENTIAL,
    MIN_ADMIN_TOKEN,
};

/// The fully commented example configuration; parsing it yields [`Config::default`].
pub const EXAMPLE_TOML: &str = include_str!("../../../config/pricewatch.toml");

const MIB: u64 = 1024 * 1024;

/// The whole daemon configuration. `Default` gives the documented defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub bot: BotConfig,
    pub auth: AuthConfig,
    pub storage: StorageConfig,
    pub alerts: AlertsConfig,
    pub delivery: RetryPolicy,
    pub notify: NotifyConfig,
    /// `[rate_limits.<channel id>]`: send windows per conversation and per channel; a
    /// channel not listed keeps its built-in row, one unknown to the table uses `default`.
    pub rate_limits: BTreeMap<String, ChannelLimits>,
    pub schedule: ScheduleConfig,
    pub fetch: FetchConfig,
    pub log: LogConfig,
    /// `[[site_rule]]` entries, in file order.
    pub site_rule: Vec<SiteRuleConfig>,
    /// `[[json_api]]` entries, in file order.
    pub json_api: Vec<JsonApiConfig>,
    /// `[[catalog]]` entries: the shops `watch <product name>` searches, in file order.
    pub catalog: Vec<CatalogConfig>,
}

impl Config {
    /// The `[[site_rule]]` and `[[json_api]]` entries, compiled.
    pub fn rules(&self) -> Result<Rules, Vec<RuleError>> {
        Rules::compile(&self.site_rule, &self.json_api)
    }

    /// The fetcher and the extractor this configuration describes.
    pub fn price_engine(&self) -> Result<PriceEngine, EngineError> {
        let rules = self.rules().map_err(EngineError::Rules)?;
        PriceEngine::from_config(&self.fetch, rules)
    }

    /// The `[[catalog]]` entries, compiled.
    pub fn catalogs(&self) -> Result<Catalogs, Vec<CatalogError>> {
        Catalogs::compile(&self.catalog)
    }

    /// The extractor alone, for reading saved pages (`probe --html`).
    pub fn extractor(&self) -> Result<Extractor, EngineError> {
        let rules = self.rules().map_err(EngineError::Rules)?;
        Ok(extractor_from_config(&self.fetch, rules))
    }
}

/// `[server]`: the HTTP endpoint the channel posts activities to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Listening address.
    pub bind: SocketAddr,
    /// Largest accepted request body, in bytes.
    pub body_limit: u64,
    /// Longest a client may take to send a request head.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Longest a request's whole body may take to arrive.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Longest a connection may stay open with no request in flight and no byte sent.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most connections open at once, before the open-file limit lowers it.
    pub max_connections: usize,
    /// A separate address for `/healthz`, `/readyz` and `/metrics` (e.g. loopback only,
    /// for the scraper); `None` serves them beside the bot.
    pub ops_bind: Option<SocketAddr>,
    /// How long in-flight turns may finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 3978)),
            body_limit: 256 * 1024,
            // nginx's defaults (client_header_timeout, client_body_timeout,
            // keepalive_timeout), which operators know from the proxies they run.
            header_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(75),
            // Far more than channels open to one bot, and about 110 MB at 11 KB per
            // open connection (release build, idle or kept alive).
            max_connections: 10_000,
            ops_bind: None,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl ServerConfig {
    /// The listener's limits.
    pub fn listener(&self) -> ListenerConfig {
        ListenerConfig {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
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
    /// Bytes of free disk space that writes leave on the data directory's file system.
    pub min_free: u64,
    /// Longest a turn or a loop waits for one store call.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Check a copy of the database at every start, not only after an unclean stop.
    pub full_check_at_start: bool,
    /// Which database holds the data.
    pub backend: Backend,
    /// File holding the PostgreSQL connection string (it may hold a password, so it is
    /// never in this file); without it, `$CREDENTIALS_DIRECTORY/postgres-url`.
    pub postgres_url_file: Option<PathBuf>,
    /// The PostgreSQL schema for pricewatch's tables (created when missing); unset: the
    /// connection's own `search_path`.
    pub postgres_schema: Option<String>,
    /// Most PostgreSQL connections one daemon holds.
    pub postgres_pool_size: usize,
    /// Longest one SQL statement may run before the server cancels it.
    #[serde(with = "humantime_serde")]
    pub postgres_statement_timeout: Duration,
    /// Longest a new PostgreSQL connection may take.
    #[serde(with = "humantime_serde")]
    pub postgres_connect_timeout: Duration,
    /// PEM certificates a TLS connection's server certificate must chain to (the
    /// connection string's `sslmode=require` asks for TLS); unset: the Mozilla roots.
    pub postgres_ca_file: Option<PathBuf>,
    /// How long a replica's hold on a shop, a channel's delivery or a claimed product or
    /// message lasts without renewal: how soon another replica takes over from one that
    /// died.
    #[serde(with = "humantime_serde")]
    pub postgres_lease: Duration,
}

/// `storage.backend`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Embedded, one process: the default.
    #[default]
    Sled,
    /// PostgreSQL, which several replicas may share.
    Postgres,
}

/// The credential name of the PostgreSQL connection string under `$CREDENTIALS_DIRECTORY`.
pub const POSTGRES_URL_CREDENTIAL: &str = "postgres-url";

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("pricewatch-data"),
            cache_capacity: 32 * MIB,
            flush_every: Duration::from_millis(500),
            history_retention: Duration::from_secs(365 * 24 * 3600),
            min_free: 64 * MIB,
            timeout: Duration::from_secs(10),
            full_check_at_start: false,
            backend: Backend::Sled,
            postgres_url_file: None,
            postgres_schema: None,
            postgres_pool_size: 16,
            postgres_statement_timeout: Duration::from_secs(5),
            postgres_connect_timeout: Duration::from_secs(5),
            postgres_ca_file: None,
            postgres_lease: Duration::from_secs(30),
        }
    }
}

impl StorageConfig {
    /// The guard in front of the store.
    pub fn guard(&self) -> crate::store::GuardConfig {
        let postgres = self.backend == Backend::Postgres;
        crate::store::GuardConfig {
            path: self.path.clone(),
            // The database server keeps its own disk.
            min_free: if postgres { 0 } else { self.min_free },
            timeout: self.timeout,
            async_backend: postgres,
        }
    }

    /// The PostgreSQL connection string, from `postgres_url_file` or else
    /// `<credentials_dir>/postgres-url`; `Ok(None)` when neither exists.
    pub fn postgres_url(
        &self,
        credentials_dir: Option<&Path>,
    ) -> Result<Option<Secret>, SecretError> {
        read_secret(
            self.postgres_url_file.as_deref(),
            credentials_dir,
            POSTGRES_URL_CREDENTIAL,
        )
    }

    /// The PostgreSQL backend's settings, with the connection string read already.
    pub fn postgres(&self, url: Secret) -> PostgresConfig {
        PostgresConfig {
            url,
            schema: self.postgres_schema.clone(),
            pool_size: self.postgres_pool_size,
            statement_timeout: self.postgres_statement_timeout,
            connect_timeout: self.postgres_connect_timeout,
            ca_file: self.postgres_ca_file.clone(),
        }
    }

    /// The sled backend's settings.
    pub fn sled(&self) -> SledStoreConfig {
        SledStoreConfig {
            path: self.path.clone(),
            cache_capacity: self.cache_capacity,
            flush_every: self.flush_every,
            full_check_at_start: self.full_check_at_start,
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

impl NotifyConfig {
    /// Reads the admin token from `admin_token_file`, else from
    /// `<credentials_dir>/admin-token`; `Ok(None)` when neither exists.
    pub fn admin_token(
        &self,
        credentials_dir: Option<&Path>,
    ) -> Result<Option<Secret>, SecretError> {
        read_token(
            self.admin_token_file.as_deref(),
            credentials_dir,
            ADMIN_TOKEN_CREDENTIAL,
        )
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
    pub fn trigger(&self) -> TriggerConfig {
        TriggerConfig {
            hysteresis: self.hysteresis,
            confirmations: self.confirmations,
        }
    }
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

/// Helpers shared by the unit tests of this folder, most of which load a
/// small document and look at where each error was placed.
#[cfg(test)]
mod testing {
    use super::{load_str, ConfigError};

    pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub(super) fn errors(text: &str, vars: &[(&str, &str)]) -> Vec<ConfigError> {
        load_str("test.toml", text, env(vars)).unwrap_err().errors
    }

    /// "origin:line key" of each error, the part tests care most about.
    pub(super) fn places(errors: &[ConfigError]) -> Vec<String> {
        let place = |e: &ConfigError| match e.line {
            Some(line) => format!("{}:{line} {}", e.origin, e.key),
            None => format!("{} {}", e.origin, e.key),
        };
        errors.iter().map(place).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::testing::{env, errors, places};
    use super::*;

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
    fn defaults_match_the_pure_modules_defaults() {
        let c = Config::default();
        assert_eq!(c.alerts.trigger(), TriggerConfig::default());
        assert_eq!(
            crate::watch::gate::GateConfig::from(&c.fetch),
            crate::watch::gate::GateConfig::default()
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
        assert_eq!(config.log.format, crate::ops::telemetry::LogFormat::Json);
    }
}
