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
///
/// It is `Send`: the engine encodes it on a low-priority helper thread
/// (the shard only writes the chunks), so a snapshot costs the shard's
/// applies almost nothing but the copy-on-write of what they change.
pub trait FrozenState: Send {
    /// The last applied index the view reflects.
    fn index(&self) -> u64;

    /// The next chunk of about `bytes_max` bytes, `None` after the last.
    /// Each chunk must be self-checking (a version and a CRC) and the
    /// stream must not need its total size up front.
    fn next_chunk(&mut self, bytes_max: usize) -> Option<Bytes>;
}

/// See [`StateMachine::stamp`]: `(command, leader_now_ms) -> command`.
pub type Stamp = fn(Bytes, u64) -> Bytes;

pub use sampan_proto::now_ms;

/// What a state machine says it holds ([`StateMachine::stats`]); a
/// count it does not keep stays `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineStats {
    /// Keys (or other items) held.
    pub keys: Option<u64>,
    /// Exactly-once client sessions remembered.
    pub sessions: Option<u64>,
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

    /// Every entry through `index` is applied: the commands went to
    /// [`StateMachine::apply`], and the entries that are not commands (a
    /// new leader's empty entry, a membership change) changed nothing.
    /// Called after each batch. A snapshot frozen now is labelled
    /// `index`, so a state machine that records its applied index (to
    /// check a snapshot's label against its contents) moves it here. The
    /// default: nothing.
    fn applied_through(&mut self, index: u64) {
        let _ = index;
    }

    /// A function the leader applies to each command just before it is
    /// appended, with its wall clock (ms since the Unix epoch): how a state
    /// machine gets a time every replica agrees on (the KV store stamps
    /// the leader's time for TTLs and session expiry). Asked once, when the
    /// group starts. The default: commands go in as proposed.
    fn stamp(&self) -> Option<Stamp> {
        None
    }

    /// Commands the state machine wants proposed now, while this replica
    /// leads (the KV store's expirations: the leader decides that a key's
    /// TTL passed and proposes its removal, so every replica removes it at
    /// the same index). Pushes them into `out` and returns when to ask
    /// again (ms since the Unix epoch; `None`: only after the next apply).
    /// Called on the apply fiber after applies and at the returned time,
    /// only while leader; a follower keeps no timers. Proposals may be lost
    /// to a leader change: the new leader asks again, from the replicated
    /// state, so a command here must be harmless if applied twice.
    fn due_commands(&mut self, now_ms: u64, out: &mut Vec<Bytes>) -> Option<u64> {
        let _ = (now_ms, out);
        None
    }

    /// What it holds, for metrics and `status` (read at each scrape, so
    /// it must be cheap: O(1)). The default: nothing counted.
    fn stats(&self) -> MachineStats {
        MachineStats::default()
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

/// A [`FrozenState`] for a small state machine that serialises its whole
/// state at freeze time: the bytes go out as one chunk. A large state
/// should freeze a persistent structure instead (as the KV store does).
#[derive(Debug, Clone)]
pub struct FrozenBytes {
    index: u64,
    bytes: Option<Bytes>,
}

impl FrozenBytes {
    /// The state `bytes` as of applied index `index`.
    pub fn new(index: u64, bytes: Bytes) -> FrozenBytes {
        FrozenBytes {
            index,
            bytes: Some(bytes),
        }
    }
}

impl FrozenState for FrozenBytes {
    fn index(&self) -> u64 {
        self.index
    }

    fn next_chunk(&mut self, _bytes_max: usize) -> Option<Bytes> {
        self.bytes.take()
    }
}

/// A state small enough to save whole at every snapshot: implement this
/// instead of [`StateMachine`] and wrap it in [`Small`]. Commands apply one
/// at a time; a snapshot is [`SmallState::save`]'s bytes, and a received
/// one becomes the state through [`SmallState::load`] only once complete.
pub trait SmallState: Sized + 'static {
    /// Applies one committed command and returns the proposer's result.
    fn apply(&mut self, command: &Bytes) -> Bytes;
    /// Answers a (linearizable) read.
    fn read(&self, query: &Bytes) -> Result<Bytes, StateMachineError>;
    /// The whole state, as bytes.
    fn save(&self) -> Bytes;
    /// A state from [`SmallState::save`]'s bytes.
    fn load(bytes: Bytes) -> Result<Self, StateMachineError>;
}

/// The [`StateMachine`] of a [`SmallState`].
#[derive(Debug, Default)]
pub struct Small<T> {
    state: T,
    index: u64,
    restoring: Option<(SnapshotInfo, bytes::BytesMut)>,
}

impl<T: SmallState> Small<T> {
    /// Serves `state`.
    pub fn new(state: T) -> Small<T> {
        Small {
            state,
            index: 0,
            restoring: None,
        }
    }

    /// The state.
    pub fn state(&self) -> &T {
        &self.state
    }
}

impl<T: SmallState> StateMachine for Small<T> {
    fn apply(&mut self, batch: &[Committed<'_>], results: &mut Vec<Bytes>) {
        for c in batch {
            results.push(self.state.apply(c.payload));
            self.index = c.index;
        }
    }

    fn read(&self, query: &Bytes, _now_ms: u64) -> Result<Bytes, StateMachineError> {
        self.state.read(query)
    }

    fn freeze(&mut self) -> Box<dyn FrozenState> {
        Box::new(FrozenBytes::new(self.index, self.state.save()))
    }

    fn restore_begin(&mut self, info: SnapshotInfo) -> Result<(), StateMachineError> {
        self.restoring = Some((info, bytes::BytesMut::new()));
        Ok(())
    }

    fn restore_chunk(&mut self, chunk: Bytes) -> Result<(), StateMachineError> {
        let (_, buf) = self
            .restoring
            .as_mut()
            .ok_or(StateMachineError::NoRestore)?;
        buf.extend_from_slice(&chunk);
        Ok(())
    }

    fn restore_finish(&mut self) -> Result<(), StateMachineError> {
        let (info, buf) = self.restoring.take().ok_or(StateMachineError::NoRestore)?;
        self.state = T::load(buf.freeze())?;
        self.index = info.index;
        Ok(())
    }

    fn restore_abort(&mut self) {
        self.restoring = None;
    }
}
