//! `pricewatch chat`: a channel of its own in the terminal. It plays the part of a
//! channel's Connector (the `serviceUrl` the bot posts to, on loopback) and of the user's
//! client (activities posted to the bot's `/api/messages`), so the bot can be talked to,
//! and its proactive alerts seen, without the Bot Framework Emulator or Azure.

pub mod client;
pub mod connector;
pub mod render;
pub mod session;
pub mod state;

pub use session::{run, ChatOptions, Local, LocalCommands, Outcome, Source};
