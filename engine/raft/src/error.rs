//! The errors the core returns to its caller, each naming the group.

use super::config::ConfigError;
use super::log::LogError;
use super::membership::ConfChangeError;
use super::types::{GroupId, NodeId};

/// Why an input to the core was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaftError {
    /// Only the leader does this; `hint` is the leader this node knows of.
    #[error("group {group}: not the leader (leader: {hint:?})")]
    NotLeader {
        /// The group.
        group: GroupId,
        /// The known leader, if any.
        hint: Option<NodeId>,
    },
    /// A message for another group reached this core.
    #[error("group {group}: message for group {got}")]
    WrongGroup {
        /// This core's group.
        group: GroupId,
        /// The message's group.
        got: GroupId,
    },
    /// A leader transfer is under way: proposals wait.
    #[error("group {group}: leader transfer in progress")]
    TransferInProgress {
        /// The group.
        group: GroupId,
    },
    /// A membership change is already under way.
    #[error("group {group}: a membership change is pending")]
    ConfChangePending {
        /// The group.
        group: GroupId,
    },
    /// A conditional membership change found another membership than the
    /// one it was computed from (another change came first).
    #[error("group {group}: the membership changed meanwhile (now {now}); read it again and retry")]
    MembershipChanged {
        /// The group.
        group: GroupId,
        /// The membership in force.
        now: String,
    },
    /// The requested membership is invalid.
    #[error("group {group}: invalid membership change: {source}")]
    ConfChange {
        /// The group.
        group: GroupId,
        /// What is wrong.
        source: ConfChangeError,
    },
    /// No membership change can be cancelled any more.
    #[error("group {group}: no cancellable membership change")]
    NothingToCancel {
        /// The group.
        group: GroupId,
    },
    /// The target of a leader transfer is not a voter.
    #[error("group {group}: {target} is not a voter")]
    NotAVoter {
        /// The group.
        group: GroupId,
        /// The node asked for.
        target: NodeId,
    },
    /// A bounded queue is full.
    #[error("group {group}: too many pending {what}")]
    Busy {
        /// The group.
        group: GroupId,
        /// Which queue.
        what: &'static str,
    },
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An invariant whose breach puts data at risk failed (two leaders in
    /// one term, a term going back): the replica stopped itself, in
    /// release builds too (raft-rs's `fatal!`), rather than act on a state
    /// that can lose or fork committed entries. Every later input returns
    /// this error; the runtime stops the group and says so at error level.
    #[error("group {group}: halted, an invariant failed (data at risk): {what}")]
    Invariant {
        /// The group.
        group: GroupId,
        /// What was seen.
        what: String,
    },
    /// The runtime's log failed.
    #[error("group {group}: {source}")]
    Log {
        /// The group.
        group: GroupId,
        /// The log error.
        source: LogError,
    },
}
