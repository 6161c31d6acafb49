//! Latency histograms kept on one shard: plain cells, no atomics, no
//! locks, so recording one costs a few instructions on the hot path.
//! Sync rounds record theirs here; the runtime records proposals and
//! reads with the same type. A [`LatencySnapshot`] (plain data, `Send`)
//! is what leaves the shard for `/metrics`.
//!
//! Buckets are powers of two of microseconds, from 16 µs to about 134 s:
//! one comparison per bucket edge is not needed, the bucket is the bit
//! length of the value.

use std::cell::Cell;
use std::time::Duration;

/// Buckets: upper bounds 2^4 µs (16 µs) to 2^27 µs (~134 s), and one for
/// everything above.
pub const BUCKETS: usize = 25;
/// The exponent of the first bucket's upper bound (2^4 µs).
const FIRST_EXP: u32 = 4;

/// A shard-local latency histogram.
#[derive(Debug, Default)]
pub struct Latencies {
    counts: [Cell<u64>; BUCKETS],
    sum_us: Cell<u64>,
}

impl Latencies {
    /// An empty histogram.
    pub fn new() -> Latencies {
        Latencies::default()
    }

    /// Records one duration.
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        // The smallest bucket whose bound 2^(FIRST_EXP + i) holds `us`.
        let bits = 64 - us.saturating_sub(1).leading_zeros();
        let i = (bits.saturating_sub(FIRST_EXP) as usize).min(BUCKETS - 1);
        let c = &self.counts[i];
        c.set(c.get() + 1);
        self.sum_us.set(self.sum_us.get().saturating_add(us));
    }

    /// The histogram now.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut s = LatencySnapshot::default();
        for (out, c) in s.counts.iter_mut().zip(&self.counts) {
            *out = c.get();
        }
        s.sum_us = self.sum_us.get();
        s
    }
}

/// A copy of a [`Latencies`], to merge and report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySnapshot {
    /// Count per bucket (not cumulative).
    pub counts: [u64; BUCKETS],
    /// Sum of the durations, in microseconds.
    pub sum_us: u64,
}

impl LatencySnapshot {
    /// Adds `other`'s counts to this one's (another shard's, say).
    pub fn merge(&mut self, other: &LatencySnapshot) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    /// Durations recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Sum of the durations, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }

    /// `(upper bound in seconds, count)` per bucket (not cumulative), the
    /// last bound infinite: what a Prometheus histogram is encoded from.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let bound = if i + 1 == BUCKETS {
                    f64::INFINITY
                } else {
                    (1u64 << (FIRST_EXP as usize + i)) as f64 / 1e6
                };
                (bound, *c)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_duration_lands_in_the_smallest_bucket_that_holds_it() {
        let h = Latencies::new();
        for us in [0, 1, 16, 17, 32, 1_000, 1_000_000, u64::MAX / 2] {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 8);
        let c = s.buckets();
        // <= 16 µs: 0, 1, 16.
        assert_eq!(c[0], (16e-6, 3));
        // (16, 32] µs: 17, 32.
        assert_eq!(c[1], (32e-6, 2));
        // 1 ms is in (512 µs, 1024 µs].
        assert_eq!(c[6].1, 1);
        // 1 s is in (524 ms, 1.05 s].
        assert_eq!(c[16].1, 1);
        // The huge one only in +Inf.
        assert_eq!(c[BUCKETS - 1], (f64::INFINITY, 1));
        assert_eq!(c.iter().map(|(_, n)| n).sum::<u64>(), 8);
        let mut twice = s;
        twice.merge(&s);
        assert_eq!(twice.count(), 16);
    }
}
