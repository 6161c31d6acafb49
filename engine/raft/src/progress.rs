//! What the leader knows of each follower: how far its log matches, what to
//! send next, and how much is in flight.
//!
//! A follower is in one of three states. `Probe`: the leader does not know
//! where the logs agree and sends one AppendEntries at a time. `Replicate`:
//! the logs agree up to `index_match` and the leader pipelines
//! AppendEntries, bounded by a window of messages and bytes. `Snapshot`: the
//! follower needs entries already purged and waits for a snapshot.

use std::collections::VecDeque;

/// The replication state of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// Finding the point where the logs agree; one message at a time.
    Probe,
    /// Streaming entries optimistically, many messages in flight.
    Replicate,
    /// Waiting for a snapshot up to this index to be installed.
    Snapshot {
        /// The index of the snapshot sent.
        index_pending: u64,
    },
}

/// The AppendEntries messages in flight to one follower, bounded by count
/// and bytes.
#[derive(Debug, Clone)]
pub struct Inflights {
    queue: VecDeque<(u64, u64)>,
    bytes: u64,
    count_max: usize,
    bytes_max: u64,
}

impl Inflights {
    /// An empty window of at most `count_max` messages and `bytes_max` bytes.
    pub fn new(count_max: usize, bytes_max: u64) -> Self {
        Self {
            queue: VecDeque::with_capacity(count_max),
            bytes: 0,
            count_max,
            bytes_max,
        }
    }

    /// Records a message whose last entry is `index_last`.
    pub fn add(&mut self, index_last: u64, bytes: u64) {
        debug_assert!(self.queue.back().is_none_or(|&(last, _)| last < index_last));
        self.queue.push_back((index_last, bytes));
        self.bytes += bytes;
    }

    /// Forgets every message whose last entry is at or below `index`.
    pub fn free_to(&mut self, index: u64) {
        while let Some(&(last, bytes)) = self.queue.front() {
            if last > index {
                break;
            }
            self.bytes -= bytes;
            self.queue.pop_front();
        }
    }

    /// Forgets the oldest message (a heartbeat answer proves the follower alive).
    pub fn free_first(&mut self) {
        if let Some((_, bytes)) = self.queue.pop_front() {
            self.bytes -= bytes;
        }
    }

    /// Whether no more messages may be sent.
    pub fn is_full(&self) -> bool {
        self.queue.len() >= self.count_max || self.bytes >= self.bytes_max
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }

    /// Messages in flight.
    pub fn count(&self) -> usize {
        self.queue.len()
    }
}

/// The leader's view of one peer (or of itself: its durable index).
#[derive(Debug, Clone)]
pub struct Progress {
    /// The highest index known to match the leader's log (durable there).
    pub index_match: u64,
    /// The next index to send.
    pub index_next: u64,
    /// The replication state.
    pub state: ProgressState,
    /// In `Probe`: a message was sent and no answer came yet.
    pub probe_sent: bool,
    /// The window of messages in flight (used in `Replicate`).
    pub inflights: Inflights,
    /// Whether the peer answered since the last check-quorum.
    pub recent_active: bool,
    /// The send time (leader's clock, ms) of the newest heartbeat this peer
    /// acknowledged.
    pub lease_ms_acked: u64,
    /// The peer acknowledged the hibernation request.
    pub hibernate_acked: bool,
}

impl Progress {
    /// A fresh progress probing from `index_next`.
    pub fn new(index_next: u64, count_max: usize, bytes_max: u64) -> Self {
        Self {
            index_match: 0,
            index_next,
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: Inflights::new(count_max, bytes_max),
            recent_active: true,
            lease_ms_acked: 0,
            hibernate_acked: false,
        }
    }

    /// Back to probing from just past the match (or past the snapshot sent).
    pub fn become_probe(&mut self) {
        let after_snapshot = match self.state {
            ProgressState::Snapshot { index_pending } => index_pending + 1,
            _ => 0,
        };
        self.state = ProgressState::Probe;
        self.index_next = (self.index_match + 1).max(after_snapshot);
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Start pipelining from just past the match.
    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.index_next = self.index_match + 1;
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Wait for the snapshot at `index` to be installed.
    pub fn become_snapshot(&mut self, index: u64) {
        self.state = ProgressState::Snapshot {
            index_pending: index,
        };
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Records that the peer's log matches up to `index`; false if stale.
    pub fn maybe_update(&mut self, index: u64) -> bool {
        let updated = index > self.index_match;
        if updated {
            self.index_match = index;
            self.probe_sent = false;
        }
        self.index_next = self.index_next.max(index + 1);
        updated
    }

    /// Handles a rejection of the message whose previous index was
    /// `index_rejected`; `index_hint` is the follower's guess of the last
    /// index that may match. False if the rejection is stale.
    pub fn maybe_decrease(&mut self, index_rejected: u64, index_hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if index_rejected <= self.index_match {
                return false;
            }
            self.index_next = self.index_match + 1;
            return true;
        }
        if self.index_next.saturating_sub(1) != index_rejected {
            return false;
        }
        self.index_next = index_rejected.min(index_hint + 1).max(self.index_match + 1);
        self.probe_sent = false;
        true
    }

    /// Whether no message may be sent now.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.is_full(),
            ProgressState::Snapshot { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflight_window_bounds_count_and_bytes() {
        let mut w = Inflights::new(3, 100);
        w.add(1, 10);
        w.add(2, 10);
        assert!(!w.is_full());
        w.add(5, 90);
        assert!(w.is_full());
        w.free_to(2);
        assert_eq!(w.count(), 1);
        assert!(!w.is_full());
        w.add(6, 10);
        assert!(w.is_full(), "bytes bound");
        w.free_first();
        assert!(!w.is_full());
    }

    #[test]
    fn probe_backs_off_with_hint_and_ignores_stale_rejects() {
        let mut p = Progress::new(11, 4, 1000);
        p.probe_sent = true;
        assert!(!p.maybe_decrease(5, 3), "stale: we did not send prev=5");
        assert!(p.maybe_decrease(10, 4));
        assert_eq!(p.index_next, 5);
        assert!(!p.is_paused());
        p.maybe_update(7);
        p.become_replicate();
        assert_eq!(p.index_next, 8);
        assert!(!p.maybe_decrease(6, 0), "at or below match: stale");
        assert!(p.maybe_decrease(9, 0));
        assert_eq!(p.index_next, 8);
    }
}
