//! What the bot says on its own, in English and French: the first-price follow-up, alerts
//! and digests (text, and an Adaptive Card where the channel renders one), the "cannot
//! read" and "readable again" notices, and currency changes. Pure functions: plain structs
//! in, text and card JSON out; the caller owns the store and the adapter.
//!
//! Amounts, dates, percentages and products are written by [`crate::speech::format`], the
//! card is built by [`crate::speech::card`], and the `list` / `history` replies, which
//! answer a turn rather than speak first, are in [`crate::speech::listing`].

use std::fmt::Write as _;

use rust_decimal::Decimal;
use serde_json::Value;

use crate::domain::{Offer, Reference, Rule};
use crate::inbound::activity::{Attachment, ConversationReference, OutboundActivity};
use crate::price::Currency;
use crate::speech::card::{alert_card, restock_card, ADAPTIVE_CARD};
use crate::speech::format::{
    clean, escape_markdown, format_amount, format_date, lang_tag, number_text, percent_text,
    plain_number, product_md, visible,
};
use crate::speech::replies::Lang;

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

    /// A turn's reply, as the bot wrote it then.
    pub fn reply(text: &str) -> Message {
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
    let mut out = OutboundActivity::message(reference, visible(&msg.text));
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

/// The follow-up to `watch` once the first price is read.
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
        // A restock watch has no first price (its follow-up is `stock_set`); should one
        // come, this is still what it waits for.
        (Lang::En, Rule::Restock) => "I will tell you when it is back in stock.".to_owned(),
        (Lang::Fr, Rule::Restock) => {
            "Je vous préviendrai quand il sera de nouveau en stock.".to_owned()
        }
    };
    Message::text(match lang {
        Lang::En => format!("Watching {p} ({n}): {now} now. {tail}"),
        Lang::Fr => format!("Je surveille {p} ({n}) : {now} actuellement. {tail}"),
    })
}

/// The follow-up to `watch <link> restock` once the first check has read the availability.
pub fn stock_set(
    lang: Lang,
    number: usize,
    product: ProductView<'_>,
    in_stock: bool,
    price: Option<&Offer>,
) -> Message {
    let p = product_md(product);
    let n = number_text(lang, number);
    let at = price_tail(lang, price);
    Message::text(match (lang, in_stock) {
        (Lang::En, false) => format!(
            "Watching {p} ({n}): out of stock now. I will tell you as soon as it is back in stock."
        ),
        (Lang::Fr, false) => format!(
            "Je surveille {p} ({n}) : en rupture de stock actuellement. Je vous préviendrai dès qu'il sera de nouveau en stock."
        ),
        (Lang::En, true) => format!(
            "Watching {p} ({n}): in stock now{at}. If it runs out, I will tell you when it is back in stock."
        ),
        (Lang::Fr, true) => format!(
            "Je surveille {p} ({n}) : en stock actuellement{at}. S'il vient à manquer, je vous préviendrai quand il sera de nouveau en stock."
        ),
    })
}

/// The restock alert: the product can be bought again.
pub fn back_in_stock(
    lang: Lang,
    number: usize,
    product: ProductView<'_>,
    price: Option<&Offer>,
) -> Message {
    let p = product_md(product);
    let n = number_text(lang, number);
    let at = price_tail(lang, price);
    let stop = stop_hint(lang, number);
    let text = match lang {
        Lang::En => format!("Back in stock: {p} ({n}) can be bought again{at}. {stop}"),
        Lang::Fr => {
            format!("De retour en stock : {p} ({n}) est de nouveau disponible{at}. {stop}")
        }
    };
    let card = restock_card(lang, number, product, price, &text);
    Message {
        text,
        card: Some(card),
    }
}

/// ", at €19.90", or nothing when the page showed no usable price.
fn price_tail(lang: Lang, price: Option<&Offer>) -> String {
    match (lang, price) {
        (_, None) => String::new(),
        (Lang::En, Some(o)) => format!(", at {}", format_amount(lang, o.amount, o.currency)),
        (Lang::Fr, Some(o)) => format!(", à {}", format_amount(lang, o.amount, o.currency)),
    }
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
             puis renvoyez `surveiller <lien>`."
        ),
    })
}

/// The alerts of one conversation that are ready together: one alert, or one digest
/// listing each. `None` when there is nothing to say.
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

/// Told once when a product's price has not been readable for a while (`schedule.fail_notice_after`).
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
             Pour le surveiller en {seen}, tapez `arrêter {number}`, puis `surveiller <lien>` à nouveau."
        ),
    })
}

fn stop_hint(lang: Lang, number: usize) -> String {
    match lang {
        Lang::En => format!("To stop watching it, type `unwatch {number}`."),
        Lang::Fr => format!("Pour ne plus le surveiller, tapez `arrêter {number}`."),
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::inbound::activity::{ChannelAccount, ConversationAccount};
    use crate::speech::test_support::{
        cur, dec, eur, item, product, reference, two_alerts, NOV_24,
    };

    const LANGS: [Lang; 2] = [Lang::En, Lang::Fr];

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
            let watch = match lang {
                Lang::En => "`watch <",
                Lang::Fr => "`surveiller <",
            };
            assert!(m.text.contains(watch), "{}", m.text);
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
             Pour ne plus le surveiller, tapez `arrêter 3`."
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
                    m.text.matches(&stop_command(lang, it.number)).count(),
                    1,
                    "{}",
                    m.text
                );
            }
            let verb = match lang {
                Lang::En => "`unwatch ",
                Lang::Fr => "`arrêter ",
            };
            assert_eq!(m.text.matches(verb).count(), 3);
            assert_eq!(m.text.lines().filter(|l| l.starts_with("- ")).count(), 3);
            let card = m.card.unwrap();
            assert_eq!(card["body"].as_array().unwrap().len(), 4);
        }
    }

    #[test]
    fn alert_cards_go_only_to_card_channels() {
        let items = two_alerts();
        let m = alerts(Lang::En, &items).unwrap();
        let card = m.card.clone().unwrap();

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
        assert!(m.text.contains("`arrêter 3`"));

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
    fn restock_messages_say_back_in_stock_with_the_price_if_known() {
        let offer = Offer {
            amount: dec("19.9"),
            currency: eur(),
        };
        let p = product(Some("Kettle"));
        let m = back_in_stock(Lang::En, 3, p, Some(&offer));
        assert_eq!(
            m.text,
            "Back in stock: [Kettle](https://shop.example/p/1) (#3) can be bought again, at €19.90. \
             To stop watching it, type `unwatch 3`."
        );
        let m = back_in_stock(Lang::Fr, 3, p, Some(&offer));
        assert!(
            m.text
                .starts_with("De retour en stock : [Kettle](https://shop.example/p/1)")
                && m.text.contains("de nouveau disponible, à 19,90\u{a0}€.")
                && m.text.contains("`arrêter 3`"),
            "{}",
            m.text
        );
        let m = back_in_stock(Lang::En, 3, p, None);
        assert!(
            m.text.contains("can be bought again. To stop"),
            "{}",
            m.text
        );
        let out = stock_set(Lang::En, 3, p, false, None);
        assert!(
            out.text
                .contains("out of stock now. I will tell you as soon as it is back in stock."),
            "{}",
            out.text
        );
        let inside = stock_set(Lang::Fr, 3, p, true, Some(&offer));
        assert!(
            inside
                .text
                .contains("en stock actuellement, à 19,90\u{a0}€. S'il vient à manquer"),
            "{}",
            inside.text
        );
    }

    /// How each language's messages tell the user to stop a watch: in the words of the
    /// conversation's language (both are understood).
    fn stop_command(lang: Lang, number: usize) -> String {
        match lang {
            Lang::En => format!("`unwatch {number}`"),
            Lang::Fr => format!("`arrêter {number}`"),
        }
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
            assert!(m.text.contains(&stop_command(lang, 2)), "{}", m.text);
            assert!(m.text.starts_with("[Kettle](https://shop.example/p/1)"));
        }
    }
}
