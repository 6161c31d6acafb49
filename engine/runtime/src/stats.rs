//! What a shard counts for `/metrics` as it serves: proposals and reads
//! (counts and latency histograms), elections and leader changes, and
//! each peer's last keepalive round trip. Kept in a thread-local of the
//! shard's thread in plain cells: no atomics, no locks, a few
//! instructions per request. [`snapshot`] copies them for the scrape
//! (through [`crate::server::Observer`]).
//!
//! **Not for:** anything a decision is made on; these are for people.

use sampan_storage::latency::{Latencies, LatencySnapshot};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Default)]
struct ShardStats {
    proposals_ok: Cell<u64>,
    proposals_failed: Cell<u64>,
    proposal_latency: Latencies,
    reads_ok: Cell<u64>,
    reads_failed: Cell<u64>,
    read_latency: Latencies,
    elections: Cell<u64>,
    leader_changes: Cell<u64>,
    peer_rtt: RefCell<BTreeMap<u64, Duration>>,
    peer_heard: RefCell<BTreeMap<u64, Instant>>,
}

thread_local! {
    static STATS: ShardStats = ShardStats::default();
}

/// A copy of one shard's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Proposals applied with a result.
    pub proposals_ok: u64,
    /// Proposals that failed here (not "not the leader": those are
    /// forwarded or redirected, and counted where they are served).
    pub proposals_failed: u64,
    /// Time from a proposal reaching its group to its result.
    pub proposal_latency: LatencySnapshot,
    /// Linearizable reads answered.
    pub reads_ok: u64,
    /// Reads that failed here (not "not the leader").
    pub reads_failed: u64,
    /// Time to answer a linearizable read (lease reads take microseconds).
    pub read_latency: LatencySnapshot,
    /// Elections this shard's replicas started (became candidates).
    pub elections: u64,
    /// Times a replica of this shard saw a new leader.
    pub leader_changes: u64,
    /// Each peer's last keepalive round trip.
    pub peer_rtt: BTreeMap<u64, Duration>,
    /// How long ago each peer last answered a keepalive (its last
    /// contact): grows from the moment a peer dies or is cut off, while
    /// its round trip stays at the last one measured.
    pub peer_silent: BTreeMap<u64, Duration>,
}

/// Counts a proposal that took `took`; `ok` unless it failed.
pub(crate) fn proposal(took: Duration, ok: bool) {
    STATS.with(|s| {
        let c = if ok {
            &s.proposals_ok
        } else {
            &s.proposals_failed
        };
        c.set(c.get() + 1);
        s.proposal_latency.record(took);
    });
}

/// Counts a linearizable read that took `took`.
pub(crate) fn read(took: Duration, ok: bool) {
    STATS.with(|s| {
        let c = if ok { &s.reads_ok } else { &s.reads_failed };
        c.set(c.get() + 1);
        s.read_latency.record(took);
    });
}

/// Counts an election a replica started.
pub(crate) fn election() {
    STATS.with(|s| s.elections.set(s.elections.get() + 1));
}

/// Counts a replica seeing a new leader.
pub(crate) fn leader_change() {
    STATS.with(|s| s.leader_changes.set(s.leader_changes.get() + 1));
}

/// Records `peer`'s last keepalive round trip.
pub(crate) fn peer_rtt(peer: u64, rtt: Duration) {
    STATS.with(|s| {
        s.peer_rtt.borrow_mut().insert(peer, rtt);
        s.peer_heard.borrow_mut().insert(peer, Instant::now());
    });
}

/// Forgets `peer`'s round trip (the node was forgotten).
pub(crate) fn forget_peer(peer: u64) {
    STATS.with(|s| {
        s.peer_rtt.borrow_mut().remove(&peer);
        s.peer_heard.borrow_mut().remove(&peer);
    });
}

/// This shard's counts now.
pub fn snapshot() -> StatsSnapshot {
    STATS.with(|s| StatsSnapshot {
        proposals_ok: s.proposals_ok.get(),
        proposals_failed: s.proposals_failed.get(),
        proposal_latency: s.proposal_latency.snapshot(),
        reads_ok: s.reads_ok.get(),
        reads_failed: s.reads_failed.get(),
        read_latency: s.read_latency.snapshot(),
        elections: s.elections.get(),
        leader_changes: s.leader_changes.get(),
        peer_rtt: s.peer_rtt.borrow().clone(),
        peer_silent: s
            .peer_heard
            .borrow()
            .iter()
            .map(|(p, t)| (*p, t.elapsed()))
            .collect(),
    })
}
