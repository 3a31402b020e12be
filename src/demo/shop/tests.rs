use std::str::FromStr;

use rust_decimal::Decimal;
use url::Url;

use super::*;
use crate::price::extract::{Availability, Extractor};
use crate::price::rules::Rules;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn base() -> Url {
    Url::parse("http://127.0.0.1:4000/").unwrap()
}

fn parse_ok(line: &str) -> ShopCommand {
    match parse_command(line) {
        Some(Ok(c)) => c,
        other => panic!("{line:?} → {other:?}"),
    }
}

fn parse_err(line: &str) -> String {
    match parse_command(line) {
        Some(Err(e)) => e,
        other => panic!("{line:?} should be refused, got {other:?}"),
    }
}

#[test]
fn shop_commands_are_read() {
    let price = |product, change| ShopCommand::SetPrice { product, change };
    for (line, want) in [
        ("/price 1 -25%", price(1, PriceChange::Percent(d("-25")))),
        ("  /PRICE 2 +10%  ", price(2, PriceChange::Percent(d("10")))),
        (
            "/price 3 \u{2212}12.5%",
            price(3, PriceChange::Percent(d("-12.5"))),
        ),
        ("/price 1 -7,5%", price(1, PriceChange::Percent(d("-7.5")))),
        ("/price 1 19.99", price(1, PriceChange::To(d("19.99")))),
        ("/price #4 19,99", price(4, PriceChange::To(d("19.99")))),
        ("/price 5 20", price(5, PriceChange::To(d("20")))),
        (
            "/stock 5 out",
            ShopCommand::SetStock {
                product: 5,
                in_stock: false,
            },
        ),
        (
            "/stock 5 IN",
            ShopCommand::SetStock {
                product: 5,
                in_stock: true,
            },
        ),
        ("/products", ShopCommand::Products),
        ("/help", ShopCommand::Help),
    ] {
        assert_eq!(parse_ok(line), want, "{line}");
    }
}

#[test]
fn lines_for_the_bot_are_not_shop_commands() {
    for line in [
        "watch http://127.0.0.1/products/1",
        "",
        "  ",
        "help",
        "price 1 -25%",
    ] {
        assert_eq!(parse_command(line), None, "{line:?}");
    }
}

#[test]
fn malformed_shop_commands_say_what_is_wrong_and_the_form() {
    for (line, expected) in [
        ("/price", "/price N -25%"),
        ("/price 1", "needs a product number and a change"),
        ("/price 1 -25% now", "needs a product number and a change"),
        ("/price one -25%", "one is not a product number"),
        ("/price 0 -25%", "0 is not a product number"),
        ("/price 1 25%", "-25% or +25%"),
        ("/price 1 -%", "is not a percentage"),
        ("/price 1 -1.2.3%", "is not a percentage"),
        ("/price 1 -0%", "changes nothing"),
        ("/price 1 -100%", "must stay above 0"),
        ("/price 1 -150%", "must stay above 0"),
        ("/price 1 +5000%", "more than the demo shop allows"),
        ("/price 1 -5", "add %"),
        ("/price 1 abc", "abc is not a price"),
        ("/price 1 1.299,00", "is not a price"),
        ("/price 1 0", "above 0"),
        ("/price 1 0.00", "above 0"),
        ("/price 1 99999999", "more than the demo shop sells"),
        ("/stock 5", "/stock N out or /stock N in"),
        ("/stock 5 maybe", "neither out nor in"),
        ("/stock x out", "x is not a product number"),
        ("/products all", "takes nothing after it"),
        ("/prices", "not a shop command"),
        ("/", "not a shop command"),
    ] {
        let message = parse_err(line);
        assert!(message.contains(expected), "{line:?} → {message}");
    }
    // Control characters typed or pasted are not echoed raw.
    let message = parse_err("/price 1 \u{1b}[31m%");
    assert!(!message.contains('\u{1b}'), "{message:?}");
}

#[test]
fn a_percentage_rounds_to_the_minor_unit_and_the_message_shows_the_change() {
    let mut c = Catalogue::default();
    let reply = c.apply(&parse_ok("/price 1 -25%"), &base()).unwrap();
    assert_eq!(
        reply,
        "Product 1 (Noise-cancelling headphones): $249.99 → $187.49 (\u{2212}25%)"
    );
    // 187.49 × 1.1 = 206.239
    let reply = c.apply(&parse_ok("/price 1 +10%"), &base()).unwrap();
    assert!(reply.ends_with("$187.49 → $206.24 (+10%)"), "{reply}");
    // A midpoint rounds away from zero: 0.125 → 0.13.
    c.apply(&parse_ok("/price 1 0.25"), &base()).unwrap();
    c.apply(&parse_ok("/price 1 -50%"), &base()).unwrap();
    assert_eq!(c.products(&base())[0].amount, d("0.13"));
    assert_eq!(c.products(&base())[0].amount.scale(), 2);
}

#[test]
fn a_price_is_never_zero_or_below_and_never_more_precise_than_its_currency() {
    let mut c = Catalogue::default();
    c.apply(&parse_ok("/price 2 0.01"), &base()).unwrap();
    let err = c.apply(&parse_ok("/price 2 -60%"), &base()).unwrap_err();
    assert!(matches!(err, ShopError::NotPositive { .. }), "{err:?}");
    assert!(err.to_string().contains("must stay above 0"), "{err}");
    assert!(err.to_string().contains("Product 2"), "{err}");
    assert_eq!(c.products(&base())[1].amount, d("0.01"), "unchanged");

    let err = c.apply(&parse_ok("/price 3 12.999"), &base()).unwrap_err();
    assert!(err.to_string().contains("12.999"), "{err}");
    assert!(err.to_string().contains("EUR"), "{err}");
    // Trailing zeros are not extra precision.
    let reply = c.apply(&parse_ok("/price 3 999.9000"), &base()).unwrap();
    assert!(reply.contains("1.299,00\u{a0}€ → 999,90\u{a0}€"), "{reply}");
    assert!(reply.contains("(\u{2212}23"), "{reply}");

    c.apply(&parse_ok("/price 4 900000"), &base()).unwrap();
    let err = c.apply(&parse_ok("/price 4 +1000%"), &base()).unwrap_err();
    assert!(matches!(err, ShopError::TooExpensive { .. }), "{err:?}");
}

#[test]
fn unknown_products_and_no_op_changes_are_explained() {
    let mut c = Catalogue::default();
    let err = c.apply(&parse_ok("/price 9 -25%"), &base()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "there is no product 9; the products are 1, 2, 3, 4, 5"
    );
    let err = c.apply(&parse_ok("/stock 6 out"), &base()).unwrap_err();
    assert!(err.to_string().contains("1, 2, 3, 4, 5"), "{err}");

    let reply = c.apply(&parse_ok("/price 1 249.99"), &base()).unwrap();
    assert!(reply.contains("already costs $249.99"), "{reply}");
    let reply = c.apply(&parse_ok("/stock 5 out"), &base()).unwrap();
    assert!(reply.contains("already out of stock"), "{reply}");
    let reply = c.apply(&parse_ok("/stock 5 in"), &base()).unwrap();
    assert_eq!(
        reply,
        "Product 5 (Trail running shoes): out of stock → in stock"
    );
    assert!(c.products(&base())[4].in_stock);
}

#[test]
fn products_and_help_list_what_there_is() {
    let mut c = Catalogue::default();
    let list = c.apply(&ShopCommand::Products, &base()).unwrap();
    for p in c.products(&base()) {
        assert!(list.contains(p.url.as_str()), "{list}");
        assert!(list.contains(&p.price), "{list}");
        assert!(list.contains(&p.name), "{list}");
    }
    assert!(
        list.contains("5. Trail running shoes: $140.00, out of stock"),
        "{list}"
    );
    assert!(list.contains("http://127.0.0.1:4000/products/1-noise-cancelling-headphones"));
    let help = c.apply(&ShopCommand::Help, &base()).unwrap();
    for form in [
        "/price N -25%",
        "/price N 19.99",
        "/stock N out|in",
        "/products",
    ] {
        assert!(help.contains(form), "{help}");
    }
}

#[test]
fn money_is_written_as_each_shop_writes_it() {
    assert_eq!(money(d("1249.99"), "USD"), "$1,249.99");
    assert_eq!(money(d("89"), "GBP"), "£89.00");
    assert_eq!(money(d("1299"), "EUR"), "1.299,00\u{a0}€");
    assert_eq!(money(d("1234567.5"), "EUR"), "1.234.567,50\u{a0}€");
    assert_eq!(money(d("0.13"), "USD"), "$0.13");
    assert_eq!(money(d("5"), "JPY"), "JPY 5");
}

#[test]
fn if_none_match_compares_weakly_and_accepts_lists() {
    assert!(etag_matches("\"a\"", "\"a\""));
    assert!(etag_matches("W/\"a\"", "\"a\""));
    assert!(etag_matches("\"x\", \"a\"", "\"a\""));
    assert!(etag_matches("*", "\"a\""));
    assert!(!etag_matches("\"b\"", "\"a\""));
    assert!(!etag_matches("", "\"a\""));
}

/// Each page as the engine's extractor reads it (the HTTP path is in `tests/api`).
#[test]
fn every_page_reads_as_its_price_and_stock() {
    let extractor = Extractor::new(Rules::default(), 1 << 20);
    let mut c = Catalogue::default();
    let read = |c: &Catalogue, n: usize| {
        let p = &c.products[n - 1];
        let url = product_url_under(&base(), p);
        extractor.extract(&url, product_page(p).html.as_bytes(), Some("text/html"))
    };
    for (n, amount, currency, stock) in [
        (1, "249.99", "USD", Availability::InStock),
        (2, "89.00", "GBP", Availability::InStock),
        (3, "1299.00", "EUR", Availability::InStock),
        (4, "129.00", "USD", Availability::InStock),
        (5, "140.00", "USD", Availability::OutOfStock),
    ] {
        let report = read(&c, n);
        let (got, cur) = report.price().unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!((got, cur.as_str()), (d(amount), currency), "{n}");
        assert_eq!(report.availability, stock, "{n}");
        assert_eq!(report.title.as_deref(), Some(c.products[n - 1].name), "{n}");
    }
    // Every page follows a change of price and of stock.
    for n in 1..=5 {
        let before = product_page(&c.products[n - 1]).etag;
        c.apply(&parse_ok(&format!("/price {n} 10.50")), &base())
            .unwrap();
        let in_stock = c.products[n - 1].in_stock;
        let stock = if in_stock { "out" } else { "in" };
        c.apply(&parse_ok(&format!("/stock {n} {stock}")), &base())
            .unwrap();
        let report = read(&c, n);
        assert_eq!(report.price().unwrap().0, d("10.50"), "{n}");
        let want = if in_stock {
            Availability::OutOfStock
        } else {
            Availability::InStock
        };
        assert_eq!(report.availability, want, "{n}");
        assert_ne!(product_page(&c.products[n - 1]).etag, before, "{n}");
    }
}

#[test]
fn pages_are_found_by_path_and_the_index_links_them_all() {
    let c = Catalogue::default();
    let index = page_at(&c, "/").unwrap().html;
    for p in &c.products {
        assert!(index.contains(&format!("href=\"{}\"", p.path())), "{index}");
        assert!(page_at(&c, &p.path()).is_some());
    }
    assert!(page_at(&c, "/products/1").is_none());
    assert!(page_at(&c, "/products/9-nothing").is_none());
    assert_eq!(
        page_at(&c, "/").unwrap().etag,
        page_at(&c, "/").unwrap().etag
    );
}

#[test]
fn the_search_api_lists_the_products_a_word_names() {
    let catalogue = Catalogue::default();
    let found: serde_json::Value =
        serde_json::from_str(&catalogue.search_json("Running SHOES", &base())).unwrap();
    let products = found["products"].as_array().unwrap();
    assert_eq!(products.len(), 1, "{found}");
    assert_eq!(products[0]["name"], "Trail running shoes");
    assert!(products[0]["url"]
        .as_str()
        .unwrap()
        .ends_with("/products/5-trail-running-shoes"));
    assert_eq!(products[0]["price"], "140.00");
    assert_eq!(products[0]["currency"], "USD");
    let none: serde_json::Value =
        serde_json::from_str(&catalogue.search_json("a", &base())).unwrap();
    assert_eq!(
        none["products"],
        serde_json::json!([]),
        "one-letter words match nothing"
    );
}
