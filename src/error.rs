//! The error policy, and the one way an error is shown to a person.
//!
//! Each module has its own `thiserror` enum; only `main` uses `anyhow`. An error that has a
//! cause keeps it as its `source()` (a sled, I/O, HTTP or task error), and its own message
//! does not repeat it: the message says what failed, the cause says why. Whoever shows an
//! error to a person (the CLI, a log line, a config report) shows the whole chain with
//! [`Chain`], so no layer formats another's message into its own.

use std::error::Error;
use std::fmt;

/// An error and its causes, joined by `": "`: `cannot open the data directory x: it is
/// locked by another process`.
pub struct Chain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn shows_every_cause_once_in_order() {
        let e = Outer(Middle(std::io::Error::other("inner")));
        assert_eq!(Chain(&e).to_string(), "outer: middle: inner");
        assert_eq!(Chain(&std::io::Error::other("alone")).to_string(), "alone");
    }
}
