//! Log replication and commit.
//!
//! The leader pipelines AppendEntries to each follower within its inflight
//! window (see `progress.rs`), probes one message at a time when it does not
//! know where the logs agree, backs off by whole terms on a rejection (the
//! follower hints the last index whose term is at most the leader's), and
//! sends a snapshot when the entries needed are purged. It commits an index
//! once a quorum holds it durably, counting its own durable index like any
//! follower's, and only by counting entries of its own term (Raft §5.4.2,
//! the "figure 8" rule).

use bytes::Bytes;

use super::log::{LogError, LogView};
use super::message::{Append, AppendResponse, Body, Heartbeat, HeartbeatResponse};
use super::node::Raft;
use super::progress::ProgressState;
use super::types::{Entry, EntryKind, NodeId, SnapshotMeta};

impl<L: LogView> Raft<L> {
    /// Appends an entry of the leader's term and starts replicating it.
    pub(super) fn append_leader_entry(&mut self, kind: EntryKind, payload: Bytes) -> u64 {
        let index = self.log.last_index() + 1;
        let entry = Entry {
            term: self.term,
            index,
            kind,
            payload,
        };
        self.append_to_log(std::slice::from_ref(&entry));
        self.ticks.idle = 0;
        self.broadcast_append();
        index
    }

    /// Every replica tracked for replication but this one, one after the
    /// other (no list is allocated: this runs for every proposal).
    fn next_peer(&self, after: Option<NodeId>) -> Option<NodeId> {
        self.tracker.peer_after(self.cfg.id, after)
    }

    /// Sends what each follower lacks (and the commit index to everyone).
    pub(super) fn broadcast_append(&mut self) {
        let mut at = None;
        while let Some(to) = self.next_peer(at) {
            self.send_append(to, true);
            at = Some(to);
        }
    }

    /// Sends one AppendEntries to `to` if its window allows; false if not sent.
    pub(super) fn send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let Some(pr) = self.tracker.get(to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let index_next = pr.index_next;
        let index_last = self.log.last_index();
        if index_next > index_last + 1 {
            debug_assert!(false, "next {index_next} past the log end {index_last}");
            return false;
        }
        let term_prev = self.log.term(index_next - 1);
        let entries = self
            .log
            .entries(index_next, index_last + 1, self.cfg.bytes_append_max);
        let (term_prev, entries) = match (term_prev, entries) {
            (Ok(t), Ok(e)) => (t, e),
            (Err(LogError::Compacted { .. }), _) | (_, Err(LogError::Compacted { .. })) => {
                return self.send_snapshot(to);
            }
            (Err(e), _) | (_, Err(e)) => {
                self.fail(e);
                return false;
            }
        };
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        let bytes: u64 = entries.iter().map(Entry::size_bytes).sum();
        let last = entries.last().map(|e| e.index);
        let Some(pr) = self.tracker.get_mut(to) else {
            return false;
        };
        match (pr.state, last) {
            (ProgressState::Replicate, Some(last)) => {
                pr.index_next = last + 1;
                pr.inflights.add(last, bytes);
            }
            (ProgressState::Probe, _) => pr.probe_sent = true,
            _ => {}
        }
        let index_commit = self.log.index_committed();
        let body = Append {
            index_prev: index_next - 1,
            term_prev,
            entries,
            index_commit,
        };
        self.send(to, Body::Append(body));
        true
    }

    fn send_snapshot(&mut self, to: NodeId) -> bool {
        if self.sends_held() {
            // A snapshot streams at once in the runtime: it waits, like
            // every message of a term not yet durable; a later heartbeat
            // answer retries.
            return false;
        }
        let meta: SnapshotMeta = self.log.view().snapshot_meta();
        if meta.index == 0 {
            log::warn!(
                "group {}: {to} needs purged entries but no snapshot exists",
                self.cfg.group
            );
            return false;
        }
        if let Some(pr) = self.tracker.get_mut(to) {
            pr.become_snapshot(meta.index);
        }
        log::info!(
            "group {}: sending snapshot at {} to {to}",
            self.cfg.group,
            meta.index
        );
        self.send(to, Body::Snapshot(Box::new(meta)));
        true
    }

    /// The runtime's report on a snapshot it streamed to `to`.
    pub fn report_snapshot(&mut self, to: NodeId, ok: bool) {
        let Some(pr) = self.tracker.get_mut(to) else {
            return;
        };
        if let ProgressState::Snapshot { .. } = pr.state {
            if !ok {
                pr.state = ProgressState::Probe;
            }
            pr.become_probe();
            // Wait for the next heartbeat answer before probing again.
            pr.probe_sent = true;
        }
    }

    /// Sends heartbeats to every peer.
    pub(super) fn broadcast_heartbeat(&mut self) {
        let mut at = None;
        while let Some(to) = self.next_peer(at) {
            self.send_heartbeat(to);
            at = Some(to);
        }
    }

    pub(super) fn send_heartbeat(&mut self, to: NodeId) {
        let Some(pr) = self.tracker.get(to) else {
            return;
        };
        let heartbeat = Heartbeat {
            index_commit: pr.index_match.min(self.log.index_committed()),
            id_read: self.reads.id_broadcast(),
            lease_ms: self.now_ms,
        };
        self.send(to, Body::Heartbeat(heartbeat));
    }

    /// Commits the largest index a quorum holds, if it is of this term.
    pub(super) fn maybe_commit(&mut self) -> bool {
        let index = self.tracker.committed(&self.membership);
        let index = index.min(self.log.last_index());
        if index <= self.log.index_committed() {
            return false;
        }
        match self.log.matches_term(index, self.term) {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                self.fail(e);
                return false;
            }
        }
        self.commit_to(index);
        self.on_leader_commit();
        true
    }

    /// A follower's answer to AppendEntries or to a snapshot.
    pub(super) fn handle_append_response(&mut self, from: NodeId, r: AppendResponse) {
        if r.index > self.log.last_index() {
            log::warn!(
                "group {}: {from} acknowledged past our log end",
                self.cfg.group
            );
            return;
        }
        let Some(pr) = self.tracker.get_mut(from) else {
            return;
        };
        pr.recent_active = true;
        if r.reject {
            let hint = if r.term_hint > 0 {
                match self.log.find_conflict_by_term(r.index_hint, r.term_hint) {
                    Ok((index, _)) => index,
                    Err(e) => return self.fail(e),
                }
            } else {
                r.index_hint
            };
            let Some(pr) = self.tracker.get_mut(from) else {
                return;
            };
            if pr.maybe_decrease(r.index, hint) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.send_append(from, true);
            }
            return;
        }
        let was_paused = pr.is_paused();
        if !pr.maybe_update(r.index) {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot { index_pending } if pr.index_match >= index_pending => {
                pr.become_probe();
                pr.become_replicate();
            }
            ProgressState::Replicate => pr.inflights.free_to(r.index),
            ProgressState::Snapshot { .. } => {}
        }
        if self.maybe_commit() {
            self.broadcast_append();
        } else if was_paused {
            self.send_append(from, false);
        }
        for _ in 0..self.cfg.msgs_inflight_max {
            if !self.send_append(from, false) {
                break;
            }
        }
        self.on_peer_caught_up(from);
    }

    /// A follower's answer to a heartbeat.
    pub(super) fn handle_heartbeat_response(&mut self, from: NodeId, r: HeartbeatResponse) {
        let floor = self.lease_ms_floor;
        let Some(pr) = self.tracker.get_mut(from) else {
            return;
        };
        pr.recent_active = true;
        pr.probe_sent = false;
        if r.lease_ms > floor {
            pr.lease_ms_acked = pr.lease_ms_acked.max(r.lease_ms);
        }
        if pr.state == ProgressState::Replicate && pr.inflights.is_full() {
            pr.inflights.free_first();
        }
        if pr.index_match < self.log.last_index() {
            self.send_append(from, true);
        }
        let confirmed = self.reads.ack(from, r.id_read, &self.membership);
        self.reads_ready.extend(confirmed);
    }

    /// AppendEntries from the leader of our term.
    pub(super) fn handle_append(&mut self, from: NodeId, a: Append) {
        if !is_well_formed(&a, self.term) {
            log::warn!(
                "group {}: malformed AppendEntries from {from} dropped",
                self.cfg.group
            );
            return;
        }
        let committed = self.log.index_committed();
        if a.index_prev < committed {
            // Stale or duplicated: everything up to the commit index matches.
            self.send_append_ok(from, committed);
            return;
        }
        let matches = match self.log.matches_term(a.index_prev, a.term_prev) {
            Ok(m) => m,
            Err(e) => return self.fail(e),
        };
        if !matches {
            let (index_hint, term_hint) =
                match self.log.find_conflict_by_term(a.index_prev, a.term_prev) {
                    Ok(hint) => hint,
                    Err(e) => return self.fail(e),
                };
            let body = AppendResponse {
                reject: true,
                index: a.index_prev,
                index_hint,
                term_hint,
            };
            self.send(from, Body::AppendResponse(body));
            return;
        }
        let index_last_new = a.index_prev + a.entries.len() as u64;
        let conflict = match self.log.find_conflict(&a.entries) {
            Ok(c) => c,
            Err(e) => return self.fail(e),
        };
        if conflict != 0 {
            assert!(
                conflict > committed,
                "conflict at {conflict} at or below commit {committed}"
            );
            let skip = (conflict - a.index_prev - 1) as usize;
            self.append_to_log(&a.entries[skip..]);
        }
        self.commit_to(a.index_commit.min(index_last_new));
        self.send_append_ok(from, index_last_new);
    }

    fn send_append_ok(&mut self, to: NodeId, index: u64) {
        let body = AppendResponse {
            reject: false,
            index,
            index_hint: 0,
            term_hint: 0,
        };
        self.send(to, Body::AppendResponse(body));
    }

    /// A heartbeat from the leader of our term.
    pub(super) fn handle_heartbeat(&mut self, from: NodeId, h: Heartbeat) {
        self.leader_ms_seen = self.leader_ms_seen.max(h.lease_ms);
        self.commit_to(h.index_commit.min(self.log.last_index()));
        let body = HeartbeatResponse {
            id_read: h.id_read,
            lease_ms: h.lease_ms,
        };
        self.send(from, Body::HeartbeatResponse(body));
    }

    /// A snapshot from the leader of our term (its data already received by
    /// the runtime).
    pub(super) fn handle_snapshot(&mut self, from: NodeId, meta: SnapshotMeta) {
        let committed = self.log.index_committed();
        if meta.index <= committed {
            self.send_append_ok(from, committed);
            return;
        }
        let held = match self.log.matches_term(meta.index, meta.term) {
            Ok(m) => m,
            Err(e) => return self.fail(e),
        };
        if held {
            // We have the entries already: just learn the commit.
            self.commit_to(meta.index);
            self.send_append_ok(from, meta.index);
            return;
        }
        log::info!(
            "group {}: {} restores snapshot at {} ({})",
            self.cfg.group,
            self.cfg.id,
            meta.index,
            meta.membership
        );
        let index = meta.index;
        self.restore_snapshot(meta);
        self.index_applied = index;
        self.send_append_ok(from, index);
    }
}

/// Whether an AppendEntries is internally consistent: entries contiguous
/// after `index_prev`, terms never decreasing, none after the sender's term.
fn is_well_formed(a: &Append, term: u64) -> bool {
    let mut index = a.index_prev;
    let mut term_last = a.term_prev;
    for e in &a.entries {
        if e.index != index + 1 || e.term < term_last || e.term > term {
            return false;
        }
        index = e.index;
        term_last = e.term;
    }
    true
}
