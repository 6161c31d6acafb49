//! Membership: voters, learners and joint consensus.
//!
//! A [`Membership`] is either simple (one voter set) or joint (an incoming
//! and an outgoing voter set; decisions need a majority of both). Changes are
//! log entries ([`ConfChange`]) that take effect as soon as they are in the
//! log, committed or not (Raft §6; a truncated change is undone); a voter set
//! only ever changes through a joint configuration, which the leader leaves
//! automatically once the joint entry commits. Learners receive the log but
//! never vote and never count toward a quorum.

use std::collections::BTreeSet;

use super::ids::NodeId;

/// A membership change, as carried by a log entry. Sets are absolute targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfChange {
    /// Replace the learners (the voters must stay the same), or bootstrap an
    /// empty membership.
    Set {
        /// The voter set (must equal the current one unless bootstrapping).
        voters: BTreeSet<NodeId>,
        /// The new learner set.
        learners: BTreeSet<NodeId>,
    },
    /// Enter the joint configuration (current voters, `voters`).
    EnterJoint {
        /// The incoming voter set.
        voters: BTreeSet<NodeId>,
        /// The learner set after the change; current voters listed here are
        /// demoted when the joint configuration is left.
        learners: BTreeSet<NodeId>,
    },
    /// Leave the joint configuration: keep the incoming voters.
    LeaveJoint,
}

/// Why a [`ConfChange`] cannot apply to a [`Membership`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfChangeError {
    /// The change leaves no voter.
    #[error("no voters")]
    NoVoters,
    /// A node is both voter and learner in the target.
    #[error("a node is both voter and learner")]
    VoterAndLearner,
    /// Entering a joint configuration while already joint.
    #[error("already in a joint configuration")]
    AlreadyJoint,
    /// Leaving a joint configuration while not joint.
    #[error("not in a joint configuration")]
    NotJoint,
    /// A `Set` that changes voters.
    #[error("voters can only change through a joint configuration")]
    VotersChangedWithoutJoint,
}

/// Who votes and who learns, possibly in a joint configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Membership {
    voters: BTreeSet<NodeId>,
    voters_outgoing: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
    learners_next: BTreeSet<NodeId>,
}

impl Membership {
    /// A simple (non-joint) membership.
    pub fn new(
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
    ) -> Result<Self, ConfChangeError> {
        Self::default().apply(&ConfChange::Set { voters, learners })
    }

    /// The four sets that make up the membership, for encoding it:
    /// (voters, outgoing voters, learners, learners after leaving joint).
    #[allow(clippy::type_complexity)]
    pub fn to_parts(
        &self,
    ) -> (
        BTreeSet<NodeId>,
        BTreeSet<NodeId>,
        BTreeSet<NodeId>,
        BTreeSet<NodeId>,
    ) {
        (
            self.voters.clone(),
            self.voters_outgoing.clone(),
            self.learners.clone(),
            self.learners_next.clone(),
        )
    }

    /// Rebuilds a membership from [`Membership::to_parts`], refusing sets
    /// that no sequence of changes could produce (no voters, a node both
    /// voter and learner, next learners outside a joint configuration).
    pub fn from_parts(
        voters: BTreeSet<NodeId>,
        voters_outgoing: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
        learners_next: BTreeSet<NodeId>,
    ) -> Result<Self, ConfChangeError> {
        let m = Self {
            voters,
            voters_outgoing,
            learners,
            learners_next,
        };
        if m.voters.is_empty() && !m.nodes().is_empty() {
            return Err(ConfChangeError::NoVoters);
        }
        let voters_all = m.voters_all();
        if m.learners
            .iter()
            .chain(&m.learners_next)
            .any(|l| m.voters.contains(l))
            || m.learners.iter().any(|l| voters_all.contains(l))
        {
            return Err(ConfChangeError::VoterAndLearner);
        }
        if !m.is_joint() && !m.learners_next.is_empty() {
            return Err(ConfChangeError::NotJoint);
        }
        Ok(m)
    }

    /// The voters of the incoming (or only) configuration.
    pub fn voters(&self) -> &BTreeSet<NodeId> {
        &self.voters
    }

    /// The voters of the outgoing configuration (empty unless joint).
    pub fn voters_outgoing(&self) -> &BTreeSet<NodeId> {
        &self.voters_outgoing
    }

    /// The learners, including voters of the outgoing configuration that
    /// become learners when the joint configuration is left.
    pub fn learners(&self) -> BTreeSet<NodeId> {
        self.learners.union(&self.learners_next).copied().collect()
    }

    /// Whether this is a joint configuration.
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// Whether `id` votes in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    /// Whether `id` is a learner (and not a voter).
    pub fn is_learner(&self, id: NodeId) -> bool {
        !self.is_voter(id) && (self.learners.contains(&id) || self.learners_next.contains(&id))
    }

    /// Every node that should receive the log: voters and learners.
    pub fn nodes(&self) -> BTreeSet<NodeId> {
        let mut all: BTreeSet<NodeId> = self.voters.union(&self.voters_outgoing).copied().collect();
        all.extend(self.learners.iter().copied());
        all.extend(self.learners_next.iter().copied());
        all
    }

    /// Every voter of either half.
    pub fn voters_all(&self) -> BTreeSet<NodeId> {
        self.voters.union(&self.voters_outgoing).copied().collect()
    }

    /// The membership after `change`, or why it cannot apply.
    pub fn apply(&self, change: &ConfChange) -> Result<Self, ConfChangeError> {
        let next = match change {
            ConfChange::Set { voters, learners } => {
                if self.is_joint() {
                    return Err(ConfChangeError::AlreadyJoint);
                }
                if !self.voters.is_empty() && *voters != self.voters {
                    return Err(ConfChangeError::VotersChangedWithoutJoint);
                }
                Self::check_target(voters, learners)?;
                Self {
                    voters: voters.clone(),
                    voters_outgoing: BTreeSet::new(),
                    learners: learners.clone(),
                    learners_next: BTreeSet::new(),
                }
            }
            ConfChange::EnterJoint { voters, learners } => {
                if self.is_joint() {
                    return Err(ConfChangeError::AlreadyJoint);
                }
                Self::check_target(voters, learners)?;
                // A current voter demoted to learner keeps voting in the
                // outgoing half until the joint configuration is left.
                let learners_next = learners.intersection(&self.voters).copied().collect();
                let learners_now = learners.difference(&self.voters).copied().collect();
                Self {
                    voters: voters.clone(),
                    voters_outgoing: self.voters.clone(),
                    learners: learners_now,
                    learners_next,
                }
            }
            ConfChange::LeaveJoint => {
                if !self.is_joint() {
                    return Err(ConfChangeError::NotJoint);
                }
                let mut learners = self.learners.clone();
                learners.extend(self.learners_next.iter().copied());
                Self {
                    voters: self.voters.clone(),
                    voters_outgoing: BTreeSet::new(),
                    learners,
                    learners_next: BTreeSet::new(),
                }
            }
        };
        next.assert_invariants();
        Ok(next)
    }

    fn check_target(
        voters: &BTreeSet<NodeId>,
        learners: &BTreeSet<NodeId>,
    ) -> Result<(), ConfChangeError> {
        if voters.is_empty() {
            return Err(ConfChangeError::NoVoters);
        }
        if !voters.is_disjoint(learners) {
            return Err(ConfChangeError::VoterAndLearner);
        }
        Ok(())
    }

    fn assert_invariants(&self) {
        debug_assert!(self.learners.is_disjoint(&self.voters));
        debug_assert!(self.learners.is_disjoint(&self.voters_outgoing));
        debug_assert!(self.learners_next.is_subset(&self.voters_outgoing));
        debug_assert!(self.learners_next.is_disjoint(&self.voters));
    }
}

/// `voters {n1,n2} learners {n3}`, with `outgoing {..}` and `learners next
/// {..}` while joint: for logs and status lines.
impl std::fmt::Display for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |s: &BTreeSet<NodeId>| {
            s.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        write!(f, "voters {{{}}}", list(&self.voters))?;
        if self.is_joint() {
            write!(f, " outgoing {{{}}}", list(&self.voters_outgoing))?;
        }
        write!(f, " learners {{{}}}", list(&self.learners))?;
        if !self.learners_next.is_empty() {
            write!(f, " learners next {{{}}}", list(&self.learners_next))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_and_impossible_parts_are_refused() {
        let ids = |v: &[u64]| v.iter().copied().map(NodeId).collect::<BTreeSet<_>>();
        let m = Membership::new(ids(&[1, 2, 3]), ids(&[4]))
            .and_then(|m| {
                m.apply(&ConfChange::EnterJoint {
                    voters: ids(&[1, 2, 4]),
                    learners: ids(&[3]),
                })
            })
            .expect("valid changes");
        let (v, o, l, n) = m.to_parts();
        assert_eq!(Membership::from_parts(v, o, l, n), Ok(m));
        let bad = Membership::from_parts(ids(&[1]), ids(&[]), ids(&[1]), ids(&[]));
        assert_eq!(bad, Err(ConfChangeError::VoterAndLearner));
        let bad = Membership::from_parts(ids(&[1]), ids(&[]), ids(&[]), ids(&[2]));
        assert_eq!(bad, Err(ConfChangeError::NotJoint));
        let bad = Membership::from_parts(ids(&[]), ids(&[]), ids(&[2]), ids(&[]));
        assert_eq!(bad, Err(ConfChangeError::NoVoters));
    }

    fn set(ids: &[u64]) -> BTreeSet<NodeId> {
        ids.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn joint_round_trip_keeps_learners_and_demotes() {
        let m = Membership::new(set(&[1, 2, 3]), set(&[9])).expect("valid");
        let joint = m
            .apply(&ConfChange::EnterJoint {
                voters: set(&[2, 3, 4]),
                learners: set(&[1, 9]),
            })
            .expect("enter");
        assert!(joint.is_joint());
        assert!(
            joint.is_voter(NodeId(1)),
            "demoted voter still votes while joint"
        );
        assert!(joint.is_learner(NodeId(9)));
        let done = joint.apply(&ConfChange::LeaveJoint).expect("leave");
        assert!(!done.is_joint());
        assert_eq!(done.voters(), &set(&[2, 3, 4]));
        assert_eq!(done.learners(), set(&[1, 9]), "no learner flag dropped");
    }

    #[test]
    fn rejects_bad_changes() {
        let m = Membership::new(set(&[1, 2, 3]), set(&[])).expect("valid");
        let bad = ConfChange::Set {
            voters: set(&[1, 2]),
            learners: set(&[]),
        };
        assert_eq!(
            m.apply(&bad),
            Err(ConfChangeError::VotersChangedWithoutJoint)
        );
        assert_eq!(
            m.apply(&ConfChange::LeaveJoint),
            Err(ConfChangeError::NotJoint)
        );
        let both = ConfChange::EnterJoint {
            voters: set(&[1]),
            learners: set(&[1]),
        };
        assert_eq!(m.apply(&both), Err(ConfChangeError::VoterAndLearner));
        let joint = m
            .apply(&ConfChange::EnterJoint {
                voters: set(&[1]),
                learners: set(&[]),
            })
            .expect("enter");
        let again = ConfChange::EnterJoint {
            voters: set(&[2]),
            learners: set(&[]),
        };
        assert_eq!(joint.apply(&again), Err(ConfChangeError::AlreadyJoint));
    }
}
