//! pricewatch: a price-watch alert daemon that speaks the Bot Framework protocol.
//!
//! # Layout
//! The folders follow the subsystems; ARCHITECTURE.md has the code map, file by file.
//! - [`app`]: builds every component from the config, serves, shuts down within a deadline.
//! - [`inbound`]: one turn: the endpoint, authentication, Activity JSON, the bot, commands.
//! - [`price`]: a product page to a price: fetch behind the SSRF guard, charsets, the HTML
//!   scan, JSON-LD, microdata, meta, site and JSON API rules, price strings, currencies;
//!   the shop catalogues `watch <product name>` searches.
//! - [`watch`]: the watch loop: scheduling and the host gate, the watcher, what one check
//!   changes (`plan`), and the alert rule (`trigger`).
//! - [`delivery`]: proactive messages: outbox to channel through the Connector, retries,
//!   rate limits, the outbound token.
//! - [`chat`]: the terminal channel: activities drawn as text, buttons chosen by number.
//! - [`speech`]: what the bot says, in English and French (no I/O).
//! - [`store`]: the durable store behind a narrow trait; the sled backend.
//! - [`ops`]: configuration, telemetry, signals, the operator's commands.
//! - [`demo`]: `pricewatch demo`: the demo shop on loopback that the daemon watches.
//! - [`domain`]: watches, products, alert rules and outbox entries (no I/O).
//! - [`alloc`]: the allocator, and how soon it returns freed memory.
//! - [`clock`]: wall-clock time as a dependency.
//! - [`error`]: the error policy and the one way an error is shown.
//! - [`random`]: the seeded generator behind jitter, as a dependency.
//! - [`secret`]: a credential that is never printed.
//! - [`shown`]: outside text as a log line shows it: control characters escaped, length
//!   capped.
//!
//! # Errors
//! Each module has its own `thiserror` enum; only `main` uses `anyhow`. A cause is kept as
//! the error's `source()` and shown with [`error::Chain`] (the policy is in [`error`]).

pub mod alloc;
pub mod app;
pub mod chat;
pub mod clock;
pub mod delivery;
pub mod demo;
pub mod domain;
pub mod error;
pub mod inbound;
pub mod liveness;
pub mod ops;
pub mod price;
pub mod random;
pub mod secret;
pub mod shown;
pub mod speech;
pub mod store;
pub mod watch;
