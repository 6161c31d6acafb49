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
use sampan_fiber::TaskClass;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Runs `clients` closed-loop clients as fibers of the calling shard:
/// client `c` calls `op(c, n)` for its `n`-th operation (from 1), again as
/// soon as the last returns, until `warm + secs` have passed. Returns the
/// operations that started in the measured window (after `warm`), its
/// length, and their latencies. A failed operation panics with its error.
pub async fn closed_loop<F, Fut>(
    clients: usize,
    warm: Duration,
    secs: Duration,
    op: F,
) -> (u64, Duration, Latencies)
where
    F: Fn(usize, u64) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + 'static,
{
    let op = Rc::new(op);
    let lat = Rc::new(RefCell::new(Latencies::new()));
    let ops = Rc::new(Cell::new(0u64));
    let measure_from = Instant::now() + warm;
    let end = measure_from + secs;
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let (op, lat, ops) = (op.clone(), lat.clone(), ops.clone());
        let task = sampan_fiber::spawn(TaskClass::Latency, "client", async move {
            let mut n = 0;
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                n += 1;
                if let Err(e) = op(c, n).await {
                    panic!("client {c}: {e}");
                }
                if t >= measure_from {
                    lat.borrow_mut().record(t.elapsed());
                    ops.set(ops.get() + 1);
                }
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
        tasks.push(task);
    }
    for t in tasks {
        let _ = t.join().await;
    }
    let lat = Rc::try_unwrap(lat)
        .map(RefCell::into_inner)
        .unwrap_or_default();
    (ops.get(), secs, lat)
}

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
