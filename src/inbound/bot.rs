//! One turn of the conversation: an authenticated activity in, the replies out.
//!
//! The bot stores the conversation reference and the watches, and decides what to answer.
//! It never talks to a channel: the caller delivers the replies (through the connector, or
//! in the HTTP response for `expectReplies`).

use std::sync::Arc;

use rust_decimal::Decimal;

use crate::clock::Clock;
use crate::domain::ProductUrl;
use crate::domain::{NewWatch, Product, Rule, Stock, Watch};
use crate::error::Chain;
use crate::inbound::activity::{Attachment, OutboundActivity, ValidActivity};
use crate::inbound::command::{self, Command, HoldTarget, Limits, UnwatchTarget};
use crate::price::catalog::{Catalogs, PoliteFetch};
use crate::shown::Shown;
use crate::speech::card::ADAPTIVE_CARD;
use crate::speech::notices::renders_cards;
use crate::speech::replies::{self, Lang};
use crate::speech::search::{self, Said};
use crate::speech::{listing, notices};
use crate::store::{AddWatch, ReferenceChange, Store, StoreError};
use crate::watch::FirstCheck;

/// How the bot handles a turn: its name, the drop a bare `watch` gets, and the limits on
/// what a conversation may ask. (The `[bot]` section, `BotConfig`, is the Bot Framework
/// registration instead: app id, password, endpoints.)
#[derive(Debug, Clone)]
pub struct TurnSettings {
    /// The bot's display name, used in the welcome.
    pub name: String,
    /// The drop a `watch` without one gets, in percent.
    pub default_drop: Decimal,
    pub max_watches_per_conversation: usize,
    pub limits: Limits,
    /// Whether prices are checked (`schedule.enabled`): a new watch then gets its first
    /// check at once, and its reply says checks are running.
    pub checks: bool,
    /// The shops `watch <product name>` searches (`[[catalog]]`).
    pub catalogs: Arc<Catalogs>,
}

#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// `apology`: what to tell the user (the store cannot take the turn now).
    #[error("storing the conversation reference failed")]
    Reference {
        #[source]
        source: StoreError,
        apology: Vec<OutboundActivity>,
    },
}

/// The result of a turn.
#[derive(Debug)]
pub struct Turn {
    pub replies: Vec<OutboundActivity>,
    pub reference: ReferenceChange,
}

pub struct Bot {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Replaced on reload (default drop, watch limit).
    settings: std::sync::RwLock<Arc<TurnSettings>>,
    /// Gives a new watch its first check at once while [`TurnSettings::checks`] holds;
    /// `None` in tests of the bot alone.
    first_check: Option<Arc<dyn FirstCheck>>,
    /// How a catalogue search reaches the shops (the watch loop's fetcher and gate);
    /// `None`: searches are answered as if no catalogue were configured.
    catalog_fetch: Option<Arc<dyn PoliteFetch>>,
}

impl Bot {
    fn settings(&self) -> Arc<TurnSettings> {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Turns from now on use `settings` (a reloaded configuration).
    pub fn reconfigure(&self, settings: TurnSettings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(settings);
    }

    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: TurnSettings) -> Self {
        Bot {
            store,
            clock,
            settings: std::sync::RwLock::new(Arc::new(settings)),
            first_check: None,
            catalog_fetch: None,
        }
    }

    /// New watches get their first check right away, not at the next tick.
    pub fn with_first_check(mut self, first_check: Arc<dyn FirstCheck>) -> Self {
        self.first_check = Some(first_check);
        self
    }

    /// `watch <product name>` searches the configured catalogues through `fetch`.
    pub fn with_catalog_fetch(mut self, fetch: Arc<dyn PoliteFetch>) -> Self {
        self.catalog_fetch = Some(fetch);
        self
    }

    /// Handles one activity. Only a failure to store the reference is an error: command
    /// failures become replies that explain them.
    pub async fn turn(&self, activity: &ValidActivity) -> Result<Turn, BotError> {
        let lang = Lang::from_locale(activity.activity.locale.as_deref());
        let reference = match self.store.upsert_reference(&activity.reference()).await {
            Ok(reference) => reference,
            Err(source) => {
                // Nothing of the turn can be kept, but the user who wrote is still told,
                // rather than left without an answer.
                let asked = activity.kind == "message" && activity.command_text().is_some();
                let apology = asked
                    .then(|| OutboundActivity::reply(activity, replies::storage_failed(lang)))
                    .into_iter()
                    .collect();
                return Err(BotError::Reference { source, apology });
            }
        };
        let said = match activity.kind.as_str() {
            "message" => match activity.command_text() {
                Some(text) => Some(self.on_command(activity, lang, text).await),
                // An attachment or a reaction without text: nothing to answer.
                None => None,
            },
            "conversationUpdate" if activity.humans_added().next().is_some() => {
                Some(Said::from(replies::welcome(lang, &self.settings().name)))
            }
            _ => None,
        };
        Ok(Turn {
            replies: said
                .map(|said| {
                    let mut reply = OutboundActivity::reply(activity, replies::said(&said.text));
                    if let Some(card) = said.card.filter(|_| renders_cards(&activity.channel_id)) {
                        reply.attachments.push(Attachment {
                            content_type: ADAPTIVE_CARD.to_owned(),
                            content: card,
                        });
                    }
                    reply
                })
                .into_iter()
                .collect(),
            reference,
        })
    }

    async fn on_command(&self, activity: &ValidActivity, lang: Lang, text: &str) -> Said {
        let locale = activity.activity.locale.as_deref();
        let command = match command::parse(text, &self.settings().limits, locale) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %Shown::text(Chain(&e)), "command refused");
                return replies::command_error(lang, &e).into();
            }
        };
        if let Command::Search { query, rule } = &command {
            return self.search(activity, lang, query, rule.as_ref()).await;
        }
        match self.execute(activity, lang, text, command).await {
            Ok(reply) => reply.into(),
            Err(e) => {
                tracing::error!(error = %Chain(&e), "storage failed during a command");
                replies::storage_failed(lang).into()
            }
        }
    }

    /// `watch <product name>`: the best matches of every catalogue, each offered with the
    /// command that watches it. Nothing is stored: choosing a match is a new turn.
    async fn search(
        &self,
        activity: &ValidActivity,
        lang: Lang,
        query: &str,
        rule: Option<&Rule>,
    ) -> Said {
        let settings = self.settings();
        let (Some(fetch), false) = (&self.catalog_fetch, settings.catalogs.is_empty()) else {
            return search::no_catalogs(lang).into();
        };
        let mut result = settings.catalogs.search(query, fetch.as_ref()).await;
        // A match must be a link `watch` accepts, or its button would only earn an error.
        let max_url_len = settings.limits.max_url_len;
        result
            .found
            .retain(|f| ProductUrl::parse(f.url.as_str(), max_url_len).is_ok());
        if result.found.is_empty() {
            return if result.failed.len() == settings.catalogs.iter().count() {
                search::search_failed(lang, &result.failed)
            } else {
                search::nothing_found(lang, query, &result.failed)
            }
            .into();
        }
        let cards = renders_cards(&activity.channel_id);
        search::matches(lang, query, rule, &result.found, &result.failed, cards)
    }

    async fn execute(
        &self,
        activity: &ValidActivity,
        lang: Lang,
        text: &str,
        command: Command,
    ) -> Result<String, StoreError> {
        let conversation = activity.key();
        Ok(match command {
            // Answered by `search` before a turn gets here.
            Command::Search { .. } => search::no_catalogs(lang),
            Command::Help => replies::help(lang),
            Command::Unknown { suggestion } => {
                replies::unknown(lang, &command::clean_text(text), suggestion)
            }
            Command::Watch { url, rule } => {
                let rule = rule.unwrap_or(Rule::Drop {
                    percent: self.settings().default_drop,
                });
                let new = NewWatch {
                    conversation: conversation.clone(),
                    user: activity.from().cloned(),
                    url,
                    rule,
                    created_at_ms: self.clock.now_ms(),
                };
                match self
                    .store
                    .add_watch(new, self.settings().max_watches_per_conversation)
                    .await?
                {
                    AddWatch::Added(w) => {
                        let first_check =
                            self.first_check.as_ref().filter(|_| self.settings().checks);
                        if let Some(first_check) = first_check {
                            // The reply goes out now; the first price follows as a
                            // proactive message when the page has been read.
                            first_check.start_first_check(w.url.clone());
                        }
                        let all = self.store.watches(&conversation).await?;
                        let checks = match first_check {
                            Some(_) => replies::Checks::Running,
                            None => replies::Checks::Paused,
                        };
                        replies::watch_added(lang, number_of(&all, &w), &w, checks)
                    }
                    AddWatch::Duplicate(w) => {
                        let all = self.store.watches(&conversation).await?;
                        replies::duplicate(lang, number_of(&all, &w), &w)
                    }
                    AddWatch::LimitReached { max } => replies::limit_reached(lang, max),
                }
            }
            Command::List => {
                let all = self.store.watches(&conversation).await?;
                let mut products = Vec::with_capacity(all.len());
                for w in &all {
                    products.push(self.store.product(&w.url).await?);
                }
                let entries: Vec<listing::ListEntry<'_>> = all
                    .iter()
                    .zip(&products)
                    .enumerate()
                    .map(|(i, (w, p))| list_entry(i + 1, w, p.as_ref()))
                    .collect();
                listing::list(lang, &entries)
            }
            Command::Unwatch(target) => {
                let all = self.store.watches(&conversation).await?;
                let chosen: Vec<(usize, &Watch)> = match &target {
                    UnwatchTarget::All => all.iter().enumerate().map(|(i, w)| (i + 1, w)).collect(),
                    UnwatchTarget::Index(n) => match all.get(n.wrapping_sub(1)) {
                        Some(w) => vec![(*n, w)],
                        None => return Ok(replies::no_such_number(lang, *n, all.len())),
                    },
                    UnwatchTarget::Url(url) => match all.iter().position(|w| &w.url == url) {
                        Some(i) => vec![(i + 1, &all[i])],
                        None => return Ok(replies::not_watching_url(lang, url.as_str())),
                    },
                };
                let ids: Vec<u64> = chosen.iter().map(|(_, w)| w.id).collect();
                let gone = self.store.remove_watches(&conversation, &ids).await?;
                // Report what was really removed: a concurrent `unwatch` may have won.
                let removed: Vec<(usize, Watch)> = chosen
                    .into_iter()
                    .filter(|(_, w)| gone.iter().any(|g| g.id == w.id))
                    .map(|(n, w)| (n, w.clone()))
                    .collect();
                replies::removed(lang, &removed)
            }
            Command::Change { index, rule } => {
                let all = self.store.watches(&conversation).await?;
                let Some(w) = all.get(index.wrapping_sub(1)) else {
                    return Ok(replies::no_such_number(lang, index, all.len()));
                };
                // A restock watch keeps availability, a price watch a reference: neither
                // has what the other kind needs, so the kind never changes.
                if (w.rule == Rule::Restock) != (rule == Rule::Restock) {
                    return Ok(replies::rule_kind_differs(lang, index, w));
                }
                match self.store.change_rule(&conversation, w.id, rule).await? {
                    Some((before, after)) => {
                        replies::rule_changed(lang, index, &before.rule, &after.rule)
                    }
                    // A concurrent `unwatch` won.
                    None => replies::no_such_number(lang, index, all.len().saturating_sub(1)),
                }
            }
            Command::Hold { target, on_hold } => {
                let all = self.store.watches(&conversation).await?;
                let chosen: Vec<(usize, &Watch)> = match target {
                    HoldTarget::All => all.iter().enumerate().map(|(i, w)| (i + 1, w)).collect(),
                    HoldTarget::Index(n) => match all.get(n.wrapping_sub(1)) {
                        Some(w) => vec![(n, w)],
                        None => return Ok(replies::no_such_number(lang, n, all.len())),
                    },
                };
                let ids: Vec<u64> = chosen.iter().map(|(_, w)| w.id).collect();
                let found = self.store.set_on_hold(&conversation, &ids, on_hold).await?;
                let done: Vec<(usize, Watch)> = chosen
                    .into_iter()
                    .filter_map(|(n, w)| {
                        found.iter().find(|f| f.id == w.id).map(|f| (n, f.clone()))
                    })
                    .collect();
                replies::held(lang, on_hold, &done)
            }
            Command::History(n) => {
                let all = self.store.watches(&conversation).await?;
                match all.get(n.wrapping_sub(1)) {
                    Some(w) => {
                        let product = self.store.product(&w.url).await?;
                        let points = self.store.history(&w.url).await?;
                        let view = notices::ProductView {
                            url: w.url.as_str(),
                            title: product.as_ref().and_then(|p| p.title.as_deref()),
                        };
                        listing::history(lang, n, view, &points, self.clock.now_ms())
                    }
                    None => replies::no_such_number(lang, n, all.len()),
                }
            }
        })
    }
}

/// One `list` line's facts: the watch's trigger state and its product's last check.
fn list_entry<'a>(
    number: usize,
    w: &'a Watch,
    product: Option<&'a Product>,
) -> listing::ListEntry<'a> {
    let last = w.trigger.last;
    let state = match (product.and_then(|p| p.health.failing_since_ms), last) {
        (Some(since_ms), _) => listing::WatchState::CannotRead { since_ms },
        _ if w.rule == Rule::Restock => match w.trigger.stock {
            Some(Stock::OutOfStock) => listing::WatchState::OutOfStock,
            Some(Stock::InStock) if w.trigger.fired => listing::WatchState::InStock,
            _ => listing::WatchState::Watching,
        },
        (None, Some(s)) if s.availability == crate::price::extract::Availability::OutOfStock => {
            listing::WatchState::OutOfStock
        }
        _ if w.trigger.fired => listing::WatchState::Alerted,
        _ => listing::WatchState::Watching,
    };
    listing::ListEntry {
        number,
        product: notices::ProductView {
            url: w.url.as_str(),
            title: product.and_then(|p| p.title.as_deref()),
        },
        rule: &w.rule,
        added_ms: w.created_at_ms,
        current: last.map(|s| (s.amount, s.currency)),
        reference: w.trigger.reference,
        last_check_ms: product.and_then(|p| p.last_check_ms),
        state,
        stock: w.trigger.stock,
        on_hold: w.on_hold,
    }
}

/// The 1-based number `list` shows for `watch`.
fn number_of(all: &[Watch], watch: &Watch) -> usize {
    all.iter()
        .position(|w| w.id == watch.id)
        .map(|i| i + 1)
        .unwrap_or(all.len())
}
