//! Locale formatting shared by everything the bot writes about prices, in English and
//! French: amounts, dates, percentages, watch numbers, and products as Markdown. It is
//! separate from [`crate::speech::notices`] because the proactive messages, the alert card
//! ([`crate::speech::card`]) and the `list` / `history` replies ([`crate::speech::listing`])
//! must all write a price, a date or a title the same way.
//!
//! # Formatting rules
//! - **Amounts** have the currency's minor digits (`199.00`, `1,980` yen, `12.500` dinars),
//!   rounded midpoint away from zero as the trigger rounds its line. English groups
//!   thousands with `,` and writes `.`; French groups with a narrow no-break space and
//!   writes `,`. A sign is used only where it names one currency for every reader: EUR `€`,
//!   GBP `£`, JPY `¥` (CNY, which shares `¥`, is written as its code), USD `US$` / `$US`
//!   (a bare `$` would be read as the reader's own dollar). English puts the sign before
//!   the amount (`€199.00`), French after it with a no-break space (`199,00 €`). Every
//!   other currency is its ISO code after the amount (`1,234.50 CHF`, `1 234,50 CHF`).
//! - **Dates** are UTC calendar days, `25 Nov 2026` / `25 nov. 2026`; the last check in
//!   `list` adds the time, `14:05 UTC`.
//! - **Percentages** have one decimal, as the trigger computes them: `25.0%` / `25,0 %`.
//! - **Products** are the page title as a Markdown link to the URL, or the bare URL while
//!   the title is unknown, as [`crate::speech::replies`] shows URLs. Titles are shop text: runs of
//!   whitespace become one space, they are cut at [`TITLE_MAX_CHARS`], and the characters
//!   that open emphasis, code, links or HTML (`\ ` * _ [ ] < > ~`) are backslash-escaped,
//!   so a title cannot restyle the message, end its link or inject another.
//! - **Watch numbers** are `#3` / `n°3`, the position in `list`, as in the replies.
//! - **Reasons** (why a page cannot be read) are the engine's error texts, which are
//!   English; they are escaped like titles and quoted as they are in both languages.

use rust_decimal::{Decimal, RoundingStrategy};

use crate::price::Currency;
use crate::speech::notices::ProductView;
use crate::speech::replies::Lang;

/// The most characters of a title a message shows: shop titles can be a paragraph long.
pub const TITLE_MAX_CHARS: usize = 120;

pub(super) const DAY_MS: u64 = 86_400_000;

/// An amount with its currency, by the rules in the module documentation.
pub fn format_amount(lang: Lang, amount: Decimal, currency: Currency) -> String {
    let digits = currency.minor_digits();
    let mut a = amount.round_dp_with_strategy(digits, RoundingStrategy::MidpointAwayFromZero);
    a.rescale(digits);
    let minus = if a.is_sign_negative() && !a.is_zero() {
        "-"
    } else {
        ""
    };
    let plain = a.abs().to_string();
    let (int, frac) = plain.split_once('.').unwrap_or((plain.as_str(), ""));
    let (group, point) = match lang {
        Lang::En => (",", "."),
        Lang::Fr => ("\u{202f}", ","),
    };
    let mut number = group_thousands(int, group);
    if !frac.is_empty() {
        number.push_str(point);
        number.push_str(frac);
    }
    match (lang, sign(lang, currency)) {
        (Lang::En, Some(s)) => format!("{minus}{s}{number}"),
        (Lang::Fr, Some(s)) => format!("{minus}{number}\u{a0}{s}"),
        (_, None) => format!("{minus}{number}\u{a0}{currency}"),
    }
}

/// The UTC calendar day of `ms`: `25 Nov 2026` / `25 nov. 2026`.
pub fn format_date(lang: Lang, ms: u64) -> String {
    let (y, m, d) = civil_from_days(days_since_epoch(ms));
    let month = match lang {
        Lang::En => MONTHS_EN,
        Lang::Fr => MONTHS_FR,
    }
    .get(m.saturating_sub(1) as usize)
    .copied()
    .unwrap_or("?");
    format!("{d} {month} {y}")
}

const MONTHS_EN: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

// The CLDR abbreviations, which keep the short months whole.
const MONTHS_FR: [&str; 12] = [
    "janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.",
    "déc.",
];

pub(super) fn lang_tag(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "en",
        Lang::Fr => "fr",
    }
}

fn sign(lang: Lang, currency: Currency) -> Option<&'static str> {
    match (currency.as_str(), lang) {
        ("EUR", _) => Some("€"),
        ("GBP", _) => Some("£"),
        ("JPY", _) => Some("¥"),
        ("USD", Lang::En) => Some("US$"),
        ("USD", Lang::Fr) => Some("$US"),
        _ => None,
    }
}

fn group_thousands(digits: &str, sep: &str) -> String {
    let len = digits.len();
    let mut out = String::with_capacity(len + len / 3 * sep.len());
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (len - i) % 3 == 0 {
            out.push_str(sep);
        }
        out.push(c);
    }
    out
}

/// A rule's number as the replies write it (`149.99`, `20`, `1,299`; `1 299` in French),
/// when there is no currency to format it with. Thousands are grouped so that the user
/// sees how a typed `1.299` was read.
pub(crate) fn plain_number(lang: Lang, d: Decimal) -> String {
    let plain = d.normalize().abs().to_string();
    let (int, frac) = plain.split_once('.').unwrap_or((plain.as_str(), ""));
    let (group, point) = match lang {
        Lang::En => (",", "."),
        Lang::Fr => ("\u{202f}", ","),
    };
    let mut number = if d.is_sign_negative() && !d.is_zero() {
        "-".to_owned()
    } else {
        String::new()
    };
    number.push_str(&group_thousands(int, group));
    if !frac.is_empty() {
        number.push_str(point);
        number.push_str(frac);
    }
    number
}

pub(super) fn percent_text(lang: Lang, p: Decimal) -> String {
    let mut p = p.round_dp_with_strategy(1, RoundingStrategy::MidpointAwayFromZero);
    p.rescale(1);
    match lang {
        Lang::En => format!("{p}%"),
        Lang::Fr => format!("{} %", p.to_string().replace('.', ",")),
    }
}

pub(super) fn number_text(lang: Lang, number: usize) -> String {
    match lang {
        Lang::En => format!("#{number}"),
        Lang::Fr => format!("n°{number}"),
    }
}

/// The product in Markdown: the escaped title linking to the URL, or the bare URL.
pub(super) fn product_md(p: ProductView<'_>) -> String {
    match p.title.map(clean_title).filter(|t| !t.is_empty()) {
        Some(t) => format!("[{}]({})", escape_markdown(&t), link_target(p.url)),
        None => p.url.to_owned(),
    }
}

pub(super) fn clean_title(title: &str) -> String {
    let t = clean(title);
    if t.chars().count() <= TITLE_MAX_CHARS {
        return t;
    }
    let mut cut: String = t.chars().take(TITLE_MAX_CHARS - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// Shop text on one line: a newline in a title would end a list item.
pub(super) fn clean(s: &str) -> String {
    visible(s).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text as the bot may say it: without the controls that would make a user's text
/// (a typed word, a link, a shop's title) change how the rest of the message reads or
/// renders. Gone are the bidi controls (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F,
/// U+061C), which can make a link read backwards, and NUL and the other C0 and C1
/// controls and DEL; `\n` and `\t` stay. Every text leaves speech through it: a
/// turn's reply ([`crate::speech::replies::said`]) and a message the bot sends on its own
/// ([`crate::speech::notices::into_activity`]).
pub fn visible(s: &str) -> String {
    s.chars().filter(|c| !is_hidden_control(*c)).collect()
}

fn is_hidden_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    ) || (c.is_control() && c != '\n' && c != '\t')
}

pub(super) fn escape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '~') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A URL as a link destination: parentheses and spaces would end `(…)` early, and their
/// percent-encoded forms name the same page.
fn link_target(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        match c {
            '(' => out.push_str("%28"),
            ')' => out.push_str("%29"),
            '<' => out.push_str("%3C"),
            '>' => out.push_str("%3E"),
            c if c.is_whitespace() => out.push_str("%20"),
            c => out.push(c),
        }
    }
    out
}

fn days_since_epoch(ms: u64) -> i64 {
    // u64 milliseconds are at most 2.1e11 days, well inside i64.
    i64::try_from(ms / DAY_MS).unwrap_or(i64::MAX)
}

pub(super) fn format_date_time(lang: Lang, ms: u64) -> String {
    let secs_of_day = (ms % DAY_MS) / 1000;
    let (h, m) = (secs_of_day / 3600, secs_of_day % 3600 / 60);
    match lang {
        Lang::En => format!("{}, {h:02}:{m:02} UTC", format_date(lang, ms)),
        Lang::Fr => format!("{} à {h:02}:{m:02} UTC", format_date(lang, ms)),
    }
}

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01, in the proleptic
/// Gregorian calendar. Howard Hinnant's `civil_from_days`
/// (<https://howardhinnant.github.io/date_algorithms.html>): a dozen exact integer lines
/// instead of a date crate for the one conversion the messages need. It shifts the year to
/// start on 1 March so that the leap day is the last day of its year, then splits the day
/// count into 400-year eras of 146,097 days.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speech::test_support::{cur, dec, eur, hostile_product, product, NOV_25};

    #[test]
    fn amounts_use_minor_digits_signs_and_grouping() {
        let e = Lang::En;
        let f = Lang::Fr;
        assert_eq!(format_amount(e, dec("159.2"), eur()), "€159.20");
        assert_eq!(format_amount(f, dec("159.2"), eur()), "159,20\u{a0}€");
        assert_eq!(format_amount(e, dec("1234567.891"), eur()), "€1,234,567.89");
        assert_eq!(
            format_amount(f, dec("1234567.895"), eur()),
            "1\u{202f}234\u{202f}567,90\u{a0}€"
        );
        assert_eq!(format_amount(e, dec("1980"), cur("JPY")), "¥1,980");
        assert_eq!(
            format_amount(f, dec("1980"), cur("JPY")),
            "1\u{202f}980\u{a0}¥"
        );
        assert_eq!(format_amount(e, dec("89"), cur("USD")), "US$89.00");
        assert_eq!(format_amount(f, dec("89"), cur("USD")), "89,00\u{a0}$US");
        assert_eq!(format_amount(e, dec("12.5"), cur("GBP")), "£12.50");
        assert_eq!(
            format_amount(e, dec("1234.5"), cur("CHF")),
            "1,234.50\u{a0}CHF"
        );
        assert_eq!(
            format_amount(f, dec("1234.5"), cur("CHF")),
            "1\u{202f}234,50\u{a0}CHF"
        );
        assert_eq!(format_amount(e, dec("12.5"), cur("KWD")), "12.500\u{a0}KWD");
        assert_eq!(format_amount(e, dec("100"), cur("CNY")), "100.00\u{a0}CNY");
        assert_eq!(format_amount(e, dec("999"), eur()), "€999.00");
        assert_eq!(format_amount(e, dec("0.5"), eur()), "€0.50");
        assert_eq!(format_amount(e, dec("-3"), eur()), "-€3.00");
    }

    #[test]
    fn dates_are_utc_days_in_both_languages() {
        assert_eq!(format_date(Lang::En, 0), "1 Jan 1970");
        assert_eq!(format_date(Lang::Fr, 0), "1 janv. 1970");
        assert_eq!(format_date(Lang::En, 1_709_164_800_000), "29 Feb 2024");
        assert_eq!(
            format_date(Lang::Fr, 1_709_164_800_000 + DAY_MS - 1),
            "29 févr. 2024"
        );
        assert_eq!(
            format_date(Lang::En, 1_709_164_800_000 + DAY_MS),
            "1 Mar 2024"
        );
        assert_eq!(format_date(Lang::En, NOV_25), "25 Nov 2026");
        assert_eq!(format_date(Lang::Fr, NOV_25 + 45_000_000), "25 nov. 2026");
        assert_eq!(format_date(Lang::En, 951_868_800_000), "1 Mar 2000");
        assert_eq!(format_date(Lang::Fr, 951_868_800_000 - 1), "29 févr. 2000");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
        assert_eq!(
            format_date_time(Lang::En, NOV_25 + 50_700_000),
            "25 Nov 2026, 14:05 UTC"
        );
        assert_eq!(
            format_date_time(Lang::Fr, NOV_25 + 50_700_000),
            "25 nov. 2026 à 14:05 UTC"
        );
        // The largest instant must not panic.
        assert!(!format_date(Lang::En, u64::MAX).is_empty());
    }

    #[test]
    fn bidi_and_control_characters_are_not_said() {
        let hostile = "a\u{202E}b\u{202A}\u{2066}\u{2069}\u{200E}\u{200F}\u{061C}c\u{0}d\u{1b}[31m\r\u{7f}\u{85}e";
        assert_eq!(visible(hostile), "abcd[31me");
        assert_eq!(visible("line one\n\tline two"), "line one\n\tline two");
        // What the bot writes itself is kept: a narrow no-break space, quotes, emoji.
        assert_eq!(visible("1\u{202f}299 € “ok” 🙂"), "1\u{202f}299 € “ok” 🙂");
        assert_eq!(clean("Pan\u{202E}\u{0} 28\ncm"), "Pan 28 cm");
    }

    #[test]
    fn titles_cannot_break_the_markdown() {
        let md = product_md(hostile_product());
        assert_eq!(
            md,
            "[\\*Super\\* \\_deal\\_ \\[2 for 1\\]\\](https://evil.example) \\`x\\` \\<b\\>\\\\ now]\
             (https://shop.example/p/%281%29)"
        );
        let long = "a".repeat(300);
        let t = clean_title(&long);
        assert_eq!(t.chars().count(), TITLE_MAX_CHARS);
        assert!(t.ends_with('…'));
        assert_eq!(product_md(product(Some("   "))), "https://shop.example/p/1");
    }
}
