//! Arbitrary bytes as the body of `POST /api/messages`, through what the endpoint does with
//! one: `Activity::read`, authentication (local development: nothing to verify), validation,
//! and the bot's turn on a real store in a temporary directory (`/dev/shm` where there is
//! one, so it stays in memory). Nothing may panic; a turn answers at most one reply, and
//! what it says carries none of the controls the bot removes from user text.

#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use pricewatch::clock::SystemClock;
use pricewatch::inbound::activity::Activity;
use pricewatch::inbound::auth::InboundAuth;
use pricewatch::inbound::bot::{Bot, TurnSettings};
use pricewatch::inbound::command::Limits;
use pricewatch::store::{SledStore, SledStoreConfig};
use rust_decimal::Decimal;

struct World {
    runtime: tokio::runtime::Runtime,
    bot: Bot,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = base.join(format!("pricewatch-fuzz-turn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    let store = SledStore::open(&SledStoreConfig {
        path,
        cache_capacity: 8 << 20,
        flush_every: std::time::Duration::from_secs(1),
        full_check_at_start: false,
    })
    .expect("a store in a fresh directory");
    let bot = Bot::new(
        Arc::new(store),
        Arc::new(SystemClock),
        TurnSettings {
            name: "pricewatch".to_owned(),
            default_drop: Decimal::from(20),
            max_watches_per_conversation: 50,
            limits: Limits::default(),
            checks: false,
            catalogs: Arc::default(),
        },
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    World { runtime, bot }
});

/// Characters no reply may carry (bidi controls, NUL and the other C0 controls but
/// newline and tab).
fn forbidden(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
        || (c.is_control() && c != '\n' && c != '\t' && (c as u32) < 0x20)
}

fuzz_target!(|body: &[u8]| {
    let world = &*WORLD;
    let Ok(activity) = Activity::read(body) else {
        return;
    };
    world.runtime.block_on(async {
        if InboundAuth::LocalDevelopment
            .verify(None, &activity)
            .await
            .is_err()
        {
            return;
        }
        let Ok(valid) = activity.validate() else {
            return;
        };
        let Ok(turn) = world.bot.turn(&valid).await else {
            return;
        };
        assert!(turn.replies.len() <= 1, "{} replies", turn.replies.len());
        for reply in &turn.replies {
            let text = reply.text.as_deref().unwrap_or("");
            assert!(!text.chars().any(forbidden), "{text:?}");
            serde_json::to_string(reply).expect("a reply serialises");
        }
    });
});
