//! The messages Raft peers exchange, as plain Rust values. Their byte codecs
//! live in `engine::wire`; heartbeats are separate small variants so the
//! runtime can coalesce those of many groups between the same two nodes.

use super::types::{Entry, GroupId, NodeId, SnapshotMeta};

/// One message between two replicas of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The group.
    pub group: GroupId,
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's term (for a granted pre-vote: the term it would campaign in).
    pub term: u64,
    /// What the message says.
    pub body: Body,
}

/// The kinds of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Leader → follower: entries after (`index_prev`, `term_prev`).
    Append(Append),
    /// Follower → leader: the answer to an `Append` or `Snapshot`.
    AppendResponse(AppendResponse),
    /// Leader → follower: I am alive; also confirms reads and the lease.
    Heartbeat(Heartbeat),
    /// Follower → leader: the answer to a `Heartbeat`.
    HeartbeatResponse(HeartbeatResponse),
    /// Candidate → voter: vote for me (or, if `pre`, would you?).
    Vote(Vote),
    /// Voter → candidate.
    VoteResponse(VoteResponse),
    /// Leader → follower: install the snapshot described (the runtime
    /// streams the data beside this message).
    Snapshot(Box<SnapshotMeta>),
    /// Leader → transfer target: campaign now.
    TimeoutNow,
    /// Leader → follower: the group is idle, stop ticking.
    Hibernate(Hibernate),
    /// Follower → leader: the answer to `Hibernate`.
    HibernateResponse(HibernateResponse),
}

/// AppendEntries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    /// The index just before `entries`.
    pub index_prev: u64,
    /// The term at `index_prev`.
    pub term_prev: u64,
    /// The entries (possibly none: a probe).
    pub entries: Vec<Entry>,
    /// The leader's commit index.
    pub index_commit: u64,
}

/// The answer to AppendEntries or to a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResponse {
    /// Whether the entries were rejected (the logs disagree at `index`).
    pub reject: bool,
    /// Accepted: the follower's log matches (durably) up to here. Rejected:
    /// the `index_prev` that did not match.
    pub index: u64,
    /// Rejected: the largest index at or before `index` whose term is at
    /// most the leader's `term_prev`.
    pub index_hint: u64,
    /// Rejected: the term at `index_hint` (0 if unknown).
    pub term_hint: u64,
}

/// A heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// min(leader's commit, follower's match): never past the follower's log.
    pub index_commit: u64,
    /// The newest ReadIndex round broadcast.
    pub id_read: u64,
    /// The leader's monotonic clock (ms) when sending (for the lease).
    pub lease_ms: u64,
}

/// The answer to a heartbeat, echoing its round and tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// Echoed `id_read`.
    pub id_read: u64,
    /// Echoed `lease_ms`.
    pub lease_ms: u64,
}

/// RequestVote (or PreVote).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vote {
    /// A pre-vote: no one changes term or vote.
    pub pre: bool,
    /// The candidate's last index.
    pub index_last: u64,
    /// The candidate's last term.
    pub term_last: u64,
    /// Campaign forced by a leader transfer: voters ignore their lease.
    pub transfer: bool,
}

/// The answer to RequestVote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoteResponse {
    /// Answers a pre-vote.
    pub pre: bool,
    /// Refused.
    pub reject: bool,
}

/// The leader asks followers to hibernate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hibernate {
    /// The leader's last (and committed) index.
    pub index_last: u64,
    /// The term of that entry.
    pub term_last: u64,
    /// The leader's clock (ms) when sending, ordered with heartbeats'.
    pub sent_ms: u64,
}

/// A follower's answer to `Hibernate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HibernateResponse {
    /// The follower hibernated.
    pub ok: bool,
}

impl Message {
    /// Whether a leader sends this kind (the runtime may send it before the
    /// leader's own log is durable).
    pub fn is_from_leader(&self) -> bool {
        matches!(
            self.body,
            Body::Append(_)
                | Body::Heartbeat(_)
                | Body::Snapshot(_)
                | Body::TimeoutNow
                | Body::Hibernate(_)
        )
    }
}
