//! The core's view of the log: the durable part behind a read-only
//! [`LogView`] that the runtime implements, plus the unstable tail the core
//! has appended but the runtime has not yet reported durable, the commit and
//! apply cursors, and a snapshot received but not yet installed.
//!
//! The core never writes the durable log; it hands entries out through
//! `Ready` and learns they are durable through a notice. Indices at or past
//! `index_unstable` are always read from the unstable tail, so a runtime may
//! make entries visible in its view before or after they are synced.
//!
//! Durability reports name the log epoch of the hand-off they cover. The
//! epoch moves whenever entries already handed out are truncated (a newer
//! leader's conflicting append) or the log is replaced by a snapshot: a
//! report issued before that says nothing about what was written again
//! since, even at the same (index, term) — cockroachdb#124440, the etcd
//! `stableTo` fix — so it counts only below the first index removed.

use std::collections::VecDeque;

use super::types::{Entry, SnapshotMeta};

/// Truncations remembered for judging late durability reports; beyond it
/// the oldest are merged, which only makes old reports count for less.
const CUTS_MAX: usize = 64;

/// Most bytes ([`Entry::size_bytes`]) of durable entries kept in memory
/// until they are handed out for applying (see [`RaftLog`]'s `recent`).
/// Normally they go within a round (once committed); a group that cannot
/// commit (no quorum) holds up to this much, so a node of 10,000 such
/// groups holds at most ~10 GiB here: kept small for that case, and still
/// above what one round carries (2,000 commands of 100 bytes: ~260 KiB).
pub const RECENT_BYTES_MAX: u64 = 1 << 20;

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
    /// At start, the saved commit index is past the end of the log:
    /// entries known committed are missing (a lost or truncated log).
    #[error(
        "the commit index {index_commit} is past the last index {index_last} \
         (snapshot at {index_snapshot}): committed entries are missing"
    )]
    CommitPastLog {
        /// The commit index saved in the hard state.
        index_commit: u64,
        /// The last index the log holds.
        index_last: u64,
        /// The index of the log's snapshot.
        index_snapshot: u64,
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
    /// Entries reported durable and not yet handed out for applying, the
    /// newest first to go (bounded by [`RECENT_BYTES_MAX`]): contiguous,
    /// ending just before `index_unstable`. Reads served from here skip
    /// decoding the log's records again (what the apply hand-off and the
    /// sends to followers read, right after the entries became durable).
    recent: VecDeque<Entry>,
    recent_bytes: u64,
    unstable: Vec<Entry>,
    index_unstable: u64,
    index_handed: u64,
    snapshot_pending: Option<SnapshotMeta>,
    snapshot_handed: bool,
    index_committed: u64,
    index_apply_handed: u64,
    /// Moves on every truncation of handed-out entries and every restore.
    epoch: u64,
    /// `(epoch, index)`: a report from before `epoch` covers only entries
    /// below `index`. Epochs ascend; each index is the least of its own and
    /// every later record's, so the first record past a report's epoch
    /// gives its bound.
    cuts: VecDeque<(u64, u64)>,
}

impl<L: LogView> RaftLog<L> {
    /// The log over `view`, committed to `index_committed`, with everything
    /// up to `index_applied` already applied by the state machine. A log
    /// that ends before the commit index lost committed entries: it is
    /// refused, not cut to size, since this replica would otherwise count
    /// toward quorums (votes, acks) without holding what it promised to.
    pub fn new(view: L, index_committed: u64, index_applied: u64) -> Result<Self, LogError> {
        let last = view.last_index();
        let snapshot = view.snapshot_meta().index;
        if index_committed > last {
            return Err(LogError::CommitPastLog {
                index_commit: index_committed,
                index_last: last,
                index_snapshot: snapshot,
            });
        }
        // A snapshot is committed by definition: a hard state saved before
        // it was installed may lag it.
        let index_committed = index_committed.max(snapshot);
        let index_apply_handed = index_applied.clamp(snapshot, index_committed);
        Ok(Self {
            view,
            recent: VecDeque::new(),
            recent_bytes: 0,
            unstable: Vec::new(),
            index_unstable: last + 1,
            index_handed: last,
            snapshot_pending: None,
            snapshot_handed: true,
            index_committed,
            index_apply_handed,
            epoch: 0,
            cuts: VecDeque::new(),
        })
    }

    /// The log epoch: entries handed out now belong to it, and a report of
    /// their durability must name it.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Starts a new epoch because entries from `index` on, already handed
    /// to the runtime, were removed.
    fn cut_from(&mut self, index: u64) {
        self.epoch += 1;
        for cut in self.cuts.iter_mut() {
            cut.1 = cut.1.min(index);
        }
        self.cuts.push_back((self.epoch, index));
        if self.cuts.len() > CUTS_MAX
            && let Some((_, oldest)) = self.cuts.pop_front()
            && let Some(next) = self.cuts.front_mut()
        {
            next.1 = next.1.min(oldest);
        }
    }

    /// The first index a report from `epoch` cannot vouch for (`u64::MAX`
    /// if nothing handed out was removed since).
    fn cut_since(&self, epoch: u64) -> u64 {
        self.cuts
            .iter()
            .find(|&&(e, _)| e > epoch)
            .map_or(u64::MAX, |&(_, index)| index)
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

    /// Whether a received snapshot is still to be installed (the log up to
    /// its index is then not on disk in either form).
    pub fn is_snapshot_pending(&self) -> bool {
        self.snapshot_pending.is_some()
    }

    /// The committed index.
    pub fn index_committed(&self) -> u64 {
        self.index_committed
    }

    /// The last index handed out for applying.
    pub fn index_apply_handed(&self) -> u64 {
        self.index_apply_handed
    }

    /// The term of the last entry. The log always knows it (the snapshot's
    /// term when empty), so any error is a storage failure — never term 0,
    /// which would make this log look older than every other.
    pub fn term_last(&self) -> Result<u64, LogError> {
        self.term(self.last_index())
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
        if index >= self.first_index()
            && let Some(e) = self.recent_entry(index)
        {
            return Ok(e.term);
        }
        self.view.term(index)
    }

    /// The first index held in `recent` (`index_unstable` when empty).
    fn recent_first(&self) -> u64 {
        self.recent.front().map_or(self.index_unstable, |e| e.index)
    }

    fn recent_entry(&self, index: u64) -> Option<&Entry> {
        let offset = index.checked_sub(self.recent_first())?;
        self.recent.get(usize::try_from(offset).ok()?)
    }

    /// Drops from the front of `recent` what was handed out for applying
    /// and what is over its byte bound.
    fn trim_recent(&mut self) {
        while let Some(e) = self.recent.front() {
            if e.index > self.index_apply_handed && self.recent_bytes <= RECENT_BYTES_MAX {
                break;
            }
            self.recent_bytes -= e.size_bytes();
            self.recent.pop_front();
        }
    }

    /// Whether the entry at `index` has `term`: false if the log does not
    /// hold `index` (compacted or past the end), an error if the storage
    /// failed to answer.
    pub fn matches_term(&self, index: u64, term: u64) -> Result<bool, LogError> {
        match self.term(index) {
            Ok(t) => Ok(t == term),
            Err(LogError::Compacted { .. } | LogError::Unavailable { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether a log ending at (`index_last`, `term_last`) is at least as up
    /// to date as this one (Raft §5.4.1).
    pub fn is_up_to_date(&self, index_last: u64, term_last: u64) -> Result<bool, LogError> {
        let mine = self.term_last()?;
        Ok(term_last > mine || (term_last == mine && index_last >= self.last_index()))
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
        let in_memory = self.recent_first();
        if lo < in_memory {
            out = self.view.entries(lo, hi.min(in_memory), bytes_max)?;
            bytes = out.iter().map(Entry::size_bytes).sum();
            let complete = out.len() as u64 == hi.min(in_memory) - lo;
            if !complete || bytes >= bytes_max {
                return Ok(out);
            }
        }
        let from = lo.max(in_memory);
        let held = self.recent.iter().chain(self.unstable.iter());
        for entry in held.skip((from - in_memory) as usize) {
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
    pub fn find_conflict(&self, entries: &[Entry]) -> Result<u64, LogError> {
        for e in entries {
            if !self.matches_term(e.index, e.term)? {
                return Ok(e.index);
            }
        }
        Ok(0)
    }

    /// The largest index at or below `index` whose term is at most `term`,
    /// with that term (fast backtracking). Term 0 says "unknown" when the
    /// walk reaches the compacted part (everything there is committed, so
    /// the leader may probe from it); a storage failure is an error.
    pub fn find_conflict_by_term(&self, index: u64, term: u64) -> Result<(u64, u64), LogError> {
        let mut index = index.min(self.last_index());
        loop {
            match self.term(index) {
                Ok(t) if t > term && index > 0 => index -= 1,
                Ok(t) => return Ok((index, t)),
                Err(LogError::Compacted { .. }) => return Ok((index, 0)),
                Err(e) => return Err(e),
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
            while self.recent.back().is_some_and(|e| e.index >= first.index) {
                if let Some(e) = self.recent.pop_back() {
                    self.recent_bytes -= e.size_bytes();
                }
            }
            self.unstable.clear();
            self.index_unstable = first.index;
        } else {
            self.unstable
                .truncate((first.index - self.index_unstable) as usize);
        }
        if first.index <= self.index_handed {
            self.cut_from(first.index);
        }
        self.index_handed = self.index_handed.min(first.index - 1);
        for (i, e) in entries.iter().enumerate() {
            debug_assert_eq!(e.index, first.index + i as u64);
            self.unstable.push(e.clone());
        }
    }

    /// The runtime reports entries up to `index` (of `term`), handed out in
    /// `epoch`, durable. Entries removed and appended again since that
    /// epoch are not covered, so the report counts only below the first of
    /// them; true if the durable index advanced.
    pub fn stable_to(&mut self, index: u64, term: u64, epoch: u64) -> bool {
        if epoch > self.epoch {
            debug_assert!(
                false,
                "durability report from epoch {epoch} > {}",
                self.epoch
            );
            return false;
        }
        let cut = self.cut_since(epoch);
        let exact = index < cut;
        let index = if exact { index } else { cut - 1 };
        if index < self.index_unstable || index > self.index_handed {
            return false;
        }
        // A term that cannot be read leaves the entries unstable: the
        // storage failure surfaces on the core's next read of it.
        let agrees = !exact || matches!(self.matches_term(index, term), Ok(true));
        if self.snapshot_pending.is_some() || !agrees {
            return false;
        }
        let count = (index + 1 - self.index_unstable) as usize;
        for e in self.unstable.drain(..count) {
            self.recent_bytes += e.size_bytes();
            self.recent.push_back(e);
        }
        self.index_unstable = index + 1;
        self.trim_recent();
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
        // Everything the runtime wrote before is replaced: no earlier
        // report counts any more.
        self.cut_from(1);
        self.recent.clear();
        self.recent_bytes = 0;
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
            self.trim_recent();
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::EntryKind;
    use crate::sim::storage::{LogData, SharedLog};

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Normal,
            payload: Bytes::new(),
        }
    }

    fn entries(lo: u64, hi: u64, term: u64) -> Vec<Entry> {
        (lo..=hi).map(|i| entry(i, term)).collect()
    }

    /// A log holding `1..=last` of term 1, all durable and committed to 1.
    fn log_of(last: u64) -> RaftLog<SharedLog> {
        let view = SharedLog::new(LogData {
            snapshot: SnapshotMeta::default(),
            entries: entries(1, last, 1),
        });
        RaftLog::new(view, 1, 1).expect("log holds its commit index")
    }

    #[test]
    fn durable_entries_are_read_from_memory_until_applied_and_a_conflict_replaces_them() {
        // The view holds only entry 1: whatever else is read comes from
        // the log's memory.
        let mut log = log_of(1);
        let with_payload = |lo, hi, term| -> Vec<Entry> {
            entries(lo, hi, term)
                .into_iter()
                .map(|mut e| {
                    e.payload = Bytes::from(format!("{}@{}", e.index, e.term));
                    e
                })
                .collect()
        };
        log.append(&with_payload(2, 10, 2));
        let _ = log.take_unhanded();
        assert!(log.stable_to(10, 2, log.epoch()));
        assert_eq!(log.index_durable(), 10);
        assert_eq!(log.entries(2, 11, u64::MAX), Ok(with_payload(2, 10, 2)));
        assert_eq!(log.term(5), Ok(2));
        // A new leader's entries replace 8..=10; memory keeps 2..=7.
        log.append(&with_payload(8, 9, 3));
        let mut want = with_payload(2, 7, 2);
        want.extend(with_payload(8, 9, 3));
        assert_eq!(log.entries(2, 11, u64::MAX), Ok(want.clone()));
        assert_eq!(log.last_index(), 9);
        assert_eq!(log.term(8), Ok(3));
        // Handed out for applying: memory lets them go.
        log.commit_to(7);
        assert_eq!(log.take_committed(u64::MAX), Ok(want[..6].to_vec()));
        assert!(log.recent.is_empty() && log.recent_bytes == 0);
        // Bounded by bytes whatever is applied.
        let big: Vec<Entry> = (10..=12)
            .map(|i| Entry {
                payload: Bytes::from(vec![0u8; (RECENT_BYTES_MAX / 2) as usize]),
                ..entry(i, 3)
            })
            .collect();
        let _ = log.take_unhanded();
        log.append(&big);
        let _ = log.take_unhanded();
        assert!(log.stable_to(12, 3, log.epoch()));
        assert!(log.recent_bytes <= RECENT_BYTES_MAX, "{}", log.recent_bytes);
        assert_eq!(log.recent.back().map(|e| e.index), Some(12));
        // A snapshot replaces everything held.
        log.restore(SnapshotMeta {
            index: 20,
            term: 3,
            ..SnapshotMeta::default()
        });
        assert!(log.recent.is_empty() && log.recent_bytes == 0);
    }

    #[test]
    fn a_durability_report_from_before_a_snapshot_restore_is_ignored() {
        let mut log = log_of(1);
        log.append(&entries(2, 10, 2));
        let _write_a = log.take_unhanded();
        // A snapshot at 6 replaces everything; the runtime installs it.
        log.restore(SnapshotMeta {
            index: 6,
            term: 2,
            ..SnapshotMeta::default()
        });
        let meta = log.take_snapshot().expect("snapshot handed");
        log.view_mut().0.borrow_mut().install(meta);
        log.snapshot_installed(6);
        // The leader sends 7..10 of term 2 again: the same (index, term).
        log.append(&entries(7, 10, 2));
        let _write_c = log.take_unhanded();
        // Write A's report arrives late: it says nothing about write C.
        log.stable_to(10, 2, 0);
        assert_eq!(log.index_durable(), 6, "a stale report advanced durability");
        let epoch = log.epoch();
        assert!(log.stable_to(10, 2, epoch), "a current report advances");
        assert_eq!(log.index_durable(), 10);
    }

    #[test]
    fn a_durability_report_from_before_a_truncation_counts_only_below_it() {
        let mut log = log_of(1);
        log.append(&entries(2, 10, 2));
        let _write_a = log.take_unhanded();
        // A leader of term 3 cuts at 9, then a leader of term 4 holding
        // the term-2 log puts (9, 2) and (10, 2) back.
        log.append(&entries(9, 9, 3));
        let _write_b = log.take_unhanded();
        log.append(&entries(9, 10, 2));
        let _write_c = log.take_unhanded();
        log.stable_to(10, 2, 0);
        assert_eq!(
            log.index_durable(),
            8,
            "write A made 2..=8 durable, but not the 9..=10 written again"
        );
        // Write C's own report, from the current epoch, covers them.
        let epoch = log.epoch();
        assert!(log.stable_to(10, 2, epoch), "a current report advances");
        assert_eq!(log.index_durable(), 10);
    }
}
