//! The replies to `list` and `history <n>`, in English and French. They answer a user's
//! turn, like [`crate::speech::replies`], but unlike its short acknowledgements they render
//! a watch's stored state (prices, dates, the alert line, a sparkline) with the same
//! formatting as the proactive messages ([`crate::speech::format`]); kept apart, `replies`
//! stays the sentences of the commands and this file the two long views of the watches.
//! Pure functions: plain structs in, text out.

use std::fmt::Write as _;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

use crate::domain::Reference;
use crate::domain::{Rule, Stock};
use crate::price::Currency;
use crate::speech::format::{
    format_amount, format_date, format_date_time, number_text, product_md, DAY_MS,
};
use crate::speech::notices::ProductView;
use crate::speech::replies::{self, Lang};
use crate::watch::trigger::alert_line;

/// The most characters of a sparkline: wider lines wrap on a phone.
pub const SPARKLINE_WIDTH: usize = 24;

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
    /// A restock watch's availability; `None` while it is pending (and for price watches).
    pub stock: Option<Stock>,
    /// Paused by the user: shown on a line of its own, whatever the state says.
    pub on_hold: bool,
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
    /// A restock watch whose product is in stock and was told (or was in stock from the
    /// start): the next alert comes after it runs out.
    InStock,
    /// The price has not been readable since then.
    CannotRead { since_ms: u64 },
    /// The page now prices in another currency, so nothing is compared.
    OtherCurrency { seen: Currency },
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
    let spark = sparkline(&amounts);
    let (lo, lo_d) = (money(&lowest), date(&lowest));
    let (hi, hi_d) = (money(&highest), date(&highest));
    let (la, la_d) = (money(&latest), date(&latest));
    let mut out = match lang {
        Lang::En => format!(
            "Price history of {p} ({n}) since {since}{span}:\n\n`{spark}`\n\n\
             - Lowest: {lo} on {lo_d}\n- Highest: {hi} on {hi_d}\n- Latest: {la}, since {la_d}"
        ),
        Lang::Fr => format!(
            "Historique du prix de {p} ({n}) depuis le {since}{span} :\n\n`{spark}`\n\n\
             - Le plus bas : {lo} le {lo_d}\n- Le plus haut : {hi} le {hi_d}\n- Le dernier : {la}, depuis le {la_d}"
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

/// One watch in `list`: the product, then its current and first price, the
/// alert line, the last check and its state; a watch without its first price is pending.
pub fn list_line(lang: Lang, e: &ListEntry<'_>) -> String {
    let line = watch_line(lang, e);
    if !e.on_hold {
        return line;
    }
    let n = e.number;
    match lang {
        Lang::En => format!("{line}\n   ⏸ paused: not checked, no alerts until `resume {n}`"),
        Lang::Fr => format!("{line}\n   ⏸ en pause : ni vérification ni alerte avant `resume {n}`"),
    }
}

/// A watch's `list` entry without its pause mark.
fn watch_line(lang: Lang, e: &ListEntry<'_>) -> String {
    let head = format!("{}. {}", e.number, product_md(e.product));
    if *e.rule == Rule::Restock {
        return format!("{head}\n   {}", restock_parts(lang, e).join(" · "));
    }
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
        (Lang::En, WatchState::InStock) => "in stock".to_owned(),
        (Lang::Fr, WatchState::InStock) => "en stock".to_owned(),
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

/// A restock watch in `list`: its price if the page shows one, what it waits for, the
/// last check and whether the product is in stock.
fn restock_parts(lang: Lang, e: &ListEntry<'_>) -> Vec<String> {
    if e.stock.is_none() && !matches!(e.state, WatchState::CannotRead { .. }) {
        return match lang {
            Lang::En => vec![
                "waiting for its first check".to_owned(),
                "alert on a return to stock".to_owned(),
                format!("added {}", format_date(lang, e.added_ms)),
            ],
            Lang::Fr => vec![
                "en attente de sa première vérification".to_owned(),
                "alerte pour un retour en stock".to_owned(),
                format!("ajoutée le {}", format_date(lang, e.added_ms)),
            ],
        };
    }
    let mut parts = Vec::with_capacity(4);
    if let Some((amount, currency)) = e.current {
        parts.push(match lang {
            Lang::En => format!("now {}", format_amount(lang, amount, currency)),
            Lang::Fr => format!("actuellement {}", format_amount(lang, amount, currency)),
        });
    }
    parts.push(match lang {
        Lang::En => "alert when back in stock".to_owned(),
        Lang::Fr => "alerte au retour en stock".to_owned(),
    });
    if let Some(at) = e.last_check_ms {
        parts.push(match lang {
            Lang::En => format!("checked {}", format_date_time(lang, at)),
            Lang::Fr => format!("vérifiée le {}", format_date_time(lang, at)),
        });
    }
    parts.push(match (lang, e.state) {
        (Lang::En, WatchState::OutOfStock) => {
            "out of stock, I will tell you when it is back".to_owned()
        }
        (Lang::Fr, WatchState::OutOfStock) => {
            "en rupture de stock, je vous préviendrai de son retour".to_owned()
        }
        (Lang::En, WatchState::InStock) => "in stock, the next alert after it runs out".to_owned(),
        (Lang::Fr, WatchState::InStock) => {
            "en stock, la prochaine alerte après une rupture".to_owned()
        }
        (Lang::En, WatchState::CannotRead { since_ms }) => {
            format!("page unreadable since {}", format_date(lang, since_ms))
        }
        (Lang::Fr, WatchState::CannotRead { since_ms }) => {
            format!("page illisible depuis le {}", format_date(lang, since_ms))
        }
        (Lang::En, _) => "back in stock, waiting for confirmation".to_owned(),
        (Lang::Fr, _) => "de retour en stock, en attente de confirmation".to_owned(),
    });
    parts
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speech::test_support::{
        cur, dec, eur, product, reference, NOV_1, NOV_20, NOV_24, NOV_25,
    };

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
            stock: None,
            on_hold: false,
        }
    }

    #[test]
    fn a_paused_watch_says_so_under_its_line() {
        let rule = Rule::Drop { percent: dec("15") };
        let mut e = entry(&rule, Some(reference("100")), WatchState::Watching);
        let running = list_line(Lang::En, &e);
        assert!(!running.contains("paused"), "{running}");
        e.on_hold = true;
        let en = list_line(Lang::En, &e);
        assert_eq!(
            en,
            format!("{running}\n   ⏸ paused: not checked, no alerts until `resume 3`")
        );
        let fr = list_line(Lang::Fr, &e);
        assert!(
            fr.ends_with("\n   ⏸ en pause : ni vérification ni alerte avant `resume 3`"),
            "{fr}"
        );
    }

    #[test]
    fn restock_watches_show_what_they_wait_for() {
        let rule = Rule::Restock;
        let mut e = entry(&rule, None, WatchState::Watching);
        assert_eq!(
            list_line(Lang::En, &e),
            "3. [Kettle](https://shop.example/p/1)\n   waiting for its first check · alert on a return to stock · added 1 Nov 2026"
        );
        e.stock = Some(Stock::OutOfStock);
        e.state = WatchState::OutOfStock;
        e.current = None;
        assert_eq!(
            list_line(Lang::En, &e),
            "3. [Kettle](https://shop.example/p/1)\n   alert when back in stock · checked 25 Nov 2026, 14:05 UTC · \
             out of stock, I will tell you when it is back"
        );
        assert_eq!(
            list_line(Lang::Fr, &e),
            "3. [Kettle](https://shop.example/p/1)\n   alerte au retour en stock · vérifiée le 25 nov. 2026 à 14:05 UTC · \
             en rupture de stock, je vous préviendrai de son retour"
        );
        e.stock = Some(Stock::InStock);
        e.state = WatchState::InStock;
        e.current = Some((dec("179"), eur()));
        assert_eq!(
            list_line(Lang::En, &e),
            "3. [Kettle](https://shop.example/p/1)\n   now €179.00 · alert when back in stock · checked 25 Nov 2026, 14:05 UTC · \
             in stock, the next alert after it runs out"
        );
        assert!(
            list_line(Lang::Fr, &e).ends_with("en stock, la prochaine alerte après une rupture")
        );
        e.state = WatchState::CannotRead { since_ms: NOV_24 };
        assert!(list_line(Lang::En, &e).ends_with("page unreadable since 24 Nov 2026"));
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
