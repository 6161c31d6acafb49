//! Every fixed limit and size of the runtime in one place, with the
//! relations between them checked when the crate compiles (TigerBeetle's
//! `constants.zig` is the model): a change that breaks one fails the build
//! instead of a cluster.
//!
//! Limits a user sets (timeouts, snapshot thresholds, ports) are in
//! [`crate::config`], checked when a config is validated; the limits of
//! the wire formats are beside their codecs in `sampan-proto`
//! (`KEY_MAX_BYTES`, `VALUE_MAX_BYTES`, ...) and `sampan-net` (the frame
//! header and default frame limit); the relations across crates are
//! checked here.

use sampan_net::frame::{FRAME_BYTES_MAX_DEFAULT, HEADER_LEN};
use sampan_proto::kv::{KEY_MAX_BYTES, VALUE_MAX_BYTES};
use std::time::Duration;

/// The largest command a group takes, in bytes: one log entry must fit in
/// one frame between nodes, headers included, or followers would refuse
/// it and the group could never commit it.
pub const PROPOSAL_BYTES_MAX: usize = 15 << 20;

/// The largest entry payload a host accepts from the network.
pub const PAYLOAD_BYTES_MAX: u32 = 16 << 20;

/// Slots of a group's inbox: proposals beyond this wait (backpressure).
pub const INBOX_CAPACITY: usize = 4096;

/// Slots of the queue from a group's Raft loop to its persist fiber (log
/// writes and hard states waiting to be made durable).
pub const PERSIST_QUEUE_CAPACITY: usize = 1024;

/// Slots of the queue from a group's Raft loop to its apply fiber
/// (committed entries, reads, snapshot installs).
pub const APPLY_QUEUE_CAPACITY: usize = 1024;

/// Slots of the queue to a group's snapshot fiber (snapshot writes and
/// chunks to send or receive).
pub const SNAPSHOT_QUEUE_CAPACITY: usize = 64;

/// Bytes of recently encoded entries a leader keeps to send as they are.
pub const TAIL_CACHE_BYTES: usize = 4 << 20;

/// Bytes all the tail caches of one shard may hold together.
pub const SHARD_TAIL_CACHE_BYTES: usize = 256 << 20;

/// Snapshots a group keeps on disk (the newest and the one before, so a
/// transfer in progress is never pulled from under its reader).
pub const SNAPSHOTS_KEPT: usize = 2;

/// How often the server looks for replicas stopped by a storage failure.
pub const HEAL_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The first wait before restarting such a replica; it doubles on each
/// failed restart, up to [`HEAL_BACKOFF_MAX`].
pub const HEAL_BACKOFF_MIN: Duration = Duration::from_secs(1);

/// The longest wait between restarts of a failing replica.
pub const HEAL_BACKOFF_MAX: Duration = Duration::from_secs(30);

// A proposal, framed, fits in a frame of the default size, with room for
// the entry's record header and the message around it.
const _: () = assert!(PROPOSAL_BYTES_MAX + HEADER_LEN + (64 << 10) <= FRAME_BYTES_MAX_DEFAULT);
// What a host accepts from the network covers the largest proposal.
const _: () = assert!(PROPOSAL_BYTES_MAX <= PAYLOAD_BYTES_MAX as usize);
const _: () = assert!(PAYLOAD_BYTES_MAX as usize <= FRAME_BYTES_MAX_DEFAULT);
// A put of the largest key and value is a proposal a group takes.
const _: () = assert!(KEY_MAX_BYTES + VALUE_MAX_BYTES + 4096 <= PROPOSAL_BYTES_MAX);
// One group's tail cache fits in its shard's budget.
const _: () = assert!(TAIL_CACHE_BYTES <= SHARD_TAIL_CACHE_BYTES);
// A snapshot being sent is never the one purged.
const _: () = assert!(SNAPSHOTS_KEPT >= 2);
const _: () = assert!(HEAL_BACKOFF_MIN.as_millis() <= HEAL_BACKOFF_MAX.as_millis());

/// Keepalive probes a node sends each peer per election timeout (the
/// liveness check that lets idle groups hibernate).
pub const PEER_PROBES_PER_TIMEOUT: u64 = 5;

/// Election timeouts a peer may stay silent on an open connection (no
/// keepalive answered) before the connection is closed and dialled again.
/// A peer that vanished without a FIN or RST (its host or container gone,
/// its address moved) leaves the connection open for the kernel's
/// retransmission timeout, about 15 minutes; dialling again looks its
/// name up again and finds where it went. A paused peer costs only
/// reconnect attempts.
pub const PEER_SILENT_TIMEOUTS_BEFORE_REDIAL: u32 = 3;
