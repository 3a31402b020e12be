//! The schema's versioned migrations, embedded in the binary and applied in order.
//!
//! `apply` runs in one transaction that first takes a transaction-scoped advisory lock, so
//! two replicas starting together apply each migration once: the second waits, then finds
//! nothing left to do. PostgreSQL's DDL is transactional, so a migration that fails leaves
//! nothing of itself behind. A database migrated by a newer build (a version this one does
//! not know) is refused rather than written with an older layout.

use tokio_postgres::{Client, GenericClient};

use super::{PgError, PostgresConfig};

/// One step of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration this build knows, oldest first; versions are 1, 2, … without gaps.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "replicas",
        sql: include_str!("migrations/0002_replicas.sql"),
    },
];

/// The version this build's store reads and writes.
pub fn latest() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Where the applied versions are recorded (in the same schema as the tables).
const VERSIONS_TABLE: &str = "pricewatch_schema";

/// The advisory lock every replica takes to migrate ("pricewat" in ASCII): one key for the
/// whole database, since migrating is rare and quick.
const LOCK_KEY: i64 = 0x7072_6963_6577_6174;

/// What the database holds, without changing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaState {
    /// Versions recorded as applied, in order.
    pub applied: Vec<u32>,
    /// This build's migrations not applied yet.
    pub pending: Vec<Migration>,
    /// Recorded versions this build does not know: a newer build migrated the database.
    pub unknown: Vec<u32>,
}

impl SchemaState {
    fn from_applied(applied: Vec<u32>) -> SchemaState {
        let pending = MIGRATIONS
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .copied()
            .collect();
        let unknown = applied
            .iter()
            .copied()
            .filter(|v| !MIGRATIONS.iter().any(|m| m.version == *v))
            .collect();
        SchemaState {
            applied,
            pending,
            unknown,
        }
    }

    /// The refusal for a database a newer build migrated.
    pub fn newer(&self) -> Option<PgError> {
        self.unknown.iter().max().map(|&found| PgError::Newer {
            found,
            known: latest(),
        })
    }

    /// Up to date: nothing pending, nothing unknown.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty() && self.unknown.is_empty()
    }
}

fn query_error(what: &'static str) -> impl Fn(tokio_postgres::Error) -> PgError {
    move |source| PgError::Query { what, source }
}

/// The recorded versions; none when the table is not there yet.
async fn applied(client: &impl GenericClient) -> Result<Vec<u32>, PgError> {
    let exists = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&VERSIONS_TABLE])
        .await
        .map_err(query_error("to look for the schema's version table"))?;
    if !exists.get::<_, bool>(0) {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!("SELECT version FROM {VERSIONS_TABLE} ORDER BY version"),
            &[],
        )
        .await
        .map_err(query_error("to read the schema's versions"))?;
    Ok(rows
        .iter()
        .map(|r| u32::try_from(r.get::<_, i32>(0)).unwrap_or(u32::MAX))
        .collect())
}

/// What the database holds (for `pricewatch migrate --check`); changes nothing.
pub async fn state(client: &Client) -> Result<SchemaState, PgError> {
    Ok(SchemaState::from_applied(applied(client).await?))
}

/// Brings the database to [`latest`]; returns the versions this call applied (none when
/// another replica, or an earlier start, already did).
pub async fn apply(client: &mut Client, schema: Option<&str>) -> Result<Vec<u32>, PgError> {
    let tx = client
        .transaction()
        .await
        .map_err(query_error("to begin the migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(query_error("to take the migration lock"))?;
    if let Some(schema) = schema {
        // `valid_schema` was checked when the connection's options were built.
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .await
            .map_err(query_error("to create the schema"))?;
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (\
             version integer PRIMARY KEY, \
             name text NOT NULL, \
             applied_at timestamptz NOT NULL DEFAULT now())"
    ))
    .await
    .map_err(query_error("to create the schema's version table"))?;
    let state = SchemaState::from_applied(applied(&tx).await?);
    if let Some(newer) = state.newer() {
        return Err(newer);
    }
    let mut done = Vec::new();
    for m in &state.pending {
        let failed = |source| PgError::Migration {
            version: m.version,
            name: m.name,
            source,
        };
        tx.batch_execute(m.sql).await.map_err(failed)?;
        tx.execute(
            &format!("INSERT INTO {VERSIONS_TABLE} (version, name) VALUES ($1, $2)"),
            &[&(m.version as i32), &m.name],
        )
        .await
        .map_err(failed)?;
        done.push(m.version);
    }
    tx.commit()
        .await
        .map_err(query_error("to commit the migration"))?;
    Ok(done)
}

/// Connects and migrates: what `serve` does before it uses the store. Fails, naming the
/// problem, when the database cannot be reached or was migrated by a newer build.
pub async fn connect_and_apply(config: &PostgresConfig) -> Result<Vec<u32>, PgError> {
    let mut client = config.connect().await?;
    apply(&mut client, config.schema.as_deref()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_one_two_three_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
            assert!(!m.sql.trim().is_empty());
        }
        assert_eq!(latest() as usize, MIGRATIONS.len());
    }

    #[test]
    fn the_state_says_what_is_pending_and_what_is_newer() {
        let fresh = SchemaState::from_applied(vec![]);
        assert_eq!(fresh.pending.len(), MIGRATIONS.len());
        assert!(!fresh.is_current() && fresh.newer().is_none());

        let all: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert!(SchemaState::from_applied(all.clone()).is_current());

        let mut ahead = all;
        ahead.push(latest() + 1);
        let state = SchemaState::from_applied(ahead);
        assert_eq!(state.unknown, vec![latest() + 1]);
        assert!(matches!(
            state.newer(),
            Some(PgError::Newer { found, known }) if found == latest() + 1 && known == latest()
        ));
    }
}
