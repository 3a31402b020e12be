//! The watch loop: due products ([`schedule`]) fetched once each through the politeness
//! [`gate`] by the [`watcher`], each check decided by [`plan`] and the alert rule
//! ([`trigger`]), and recorded by the store.

pub mod gate;
pub mod plan;
pub mod run;
pub mod schedule;
pub mod trigger;
pub mod watcher;
