//! The PostgreSQL schema's migrations against a real server (`PRICEWATCH_TEST_POSTGRES_URL`;
//! skipped without it).

use std::time::Duration;

use pricewatch::secret::Secret;
use pricewatch::store::postgres::migrate::{self, latest, MIGRATIONS};
use pricewatch::store::postgres::{PgError, PostgresConfig};

use crate::postgres::TestDatabase;

#[tokio::test]
async fn a_fresh_schema_is_migrated_once_and_then_current() {
    let Some(db) = TestDatabase::new("a_fresh_schema_is_migrated_once_and_then_current") else {
        return;
    };
    let mut client = db.config.connect().await.unwrap();
    let before = migrate::state(&client).await.unwrap();
    assert!(before.applied.is_empty());
    assert_eq!(before.pending.len(), MIGRATIONS.len());

    let applied = migrate::apply(&mut client, db.config.schema.as_deref())
        .await
        .unwrap();
    assert_eq!(applied, (1..=latest()).collect::<Vec<_>>());
    assert!(migrate::state(&client).await.unwrap().is_current());
    // The tables are in the test's schema, not in public.
    let row = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'watches'",
            &[&db.schema()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);

    assert!(migrate::apply(&mut client, db.config.schema.as_deref())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_apply_each_migration_once() {
    let Some(db) = TestDatabase::new("replicas_starting_together_apply_each_migration_once") else {
        return;
    };
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let config = db.config.clone();
            tokio::spawn(async move { migrate::connect_and_apply(&config).await })
        })
        .collect();
    let mut applied = Vec::new();
    for run in runs {
        applied.extend(run.await.unwrap().unwrap());
    }
    assert_eq!(applied, (1..=latest()).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_schema_a_newer_build_migrated_is_refused_and_left_alone() {
    let Some(db) = TestDatabase::new("a_schema_a_newer_build_migrated_is_refused_and_left_alone")
    else {
        return;
    };
    let mut client = db.config.connect().await.unwrap();
    migrate::apply(&mut client, db.config.schema.as_deref())
        .await
        .unwrap();
    let newer = (latest() + 1) as i32;
    client
        .execute(
            "INSERT INTO pricewatch_schema (version, name) VALUES ($1, 'from the future')",
            &[&newer],
        )
        .await
        .unwrap();
    let err = migrate::connect_and_apply(&db.config).await.unwrap_err();
    assert!(
        matches!(err, PgError::Newer { found, known } if found == latest() + 1 && known == latest()),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer than this build knows"));
    let state = migrate::state(&client).await.unwrap();
    assert_eq!(state.unknown, vec![latest() + 1]);
}

#[tokio::test]
async fn a_database_that_does_not_answer_is_a_clear_error_without_the_password() {
    // Nothing listens on port 1: this one needs no server.
    let config = PostgresConfig {
        url: Secret::new("postgres://pricewatch:hunter2@127.0.0.1:1/pricewatch"),
        schema: None,
        pool_size: 1,
        statement_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(2),
    };
    let err = migrate::connect_and_apply(&config).await.unwrap_err();
    assert!(matches!(err, PgError::Connect(_)), "{err:?}");
    let shown = pricewatch::error::Chain(&err).to_string();
    assert!(shown.contains("cannot connect to PostgreSQL"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}
