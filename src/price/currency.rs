//! ISO 4217 currencies and the signs shops write for them. Pure data, no I/O.

use std::fmt;

/// An ISO 4217 alphabetic code, checked to be three ASCII capitals.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Accepts `eur`, `EUR`; refuses anything that is not three ASCII letters.
    pub fn parse(code: &str) -> Option<Currency> {
        let b = code.as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_alphabetic) {
            return None;
        }
        Some(Currency([
            b[0].to_ascii_uppercase(),
            b[1].to_ascii_uppercase(),
            b[2].to_ascii_uppercase(),
        ]))
    }

    /// A code this module knows shops to use (so `THE` in running text is not a currency).
    pub fn known(code: &str) -> Option<Currency> {
        let c = Currency::parse(code)?;
        KNOWN_CODES.contains(&c.as_str()).then_some(c)
    }

    pub fn as_str(&self) -> &str {
        // Constructed from ASCII letters only.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Digits after the decimal point in the currency's minor unit.
    pub fn minor_digits(&self) -> u32 {
        match self.as_str() {
            "JPY" | "KRW" | "VND" | "CLP" | "ISK" | "HUF" | "TWD" | "IDR" | "PYG" | "UGX" => 0,
            "KWD" | "BHD" | "OMR" | "JOD" | "TND" | "LYD" | "IQD" => 3,
            _ => 2,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

const KNOWN_CODES: &[&str] = &[
    "AED", "ARS", "AUD", "BGN", "BHD", "BRL", "CAD", "CHF", "CLP", "CNY", "COP", "CZK", "DKK",
    "EGP", "EUR", "GBP", "HKD", "HUF", "IDR", "ILS", "INR", "IQD", "ISK", "JOD", "JPY", "KRW",
    "KWD", "LYD", "MAD", "MXN", "MYR", "NGN", "NOK", "NZD", "OMR", "PEN", "PHP", "PKR", "PLN",
    "PYG", "QAR", "RON", "RSD", "RUB", "SAR", "SEK", "SGD", "THB", "TND", "TRY", "TWD", "UAH",
    "UGX", "USD", "VND", "ZAR",
];

/// The code as a `&'static str` when it is one this module knows.
pub fn static_code(c: Currency) -> Option<&'static str> {
    KNOWN_CODES.iter().copied().find(|k| *k == c.as_str())
}

/// What a sign in the text says about the currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    /// Only one currency writes it this way.
    Exact(&'static str),
    /// Several do; a hint must choose, the first is the default when `defaulted`.
    Ambiguous {
        candidates: &'static [&'static str],
        /// Whether the first candidate may be assumed without a hint (`¥` is JPY unless
        /// the page says China; `$` and `kr` have no safe default).
        defaulted: bool,
    },
}

/// Signs longest first, so `US$` is found before `$` and `R$` before `$`.
/// Matching is case-sensitive except for the ASCII words, which are compared lower-cased.
pub const SIGNS: &[(&str, Sign)] = &[
    ("SFr.", Sign::Exact("CHF")),
    ("CN¥", Sign::Exact("CNY")),
    ("RMB", Sign::Exact("CNY")),
    ("US$", Sign::Exact("USD")),
    ("CA$", Sign::Exact("CAD")),
    ("AU$", Sign::Exact("AUD")),
    ("NZ$", Sign::Exact("NZD")),
    ("HK$", Sign::Exact("HKD")),
    ("MX$", Sign::Exact("MXN")),
    ("R$", Sign::Exact("BRL")),
    ("C$", Sign::Exact("CAD")),
    ("A$", Sign::Exact("AUD")),
    ("S$", Sign::Exact("SGD")),
    ("Rs.", Sign::Exact("INR")),
    ("Rs", Sign::Exact("INR")),
    ("руб.", Sign::Exact("RUB")),
    ("руб", Sign::Exact("RUB")),
    ("lei", Sign::Exact("RON")),
    ("zł", Sign::Exact("PLN")),
    ("Kč", Sign::Exact("CZK")),
    ("Ft", Sign::Exact("HUF")),
    ("TL", Sign::Exact("TRY")),
    ("Fr.", Sign::Exact("CHF")),
    ("KD", Sign::Exact("KWD")),
    (
        "kr.",
        Sign::Ambiguous {
            candidates: &["DKK", "SEK", "NOK", "ISK"],
            defaulted: false,
        },
    ),
    (
        "kr",
        Sign::Ambiguous {
            candidates: &["SEK", "NOK", "DKK", "ISK"],
            defaulted: false,
        },
    ),
    (
        "Kr",
        Sign::Ambiguous {
            candidates: &["SEK", "NOK", "DKK", "ISK"],
            defaulted: false,
        },
    ),
    ("€", Sign::Exact("EUR")),
    ("£", Sign::Exact("GBP")),
    ("₹", Sign::Exact("INR")),
    ("₩", Sign::Exact("KRW")),
    ("원", Sign::Exact("KRW")),
    ("₽", Sign::Exact("RUB")),
    ("₺", Sign::Exact("TRY")),
    ("₪", Sign::Exact("ILS")),
    ("₱", Sign::Exact("PHP")),
    ("฿", Sign::Exact("THB")),
    ("₫", Sign::Exact("VND")),
    ("円", Sign::Exact("JPY")),
    ("元", Sign::Exact("CNY")),
    (
        "¥",
        Sign::Ambiguous {
            candidates: &["JPY", "CNY"],
            defaulted: true,
        },
    ),
    (
        "￥",
        Sign::Ambiguous {
            candidates: &["JPY", "CNY"],
            defaulted: true,
        },
    ),
    (
        "$",
        Sign::Ambiguous {
            candidates: &[
                "USD", "CAD", "AUD", "NZD", "MXN", "SGD", "HKD", "ARS", "CLP", "COP",
            ],
            defaulted: false,
        },
    ),
];

/// The currency of a country (ISO 3166 alpha-2, lower-case), as a locale's region or a
/// top-level domain names it (`uk` is the domain, `gb` the region; `eu` the domain).
fn for_country(code: &str) -> Option<&'static str> {
    Some(match code {
        "us" => "USD",
        "gb" | "uk" => "GBP",
        "ch" | "li" => "CHF",
        "ca" => "CAD",
        "au" => "AUD",
        "nz" => "NZD",
        "in" => "INR",
        "jp" => "JPY",
        "cn" => "CNY",
        "kr" => "KRW",
        "br" => "BRL",
        "mx" => "MXN",
        "pl" => "PLN",
        "se" => "SEK",
        "no" => "NOK",
        "dk" => "DKK",
        "cz" => "CZK",
        "hu" => "HUF",
        "tr" => "TRY",
        "ru" => "RUB",
        "ro" => "RON",
        "sg" => "SGD",
        "hk" => "HKD",
        "tw" => "TWD",
        "ar" => "ARS",
        "cl" => "CLP",
        "co" => "COP",
        "pe" => "PEN",
        "za" => "ZAR",
        "il" => "ILS",
        "ae" => "AED",
        "sa" => "SAR",
        "qa" => "QAR",
        "kw" => "KWD",
        "bh" => "BHD",
        "om" => "OMR",
        "jo" => "JOD",
        "eg" => "EGP",
        "ma" => "MAD",
        "tn" => "TND",
        "ng" => "NGN",
        "pk" => "PKR",
        "th" => "THB",
        "my" => "MYR",
        "ph" => "PHP",
        "id" => "IDR",
        "vn" => "VND",
        "ua" => "UAH",
        "rs" => "RSD",
        "is" => "ISK",
        // Bulgaria has priced in euros since 1 January 2026.
        "de" | "at" | "fr" | "be" | "it" | "es" | "nl" | "pt" | "fi" | "ie" | "gr" | "sk"
        | "si" | "lu" | "ee" | "lv" | "lt" | "hr" | "cy" | "mt" | "bg" | "eu" => "EUR",
        _ => return None,
    })
}

/// Whether a word written beside an amount names a currency: one of [`SIGNS`] (the ASCII
/// ones in any case, as people type them: `kr`, `ZŁ`), a single currency symbol (`€`,
/// `₹`), or three letters (`EUR`, `usd`). Three letters are accepted without checking
/// the code, because a chat user's `below 10 eur` must not fail on a code this table
/// does not list.
pub fn is_currency_word(word: &str) -> bool {
    if word.chars().count() == 3 && word.chars().all(|c| c.is_ascii_alphabetic()) {
        return true;
    }
    if word.chars().count() == 1 && word.chars().all(is_currency_symbol) {
        return true;
    }
    SIGNS.iter().any(|(text, _)| {
        if text.is_ascii() {
            text.eq_ignore_ascii_case(word)
        } else {
            text.to_lowercase() == word.to_lowercase()
        }
    })
}

/// Unicode's currency symbols (category Sc) that shops use, `$` included.
fn is_currency_symbol(c: char) -> bool {
    c == '$'
        || c == '\u{A2}'
        || c == '\u{A3}'
        || c == '\u{A5}'
        || c == '\u{E3F}'
        || ('\u{20A0}'..='\u{20CF}').contains(&c)
        || c == '\u{FDFC}'
}

/// The currency a locale (`de-CH`, `fr_CA`, `ja`) normally prices in: its region's, or
/// for a bare language, the currency of the country that language is mostly priced in.
pub fn for_locale(locale: &str) -> Option<Currency> {
    let l = locale.replace('_', "-").to_ascii_lowercase();
    let mut parts = l.split('-');
    let language = parts.next().unwrap_or("");
    let region = parts.next().unwrap_or("");
    let code = for_country(region).or(match language {
        "ja" => Some("JPY"),
        "ko" => Some("KRW"),
        "zh" => Some("CNY"),
        "pl" => Some("PLN"),
        "sv" => Some("SEK"),
        "da" => Some("DKK"),
        "nb" | "nn" | "no" => Some("NOK"),
        "cs" => Some("CZK"),
        "hu" => Some("HUF"),
        "tr" => Some("TRY"),
        "ru" => Some("RUB"),
        "ro" => Some("RON"),
        "de" | "fr" | "it" | "es" | "nl" | "fi" | "el" | "sk" | "sl" => Some("EUR"),
        _ => None,
    })?;
    Currency::parse(code)
}

/// The currency a host's country-code top-level domain suggests (`.com.au`, `.de`,
/// `.co.uk`, `.co.jp`). Generic domains (`.com`, `.shop`, `.store`) suggest none, and
/// neither do country codes sold as generic names (`.io`, `.tv`, `.me`, `.ai`, `.ly`),
/// which this table leaves out; `.co` counts only under a Colombian second level
/// (`.com.co`), since a bare `.co` is mostly a `.com` stand-in.
pub fn for_tld(host_or_tld: &str) -> Option<Currency> {
    let h = host_or_tld.trim_end_matches('.').to_ascii_lowercase();
    let mut labels = h.rsplit('.');
    let last = labels.next().unwrap_or("");
    if last == "co" && !matches!(labels.next(), Some("com" | "net" | "org" | "edu" | "gov")) {
        return None;
    }
    Currency::parse(for_country(last)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_checked_and_normalised() {
        assert_eq!(Currency::parse("eur").unwrap().as_str(), "EUR");
        assert!(Currency::parse("EU").is_none());
        assert!(Currency::parse("E1R").is_none());
        assert!(Currency::parse("ÉUR").is_none());
        assert!(Currency::known("THE").is_none());
        assert_eq!(Currency::known("chf").unwrap().as_str(), "CHF");
        assert_eq!(Currency::parse("JPY").unwrap().minor_digits(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().minor_digits(), 3);
    }

    #[test]
    fn hints_from_locales_and_hosts() {
        assert_eq!(for_locale("de-CH").unwrap().as_str(), "CHF");
        assert_eq!(for_locale("fr_CA").unwrap().as_str(), "CAD");
        assert_eq!(for_locale("ja").unwrap().as_str(), "JPY");
        assert_eq!(for_locale("en").map(|c| c.to_string()), None);
        assert_eq!(for_tld("shop.example.com.au").unwrap().as_str(), "AUD");
        assert_eq!(for_tld(".co.uk").unwrap().as_str(), "GBP");
        assert_eq!(for_tld("shop.example.com"), None);
        for (host, want) in [
            ("www.tiendalaplata.com.ar", Some("ARS")),
            ("shop.example.co.jp", Some("JPY")),
            ("velo-shop.ch", Some("CHF")),
            ("sklep.example.pl", Some("PLN")),
            ("www.example.com.co", Some("COP")),
            ("www.example.co.za", Some("ZAR")),
            ("www.example.bg", Some("EUR")),
            ("brand.co", None),
            ("brand.io", None),
            ("brand.shop", None),
            ("brand.store", None),
            ("brand.net", None),
        ] {
            assert_eq!(
                for_tld(host).map(|c| c.to_string()).as_deref(),
                want,
                "{host}"
            );
        }
    }
}
