//! The price engine's pure core: currencies and price strings. Fetching and page
//! extraction build on it.

pub mod currency;
pub mod parse;

pub use currency::Currency;
pub use parse::{parse_price, CurrencyFound, Hints, ParsedPrice, PriceError};
