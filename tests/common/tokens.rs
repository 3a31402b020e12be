//! Bot Framework tokens minted locally: test RSA keys (`tests/fixtures/keys/`, made for
//! these tests and nothing else), a key server that publishes OpenID metadata and a
//! JWKS on loopback (and a bot token endpoint for the daemon's replies), and signing.
//! Shared by the API tests and the turn benchmark.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use warp::Filter;

pub const APP_ID: &str = "3f2a9c1e-0000-4000-8000-00000000b07a";
pub const CHANNEL_ISSUER: &str = "https://api.botframework.com";
/// One of the Emulator's Azure AD issuers (v1.0 tokens).
pub const EMULATOR_V1_ISSUER: &str =
    "https://sts.windows.net/d6d49420-f39b-4df7-a1dc-d59a935871db/";
pub const EMULATOR_V2_ISSUER: &str =
    "https://login.microsoftonline.com/f8cdef31-a31e-4b4a-93e4-5f571e91255a/v2.0";

/// A test key: its private half signs, its public half is published.
pub struct TestKey {
    pub encoding: EncodingKey,
    pub n: String,
    pub e: String,
    /// The public half, PEM text.
    pub public_pem: Vec<u8>,
}

impl TestKey {
    /// `channel`, `rotated` or `impostor`.
    pub fn load(name: &str) -> TestKey {
        let path = format!(
            "{}/tests/fixtures/keys/{name}.pem",
            env!("CARGO_MANIFEST_DIR")
        );
        let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let public_pem = std::fs::read(path.replace(".pem", ".pub.pem")).expect("the public half");
        let encoding = EncodingKey::from_rsa_pem(&pem).expect("an RSA private key");
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, Algorithm::RS256)
            .expect("a public JWK");
        let jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) = jwk.algorithm else {
            panic!("not RSA")
        };
        TestKey {
            encoding,
            n: rsa.n,
            e: rsa.e,
            public_pem,
        }
    }

    /// Signs `claims` with this key under `kid`.
    pub fn sign(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signed")
    }
}

/// A published key.
#[derive(Clone)]
pub struct Published {
    pub kid: String,
    pub n: String,
    pub e: String,
    pub endorsements: Option<Vec<String>>,
}

impl Published {
    pub fn of(kid: &str, key: &TestKey, endorsements: Option<&[&str]>) -> Published {
        Published {
            kid: kid.to_owned(),
            n: key.n.clone(),
            e: key.e.clone(),
            endorsements: endorsements.map(|e| e.iter().map(|s| (*s).to_owned()).collect()),
        }
    }
}

/// OpenID metadata at `/channel/openid` and `/emulator/openid`, each naming its JWKS;
/// the bot's outbound token at `/token`. Counts the fetches of each.
pub struct KeyServer {
    pub base: String,
    channel_keys: Arc<Mutex<Vec<Published>>>,
    emulator_keys: Arc<Mutex<Vec<Published>>>,
    pub metadata_fetches: Arc<AtomicUsize>,
    pub jwks_fetches: Arc<AtomicUsize>,
    pub token_requests: Arc<AtomicUsize>,
    /// While set, the metadata answers 503.
    failing: Arc<AtomicBool>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn jwks(keys: &[Published]) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| {
            let mut v = json!({"kty": "RSA", "use": "sig", "kid": k.kid, "n": k.n, "e": k.e});
            if let Some(e) = &k.endorsements {
                v["endorsements"] = json!(e);
            }
            v
        })
        .collect();
    json!({ "keys": keys })
}

impl KeyServer {
    pub async fn start(channel: Vec<Published>, emulator: Vec<Published>) -> KeyServer {
        let channel_keys = Arc::new(Mutex::new(channel));
        let emulator_keys = Arc::new(Mutex::new(emulator));
        let metadata_fetches = Arc::new(AtomicUsize::new(0));
        let jwks_fetches = Arc::new(AtomicUsize::new(0));
        let token_requests = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());

        let (b, m, f) = (base.clone(), metadata_fetches.clone(), failing.clone());
        let metadata = warp::path!(String / "openid").map(move |which: String| {
            m.fetch_add(1, Ordering::SeqCst);
            let status = if f.load(Ordering::SeqCst) {
                warp::http::StatusCode::SERVICE_UNAVAILABLE
            } else {
                warp::http::StatusCode::OK
            };
            warp::reply::with_status(
                warp::reply::json(&json!({
                    "issuer": "https://api.botframework.com",
                    "jwks_uri": format!("{b}/{which}/keys"),
                    "id_token_signing_alg_values_supported": ["RS256"],
                })),
                status,
            )
        });
        let (c, em, j) = (
            channel_keys.clone(),
            emulator_keys.clone(),
            jwks_fetches.clone(),
        );
        let keys = warp::path!(String / "keys").map(move |which: String| {
            j.fetch_add(1, Ordering::SeqCst);
            let set = if which == "emulator" { &em } else { &c };
            warp::reply::json(&jwks(&set.lock().unwrap()))
        });
        let t = token_requests.clone();
        let token = warp::path!("token").and(warp::post()).map(move || {
            t.fetch_add(1, Ordering::SeqCst);
            warp::reply::json(&json!({
                "token_type": "Bearer", "expires_in": 3600, "access_token": "outbound-token"
            }))
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(
            warp::serve(metadata.or(keys).or(token))
                .incoming(listener)
                .graceful(async {
                    let _ = rx.await;
                })
                .run(),
        );
        KeyServer {
            base,
            channel_keys,
            emulator_keys,
            metadata_fetches,
            jwks_fetches,
            token_requests,
            failing,
            _stop: tx,
        }
    }

    pub fn channel_metadata_url(&self) -> String {
        format!("{}/channel/openid", self.base)
    }

    pub fn emulator_metadata_url(&self) -> String {
        format!("{}/emulator/openid", self.base)
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.base)
    }

    /// Replaces the published channel keys (a rotation).
    pub fn publish_channel_keys(&self, keys: Vec<Published>) {
        *self.channel_keys.lock().unwrap() = keys;
    }

    /// Makes the metadata answer 503 (`true`) or serve again.
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    pub fn metadata_fetches(&self) -> usize {
        self.metadata_fetches.load(Ordering::SeqCst)
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The claims of a good channel token for `service_url`, valid from a minute ago for an
/// hour from `at`.
pub fn channel_claims(service_url: &str, at: i64) -> Value {
    json!({
        "iss": CHANNEL_ISSUER,
        "aud": APP_ID,
        "serviceurl": service_url,
        "nbf": at - 60,
        "exp": at + 3600,
        "iat": at - 60,
    })
}

/// The claims of an Emulator token: v1.0 names the bot in `appid`, v2.0 in `azp`.
pub fn emulator_claims(issuer: &str, version: &str, at: i64) -> Value {
    let mut c = json!({
        "iss": issuer,
        "aud": APP_ID,
        "ver": version,
        "nbf": at - 60,
        "exp": at + 3600,
        "tid": "d6d49420-f39b-4df7-a1dc-d59a935871db",
    });
    c[if version == "1.0" { "appid" } else { "azp" }] = json!(APP_ID);
    c
}

pub fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with `alg: none` and no signature.
pub fn unsigned(kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// `token` with its payload replaced by `claims`, the signature kept.
pub fn with_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    )
}

/// An HS256 token keyed with the public key's PEM text: the classic algorithm
/// confusion attack against verifiers that let the token choose the algorithm.
pub fn hmac_with_public_key(key: &TestKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(&key.public_pem)).unwrap()
}
