//! The core: one replica of one group. It owns the term, the vote, the role,
//! the log view and the leader's per-peer progress; inputs are methods and
//! every output is collected for the next [`Ready`].
//!
//! Elections live in `election.rs`, replication and commit in
//! `replication.rs`, the leader's extras (reads, transfer, membership
//! changes, hibernation) in `leader.rs`; this file holds the state, the
//! role transitions, the dispatch of messages and the `Ready` drain.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::config::Config;
use super::error::RaftError;
use super::log::{LogError, LogView, RaftLog};
use super::membership::{ConfChange, Membership};
use super::message::{AppendResponse, Body, Message, VoteResponse};
use super::read::{ReadQueue, ReadState};
use super::ready::Ready;
use super::rng::SplitMix64;
use super::tracker::Tracker;
use super::types::{EntryKind, GroupId, HardState, NodeId};

/// The role of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking whether it could win, without changing term.
    PreCandidate,
    /// Campaigning in its term.
    Candidate,
    /// Leads its term.
    Leader,
}

/// Whether a group is hibernating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hibernation {
    /// Ticking normally.
    Awake,
    /// Leader: asked followers to hibernate, waiting for all of them.
    Requested,
    /// Not ticking until a message, a proposal or a peer-down notice.
    Asleep,
}

/// The tick counters of a replica (every timeout in the core counts
/// ticks; the lease alone is measured on the runtime's clock).
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticks {
    /// Since the leader was last heard (follower) or since this node's
    /// campaign began (candidate); a leader counts toward check-quorum.
    pub(super) election_elapsed: u32,
    /// Leader: since the last heartbeat round.
    pub(super) heartbeat_elapsed: u32,
    /// This term's randomized election timeout.
    pub(super) election_timeout: u32,
    /// Since the replica started.
    pub(super) alive: u64,
    /// Leader: with nothing to do, or waiting for the followers to agree
    /// to hibernate.
    pub(super) idle: u32,
}

/// One replica of one Raft group, generic over the runtime's log view.
#[derive(Debug)]
pub struct Raft<L: LogView> {
    pub(super) cfg: Config,
    pub(super) term: u64,
    pub(super) vote: Option<NodeId>,
    pub(super) role: Role,
    pub(super) leader: Option<NodeId>,
    pub(super) log: RaftLog<L>,
    /// The membership in force: the latest configuration in the log,
    /// committed or not (Raft §6).
    pub(super) membership: Membership,
    /// The membership as of the commit index.
    pub(super) membership_committed: Membership,
    /// Where `membership_committed` was set: the (index, term) of its
    /// change's entry, or of the snapshot it came in.
    pub(super) membership_committed_at: (u64, u64),
    /// Membership changes in the log past the commit index, by index:
    /// (term, change).
    pub(super) conf_uncommitted: BTreeMap<u64, (u64, ConfChange)>,
    /// Leader: each replica's progress; candidate: the votes it got.
    pub(super) tracker: Tracker,
    /// The tick counters: elections, heartbeats, hibernation.
    pub(super) ticks: Ticks,
    /// The runtime's monotonic clock (ms), as last set.
    pub(super) now_ms: u64,
    /// Leader: heartbeats sent at or before this time (ms) do not count
    /// for the lease.
    pub(super) lease_ms_floor: u64,
    /// Follower: the newest heartbeat send time (the leader's clock, ms)
    /// seen from the current leader.
    pub(super) leader_ms_seen: u64,
    /// Follower: when (our clock, ms) we last heard the current leader.
    pub(super) leader_heard_ms: u64,
    pub(super) reads: ReadQueue,
    pub(super) transferee: Option<NodeId>,
    /// Leader: a TimeoutNow went out this term, so the lease is over for good.
    pub(super) lease_revoked: bool,
    /// Leader elected by its own vote alone: its messages wait for the
    /// writes of their `Ready` until the log is durable up to here (its
    /// no-op), which proves the term and vote it won with are durable too.
    pub(super) index_sends_held_to: u64,
    pub(super) membership_target: Option<(BTreeSet<NodeId>, BTreeSet<NodeId>)>,
    pub(super) index_conf_pending: u64,
    pub(super) hibernation: Hibernation,
    pub(super) rng: SplitMix64,
    pub(super) index_applied: u64,
    hard_state_reported: HardState,
    pub(super) msgs: Vec<Message>,
    pub(super) msgs_persisted: Vec<Message>,
    pub(super) reads_ready: Vec<ReadState>,
    pub(super) reads_failed: Vec<Bytes>,
    /// A storage failure stopped this replica: every later input returns
    /// it, and the runtime stops the group.
    failure: Option<RaftError>,
}

impl<L: LogView> Raft<L> {
    /// A replica over `view` (the durable log), restarting from
    /// `hard_state`, with the state machine applied up to `index_applied`.
    /// The membership is the snapshot's plus every change committed after it.
    pub fn new(
        cfg: Config,
        view: L,
        hard_state: HardState,
        index_applied: u64,
    ) -> Result<Self, RaftError> {
        cfg.validate()?;
        let group = cfg.group;
        let snapshot = view.snapshot_meta();
        let membership_committed_at = (snapshot.index, snapshot.term);
        let membership_committed = snapshot.membership;
        let conf_uncommitted = scan_conf_changes(&view, cfg.bytes_apply_max)
            .map_err(|source| RaftError::Log { group, source })?;
        let log = RaftLog::new(view, hard_state.index_commit, index_applied)
            .map_err(|source| RaftError::Log { group, source })?;
        let seed = cfg.seed ^ cfg.id.0.rotate_left(32) ^ cfg.group.0;
        let mut raft = Self {
            term: hard_state.term,
            vote: hard_state.vote,
            role: Role::Follower,
            leader: None,
            index_applied: log.index_apply_handed(),
            log,
            membership: membership_committed.clone(),
            membership_committed,
            membership_committed_at,
            conf_uncommitted,
            tracker: Tracker::new(cfg.msgs_inflight_max, cfg.bytes_inflight_max),
            ticks: Ticks {
                election_elapsed: 0,
                heartbeat_elapsed: 0,
                election_timeout: cfg.ticks_election,
                alive: 0,
                idle: 0,
            },
            now_ms: 0,
            lease_ms_floor: 0,
            leader_ms_seen: 0,
            leader_heard_ms: 0,
            reads: ReadQueue::default(),
            transferee: None,
            lease_revoked: false,
            index_sends_held_to: 0,
            membership_target: None,
            index_conf_pending: 0,
            hibernation: Hibernation::Awake,
            rng: SplitMix64::new(seed),
            hard_state_reported: hard_state,
            msgs: Vec::new(),
            msgs_persisted: Vec::new(),
            reads_ready: Vec::new(),
            reads_failed: Vec::new(),
            failure: None,
            cfg,
        };
        raft.fold_committed_conf_changes();
        raft.recompute_membership();
        raft.reset(raft.term);
        Ok(raft)
    }

    /// The node leadership is being handed to, while a transfer runs.
    pub fn transferee(&self) -> Option<NodeId> {
        self.transferee
    }

    /// This node.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// The group.
    pub fn group(&self) -> GroupId {
        self.cfg.group
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The committed index.
    pub fn index_commit(&self) -> u64 {
        self.log.index_committed()
    }

    /// On a leader, each peer's matched index (the highest index known
    /// to be in its log, durably), by node; empty on other roles.
    pub fn peers_matched(&self) -> Vec<(NodeId, u64)> {
        if self.role != Role::Leader {
            return Vec::new();
        }
        let me = self.id();
        self.tracker
            .peers(me)
            .into_iter()
            .filter_map(|n| self.tracker.get(n).map(|p| (n, p.index_match)))
            .collect()
    }

    /// The last index of the log.
    pub fn index_last(&self) -> u64 {
        self.log.last_index()
    }

    /// The term of the entry at `index`, if the log still has it.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        self.log.term(index).ok()
    }

    /// The membership in force: the latest configuration in the log.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// Where the membership in force was set, as (index, term): the entry
    /// of its latest change, or the snapshot it came in when the log no
    /// longer holds that entry. Two memberships at the same position are
    /// the same (Raft's log matching); the same membership set again (a
    /// node removed and added back) is at a new one. What a conditional
    /// change names ([`Raft::change_membership_if`]).
    pub fn membership_at(&self) -> (u64, u64) {
        self.conf_uncommitted
            .last_key_value()
            .map_or(self.membership_committed_at, |(index, (term, _))| {
                (*index, *term)
            })
    }

    /// The hard state as it is now (not necessarily persisted yet). Its
    /// commit index stops at the log's durable end: a follower learns
    /// commits past the entries it is still writing, and a hard state
    /// written before them would, after a crash, claim entries the log
    /// lost — a log shorter than its commit index refuses to start.
    pub fn hard_state(&self) -> HardState {
        // A snapshot being installed is not durable yet, though the log
        // already counts its index: the commit index waits for it.
        let durable = if self.log.is_snapshot_pending() {
            self.hard_state_reported.index_commit
        } else {
            self.log.index_durable()
        };
        HardState {
            term: self.term,
            vote: self.vote,
            index_commit: self.log.index_committed().min(durable),
        }
    }

    /// Whether the group is hibernating: the runtime may stop ticking it.
    pub fn is_hibernating(&self) -> bool {
        self.hibernation == Hibernation::Asleep
    }

    /// The runtime's log view.
    pub fn log_view(&self) -> &L {
        self.log.view()
    }

    /// The runtime's log view, to write or compact (see the `Ready` contract).
    pub fn log_view_mut(&mut self) -> &mut L {
        self.log.view_mut()
    }

    /// The runtime's monotonic clock, in milliseconds from any fixed
    /// origin; call it before each batch of inputs. Only the leader lease
    /// reads it. It never goes back: an earlier value is ignored.
    pub fn set_now_ms(&mut self, ms: u64) {
        self.now_ms = self.now_ms.max(ms);
    }

    /// Stops this replica: the log could not answer. Whatever the core
    /// would do next could rest on a wrong term (a vote for a stale log, a
    /// truncation of committed entries), so it does nothing more.
    pub(super) fn fail(&mut self, source: LogError) {
        let group = self.cfg.group;
        self.stop(RaftError::Log { group, source });
    }

    /// Stops this replica for good: `what` breaks an invariant whose
    /// breach puts data at risk. Loud (error level) and in release builds
    /// too; the runtime sees [`RaftError::Invariant`] from every later
    /// input and stops the group. Tests and the simulator see it as an
    /// error, so they can assert it, rather than as a panic.
    pub(super) fn fatal(&mut self, what: String) {
        let group = self.cfg.group;
        self.stop(RaftError::Invariant { group, what });
    }

    /// Logs `error` (it names the group) and keeps the first such error
    /// as the answer to every later input.
    fn stop(&mut self, error: RaftError) {
        log::error!("node {} stops: {error}", self.cfg.id);
        if self.failure.is_none() {
            self.failure = Some(error);
        }
    }

    /// The storage failure that stopped this replica, if any.
    pub(super) fn check_failed(&self) -> Result<(), RaftError> {
        match &self.failure {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Advances the clock by one tick: elections, heartbeats, check-quorum,
    /// lease expiry and hibernation all count ticks.
    pub fn tick(&mut self) {
        if self.hibernation == Hibernation::Asleep || self.failure.is_some() {
            return;
        }
        self.ticks.alive += 1;
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.ticks.election_elapsed += 1;
            let timed_out = self.ticks.election_elapsed >= self.ticks.election_timeout;
            if timed_out && self.is_promotable() && !self.heard_leader_lately() {
                self.ticks.election_elapsed = 0;
                self.campaign_on_timeout();
            }
        }
    }

    fn tick_leader(&mut self) {
        self.ticks.heartbeat_elapsed += 1;
        self.ticks.election_elapsed += 1;
        if self.ticks.election_elapsed >= self.cfg.ticks_election {
            self.ticks.election_elapsed = 0;
            if self.cfg.check_quorum && !self.quorum_recently_active() {
                log::info!(
                    "group {}: {} steps down, no quorum heard",
                    self.cfg.group,
                    self.cfg.id
                );
                self.become_follower(self.term, None);
                return;
            }
            self.transferee = None;
        }
        if self.ticks.heartbeat_elapsed >= self.cfg.ticks_heartbeat {
            self.ticks.heartbeat_elapsed = 0;
            if self.hibernation == Hibernation::Requested {
                self.send_hibernate_requests();
            } else {
                self.broadcast_heartbeat();
            }
        }
        self.tick_hibernate();
    }

    fn quorum_recently_active(&mut self) -> bool {
        self.tracker
            .quorum_recently_active(&self.membership, self.cfg.id)
    }

    /// Whether this node may campaign: it votes in the latest configuration,
    /// or in the committed one while a change is still uncommitted. The
    /// latter lets a leader that removed itself, and holds the only copy of
    /// the change, win again (votes are counted in the latest configuration,
    /// so this is safe) and finish the change instead of blocking the
    /// group; it steps down once the change commits.
    pub(super) fn is_promotable(&self) -> bool {
        self.membership.is_voter(self.cfg.id)
            || (!self.conf_uncommitted.is_empty()
                && self.membership_committed.is_voter(self.cfg.id))
    }

    /// Whether this node honours a leader's lease now and so ignores
    /// candidates (check-quorum; also for one election timeout after start,
    /// since a lease granted before a crash may still run).
    pub(super) fn in_lease(&self) -> bool {
        if !self.cfg.check_quorum {
            return false;
        }
        let hearing_leader = self.leader.is_some()
            && self.hibernation != Hibernation::Asleep
            && self.ticks.election_elapsed < self.cfg.ticks_election;
        let just_started =
            self.cfg.lease_read && self.ticks.alive < u64::from(self.cfg.ticks_election);
        hearing_leader || just_started || self.heard_leader_lately()
    }

    /// Whether, by the clock, a leader was heard less than an election
    /// timeout ago. Ticks alone do not bound that in real time: ticks that
    /// fell due during a stall arrive bunched, possibly after a heartbeat
    /// that came in later, and would end the wait right after we
    /// acknowledged it — while the leader's lease, counted from that
    /// heartbeat, runs on. Until then this node neither votes for another
    /// nor campaigns (its own vote counts too). Only with leases on and a
    /// known tick length.
    pub(super) fn heard_leader_lately(&self) -> bool {
        self.cfg.lease_read
            && self.cfg.tick_ms > 0
            && self.leader_heard_ms > 0
            && self.now_ms < self.leader_heard_ms + self.cfg.election_timeout_ms()
    }

    /// Clears everything that belongs to one term and role.
    pub(super) fn reset(&mut self, term: u64) {
        if term < self.term {
            // A term never goes back: doing so would let this node vote
            // twice in a term or accept a deposed leader's entries.
            return self.fatal(format!("term would go back from {} to {term}", self.term));
        }
        if term != self.term {
            self.term = term;
            self.vote = None;
        }
        self.leader = None;
        self.ticks.election_elapsed = 0;
        self.ticks.heartbeat_elapsed = 0;
        let spread = u64::from(self.cfg.ticks_election);
        self.ticks.election_timeout = self.cfg.ticks_election + self.rng.below(spread) as u32;
        self.tracker.clear();
        self.transferee = None;
        self.lease_revoked = false;
        self.index_sends_held_to = 0;
        self.membership_target = None;
        let failed = self.reads.fail_all();
        self.reads_failed.extend(failed);
        self.hibernation = Hibernation::Awake;
        self.ticks.idle = 0;
        self.leader_ms_seen = 0;
    }

    /// Becomes a follower in `term` (of `leader`, if known).
    pub(super) fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    /// Queues a message at the current term.
    pub(super) fn send(&mut self, to: NodeId, body: Body) {
        self.send_at(to, self.term, body);
    }

    /// Whether a leader's messages must still wait for its writes: it won
    /// alone, and the term and vote it won with may not be durable yet.
    pub(super) fn sends_held(&self) -> bool {
        self.log.index_durable() < self.index_sends_held_to
    }

    /// Queues a message at `term`. A leader's own kinds go out at once
    /// (unless [`Self::sends_held`]); everything else waits for this
    /// `Ready`'s writes to be durable.
    pub(super) fn send_at(&mut self, to: NodeId, term: u64, body: Body) {
        let m = Message {
            group: self.cfg.group,
            from: self.cfg.id,
            to,
            term,
            body,
        };
        if self.role == Role::Leader && m.is_from_leader() && !self.sends_held() {
            self.msgs.push(m);
        } else {
            self.msgs_persisted.push(m);
        }
    }

    /// Handles one message from a peer. An error from the log (this input's
    /// or an earlier one's) has stopped the replica.
    pub fn step(&mut self, m: Message) -> Result<(), RaftError> {
        self.check_failed()?;
        if m.group != self.cfg.group {
            return Err(RaftError::WrongGroup {
                group: self.cfg.group,
                got: m.group,
            });
        }
        if m.to != self.cfg.id {
            return Ok(());
        }
        self.wake_on(&m);
        if m.term > self.term && !self.step_higher_term(&m) {
            return Ok(());
        }
        if m.term < self.term {
            self.step_lower_term(&m);
            return Ok(());
        }
        self.dispatch(m);
        self.check_failed()
    }

    /// A message from a later term; false if it must be ignored.
    fn step_higher_term(&mut self, m: &Message) -> bool {
        if let Body::Vote(v) = &m.body
            && !v.transfer
            && self.in_lease()
        {
            return false;
        }
        match &m.body {
            Body::Vote(v) if v.pre => {}
            Body::VoteResponse(r) if r.pre && !r.reject => {}
            _ => {
                let leader = m.is_from_leader().then_some(m.from);
                // Only a leader (or a granted vote) resets the election
                // timer: candidates with stale logs raising the term must
                // not keep the node with the best log from campaigning.
                let elapsed = self.ticks.election_elapsed;
                self.become_follower(m.term, leader);
                if leader.is_none() {
                    self.ticks.election_elapsed = elapsed;
                }
            }
        }
        true
    }

    /// A message from an earlier term. A stale leader learns our term (so a
    /// node whose term ran ahead in a partition can rejoin), and a stale
    /// (pre-)candidate gets a rejection carrying our term (Figure 2: "reply
    /// false if term < currentTerm"). Without it a pre-candidate with the
    /// log never learns the term of a node that ran ahead (etcd#9586), and a
    /// candidate stays behind a term that a removed node keeps raising.
    fn step_lower_term(&mut self, m: &Message) {
        let quiet = self.cfg.check_quorum || self.cfg.pre_vote;
        match &m.body {
            Body::Append(_) | Body::Heartbeat(_) if quiet => {
                let body = AppendResponse {
                    reject: false,
                    index: 0,
                    index_hint: 0,
                    term_hint: 0,
                };
                self.send(m.from, Body::AppendResponse(body));
            }
            Body::Vote(v) => {
                let body = VoteResponse {
                    pre: v.pre,
                    reject: true,
                };
                self.send(m.from, Body::VoteResponse(body));
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, m: Message) {
        let from = m.from;
        match m.body {
            Body::Vote(v) => self.handle_vote(from, m.term, v),
            Body::VoteResponse(r) => self.handle_vote_response(from, m.term, r),
            Body::AppendResponse(r) if self.role == Role::Leader => {
                self.handle_append_response(from, r)
            }
            Body::HeartbeatResponse(r) if self.role == Role::Leader => {
                self.handle_heartbeat_response(from, r)
            }
            Body::HibernateResponse(r) if self.role == Role::Leader => {
                self.handle_hibernate_response(from, r)
            }
            Body::Append(_)
            | Body::Heartbeat(_)
            | Body::Snapshot(_)
            | Body::TimeoutNow
            | Body::Hibernate(_) => {
                if self.role == Role::Leader {
                    let what = format!("two leaders in term {}: {from} and this node", self.term);
                    return self.fatal(what);
                }
                self.follow(from);
                match m.body {
                    Body::Append(a) => self.handle_append(from, a),
                    Body::Heartbeat(h) => self.handle_heartbeat(from, h),
                    Body::Snapshot(meta) => self.handle_snapshot(from, *meta),
                    Body::TimeoutNow => self.handle_timeout_now(),
                    Body::Hibernate(h) => self.handle_hibernate(from, h),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// A leader of the current term spoke: follow it.
    fn follow(&mut self, from: NodeId) {
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(from));
        }
        if self.leader != Some(from) {
            self.leader_ms_seen = 0;
        }
        self.leader = Some(from);
        self.leader_heard_ms = self.now_ms;
        if self.hibernation != Hibernation::Asleep {
            self.ticks.election_elapsed = 0;
        }
    }

    /// Commits up to `index`.
    pub(super) fn commit_to(&mut self, index: u64) {
        if index <= self.log.index_committed() {
            return;
        }
        self.log.commit_to(index);
        self.fold_committed_conf_changes();
    }

    /// Moves membership changes at or below the commit index into the
    /// committed membership (they are already in force).
    fn fold_committed_conf_changes(&mut self) {
        let committed = self.log.index_committed();
        while let Some(entry) = self.conf_uncommitted.first_entry() {
            if *entry.key() > committed {
                break;
            }
            let (index, (term, change)) = entry.remove_entry();
            self.membership_committed_at = (index, term);
            match self.membership_committed.apply(&change) {
                Ok(next) => self.membership_committed = next,
                Err(e) => {
                    log::error!("group {}: bad conf change at {index}: {e}", self.cfg.group);
                    debug_assert!(false, "a committed conf change does not apply: {e}");
                }
            }
        }
    }

    /// Recomputes the membership in force from the committed one and the
    /// changes in the log after it.
    pub(super) fn recompute_membership(&mut self) {
        let mut membership = self.membership_committed.clone();
        for (index, (_, change)) in &self.conf_uncommitted {
            match membership.apply(change) {
                Ok(next) => membership = next,
                Err(e) => {
                    log::error!("group {}: bad conf change at {index}: {e}", self.cfg.group);
                    debug_assert!(false, "a conf change in the log does not apply: {e}");
                }
            }
        }
        if membership != self.membership {
            log::info!(
                "group {}: {} membership now {membership} (was {}, committed {})",
                self.cfg.group,
                self.cfg.id,
                self.membership,
                self.membership_committed
            );
            self.membership = membership;
            self.on_membership_changed();
        }
    }

    /// Appends entries to the log; membership changes among them take
    /// effect at once, and truncated ones are undone.
    pub(super) fn append_to_log(&mut self, entries: &[crate::Entry]) {
        let Some(first) = entries.first() else { return };
        let truncated = self.conf_uncommitted.split_off(&first.index);
        let mut changed = !truncated.is_empty();
        for e in entries {
            if let EntryKind::ConfChange(cc) = &e.kind {
                self.conf_uncommitted
                    .insert(e.index, (e.term, (**cc).clone()));
                changed = true;
            }
        }
        self.log.append(entries);
        if changed {
            self.recompute_membership();
        }
    }

    /// Replaces the log by a snapshot from the leader.
    pub(super) fn restore_snapshot(&mut self, meta: crate::SnapshotMeta) {
        self.membership_committed = meta.membership.clone();
        self.membership_committed_at = (meta.index, meta.term);
        self.conf_uncommitted.clear();
        self.log.restore(meta);
        self.recompute_membership();
    }

    /// The runtime made the log durable up to `index`, whose term is
    /// `term`, with every write handed out up to the `Ready` whose
    /// [`Ready::log_epoch`] was `epoch`. A report from before a truncation
    /// or snapshot restore counts only for the entries that survived it.
    pub fn on_entries_durable(&mut self, index: u64, term: u64, epoch: u64) {
        if self.failure.is_some() || !self.log.stable_to(index, term, epoch) {
            return;
        }
        if self.role == Role::Leader {
            let id = self.cfg.id;
            if let Some(pr) = self.tracker.get_mut(id) {
                pr.maybe_update(index);
            }
            if self.maybe_commit() {
                self.broadcast_append();
            }
        }
    }

    /// The runtime installed the snapshot handed out at `index`.
    pub fn on_snapshot_installed(&mut self, index: u64) {
        self.log.snapshot_installed(index);
    }

    /// The state machine applied everything up to `index`.
    pub fn on_applied(&mut self, index: u64) {
        self.index_applied = self.index_applied.max(index);
    }

    /// Whether a `Ready` would have anything in it.
    pub fn has_ready(&self) -> bool {
        self.failure.is_some()
            || self.hard_state() != self.hard_state_reported
            || self.log.has_ready()
            || !self.msgs.is_empty()
            || !self.msgs_persisted.is_empty()
            || !self.reads_ready.is_empty()
            || !self.reads_failed.is_empty()
            || (self.role == Role::Leader && self.reads.has_open())
    }

    /// Drains everything the caller must do now; see [`Ready`] for the order.
    /// After a storage failure it only returns that failure: the runtime
    /// must stop the group.
    pub fn ready(&mut self) -> Result<Ready, RaftError> {
        self.check_failed()?;
        self.flush_reads();
        let hard_state = self.hard_state();
        let hard_state = (hard_state != self.hard_state_reported).then(|| {
            self.hard_state_reported = hard_state.clone();
            hard_state
        });
        let group = self.cfg.group;
        let entries_committed = self
            .log
            .take_committed(self.cfg.bytes_apply_max)
            .map_err(|source| RaftError::Log { group, source })?;
        Ok(Ready {
            hard_state,
            snapshot: self.log.take_snapshot(),
            entries: self.log.take_unhanded(),
            log_epoch: self.log.epoch(),
            messages: std::mem::take(&mut self.msgs),
            messages_persisted: std::mem::take(&mut self.msgs_persisted),
            entries_committed,
            reads: std::mem::take(&mut self.reads_ready),
            reads_failed: std::mem::take(&mut self.reads_failed),
        })
    }
}

/// Collects the membership changes in the log after its snapshot.
fn scan_conf_changes<L: LogView>(
    view: &L,
    bytes_max: u64,
) -> Result<BTreeMap<u64, (u64, ConfChange)>, crate::LogError> {
    let mut out = BTreeMap::new();
    let (mut lo, hi) = (view.first_index(), view.last_index() + 1);
    while lo < hi {
        let batch = view.entries(lo, hi, bytes_max)?;
        let Some(last) = batch.last() else { break };
        lo = last.index + 1;
        for e in batch {
            if let EntryKind::ConfChange(cc) = e.kind {
                out.insert(e.index, (e.term, *cc));
            }
        }
    }
    Ok(out)
}
