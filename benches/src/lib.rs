//! sampan-benches: throughput and latency benchmarks of Sampan.
//!
//! **For:** numbers people compare (runtime primitives, log append, network,
//! replicated puts), printed as tables by `cargo bench -p sampan-benches`.
//! **Not for:** pass/fail checks; tests never assert speed.
//!
//! This library holds what the benchmark binaries share: a latency recorder
//! and the table they print.

pub mod cluster;

use hdrhistogram::Histogram;
use std::time::Duration;

/// Latencies of one benchmark, in nanoseconds.
pub struct Latencies {
    hist: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty recorder (1 ns to 60 s, 3 significant digits).
    pub fn new() -> Self {
        let hist = Histogram::new_with_bounds(1, 60_000_000_000, 3)
            .unwrap_or_else(|e| panic!("histogram bounds are constants: {e}"));
        Latencies { hist }
    }

    /// Records one sample (clamped into the histogram's range).
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.hist.saturating_record(ns.max(1));
    }

    /// The value at `q` (0.0..=1.0) as a duration.
    pub fn quantile(&self, q: f64) -> Duration {
        Duration::from_nanos(self.hist.value_at_quantile(q))
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Adds `other`'s samples (of another client thread of one run).
    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.hist.add(&other.hist);
    }
}

/// One row of a results table.
pub struct Row {
    /// What was measured.
    pub name: String,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Latency distribution, if measured per operation.
    pub latency: Option<(Duration, Duration, Duration)>,
}

impl Row {
    /// A row from a count of operations over a wall time, with optional
    /// per-operation latencies.
    pub fn new(name: &str, ops: u64, wall: Duration, lat: Option<&Latencies>) -> Row {
        Row {
            name: name.to_string(),
            ops_per_sec: ops as f64 / wall.as_secs_f64().max(1e-9),
            latency: lat.map(|l| (l.quantile(0.5), l.quantile(0.99), l.quantile(0.999))),
        }
    }
}

/// Formats rows as a Markdown table (what `benches/RESULTS.md` holds).
pub fn table(rows: &[Row]) -> String {
    let mut out =
        String::from("| benchmark | ops/s | p50 | p99 | p99.9 |\n|---|---:|---:|---:|---:|\n");
    for r in rows {
        let (p50, p99, p999) = match r.latency {
            Some((a, b, c)) => (fmt_dur(a), fmt_dur(b), fmt_dur(c)),
            None => ("-".into(), "-".into(), "-".into()),
        };
        out.push_str(&format!(
            "| {} | {:.0} | {p50} | {p99} | {p999} |\n",
            r.name, r.ops_per_sec
        ));
    }
    out
}

fn fmt_dur(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{:.2} ms", ns as f64 / 1e6)
    }
}
