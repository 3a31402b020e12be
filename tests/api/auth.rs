//! Production mode on the real daemon: every inbound activity carries a Bot Framework
//! token, checked against keys a local key server publishes (`tokens.rs` mints them).
//! Each refusal is its own test, and each checks that nothing was stored or sent.

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use pricewatch::clock::ManualClock;
use pricewatch::ops::config::{AppType, Config};
use serde_json::{json, Value};

use crate::helpers::{test_config, TestApp};
use crate::tokens::{
    self, channel_claims, emulator_claims, KeyServer, Published, TestKey, APP_ID,
    EMULATOR_V1_ISSUER, EMULATOR_V2_ISSUER,
};

/// The daemon in production mode, with the clock it reads and the keys it trusts:
/// `plain` (no endorsements) and `endorsing` (endorses `msteams` and `emulator`), both
/// the `channel` test key; `emu` is the Emulator issuer's key.
struct Prod {
    t: TestApp,
    keys: KeyServer,
    clock: Arc<ManualClock>,
    channel: TestKey,
    _dir: tempfile::TempDir,
}

const OWN_TENANT: &str = "7a0c5f3e-1111-4222-8333-444455556666";

impl Prod {
    async fn start() -> Prod {
        Self::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut Config)) -> Prod {
        let channel = TestKey::load("channel");
        let keys = KeyServer::start(
            vec![
                Published::of("plain", &channel, None),
                Published::of("endorsing", &channel, Some(&["msteams", "emulator"])),
            ],
            vec![Published::of("emu", &channel, None)],
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("app-password");
        std::fs::write(&password, "app-secret\n").unwrap();
        let mut config = test_config(&dir.path().join("data"));
        config.bot.app_id = APP_ID.to_owned();
        config.bot.app_password_file = Some(password);
        config.bot.token_endpoint = keys.token_url();
        config.bot.service_url_hosts = vec!["127.0.0.1".to_owned()];
        config.auth.openid_metadata_url = keys.channel_metadata_url();
        config.auth.emulator_openid_metadata_url = keys.emulator_metadata_url();
        adjust(&mut config);
        let clock = Arc::new(ManualClock::new(tokens::now() as u64 * 1000));
        let t = TestApp::spawn_with_clock(config, clock.clone()).await;
        Prod {
            t,
            keys,
            clock,
            channel,
            _dir: dir,
        }
    }

    /// Seconds on the daemon's clock.
    fn now(&self) -> i64 {
        (pricewatch::clock::Clock::now_ms(&*self.clock) / 1000) as i64
    }

    /// A `help` message on `channel_id` from the fake channel's serviceUrl.
    fn activity(&self, channel_id: &str) -> Value {
        let mut m = self.t.message("c1", "help");
        m["channelId"] = channel_id.into();
        m
    }

    fn service_url(&self) -> String {
        self.t.channel.url.clone()
    }

    /// Good channel claims for the fake channel, at the daemon's time.
    fn claims(&self) -> Value {
        channel_claims(&self.service_url(), self.now())
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    /// A header signed by the trusted key under `kid`.
    fn signed(&self, kid: &str, claims: &Value) -> String {
        Self::bearer(&self.channel.sign(Algorithm::RS256, Some(kid), claims))
    }

    /// A `webchat` activity with good claims but `name` set to `value` (removed when
    /// `None`), signed by the trusted key.
    fn with_claim(&self, name: &str, value: Option<Value>) -> (Option<String>, Value) {
        let mut claims = self.claims();
        match value {
            Some(v) => claims[name] = v,
            None => {
                claims.as_object_mut().unwrap().remove(name);
            }
        }
        (
            Some(self.signed("plain", &claims)),
            self.activity("webchat"),
        )
    }

    /// Posts and checks the answer is a 401 naming `class`, and that nothing was stored
    /// or sent.
    async fn refused(&self, authorization: Option<&str>, activity: &Value, class: &str) {
        let store = self.t.app().store();
        let before = store.stats().await.unwrap();
        let (status, body, challenge) = self.t.post_with(authorization, activity).await;
        assert_eq!(status, 401, "{body}");
        let v: Value = serde_json::from_str(&body).expect("a JSON ErrorResponse");
        assert_eq!(v["error"]["code"], class, "{body}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        if let Some(auth) = authorization {
            // The answer never echoes the token.
            let token = auth.rsplit(' ').next().unwrap_or_default();
            assert!(token.len() < 8 || !body.contains(token), "{body}");
        }
        assert_eq!(challenge.as_deref(), Some("Bearer"));
        assert_eq!(store.stats().await.unwrap(), before, "nothing stored");
        assert_eq!(store.stats().await.unwrap().references, 0);
        assert!(self.t.channel.take().is_empty(), "nothing replied");
    }

    /// Posts and checks the turn was handled: 200, the reference stored, and the reply
    /// sent with the bot's own outbound token.
    async fn accepted(&self, authorization: &str, activity: &Value) {
        let (status, body, _) = self.t.post_with(Some(authorization), activity).await;
        assert_eq!((status, body.as_str()), (200, ""), "accepted");
        let got = self.t.channel.take();
        assert_eq!(got.len(), 1, "one reply: {got:?}");
        assert!(got[0].text().contains("watch"), "{}", got[0].text());
        assert_eq!(
            got[0].authorization.as_deref(),
            Some("Bearer outbound-token")
        );
        assert_eq!(self.t.app().store().stats().await.unwrap().references, 1);
    }
}

/// One test per refused token: `$make` gets the running daemon and returns the header
/// and the activity.
macro_rules! refused {
    ($name:ident, $class:expr, |$p:ident| $make:expr) => {
        #[tokio::test]
        async fn $name() {
            let $p = Prod::start().await;
            let (auth, activity): (Option<String>, Value) = $make;
            $p.refused(auth.as_deref(), &activity, $class).await;
        }
    };
}

#[tokio::test]
async fn valid_channel_tokens_rs256_rs384_rs512() {
    let p = Prod::start().await;
    for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512] {
        let token = p.channel.sign(alg, Some("endorsing"), &p.claims());
        p.accepted(&Prod::bearer(&token), &p.activity("msteams"))
            .await;
    }
}

#[tokio::test]
async fn a_key_without_endorsements_signs_for_any_channel() {
    let p = Prod::start().await;
    p.accepted(&p.signed("plain", &p.claims()), &p.activity("webchat"))
        .await;
}

#[tokio::test]
async fn expired_within_the_skew_is_accepted() {
    let p = Prod::start().await;
    let mut c = p.claims();
    c["exp"] = json!(p.now() - 240);
    p.accepted(&p.signed("plain", &c), &p.activity("webchat"))
        .await;
}

#[tokio::test]
async fn not_yet_valid_within_the_skew_is_accepted() {
    let p = Prod::start().await;
    let mut c = p.claims();
    c["nbf"] = json!(p.now() + 240);
    p.accepted(&p.signed("plain", &c), &p.activity("webchat"))
        .await;
}

#[tokio::test]
async fn a_verified_token_is_checked_again_on_every_use() {
    // The second use comes from the cache of verified tokens; time and activity rules
    // still apply to it.
    let p = Prod::start().await;
    let mut c = p.claims();
    c["exp"] = json!(p.now() + 60);
    let auth = p.signed("endorsing", &c);
    p.accepted(&auth, &p.activity("msteams")).await;
    p.accepted(&auth, &p.activity("msteams")).await;
    let mut other_url = p.activity("msteams");
    other_url["serviceUrl"] = "http://127.0.0.1:9/".into();
    let (status, body, _) = p.t.post_with(Some(&auth), &other_url).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("ServiceUrlMismatch"), "{body}");
    let (status, body, _) = p.t.post_with(Some(&auth), &p.activity("webchat")).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("ChannelNotEndorsed"), "{body}");
    p.clock.advance_ms(361_000);
    let (status, body, _) = p.t.post_with(Some(&auth), &p.activity("msteams")).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("TokenExpired"), "{body}");
    assert!(p.t.channel.take().is_empty());
}

refused!(expired_beyond_the_skew, "TokenExpired", |p| p
    .with_claim("exp", Some(json!(p.now() - 301))));

refused!(not_yet_valid_beyond_the_skew, "TokenNotYetValid", |p| p
    .with_claim("nbf", Some(json!(p.now() + 301))));

refused!(no_authorization_header, "MissingToken", |p| (
    None,
    p.activity("webchat")
));

refused!(basic_scheme, "MalformedAuthorization", |p| (
    Some("Basic dXNlcjpwYXNz".to_owned()),
    p.activity("webchat")
));

refused!(lower_case_bearer, "MalformedAuthorization", |p| {
    let token = p.channel.sign(Algorithm::RS256, Some("plain"), &p.claims());
    (Some(format!("bearer {token}")), p.activity("webchat"))
});

refused!(two_spaces_after_bearer, "MalformedAuthorization", |p| {
    let token = p.channel.sign(Algorithm::RS256, Some("plain"), &p.claims());
    (Some(format!("Bearer  {token}")), p.activity("webchat"))
});

refused!(garbage_token, "MalformedToken", |p| (
    Some("Bearer not-a-jwt".to_owned()),
    p.activity("webchat")
));

refused!(alg_none, "DisallowedAlgorithm", |p| (
    Some(Prod::bearer(&tokens::unsigned("plain", &p.claims()))),
    p.activity("webchat")
));

refused!(
    hs256_keyed_with_the_public_key,
    "DisallowedAlgorithm",
    |p| (
        Some(Prod::bearer(&tokens::hmac_with_public_key(
            &p.channel,
            "plain",
            &p.claims()
        ))),
        p.activity("webchat")
    )
);

refused!(ps256, "DisallowedAlgorithm", |p| (
    Some(Prod::bearer(&p.channel.sign(
        Algorithm::PS256,
        Some("plain"),
        &p.claims()
    ))),
    p.activity("webchat")
));

refused!(tampered_payload, "InvalidSignature", |p| {
    let token = p.channel.sign(Algorithm::RS256, Some("plain"), &p.claims());
    let mut c = p.claims();
    c["aud"] = json!(APP_ID);
    c["exp"] = json!(p.now() + 7 * 24 * 3600);
    (
        Some(Prod::bearer(&tokens::with_payload(&token, &c))),
        p.activity("webchat"),
    )
});

refused!(wrong_issuer, "UntrustedIssuer", |p| p
    .with_claim("iss", Some(json!("https://evil.example"))));

refused!(issuer_with_a_trailing_slash, "UntrustedIssuer", |p| p
    .with_claim("iss", Some(json!("https://api.botframework.com/"))));

refused!(wrong_audience, "WrongAudience", |p| p
    .with_claim("aud", Some(json!("another-bot"))));

refused!(missing_audience, "WrongAudience", |p| p
    .with_claim("aud", None));

refused!(audience_as_an_array, "WrongAudience", |p| p
    .with_claim("aud", Some(json!([APP_ID]))));

refused!(no_exp, "MissingClaim", |p| p.with_claim("exp", None));

refused!(exp_as_a_string, "InvalidClaim", |p| p
    .with_claim("exp", Some(json!((p.now() + 3600).to_string()))));

refused!(no_kid, "MissingKeyId", |p| (
    Some(Prod::bearer(&p.channel.sign(
        Algorithm::RS256,
        None,
        &p.claims()
    ))),
    p.activity("webchat")
));

refused!(another_key_claiming_a_known_kid, "InvalidSignature", |p| (
    Some(Prod::bearer(&TestKey::load("impostor").sign(
        Algorithm::RS256,
        Some("plain"),
        &p.claims()
    ))),
    p.activity("webchat")
));

refused!(
    endorsements_without_the_channel,
    "ChannelNotEndorsed",
    |p| (
        Some(p.signed("endorsing", &p.claims())),
        p.activity("webchat")
    )
);

refused!(
    empty_channel_id_with_an_endorsing_key,
    "ChannelNotEndorsed",
    |p| (Some(p.signed("endorsing", &p.claims())), p.activity(""))
);

refused!(missing_serviceurl_claim, "MissingClaim", |p| p
    .with_claim("serviceurl", None));

refused!(serviceurl_claim_differs, "ServiceUrlMismatch", |p| p
    .with_claim(
        "serviceurl",
        Some(json!("https://smba.trafficmanager.net/amer/"))
    ));

refused!(
    serviceurl_claim_differs_by_a_trailing_slash,
    "ServiceUrlMismatch",
    |p| {
        let mut c = p.claims();
        let url = p.service_url();
        c["serviceurl"] = json!(url
            .strip_suffix('/')
            .map(str::to_owned)
            .unwrap_or(url + "/"));
        (Some(p.signed("plain", &c)), p.activity("webchat"))
    }
);

refused!(activity_without_service_url, "MissingServiceUrl", |p| {
    let mut a = p.activity("webchat");
    a.as_object_mut().unwrap().remove("serviceUrl");
    (Some(p.signed("plain", &p.claims())), a)
});

refused!(
    emulator_token_while_disabled,
    "EmulatorTokensDisabled",
    |p| (
        Some(p.signed("emu", &emulator_claims(EMULATOR_V1_ISSUER, "1.0", p.now()))),
        p.activity("emulator")
    )
);

#[tokio::test]
async fn unknown_kid_is_refused_after_one_refresh() {
    let p = Prod::start().await;
    let fetched = p.keys.metadata_fetches();
    // Within a minute of the start-up fetch: refused without a fetch.
    let auth = p.signed("never-published", &p.claims());
    p.refused(Some(&auth), &p.activity("webchat"), "UnknownSigningKey")
        .await;
    assert_eq!(p.keys.metadata_fetches(), fetched);
    // Past it: one refresh, and still refused.
    p.clock.advance_ms(61_000);
    let auth = p.signed("never-published", &p.claims());
    p.refused(Some(&auth), &p.activity("webchat"), "UnknownSigningKey")
        .await;
    assert_eq!(p.keys.metadata_fetches(), fetched + 1);
}

#[tokio::test]
async fn emulator_tokens_when_enabled_v1_appid_and_v2_azp() {
    let p = Prod::start_with(|c| c.auth.emulator_tokens = true).await;
    let v1 = emulator_claims(EMULATOR_V1_ISSUER, "1.0", p.now());
    p.accepted(&p.signed("emu", &v1), &p.activity("emulator"))
        .await;
    let v2 = emulator_claims(EMULATOR_V2_ISSUER, "2.0", p.now());
    p.accepted(&p.signed("emu", &v2), &p.activity("emulator"))
        .await;
    // v1.0 names the bot in appid: an azp alone does not count.
    let mut wrong = emulator_claims(EMULATOR_V1_ISSUER, "1.0", p.now());
    wrong.as_object_mut().unwrap().remove("appid");
    wrong["azp"] = json!(APP_ID);
    let (status, body, _) =
        p.t.post_with(Some(&p.signed("emu", &wrong)), &p.activity("emulator"))
            .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("WrongAppId"), "{body}");
    // A channel key does not sign Emulator tokens.
    let (status, body, _) =
        p.t.post_with(Some(&p.signed("plain", &v1)), &p.activity("emulator"))
            .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("UnknownSigningKey"), "{body}");
}

fn own_tenant_claims(now: i64) -> Value {
    let mut c = emulator_claims(
        &format!("https://sts.windows.net/{OWN_TENANT}/"),
        "1.0",
        now,
    );
    c["tid"] = json!(OWN_TENANT);
    c
}

#[tokio::test]
async fn own_tenant_emulator_token_for_a_single_tenant_bot_is_accepted() {
    let p = Prod::start_with(|c| {
        c.auth.emulator_tokens = true;
        c.bot.app_type = AppType::SingleTenant;
        c.bot.tenant_id = OWN_TENANT.to_owned();
    })
    .await;
    p.accepted(
        &p.signed("emu", &own_tenant_claims(p.now())),
        &p.activity("emulator"),
    )
    .await;
}

#[tokio::test]
async fn own_tenant_emulator_token_for_a_multi_tenant_bot_is_refused() {
    let p = Prod::start_with(|c| {
        c.auth.emulator_tokens = true;
        c.bot.tenant_id = OWN_TENANT.to_owned();
    })
    .await;
    let auth = p.signed("emu", &own_tenant_claims(p.now()));
    p.refused(Some(&auth), &p.activity("emulator"), "UntrustedIssuer")
        .await;
}

#[tokio::test]
async fn rotated_keys_are_picked_up_and_unknown_kids_cost_one_fetch_a_minute() {
    let p = Prod::start().await;
    let old = p.signed("plain", &p.claims());
    p.accepted(&old, &p.activity("webchat")).await;

    let rotated = TestKey::load("rotated");
    p.keys
        .publish_channel_keys(vec![Published::of("next", &rotated, None)]);
    p.clock.advance_ms(61_000);
    let fetched = p.keys.metadata_fetches();
    let new = Prod::bearer(&rotated.sign(Algorithm::RS256, Some("next"), &p.claims()));
    let (status, body, _) = p.t.post_with(Some(&new), &p.activity("webchat")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, ""),
        "the new key after one refresh"
    );
    assert_eq!(p.keys.metadata_fetches(), fetched + 1);
    // The old key is gone, and a token verified under it is not believed any more.
    let (status, body, _) = p.t.post_with(Some(&old), &p.activity("webchat")).await;
    assert_eq!(status, 401, "{body}");

    // 1,000 tokens naming unknown keys, within the same minute: no fetch at all.
    p.clock.advance_ms(61_000);
    let before = p.keys.metadata_fetches();
    // A signature is never checked before the key is found, so one serves them all.
    let signed = rotated.sign(Algorithm::RS256, Some("next"), &p.claims());
    let (_, rest) = signed.split_once('.').unwrap();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let header = json!({"alg": "RS256", "typ": "JWT", "kid": format!("made-up-{i}")});
            let auth = Prod::bearer(&format!(
                "{}.{rest}",
                tokens::base64url(header.to_string().as_bytes())
            ));
            let client = p.t.client.clone();
            let url = p.t.url.clone();
            let activity = p.activity("webchat");
            tokio::spawn(async move {
                client
                    .post(url)
                    .header("authorization", auth)
                    .json(&activity)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 401);
    }
    assert_eq!(
        p.keys.metadata_fetches(),
        before + 1,
        "one refresh for 1,000 unknown kids in a minute"
    );
}

#[tokio::test]
async fn unreachable_keys_at_start_up_refuse_tokens_until_they_arrive() {
    // A port nothing listens on: the daemon starts all the same.
    let p = Prod::start_with(|c| {
        c.auth.openid_metadata_url = "http://127.0.0.1:9/openid".to_owned();
    })
    .await;
    let status = p.t.app().key_status().expect("production mode");
    assert_eq!(status.keys, 0);
    assert!(status.last_error.is_some());
    let auth = p.signed("plain", &p.claims());
    p.refused(
        Some(&auth),
        &p.activity("webchat"),
        "SigningKeysUnavailable",
    )
    .await;
    let (status, body) = crate::service::readyz(&p.t).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["failing"][0]
            .as_str()
            .unwrap()
            .starts_with("signing keys"),
        "{body}"
    );
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_cached_keys_serving() {
    let p = Prod::start().await;
    p.keys.fail(true);
    p.clock.advance_ms(61_000);
    let fetched = p.keys.metadata_fetches();
    // An unknown kid asks for a refresh, which fails...
    let (status, _, _) =
        p.t.post_with(
            Some(&p.signed("new-kid", &p.claims())),
            &p.activity("webchat"),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(p.keys.metadata_fetches(), fetched + 1);
    let state = p.t.app().key_status().unwrap();
    assert!(state.last_error.is_some(), "{state:?}");
    assert_eq!(state.keys, 2, "the cached keys are kept");
    // ...and the cached keys still serve.
    p.accepted(&p.signed("plain", &p.claims()), &p.activity("webchat"))
        .await;
    // Served again, the next refresh clears the error.
    p.keys.fail(false);
    p.clock.advance_ms(61_000);
    let (status, _, _) =
        p.t.post_with(
            Some(&p.signed("new-kid", &p.claims())),
            &p.activity("webchat"),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(p.t.app().key_status().unwrap().last_error, None);
}

#[tokio::test]
async fn production_mode_binds_any_address() {
    let p = Prod::start_with(|c| c.server.bind = "0.0.0.0:0".parse().unwrap()).await;
    assert!(p.t.app().local_addr().ip().is_unspecified());
    p.accepted(&p.signed("plain", &p.claims()), &p.activity("webchat"))
        .await;
}

#[tokio::test]
async fn a_refused_activity_never_changes_a_stored_reference() {
    let p = Prod::start().await;
    p.accepted(&p.signed("plain", &p.claims()), &p.activity("webchat"))
        .await;
    let key = pricewatch::inbound::activity::ConversationKey {
        channel_id: "webchat".into(),
        conversation_id: "c1".into(),
    };
    let store = p.t.app().store();
    let before = store.reference(&key).await.unwrap().unwrap();
    // The same conversation, claiming another serviceUrl, with a token for it that is
    // signed by nobody trusted.
    let mut hijack = p.activity("webchat");
    hijack["serviceUrl"] = "https://attacker.example/".into();
    let mut c = p.claims();
    c["serviceurl"] = json!("https://attacker.example/");
    let forged = Prod::bearer(&TestKey::load("impostor").sign(Algorithm::RS256, Some("plain"), &c));
    let (status, _, _) = p.t.post_with(Some(&forged), &hijack).await;
    assert_eq!(status, 401);
    assert_eq!(store.reference(&key).await.unwrap().unwrap(), before);
}

/// The real binary in production mode, as an operator starts it: an app password file,
/// keys from a (local) key server, and `check-config` agreeing with `serve`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_production_mode_and_check_config_agrees() {
    let channel_key = TestKey::load("channel");
    let keys = KeyServer::start(vec![Published::of("plain", &channel_key, None)], vec![]).await;
    let channel = crate::fakes::FakeChannel::start().await;
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("app-password");
    std::fs::write(&password, "app-secret\n").unwrap();
    let production = format!(
        "[server]\nbind = \"127.0.0.1:0\"\n\n[storage]\npath = {data:?}\n\n\
         [bot]\napp_id = {APP_ID:?}\napp_password_file = {password:?}\n\
         token_endpoint = {token:?}\nservice_url_hosts = [\"127.0.0.1\"]\n\n\
         [auth]\nopenid_metadata_url = {metadata:?}\n",
        data = dir.path().join("data").display().to_string(),
        password = password.display().to_string(),
        token = keys.token_url(),
        metadata = keys.channel_metadata_url(),
    );
    let file = dir.path().join("production.toml");
    std::fs::write(&file, &production).unwrap();

    let check = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pricewatch"))
            .arg("check-config")
            .arg(file)
            .output()
            .unwrap()
    };
    let out = check(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("production mode"));

    let (daemon, addr, log) = crate::process::spawn_daemon(&file);
    assert!(log.contains("PRODUCTION MODE"), "{log}");
    let activity = crate::process::activity("webchat", &channel.url, "c1", "help");
    let token = channel_key.sign(
        Algorithm::RS256,
        Some("plain"),
        &channel_claims(&channel.url, tokens::now()),
    );
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/api/messages");
    let r = client.post(&url).json(&activity).send().await.unwrap();
    assert_eq!(r.status(), 401, "no token");
    let r = client
        .post(&url)
        .bearer_auth(&token)
        .json(&activity)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let got = crate::helpers::wait_for(&channel, 1).await;
    assert!(got[0].text().contains("watch"), "{}", got[0].text());
    assert_eq!(
        got[0].authorization.as_deref(),
        Some("Bearer outbound-token")
    );
    drop(daemon);

    // What serve refuses, check-config refuses, naming the file and the reason.
    let refusals = [
        (
            production.replace(&password.display().to_string(), "/nonexistent/app-password"),
            "app password",
        ),
        (
            production.replace("[bot]\n", "[bot]\napp_type = \"UserAssignedMSI\"\n"),
            "UserAssignedMSI",
        ),
        (
            format!(
                "[server]\nbind = \"0.0.0.0:0\"\n\n[storage]\npath = {:?}\n",
                dir.path().join("dev").display().to_string()
            ),
            "loopback",
        ),
    ];
    for (text, why) in refusals {
        let file = dir.path().join("refused.toml");
        std::fs::write(&file, &text).unwrap();
        let out = check(&file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "check-config: {stderr}");
        assert!(
            stderr.contains("refused.toml") && stderr.contains(why),
            "{stderr}"
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pricewatch"))
            .args(["serve", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "serve started with {text}");
        assert!(stderr.contains(why), "serve: {stderr}");
    }
}

/// Every secret the daemon holds or sees, against its whole debug log: the app password,
/// the admin token, the outbound token it got, and the inbound token a channel sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log() {
    let channel_key = TestKey::load("channel");
    let keys = KeyServer::start(vec![Published::of("plain", &channel_key, None)], vec![]).await;
    let channel = crate::fakes::FakeChannel::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app_password = "app-password-7f3c9e21d4b8a6";
    let admin_token = "admin-token-0d9b7c5e3a1f2468ace0bd9f7c5e3a1f";
    std::fs::write(dir.path().join("app-password"), app_password).unwrap();
    std::fs::write(dir.path().join("admin-token"), admin_token).unwrap();
    let file = crate::process::write_config(
        dir.path(),
        &format!(
            "\n[schedule]\nenabled = false\n\n[log]\nlevel = \"debug\"\n\n\
             [bot]\napp_id = {APP_ID:?}\napp_password_file = {password:?}\n\
             token_endpoint = {token:?}\nservice_url_hosts = [\"127.0.0.1\"]\n\n\
             [notify]\nadmin_token_file = {admin:?}\n\n\
             [auth]\nopenid_metadata_url = {metadata:?}\n",
            password = dir.path().join("app-password").display().to_string(),
            admin = dir.path().join("admin-token").display().to_string(),
            token = keys.token_url(),
            metadata = keys.channel_metadata_url(),
        ),
    );
    let daemon = crate::process::LoggedDaemon::start(&file).await;
    let inbound = channel_key.sign(
        Algorithm::RS256,
        Some("plain"),
        &channel_claims(&channel.url, tokens::now()),
    );
    let client = reqwest::Client::new();
    let base = format!("http://{}", daemon.addr);
    let help = crate::process::activity("webchat", &channel.url, "c1", "help");
    let r = client
        .post(format!("{base}/api/messages"))
        .bearer_auth(&inbound)
        .json(&help)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A refused token is logged too: with its reason, never itself.
    let forged = format!("{inbound}x");
    let r = client
        .post(format!("{base}/api/messages"))
        .bearer_auth(&forged)
        .json(&help)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(format!("{base}/api/notify"))
        .bearer_auth(admin_token)
        .json(&json!({"text": "maintenance tonight"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = client
        .post(format!("{base}/api/notify"))
        .bearer_auth(format!("{admin_token}-wrong"))
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    crate::helpers::wait_for(&channel, 2).await;
    let log = String::from_utf8(daemon.stop()).unwrap();
    assert!(log.contains("activity refused"), "the run logged: {log}");
    let signature = inbound.rsplit('.').next().unwrap();
    for (what, secret) in [
        ("app password", app_password),
        ("admin token", admin_token),
        ("outbound token", "outbound-token"),
        ("inbound token", inbound.as_str()),
        ("inbound token's signature", signature),
    ] {
        assert!(!log.contains(secret), "the {what} is in the log:\n{log}");
    }
}
