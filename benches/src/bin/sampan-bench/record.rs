//! Recording latencies: each load thread keeps a full histogram of the
//! measured window and hands one small histogram per second to the
//! collector (the main thread), which keeps the per-second series and
//! shows progress.
//!
//! A request belongs to the measured window when it was *due* (open
//! loop) or sent (closed loop) inside it; its latency runs from then to
//! its reply, and it counts in the second it was due or sent.

use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

/// Longest latency recorded exactly (longer ones are clamped to it).
const LATENCY_MAX_NS: u64 = 600_000_000_000;
/// Error messages kept, to show what went wrong.
const ERROR_SAMPLES: usize = 5;

/// A histogram of latencies in nanoseconds with `digits` significant
/// digits.
pub fn histogram(digits: u8) -> Histogram<u64> {
    match Histogram::new_with_bounds(1, LATENCY_MAX_NS, digits) {
        Ok(h) => h,
        Err(e) => unreachable!("the histogram's bounds are constants: {e}"),
    }
}

/// One second of one thread (or, merged, of all).
#[derive(Debug, Clone)]
pub struct Second {
    /// Seconds since the measured window began.
    pub index: u64,
    /// Requests answered without error.
    pub ops: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Their latencies (2 significant digits).
    pub hist: Histogram<u64>,
}

impl Second {
    fn new(index: u64) -> Second {
        Second {
            index,
            ops: 0,
            errors: 0,
            hist: histogram(2),
        }
    }
}

/// The measured window, shared by every load thread.
#[derive(Debug, Clone)]
pub struct Window {
    /// When measuring begins (after the warm-up).
    pub start: Instant,
    /// When it ends, for a timed run.
    pub end: Option<Instant>,
    /// Requests answered since the run began (warm-up included), for the
    /// progress bar.
    pub answered: Arc<AtomicU64>,
}

impl Window {
    /// Whether a request due or sent at `t` is measured.
    pub fn contains(&self, t: Instant) -> bool {
        t >= self.start && self.end.is_none_or(|e| t < e)
    }
}

/// What one load thread measured.
#[derive(Debug)]
pub struct Outcome {
    /// Latencies of the measured requests answered without error.
    pub hist: Histogram<u64>,
    /// Measured requests that failed.
    pub errors: u64,
    /// Measured reads that found no value.
    pub misses: u64,
    /// Replies (without error) read inside the window, whenever their
    /// requests were due: the rate the server achieved.
    pub answered_in_window: u64,
    /// Open loop: requests due in the window but never sent, the server
    /// being too far behind when it closed.
    pub unsent: u64,
    /// The first few error messages.
    pub error_samples: Vec<String>,
}

impl Outcome {
    /// Nothing yet.
    pub fn new() -> Outcome {
        Outcome {
            hist: histogram(3),
            errors: 0,
            misses: 0,
            answered_in_window: 0,
            unsent: 0,
            error_samples: Vec::new(),
        }
    }

    /// Adds `other` to this.
    pub fn merge(&mut self, other: Outcome) {
        let _ = self.hist.add(&other.hist);
        self.errors += other.errors;
        self.misses += other.misses;
        self.unsent += other.unsent;
        self.answered_in_window += other.answered_in_window;
        for s in other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES && !self.error_samples.contains(&s) {
                self.error_samples.push(s);
            }
        }
    }
}

/// A load thread's recorder.
pub struct Recorder {
    window: Window,
    second: Option<Second>,
    tx: Sender<Second>,
    outcome: Outcome,
    unreported: u64,
}

impl Recorder {
    /// A recorder sending its seconds to `tx`.
    pub fn new(window: Window, tx: Sender<Second>) -> Recorder {
        Recorder {
            window,
            second: None,
            tx,
            outcome: Outcome::new(),
            unreported: 0,
        }
    }

    /// The window measured.
    pub fn window(&self) -> &Window {
        &self.window
    }

    fn second_of(&mut self, t: Instant) -> &mut Second {
        let index = t.duration_since(self.window.start).as_secs();
        if self.second.as_ref().is_some_and(|s| s.index != index) {
            self.flush_second();
        }
        self.second.get_or_insert_with(|| Second::new(index))
    }

    fn flush_second(&mut self) {
        if let Some(s) = self.second.take() {
            let _ = self.tx.send(s);
        }
    }

    fn answered(&mut self) {
        self.unreported += 1;
        if self.unreported >= 64 {
            self.window
                .answered
                .fetch_add(self.unreported, Ordering::Relaxed);
            self.unreported = 0;
        }
    }

    /// A request due (or sent) at `from` was answered at `now`; `miss`
    /// if it was a read that found nothing.
    pub fn ok(&mut self, from: Instant, now: Instant, miss: bool) {
        self.answered();
        if self.window.contains(now) {
            self.outcome.answered_in_window += 1;
        }
        if !self.window.contains(from) {
            return;
        }
        let ns = u64::try_from(now.saturating_duration_since(from).as_nanos()).unwrap_or(u64::MAX);
        let ns = ns.clamp(1, LATENCY_MAX_NS);
        self.outcome.hist.saturating_record(ns);
        self.outcome.misses += u64::from(miss);
        let s = self.second_of(from);
        s.ops += 1;
        s.hist.saturating_record(ns);
    }

    /// A request due (or sent) at `from` failed with `why`.
    pub fn error(&mut self, from: Instant, why: impl FnOnce() -> String) {
        self.answered();
        if !self.window.contains(from) {
            return;
        }
        self.outcome.errors += 1;
        if self.outcome.error_samples.len() < ERROR_SAMPLES {
            let why = why();
            if !self.outcome.error_samples.contains(&why) {
                self.outcome.error_samples.push(why);
            }
        }
        self.second_of(from).errors += 1;
    }

    /// Counts `n` requests due in the window that were never sent.
    pub fn unsent(&mut self, n: u64) {
        self.outcome.unsent += n;
    }

    /// Notes an error outside any request (a failed reconnect).
    pub fn note(&mut self, why: String) {
        if self.outcome.error_samples.len() < ERROR_SAMPLES
            && !self.outcome.error_samples.contains(&why)
        {
            self.outcome.error_samples.push(why);
        }
    }

    /// Sends what is pending and returns the thread's outcome.
    pub fn finish(mut self) -> Outcome {
        self.flush_second();
        self.window
            .answered
            .fetch_add(self.unreported, Ordering::Relaxed);
        self.outcome
    }
}

/// The per-second series, merged from every thread's seconds.
#[derive(Debug, Default)]
pub struct Series {
    /// Second `i` at index `i`.
    pub seconds: Vec<Option<Second>>,
}

impl Series {
    /// Merges every second waiting in `rx`, waiting up to `timeout` for the
    /// first.
    pub fn collect(&mut self, rx: &Receiver<Second>, timeout: Duration) {
        if let Ok(s) = rx.recv_timeout(timeout) {
            self.add(s);
        }
        while let Ok(s) = rx.try_recv() {
            self.add(s);
        }
    }

    /// Merges one second.
    pub fn add(&mut self, s: Second) {
        let i = s.index as usize;
        if self.seconds.len() <= i {
            self.seconds.resize_with(i + 1, || None);
        }
        match &mut self.seconds[i] {
            Some(have) => {
                have.ops += s.ops;
                have.errors += s.errors;
                let _ = have.hist.add(&s.hist);
            }
            slot @ None => *slot = Some(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_window_is_recorded_by_second() {
        let t0 = Instant::now();
        let window = Window {
            start: t0 + Duration::from_secs(1),
            end: Some(t0 + Duration::from_secs(3)),
            answered: Arc::new(AtomicU64::new(0)),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let mut r = Recorder::new(window.clone(), tx);
        let ms = Duration::from_millis;
        r.ok(t0, t0 + ms(5), false); // warm-up
        r.ok(t0 + ms(1_100), t0 + ms(1_102), false);
        r.ok(t0 + ms(2_100), t0 + ms(2_110), true);
        r.error(t0 + ms(2_200), || "boom".into());
        r.ok(t0 + ms(3_100), t0 + ms(3_101), false); // after the end
        let out = r.finish();
        assert_eq!(out.hist.len(), 2);
        assert_eq!((out.errors, out.misses), (1, 1));
        assert_eq!(out.error_samples, vec!["boom".to_string()]);
        assert_eq!(window.answered.load(Ordering::Relaxed), 5);
        let mut series = Series::default();
        series.collect(&rx, Duration::ZERO);
        let s: Vec<(u64, u64)> = series
            .seconds
            .iter()
            .flatten()
            .map(|s| (s.ops, s.errors))
            .collect();
        assert_eq!(s, vec![(1, 0), (1, 1)]);
    }
}
