//! A PostgreSQL for tests: the server `PRICEWATCH_TEST_POSTGRES_URL` names, each test in a
//! schema of its own (dropped when the test ends), so tests run side by side. Without the
//! variable the tests that need it say they were skipped and pass.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pricewatch::secret::Secret;
use pricewatch::store::postgres::PostgresConfig;

pub const URL_VAR: &str = "PRICEWATCH_TEST_POSTGRES_URL";

/// A schema of this test's own; dropped (with everything in it) on drop.
pub struct TestDatabase {
    pub config: PostgresConfig,
}

impl TestDatabase {
    /// `None` (and a line saying the test was skipped) without `PRICEWATCH_TEST_POSTGRES_URL`.
    pub fn new(test: &str) -> Option<TestDatabase> {
        let Ok(url) = std::env::var(URL_VAR) else {
            eprintln!("skipped {test}: {URL_VAR} is not set (no PostgreSQL to test against)");
            return None;
        };
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let schema = format!(
            "pw_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Some(TestDatabase {
            config: PostgresConfig {
                url: Secret::new(url),
                schema: Some(schema),
                pool_size: 4,
                statement_timeout: Duration::from_secs(30),
                connect_timeout: Duration::from_secs(5),
                ca_file: None,
            },
        })
    }

    pub fn schema(&self) -> &str {
        self.config.schema.as_deref().unwrap_or("public")
    }

    /// Points a daemon's `config` at this schema, the connection string in a file under `dir`.
    pub fn configure(&self, config: &mut pricewatch::ops::config::Config, dir: &std::path::Path) {
        let url_file = dir.join("postgres-url");
        std::fs::write(&url_file, self.config.url.expose()).unwrap();
        config.storage.backend = pricewatch::ops::config::Backend::Postgres;
        config.storage.postgres_url_file = Some(url_file);
        config.storage.postgres_schema = self.config.schema.clone();
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread of
        // its own with a runtime of its own.
        let config = PostgresConfig {
            schema: None,
            ..self.config.clone()
        };
        let schema = self.schema().to_owned();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = config.connect().await.ok()?;
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}
