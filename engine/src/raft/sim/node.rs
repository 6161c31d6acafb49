//! One simulated node: the core, its fake disk (written and durable), its
//! state machine and its drifting clock.

use crate::raft::{Config, GroupId, HardState, Membership, NodeId, Raft, ReadState};

use super::storage::{LogData, SharedLog, SmData, Write};

/// A node of the simulated cluster.
pub(crate) struct SimNode {
    pub(crate) id: NodeId,
    pub(crate) raft: Option<Raft<SharedLog>>,
    pub(crate) incarnation: u64,
    pub(crate) written: SharedLog,
    pub(crate) durable: LogData,
    pub(crate) hs_durable: HardState,
    pub(crate) sm_durable: SmData,
    pub(crate) pending: Vec<Write>,
    pub(crate) sync_scheduled: bool,
    /// The log epoch of the newest entries synced in this incarnation.
    pub(crate) epoch_synced: u64,
    pub(crate) sm: SmData,
    pub(crate) applied: u64,
    pub(crate) membership_applied: Membership,
    /// Simulated time units per tick of this node's clock.
    pub(crate) period: u64,
    pub(crate) commit_seen: u64,
    pub(crate) term_led: u64,
    pub(crate) asleep: bool,
    pub(crate) reads_waiting: Vec<ReadState>,
    pub(crate) incoming_snapshot: Option<(u64, SmData)>,
    pub(crate) down_until_tick: u64,
}

/// The configuration every simulated node runs with.
pub(crate) fn sim_config(id: NodeId, group: GroupId, seed: u64, hibernate: bool) -> Config {
    let mut cfg = Config::new(id, group);
    cfg.ticks_election = 10;
    cfg.ticks_heartbeat = 2;
    cfg.tick_ms = super::cluster::UNIT;
    cfg.clock_drift_ms = Some(2 * super::cluster::UNIT);
    cfg.msgs_inflight_max = 4;
    cfg.bytes_inflight_max = 1_000;
    cfg.bytes_append_max = 300;
    cfg.bytes_apply_max = 400;
    cfg.entries_uncommitted_max = 200;
    cfg.ticks_hibernate_idle = 15;
    cfg.entries_catchup_lag_max = 10;
    cfg.hibernate = hibernate;
    cfg.seed = seed;
    cfg
}

impl SimNode {
    /// A node whose disk holds `durable` (a bootstrap entry, or nothing).
    pub(crate) fn new(id: NodeId, durable: LogData, hs: HardState, period: u64) -> Self {
        Self {
            id,
            raft: None,
            incarnation: 0,
            written: SharedLog::new(durable.clone()),
            durable,
            hs_durable: hs,
            sm_durable: SmData::new(),
            pending: Vec::new(),
            sync_scheduled: false,
            epoch_synced: 0,
            sm: SmData::new(),
            applied: 0,
            membership_applied: Membership::default(),
            period,
            commit_seen: 0,
            term_led: 0,
            asleep: false,
            reads_waiting: Vec::new(),
            incoming_snapshot: None,
            down_until_tick: 0,
        }
    }

    /// Starts (or restarts) from the durable state only.
    pub(crate) fn start(&mut self, cfg: Config) {
        self.incarnation += 1;
        self.written = SharedLog::new(self.durable.clone());
        self.sm = self.sm_durable.clone();
        self.applied = self.durable.snapshot.index;
        self.membership_applied = self.durable.snapshot.membership.clone();
        self.pending.clear();
        self.sync_scheduled = false;
        self.epoch_synced = 0;
        self.reads_waiting.clear();
        self.incoming_snapshot = None;
        let raft = Raft::new(
            cfg,
            self.written.clone(),
            self.hs_durable.clone(),
            self.applied,
        );
        let raft = raft.unwrap_or_else(|e| panic!("{}: restart failed: {e}", self.id));
        self.commit_seen = raft.index_commit();
        self.term_led = 0;
        self.raft = Some(raft);
    }

    /// Loses everything not synced.
    pub(crate) fn crash(&mut self) {
        self.raft = None;
        self.incarnation += 1;
        self.pending.clear();
        self.sync_scheduled = false;
        self.reads_waiting.clear();
        self.incoming_snapshot = None;
    }

    pub(crate) fn is_up(&self) -> bool {
        self.raft.is_some()
    }

    /// This node's monotonic clock (ms) at simulated time `now`: one
    /// nominal tick (`UNIT` ms) per `period` units of real time, so a node
    /// whose ticks come faster has a clock that runs faster too.
    pub(crate) fn clock_ms(&self, now: u64) -> u64 {
        now * super::cluster::UNIT / self.period
    }

    /// The core, its clock set to `now` first (as the runtime does before
    /// every batch of inputs).
    pub(crate) fn raft_at(&mut self, now: u64) -> Option<&mut Raft<SharedLog>> {
        let ms = self.clock_ms(now);
        let raft = self.raft.as_mut()?;
        raft.set_now_ms(ms);
        Some(raft)
    }

    /// Whether this node is a leader (maybe a stale one).
    pub(crate) fn is_leader(&self) -> bool {
        self.raft
            .as_ref()
            .is_some_and(|r| r.role() == crate::raft::Role::Leader)
    }
}
