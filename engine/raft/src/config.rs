//! Per-group configuration, validated once when a core is created.

use super::types::{GroupId, NodeId};

/// How one replica of one group behaves. Timers count ticks: the runtime
/// calls `tick()` at a fixed rate. Only the leader lease reads the
/// monotonic clock the runtime passes in (`set_now_ms`), since ticks can
/// come late or bunched and a lease must never outlast real time.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// The group.
    pub group: GroupId,
    /// Election timeout; the actual timeout is random in `[this, 2 * this)`.
    pub ticks_election: u32,
    /// Heartbeat interval of the leader.
    pub ticks_heartbeat: u32,
    /// AppendEntries messages in flight per follower.
    pub msgs_inflight_max: usize,
    /// Entry bytes in flight per follower.
    pub bytes_inflight_max: u64,
    /// Entry bytes per AppendEntries message (at least one entry is sent).
    pub bytes_append_max: u64,
    /// Committed entry bytes handed out per `Ready` (at least one entry).
    pub bytes_apply_max: u64,
    /// Entries the leader accepts beyond its commit index before refusing
    /// proposals (bounds memory when followers are away).
    pub entries_uncommitted_max: u64,
    /// ReadIndex requests pending at once.
    pub reads_pending_max: usize,
    /// Campaign with a pre-vote round first.
    pub pre_vote: bool,
    /// Leaders step down without a quorum; voters ignore candidates while
    /// they hear from a leader.
    pub check_quorum: bool,
    /// Serve reads from the leader lease (needs `check_quorum`).
    pub lease_read: bool,
    /// The length of one tick in milliseconds, as the runtime ticks: the
    /// lease is measured against the election timeout in real time. 0
    /// (unknown) means no lease: reads always take a heartbeat round.
    pub tick_ms: u64,
    /// How far (ms) the clocks of two nodes may drift apart within one
    /// election timeout; the lease ends this much early. `None`: 10% of
    /// the election timeout.
    pub clock_drift_ms: Option<u64>,
    /// Let idle groups stop ticking.
    pub hibernate: bool,
    /// Idle leader ticks before asking followers to hibernate.
    pub ticks_hibernate_idle: u32,
    /// A learner joins as a voter once it is within this many entries.
    pub entries_catchup_lag_max: u64,
    /// Seed of the randomized election timeouts.
    pub seed: u64,
}

/// Why a configuration is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid raft config for group {group}: {reason}")]
pub struct ConfigError {
    /// The group.
    pub group: GroupId,
    /// What is wrong.
    pub reason: &'static str,
}

impl Config {
    /// Defaults for `id` in `group`: election 10 ticks, heartbeat 2,
    /// pre-vote, check-quorum and lease reads on, hibernation on.
    pub fn new(id: NodeId, group: GroupId) -> Self {
        Self {
            id,
            group,
            ticks_election: 10,
            ticks_heartbeat: 2,
            msgs_inflight_max: 64,
            bytes_inflight_max: 8 << 20,
            bytes_append_max: 1 << 20,
            bytes_apply_max: 4 << 20,
            entries_uncommitted_max: 100_000,
            reads_pending_max: 100_000,
            pre_vote: true,
            check_quorum: true,
            lease_read: true,
            tick_ms: 0,
            clock_drift_ms: None,
            hibernate: true,
            ticks_hibernate_idle: 20,
            entries_catchup_lag_max: 100,
            seed: 0,
        }
    }

    /// The election timeout in milliseconds (0 if `tick_ms` is unknown).
    pub fn election_timeout_ms(&self) -> u64 {
        u64::from(self.ticks_election).saturating_mul(self.tick_ms)
    }

    /// The clock drift bound in milliseconds (see `clock_drift_ms`).
    pub fn clock_drift_ms(&self) -> u64 {
        self.clock_drift_ms
            .unwrap_or(self.election_timeout_ms() / 10)
    }

    /// How long a lease runs from the send time of the heartbeat a quorum
    /// acknowledged. A follower stops refusing candidates once its
    /// election timer has counted `ticks_election` ticks since it heard
    /// that heartbeat; its first tick may come at once, so it holds out at
    /// least `ticks_election - 1` ticks of real time (late ticks only make
    /// it hold out longer). The lease ends that long after the send, less
    /// the drift bound.
    pub fn lease_ms(&self) -> u64 {
        u64::from(self.ticks_election.saturating_sub(1))
            .saturating_mul(self.tick_ms)
            .saturating_sub(self.clock_drift_ms())
    }

    /// Checks the limits fit together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |reason| {
            Err(ConfigError {
                group: self.group,
                reason,
            })
        };
        if self.ticks_heartbeat == 0 {
            return fail("ticks_heartbeat must be at least 1");
        }
        if self.ticks_election <= self.ticks_heartbeat {
            return fail("ticks_election must exceed ticks_heartbeat");
        }
        if self.msgs_inflight_max == 0 || self.bytes_inflight_max == 0 {
            return fail("the inflight window must allow one message");
        }
        if self.bytes_append_max == 0 || self.bytes_apply_max == 0 {
            return fail("byte limits must be positive");
        }
        if self.entries_uncommitted_max == 0 || self.reads_pending_max == 0 {
            return fail("queue limits must be positive");
        }
        if self.lease_read && !self.check_quorum {
            return fail("lease_read needs check_quorum");
        }
        if self.clock_drift_ms() >= self.election_timeout_ms() && self.tick_ms > 0 {
            return fail("clock_drift_ms must be below the election timeout");
        }
        if self.hibernate && self.ticks_hibernate_idle == 0 {
            return fail("ticks_hibernate_idle must be at least 1");
        }
        Ok(())
    }
}
