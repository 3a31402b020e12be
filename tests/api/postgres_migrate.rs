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
        ca_file: None,
    };
    let err = migrate::connect_and_apply(&config).await.unwrap_err();
    assert!(matches!(err, PgError::Connect(_)), "{err:?}");
    let shown = pricewatch::error::Chain(&err).to_string();
    assert!(shown.contains("cannot connect to PostgreSQL"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// `pricewatch ARGS` with a configuration naming the test's database; its output.
fn pricewatch(args: &[&str], config: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pricewatch"))
        .args(args)
        .arg(config)
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap()
}

/// A configuration file for the PostgreSQL backend: the connection string in a file of its
/// own, as an operator keeps it.
fn postgres_config_file(
    dir: &std::path::Path,
    url: &str,
    schema: Option<&str>,
) -> std::path::PathBuf {
    let url_file = dir.join("postgres-url");
    std::fs::write(&url_file, format!("{url}\n")).unwrap();
    let schema = schema.map_or(String::new(), |s| format!("postgres_schema = \"{s}\"\n"));
    let file = dir.join("pricewatch.toml");
    std::fs::write(
        &file,
        format!(
            "[storage]\nbackend = \"postgres\"\npostgres_url_file = {:?}\n{schema}",
            url_file.display().to_string()
        ),
    )
    .unwrap();
    file
}

fn out(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn migrate_check_reports_then_migrate_applies() {
    let Some(db) = TestDatabase::new("migrate_check_reports_then_migrate_applies") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = postgres_config_file(dir.path(), db.config.url.expose(), Some(db.schema()));

    let check = pricewatch(&["migrate", "--check", "--config"], &file);
    assert_eq!(check.status.code(), Some(1), "{}", out(&check.stderr));
    let stdout = out(&check.stdout);
    assert!(
        stdout.contains("schema version 0") && stdout.contains("1 initial"),
        "{stdout}"
    );

    let run = pricewatch(&["migrate", "--config"], &file);
    assert_eq!(run.status.code(), Some(0), "{}", out(&run.stderr));
    assert!(
        out(&run.stdout).contains("applied 1"),
        "{}",
        out(&run.stdout)
    );

    let check = pricewatch(&["migrate", "--check", "--config"], &file);
    assert_eq!(check.status.code(), Some(0), "{}", out(&check.stderr));
    assert!(
        out(&check.stdout).contains("current"),
        "{}",
        out(&check.stdout)
    );
}

#[test]
fn migrate_says_what_is_wrong_without_a_database_or_a_url() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1; the password must not show anywhere.
    let file = postgres_config_file(dir.path(), "postgres://pw:hunter2@127.0.0.1:1/pw", None);
    for args in [
        &["migrate", "--config"][..],
        &["migrate", "--check", "--config"],
    ] {
        let run = pricewatch(args, &file);
        assert_eq!(run.status.code(), Some(1));
        let stderr = out(&run.stderr);
        assert!(stderr.contains("cannot connect to PostgreSQL"), "{stderr}");
        assert!(!stderr.contains("hunter2") && !out(&run.stdout).contains("hunter2"));
    }

    let garbled = postgres_config_file(dir.path(), "postgres://pw:hunter2@host:port/pw", None);
    let check = pricewatch(&["check-config"], &garbled);
    assert_eq!(check.status.code(), Some(2));
    let stderr = out(&check.stderr);
    assert!(
        stderr.contains("not valid") && !stderr.contains("hunter2"),
        "{stderr}"
    );

    std::fs::remove_file(dir.path().join("postgres-url")).unwrap();
    let file = dir.path().join("pricewatch.toml");
    std::fs::write(&file, "[storage]\nbackend = \"postgres\"\n").unwrap();
    let check = pricewatch(&["check-config"], &file);
    assert_eq!(check.status.code(), Some(2));
    assert!(
        out(&check.stderr).contains("postgres-url credential"),
        "{}",
        out(&check.stderr)
    );

    std::fs::write(&file, "[storage]\nbackend = \"sled\"\n").unwrap();
    let run = pricewatch(&["migrate", "--config"], &file);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        out(&run.stderr).contains("nothing to migrate"),
        "{}",
        out(&run.stderr)
    );
}

/// `pricewatch serve` on `config`, expected to refuse: its exit status and stderr.
fn serve_refused(config: &std::path::Path) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pricewatch"))
        .args(["serve", "--config"])
        .arg(config)
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let done = child.wait_with_output().unwrap();
    (done.status.code(), out(&done.stderr))
}

#[test]
fn serve_refuses_a_database_that_does_not_answer_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = postgres_config_file(dir.path(), "postgres://pw:hunter2@127.0.0.1:1/pw", None);
    let (code, stderr) = serve_refused(&file);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to PostgreSQL"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_newer_schema() {
    let Some(db) = TestDatabase::new("serve_refuses_a_newer_schema") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = postgres_config_file(dir.path(), db.config.url.expose(), Some(db.schema()));
    let mut extra = std::fs::read_to_string(&file).unwrap();
    extra.push_str("[server]\nbind = \"127.0.0.1:0\"\n");
    std::fs::write(&file, extra).unwrap();

    // Migrated by a first start, as a replica of this build would have.
    crate::process::LoggedDaemon::start(&file).await.stop();

    let client = db.config.connect().await.unwrap();
    client
        .execute(
            "INSERT INTO pricewatch_schema (version, name) VALUES ($1, 'from the future')",
            &[&((latest() + 1) as i32)],
        )
        .await
        .unwrap();
    let (code, stderr) = serve_refused(&file);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("newer than this build knows"), "{stderr}");
}

/// TLS (`sslmode=require`): the server's certificate is verified, against
/// `storage.postgres_ca_file` or the Mozilla roots. Needs a server that offers TLS with
/// Debian's default certificate (made for `localhost`) and lets this test read it; skipped
/// otherwise.
#[tokio::test]
async fn tls_is_used_when_asked_and_the_certificate_verified() {
    let Some(db) = TestDatabase::new("tls_is_used_when_asked_and_the_certificate_verified") else {
        return;
    };
    let client = db.config.connect().await.unwrap();
    let ssl: String = client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    let cert: String = client
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .unwrap()
        .get(0);
    if ssl != "on" || !cert.ends_with("ssl-cert-snakeoil.pem") || std::fs::metadata(&cert).is_err()
    {
        eprintln!(
            "skipped: the server offers no TLS with a certificate for localhost this test can read"
        );
        return;
    }
    let plain: tokio_postgres::Config = db.config.url.expose().parse().unwrap();
    let Some(tokio_postgres::config::Host::Tcp(addr)) = plain.get_hosts().first() else {
        eprintln!("skipped: the test database is not reached over TCP");
        return;
    };
    // Reached at the test server's address, checked against the name the certificate has.
    let url = format!(
        "host=localhost hostaddr={addr} port={} user={} dbname={} sslmode=require",
        plain.get_ports().first().copied().unwrap_or(5432),
        plain.get_user().unwrap_or("postgres"),
        plain.get_dbname().unwrap_or("test"),
    );
    let tls = |ca_file: Option<std::path::PathBuf>| PostgresConfig {
        url: Secret::new(url.clone()),
        ca_file,
        ..db.config.clone()
    };

    let client = tls(Some(cert.clone().into())).connect().await.unwrap();
    let encrypted: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted);

    // A self-signed certificate no public CA vouches for.
    let err = tls(None).connect().await.unwrap_err();
    let shown = pricewatch::error::Chain(&err).to_string();
    assert!(shown.contains("cannot connect to PostgreSQL"), "{shown}");
    assert!(shown.to_lowercase().contains("certificate"), "{shown}");

    // A CA file that is missing or holds no certificate is named before anything connects.
    let dir = tempfile::tempdir().unwrap();
    let Err(err) = tls(Some(dir.path().join("missing.pem"))).tls() else {
        panic!("a missing CA file read");
    };
    assert!(
        err.to_string()
            .contains("storage.postgres_ca_file: cannot read"),
        "{err}"
    );
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let Err(err) = tls(Some(empty)).tls() else {
        panic!("a CA file without a certificate taken");
    };
    assert!(matches!(err, PgError::NoCertificate { .. }), "{err:?}");

    // Without sslmode=require: no TLS asked, so no CA file read.
    let plain_config = PostgresConfig {
        ca_file: Some(dir.path().join("missing.pem")),
        ..db.config.clone()
    };
    assert!(plain_config.tls().unwrap().is_none());
}
