//! The simulator's disk: an in-memory log that the core reads through
//! [`LogView`], a durable copy, and the queue of writes not yet synced
//! (lost on a crash).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::{Entry, HardState, LogError, LogView, Message, SnapshotMeta};

/// A state machine image: key → value, as of an index.
pub(crate) type SmData = BTreeMap<u8, u64>;

/// A log: a snapshot boundary and the entries after it.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogData {
    pub(crate) snapshot: SnapshotMeta,
    pub(crate) entries: Vec<Entry>,
}

impl LogData {
    pub(crate) fn first_index(&self) -> u64 {
        self.snapshot.index + 1
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.snapshot.index + self.entries.len() as u64
    }

    pub(crate) fn term(&self, index: u64) -> Option<u64> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        if index < self.snapshot.index || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.first_index()) as usize].term)
    }

    /// Drops every entry from `entries[0].index` on, then appends.
    pub(crate) fn truncate_append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index > self.snapshot.index,
            "append below the snapshot"
        );
        assert!(first.index <= self.last_index() + 1, "gap in the sim log");
        self.entries
            .truncate((first.index - self.first_index()) as usize);
        self.entries.extend_from_slice(entries);
    }

    /// Purges entries up to `meta.index` (which the log holds).
    pub(crate) fn compact(&mut self, meta: SnapshotMeta) {
        assert!(meta.index <= self.last_index() && meta.index >= self.snapshot.index);
        let drop = (meta.index - self.snapshot.index) as usize;
        self.entries.drain(..drop);
        self.snapshot = meta;
    }

    /// Replaces everything by a snapshot.
    pub(crate) fn install(&mut self, meta: SnapshotMeta) {
        self.entries.clear();
        self.snapshot = meta;
    }
}

/// The log the core sees (shared with the simulated runtime, which writes it).
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedLog(pub(crate) Rc<RefCell<LogData>>);

impl SharedLog {
    pub(crate) fn new(data: LogData) -> Self {
        Self(Rc::new(RefCell::new(data)))
    }
}

impl LogView for SharedLog {
    fn snapshot_meta(&self) -> SnapshotMeta {
        self.0.borrow().snapshot.clone()
    }

    fn first_index(&self) -> u64 {
        self.0.borrow().first_index()
    }

    fn last_index(&self) -> u64 {
        self.0.borrow().last_index()
    }

    fn term(&self, index: u64) -> Result<u64, LogError> {
        let log = self.0.borrow();
        if index < log.snapshot.index {
            return Err(LogError::Compacted { index });
        }
        log.term(index).ok_or(LogError::Unavailable { index })
    }

    fn entries(&self, lo: u64, hi: u64, bytes_max: u64) -> Result<Vec<Entry>, LogError> {
        let log = self.0.borrow();
        if lo < log.first_index() {
            return Err(LogError::Compacted { index: lo });
        }
        if hi > log.last_index() + 1 {
            return Err(LogError::Unavailable { index: hi - 1 });
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in &log.entries[(lo - log.first_index()) as usize..(hi - log.first_index()) as usize]
        {
            if !out.is_empty() && bytes + e.size_bytes() > bytes_max {
                break;
            }
            bytes += e.size_bytes();
            out.push(e.clone());
        }
        Ok(out)
    }
}

/// A write not yet synced.
#[derive(Debug)]
pub(crate) enum Write {
    HardState(HardState),
    Snapshot(SnapshotMeta, SmData),
    /// Entries and the log epoch they were handed out in.
    Entries(Vec<Entry>, u64),
    Messages(Vec<Message>),
}
