//! Parsing of what users type to the bot into a [`Command`]: the command
//! grammar and amounts live here; product URLs ([`ProductUrl`]) are normalised
//! in the `url` submodule and channel markup is removed in `markup`.
//!
//! Everything here is pure and synchronous: the bot feeds it the activity text
//! exactly as the channel delivered it, so this module owns all knowledge of how
//! Teams, Slack, Telegram, Web Chat and the Emulator dress up a message
//! (mentions, HTML, Slack's angle-bracket links, markdown links, entities).
//!
//! Decisions worth knowing when reading the bot's replies:
//! * Text over [`MAX_INPUT_BYTES`] is `Unknown { suggestion: None }` (see there), unless
//!   a word of it is a link over the length limit: that is `UrlError::TooLong`.
//! * `list` and `help` ignore words after them (`help watch`, `list please`);
//!   every other command rejects leftovers with [`CommandError::UnexpectedWords`],
//!   which names the command ([`Verb`]) so the reply explains that one.
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
//!   `history`, `pause`, `resume` or `help`, or for a French word `surveiller`, `liste`,
//!   `arrêter`, `historique`, `reprendre` or `aide`.
//! * French commands (`surveiller`, `liste`, `ne plus suivre`, `historique`, `aide`, and
//!   `sous`/`seuil`, `baisse de`, `réassort`/`retour en stock` after a link) are understood
//!   in every locale, accents optional; see `FRENCH_PHRASES`.
//! * `watch <n> <rule>` (a watch number where the link goes) changes that watch's rule;
//!   `watch <n>` alone is [`CommandError::MissingRule`].
//! * An empty message (or one that was only a mention) is `Unknown { suggestion: None }`;
//!   the bot decides whether to answer with help.
//! * A URL typed without a scheme needs a dotted host whose last label starts
//!   with a letter (`shop.example/p`); bare IP addresses need `http(s)://`.
//! * Loopback and private addresses are accepted: refusing them here would be
//!   incomplete (DNS can point anywhere), so the fetcher must check the
//!   addresses it actually connects to.
//! * Amounts are read by the page parser's rules (`price::parse`), so `1.299` means in chat
//!   what it means on a page (1299); see `parse_amount`.

mod markup;
#[cfg(test)]
mod testing;

use std::str::FromStr;

use rust_decimal::Decimal;

use self::markup::{strip_markup, unwrap_markdown_links};
use crate::domain::product_url::{is_separator, looks_like_url, UrlError, DEFAULT_MAX_URL_LEN};
use crate::domain::text::fold;
use crate::domain::{ProductUrl, Rule};
use crate::price::currency;
use crate::price::{parse_price, Hints};

pub use self::markup::clean_text;

/// Longest message, in bytes, that [`parse`] looks at.
///
/// A real command is a few hundred bytes; anything this long is a paste or an
/// attack, and the markup scanner's worst case (an unterminated quoted
/// attribute in every tag) is quadratic in the length. Such text is `Unknown { suggestion: None }` rather than truncated,
/// because truncation could cut a URL and silently watch the wrong page, and a
/// dedicated error variant would widen the API every caller must match on for a
/// case the bot answers like any other unknown text. The one exception is a pasted
/// link longer than the URL limit, found by a linear scan of the words: the user is
/// told the link is too long, as a shorter overlong link is.
pub const MAX_INPUT_BYTES: usize = 8 * 1024;

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
        rule: Option<Rule>,
    },
    /// `watch <product name> [rule]`: search the shop catalogues for `query` (its words
    /// joined by single spaces); the matches offered carry `rule`.
    Search {
        query: String,
        rule: Option<Rule>,
    },
    List,
    Unwatch(UnwatchTarget),
    /// Price history of the watch with this 1-based index, as the user typed it.
    History(usize),
    /// A new rule for the watch with this 1-based index (`watch 2 15%`).
    Change {
        index: usize,
        rule: Rule,
    },
    /// `pause` (`on_hold: true`) or `resume` watches.
    Hold {
        target: HoldTarget,
        on_hold: bool,
    },
    Help,
    /// Not a command; `suggestion` is the canonical command word it resembles.
    Unknown {
        suggestion: Option<&'static str>,
    },
}

/// Which watches `unwatch` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnwatchTarget {
    /// 1-based, as shown by `list`.
    Index(usize),
    Url(ProductUrl),
    All,
}

/// Which watches `pause` and `resume` apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldTarget {
    /// 1-based, as shown by `list`.
    Index(usize),
    All,
}

/// A command that takes arguments: the one a malformed message meant, so the reply
/// explains that command and no other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Watch,
    Unwatch,
    History,
    Pause,
    Resume,
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verb::Watch => "watch",
            Verb::Unwatch => "unwatch",
            Verb::History => "history",
            Verb::Pause => "pause",
            Verb::Resume => "resume",
        })
    }
}

/// Why a message that named a command could not be accepted.
///
/// Each case is its own variant so that the bot can explain it in the user's
/// language; the messages here are for logs only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Url(#[from] UrlError),
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
    #[error("unexpected words after {command}: `{words}`")]
    UnexpectedWords { command: Verb, words: String },
    #[error("unwatch needs a watch number, a URL or `all`")]
    MissingUnwatchTarget,
    #[error("`{text}` is not a watch number")]
    InvalidIndex { text: String },
    #[error("watch {index} needs a new rule")]
    MissingRule { index: usize },
    #[error("{command} needs a watch number or `all`")]
    MissingHoldTarget { command: Verb },
    #[error("a product name of {len} characters is longer than the {max} searched")]
    QueryTooLong { len: usize, max: usize },
}

/// Parses a chat message into a command.
///
/// `Ok(Command::Unknown { .. })` means "not a command"; `Err` means a known
/// command with a bad argument.
pub fn parse(text: &str, limits: &Limits, locale: Option<&str>) -> Result<Command, CommandError> {
    if text.len() > MAX_INPUT_BYTES {
        return oversized(text, limits);
    }
    let stripped = strip_markup(text);
    let unwrapped = unwrap_markdown_links(&stripped);
    let words = words(&unwrapped);
    let Some((first, _)) = words.split_first() else {
        return Ok(Command::Unknown { suggestion: None });
    };
    let (name, args) = match french_command(&words) {
        Some((english, used)) => (english.to_owned(), &words[used..]),
        None => (command_name(first), &words[1..]),
    };
    match name.as_str() {
        "watch" => parse_watch(args, limits, locale),
        "list" | "ls" | "watches" => Ok(Command::List),
        "unwatch" | "stop" | "remove" | "delete" => parse_unwatch(args, limits),
        "history" => parse_history(args),
        "pause" => parse_hold(args, Verb::Pause),
        "resume" | "reprendre" => parse_hold(args, Verb::Resume),
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

/// Text over [`MAX_INPUT_BYTES`]: a word that is a link over the limit (bare, or in the
/// brackets channels put around links) is what to tell the user about; anything else
/// is not a command.
fn oversized(text: &str, limits: &Limits) -> Result<Command, CommandError> {
    let is_bracket = |c: char| matches!(c, '<' | '>' | '(' | ')' | '[' | ']' | '"' | '\'');
    let long_link = text
        .split(is_separator)
        .map(|w| w.trim_matches(is_bracket))
        .map(|w| w.rsplit_once("](").map_or(w, |(_, link)| link))
        .map(|w| (w, w.chars().count()))
        .find(|(w, len)| *len > limits.max_url_len && (looks_like_url(w) || w.contains("://")));
    match long_link {
        Some((_, len)) => Err(CommandError::Url(UrlError::TooLong {
            len,
            max: limits.max_url_len,
        })),
        None => Ok(Command::Unknown { suggestion: None }),
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

/// French commands, one word or several, whatever the conversation's locale (a French
/// speaker on an English-locale client is understood): the English command each means
/// and how many words it took. Accents and case do not matter (`arreter`, `Arrêter`).
fn french_command(words: &[&str]) -> Option<(&'static str, usize)> {
    let first = fold(&command_name(words.first()?));
    let said = |at: usize| words.get(at).map(|w| fold(&w.to_lowercase()));
    FRENCH_PHRASES
        .iter()
        .find(|(phrase, _)| {
            phrase.iter().enumerate().all(|(i, w)| {
                if i == 0 {
                    first == *w
                } else {
                    said(i).as_deref() == Some(*w)
                }
            })
        })
        .map(|(phrase, english)| (*english, phrase.len()))
}

/// Every French command, accents removed, with the English command it means. The longer
/// phrases come first so that `ne plus suivre` is not read as something shorter.
const FRENCH_PHRASES: &[(&[&str], &str)] = &[
    (&["ne", "plus", "surveiller"], "unwatch"),
    (&["ne", "plus", "suivre"], "unwatch"),
    (&["mes", "surveillances"], "list"),
    (&["mes", "suivis"], "list"),
    (&["surveiller"], "watch"),
    (&["suivre"], "watch"),
    (&["liste"], "list"),
    (&["lister"], "list"),
    (&["arreter"], "unwatch"),
    (&["supprimer"], "unwatch"),
    (&["historique"], "history"),
    (&["aide"], "help"),
];

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

fn parse_watch(
    args: &[&str],
    limits: &Limits,
    locale: Option<&str>,
) -> Result<Command, CommandError> {
    let Some((first, rest)) = args.split_first() else {
        return Err(CommandError::Url(UrlError::Missing));
    };
    if let Some(index) = parse_index(first) {
        return parse_change(index, rest, limits, locale);
    }
    if !looks_like_url(first) {
        // "watch this https://…": the URL is there, the words before it are not.
        return match args.iter().position(|w| looks_like_url(w)) {
            Some(at) => Err(unexpected(Verb::Watch, &args[..at])),
            None => parse_search(args, limits, locale),
        };
    }
    let url = ProductUrl::parse(first, limits.max_url_len)?;
    let rule = parse_rule(rest, limits, locale)?;
    Ok(Command::Watch { url, rule })
}

/// Longest product name searched, in characters: a name, not a paste.
pub const MAX_QUERY_CHARS: usize = 100;

/// `watch cast iron skillet [rule]`: words that are no link name a product to search for.
/// A rule may follow the name in the grammar a link's rule has; the first place where the
/// rest of the words read as a whole rule ends the name (`watch samsung tv below 500`), so
/// words such as `drop` or `under` inside a name stay in it (`watch gold drop earrings`).
/// A last word ending in `%` is always a rule, and a bad one is said to be bad.
fn parse_search(
    args: &[&str],
    limits: &Limits,
    locale: Option<&str>,
) -> Result<Command, CommandError> {
    // A rule or a number alone names no product: the link is what is missing.
    let number = |w: &str| w.bytes().all(|b| b.is_ascii_digit());
    if number(args[0]) || matches!(parse_rule(args, limits, locale), Ok(Some(_))) {
        return Err(CommandError::Url(UrlError::Missing));
    }
    let mut name_ends = args.len();
    let mut rule = None;
    for at in 1..args.len() {
        if let Ok(Some(r)) = parse_rule(&args[at..], limits, locale) {
            name_ends = at;
            rule = Some(r);
            break;
        }
    }
    if rule.is_none() && args.len() > 1 && args.last().is_some_and(|w| w.ends_with('%')) {
        // Out of range or unreadable: the user asked for a drop and must hear why not.
        parse_rule(&args[args.len() - 1..], limits, locale)?;
    }
    let query = args[..name_ends].join(" ");
    let len = query.chars().count();
    if len > MAX_QUERY_CHARS {
        return Err(CommandError::QueryTooLong {
            len,
            max: MAX_QUERY_CHARS,
        });
    }
    Ok(Command::Search { query, rule })
}

/// `watch 2 15%`: a new rule for a watch the user already has, in the grammar a new watch's
/// rule is written in.
fn parse_change(
    index: usize,
    args: &[&str],
    limits: &Limits,
    locale: Option<&str>,
) -> Result<Command, CommandError> {
    match parse_rule(args, limits, locale)? {
        Some(rule) => Ok(Command::Change { index, rule }),
        None => Err(CommandError::MissingRule { index }),
    }
}

fn parse_rule(
    args: &[&str],
    limits: &Limits,
    locale: Option<&str>,
) -> Result<Option<Rule>, CommandError> {
    let Some(first) = args.first() else {
        return Ok(None);
    };
    let keyword = fold(&first.to_lowercase());
    let restock_words = match keyword.as_str() {
        "restock" | "restocked" | "stock" | "reassort" | "dispo" | "disponible" => 1,
        "retour"
            if args.len() >= 3
                && args[1].eq_ignore_ascii_case("en")
                && args[2].eq_ignore_ascii_case("stock") =>
        {
            3
        }
        _ => 0,
    };
    if restock_words > 0 {
        return match &args[restock_words..] {
            [] => Ok(Some(Rule::Restock)),
            rest => Err(unexpected(Verb::Watch, rest)),
        };
    }
    if matches!(keyword.as_str(), "below" | "under" | "<" | "sous" | "seuil") {
        return parse_target(&args[1..], locale).map(Some);
    }
    if let Some(attached) = first.strip_prefix('<') {
        let mut target = vec![attached];
        target.extend_from_slice(&args[1..]);
        return parse_target(&target, locale).map(Some);
    }
    let (spec, explicit) = if keyword == "drop" || keyword == "baisse" {
        let rest = &args[1..];
        match rest.first() {
            Some(w) if w.eq_ignore_ascii_case("by") || w.eq_ignore_ascii_case("de") => {
                (&rest[1..], true)
            }
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
        return Err(unexpected(Verb::Watch, args));
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
        [] => Ok(Some(Rule::Drop { percent })),
        rest => Err(unexpected(Verb::Watch, rest)),
    }
}

/// A drop may be written as a negative change (`-15%`); `+15%` is a rise and
/// is refused rather than flipped.
fn parse_percent(text: &str) -> Option<Decimal> {
    let text = text.strip_prefix(['-', '\u{2212}']).unwrap_or(text);
    parse_percent_number(text)
}

/// `[currency] amount [currency]`, the currency attached or separate.
fn parse_target(args: &[&str], locale: Option<&str>) -> Result<Rule, CommandError> {
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
        .and_then(|number| parse_amount(number, locale))
        .filter(|a| a.is_sign_positive() && !a.is_zero())
        .ok_or_else(|| CommandError::InvalidTarget {
            text: (*amount_word).to_owned(),
        })?;
    rest = after;
    if rest.first().is_some_and(|w| is_currency(w)) {
        rest = &rest[1..];
    }
    if rest.is_empty() {
        Ok(Rule::Below { amount })
    } else {
        Err(unexpected(Verb::Watch, rest))
    }
}

/// Currency written next to an amount: a sign shops write (`€`, `US$`, `R$`, `zł`, `kr`)
/// or three letters (`EUR`, `usd`), as the page parser knows them. The amount itself is
/// then read by that parser, so `below 1.299` means what `1.299` means on a page.
fn is_currency(word: &str) -> bool {
    currency::is_currency_word(word)
}

/// The amount inside `€149.99`, `149.99EUR`, `US$1,299`; `None` when the text
/// around the number is not a currency.
fn strip_currency(word: &str) -> Option<&str> {
    let is_affix = |c: char| !(c.is_ascii_digit() || c == '.' || c == ',');
    let body = word.trim_start_matches(is_affix);
    let prefix = &word[..word.len() - body.len()];
    let number = body.trim_end_matches(is_affix);
    let suffix = &body[number.len()..];
    let affix_ok = |a: &str| a.is_empty() || is_currency(a);
    (affix_ok(prefix) && affix_ok(suffix)).then_some(number)
}

/// A target amount, read with the page parser's rules (`price::parse`): when both `.` and
/// `,` appear the last is the decimal point; a lone separator before exactly three digits
/// groups thousands (`1.299` and `1,299` are 1299); any other lone separator is the
/// decimal point (`149,99`). The conversation's locale settles an ambiguous sign such as
/// `$`; the currency itself is not kept (a watch compares prices of one page). Only a
/// plain number is accepted here: the words around it were checked by the grammar.
fn parse_amount(number: &str, locale: Option<&str>) -> Option<Decimal> {
    if number.is_empty()
        || !number
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b',')
    {
        return None;
    }
    let hints = Hints {
        locale,
        ..Hints::default()
    };
    parse_price(number, &hints)
        .ok()
        .map(|p| p.amount.normalize())
}

/// A percentage: a plain number with `.` or `,` as its decimal point (`12,5`), no grouping.
fn parse_percent_number(text: &str) -> Option<Decimal> {
    let mut separators = text.bytes().filter(|b| *b == b'.' || *b == b',');
    let (first, second) = (separators.next(), separators.next());
    if second.is_some()
        || !text.bytes().any(|b| b.is_ascii_digit())
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b',')
    {
        return None;
    }
    let text = if first.is_some() {
        text.replace(',', ".")
    } else {
        text.to_owned()
    };
    let text = if text.starts_with('.') {
        format!("0{text}")
    } else {
        text
    };
    Decimal::from_str(text.trim_end_matches('.'))
        .ok()
        .map(|d| d.normalize())
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
    let target = if ["all", "tout", "tous", "toutes"]
        .iter()
        .any(|all| first.eq_ignore_ascii_case(all))
    {
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
        Err(unexpected(Verb::Unwatch, rest))
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
        Err(unexpected(Verb::History, rest))
    }
}

fn parse_hold(args: &[&str], command: Verb) -> Result<Command, CommandError> {
    let Some((first, rest)) = args.split_first() else {
        return Err(CommandError::MissingHoldTarget { command });
    };
    let target = if first.eq_ignore_ascii_case("all") {
        HoldTarget::All
    } else if let Some(index) = parse_index(first) {
        HoldTarget::Index(index)
    } else {
        return Err(CommandError::InvalidIndex {
            text: (*first).to_owned(),
        });
    };
    if !rest.is_empty() {
        return Err(unexpected(command, rest));
    }
    Ok(Command::Hold {
        target,
        on_hold: command == Verb::Pause,
    })
}

fn unexpected(command: Verb, words: &[&str]) -> CommandError {
    CommandError::UnexpectedWords {
        command,
        words: words.join(" "),
    }
}

/// Every word that starts a command, with the canonical name suggested for it: a
/// misspelt French word suggests the French command, an English one the English command.
/// French words are written here without accents, as [`fold`] leaves what was typed.
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
    ("pause", "pause"),
    ("resume", "resume"),
    ("help", "help"),
    ("start", "help"),
    ("surveiller", "surveiller"),
    ("suivre", "surveiller"),
    ("liste", "liste"),
    ("lister", "liste"),
    ("arreter", "arrêter"),
    ("supprimer", "arrêter"),
    ("historique", "historique"),
    ("aide", "aide"),
];

fn suggest(word: &str) -> Option<&'static str> {
    let typed: Vec<char> = fold(word).chars().collect();
    // No command word has more than 10 letters, so longer text is never within
    // reach and is not worth the quadratic distance computation.
    if typed.is_empty() || typed.len() > 12 {
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

#[cfg(test)]
mod tests {
    use super::testing::{check, limits, p, url, watch, U};
    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn drop_rule(s: &str) -> Option<Rule> {
        Some(Rule::Drop { percent: dec(s) })
    }

    fn below(s: &str) -> Option<Rule> {
        Some(Rule::Below { amount: dec(s) })
    }

    fn unknown(suggestion: Option<&'static str>) -> Result<Command, CommandError> {
        Ok(Command::Unknown { suggestion })
    }

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
            rule: Some(Rule::Drop { percent: d }),
            ..
        }) = p("watch https://shop.example/p/1 15.50%")
        else {
            panic!("not a drop watch");
        };
        assert_eq!(d.to_string(), "15.5");
    }

    #[test]
    fn watch_restock() {
        let r = || watch(U, Some(Rule::Restock));
        check(&[
            ("watch https://shop.example/p/123 restock", r()),
            ("watch https://shop.example/p/123 RESTOCK", r()),
            ("watch https://shop.example/p/123 Restocked", r()),
            ("watch https://shop.example/p/123 stock", r()),
            (
                "@pricewatch watch https://shop.example/p/123  restock ",
                r(),
            ),
        ]);
        assert_eq!(
            p("watch https://shop.example/p/123 restock 15%"),
            Err(CommandError::UnexpectedWords {
                command: Verb::Watch,
                words: "15%".into()
            })
        );
        assert!(p("watch https://shop.example/p/123 restocking").is_err());
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
            ("watch https://shop.example/p/123 below 1.299", t("1299")),
            ("watch https://shop.example/p/123 below 1.299 kr", t("1299")),
            ("watch https://shop.example/p/123 below 0.5", t("0.5")),
        ]);
    }

    #[test]
    fn amounts() {
        // The page parser's rules (`price::parse`): a typed amount means what the same text
        // means on a page, so `1.299` is 1299 here as it is in a shop's `1.299 kr`.
        let cases: &[(&str, Option<&str>)] = &[
            ("149.99", Some("149.99")),
            ("149,99", Some("149.99")),
            ("1,299.00", Some("1299")),
            ("1.299,00", Some("1299")),
            ("1299", Some("1299")),
            ("1,299", Some("1299")),
            ("1.299", Some("1299")),
            ("1,299,000", Some("1299000")),
            ("1.299.000", Some("1299000")),
            ("1.299.000,50", Some("1299000.5")),
            ("0,999", Some("0.999")),
            (",5", Some("0.5")),
            ("5.", Some("5")),
            ("007", Some("7")),
            ("0", None),
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
                parse_amount(text, None),
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
            ("watch", Err(E::Url(UrlError::Missing))),
            ("watch 15%", Err(E::Url(UrlError::Missing))),
            ("watch below 10", Err(E::Url(UrlError::Missing))),
            ("watch", Err(E::Url(UrlError::Missing))),
            ("watch 0", Err(E::Url(UrlError::Missing))),
            (
                &format!("watch {}", "pan ".repeat(30)),
                Err(E::QueryTooLong {
                    len: 119,
                    max: MAX_QUERY_CHARS,
                }),
            ),
            (
                "watch 192.0.2.1/p",
                Err(E::Url(UrlError::Invalid {
                    reason: "relative URL without a base".into(),
                })),
            ),
            (
                "watch ftp://shop.example/p",
                Err(E::Url(UrlError::NotHttp {
                    scheme: "ftp".into(),
                })),
            ),
            (
                "watch javascript:alert(1)",
                Err(E::Url(UrlError::NotHttp {
                    scheme: "javascript".into(),
                })),
            ),
            (
                "watch JavaScript:alert(1)",
                Err(E::Url(UrlError::NotHttp {
                    scheme: "javascript".into(),
                })),
            ),
            (
                "watch file:///etc/passwd",
                Err(E::Url(UrlError::NotHttp {
                    scheme: "file".into(),
                })),
            ),
            (
                &too_long,
                Err(E::Url(UrlError::TooLong {
                    len: 2049,
                    max: 2048,
                })),
            ),
            (
                "watch https://bob:secret@shop.example/p",
                Err(E::Url(UrlError::Credentials)),
            ),
            (
                "watch https://bob@shop.example/p",
                Err(E::Url(UrlError::Credentials)),
            ),
            (
                "watch https://:secret@shop.example/p",
                Err(E::Url(UrlError::Credentials)),
            ),
            (
                "watch https://shop.example\\p\\1",
                Err(E::Url(UrlError::Invalid {
                    reason: "contains a backslash".into(),
                })),
            ),
            (
                "watch https://shop.example/p&#1;",
                Err(E::Url(UrlError::Invalid {
                    reason: "contains a control character".into(),
                })),
            ),
            (
                "watch https://",
                Err(E::Url(UrlError::Invalid {
                    reason: "empty host".into(),
                })),
            ),
            (
                "watch http://[::1/p",
                Err(E::Url(UrlError::Invalid {
                    reason: "invalid IPv6 address".into(),
                })),
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
                "watch https://shop.example/p below 5e3",
                Err(E::InvalidTarget { text: "5e3".into() }),
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
                    command: Verb::Watch,
                    words: "banana".into(),
                }),
            ),
            (
                "watch https://shop.example/p 15",
                Err(E::UnexpectedWords {
                    command: Verb::Watch,
                    words: "15".into(),
                }),
            ),
            (
                "watch https://shop.example/p 15% right now",
                Err(E::UnexpectedWords {
                    command: Verb::Watch,
                    words: "right now".into(),
                }),
            ),
            (
                "watch https://shop.example/p below 10 EUR please",
                Err(E::UnexpectedWords {
                    command: Verb::Watch,
                    words: "please".into(),
                }),
            ),
            (
                "watch this https://shop.example/p",
                Err(E::UnexpectedWords {
                    command: Verb::Watch,
                    words: "this".into(),
                }),
            ),
            (
                "unwatch all now",
                Err(E::UnexpectedWords {
                    command: Verb::Unwatch,
                    words: "now".into(),
                }),
            ),
            (
                "unwatch 1 2 3",
                Err(E::UnexpectedWords {
                    command: Verb::Unwatch,
                    words: "2 3".into(),
                }),
            ),
            (
                "unwatch all all",
                Err(E::UnexpectedWords {
                    command: Verb::Unwatch,
                    words: "all".into(),
                }),
            ),
            (
                "history 2 3",
                Err(E::UnexpectedWords {
                    command: Verb::History,
                    words: "3".into(),
                }),
            ),
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
                Err(E::Url(UrlError::NotHttp {
                    scheme: "ftp".into(),
                })),
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
            parse("watch https://shop.example/p 4%", &limits, None),
            Err(CommandError::DropOutOfRange {
                percent: dec("4"),
                min: dec("5"),
                max: dec("50"),
            })
        );
        assert!(parse("watch https://shop.example/p 50%", &limits, None).is_ok());
        assert_eq!(
            parse(
                "watch https://shop.example/p/aaaaaaaaaaaaaaaaaaaa",
                &limits,
                None
            ),
            Err(CommandError::Url(UrlError::TooLong { len: 43, max: 40 }))
        );
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

    /// Each case in both locales: French words are understood whatever the client says.
    fn check_in_both_locales(cases: &[(&str, Result<Command, CommandError>)]) {
        let mut failures = Vec::new();
        for locale in ["fr-FR", "en-US"] {
            for (input, expected) in cases {
                let got = parse(input, &limits(), Some(locale));
                if &got != expected {
                    failures.push(format!(
                        "{locale} {input:?}\n  expected {expected:?}\n  got      {got:?}"
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn french_commands_with_and_without_accents() {
        let w = |rule| watch(U, rule);
        let restock = || Some(Rule::Restock);
        check_in_both_locales(&[
            ("surveiller https://shop.example/p/123", w(None)),
            ("Surveiller https://shop.example/p/123", w(None)),
            ("/surveiller https://shop.example/p/123", w(None)),
            ("suivre https://shop.example/p/123", w(None)),
            ("SUIVRE https://shop.example/p/123 15%", w(drop_rule("15"))),
            (
                "suivre https://shop.example/p/123 baisse de 15 %",
                w(drop_rule("15")),
            ),
            (
                "surveiller https://shop.example/p/123 sous 149,99",
                w(below("149.99")),
            ),
            (
                "surveiller https://shop.example/p/123 seuil 149,99 €",
                w(below("149.99")),
            ),
            (
                "surveiller https://shop.example/p/123 SEUIL 1 299,00",
                Err(CommandError::UnexpectedWords {
                    command: Verb::Watch,
                    words: "299,00".into(),
                }),
            ),
            (
                "surveiller https://shop.example/p/123 réassort",
                w(restock()),
            ),
            (
                "surveiller https://shop.example/p/123 reassort",
                w(restock()),
            ),
            ("surveiller https://shop.example/p/123 dispo", w(restock())),
            (
                "surveiller https://shop.example/p/123 retour en stock",
                w(restock()),
            ),
            (
                "surveiller https://shop.example/p/123 Retour En Stock",
                w(restock()),
            ),
            ("liste", Ok(Command::List)),
            ("Liste.", Ok(Command::List)),
            ("lister", Ok(Command::List)),
            ("mes suivis", Ok(Command::List)),
            ("Mes surveillances", Ok(Command::List)),
            ("arrêter 2", Ok(Command::Unwatch(UnwatchTarget::Index(2)))),
            ("arreter 2", Ok(Command::Unwatch(UnwatchTarget::Index(2)))),
            ("ARRÊTER tout", Ok(Command::Unwatch(UnwatchTarget::All))),
            ("arrêter tous", Ok(Command::Unwatch(UnwatchTarget::All))),
            (
                "supprimer #2",
                Ok(Command::Unwatch(UnwatchTarget::Index(2))),
            ),
            (
                "ne plus suivre 2",
                Ok(Command::Unwatch(UnwatchTarget::Index(2))),
            ),
            (
                "Ne Plus Surveiller https://shop.example/p/123",
                Ok(Command::Unwatch(UnwatchTarget::Url(url(U)))),
            ),
            (
                "ne plus surveiller",
                Err(CommandError::MissingUnwatchTarget),
            ),
            ("historique 2", Ok(Command::History(2))),
            ("Historique #3", Ok(Command::History(3))),
            ("aide", Ok(Command::Help)),
            ("Aide ?", Ok(Command::Help)),
            ("@pricewatch surveiller https://shop.example/p/123", w(None)),
            // English keeps working beside French, in both locales.
            (
                "watch https://shop.example/p/123 below 149.99",
                w(below("149.99")),
            ),
            ("list", Ok(Command::List)),
            ("unwatch all", Ok(Command::Unwatch(UnwatchTarget::All))),
        ]);
        assert_eq!(
            parse("historique 2 3", &limits(), Some("fr-FR")),
            Err(CommandError::UnexpectedWords {
                command: Verb::History,
                words: "3".into()
            })
        );
        // A phrase cut short is not a command.
        assert_eq!(p("ne plus"), unknown(None));
        assert_eq!(p("mes courses"), unknown(None));
    }

    #[test]
    fn french_amounts_follow_the_amount_grammar() {
        let w = |amount| watch(U, below(amount));
        for locale in [Some("fr-FR"), Some("en-US"), None] {
            for (text, amount) in [
                ("surveiller https://shop.example/p/123 sous 99,90", "99.90"),
                ("surveiller https://shop.example/p/123 sous 1.299", "1299"),
                (
                    "surveiller https://shop.example/p/123 sous 1.299,50",
                    "1299.50",
                ),
                (
                    "surveiller https://shop.example/p/123 sous 99,90EUR",
                    "99.90",
                ),
            ] {
                assert_eq!(
                    parse(text, &limits(), locale),
                    w(amount),
                    "{locale:?} {text}"
                );
            }
        }
    }

    #[test]
    fn french_suggestions() {
        check_in_both_locales(&[
            (
                "surveler https://shop.example/p/1",
                unknown(Some("surveiller")),
            ),
            ("survieller", unknown(Some("surveiller"))),
            (
                "suivr https://shop.example/p/1",
                unknown(Some("surveiller")),
            ),
            ("histroique 2", unknown(Some("historique"))),
            ("historiqe 2", unknown(Some("historique"))),
            ("lsite", unknown(Some("liste"))),
            ("arêter 2", unknown(Some("arrêter"))),
            ("arretre 2", unknown(Some("arrêter"))),
            ("aied", unknown(Some("aide"))),
            // Accents are compared without their marks, so they cost no edits.
            ("hîstôrîqeu 2", unknown(Some("historique"))),
            // English typos still suggest the English word.
            ("histroy 1", unknown(Some("history"))),
            ("lsit", unknown(Some("list"))),
            ("wacth", unknown(Some("watch"))),
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
    fn an_oversized_link_is_too_long_not_unknown() {
        let link = format!("https://shop.example/{}", "a".repeat(10_000));
        let too_long = |len| Err(CommandError::Url(UrlError::TooLong { len, max: 2048 }));
        let len = link.chars().count();
        assert_eq!(p(&format!("watch {link}")), too_long(len));
        assert_eq!(p(&format!("unwatch <{link}>")), too_long(len));
        assert_eq!(p(&format!("watch [here]({link})")), too_long(len));
        assert_eq!(p(&link), too_long(len));
        // Over the input limit with no link in it: still not a command.
        assert_eq!(p(&"a".repeat(MAX_INPUT_BYTES + 1)), unknown(None));
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
        let parsed = parse(input, &limits(), None);
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
            "surveiller",
            "ne plus suivre",
            "arrêter",
            "sous",
            "retour en",
            "stock",
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

    /// Text a user could send, and worse: arbitrary Unicode, the words and marks the
    /// grammar reacts to, bidi and control characters, and now and then far more than
    /// [`MAX_INPUT_BYTES`].
    fn any_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let word = prop::sample::select(vec![
            "watch",
            "surveiller",
            "suivre",
            "Arrêter",
            "ne",
            "plus",
            "mes",
            "suivis",
            "historique",
            "liste",
            "aide",
            "sous",
            "seuil",
            "baisse",
            "de",
            "tout",
            "réassort",
            "retour",
            "en",
            "stock",
            "unwatch",
            "history",
            "list",
            "help",
            "all",
            "below",
            "drop",
            "by",
            "%",
            "15%",
            "-15%",
            "1.299",
            "149,99",
            "€",
            "EUR",
            "#2",
            "2.",
            "<at>bot</at>",
            "@bot",
            "https://shop.example/p/1",
            "shop.example/p",
            "<https://a.example/x|a>",
            "[x](https://a.example/y)",
            "&amp;",
            "\u{202E}",
            "\u{2066}",
            "\u{200F}",
            "\u{061C}",
            "\u{0}",
            "\u{1b}",
            "\u{A0}",
            "\u{200B}",
            "é",
            "🙂",
            "\n",
            "\t",
            " ",
        ]);
        let piece = prop_oneof![
            4 => word.prop_map(str::to_owned),
            2 => any::<String>(),
            1 => "[a-z0-9./:%#?&=,-]{1,30}",
        ];
        prop_oneof![
            10 => prop::collection::vec(piece, 0..12).prop_map(|v| v.join(" ")),
            1 => (any::<char>(), MAX_INPUT_BYTES - 8..MAX_INPUT_BYTES * 2)
                .prop_map(|(c, n)| format!("watch https://shop.example/{}", c.to_string().repeat(n / c.len_utf8()))),
        ]
    }

    #[test]
    fn words_that_are_no_link_name_a_product_to_search_for() {
        let search = |query: &str, rule: Option<Rule>| {
            Ok(Command::Search {
                query: query.to_owned(),
                rule,
            })
        };
        let drop = |p: i64| {
            Some(Rule::Drop {
                percent: Decimal::from(p),
            })
        };
        let below = |a: i64| {
            Some(Rule::Below {
                amount: Decimal::from(a),
            })
        };
        check(&[
            ("watch cast iron skillet", search("cast iron skillet", None)),
            (
                "Watch  Cast   Iron\tSkillet",
                search("Cast Iron Skillet", None),
            ),
            ("surveiller poêle en fonte", search("poêle en fonte", None)),
            (
                "suivre poele en fonte 15%",
                search("poele en fonte", drop(15)),
            ),
            (
                "watch cast iron skillet 15%",
                search("cast iron skillet", drop(15)),
            ),
            (
                "watch samsung tv below 500",
                search("samsung tv", below(500)),
            ),
            (
                "surveiller téléviseur sous 500",
                search("téléviseur", below(500)),
            ),
            (
                "watch lego castle restock",
                search("lego castle", Some(Rule::Restock)),
            ),
            // Rule words inside a name stay in it when the rest is no whole rule.
            (
                "watch gold drop earrings",
                search("gold drop earrings", None),
            ),
            (
                "watch under armour shoes",
                search("under armour shoes", None),
            ),
            (
                "watch skillet 99%",
                Err(CommandError::DropOutOfRange {
                    percent: Decimal::from(99),
                    min: Decimal::ONE,
                    max: Decimal::from(95),
                }),
            ),
            // A link among the words is still a misplaced link, not a search.
            (
                "watch this https://shop.example/p/1",
                Err(CommandError::UnexpectedWords {
                    command: Verb::Watch,
                    words: "this".into(),
                }),
            ),
        ]);
    }

    #[test]
    fn a_watch_number_with_a_rule_changes_that_watch() {
        let change = |index, rule: Option<Rule>| {
            Ok(Command::Change {
                index,
                rule: rule.unwrap(),
            })
        };
        check(&[
            ("watch 2 15%", change(2, drop_rule("15"))),
            ("watch #2 drop by 12,5", change(2, drop_rule("12.5"))),
            ("watch 2 below 99", change(2, below("99"))),
            ("/watch 3 < €1.299", change(3, below("1299"))),
            ("watch 1 restock", change(1, Some(Rule::Restock))),
            // The French words, as the French help writes them.
            ("surveiller 2 15%", change(2, drop_rule("15"))),
            ("surveiller 2 sous 99", change(2, below("99"))),
            ("suivre 2 seuil 99,90", change(2, below("99.90"))),
            ("watch 2", Err(CommandError::MissingRule { index: 2 })),
            (
                "watch 2 15",
                Err(CommandError::UnexpectedWords {
                    command: Verb::Watch,
                    words: "15".into(),
                }),
            ),
            (
                "watch 2 99%",
                Err(CommandError::DropOutOfRange {
                    percent: dec("99"),
                    min: dec("1"),
                    max: dec("95"),
                }),
            ),
            // Not a watch number: still a missing link.
            ("watch 0 15%", Err(CommandError::Url(UrlError::Missing))),
        ]);
    }

    #[test]
    fn pause_and_resume_take_a_number_or_all() {
        let hold = |target, on_hold| Ok(Command::Hold { target, on_hold });
        check(&[
            ("pause 2", hold(HoldTarget::Index(2), true)),
            ("Pause #2.", hold(HoldTarget::Index(2), true)),
            ("pause ALL", hold(HoldTarget::All, true)),
            ("resume 2", hold(HoldTarget::Index(2), false)),
            ("/resume@pricewatch all", hold(HoldTarget::All, false)),
            ("reprendre 1", hold(HoldTarget::Index(1), false)),
            ("reprendre all", hold(HoldTarget::All, false)),
            (
                "pause",
                Err(CommandError::MissingHoldTarget {
                    command: Verb::Pause,
                }),
            ),
            (
                "resume",
                Err(CommandError::MissingHoldTarget {
                    command: Verb::Resume,
                }),
            ),
            (
                "pause it",
                Err(CommandError::InvalidIndex { text: "it".into() }),
            ),
            (
                "resume 2 now",
                Err(CommandError::UnexpectedWords {
                    command: Verb::Resume,
                    words: "now".into(),
                }),
            ),
            (
                "puase 2",
                Ok(Command::Unknown {
                    suggestion: Some("pause"),
                }),
            ),
            (
                "resme",
                Ok(Command::Unknown {
                    suggestion: Some("resume"),
                }),
            ),
        ]);
    }

    /// The command written back as a user would type it.
    fn typed(command: &Command) -> Option<String> {
        // An amount with exactly three decimals would read as grouped thousands
        // (`1.299` is 1299): a fourth digit keeps it a fraction.
        let amount = |a: &Decimal| {
            let text = a.normalize().to_string();
            match text.split_once('.') {
                Some((_, fraction)) if fraction.len() == 3 => format!("{text}0"),
                _ => text,
            }
        };
        let rule = |r: &Option<Rule>| match r {
            None => String::new(),
            Some(Rule::Drop { percent }) => format!(" {}%", percent.normalize()),
            Some(Rule::Below { amount: a }) => format!(" below {}", amount(a)),
            Some(Rule::Restock) => " restock".to_owned(),
        };
        Some(match command {
            Command::Watch { url, rule: r } => format!("watch {}{}", url.as_str(), rule(r)),
            Command::Search { query, rule: r } => format!("watch {query}{}", rule(r)),
            Command::List => "list".to_owned(),
            Command::Help => "help".to_owned(),
            Command::History(n) => format!("history {n}"),
            Command::Unwatch(UnwatchTarget::All) => "unwatch all".to_owned(),
            Command::Unwatch(UnwatchTarget::Index(n)) => format!("unwatch {n}"),
            Command::Unwatch(UnwatchTarget::Url(u)) => format!("unwatch {}", u.as_str()),
            Command::Change { index, rule: r } => {
                format!("watch {index}{}", rule(&Some(r.clone())))
            }
            Command::Hold { target, on_hold } => {
                let verb = if *on_hold { "pause" } else { "resume" };
                match target {
                    HoldTarget::All => format!("{verb} all"),
                    HoldTarget::Index(n) => format!("{verb} {n}"),
                }
            }
            Command::Unknown { .. } => return None,
        })
    }

    /// The command written back in French, as a French speaker would type it.
    fn typed_fr(command: &Command) -> Option<String> {
        let english = typed(command)?;
        Some(match command {
            Command::Watch { rule, .. } | Command::Search { rule, .. } => {
                let text = english.replacen("watch ", "surveiller ", 1);
                match rule {
                    Some(Rule::Below { .. }) => text.replacen(" below ", " seuil ", 1),
                    Some(Rule::Restock) => text.replacen(" restock", " retour en stock", 1),
                    _ => text,
                }
            }
            Command::List => "mes suivis".to_owned(),
            Command::Help => "Aide".to_owned(),
            Command::History(n) => format!("historique {n}"),
            Command::Unwatch(UnwatchTarget::All) => "ne plus suivre tout".to_owned(),
            Command::Unwatch(_) => english.replacen("unwatch ", "arrêter ", 1),
            Command::Change { rule, .. } => {
                let text = english.replacen("watch ", "surveiller ", 1);
                match rule {
                    Rule::Below { .. } => text.replacen(" below ", " sous ", 1),
                    _ => text,
                }
            }
            Command::Hold { on_hold: false, .. } => english.replacen("resume ", "reprendre ", 1),
            Command::Hold { .. } => english,
            Command::Unknown { .. } => return None,
        })
    }

    proptest::proptest! {
        /// Whatever arrives, parsing ends without a panic, an accepted link is stable,
        /// and an accepted command typed back the way a user would means the same.
        #[test]
        fn any_text_parses_and_what_it_accepts_reads_back(text in any_text()) {
            assert_sane(&text);
            if let Ok(command) = p(&text) {
                if let Some(again) = typed(&command) {
                    proptest::prop_assert_eq!(p(&again), Ok(command.clone()), "typed back as {:?}", again);
                }
                if let Some(again) = typed_fr(&command) {
                    proptest::prop_assert_eq!(p(&again), Ok(command), "typed back in French as {:?}", again);
                }
            }
        }

        /// Commands built from their parts read back as built.
        #[test]
        fn commands_read_back_as_built(
            index in 1usize..100_000,
            path in "[a-z0-9]{1,12}(/[a-z0-9]{1,12}){0,3}",
            percent in 1u32..=95,
            hundredths in 0u32..100,
            cents in 1u64..100_000_000,
            which in 0..7u8,
        ) {
            let u = url(&format!("https://shop.example/{path}"));
            let percent = (Decimal::from(percent) + Decimal::new(hundredths.into(), 2))
                .min(Decimal::from(95))
                .normalize();
            let command = match which {
                0 => Command::Watch { url: u, rule: None },
                1 => Command::Watch { url: u, rule: Some(Rule::Drop { percent }) },
                2 => Command::Watch {
                    url: u,
                    rule: Some(Rule::Below { amount: Decimal::new(cents as i64, 2).normalize() }),
                },
                3 => Command::Unwatch(UnwatchTarget::Index(index)),
                4 => Command::Unwatch(UnwatchTarget::Url(u)),
                5 => Command::Watch { url: u, rule: Some(Rule::Restock) },
                _ => Command::History(index),
            };
            let text = typed(&command).unwrap();
            proptest::prop_assert_eq!(p(&text), Ok(command.clone()), "{:?}", text);
            let french = typed_fr(&command).unwrap();
            proptest::prop_assert_eq!(
                parse(&french, &limits(), Some("fr-FR")),
                Ok(command),
                "{:?}",
                french
            );
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
            CommandError::Url(UrlError::TooLong { len: 3, max: 2 }).to_string(),
            "URL is 3 characters long, more than the 2 allowed"
        );
    }
}
