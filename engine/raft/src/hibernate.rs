//! Hibernation of idle groups (TiKV's answer to heartbeat storms).
//!
//! When the log is fully replicated and committed and nothing is pending,
//! the leader asks every peer to hibernate; a follower agrees only if its log
//! ends exactly where the leader's does. Once all agreed, nobody ticks. Any
//! proposal, read or message wakes the group; a follower whose leader the
//! runtime reports unreachable wakes, forgets the leader and elects.
//! A hibernating leader holds no lease: the lease ends when it first asks.

use super::log::LogView;
use super::message::{Body, Hibernate, HibernateResponse, Message};
use super::node::{Hibernation, Raft, Role};
use super::types::NodeId;

impl<L: LogView> Raft<L> {
    /// Leader tick: count idle ticks and ask to hibernate when idle enough.
    pub(super) fn tick_hibernate(&mut self) {
        if !self.cfg.hibernate || self.role != Role::Leader {
            return;
        }
        match self.hibernation {
            Hibernation::Awake if self.can_hibernate() => {
                self.ticks.idle += 1;
                if self.ticks.idle >= self.cfg.ticks_hibernate_idle {
                    self.request_hibernation();
                }
            }
            Hibernation::Awake => self.ticks.idle = 0,
            Hibernation::Requested => {
                self.ticks.idle += 1;
                if !self.can_hibernate() || self.ticks.idle >= self.cfg.ticks_election {
                    self.wake();
                    self.broadcast_heartbeat();
                }
            }
            Hibernation::Asleep => {}
        }
    }

    fn can_hibernate(&self) -> bool {
        let last = self.log.last_index();
        self.log.index_committed() == last
            && matches!(self.log.matches_term(last, self.term), Ok(true))
            && self.tracker.all_match(last)
            && self.reads.is_empty()
            && self.transferee.is_none()
            && self.membership_target.is_none()
            && !self.membership.is_joint()
            && self.index_conf_pending <= last
    }

    fn request_hibernation(&mut self) {
        self.hibernation = Hibernation::Requested;
        self.ticks.idle = 0;
        let id = self.cfg.id;
        self.tracker.hibernate_round(id);
        log::debug!("group {}: leader {id} asks to hibernate", self.cfg.group);
        self.send_hibernate_requests();
        self.maybe_fall_asleep();
    }

    /// Sends `Hibernate` to every peer that has not agreed yet (instead of
    /// heartbeats, which would wake those that have).
    pub(super) fn send_hibernate_requests(&mut self) {
        // Lease acks for heartbeats sent up to now no longer count.
        self.lease_ms_floor = self.now_ms;
        let last = self.log.last_index();
        let request = Hibernate {
            index_last: last,
            term_last: self.term,
            sent_ms: self.now_ms,
        };
        for to in self.tracker.hibernate_pending() {
            self.send(to, Body::Hibernate(request));
        }
    }

    fn maybe_fall_asleep(&mut self) {
        if self.tracker.all_hibernate_acked() {
            log::debug!("group {}: hibernating", self.cfg.group);
            self.hibernation = Hibernation::Asleep;
        }
    }

    /// Follower: the leader asks us to hibernate.
    pub(super) fn handle_hibernate(&mut self, from: NodeId, h: Hibernate) {
        let matches = match self.log.matches_term(h.index_last, h.term_last) {
            Ok(m) => m,
            Err(e) => return self.fail(e),
        };
        let ok =
            h.sent_ms >= self.leader_ms_seen && self.log.last_index() == h.index_last && matches;
        if ok {
            self.commit_to(h.index_last);
            self.leader_ms_seen = h.sent_ms;
            self.hibernation = Hibernation::Asleep;
        }
        self.send(from, Body::HibernateResponse(HibernateResponse { ok }));
    }

    /// Leader: a follower's answer to `Hibernate`.
    pub(super) fn handle_hibernate_response(&mut self, from: NodeId, r: HibernateResponse) {
        if self.hibernation != Hibernation::Requested {
            return;
        }
        let Some(pr) = self.tracker.get_mut(from) else {
            return;
        };
        pr.recent_active = true;
        if r.ok {
            pr.hibernate_acked = true;
            self.maybe_fall_asleep();
        } else {
            self.wake();
        }
    }

    /// Wakes for a message, unless it is part of hibernating or an answer
    /// to the (possibly asleep) leader.
    pub(super) fn wake_on(&mut self, m: &Message) {
        if self.hibernation == Hibernation::Awake {
            return;
        }
        let quiet = match m.body {
            Body::Hibernate(_) | Body::HibernateResponse(_) => true,
            Body::AppendResponse(_) | Body::HeartbeatResponse(_) => self.role == Role::Leader,
            _ => false,
        };
        if !quiet {
            self.wake();
        }
    }

    /// Wakes a hibernating group (the runtime calls this when it needs the
    /// group ticking again; proposals and messages wake it by themselves).
    pub fn wake(&mut self) {
        if self.hibernation == Hibernation::Awake {
            return;
        }
        self.hibernation = Hibernation::Awake;
        self.ticks.idle = 0;
        self.ticks.election_elapsed = 0;
        self.ticks.heartbeat_elapsed = 0;
        self.tracker.wake_all();
    }

    /// The runtime's per-node-pair liveness check says `node` is gone: a
    /// follower that hibernated under it wakes and elects; a leader stops
    /// pipelining to it.
    pub fn on_node_unreachable(&mut self, node: NodeId) {
        if self.role == Role::Leader {
            self.tracker.probe(node);
            return;
        }
        if self.leader == Some(node) && self.hibernation == Hibernation::Asleep {
            self.wake();
            self.leader = None;
        }
    }
}
