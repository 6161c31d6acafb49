//! The Raft wire: hand-written codecs for the messages Raft replicas send
//! each other, over `bytes`.
//!
//! **For:** turning [`crate::raft::Message`]s into frame bodies and back.
//! An AppendEntries body carries the log's own records (storage's format,
//! with their CRCs) as a separate `Bytes` piece: the leader sends the bytes
//! its log holds without re-encoding them, and the follower validates them
//! with [`sampan_storage::format::parse_run`] and hands the same bytes to
//! its log. Heartbeats of every group between two nodes travel in one
//! [`HeartbeatBatch`]. **Not for:** framing, connections or checksums of
//! whole frames (sampan-net does those) or the record format (storage's).
//!
//! Every body starts with a version byte and a tag; every decoder is total:
//! bytes in, a value or a [`WireError`] out, never a panic and never an
//! allocation sized by an unchecked count.

mod entry;
mod error;
mod heartbeat;
mod message;
mod snapshot;

pub use entry::{entries_from_run, record_kind, run_from_entries};
pub use error::WireError;
pub use heartbeat::HeartbeatBatch;
pub use message::{Decoded, decode_message, encode_message};
pub use snapshot::{
    ChunkAnswer, ChunkStatus, SnapshotChunk, decode_snapshot_meta, encode_snapshot_meta,
};

/// Format version of every body this module writes.
pub const WIRE_VERSION: u8 = 1;

/// Frame kinds (sampan-net's `kind` field) of the Raft wire.
pub mod kind {
    /// One Raft message of one group (one-way).
    pub const RAFT: u16 = 0x0100;
    /// Heartbeats (or their responses) of many groups between two nodes.
    pub const HEARTBEATS: u16 = 0x0101;
    /// A chunk of a snapshot (request; answered with a chunk answer).
    pub const SNAPSHOT: u16 = 0x0102;
    /// A node-level keepalive (request with an empty body, answered with an
    /// empty body): one per node pair, not per group, so that a peer that
    /// went silent with its connection still up (paused, blackholed) is
    /// noticed by the groups it leads, hibernating ones included.
    pub const KEEPALIVE: u16 = 0x0103;
}

#[cfg(test)]
mod tests;
