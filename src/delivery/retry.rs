//! What a failed send means, and when to try again (docs/rules.md, "Delivery"):
//! pure decisions, no I/O. The delivery task applies them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::delivery::connector::ConnectorError;
use crate::random::RandomSource;

/// `[delivery]`: how proactive messages are retried and when they are given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Ceiling of the first retry's random delay; it doubles with each failure, up to
    /// `retry_cap`.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Largest retry delay (a channel's `Retry-After` may ask for longer).
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
    /// Failed attempts after which a message becomes a dead letter.
    pub max_attempts: u32,
    /// Age after which a message still failing becomes a dead letter.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retry_base: Duration::from_secs(2),
            retry_cap: Duration::from_secs(600),
            max_attempts: 12,
            max_age: Duration::from_secs(48 * 3600),
        }
    }
}

/// The kind of a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Worth another try: 408, 412, 429, 5xx but 501/505, timeouts, connection errors,
    /// token endpoint outages.
    Transient {
        /// The channel's `Retry-After`, to be honoured as a minimum.
        retry_after: Option<Duration>,
        /// 429 or 503: the channel as a whole asks for a pause.
        throttled: bool,
    },
    /// Will fail the same way again (400, other 4xx, a serviceUrl pricewatch refuses).
    Permanent,
    /// 403 or 404: the bot was removed or blocked; the conversation cannot be written to.
    Unreachable,
}

pub fn classify(err: &ConnectorError) -> Failure {
    match err {
        ConnectorError::Status {
            status,
            retry_after,
            ..
        } => match *status {
            429 | 503 => Failure::Transient {
                retry_after: *retry_after,
                throttled: true,
            },
            403 | 404 => Failure::Unreachable,
            // 401 after a fresh token: the credentials or the registration are wrong, which
            // an operator fixes without the message being lost.
            401 | 408 | 412 => Failure::Transient {
                retry_after: *retry_after,
                throttled: false,
            },
            501 | 505 => Failure::Permanent,
            500..=599 => Failure::Transient {
                retry_after: *retry_after,
                throttled: false,
            },
            _ => Failure::Permanent,
        },
        ConnectorError::Timeout(_)
        | ConnectorError::Transport(_)
        | ConnectorError::Token(_)
        | ConnectorError::Client(_) => Failure::Transient {
            retry_after: None,
            throttled: false,
        },
        ConnectorError::ServiceUrl { .. } | ConnectorError::Untrusted { .. } => Failure::Permanent,
    }
}

/// What to do with a message whose send failed transiently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again at this time (ms since the epoch).
    RetryAt(u64),
    /// Give up: it failed `max_attempts` times or is older than `max_age`.
    Dead,
}

impl RetryPolicy {
    /// `failures` counts this failure too. The delay is full jitter,
    /// `rand(0, min(retry_cap, retry_base·2^(failures−1)))`, but never less than `retry_after`.
    pub fn decide(
        &self,
        failures: u32,
        created_ms: u64,
        now_ms: u64,
        retry_after: Option<Duration>,
        rng: &mut impl RandomSource,
    ) -> Decision {
        if failures >= self.max_attempts
            || now_ms.saturating_sub(created_ms) >= self.max_age.as_millis() as u64
        {
            return Decision::Dead;
        }
        let ceiling = (self.retry_base.as_millis() as u64)
            .saturating_mul(
                1u64.checked_shl(failures.saturating_sub(1))
                    .unwrap_or(u64::MAX),
            )
            .min(self.retry_cap.as_millis() as u64);
        let jittered = rng.next_u64() % ceiling.saturating_add(1);
        let floor = retry_after.map_or(0, |d| d.as_millis() as u64);
        Decision::RetryAt(now_ms.saturating_add(jittered.max(floor)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, retry_after: Option<u64>) -> ConnectorError {
        ConnectorError::Status {
            status,
            body: String::new(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn statuses_are_classified_as_the_design_says() {
        for s in [408, 412, 500, 502, 504, 401] {
            assert!(
                matches!(
                    classify(&status(s, None)),
                    Failure::Transient {
                        throttled: false,
                        ..
                    }
                ),
                "{s}"
            );
        }
        for s in [429, 503] {
            assert_eq!(
                classify(&status(s, Some(7))),
                Failure::Transient {
                    retry_after: Some(Duration::from_secs(7)),
                    throttled: true
                },
                "{s}"
            );
        }
        for s in [400, 405, 413, 415, 501, 505] {
            assert_eq!(classify(&status(s, None)), Failure::Permanent, "{s}");
        }
        for s in [403, 404] {
            assert_eq!(classify(&status(s, None)), Failure::Unreachable, "{s}");
        }
        assert!(matches!(
            classify(&ConnectorError::Timeout(Duration::from_secs(1))),
            Failure::Transient { .. }
        ));
        assert_eq!(
            classify(&ConnectorError::Untrusted {
                url: "http://x/".into(),
                reason: crate::delivery::connector::Refusal::NoHost
            }),
            Failure::Permanent
        );
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_capped_ceiling() {
        let p = RetryPolicy {
            retry_base: Duration::from_secs(2),
            retry_cap: Duration::from_secs(60),
            max_attempts: 100,
            max_age: Duration::from_secs(1_000_000),
        };
        let top = |failures| match p.decide(failures, 0, 1_000, None, &mut || u64::MAX - 1) {
            Decision::RetryAt(t) => t - 1_000,
            Decision::Dead => panic!("dead"),
        };
        // u64::MAX - 1 modulo (ceiling + 1) is the ceiling itself for these ceilings.
        let ceilings: Vec<u64> = (1..=7).map(top).collect();
        for (c, want) in ceilings
            .iter()
            .zip([2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000])
        {
            assert!(*c <= want, "{ceilings:?}");
        }
        assert_eq!(
            p.decide(3, 0, 1_000, None, &mut || 0),
            Decision::RetryAt(1_000)
        );
        // Retry-After is a floor, whatever the jitter drew.
        assert_eq!(
            p.decide(1, 0, 1_000, Some(Duration::from_secs(30)), &mut || 0),
            Decision::RetryAt(31_000)
        );
        let mut rng = crate::random::SplitMix64::new(7);
        for failures in 1..40 {
            match p.decide(failures, 0, 0, None, &mut rng) {
                Decision::RetryAt(t) => assert!(t <= 60_000),
                Decision::Dead => panic!("dead"),
            }
        }
    }

    #[test]
    fn attempts_and_age_end_in_dead_letters() {
        let p = RetryPolicy::default();
        assert!(matches!(
            p.decide(11, 0, 1, None, &mut || 0),
            Decision::RetryAt(_)
        ));
        assert_eq!(p.decide(12, 0, 1, None, &mut || 0), Decision::Dead);
        let age = 48 * 3_600_000;
        assert!(matches!(
            p.decide(1, 5, age + 4, None, &mut || 0),
            Decision::RetryAt(_)
        ));
        assert_eq!(p.decide(1, 5, age + 5, None, &mut || 0), Decision::Dead);
    }
}
