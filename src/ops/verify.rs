//! `pricewatch verify`: checks a stopped daemon's data directory as `serve` does before it
//! starts (the store holds at least what it recorded; see `store::sled::integrity`), without
//! writing to it.

use std::path::PathBuf;

use crate::error::Chain;
use crate::ops::admin::AdminError;
use crate::ops::config::{Backend, Config};
use crate::ops::CommandOutput;
use crate::store::{SledStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Migrate(#[from] crate::ops::migrate::MigrateError),
    #[error("there is no data directory at {0}; check storage.path in the configuration")]
    NoData(PathBuf),
    #[error(transparent)]
    Admin(#[from] AdminError),
}

/// Runs `pricewatch verify`: "ok: …" and success for a sound store, the damage and what to
/// do about it (as `serve` says it) and failure for a damaged one. On PostgreSQL, which
/// keeps its own integrity, it checks that the schema is current and says what it holds,
/// without changing anything.
pub fn verify_command(config: &Config) -> Result<CommandOutput, VerifyError> {
    if config.storage.backend == Backend::Postgres {
        return verify_postgres(config);
    }
    let data = &config.storage.path;
    if !data.is_dir() {
        return Err(VerifyError::NoData(data.clone()));
    }
    match SledStore::verify(data) {
        Ok(counts) => Ok(CommandOutput {
            stdout: format!("ok: {} in {}\n", counts.summary(), data.display()),
            stderr: String::new(),
            ok: true,
        }),
        Err(e @ StoreError::Damaged { .. }) => Ok(CommandOutput {
            stdout: String::new(),
            stderr: format!("pricewatch: {}\n", Chain(&e)),
            ok: false,
        }),
        Err(e @ StoreError::Open { .. }) => Err(AdminError::Open(e).into()),
        Err(e) => Err(AdminError::Store(e).into()),
    }
}

fn verify_postgres(config: &Config) -> Result<CommandOutput, VerifyError> {
    use crate::store::postgres::{migrate, PgStore};
    let postgres = crate::ops::migrate::postgres_config(config)?;
    let place = crate::ops::admin::data_place(config);
    let rt = crate::ops::admin::runtime()?;
    rt.block_on(async {
        let client = postgres
            .connect()
            .await
            .map_err(crate::ops::migrate::MigrateError::from)?;
        let state = migrate::state(&client)
            .await
            .map_err(crate::ops::migrate::MigrateError::from)?;
        if !state.is_current() {
            let why = match state.newer() {
                Some(newer) => newer.to_string(),
                None => format!(
                    "the schema is behind this build ({} migration(s) pending): run `pricewatch migrate`",
                    state.pending.len()
                ),
            };
            return Ok(CommandOutput {
                stdout: String::new(),
                stderr: format!("pricewatch: {place}: {why}\n"),
                ok: false,
            });
        }
        // Current: opening applies nothing.
        let store = PgStore::open(&postgres)
            .await
            .map_err(AdminError::from)?;
        let stats = crate::store::Store::stats(&store)
            .await
            .map_err(AdminError::from)?;
        Ok(CommandOutput {
            stdout: format!(
                "ok: {} conversations, {} watches, {} products, {} queued messages, {} dead letters in {place}\n",
                stats.references, stats.watches, stats.products, stats.outbox, stats.dead_letters
            ),
            stderr: String::new(),
            ok: true,
        })
    })
}
