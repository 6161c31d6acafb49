//! The state machine API: what an embedder implements to put its own state
//! behind a Raft group (Dongting's `StateMachine` is the model).
//!
//! The group's apply fiber calls [`StateMachine::apply`] with batches of
//! committed entries, in log order, and yields between batches. Snapshots
//! never stop applies: [`StateMachine::freeze`] returns, in O(1) or close to
//! it, a [`FrozenState`] that the snapshot fiber streams out in chunks while
//! applies go on. A snapshot received from the leader is installed with
//! `restore_*`, and the live state is replaced only by
//! [`StateMachine::restore_finish`], so an install that fails half-way leaves
//! it untouched.
//!
//! A state machine lives on one shard and is never shared across threads, so
//! it needs no locks and need not be `Send`.

use bytes::Bytes;

/// One committed entry handed to [`StateMachine::apply`].
#[derive(Debug, Clone, Copy)]
pub struct Committed<'a> {
    /// Its log index.
    pub index: u64,
    /// The term it was proposed in.
    pub term: u64,
    /// The command, as proposed.
    pub payload: &'a Bytes,
}

/// A replica's role in its group, as the role-change hook reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Leads the group: proposals and reads go here.
    Leader,
    /// Follows a leader (or waits for one).
    Follower,
    /// Campaigns for leadership.
    Candidate,
    /// Receives the log but never votes (learner).
    Observer,
}

/// What the role-change hook is told: the new role, the term, and who leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleChange {
    /// The group.
    pub group: u64,
    /// The role from now on.
    pub role: Role,
    /// The term in which it holds.
    pub term: u64,
    /// The leader's node id, when known.
    pub leader: Option<u64>,
}

/// What a snapshot covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The last log index the snapshot includes.
    pub index: u64,
    /// The term of that entry.
    pub term: u64,
}

/// Why a state machine refused a query or a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateMachineError {
    /// The query's bytes do not decode.
    #[error("bad query: {0}")]
    BadQuery(String),
    /// A snapshot chunk is damaged or out of order, or the snapshot is
    /// incomplete.
    #[error("bad snapshot (index {index}): {reason}")]
    BadSnapshot {
        /// The snapshot's index.
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// `restore_chunk` or `restore_finish` without `restore_begin`.
    #[error("no snapshot restore in progress")]
    NoRestore,
}

/// A consistent, read-only view of the state at one applied index, taken
/// by [`StateMachine::freeze`] and streamed out while applies go on.
pub trait FrozenState {
    /// The last applied index the view reflects.
    fn index(&self) -> u64;

    /// The next chunk of about `bytes_max` bytes, `None` after the last.
    /// Each chunk must be self-checking (a version and a CRC) and the
    /// stream must not need its total size up front.
    fn next_chunk(&mut self, bytes_max: usize) -> Option<Bytes>;
}

/// The state behind one Raft group.
pub trait StateMachine: 'static {
    /// Applies committed entries in order and pushes one result per entry
    /// into `results` (what the proposer receives). Must be deterministic:
    /// every replica applies the same entries and must reach the same
    /// state, so it may read no clock and no randomness of its own.
    fn apply(&mut self, batch: &[Committed<'_>], results: &mut Vec<Bytes>);

    /// Answers a read at the current applied state. The engine calls it only
    /// after a ReadIndex round or under the leader's lease, so the answer is
    /// linearizable. `now_ms` is this node's wall clock (for TTLs).
    fn read(&self, query: &Bytes, now_ms: u64) -> Result<Bytes, StateMachineError>;

    /// Called when this replica's role changes (becoming leader or follower
    /// in a new term), before any entry of the new term is applied.
    fn on_role_change(&mut self, change: &RoleChange) {
        let _ = change;
    }

    /// Freezes the state at the last applied index in O(1) or close to it.
    fn freeze(&mut self) -> Box<dyn FrozenState>;

    /// Starts installing a snapshot; the live state stays as it is.
    fn restore_begin(&mut self, info: SnapshotInfo) -> Result<(), StateMachineError>;

    /// Takes the next chunk of the snapshot being installed.
    fn restore_chunk(&mut self, chunk: Bytes) -> Result<(), StateMachineError>;

    /// Replaces the live state with the installed snapshot.
    fn restore_finish(&mut self) -> Result<(), StateMachineError>;

    /// Drops a half-installed snapshot; the live state stays as it is.
    fn restore_abort(&mut self);
}
