//! The invariants the simulator checks after every step: election safety,
//! log matching, leader completeness, state machine safety, commit
//! monotonicity, and linearizable reads.

use std::collections::{BTreeMap, HashMap};

use super::faults::FaultCounts;
use crate::{Body, Entry, EntryKind, Message, NodeId};

/// A 64-bit FNV-1a hash of an entry's term, kind and payload.
pub(crate) fn entry_hash(e: &Entry) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    e.term.to_le_bytes().into_iter().for_each(&mut eat);
    let kind = match &e.kind {
        EntryKind::Normal => 1,
        EntryKind::NoOp => 2,
        EntryKind::ConfChange(_) => 3,
    };
    eat(kind);
    if let EntryKind::ConfChange(cc) = &e.kind {
        format!("{cc:?}").bytes().for_each(&mut eat);
    }
    e.payload.iter().copied().for_each(&mut eat);
    h.max(1)
}

/// What a run exercised, summed over seeds for the summary line.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub(crate) elections: u64,
    pub(crate) commit: u64,
    pub(crate) reads: u64,
    pub(crate) reads_lease: u64,
    pub(crate) snapshots_installed: u64,
    pub(crate) conf_changes: u64,
    pub(crate) transfers: u64,
    pub(crate) hibernations: u64,
    pub(crate) hibernated_leader_crashes: u64,
    pub(crate) crashes: u64,
    pub(crate) partitions: u64,
    pub(crate) ticks: u64,
    pub(crate) faults: FaultCounts,
}

impl Counters {
    /// Adds another run's counts.
    pub(crate) fn add(&mut self, o: &Counters) {
        self.elections += o.elections;
        self.commit += o.commit;
        self.reads += o.reads;
        self.reads_lease += o.reads_lease;
        self.snapshots_installed += o.snapshots_installed;
        self.conf_changes += o.conf_changes;
        self.transfers += o.transfers;
        self.hibernations += o.hibernations;
        self.hibernated_leader_crashes += o.hibernated_leader_crashes;
        self.crashes += o.crashes;
        self.partitions += o.partitions;
        self.ticks += o.ticks;
        self.faults.add(&o.faults);
    }
}

/// Everything seen so far, across all nodes and incarnations.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    leaders: HashMap<u64, NodeId>,
    pairs: HashMap<(u64, u64), (u64, u64)>,
    committed_terms: Vec<u64>,
    /// Per index: the lowest term any node was in when it saw the index
    /// committed (at least the term of the leader that committed it).
    committed_in: Vec<u64>,
    pub(crate) commit_max: u64,
    applied: Vec<u64>,
    writes: BTreeMap<u8, Vec<(u64, u64)>>,
    pub(crate) counters: Counters,
}

impl Checker {
    /// Election safety: at most one leader per term.
    pub(crate) fn on_leader(&mut self, term: u64, id: NodeId) -> bool {
        match self.leaders.get(&term) {
            Some(&prior) => {
                assert_eq!(prior, id, "two leaders in term {term}: {prior} and {id}");
                false
            }
            None => {
                self.leaders.insert(term, id);
                self.counters.elections += 1;
                true
            }
        }
    }

    /// Log matching: entries with the same index and term carry the same
    /// command and follow an entry of the same term.
    pub(crate) fn on_append(&mut self, id: NodeId, e: &Entry, term_prev: Option<u64>) {
        let hash = entry_hash(e);
        let prev = term_prev.unwrap_or(u64::MAX);
        match self.pairs.get(&(e.index, e.term)) {
            None => {
                self.pairs.insert((e.index, e.term), (hash, prev));
            }
            Some(&(h, p)) => {
                assert_eq!(
                    h, hash,
                    "{id}: log matching: different entries at ({}, {})",
                    e.index, e.term
                );
                if p != u64::MAX && prev != u64::MAX {
                    assert_eq!(
                        p, prev,
                        "{id}: log matching: different prev terms before {}",
                        e.index
                    );
                } else if p == u64::MAX {
                    self.pairs.insert((e.index, e.term), (hash, prev));
                }
            }
        }
    }

    /// Records an index as committed with `term`, seen by a node in
    /// `term_node`; checks nobody saw another.
    pub(crate) fn on_commit(&mut self, id: NodeId, index: u64, term: Option<u64>, term_node: u64) {
        let i = index as usize;
        if self.committed_terms.len() <= i {
            self.committed_terms.resize(i + 1, 0);
            self.committed_in.resize(i + 1, u64::MAX);
        }
        self.committed_in[i] = self.committed_in[i].min(term_node);
        if let Some(t) = term {
            let known = self.committed_terms[i];
            assert!(
                known == 0 || known == t,
                "{id}: committed term at {index} is {t}, was {known}"
            );
            self.committed_terms[i] = t;
        }
        self.commit_max = self.commit_max.max(index);
        self.counters.commit = self.commit_max;
    }

    /// Leader completeness: a new leader of `term` holds every entry
    /// committed in an earlier term. (A candidate can win an older term
    /// late — its vote answers held up by a stall — after a later term
    /// committed entries it lacks; it then learns the newer term and steps
    /// down before committing anything.)
    pub(crate) fn check_leader_log(
        &self,
        id: NodeId,
        term: u64,
        last: u64,
        term_at: impl Fn(u64) -> Option<u64>,
    ) {
        let before = |i: usize| self.committed_in.get(i).is_some_and(|&u| u < term);
        let needed = (1..self.committed_in.len()).rev().find(|&i| before(i));
        if let Some(needed) = needed {
            assert!(
                last >= needed as u64,
                "{id} leads term {term} with last {last} < {needed}, committed earlier"
            );
        }
        for (i, &t) in self.committed_terms.iter().enumerate().skip(1) {
            if t == 0 || !before(i) {
                continue;
            }
            if let Some(mine) = term_at(i as u64) {
                assert_eq!(
                    mine, t,
                    "{id} leads without committed entry {i} of term {t}"
                );
            }
        }
    }

    /// State machine safety: every node applies the same entry at an index.
    pub(crate) fn on_apply(&mut self, id: NodeId, e: &Entry) {
        let i = e.index as usize;
        if self.applied.len() <= i {
            self.applied.resize(i + 1, 0);
        }
        let hash = entry_hash(e);
        if self.applied[i] == 0 {
            self.applied[i] = hash;
            if let (EntryKind::Normal, Some((key, value))) = (&e.kind, decode_write(&e.payload)) {
                self.writes.entry(key).or_default().push((e.index, value));
            }
        }
        assert_eq!(
            self.applied[i], hash,
            "{id} applied a different entry at {}",
            e.index
        );
    }

    /// The value of `key` after applying everything up to `index`.
    pub(crate) fn value_at(&self, key: u8, index: u64) -> u64 {
        let Some(history) = self.writes.get(&key) else {
            return 0;
        };
        let pos = history.partition_point(|&(i, _)| i <= index);
        if pos == 0 { 0 } else { history[pos - 1].1 }
    }

    /// Persist before send: no message leaves a node at a term its disk
    /// does not hold yet (a pre-vote asks about a term it does not take).
    /// Otherwise a crash loses the term, and the node can lead that term
    /// twice with different entries at the same (index, term).
    pub(crate) fn check_send(&self, id: NodeId, msg: &Message, term_durable: u64) {
        let pre = match &msg.body {
            Body::Vote(v) => v.pre,
            Body::VoteResponse(r) => r.pre,
            _ => false,
        };
        assert!(
            pre || msg.term <= term_durable,
            "{id}: sent {:?} at term {} before its term was durable (disk: {term_durable})",
            msg.body,
            msg.term
        );
    }

    /// Linearizable read: it reflects every write committed before it was
    /// issued, and returns the state at the index it was served at. This
    /// holds lease reads to the same rule: a read served from a lease that
    /// outlived its leader's term misses a write some other leader
    /// committed before the read was issued.
    pub(crate) fn check_read(
        &mut self,
        id: NodeId,
        read: &ReadIssued,
        value: u64,
        index_read: u64,
        index_served: u64,
    ) {
        let (key, commit_at_issue) = (read.key, read.commit_at_issue);
        let how = if read.lease { "lease read" } else { "read" };
        assert!(
            index_read >= commit_at_issue,
            "{id}: stale {how}: read index {index_read} < commit {commit_at_issue} when issued"
        );
        assert!(index_served >= index_read);
        let expected = self.value_at(key, index_served);
        assert_eq!(
            value, expected,
            "{id}: read of key {key} at {index_served} returned {value}"
        );
        self.counters.reads += 1;
    }
}

/// A read as a client issued it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadIssued {
    /// The key read.
    pub(crate) key: u8,
    /// The highest index any node knew committed when it was issued.
    pub(crate) commit_at_issue: u64,
    /// Whether the leader's lease was valid then (it is served from it).
    pub(crate) lease: bool,
}

/// Payload of a write: key byte then value (u64, little endian).
pub(crate) fn encode_write(key: u8, value: u64) -> bytes::Bytes {
    let mut v = vec![key];
    v.extend_from_slice(&value.to_le_bytes());
    bytes::Bytes::from(v)
}

/// The inverse of [`encode_write`].
pub(crate) fn decode_write(payload: &[u8]) -> Option<(u8, u64)> {
    let (&key, rest) = payload.split_first()?;
    let value = u64::from_le_bytes(rest.try_into().ok()?);
    Some((key, value))
}
