//! What the bot says on its own, in English and French: the first-price follow-up, alerts
//! and digests (text, and an Adaptive Card where the channel renders one), the "cannot
//! read" and "readable again" notices, currency changes, `history` and `list` lines.
//! Pure functions: plain structs in, text and card JSON out; the caller owns the store and
//! the adapter.
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
//!
//! # Cards
//! Alerts carry an Adaptive Card 1.4 on the channels that render one ([`renders_cards`]).
//! Shop text goes into the card only as JSON strings built by `serde_json`, and the title
//! only in a `TextRun`, which renders no Markdown. The "Stop watching" button is an
//! `Action.Submit` whose data holds `{"msteams": {"type": "imBack", "value": "unwatch 3"}}`,
//! so Teams posts `unwatch 3` as the user's own message (visible, and handled like typed
//! text), and `"command": "unwatch 3"`, which Web Chat, Direct Line and the Emulator send
//! back as the activity's `value` and [`crate::inbound::activity::ValidActivity::command_text`]
//! reads. `messageBack` was not chosen: it needs both `text` and `displayText` to behave
//! like typing, and `imBack` is that in one field.

use std::fmt::Write as _;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};

use crate::domain::Reference;
use crate::domain::Rule;
use crate::inbound::activity::{Attachment, ConversationReference, OutboundActivity};
use crate::price::Currency;
use crate::speech::replies::{self, Lang};
use crate::watch::trigger::alert_line;

/// The attachment content type of an Adaptive Card.
pub const ADAPTIVE_CARD: &str = "application/vnd.microsoft.card.adaptive";

/// The most characters of a title a message shows: shop titles can be a paragraph long.
pub const TITLE_MAX_CHARS: usize = 120;

/// The most characters of a sparkline: wider lines wrap on a phone.
pub const SPARKLINE_WIDTH: usize = 24;

/// One proactive message: Markdown text for every channel, and a card for those that
/// render cards.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub text: String,
    /// An Adaptive Card (the attachment's `content`); [`into_activity`] drops it on
    /// channels that do not render cards.
    pub card: Option<Value>,
}

impl Message {
    fn text(text: String) -> Message {
        Message { text, card: None }
    }

    /// An operator's text, as written.
    pub fn announcement(text: &str) -> Message {
        Message::text(text.to_owned())
    }
}

/// A watched product as the messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProductView<'a> {
    pub url: &'a str,
    /// The page title, once a check has read one.
    pub title: Option<&'a str>,
}

/// One fired alert, as [`crate::domain::Event::Fired`] reports it, for one watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertItem<'a> {
    /// The watch's position in `list`.
    pub number: usize,
    pub product: ProductView<'a>,
    pub reference: Reference,
    pub price: Decimal,
    pub currency: Currency,
    pub line: Decimal,
    /// Negative when a `below` watch fired on a price above its first one.
    pub drop_percent: Decimal,
    pub at_ms: u64,
}

pub use crate::domain::ChangePoint;

/// One watch in `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListEntry<'a> {
    /// The watch's position in `list`.
    pub number: usize,
    pub product: ProductView<'a>,
    pub rule: &'a Rule,
    /// When the watch was made, shown while it is pending.
    pub added_ms: u64,
    /// The last price compared, in the reference currency.
    pub current: Option<(Decimal, Currency)>,
    /// `None` while the first price is unknown: the watch shows as pending.
    pub reference: Option<Reference>,
    pub last_check_ms: Option<u64>,
    pub state: WatchState,
}

/// What `list` says about a watch that has its first price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchState {
    /// Armed: the next crossing alerts.
    Watching,
    /// Fired and not yet re-armed.
    Alerted,
    /// The last check found the product out of stock.
    OutOfStock,
    /// The price has not been readable since then.
    CannotRead { since_ms: u64 },
    /// The page now prices in another currency, so nothing is compared.
    OtherCurrency { seen: Currency },
}

/// Whether the channel shows Adaptive Cards. Slack, Telegram and Facebook get text only:
/// their connectors turn a card into an image or drop parts of it.
pub fn renders_cards(channel_id: &str) -> bool {
    ["msteams", "webchat", "directline", "emulator"]
        .iter()
        .any(|c| c.eq_ignore_ascii_case(channel_id))
}

/// The activity for `msg` in the conversation of `reference`: Markdown text, the
/// conversation's locale (or the language's), and the card only where it renders.
pub fn into_activity(
    msg: Message,
    reference: &ConversationReference,
    lang: Lang,
) -> OutboundActivity {
    let mut out = OutboundActivity::message(reference, msg.text);
    out.text_format = Some("markdown".to_owned());
    out.locale = reference
        .locale
        .clone()
        .or_else(|| Some(lang_tag(lang).to_owned()));
    if let Some(card) = msg.card.filter(|_| renders_cards(&reference.channel_id)) {
        out.attachments.push(Attachment {
            content_type: ADAPTIVE_CARD.to_owned(),
            content: card,
        });
    }
    out
}

/// The follow-up to `watch` once the first price is read (design.md §1).
pub fn first_price(
    lang: Lang,
    number: usize,
    product: ProductView<'_>,
    reference: &Reference,
    line: Decimal,
    rule: &Rule,
) -> Message {
    let p = product_md(product);
    let now = format_amount(lang, reference.amount, reference.currency);
    let at = format_amount(lang, line, reference.currency);
    let n = number_text(lang, number);
    let tail = match (lang, rule) {
        (Lang::En, Rule::Drop { percent }) => format!(
            "I will tell you when it is {at} or less, {}% below this price.",
            plain_number(lang, *percent)
        ),
        (Lang::Fr, Rule::Drop { percent }) => format!(
            "Je vous préviendrai quand il sera à {at} ou moins, soit {} % de moins que ce prix.",
            plain_number(lang, *percent)
        ),
        (Lang::En, Rule::Below { .. }) if reference.amount <= line => {
            format!("That is already at or below your target of {at}.")
        }
        (Lang::Fr, Rule::Below { .. }) if reference.amount <= line => {
            format!("C'est déjà au niveau de votre objectif de {at} ou en dessous.")
        }
        (Lang::En, Rule::Below { .. }) => format!("I will tell you when it is {at} or less."),
        (Lang::Fr, Rule::Below { .. }) => {
            format!("Je vous préviendrai quand il sera à {at} ou moins.")
        }
    };
    Message::text(match lang {
        Lang::En => format!("Watching {p} ({n}): {now} now. {tail}"),
        Lang::Fr => format!("Je surveille {p} ({n}) : {now} actuellement. {tail}"),
    })
}

/// The follow-up to `watch` when the first fetch failed: the watch is not kept.
pub fn first_fetch_failed(lang: Lang, url: &str, reason: &str) -> Message {
    let reason = escape_markdown(&clean(reason));
    Message::text(match lang {
        Lang::En => format!(
            "I could not read a price from {url}: {reason}. I am not keeping this watch. \
             Check that the link opens the product's own page (not a search, a cart or a login page), \
             then send `watch <link>` again."
        ),
        Lang::Fr => format!(
            "Je n'ai pas pu lire de prix sur {url} : {reason}. Je ne garde pas cette surveillance. \
             Vérifiez que le lien ouvre la page du produit lui-même (pas une recherche, un panier ou une page de connexion), \
             puis renvoyez `watch <lien>`."
        ),
    })
}

/// The alerts of one conversation that are ready together: one alert, or one digest
/// listing each (design.md §3). `None` when there is nothing to say.
pub fn alerts(lang: Lang, items: &[AlertItem<'_>]) -> Option<Message> {
    let text = match items {
        [] => return None,
        [item] => {
            let p = product_md(item.product);
            let n = number_text(lang, item.number);
            let change = alert_change(lang, item);
            let stop = stop_hint(lang, item.number);
            match lang {
                Lang::En => format!("Price alert: {p} ({n}) is {change}. {stop}"),
                Lang::Fr => format!("Alerte prix : {p} ({n}) est {change}. {stop}"),
            }
        }
        many => {
            let mut text = match lang {
                Lang::En => format!("{} price alerts:\n", many.len()),
                Lang::Fr => format!("{} alertes de prix :\n", many.len()),
            };
            for item in many {
                let _ = write!(
                    text,
                    "\n- {p} ({n}) {verb} {change}. {stop}",
                    p = product_md(item.product),
                    n = number_text(lang, item.number),
                    verb = if lang == Lang::En { "is" } else { "est" },
                    change = alert_change(lang, item),
                    stop = stop_hint(lang, item.number),
                );
            }
            text
        }
    };
    let card = alert_card(lang, items, &text);
    Some(Message {
        text,
        card: Some(card),
    })
}

/// Told once when a product's price has not been readable for a while (issue 4 point 3).
pub fn cannot_read(
    lang: Lang,
    number: usize,
    product: ProductView<'_>,
    since_ms: u64,
    reason: &str,
) -> Message {
    let p = product_md(product);
    let n = number_text(lang, number);
    let since = format_date(lang, since_ms);
    let reason = escape_markdown(&clean(reason));
    let stop = stop_hint(lang, number);
    Message::text(match lang {
        Lang::En => format!(
            "I have not been able to read the price of {p} ({n}) since {since}: {reason}. \
             I keep trying and will tell you when it works again. {stop}"
        ),
        Lang::Fr => format!(
            "Je n'arrive plus à lire le prix de {p} ({n}) depuis le {since} : {reason}. \
             Je continue d'essayer et vous préviendrai quand cela remarchera. {stop}"
        ),
    })
}

/// Told after [`cannot_read`] when a check reads the page again.
pub fn readable_again(
    lang: Lang,
    number: usize,
    product: ProductView<'_>,
    price: Option<(Decimal, Currency)>,
) -> Message {
    let p = product_md(product);
    let n = number_text(lang, number);
    Message::text(match (lang, price) {
        (Lang::En, Some((amount, currency))) => format!(
            "Good news: I can read the price of {p} ({n}) again. It is {} now.",
            format_amount(lang, amount, currency)
        ),
        (Lang::Fr, Some((amount, currency))) => format!(
            "Bonne nouvelle : je peux de nouveau lire le prix de {p} ({n}). Il est à {} actuellement.",
            format_amount(lang, amount, currency)
        ),
        (Lang::En, None) => format!("Good news: I can read the page of {p} ({n}) again."),
        (Lang::Fr, None) => {
            format!("Bonne nouvelle : je peux de nouveau lire la page de {p} ({n}).")
        }
    })
}

/// Told once when the page prices in another currency than the first price.
pub fn currency_changed(
    lang: Lang,
    number: usize,
    product: ProductView<'_>,
    reference: Currency,
    seen: Currency,
) -> Message {
    let p = product_md(product);
    let n = number_text(lang, number);
    Message::text(match lang {
        Lang::En => format!(
            "{p} ({n}) is now priced in {seen} instead of {reference}, so I cannot compare it with its first price \
             and will not alert until it is priced in {reference} again. \
             To watch it in {seen}, type `unwatch {number}`, then `watch <link>` again."
        ),
        Lang::Fr => format!(
            "{p} ({n}) est désormais affiché en {seen} et non plus en {reference} : je ne peux plus le comparer à son premier prix \
             et ne vous alerterai pas tant qu'il ne sera pas de nouveau en {reference}. \
             Pour le surveiller en {seen}, tapez `unwatch {number}`, puis `watch <lien>` à nouveau."
        ),
    })
}

/// The answer to `history <n>`: lowest, highest and latest price with their dates, and a
/// sparkline of the changes. Points in another currency than the latest are left out and
/// counted, since they cannot be drawn on one scale.
pub fn history(
    lang: Lang,
    number: usize,
    product: ProductView<'_>,
    points: &[ChangePoint],
    now_ms: u64,
) -> String {
    let p = product_md(product);
    let n = number_text(lang, number);
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|c| c.at_ms);
    let Some(latest) = sorted.last().copied() else {
        return match lang {
            Lang::En => format!(
                "No price has been recorded yet for {n} ({p}). I will have its history once I have read its price."
            ),
            Lang::Fr => format!(
                "Aucun prix n'est encore enregistré pour {n} ({p}). Son historique viendra dès que j'aurai lu son prix."
            ),
        };
    };
    let (kept, left_out): (Vec<ChangePoint>, Vec<ChangePoint>) = sorted
        .into_iter()
        .partition(|c| c.currency == latest.currency);
    // `kept` holds `latest`, so it is never empty.
    let first = kept.first().copied().unwrap_or(latest);
    let mut lowest = first;
    let mut highest = first;
    for c in &kept {
        if c.amount < lowest.amount {
            lowest = *c;
        }
        if c.amount > highest.amount {
            highest = *c;
        }
    }
    let amounts: Vec<Decimal> = kept.iter().map(|c| c.amount).collect();
    let days = now_ms.saturating_sub(first.at_ms) / DAY_MS;
    let since = format_date(lang, first.at_ms);
    let span = match (lang, days) {
        (_, 0) => String::new(),
        (Lang::En, 1) => " (1 day)".to_owned(),
        (Lang::En, d) => format!(" ({d} days)"),
        (Lang::Fr, 1) => " (1 jour)".to_owned(),
        (Lang::Fr, d) => format!(" ({d} jours)"),
    };
    let money = |c: &ChangePoint| format_amount(lang, c.amount, c.currency);
    let date = |c: &ChangePoint| format_date(lang, c.at_ms);
    let mut out = match lang {
        Lang::En => format!(
            "Price history of {p} ({n}) since {since}{span}:\n\n`{spark}`\n\n\
             - Lowest: {lo} on {lo_d}\n- Highest: {hi} on {hi_d}\n- Latest: {la}, since {la_d}",
            spark = sparkline(&amounts),
            lo = money(&lowest),
            lo_d = date(&lowest),
            hi = money(&highest),
            hi_d = date(&highest),
            la = money(&latest),
            la_d = date(&latest),
        ),
        Lang::Fr => format!(
            "Historique du prix de {p} ({n}) depuis le {since}{span} :\n\n`{spark}`\n\n\
             - Le plus bas : {lo} le {lo_d}\n- Le plus haut : {hi} le {hi_d}\n- Le dernier : {la}, depuis le {la_d}",
            spark = sparkline(&amounts),
            lo = money(&lowest),
            lo_d = date(&lowest),
            hi = money(&highest),
            hi_d = date(&highest),
            la = money(&latest),
            la_d = date(&latest),
        ),
    };
    if !left_out.is_empty() {
        let mut codes: Vec<&str> = left_out.iter().map(|c| c.currency.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        let codes = codes.join(", ");
        let cur = latest.currency;
        let _ = match (lang, left_out.len()) {
            (Lang::En, 1) => write!(
                out,
                "\n\n1 price in {codes} is left out: it cannot be compared with prices in {cur}."
            ),
            (Lang::En, k) => write!(
                out,
                "\n\n{k} prices in {codes} are left out: they cannot be compared with prices in {cur}."
            ),
            (Lang::Fr, 1) => write!(
                out,
                "\n\n1 prix en {codes} est écarté : il ne se compare pas aux prix en {cur}."
            ),
            (Lang::Fr, k) => write!(
                out,
                "\n\n{k} prix en {codes} sont écartés : ils ne se comparent pas aux prix en {cur}."
            ),
        };
    }
    out
}

/// The answer to `list`: a header and one [`list_line`] per watch.
pub fn list(lang: Lang, entries: &[ListEntry<'_>]) -> String {
    if entries.is_empty() {
        return replies::no_watches(lang);
    }
    let mut out = match lang {
        Lang::En => format!("Your watches ({}):\n", entries.len()),
        Lang::Fr => format!("Vos surveillances ({}) :\n", entries.len()),
    };
    for e in entries {
        out.push('\n');
        out.push_str(&list_line(lang, e));
    }
    out
}

/// One watch in `list` (design.md §1): the product, then its current and first price, the
/// alert line, the last check and its state; a watch without its first price is pending.
pub fn list_line(lang: Lang, e: &ListEntry<'_>) -> String {
    let head = format!("{}. {}", e.number, product_md(e.product));
    let Some(reference) = e.reference else {
        let parts = match lang {
            Lang::En => [
                "waiting for its first price".to_owned(),
                format!("alert on {}", replies::rule_text(lang, e.rule)),
                format!("added {}", format_date(lang, e.added_ms)),
            ],
            Lang::Fr => [
                "en attente de son premier prix".to_owned(),
                format!("alerte pour {}", replies::rule_text(lang, e.rule)),
                format!("ajoutée le {}", format_date(lang, e.added_ms)),
            ],
        };
        return format!("{head}\n   {}", parts.join(" · "));
    };
    let cur = reference.currency;
    let mut parts = Vec::with_capacity(5);
    if let Some((amount, currency)) = e.current {
        parts.push(match lang {
            Lang::En => format!("now {}", format_amount(lang, amount, currency)),
            Lang::Fr => format!("actuellement {}", format_amount(lang, amount, currency)),
        });
    }
    let first = format_amount(lang, reference.amount, cur);
    let first_date = format_date(lang, reference.at_ms);
    let line = format_amount(lang, alert_line(e.rule, &reference), cur);
    parts.push(match lang {
        Lang::En => format!("first price {first} ({first_date})"),
        Lang::Fr => format!("premier prix {first} ({first_date})"),
    });
    parts.push(match lang {
        Lang::En => format!("alert at {line} or less"),
        Lang::Fr => format!("alerte à {line} ou moins"),
    });
    if let Some(at) = e.last_check_ms {
        parts.push(match lang {
            Lang::En => format!("checked {}", format_date_time(lang, at)),
            Lang::Fr => format!("vérifiée le {}", format_date_time(lang, at)),
        });
    }
    parts.push(match (lang, e.state) {
        (Lang::En, WatchState::Watching) => "watching".to_owned(),
        (Lang::Fr, WatchState::Watching) => "active".to_owned(),
        (Lang::En, WatchState::Alerted) => {
            "alert sent, the next one after the price rises again".to_owned()
        }
        (Lang::Fr, WatchState::Alerted) => {
            "alerte envoyée, la prochaine après une remontée du prix".to_owned()
        }
        (Lang::En, WatchState::OutOfStock) => "out of stock".to_owned(),
        (Lang::Fr, WatchState::OutOfStock) => "en rupture de stock".to_owned(),
        (Lang::En, WatchState::CannotRead { since_ms }) => {
            format!("price unreadable since {}", format_date(lang, since_ms))
        }
        (Lang::Fr, WatchState::CannotRead { since_ms }) => {
            format!("prix illisible depuis le {}", format_date(lang, since_ms))
        }
        (Lang::En, WatchState::OtherCurrency { seen }) => {
            format!("now priced in {seen}, not compared")
        }
        (Lang::Fr, WatchState::OtherCurrency { seen }) => {
            format!("affichée en {seen} désormais, non comparée")
        }
    });
    format!("{head}\n   {}", parts.join(" · "))
}

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

/// A text sparkline, one bar per value (evenly resampled to [`SPARKLINE_WIDTH`]), scaled
/// between the lowest and the highest value; equal values give a flat middle line.
pub fn sparkline(values: &[Decimal]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let (Some(&min), Some(&max)) = (values.iter().min(), values.iter().max()) else {
        return String::new();
    };
    let range = max.checked_sub(min).unwrap_or(Decimal::ZERO);
    let top = Decimal::from(BARS.len() - 1);
    resample(values, SPARKLINE_WIDTH)
        .map(|v| {
            if range.is_zero() {
                return BARS[3];
            }
            let level = v
                .checked_sub(min)
                .and_then(|d| d.checked_div(range))
                .and_then(|r| r.checked_mul(top))
                .map(|l| l.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero))
                .and_then(|l| l.to_usize())
                .unwrap_or(0);
            BARS[level.min(BARS.len() - 1)]
        })
        .collect()
}

const DAY_MS: u64 = 86_400_000;

const MONTHS_EN: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

// The CLDR abbreviations, which keep the short months whole.
const MONTHS_FR: [&str; 12] = [
    "janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.",
    "déc.",
];

fn lang_tag(lang: Lang) -> &'static str {
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

/// A rule's number as the replies write it (`149.99`, `20`), for the pending line, which
/// has no currency yet.
fn plain_number(lang: Lang, d: Decimal) -> String {
    let s = d.normalize().to_string();
    match lang {
        Lang::En => s,
        Lang::Fr => s.replace('.', ","),
    }
}

fn percent_text(lang: Lang, p: Decimal) -> String {
    let mut p = p.round_dp_with_strategy(1, RoundingStrategy::MidpointAwayFromZero);
    p.rescale(1);
    match lang {
        Lang::En => format!("{p}%"),
        Lang::Fr => format!("{} %", p.to_string().replace('.', ",")),
    }
}

fn number_text(lang: Lang, number: usize) -> String {
    match lang {
        Lang::En => format!("#{number}"),
        Lang::Fr => format!("n°{number}"),
    }
}

fn stop_hint(lang: Lang, number: usize) -> String {
    match lang {
        Lang::En => format!("To stop watching it, type `unwatch {number}`."),
        Lang::Fr => format!("Pour ne plus le surveiller, tapez `unwatch {number}`."),
    }
}

/// "now €149.00, down 25.0% from €199.00 on 1 Nov 2026", or the target for a `below` watch
/// whose price did not fall from its first one.
fn alert_change(lang: Lang, item: &AlertItem<'_>) -> String {
    let now = format_amount(lang, item.price, item.currency);
    let was = format_amount(lang, item.reference.amount, item.reference.currency);
    let when = format_date(lang, item.reference.at_ms);
    let line = format_amount(lang, item.line, item.currency);
    let pct = percent_text(lang, item.drop_percent);
    match (lang, item.drop_percent > Decimal::ZERO) {
        (Lang::En, true) => format!("now {now}, down {pct} from {was} on {when}"),
        (Lang::Fr, true) => {
            format!("maintenant à {now}, en baisse de {pct} par rapport à {was} le {when}")
        }
        (Lang::En, false) => format!("now {now}, at or below your target of {line}"),
        (Lang::Fr, false) => {
            format!("maintenant à {now}, au niveau de votre objectif de {line} ou en dessous")
        }
    }
}

fn alert_card(lang: Lang, items: &[AlertItem<'_>], fallback: &str) -> Value {
    let heading = match (lang, items.len()) {
        (Lang::En, 1) => "Price alert".to_owned(),
        (Lang::Fr, 1) => "Alerte prix".to_owned(),
        (Lang::En, k) => format!("{k} price alerts"),
        (Lang::Fr, k) => format!("{k} alertes de prix"),
    };
    let (l_now, l_first, l_drop, l_target, l_open, l_stop) = match lang {
        Lang::En => (
            "Now",
            "First price",
            "Drop",
            "Target",
            "Open product",
            "Stop watching",
        ),
        Lang::Fr => (
            "Maintenant",
            "Premier prix",
            "Baisse",
            "Objectif",
            "Voir le produit",
            "Ne plus surveiller",
        ),
    };
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": heading,
        "weight": "Bolder",
        "size": "Medium",
        "wrap": true,
    })];
    for item in items {
        let title = format!(
            "{} ({})",
            plain_title(item.product),
            number_text(lang, item.number)
        );
        let mut facts = vec![
            json!({"title": l_now, "value": format_amount(lang, item.price, item.currency)}),
            json!({"title": l_first, "value": format!(
                "{} ({})",
                format_amount(lang, item.reference.amount, item.reference.currency),
                format_date(lang, item.reference.at_ms),
            )}),
        ];
        facts.push(if item.drop_percent > Decimal::ZERO {
            json!({"title": l_drop, "value": percent_text(lang, item.drop_percent)})
        } else {
            json!({"title": l_target, "value": format_amount(lang, item.line, item.currency)})
        });
        let command = format!("unwatch {}", item.number);
        body.push(json!({
            "type": "Container",
            "separator": true,
            "spacing": "Medium",
            "items": [
                {
                    "type": "RichTextBlock",
                    "inlines": [{"type": "TextRun", "text": title, "weight": "Bolder"}],
                },
                {"type": "FactSet", "facts": facts},
                {
                    "type": "ActionSet",
                    "actions": [
                        {"type": "Action.OpenUrl", "title": l_open, "url": item.product.url},
                        {
                            "type": "Action.Submit",
                            "title": l_stop,
                            "data": {
                                "msteams": {"type": "imBack", "value": command},
                                "command": command,
                            },
                        },
                    ],
                },
            ],
        }));
    }
    json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "lang": lang_tag(lang),
        "fallbackText": fallback,
        "body": body,
    })
}

/// The product in Markdown: the escaped title linking to the URL, or the bare URL.
fn product_md(p: ProductView<'_>) -> String {
    match p.title.map(clean_title).filter(|t| !t.is_empty()) {
        Some(t) => format!("[{}]({})", escape_markdown(&t), link_target(p.url)),
        None => p.url.to_owned(),
    }
}

/// The product for a card's plain-text run: the cleaned title, or the URL.
fn plain_title(p: ProductView<'_>) -> String {
    p.title
        .map(clean_title)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| p.url.to_owned())
}

fn clean_title(title: &str) -> String {
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
fn clean(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn escape_markdown(s: &str) -> String {
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

/// Up to `width` values evenly spread over `values`, the first and the last included.
fn resample(values: &[Decimal], width: usize) -> impl Iterator<Item = Decimal> + '_ {
    let n = values.len();
    let count = n.min(width);
    (0..count).filter_map(move |i| {
        let idx = if n <= width || count < 2 {
            i
        } else {
            (i * (n - 1) + (count - 1) / 2) / (count - 1)
        };
        values.get(idx).copied()
    })
}

fn days_since_epoch(ms: u64) -> i64 {
    // u64 milliseconds are at most 2.1e11 days, well inside i64.
    i64::try_from(ms / DAY_MS).unwrap_or(i64::MAX)
}

fn format_date_time(lang: Lang, ms: u64) -> String {
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
    use std::str::FromStr;

    use crate::inbound::activity::{ChannelAccount, ConversationAccount};

    const NOV_1: u64 = 1_793_491_200_000;
    const NOV_20: u64 = 1_795_132_800_000;
    const NOV_24: u64 = 1_795_478_400_000;
    const NOV_25: u64 = 1_795_564_800_000;
    const LANGS: [Lang; 2] = [Lang::En, Lang::Fr];

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn cur(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    fn eur() -> Currency {
        cur("EUR")
    }

    fn product(title: Option<&'static str>) -> ProductView<'static> {
        ProductView {
            url: "https://shop.example/p/1",
            title,
        }
    }

    fn reference(amount: &str) -> Reference {
        Reference {
            amount: dec(amount),
            currency: eur(),
            at_ms: NOV_1,
        }
    }

    fn item(number: usize, title: &'static str, url: &'static str) -> AlertItem<'static> {
        AlertItem {
            number,
            product: ProductView {
                url,
                title: Some(title),
            },
            reference: reference("199"),
            price: dec("149.25"),
            currency: eur(),
            line: dec("159.20"),
            drop_percent: dec("25.0"),
            at_ms: NOV_25,
        }
    }

    fn conversation(channel: &str, locale: Option<&str>) -> ConversationReference {
        ConversationReference {
            channel_id: channel.to_owned(),
            service_url: "https://smba.example/".to_owned(),
            conversation: ConversationAccount {
                id: "c1".to_owned(),
                ..Default::default()
            },
            user: Some(ChannelAccount {
                id: "u1".to_owned(),
                ..Default::default()
            }),
            bot: ChannelAccount {
                id: "b1".to_owned(),
                ..Default::default()
            },
            locale: locale.map(str::to_owned),
        }
    }

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
    fn sparklines() {
        let v = |xs: &[&str]| xs.iter().map(|x| dec(x)).collect::<Vec<_>>();
        assert_eq!(sparkline(&[]), "");
        assert_eq!(sparkline(&v(&["5"])), "▄");
        assert_eq!(sparkline(&v(&["5", "5.00", "5"])), "▄▄▄");
        assert_eq!(
            sparkline(&v(&["1", "2", "3", "4", "5", "6", "7", "8"])),
            "▁▂▃▄▅▆▇█"
        );
        assert_eq!(sparkline(&v(&["199", "179", "159", "149"])), "█▅▂▁");
        let many: Vec<Decimal> = (0..100).map(Decimal::from).collect();
        let line = sparkline(&many);
        assert_eq!(line.chars().count(), SPARKLINE_WIDTH);
        assert!(line.starts_with('▁') && line.ends_with('█'));
        let chars: Vec<char> = line.chars().collect();
        assert!(chars.windows(2).all(|w| w[0] <= w[1]), "{line}");
        let exact: Vec<Decimal> = (0..24).map(|i| Decimal::from(i % 2)).collect();
        assert_eq!(sparkline(&exact), "▁█".repeat(12));
        assert_eq!(sparkline(&v(&["1"; 25])), "▄".repeat(24));
        let falling: Vec<Decimal> = (0..50).rev().map(Decimal::from).collect();
        let line = sparkline(&falling);
        assert!(line.starts_with('█') && line.ends_with('▁'), "{line}");
    }

    #[test]
    fn cards_render_only_on_card_channels() {
        for c in ["msteams", "webchat", "directline", "emulator", "MSTeams"] {
            assert!(renders_cards(c), "{c}");
        }
        for c in ["slack", "telegram", "facebook", "sms", ""] {
            assert!(!renders_cards(c), "{c}");
        }
    }

    #[test]
    fn first_price_states_price_and_line() {
        let r = reference("199");
        let drop = Rule::Drop { percent: dec("20") };
        let m = first_price(
            Lang::En,
            3,
            product(Some("Kettle")),
            &r,
            dec("159.20"),
            &drop,
        );
        assert_eq!(
            m.text,
            "Watching [Kettle](https://shop.example/p/1) (#3): €199.00 now. \
             I will tell you when it is €159.20 or less, 20% below this price."
        );
        assert!(m.card.is_none());
        let m = first_price(Lang::Fr, 3, product(None), &r, dec("159.20"), &drop);
        assert_eq!(
            m.text,
            "Je surveille https://shop.example/p/1 (n°3) : 199,00\u{a0}€ actuellement. \
             Je vous préviendrai quand il sera à 159,20\u{a0}€ ou moins, soit 20 % de moins que ce prix."
        );
        let below = Rule::Below { amount: dec("150") };
        let m = first_price(Lang::En, 1, product(None), &r, dec("150"), &below);
        assert!(
            m.text
                .ends_with("I will tell you when it is €150.00 or less."),
            "{}",
            m.text
        );
        let m = first_price(Lang::Fr, 1, product(None), &r, dec("150"), &below);
        assert!(
            m.text.ends_with("quand il sera à 150,00\u{a0}€ ou moins."),
            "{}",
            m.text
        );
        let met = Rule::Below { amount: dec("250") };
        let m = first_price(Lang::En, 1, product(None), &r, dec("250"), &met);
        assert!(
            m.text
                .contains("already at or below your target of €250.00"),
            "{}",
            m.text
        );
        let m = first_price(Lang::Fr, 1, product(None), &r, dec("250"), &met);
        assert!(
            m.text
                .contains("déjà au niveau de votre objectif de 250,00\u{a0}€"),
            "{}",
            m.text
        );
    }

    #[test]
    fn first_fetch_failure_says_why_and_what_to_do() {
        for lang in LANGS {
            let m = first_fetch_failed(
                lang,
                "https://shop.example/p/1",
                "the site took too\nlong to answer",
            );
            assert!(m.text.contains("https://shop.example/p/1"), "{}", m.text);
            assert!(
                m.text.contains("the site took too long to answer"),
                "{}",
                m.text
            );
            assert!(m.text.contains("`watch <"), "{}", m.text);
            assert!(m.card.is_none());
        }
        assert!(first_fetch_failed(Lang::En, "u", "r")
            .text
            .contains("not keeping this watch"));
        assert!(first_fetch_failed(Lang::Fr, "u", "r")
            .text
            .contains("ne garde pas cette surveillance"));
    }

    #[test]
    fn one_alert_is_one_message_with_a_card() {
        let it = item(3, "Kettle", "https://shop.example/p/1");
        let m = alerts(Lang::En, &[it]).unwrap();
        assert_eq!(
            m.text,
            "Price alert: [Kettle](https://shop.example/p/1) (#3) is now €149.25, \
             down 25.0% from €199.00 on 1 Nov 2026. To stop watching it, type `unwatch 3`."
        );
        let m = alerts(Lang::Fr, &[it]).unwrap();
        assert_eq!(
            m.text,
            "Alerte prix : [Kettle](https://shop.example/p/1) (n°3) est maintenant à 149,25\u{a0}€, \
             en baisse de 25,0 % par rapport à 199,00\u{a0}€ le 1 nov. 2026. \
             Pour ne plus le surveiller, tapez `unwatch 3`."
        );
        let card = m.card.unwrap();
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.4");
        assert_eq!(card["lang"], "fr");
        assert!(alerts(Lang::En, &[]).is_none());
    }

    #[test]
    fn a_below_alert_without_a_drop_names_the_target() {
        let mut it = item(2, "Kettle", "https://shop.example/p/1");
        it.drop_percent = dec("-5.0");
        it.line = dec("250");
        let m = alerts(Lang::En, &[it]).unwrap();
        assert!(
            m.text
                .contains("now €149.25, at or below your target of €250.00."),
            "{}",
            m.text
        );
        assert!(!m.text.contains("down"));
        let m = alerts(Lang::Fr, &[it]).unwrap();
        assert!(
            m.text
                .contains("au niveau de votre objectif de 250,00\u{a0}€"),
            "{}",
            m.text
        );
        let facts = &m.card.unwrap()["body"][1]["items"][1]["facts"];
        assert_eq!(facts[2]["title"], "Objectif");
    }

    #[test]
    fn a_digest_lists_every_alert_with_its_own_stop_hint() {
        let items = [
            item(1, "Kettle", "https://a.example/1"),
            item(4, "Toaster", "https://b.example/2"),
            item(7, "Blender", "https://c.example/3"),
        ];
        for lang in LANGS {
            let m = alerts(lang, &items).unwrap();
            assert!(m.text.starts_with('3'), "{}", m.text);
            for it in &items {
                assert!(m.text.contains(it.product.title.unwrap()), "{}", m.text);
                assert!(m.text.contains(it.product.url));
                assert_eq!(
                    m.text.matches(&format!("`unwatch {}`", it.number)).count(),
                    1,
                    "{}",
                    m.text
                );
            }
            assert_eq!(m.text.matches("unwatch").count(), 3);
            assert_eq!(m.text.lines().filter(|l| l.starts_with("- ")).count(), 3);
            let card = m.card.unwrap();
            assert_eq!(card["body"].as_array().unwrap().len(), 4);
        }
    }

    #[test]
    fn alert_cards_have_both_buttons_and_go_only_to_card_channels() {
        let items = [
            item(2, "Kettle", "https://a.example/1"),
            item(5, "Toaster", "https://b.example/2"),
        ];
        let m = alerts(Lang::En, &items).unwrap();
        let card = m.card.clone().unwrap();
        for (i, it) in items.iter().enumerate() {
            let container = &card["body"][i + 1];
            let actions = container["items"][2]["actions"].as_array().unwrap();
            assert_eq!(actions.len(), 2);
            assert_eq!(actions[0]["type"], "Action.OpenUrl");
            assert_eq!(actions[0]["title"], "Open product");
            assert_eq!(actions[0]["url"], it.product.url);
            assert_eq!(actions[1]["type"], "Action.Submit");
            assert_eq!(actions[1]["title"], "Stop watching");
            let command = format!("unwatch {}", it.number);
            assert_eq!(actions[1]["data"]["msteams"]["type"], "imBack");
            assert_eq!(actions[1]["data"]["msteams"]["value"], command.as_str());
            assert_eq!(actions[1]["data"]["command"], command.as_str());
            let facts = container["items"][1]["facts"].as_array().unwrap();
            assert_eq!(facts[0]["value"], "€149.25");
            assert_eq!(facts[1]["value"], "€199.00 (1 Nov 2026)");
            assert_eq!(facts[2]["value"], "25.0%");
        }
        let fr = alerts(Lang::Fr, &items).unwrap().card.unwrap();
        let actions = &fr["body"][1]["items"][2]["actions"];
        assert_eq!(actions[0]["title"], "Voir le produit");
        assert_eq!(actions[1]["title"], "Ne plus surveiller");

        for channel in ["msteams", "webchat", "directline", "emulator"] {
            let a = into_activity(m.clone(), &conversation(channel, None), Lang::En);
            assert_eq!(a.attachments.len(), 1, "{channel}");
            assert_eq!(a.attachments[0].content_type, ADAPTIVE_CARD);
            assert_eq!(a.attachments[0].content, card);
        }
        for channel in ["slack", "telegram", "facebook", "other"] {
            let a = into_activity(m.clone(), &conversation(channel, None), Lang::En);
            assert!(a.attachments.is_empty(), "{channel}");
            assert_eq!(a.text.as_deref(), Some(m.text.as_str()));
        }
    }

    #[test]
    fn activities_carry_markdown_and_a_locale() {
        let m = Message::text("hello".to_owned());
        let a = into_activity(m.clone(), &conversation("msteams", Some("fr-CA")), Lang::Fr);
        assert_eq!(a.text.as_deref(), Some("hello"));
        assert_eq!(a.text_format.as_deref(), Some("markdown"));
        assert_eq!(a.locale.as_deref(), Some("fr-CA"));
        assert!(a.attachments.is_empty());
        assert_eq!(a.conversation.id, "c1");
        assert_eq!(a.recipient.unwrap().id, "u1");
        let a = into_activity(m, &conversation("slack", None), Lang::Fr);
        assert_eq!(a.locale.as_deref(), Some("fr"));
    }

    #[test]
    fn titles_cannot_break_the_markdown() {
        let p = ProductView {
            url: "https://shop.example/p/(1)",
            title: Some("*Super* _deal_ [2 for 1]](https://evil.example) `x` <b>\\\n  now"),
        };
        let md = product_md(p);
        assert_eq!(
            md,
            "[\\*Super\\* \\_deal\\_ \\[2 for 1\\]\\](https://evil.example) \\`x\\` \\<b\\>\\\\ now]\
             (https://shop.example/p/%281%29)"
        );
        let it = AlertItem {
            product: p,
            ..item(1, "", "")
        };
        let m = alerts(Lang::En, &[it]).unwrap();
        assert!(m.text.contains(&md));
        // The card gets the title as plain text in a TextRun, never Markdown.
        let run = &m.card.unwrap()["body"][1]["items"][0]["inlines"][0];
        assert_eq!(run["type"], "TextRun");
        assert_eq!(
            run["text"],
            "*Super* _deal_ [2 for 1]](https://evil.example) `x` <b>\\ now (#1)"
        );
        let long = "a".repeat(300);
        let t = clean_title(&long);
        assert_eq!(t.chars().count(), TITLE_MAX_CHARS);
        assert!(t.ends_with('…'));
        assert_eq!(product_md(product(Some("   "))), "https://shop.example/p/1");
    }

    #[test]
    fn cannot_read_and_readable_again() {
        let p = product(Some("Kettle"));
        let m = cannot_read(
            Lang::En,
            3,
            p,
            NOV_24,
            "the site answered 500 Internal Server Error",
        );
        assert_eq!(
            m.text,
            "I have not been able to read the price of [Kettle](https://shop.example/p/1) (#3) \
             since 24 Nov 2026: the site answered 500 Internal Server Error. \
             I keep trying and will tell you when it works again. \
             To stop watching it, type `unwatch 3`."
        );
        let m = cannot_read(Lang::Fr, 3, p, NOV_24, "no price found: ambiguous_currency");
        assert!(
            m.text
                .contains("depuis le 24 nov. 2026 : no price found: ambiguous\\_currency."),
            "{}",
            m.text
        );
        assert!(m.text.contains("`unwatch 3`"));

        let m = readable_again(Lang::En, 3, p, Some((dec("149"), eur())));
        assert_eq!(
            m.text,
            "Good news: I can read the price of [Kettle](https://shop.example/p/1) (#3) again. It is €149.00 now."
        );
        let m = readable_again(Lang::Fr, 3, p, Some((dec("149"), eur())));
        assert!(
            m.text.contains("Il est à 149,00\u{a0}€ actuellement."),
            "{}",
            m.text
        );
        assert!(readable_again(Lang::En, 3, p, None)
            .text
            .contains("read the page of"));
        assert!(readable_again(Lang::Fr, 3, p, None)
            .text
            .contains("lire la page de"));
    }

    #[test]
    fn currency_changes_name_both_currencies_and_the_way_out() {
        for lang in LANGS {
            let m = currency_changed(lang, 2, product(Some("Kettle")), eur(), cur("USD"));
            assert!(
                m.text.contains("EUR") && m.text.contains("USD"),
                "{}",
                m.text
            );
            assert!(m.text.contains("`unwatch 2`"), "{}", m.text);
            assert!(m.text.starts_with("[Kettle](https://shop.example/p/1)"));
        }
    }

    fn point(at_ms: u64, amount: &str, currency: &str) -> ChangePoint {
        ChangePoint {
            at_ms,
            amount: dec(amount),
            currency: cur(currency),
        }
    }

    #[test]
    fn history_shows_lowest_highest_latest_and_a_sparkline() {
        let points = [
            point(NOV_1, "199", "EUR"),
            point(NOV_20, "149", "EUR"),
            point(NOV_24, "159", "EUR"),
        ];
        let p = product(Some("Kettle"));
        assert_eq!(
            history(Lang::En, 3, p, &points, NOV_25),
            "Price history of [Kettle](https://shop.example/p/1) (#3) since 1 Nov 2026 (24 days):\n\n\
             `█▁▂`\n\n\
             - Lowest: €149.00 on 20 Nov 2026\n\
             - Highest: €199.00 on 1 Nov 2026\n\
             - Latest: €159.00, since 24 Nov 2026"
        );
        assert_eq!(
            history(Lang::Fr, 3, p, &points, NOV_25),
            "Historique du prix de [Kettle](https://shop.example/p/1) (n°3) depuis le 1 nov. 2026 (24 jours) :\n\n\
             `█▁▂`\n\n\
             - Le plus bas : 149,00\u{a0}€ le 20 nov. 2026\n\
             - Le plus haut : 199,00\u{a0}€ le 1 nov. 2026\n\
             - Le dernier : 159,00\u{a0}€, depuis le 24 nov. 2026"
        );
        // Out of order input is sorted; one point on the day itself has no span.
        let one = history(Lang::En, 1, p, &[point(NOV_25, "10", "EUR")], NOV_25 + 1);
        assert!(one.contains("since 25 Nov 2026:"), "{one}");
        assert!(one.contains("`▄`"));
        let shuffled = [points[2], points[0], points[1]];
        assert_eq!(
            history(Lang::En, 3, p, &shuffled, NOV_25),
            history(Lang::En, 3, p, &points, NOV_25)
        );
    }

    #[test]
    fn history_leaves_out_other_currencies() {
        let points = [
            point(NOV_1, "199", "EUR"),
            point(NOV_20, "139", "GBP"),
            point(NOV_20 + 1, "120", "EUR"),
            point(NOV_24, "210", "USD"),
            point(NOV_25, "205", "USD"),
        ];
        let p = product(None);
        let en = history(Lang::En, 2, p, &points, NOV_25);
        assert!(en.contains("since 24 Nov 2026 (1 day)"), "{en}");
        assert!(en.contains("Lowest: US$205.00"), "{en}");
        assert!(en.contains("Highest: US$210.00"), "{en}");
        assert!(!en.contains('€') && !en.contains('£'), "{en}");
        assert!(
            en.ends_with(
                "3 prices in EUR, GBP are left out: they cannot be compared with prices in USD."
            ),
            "{en}"
        );
        let fr = history(Lang::Fr, 2, p, &points[1..], NOV_25);
        assert!(
            fr.ends_with(
                "2 prix en EUR, GBP sont écartés : ils ne se comparent pas aux prix en USD."
            ),
            "{fr}"
        );
        let fr = history(Lang::Fr, 2, p, &points[2..], NOV_25);
        assert!(
            fr.ends_with("1 prix en EUR est écarté : il ne se compare pas aux prix en USD."),
            "{fr}"
        );
        let en = history(Lang::En, 2, p, &points[2..], NOV_25);
        assert!(
            en.ends_with("1 price in EUR is left out: it cannot be compared with prices in USD."),
            "{en}"
        );
    }

    #[test]
    fn empty_history_says_no_price_yet() {
        let en = history(Lang::En, 4, product(None), &[], NOV_25);
        assert_eq!(
            en,
            "No price has been recorded yet for #4 (https://shop.example/p/1). \
             I will have its history once I have read its price."
        );
        let fr = history(Lang::Fr, 4, product(Some("Kettle")), &[], NOV_25);
        assert!(
            fr.starts_with("Aucun prix n'est encore enregistré pour n°4 ([Kettle]("),
            "{fr}"
        );
    }

    #[test]
    fn change_points_store_decimals_and_codes_as_strings() {
        let p = point(NOV_1, "159.20", "EUR");
        let json = serde_json::to_value(p).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"at_ms": NOV_1, "amount": "159.20", "currency": "EUR"})
        );
        assert_eq!(serde_json::from_value::<ChangePoint>(json).unwrap(), p);
        let bad = serde_json::json!({"at_ms": 1, "amount": "1", "currency": "E1"});
        assert!(serde_json::from_value::<ChangePoint>(bad).is_err());
    }

    fn entry<'a>(rule: &'a Rule, reference: Option<Reference>, state: WatchState) -> ListEntry<'a> {
        ListEntry {
            number: 3,
            product: product(Some("Kettle")),
            rule,
            added_ms: NOV_1,
            current: Some((dec("179"), eur())),
            reference,
            last_check_ms: Some(NOV_25 + 50_700_000),
            state,
        }
    }

    #[test]
    fn list_lines_show_prices_line_check_and_state() {
        let rule = Rule::Drop { percent: dec("20") };
        let e = entry(&rule, Some(reference("199")), WatchState::Watching);
        assert_eq!(
            list_line(Lang::En, &e),
            "3. [Kettle](https://shop.example/p/1)\n   now €179.00 · first price €199.00 (1 Nov 2026) · \
             alert at €159.20 or less · checked 25 Nov 2026, 14:05 UTC · watching"
        );
        assert_eq!(
            list_line(Lang::Fr, &e),
            "3. [Kettle](https://shop.example/p/1)\n   actuellement 179,00\u{a0}€ · premier prix 199,00\u{a0}€ (1 nov. 2026) · \
             alerte à 159,20\u{a0}€ ou moins · vérifiée le 25 nov. 2026 à 14:05 UTC · active"
        );
        let states = [
            (WatchState::Alerted, "alert sent", "alerte envoyée"),
            (WatchState::OutOfStock, "out of stock", "rupture de stock"),
            (
                WatchState::CannotRead { since_ms: NOV_24 },
                "price unreadable since 24 Nov 2026",
                "prix illisible depuis le 24 nov. 2026",
            ),
            (
                WatchState::OtherCurrency { seen: cur("USD") },
                "now priced in USD",
                "affichée en USD",
            ),
        ];
        for (state, en, fr) in states {
            let e = entry(&rule, Some(reference("199")), state);
            let line = list_line(Lang::En, &e);
            assert!(line.rsplit(" · ").next().unwrap().starts_with(en), "{line}");
            assert!(
                list_line(Lang::Fr, &e).contains(fr),
                "{}",
                list_line(Lang::Fr, &e)
            );
        }
        let mut bare = entry(&rule, Some(reference("199")), WatchState::Watching);
        bare.current = None;
        bare.last_check_ms = None;
        assert_eq!(
            list_line(Lang::En, &bare),
            "3. [Kettle](https://shop.example/p/1)\n   first price €199.00 (1 Nov 2026) · alert at €159.20 or less · watching"
        );
    }

    #[test]
    fn a_watch_without_its_first_price_is_pending() {
        let rule = Rule::Below {
            amount: dec("149.99"),
        };
        let mut e = entry(&rule, None, WatchState::Watching);
        e.product = product(None);
        assert_eq!(
            list_line(Lang::En, &e),
            "3. https://shop.example/p/1\n   waiting for its first price · alert on a price of 149.99 or less · added 1 Nov 2026"
        );
        assert_eq!(
            list_line(Lang::Fr, &e),
            "3. https://shop.example/p/1\n   en attente de son premier prix · alerte pour un prix de 149,99 ou moins · ajoutée le 1 nov. 2026"
        );
    }

    #[test]
    fn list_has_a_header_or_says_there_is_nothing() {
        let rule = Rule::Drop { percent: dec("15") };
        let a = entry(&rule, Some(reference("100")), WatchState::Watching);
        let b = ListEntry {
            number: 4,
            ..entry(&rule, None, WatchState::Watching)
        };
        let en = list(Lang::En, &[a, b]);
        assert!(en.starts_with("Your watches (2):\n\n3. "), "{en}");
        assert!(en.contains("alert at €85.00 or less"), "{en}");
        assert!(
            en.contains("\n4. ") && en.contains("a drop of 15% or more"),
            "{en}"
        );
        let fr = list(Lang::Fr, &[a, b]);
        assert!(fr.starts_with("Vos surveillances (2) :\n\n3. "), "{fr}");
        assert!(fr.contains("une baisse de 15 % ou plus"), "{fr}");
        assert_eq!(list(Lang::En, &[]), replies::no_watches(Lang::En));
        assert_eq!(list(Lang::Fr, &[]), replies::no_watches(Lang::Fr));
    }
}
