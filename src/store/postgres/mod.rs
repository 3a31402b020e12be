//! The PostgreSQL backend (`storage.backend =
//! "postgres"`). The connection, its settings and the schema's migrations live here; the
//! `Store` methods in `store`.
//!
//! tokio-postgres runs on the daemon's own runtime and needs no database to build: queries
//! are plain strings, checked by the contract tests against a real server rather than by
//! compile-time macros. deadpool-postgres keeps the connections.

pub mod migrate;
mod replicas;
mod store;

pub use store::PgStore;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::secret::Secret;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// The connection string (`postgres://…` or `host=… user=…`); it may hold a password,
    /// so it is never logged or shown.
    pub url: Secret,
    /// The schema pricewatch's tables live in (created when missing); `None`: the
    /// connection's own `search_path` (usually `public`).
    pub schema: Option<String>,
    /// Most connections this daemon holds open.
    pub pool_size: usize,
    /// Longest one statement may run before the server cancels it.
    pub statement_timeout: Duration,
    /// Longest a new connection may take.
    pub connect_timeout: Duration,
    /// PEM certificates the server's must chain to when the connection string asks for
    /// TLS (`sslmode=require`); `None`: the Mozilla roots a public CA's certificate
    /// chains to.
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    // The parser's own message may quote the string, password and all: not shown.
    #[error(
        "the PostgreSQL connection string is not valid (expected postgres://user@host/db or \
         host=… user=… dbname=…)"
    )]
    InvalidUrl,
    #[error(
        "the PostgreSQL schema name {0:?} is not a plain identifier (letters, digits and _, \
         not starting with a digit, at most 63)"
    )]
    InvalidSchema(String),
    #[error("storage.postgres_ca_file: cannot read {path}")]
    CaFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("storage.postgres_ca_file: {path} holds no PEM certificate pricewatch can use")]
    NoCertificate { path: std::path::PathBuf },
    #[error("cannot set up TLS for PostgreSQL")]
    TlsSetup(#[source] rustls::Error),
    #[error("cannot connect to PostgreSQL")]
    Connect(#[source] tokio_postgres::Error),
    #[error("PostgreSQL failed {what}")]
    Query {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "the database's pricewatch schema is at version {found}, newer than this build knows \
         ({known}); run the newer pricewatch that migrated it"
    )]
    Newer { found: u32, known: u32 },
    #[error("migration {version} ({name}) failed; nothing of it was applied")]
    Migration {
        version: u32,
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// A schema name safe to put in SQL and in `search_path`.
pub fn valid_schema(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl PostgresConfig {
    /// The driver's settings: the connection string, plus the statement timeout and the
    /// schema as session options (after any the string sets, so these win).
    pub fn driver_config(&self) -> Result<tokio_postgres::Config, PgError> {
        let mut config: tokio_postgres::Config =
            self.url.expose().parse().map_err(|_| PgError::InvalidUrl)?;
        let mut options = config.get_options().unwrap_or_default().to_owned();
        options.push_str(&format!(
            " -c statement_timeout={}",
            self.statement_timeout.as_millis().max(1)
        ));
        if let Some(schema) = &self.schema {
            if !valid_schema(schema) {
                return Err(PgError::InvalidSchema(schema.clone()));
            }
            options.push_str(&format!(" -c search_path={schema}"));
        }
        config.options(options.trim());
        config.connect_timeout(self.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("pricewatch");
        }
        Ok(config)
    }

    /// One connection outside the pool (migrations, `migrate --check`), its driver task
    /// spawned on the current runtime.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, PgError> {
        let config = self.driver_config()?;
        match self.tls()? {
            Some(tls) => spawn_connection(&config, tls).await,
            None => spawn_connection(&config, NoTls).await,
        }
    }

    /// The TLS connector when the connection string asks for TLS (`sslmode=require`):
    /// rustls, which always verifies the server's certificate and name, so `require`
    /// here is libpq's `verify-full`. Without it (`disable`, or `prefer`, the default)
    /// the connection is plain, as libpq's `prefer` is with a server that offers no TLS.
    pub fn tls(&self) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, PgError> {
        if self.driver_config()?.get_ssl_mode() != tokio_postgres::config::SslMode::Require {
            return Ok(None);
        }
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Some(path) => {
                use rustls::pki_types::pem::PemObject;
                let pem = std::fs::read(path).map_err(|source| PgError::CaFile {
                    path: path.clone(),
                    source,
                })?;
                let certs =
                    rustls::pki_types::CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok);
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(PgError::NoCertificate { path: path.clone() });
                }
            }
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(PgError::TlsSetup)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
    }

    /// The pool the store draws from. Connects lazily: call [`migrate::apply`] or
    /// [`migrate::state`] first to find out whether the database answers.
    pub fn pool(&self) -> Result<Pool, PgError> {
        let config = self.driver_config()?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match self.tls()? {
            Some(tls) => Manager::from_config(config, tls, manager_config),
            None => Manager::from_config(config, NoTls, manager_config),
        };
        Pool::builder(manager)
            .max_size(self.pool_size.max(1))
            .wait_timeout(Some(self.connect_timeout))
            .create_timeout(Some(self.connect_timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|_| PgError::InvalidUrl)
    }
}

/// Connects with `tls` and spawns the connection's driver task on the current runtime.
async fn spawn_connection<T>(
    config: &tokio_postgres::Config,
    tls: T,
) -> Result<tokio_postgres::Client, PgError>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await.map_err(PgError::Connect)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "a PostgreSQL connection ended");
        }
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, schema: Option<&str>) -> PostgresConfig {
        PostgresConfig {
            url: Secret::new(url),
            schema: schema.map(str::to_owned),
            pool_size: 4,
            statement_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            ca_file: None,
        }
    }

    #[test]
    fn the_session_options_follow_the_strings_own() {
        let c = config(
            "postgres://pw:hunter2@db.example:5433/pw?options=-c%20work_mem%3D4MB",
            Some("pricewatch"),
        )
        .driver_config()
        .unwrap();
        assert_eq!(
            c.get_options(),
            Some("-c work_mem=4MB -c statement_timeout=5000 -c search_path=pricewatch")
        );
        assert_eq!(c.get_application_name(), Some("pricewatch"));
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(3)));
    }

    #[test]
    fn a_bad_string_or_schema_is_refused_without_showing_the_string() {
        let err = config("postgres://pw:hunter2@db.example:notaport/pw", None)
            .driver_config()
            .unwrap_err();
        assert!(matches!(err, PgError::InvalidUrl));
        assert!(!crate::error::Chain(&err).to_string().contains("hunter2"));
        for bad in ["Public", "1abc", "a-b", "a b", "x;drop", ""] {
            assert!(
                matches!(
                    config("host=localhost", Some(bad)).driver_config(),
                    Err(PgError::InvalidSchema(_))
                ),
                "{bad:?}"
            );
        }
        assert!(valid_schema("pricewatch_2"));
    }
}
