//! The pure half of inbound authentication: the `Authorization` header, the token's
//! parts, which validator a token belongs to, and every claim rule. No I/O and no clock:
//! the caller passes the time, and the signature check (which needs a key) is done by
//! the caller through `jsonwebtoken`.
//!
//! The rules are those of the Bot Framework SDKs (docs/rules.md, "Inbound
//! authentication"), tightened wherever an SDK lets a bad token through: `exp` and `nbf`
//! are required and must be numbers, an endorsing key needs a non-empty `channelId`, and
//! a channel token needs a `serviceurl` claim equal to an activity that has one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use super::AuthError;

/// The only issuer of channel tokens. A trailing slash is a different issuer.
pub const CHANNEL_ISSUER: &str = "https://api.botframework.com";

/// Issuers of Emulator tokens (Azure AD, v1.0 and v2.0 endpoints, for the tenants the
/// Bot Framework signs Emulator tokens with, and the US Government cloud's).
pub const EMULATOR_ISSUERS: [&str; 7] = [
    "https://sts.windows.net/d6d49420-f39b-4df7-a1dc-d59a935871db/",
    "https://login.microsoftonline.com/d6d49420-f39b-4df7-a1dc-d59a935871db/v2.0",
    "https://sts.windows.net/f8cdef31-a31e-4b4a-93e4-5f571e91255a/",
    "https://login.microsoftonline.com/f8cdef31-a31e-4b4a-93e4-5f571e91255a/v2.0",
    "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
    "https://sts.windows.net/cab8a31a-1906-4287-a0d8-4eef66b95f6e/",
    "https://login.microsoftonline.us/cab8a31a-1906-4287-a0d8-4eef66b95f6e/v2.0",
];

/// The token in `Authorization: Bearer <token>`. As in the SDKs, the header must be
/// exactly two parts split by one space, and the scheme is case-sensitive.
pub fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let header = header
        .filter(|h| !h.is_empty())
        .ok_or(AuthError::MissingToken)?;
    let mut parts = header.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("Bearer"), Some(token), None) if !token.is_empty() => Ok(token),
        _ => Err(AuthError::MalformedHeader),
    }
}

/// A token's header and claims, read but not yet believed.
#[derive(Debug)]
pub struct Unverified<'a> {
    pub alg: jsonwebtoken::Algorithm,
    pub kid: String,
    pub claims: Map<String, Value>,
    /// `header.payload`, what the signature covers.
    pub signed: &'a str,
    pub signature: &'a str,
}

/// Splits and decodes a compact JWS, and refuses any algorithm but RS256, RS384 and
/// RS512 before a key is even looked up (so `none`, HMAC and PS* never reach a
/// verifier), and a header without `kid`.
pub fn read(token: &str) -> Result<Unverified<'_>, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::MalformedToken);
    };
    let header = decode_object(header)?;
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("RS256") => jsonwebtoken::Algorithm::RS256,
        Some("RS384") => jsonwebtoken::Algorithm::RS384,
        Some("RS512") => jsonwebtoken::Algorithm::RS512,
        _ => return Err(AuthError::DisallowedAlgorithm),
    };
    let kid = match header.get("kid").and_then(Value::as_str) {
        Some(kid) if !kid.is_empty() => kid.to_owned(),
        _ => return Err(AuthError::MissingKeyId),
    };
    if signature.is_empty() {
        return Err(AuthError::MalformedToken);
    }
    let claims = decode_object(payload)?;
    Ok(Unverified {
        alg,
        kid,
        claims,
        signed: &token[..header_payload_len(token)],
        signature,
    })
}

fn header_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::MalformedToken)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(AuthError::MalformedToken),
    }
}

/// Which validator a token goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Channel,
    Emulator,
}

/// What routing needs to know of the bot.
#[derive(Debug, Clone)]
pub struct RouteSettings {
    pub emulator_tokens: bool,
    /// The bot's own tenant, for a single-tenant bot only: its Azure AD issuers are then
    /// Emulator issuers too. A multi-tenant bot gets no such issuers, and no token ever
    /// adds one (unlike the SDKs, which grow a process-wide list from the tokens seen).
    pub own_tenant: Option<String>,
}

/// Sends a token to the channel or the Emulator validator by its (unverified) issuer,
/// refusing skill tokens, unknown issuers, and Emulator tokens when they are off.
pub fn route(claims: &Map<String, Value>, settings: &RouteSettings) -> Result<Route, AuthError> {
    let issuer = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(AuthError::UntrustedIssuer)?;
    if is_skill(claims) {
        return Err(AuthError::SkillToken);
    }
    if issuer == CHANNEL_ISSUER {
        return Ok(Route::Channel);
    }
    let own_tenant = settings.own_tenant.as_deref().is_some_and(|tenant| {
        issuer == format!("https://sts.windows.net/{tenant}/")
            || issuer == format!("https://login.microsoftonline.com/{tenant}/v2.0")
    });
    if EMULATOR_ISSUERS.contains(&issuer) || own_tenant {
        return if settings.emulator_tokens {
            Ok(Route::Emulator)
        } else {
            Err(AuthError::EmulatorTokensDisabled)
        };
    }
    Err(AuthError::UntrustedIssuer)
}

/// A skill's token, as the SDKs recognise one: a version, an audience that is not the
/// channel service, and a caller app id different from it. pricewatch is not a skill
/// host, so these are refused as the SDKs refuse them without claims validation.
fn is_skill(claims: &Map<String, Value>) -> bool {
    let Some(aud) = claims.get("aud").and_then(Value::as_str) else {
        return false;
    };
    if !claims.contains_key("ver") || aud == CHANNEL_ISSUER {
        return false;
    }
    caller_app_id(claims).is_some_and(|app| app != aud)
}

fn caller_app_id(claims: &Map<String, Value>) -> Option<&str> {
    match claims.get("ver").and_then(Value::as_str) {
        Some("1.0") => claims.get("appid").and_then(Value::as_str),
        Some("2.0") => claims.get("azp").and_then(Value::as_str),
        _ => None,
    }
}

/// When a token may be used, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub not_before: i64,
    pub expires: i64,
}

/// `nbf` and `exp`, both required and both numbers: a token without an expiry would be
/// good forever, and one whose expiry is a string is not a JWT (RFC 7519 §4.1.4).
pub fn lifetime(claims: &Map<String, Value>) -> Result<Lifetime, AuthError> {
    Ok(Lifetime {
        not_before: numeric_date(claims, "nbf")?,
        expires: numeric_date(claims, "exp")?,
    })
}

fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<i64, AuthError> {
    let value = claims.get(name).ok_or(AuthError::MissingClaim(name))?;
    if let Some(n) = value.as_i64() {
        return Ok(n);
    }
    // A NumericDate may have a fraction; one past i64 is no date.
    match value.as_f64() {
        Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(f.floor() as i64),
        _ => Err(AuthError::InvalidClaim(name)),
    }
}

/// `exp` and `nbf` against `now`, each with `skew` seconds of tolerance.
pub fn check_lifetime(lifetime: Lifetime, now: i64, skew: i64) -> Result<(), AuthError> {
    if now > lifetime.expires.saturating_add(skew) {
        return Err(AuthError::Expired);
    }
    if now.saturating_add(skew) < lifetime.not_before {
        return Err(AuthError::NotYetValid);
    }
    Ok(())
}

/// Whom the token was issued to. A channel token's `aud` must be the app id, as one
/// string (an array is refused, never searched); an Emulator token names the bot in
/// `appid` (v1.0) or `azp` (v2.0).
pub fn check_recipient(
    route: Route,
    claims: &Map<String, Value>,
    app_id: &str,
) -> Result<(), AuthError> {
    match route {
        Route::Channel => match claims.get("aud") {
            Some(Value::String(aud)) if aud == app_id => Ok(()),
            _ => Err(AuthError::WrongAudience),
        },
        Route::Emulator => match claims.get("ver").and_then(Value::as_str) {
            Some("1.0" | "2.0") => match caller_app_id(claims) {
                Some(app) if app == app_id => Ok(()),
                _ => Err(AuthError::WrongAppId),
            },
            _ => Err(AuthError::InvalidClaim("ver")),
        },
    }
}

/// The `serviceurl` claim a channel token must carry (none is read from an Emulator
/// token, which has none).
pub fn service_url_claim(
    route: Route,
    claims: &Map<String, Value>,
) -> Result<Option<String>, AuthError> {
    match route {
        Route::Emulator => Ok(None),
        Route::Channel => match claims.get("serviceurl") {
            Some(Value::String(url)) if !url.is_empty() => Ok(Some(url.clone())),
            _ => Err(AuthError::MissingClaim("serviceurl")),
        },
    }
}

/// What of the activity the token must vouch for.
#[derive(Debug, Clone, Copy)]
pub struct ActivityFacts<'a> {
    pub channel_id: Option<&'a str>,
    pub service_url: Option<&'a str>,
}

/// The checks that tie a verified token to this activity: the activity names where to
/// reply, a channel token's `serviceurl` is that address byte for byte, and a key that
/// lists endorsements endorses the activity's (non-empty) channel.
pub fn check_activity(
    facts: ActivityFacts<'_>,
    service_url_claim: Option<&str>,
    endorsements: &[String],
) -> Result<(), AuthError> {
    let service_url = facts
        .service_url
        .filter(|s| !s.is_empty())
        .ok_or(AuthError::NoServiceUrl)?;
    if let Some(claim) = service_url_claim {
        if claim != service_url {
            return Err(AuthError::ServiceUrlMismatch);
        }
    }
    if !endorsements.is_empty() {
        let endorsed = facts
            .channel_id
            .filter(|c| !c.is_empty())
            .is_some_and(|c| endorsements.iter().any(|e| e == c));
        if !endorsed {
            return Err(AuthError::ChannelNotEndorsed);
        }
    }
    Ok(())
}

/// Whether an OpenID metadata or JWKS address may be fetched: https, or plain http to a
/// loopback address (a local key server for tests).
pub fn is_allowed_key_url(url: &url::Url) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn segment(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn bearer_is_exact() {
        assert_eq!(bearer(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(None), Err(AuthError::MissingToken));
        assert_eq!(bearer(Some("")), Err(AuthError::MissingToken));
        for bad in [
            "bearer abc",
            "BEARER abc",
            "Basic abc",
            "Bearer  abc",
            "Bearer abc def",
            "Bearer ",
            "Bearer",
            " Bearer abc",
        ] {
            assert_eq!(
                bearer(Some(bad)),
                Err(AuthError::MalformedHeader),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_rsa_pkcs1_algorithms_with_a_kid_are_read() {
        let payload = segment(&json!({"iss": CHANNEL_ISSUER}));
        for (alg, ok) in [
            ("RS256", true),
            ("RS384", true),
            ("RS512", true),
            ("none", false),
            ("HS256", false),
            ("PS256", false),
            ("ES256", false),
            ("rs256", false),
        ] {
            let token = format!(
                "{}.{payload}.c2ln",
                segment(&json!({"alg": alg, "kid": "k1"}))
            );
            match read(&token) {
                Ok(u) => {
                    assert!(ok, "{alg} was read");
                    assert_eq!(u.kid, "k1");
                    assert_eq!(u.signature, "c2ln");
                    assert!(token.starts_with(u.signed) && u.signed.ends_with(&payload));
                }
                Err(e) => {
                    assert!(!ok, "{alg} refused: {e}");
                    assert_eq!(e, AuthError::DisallowedAlgorithm);
                }
            }
        }
        let no_kid = format!("{}.{payload}.c2ln", segment(&json!({"alg": "RS256"})));
        assert_eq!(read(&no_kid).unwrap_err(), AuthError::MissingKeyId);
        let unsigned = format!(
            "{}.{payload}.",
            segment(&json!({"alg": "RS256", "kid": "k"}))
        );
        assert_eq!(read(&unsigned).unwrap_err(), AuthError::MalformedToken);
        for garbage in ["", "abc", "a.b", "a.b.c.d", "!!.??.x", "e30.e30"] {
            assert!(read(garbage).is_err(), "{garbage:?}");
        }
        let array_payload = format!(
            "{}.{}.c2ln",
            segment(&json!({"alg": "RS256", "kid": "k"})),
            segment(&json!([1]))
        );
        assert_eq!(read(&array_payload).unwrap_err(), AuthError::MalformedToken);
    }

    fn settings(emulator: bool, tenant: Option<&str>) -> RouteSettings {
        RouteSettings {
            emulator_tokens: emulator,
            own_tenant: tenant.map(str::to_owned),
        }
    }

    #[test]
    fn routes_by_exact_issuer() {
        let on = settings(true, None);
        let c = |iss: &str| claims(json!({"iss": iss, "aud": "app"}));
        assert_eq!(route(&c(CHANNEL_ISSUER), &on), Ok(Route::Channel));
        assert_eq!(
            route(&c("https://api.botframework.com/"), &on),
            Err(AuthError::UntrustedIssuer)
        );
        assert_eq!(
            route(&c("https://API.botframework.com"), &on),
            Err(AuthError::UntrustedIssuer)
        );
        assert_eq!(
            route(&claims(json!({"aud": "app"})), &on),
            Err(AuthError::UntrustedIssuer)
        );
        for iss in EMULATOR_ISSUERS {
            assert_eq!(route(&c(iss), &on), Ok(Route::Emulator));
            assert_eq!(
                route(&c(iss), &settings(false, None)),
                Err(AuthError::EmulatorTokensDisabled)
            );
        }
    }

    #[test]
    fn the_own_tenant_is_an_emulator_issuer_only_for_a_single_tenant_bot() {
        let iss = "https://sts.windows.net/tenant-1/";
        let v2 = "https://login.microsoftonline.com/tenant-1/v2.0";
        let c = |iss: &str| claims(json!({"iss": iss}));
        let single = settings(true, Some("tenant-1"));
        assert_eq!(route(&c(iss), &single), Ok(Route::Emulator));
        assert_eq!(route(&c(v2), &single), Ok(Route::Emulator));
        assert_eq!(
            route(&c("https://sts.windows.net/tenant-2/"), &single),
            Err(AuthError::UntrustedIssuer)
        );
        assert_eq!(
            route(&c(iss), &settings(true, None)),
            Err(AuthError::UntrustedIssuer)
        );
        // Seeing a token never widens the list.
        assert_eq!(
            route(&c(iss), &settings(true, None)),
            Err(AuthError::UntrustedIssuer)
        );
    }

    #[test]
    fn skill_tokens_are_refused() {
        let skill = claims(json!({
            "iss": EMULATOR_ISSUERS[0], "ver": "1.0", "aud": "bot-app", "appid": "other-app"
        }));
        assert_eq!(
            route(&skill, &settings(true, None)),
            Err(AuthError::SkillToken)
        );
        let emulator = claims(json!({
            "iss": EMULATOR_ISSUERS[0], "ver": "1.0", "aud": "bot-app", "appid": "bot-app"
        }));
        assert_eq!(route(&emulator, &settings(true, None)), Ok(Route::Emulator));
    }

    #[test]
    fn lifetime_claims_are_required_numbers() {
        let ok = claims(json!({"nbf": 100, "exp": 200.9}));
        assert_eq!(
            lifetime(&ok),
            Ok(Lifetime {
                not_before: 100,
                expires: 200
            })
        );
        assert_eq!(
            lifetime(&claims(json!({"nbf": 100}))),
            Err(AuthError::MissingClaim("exp"))
        );
        assert_eq!(
            lifetime(&claims(json!({"exp": 100}))),
            Err(AuthError::MissingClaim("nbf"))
        );
        assert_eq!(
            lifetime(&claims(json!({"nbf": 100, "exp": "200"}))),
            Err(AuthError::InvalidClaim("exp"))
        );
        assert_eq!(
            lifetime(&claims(json!({"nbf": null, "exp": 200}))),
            Err(AuthError::InvalidClaim("nbf"))
        );
        assert_eq!(
            lifetime(&claims(json!({"nbf": 1, "exp": 1e300}))),
            Err(AuthError::InvalidClaim("exp"))
        );
    }

    #[test]
    fn lifetime_allows_the_skew_and_no_more() {
        let l = Lifetime {
            not_before: 1_000,
            expires: 2_000,
        };
        assert_eq!(check_lifetime(l, 1_500, 300), Ok(()));
        assert_eq!(check_lifetime(l, 2_300, 300), Ok(()));
        assert_eq!(check_lifetime(l, 2_301, 300), Err(AuthError::Expired));
        assert_eq!(check_lifetime(l, 700, 300), Ok(()));
        assert_eq!(check_lifetime(l, 699, 300), Err(AuthError::NotYetValid));
        let far = Lifetime {
            not_before: i64::MIN,
            expires: i64::MAX,
        };
        assert_eq!(check_lifetime(far, 0, 300), Ok(()));
    }

    #[test]
    fn channel_audience_is_one_exact_string() {
        let c = |aud: Value| claims(json!({"aud": aud}));
        assert_eq!(
            check_recipient(Route::Channel, &c(json!("app")), "app"),
            Ok(())
        );
        for bad in [
            json!("App"),
            json!("app "),
            json!(["app"]),
            json!(null),
            json!(1),
        ] {
            assert_eq!(
                check_recipient(Route::Channel, &c(bad.clone()), "app"),
                Err(AuthError::WrongAudience),
                "{bad}"
            );
        }
        assert_eq!(
            check_recipient(Route::Channel, &claims(json!({})), "app"),
            Err(AuthError::WrongAudience)
        );
    }

    #[test]
    fn emulator_tokens_name_the_bot_by_version() {
        let ok1 = claims(json!({"ver": "1.0", "appid": "app"}));
        let ok2 = claims(json!({"ver": "2.0", "azp": "app"}));
        assert_eq!(check_recipient(Route::Emulator, &ok1, "app"), Ok(()));
        assert_eq!(check_recipient(Route::Emulator, &ok2, "app"), Ok(()));
        let v1_with_azp = claims(json!({"ver": "1.0", "azp": "app"}));
        assert_eq!(
            check_recipient(Route::Emulator, &v1_with_azp, "app"),
            Err(AuthError::WrongAppId)
        );
        let other = claims(json!({"ver": "2.0", "azp": "other"}));
        assert_eq!(
            check_recipient(Route::Emulator, &other, "app"),
            Err(AuthError::WrongAppId)
        );
        for ver in [json!("3.0"), json!(1.0), json!(null)] {
            let c = claims(json!({"ver": ver, "appid": "app", "azp": "app"}));
            assert_eq!(
                check_recipient(Route::Emulator, &c, "app"),
                Err(AuthError::InvalidClaim("ver"))
            );
        }
    }

    #[test]
    fn a_channel_token_needs_its_serviceurl_claim() {
        let with = claims(json!({"serviceurl": "https://smba.example/"}));
        assert_eq!(
            service_url_claim(Route::Channel, &with),
            Ok(Some("https://smba.example/".to_owned()))
        );
        for bad in [
            json!({}),
            json!({"serviceurl": ""}),
            json!({"serviceurl": 1}),
        ] {
            assert_eq!(
                service_url_claim(Route::Channel, &claims(bad)),
                Err(AuthError::MissingClaim("serviceurl"))
            );
        }
        assert_eq!(
            service_url_claim(Route::Emulator, &claims(json!({}))),
            Ok(None)
        );
    }

    #[test]
    fn the_activity_must_match_the_token() {
        let facts = |channel: Option<&'static str>, url: Option<&'static str>| ActivityFacts {
            channel_id: channel,
            service_url: url,
        };
        let url = "https://smba.example/amer/";
        let endorsing = vec!["msteams".to_owned(), "slack".to_owned()];
        assert_eq!(
            check_activity(facts(Some("msteams"), Some(url)), Some(url), &endorsing),
            Ok(())
        );
        assert_eq!(
            check_activity(facts(Some("webchat"), Some(url)), Some(url), &[]),
            Ok(())
        );
        assert_eq!(
            check_activity(facts(Some("webchat"), Some(url)), Some(url), &endorsing),
            Err(AuthError::ChannelNotEndorsed)
        );
        assert_eq!(
            check_activity(facts(Some(""), Some(url)), Some(url), &endorsing),
            Err(AuthError::ChannelNotEndorsed)
        );
        assert_eq!(
            check_activity(facts(None, Some(url)), Some(url), &endorsing),
            Err(AuthError::ChannelNotEndorsed)
        );
        assert_eq!(
            check_activity(
                facts(Some("msteams"), Some("https://smba.example/amer")),
                Some(url),
                &[]
            ),
            Err(AuthError::ServiceUrlMismatch)
        );
        assert_eq!(
            check_activity(
                facts(Some("msteams"), Some("https://SMBA.example/amer/")),
                Some(url),
                &[]
            ),
            Err(AuthError::ServiceUrlMismatch)
        );
        assert_eq!(
            check_activity(facts(Some("msteams"), None), Some(url), &[]),
            Err(AuthError::NoServiceUrl)
        );
        assert_eq!(
            check_activity(facts(Some("emulator"), Some("")), None, &[]),
            Err(AuthError::NoServiceUrl)
        );
        assert_eq!(
            check_activity(facts(Some("emulator"), Some(url)), None, &[]),
            Ok(())
        );
    }

    #[test]
    fn key_urls_are_https_or_loopback() {
        let ok = |s: &str| is_allowed_key_url(&url::Url::parse(s).unwrap());
        assert!(ok("https://login.botframework.com/v1/.well-known/keys"));
        assert!(ok("http://127.0.0.1:8080/keys"));
        assert!(ok("http://[::1]:8080/keys"));
        assert!(ok("http://localhost/keys"));
        assert!(!ok("http://login.botframework.com/keys"));
        assert!(!ok("http://10.0.0.1/keys"));
        assert!(!ok("ftp://127.0.0.1/keys"));
        assert!(!ok("file:///etc/keys"));
    }
}
