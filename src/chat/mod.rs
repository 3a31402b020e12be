//! The terminal channel (`pricewatch chat`): [`render`] draws activities as text, no I/O.

pub mod render;
