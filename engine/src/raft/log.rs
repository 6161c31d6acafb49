//! The core's view of the log: the durable part behind a read-only
//! [`LogView`] that the runtime implements, plus the unstable tail the core
//! has appended but the runtime has not yet reported durable, the commit and
//! apply cursors, and a snapshot received but not yet installed.
//!
//! The core never writes the durable log; it hands entries out through
//! `Ready` and learns they are durable through a notice. Indices at or past
//! `index_unstable` are always read from the unstable tail, so a runtime may
//! make entries visible in its view before or after they are synced.

use super::types::{Entry, SnapshotMeta};

/// Why the log cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The entry was purged by a snapshot.
    #[error("index {index} is compacted")]
    Compacted {
        /// The index asked for.
        index: u64,
    },
    /// The entry is past the end of the log.
    #[error("index {index} is past the end of the log")]
    Unavailable {
        /// The index asked for.
        index: u64,
    },
    /// The runtime's log failed to read.
    #[error("log storage failed: {reason}")]
    Storage {
        /// What went wrong.
        reason: String,
    },
}

/// A read-only view of the durable log, implemented by the runtime (and by
/// the simulator, in memory). Entries it holds past the core's unstable
/// offset are never read.
///
/// The runtime must make entries readable here before it reports them
/// durable (`on_entries_durable`), and may purge (compact) only up to both
/// the applied index and the durable index, after writing a snapshot that
/// `snapshot_meta` then describes.
pub trait LogView {
    /// The latest snapshot: the log starts just after it.
    fn snapshot_meta(&self) -> SnapshotMeta;
    /// The first index still in the log (`snapshot.index + 1` when empty).
    fn first_index(&self) -> u64;
    /// The last index in the log (`snapshot.index` when empty).
    fn last_index(&self) -> u64;
    /// The term of the entry at `index`; the snapshot's index answers with
    /// the snapshot's term, index 0 with 0.
    fn term(&self, index: u64) -> Result<u64, LogError>;
    /// Entries `lo..hi`, stopping once `bytes_max` is reached but always at
    /// least one entry.
    fn entries(&self, lo: u64, hi: u64, bytes_max: u64) -> Result<Vec<Entry>, LogError>;
}

/// The log as the core sees it.
#[derive(Debug)]
pub struct RaftLog<L> {
    view: L,
    unstable: Vec<Entry>,
    index_unstable: u64,
    index_handed: u64,
    snapshot_pending: Option<SnapshotMeta>,
    snapshot_handed: bool,
    index_committed: u64,
    index_apply_handed: u64,
}

impl<L: LogView> RaftLog<L> {
    /// The log over `view`, committed to `index_committed`, with everything
    /// up to `index_applied` already applied by the state machine.
    pub fn new(view: L, index_committed: u64, index_applied: u64) -> Self {
        let last = view.last_index();
        let snapshot = view.snapshot_meta().index;
        let index_committed = index_committed.clamp(snapshot, last);
        let index_apply_handed = index_applied.clamp(snapshot, index_committed);
        Self {
            view,
            unstable: Vec::new(),
            index_unstable: last + 1,
            index_handed: last,
            snapshot_pending: None,
            snapshot_handed: true,
            index_committed,
            index_apply_handed,
        }
    }

    /// The runtime's view.
    pub fn view(&self) -> &L {
        &self.view
    }

    /// The runtime's view, to append to or compact.
    pub fn view_mut(&mut self) -> &mut L {
        &mut self.view
    }

    /// The first index still available.
    pub fn first_index(&self) -> u64 {
        match &self.snapshot_pending {
            Some(meta) => meta.index + 1,
            None => self.view.first_index(),
        }
    }

    /// The last index.
    pub fn last_index(&self) -> u64 {
        self.index_unstable + self.unstable.len() as u64 - 1
    }

    /// The highest index that is durable here (everything below the tail).
    pub fn index_durable(&self) -> u64 {
        self.index_unstable - 1
    }

    /// The committed index.
    pub fn index_committed(&self) -> u64 {
        self.index_committed
    }

    /// The last index handed out for applying.
    pub fn index_apply_handed(&self) -> u64 {
        self.index_apply_handed
    }

    /// The term of the last entry.
    pub fn term_last(&self) -> u64 {
        self.term(self.last_index()).unwrap_or(0)
    }

    /// The term of the entry at `index`.
    pub fn term(&self, index: u64) -> Result<u64, LogError> {
        if index >= self.index_unstable {
            let offset = (index - self.index_unstable) as usize;
            return self
                .unstable
                .get(offset)
                .map(|e| e.term)
                .ok_or(LogError::Unavailable { index });
        }
        if let Some(meta) = &self.snapshot_pending {
            if index == meta.index {
                return Ok(meta.term);
            }
            return Err(LogError::Compacted { index });
        }
        if index == 0 {
            return Ok(0);
        }
        self.view.term(index)
    }

    /// Whether the entry at `index` has `term`.
    pub fn matches_term(&self, index: u64, term: u64) -> bool {
        self.term(index).is_ok_and(|t| t == term)
    }

    /// Whether a log ending at (`index_last`, `term_last`) is at least as up
    /// to date as this one (Raft §5.4.1).
    pub fn is_up_to_date(&self, index_last: u64, term_last: u64) -> bool {
        let mine = self.term_last();
        term_last > mine || (term_last == mine && index_last >= self.last_index())
    }

    /// Entries `lo..hi` (at least one if `lo < hi`), bounded by `bytes_max`.
    pub fn entries(&self, lo: u64, hi: u64, bytes_max: u64) -> Result<Vec<Entry>, LogError> {
        let hi = hi.min(self.last_index() + 1);
        if lo >= hi {
            return Ok(Vec::new());
        }
        if lo < self.first_index() {
            return Err(LogError::Compacted { index: lo });
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        if lo < self.index_unstable {
            out = self
                .view
                .entries(lo, hi.min(self.index_unstable), bytes_max)?;
            bytes = out.iter().map(Entry::size_bytes).sum();
            let complete = out.len() as u64 == hi.min(self.index_unstable) - lo;
            if !complete || bytes >= bytes_max {
                return Ok(out);
            }
        }
        let from = lo.max(self.index_unstable);
        for entry in &self.unstable[(from - self.index_unstable) as usize..] {
            if entry.index >= hi || (!out.is_empty() && bytes + entry.size_bytes() > bytes_max) {
                break;
            }
            bytes += entry.size_bytes();
            out.push(entry.clone());
        }
        Ok(out)
    }

    /// The index of the first entry of `entries` that is not already in the
    /// log with the same term (0 if all are).
    pub fn find_conflict(&self, entries: &[Entry]) -> u64 {
        entries
            .iter()
            .find(|e| !self.matches_term(e.index, e.term))
            .map_or(0, |e| e.index)
    }

    /// The largest index at or below `index` whose term is at most `term`,
    /// with that term (fast backtracking).
    pub fn find_conflict_by_term(&self, index: u64, term: u64) -> (u64, u64) {
        let mut index = index.min(self.last_index());
        loop {
            match self.term(index) {
                Ok(t) if t > term && index > 0 => index -= 1,
                Ok(t) => return (index, t),
                Err(_) => return (index, 0),
            }
        }
    }

    /// Appends `entries` (contiguous), dropping any tail from their first index.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index > self.index_committed,
            "truncating committed entries"
        );
        assert!(first.index <= self.last_index() + 1, "gap in the log");
        if first.index < self.index_unstable {
            self.unstable.clear();
            self.index_unstable = first.index;
        } else {
            self.unstable
                .truncate((first.index - self.index_unstable) as usize);
        }
        self.index_handed = self.index_handed.min(first.index - 1);
        for (i, e) in entries.iter().enumerate() {
            debug_assert_eq!(e.index, first.index + i as u64);
            self.unstable.push(e.clone());
        }
    }

    /// The runtime reports entries up to `index` (of `term`) durable.
    pub fn stable_to(&mut self, index: u64, term: u64) -> bool {
        if index < self.index_unstable || index > self.index_handed {
            return false;
        }
        if !self.matches_term(index, term) || self.snapshot_pending.is_some() {
            return false;
        }
        let count = (index + 1 - self.index_unstable) as usize;
        self.unstable.drain(..count);
        self.index_unstable = index + 1;
        true
    }

    /// Advances the committed index (never backwards, never past the log).
    pub fn commit_to(&mut self, index: u64) {
        if index > self.index_committed {
            assert!(
                index <= self.last_index(),
                "commit {index} past the log end"
            );
            self.index_committed = index;
        }
    }

    /// Replaces the log by a received snapshot, to be installed by the runtime.
    pub fn restore(&mut self, meta: SnapshotMeta) {
        assert!(
            meta.index > self.index_committed,
            "snapshot behind the commit"
        );
        self.unstable.clear();
        self.index_unstable = meta.index + 1;
        self.index_handed = meta.index;
        self.index_committed = meta.index;
        self.index_apply_handed = meta.index;
        self.snapshot_pending = Some(meta);
        self.snapshot_handed = false;
    }

    /// The runtime installed the snapshot at `index`.
    pub fn snapshot_installed(&mut self, index: u64) {
        if self.snapshot_handed
            && self
                .snapshot_pending
                .as_ref()
                .is_some_and(|m| m.index == index)
        {
            self.snapshot_pending = None;
        }
    }

    /// The snapshot to install, once.
    pub fn take_snapshot(&mut self) -> Option<SnapshotMeta> {
        if self.snapshot_handed {
            return None;
        }
        self.snapshot_handed = true;
        self.snapshot_pending.clone()
    }

    /// Entries appended but not yet handed to the runtime.
    pub fn take_unhanded(&mut self) -> Vec<Entry> {
        let from = self.index_handed + 1;
        if from > self.last_index() {
            return Vec::new();
        }
        debug_assert!(from >= self.index_unstable);
        let out = self.unstable[(from - self.index_unstable) as usize..].to_vec();
        self.index_handed = self.last_index();
        out
    }

    /// Committed entries not yet handed out for applying, up to `bytes_max`.
    pub fn take_committed(&mut self, bytes_max: u64) -> Result<Vec<Entry>, LogError> {
        let lo = self.index_apply_handed + 1;
        let out = self.entries(lo, self.index_committed + 1, bytes_max)?;
        if let Some(last) = out.last() {
            self.index_apply_handed = last.index;
        }
        Ok(out)
    }

    /// Whether anything is waiting to be handed out.
    pub fn has_ready(&self) -> bool {
        !self.snapshot_handed
            || self.index_handed < self.last_index()
            || self.index_apply_handed < self.index_committed
    }
}
