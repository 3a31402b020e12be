//! The demo shop: five product pages on a loopback port, each stating its price the way
//! one kind of real shop does, and commands that change prices and stock while the daemon
//! watches, so `pricewatch demo` can show an alert without the internet.
//!
//! The pages cover the price engine's default sources: JSON-LD in dollars, microdata in
//! pounds, a German page whose microdata price is visible text in the European format
//! (`1.299,00 €`, read as a person reads it since microdata has no machine form), meta tags
//! (`product:price:amount`), and a product out of stock. Each page carries an ETag computed
//! from its bytes, so a price or stock change gives a new tag and an unchanged page a 304,
//! as the daemon's conditional fetches expect of a real shop.
//!
//! What the shop holds and says (the [`Catalogue`], [`parse_command`], the pages) is pure;
//! [`DemoShop`] puts it behind HTTP: `GET /` (an index), `GET /products/<n>-<slug>`,
//! `GET /search.json?q=<words>` (the search API the demo's `[[catalog]]` entry describes, so
//! `watch headphones` can be tried), and `POST /control` with one command line as
//! `text/plain`, for a shop run in its own process.

use std::collections::hash_map::DefaultHasher;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use rust_decimal::{Decimal, RoundingStrategy};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;
use warp::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use warp::Filter;

use crate::price::Currency;
use crate::shown::Shown;

/// A control request carries one command line; anything longer is not one.
pub const CONTROL_BODY_LIMIT: usize = 1024;

/// The highest price a command may set: far above every demo product, and low enough that
/// no percentage of it can overflow.
const MAX_PRICE: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

/// The largest rise one command may ask for, in percent.
const MAX_RISE: Decimal = Decimal::from_parts(1000, 0, 0, false, 0);

/// The typographic minus, which reads better in a terminal than a hyphen.
const MINUS: char = '\u{2212}';

#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    #[error("the demo shop listens on loopback only (127.0.0.1 or ::1), not on {0}")]
    NotLoopback(SocketAddr),
    #[error("the demo shop could not listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("there is no product {number}; the products are {valid}")]
    UnknownProduct { number: usize, valid: String },
    #[error("{what} would cost {price}; a price must stay above 0")]
    NotPositive { what: String, price: String },
    #[error("{what} would cost {price}; the demo shop sells nothing above {max}")]
    TooExpensive {
        what: String,
        price: String,
        max: String,
    },
    #[error("{amount} has more decimals than a {currency} price ({digits}); write it without thousands separators, e.g. 1299 or 12.99")]
    TooPrecise {
        amount: Decimal,
        currency: &'static str,
        digits: u32,
    },
}

// ---------------------------------------------------------------------------------------
// Commands

/// A line typed for the shop (not for the bot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShopCommand {
    /// `/price N -25%`, `/price N +10%`, `/price N 19.99`.
    SetPrice { product: usize, change: PriceChange },
    /// `/stock N out`, `/stock N in`.
    SetStock { product: usize, in_stock: bool },
    /// `/products`: every product with its price and link.
    Products,
    /// `/help`.
    Help,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriceChange {
    /// A change in percent: `-25` lowers by a quarter.
    Percent(Decimal),
    /// A new price in the product's currency.
    To(Decimal),
}

const PRICE_FORM: &str =
    "write /price N -25% (a change in percent, + or -) or /price N 19.99 (a new price)";
const STOCK_FORM: &str = "write /stock N out or /stock N in";

/// Reads one line typed at the demo: `None` when it is not for the shop (it does not start
/// with `/`), else the command or a message naming what is wrong and the right form.
pub fn parse_command(line: &str) -> Option<Result<ShopCommand, String>> {
    let line = line.trim();
    if !line.starts_with('/') {
        return None;
    }
    let mut words = line.split_whitespace();
    let name = words.next().unwrap_or_default().to_lowercase();
    let args: Vec<&str> = words.collect();
    Some(match name.as_str() {
        "/price" => parse_price_args(&args),
        "/stock" => parse_stock_args(&args),
        "/products" => no_args(&args, "/products", ShopCommand::Products),
        "/help" => no_args(&args, "/help", ShopCommand::Help),
        _ => Err(format!(
            "{} is not a shop command; the shop understands /price, /stock, /products and /help",
            Shown::id(&name)
        )),
    })
}

fn no_args(args: &[&str], name: &str, command: ShopCommand) -> Result<ShopCommand, String> {
    match args.first() {
        None => Ok(command),
        Some(extra) => Err(format!(
            "{name} takes nothing after it (got {}); write just {name}",
            Shown::id(extra)
        )),
    }
}

fn parse_price_args(args: &[&str]) -> Result<ShopCommand, String> {
    let [number, change] = args else {
        return Err(format!(
            "/price needs a product number and a change: {PRICE_FORM}"
        ));
    };
    let product = parse_product_number(number).map_err(|e| format!("{e}: {PRICE_FORM}"))?;
    let change = parse_change(change)?;
    Ok(ShopCommand::SetPrice { product, change })
}

fn parse_stock_args(args: &[&str]) -> Result<ShopCommand, String> {
    let [number, state] = args else {
        return Err(format!(
            "/stock needs a product number and out or in: {STOCK_FORM}"
        ));
    };
    let product = parse_product_number(number).map_err(|e| format!("{e}: {STOCK_FORM}"))?;
    let in_stock = match state.to_lowercase().as_str() {
        "out" => false,
        "in" => true,
        _ => {
            return Err(format!(
                "{} is neither out nor in: {STOCK_FORM}",
                Shown::id(state)
            ))
        }
    };
    Ok(ShopCommand::SetStock { product, in_stock })
}

fn parse_product_number(word: &str) -> Result<usize, String> {
    let word = word.trim_start_matches('#');
    match word.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{} is not a product number", Shown::id(word))),
    }
}

fn parse_change(word: &str) -> Result<PriceChange, String> {
    if let Some(percent) = word.strip_suffix('%') {
        let (negative, digits) = match percent.chars().next() {
            Some('+') => (false, &percent[1..]),
            Some('-') => (true, &percent[1..]),
            Some(MINUS) => (true, &percent[MINUS.len_utf8()..]),
            _ => {
                return Err(format!(
                    "{}: say whether to lower or raise the price, -{percent}% or +{percent}%",
                    Shown::id(word),
                    percent = Shown::id(percent)
                ))
            }
        };
        let Some(value) = parse_number(digits) else {
            return Err(format!(
                "{} is not a percentage: {PRICE_FORM}",
                Shown::id(word)
            ));
        };
        if value.is_zero() {
            return Err("a change of 0% changes nothing: try -25% or +10%".to_owned());
        }
        if negative && value >= Decimal::ONE_HUNDRED {
            return Err(format!(
                "lowering by {value}% leaves nothing; a price must stay above 0 (try -25%)"
            ));
        }
        if !negative && value > MAX_RISE {
            return Err(format!(
                "+{value}% is more than the demo shop allows (+{MAX_RISE}%)"
            ));
        }
        return Ok(PriceChange::Percent(if negative { -value } else { value }));
    }
    if word.starts_with(['+', '-', MINUS]) {
        return Err(format!(
            "{}: a new price has no sign; for a change in percent add %, e.g. {}%",
            Shown::id(word),
            Shown::id(word)
        ));
    }
    let Some(amount) = parse_number(word) else {
        return Err(format!("{} is not a price: {PRICE_FORM}", Shown::id(word)));
    };
    if amount.is_zero() {
        return Err("a price must be above 0".to_owned());
    }
    if amount > MAX_PRICE {
        return Err(format!(
            "{amount} is more than the demo shop sells anything for ({MAX_PRICE})"
        ));
    }
    Ok(PriceChange::To(amount))
}

/// Digits with at most one decimal separator, a dot or a comma (`19.99`, `19,99`, `20`).
/// Thousands separators are refused rather than guessed at: `1.299` is 1.299 here.
fn parse_number(text: &str) -> Option<Decimal> {
    let (whole, fraction) = match text.split_once(['.', ',']) {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !fraction.is_none_or(digits) {
        return None;
    }
    let plain = match fraction {
        Some(f) => format!("{whole}.{f}"),
        None => whole.to_owned(),
    };
    Decimal::from_str(&plain).ok()
}

// ---------------------------------------------------------------------------------------
// The catalogue

/// How a product page states its price: one way per product, as shops differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Markup {
    /// A `<script type="application/ld+json">` Product with one Offer.
    JsonLd,
    /// A microdata Product whose Offer gives price and currency in `content` attributes.
    Microdata,
    /// A German microdata Product whose price is the visible text (`1.299,00 €`).
    GermanText,
    /// OpenGraph product meta tags (`product:price:amount`).
    Meta,
}

#[derive(Clone, Debug)]
struct Product {
    number: usize,
    slug: &'static str,
    name: &'static str,
    blurb: &'static str,
    markup: Markup,
    /// ISO 4217.
    currency: &'static str,
    price: Decimal,
    in_stock: bool,
}

impl Product {
    fn path(&self) -> String {
        format!("/products/{}-{}", self.number, self.slug)
    }

    fn label(&self) -> String {
        format!("Product {} ({})", self.number, self.name)
    }

    fn price_text(&self) -> String {
        money(self.price, self.currency)
    }
}

/// A product as the demo shows it: what `/products` lists and the tests expect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductInfo {
    pub number: usize,
    pub name: String,
    pub url: Url,
    pub amount: Decimal,
    /// ISO 4217.
    pub currency: &'static str,
    /// The price as the product's page writes it (`$249.99`, `1.299,00 €`).
    pub price: String,
    pub in_stock: bool,
}

/// The shop's products and their current prices and stock. Pure: the server locks one.
#[derive(Clone, Debug)]
pub struct Catalogue {
    products: Vec<Product>,
}

impl Default for Catalogue {
    fn default() -> Self {
        let product = |number, slug, name, blurb, markup, currency, cents, in_stock| Product {
            number,
            slug,
            name,
            blurb,
            markup,
            currency,
            price: Decimal::new(cents, 2),
            in_stock,
        };
        Catalogue {
            products: vec![
                product(
                    1,
                    "noise-cancelling-headphones",
                    "Noise-cancelling headphones",
                    "Over-ear, 30 hours of battery, folds flat for travel.",
                    Markup::JsonLd,
                    "USD",
                    24999,
                    true,
                ),
                product(
                    2,
                    "stainless-steel-kettle",
                    "Stainless steel kettle",
                    "1.7 litres, boils a cup in 45 seconds, keeps warm for 30 minutes.",
                    Markup::Microdata,
                    "GBP",
                    8900,
                    true,
                ),
                product(
                    3,
                    "kaffeevollautomat",
                    "Kaffeevollautomat Barista",
                    "Mahlt, brüht und schäumt Milch auf Knopfdruck.",
                    Markup::GermanText,
                    "EUR",
                    129900,
                    true,
                ),
                product(
                    4,
                    "mechanical-keyboard",
                    "Mechanical keyboard",
                    "Tenkeyless, hot-swappable switches, white backlight.",
                    Markup::Meta,
                    "USD",
                    12900,
                    true,
                ),
                product(
                    5,
                    "trail-running-shoes",
                    "Trail running shoes",
                    "Grippy outsole, rock plate, 6 mm drop.",
                    Markup::JsonLd,
                    "USD",
                    14000,
                    false,
                ),
            ],
        }
    }
}

impl Catalogue {
    fn get(&self, number: usize) -> Result<&Product, ShopError> {
        self.products
            .iter()
            .find(|p| p.number == number)
            .ok_or_else(|| self.unknown(number))
    }

    fn get_mut(&mut self, number: usize) -> Result<&mut Product, ShopError> {
        let unknown = self.unknown(number);
        self.products
            .iter_mut()
            .find(|p| p.number == number)
            .ok_or(unknown)
    }

    fn unknown(&self, number: usize) -> ShopError {
        let numbers: Vec<String> = self.products.iter().map(|p| p.number.to_string()).collect();
        ShopError::UnknownProduct {
            number,
            valid: numbers.join(", "),
        }
    }

    /// Every product, its link under `base` (`http://127.0.0.1:<port>/`).
    pub fn products(&self, base: &Url) -> Vec<ProductInfo> {
        self.products
            .iter()
            .map(|p| ProductInfo {
                number: p.number,
                name: p.name.to_owned(),
                url: product_url_under(base, p),
                amount: p.price,
                currency: p.currency,
                price: p.price_text(),
                in_stock: p.in_stock,
            })
            .collect()
    }

    /// Carries out `command`; the answer is a few lines for the terminal.
    pub fn apply(&mut self, command: &ShopCommand, base: &Url) -> Result<String, ShopError> {
        match *command {
            ShopCommand::SetPrice { product, change } => self.set_price(product, change),
            ShopCommand::SetStock { product, in_stock } => {
                let p = self.get_mut(product)?;
                let word = |in_stock| if in_stock { "in stock" } else { "out of stock" };
                if p.in_stock == in_stock {
                    return Ok(format!(
                        "{} is already {}; nothing changed.",
                        p.label(),
                        word(in_stock)
                    ));
                }
                p.in_stock = in_stock;
                Ok(format!(
                    "{}: {} → {}",
                    p.label(),
                    word(!in_stock),
                    word(in_stock)
                ))
            }
            ShopCommand::Products => Ok(self.listing(base)),
            ShopCommand::Help => Ok(help(base)),
        }
    }

    fn set_price(&mut self, number: usize, change: PriceChange) -> Result<String, ShopError> {
        let p = self.get(number)?;
        let digits = minor_digits(p.currency);
        let old = p.price;
        let new = match change {
            PriceChange::Percent(percent) => {
                let factor = (Decimal::ONE_HUNDRED + percent) / Decimal::ONE_HUNDRED;
                old.checked_mul(factor)
                    .unwrap_or(Decimal::MAX)
                    .round_dp_with_strategy(digits, RoundingStrategy::MidpointAwayFromZero)
            }
            PriceChange::To(amount) => {
                if amount.normalize().scale() > digits {
                    return Err(ShopError::TooPrecise {
                        amount,
                        currency: p.currency,
                        digits,
                    });
                }
                amount
            }
        };
        if new <= Decimal::ZERO {
            return Err(ShopError::NotPositive {
                what: p.label(),
                price: money(new.max(Decimal::ZERO), p.currency),
            });
        }
        if new > MAX_PRICE {
            return Err(ShopError::TooExpensive {
                what: p.label(),
                price: money(new, p.currency),
                max: money(MAX_PRICE, p.currency),
            });
        }
        let mut new = new;
        new.rescale(digits);
        let label = p.label();
        let currency = p.currency;
        if new == old {
            return Ok(format!(
                "{label} already costs {}; nothing changed.",
                money(old, currency)
            ));
        }
        let percent = match change {
            PriceChange::Percent(percent) => percent,
            // Old prices are above 0 by construction, so the division is defined.
            PriceChange::To(_) => ((new - old) * Decimal::ONE_HUNDRED / old)
                .round_dp_with_strategy(1, RoundingStrategy::MidpointAwayFromZero),
        };
        self.get_mut(number)?.price = new;
        Ok(format!(
            "{label}: {} → {} ({})",
            money(old, currency),
            money(new, currency),
            signed_percent(percent)
        ))
    }

    fn listing(&self, base: &Url) -> String {
        let mut out = String::from("The demo shop's products:");
        for p in &self.products {
            let _ = write!(
                out,
                "\n{}. {}: {}, {}\n   {}",
                p.number,
                p.name,
                p.price_text(),
                if p.in_stock {
                    "in stock"
                } else {
                    "out of stock"
                },
                product_url_under(base, p)
            );
        }
        out
    }
}

impl Catalogue {
    /// `GET /search.json?q=`: the products whose name or link has a word of `query`
    /// (case ignored), as `{"products": [{"name", "url", "price", "currency"}]}`.
    pub fn search_json(&self, query: &str, base: &Url) -> String {
        let words: Vec<String> = query
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() >= 2)
            .map(str::to_lowercase)
            .collect();
        let products: Vec<serde_json::Value> = self
            .products
            .iter()
            .filter(|p| {
                let name = p.name.to_lowercase();
                words
                    .iter()
                    .any(|w| name.contains(w.as_str()) || p.slug.contains(w.as_str()))
            })
            .map(|p| {
                let mut amount = p.price;
                amount.rescale(minor_digits(p.currency));
                serde_json::json!({
                    "name": p.name,
                    "url": product_url_under(base, p).as_str(),
                    "price": amount.to_string(),
                    "currency": p.currency,
                })
            })
            .collect();
        serde_json::json!({ "products": products }).to_string()
    }
}

fn help(base: &Url) -> String {
    format!(
        "Shop commands (the demo shop is at {base}):\n\
         \x20 /products          the products, their prices and links\n\
         \x20 /price N -25%      lower product N's price by 25% (+10% raises it)\n\
         \x20 /price N 19.99     give product N a new price (19,99 works too)\n\
         \x20 /stock N out|in    take product N out of stock, or back in\n\
         \x20 /help              this list"
    )
}

fn product_url_under(base: &Url, p: &Product) -> Url {
    let mut url = base.clone();
    url.set_path(&p.path());
    url
}

/// `-25` as `−25%`, `10` as `+10%`.
fn signed_percent(percent: Decimal) -> String {
    let sign = if percent.is_sign_negative() {
        MINUS
    } else {
        '+'
    };
    format!("{sign}{}%", percent.abs().normalize())
}

/// Digits after the decimal point in `code`'s minor unit.
fn minor_digits(code: &str) -> u32 {
    Currency::parse(code).map_or(2, |c| c.minor_digits())
}

/// An amount as the product's page writes it: `$1,249.99`, `£89.00`, `1.299,00 €`.
pub fn money(amount: Decimal, currency: &str) -> String {
    let mut a = amount;
    a.rescale(minor_digits(currency));
    let text = a.abs().to_string();
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let group = |sep: char| {
        let mut out = String::new();
        for (i, c) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i) % 3 == 0 {
                out.push(sep);
            }
            out.push(c);
        }
        out
    };
    let sign = if a.is_sign_negative() && !a.is_zero() {
        "-"
    } else {
        ""
    };
    let with = |thousands: char, decimal: char| {
        if fraction.is_empty() {
            group(thousands)
        } else {
            format!("{}{decimal}{fraction}", group(thousands))
        }
    };
    match currency {
        "USD" => format!("{sign}${}", with(',', '.')),
        "GBP" => format!("{sign}£{}", with(',', '.')),
        "EUR" => format!("{sign}{}\u{a0}€", with('.', ',')),
        code => format!("{sign}{code} {}", with(',', '.')),
    }
}

// ---------------------------------------------------------------------------------------
// Pages

/// A page's bytes with the ETag they get.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Page {
    html: String,
    etag: String,
}

impl Page {
    fn new(html: String) -> Page {
        // From the bytes themselves, so every change a fetcher could see changes the tag,
        // and the same page after a restart keeps it.
        let mut hasher = DefaultHasher::new();
        html.hash(&mut hasher);
        let etag = format!("\"{:016x}\"", hasher.finish());
        Page { html, etag }
    }
}

fn layout(lang: &str, title: &str, head: &str, main: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title} | pricewatch demo shop</title>\n{head}</head>\n<body>\n\
         <header><a href=\"/\">pricewatch demo shop</a></header>\n<main>\n{main}</main>\n\
         <footer>A shop on your own computer, for trying pricewatch.</footer>\n</body>\n</html>\n"
    )
}

fn product_page(p: &Product) -> Page {
    let schema_availability = if p.in_stock {
        "https://schema.org/InStock"
    } else {
        "https://schema.org/OutOfStock"
    };
    let amount = {
        let mut a = p.price;
        a.rescale(minor_digits(p.currency));
        a.to_string()
    };
    let html =
        match p.markup {
            Markup::JsonLd => {
                let data = serde_json::json!({
                    "@context": "https://schema.org",
                    "@type": "Product",
                    "name": p.name,
                    "sku": format!("PW-DEMO-{}", p.number),
                    "description": p.blurb,
                    "offers": {
                        "@type": "Offer",
                        "price": amount,
                        "priceCurrency": p.currency,
                        "availability": schema_availability,
                    }
                });
                let head = format!("<script type=\"application/ld+json\">{data}</script>\n");
                let main = format!(
                "<h1>{}</h1>\n<p>{}</p>\n<p class=\"price\">{}</p>\n<p class=\"stock\">{}</p>\n",
                p.name,
                p.blurb,
                p.price_text(),
                if p.in_stock { "In stock" } else { "Out of stock" }
            );
                layout("en-US", p.name, &head, &main)
            }
            Markup::Microdata => {
                let main = format!(
                    "<div itemscope itemtype=\"https://schema.org/Product\">\n\
                 <h1 itemprop=\"name\">{}</h1>\n<p itemprop=\"description\">{}</p>\n\
                 <div itemprop=\"offers\" itemscope itemtype=\"https://schema.org/Offer\">\n\
                 <meta itemprop=\"priceCurrency\" content=\"{}\">\n\
                 <p class=\"price\"><span itemprop=\"price\" content=\"{amount}\">{}</span></p>\n\
                 <link itemprop=\"availability\" href=\"{schema_availability}\">\
                 <p class=\"stock\">{}</p>\n</div>\n</div>\n",
                    p.name,
                    p.blurb,
                    p.currency,
                    p.price_text(),
                    if p.in_stock {
                        "In stock"
                    } else {
                        "Out of stock"
                    }
                );
                layout("en-GB", p.name, "", &main)
            }
            Markup::GermanText => {
                let main = format!(
                    "<div itemscope itemtype=\"https://schema.org/Product\">\n\
                 <h1 itemprop=\"name\">{}</h1>\n<p itemprop=\"description\">{}</p>\n\
                 <div itemprop=\"offers\" itemscope itemtype=\"https://schema.org/Offer\">\n\
                 <p class=\"preis\">Preis: <span itemprop=\"price\">{}</span> inkl. MwSt.</p>\n\
                 <link itemprop=\"availability\" href=\"{schema_availability}\">\
                 <p class=\"lager\">{}</p>\n</div>\n</div>\n",
                    p.name,
                    p.blurb,
                    p.price_text(),
                    if p.in_stock {
                        "Auf Lager"
                    } else {
                        "Derzeit nicht vorrätig"
                    }
                );
                layout("de", p.name, "", &main)
            }
            Markup::Meta => {
                let head = format!(
                    "<meta property=\"og:type\" content=\"product\">\n\
                 <meta property=\"og:title\" content=\"{}\">\n\
                 <meta property=\"og:description\" content=\"{}\">\n\
                 <meta property=\"product:price:amount\" content=\"{amount}\">\n\
                 <meta property=\"product:price:currency\" content=\"{}\">\n\
                 <meta property=\"product:availability\" content=\"{}\">\n",
                    p.name,
                    p.blurb,
                    p.currency,
                    if p.in_stock {
                        "in stock"
                    } else {
                        "out of stock"
                    }
                );
                let main = format!(
                "<h1>{}</h1>\n<p>{}</p>\n<p class=\"price\">{}</p>\n<p class=\"stock\">{}</p>\n",
                p.name,
                p.blurb,
                p.price_text(),
                if p.in_stock { "In stock" } else { "Out of stock" }
            );
                layout("en-US", p.name, &head, &main)
            }
        };
    Page::new(html)
}

fn index_page(catalogue: &Catalogue) -> Page {
    let mut items = String::new();
    for p in &catalogue.products {
        let _ = writeln!(
            items,
            "<li><a href=\"{}\">{}. {}</a>: {}{}</li>",
            p.path(),
            p.number,
            p.name,
            p.price_text(),
            if p.in_stock { "" } else { " (out of stock)" }
        );
    }
    let main = format!(
        "<h1>pricewatch demo shop</h1>\n<p>Copy a product's link and tell the bot \
         <code>watch &lt;link&gt;</code>.</p>\n<ul>\n{items}</ul>\n"
    );
    Page::new(layout("en", "Products", "", &main))
}

/// The page at `path`, if there is one.
fn page_at(catalogue: &Catalogue, path: &str) -> Option<Page> {
    if path == "/" {
        return Some(index_page(catalogue));
    }
    catalogue
        .products
        .iter()
        .find(|p| p.path() == path)
        .map(product_page)
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, as RFC 9110 asks for
/// GET; `*` matches any current page).
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let strong = etag.trim_start_matches("W/");
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == strong)
}

// ---------------------------------------------------------------------------------------
// The server

struct Shared {
    catalogue: Mutex<Catalogue>,
    base: Url,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Catalogue> {
        // Nothing panics while holding the lock; should it, the catalogue is still whole.
        self.catalogue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self, line: &str) -> Result<String, String> {
        match parse_command(line) {
            None => Err(format!(
                "{} is not a shop command; shop commands start with / (try /help)",
                Shown::id(line.trim())
            )),
            Some(Err(message)) => Err(message),
            Some(Ok(command)) => self
                .lock()
                .apply(&command, &self.base)
                .map_err(|e| e.to_string()),
        }
    }
}

/// The demo shop, serving on a loopback port until [`DemoShop::shutdown`] or drop.
pub struct DemoShop {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl DemoShop {
    /// Listens on `addr` (loopback only; port 0 picks a free one) and starts serving.
    pub async fn start(addr: SocketAddr) -> Result<DemoShop, ShopError> {
        if !addr.ip().is_loopback() {
            return Err(ShopError::NotLoopback(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ShopError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ShopError::Bind { addr, source })?;
        let base = Url::parse(&format!("http://{addr}/")).map_err(|e| ShopError::Bind {
            addr,
            source: io::Error::new(io::ErrorKind::InvalidInput, e),
        })?;
        let shared = Arc::new(Shared {
            catalogue: Mutex::new(Catalogue::default()),
            base,
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            warp::serve(routes(shared.clone()))
                .incoming(listener)
                .graceful(async {
                    // A dropped sender stops the shop too.
                    let _ = stopped.await;
                })
                .run(),
        );
        Ok(DemoShop {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>/`
    pub fn base_url(&self) -> Url {
        self.shared.base.clone()
    }

    /// Product `number`'s page, `None` for a number the shop does not have.
    pub fn product_url(&self, number: usize) -> Option<Url> {
        let catalogue = self.shared.lock();
        let p = catalogue.get(number).ok()?;
        Some(product_url_under(&self.shared.base, p))
    }

    pub fn products(&self) -> Vec<ProductInfo> {
        self.shared.lock().products(&self.shared.base)
    }

    /// Carries out a command typed at the demo; the answer is for the terminal.
    pub fn apply(&self, command: &ShopCommand) -> Result<String, ShopError> {
        self.shared.lock().apply(command, &self.shared.base)
    }

    /// Stops accepting, lets requests in flight finish, and waits for the server to end.
    pub async fn shutdown(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            // The server task only ends by the signal or a panic; either way it is over.
            let _ = task.await;
        }
    }
}

impl Drop for DemoShop {
    fn drop(&mut self) {
        // Dropping the sender is the shutdown signal; the server then ends on its own.
        self.stop.take();
    }
}

type Reply = Response<Bytes>;

fn routes(
    shared: Arc<Shared>,
) -> impl Filter<Extract = (Reply,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::<Vec<(String, String)>>())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: Vec<(String, String)>,
                  headers: HeaderMap,
                  body| {
                let shared = shared.clone();
                async move {
                    if path.as_str() == "/search.json" && method == Method::GET {
                        let q = query
                            .iter()
                            .find(|(k, _)| k == "q")
                            .map_or("", |(_, v)| v.as_str());
                        let json = shared.lock().search_json(q, &shared.base);
                        return Response::builder()
                            .status(StatusCode::OK)
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(Bytes::from(json))
                            .unwrap_or_else(|_| {
                                text(StatusCode::INTERNAL_SERVER_ERROR, "no answer\n")
                            });
                    }
                    answer(&shared, &method, path.as_str(), &headers, body).await
                }
            },
        )
}

async fn answer<S, B>(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: S,
) -> Reply
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if path == "/control" {
        if method != Method::POST {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "POST a shop command here\n");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return r;
        }
        let line = match read_line(headers, body).await {
            Ok(line) => line,
            Err(refusal) => return refusal,
        };
        return match shared.run(&line) {
            Ok(message) => text(StatusCode::OK, &format!("{message}\n")),
            Err(message) => text(StatusCode::BAD_REQUEST, &format!("{message}\n")),
        };
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "the shop's pages are read with GET\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let page = page_at(&shared.lock(), path);
    let Some(page) = page else {
        return text(
            StatusCode::NOT_FOUND,
            "no such page; the products are listed at /\n",
        );
    };
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| etag_matches(v, &page.etag));
    let builder = Response::builder()
        .header(header::ETAG, &page.etag)
        .header(header::CACHE_CONTROL, "no-cache");
    let built = if matches {
        builder.status(StatusCode::NOT_MODIFIED).body(Bytes::new())
    } else {
        builder
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Bytes::from(page.html))
    };
    built.unwrap_or_else(|_| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the page could not be built\n",
        )
    })
}

/// The control body as one line, or the response refusing it.
async fn read_line<S, B>(headers: &HeaderMap, body: S) -> Result<String, Reply>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("send one shop command line, at most {CONTROL_BODY_LIMIT} bytes\n"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > CONTROL_BODY_LIMIT as u64) {
        return Err(too_large());
    }
    let mut body = std::pin::pin!(body);
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let Ok(mut chunk) = chunk else {
            return Err(text(
                StatusCode::BAD_REQUEST,
                "the body could not be read\n",
            ));
        };
        if bytes.len() + chunk.remaining() > CONTROL_BODY_LIMIT {
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            bytes.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    let Ok(line) = String::from_utf8(bytes.to_vec()) else {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "the body is not UTF-8 text\n",
        ));
    };
    let line = line.trim();
    if line.is_empty() {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "send one shop command, e.g. /price 1 -25%\n",
        ));
    }
    if line.contains(['\n', '\r']) {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "send one shop command per request\n",
        ));
    }
    Ok(line.to_owned())
}

fn text(status: StatusCode, message: &str) -> Reply {
    let mut r = Response::new(Bytes::from(message.to_owned()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests;
