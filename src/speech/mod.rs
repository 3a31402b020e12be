//! What the bot says, in English and French: the replies of a turn ([`replies`]) and what
//! it says on its own ([`notices`]). No I/O.

pub mod notices;
pub mod replies;
