//! The operator's commands on a stopped daemon's data: `pricewatch outbox` lists what
//! waits to be delivered and what was given up on; `pricewatch outbox retry` re-queues
//! dead letters. sled's directory lock makes a running daemon's data unavailable here,
//! and [`crate::store::SledStore::open`] says so. On PostgreSQL (`storage.backend =
//! "postgres"`) they work beside running daemons, each change in its own transaction.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::domain::OutboxEntry;
use crate::ops::config::{Backend, Config};
use crate::ops::CommandOutput;
use crate::store::postgres::{PgError, PgStore};
use crate::store::{Damage, SledStore, Store, StoreError};

/// Most entries listed per section; the count is always exact.
pub const LIST_LIMIT: usize = 1000;

/// Which dead letters to re-queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeue {
    Ids(Vec<u64>),
    AllDead,
}

/// What `retry` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requeued {
    pub requeued: Vec<u64>,
    /// Ids that are not dead letters (delivered, still pending, or never existed).
    pub not_dead: Vec<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("stop the daemon first: operator commands read and change the data directory only while it is not running")]
    Open(#[source] StoreError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Database(#[from] crate::ops::migrate::MigrateError),
    #[error(transparent)]
    Postgres(#[from] PgError),
}

/// Runs `pricewatch outbox` (`action: None`) or `pricewatch outbox retry` on the data
/// directory `config` names, which a running daemon must not hold.
pub fn outbox_command(
    config: &Config,
    action: Option<Requeue>,
) -> Result<CommandOutput, AdminError> {
    let rt = runtime()?;
    let store = open_store(config, &rt)?;
    let now = SystemClock.now_ms();
    rt.block_on(async {
        let Some(which) = action else {
            return Ok(CommandOutput {
                stdout: outbox_listing(store.as_ref(), now).await?,
                stderr: String::new(),
                ok: true,
            });
        };
        let done = requeue(store.as_ref(), which, now).await?;
        let mut out = CommandOutput {
            stdout: format!("re-queued {} dead letter(s)\n", done.requeued.len()),
            stderr: String::new(),
            ok: done.not_dead.is_empty(),
        };
        if !out.ok {
            let ids: Vec<String> = done.not_dead.iter().map(u64::to_string).collect();
            out.stderr = format!("pricewatch: not dead letters: {}\n", ids.join(", "));
        }
        Ok(out)
    })
}

/// Opens the store `config` names for an operator command (`rt` runs what opening
/// PostgreSQL awaits). A sled data directory a daemon holds is [`AdminError::Open`], which
/// says to stop it first.
pub fn open_store(
    config: &Config,
    rt: &tokio::runtime::Runtime,
) -> Result<Arc<dyn Store>, AdminError> {
    match config.storage.backend {
        Backend::Sled => Ok(Arc::new(
            SledStore::open(&config.storage.sled()).map_err(AdminError::Open)?,
        )),
        Backend::Postgres => {
            let postgres = crate::ops::migrate::postgres_config(config)?;
            Ok(Arc::new(rt.block_on(PgStore::open(&postgres))?))
        }
    }
}

/// Opens the store for reading even when it is damaged (see [`SledStore::open_readable`]):
/// a damaged sled store is read from a copy, its files left as they are, and the damage
/// returned beside it. PostgreSQL keeps its own integrity: it is opened as it is.
pub fn open_readable(
    config: &Config,
    rt: &tokio::runtime::Runtime,
) -> Result<(Arc<dyn Store>, Option<Damage>), AdminError> {
    match config.storage.backend {
        Backend::Sled => {
            let (store, damage) =
                SledStore::open_readable(&config.storage.sled()).map_err(|e| match e {
                    StoreError::Open { .. } => AdminError::Open(e),
                    other => AdminError::Store(other),
                })?;
            Ok((Arc::new(store), damage))
        }
        Backend::Postgres => Ok((open_store(config, rt)?, None)),
    }
}

/// Where the data `config` names lives, for a person: the data directory, or the database.
pub fn data_place(config: &Config) -> String {
    match config.storage.backend {
        Backend::Sled => config.storage.path.display().to_string(),
        Backend::Postgres => match &config.storage.postgres_schema {
            Some(schema) => format!("PostgreSQL (schema {schema})"),
            None => "PostgreSQL".to_owned(),
        },
    }
}

/// The runtime an operator command runs the store's futures on.
pub fn runtime() -> Result<tokio::runtime::Runtime, AdminError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AdminError::Runtime)
}

/// The text of `pricewatch outbox`.
pub async fn outbox_listing(store: &dyn Store, now_ms: u64) -> Result<String, StoreError> {
    let stats = store.stats().await?;
    let pending = store.queued_messages(LIST_LIMIT).await?;
    let dead = store.dead_letters(LIST_LIMIT).await?;
    let mut out = String::new();
    section(&mut out, "pending", stats.outbox, &pending, now_ms);
    out.push('\n');
    section(&mut out, "dead", stats.dead_letters, &dead, now_ms);
    Ok(out)
}

fn section(out: &mut String, name: &str, total: usize, entries: &[OutboxEntry], now_ms: u64) {
    out.push_str(&format!("{name}: {total}\n"));
    for e in entries {
        let when = match e.dead_ms {
            Some(at) => format!("dead for {}", ago(now_ms, at)),
            None if e.next_attempt_ms > now_ms => {
                format!("next attempt in {}", ago(e.next_attempt_ms, now_ms))
            }
            None => "due now".to_owned(),
        };
        out.push_str(&format!(
            "  {id}  {channel} {conversation}  alert {alert}  age {age}  attempts {attempts}  {when}\n",
            id = e.id,
            channel = e.conversation.channel_id,
            conversation = e.conversation.conversation_id,
            alert = e.alert_id,
            age = ago(now_ms, e.created_ms),
            attempts = e.attempts,
        ));
        if let Some(err) = &e.last_error {
            out.push_str(&format!("      last error: {}\n", one_line(err)));
        }
    }
    if entries.len() < total {
        out.push_str(&format!("  … and {} more\n", total - entries.len()));
    }
}

/// Re-queues dead letters, due at once with their attempts reset.
pub async fn requeue(
    store: &dyn Store,
    which: Requeue,
    now_ms: u64,
) -> Result<Requeued, StoreError> {
    let ids = match which {
        Requeue::Ids(ids) => ids,
        Requeue::AllDead => {
            let mut all = Vec::new();
            // Each round re-queues what it listed, so the next round lists the rest.
            loop {
                let batch: Vec<u64> = store
                    .dead_letters(LIST_LIMIT)
                    .await?
                    .iter()
                    .map(|e| e.id)
                    .collect();
                if batch.is_empty() {
                    return Ok(Requeued {
                        requeued: all,
                        not_dead: Vec::new(),
                    });
                }
                for id in batch {
                    if store.requeue_dead_letter(id, now_ms).await? {
                        all.push(id);
                    }
                }
            }
        }
    };
    let mut done = Requeued::default();
    for id in ids {
        if store.requeue_dead_letter(id, now_ms).await? {
            done.requeued.push(id);
        } else {
            done.not_dead.push(id);
        }
    }
    Ok(done)
}

fn ago(later_ms: u64, earlier_ms: u64) -> String {
    let secs = later_ms.saturating_sub(earlier_ms) / 1000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut out: String = line.chars().take(200).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short_and_readable() {
        assert_eq!(ago(61_000, 0), "61s");
        assert_eq!(ago(600_000, 0), "10m");
        assert_eq!(ago(3 * 3_600_000, 0), "3h");
        assert_eq!(ago(3 * 86_400_000, 0), "3d");
        assert_eq!(ago(0, 5), "0s");
    }

    #[test]
    fn errors_are_one_line() {
        assert_eq!(one_line("502: bad\ngateway"), "502: bad…");
        assert_eq!(one_line("short"), "short");
    }
}
