//! Fixtures shared by the unit tests of [`crate::speech`]: the notices, the alert card,
//! the formatting and the `list` / `history` replies all talk about the same product, first
//! price and alert, so their tests build them in one place.

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::domain::Reference;
use crate::price::Currency;
use crate::speech::notices::{AlertItem, ProductView};

pub(super) const NOV_1: u64 = 1_793_491_200_000;
pub(super) const NOV_20: u64 = 1_795_132_800_000;
pub(super) const NOV_24: u64 = 1_795_478_400_000;
pub(super) const NOV_25: u64 = 1_795_564_800_000;

pub(super) fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

pub(super) fn cur(code: &str) -> Currency {
    Currency::parse(code).unwrap()
}

pub(super) fn eur() -> Currency {
    cur("EUR")
}

pub(super) fn product(title: Option<&'static str>) -> ProductView<'static> {
    ProductView {
        url: "https://shop.example/p/1",
        title,
    }
}

pub(super) fn reference(amount: &str) -> Reference {
    Reference {
        amount: dec(amount),
        currency: eur(),
        at_ms: NOV_1,
    }
}

pub(super) fn item(number: usize, title: &'static str, url: &'static str) -> AlertItem<'static> {
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

/// Two alerts for different products, for a digest and its card.
pub(super) fn two_alerts() -> [AlertItem<'static>; 2] {
    [
        item(2, "Kettle", "https://a.example/1"),
        item(5, "Toaster", "https://b.example/2"),
    ]
}

/// A product whose title tries every Markdown and HTML trick, at a URL with parentheses.
pub(super) fn hostile_product() -> ProductView<'static> {
    ProductView {
        url: "https://shop.example/p/(1)",
        title: Some("*Super* _deal_ [2 for 1]](https://evil.example) `x` <b>\\\n  now"),
    }
}
