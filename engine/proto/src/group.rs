//! What a node tells about a group: its errors, its status and the
//! snapshots it writes. The runtime produces them; the service carries
//! them to clients, which decode them here without the runtime.

use sampan_raft::Role;

/// What a caller of a group can be told instead of a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// This replica does not lead the group; try the leader, if known.
    #[error("group {group}: not the leader (leader: {leader:?})")]
    NotLeader {
        /// The group.
        group: u64,
        /// The leader's node id, if this replica knows it.
        leader: Option<u64>,
    },
    /// The proposal's entry was replaced by another leader's: it did not
    /// apply, and may be retried.
    #[error("group {group}: the proposal at index {index} was lost to a leader change")]
    Lost {
        /// The group.
        group: u64,
        /// The index the proposal had.
        index: u64,
    },
    /// The group stopped (shutdown, or a fiber failed) before answering.
    #[error("group {group} stopped before answering")]
    Stopped {
        /// The group.
        group: u64,
    },
    /// The group's queue is full: back off and retry.
    #[error("group {group} is overloaded")]
    Busy {
        /// The group.
        group: u64,
    },
    /// The log, the status file or the snapshot store failed; the replica
    /// stops taking writes (the server restarts it, unless the data is
    /// corrupt).
    #[error("group {group}: storage failed ({fault}): {reason}")]
    Storage {
        /// The group.
        group: u64,
        /// What kind of failure: it decides whether a restart can help.
        fault: StorageFault,
        /// What failed, with the file and offset when known.
        reason: String,
    },
    /// The replica halted itself: an invariant whose breach puts data at
    /// risk failed (two leaders in one term, a term going back). It takes
    /// no more requests and is not restarted on its own: an operator
    /// looks at its log first.
    #[error("group {group}: halted, data at risk: {reason}")]
    Halted {
        /// The group.
        group: u64,
        /// The invariant that failed.
        reason: String,
    },
    /// The core refused the request (a bad change).
    #[error("group {group}: {reason}")]
    Refused {
        /// The group.
        group: u64,
        /// Why.
        reason: String,
    },
    /// The state machine refused the read.
    #[error("group {group}: read failed: {reason}")]
    Read {
        /// The group.
        group: u64,
        /// Why.
        reason: String,
    },
    /// The proposal's outcome is unknown here: it was appended (at `index`
    /// when known) but this replica can no longer tell whether it will
    /// commit (it stopped leading before the entry committed, a snapshot
    /// replaced the entries around it, or the request timeout passed). It
    /// applies at most once if it carries an exactly-once session; retry it
    /// under the same session to learn.
    #[error("group {group}: outcome unknown{}: {reason}", at_index(*index))]
    Uncertain {
        /// The group.
        group: u64,
        /// The index the proposal had; 0 when not known (a timeout).
        index: u64,
        /// Why it is unknown.
        reason: String,
    },
}

/// The kind of a storage failure: the typed part of the storage crate's
/// error that survives the trip to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageFault {
    /// An I/O call failed (the disk, the file system); a restart may help.
    Io,
    /// The disk is full; nothing durable was harmed, and a restart helps
    /// once space returns.
    DiskFull,
    /// Data on disk is damaged where a torn write cannot explain it (or a
    /// snapshot does not read back whole): the replica must not run on it
    /// without an operator.
    Corrupt,
    /// Anything else (a call that did not fit the log's state, a state
    /// machine that refused a snapshot, an older node that did not say).
    Other,
}

impl StorageFault {
    /// The byte that stands for it on the wire.
    pub fn tag(self) -> u8 {
        match self {
            StorageFault::Other => 0,
            StorageFault::Io => 1,
            StorageFault::DiskFull => 2,
            StorageFault::Corrupt => 3,
        }
    }

    /// The kind a wire byte stands for (an unknown one is `Other`: a newer
    /// node's kind still reads as a storage failure).
    pub fn from_tag(tag: u8) -> StorageFault {
        match tag {
            1 => StorageFault::Io,
            2 => StorageFault::DiskFull,
            3 => StorageFault::Corrupt,
            _ => StorageFault::Other,
        }
    }
}

impl std::fmt::Display for StorageFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StorageFault::Io => "i/o error",
            StorageFault::DiskFull => "disk full",
            StorageFault::Corrupt => "corrupt data",
            StorageFault::Other => "failed",
        })
    }
}

/// " for the proposal at index N", or nothing when the index is unknown.
fn at_index(index: u64) -> String {
    if index == 0 {
        String::new()
    } else {
        format!(" for the proposal at index {index}")
    }
}

impl GroupError {
    /// Whether the error means the request surely did not and will not
    /// apply. `false` (stopped, storage failure, outcome unknown): it may
    /// have applied, or may still.
    pub fn is_definite(&self) -> bool {
        match self {
            GroupError::NotLeader { .. }
            | GroupError::Lost { .. }
            | GroupError::Busy { .. }
            | GroupError::Refused { .. }
            | GroupError::Read { .. } => true,
            GroupError::Stopped { .. }
            | GroupError::Storage { .. }
            | GroupError::Halted { .. }
            | GroupError::Uncertain { .. } => false,
        }
    }
}

/// A snapshot of a replica's state, for `status()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    /// The group.
    pub group: u64,
    /// This replica's role.
    pub role: Role,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// The highest index known committed.
    pub index_commit: u64,
    /// The last index in its log.
    pub index_last: u64,
    /// The last index its state machine applied.
    pub index_applied: u64,
    /// Whether the group is hibernating (idle: no ticks, no heartbeats).
    pub hibernating: bool,
    /// The node this replica runs on.
    pub node: u64,
    /// The voting members; during a joint change, those of the incoming
    /// configuration (the change's target). A node older than
    /// `voters_outgoing` reports both configurations' voters here.
    pub voters: Vec<u64>,
    /// During a joint change, the voters of the outgoing configuration
    /// (a quorum of each must agree until the change completes); empty
    /// otherwise.
    pub voters_outgoing: Vec<u64>,
    /// The observers (learners).
    pub learners: Vec<u64>,
    /// The newest snapshot here (written or received): its last index,
    /// 0 if none.
    pub snapshot_index: u64,
    /// The term of that snapshot's last entry.
    pub snapshot_term: u64,
    /// Where the membership in force was set: the index of its latest
    /// change's entry (or of the snapshot it came in); what a conditional
    /// membership change names.
    pub membership_index: u64,
    /// The term of that entry (or snapshot).
    pub membership_term: u64,
    /// On a leader, each follower's and observer's matched index, by node
    /// (how far behind it is: `index_last` minus it); empty elsewhere.
    pub matched: Vec<(u64, u64)>,
    /// On a follower or observer: milliseconds since it last heard from
    /// the leader it names (its last contact); `None` on a leader, with no
    /// leader known, or from a node that does not report it.
    pub leader_contact_ms: Option<u64>,
    /// Bytes of log data the group keeps on disk here (see
    /// `RaftLog::bytes`); 0 from a node that does not report it.
    pub log_bytes: u64,
    /// The last snapshot this replica wrote since it started (how long it
    /// took, how big it is); `None` if it wrote none.
    pub snapshot_saved: Option<SnapshotSaved>,
    /// Keys (or other items) the state machine holds, if it counts them.
    pub keys: Option<u64>,
    /// Exactly-once client sessions the state machine remembers, if it
    /// keeps any.
    pub sessions: Option<u64>,
}

/// Among replicas' statuses, the leader of the highest term: the one in
/// force (a deposed leader that has not heard of its successor may still
/// say it leads).
pub fn newest_leader<'a>(
    statuses: impl IntoIterator<Item = &'a GroupStatus>,
) -> Option<&'a GroupStatus> {
    statuses
        .into_iter()
        .filter(|s| s.role == Role::Leader)
        .max_by_key(|s| s.term)
}

/// A snapshot written here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSaved {
    /// The last index it covers.
    pub index: u64,
    /// The term of that entry.
    pub term: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// How long writing it took, in ms (freeze excluded: the apply fiber
    /// did that in O(1)).
    pub write_ms: u64,
    /// Entries the apply fiber applied while it was being written (the
    /// applied index when it was durable, minus `index`): a snapshot
    /// never stops applies.
    pub applied_meanwhile: u64,
}
