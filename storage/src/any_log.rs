//! [`AnyLog`]: the log of a group in either layout a node may use, per
//! group ([`SegmentLog`]) or shared by the shard's groups ([`WalLog`]),
//! behind one type so the runtime's default factories can open either.

use crate::error::Result;
use crate::format::RecordRun;
use crate::io::Vfs;
use crate::log::SegmentLog;
use crate::raft_log::RaftLog;
use crate::wal::WalLog;
use std::time::{Instant, SystemTime};

/// A group's log in either layout. Cheap to clone (shared).
#[derive(Debug)]
pub enum AnyLog<V: Vfs> {
    /// The group's own segment files.
    PerGroup(SegmentLog<V>),
    /// The shard's shared write-ahead log.
    Shared(WalLog<V>),
}

impl<V: Vfs> Clone for AnyLog<V> {
    fn clone(&self) -> Self {
        match self {
            AnyLog::PerGroup(l) => AnyLog::PerGroup(l.clone()),
            AnyLog::Shared(l) => AnyLog::Shared(l.clone()),
        }
    }
}

/// Calls `$call` on whichever log `$self` holds.
macro_rules! either {
    ($self:expr, $l:ident => $call:expr) => {
        match $self {
            AnyLog::PerGroup($l) => $call,
            AnyLog::Shared($l) => $call,
        }
    };
}

impl<V: Vfs> RaftLog for AnyLog<V> {
    fn first_index(&self) -> u64 {
        either!(self, l => l.first_index())
    }
    fn last_index(&self) -> u64 {
        either!(self, l => l.last_index())
    }
    fn last_term(&self) -> u64 {
        either!(self, l => l.last_term())
    }
    fn durable_index(&self) -> u64 {
        either!(self, l => l.durable_index())
    }
    fn bytes(&self) -> u64 {
        either!(self, l => l.bytes())
    }
    fn term(&self, index: u64) -> Result<Option<u64>> {
        either!(self, l => l.term(index))
    }
    fn read(&self, from: u64, bytes_max: usize) -> Result<RecordRun> {
        either!(self, l => l.read(from, bytes_max))
    }
    fn find_match(&self, term: u64, index: u64) -> Result<Option<(u64, u64)>> {
        either!(self, l => l.find_match(term, index))
    }
    async fn append(&self, run: &RecordRun) -> Result<u64> {
        either!(self, l => l.append(run).await)
    }
    async fn sync(&self, index: u64) -> Result<u64> {
        either!(self, l => l.sync(index).await)
    }
    async fn truncate_tail(&self, last_kept: u64) -> Result<()> {
        either!(self, l => l.truncate_tail(last_kept).await)
    }
    async fn purge_head(&self, first_kept: u64) -> Result<()> {
        either!(self, l => l.purge_head(first_kept).await)
    }
    fn mark_purge(&self, first_kept: u64, not_before: Instant) {
        either!(self, l => l.mark_purge(first_kept, not_before))
    }
    fn mark_purge_by_age(&self, older_than: SystemTime, first_kept_max: u64, not_before: Instant) {
        either!(self, l => l.mark_purge_by_age(older_than, first_kept_max, not_before))
    }
    async fn maintain(&self, now: Instant) -> Result<()> {
        either!(self, l => l.maintain(now).await)
    }
    async fn install_snapshot(&self, last_index: u64, last_term: u64) -> Result<()> {
        either!(self, l => l.install_snapshot(last_index, last_term).await)
    }
    async fn close(self) -> Result<()> {
        either!(self, l => l.close().await)
    }
    fn location(&self) -> Option<String> {
        either!(self, l => l.location())
    }
}
