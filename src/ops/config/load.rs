//! Loading a configuration: the file with the line of every key, the
//! `PRICEWATCH__SECTION__KEY` overrides, and the errors that point back at
//! the line or variable that set a bad value.
//!
//! Loading reports every problem at once rather than stopping at the first,
//! so `pricewatch check-config` can list them all. serde stops at its first
//! error, hence the two passes: each key found in the file or the environment
//! is first deserialized on its own (as a one-key document into [`Config`],
//! which keeps the struct definitions the only schema), then the keys that
//! passed are deserialized together and validated semantically.
//!
//! Apart from the section types so that the schema reads on its own, without
//! the machinery that locates errors.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::validate::validate;
use super::Config;

const ENV_PREFIX: &str = "PRICEWATCH__";
/// Set by systemd's `StateDirectory=` (`/var/lib/pricewatch`): a relative `storage.path`
/// is resolved under it, so the service keeps its data where systemd gave it room
/// (`PathBuf::join` leaves an absolute path as it is).
const STATE_DIRECTORY: &str = "STATE_DIRECTORY";
const ENV_SEPARATOR: &str = "__";

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
#[error("cannot read {}", path.display())]
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
        state_directory: None,
    };
    loader.read_file()?;
    loader.read_env(env);
    let mut config = loader.check_entries();
    if let (Some(config), Some(state)) = (config.as_mut(), loader.state_directory.as_ref()) {
        config.storage.path = state.join(&config.storage.path);
    }
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
    /// `$STATE_DIRECTORY`, under which a relative `storage.path` is resolved.
    state_directory: Option<PathBuf>,
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
            if let Err(rejected) =
                check(std::slice::from_ref(&section), empty_table(), Part::Section)
            {
                self.errors.push(ConfigError {
                    origin: self.origin.to_owned(),
                    line: Some(line),
                    key: section,
                    message: rejected.to_string(),
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
            if var == STATE_DIRECTORY && !raw.is_empty() {
                // systemd's StateDirectory= may list several; the first is the service's.
                let first = raw.split(':').next().unwrap_or_default();
                self.state_directory = Some(PathBuf::from(first));
                continue;
            }
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
                    check(std::slice::from_ref(section), empty_table(), Part::Section)
                }
                _ => Ok(()),
            }
            .and_then(|()| check(&entry.path, entry.value.clone(), Part::Key));
            if let (Err(_), Source::Env { raw, .. }) = (&result, &entry.source) {
                // `PRICEWATCH__BOT__NAME=2024` means the string, not a number.
                let as_string = toml::Value::String(raw.clone());
                if entry.value != as_string
                    && check(&entry.path, as_string.clone(), Part::Key).is_ok()
                {
                    entry.value = as_string;
                    result = Ok(());
                }
            }
            match result {
                Ok(()) => insert_path(&mut merged, &entry.path, entry.value.clone()),
                Err(rejected) => {
                    let (origin, line) = describe(self.origin, &entry.source);
                    self.errors.push(ConfigError {
                        origin,
                        line,
                        key: key.clone(),
                        message: with_secret_hint(&entry.path, &rejected),
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

/// What [`check`] deserializes: a section alone, or a key within its section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Section,
    Key,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Section => "section",
            Part::Key => "key",
        })
    }
}

/// Why [`check`] refused a value; `Display` is the message shown at its key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
enum Rejected {
    /// serde's "unknown field", reworded for what the operator wrote (`rest` is serde's
    /// text after "unknown field": the name and the expected ones).
    #[error("unknown {part}{rest}")]
    Unknown { part: Part, rest: String },
    /// Any other serde error (invalid type, invalid value), as serde words it.
    #[error("{0}")]
    Invalid(String),
}

/// Deserializes `value` placed at `path` in an otherwise empty document, so
/// serde's own errors (unknown field, invalid type) describe just this key.
fn check(path: &[String], value: toml::Value, part: Part) -> Result<(), Rejected> {
    let mut root = toml::Table::new();
    insert_path(&mut root, path, value);
    match toml::Value::Table(root).try_into::<Config>() {
        Ok(_) => Ok(()),
        Err(err) => {
            let message = err.message();
            Err(match message.strip_prefix("unknown field") {
                Some(rest) => Rejected::Unknown {
                    part,
                    rest: rest.to_owned(),
                },
                None => Rejected::Invalid(message.to_owned()),
            })
        }
    }
}

fn with_secret_hint(path: &[String], rejected: &Rejected) -> String {
    let message = rejected.to_string();
    let Some(key) = path.last() else {
        return message;
    };
    let secretish = ["password", "secret", "token", "postgres_url"]
        .iter()
        .any(|s| key.contains(s));
    let unknown_key = matches!(
        rejected,
        Rejected::Unknown {
            part: Part::Key,
            ..
        }
    );
    if secretish && !key.ends_with("_file") && unknown_key {
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use rust_decimal::Decimal;

    use super::*;

    #[test]
    fn a_relative_storage_path_lives_under_the_state_directory() {
        let state = |v: &str| vec![("STATE_DIRECTORY".to_owned(), v.to_owned())];
        let c = load_str("t", "", state("/var/lib/pricewatch")).unwrap();
        assert_eq!(
            c.storage.path,
            PathBuf::from("/var/lib/pricewatch/pricewatch-data")
        );
        let c = load_str(
            "t",
            "[storage]\npath = \"/srv/pw\"\n",
            state("/var/lib/pricewatch"),
        )
        .unwrap();
        assert_eq!(c.storage.path, PathBuf::from("/srv/pw"));
        let c = load_str("t", "", state("/var/lib/a:/var/lib/b")).unwrap();
        assert_eq!(c.storage.path, PathBuf::from("/var/lib/a/pricewatch-data"));
        let c = load_str("t", "", Vec::new()).unwrap();
        assert_eq!(c.storage.path, PathBuf::from("pricewatch-data"));
    }
    use crate::ops::config::testing::{env, errors, places};

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
             `bind`, `body_limit`, `header_timeout`, `body_timeout`, `idle_timeout`, \
             `max_connections`, `ops_bind`, `shutdown_grace`"
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
        let errs = errors(
            "[storage]\npostgres_url = \"postgres://pw:hunter2@db/pw\"\n",
            &[],
        );
        assert_eq!(places(&errs), ["test.toml:2 storage.postgres_url"]);
        assert!(errs[0].message.contains("postgres_url_file"), "{}", errs[0]);
        assert!(!errs[0].to_string().contains("hunter2"));
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
}
