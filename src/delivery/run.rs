//! The delivery loop's timing: when passes run, how long one is waited for, and what
//! wakes the loop. Apart from the pass itself ([`Delivery::pass`]), which only decides
//! what one pass sends, so that the pass stays a plain call that tests can make.
//!
//! Each pass runs as its own task and is waited for at most [`PASS_WAIT`]: a channel that
//! is slow to answer keeps its pass going in the background while the next pass serves
//! the other channels (a channel is in one pass at a time).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::liveness::{Liveness, Loop, BEAT_EVERY};

use crate::delivery::{Delivery, PassReport};
use crate::error::Chain;
use crate::store::StoreError;

/// How often delivery looks at the outbox when no check has woken it (retries come due).
pub const DELIVERY_POLL: Duration = Duration::from_secs(5);
/// How long the delivery loop waits for one pass before starting the next beside it.
pub const PASS_WAIT: Duration = Duration::from_secs(1);

/// How the rest of the daemon tells the delivery loop that messages were queued, so that
/// it need not wait for its poll. The two kinds wake it differently: the checks of one tick
/// finish one after another, so after a check the loop waits the digest window and alerts
/// for one conversation go out as one digest; an announcement goes at once.
#[derive(Clone, Default)]
pub struct Wake {
    checked: Arc<Notify>,
    announced: Arc<Notify>,
}

impl Wake {
    /// A check queued messages.
    pub fn checks_queued(&self) {
        self.checked.notify_one();
    }

    /// An operator's announcement was queued.
    pub fn announcement_queued(&self) {
        self.announced.notify_one();
    }

    /// A turn queued replies the channel did not take: they go at once, like an
    /// announcement.
    pub fn replies_queued(&self) {
        self.announced.notify_one();
    }
}

/// What one step of the loop saw of its pass.
#[derive(Debug)]
pub enum Step {
    /// The pass ended within [`PASS_WAIT`].
    Done(Result<PassReport, StoreError>),
    /// The pass's task failed (it panicked).
    Failed(JoinError),
    /// A slow channel holds the pass up: it goes on beside the next one.
    Slow,
    /// Shutdown began while the pass ran; it was cut off.
    Cancelled,
}

/// The passes of one loop: the one it waits for, and those still sending to a slow
/// channel, which are ended at shutdown so that none holds the store.
struct Passes {
    delivery: Arc<Delivery>,
    lingering: Vec<JoinHandle<Result<PassReport, StoreError>>>,
}

impl Passes {
    /// Starts a pass and waits for it at most [`PASS_WAIT`].
    async fn step(&mut self, cancel: &CancellationToken) -> Step {
        let d = self.delivery.clone();
        let mut pass = tokio::spawn(async move { d.pass().await });
        let outcome = tokio::select! {
            _ = cancel.cancelled() => {
                pass.abort();
                self.lingering.push(pass);
                return Step::Cancelled;
            }
            outcome = tokio::time::timeout(PASS_WAIT, &mut pass) => outcome,
        };
        let step = match outcome {
            Ok(Ok(result)) => Step::Done(result),
            Ok(Err(e)) => Step::Failed(e),
            Err(_) => {
                self.lingering.push(pass);
                Step::Slow
            }
        };
        self.lingering.retain(|p| !p.is_finished());
        step
    }

    /// Ends the passes still running. A message cut off mid-send is still queued: the
    /// next daemon sends it (at least once).
    async fn end(self) {
        for p in &self.lingering {
            p.abort();
        }
        for p in self.lingering {
            let _ = p.await;
        }
        // What they sent before they were cut off leaves the outbox, so that the next
        // daemon does not send it again.
        if let Err(e) = self.delivery.record_sent().await {
            tracing::warn!(error = %crate::error::Chain(&e), "delivered messages could not be removed from the outbox; they will be sent again");
        }
    }
}

/// How long to wait after a pass that reported `r`, at `now_ms` on the delivery clock: at
/// once when it left due messages behind, at the earliest next attempt it stored, else
/// [`DELIVERY_POLL`] (retries stored by earlier passes).
pub fn next_pause(r: &PassReport, now_ms: u64) -> Duration {
    // Only when it moved something: due messages of a paused (429) channel stay due, and
    // must not make the loop spin.
    let moved = r.done + r.retried + r.dead + r.deferred > 0;
    if r.more && moved {
        return Duration::ZERO;
    }
    match r.next_attempt_ms {
        Some(at) => DELIVERY_POLL.min(Duration::from_millis(at.saturating_sub(now_ms))),
        None => DELIVERY_POLL,
    }
}

/// Logs what a step saw and returns the pause before the next; `None` when the loop ends.
fn after(step: Step, delivery: &Delivery) -> Option<Duration> {
    match step {
        Step::Done(Ok(r)) => {
            if r.sent > 0 || r.retried > 0 || r.dead > 0 {
                tracing::debug!(
                    sent = r.sent,
                    retried = r.retried,
                    dead = r.dead,
                    deferred = r.deferred,
                    "delivery pass"
                );
            }
            Some(next_pause(&r, delivery.now_ms()))
        }
        // The store's guard said so once already; the messages wait in the outbox.
        Step::Done(Err(e @ StoreError::DiskFull { .. })) => {
            tracing::debug!(error = %Chain(&e), "delivery waits for disk space");
            Some(DELIVERY_POLL)
        }
        Step::Done(Err(e)) => {
            tracing::warn!(error = %Chain(&e), "delivery pass failed; retrying");
            Some(DELIVERY_POLL)
        }
        Step::Failed(e) => {
            tracing::error!(error = %Chain(&e), "a delivery pass failed");
            Some(DELIVERY_POLL)
        }
        Step::Slow => Some(PASS_WAIT),
        Step::Cancelled => None,
    }
}

/// Sends queued messages when a check queued some, when an announcement was queued, and
/// every few seconds for retries, until `cancel`.
pub async fn run(
    delivery: Arc<Delivery>,
    wake: Wake,
    digest_window: Duration,
    liveness: Arc<Liveness>,
    cancel: CancellationToken,
) {
    let mut passes = Passes {
        delivery: delivery.clone(),
        lingering: Vec::new(),
    };
    let mut beats = tokio::time::interval(BEAT_EVERY);
    // A store that stopped answering (sled on a full disk) does not come back by itself:
    // the loop then stops showing it is alive, so that the watchdog has systemd restart
    // the daemon on a fresh store.
    let mut store_stuck = false;
    'passes: loop {
        if !store_stuck {
            liveness.beat(Loop::Delivery);
        }
        let step = passes.step(&cancel).await;
        store_stuck = matches!(step, Step::Done(Err(StoreError::TimedOut { .. })));
        let Some(pause) = after(step, &delivery) else {
            break;
        };
        if pause.is_zero() {
            if cancel.is_cancelled() {
                break;
            }
            continue;
        }
        let until = tokio::time::Instant::now() + pause;
        // Waiting is alive too: the loop beats while it waits.
        loop {
            if !store_stuck {
                liveness.beat(Loop::Delivery);
            }
            tokio::select! {
                _ = cancel.cancelled() => break 'passes,
                _ = beats.tick() => continue,
                _ = wake.checked.notified() => {
                    tokio::select! {
                        _ = cancel.cancelled() => break 'passes,
                        _ = tokio::time::sleep(digest_window) => {}
                    }
                }
                _ = wake.announced.notified() => {}
                _ = tokio::time::sleep_until(until) => {}
            }
            break;
        }
    }
    passes.end().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(edit: impl FnOnce(&mut PassReport)) -> PassReport {
        let mut r = PassReport::default();
        edit(&mut r);
        r
    }

    #[test]
    fn a_pass_that_left_due_messages_behind_is_followed_at_once_only_if_it_moved_some() {
        let moved = report(|r| {
            r.more = true;
            r.done = 1000;
        });
        assert_eq!(next_pause(&moved, 0), Duration::ZERO);
        // A throttled channel's messages stay due: waiting for the stored attempt, no spin.
        let stuck = report(|r| {
            r.more = true;
            r.next_attempt_ms = Some(2_000);
        });
        assert_eq!(next_pause(&stuck, 500), Duration::from_millis(1_500));
    }

    #[test]
    fn the_pause_is_the_earliest_next_attempt_within_the_poll_period() {
        let idle = PassReport::default();
        assert_eq!(next_pause(&idle, 0), DELIVERY_POLL);
        let later = report(|r| r.next_attempt_ms = Some(60_000));
        assert_eq!(next_pause(&later, 0), DELIVERY_POLL);
        let past = report(|r| r.next_attempt_ms = Some(10));
        assert_eq!(next_pause(&past, 20), Duration::ZERO);
    }
}
