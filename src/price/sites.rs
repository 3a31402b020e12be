//! The built-in site rules: where the buy-box price is on the product pages of the big
//! marketplaces, which publish no usable structured price for it, and the currency each
//! storefront implies. On by default; a `[[site_rule]]` for the same host wins (`rules`
//! tries the config's rules first).
//!
//! Each set lists its selectors most specific first; the first that gives a price wins, so
//! a set can carry the markup of several page generations. Every selector is scoped to the
//! buy box where the site has one, because a marketplace page also shows list prices,
//! used offers, other sellers' "from" prices and carousels of other products.
//!
//! The selectors follow these sites' product pages as they were in 2024–2025 (no page is
//! fetched to build them). A site that changes its markup makes its rule find nothing,
//! which is a `no_price` error naming the rule set, never a wrong price from elsewhere.

/// One way a built-in set reads the price.
#[derive(Clone, Copy, Debug)]
pub enum BuiltinPick {
    /// One element's text.
    Text(&'static str),
    /// One element's attribute (read like visible text).
    Attribute(&'static str, &'static str),
    /// The whole part and the fraction in two elements; the fraction may be missing (JPY).
    Split {
        whole: &'static str,
        fraction: &'static str,
    },
}

/// A built-in rule set: its name, its storefronts (host and currency) and its picks.
#[derive(Debug)]
pub struct BuiltinSet {
    pub name: &'static str,
    pub storefronts: &'static [(&'static str, &'static str)],
    pub picks: &'static [BuiltinPick],
}

use BuiltinPick::{Attribute, Split, Text};

/// Every built-in rule set.
pub const BUILTIN: &[BuiltinSet] = &[
    // Amazon: the price to pay sits in `#corePriceDisplay_desktop_feature_div` (most
    // products) or `#corePrice_feature_div` (books, media, simpler layouts) and, on older
    // pages, the `#apex_desktop` price table. Its `span.a-offscreen` holds the whole price
    // but is sometimes rendered empty; then the visible `a-price-whole` (which may end with
    // the decimal separator) and `a-price-fraction` are read. `priceToPay`/`apexPriceToPay`
    // mark the current price; a struck list price is an `a-text-price` and is never matched,
    // and used offers (`#usedBuySection`) and other sellers (`#olp_feature_div`,
    // `#dynamic-aod-ingress-box`) are outside these containers.
    BuiltinSet {
        name: "amazon",
        storefronts: &[
            ("amazon.com", "USD"),
            ("amazon.co.uk", "GBP"),
            ("amazon.de", "EUR"),
            ("amazon.fr", "EUR"),
            ("amazon.it", "EUR"),
            ("amazon.es", "EUR"),
            ("amazon.nl", "EUR"),
            ("amazon.ca", "CAD"),
            ("amazon.com.au", "AUD"),
            ("amazon.co.jp", "JPY"),
            ("amazon.in", "INR"),
            ("amazon.com.br", "BRL"),
            ("amazon.com.mx", "MXN"),
        ],
        picks: &[
            Text("#corePriceDisplay_desktop_feature_div span.priceToPay > span.a-offscreen"),
            Split {
                whole: "#corePriceDisplay_desktop_feature_div span.priceToPay span.a-price-whole",
                fraction:
                    "#corePriceDisplay_desktop_feature_div span.priceToPay span.a-price-fraction",
            },
            Text("#corePrice_feature_div span.a-price:not(.a-text-price) > span.a-offscreen"),
            Split {
                whole: "#corePrice_feature_div span.a-price:not(.a-text-price) span.a-price-whole",
                fraction:
                    "#corePrice_feature_div span.a-price:not(.a-text-price) span.a-price-fraction",
            },
            Text("#apex_desktop span.apexPriceToPay > span.a-offscreen"),
            Text("#apex_desktop span.priceToPay > span.a-offscreen"),
            Text("#price_inside_buybox"),
            Text("#newBuyBoxPrice"),
            Text("#priceblock_dealprice"),
            Text("#priceblock_ourprice"),
        ],
    },
    // eBay: the 2023+ item page puts the price in `div.x-price-primary` (its
    // `span.ux-textspans`), inside `div.x-bin-price` for Buy It Now and `div.x-bid-price`
    // for the current bid; the converted "approximately" price is `x-price-approx`, apart.
    // Older pages: `#prcIsum` (Buy It Now), `#mm-saleDscPrc` (sale), `#prcIsum_bidPrice`.
    BuiltinSet {
        name: "ebay",
        storefronts: &[
            ("ebay.com", "USD"),
            ("ebay.co.uk", "GBP"),
            ("ebay.de", "EUR"),
            ("ebay.fr", "EUR"),
            ("ebay.it", "EUR"),
            ("ebay.es", "EUR"),
            ("ebay.nl", "EUR"),
            ("ebay.at", "EUR"),
            ("ebay.be", "EUR"),
            ("ebay.ie", "EUR"),
            ("ebay.ch", "CHF"),
            ("ebay.pl", "PLN"),
            ("ebay.ca", "CAD"),
            ("ebay.com.au", "AUD"),
        ],
        picks: &[
            Text("div.x-bin-price div.x-price-primary span.ux-textspans"),
            Text("div.x-bid-price div.x-price-primary span.ux-textspans"),
            Text("div.x-price-primary span.ux-textspans"),
            Text("#prcIsum"),
            Text("#mm-saleDscPrc"),
            Text("#prcIsum_bidPrice"),
        ],
    },
    // Walmart: the hero price is `span[itemprop=price]` (also `data-seo-id=hero-price`)
    // inside `span[data-testid=price-wrap]` of the buy box, written "$24.88" or
    // "Now $24.88"; the was-price is `data-testid=strike-through-price`. The item carries
    // no itemscope around it, so microdata does not read it.
    BuiltinSet {
        name: "walmart",
        storefronts: &[("walmart.com", "USD"), ("walmart.ca", "CAD")],
        picks: &[
            Text("[data-testid=price-wrap] [itemprop=price]"),
            Text("[data-seo-id=hero-price]"),
        ],
    },
    // Best Buy: `div.priceView-customer-price > span[aria-hidden=true]` is the customer
    // price ("$1,299.99"); its sibling `sr-only` span repeats it in a sentence and the
    // was-price is `div.pricing-price__regular-price`. Newer pages wrap it in
    // `[data-testid=customer-price]`; Best Buy Canada writes `[data-automation=product-price]`.
    BuiltinSet {
        name: "bestbuy",
        storefronts: &[("bestbuy.com", "USD"), ("bestbuy.ca", "CAD")],
        picks: &[
            Text("div.priceView-customer-price > span[aria-hidden=true]"),
            Text("[data-testid=customer-price] > span[aria-hidden=true]"),
            Text("[data-automation=product-price] > span"),
        ],
    },
    // Target: the current price is `span[data-test=product-price]`; the regular price is a
    // separate `data-test=product-regular-price`.
    BuiltinSet {
        name: "target",
        storefronts: &[("target.com", "USD")],
        picks: &[Text("span[data-test=product-price]")],
    },
    // AliExpress: the PDP's current price is the `product-price-value` span in
    // `div.product-price-current` (the hashed `price--currentPriceText--…` class beside it
    // changes with releases); the original price is `price--originalText--…`. The currency
    // sign shown follows the shopper's setting, so the storefront currency only resolves a
    // bare `$`.
    BuiltinSet {
        name: "aliexpress",
        storefronts: &[
            ("aliexpress.com", "USD"),
            ("aliexpress.us", "USD"),
            ("aliexpress.ru", "RUB"),
        ],
        picks: &[
            Text("div.product-price-current span.product-price-value"),
            Text("[class*=\"price--currentPriceText\"]"),
            Text("span.uniform-banner-box-price"),
        ],
    },
    // Mercado Libre / Mercado Livre: the price to pay is the `andes-money-amount` in
    // `div.ui-pdp-price__second-line`, split into `andes-money-amount__fraction` (the whole
    // part, despite its name, "1.299") and `andes-money-amount__cents`; the previous price
    // is an `s.andes-money-amount--previous` on the first line, instalments on the third.
    BuiltinSet {
        name: "mercadolibre",
        storefronts: &[
            ("mercadolibre.com.ar", "ARS"),
            ("mercadolibre.com.mx", "MXN"),
            ("mercadolivre.com.br", "BRL"),
            ("mercadolibre.cl", "CLP"),
            ("mercadolibre.com.co", "COP"),
            ("mercadolibre.com.uy", "UYU"),
            ("mercadolibre.com.pe", "PEN"),
        ],
        picks: &[
            Attribute(
                "div.ui-pdp-price__second-line meta[itemprop=price]",
                "content",
            ),
            Split {
                whole: "div.ui-pdp-price__second-line span.andes-money-amount__fraction",
                fraction: "div.ui-pdp-price__second-line span.andes-money-amount__cents",
            },
        ],
    },
    // Zalando: class names are hashed per release, so the rule keys on the test ids: the
    // price block is `[data-testid=pdp-price-container]`, whose `[data-testid=price-current]`
    // (else its first `p > span`) is the current price; the original price of a sale is
    // `[data-testid=price-original]`.
    BuiltinSet {
        name: "zalando",
        storefronts: &[
            ("zalando.de", "EUR"),
            ("zalando.at", "EUR"),
            ("zalando.fr", "EUR"),
            ("zalando.it", "EUR"),
            ("zalando.es", "EUR"),
            ("zalando.nl", "EUR"),
            ("zalando.be", "EUR"),
            ("zalando.ie", "EUR"),
            ("zalando.fi", "EUR"),
            ("zalando.co.uk", "GBP"),
            ("zalando.ch", "CHF"),
            ("zalando.pl", "PLN"),
            ("zalando.se", "SEK"),
            ("zalando.dk", "DKK"),
            ("zalando.no", "NOK"),
            ("zalando.cz", "CZK"),
        ],
        picks: &[
            Text("[data-testid=pdp-price-container] [data-testid=price-current]"),
            Text("[data-testid=pdp-price-container] p > span"),
        ],
    },
    // Otto: `span.pdp_price__retail-price` (with `js_pdp_price__retail-price`) is the
    // price; the struck former price is `span.pdp_price__old-price` and the "UVP" a
    // `pdp_price__rrp`.
    BuiltinSet {
        name: "otto",
        storefronts: &[("otto.de", "EUR")],
        picks: &[
            Text("div.pdp_price span.pdp_price__retail-price"),
            Text("span.js_pdp_price__retail-price"),
        ],
    },
    // bol.com: the buy block's `span.promo-price[data-test=price]` holds the euros with the
    // cents in its own `sup.promo-price__fraction[data-test=price-fraction]` ("-" for
    // whole euros); other sellers' "vanaf" prices are outside `.buy-block__prices`.
    BuiltinSet {
        name: "bol",
        storefronts: &[("bol.com", "EUR")],
        picks: &[
            Split {
                whole: ".buy-block__prices span.promo-price",
                fraction: ".buy-block__prices sup.promo-price__fraction",
            },
            Split {
                whole: "span.promo-price[data-test=price]",
                fraction: "sup.promo-price__fraction[data-test=price-fraction]",
            },
        ],
    },
    // Allegro: the offer summary (`[data-box-name=summaryOneColumn]` or `Summary`) labels
    // its price container `aria-label="… aktualna cena"` ("current price"); the text inside
    // is split into styled spans, the label is not. The lowest price of the last 30 days is
    // labelled differently.
    BuiltinSet {
        name: "allegro",
        storefronts: &[
            ("allegro.pl", "PLN"),
            ("allegro.cz", "CZK"),
            ("allegro.sk", "EUR"),
            ("allegro.hu", "HUF"),
        ],
        picks: &[
            Attribute(
                "[data-box-name=summaryOneColumn] div[aria-label*=\"aktualna cena\"]",
                "aria-label",
            ),
            Attribute("div[aria-label*=\"aktualna cena\"]", "aria-label"),
            Attribute("div[aria-label*=\"aktuální cena\"]", "aria-label"),
            Attribute("div[aria-label*=\"aktuálna cena\"]", "aria-label"),
        ],
    },
    // Flipkart: class names are generated; the product page's selling price is the div with
    // both `Nx9bqj` and `CxhGGd` (2024+) or `_30jeq3` and `_16Jk6d` (before), the struck
    // MRP `yRaY8j`/`_3I9_wc`. Listing cards reuse `Nx9bqj` alone, so both classes are required.
    BuiltinSet {
        name: "flipkart",
        storefronts: &[("flipkart.com", "INR")],
        picks: &[Text("div.Nx9bqj.CxhGGd"), Text("div._30jeq3._16Jk6d")],
    },
];
