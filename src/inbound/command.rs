//! Parsing of what users type to the bot into a [`Command`], and normalisation
//! of product URLs into a [`ProductUrl`].
//!
//! Everything here is pure and synchronous: the bot feeds it the activity text
//! exactly as the channel delivered it, so this module owns all knowledge of how
//! Teams, Slack, Telegram, Web Chat and the Emulator dress up a message
//! (mentions, HTML, Slack's angle-bracket links, markdown links, entities).
//!
//! Decisions worth knowing when reading the bot's replies:
//! * Text over [`MAX_INPUT_BYTES`] is `Unknown { suggestion: None }` (see there).
//! * `list` and `help` ignore words after them (`help watch`, `list please`);
//!   every other command rejects leftovers with [`CommandError::UnexpectedWords`].
//! * `watch <url> 15` (a bare number) is `UnexpectedWords`: it could mean a
//!   percent or an amount, and guessing wrong would silently set a bad alert.
//! * A message that is only a product link is `Unknown { suggestion: Some("watch") }`
//!   rather than an implicit watch, so nobody subscribes by pasting a link.
//! * Typo suggestions use the optimal-string-alignment edit distance (a swap of two
//!   neighbours costs 1, so `lsit` is 1 away from `list`) against every command
//!   word and synonym, allowing 1 edit for words of up to 4 letters and 2 for
//!   longer ones; 2-letter words (`ls`) are never suggested because almost any
//!   short word is close to them. `hello there` therefore has no suggestion.
//!   The suggestion is always the canonical word: `watch`, `list`, `unwatch`,
//!   `history` or `help`.
//! * An empty message (or one that was only a mention) is `Unknown { suggestion: None }`;
//!   the bot decides whether to answer with help.
//! * A URL typed without a scheme needs a dotted host whose last label starts
//!   with a letter (`shop.example/p`); bare IP addresses need `http(s)://`.
//! * Loopback and private addresses are accepted: refusing them here would be
//!   incomplete (DNS can point anywhere), so the fetcher must check the
//!   addresses it actually connects to.
//! * Amounts: see [`parse_amount`] for how `,` and `.` are read.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use url::Url;

/// Longest message, in bytes, that [`parse`] looks at.
///
/// A real command is a few hundred bytes; anything this long is a paste or an
/// attack, and the markup scanner's worst case (an unterminated quoted
/// attribute in every tag) is quadratic in the length. Such text is `Unknown { suggestion: None }` rather than truncated,
/// because truncation could cut a URL and silently watch the wrong page, and a
/// dedicated error variant would widen the API every caller must match on for a
/// case the bot answers like any other unknown text.
pub const MAX_INPUT_BYTES: usize = 8 * 1024;

/// Default for [`Limits::max_url_len`] and the limit applied when a stored URL
/// is read back through `TryFrom<String>` / serde.
pub const DEFAULT_MAX_URL_LEN: usize = 2048;

/// Configurable bounds checked while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Smallest accepted drop percent, inclusive.
    pub min_drop: Decimal,
    /// Largest accepted drop percent, inclusive.
    pub max_drop: Decimal,
    /// Longest accepted URL, in characters of the text as typed.
    pub max_url_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            min_drop: Decimal::ONE,
            max_drop: Decimal::from(95),
            max_url_len: DEFAULT_MAX_URL_LEN,
        }
    }
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start watching `url`; `rule: None` means the configured default drop.
    Watch {
        url: ProductUrl,
        rule: Option<AlertRule>,
    },
    List,
    Unwatch(UnwatchTarget),
    /// Price history of the watch with this 1-based index, as the user typed it.
    History(usize),
    Help,
    /// Not a command; `suggestion` is the canonical command word it resembles.
    Unknown {
        suggestion: Option<&'static str>,
    },
}

/// When to alert for a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertRule {
    /// Alert when the price falls by at least this percent (e.g. `15` for 15 %).
    Drop(Decimal),
    /// Alert when the price falls below this amount (currency ignored).
    Below(Decimal),
}

/// Which watches `unwatch` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnwatchTarget {
    /// 1-based, as shown by `list`.
    Index(usize),
    Url(ProductUrl),
    All,
}

/// Why a message that named a command could not be accepted.
///
/// Each case is its own variant so that the bot can explain it in the user's
/// language; the messages here are for logs only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("no product URL given")]
    MissingUrl,
    #[error("URL scheme `{scheme}` is not http or https")]
    NotHttp { scheme: String },
    #[error("URL is {len} characters long, more than the {max} allowed")]
    UrlTooLong { len: usize, max: usize },
    #[error("URL contains a user name or password")]
    Credentials,
    #[error("invalid URL: {reason}")]
    InvalidUrl { reason: String },
    #[error("`{text}` is not a drop percentage")]
    InvalidDrop { text: String },
    #[error("a drop of {percent}% is outside the allowed {min}% to {max}%")]
    DropOutOfRange {
        percent: Decimal,
        min: Decimal,
        max: Decimal,
    },
    #[error("`{text}` is not a positive target amount")]
    InvalidTarget { text: String },
    #[error("unexpected words: `{words}`")]
    UnexpectedWords { words: String },
    #[error("unwatch needs a watch number, a URL or `all`")]
    MissingUnwatchTarget,
    #[error("`{text}` is not a watch number")]
    InvalidIndex { text: String },
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
    pub fn parse(raw: &str, max_len: usize) -> Result<Self, CommandError> {
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
    fn parse_with(raw: &str, max_len: usize, forgiving: bool) -> Result<Self, CommandError> {
        let raw = raw.trim_matches(is_separator);
        // Counting bytes first avoids walking huge input char by char.
        if raw.len() > max_len {
            let len = raw.chars().count();
            if len > max_len {
                return Err(CommandError::UrlTooLong { len, max: max_len });
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
            return Err(CommandError::MissingUrl);
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
                return Err(CommandError::NotHttp { scheme });
            }
        }
        let mut url = Url::parse(&candidate).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(CommandError::NotHttp {
                scheme: url.scheme().to_owned(),
            });
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("missing host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(CommandError::Credentials);
        }
        url.set_fragment(None);
        remove_tracking_params(&mut url);
        // Serialised URLs are ASCII, so bytes are characters here.
        let len = url.as_str().len();
        if len > max_len {
            return Err(CommandError::UrlTooLong { len, max: max_len });
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
    type Error = CommandError;

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

fn invalid(reason: &str) -> CommandError {
    CommandError::InvalidUrl {
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
fn looks_like_url(word: &str) -> bool {
    let word = trim_user_punctuation(word);
    let dotted_path = word
        .split_once('/')
        .is_some_and(|(first, _)| first.contains('.'));
    is_schemeless_host(word)
        || dotted_path
        || split_scheme(word).is_some_and(|(_, rest)| !rest.is_empty())
}

/// Whitespace for tokenising: Unicode white space (which includes the no-break
/// space Teams and `&nbsp;` produce) plus the invisible zero-width characters
/// that copy-paste from web pages leaves behind.
fn is_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{200B}' | '\u{2060}' | '\u{FEFF}')
}

/// The text with mentions, markup and entities removed, whitespace collapsed:
/// used by the bot for logs and for `Unknown` replies.
///
/// Text over [`MAX_INPUT_BYTES`] is cut there first (at a character boundary);
/// for logs a prefix is more useful than nothing.
pub fn clean_text(text: &str) -> String {
    let mut end = text.len().min(MAX_INPUT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let stripped = strip_markup(&text[..end]);
    let unwrapped = unwrap_markdown_links(&stripped);
    words(&unwrapped).join(" ")
}

/// Parses a chat message into a command.
///
/// `Ok(Command::Unknown { .. })` means "not a command"; `Err` means a known
/// command with a bad argument.
pub fn parse(text: &str, limits: &Limits) -> Result<Command, CommandError> {
    if text.len() > MAX_INPUT_BYTES {
        return Ok(Command::Unknown { suggestion: None });
    }
    let stripped = strip_markup(text);
    let unwrapped = unwrap_markdown_links(&stripped);
    let words = words(&unwrapped);
    let Some((first, args)) = words.split_first() else {
        return Ok(Command::Unknown { suggestion: None });
    };
    let name = command_name(first);
    match name.as_str() {
        "watch" => parse_watch(args, limits),
        "list" | "ls" | "watches" => Ok(Command::List),
        "unwatch" | "stop" | "remove" | "delete" => parse_unwatch(args, limits),
        "history" => parse_history(args),
        "help" | "?" | "start" => Ok(Command::Help),
        _ => {
            let suggestion = if ProductUrl::parse(first, limits.max_url_len).is_ok() {
                Some("watch")
            } else {
                suggest(&name)
            };
            Ok(Command::Unknown { suggestion })
        }
    }
}

/// Splits into words and drops leading `@name` mentions (Telegram groups and
/// some channels put the bot's handle first as plain text), along with the
/// `:` or `,` people type after a mention (`<at>pricewatch</at>: list`).
fn words(text: &str) -> Vec<&str> {
    let mut words: Vec<&str> = text.split(is_separator).filter(|w| !w.is_empty()).collect();
    let is_mention = |w: &&str| w.len() > 1 && w.starts_with('@');
    let is_filler = |w: &&str| {
        w.chars()
            .all(|c| matches!(c, ':' | ',' | ';' | '-' | '\u{2013}' | '\u{2014}'))
    };
    let mentions = words
        .iter()
        .take_while(|w| is_mention(w) || is_filler(w))
        .count();
    words.drain(..mentions);
    words
}

/// Lower-cased command word without Telegram's leading `/` and `@botname`,
/// and without sentence punctuation (`help?`, `list.`, `watch:`) unless that
/// is the whole word (`?` is itself a command).
fn command_name(word: &str) -> String {
    let word = word.strip_prefix('/').unwrap_or(word);
    let word = word.split_once('@').map_or(word, |(name, _)| name);
    let trimmed = word.trim_end_matches(['.', '!', '?', ':', ',']);
    let word = if trimmed.is_empty() { word } else { trimmed };
    word.to_lowercase()
}

fn parse_watch(args: &[&str], limits: &Limits) -> Result<Command, CommandError> {
    let Some((first, rest)) = args.split_first() else {
        return Err(CommandError::MissingUrl);
    };
    if !looks_like_url(first) {
        // "watch this https://…": the URL is there, the words before it are not.
        return Err(match args.iter().position(|w| looks_like_url(w)) {
            Some(at) => unexpected(&args[..at]),
            None => CommandError::MissingUrl,
        });
    }
    let url = ProductUrl::parse(first, limits.max_url_len)?;
    let rule = parse_rule(rest, limits)?;
    Ok(Command::Watch { url, rule })
}

fn parse_rule(args: &[&str], limits: &Limits) -> Result<Option<AlertRule>, CommandError> {
    let Some(first) = args.first() else {
        return Ok(None);
    };
    let keyword = first.to_lowercase();
    if matches!(keyword.as_str(), "below" | "under" | "<") {
        return parse_target(&args[1..]).map(Some);
    }
    if let Some(attached) = first.strip_prefix('<') {
        let mut target = vec![attached];
        target.extend_from_slice(&args[1..]);
        return parse_target(&target).map(Some);
    }
    let (spec, explicit) = if keyword == "drop" {
        let rest = &args[1..];
        match rest.first() {
            Some(w) if w.eq_ignore_ascii_case("by") => (&rest[1..], true),
            _ => (rest, true),
        }
    } else {
        (args, false)
    };
    let Some(number) = spec.first() else {
        return Err(CommandError::InvalidDrop {
            text: String::new(),
        });
    };
    let (number, used) = if let Some(n) = number.strip_suffix('%') {
        (n, 1)
    } else if spec.get(1) == Some(&"%") {
        (*number, 2)
    } else if explicit {
        (*number, 1)
    } else {
        return Err(unexpected(args));
    };
    let percent = parse_percent(number).ok_or_else(|| CommandError::InvalidDrop {
        text: spec[..used].join(" "),
    })?;
    if percent < limits.min_drop || percent > limits.max_drop {
        return Err(CommandError::DropOutOfRange {
            percent,
            min: limits.min_drop,
            max: limits.max_drop,
        });
    }
    match &spec[used..] {
        [] => Ok(Some(AlertRule::Drop(percent))),
        rest => Err(unexpected(rest)),
    }
}

/// A drop may be written as a negative change (`-15%`); `+15%` is a rise and
/// is refused rather than flipped.
fn parse_percent(text: &str) -> Option<Decimal> {
    let text = text.strip_prefix(['-', '\u{2212}']).unwrap_or(text);
    parse_amount(text)
}

/// `[currency] amount [currency]`, the currency attached or separate.
fn parse_target(args: &[&str]) -> Result<AlertRule, CommandError> {
    let mut rest = args;
    if rest.first().is_some_and(|w| is_currency(w)) {
        rest = &rest[1..];
    }
    let Some((amount_word, after)) = rest.split_first() else {
        return Err(CommandError::InvalidTarget {
            text: args.join(" "),
        });
    };
    let amount = strip_currency(amount_word)
        .and_then(parse_amount)
        .filter(|a| a.is_sign_positive() && !a.is_zero())
        .ok_or_else(|| CommandError::InvalidTarget {
            text: (*amount_word).to_owned(),
        })?;
    rest = after;
    if rest.first().is_some_and(|w| is_currency(w)) {
        rest = &rest[1..];
    }
    if rest.is_empty() {
        Ok(AlertRule::Below(amount))
    } else {
        Err(unexpected(rest))
    }
}

fn is_currency_symbol(c: char) -> bool {
    matches!(
        c,
        '$' | '€'
            | '£'
            | '¥'
            | '¢'
            | '₹'
            | '₽'
            | '₩'
            | '₺'
            | '₪'
            | '₫'
            | '₱'
            | '₴'
            | '₦'
            | '₡'
            | '₲'
            | '₵'
            | '₸'
            | '₼'
            | '₾'
            | '₿'
            | '฿'
            | '﷼'
    )
}

/// Currency written next to an amount: a symbol with up to three letters
/// (`€`, `US$`, `R$`), a three-letter ISO code (`EUR`, `usd`), or one of the
/// common local abbreviations. The currency is ignored: a watch compares prices
/// of one shop page, which are all in that page's currency. A three-letter word
/// after the amount (`below 10 for`) is therefore ignored too, which is harmless.
fn is_currency(word: &str) -> bool {
    const LOCAL: &[&str] = &["kr", "zł", "kč", "ft", "fr", "rs", "lei"];
    let letters = word.chars().filter(|c| c.is_alphabetic()).count();
    let symbols = word.chars().filter(|c| is_currency_symbol(*c)).count();
    if letters + symbols == 0 || letters + symbols != word.chars().count() {
        return false;
    }
    (symbols > 0 && letters <= 3)
        || (symbols == 0 && letters == 3 && word.is_ascii())
        || LOCAL.contains(&word.to_lowercase().as_str())
}

/// The amount inside `€149.99`, `149.99EUR`, `US$1,299`; `None` when the text
/// around the number is not a currency.
fn strip_currency(word: &str) -> Option<&str> {
    let is_affix = |c: char| c.is_alphabetic() || is_currency_symbol(c);
    let body = word.trim_start_matches(is_affix);
    let prefix = &word[..word.len() - body.len()];
    let number = body.trim_end_matches(is_affix);
    let suffix = &body[number.len()..];
    let affix_ok = |a: &str| a.is_empty() || is_currency(a);
    (affix_ok(prefix) && affix_ok(suffix)).then_some(number)
}

/// Parses a positive amount typed with either decimal convention, without
/// floats.
///
/// The rule, kept simple on purpose:
/// * both `.` and `,` present: the last one is the decimal separator and the
///   other groups thousands (`1,299.00`, `1.299,00`);
/// * one `,` followed by exactly three digits, with a non-zero integer part
///   before it, groups thousands (`1,299` = 1299); otherwise a single `,` or
///   `.` is the decimal separator (`149,99` = 149.99, and `1.299` = 1.299);
/// * the same separator several times groups thousands (`1.299.000`).
///
/// Thousands groups must have exactly three digits and the first one one to
/// three, so that typos such as `1,2,3` are refused instead of read as 123.
/// Returns the value normalised (no trailing zeros) so equal amounts look equal.
fn parse_amount(text: &str) -> Option<Decimal> {
    if !text.bytes().any(|b| b.is_ascii_digit())
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b',')
    {
        return None;
    }
    let (integer, fraction): (String, &str) = match (text.rfind('.'), text.rfind(',')) {
        (Some(dot), Some(comma)) => {
            let (decimal_at, decimal, grouping) = if dot > comma {
                (dot, '.', ',')
            } else {
                (comma, ',', '.')
            };
            let (integer, fraction) = (&text[..decimal_at], &text[decimal_at + 1..]);
            if integer.contains(decimal) || fraction.contains(grouping) {
                return None;
            }
            (ungroup(integer, grouping)?, fraction)
        }
        (Some(_), None) => single_separator(text, '.')?,
        (None, Some(_)) => single_separator(text, ',')?,
        (None, None) => (text.to_owned(), ""),
    };
    let integer = if integer.is_empty() { "0" } else { &integer };
    let canonical = if fraction.is_empty() {
        integer.to_owned()
    } else {
        format!("{integer}.{fraction}")
    };
    Decimal::from_str(&canonical).ok().map(|d| d.normalize())
}

fn single_separator(text: &str, separator: char) -> Option<(String, &str)> {
    if text.matches(separator).count() > 1 {
        return Some((ungroup(text, separator)?, ""));
    }
    let (integer, fraction) = text.split_once(separator)?;
    let thousands = separator == ','
        && fraction.len() == 3
        && !integer.is_empty()
        && integer.bytes().any(|b| b != b'0');
    if thousands {
        Some((format!("{integer}{fraction}"), ""))
    } else {
        Some((integer.to_owned(), fraction))
    }
}

fn ungroup(text: &str, separator: char) -> Option<String> {
    let mut groups = text.split(separator);
    let first = groups.next().unwrap_or_default();
    if first.is_empty() || first.len() > 3 {
        return None;
    }
    let mut out = first.to_owned();
    for group in groups {
        if group.len() != 3 {
            return None;
        }
        out.push_str(group);
    }
    Some(out)
}

/// A 1-based index as a user may copy it from a numbered list: `2`, `#2`, `2.`.
fn parse_index(word: &str) -> Option<usize> {
    let digits = word.strip_prefix('#').unwrap_or(word);
    let digits = digits.strip_suffix(['.', ')']).unwrap_or(digits);
    // `usize::from_str` would also take a leading `+`.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok().filter(|n| *n > 0)
}

fn parse_unwatch(args: &[&str], limits: &Limits) -> Result<Command, CommandError> {
    let Some((first, rest)) = args.split_first() else {
        return Err(CommandError::MissingUnwatchTarget);
    };
    let target = if first.eq_ignore_ascii_case("all") {
        UnwatchTarget::All
    } else if let Some(index) = parse_index(first) {
        UnwatchTarget::Index(index)
    } else if looks_like_url(first) {
        UnwatchTarget::Url(ProductUrl::parse(first, limits.max_url_len)?)
    } else {
        return Err(CommandError::InvalidIndex {
            text: (*first).to_owned(),
        });
    };
    if rest.is_empty() {
        Ok(Command::Unwatch(target))
    } else {
        Err(unexpected(rest))
    }
}

fn parse_history(args: &[&str]) -> Result<Command, CommandError> {
    let Some((first, rest)) = args.split_first() else {
        return Err(CommandError::InvalidIndex {
            text: String::new(),
        });
    };
    let index = parse_index(first).ok_or_else(|| CommandError::InvalidIndex {
        text: (*first).to_owned(),
    })?;
    if rest.is_empty() {
        Ok(Command::History(index))
    } else {
        Err(unexpected(rest))
    }
}

fn unexpected(words: &[&str]) -> CommandError {
    CommandError::UnexpectedWords {
        words: words.join(" "),
    }
}

/// Every word that starts a command, with the canonical name suggested for it.
const COMMAND_WORDS: &[(&str, &str)] = &[
    ("watch", "watch"),
    ("list", "list"),
    ("ls", "list"),
    ("watches", "list"),
    ("unwatch", "unwatch"),
    ("stop", "unwatch"),
    ("remove", "unwatch"),
    ("delete", "unwatch"),
    ("history", "history"),
    ("help", "help"),
    ("start", "help"),
];

fn suggest(word: &str) -> Option<&'static str> {
    let typed: Vec<char> = word.chars().collect();
    // No command word has more than 7 letters, so longer text is never within
    // reach and is not worth the quadratic distance computation.
    if typed.is_empty() || typed.len() > 9 {
        return None;
    }
    let mut best: Option<(usize, &'static str)> = None;
    for &(candidate, canonical) in COMMAND_WORDS {
        let allowed = match candidate.len() {
            0..=2 => continue,
            3..=4 => 1,
            _ => 2,
        };
        let distance = edit_distance(&typed, candidate);
        if distance <= allowed && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, canonical));
        }
    }
    best.map(|(_, canonical)| canonical)
}

/// Optimal string alignment distance: Levenshtein plus adjacent swaps.
fn edit_distance(a: &[char], b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

// ---------------------------------------------------------------------------
// Markup removal. Chat messages are short and their markup comes from a few
// known channel formats, so a small scanner is enough; it never fails, it only
// leaves what it does not recognise as text.

/// HTML elements that sit inside a line; other tags become a space so that
/// `<p>watch</p><p>https://…</p>` does not glue the words together.
const INLINE_TAGS: &[&str] = &[
    "a", "abbr", "b", "bdi", "bdo", "cite", "code", "del", "dfn", "em", "font", "i", "ins", "kbd",
    "mark", "o:p", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "tt", "u",
    "var",
];

enum Angle {
    /// Not markup: keep the `<`.
    Literal,
    /// Drop everything up to `end`, leaving a space if `space`.
    Skip { end: usize, space: bool },
    /// Replace everything up to `end` by the (entity-encoded) link in `link`.
    Link {
        link: std::ops::Range<usize>,
        end: usize,
    },
}

/// Removes tags and mentions, replaces links by their target and decodes
/// entities, each piece of text exactly once (so `&amp;lt;` stays `&lt;`).
fn strip_markup(text: &str) -> String {
    let mut closers = Closers::new(text);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(offset) = text[at..].find('<') {
        let lt = at + offset;
        decode_entities_into(&text[at..lt], &mut out);
        match classify_angle(text, &mut closers, lt) {
            Angle::Literal => {
                out.push('<');
                at = lt + 1;
            }
            Angle::Skip { end, space } => {
                if space {
                    out.push(' ');
                }
                at = end;
            }
            Angle::Link { link, end } => {
                decode_entities_into(&text[link], &mut out);
                at = end;
            }
        }
    }
    decode_entities_into(&text[at..], &mut out);
    out
}

/// Finds the next occurrence of a closing marker at or after a position,
/// remembering the last answer. The scanners only move forward, so this keeps
/// text such as `<at>` repeated thousands of times linear instead of searching
/// the rest of the message again for every opening.
struct Closer {
    needle: &'static str,
    /// Where the last search started and what it found.
    last: Option<(usize, Option<usize>)>,
}

impl Closer {
    fn new(needle: &'static str) -> Self {
        Self { needle, last: None }
    }

    /// Absolute position of the needle in `haystack` at or after `from`.
    fn find(&mut self, haystack: &str, from: usize) -> Option<usize> {
        if let Some((searched_from, found)) = self.last {
            if from >= searched_from {
                match found {
                    None => return None,
                    Some(p) if p >= from => return Some(p),
                    Some(_) => {}
                }
            }
        }
        let found = haystack
            .get(from..)
            .and_then(|rest| rest.find(self.needle))
            .map(|p| from + p);
        self.last = Some((from, found));
        found
    }
}

struct Closers {
    /// ASCII lower-casing keeps byte offsets, so positions found here are
    /// valid in the original text.
    lower: String,
    mention: Closer,
    anchor: Closer,
    comment: Closer,
}

impl Closers {
    fn new(text: &str) -> Self {
        Self {
            lower: text.to_ascii_lowercase(),
            mention: Closer::new("</at>"),
            anchor: Closer::new("</a>"),
            comment: Closer::new("-->"),
        }
    }
}

/// What the `<` at byte `lt` starts. All returned positions are just after
/// ASCII bytes, hence character boundaries.
fn classify_angle(text: &str, closers: &mut Closers, lt: usize) -> Angle {
    let start = lt + 1;
    let rest = &text[start..];
    let Some(&next) = rest.as_bytes().first() else {
        return Angle::Literal;
    };
    if rest.starts_with("!--") {
        return match closers.comment.find(&closers.lower, start + 3) {
            Some(p) => Angle::Skip {
                end: p + "-->".len(),
                space: true,
            },
            None => Angle::Literal,
        };
    }
    // Slack: <@U123> user mention, <!here> broadcast, <#C123|general> channel.
    if matches!(next, b'@' | b'!' | b'#') {
        return match close_before_next_open(rest) {
            Some(gt) if gt > 1 => Angle::Skip {
                end: start + gt + 1,
                space: true,
            },
            _ => Angle::Literal,
        };
    }
    // Slack <url|label> and <url>, markdown autolinks <url>.
    if let Some(gt) = close_before_next_open(rest) {
        let inside = &rest[..gt];
        let target = inside.split_once('|').map_or(inside, |(t, _)| t);
        let lowered = target.to_ascii_lowercase();
        let is_link = !target.is_empty()
            && !target.chars().any(is_separator)
            && (target.contains("://") || lowered.starts_with("mailto:"));
        if is_link {
            return Angle::Link {
                link: start..start + target.len(),
                end: start + gt + 1,
            };
        }
    }
    match parse_tag(rest) {
        Some(tag) => tag_action(closers, start, tag),
        None => Angle::Literal,
    }
}

/// Position of the first `>` in `s` when no `<` comes before it.
fn close_before_next_open(s: &str) -> Option<usize> {
    let p = s.find(['<', '>'])?;
    (s.as_bytes()[p] == b'>').then_some(p)
}

struct Tag<'a> {
    name: String,
    closing: bool,
    attributes: &'a str,
    /// Offset of the attributes within the text after `<`.
    attributes_at: usize,
    /// Offset just after the closing `>`, within the text after `<`.
    end: usize,
}

/// An HTML tag at the start of `rest` (the text after `<`), `None` when the
/// text does not have a tag's shape, e.g. `< 149.99` or `<shop.example>`.
fn parse_tag(rest: &str) -> Option<Tag<'_>> {
    let (closing, body, body_at) = match rest.strip_prefix('/') {
        Some(body) => (true, body, 1),
        None => (false, rest, 0),
    };
    let bytes = body.as_bytes();
    if !bytes.first()?.is_ascii_alphabetic() {
        return None;
    }
    let name_len = bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-'))
        .count();
    if bytes[name_len - 1] == b':' {
        return None;
    }
    match bytes.get(name_len) {
        Some(b) if b.is_ascii_whitespace() || matches!(b, b'/' | b'>') => {}
        _ => return None,
    }
    // Find the `>` that ends the tag, skipping quoted attribute values.
    let mut quote = None;
    let mut gt = None;
    for (i, &b) in bytes.iter().enumerate().skip(name_len) {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'"' | b'\'' => quote = Some(b),
                b'<' => return None,
                b'>' => {
                    gt = Some(i);
                    break;
                }
                _ => {}
            },
        }
    }
    let gt = gt?;
    Some(Tag {
        name: body[..name_len].to_ascii_lowercase(),
        closing,
        attributes: &body[name_len..gt],
        attributes_at: body_at + name_len,
        end: body_at + gt + 1,
    })
}

fn tag_action(closers: &mut Closers, start: usize, tag: Tag<'_>) -> Angle {
    let end = start + tag.end;
    if tag.closing {
        return Angle::Skip {
            end,
            space: !INLINE_TAGS.contains(&tag.name.as_str()),
        };
    }
    match tag.name.as_str() {
        // Teams mention: drop the mentioned name with the tags. An unclosed
        // `<at>` loses only the tag, since the rest may be the command.
        "at" => match closers.mention.find(&closers.lower, end) {
            Some(p) => Angle::Skip {
                end: p + "</at>".len(),
                space: true,
            },
            None => Angle::Skip { end, space: true },
        },
        // The href is what the user linked to; the label may be shortened or
        // be any text, so it is dropped up to `</a>`.
        "a" => match find_href(tag.attributes) {
            Some(href) => {
                let href_at = start + tag.attributes_at;
                let link = href_at + href.start..href_at + href.end;
                let end = match closers.anchor.find(&closers.lower, end) {
                    Some(p) => p + "</a>".len(),
                    None => end,
                };
                Angle::Link { link, end }
            }
            None => Angle::Skip { end, space: false },
        },
        name => Angle::Skip {
            end,
            space: !INLINE_TAGS.contains(&name),
        },
    }
}

/// Byte range of the `href` value within an attribute list.
fn find_href(attributes: &str) -> Option<std::ops::Range<usize>> {
    let bytes = attributes.as_bytes();
    let len = bytes.len();
    let mut i = 0;
    while i < len {
        let before = i;
        while i < len && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        let name_start = i;
        while i < len && !bytes[i].is_ascii_whitespace() && !matches!(bytes[i], b'=' | b'/') {
            i += 1;
        }
        let name = &attributes[name_start..i];
        while i < len && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < len && bytes[i] == b'=' {
            i += 1;
            while i < len && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            let value = if i < len && matches!(bytes[i], b'"' | b'\'') {
                let quote = bytes[i];
                i += 1;
                let value_start = i;
                while i < len && bytes[i] != quote {
                    i += 1;
                }
                let value = value_start..i;
                i = (i + 1).min(len);
                value
            } else {
                let value_start = i;
                while i < len && !bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                value_start..i
            };
            if name.eq_ignore_ascii_case("href") {
                return Some(value);
            }
        }
        if i == before {
            // Only reachable on a stray ASCII byte such as `/=`; step over it.
            i += 1;
        }
    }
    None
}

fn decode_entities_into(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match decode_entity(after) {
            Some((c, used)) => {
                out.push(c);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
}

/// The entity at the start of `s` (the text after `&`) and how many bytes it
/// used, including the `;`. Unknown names are left as text.
fn decode_entity(s: &str) -> Option<(char, usize)> {
    // The longest form accepted, `#x10FFFF`, has 8 bytes before the `;`.
    let semi = s.bytes().take(10).position(|b| b == b';')?;
    let name = &s[..semi];
    let c = if let Some(number) = name.strip_prefix('#') {
        let (digits, radix) = match number.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16),
            None => (number, 10),
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        let code = u32::from_str_radix(digits, radix).ok()?;
        // As browsers do: NUL and invalid code points become U+FFFD.
        char::from_u32(code)
            .filter(|c| *c != '\0')
            .unwrap_or('\u{FFFD}')
    } else {
        match name.to_ascii_lowercase().as_str() {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            "nbsp" => '\u{A0}',
            _ => return None,
        }
    };
    Some((c, semi + 1))
}

/// Replaces markdown links `[label](target)` by their target. Parentheses in
/// the target are kept when balanced (`/wiki/Foo_(bar)`).
fn unwrap_markdown_links(text: &str) -> Cow<'_, str> {
    if !text.contains("](") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut label_end = Closer::new("]");
    let mut at = 0;
    while let Some(offset) = text[at..].find('[') {
        let open = at + offset;
        match markdown_link_at(text, open, &mut label_end) {
            Some((target, end)) => {
                out.push_str(&text[at..open]);
                out.push_str(&text[target]);
                at = end;
            }
            None => {
                out.push_str(&text[at..=open]);
                at = open + 1;
            }
        }
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// For a `[` at `open`, the target's byte range and the end of the link.
fn markdown_link_at(
    text: &str,
    open: usize,
    label_end: &mut Closer,
) -> Option<(std::ops::Range<usize>, usize)> {
    let label_start = open + 1;
    let close = label_end.find(text, label_start)?;
    if text[label_start..close].contains('[') {
        return None;
    }
    let target_start = close + 2;
    if text.as_bytes().get(close + 1) != Some(&b'(') {
        return None;
    }
    let mut depth = 0usize;
    for (i, c) in text[target_start..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => {
                let target = target_start..target_start + i;
                return (!target.is_empty()).then_some((target.clone(), target.end + 1));
            }
            ')' => depth -= 1,
            c if is_separator(c) => return None,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn p(text: &str) -> Result<Command, CommandError> {
        parse(text, &limits())
    }

    fn url(raw: &str) -> ProductUrl {
        ProductUrl::parse(raw, DEFAULT_MAX_URL_LEN).unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn watch(u: &str, rule: Option<AlertRule>) -> Result<Command, CommandError> {
        Ok(Command::Watch { url: url(u), rule })
    }

    fn drop_rule(s: &str) -> Option<AlertRule> {
        Some(AlertRule::Drop(dec(s)))
    }

    fn below(s: &str) -> Option<AlertRule> {
        Some(AlertRule::Below(dec(s)))
    }

    fn unknown(suggestion: Option<&'static str>) -> Result<Command, CommandError> {
        Ok(Command::Unknown { suggestion })
    }

    fn check(cases: &[(&str, Result<Command, CommandError>)]) {
        let mut failures = Vec::new();
        for (input, expected) in cases {
            let got = p(input);
            if &got != expected {
                failures.push(format!(
                    "input {input:?}\n  expected {expected:?}\n  got      {got:?}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    const U: &str = "https://shop.example/p/123";

    #[test]
    fn watch_plain_and_decorated() {
        let w = || watch(U, None);
        check(&[
            ("watch https://shop.example/p/123", w()),
            ("WATCH https://shop.example/p/123", w()),
            ("Watch https://shop.example/p/123", w()),
            ("   watch    https://shop.example/p/123   ", w()),
            ("watch\u{A0}https://shop.example/p/123", w()),
            ("watch\nhttps://shop.example/p/123\n", w()),
            ("watch\t\u{200B}https://shop.example/p/123", w()),
            ("/watch https://shop.example/p/123", w()),
            ("watch: https://shop.example/p/123", w()),
            ("/watch@pricewatch_bot https://shop.example/p/123", w()),
            ("/WATCH@PriceWatchBot https://shop.example/p/123", w()),
            ("@pricewatch watch https://shop.example/p/123", w()),
            ("@pricewatch @other watch https://shop.example/p/123", w()),
            ("watch https://shop.example/p/123.", w()),
            ("watch https://shop.example/p/123!", w()),
            ("watch (https://shop.example/p/123)", w()),
            ("watch \"https://shop.example/p/123\"", w()),
            ("watch https://shop.example/p/123#reviews", w()),
            ("watch HTTPS://SHOP.EXAMPLE/p/123", w()),
            ("watch https://shop.example:443/p/123", w()),
            ("watch shop.example/p/123", w()),
            ("watch <shop.example/p/123>", w()),
        ]);
    }

    #[test]
    fn channel_mentions() {
        let w = || watch(U, None);
        check(&[
            ("<at>pricewatch</at> watch https://shop.example/p/123", w()),
            (
                "<at>pricewatch</at>&nbsp;watch https://shop.example/p/123",
                w(),
            ),
            ("<AT>Price Watch</AT> watch https://shop.example/p/123", w()),
            (
                "<at>pricewatch</at> <at>Alice</at> watch https://shop.example/p/123",
                w(),
            ),
            (
                "<at>pricewatch</at><at>Alice</at>watch https://shop.example/p/123",
                w(),
            ),
            ("<@U024BE7LH> watch https://shop.example/p/123", w()),
            ("<!here> watch https://shop.example/p/123", w()),
            // Unclosed mention tag: only the tag goes.
            ("<at>watch https://shop.example/p/123", w()),
        ]);
    }

    #[test]
    fn channel_links() {
        let w = || watch(U, None);
        check(&[
            (
                "watch <https://shop.example/p/123|shop.example/p/123>",
                w(),
            ),
            ("watch <https://shop.example/p/123>", w()),
            ("watch [shop.example/p/123](https://shop.example/p/123)", w()),
            ("watch [the lamp](https://shop.example/p/123)", w()),
            (
                "watch <a href=\"https://shop.example/p/123\">https://shop.example/p/123</a>",
                w(),
            ),
            (
                "<p>watch <a href=\"https://shop.example/p/123\" title=\"a > b\">the <b>lamp</b></a></p>",
                w(),
            ),
            ("<p>watch</p><p>https://shop.example/p/123</p>", w()),
            ("watch<br/>https://shop.example/p/123", w()),
            ("<div><span>watch</span> https://shop.example/p/123<o:p></o:p></div>", w()),
            ("watch <a href='https://shop.example/p/123'>x</a>", w()),
            ("watch <A HREF=https://shop.example/p/123>x</A>", w()),
            ("<!-- note --> watch https://shop.example/p/123", w()),
        ]);
        let amp = || watch("https://shop.example/p?a=1&b=2", None);
        check(&[
            (
                "<p>watch <a href=\"https://shop.example/p?a=1&amp;b=2\">shop.example/p?a=1&amp;b=2</a></p>",
                amp(),
            ),
            ("watch <https://shop.example/p?a=1&amp;b=2|link>", amp()),
            ("watch https://shop.example/p?a=1&#38;b=2", amp()),
            ("watch https://shop.example/p?a=1&#x26;b=2", amp()),
        ]);
        check(&[(
            "watch [x](https://en.wikipedia.example/wiki/Lamp_(light))",
            watch("https://en.wikipedia.example/wiki/Lamp_(light)", None),
        )]);
    }

    #[test]
    fn watch_with_drop() {
        check(&[
            (
                "watch https://shop.example/p/123 15%",
                watch(U, drop_rule("15")),
            ),
            (
                "watch https://shop.example/p/123 15 %",
                watch(U, drop_rule("15")),
            ),
            (
                "watch https://shop.example/p/123 -15%",
                watch(U, drop_rule("15")),
            ),
            (
                "watch https://shop.example/p/123 \u{2212}15%",
                watch(U, drop_rule("15")),
            ),
            (
                "watch https://shop.example/p/123 15.5%",
                watch(U, drop_rule("15.5")),
            ),
            (
                "watch https://shop.example/p/123 15,5%",
                watch(U, drop_rule("15.5")),
            ),
            (
                "watch https://shop.example/p/123 drop 15%",
                watch(U, drop_rule("15")),
            ),
            (
                "watch https://shop.example/p/123 DROP 15 %",
                watch(U, drop_rule("15")),
            ),
            (
                "watch https://shop.example/p/123 drop 15",
                watch(U, drop_rule("15")),
            ),
            (
                "watch https://shop.example/p/123 drop by 20%",
                watch(U, drop_rule("20")),
            ),
            (
                "watch https://shop.example/p/123, 15%",
                watch(U, drop_rule("15")),
            ),
            (
                "watch https://shop.example/p/123 1%",
                watch(U, drop_rule("1")),
            ),
            (
                "watch https://shop.example/p/123 95%",
                watch(U, drop_rule("95")),
            ),
            (
                "watch https://shop.example/p/123 15.0%",
                watch(U, drop_rule("15")),
            ),
        ]);
    }

    #[test]
    fn drop_is_normalised() {
        let Ok(Command::Watch {
            rule: Some(AlertRule::Drop(d)),
            ..
        }) = p("watch https://shop.example/p/1 15.50%")
        else {
            panic!("not a drop watch");
        };
        assert_eq!(d.to_string(), "15.5");
    }

    #[test]
    fn watch_with_target() {
        let b = || watch(U, below("149.99"));
        check(&[
            ("watch https://shop.example/p/123 below 149.99", b()),
            ("watch https://shop.example/p/123 BELOW 149,99", b()),
            ("watch https://shop.example/p/123 under 149.99", b()),
            ("watch https://shop.example/p/123 < 149.99", b()),
            ("watch https://shop.example/p/123 <149.99", b()),
            ("watch https://shop.example/p/123 &lt; 149.99", b()),
            ("<p>watch https://shop.example/p/123 &lt;149.99</p>", b()),
            ("watch https://shop.example/p/123 below €149.99", b()),
            ("watch https://shop.example/p/123 below 149.99€", b()),
            ("watch https://shop.example/p/123 below € 149.99", b()),
            ("watch https://shop.example/p/123 below 149.99 EUR", b()),
            ("watch https://shop.example/p/123 below EUR 149.99", b()),
            ("watch https://shop.example/p/123 below eur149.99", b()),
            ("watch https://shop.example/p/123 below US$149.99", b()),
            ("watch https://shop.example/p/123 below 149,99 zł", b()),
            ("watch https://shop.example/p/123 below 149.99 kr", b()),
        ]);
        let t = |s: &str| watch(U, below(s));
        check(&[
            ("watch https://shop.example/p/123 below 1,299.00", t("1299")),
            ("watch https://shop.example/p/123 below 1.299,00", t("1299")),
            ("watch https://shop.example/p/123 below 1,299", t("1299")),
            ("watch https://shop.example/p/123 below 1299", t("1299")),
            ("watch https://shop.example/p/123 below $1,299", t("1299")),
            ("watch https://shop.example/p/123 below 1.299", t("1.299")),
            ("watch https://shop.example/p/123 below 0.5", t("0.5")),
        ]);
    }

    #[test]
    fn amounts() {
        let cases: &[(&str, Option<&str>)] = &[
            ("149.99", Some("149.99")),
            ("149,99", Some("149.99")),
            ("1,299.00", Some("1299")),
            ("1.299,00", Some("1299")),
            ("1299", Some("1299")),
            ("1,299", Some("1299")),
            ("1.299", Some("1.299")),
            ("1,299,000", Some("1299000")),
            ("1.299.000", Some("1299000")),
            ("1.299.000,50", Some("1299000.5")),
            ("0,999", Some("0.999")),
            (",5", Some("0.5")),
            ("5.", Some("5")),
            ("007", Some("7")),
            ("0", Some("0")),
            ("1,2,3", None),
            ("1,2.3,4", None),
            ("1.2.3", None),
            ("12345,678.9", None),
            ("", None),
            (".", None),
            (",", None),
            ("-5", None),
            ("+5", None),
            ("5e3", None),
            ("1 299", None),
            ("99999999999999999999999999999999", None),
            ("١٢٣", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_amount(text),
                expected.map(dec),
                "parse_amount({text:?})"
            );
        }
    }

    #[test]
    fn list_unwatch_history_help() {
        check(&[
            ("list", Ok(Command::List)),
            ("List", Ok(Command::List)),
            ("LS", Ok(Command::List)),
            ("watches", Ok(Command::List)),
            ("/list", Ok(Command::List)),
            ("/list@pricewatch_bot", Ok(Command::List)),
            ("<at>pricewatch</at> list", Ok(Command::List)),
            ("list please", Ok(Command::List)),
            ("unwatch 2", Ok(Command::Unwatch(UnwatchTarget::Index(2)))),
            ("stop 2", Ok(Command::Unwatch(UnwatchTarget::Index(2)))),
            ("remove 2", Ok(Command::Unwatch(UnwatchTarget::Index(2)))),
            ("DELETE 2", Ok(Command::Unwatch(UnwatchTarget::Index(2)))),
            ("/unwatch #2", Ok(Command::Unwatch(UnwatchTarget::Index(2)))),
            ("unwatch 2.", Ok(Command::Unwatch(UnwatchTarget::Index(2)))),
            ("unwatch all", Ok(Command::Unwatch(UnwatchTarget::All))),
            ("unwatch ALL", Ok(Command::Unwatch(UnwatchTarget::All))),
            (
                "unwatch https://Shop.Example/p/123?utm_source=x#top",
                Ok(Command::Unwatch(UnwatchTarget::Url(url(U)))),
            ),
            (
                "unwatch <https://shop.example/p/123|shop.example/p/123>",
                Ok(Command::Unwatch(UnwatchTarget::Url(url(U)))),
            ),
            (
                "unwatch shop.example/p/123",
                Ok(Command::Unwatch(UnwatchTarget::Url(url(U)))),
            ),
            ("history 3", Ok(Command::History(3))),
            ("/history 3", Ok(Command::History(3))),
            ("History #3", Ok(Command::History(3))),
            ("help", Ok(Command::Help)),
            ("HELP", Ok(Command::Help)),
            ("?", Ok(Command::Help)),
            ("/?", Ok(Command::Help)),
            ("start", Ok(Command::Help)),
            ("/start", Ok(Command::Help)),
            ("/start deep-link-payload", Ok(Command::Help)),
            ("/help", Ok(Command::Help)),
            ("/help@pricewatch_bot", Ok(Command::Help)),
            ("help watch", Ok(Command::Help)),
            ("help?", Ok(Command::Help)),
            ("Help!", Ok(Command::Help)),
            ("list.", Ok(Command::List)),
            ("<at>pricewatch</at>: list", Ok(Command::List)),
            ("@pricewatch, list", Ok(Command::List)),
            ("@pricewatch - help", Ok(Command::Help)),
            ("??", unknown(None)),
        ]);
    }

    #[test]
    fn every_error_variant() {
        use CommandError as E;
        let long = format!("https://shop.example/{}", "a".repeat(2049 - 21));
        assert_eq!(long.chars().count(), 2049);
        let too_long = format!("watch {long}");
        check(&[
            ("watch", Err(E::MissingUrl)),
            ("watch 15%", Err(E::MissingUrl)),
            ("watch below 10", Err(E::MissingUrl)),
            ("watch banana", Err(E::MissingUrl)),
            (
                "watch 192.0.2.1/p",
                Err(E::InvalidUrl {
                    reason: "relative URL without a base".into(),
                }),
            ),
            (
                "watch ftp://shop.example/p",
                Err(E::NotHttp {
                    scheme: "ftp".into(),
                }),
            ),
            (
                "watch javascript:alert(1)",
                Err(E::NotHttp {
                    scheme: "javascript".into(),
                }),
            ),
            (
                "watch JavaScript:alert(1)",
                Err(E::NotHttp {
                    scheme: "javascript".into(),
                }),
            ),
            (
                "watch file:///etc/passwd",
                Err(E::NotHttp {
                    scheme: "file".into(),
                }),
            ),
            (
                &too_long,
                Err(E::UrlTooLong {
                    len: 2049,
                    max: 2048,
                }),
            ),
            (
                "watch https://bob:secret@shop.example/p",
                Err(E::Credentials),
            ),
            ("watch https://bob@shop.example/p", Err(E::Credentials)),
            ("watch https://:secret@shop.example/p", Err(E::Credentials)),
            (
                "watch https://shop.example\\p\\1",
                Err(E::InvalidUrl {
                    reason: "contains a backslash".into(),
                }),
            ),
            (
                "watch https://shop.example/p&#1;",
                Err(E::InvalidUrl {
                    reason: "contains a control character".into(),
                }),
            ),
            (
                "watch https://",
                Err(E::InvalidUrl {
                    reason: "empty host".into(),
                }),
            ),
            (
                "watch http://[::1/p",
                Err(E::InvalidUrl {
                    reason: "invalid IPv6 address".into(),
                }),
            ),
            (
                "watch https://shop.example/p abc%",
                Err(E::InvalidDrop {
                    text: "abc%".into(),
                }),
            ),
            (
                "watch https://shop.example/p +15%",
                Err(E::InvalidDrop {
                    text: "+15%".into(),
                }),
            ),
            (
                "watch https://shop.example/p drop much",
                Err(E::InvalidDrop {
                    text: "much".into(),
                }),
            ),
            (
                "watch https://shop.example/p drop",
                Err(E::InvalidDrop {
                    text: String::new(),
                }),
            ),
            (
                "watch https://shop.example/p 0%",
                Err(E::DropOutOfRange {
                    percent: dec("0"),
                    min: dec("1"),
                    max: dec("95"),
                }),
            ),
            (
                "watch https://shop.example/p 0.5%",
                Err(E::DropOutOfRange {
                    percent: dec("0.5"),
                    min: dec("1"),
                    max: dec("95"),
                }),
            ),
            (
                "watch https://shop.example/p 95.5%",
                Err(E::DropOutOfRange {
                    percent: dec("95.5"),
                    min: dec("1"),
                    max: dec("95"),
                }),
            ),
            (
                "watch https://shop.example/p -100%",
                Err(E::DropOutOfRange {
                    percent: dec("100"),
                    min: dec("1"),
                    max: dec("95"),
                }),
            ),
            (
                "watch https://shop.example/p below 0",
                Err(E::InvalidTarget { text: "0".into() }),
            ),
            (
                "watch https://shop.example/p below -5",
                Err(E::InvalidTarget { text: "-5".into() }),
            ),
            (
                "watch https://shop.example/p below cheap",
                Err(E::InvalidTarget {
                    text: "cheap".into(),
                }),
            ),
            (
                "watch https://shop.example/p below 1,2,3",
                Err(E::InvalidTarget {
                    text: "1,2,3".into(),
                }),
            ),
            (
                "watch https://shop.example/p below",
                Err(E::InvalidTarget {
                    text: String::new(),
                }),
            ),
            (
                "watch https://shop.example/p below €",
                Err(E::InvalidTarget { text: "€".into() }),
            ),
            (
                "watch https://shop.example/p banana",
                Err(E::UnexpectedWords {
                    words: "banana".into(),
                }),
            ),
            (
                "watch https://shop.example/p 15",
                Err(E::UnexpectedWords { words: "15".into() }),
            ),
            (
                "watch https://shop.example/p 15% right now",
                Err(E::UnexpectedWords {
                    words: "right now".into(),
                }),
            ),
            (
                "watch https://shop.example/p below 10 EUR please",
                Err(E::UnexpectedWords {
                    words: "please".into(),
                }),
            ),
            (
                "watch this https://shop.example/p",
                Err(E::UnexpectedWords {
                    words: "this".into(),
                }),
            ),
            (
                "unwatch all now",
                Err(E::UnexpectedWords {
                    words: "now".into(),
                }),
            ),
            ("history 2 3", Err(E::UnexpectedWords { words: "3".into() })),
            ("unwatch", Err(E::MissingUnwatchTarget)),
            ("<at>pricewatch</at> stop", Err(E::MissingUnwatchTarget)),
            ("unwatch 0", Err(E::InvalidIndex { text: "0".into() })),
            ("unwatch -1", Err(E::InvalidIndex { text: "-1".into() })),
            ("unwatch +1", Err(E::InvalidIndex { text: "+1".into() })),
            (
                "unwatch banana",
                Err(E::InvalidIndex {
                    text: "banana".into(),
                }),
            ),
            ("unwatch 1.5", Err(E::InvalidIndex { text: "1.5".into() })),
            (
                "unwatch ftp://shop.example/p",
                Err(E::NotHttp {
                    scheme: "ftp".into(),
                }),
            ),
            (
                "history",
                Err(E::InvalidIndex {
                    text: String::new(),
                }),
            ),
            ("history 0", Err(E::InvalidIndex { text: "0".into() })),
            ("history x", Err(E::InvalidIndex { text: "x".into() })),
            (
                "history 99999999999999999999999999",
                Err(E::InvalidIndex {
                    text: "99999999999999999999999999".into(),
                }),
            ),
        ]);
    }

    #[test]
    fn custom_drop_limits() {
        let limits = Limits {
            min_drop: dec("5"),
            max_drop: dec("50"),
            max_url_len: 40,
        };
        assert_eq!(
            parse("watch https://shop.example/p 4%", &limits),
            Err(CommandError::DropOutOfRange {
                percent: dec("4"),
                min: dec("5"),
                max: dec("50"),
            })
        );
        assert!(parse("watch https://shop.example/p 50%", &limits).is_ok());
        assert_eq!(
            parse("watch https://shop.example/p/aaaaaaaaaaaaaaaaaaaa", &limits),
            Err(CommandError::UrlTooLong { len: 43, max: 40 })
        );
    }

    #[test]
    fn url_length_boundary() {
        let exact = format!("https://shop.example/{}", "a".repeat(2048 - 21));
        assert_eq!(exact.len(), 2048);
        assert_eq!(url(&exact).as_str(), exact);
        let over = format!("{exact}b");
        assert_eq!(
            ProductUrl::parse(&over, 2048),
            Err(CommandError::UrlTooLong {
                len: 2049,
                max: 2048
            })
        );
        // Characters, not bytes, are counted in the typed text...
        let wide = format!("https://shop.example/{}", "é".repeat(100));
        assert_eq!(
            ProductUrl::parse(&wide, 120),
            Err(CommandError::UrlTooLong { len: 121, max: 120 })
        );
        assert_eq!(
            ProductUrl::parse(&wide, 200),
            Err(CommandError::UrlTooLong { len: 621, max: 200 })
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
        use CommandError as E;
        let not_http = |s: &str| {
            Err(E::NotHttp {
                scheme: s.to_owned(),
            })
        };
        let cases: Vec<(&str, Result<ProductUrl, CommandError>)> = vec![
            ("", Err(E::MissingUrl)),
            ("  ", Err(E::MissingUrl)),
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
            Err(CommandError::NotHttp {
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

    #[test]
    fn suggestions() {
        check(&[
            ("wach https://shop.example/p/1", unknown(Some("watch"))),
            ("wacth", unknown(Some("watch"))),
            ("Whatch x", unknown(Some("watch"))),
            ("lsit", unknown(Some("list"))),
            ("lis", unknown(Some("list"))),
            ("watchs", unknown(Some("watch"))),
            ("wathces", unknown(Some("list"))),
            ("unwach 1", unknown(Some("unwatch"))),
            ("stpo 1", unknown(Some("unwatch"))),
            ("remov 1", unknown(Some("unwatch"))),
            ("histroy 1", unknown(Some("history"))),
            ("/hlep", unknown(Some("help"))),
            ("halp!", unknown(Some("help"))),
            ("strat", unknown(Some("help"))),
            // Pasting only a product link suggests watching it.
            ("https://shop.example/p/1", unknown(Some("watch"))),
            (
                "<https://shop.example/p/1|shop.example/p/1>",
                unknown(Some("watch")),
            ),
            ("shop.example/p/1", unknown(Some("watch"))),
        ]);
    }

    #[test]
    fn unknown_without_suggestion() {
        check(&[
            ("hello there", unknown(None)),
            ("hi", unknown(None)),
            ("is it cheaper now?", unknown(None)),
            ("thanks", unknown(None)),
            ("x", unknown(None)),
            ("", unknown(None)),
            ("   \n\u{A0} ", unknown(None)),
            ("<at>pricewatch</at>", unknown(None)),
            ("<at>pricewatch</at>&nbsp;", unknown(None)),
            ("@pricewatch", unknown(None)),
            ("<p></p>", unknown(None)),
            ("supercalifragilistic", unknown(None)),
            ("ftp://shop.example/p", unknown(None)),
            ("/", unknown(None)),
            ("/@bot", unknown(None)),
            ("👀", unknown(None)),
        ]);
    }

    #[test]
    fn oversized_input_is_unknown() {
        let huge = format!(
            "watch https://shop.example/p/1 {}",
            " ".repeat(MAX_INPUT_BYTES)
        );
        assert_eq!(p(&huge), unknown(None));
        let at_limit = format!("help{}", " ".repeat(MAX_INPUT_BYTES - 4));
        assert_eq!(p(&at_limit), Ok(Command::Help));
    }

    #[test]
    fn cleaning() {
        let cases: &[(&str, &str)] = &[
            ("<at>pricewatch</at> watch  <b>this</b>\n", "watch this"),
            ("@pricewatch  hello\u{A0}there", "hello there"),
            ("hello @pricewatch", "hello @pricewatch"),
            (
                "<p>a &amp; b &lt;c&gt; &quot;d&quot; &#39;e&#39; &#x41;&#66;</p>",
                "a & b <c> \"d\" 'e' AB",
            ),
            ("&amp;lt;", "&lt;"),
            ("&lt;p&gt;kept&lt;/p&gt;", "<p>kept</p>"),
            ("&unknown; &amp &#xZZ; &#;", "&unknown; &amp &#xZZ; &#;"),
            ("&#0; &#xD800; &#x110000;", "\u{FFFD} \u{FFFD} \u{FFFD}"),
            ("a < b > c", "a < b > c"),
            ("1 <2 and 3> 2", "1 <2 and 3> 2"),
            ("<unclosed", "<unclosed"),
            ("<at>unclosed mention", "unclosed mention"),
            (
                "x <a href=\"https://e.example/?a=1&amp;b=2\">label</a> y",
                "x https://e.example/?a=1&b=2 y",
            ),
            ("<a name=x>label</a>", "label"),
            (
                "<https://e.example|E> <mailto:a@e.example|a>",
                "https://e.example mailto:a@e.example",
            ),
            ("<#C024BE7LR|general> hi <!channel>", "hi"),
            (
                "see [docs](https://e.example/d) and [x] (y)",
                "see https://e.example/d and [x] (y)",
            ),
            ("[a](b c)", "[a](b c)"),
            ("[[a](https://e.example)", "[https://e.example"),
            ("<script>alert(1)</script>", "alert(1)"),
            ("a\u{200B}b\u{FEFF}c", "a b c"),
        ];
        for (input, expected) in cases {
            assert_eq!(clean_text(input), *expected, "clean_text({input:?})");
        }
        let huge = "é".repeat(MAX_INPUT_BYTES);
        assert_eq!(clean_text(&huge).len(), MAX_INPUT_BYTES);
    }

    fn tricky_inputs() -> Vec<String> {
        let mut v: Vec<String> = [
            "",
            " ",
            "<",
            ">",
            "<>",
            "</>",
            "<a",
            "<a href",
            "<a href=",
            "<a href=\"",
            "<a href='x",
            "<a href=\"\">",
            "<a href=\"\"></a>",
            "watch <a href=\"https://shop.example/p\">",
            "<at>",
            "</at>",
            "<at>pricewatch",
            "<at></at><at>",
            "<@",
            "<@>",
            "<!",
            "<!--",
            "<!-- -",
            "<#|>",
            "<|>",
            "<https://|>",
            "watch <https://>",
            "watch <http://[::1>",
            "[",
            "](",
            "[](",
            "[]()",
            "[x](",
            "[x]((((",
            "[x]())))",
            "&",
            "&#",
            "&#x",
            "&#xFFFFFFFFFFFF;",
            "&#99999999999;",
            "&;",
            "watch",
            "watch %",
            "watch https://shop.example/p %",
            "watch https://shop.example/p drop by",
            "watch https://shop.example/p <",
            "watch https://shop.example/p below $",
            "watch https://shop.example/p below .,.,",
            "watch ((((((",
            "watch ))))))",
            "watch https://shop.example/p)))))))",
            "watch https://é.example/p",
            "watch https://xn--/p",
            "watch http://0x7f.1/",
            "watch https://shop.example:99999/p",
            "watch https://shop.example:/p",
            "watch https://[::ffff:127.0.0.1]/",
            "watch 𝔴𝔞𝔱𝔠𝔥.example/p",
            "wátch https://shop.example/p",
            "ＷＡＴＣＨ https://shop.example/p",
            "İ",
            "ß",
            "/",
            "//",
            "@",
            "@@",
            "unwatch #",
            "unwatch #0",
            "history #",
            "history )",
            "\u{0}\u{1}\u{7f}",
            "\u{FFFD}\u{202E}\u{200D}",
            "watch https://shop.example/p\u{202E}",
            "🙂🙂🙂 watch 🙂",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        v.push("<".repeat(MAX_INPUT_BYTES));
        v.push("<a ".repeat(MAX_INPUT_BYTES / 3));
        v.push("<at>".repeat(MAX_INPUT_BYTES / 4));
        v.push("[".repeat(MAX_INPUT_BYTES - 2) + "](");
        v.push("&".repeat(MAX_INPUT_BYTES));
        v.push("é".repeat(MAX_INPUT_BYTES / 2));
        v.push("é".repeat(MAX_INPUT_BYTES));
        v.push(format!("watch https://shop.example/{}", ")".repeat(2000)));
        v.push(format!("watch https://shop.example/{}", "(".repeat(5000)));
        v.push(format!("watch {}", "a.".repeat(4000)));
        v.push(format!("history {}", "9".repeat(5000)));
        v.push(format!(
            "watch https://shop.example/p below {}",
            "9".repeat(5000)
        ));
        v.push(format!(
            "watch https://shop.example/p {}%",
            "9".repeat(5000)
        ));
        v.push("a".repeat(MAX_INPUT_BYTES + 1));
        v
    }

    /// Checks that parsing never panics and that every accepted URL is stable
    /// when it is stored and read back.
    fn assert_sane(input: &str) {
        let _ = clean_text(input);
        let parsed = parse(input, &limits());
        let stored = match &parsed {
            Ok(Command::Watch { url, .. }) | Ok(Command::Unwatch(UnwatchTarget::Url(url))) => {
                Some(url)
            }
            _ => None,
        };
        if let Some(u) = stored {
            assert_eq!(
                ProductUrl::try_from(String::from(u.clone())).as_ref(),
                Ok(u),
                "round trip of {input:?}"
            );
            assert!(u.as_str().len() <= DEFAULT_MAX_URL_LEN);
            assert!(!u.host().is_empty());
        }
    }

    #[test]
    fn never_panics_on_tricky_input() {
        for input in tricky_inputs() {
            assert_sane(&input);
        }
    }

    #[test]
    fn never_panics_on_generated_input() {
        // Pieces of markup, URLs and numbers glued at random: a cheap fuzzer
        // that needs no extra dependency. Deterministic so failures reproduce.
        const PIECES: &[&str] = &[
            "watch",
            "unwatch",
            "history",
            "list",
            "help",
            "/",
            "@bot",
            " ",
            "\u{A0}",
            "\n",
            "<",
            ">",
            "</",
            "<at>",
            "</at>",
            "<a href=\"",
            "\">",
            "</a>",
            "<p>",
            "|",
            "[",
            "](",
            ")",
            "(",
            "&amp;",
            "&#",
            "&#x",
            ";",
            "&",
            "https://",
            "http:",
            "shop.example",
            "/p/1",
            "?",
            "utm_source=x",
            "&",
            "=",
            "#",
            "%",
            "15",
            "1,299",
            ".",
            ",",
            "-",
            "€",
            "EUR",
            "below",
            "drop",
            "<!--",
            "-->",
            "é",
            "🙂",
            "\\",
            "\u{0}",
            "@",
            ":",
            "0",
            "all",
            "xn--",
            "[::1]",
        ];
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let n = (next() % 12) as usize;
            let mut input = String::new();
            for _ in 0..n {
                input.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            assert_sane(&input);
        }
    }

    #[test]
    fn error_messages_are_readable() {
        let e = CommandError::DropOutOfRange {
            percent: dec("96"),
            min: dec("1"),
            max: dec("95"),
        };
        assert_eq!(
            e.to_string(),
            "a drop of 96% is outside the allowed 1% to 95%"
        );
        assert_eq!(
            CommandError::UrlTooLong { len: 3, max: 2 }.to_string(),
            "URL is 3 characters long, more than the 2 allowed"
        );
    }
}
