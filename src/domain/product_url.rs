//! Product URLs: validation and normalisation of a link as a user typed it
//! into a [`ProductUrl`], the key that stores and compares watches.
//!
//! A domain type rather than part of the command grammar: it is also the strict reader of
//! stored URLs (`TryFrom<String>` / serde), used by the store, the watch loop and the bot.

use std::borrow::Cow;
use std::fmt;

use url::Url;

/// Longest product URL accepted unless configured otherwise (`Limits::max_url_len` in chat).
pub const DEFAULT_MAX_URL_LEN: usize = 2048;

/// Whitespace for tokenising: Unicode white space (which includes the no-break
/// space Teams and `&nbsp;` produce) plus the invisible zero-width characters
/// that copy-paste from web pages leaves behind.
pub fn is_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{200B}' | '\u{2060}' | '\u{FEFF}')
}

/// Why a text is not a product URL; the chat reply says it in the user's language.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("no product URL given")]
    Missing,
    #[error("URL scheme `{scheme}` is not http or https")]
    NotHttp { scheme: String },
    #[error("URL is {len} characters long, more than the {max} allowed")]
    TooLong { len: usize, max: usize },
    #[error("URL contains a user name or password")]
    Credentials,
    #[error("invalid URL: {reason}")]
    Invalid { reason: String },
}

/// A normalised product URL: http(s), with a host, without credentials,
/// fragment or tracking parameters.
///
/// The field is private so that every value went through [`ProductUrl::parse`]
/// (or the equivalent `TryFrom<String>`), which is what makes equal products
/// compare equal in storage.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProductUrl(Url);

/// Written by hand because `Url`'s own `Debug` lists every component, which
/// makes logs and test failures hard to read.
impl fmt::Debug for ProductUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ProductUrl").field(&self.as_str()).finish()
    }
}

impl ProductUrl {
    /// Validates and normalises a URL as a user typed it.
    ///
    /// Besides the checks, this forgives what chat adds around a link: a
    /// missing `https://` when the text starts with a dotted host name, and
    /// sentence punctuation or brackets around it. `max_len` counts the
    /// characters of `raw`, before any of that work, and of the normalised URL,
    /// because percent-encoding and IDNA can make it longer than typed.
    pub fn parse(raw: &str, max_len: usize) -> Result<Self, UrlError> {
        Self::parse_with(raw, max_len, true)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn host(&self) -> &str {
        // Every constructor checked that the host exists.
        self.0.host_str().unwrap_or_default()
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// `forgiving` is off when reading back a stored URL: trimming punctuation
    /// there could change a URL that legitimately ends with one (after its
    /// fragment or tracking query was removed), which would break round trips.
    fn parse_with(raw: &str, max_len: usize, forgiving: bool) -> Result<Self, UrlError> {
        let raw = raw.trim_matches(is_separator);
        // Counting bytes first avoids walking huge input char by char.
        if raw.len() > max_len {
            let len = raw.chars().count();
            if len > max_len {
                return Err(UrlError::TooLong { len, max: max_len });
            }
        }
        // The url crate silently drops tabs and newlines and reads `\` as `/`;
        // other parsers (browsers, proxies, the shop) may not, and that
        // disagreement is how allow-lists get bypassed, so refuse outright.
        if raw.contains('\\') {
            return Err(invalid("contains a backslash"));
        }
        if raw.chars().any(char::is_control) {
            return Err(invalid("contains a control character"));
        }
        if raw.chars().any(is_separator) {
            return Err(invalid("contains whitespace"));
        }
        let raw = if forgiving {
            trim_user_punctuation(raw)
        } else {
            raw
        };
        if raw.is_empty() {
            return Err(UrlError::Missing);
        }
        let candidate: Cow<'_, str> = if is_schemeless_host(raw) {
            Cow::Owned(format!("https://{raw}"))
        } else {
            Cow::Borrowed(raw)
        };
        // Decide on the scheme before parsing so that `ftp:` or `javascript:`
        // is reported as such even when the rest would not parse.
        if let Some((scheme, _)) = split_scheme(&candidate) {
            let scheme = scheme.to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return Err(UrlError::NotHttp { scheme });
            }
        }
        let mut url = Url::parse(&candidate).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlError::NotHttp {
                scheme: url.scheme().to_owned(),
            });
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("missing host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        url.set_fragment(None);
        remove_tracking_params(&mut url);
        // Serialised URLs are ASCII, so bytes are characters here.
        let len = url.as_str().len();
        if len > max_len {
            return Err(UrlError::TooLong { len, max: max_len });
        }
        Ok(Self(url))
    }
}

impl fmt::Display for ProductUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for ProductUrl {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl TryFrom<String> for ProductUrl {
    type Error = UrlError;

    /// Strict form for stored values: same checks and normalisation as
    /// [`ProductUrl::parse`] with [`DEFAULT_MAX_URL_LEN`], without the
    /// punctuation forgiveness.
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse_with(&value, DEFAULT_MAX_URL_LEN, false)
    }
}

impl From<ProductUrl> for String {
    fn from(value: ProductUrl) -> Self {
        value.0.into()
    }
}

fn invalid(reason: &str) -> UrlError {
    UrlError::Invalid {
        reason: reason.to_owned(),
    }
}

/// Query parameters that only identify a campaign or click, never the product.
const TRACKING_PARAMS: &[&str] = &[
    "gclid", "fbclid", "msclkid", "mc_cid", "mc_eid", "_ga", "yclid", "igshid", "ref_src", "spm",
];

fn is_tracking_param(key: &str) -> bool {
    let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
    let key = key.to_ascii_lowercase();
    key.starts_with("utm_") || TRACKING_PARAMS.contains(&key.as_str())
}

/// Filters the raw query text rather than going through `query_pairs`, which
/// would re-encode the kept parameters (`%20` becoming `+` and so on) and could
/// change what the shop's server sees.
fn remove_tracking_params(url: &mut Url) {
    let Some(query) = url.query() else {
        return;
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !is_tracking_param(key)
        })
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        let joined = kept.join("&");
        url.set_query(Some(&joined));
    }
}

/// `scheme:rest` per RFC 3986 (letter, then letters, digits, `+`, `-`, `.`).
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

/// Whether `s` starts with something that reads as a host name with a dot
/// (optionally with a port), such as `shop.example/p/1` or `www.shop.example`.
///
/// The last label must start with a letter and have two or more characters, so
/// that numbers (`149.99`), versions (`v1.5`) and abbreviations (`e.g`) are not
/// taken for hosts; bare IP addresses therefore need a scheme. Userinfo is not
/// allowed here because `user:pw@host` cannot be told apart from `mailto:a@b`.
fn is_schemeless_host(s: &str) -> bool {
    let authority = s.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return false;
    }
    let host = match authority.split_once(':') {
        Some((host, port)) => {
            if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            host
        }
        None => authority,
    };
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 {
        return false;
    }
    let label_ok = |l: &&str| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-');
    let tld_ok = labels.last().is_some_and(|tld| {
        tld.chars().count() >= 2 && tld.chars().next().is_some_and(char::is_alphabetic)
    });
    tld_ok && labels.iter().all(label_ok)
}

/// Removes what a sentence or markup wraps around a link: `(url)`, `<url>`,
/// `"url"`, `url.`, `url!` and so on. A closing `)` is kept when it balances
/// an opening one inside the URL (`/wiki/Foo_(bar)`).
fn trim_user_punctuation(s: &str) -> &str {
    let mut s = s.trim_start_matches(['(', '<', '"', '\'']);
    let opens = s.matches('(').count();
    let mut closes = s.matches(')').count();
    while let Some(last) = s.chars().next_back() {
        let strip = match last {
            '.' | ',' | '>' | '!' | '?' | ';' | '"' | '\'' => true,
            ')' => closes > opens,
            _ => false,
        };
        if !strip {
            break;
        }
        if last == ')' {
            closes -= 1;
        }
        s = &s[..s.len() - last.len_utf8()];
    }
    s
}

/// Whether a word is meant as a URL, so that its errors are URL errors rather
/// than "missing URL" or "bad index". Besides what [`ProductUrl::parse`] can
/// accept, a dotted first segment followed by a path (`192.0.2.1/p`) counts, so
/// the user hears that this URL is invalid rather than that none was given.
pub(crate) fn looks_like_url(word: &str) -> bool {
    let word = trim_user_punctuation(word);
    let dotted_path = word
        .split_once('/')
        .is_some_and(|(first, _)| first.contains('.'));
    is_schemeless_host(word)
        || dotted_path
        || split_scheme(word).is_some_and(|(_, rest)| !rest.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(raw: &str) -> ProductUrl {
        ProductUrl::parse(raw, DEFAULT_MAX_URL_LEN).unwrap()
    }

    #[test]
    fn url_length_boundary() {
        let exact = format!("https://shop.example/{}", "a".repeat(2048 - 21));
        assert_eq!(exact.len(), 2048);
        assert_eq!(url(&exact).as_str(), exact);
        let over = format!("{exact}b");
        assert_eq!(
            ProductUrl::parse(&over, 2048),
            Err(UrlError::TooLong {
                len: 2049,
                max: 2048
            })
        );
        // Characters, not bytes, are counted in the typed text...
        let wide = format!("https://shop.example/{}", "é".repeat(100));
        assert_eq!(
            ProductUrl::parse(&wide, 120),
            Err(UrlError::TooLong { len: 121, max: 120 })
        );
        assert_eq!(
            ProductUrl::parse(&wide, 200),
            Err(UrlError::TooLong { len: 621, max: 200 })
        );
        // ...and the normalised URL is held to the same limit.
        assert!(ProductUrl::parse(&wide, 2048).is_ok());
    }

    #[test]
    fn url_normalisation() {
        let cases: &[(&str, &str)] = &[
            ("https://SHOP.Example/P/1", "https://shop.example/P/1"),
            ("HTTP://shop.example/p/1", "http://shop.example/p/1"),
            ("https://shop.example:443/p/1", "https://shop.example/p/1"),
            ("http://shop.example:80/p/1", "http://shop.example/p/1"),
            ("https://shop.example:8443/p/1", "https://shop.example:8443/p/1"),
            ("https://shop.example/p/1#reviews", "https://shop.example/p/1"),
            ("https://shop.example/p/1?", "https://shop.example/p/1"),
            ("https://shop.example/p/1?#x", "https://shop.example/p/1"),
            (
                "https://shop.example/p/1?utm_source=a&UTM_Medium=b&utm_campaign=c",
                "https://shop.example/p/1",
            ),
            (
                "https://shop.example/p/1?b=2&utm_source=x&a=1&gclid=g&fbclid=f&c=3",
                "https://shop.example/p/1?b=2&a=1&c=3",
            ),
            (
                "https://shop.example/p?msclkid=1&mc_cid=2&mc_eid=3&_ga=4&yclid=5&igshid=6&ref_src=7&spm=8&id=9",
                "https://shop.example/p?id=9",
            ),
            (
                "https://shop.example/p?q=a%20b&utm_term=x&r=c+d",
                "https://shop.example/p?q=a%20b&r=c+d",
            ),
            ("https://shop.example/p?a=1&&b=2&", "https://shop.example/p?a=1&b=2"),
            ("https://shop.example/p?utm%5Fsource=x", "https://shop.example/p"),
            ("https://shop.example/p?utm=keep", "https://shop.example/p?utm=keep"),
            ("https://shop.example", "https://shop.example/"),
            ("shop.example/p/1", "https://shop.example/p/1"),
            ("www.shop.example/p/1", "https://www.shop.example/p/1"),
            ("Shop.Example:8080/p", "https://shop.example:8080/p"),
            ("shop.example?id=1", "https://shop.example/?id=1"),
            ("https://bücher.example/p", "https://xn--bcher-kva.example/p"),
            ("https://shop.example/a/../p/1", "https://shop.example/p/1"),
            ("https://shop.example/p/1.", "https://shop.example/p/1"),
            ("https://shop.example/p/1),", "https://shop.example/p/1"),
            ("<https://shop.example/p/1>", "https://shop.example/p/1"),
            ("https://shop.example/p/1?", "https://shop.example/p/1"),
            (
                "https://wiki.example/Lamp_(light)",
                "https://wiki.example/Lamp_(light)",
            ),
            (
                "(https://wiki.example/Lamp_(light))",
                "https://wiki.example/Lamp_(light)",
            ),
            ("http://192.0.2.7/p", "http://192.0.2.7/p"),
            ("https://[2001:db8::1]/p", "https://[2001:db8::1]/p"),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                ProductUrl::parse(raw, 2048).map(String::from).as_deref(),
                Ok(*expected),
                "ProductUrl::parse({raw:?})"
            );
        }
    }

    #[test]
    fn url_rejections() {
        use UrlError as E;
        let not_http = |s: &str| {
            Err(E::NotHttp {
                scheme: s.to_owned(),
            })
        };
        let cases: Vec<(&str, Result<ProductUrl, UrlError>)> = vec![
            ("", Err(E::Missing)),
            ("  ", Err(E::Missing)),
            ("javascript:alert(1)", not_http("javascript")),
            ("ftp://shop.example/p", not_http("ftp")),
            ("file:///etc/passwd", not_http("file")),
            ("mailto:bob@shop.example", not_http("mailto")),
            ("data:text/html,hi", not_http("data")),
            ("https://user:pw@shop.example/p", Err(E::Credentials)),
            ("https://user@shop.example/p", Err(E::Credentials)),
            (
                "https://shop.example\\@evil.example/",
                Err(invalid("contains a backslash")),
            ),
            (
                "https://shop.example/p\n1",
                Err(invalid("contains a control character")),
            ),
            (
                "https://shop.example/p\t1",
                Err(invalid("contains a control character")),
            ),
            (
                "https://shop.example/p\u{7f}",
                Err(invalid("contains a control character")),
            ),
            (
                "https://shop.example/p 1",
                Err(invalid("contains whitespace")),
            ),
            (
                "https://shop.example/p\u{A0}1",
                Err(invalid("contains whitespace")),
            ),
            ("https://", Err(invalid("empty host"))),
            ("https:///", Err(invalid("empty host"))),
            ("shop/p/1", Err(invalid("relative URL without a base"))),
            ("localhost/p", Err(invalid("relative URL without a base"))),
            (
                "//shop.example/p",
                Err(invalid("relative URL without a base")),
            ),
            ("149.99", Err(invalid("relative URL without a base"))),
            ("https://sh op.example", Err(invalid("contains whitespace"))),
            (
                "https://shop%00.example/",
                Err(invalid("invalid international domain name")),
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                ProductUrl::parse(raw, 2048),
                expected,
                "ProductUrl::parse({raw:?})"
            );
        }
    }

    #[test]
    fn product_url_accessors_and_conversions() {
        let u = url("https://Shop.Example/p/1?utm_source=x&id=2#f");
        assert_eq!(u.as_str(), "https://shop.example/p/1?id=2");
        assert_eq!(u.host(), "shop.example");
        assert_eq!(u.as_url().path(), "/p/1");
        assert_eq!(u.to_string(), u.as_str());
        assert_eq!(
            format!("{u:?}"),
            "ProductUrl(\"https://shop.example/p/1?id=2\")"
        );
        assert_eq!(AsRef::<str>::as_ref(&u), u.as_str());
        assert_eq!(String::from(u.clone()), u.as_str());
        assert_eq!(ProductUrl::try_from(u.as_str().to_owned()), Ok(u.clone()));
        assert_eq!(
            ProductUrl::try_from("ftp://x.example/".to_owned()),
            Err(UrlError::NotHttp {
                scheme: "ftp".into()
            })
        );
        assert!(ProductUrl::try_from(format!("https://x.example/{}", "a".repeat(2048))).is_err());
        // Equal products compare equal once normalised.
        assert_eq!(
            url("shop.example/p/1#a"),
            url("https://SHOP.example:443/p/1?utm_id=3")
        );
    }

    #[test]
    fn product_url_serde_round_trip() {
        let u = url("https://Shop.Example/p/1?b=2&utm_source=x&a=1#frag");
        let json = serde_json::to_string(&u).unwrap();
        assert_eq!(json, "\"https://shop.example/p/1?b=2&a=1\"");
        let back: ProductUrl = serde_json::from_str(&json).unwrap();
        assert_eq!(back, u);
        // Stored values go through the same validation.
        assert!(serde_json::from_str::<ProductUrl>("\"javascript:alert(1)\"").is_err());
        assert!(serde_json::from_str::<ProductUrl>("\"https://u:p@x.example/\"").is_err());
        // A stored URL whose path really ends in a dot is kept as is.
        let dotted: ProductUrl = serde_json::from_str("\"https://x.example/p.\"").unwrap();
        assert_eq!(dotted.as_str(), "https://x.example/p.");
        let in_struct: Vec<ProductUrl> =
            serde_json::from_str("[\"https://x.example/a\",\"shop.example/b\"]").unwrap();
        assert_eq!(in_struct[1].as_str(), "https://shop.example/b");
    }
}
