//! Helpers shared by the unit tests of the grammar, `url` and `markup`
//! modules: several tests there check markup and URL handling through a whole
//! `parse`, so they build their expectations the same way.

use super::{parse, Command, CommandError, Limits};
use crate::domain::product_url::DEFAULT_MAX_URL_LEN;
use crate::domain::{ProductUrl, Rule};

pub(super) fn limits() -> Limits {
    Limits::default()
}

pub(super) fn p(text: &str) -> Result<Command, CommandError> {
    parse(text, &limits(), None)
}

pub(super) fn url(raw: &str) -> ProductUrl {
    ProductUrl::parse(raw, DEFAULT_MAX_URL_LEN).unwrap()
}

pub(super) fn watch(u: &str, rule: Option<Rule>) -> Result<Command, CommandError> {
    Ok(Command::Watch { url: url(u), rule })
}

pub(super) fn check(cases: &[(&str, Result<Command, CommandError>)]) {
    let mut failures = Vec::new();
    for (input, expected) in cases {
        let got = p(input);
        if &got != expected {
            failures.push(format!(
                "input {input:?}\n  expected {expected:?}\n  got      {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

pub(super) const U: &str = "https://shop.example/p/123";
