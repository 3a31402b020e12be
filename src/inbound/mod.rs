//! The inbound turn: an activity POSTed to `/api/messages` is checked ([`endpoint`]),
//! parsed ([`activity`]), authenticated ([`auth`]) and handled by the bot ([`bot`]), which
//! reads the user's text as a command ([`command`]).

pub mod activity;
pub mod auth;
pub mod bot;
pub mod command;
pub mod endpoint;
