//! The pure Raft core: one replica of one group as a deterministic state
//! machine, with no I/O, no clock of its own, no threads and no async —
//! modelled on tikv/raft-rs and TigerBeetle's replica — so the group
//! runtime and the seeded simulator drive the same code.
//!
//! Inputs are methods of [`Raft`]: [`Raft::step`] (a message),
//! [`Raft::tick`] (what the timers count), [`Raft::set_now_ms`] (the
//! runtime's monotonic clock, which only the leader lease and the
//! followers' promise behind it read), [`Raft::propose`],
//! [`Raft::read_index`], [`Raft::transfer_leader`],
//! [`Raft::change_membership`], and notices that I/O finished
//! ([`Raft::on_entries_durable`], [`Raft::on_snapshot_installed`],
//! [`Raft::on_applied`], [`Raft::report_snapshot`],
//! [`Raft::on_node_unreachable`]). After each input the caller drains a
//! [`Ready`] and follows its contract. The durable log stays with the
//! runtime, seen through the read-only [`LogView`].
//!
//! One concept per file: `quorum` (majority and joint arithmetic),
//! `progress` (per-follower replication state), `membership` (joint
//! consensus, learners), `log` (the log view and its unstable tail), `read`
//! (ReadIndex and lease), `election`, `replication`, `leader`, `reconfig`,
//! `hibernate`, `node` (state and dispatch), `ready` (the output).
//!
//! ```
//! use sampan_raft::{Config, GroupId, NodeId};
//! let cfg = Config::new(NodeId(1), GroupId(7));
//! assert!(cfg.validate().is_ok());
//! ```

mod config;
mod election;
mod error;
mod hibernate;
mod ids;
mod leader;
mod log;
mod membership;
mod message;
mod node;
mod progress;
mod quorum;
mod read;
mod ready;
mod reconfig;
mod replication;
mod rng;
mod tracker;
mod types;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

pub use self::config::{Config, ConfigError};
pub use self::error::RaftError;
pub use self::log::{LogError, LogView};
pub use self::membership::{ConfChange, ConfChangeError, Membership};
pub use self::message::{
    Append, AppendResponse, Body, Heartbeat, HeartbeatResponse, Hibernate, HibernateResponse,
    Message, Vote, VoteResponse,
};
pub use self::node::{Raft, Role};
pub use self::progress::{Inflights, Progress, ProgressState};
pub use self::quorum::VoteResult;
pub use self::read::ReadState;
pub use self::ready::Ready;
pub use self::tracker::Tracker;
pub use self::types::{
    ENTRY_OVERHEAD_BYTES, Entry, EntryKind, GroupId, HardState, NodeId, SnapshotMeta,
};
