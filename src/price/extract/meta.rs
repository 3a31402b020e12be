//! The meta-tag source: `product:price`, `og:price` and stray `itemprop` meta tags, the last
//! structured place a price can be stated. Separate because the tags come as flat key-value
//! pairs, with none of the nesting the other sources read.

use super::{machine_offer, Availability, Found};
use crate::price::html::{MetaKind, PageFacts};

pub(super) fn meta_content<'a>(facts: &'a PageFacts, key: &str) -> Option<&'a str> {
    facts
        .metas
        .iter()
        .find(|m| m.kind != MetaKind::Itemprop && m.key == key && !m.content.is_empty())
        .map(|m| m.content.as_str())
}

fn itemprop_meta<'a>(facts: &'a PageFacts, key: &str) -> Option<&'a str> {
    facts
        .metas
        .iter()
        .find(|m| m.kind == MetaKind::Itemprop && !m.in_item && m.key == key)
        .map(|m| m.content.as_str())
}

pub(super) fn from_meta(facts: &PageFacts, host: &str) -> Found {
    let mut found = Found::default();
    type Get = for<'a> fn(&'a PageFacts, &str) -> Option<&'a str>;
    let sets: [(Get, &str, [&str; 3]); 3] = [
        (
            meta_content,
            "meta product:price:amount",
            [
                "product:price:amount",
                "product:price:currency",
                "product:availability",
            ],
        ),
        (
            meta_content,
            "meta og:price:amount",
            ["og:price:amount", "og:price:currency", "og:availability"],
        ),
        (
            itemprop_meta,
            "meta itemprop=price",
            ["price", "pricecurrency", "availability"],
        ),
    ];
    for (get, label, [amount_key, currency_key, availability_key]) in sets {
        if let Some(amount) = get(facts, amount_key) {
            let availability =
                get(facts, availability_key).map_or(Availability::Unknown, Availability::from_text);
            found.offers.push(machine_offer(
                amount,
                get(facts, currency_key),
                host,
                availability,
                label.to_owned(),
            ));
        }
    }
    found
}
