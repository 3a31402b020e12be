//! Whether the daemon's long-running loops still go round: each beats as it waits or
//! makes progress, and the service watchdog (`ops::service`) pings systemd only while
//! every loop has beaten recently. A leaf, so the loops need not know who reads it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;

/// The loops whose life the watchdog vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loop {
    /// The watch loop: waiting for ticks, or making progress through one.
    Watch,
    /// The delivery loop.
    Delivery,
}

impl Loop {
    const ALL: [Loop; 2] = [Loop::Watch, Loop::Delivery];

    pub fn name(self) -> &'static str {
        match self {
            Loop::Watch => "watch loop",
            Loop::Delivery => "delivery loop",
        }
    }
}

/// When each loop last showed it was alive, on the daemon's clock.
pub struct Liveness {
    clock: Arc<dyn Clock>,
    beats: [AtomicU64; 2],
}

impl Liveness {
    /// Every loop counts as alive at the start.
    pub fn new(clock: Arc<dyn Clock>) -> Liveness {
        let now = clock.now_ms();
        Liveness {
            clock,
            beats: [AtomicU64::new(now), AtomicU64::new(now)],
        }
    }

    pub fn beat(&self, which: Loop) {
        self.beats[which as usize].store(self.clock.now_ms(), Ordering::Relaxed);
    }

    /// The loops that have not beaten for longer than `stale_after`.
    pub fn stalled(&self, stale_after: Duration) -> Vec<Loop> {
        let now = self.clock.now_ms();
        let limit = stale_after.as_millis() as u64;
        Loop::ALL
            .into_iter()
            .filter(|l| now.saturating_sub(self.beats[*l as usize].load(Ordering::Relaxed)) > limit)
            .collect()
    }
}

/// How often a loop beats while it waits, so that waiting is not mistaken for stuck.
pub const BEAT_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn a_loop_is_stalled_only_past_the_limit() {
        let clock = Arc::new(ManualClock::new(1_000));
        let live = Liveness::new(clock.clone());
        let limit = Duration::from_secs(10);
        assert!(live.stalled(limit).is_empty());
        clock.advance_ms(10_000);
        assert!(live.stalled(limit).is_empty());
        clock.advance_ms(1);
        assert_eq!(live.stalled(limit), vec![Loop::Watch, Loop::Delivery]);
        live.beat(Loop::Delivery);
        assert_eq!(live.stalled(limit), vec![Loop::Watch]);
        live.beat(Loop::Watch);
        assert!(live.stalled(limit).is_empty());
    }
}
