//! What the bot says, in English and French: the replies of a turn ([`replies`], and the
//! `list` / `history` views in [`listing`]) the matches of a catalogue search ([`search`]), and what it says on its own ([`notices`], with
//! the alert [`card`]), all written with the locale rules of [`format`](mod@format). No I/O.

pub mod card;
pub mod format;
pub mod listing;
pub mod notices;
pub mod replies;
pub mod search;

#[cfg(test)]
mod test_support;
