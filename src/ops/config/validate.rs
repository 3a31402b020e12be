//! Semantic checks on a configuration that deserialized: ranges, keys that
//! depend on each other, and patterns serde cannot express.
//!
//! Separate from loading because it sees only the typed [`Config`]; the
//! loader maps each [`Violation`] back to the line or variable that set it.

use std::time::Duration;

use rust_decimal::Decimal;

use super::{AppType, Config, MIB};
use crate::delivery::retry::RetryPolicy;
use crate::price::fetch::{parse_network, FetchConfig};
use crate::price::rules::RuleError;

const BODY_LIMIT_RANGE: std::ops::RangeInclusive<u64> = 1024..=64 * MIB;
/// A connection limit under a second would cut real clients on a slow network; over an
/// hour it no longer protects anything.
const CONNECTION_TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(3600);
/// Up to Linux's default `fs.nr_open`, the most descriptors a process can have.
const MAX_CONNECTIONS_RANGE: std::ops::RangeInclusive<usize> = 1..=1 << 20;
const MAX_REDIRECTS: usize = 10;
const MIN_CACHE_CAPACITY: u64 = MIB;
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(3600);
/// A lease is renewed every third of its time: below 3 s that is a database round trip
/// every second per shop and channel; above 10 min a dead replica's work waits too long.
const MIN_LEASE: Duration = Duration::from_secs(3);
const MAX_LEASE: Duration = Duration::from_secs(600);
const KEY_REFRESH_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(60)..=Duration::from_secs(7 * 24 * 3600);
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// A semantic problem at `key`. `near` is the key to point at when `key`
/// itself was not set, e.g. the `app_type` that requires a `tenant_id`.
pub(super) struct Violation {
    pub(super) key: &'static str,
    pub(super) near: &'static str,
    pub(super) message: String,
}

pub(super) fn validate(config: &Config) -> Vec<Violation> {
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
        ("server.header_timeout", config.server.header_timeout),
        ("server.body_timeout", config.server.body_timeout),
        ("server.idle_timeout", config.server.idle_timeout),
    ] {
        if !CONNECTION_TIMEOUT_RANGE.contains(&duration) {
            fail(
                key,
                format!(
                    "must be between 1s and 1h, got {}",
                    humantime::format_duration(duration)
                ),
            );
        }
    }
    let max_connections = config.server.max_connections;
    if !MAX_CONNECTIONS_RANGE.contains(&max_connections) {
        fail(
            "server.max_connections",
            format!(
                "must be between {} and {}, got {max_connections}",
                MAX_CONNECTIONS_RANGE.start(),
                MAX_CONNECTIONS_RANGE.end()
            ),
        );
    }
    for (key, duration) in [
        ("server.shutdown_grace", config.server.shutdown_grace),
        ("bot.reply_timeout", config.bot.reply_timeout),
        ("bot.connect_timeout", config.bot.connect_timeout),
        ("storage.flush_every", config.storage.flush_every),
        ("storage.timeout", config.storage.timeout),
        (
            "storage.postgres_statement_timeout",
            config.storage.postgres_statement_timeout,
        ),
        (
            "storage.postgres_connect_timeout",
            config.storage.postgres_connect_timeout,
        ),
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
    let lease = config.storage.postgres_lease;
    if !(MIN_LEASE..=MAX_LEASE).contains(&lease) {
        fail(
            "storage.postgres_lease",
            format!(
                "must be between {} and {}, got {}",
                humantime::format_duration(MIN_LEASE),
                humantime::format_duration(MAX_LEASE),
                humantime::format_duration(lease)
            ),
        );
    }
    if !(1..=1000).contains(&config.storage.postgres_pool_size) {
        fail(
            "storage.postgres_pool_size",
            format!(
                "must be between 1 and 1000, got {}",
                config.storage.postgres_pool_size
            ),
        );
    }
    if let Some(schema) = &config.storage.postgres_schema {
        if !crate::store::postgres::valid_schema(schema) {
            fail(
                "storage.postgres_schema",
                format!(
                    "{schema:?} is not a plain lower-case identifier (letters, digits and _, \
                     not starting with a digit, at most 63)"
                ),
            );
        }
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
        if let Err(e) = check_host_pattern(host) {
            fail("bot.service_url_hosts", e.to_string());
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
    if let Err(errors) = config.rules() {
        for e in errors {
            let key = match e {
                RuleError::Site { .. } => "site_rule",
                RuleError::Api { .. } => "json_api",
            };
            fail(key, e.to_string());
        }
    }
    if let Err(errors) = config.catalogs() {
        for e in errors {
            fail("catalog", e.to_string());
        }
    }
    if let Err(e) = check_log_level(&config.log.level) {
        fail("log.level", e.to_string());
    }
    if config.auth.clock_skew > MAX_CLOCK_SKEW {
        fail(
            "auth.clock_skew",
            format!(
                "must be at most {}, got {}",
                humantime::format_duration(MAX_CLOCK_SKEW),
                humantime::format_duration(config.auth.clock_skew)
            ),
        );
    }
    if !KEY_REFRESH_RANGE.contains(&config.auth.key_refresh) {
        fail(
            "auth.key_refresh",
            format!(
                "must be between 1m and 7days, got {}",
                humantime::format_duration(config.auth.key_refresh)
            ),
        );
    }
    for (key, value) in [
        ("auth.openid_metadata_url", &config.auth.openid_metadata_url),
        (
            "auth.emulator_openid_metadata_url",
            &config.auth.emulator_openid_metadata_url,
        ),
    ] {
        let allowed = url::Url::parse(value.trim())
            .is_ok_and(|u| crate::inbound::auth::token::is_allowed_key_url(&u));
        if !allowed {
            fail(
                key,
                format!("{value:?} is not an https URL (plain http is allowed to loopback only)"),
            );
        }
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

/// A `service_url_hosts` entry that [`check_host_pattern`] refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
enum HostPatternError {
    #[error("{0:?} is not a host name or `*.` followed by one (no scheme, port or path)")]
    NotAHost(String),
    #[error("{0:?} would match a whole top-level domain")]
    WholeTopLevelDomain(String),
}

/// A `service_url_hosts` entry: a host name, or `*.` and a name with at least one dot.
fn check_host_pattern(pattern: &str) -> Result<(), HostPatternError> {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    let valid = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !valid {
        return Err(HostPatternError::NotAHost(pattern.to_owned()));
    }
    if pattern.starts_with("*.") && !name.contains('.') {
        return Err(HostPatternError::WholeTopLevelDomain(pattern.to_owned()));
    }
    Ok(())
}

fn validate_delivery(d: &RetryPolicy, fail: &mut impl FnMut(&'static str, String)) {
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

/// A `log.level` that [`check_log_level`] refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
enum LogLevelError {
    #[error("must not be empty")]
    Empty,
    #[error("empty directive in {filter:?}")]
    EmptyDirective { filter: String },
    #[error("missing target before '=' in {directive:?}")]
    MissingTarget { directive: String },
    #[error(
        "invalid level {level:?} in {directive:?}, expected one of {}",
        LOG_LEVELS.join(", ")
    )]
    InvalidLevel { level: String, directive: String },
}

/// A deliberately simple subset of tracing's `EnvFilter` syntax:
/// comma-separated `level` or `target=level` (the target may carry span
/// filters, which are not checked).
fn check_log_level(filter: &str) -> Result<(), LogLevelError> {
    if filter.trim().is_empty() {
        return Err(LogLevelError::Empty);
    }
    for directive in filter.split(',').map(str::trim) {
        let (target, level) = match directive.rsplit_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        if directive.is_empty() {
            return Err(LogLevelError::EmptyDirective {
                filter: filter.to_owned(),
            });
        }
        if target == Some("") {
            return Err(LogLevelError::MissingTarget {
                directive: directive.to_owned(),
            });
        }
        if !LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(LogLevelError::InvalidLevel {
                level: level.to_owned(),
                directive: directive.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ops::config::testing::{errors, places};
    use crate::ops::config::{load_str, BotConfig};

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
    fn postgres_settings_are_checked() {
        let text = "[storage]\nbackend = \"postgres\"\npostgres_schema = \"Price-Watch\"\n\
                    postgres_pool_size = 0\npostgres_statement_timeout = \"0s\"\n";
        let errs = errors(text, &[]);
        assert_eq!(
            places(&errs),
            [
                "test.toml:3 storage.postgres_schema",
                "test.toml:4 storage.postgres_pool_size",
                "test.toml:5 storage.postgres_statement_timeout",
            ]
        );
        assert!(errors("[storage]\nbackend = \"mysql\"\n", &[])[0]
            .message
            .contains("postgres"));
        let ok = load_str(
            "t.toml",
            "[storage]\nbackend = \"postgres\"\npostgres_schema = \"pw_1\"\n",
            [],
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn connection_limits_are_checked() {
        let text = "[server]\nheader_timeout = \"0s\"\nbody_timeout = \"500ms\"\n\
                    idle_timeout = \"2h\"\nmax_connections = 0\n";
        let errs = errors(text, &[]);
        assert_eq!(
            places(&errs),
            [
                "test.toml:2 server.header_timeout",
                "test.toml:3 server.body_timeout",
                "test.toml:4 server.idle_timeout",
                "test.toml:5 server.max_connections",
            ]
        );
        assert!(errs[2].message.contains("between 1s and 1h"), "{}", errs[2]);
        assert_eq!(
            places(&errors("[server]\nmax_connections = 2000000\n", &[])),
            ["test.toml:2 server.max_connections"]
        );
        let ok = "[server]\nheader_timeout = \"10s\"\nidle_timeout = \"1h\"\nmax_connections = 1\n";
        let config = load_str("test.toml", ok, []).unwrap();
        let listener = config.server.listener();
        assert_eq!(listener.header_timeout, Duration::from_secs(10));
        assert_eq!(listener.idle_timeout, Duration::from_secs(3600));
        assert_eq!(listener.max_connections, 1);
    }

    #[test]
    fn catalogues_are_compiled_and_checked() {
        let good = "[[catalog]]\nname = \"Kitchen Co\"\nsearch_url = \"https://api.kitchen.example/s?q={query}\"\n\
                    results = \"/items\"\ntitle = \"/name\"\nlink = \"/url\"\nprice = \"/price\"\ntimeout = \"3s\"\n\n\
                    [[catalog]]\nkind = \"shopify\"\nshop = \"skillets.example\"\ncurrency = \"CAD\"\n";
        let config = load_str("test.toml", good, []).unwrap();
        let catalogs = config.catalogs().unwrap();
        let names: Vec<&str> = catalogs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Kitchen Co", "skillets.example"]);

        let bad = "[server]\nbind = \"127.0.0.1:1\"\n\n[[catalog]]\nkind = \"shopify\"\nshop = \"skillets.example\"\nprice = \"/price\"\n";
        let text = load_str("test.toml", bad, []).unwrap_err().to_string();
        assert!(
            text.contains("test.toml:4: catalog: catalog 1: price is for kind = \"json\""),
            "{text}"
        );
        let unknown = "[[catalog]]\nkind = \"magento\"\n";
        let text = load_str("test.toml", unknown, []).unwrap_err().to_string();
        assert!(text.contains("magento"), "{text}");
    }

    #[test]
    fn site_and_api_rules_are_compiled_and_checked() {
        let good = "[[site_rule]]\nhost = \"shop.example\"\nselector = \"span.price\"\n\n\
                    [[json_api]]\nurl = \"https://shop.example/products/*.js\"\n\
                    price_pointer = \"/variants/0/price\"\ncurrency = \"USD\"\nminor_units = true\n";
        let config = load_str("test.toml", good, []).unwrap();
        assert_eq!(config.site_rule[0].selector.as_deref(), Some("span.price"));
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

        let bad = "[[site_rule]]\nhost = \"amazon.de\"\nselectors = [\"b\", { whole = \"c[\" }]\ncurrency = \"XX\"\n";
        let text = load_str("test.toml", bad, []).unwrap_err().to_string();
        assert!(
            text.contains("site_rule: site rule 1: selectors[1].whole: bad site selector `c[`")
                && text.contains("site_rule: site rule 1: currency \"XX\""),
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
    fn refusals_are_worded_for_check_config() {
        let shown = |filter: &str| check_log_level(filter).unwrap_err().to_string();
        assert_eq!(shown(" "), "must not be empty");
        assert_eq!(shown("info,"), "empty directive in \"info,\"");
        assert_eq!(shown("=info"), "missing target before '=' in \"=info\"");
        assert_eq!(
            shown("x=verbose"),
            "invalid level \"verbose\" in \"x=verbose\", \
             expected one of trace, debug, info, warn, error, off"
        );
        assert_eq!(
            check_host_pattern("https://x.example/")
                .unwrap_err()
                .to_string(),
            "\"https://x.example/\" is not a host name or `*.` followed by one \
             (no scheme, port or path)"
        );
        assert_eq!(
            check_host_pattern("*.com").unwrap_err().to_string(),
            "\"*.com\" would match a whole top-level domain"
        );
    }
}
