//! Elections: pre-vote, vote, becoming leader, and the forced campaign of a
//! leader transfer.
//!
//! A candidate wins with a quorum of the configuration (both halves when
//! joint). A voter grants at most one vote per term and only to a candidate
//! whose log is at least as up to date as its own, comparing the last term
//! first and the last index second; a pre-vote asks the same question at the
//! next term without changing anyone's term or vote.

use bytes::Bytes;

use super::log::LogView;
use super::message::{Body, Vote, VoteResponse};
use super::node::{Raft, Role};
use super::quorum::VoteResult;
use super::types::{EntryKind, NodeId};

impl<L: LogView> Raft<L> {
    /// Starts an election on timeout: a pre-vote round first if configured.
    pub(super) fn campaign_on_timeout(&mut self) {
        self.campaign(self.cfg.pre_vote, false);
    }

    /// Starts a pre-vote round (`pre`) or a real election; `transfer` when
    /// the leader asked us to take over (voters then ignore their lease).
    fn campaign(&mut self, pre: bool, transfer: bool) {
        if !self.is_promotable() {
            return;
        }
        let term_vote = if pre {
            self.become_pre_candidate();
            self.term + 1
        } else {
            self.become_candidate();
            self.term
        };
        let id = self.cfg.id;
        self.tracker.record_vote(id, true);
        if self.tally() == VoteResult::Won {
            self.on_vote_won(pre);
            return;
        }
        let term_last = match self.log.term_last() {
            Ok(t) => t,
            Err(e) => return self.fail(e),
        };
        let vote = Vote {
            pre,
            index_last: self.log.last_index(),
            term_last,
            transfer,
        };
        let voters: Vec<NodeId> = self
            .membership
            .voters_all()
            .into_iter()
            .filter(|&n| n != id)
            .collect();
        for to in voters {
            self.send_at(to, term_vote, Body::Vote(vote));
        }
    }

    fn become_pre_candidate(&mut self) {
        let term = self.term;
        self.reset(term);
        self.role = Role::PreCandidate;
    }

    fn become_candidate(&mut self) {
        let term = self.term + 1;
        self.reset(term);
        self.vote = Some(self.cfg.id);
        self.role = Role::Candidate;
    }

    fn tally(&self) -> VoteResult {
        self.tracker.tally(&self.membership)
    }

    fn on_vote_won(&mut self, pre: bool) {
        if pre {
            self.campaign(false, false);
        } else {
            self.become_leader();
        }
    }

    /// Takes the lead: fresh progress for every member, then a no-op entry
    /// so that the term commits something (and earlier entries with it).
    pub(super) fn become_leader(&mut self) {
        debug_assert_eq!(self.role, Role::Candidate);
        let term = self.term;
        // Won without asking anyone (the only voter): no vote request went
        // out behind a write of the new term, so nothing proves the term
        // and vote are durable. Appends sent now could reach a learner, a
        // crash could lose the term, and a second leadership of the same
        // term could then write other entries at the same (index, term).
        let alone = self.tracker.voted_alone();
        self.reset(term);
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        let index_next = self.log.last_index() + 1;
        self.tracker.track(&self.membership.nodes(), index_next);
        let id = self.cfg.id;
        let durable = self.log.index_durable();
        if let Some(pr) = self.tracker.get_mut(id) {
            pr.maybe_update(durable);
        }
        // Any membership change in the log may still be uncommitted.
        self.index_conf_pending = self.log.last_index();
        self.lease_ms_floor = self.now_ms;
        if alone {
            self.index_sends_held_to = self.log.last_index() + 1;
        }
        log::info!("group {}: {} leads term {}", self.cfg.group, id, term);
        self.append_leader_entry(EntryKind::NoOp, Bytes::new());
    }

    /// A vote request (the term checks already passed).
    pub(super) fn handle_vote(&mut self, from: NodeId, term: u64, v: Vote) {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (v.pre && term > self.term);
        let up_to_date = match self.log.is_up_to_date(v.index_last, v.term_last) {
            Ok(ok) => ok,
            Err(e) => return self.fail(e),
        };
        if can_vote && up_to_date {
            self.send_at(
                from,
                term,
                Body::VoteResponse(VoteResponse {
                    pre: v.pre,
                    reject: false,
                }),
            );
            if !v.pre {
                self.ticks.election_elapsed = 0;
                self.vote = Some(from);
            }
        } else {
            let body = Body::VoteResponse(VoteResponse {
                pre: v.pre,
                reject: true,
            });
            self.send(from, body);
        }
    }

    /// An answer to our (pre-)vote request.
    pub(super) fn handle_vote_response(&mut self, from: NodeId, term: u64, r: VoteResponse) {
        let current = match self.role {
            Role::PreCandidate => r.pre && (term == self.term + 1 || r.reject),
            Role::Candidate => !r.pre && term == self.term,
            _ => false,
        };
        if !current {
            return;
        }
        self.tracker.record_vote(from, !r.reject);
        match self.tally() {
            VoteResult::Won => self.on_vote_won(r.pre),
            VoteResult::Lost => self.become_follower(self.term, None),
            VoteResult::Pending => {}
        }
    }

    /// The leader wants us to take over: campaign at once, past any lease.
    pub(super) fn handle_timeout_now(&mut self) {
        if self.is_promotable() {
            log::info!(
                "group {}: {} campaigns on leader transfer",
                self.cfg.group,
                self.cfg.id
            );
            self.campaign(false, true);
        }
    }
}
