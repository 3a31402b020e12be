//! `pricewatch demo`: a shop on loopback to watch, so the whole loop (watch, price change,
//! alert) can be tried with no configuration and no internet.

pub mod run;
pub mod shop;
