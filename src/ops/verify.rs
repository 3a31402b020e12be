//! `pricewatch verify`: checks a stopped daemon's data directory as `serve` does before it
//! starts (the store holds at least what it recorded; see `store::sled::integrity`), without
//! writing to it.

use std::path::PathBuf;

use crate::error::Chain;
use crate::ops::admin::AdminError;
use crate::ops::config::Config;
use crate::ops::CommandOutput;
use crate::store::{SledStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("there is no data directory at {0}; check storage.path in the configuration")]
    NoData(PathBuf),
    #[error(transparent)]
    Admin(#[from] AdminError),
}

/// Runs `pricewatch verify`: "ok: …" and success for a sound store, the damage and what to
/// do about it (as `serve` says it) and failure for a damaged one.
pub fn verify_command(config: &Config) -> Result<CommandOutput, VerifyError> {
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
