//! Membership changes driven by the leader: add new nodes as learners, wait
//! until they catch up (cancellable meanwhile), enter the joint
//! configuration, and leave it automatically once it commits, even under a
//! new leader.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::error::RaftError;
use super::log::LogView;
use super::membership::ConfChange;
use super::node::{Raft, Role};
use super::types::{EntryKind, NodeId};

impl<L: LogView> Raft<L> {
    /// Changes the membership to `voters` and `learners`. Nodes that are not
    /// members yet join as learners first; voters are changed through a
    /// joint configuration once every new voter has caught up.
    pub fn change_membership(
        &mut self,
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
    ) -> Result<(), RaftError> {
        self.change_membership_if(None, voters, learners)
    }

    /// [`Raft::change_membership`], only if the membership in force is
    /// still the one at `expected` ([`Raft::membership_at`]), the one the
    /// caller computed the target from, or is the target already (a retry
    /// of a change that was made). A request that comes late, after other
    /// changes (a retry, a concurrent admin), is refused instead of undoing
    /// them: a plain target is not idempotent under reordering, and a
    /// position, unlike the sets, also tells a node removed and added back
    /// from one never removed.
    pub fn change_membership_if(
        &mut self,
        expected: Option<(u64, u64)>,
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
    ) -> Result<(), RaftError> {
        let group = self.cfg.group;
        if self.role != Role::Leader {
            return Err(self.not_leader());
        }
        if self.transferee.is_some() {
            return Err(RaftError::TransferInProgress { group });
        }
        if self.membership_target.is_some()
            || self.membership.is_joint()
            || self.index_conf_pending > self.log.index_committed()
        {
            return Err(RaftError::ConfChangePending { group });
        }
        if let Some(expected) = expected {
            let done =
                *self.membership.voters() == voters && self.membership.learners() == learners;
            let at = self.membership_at();
            if !done && at != expected {
                return Err(RaftError::MembershipChanged {
                    group,
                    now: format!("{} at index {} term {}", self.membership, at.0, at.1),
                });
            }
        }
        let probe = ConfChange::EnterJoint {
            voters: voters.clone(),
            learners: learners.clone(),
        };
        self.membership
            .apply(&probe)
            .map_err(|source| RaftError::ConfChange { group, source })?;
        self.wake();
        let members = self.membership.nodes();
        let newcomers: BTreeSet<NodeId> = voters.difference(&members).copied().collect();
        self.membership_target = Some((voters, learners));
        if !newcomers.is_empty() {
            let mut learners_now = self.membership.learners();
            learners_now.extend(newcomers);
            let voters_now = self.membership.voters().clone();
            self.propose_conf(ConfChange::Set {
                voters: voters_now,
                learners: learners_now,
            });
            return Ok(());
        }
        self.advance_membership_target();
        Ok(())
    }

    /// Abandons a membership change still waiting for learners to catch up
    /// (the learners stay learners). A joint configuration, once proposed,
    /// is always completed.
    pub fn cancel_membership_change(&mut self) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(self.not_leader());
        }
        match self.membership_target.take() {
            Some(_) => Ok(()),
            None => Err(RaftError::NothingToCancel {
                group: self.cfg.group,
            }),
        }
    }

    fn propose_conf(&mut self, change: ConfChange) {
        let index = self.append_leader_entry(EntryKind::ConfChange(Box::new(change)), Bytes::new());
        self.index_conf_pending = index;
    }

    /// Proposes the target once no change is pending and its new voters
    /// hold the log within `entries_catchup_lag_max`.
    pub(super) fn advance_membership_target(&mut self) {
        if self.role != Role::Leader || self.index_conf_pending > self.log.index_committed() {
            return;
        }
        let Some((voters, _)) = &self.membership_target else {
            return;
        };
        let last = self.log.last_index();
        let lag = self.cfg.entries_catchup_lag_max;
        let joining = voters.difference(self.membership.voters()).copied();
        let caught_up = self
            .tracker
            .all_caught_up(joining, self.index_conf_pending, last, lag);
        if !caught_up || self.membership.is_joint() {
            return;
        }
        let Some((voters, learners)) = self.membership_target.take() else {
            return;
        };
        if voters == *self.membership.voters() {
            self.propose_conf(ConfChange::Set { voters, learners });
        } else {
            self.propose_conf(ConfChange::EnterJoint { voters, learners });
        }
    }

    /// Leaves a committed joint configuration (any leader does, so a group
    /// never stays joint after a leader change).
    pub(super) fn maybe_leave_joint(&mut self) {
        let pending = self.index_conf_pending > self.log.index_committed();
        if self.role == Role::Leader && self.membership.is_joint() && !pending {
            log::info!("group {}: leaving the joint configuration", self.cfg.group);
            self.propose_conf(ConfChange::LeaveJoint);
        }
    }

    /// Keeps the leader's progress in step with the membership.
    pub(super) fn on_membership_changed(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let index_next = self.log.last_index() + 1;
        self.tracker.track(&self.membership.nodes(), index_next);
        if self
            .transferee
            .is_some_and(|t| !self.membership.voters().contains(&t))
        {
            self.transferee = None;
        }
    }

    /// A leader that the committed configuration no longer lists as a voter
    /// steps down; the voters, whose logs hold that configuration, elect.
    pub(super) fn maybe_step_down_removed(&mut self) {
        let removed = !self.membership.is_voter(self.cfg.id) && self.conf_uncommitted.is_empty();
        if self.role == Role::Leader && removed {
            log::info!(
                "group {}: {} removed, stepping down",
                self.cfg.group,
                self.cfg.id
            );
            self.broadcast_append();
            self.become_follower(self.term, None);
        }
    }
}
