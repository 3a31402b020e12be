//! Price strings as shops write them (`1.234,56 €`, `CHF 1'049.95`, `Save $200! Now $799`)
//! into an exact decimal amount and an ISO 4217 currency. Pure: no I/O, no floats.
//!
//! Written by hand: the locale crates format numbers but none reads the mixed, decorated
//! strings shops print (savings, ranges, "from", "was/now", signs before or after).
//!
//! The rules, in order:
//! 1. Numbers are found with their grouping: `.` `,` `'` `’` and single spaces between digit
//!    groups; `12,-` means 12. Full-width digits count as digits. A separator, one space and
//!    exactly two digits end a number as its cents (`36. 24`, `1.837, 32 €`), unless a list
//!    goes on (`36, 38, 40`); a space before three digits still groups (`1 299,00`). The euro
//!    sign between the euros and two digits is the decimal comma (`19€99`, `35€ 99`), unless
//!    the digits are followed by `%`, a sign or more digits (`35€ 20%`).
//! 2. Numbers that are not the price are set aside: percentages, counts in parentheses,
//!    dates (`15.08.2017`, `08/15/2017`, `2017-08-15`, `July, 2004`, `15 août 2017`),
//!    quantities (an amount without a sign followed by a unit: `2 Litre`, `500 ml`, `128 GB`),
//!    thresholds (`$49+`, "orders over", "spend"), amounts right after a saving word ("save",
//!    "spare", "économisez", …), and old prices ("was", "statt", …) when another amount
//!    exists. After the last "now" word the next amount wins ("Buy Now" and the like are
//!    buttons, not markers); otherwise the first amount next to a currency sign, otherwise
//!    the first amount. A range therefore gives its first price.
//! 3. The currency comes from the sign next to the chosen amount (or any sign in the text).
//!    An unambiguous sign wins over every hint; an ambiguous one (`$`, `kr`, `¥`) is resolved
//!    by the hints in order (priceCurrency, locale, host), and `$`/`kr` without a fitting hint
//!    stay ambiguous. Without any sign, the hints give the currency.
//! 4. Separators: when both `.` and `,` appear, the last is the decimal point. A lone
//!    separator followed by exactly three digits groups thousands (`1.299 kr` is 1299) unless
//!    the currency has three minor digits (`KWD 1.250`); any other lone separator is the
//!    decimal point (`149,99`). A repeated separator always groups (`1,23,456`).
//! 5. Zero, negative amounts, "2 for $5" offers and scientific notation are not prices. A
//!    minus is written against what it negates (`-$5.00`, `$-5.00`, `−5,00 €`, `- 5 €`); a
//!    hyphen set apart by a space from the sign that follows is a bullet (`- $44.99`).

use rust_decimal::Decimal;

use super::currency::{for_locale, for_tld, Currency, Sign, SIGNS};

/// Longest text looked at; a price string is short, and this bounds the work on hostile input.
pub const MAX_INPUT_CHARS: usize = 512;

/// What the page says about the currency, from the most to the least trustworthy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hints<'a> {
    /// `priceCurrency` or another explicit code on the page.
    pub currency: Option<Currency>,
    /// The page's or the site's locale (`de-DE`).
    pub locale: Option<&'a str>,
    /// The product URL's host, for its top-level domain (`shop.example.com.au`).
    pub host: Option<&'a str>,
}

impl<'a> Hints<'a> {
    /// One hint as an operator or a fixture writes it: an ISO code (`EUR`), a top-level
    /// domain or host (`.com.au`), or a locale (`de-DE`).
    pub fn from_text(hint: &'a str) -> Hints<'a> {
        let mut h = Hints::default();
        if hint.starts_with('.') || hint.contains('.') {
            h.host = Some(hint);
        } else if hint.len() == 3 && hint.chars().all(|c| c.is_ascii_uppercase()) {
            h.currency = Currency::parse(hint);
        } else if !hint.is_empty() {
            h.locale = Some(hint);
        }
        h
    }
}

/// What could be said about the currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CurrencyFound {
    Known(Currency),
    /// A sign several currencies share, with no hint to choose: the candidates.
    Ambiguous(Vec<Currency>),
    /// No sign and no hint.
    Unstated,
}

/// A parsed price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPrice {
    /// Positive, with the precision the text gave (`12.00` stays `12.00`).
    pub amount: Decimal,
    pub currency: CurrencyFound,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("no amount in the text")]
    NoAmount,
    #[error("the amount is zero or negative, which is not a price")]
    NotPositive,
    #[error("a multi-buy offer (\"2 for 5\") is not a unit price")]
    MultiBuy,
    #[error("the amount is not a plain decimal number: {0}")]
    Malformed(String),
}

/// Parses one price string. See the module documentation for the rules.
pub fn parse_price(text: &str, hints: &Hints<'_>) -> Result<ParsedPrice, PriceError> {
    let chars = normalise(text);
    let signs = find_signs(&chars);
    let numbers = find_numbers(&chars);
    if numbers.is_empty() {
        return Err(PriceError::NoAmount);
    }
    if is_multi_buy(&chars, &numbers) {
        return Err(PriceError::MultiBuy);
    }
    let chosen = choose(&chars, &numbers, &signs).ok_or(PriceError::NoAmount)?;
    if let Some(n) = numbers.iter().find(|n| n.scientific) {
        return Err(PriceError::Malformed(n.raw.clone()));
    }
    if is_negative(&chars, chosen, &signs, &numbers) {
        return Err(PriceError::NotPositive);
    }
    let sign = adjacent_sign(chosen, &signs, &numbers).or_else(|| signs.first());
    let currency = resolve_currency(sign.map(|s| s.sign), hints);
    let minor_digits = match &currency {
        CurrencyFound::Known(c) => Some(c.minor_digits()),
        _ => None,
    };
    let mut amount = to_decimal(chosen, minor_digits)?;
    let mut currency = currency;
    if chosen.pence {
        amount = Decimal::new(
            amount
                .trunc()
                .try_into()
                .map_err(|_| PriceError::Malformed(chosen.raw.clone()))?,
            2,
        );
        currency = CurrencyFound::Known(Currency::parse("GBP").ok_or(PriceError::NoAmount)?);
    }
    if amount <= Decimal::ZERO {
        return Err(PriceError::NotPositive);
    }
    Ok(ParsedPrice { amount, currency })
}

/// Full-width digits and punctuation to ASCII, every kind of space to one space.
fn normalise(text: &str) -> Vec<char> {
    text.chars()
        .take(MAX_INPUT_CHARS)
        .map(|c| match c {
            '\u{FF10}'..='\u{FF19}' => char::from(b'0' + (c as u32 - 0xFF10) as u8),
            '\u{FF0C}' => ',',
            '\u{FF0E}' => '.',
            '\u{FF04}' => '$',
            c if c.is_whitespace() || matches!(c, '\u{00A0}' | '\u{202F}' | '\u{2007}') => ' ',
            c => c,
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct SignAt {
    start: usize,
    end: usize,
    sign: Sign,
}

fn find_signs(chars: &[char]) -> Vec<SignAt> {
    let mut found = Vec::new();
    let mut i = 0;
    'outer: while i < chars.len() {
        for (text, sign) in SIGNS {
            let len = text.chars().count();
            if i + len <= chars.len() && chars[i..i + len].iter().copied().eq(text.chars()) {
                // A sign made of letters must stand alone: `Rs` in "Rs. 100", not in "Mrs".
                let alphabetic =
                    text.chars().next().is_some_and(char::is_alphabetic) && text.is_ascii();
                let before = i.checked_sub(1).map(|j| chars[j]);
                let after = chars.get(i + len).copied();
                if alphabetic
                    && (before.is_some_and(char::is_alphabetic)
                        || after.is_some_and(char::is_alphabetic))
                {
                    continue;
                }
                found.push(SignAt {
                    start: i,
                    end: i + len,
                    sign: *sign,
                });
                i += len;
                continue 'outer;
            }
        }
        // ISO codes in capitals (`EUR 12,50`, `12.50USD`), alone as a word.
        if i + 3 <= chars.len()
            && chars[i..i + 3].iter().all(char::is_ascii_uppercase)
            && !i.checked_sub(1).is_some_and(|j| chars[j].is_alphabetic())
            && !chars.get(i + 3).is_some_and(|c| c.is_alphabetic())
        {
            let code: String = chars[i..i + 3].iter().collect();
            if let Some(c) = Currency::known(&code) {
                found.push(SignAt {
                    start: i,
                    end: i + 3,
                    sign: Sign::Exact(leak_code(c)),
                });
                i += 3;
                continue;
            }
        }
        i += 1;
    }
    found
}

/// The static code string for a known currency (signs carry `&'static str`).
fn leak_code(c: Currency) -> &'static str {
    // Every known code is in the static table, so this always finds it.
    super::currency::static_code(c).unwrap_or("XXX")
}

#[derive(Debug, Clone)]
struct NumberAt {
    start: usize,
    end: usize,
    /// Digits and separators as written (spaces and apostrophes included).
    raw: String,
    /// `12,-`: a whole amount.
    whole: bool,
    /// `99p`: hundredths of a pound.
    pence: bool,
    /// Followed by an exponent (`1e3`).
    scientific: bool,
}

fn is_group_char(c: char) -> bool {
    matches!(c, '.' | ',' | '\'' | '’')
}

fn find_numbers(chars: &[char]) -> Vec<NumberAt> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let leading_point = matches!(c, '.' | ',')
            && chars.get(i + 1).is_some_and(char::is_ascii_digit)
            && !i
                .checked_sub(1)
                .is_some_and(|j| chars[j].is_ascii_digit() || chars[j].is_alphabetic());
        if !c.is_ascii_digit() && !leading_point {
            i += 1;
            continue;
        }
        let start = i;
        let mut raw = String::new();
        if leading_point {
            raw.push('0');
        }
        while i < chars.len() {
            let c = chars[i];
            if c.is_ascii_digit()
                || (is_group_char(c) && chars.get(i + 1).is_some_and(char::is_ascii_digit))
            {
                raw.push(c);
                i += 1;
            } else if c == ' ' && is_space_group(chars, i) {
                raw.push(' ');
                i += 1;
            } else if let Some(len) = spaced_decimal(chars, i) {
                // `36. 24`: the cents, after a stray space, end the amount.
                raw.push(c);
                raw.extend(&chars[i + 2..i + len]);
                i += len;
                break;
            } else {
                break;
            }
        }
        let mut whole = false;
        let mut pence = false;
        // `12,-`, `12.–`, Swedish `299:-`, Indian `1,499/-`: no minor part.
        if matches!(chars.get(i), Some(',' | '.' | ':' | '/'))
            && matches!(chars.get(i + 1), Some('-' | '–' | '—'))
        {
            whole = true;
            i += 2;
        } else if let Some(len) = euro_cents(chars, i) {
            // French retail writes `19€99` (or `35€ 99`): the sign stands for the decimal
            // comma.
            raw.push(',');
            raw.extend(&chars[i + len - 2..i + len]);
            i += len;
        } else if chars.get(i) == Some(&'p')
            && !chars.get(i + 1).is_some_and(|c| c.is_alphanumeric())
            && !raw.contains(['.', ',', ' '])
        {
            // British `99p`: pence.
            pence = true;
            i += 1;
        }
        let scientific = matches!(chars.get(i), Some('e' | 'E'))
            && chars
                .get(i + 1)
                .is_some_and(|c| c.is_ascii_digit() || matches!(c, '+' | '-'));
        out.push(NumberAt {
            start,
            end: i,
            raw,
            whole,
            pence,
            scientific,
        });
    }
    out
}

/// `36. 24`, `1.837, 32`: a decimal separator at `at`, one space, then exactly two digits
/// that end the number. The length taken (separator, space, digits), or `None`. A list
/// (`36, 38, 40`) is not cents: its two digits are followed by another separator and digits.
fn spaced_decimal(chars: &[char], at: usize) -> Option<usize> {
    let digit = |k: usize| chars.get(k).is_some_and(char::is_ascii_digit);
    let fits = matches!(chars[at], '.' | ',')
        && chars.get(at + 1) == Some(&' ')
        && digit(at + 2)
        && digit(at + 3)
        && !digit(at + 4);
    let list_goes_on = matches!(chars.get(at + 4), Some('.' | ','))
        && chars[(at + 5).min(chars.len())..]
            .iter()
            .find(|c| **c != ' ')
            .is_some_and(char::is_ascii_digit);
    (fits && !list_goes_on).then_some(4)
}

/// `19€99` or `35€ 99` at `at`: the euro sign used as the decimal comma, then exactly two
/// digits. The length taken (sign, optional space, digits), or `None`. With a space the
/// digits must end the amount: `35€ 20%` and `10€ 20€` are two amounts, not cents.
fn euro_cents(chars: &[char], at: usize) -> Option<usize> {
    if chars.get(at) != Some(&'€') {
        return None;
    }
    let digit = |k: usize| chars.get(k).is_some_and(char::is_ascii_digit);
    if digit(at + 1) && digit(at + 2) && !digit(at + 3) {
        return Some(3);
    }
    let next = chars[(at + 4).min(chars.len())..]
        .iter()
        .find(|c| **c != ' ')
        .copied();
    let ends = !next
        .is_some_and(|c| c.is_ascii_digit() || is_group_char(c) || c == '%' || is_currency_char(c));
    (chars.get(at + 1) == Some(&' ') && digit(at + 2) && digit(at + 3) && !digit(at + 4) && ends)
        .then_some(4)
}

/// A currency symbol as [`SIGNS`] writes them, to tell `10€ 20€` from French cents.
fn is_currency_char(c: char) -> bool {
    SIGNS
        .iter()
        .any(|(text, _)| !text.is_ascii() && text.chars().count() == 1 && text.starts_with(c))
        || c == '$'
}

/// A space inside a number groups thousands only between one to three digits and exactly
/// three (`1 234,56`), so "2 for 5" or "Size 42 299" stay apart as far as possible.
fn is_space_group(chars: &[char], at: usize) -> bool {
    let before = chars[..at]
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .count();
    let after = chars[at + 1..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    before >= 1 && after == 3
}

/// Lower-cased text of `chars[from..to]`, one char per char so indexes stay aligned.
fn lower_window(chars: &[char], from: usize, to: usize) -> String {
    chars[from.min(chars.len())..to.min(chars.len()).max(from.min(chars.len()))]
        .iter()
        .map(|c| c.to_lowercase().next().unwrap_or(*c))
        .collect()
}

const SAVING_WORDS: &[&str] = &[
    "save",
    "saving",
    "spare",
    "sparen",
    "sparst",
    "ersparnis",
    "économisez",
    "economisez",
    "économie",
    "ahorra",
    "ahorro",
    "risparmi",
    "bespaar",
    "oszczędzasz",
    "spar ",
    "spara ",
    "sparer",
    "økonomi",
    "скидка",
    "экономия",
    "réduction",
    "rabatt",
    "korting",
    "sconto",
    "descuento",
    "desconto",
];
/// Words after an amount that make it a saving (`5 € de réduction`).
const SAVING_AFTER_WORDS: &[&str] = &[
    "de réduction",
    "off",
    "de descuento",
    "di sconto",
    "korting",
    "rabatt",
];
const OLD_PRICE_WORDS: &[&str] = &[
    "was",
    "statt",
    "uvp",
    "rrp",
    "list price",
    "avant",
    "au lieu de",
    "antes",
    "prima",
    "vorher",
    "before",
    "tidigare",
    "før",
    "przed",
    "consigliato",
    "adviesprijs",
    "veil. pris",
    "veil.pris",
    "m.r.p",
    "mrp",
    "参考価格",
    "정가",
    "原价",
    "vechi",
    "lowest price",
    "niedrigster preis",
    "prix le plus bas",
];
const NOW_WORDS: &[&str] = &[
    "now",
    "jetzt",
    "nur",
    "maintenant",
    "ahora",
    "ora",
    "nu ",
    "teraz",
    "nyt",
    "nå",
    "agora",
    "por ",
    "voor ",
    "nou ",
    "现价",
    "할인가",
];
/// Between two amounts, these make the pair a range: the first is the price.
const RANGE_WORDS: &[&str] = &["-", "–", "—", "~", "〜", "～", "to", "bis", "à", "a", "až"];

/// The text between the end of the previous amount (or the start) and `n`.
fn before_window(chars: &[char], numbers: &[NumberAt], n: &NumberAt) -> String {
    let from = numbers
        .iter()
        .filter(|m| m.end <= n.start)
        .map(|m| m.end)
        .max()
        .unwrap_or(0)
        .max(n.start.saturating_sub(24));
    lower_window(chars, from, n.start)
}

/// The text between `n` and the next amount (or the end).
fn after_window(chars: &[char], numbers: &[NumberAt], n: &NumberAt) -> String {
    let to = numbers
        .iter()
        .filter(|m| m.start >= n.end)
        .map(|m| m.start)
        .min()
        .unwrap_or(chars.len())
        .min(n.end + 24);
    lower_window(chars, n.end, to)
}

/// The amount the text means as the price.
fn choose<'a>(chars: &[char], numbers: &'a [NumberAt], signs: &[SignAt]) -> Option<&'a NumberAt> {
    let dates = date_spans(chars);
    let eligible: Vec<&NumberAt> = numbers
        .iter()
        .filter(|n| {
            let before = before_window(chars, numbers, n);
            let after = after_window(chars, numbers, n);
            !is_percentage(chars, n)
                && !is_count(chars, n)
                && !is_instalment(chars, numbers, n)
                && !dates.iter().any(|(s, e)| *s <= n.start && n.end <= *e)
                && !is_quantity(chars, n, signs, numbers)
                && !is_threshold(chars, n, &before)
                && !SAVING_WORDS.iter().any(|w| before.contains(w))
                && !SAVING_AFTER_WORDS.iter().any(|w| {
                    after
                        .trim_start_matches(|c: char| !c.is_alphabetic())
                        .starts_with(w)
                })
        })
        .collect();
    let text = lower_window(chars, 0, chars.len());
    // After the last "now" word, the next amount is the current price; "Buy Now" is a
    // button, not a marker.
    let now_at = NOW_WORDS
        .iter()
        .flat_map(|w| find_words(&text, w))
        .filter(|at| !is_button(&text, *at))
        .max();
    if let Some(at) = now_at {
        if let Some(n) = eligible.iter().find(|n| n.start >= at) {
            return Some(n);
        }
    }
    let current: Vec<&NumberAt> = eligible
        .iter()
        .copied()
        .filter(|n| {
            let before = before_window(chars, numbers, n);
            !OLD_PRICE_WORDS.iter().any(|w| before.contains(w))
        })
        .collect();
    let pool = if current.is_empty() {
        &eligible
    } else {
        &current
    };
    let mut at = pool
        .iter()
        .position(|n| adjacent_sign(n, signs, numbers).is_some())
        .unwrap_or(0);
    // `199 – 299 kr`: the sign sits on the second amount of a range; the first is the price.
    while at > 0 && is_range_gap(chars, signs, pool[at - 1], pool[at]) {
        at -= 1;
    }
    pool.get(at).copied()
}

fn is_range_gap(chars: &[char], signs: &[SignAt], a: &NumberAt, b: &NumberAt) -> bool {
    // Signs between the two amounts do not matter (`$10 – $20`).
    let gap: String = (a.end..b.start)
        .filter(|i| !signs.iter().any(|s| s.start <= *i && *i < s.end))
        .map(|i| chars[i].to_lowercase().next().unwrap_or(chars[i]))
        .collect();
    let gap = gap.trim();
    RANGE_WORDS.contains(&gap)
}

/// `12x de R$ 10,83`: the count of an instalment plan and the instalment itself.
fn is_instalment(chars: &[char], numbers: &[NumberAt], n: &NumberAt) -> bool {
    let times = |m: &NumberAt| matches!(chars.get(m.end), Some('x' | 'X' | '×'));
    if times(n) {
        return true;
    }
    numbers
        .iter()
        .filter(|m| m.end <= n.start && n.start - m.end <= 10)
        .any(times)
}

/// The char indexes where `word` stands at the start of a word in `text` (which
/// `lower_window` built one char per char, so the indexes are valid in `chars` too).
fn find_words(text: &str, word: &str) -> Vec<usize> {
    let chars: Vec<char> = text.chars().collect();
    let w: Vec<char> = word.chars().collect();
    (0..chars.len().saturating_sub(w.len() - 1))
        .filter(|&i| {
            chars[i..].starts_with(&w)
                && !i.checked_sub(1).is_some_and(|j| chars[j].is_alphabetic())
                && !chars
                    .get(i + w.len())
                    .is_some_and(|c| c.is_alphabetic() && !word.ends_with(' '))
        })
        .collect()
}

/// Verbs that make a following "now" a button label (`Buy Now`), not a price marker.
const BUTTON_VERBS: &[&str] = &["buy ", "shop ", "order ", "book ", "get it "];

fn is_button(text: &str, at: usize) -> bool {
    let before: String = text.chars().take(at).collect();
    BUTTON_VERBS.iter().any(|v| before.ends_with(v))
}

/// Words after an amount that make it a quantity (`2 Litre`, `500 ml`, `128 GB`).
const UNIT_WORDS: &[&str] = &[
    "l", "litre", "litres", "liter", "liters", "ltr", "ml", "cl", "dl", "kg", "g", "gr", "mg",
    "lb", "lbs", "oz", "fl", "gb", "tb", "mb", "cm", "mm", "m", "inch", "inches", "pack", "pcs",
    "pieces", "piece", "stück", "count", "w", "mah", "v", "hz",
];

/// An amount with no currency sign beside it, followed by a unit of measure.
fn is_quantity(chars: &[char], n: &NumberAt, signs: &[SignAt], numbers: &[NumberAt]) -> bool {
    if adjacent_sign(n, signs, numbers).is_some() {
        return false;
    }
    let rest = &chars[n.end..];
    let from = rest.iter().take_while(|c| **c == ' ').count();
    let word: String = rest[from..]
        .iter()
        .take_while(|c| c.is_alphabetic())
        .map(|c| c.to_lowercase().next().unwrap_or(*c))
        .collect();
    UNIT_WORDS.contains(&word.as_str())
}

/// Words before an amount that make it a threshold (`Free shipping on orders over $35`).
const THRESHOLD_WORDS: &[&str] = &[
    "orders over",
    "orders above",
    "orders of",
    "orders from",
    "order over",
    "order above",
    "order of",
    "spend",
    "minimum order",
    "bestellwert",
];

/// `$49+` or `orders over $35`: the amount an offer starts at, not the price.
fn is_threshold(chars: &[char], n: &NumberAt, before: &str) -> bool {
    chars.get(n.end) == Some(&'+') && !chars.get(n.end + 1).is_some_and(char::is_ascii_digit)
        || THRESHOLD_WORDS.iter().any(|w| before.contains(w))
}

/// Month names (English, French, German, Spanish, Italian, Dutch; full and short), lower-case.
const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "janvier",
    "février",
    "fevrier",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "aout",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
    "decembre",
    "januar",
    "februar",
    "märz",
    "juni",
    "juli",
    "oktober",
    "dezember",
    "enero",
    "febrero",
    "marzo",
    "abril",
    "mayo",
    "junio",
    "julio",
    "agosto",
    "septiembre",
    "octubre",
    "noviembre",
    "diciembre",
    "gennaio",
    "febbraio",
    "aprile",
    "maggio",
    "giugno",
    "luglio",
    "settembre",
    "ottobre",
    "dicembre",
    "januari",
    "februari",
    "maart",
    "mei",
    "augustus",
];

/// The spans of `chars` that are dates: `15.08.2017`, `08/15/2017`, `2017-08-15`,
/// `July, 2004`, `July 4, 2004`, `15 août 2017`. Amounts inside them are not prices.
fn date_spans(chars: &[char]) -> Vec<(usize, usize)> {
    let run = |at: usize| {
        chars[at.min(chars.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let value = |at: usize, len: usize| {
        chars[at..at + len]
            .iter()
            .fold(0u32, |v, c| v * 10 + c.to_digit(10).unwrap_or(0))
    };
    let year = |at: usize, len: usize| len == 4 && (1900..2100).contains(&value(at, len));
    let mut spans = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = !i.checked_sub(1).is_some_and(|j| chars[j].is_alphanumeric());
        if !starts_word {
            i += 1;
            continue;
        }
        // Numeric: three digit groups joined by the same `.`, `/` or `-`.
        let a = run(i);
        if a > 0 {
            let sep = chars.get(i + a).copied();
            let b_at = i + a + 1;
            let b = run(b_at);
            let c_at = b_at + b + 1;
            let same = matches!(sep, Some('.' | '/' | '-')) && chars.get(b_at + b).copied() == sep;
            let c = if same { run(c_at) } else { 0 };
            // The third group ends the date: no letter, and no separator and digits after.
            let goes_on = chars.get(c_at + c).is_some_and(|ch| ch.is_alphanumeric())
                || (matches!(chars.get(c_at + c), Some('.' | ',' | '/' | '-'))
                    && chars.get(c_at + c + 1).is_some_and(char::is_ascii_digit));
            let ends = !goes_on;
            if same && (1..=2).contains(&b) && ends {
                let (x, y) = (value(i, a), value(b_at, b));
                let day_month = (1..=2).contains(&a)
                    && matches!(c, 2 | 4)
                    && x >= 1
                    && y >= 1
                    && ((x <= 31 && y <= 12) || (x <= 12 && y <= 31));
                let iso = year(i, a)
                    && (1..=2).contains(&c)
                    && (1..=12).contains(&y)
                    && (1..=31).contains(&value(c_at, c));
                if day_month || iso {
                    spans.push((i, c_at + c));
                    i = c_at + c;
                    continue;
                }
            }
            i += a.max(1);
            continue;
        }
        // A month name, with a day before (`15 août 2017`) or after (`July 4, 2004`) and a year.
        let word_len = chars[i..].iter().take_while(|c| c.is_alphabetic()).count();
        let word: String = chars[i..i + word_len]
            .iter()
            .map(|c| c.to_lowercase().next().unwrap_or(*c))
            .collect();
        if word_len > 0 && MONTHS.contains(&word.as_str()) {
            let mut start = i;
            // `15 août`, `15. August`.
            let mut k = i;
            while k > 0 && matches!(chars[k - 1], ' ' | '.') {
                k -= 1;
            }
            let day_len = chars[..k]
                .iter()
                .rev()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if (1..=2).contains(&day_len) && k > i.saturating_sub(4) {
                start = k - day_len;
            }
            let mut j = i + word_len;
            let skip = |j: &mut usize| {
                while chars.get(*j).is_some_and(|c| matches!(c, ' ' | ',' | '.')) {
                    *j += 1;
                }
            };
            skip(&mut j);
            let day = run(j);
            if (1..=2).contains(&day) {
                j += day;
                skip(&mut j);
            }
            let y = run(j);
            if year(j, y) && !chars.get(j + y).is_some_and(|c| c.is_alphanumeric()) {
                spans.push((start, j + y));
                i = j + y;
                continue;
            }
        }
        i += word_len.max(1);
    }
    spans
}

fn is_percentage(chars: &[char], n: &NumberAt) -> bool {
    chars[n.end..]
        .iter()
        .find(|c| **c != ' ')
        .is_some_and(|c| *c == '%')
}

/// `(8)` or `(8 offers)`: a count, not an amount.
fn is_count(chars: &[char], n: &NumberAt) -> bool {
    let before = chars[..n.start].iter().rev().find(|c| **c != ' ');
    before == Some(&'(') && !n.raw.contains(['.', ','])
}

/// The sign of `n`: right before it (a space allowed) or right after it, unless the sign
/// after it starts the next amount (`Pack of 2 $18.99`). When both sides have one
/// (`$49.99 CAD`), the unambiguous one.
fn adjacent_sign<'s>(
    n: &NumberAt,
    signs: &'s [SignAt],
    numbers: &[NumberAt],
) -> Option<&'s SignAt> {
    let before = signs
        .iter()
        .find(|s| s.end <= n.start && n.start - s.end <= 1);
    let after = signs.iter().find(|s| {
        s.start >= n.end
            && s.start - n.end <= 1
            && !numbers
                .iter()
                .any(|m| m.start >= s.end && m.start - s.end <= 1)
    });
    match (before, after) {
        (Some(b), Some(a)) if !matches!(a.sign, Sign::Ambiguous { .. }) => {
            if matches!(b.sign, Sign::Ambiguous { .. }) {
                Some(a)
            } else {
                Some(b)
            }
        }
        (Some(b), _) => Some(b),
        (None, a) => a,
    }
}

/// `-$5.00`, `- 5 €`: a minus right before the amount or its sign, not a range dash.
fn is_negative(chars: &[char], n: &NumberAt, signs: &[SignAt], numbers: &[NumberAt]) -> bool {
    // `$-5.00`: the minus between the sign and the digits.
    if n.start > 0
        && matches!(chars[n.start - 1], '-' | '−')
        && signs.iter().any(|s| s.end == n.start - 1)
    {
        return true;
    }
    let mut at = n.start;
    let sign = signs.iter().find(|s| s.end <= at && at - s.end <= 1);
    if let Some(s) = sign {
        at = s.start;
    }
    let mut j = at;
    while j > 0 && chars[j - 1] == ' ' {
        j -= 1;
    }
    // `- $44.99`: a hyphen set apart from the sign it precedes is a bullet; a minus is
    // written against what it negates (`-$5.00`, `−5,00 €`).
    if sign.is_some() && j < at && j > 0 && chars[j - 1] == '-' {
        return false;
    }
    // The dash of a previous `200,-` belongs to that amount.
    if j == 0
        || !matches!(chars[j - 1], '-' | '−')
        || numbers.iter().any(|m| m.start < j && j <= m.end)
    {
        return false;
    }
    // A dash after another amount is a range: `$10 - $20`.
    !chars[..j - 1]
        .iter()
        .rev()
        .find(|c| **c != ' ')
        .is_some_and(|c| c.is_ascii_digit() || signs.iter().any(|s| s.end == j - 1))
}

/// `2 for $5`, `3 für 10 €`, `2 pour 5 €`.
fn is_multi_buy(chars: &[char], numbers: &[NumberAt]) -> bool {
    numbers.iter().any(|n| {
        if n.raw.contains(['.', ',', ' ']) {
            return false;
        }
        let rest = lower_window(chars, n.end, n.end + 7);
        let lead = lower_window(chars, n.start.saturating_sub(5), n.start);
        if lead.ends_with("buy ") && rest.trim_start().starts_with("get") {
            return true;
        }
        ["for ", "für ", "pour ", "per "]
            .iter()
            .any(|w| rest.trim_start().starts_with(w))
            && numbers.iter().any(|m| m.start > n.end)
    })
}

fn resolve_currency(sign: Option<Sign>, hints: &Hints<'_>) -> CurrencyFound {
    let hinted = [
        hints.currency,
        hints.locale.and_then(for_locale),
        hints.host.and_then(for_tld),
    ];
    match sign {
        Some(Sign::Exact(code)) => Currency::parse(code)
            .map(CurrencyFound::Known)
            .unwrap_or(CurrencyFound::Unstated),
        Some(Sign::Ambiguous {
            candidates,
            defaulted,
        }) => {
            let cands: Vec<Currency> = candidates
                .iter()
                .filter_map(|c| Currency::parse(c))
                .collect();
            if let Some(c) = hinted.iter().flatten().find(|h| cands.contains(h)) {
                CurrencyFound::Known(*c)
            } else if defaulted {
                CurrencyFound::Known(cands[0])
            } else {
                CurrencyFound::Ambiguous(cands)
            }
        }
        None => hinted
            .iter()
            .flatten()
            .next()
            .map(|c| CurrencyFound::Known(*c))
            .unwrap_or(CurrencyFound::Unstated),
    }
}

/// Applies the separator rules (module documentation, rule 4).
fn to_decimal(n: &NumberAt, minor_digits: Option<u32>) -> Result<Decimal, PriceError> {
    let cleaned: String = n
        .raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '\'' | '’'))
        .collect();
    let digits_only = || {
        cleaned
            .chars()
            .filter(char::is_ascii_digit)
            .collect::<String>()
    };
    let text = if n.whole {
        digits_only()
    } else {
        let dots = cleaned.matches('.').count();
        let commas = cleaned.matches(',').count();
        let decimal_sep = match (dots, commas) {
            (0, 0) => None,
            (_, 0) | (0, _) => {
                let sep = if dots > 0 { '.' } else { ',' };
                let (before, after) = cleaned.rsplit_once(sep).unwrap_or((&cleaned, ""));
                let three_minor = minor_digits == Some(3);
                // A repeated separator, or a lone one before exactly three digits
                // (unless the currency has three minor digits), groups thousands.
                let groups =
                    after.len() == 3 && !three_minor && !before.trim_start_matches('0').is_empty();
                if dots + commas > 1 || groups {
                    None
                } else {
                    Some(sep)
                }
            }
            _ => cleaned.chars().rev().find(|c| matches!(c, '.' | ',')),
        };
        match decimal_sep {
            None => digits_only(),
            Some(sep) => {
                let (int, frac) = cleaned.rsplit_once(sep).unwrap_or((&cleaned, ""));
                let int: String = int.chars().filter(char::is_ascii_digit).collect();
                format!("{}.{}", if int.is_empty() { "0" } else { &int }, frac)
            }
        }
    };
    text.parse::<Decimal>()
        .map_err(|_| PriceError::Malformed(n.raw.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> (String, String) {
        p_hint(text, Hints::default())
    }

    fn p_hint(text: &str, hints: Hints<'_>) -> (String, String) {
        match parse_price(text, &hints) {
            Ok(ParsedPrice { amount, currency }) => (
                amount.to_string(),
                match currency {
                    CurrencyFound::Known(c) => c.to_string(),
                    CurrencyFound::Ambiguous(_) => "AMBIGUOUS".into(),
                    CurrencyFound::Unstated => "NONE".into(),
                },
            ),
            Err(_) => ("ERROR".into(), "ERROR".into()),
        }
    }

    #[test]
    fn the_issue_examples() {
        let au = Hints {
            host: Some("shop.example.com.au"),
            ..Default::default()
        };
        let cases: &[(&str, Hints, &str, &str)] = &[
            ("$1,234.56", au, "1234.56", "AUD"),
            ("$1,234.56", Hints::default(), "1234.56", "AMBIGUOUS"),
            ("1.234,56 €", Hints::default(), "1234.56", "EUR"),
            ("1 234,56 zł", Hints::default(), "1234.56", "PLN"),
            (
                "1\u{202F}234,56\u{00A0}zł",
                Hints::default(),
                "1234.56",
                "PLN",
            ),
            ("1\u{00A0}234,56 zł", Hints::default(), "1234.56", "PLN"),
            ("CHF 1'049.95", Hints::default(), "1049.95", "CHF"),
            ("¥1,234", Hints::default(), "1234", "JPY"),
            ("12,- €", Hints::default(), "12", "EUR"),
            ("€ 0,99", Hints::default(), "0.99", "EUR"),
            ("R$ 1.234,56", Hints::default(), "1234.56", "BRL"),
            ("US$ 99", Hints::default(), "99", "USD"),
            ("Rs. 1,23,456.00", Hints::default(), "123456.00", "INR"),
            ("$10 – $20", au, "10", "AUD"),
            ("from $9.99", au, "9.99", "AUD"),
            ("Save $200! Now $799", au, "799", "AUD"),
        ];
        for (text, hints, amount, currency) in cases {
            assert_eq!(
                p_hint(text, *hints),
                (amount.to_string(), currency.to_string()),
                "{text:?}"
            );
        }
        let se = Hints {
            locale: Some("sv-SE"),
            ..Default::default()
        };
        assert_eq!(p_hint("1.299 kr", se), ("1299".into(), "SEK".into()));
        assert_eq!(p("1.299 kr"), ("1299".into(), "AMBIGUOUS".into()));
    }

    #[test]
    fn not_prices() {
        for text in [
            "",
            "Call for price",
            "0,00 €",
            "-$5.00",
            "2 for $5",
            "$1e3",
            "20%",
            "Free",
        ] {
            assert_eq!(p(text).0, "ERROR", "{text:?}");
        }
    }

    #[test]
    fn traps_from_other_trackers() {
        assert_eq!(p("New (8) from $93.99").0, "93.99");
        assert_eq!(p("Was $999 Now $799").0, "799");
        assert_eq!(p("$ .75").0, "0.75");
        assert_eq!(p("179,95 €").0, "179.95");
        assert_eq!(p("1 770 €").0, "1770");
        assert_eq!(p("$1,600.00").0, "1600.00");
        assert_eq!(p("KWD 1.250"), ("1.250".into(), "KWD".into()));
        assert_eq!(p("１，９８０円"), ("1980".into(), "JPY".into()));
        let cn = Hints {
            locale: Some("zh-CN"),
            ..Default::default()
        };
        assert_eq!(p_hint("¥99.00", cn), ("99.00".into(), "CNY".into()));
        // An unambiguous sign wins over a contradicting hint.
        let usd = Hints {
            currency: Currency::parse("USD"),
            ..Default::default()
        };
        assert_eq!(p_hint("12,50 €", usd).1, "EUR");
        assert_eq!(p_hint("12.50", usd), ("12.50".into(), "USD".into()));
        assert_eq!(p("12.50"), ("12.50".into(), "NONE".into()));
    }

    #[test]
    fn hostile_input_never_panics() {
        let long = "9".repeat(10_000);
        for text in [
            long.as_str(),
            "$$$$",
            "...,,,''",
            "-",
            "€-",
            "1,-",
            ",5",
            "Rs.",
            "( )",
            "99999999999999999999999999999999999999 €",
            "\u{FF10}",
            "e5",
            "36.",
            "36. ",
            "36. 2",
            "1, 2",
            "35€",
            "35€ ",
            "35€ 9",
            "July",
            "July 4,",
            "15.08.",
            "15.08.2",
            "2017-08-",
            "$49+",
            "- ",
            "- $",
            "2 l",
        ] {
            let _ = parse_price(text, &Hints::default());
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Groups the integer digits by `sizes` (the last group first: 3, then `rest`).
    fn group(int: &str, sep: &str, rest: usize) -> String {
        let mut groups = Vec::new();
        let mut end = int.len();
        let mut size = 3;
        while end > size {
            groups.push(&int[end - size..end]);
            end -= size;
            size = rest;
        }
        groups.push(&int[..end]);
        groups.reverse();
        groups.join(sep)
    }

    /// A locale's way of writing `cents / 100`, with its currency sign.
    fn format(cents: u64, style: usize) -> String {
        let int = (cents / 100).to_string();
        let frac = format!("{:02}", cents % 100);
        match style {
            0 => format!("${}.{frac}", group(&int, ",", 3)),
            1 => format!("{},{frac} €", group(&int, ".", 3)),
            2 => format!("{},{frac}\u{00A0}€", group(&int, "\u{202F}", 3)),
            3 => format!("CHF {}.{frac}", group(&int, "'", 3)),
            4 => format!("₹{}.{frac}", group(&int, ",", 2)),
            5 => format!("{},{frac} zł", group(&int, " ", 3)),
            6 => format!("R$ {},{frac}", group(&int, ".", 3)),
            7 => format!("£{}.{frac}", int),
            _ => format!("{}.{frac} USD", group(&int, ",", 3)),
        }
    }

    proptest! {
        #[test]
        fn every_locale_style_reads_back_the_same_amount(cents in 1u64..100_000_000_000, style in 0usize..9) {
            let text = format(cents, style);
            let parsed = parse_price(&text, &Hints::default()).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
            prop_assert_eq!(parsed.amount, Decimal::new(cents as i64, 2), "{:?}", text);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,80}") {
            let _ = parse_price(&text, &Hints::default());
        }
    }
}

#[cfg(test)]
mod table {
    use super::*;

    /// `tests/fixtures/price_strings.tsv`: input, hint, amount, currency, note.
    const TABLE: &str = include_str!("../../tests/fixtures/price_strings.tsv");

    #[test]
    fn every_row_of_the_price_string_table() {
        let mut failures = Vec::new();
        let mut rows = 0;
        for line in TABLE.lines().skip(1) {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 5, "malformed row {line:?}");
            rows += 1;
            let got = match parse_price(f[0], &Hints::from_text(f[1])) {
                Ok(p) => (
                    p.amount.to_string(),
                    match p.currency {
                        CurrencyFound::Known(c) => c.to_string(),
                        CurrencyFound::Ambiguous(_) => "AMBIGUOUS".to_owned(),
                        CurrencyFound::Unstated => "NONE".to_owned(),
                    },
                ),
                Err(_) => ("ERROR".to_owned(), "ERROR".to_owned()),
            };
            if (got.0.as_str(), got.1.as_str()) != (f[2], f[3]) {
                failures.push(format!(
                    "{:?} [{}] → {:?}, want {} {} ({})",
                    f[0], f[1], got, f[2], f[3], f[4]
                ));
            }
        }
        assert!(rows >= 300, "only {rows} rows");
        assert!(
            failures.is_empty(),
            "{} of {rows} rows differ:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}
