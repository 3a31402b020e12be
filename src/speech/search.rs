//! What the bot answers to `watch <product name>`: the matches the shop catalogues gave
//! (title, price, shop), each with the command that watches it, or why there are none.
//! Pure: the search's results in, text and card out.
//!
//! A match is chosen by sending its command, `watch <link>` (`surveiller <link>` in French,
//! with the rule the user gave after the name), so choosing is an ordinary turn that
//! needs no memory of the search: a card's button posts the command for the user
//! (`imBack`, as the alert card's "Stop watching" does), and on channels without cards the
//! numbered list shows each command to send.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::domain::Rule;
use crate::price::catalog::{FailReason, Failure, Found};
use crate::speech::card::{card as adaptive_card, submit_action};
use crate::speech::format::{clean, escape_markdown, format_amount, plain_number};
use crate::speech::replies::{rule_text, Lang};

/// A turn's answer with, where the channel renders one, an Adaptive Card.
#[derive(Debug, Clone, PartialEq)]
pub struct Said {
    pub text: String,
    pub card: Option<Value>,
}

impl From<String> for Said {
    fn from(text: String) -> Said {
        Said { text, card: None }
    }
}

/// The command that watches `url` with `rule`, as the parser reads it back in any locale:
/// amounts with a point, which every locale reads as decimals with one or two digits
/// (three would read as thousands in a `1.299`, so a fourth is added).
pub fn watch_command(lang: Lang, url: &str, rule: Option<&Rule>) -> String {
    let verb = match lang {
        Lang::En => "watch",
        Lang::Fr => "surveiller",
    };
    let rule = match (lang, rule) {
        (_, None) => String::new(),
        (_, Some(Rule::Drop { percent })) => format!(" {}%", percent.normalize()),
        (Lang::En, Some(Rule::Below { amount })) => format!(" below {}", machine_amount(*amount)),
        (Lang::Fr, Some(Rule::Below { amount })) => format!(" sous {}", machine_amount(*amount)),
        (Lang::En, Some(Rule::Restock)) => " restock".to_owned(),
        (Lang::Fr, Some(Rule::Restock)) => " réassort".to_owned(),
    };
    format!("{verb} {url}{rule}")
}

fn machine_amount(amount: rust_decimal::Decimal) -> String {
    let text = amount.normalize().to_string();
    match text.split_once('.') {
        Some((_, fraction)) if fraction.len() == 3 => format!("{text}0"),
        _ => text,
    }
}

/// The matches for `query`: a short line and the card where cards render (`cards`), else
/// a numbered list with each match's command. Catalogues that failed are named after.
pub fn matches(
    lang: Lang,
    query: &str,
    rule: Option<&Rule>,
    found: &[Found],
    failed: &[Failure],
    cards: bool,
) -> Said {
    let q = quoted(lang, query);
    let mut text = match (lang, found.len(), cards) {
        (Lang::En, 1, true) => format!("I found 1 product for {q}. Choose it to watch it."),
        (Lang::En, n, true) => format!("I found {n} products for {q}. Choose one to watch it."),
        (Lang::En, 1, false) => format!("I found 1 product for {q}:\n"),
        (Lang::En, n, false) => format!("I found {n} products for {q}:\n"),
        (Lang::Fr, 1, true) => {
            format!("J'ai trouvé 1 produit pour {q}. Choisissez-le pour le surveiller.")
        }
        (Lang::Fr, n, true) => {
            format!("J'ai trouvé {n} produits pour {q}. Choisissez-en un pour le surveiller.")
        }
        (Lang::Fr, 1, false) => format!("J'ai trouvé 1 produit pour {q} :\n"),
        (Lang::Fr, n, false) => format!("J'ai trouvé {n} produits pour {q} :\n"),
    };
    if !cards {
        for (i, f) in found.iter().enumerate() {
            let _ = write!(
                text,
                "\n{}. **{}**, {}\n   `{}`",
                i + 1,
                escape_markdown(&clean(&f.title)),
                price_at_shop(lang, f),
                watch_command(lang, f.url.as_str(), rule)
            );
        }
        text.push_str(match lang {
            Lang::En => "\n\nTo watch one, send its line.",
            Lang::Fr => "\n\nPour en surveiller un, envoyez sa ligne.",
        });
    }
    if let Some(r) = rule {
        let _ = write!(
            text,
            "{}",
            match lang {
                Lang::En => format!(" I will tell you on {}.", rule_text(lang, r)),
                Lang::Fr => format!(" Je vous préviendrai pour {}.", rule_text(lang, r)),
            }
        );
    }
    if !failed.is_empty() {
        text.push_str("\n\n");
        text.push_str(&failures(lang, failed));
    }
    let card = cards.then(|| card(lang, query, rule, found, &text));
    Said { text, card }
}

/// No catalogue is configured: how to watch by link, and that an operator can add some.
pub fn no_catalogs(lang: Lang) -> String {
    match lang {
        Lang::En => "Which product? Add its link, for example `watch https://shop.example/p/123`. \
            I cannot look products up by name here: no shop catalogues are set up on this pricewatch (its operator can add some)."
            .to_owned(),
        Lang::Fr => "Quel produit ? Ajoutez son lien, par exemple `surveiller https://shop.example/p/123`. \
            Je ne peux pas chercher un produit par son nom ici : aucun catalogue de boutique n'est configuré sur ce pricewatch (son administrateur peut en ajouter)."
            .to_owned(),
    }
}

/// Every catalogue answered, none with a product.
pub fn nothing_found(lang: Lang, query: &str, failed: &[Failure]) -> String {
    let q = quoted(lang, query);
    let mut text = match lang {
        Lang::En => format!(
            "I found no product for {q}. Try other words, or send the product's link: `watch https://shop.example/p/123`."
        ),
        Lang::Fr => format!(
            "Je n'ai trouvé aucun produit pour {q}. Essayez d'autres mots, ou envoyez le lien du produit : `surveiller https://shop.example/p/123`."
        ),
    };
    if !failed.is_empty() {
        text.push_str("\n\n");
        text.push_str(&failures(lang, failed));
    }
    text
}

/// No catalogue could be asked.
pub fn search_failed(lang: Lang, failed: &[Failure]) -> String {
    match lang {
        Lang::En => format!(
            "I could not search the shops just now. {}\n\nTry again in a minute, or send the product's link: `watch https://shop.example/p/123`.",
            failures(lang, failed)
        ),
        Lang::Fr => format!(
            "Je n'ai pas pu chercher dans les boutiques pour l'instant. {}\n\nRéessayez dans une minute, ou envoyez le lien du produit : `surveiller https://shop.example/p/123`.",
            failures(lang, failed)
        ),
    }
}

fn failures(lang: Lang, failed: &[Failure]) -> String {
    failed
        .iter()
        .map(|f| {
            let shop = escape_markdown(&clean(&f.shop));
            match (lang, &f.reason) {
                (Lang::En, FailReason::TimedOut(after)) => format!(
                    "{shop} did not answer within {}.",
                    humantime::format_duration(*after)
                ),
                (Lang::Fr, FailReason::TimedOut(after)) => format!(
                    "{shop} n'a pas répondu en {}.",
                    humantime::format_duration(*after)
                ),
                (Lang::En, FailReason::Fetch(why)) => {
                    format!("{shop} could not be searched: {}.", escape_markdown(why))
                }
                (Lang::Fr, FailReason::Fetch(why)) => {
                    format!(
                        "Recherche impossible chez {shop} : {}.",
                        escape_markdown(why)
                    )
                }
                (Lang::En, FailReason::Unreadable(why)) => format!(
                    "{shop} answered, but not as its catalogue entry says: {}.",
                    escape_markdown(why)
                ),
                (Lang::Fr, FailReason::Unreadable(why)) => format!(
                    "{shop} a répondu, mais pas comme son catalogue l'indique : {}.",
                    escape_markdown(why)
                ),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn quoted(lang: Lang, query: &str) -> String {
    let q = clean(query);
    match lang {
        Lang::En => format!("“{q}”"),
        Lang::Fr => format!("« {q} »"),
    }
}

/// `$29.90 at Kitchen Co`, or the shop alone when the price is unknown.
fn price_at_shop(lang: Lang, f: &Found) -> String {
    let shop = escape_markdown(&clean(&f.shop));
    match (lang, price_text(lang, f)) {
        (Lang::En, Some(p)) => format!("{p} at {shop}"),
        (Lang::Fr, Some(p)) => format!("{p} chez {shop}"),
        (Lang::En, None) => format!("price unknown, at {shop}"),
        (Lang::Fr, None) => format!("prix inconnu, chez {shop}"),
    }
}

fn price_text(lang: Lang, f: &Found) -> Option<String> {
    f.price.map(|(amount, currency)| match currency {
        Some(c) => format_amount(lang, amount, c),
        None => plain_number(lang, amount),
    })
}

/// The matches as an Adaptive Card: per match its title (opening the product), price and
/// shop, and one button that sends the match's command.
fn card(lang: Lang, query: &str, rule: Option<&Rule>, found: &[Found], fallback: &str) -> Value {
    let (heading, l_price, l_shop, l_watch, unknown) = match lang {
        Lang::En => ("Products for", "Price", "Shop", "Watch this", "unknown"),
        Lang::Fr => ("Produits pour", "Prix", "Boutique", "Surveiller", "inconnu"),
    };
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": format!("{heading} {}", quoted(lang, query)),
        "weight": "Bolder",
        "size": "Medium",
        "wrap": true,
    })];
    for (i, f) in found.iter().enumerate() {
        let command = watch_command(lang, f.url.as_str(), rule);
        body.push(json!({
            "type": "Container",
            "separator": true,
            "spacing": "Medium",
            "items": [
                {
                    "type": "RichTextBlock",
                    "inlines": [{
                        "type": "TextRun",
                        "text": format!("{}. {}", i + 1, clean(&f.title)),
                        "weight": "Bolder",
                        "selectAction": {"type": "Action.OpenUrl", "url": f.url.as_str()},
                    }],
                },
                {
                    "type": "FactSet",
                    "facts": [
                        {"title": l_price, "value": price_text(lang, f).unwrap_or_else(|| unknown.to_owned())},
                        {"title": l_shop, "value": clean(&f.shop)},
                    ],
                },
                {"type": "ActionSet", "actions": [submit_action(l_watch, &command)]},
            ],
        }));
    }
    adaptive_card(lang, fallback, body)
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;
    use url::Url;

    use super::*;
    use crate::inbound::command::{parse, Command, Limits};
    use crate::price::Currency;

    fn two() -> Vec<Found> {
        vec![
            Found::new(
                "Lodge *Cast Iron* Skillet",
                Url::parse("https://kitchen.example/p/lodge?size=10").unwrap(),
                Some((Decimal::new(2990, 2), Currency::parse("USD"))),
                "Kitchen Co",
            ),
            Found::new(
                "Skillet\u{202e} 12",
                Url::parse("https://pans.example/products/skillet-12").unwrap(),
                None,
                "pans.example",
            ),
        ]
    }

    #[test]
    fn every_offered_command_reads_back_as_the_watch_it_offers() {
        let rules = [
            None,
            Some(Rule::Drop {
                percent: Decimal::new(125, 1),
            }),
            Some(Rule::Below {
                amount: Decimal::new(1299, 3),
            }),
            Some(Rule::Below {
                amount: Decimal::new(2990, 2),
            }),
            Some(Rule::Restock),
        ];
        for lang in [Lang::En, Lang::Fr] {
            for locale in [None, Some("en-US"), Some("fr-FR"), Some("de-DE")] {
                for rule in &rules {
                    let url = "https://kitchen.example/p/lodge?size=10";
                    let command = watch_command(lang, url, rule.as_ref());
                    match parse(&command, &Limits::default(), locale) {
                        Ok(Command::Watch { url: u, rule: r }) => {
                            assert_eq!(u.as_str(), url, "{command}");
                            assert_eq!(&r, rule, "{command} in {locale:?}");
                        }
                        other => panic!("{command} in {locale:?}: {other:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn without_cards_the_matches_are_a_numbered_list_of_commands() {
        let said = matches(Lang::En, "cast iron skillet", None, &two(), &[], false);
        assert_eq!(said.card, None);
        assert_eq!(
            said.text,
            "I found 2 products for “cast iron skillet”:\n\n\
             1. **Lodge \\*Cast Iron\\* Skillet**, US$29.90 at Kitchen Co\n   `watch https://kitchen.example/p/lodge?size=10`\n\
             2. **Skillet 12**, price unknown, at pans.example\n   `watch https://pans.example/products/skillet-12`\n\n\
             To watch one, send its line."
        );
        let fr = matches(
            Lang::Fr,
            "poêle",
            Some(&Rule::Drop {
                percent: Decimal::from(15),
            }),
            &two(),
            &[],
            false,
        );
        assert!(
            fr.text
                .starts_with("J'ai trouvé 2 produits pour « poêle » :"),
            "{}",
            fr.text
        );
        assert!(
            fr.text
                .contains("Skillet**, 29,90\u{a0}$US chez Kitchen Co"),
            "{}",
            fr.text
        );
        assert!(
            fr.text
                .contains("`surveiller https://pans.example/products/skillet-12 15%`"),
            "{}",
            fr.text
        );
        assert!(
            fr.text
                .ends_with("Je vous préviendrai pour une baisse de 15 % ou plus."),
            "{}",
            fr.text
        );
    }

    #[test]
    fn with_cards_each_match_has_one_button_that_sends_its_command() {
        let said = matches(Lang::En, "skillet", Some(&Rule::Restock), &two(), &[], true);
        assert_eq!(
            said.text,
            "I found 2 products for “skillet”. Choose one to watch it. I will tell you on a return to stock."
        );
        let card = said.card.unwrap();
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["fallbackText"], said.text.as_str());
        let body = card["body"].as_array().unwrap();
        assert_eq!(body.len(), 3, "a heading and one container per match");
        let run = &body[1]["items"][0]["inlines"][0];
        assert_eq!(
            run["text"], "1. Lodge *Cast Iron* Skillet",
            "a text run shows no Markdown"
        );
        assert_eq!(
            run["selectAction"]["url"],
            "https://kitchen.example/p/lodge?size=10"
        );
        assert_eq!(
            body[2]["items"][0]["inlines"][0]["text"], "2. Skillet 12",
            "no bidi control"
        );
        assert_eq!(body[2]["items"][1]["facts"][0]["value"], "unknown");
        let actions = body[2]["items"][2]["actions"].as_array().unwrap();
        assert_eq!(actions.len(), 1);
        assert_eq!(
            actions[0]["data"]["command"],
            "watch https://pans.example/products/skillet-12 restock"
        );
        assert_eq!(actions[0]["data"]["msteams"]["type"], "imBack");
    }

    #[test]
    fn failed_catalogues_are_named_with_their_reason() {
        let failed = [
            Failure {
                shop: "Slow Shop".into(),
                reason: FailReason::TimedOut(std::time::Duration::from_secs(5)),
            },
            Failure {
                shop: "Broken_Shop".into(),
                reason: FailReason::Fetch(
                    "the site answered HTTP 500 (Internal Server Error)".into(),
                ),
            },
        ];
        let text = search_failed(Lang::En, &failed);
        assert_eq!(
            text,
            "I could not search the shops just now. Slow Shop did not answer within 5s. \
             Broken\\_Shop could not be searched: the site answered HTTP 500 (Internal Server Error).\n\n\
             Try again in a minute, or send the product's link: `watch https://shop.example/p/123`."
        );
        let fr = search_failed(Lang::Fr, &failed[..1]);
        assert!(fr.contains("Slow Shop n'a pas répondu en 5s."), "{fr}");
        assert!(
            fr.contains("`surveiller https://shop.example/p/123`"),
            "{fr}"
        );
        let some = matches(Lang::En, "pan", None, &two()[..1], &failed[1..], true);
        assert!(some.text.ends_with("Broken\\_Shop could not be searched: the site answered HTTP 500 (Internal Server Error)."), "{}", some.text);
        let none = nothing_found(Lang::En, "unobtainium", &[]);
        assert!(
            none.starts_with("I found no product for “unobtainium”."),
            "{none}"
        );
        assert!(no_catalogs(Lang::En).contains("its operator can add some"));
        assert!(no_catalogs(Lang::Fr).contains("son administrateur peut en ajouter"));
    }
}
