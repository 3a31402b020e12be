//! The Adaptive Card that goes with an alert, a digest or a "back in stock". It is separate from
//! [`crate::speech::notices`] because the card is JSON for one kind of channel with rules of
//! its own (no Markdown, buttons that must come back as commands), while the notices are
//! text every channel shows.
//!
//! Alerts carry an Adaptive Card 1.4 on the channels that render one
//! ([`crate::speech::notices::renders_cards`]). Shop text goes into the card only as JSON
//! strings built by `serde_json`, and the title only in a `TextRun`, which renders no
//! Markdown. The "Stop watching" button is an `Action.Submit` whose data holds
//! `{"msteams": {"type": "imBack", "value": "unwatch 3"}}`, so Teams posts `unwatch 3` as the
//! user's own message (visible, and handled like typed text), and `"command": "unwatch 3"`,
//! which Web Chat, Direct Line and the Emulator send back as the activity's `value` and
//! [`crate::inbound::activity::ValidActivity::command_text`] reads. `messageBack` was not
//! chosen: it needs both `text` and `displayText` to behave like typing, and `imBack` is
//! that in one field.

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::domain::Offer;
use crate::speech::format::{
    clean_title, format_amount, format_date, lang_tag, number_text, percent_text,
};
use crate::speech::notices::{AlertItem, ProductView};
use crate::speech::replies::Lang;

/// The attachment content type of an Adaptive Card.
pub const ADAPTIVE_CARD: &str = "application/vnd.microsoft.card.adaptive";

/// The card for the alerts `items`, with `fallback` (the message text) for clients that
/// cannot show it.
pub(super) fn alert_card(lang: Lang, items: &[AlertItem<'_>], fallback: &str) -> Value {
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
        body.push(watch_container(
            title,
            facts,
            item.product.url,
            item.number,
            (l_open, l_stop),
        ));
    }
    card(lang, fallback, body)
}

/// The card for a restock watch's "back in stock", with its price when the page showed one.
pub(super) fn restock_card(
    lang: Lang,
    number: usize,
    product: ProductView<'_>,
    price: Option<&Offer>,
    fallback: &str,
) -> Value {
    let (heading, l_now, labels) = match lang {
        Lang::En => ("Back in stock", "Now", ("Open product", "Stop watching")),
        Lang::Fr => (
            "De retour en stock",
            "Maintenant",
            ("Voir le produit", "Ne plus surveiller"),
        ),
    };
    let title = format!("{} ({})", plain_title(product), number_text(lang, number));
    let facts: Vec<Value> = price
        .map(|o| json!({"title": l_now, "value": format_amount(lang, o.amount, o.currency)}))
        .into_iter()
        .collect();
    let body = vec![
        json!({
            "type": "TextBlock",
            "text": heading,
            "weight": "Bolder",
            "size": "Medium",
            "wrap": true,
        }),
        watch_container(title, facts, product.url, number, labels),
    ];
    card(lang, fallback, body)
}

/// One watched product in a card: its title as a plain run, its facts (none: no fact set),
/// and the "open" and "stop watching" buttons (`labels`).
fn watch_container(
    title: String,
    facts: Vec<Value>,
    url: &str,
    number: usize,
    (l_open, l_stop): (&str, &str),
) -> Value {
    let command = format!("unwatch {number}");
    let mut items = vec![json!({
        "type": "RichTextBlock",
        "inlines": [{"type": "TextRun", "text": title, "weight": "Bolder"}],
    })];
    if !facts.is_empty() {
        items.push(json!({"type": "FactSet", "facts": facts}));
    }
    items.push(json!({
        "type": "ActionSet",
        "actions": [
            {"type": "Action.OpenUrl", "title": l_open, "url": url},
            submit_action(l_stop, &command),
        ],
    }));
    json!({
        "type": "Container",
        "separator": true,
        "spacing": "Medium",
        "items": items,
    })
}

/// A button that sends `command` as if the user typed it: Teams posts the `imBack` value as
/// the user's message, Web Chat, Direct Line and the Emulator send the data back as the
/// activity's `value`, whose `command` the bot reads.
pub(super) fn submit_action(title: &str, command: &str) -> Value {
    json!({
        "type": "Action.Submit",
        "title": title,
        "data": {
            "msteams": {"type": "imBack", "value": command},
            "command": command,
        },
    })
}

pub(super) fn card(lang: Lang, fallback: &str, body: Vec<Value>) -> Value {
    json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "lang": lang_tag(lang),
        "fallbackText": fallback,
        "body": body,
    })
}

/// The product for a card's plain-text run: the cleaned title, or the URL.
fn plain_title(p: ProductView<'_>) -> String {
    p.title
        .map(clean_title)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| p.url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speech::format::product_md;
    use crate::speech::notices::alerts;
    use crate::speech::test_support::{hostile_product, item, two_alerts};

    #[test]
    fn alert_cards_have_both_buttons() {
        let items = two_alerts();
        let m = alerts(Lang::En, &items).unwrap();
        let card = m.card.unwrap();
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
    }

    #[test]
    fn back_in_stock_cards_show_the_price_and_both_buttons() {
        use crate::domain::Offer;
        use crate::speech::notices::back_in_stock;
        use crate::speech::test_support::{dec, eur, product};
        let offer = Offer {
            amount: dec("52"),
            currency: eur(),
        };
        let m = back_in_stock(Lang::En, 4, product(Some("Kettle")), Some(&offer));
        let card = m.card.unwrap();
        assert_eq!(card["body"][0]["text"], "Back in stock");
        assert_eq!(card["fallbackText"], m.text.as_str());
        let items = card["body"][1]["items"].as_array().unwrap();
        assert_eq!(items[0]["inlines"][0]["text"], "Kettle (#4)");
        assert_eq!(items[1]["facts"][0]["value"], "€52.00");
        let actions = items[2]["actions"].as_array().unwrap();
        assert_eq!(actions[0]["url"], "https://shop.example/p/1");
        assert_eq!(actions[1]["data"]["command"], "unwatch 4");
        // Without a price: no fact set, the buttons still there.
        let m = back_in_stock(Lang::Fr, 4, product(None), None);
        let card = m.card.unwrap();
        assert_eq!(card["body"][0]["text"], "De retour en stock");
        let items = card["body"][1]["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1]["actions"][1]["title"], "Ne plus surveiller");
    }

    #[test]
    fn card_titles_are_plain_text_runs() {
        let p = hostile_product();
        let it = AlertItem {
            product: p,
            ..item(1, "", "")
        };
        let m = alerts(Lang::En, &[it]).unwrap();
        assert!(m.text.contains(&product_md(p)));
        // The card gets the title as plain text in a TextRun, never Markdown.
        let run = &m.card.unwrap()["body"][1]["items"][0]["inlines"][0];
        assert_eq!(run["type"], "TextRun");
        assert_eq!(
            run["text"],
            "*Super* _deal_ [2 for 1]](https://evil.example) `x` <b>\\ now (#1)"
        );
    }
}
