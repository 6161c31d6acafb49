//! What a replica tracks of the others: as leader, each replica's
//! [`Progress`]; as candidate, the votes it got. Every quorum question the
//! core asks — what is committed, did the vote win, is a quorum still
//! there, how long does the lease run — is a method here, over a
//! [`Membership`] (etcd's `tracker.ProgressTracker` is the model).
//!
//! **For:** the bookkeeping other modules used to reach into the `Raft`
//! struct for. **Not for:** deciding what to send (replication) or when
//! to campaign (election): those modules ask the tracker and act.

use std::collections::{BTreeMap, BTreeSet};

use super::membership::Membership;
use super::progress::{Progress, ProgressState};
use super::quorum::{self, VoteResult};
use super::read;
use super::types::NodeId;

/// The progress of every replica (leader) and the votes of an election
/// (candidate). Empty in a follower.
#[derive(Debug, Clone)]
pub struct Tracker {
    progress: BTreeMap<NodeId, Progress>,
    votes: BTreeMap<NodeId, bool>,
    /// The in-flight window of a new [`Progress`]: messages, bytes.
    msgs_inflight_max: usize,
    bytes_inflight_max: u64,
}

impl Tracker {
    /// An empty tracker whose progresses get in-flight windows of
    /// `msgs_inflight_max` messages and `bytes_inflight_max` bytes.
    pub fn new(msgs_inflight_max: usize, bytes_inflight_max: u64) -> Self {
        Self {
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            msgs_inflight_max,
            bytes_inflight_max,
        }
    }

    /// Forgets every progress and vote (a new term or role).
    pub fn clear(&mut self) {
        self.progress.clear();
        self.votes.clear();
    }

    // ---- votes ----

    /// Records `node`'s answer to this node's campaign.
    pub fn record_vote(&mut self, node: NodeId, granted: bool) {
        self.votes.insert(node, granted);
    }

    /// The campaign's outcome so far in `membership`.
    pub fn tally(&self, membership: &Membership) -> VoteResult {
        quorum::quorum_vote(membership, |n| self.votes.get(&n).copied())
    }

    /// Whether the only vote recorded is one node's (its own).
    pub fn voted_alone(&self) -> bool {
        self.votes.len() == 1
    }

    // ---- progress ----

    /// Tracks exactly `nodes`, each new one probing from `index_next`;
    /// the progress of a node already tracked is kept.
    pub fn track(&mut self, nodes: &BTreeSet<NodeId>, index_next: u64) {
        self.progress.retain(|n, _| nodes.contains(n));
        for &n in nodes {
            self.progress.entry(n).or_insert_with(|| {
                Progress::new(index_next, self.msgs_inflight_max, self.bytes_inflight_max)
            });
        }
    }

    /// `node`'s progress, if tracked.
    pub fn get(&self, node: NodeId) -> Option<&Progress> {
        self.progress.get(&node)
    }

    /// `node`'s progress, if tracked, to change.
    pub fn get_mut(&mut self, node: NodeId) -> Option<&mut Progress> {
        self.progress.get_mut(&node)
    }

    /// Every tracked node but `me`.
    pub fn peers(&self, me: NodeId) -> Vec<NodeId> {
        self.progress.keys().copied().filter(|&n| n != me).collect()
    }

    /// The first tracked replica other than `me` after `after` (from the
    /// start for `None`), in id order: walks the peers without a list.
    pub fn peer_after(&self, me: NodeId, after: Option<NodeId>) -> Option<NodeId> {
        use std::ops::Bound::{Excluded, Unbounded};
        let from = after.map_or(Unbounded, Excluded);
        self.progress
            .range((from, Unbounded))
            .map(|(n, _)| *n)
            .find(|&n| n != me)
    }

    /// The largest index a quorum of `membership` holds (durably).
    pub fn committed(&self, membership: &Membership) -> u64 {
        quorum::quorum_value(membership, |n| {
            self.progress.get(&n).map_or(0, |p| p.index_match)
        })
    }

    /// Whether every tracked replica holds the log up to `index`.
    pub fn all_match(&self, index: u64) -> bool {
        self.progress.values().all(|p| p.index_match == index)
    }

    /// Whether a quorum of `membership` (`me` counted) was heard from since
    /// the last call; starts the next period (check-quorum).
    pub fn quorum_recently_active(&mut self, membership: &Membership, me: NodeId) -> bool {
        let active = quorum::quorum_active(membership, |n| {
            n == me || self.progress.get(&n).is_some_and(|p| p.recent_active)
        });
        for (&n, pr) in self.progress.iter_mut() {
            pr.recent_active = n == me;
        }
        active
    }

    /// The leader-clock time (ms) from which a quorum of `membership` has
    /// acknowledged heartbeats: `me` counts at `now_ms`.
    pub fn lease_start(&self, membership: &Membership, me: NodeId, now_ms: u64) -> u64 {
        read::lease_start(membership, |n| {
            if n == me {
                now_ms
            } else {
                self.progress.get(&n).map_or(0, |p| p.lease_ms_acked)
            }
        })
    }

    /// Whether each of `nodes` holds the log at least to `index_min` and
    /// within `lag` entries of `index_last`.
    pub fn all_caught_up(
        &self,
        nodes: impl IntoIterator<Item = NodeId>,
        index_min: u64,
        index_last: u64,
        lag: u64,
    ) -> bool {
        nodes.into_iter().all(|n| {
            self.progress
                .get(&n)
                .is_some_and(|p| p.index_match >= index_min && p.index_match + lag >= index_last)
        })
    }

    /// A replicating peer goes back to probing (it is unreachable).
    pub fn probe(&mut self, node: NodeId) {
        if let Some(pr) = self.progress.get_mut(&node)
            && pr.state == ProgressState::Replicate
        {
            pr.become_probe();
        }
    }

    // ---- hibernation ----

    /// Starts a hibernation round: only `me` has agreed.
    pub fn hibernate_round(&mut self, me: NodeId) {
        for (&n, pr) in self.progress.iter_mut() {
            pr.hibernate_acked = n == me;
        }
    }

    /// The tracked replicas that have not agreed to hibernate yet.
    pub fn hibernate_pending(&self) -> Vec<NodeId> {
        self.progress
            .iter()
            .filter(|(_, p)| !p.hibernate_acked)
            .map(|(&n, _)| n)
            .collect()
    }

    /// Whether every tracked replica agreed to hibernate.
    pub fn all_hibernate_acked(&self) -> bool {
        self.progress.values().all(|p| p.hibernate_acked)
    }

    /// Everyone counts as active again and no one as hibernating (waking).
    pub fn wake_all(&mut self) {
        for pr in self.progress.values_mut() {
            pr.recent_active = true;
            pr.hibernate_acked = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::ConfChange;

    fn ids(list: &[u64]) -> BTreeSet<NodeId> {
        list.iter().map(|&i| NodeId(i)).collect()
    }

    fn members(voters: &[u64]) -> Membership {
        Membership::default()
            .apply(&ConfChange::Set {
                voters: ids(voters),
                learners: BTreeSet::new(),
            })
            .expect("valid")
    }

    #[test]
    fn walking_the_peers_visits_each_other_replica_once_in_id_order() {
        let mut t = Tracker::new(4, 1 << 20);
        for me in [1, 3, 5, 9] {
            t.track(&ids(&[1, 3, 5, 9]), 1);
            let mut walked = Vec::new();
            let mut at = None;
            while let Some(n) = t.peer_after(NodeId(me), at) {
                walked.push(n);
                at = Some(n);
            }
            assert_eq!(walked, t.peers(NodeId(me)), "as {me}");
        }
        t.track(&ids(&[4]), 1);
        assert_eq!(t.peer_after(NodeId(4), None), None, "alone");
    }

    #[test]
    fn the_committed_index_is_the_quorums_and_tracking_keeps_known_progress() {
        let m = members(&[1, 2, 3]);
        let mut t = Tracker::new(4, 1 << 20);
        t.track(&m.nodes(), 11);
        for (n, index) in [(1, 10), (2, 7), (3, 3)] {
            t.get_mut(NodeId(n)).expect("tracked").maybe_update(index);
        }
        assert_eq!(t.committed(&m), 7);
        assert!(!t.all_match(10));
        // Node 3 leaves, node 4 joins: 1 and 2 keep their progress.
        t.track(&ids(&[1, 2, 4]), 11);
        assert_eq!(t.get(NodeId(2)).map(|p| p.index_match), Some(7));
        assert_eq!(t.get(NodeId(4)).map(|p| p.index_next), Some(11));
        assert!(t.get(NodeId(3)).is_none());
        assert_eq!(t.peers(NodeId(1)), vec![NodeId(2), NodeId(4)]);
    }

    #[test]
    fn votes_win_lose_or_wait_by_quorum() {
        let m = members(&[1, 2, 3]);
        let mut t = Tracker::new(4, 1 << 20);
        t.record_vote(NodeId(1), true);
        assert!(t.voted_alone());
        assert_eq!(t.tally(&m), VoteResult::Pending);
        t.record_vote(NodeId(2), false);
        assert_eq!(t.tally(&m), VoteResult::Pending);
        t.record_vote(NodeId(3), true);
        assert_eq!(t.tally(&m), VoteResult::Won);
        t.clear();
        t.record_vote(NodeId(2), false);
        t.record_vote(NodeId(3), false);
        assert_eq!(t.tally(&m), VoteResult::Lost);
    }

    #[test]
    fn check_quorum_counts_who_answered_since_the_last_check() {
        let m = members(&[1, 2, 3]);
        let mut t = Tracker::new(4, 1 << 20);
        t.track(&m.nodes(), 1);
        // New progresses count as active once.
        assert!(t.quorum_recently_active(&m, NodeId(1)));
        assert!(!t.quorum_recently_active(&m, NodeId(1)), "nobody answered");
        t.get_mut(NodeId(3)).expect("tracked").recent_active = true;
        assert!(t.quorum_recently_active(&m, NodeId(1)));
    }
}
