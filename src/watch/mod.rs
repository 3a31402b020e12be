//! The watch loop: due products ([`schedule`]) fetched once each through the politeness
//! [`gate`] by the [`watcher`], each check decided by [`plan`] and the alert rule
//! ([`trigger`]), and recorded by the store.

pub mod gate;
pub mod plan;
pub mod run;
pub mod schedule;
pub mod share;
pub mod trigger;
pub mod watcher;

use crate::domain::ProductUrl;

/// What the bot needs of the watch loop: a new watch's first check, started at once in the
/// background so that the reply does not wait for the page. The daemon passes its
/// [`watcher::Watcher`]; the bot knows nothing else of the loop.
pub trait FirstCheck: Send + Sync + 'static {
    fn start_first_check(&self, url: ProductUrl);
}
