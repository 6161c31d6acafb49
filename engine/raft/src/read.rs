//! Linearizable reads: ReadIndex rounds and the leader lease.
//!
//! ReadIndex: the leader notes its commit index, confirms it is still leader
//! by a heartbeat round that a quorum answers, and then the read may be
//! served once the state machine has applied that index. Reads that arrive
//! between two drains of `Ready` share one round. Every heartbeat carries the
//! id of the newest round broadcast, so a regular heartbeat confirms it too.
//!
//! Lease: a follower that heard from the leader will not vote for anyone else
//! for `ticks_election` of its own ticks, which never come faster than real
//! time. The leader counts its lease on its monotonic clock from the time it
//! *sent* a heartbeat that a quorum acknowledged, for `ticks_election - 1`
//! ticks' worth of milliseconds less `clock_drift_ms`, so the lease ends
//! before any other node can win an election as long as clocks drift within
//! that bound — however late the leader's own ticks come.

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;

use super::membership::Membership;
use super::quorum;
use super::types::NodeId;

/// A read that may be served once the state machine has applied `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadState {
    /// The caller's context, as given to `read_index`.
    pub context: Bytes,
    /// The commit index to wait for.
    pub index: u64,
}

#[derive(Debug)]
struct Round {
    id: u64,
    index: u64,
    contexts: Vec<Bytes>,
    acks: BTreeSet<NodeId>,
}

/// The leader's pending ReadIndex rounds.
#[derive(Debug, Default)]
pub struct ReadQueue {
    rounds: VecDeque<Round>,
    open: Option<Round>,
    waiting_commit: Vec<Bytes>,
    id_last: u64,
    id_broadcast: u64,
    count: usize,
}

impl ReadQueue {
    /// Reads queued (waiting, open or in flight).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no read is pending.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether a round waits to be broadcast.
    pub fn has_open(&self) -> bool {
        self.open.is_some()
    }

    /// The id of the newest round broadcast (carried by every heartbeat).
    pub fn id_broadcast(&self) -> u64 {
        self.id_broadcast
    }

    /// Holds a read until the leader has committed an entry of its term.
    pub fn wait_for_commit(&mut self, context: Bytes) {
        self.waiting_commit.push(context);
        self.count += 1;
    }

    /// Moves reads that waited for the first commit of the term into a round.
    pub fn release_waiting(&mut self, index_commit: u64) {
        for context in std::mem::take(&mut self.waiting_commit) {
            self.count -= 1;
            self.add(context, index_commit);
        }
    }

    /// Adds a read at `index_commit` to the round not yet broadcast.
    pub fn add(&mut self, context: Bytes, index_commit: u64) {
        self.count += 1;
        if let Some(open) = &mut self.open {
            debug_assert!(open.index <= index_commit);
            open.contexts.push(context);
            return;
        }
        self.id_last += 1;
        let round = Round {
            id: self.id_last,
            index: index_commit,
            contexts: vec![context],
            acks: BTreeSet::new(),
        };
        self.open = Some(round);
    }

    /// Closes the open round for broadcasting; returns its id.
    pub fn take_open(&mut self, id_self: NodeId) -> Option<u64> {
        let mut round = self.open.take()?;
        round.acks.insert(id_self);
        let id = round.id;
        self.id_broadcast = id;
        self.rounds.push_back(round);
        Some(id)
    }

    /// Records that `from` answered a heartbeat carrying round `id`; returns
    /// the reads now confirmed.
    pub fn ack(&mut self, from: NodeId, id: u64, membership: &Membership) -> Vec<ReadState> {
        let mut confirmed = None;
        for (pos, round) in self.rounds.iter_mut().enumerate() {
            if round.id > id {
                break;
            }
            round.acks.insert(from);
            if quorum::quorum_active(membership, |n| round.acks.contains(&n)) {
                confirmed = Some(pos);
            }
        }
        match confirmed {
            Some(pos) => self.pop_through(pos),
            None => Vec::new(),
        }
    }

    /// Confirms every broadcast round at once (a single-voter group).
    pub fn confirm_all(&mut self) -> Vec<ReadState> {
        match self.rounds.len() {
            0 => Vec::new(),
            n => self.pop_through(n - 1),
        }
    }

    fn pop_through(&mut self, pos: usize) -> Vec<ReadState> {
        let mut out = Vec::new();
        for round in self.rounds.drain(..=pos) {
            for context in round.contexts {
                out.push(ReadState {
                    context,
                    index: round.index,
                });
            }
        }
        self.count -= out.len();
        out
    }

    /// Drops every pending read (leadership lost); returns their contexts.
    pub fn fail_all(&mut self) -> Vec<Bytes> {
        let mut out = std::mem::take(&mut self.waiting_commit);
        if let Some(open) = self.open.take() {
            out.extend(open.contexts);
        }
        for round in self.rounds.drain(..) {
            out.extend(round.contexts);
        }
        self.count = 0;
        out
    }
}

/// The time (ms) from which the leader's lease runs: the newest heartbeat
/// send time that a quorum acknowledged (the leader itself counts as now).
pub fn lease_start(membership: &Membership, acked: impl Fn(NodeId) -> u64) -> u64 {
    quorum::quorum_value(membership, acked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership() -> Membership {
        let voters = [1, 2, 3].into_iter().map(NodeId).collect();
        Membership::new(voters, BTreeSet::new()).expect("valid")
    }

    #[test]
    fn rounds_batch_and_confirm_in_order() {
        let m = membership();
        let mut q = ReadQueue::default();
        q.add(Bytes::from_static(b"a"), 5);
        q.add(Bytes::from_static(b"b"), 5);
        assert_eq!(q.take_open(NodeId(1)), Some(1));
        q.add(Bytes::from_static(b"c"), 6);
        assert_eq!(q.take_open(NodeId(1)), Some(2));
        assert!(
            q.ack(NodeId(2), 0, &m).is_empty(),
            "an older heartbeat confirms nothing"
        );
        let got = q.ack(NodeId(3), 2, &m);
        let indexes: Vec<u64> = got.iter().map(|r| r.index).collect();
        assert_eq!(indexes, vec![5, 5, 6], "a newer round confirms older ones");
        assert!(q.is_empty());
    }

    #[test]
    fn waiting_reads_fail_on_step_down() {
        let mut q = ReadQueue::default();
        q.wait_for_commit(Bytes::from_static(b"x"));
        q.add(Bytes::from_static(b"y"), 1);
        assert_eq!(q.fail_all().len(), 2);
        assert!(q.is_empty());
    }
}
