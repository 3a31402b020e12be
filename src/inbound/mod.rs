//! The inbound turn: an activity POSTed to `/api/messages` is checked ([`endpoint`]),
//! parsed ([`activity`]), authenticated ([`auth`]) and handled by the bot ([`bot`]), which
//! reads the user's text as a command ([`command`]). The [`listener`] accepts the
//! connections they arrive on and bounds each in time and all of them in number.

pub mod activity;
pub mod auth;
pub mod bot;
pub mod command;
pub mod endpoint;
pub mod listener;
