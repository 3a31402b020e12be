//! The small seeded generator behind scheduling jitter and retry backoff.
//!
//! Decisions take a [`RandomSource`] instead of drawing their own randomness, so that
//! tests can pass chosen values and every bound is checked exactly.

/// A source of uniformly distributed 64-bit values, for timing jitter only.
pub trait RandomSource {
    fn next_u64(&mut self) -> u64;
}

/// Tests pass closures that return chosen values (`|| 0`, `|| u64::MAX`).
impl<F: FnMut() -> u64> RandomSource for F {
    fn next_u64(&mut self) -> u64 {
        self()
    }
}

/// SplitMix64 (Steele, Lea and Flood): a tiny generator, good enough to
/// spread fetch times; it is not for anything secret. The daemon seeds it
/// from the clock and the process id, tests from a constant.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// Seeded from the time and the process id: jitter only has to differ between daemons
    /// and restarts, not be unpredictable. `stream` keeps two generators of one process
    /// apart.
    pub fn for_process(now_ms: u64, stream: u32) -> Self {
        SplitMix64::new(now_ms ^ u64::from(std::process::id()).rotate_left(stream))
    }
}

impl RandomSource for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
