//! The plain values every other file speaks in: log entries, hard state,
//! snapshot metadata (the ids are in `ids.rs`, which membership also
//! uses, so that neither file needs the other's).

use bytes::Bytes;

pub use super::ids::{GroupId, NodeId};
use super::membership::{ConfChange, Membership};

/// What an entry means to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A client command, opaque to the core.
    Normal,
    /// The empty entry a new leader appends to commit its term.
    NoOp,
    /// A membership change; it takes effect once in the log.
    ConfChange(Box<ConfChange>),
}

/// One log entry. The payload is `Bytes` so the runtime passes log bytes
/// through without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The term of the leader that created the entry.
    pub term: u64,
    /// The position in the log, from 1.
    pub index: u64,
    /// What the entry is.
    pub kind: EntryKind,
    /// The command bytes (empty for no-ops and membership changes).
    pub payload: Bytes,
}

/// Bytes counted per entry beyond its payload (header estimate) for flow control.
pub const ENTRY_OVERHEAD_BYTES: u64 = 32;

impl Entry {
    /// The size counted against byte limits (payload plus a fixed overhead).
    pub fn size_bytes(&self) -> u64 {
        self.payload.len() as u64 + ENTRY_OVERHEAD_BYTES
    }
}

/// The state that must be durable before messages that depend on it are sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HardState {
    /// The current term.
    pub term: u64,
    /// Who this node voted for in `term`.
    pub vote: Option<NodeId>,
    /// The highest index known committed (may lag; never ahead of the log).
    pub index_commit: u64,
}

/// What a snapshot covers: everything up to `index` (of `term`), and the
/// membership in force at `index`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotMeta {
    /// The last index the snapshot includes (0: no snapshot).
    pub index: u64,
    /// The term of the entry at `index`.
    pub term: u64,
    /// The membership as of `index`.
    pub membership: Membership,
}
