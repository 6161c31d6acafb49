//! What only a leader does besides replicating: accept proposals, confirm
//! reads (ReadIndex and lease), and hand leadership over.

use bytes::Bytes;

use super::error::RaftError;
use super::log::LogView;
use super::message::Body;
use super::node::{Hibernation, Raft, Role};
use super::quorum;
use super::read::ReadState;
use super::types::{EntryKind, NodeId};

impl<L: LogView> Raft<L> {
    pub(super) fn not_leader(&self) -> RaftError {
        RaftError::NotLeader {
            group: self.cfg.group,
            hint: self.leader,
        }
    }

    /// Proposes a command; returns the index it will have if committed.
    /// The caller learns the outcome when an entry at that index and of the
    /// current term is handed out committed (another entry there: lost).
    pub fn propose(&mut self, payload: Bytes) -> Result<u64, RaftError> {
        self.check_failed()?;
        if self.role != Role::Leader {
            return Err(self.not_leader());
        }
        if self.transferee.is_some() {
            return Err(RaftError::TransferInProgress {
                group: self.cfg.group,
            });
        }
        let uncommitted = self.log.last_index() - self.log.index_committed();
        if uncommitted >= self.cfg.entries_uncommitted_max {
            return Err(RaftError::Busy {
                group: self.cfg.group,
                what: "uncommitted entries",
            });
        }
        self.wake();
        Ok(self.append_leader_entry(EntryKind::Normal, payload))
    }

    /// Asks for a linearizable read. The answer comes as a
    /// [`ReadState`] in a later `Ready`: serve it once the state machine
    /// has applied its index. Served from the lease when it is valid,
    /// otherwise confirmed by a heartbeat round (batched per `Ready`).
    pub fn read_index(&mut self, context: Bytes) -> Result<(), RaftError> {
        self.check_failed()?;
        if self.role != Role::Leader {
            return Err(self.not_leader());
        }
        if self.reads.len() >= self.cfg.reads_pending_max {
            return Err(RaftError::Busy {
                group: self.cfg.group,
                what: "reads",
            });
        }
        let committed = self.log.index_committed();
        if self.lease_valid() {
            self.reads_ready.push(ReadState {
                context,
                index: committed,
            });
            return Ok(());
        }
        self.wake();
        if self.committed_in_term() {
            self.reads.add(context, committed);
        } else {
            self.reads.wait_for_commit(context);
        }
        Ok(())
    }

    /// Whether the leader has committed an entry of its own term (before
    /// that, its commit index may lag the true one). A log that cannot
    /// answer says no: reads then wait for a round, never the lease.
    pub(super) fn committed_in_term(&self) -> bool {
        matches!(
            self.log.matches_term(self.log.index_committed(), self.term),
            Ok(true)
        )
    }

    /// Whether the leader lease is valid now: by the monotonic clock, a
    /// quorum acknowledged a heartbeat sent less than
    /// [`Config::lease_ms`](super::Config::lease_ms) ago, no transfer was
    /// started, and the group is awake. Ticks do not count: a runtime that
    /// stalls delivers them late, and the lease would outlast real time.
    pub fn lease_valid(&self) -> bool {
        self.lease_until_ms()
            .is_some_and(|until| self.now_ms < until)
    }

    /// When the leader lease ends on the monotonic clock (exclusive), as
    /// far as the acknowledgements received so far tell; `None` if there
    /// is no lease to serve reads from at all (not leading, leases off, a
    /// transfer started, asleep, nothing committed in this term yet, or no
    /// acknowledgement since the lease was last reset).
    ///
    /// It only moves later while nothing else changes, so a runtime may
    /// publish it and serve reads from the state machine until then without
    /// asking again, provided it publishes again before any message this
    /// core emits afterwards leaves (a transfer revokes the lease only
    /// once its `TimeoutNow` is sent).
    pub fn lease_until_ms(&self) -> Option<u64> {
        if self.role != Role::Leader
            || !self.cfg.lease_read
            || self.transferee.is_some()
            || self.lease_revoked
            || self.hibernation != Hibernation::Awake
            || !self.committed_in_term()
        {
            return None;
        }
        let start = self
            .tracker
            .lease_start(&self.membership, self.cfg.id, self.now_ms);
        (start > self.lease_ms_floor).then(|| start.saturating_add(self.cfg.lease_ms()))
    }

    /// Broadcasts the open read round (called when `Ready` is drained).
    pub(super) fn flush_reads(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let id = self.cfg.id;
        if self.reads.take_open(id).is_none() {
            return;
        }
        if quorum::quorum_active(&self.membership, |n| n == id) {
            let confirmed = self.reads.confirm_all();
            self.reads_ready.extend(confirmed);
        } else {
            self.broadcast_heartbeat();
        }
    }

    /// Bookkeeping after the leader's commit index advanced.
    pub(super) fn on_leader_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        if self.committed_in_term() {
            self.reads.release_waiting(self.log.index_committed());
        }
        self.maybe_leave_joint();
        self.advance_membership_target();
        self.maybe_step_down_removed();
        if let Some(to) = self.transferee
            && !self.lease_revoked
        {
            self.maybe_send_timeout_now(to);
        }
    }

    /// Hands leadership to `to`: catch it up, then tell it to campaign once
    /// everything this leader proposed is committed (so no proposal is left
    /// with an unknown outcome by the handover). Proposals are refused
    /// meanwhile; it is abandoned after an election timeout.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(self.not_leader());
        }
        if to == self.cfg.id || self.transferee == Some(to) {
            return Ok(());
        }
        if !self.membership.voters().contains(&to) {
            return Err(RaftError::NotAVoter {
                group: self.cfg.group,
                target: to,
            });
        }
        self.wake();
        log::info!("group {}: transferring leadership to {to}", self.cfg.group);
        self.transferee = Some(to);
        self.ticks.election_elapsed = 0;
        if !self.maybe_send_timeout_now(to) {
            self.send_append(to, true);
        }
        Ok(())
    }

    /// Sends TimeoutNow to the transfer target once it holds our whole log
    /// and that log is committed.
    fn maybe_send_timeout_now(&mut self, to: NodeId) -> bool {
        let last = self.log.last_index();
        let caught_up = self.log.index_committed() == last
            && self.tracker.get(to).is_some_and(|p| p.index_match == last);
        if caught_up {
            // The target may now win past every lease: ours ends here.
            self.lease_revoked = true;
            self.send(to, Body::TimeoutNow);
        }
        caught_up
    }

    /// A peer's match index advanced.
    pub(super) fn on_peer_caught_up(&mut self, from: NodeId) {
        if self.transferee == Some(from) {
            self.maybe_send_timeout_now(from);
        }
        self.advance_membership_target();
    }
}
