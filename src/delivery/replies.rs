//! The order of a conversation's replies when some of them wait in the outbox.
//!
//! A turn sends its replies at once; one the channel does not take (a timeout, a
//! connection error, 5xx, 429) is queued and delivered like a proactive message. From
//! then on the conversation's replies keep their order by two rules:
//! - a turn whose conversation has queued replies queues its own behind them, without
//!   trying the channel first, and turns of one conversation decide this one at a time
//!   ([`ReplyLanes::enter`]), so none sends while an earlier one may still queue;
//! - delivery sends a queued reply only when no earlier reply of its conversation is
//!   still queued ([`ReplyLanes::blocker`]): one that failed again waits for that one.
//!
//! The lanes are memory; the replies themselves are in the store, and the lanes are
//! rebuilt from it at start-up ([`ReplyLanes::from_queued`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use crate::domain::{OutboxEntry, OutboxMessage};
use crate::inbound::activity::ConversationKey;

/// Every conversation with queued replies or a turn sending some.
#[derive(Debug, Default)]
pub struct ReplyLanes {
    lanes: Mutex<HashMap<ConversationKey, Lane>>,
}

#[derive(Debug, Default)]
struct Lane {
    /// Outbox ids of the conversation's queued replies.
    queued: BTreeSet<u64>,
    /// Held by the turn that is sending the conversation's replies.
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// A turn's right to send its conversation's replies, until dropped.
pub struct LaneGuard<'a> {
    lanes: &'a ReplyLanes,
    key: ConversationKey,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        self.held.take();
        self.lanes.forget_if_idle(&self.key);
    }
}

impl ReplyLanes {
    /// The lanes of the replies already queued (the outbox as a restart finds it).
    pub fn from_queued(entries: &[OutboxEntry]) -> ReplyLanes {
        let lanes = ReplyLanes::default();
        for e in entries {
            if matches!(e.message, OutboxMessage::Reply { .. }) {
                lanes.queued(&e.conversation, e.id);
            }
        }
        lanes
    }

    /// Waits for the conversation's other turns to finish sending, then holds its lane.
    pub async fn enter(&self, key: &ConversationKey) -> LaneGuard<'_> {
        let turn = self.lock().entry(key.clone()).or_default().turn.clone();
        let held = turn.lock_owned().await;
        LaneGuard {
            lanes: self,
            key: key.clone(),
            held: Some(held),
        }
    }

    /// Whether the conversation has replies in the outbox: a new one must queue behind.
    pub fn has_queued(&self, key: &ConversationKey) -> bool {
        self.lock()
            .get(key)
            .is_some_and(|lane| !lane.queued.is_empty())
    }

    /// The reply `id` of the conversation was queued.
    pub fn queued(&self, key: &ConversationKey, id: u64) {
        self.lock()
            .entry(key.clone())
            .or_default()
            .queued
            .insert(id);
    }

    /// The earliest reply queued before `id` in its conversation: `id` must wait for it.
    pub fn blocker(&self, key: &ConversationKey, id: u64) -> Option<u64> {
        self.lock()
            .get(key)
            .and_then(|lane| lane.queued.first().copied())
            .filter(|first| *first < id)
    }

    /// The reply `id` left the outbox (delivered or given up on).
    pub fn done(&self, key: &ConversationKey, id: u64) {
        let mut lanes = self.lock();
        if let Some(lane) = lanes.get_mut(key) {
            lane.queued.remove(&id);
        }
        drop(lanes);
        self.forget_if_idle(key);
    }

    /// Conversations with queued replies (for tests and logs).
    pub fn conversations_waiting(&self) -> usize {
        self.lock()
            .values()
            .filter(|l| !l.queued.is_empty())
            .count()
    }

    fn forget_if_idle(&self, key: &ConversationKey) {
        let mut lanes = self.lock();
        // Only the map holds the turn lock when no turn holds or waits for it.
        if lanes
            .get(key)
            .is_some_and(|l| l.queued.is_empty() && Arc::strong_count(&l.turn) == 1)
        {
            lanes.remove(key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConversationKey, Lane>> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &str) -> ConversationKey {
        ConversationKey {
            channel_id: "emulator".into(),
            conversation_id: c.into(),
        }
    }

    #[test]
    fn a_reply_waits_for_the_earlier_ones_of_its_conversation_only() {
        let lanes = ReplyLanes::default();
        lanes.queued(&key("a"), 3);
        lanes.queued(&key("a"), 7);
        lanes.queued(&key("b"), 5);
        assert_eq!(lanes.blocker(&key("a"), 3), None);
        assert_eq!(lanes.blocker(&key("a"), 7), Some(3));
        assert_eq!(lanes.blocker(&key("b"), 5), None);
        assert_eq!(lanes.blocker(&key("c"), 1), None);
        lanes.done(&key("a"), 3);
        assert_eq!(lanes.blocker(&key("a"), 7), None);
        assert!(lanes.has_queued(&key("a")));
        lanes.done(&key("a"), 7);
        assert!(!lanes.has_queued(&key("a")));
        assert_eq!(lanes.conversations_waiting(), 1);
        lanes.done(&key("b"), 5);
        assert!(lanes.lock().is_empty(), "idle lanes are forgotten");
    }

    #[tokio::test]
    async fn turns_of_one_conversation_take_turns() {
        let lanes = Arc::new(ReplyLanes::default());
        let first = lanes.enter(&key("a")).await;
        // Another conversation is not held up.
        drop(lanes.enter(&key("b")).await);
        let waiting = {
            let lanes = lanes.clone();
            tokio::spawn(async move {
                let _g = lanes.enter(&key("a")).await;
                lanes.has_queued(&key("a"))
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        lanes.queued(&key("a"), 1);
        drop(first);
        assert!(
            waiting.await.unwrap(),
            "the later turn sees what the first queued"
        );
        lanes.done(&key("a"), 1);
        assert!(lanes.lock().is_empty());
    }
}
