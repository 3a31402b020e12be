//! The microdata source: the top-level `itemtype` Product the scan collected and the offers
//! nested in it. Separate because it reads the scan's items, not JSON; its price decides only
//! when JSON-LD gives none.

use super::choice::{blank_offer, Role};
use super::{decode_and_collapse, text_offer, Availability, Found, PRODUCT_TYPES};
use crate::price::html::{MicroItem, MicroValue};

fn item_type_is(item: &MicroItem, names: &[&str]) -> bool {
    item.types.iter().any(|t| {
        let last = t.rsplit(['/', ':', '#']).next().unwrap_or(t);
        names.iter().any(|n| last.eq_ignore_ascii_case(n))
    })
}

fn prop<'a>(item: &'a MicroItem, name: &str) -> Option<&'a str> {
    item.props.iter().find_map(|(n, v)| match v {
        MicroValue::Text(t) if n == name => Some(t.as_str()),
        _ => None,
    })
}

pub(super) fn from_microdata(items: &[MicroItem], host: &str) -> Found {
    let mut found = Found::default();
    let main = items
        .iter()
        .position(|i| i.parent.is_none() && item_type_is(i, PRODUCT_TYPES));
    let Some(main) = main else {
        return found;
    };
    let product = &items[main];
    found.title = prop(product, "name").map(decode_and_collapse);
    let mut offer_items: Vec<&MicroItem> = vec![product];
    for (name, value) in &product.props {
        if let (true, MicroValue::Item(i)) = (name == "offers", value) {
            if let Some(item) = items.get(*i) {
                offer_items.push(item);
            }
        }
    }
    for item in offer_items {
        let availability =
            prop(item, "availability").map_or(Availability::Unknown, Availability::from_text);
        let code = prop(item, "priceCurrency");
        let sku = prop(item, "sku").map(str::to_owned);
        let url = prop(item, "url").map(str::to_owned);
        let aggregate = item_type_is(item, &["AggregateOffer"]);
        let price = if aggregate {
            prop(item, "lowPrice").or_else(|| prop(item, "price"))
        } else {
            prop(item, "price")
        };
        let what = if std::ptr::eq(item, product) {
            "microdata Product price"
        } else {
            "microdata Offer"
        };
        let mut o = match price {
            Some(p) => text_offer(p, code, host, availability, what.to_owned()),
            // An offer without a price still says whether the product is in stock.
            None if !std::ptr::eq(item, product) => blank_offer(availability, what.to_owned()),
            None => continue,
        };
        o.sku = sku;
        o.url = url;
        if aggregate {
            o.role = Role::AggregateLow;
        }
        found.offers.push(o);
        if let Some(high) = prop(item, "highPrice").filter(|_| aggregate) {
            let mut h = text_offer(high, code, host, availability, "microdata highPrice".into());
            h.role = Role::AggregateHigh;
            found.offers.push(h);
        }
    }
    if found.offers.iter().all(|o| o.price.is_none() && !o.zero) {
        found.note = Some("the microdata Product states no readable price".to_owned());
    }
    found
}
