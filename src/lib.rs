//! pricewatch: a price-watch alert daemon that speaks the Bot Framework protocol.
//!
//! # Layout
//! - [`app`]: builds every component from the config, serves, shuts down within a deadline.
//! - [`config`]: the TOML configuration, environment overrides, secrets, `check-config`.
//! - [`telemetry`]: the tracing subscriber.
//! - [`shutdown`]: SIGINT/SIGTERM to a cancellation token.
//! - [`auth`]: inbound authentication, checked before anything is stored.
//! - [`http`]: `POST /api/messages`, status codes and JSON errors as the SDKs answer.
//! - [`activity`]: Bot Framework Activity JSON, conversation references (no I/O).
//! - [`command`]: what a user types, parsed into a command; product URL normalisation (no I/O).
//! - [`replies`]: every sentence the bot says, in English and French (no I/O).
//! - [`notify`]: what the bot says on its own: first-price follow-ups, alerts and digests (text and cards), failure notices, history and sparklines (no I/O).
//! - [`price`]: page bytes to a price: charsets, HTML scan, JSON-LD, microdata, meta, site
//!   and JSON API rules, the choice among offers, price strings (no I/O).
//! - [`schedule`]: when each product is due, jitter, backoff, and the per-host politeness gate (no I/O).
//! - [`engine`]: fetch then extract: the one way a price is read (probe and the daemon).
//! - [`fetch`]: product pages over HTTP behind the SSRF guard ([`fetch::guard`]).
//! - [`plan`]: what one check of a product changes: schedule, history, trigger states, messages (no I/O).
//! - [`watcher`]: the watch loop: due products through the politeness gate, one fetch each, checks recorded.
//! - [`delivery`]: outbox entries rendered and sent through the connector; failures stay queued.
//! - [`domain`]: watches and alert rules (no I/O).
//! - [`trigger`]: the alert rule: reference price, drop or target, edge-triggered with re-arm, hysteresis and confirmations (no I/O).
//! - [`bot`]: one turn: store the reference, run the command, produce replies.
//! - [`store`]: the durable store behind a narrow trait; the sled backend.
//! - [`connector`]: the adapter, the only module that talks to channels.
//! - [`clock`]: wall-clock time as a dependency.
//!
//! # Errors
//! Each module has its own `thiserror` enum; only `main` uses `anyhow`.

pub mod activity;
pub mod admin;
pub mod app;
pub mod auth;
pub mod bot;
pub mod clock;
pub mod command;
pub mod config;
pub mod connector;
pub mod delivery;
pub mod domain;
pub mod engine;
pub mod fetch;
pub mod http;
pub mod notify;
pub mod plan;
pub mod price;
pub mod ratelimit;
pub mod replies;
pub mod retry;
pub mod schedule;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod trigger;
pub mod watcher;
