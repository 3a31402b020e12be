//! `pricewatch export` and `pricewatch import` as an operator runs them: data the real
//! daemon built, exported by the binary, imported into an empty directory and served
//! again; a damaged file, a running daemon and a non-empty store refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use pricewatch::clock::{Clock, ManualClock};
use pricewatch::inbound::activity::ConversationKey;
use pricewatch::store::Store;
use warp::http::StatusCode;

use crate::fakes::{open_store, FakeShop};
use crate::helpers::{eventually, test_config, TestApp};

const MINUTE: u64 = 60_000;

/// A cron tick that never comes while a test runs: the test ticks with `App::tick_now`.
const NO_SCHEDULED_TICK: &str = "0 0 0 1 1 * 2999";

/// A configuration file whose data directory is `data`.
fn config_file(dir: &Path, name: &str, data: &Path) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(
        &file,
        format!("[storage]\npath = {:?}\n", data.display().to_string()),
    )
    .unwrap();
    file
}

fn pricewatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pricewatch"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn conversation(id: &str) -> ConversationKey {
    ConversationKey {
        channel_id: "emulator".into(),
        conversation_id: id.into(),
    }
}

const CONVERSATIONS: [&str; 3] = ["c1", "c2", "c3"];

/// The reply to `text`, in the HTTP answer (`expectReplies`): the channel may be refusing
/// sends, and replies it refuses would wait in the outbox.
async fn ask(t: &TestApp, conversation: &str, text: &str) -> String {
    let mut m = t.message(conversation, text);
    m["deliveryMode"] = "expectReplies".into();
    let (status, body) = t.post(&m).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["activities"][0]["text"].as_str().unwrap().to_owned()
}

/// What a user sees: `list` in every conversation and `history` of every watch.
async fn views(t: &TestApp) -> Vec<String> {
    let mut out = Vec::new();
    for c in CONVERSATIONS {
        out.push(ask(t, c, "list").await);
        let watches = t
            .app()
            .store()
            .watches(&conversation(c))
            .await
            .unwrap()
            .len();
        for n in 1..=watches {
            out.push(ask(t, c, &format!("history {n}")).await);
        }
    }
    out
}

/// The outbox as the operator sees it, without the ids an import may renumber.
async fn outbox(store: &dyn Store) -> Vec<(String, u32, Option<String>, bool)> {
    let queued = store.queued_messages(100).await.unwrap();
    let dead = store.dead_letters(100).await.unwrap();
    queued
        .iter()
        .chain(&dead)
        .map(|e| {
            (
                e.alert_id.clone(),
                e.attempts,
                e.last_error.clone(),
                e.dead_ms.is_some(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_imported_into_an_empty_directory_serves_the_same_watches_and_prices() {
    let shop = FakeShop::start().await;
    shop.set_price("/p/1", "199.00");
    shop.set_price("/p/2", "40.00");
    shop.set_price("/p/3", "12.49");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let clock = Arc::new(ManualClock::new(pricewatch::clock::SystemClock.now_ms()));
    let mut config = test_config(&data);
    config.schedule.enabled = true;
    config.schedule.tick = NO_SCHEDULED_TICK.into();
    config.fetch.allow_networks = vec!["127.0.0.0/8".into()];
    config.fetch.host_gap = Duration::ZERO;
    config.alerts.digest_window = Duration::from_millis(100);
    let mut t = TestApp::spawn_with_clock(config, clock.clone()).await;

    for (c, command) in [
        ("c1", "watch {}/p/1"),
        ("c1", "watch {}/p/2 15%"),
        ("c2", "watch {}/p/3"),
        ("c2", "watch {}/p/1 below 150"),
        ("c3", "help"),
    ] {
        let command = command.replace("{}", &shop.base);
        assert_eq!(t.post(&t.message(c, &command)).await.0, 200);
    }
    // Every watch has its first price, and the follow-ups are delivered.
    let store = t.app().store();
    eventually(|| async {
        for c in CONVERSATIONS {
            if store
                .watches(&conversation(c))
                .await
                .unwrap()
                .iter()
                .any(|w| w.is_pending())
            {
                return Err(format!("the first price of every watch of {c}"));
            }
        }
        match store.stats().await.unwrap().outbox {
            0 => Ok(()),
            n => Err(format!("the outbox to empty; {n} left")),
        }
    })
    .await;

    // An alert the channel refuses for good: a dead letter.
    t.channel.answer_with(StatusCode::BAD_REQUEST);
    shop.set_price("/p/2", "30.00");
    clock.advance_ms(34 * MINUTE);
    assert_eq!(t.app().tick_now().await.unwrap().queued, 1);
    eventually(|| async {
        match store.stats().await.unwrap().dead_letters {
            1 => Ok(()),
            n => Err(format!("one dead letter; {n}")),
        }
    })
    .await;
    // Alerts the channel is too busy for: queued, with an attempt counted.
    t.channel.answer_with(StatusCode::SERVICE_UNAVAILABLE);
    shop.set_price("/p/1", "140.00");
    clock.advance_ms(34 * MINUTE);
    assert_eq!(t.app().tick_now().await.unwrap().queued, 2);
    eventually(|| async {
        let queued = store.queued_messages(10).await.unwrap();
        if queued.len() == 2 && queued.iter().all(|e| e.attempts == 1) {
            Ok(())
        } else {
            Err(format!("two messages waiting for a retry; {queued:?}"))
        }
    })
    .await;

    let before = views(&t).await;
    assert!(
        before.iter().any(|v| v.contains("140.00")) && before.iter().any(|v| v.contains("30.00")),
        "{before:?}"
    );
    let outbox_before = outbox(store.as_ref()).await;
    let stats_before = store.stats().await.unwrap();
    drop(store);
    t.stop().await;

    // Back up to a file, and to standard output.
    let source = config_file(dir.path(), "source.toml", &data);
    let backup = dir.path().join("backup.jsonl");
    let out = pricewatch(&[
        "export",
        "--config",
        path(&source),
        "--output",
        path(&backup),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("3 conversation(s), 4 watch(es)"),
        "{}",
        text(&out.stdout)
    );
    let file = std::fs::read_to_string(&backup).unwrap();
    assert!(
        file.starts_with(r#"{"kind":"pricewatch-export","version":1,"exported_at":""#),
        "{file}"
    );
    assert!(file.contains(r#""amount":"140.00""#), "{file}");
    assert_eq!(
        file.lines()
            .filter(|l| l.contains(r#""kind":"dead_letter""#))
            .count(),
        1
    );
    let out = pricewatch(&["export", "-c", path(&source)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let drop_header = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(drop_header(&text(&out.stdout)), drop_header(&file));

    // Restore into an empty directory and serve it.
    let restored = dir.path().join("restored");
    let target = config_file(dir.path(), "target.toml", &restored);
    let out = pricewatch(&["import", "--config", path(&target), path(&backup)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("imported 3 conversation(s)"),
        "{}",
        text(&out.stdout)
    );
    {
        let store = open_store(&restored).unwrap();
        assert_eq!(store.stats().await.unwrap(), stats_before);
        assert_eq!(outbox(store.as_ref()).await, outbox_before);
    }
    let t2 = TestApp::spawn_with_clock(test_config(&restored), clock.clone()).await;
    assert_eq!(views(&t2).await, before);

    // A second import into it is refused: it is not empty any more.
    let mut t2 = t2;
    t2.stop().await;
    let out = pricewatch(&["import", "--config", path(&target), path(&backup)]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("not empty") && err.contains(path(&restored)),
        "{err}"
    );
    assert_eq!(
        open_store(&restored).unwrap().stats().await.unwrap(),
        stats_before
    );
}

/// A daemon with a few watches made through the bot, stopped, and its export.
async fn exported(dir: &Path) -> (TestApp, PathBuf, String) {
    let data = dir.join("data");
    let mut t = TestApp::spawn_with(test_config(&data)).await;
    for (c, url) in [("a", "p/1"), ("a", "p/2"), ("b", "p/1")] {
        t.say(c, &format!("watch https://shop.example/{url}")).await;
    }
    t.stop().await;
    let file = config_file(dir, "pricewatch.toml", &data);
    let out = pricewatch(&["export", "--config", path(&file)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    (t, file, text(&out.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_one_damaged_line_imports_nothing_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_t, _, export) = exported(dir.path()).await;
    let mut lines: Vec<&str> = export.lines().collect();
    assert!(lines.len() >= 6, "{export}");
    // The fourth line (a product, in the middle) cut short, as a failed copy leaves it.
    let cut = &lines[3][..lines[3].len() / 2];
    lines[3] = cut;
    let damaged = dir.path().join("damaged.jsonl");
    std::fs::write(&damaged, lines.join("\n") + "\n").unwrap();

    let restored = dir.path().join("restored");
    let target = config_file(dir.path(), "target.toml", &restored);
    let out = pricewatch(&["import", "--config", path(&target), path(&damaged)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("damaged.jsonl, line 4") && err.contains("nothing imported"),
        "{err}"
    );
    let stats = open_store(&restored).unwrap().stats().await.unwrap();
    assert_eq!(stats, Default::default(), "the store stays empty");

    // A watch whose conversation is not in the file is refused the same way.
    let without_b: Vec<&str> = export
        .lines()
        .filter(|l| !(l.contains(r#""kind":"conversation""#) && l.contains(r#""id":"b""#)))
        .collect();
    let watch_of_b = without_b
        .iter()
        .position(|l| l.contains(r#""conversation_id":"b""#))
        .unwrap()
        + 1;
    std::fs::write(&damaged, without_b.join("\n") + "\n").unwrap();
    let out = pricewatch(&["import", "--config", path(&target), path(&damaged)]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("line {watch_of_b}"))
            && err.contains("conversation emulator/b is not in the file"),
        "{err}"
    );
    let stats = open_store(&restored).unwrap().stats().await.unwrap();
    assert_eq!(stats, Default::default(), "the store stays empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_import_refuse_while_a_daemon_holds_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (mut t, file, export) = exported(dir.path()).await;
    t.restart().await;
    let out = pricewatch(&["export", "--config", path(&file)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing half written");
    let err = text(&out.stderr);
    assert!(
        err.contains("stop the daemon first") && err.contains("locked"),
        "{err}"
    );

    let backup = dir.path().join("backup.jsonl");
    std::fs::write(&backup, &export).unwrap();
    let out = pricewatch(&["import", "--config", path(&file), path(&backup)]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("stop the daemon first") && err.contains("locked"),
        "{err}"
    );
    assert_eq!(t.app().store().stats().await.unwrap().watches, 3);
}

/// A configuration file for the PostgreSQL backend in the test's own schema.
fn postgres_file(dir: &Path, name: &str, db: &crate::postgres::TestDatabase) -> PathBuf {
    let url = dir.join(format!("{name}.url"));
    std::fs::write(&url, db.config.url.expose()).unwrap();
    let file = dir.join(name);
    std::fs::write(
        &file,
        format!(
            "[storage]\nbackend = \"postgres\"\npostgres_url_file = {:?}\npostgres_schema = {:?}\n",
            url.display().to_string(),
            db.schema()
        ),
    )
    .unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_moves_from_sled_to_postgres_and_back_unchanged() {
    let Some(db) = crate::postgres::TestDatabase::new(
        "an_export_moves_from_sled_to_postgres_and_back_unchanged",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_t, _, from_sled) = exported(dir.path()).await;
    let drop_header = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    let file = dir.path().join("from-sled.jsonl");
    std::fs::write(&file, &from_sled).unwrap();

    let pg = postgres_file(dir.path(), "pg.toml", &db);
    let out = pricewatch(&["import", "--config", path(&pg), path(&file)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("into PostgreSQL (schema pw_test_"),
        "{}",
        text(&out.stdout)
    );
    let out = pricewatch(&["verify", "--config", path(&pg)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("3 watches"),
        "{}",
        text(&out.stdout)
    );
    let out = pricewatch(&["export", "--config", path(&pg)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let from_postgres = text(&out.stdout);
    assert_eq!(drop_header(&from_postgres), drop_header(&from_sled));

    // And back into a new sled directory.
    let back = dir.path().join("back");
    let file = dir.path().join("from-postgres.jsonl");
    std::fs::write(&file, &from_postgres).unwrap();
    let target = config_file(dir.path(), "back.toml", &back);
    let out = pricewatch(&["import", "--config", path(&target), path(&file)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = pricewatch(&["export", "--config", path(&target)]);
    assert_eq!(drop_header(&text(&out.stdout)), drop_header(&from_sled));

    // The database serves what it was given, and refuses a second import.
    let out = pricewatch(&["import", "--config", path(&pg), path(&file)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not empty"),
        "{}",
        text(&out.stderr)
    );
    let mut config = test_config(&dir.path().join("unused"));
    config.storage.backend = pricewatch::ops::config::Backend::Postgres;
    config.storage.postgres_url_file = Some(dir.path().join("pg.toml.url"));
    config.storage.postgres_schema = db.config.schema.clone();
    let mut t = TestApp::spawn_with(config).await;
    let list = t.say("a", "list").await;
    assert!(
        list.contains("shop.example/p/1") && list.contains("shop.example/p/2"),
        "{list}"
    );
    t.stop().await;
}
