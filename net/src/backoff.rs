//! Reconnect delays: exponential backoff with jitter.
//!
//! The n-th failed attempt in a row waits a random time in
//! `[d/2, d]` where `d = min(max, min * 2^n)` ("equal jitter"): never less
//! than half the nominal delay, so a flapping peer is not hammered, and
//! spread out so that nodes that lost a peer together do not all call back
//! at the same instant.

use std::time::Duration;

/// Backoff state of one peer's dialer.
#[derive(Debug, Clone)]
pub struct Backoff {
    delay_min: Duration,
    delay_max: Duration,
    failures: u32,
    rng: u64,
}

impl Backoff {
    /// A backoff from `delay_min` doubling up to `delay_max`; `seed` feeds
    /// the jitter (use the node ids, so two dialers differ).
    pub fn new(delay_min: Duration, delay_max: Duration, seed: u64) -> Backoff {
        Backoff {
            delay_min,
            delay_max: delay_max.max(delay_min),
            failures: 0,
            // xorshift must not start at zero.
            rng: seed ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// The delay before the next attempt, after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.failures.min(30);
        self.failures = self.failures.saturating_add(1);
        let nominal = self
            .delay_min
            .checked_mul(1u32 << exp)
            .unwrap_or(self.delay_max)
            .min(self.delay_max);
        let half = nominal / 2;
        let span = (nominal - half).as_nanos() as u64;
        let jitter = if span == 0 {
            0
        } else {
            self.next_random() % (span + 1)
        };
        half + Duration::from_nanos(jitter)
    }

    /// Failed attempts since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Back to the shortest delay (after a successful connection).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: jitter needs spread, not cryptographic quality.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_jitter_and_stop_at_the_maximum() {
        let min = Duration::from_millis(10);
        let max = Duration::from_millis(1000);
        let mut b = Backoff::new(min, max, 1);
        for n in 0..20u32 {
            let nominal = (min * 2u32.pow(n.min(10))).min(max);
            let d = b.next_delay();
            assert!(
                d >= nominal / 2 && d <= nominal,
                "attempt {n}: {d:?} vs {nominal:?}"
            );
        }
        assert_eq!(b.failures(), 20);
        b.reset();
        assert!(b.next_delay() <= min);
    }

    #[test]
    fn two_seeds_spread_their_delays() {
        let mut a = Backoff::new(Duration::from_millis(100), Duration::from_secs(10), 1);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10), 2);
        let same = (0..10).filter(|_| a.next_delay() == b.next_delay()).count();
        assert!(same < 10);
    }
}
