//! The core's read-only view of a group's durable log, over any
//! [`RaftLog`]: terms and entries come straight from the log's records
//! (zero-copy slices of its segments).

use crate::raft::{Entry, LogError, LogView, SnapshotMeta};
use crate::wire::entries_from_run;
use sampan_storage::RaftLog;
use std::cell::RefCell;
use std::rc::Rc;

/// A [`LogView`] over the group's log; the snapshot description is shared
/// with the runtime, which updates it when a snapshot is installed.
pub(crate) struct StorageView<L> {
    log: L,
    snapshot: Rc<RefCell<SnapshotMeta>>,
}

impl<L: RaftLog> StorageView<L> {
    pub(crate) fn new(log: L, snapshot: Rc<RefCell<SnapshotMeta>>) -> Self {
        StorageView { log, snapshot }
    }
}

fn storage_err(e: impl std::fmt::Display) -> LogError {
    LogError::Storage {
        reason: e.to_string(),
    }
}

impl<L: RaftLog> LogView for StorageView<L> {
    fn snapshot_meta(&self) -> SnapshotMeta {
        self.snapshot.borrow().clone()
    }

    fn first_index(&self) -> u64 {
        self.log.first_index()
    }

    fn last_index(&self) -> u64 {
        self.log.last_index()
    }

    fn term(&self, index: u64) -> Result<u64, LogError> {
        if index == 0 {
            return Ok(0);
        }
        let snapshot = self.snapshot.borrow();
        if index == snapshot.index {
            return Ok(snapshot.term);
        }
        if index < self.log.first_index().saturating_sub(1) {
            return Err(LogError::Compacted { index });
        }
        match self.log.term(index).map_err(storage_err)? {
            Some(t) => Ok(t),
            None if index > self.log.last_index() => Err(LogError::Unavailable { index }),
            None => Err(LogError::Compacted { index }),
        }
    }

    fn entries(&self, lo: u64, hi: u64, bytes_max: u64) -> Result<Vec<Entry>, LogError> {
        if lo < self.log.first_index() {
            return Err(LogError::Compacted { index: lo });
        }
        if hi > self.log.last_index() + 1 {
            return Err(LogError::Unavailable { index: hi - 1 });
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let mut next = lo;
        while next < hi {
            let left = usize::try_from(bytes_max.saturating_sub(bytes))
                .unwrap_or(usize::MAX)
                .max(1);
            let run = self.log.read(next, left).map_err(storage_err)?;
            if run.is_empty() {
                return Err(LogError::Unavailable { index: next });
            }
            for e in entries_from_run(&run).map_err(storage_err)? {
                if e.index >= hi || (!out.is_empty() && bytes + e.size_bytes() > bytes_max) {
                    return Ok(out);
                }
                bytes += e.size_bytes();
                next = e.index + 1;
                out.push(e);
            }
        }
        Ok(out)
    }
}
