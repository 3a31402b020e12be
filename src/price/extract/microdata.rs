//! The microdata source: the top-level `itemtype` Product the scan collected and the offers
//! nested in it, with their `priceSpecification` items (chosen by the same rule as in
//! JSON-LD, `choice::selling_specification`). Separate because it reads the scan's items,
//! not JSON; its price decides only when JSON-LD gives none.

use url::Url;

use super::choice::{blank_offer, selling_specification, Role, Specification};
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

/// The nested items under property `name`.
fn children<'a>(
    items: &'a [MicroItem],
    item: &'a MicroItem,
    name: &'a str,
) -> impl Iterator<Item = &'a MicroItem> + 'a {
    item.props.iter().filter_map(move |(n, v)| match v {
        MicroValue::Item(i) if n == name => items.get(*i),
        _ => None,
    })
}

fn specification(items: &[MicroItem], spec: &MicroItem) -> Specification {
    let reference = children(items, spec, "referenceQuantity").next();
    fn unit_of(i: &MicroItem) -> Option<&str> {
        prop(i, "unitCode").or_else(|| prop(i, "unitText"))
    }
    let eligible = children(items, spec, "eligibleQuantity").next();
    Specification {
        price: prop(spec, "price")
            .or_else(|| prop(spec, "minPrice"))
            .map(str::to_owned),
        currency: prop(spec, "priceCurrency").map(str::to_owned),
        price_type: prop(spec, "priceType").map(str::to_owned),
        unit: reference
            .and_then(unit_of)
            .or_else(|| unit_of(spec))
            .map(str::to_owned),
        has_reference_quantity: reference.is_some() || prop(spec, "referenceQuantity").is_some(),
        reference_value: reference.and_then(|r| prop(r, "value")).map(str::to_owned),
        min_quantity: eligible
            .and_then(|q| prop(q, "minValue").or_else(|| prop(q, "value")))
            .map(str::to_owned),
        vat_included: prop(spec, "valueAddedTaxIncluded").and_then(|t| t.trim().parse().ok()),
    }
}

pub(super) fn from_microdata(items: &[MicroItem], page: &Url) -> Found {
    let host = page.host_str().unwrap_or("");
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
        let mut code = prop(item, "priceCurrency");
        let sku = prop(item, "sku").map(str::to_owned);
        let url = prop(item, "url").map(str::to_owned);
        let aggregate = item_type_is(item, &["AggregateOffer"])
            || (prop(item, "price").is_none() && prop(item, "lowPrice").is_some());
        let specs: Vec<Specification> = children(items, item, "priceSpecification")
            .map(|s| specification(items, s))
            .collect();
        let spec = selling_specification(&specs).and_then(|i| specs.get(i));
        let price = if aggregate {
            prop(item, "lowPrice").or_else(|| prop(item, "price"))
        } else {
            prop(item, "price").or_else(|| {
                let s = spec?;
                code = s.currency.as_deref().or(code);
                s.price.as_deref()
            })
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
        let single = |high: &&str| Some(high.trim()) == price.map(str::trim);
        if let Some(high) = prop(item, "highPrice").filter(|h| aggregate && !single(h)) {
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

#[cfg(test)]
mod tests {
    use super::super::tests::url;
    use crate::price::extract::{from_facts, CurrencySource, Method};
    use crate::price::html::scan;

    fn read(page: &str, html: &str) -> String {
        let facts = scan(html, None, 1 << 20).unwrap();
        let r = from_facts(&url(page), &facts, None);
        assert_eq!(r.method, Some(Method::Microdata), "{html}");
        let (a, c) = r.price().unwrap();
        format!("{a} {c}")
    }

    #[test]
    fn price_specification_items_give_the_selling_price() {
        let page = "https://s.example/p";
        let html = r#"<div itemscope itemtype="https://schema.org/Product"><h1 itemprop="name">Oat drink</h1>
          <div itemprop="offers" itemscope itemtype="https://schema.org/Offer">
            <div itemprop="priceSpecification" itemscope itemtype="https://schema.org/UnitPriceSpecification">
              <span itemprop="price" content="2.38">2,38 €</span>/l<meta itemprop="priceCurrency" content="EUR">
              <div itemprop="referenceQuantity" itemscope itemtype="https://schema.org/QuantitativeValue">
                <meta itemprop="value" content="1"><meta itemprop="unitCode" content="LTR"></div></div>
            <div itemprop="priceSpecification" itemscope itemtype="https://schema.org/UnitPriceSpecification">
              <link itemprop="priceType" href="https://schema.org/ListPrice"><s itemprop="price" content="2.99">2,99 €</s>
              <meta itemprop="priceCurrency" content="EUR"></div>
            <div itemprop="priceSpecification" itemscope itemtype="https://schema.org/UnitPriceSpecification">
              <link itemprop="priceType" href="https://schema.org/SalePrice"><span itemprop="price" content="2.49">2,49 €</span>
              <meta itemprop="priceCurrency" content="EUR"></div>
          </div></div>"#;
        assert_eq!(read(page, html), "2.49 EUR");
        // A lone lowPrice on an Offer item is the price.
        let html = r#"<div itemscope itemtype="http://schema.org/Product"><span itemprop="name">P</span>
          <div itemprop="offers" itemscope itemtype="http://schema.org/AggregateOffer">
          <meta itemprop="lowPrice" content="1499"><meta itemprop="highPrice" content="1499">
          <meta itemprop="priceCurrency" content="CZK"></div></div>"#;
        assert_eq!(read(page, html), "1499.00 CZK");
    }

    #[test]
    fn a_bare_amount_takes_the_currency_of_a_country_domain() {
        let html = r#"<div itemscope itemtype="https://schema.org/Product"><span itemprop="name">Mate</span>
          <span itemprop="offers" itemscope itemtype="https://schema.org/Offer">
          <span itemprop="price">18.999,00</span></span></div>"#;
        let facts = scan(html, None, 1 << 20).unwrap();
        let r = from_facts(&url("https://www.yerbateria.com.ar/p/mate"), &facts, None);
        assert_eq!(r.price().unwrap().1.as_str(), "ARS");
        assert_eq!(r.amount.unwrap().to_string(), "18999.00");
        assert_eq!(r.currency_source(), Some(CurrencySource::Domain));
        let r = from_facts(&url("https://www.yerbateria.com/p/mate"), &facts, None);
        assert_eq!(
            r.error.as_ref().map(|e| e.code()),
            Some("ambiguous_currency")
        );
        assert_eq!(r.currency_source(), None);
    }
}
