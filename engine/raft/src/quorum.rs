//! Quorum arithmetic: the committed index and the outcome of a vote, for a
//! majority and for a joint configuration (a majority of each half).

use std::collections::BTreeSet;

use super::membership::Membership;
use super::types::NodeId;

/// The outcome of a vote so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteResult {
    /// A quorum granted.
    Won,
    /// A quorum can no longer be reached.
    Lost,
    /// Not decided yet.
    Pending,
}

/// The largest value that a majority of `voters` has reached, given each
/// voter's value. An empty set places no constraint (`u64::MAX`), so that a
/// joint configuration with an empty outgoing half reduces to the incoming.
pub fn majority_value(voters: &BTreeSet<NodeId>, value: &impl Fn(NodeId) -> u64) -> u64 {
    if voters.is_empty() {
        return u64::MAX;
    }
    // On the stack for the usual sizes: this runs on every acknowledgement.
    const ON_STACK: usize = 16;
    let n = voters.len();
    let mut stack = [0u64; ON_STACK];
    let mut heap = Vec::new();
    let values: &mut [u64] = if n <= ON_STACK {
        &mut stack[..n]
    } else {
        heap.resize(n, 0);
        &mut heap
    };
    for (slot, &id) in values.iter_mut().zip(voters) {
        *slot = value(id);
    }
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[n / 2]
}

/// The largest value a quorum of `membership` has reached (joint: both halves).
pub fn quorum_value(membership: &Membership, value: impl Fn(NodeId) -> u64) -> u64 {
    let incoming = majority_value(membership.voters(), &value);
    let outgoing = majority_value(membership.voters_outgoing(), &value);
    incoming.min(outgoing)
}

/// The vote outcome within one voter set (`None`: not answered yet).
pub fn majority_vote(
    voters: &BTreeSet<NodeId>,
    vote: &impl Fn(NodeId) -> Option<bool>,
) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let (mut granted, mut missing) = (0, 0);
    for &id in voters {
        match vote(id) {
            Some(true) => granted += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let quorum = voters.len() / 2 + 1;
    if granted >= quorum {
        VoteResult::Won
    } else if granted + missing >= quorum {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

/// The vote outcome in `membership` (joint: both halves must win).
pub fn quorum_vote(membership: &Membership, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
    let incoming = majority_vote(membership.voters(), &vote);
    let outgoing = majority_vote(membership.voters_outgoing(), &vote);
    match (incoming, outgoing) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

/// Whether the nodes for which `active` holds form a quorum.
pub fn quorum_active(membership: &Membership, active: impl Fn(NodeId) -> bool) -> bool {
    quorum_vote(membership, |id| Some(active(id))) == VoteResult::Won
}

#[cfg(test)]
mod tests {
    use super::super::membership::ConfChange;
    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<NodeId> {
        ids.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn majority_commit_index() {
        let v = set(&[1, 2, 3]);
        let idx = |id: NodeId| [0, 5, 3, 9][id.0 as usize];
        assert_eq!(majority_value(&v, &idx), 5);
        let v4 = set(&[1, 2, 3, 4]);
        let idx4 = |id: NodeId| [0, 5, 3, 9, 1][id.0 as usize];
        assert_eq!(majority_value(&v4, &idx4), 3);
    }

    #[test]
    fn joint_commit_needs_both_halves() {
        let m = Membership::new(set(&[1, 2, 3]), set(&[])).expect("valid");
        let j = m
            .apply(&ConfChange::EnterJoint {
                voters: set(&[4, 5, 6]),
                learners: set(&[]),
            })
            .expect("joint");
        let idx = |id: NodeId| if id.0 <= 3 { 10 } else { 2 };
        assert_eq!(quorum_value(&j, idx), 2);
        let won = quorum_vote(&j, |id| Some(id.0 <= 3));
        assert_eq!(won, VoteResult::Lost);
        let pending = quorum_vote(&j, |id| if id.0 <= 3 { Some(true) } else { None });
        assert_eq!(pending, VoteResult::Pending);
        assert_eq!(
            quorum_vote(&j, |id| Some(id.0 != 1 && id.0 != 4)),
            VoteResult::Won
        );
    }
}
