//! The `RaftLog` trait: what the engine needs from a Raft log, whoever
//! implements it. Modelled on Dongting's `RaftLog` (init, append, truncate
//! tail, read, find a match position, mark for truncation, snapshot
//! install, close).
//!
//! The contract, as the Raft core relies on it:
//! - `append` returns once the records are written (readable, in the page
//!   cache); they are durable only when `sync` (or `durable_index`) says so.
//!   A leader may send entries before they are durable here; a follower
//!   acknowledges only durable entries (in `sync` mode).
//! - Indexes are contiguous from `first_index` to `last_index`, terms never
//!   go down, and after any crash the log reopens as a prefix of what was
//!   written that holds at least every entry `sync` reported durable.
//! - Every call is shard-local and never blocks the shard thread.

use crate::error::Result;
use crate::format::RecordRun;
use std::time::{Instant, SystemTime};

/// A Raft log. See the module docs for the contract.
#[allow(async_fn_in_trait)] // shard-local: the futures need not be `Send`
pub trait RaftLog {
    /// Index of the first entry held; entries before it are gone (purged, or
    /// covered by a snapshot). `last_index() + 1` when the log is empty.
    fn first_index(&self) -> u64;

    /// Index of the last entry (`first_index() - 1` when empty).
    fn last_index(&self) -> u64;

    /// Term of the last entry (the snapshot's term when empty).
    fn last_term(&self) -> u64;

    /// Highest index known durable.
    fn durable_index(&self) -> u64;

    /// Bytes of log data this group keeps on disk, for metrics: what its
    /// own segment files hold, or (in a log shared by groups) the records
    /// of its live entries. Purged entries count until their space can
    /// be freed.
    fn bytes(&self) -> u64;

    /// Term of entry `index`; also answers for `first_index() - 1` (the
    /// entry just before the log, from the purge point or snapshot).
    /// `None` when out of range.
    fn term(&self, index: u64) -> Result<Option<u64>>;

    /// The records from `from` on, as the log holds them (zero-copy), up to
    /// about `bytes_max` (always at least one record when `from` is held).
    /// The run may end early at a segment boundary: call again from
    /// `run.last_index() + 1`.
    fn read(&self, from: u64, bytes_max: usize) -> Result<RecordRun>;

    /// The highest index `i <= index` whose term is `<= term`, with its term
    /// (Dongting's `tryFindMatchPos`: where a follower's log may match the
    /// leader's). `None` if no entry of the log qualifies.
    fn find_match(&self, term: u64, index: u64) -> Result<Option<(u64, u64)>>;

    /// Appends `run`, whose first index must be `last_index() + 1`. Returns
    /// the new last index once written (not yet durable). On an error a
    /// prefix of `run` may have been appended: `last_index()` says how far.
    async fn append(&self, run: &RecordRun) -> Result<u64>;

    /// Waits until `index` (at most `last_index()`) is durable; returns the
    /// durable index. Many waiters of many logs share one sync. A failed
    /// sync is fatal: the log must be reopened (see `crate::log`).
    async fn sync(&self, index: u64) -> Result<u64>;

    /// Removes the entries after `last_kept` (a follower's conflict). Durable
    /// on return.
    async fn truncate_tail(&self, last_kept: u64) -> Result<()>;

    /// Removes the entries before `first_kept` (after a snapshot). Durable on
    /// return; whole segments are deleted when they fall out.
    async fn purge_head(&self, first_kept: u64) -> Result<()>;

    /// Asks for `purge_head(first_kept)` once `not_before` has passed (done by
    /// [`RaftLog::maintain`]); a later mark replaces an earlier one.
    fn mark_purge(&self, first_kept: u64, not_before: Instant);

    /// Asks for a purge by age, for log retention (Dongting's
    /// `markTruncateByTimestamp`): once `not_before` has passed,
    /// [`RaftLog::maintain`] removes the entries written before
    /// `older_than` (wall clock), in whole segments, never at or past
    /// `first_kept_max` (the caller's limit: entries no snapshot covers yet
    /// must stay). A later mark replaces an earlier one; it is independent
    /// of [`RaftLog::mark_purge`]. The default keeps everything, which is
    /// always safe, for logs that do not know their entries' age.
    fn mark_purge_by_age(&self, older_than: SystemTime, first_kept_max: u64, not_before: Instant) {
        let _ = (older_than, first_kept_max, not_before);
    }

    /// Runs due background work (marked purges) as of `now`.
    async fn maintain(&self, now: Instant) -> Result<()>;

    /// Resets the log after a snapshot up to (`last_index`, `last_term`) was
    /// installed: all entries are dropped and the log continues at
    /// `last_index + 1`. Durable on return.
    async fn install_snapshot(&self, last_index: u64, last_term: u64) -> Result<()>;

    /// Makes everything written durable and closes the log.
    async fn close(self) -> Result<()>;

    /// Where the log lives (its directory), for messages that must point
    /// an operator at it; `None` for a log with no place to name.
    fn location(&self) -> Option<String> {
        None
    }
}

/// [`RaftLog::find_match`] from `first_index`, `last_index` and `term`:
/// terms never go down along a log, so a binary search finds the last
/// index whose term is at most `term`.
pub(crate) fn find_match_in<L: RaftLog + ?Sized>(
    log: &L,
    term: u64,
    index: u64,
) -> Result<Option<(u64, u64)>> {
    let mut lo = log.first_index() - 1;
    let mut hi = index.min(log.last_index());
    if hi < lo {
        return Ok(None);
    }
    match log.term(lo)? {
        Some(t) if t <= term => {}
        _ => return Ok(None),
    }
    // `lo` qualifies; find the last one that does.
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match log.term(mid)? {
            Some(t) if t <= term => lo = mid,
            _ => hi = mid - 1,
        }
    }
    Ok(log.term(lo)?.map(|t| (lo, t)))
}
