//! `pricewatch migrate [--check]`: the PostgreSQL schema brought to this build's version,
//! or (`--check`) its state reported without a change. `serve` migrates by itself at
//! start-up; the command is for an operator who wants to see or do it first (before a
//! rolling upgrade of the replicas, say).

use std::fmt::Write;

use crate::ops::config::{Backend, Config, POSTGRES_URL_CREDENTIAL};
use crate::ops::CommandOutput;
use crate::store::postgres::migrate::{self, latest};
use crate::store::postgres::{PgError, PostgresConfig};

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "storage.backend is \"sled\": there is nothing to migrate (the sled store migrates \
         itself when it opens); set storage.backend = \"postgres\""
    )]
    NotPostgres,
    #[error(
        "storage.backend is \"postgres\" but no connection string was found: set \
         storage.postgres_url_file or provide the {POSTGRES_URL_CREDENTIAL} credential"
    )]
    NoUrl,
    #[error("cannot read the PostgreSQL connection string")]
    Secret(#[from] crate::ops::config::SecretError),
    #[error(transparent)]
    Postgres(#[from] PgError),
}

/// The PostgreSQL settings `config` names, with the connection string read (from its file
/// or systemd's credentials directory).
pub fn postgres_config(config: &Config) -> Result<PostgresConfig, MigrateError> {
    if config.storage.backend != Backend::Postgres {
        return Err(MigrateError::NotPostgres);
    }
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
    let url = config
        .storage
        .postgres_url(credentials.as_deref())?
        .ok_or(MigrateError::NoUrl)?;
    let postgres = config.storage.postgres(url);
    // Parsed now (and the CA file read, when TLS is asked for), so a bad string or file is
    // named before anything connects.
    postgres.driver_config()?;
    postgres.tls()?;
    Ok(postgres)
}

/// Runs the command: with `check`, exit status 0 when the schema is current and 1 when
/// migrations are pending or a newer build migrated it; without, applies what is pending.
pub async fn migrate_command(config: &Config, check: bool) -> Result<CommandOutput, MigrateError> {
    let postgres = postgres_config(config)?;
    let where_ = postgres.schema.as_deref().map_or_else(
        || "the connection's search_path".to_owned(),
        |s| format!("schema {s}"),
    );
    if check {
        let client = postgres.connect().await?;
        let state = migrate::state(&client).await?;
        let mut stdout = String::new();
        let mut stderr = String::new();
        let at = state.applied.iter().max().copied().unwrap_or(0);
        if let Some(newer) = state.newer() {
            let _ = writeln!(stderr, "pricewatch: {newer}");
        } else if state.pending.is_empty() {
            let _ = writeln!(stdout, "ok: schema version {at} in {where_}, current");
        } else {
            let _ = writeln!(
                stdout,
                "schema version {at} in {where_}; this build needs {}; pending:",
                latest()
            );
            for m in &state.pending {
                let _ = writeln!(stdout, "  {} {}", m.version, m.name);
            }
            let _ = writeln!(
                stdout,
                "run `pricewatch migrate` (or start the daemon) to apply"
            );
        }
        return Ok(CommandOutput {
            ok: state.is_current(),
            stdout,
            stderr,
        });
    }
    let applied = migrate::connect_and_apply(&postgres).await?;
    let stdout = if applied.is_empty() {
        format!(
            "ok: schema version {} in {where_}, already current\n",
            latest()
        )
    } else {
        let list: Vec<String> = applied.iter().map(u32::to_string).collect();
        format!(
            "ok: applied {} in {where_}; schema version {}\n",
            list.join(", "),
            latest()
        )
    };
    Ok(CommandOutput {
        stdout,
        stderr: String::new(),
        ok: true,
    })
}
