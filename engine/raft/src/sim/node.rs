//! One simulated node: the core, its fake disk (written and durable), its
//! state machine and its drifting clock.

use crate::{Config, GroupId, HardState, Membership, NodeId, Raft, ReadState};

use super::check::Checker;
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
    /// This node's clock rate (and tick rate), in millionths of real time.
    pub(crate) rate_ppm: u64,
    /// Where this node's clock started.
    pub(crate) clock_offset_ms: u64,
    /// When this incarnation's tick 0 fell, and how many ticks fell since.
    pub(crate) tick_phase: u64,
    pub(crate) tick_count: u64,
    /// Ticks held back (late, or due while paused), handed over together.
    pub(crate) ticks_owed: u64,
    /// The process is stalled until this (simulated) time.
    pub(crate) paused_until: u64,
    /// The log epoch of the newest `Ready`.
    pub(crate) epoch_handed: u64,
    /// When the newest durability report reaches the core (they stay in
    /// order, however late).
    pub(crate) report_last_at: u64,
    pub(crate) commit_seen: u64,
    pub(crate) term_led: u64,
    pub(crate) asleep: bool,
    pub(crate) reads_waiting: Vec<ReadState>,
    pub(crate) incoming_snapshot: Option<(u64, SmData)>,
    pub(crate) down_until_tick: u64,
}

/// The election timeout of every simulated node, in ticks.
pub(crate) const TICKS_ELECTION: u32 = 10;

/// How far two simulated clocks may drift apart in one election timeout.
pub(crate) const CLOCK_DRIFT_MS: u64 = 2 * super::cluster::UNIT;

/// The largest clock (and tick) rate error, in millionths, that keeps two
/// clocks within [`CLOCK_DRIFT_MS`] of each other over an election timeout:
/// one may run that much fast and the other that much slow.
pub(crate) const DRIFT_PPM_MAX: u64 =
    CLOCK_DRIFT_MS * 1_000_000 / (2 * TICKS_ELECTION as u64 * super::cluster::UNIT);

/// The configuration every simulated node runs with.
pub(crate) fn sim_config(id: NodeId, group: GroupId, seed: u64, hibernate: bool) -> Config {
    let mut cfg = Config::new(id, group);
    cfg.ticks_election = TICKS_ELECTION;
    cfg.ticks_heartbeat = 2;
    cfg.tick_ms = super::cluster::UNIT;
    cfg.clock_drift_ms = Some(CLOCK_DRIFT_MS);
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
    pub(crate) fn new(id: NodeId, durable: LogData, hs: HardState, rate_ppm: u64) -> Self {
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
            rate_ppm,
            clock_offset_ms: u64::from(id.0 as u32) * 7_919,
            tick_phase: 0,
            tick_count: 0,
            ticks_owed: 0,
            paused_until: 0,
            epoch_handed: 0,
            report_last_at: 0,
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
        self.epoch_handed = 0;
        self.ticks_owed = 0;
        self.paused_until = 0;
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

    /// Crashes after the first `writes` unsynced writes reached the disk,
    /// and `entries` entries of the one after them (a torn batch: the
    /// runtime writes in order, so the disk holds a prefix). Messages that
    /// waited for those writes are lost with the process.
    pub(crate) fn crash_keeping(&mut self, writes: usize, entries: usize, checker: &mut Checker) {
        let mut pending = std::mem::take(&mut self.pending).into_iter();
        for w in pending.by_ref().take(writes) {
            self.make_durable(w, checker);
        }
        if let Some(Write::Entries(es, epoch)) = pending.next()
            && entries > 0
        {
            let kept = Write::Entries(es[..entries.min(es.len())].to_vec(), epoch);
            self.make_durable(kept, checker);
        }
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

    /// Applies one write to the disk; returns the snapshot index it
    /// installed and the messages it released. Log matching is checked on
    /// entries as they become durable: an entry written but lost in a crash
    /// before anyone saw it (a lone voter's, whose term was not durable
    /// either) may be written differently by the next incarnation.
    pub(crate) fn make_durable(
        &mut self,
        w: Write,
        checker: &mut Checker,
    ) -> (Option<u64>, Vec<crate::Message>) {
        if let Write::Entries(es, _) = &w
            && let Some(first) = es.first()
        {
            let mut prev = self.durable.term(first.index - 1);
            for e in es {
                checker.on_append(self.id, e, prev);
                prev = Some(e.term);
            }
        }
        match w {
            Write::HardState(hs) => self.hs_durable = hs,
            Write::Snapshot(meta, data) => {
                let index = meta.index;
                self.durable.install(meta);
                self.sm_durable = data;
                return (Some(index), Vec::new());
            }
            Write::Entries(es, epoch) => {
                self.durable.truncate_append(&es);
                self.epoch_synced = epoch;
            }
            Write::Messages(ms) => return (None, ms),
        }
        (None, Vec::new())
    }

    /// This node's monotonic clock (ms) at simulated time `now` (1 unit is
    /// 1 ms of real time): it runs at `rate_ppm`, as its ticks do.
    pub(crate) fn clock_ms(&self, now: u64) -> u64 {
        self.clock_offset_ms + now * self.rate_ppm / 1_000_000
    }

    /// When (simulated time) this incarnation's tick number `k` falls.
    pub(crate) fn tick_time(&self, k: u64) -> u64 {
        self.tick_phase + k * super::cluster::UNIT * 1_000_000 / self.rate_ppm
    }

    /// Whether the process is stalled at `now`.
    pub(crate) fn is_paused(&self, now: u64) -> bool {
        now < self.paused_until
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
            .is_some_and(|r| r.role() == crate::Role::Leader)
    }
}
