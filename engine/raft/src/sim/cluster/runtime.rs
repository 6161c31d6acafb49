//! The simulated runtime around each core: ticks (lost, late, bunched),
//! process stalls, syncs and their durability reports (late, out of step),
//! and crashes that keep part of a write batch — the faults of `faults.rs`
//! as they reach the core.

use super::{Cluster, Event, Report, UNIT};
use crate::sim::faults::Fault;
use crate::sim::node::TICKS_ELECTION;
use crate::sim::storage::Write;

impl Cluster {
    pub(super) fn on_tick(&mut self, i: usize, inc: u64) {
        if self.nodes[i].incarnation != inc {
            return;
        }
        let node = &mut self.nodes[i];
        node.tick_count += 1;
        let next = node.tick_time(node.tick_count).saturating_sub(self.now);
        self.schedule(next.max(1), Event::Tick(i, inc));
        let node = &mut self.nodes[i];
        node.ticks_owed += 1;
        if node.is_paused(self.now) {
            return;
        }
        let (lost_pm, late_pm) = (
            self.params.faults.tick_lost_pm,
            self.params.faults.tick_late_pm,
        );
        if self.faults && self.rng.chance(lost_pm) {
            self.nodes[i].ticks_owed -= 1;
            self.checker.counters.faults.fire(Fault::TickLost);
            return;
        }
        if self.faults && self.rng.chance(late_pm) {
            self.checker.counters.faults.fire(Fault::TickLate);
            return;
        }
        self.deliver_ticks(i);
    }

    /// Hands every tick owed to the core at once, as the runtime does with
    /// the ticks that fell due while it was busy.
    pub(super) fn deliver_ticks(&mut self, i: usize) {
        let owed = std::mem::take(&mut self.nodes[i].ticks_owed);
        if let Some(raft) = self.nodes[i].raft_at(self.now) {
            for _ in 0..owed.min(1_000) {
                raft.tick();
            }
        }
        self.drain(i);
    }

    /// Stalls process `i` for longer than an election timeout.
    pub(super) fn pause(&mut self, i: usize) {
        let ticks = u64::from(TICKS_ELECTION) + 1 + self.rng.below(u64::from(TICKS_ELECTION));
        let node = &mut self.nodes[i];
        node.paused_until = self.now + ticks * UNIT;
        let inc = node.incarnation;
        self.schedule(ticks * UNIT, Event::Resume(i, inc));
        self.checker.counters.faults.fire(Fault::Pause);
    }

    /// The stall ends: the clock has jumped, and everything that arrived
    /// meanwhile comes at once — a client read first (the case a lease
    /// that outlived the stall would serve wrongly), then the messages and
    /// the ticks, in either order.
    pub(super) fn resume(&mut self, i: usize, inc: u64) {
        if self.nodes[i].incarnation != inc {
            return;
        }
        self.nodes[i].paused_until = 0;
        if self.nodes[i].is_leader() {
            self.issue_read_at(i);
        }
        let ticks_first = self.rng.chance(300);
        if ticks_first {
            self.deliver_ticks(i);
        }
        for f in std::mem::take(&mut self.held[i]) {
            self.deliver(f);
        }
        if !ticks_first {
            self.deliver_ticks(i);
        }
    }

    pub(super) fn on_sync(&mut self, i: usize, inc: u64) {
        let node = &self.nodes[i];
        if node.incarnation != inc {
            return;
        }
        if node.is_paused(self.now) {
            // The disk is done, but the stalled process learns it later.
            let delay = node.paused_until - self.now;
            self.schedule(delay, Event::Sync(i, inc));
            return;
        }
        self.sync(i);
        self.drain(i);
    }

    pub(super) fn sync(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.sync_scheduled = false;
        let mut installed = None;
        let mut outbox = Vec::new();
        for w in std::mem::take(&mut node.pending) {
            let (snapshot, messages) = node.make_durable(w, &mut self.checker);
            installed = snapshot.or(installed);
            outbox.extend(messages);
        }
        let last = node.durable.last_index();
        let report = Report {
            node: i,
            incarnation: node.incarnation,
            index: last,
            term: node.durable.term(last).unwrap_or(0),
            epoch: node.epoch_synced,
            installed,
            late: false,
        };
        self.send_report(report);
        for m in outbox {
            self.send(i, m);
        }
    }

    /// Reports a sync to the core, at once or (the fault) late; reports
    /// stay in order, as the runtime's do.
    pub(super) fn send_report(&mut self, mut r: Report) {
        let late_pm = self.params.faults.report_late_pm;
        r.late = self.faults && self.rng.chance(late_pm);
        // Now and then very late: across two leader changes, when a log
        // can be cut and the same (index, term) written again.
        let delay = match r.late {
            false => 0,
            true if self.rng.chance(50) => 1 + self.rng.below(40 * UNIT),
            true => 1 + self.rng.below(4 * UNIT),
        };
        // Mostly in order, as the runtime reports; sometimes out of step
        // with later writes and reports (the core must not care).
        let in_order = !r.late || self.rng.chance(700);
        let node = &mut self.nodes[r.node];
        let at = if in_order {
            (self.now + delay).max(node.report_last_at)
        } else {
            self.now + delay
        };
        node.report_last_at = node.report_last_at.max(at);
        if at == self.now {
            self.deliver_report(r);
            return;
        }
        if r.late {
            self.checker.counters.faults.fire(Fault::ReportLate);
        }
        self.schedule(at - self.now, Event::Report(Box::new(r)));
    }

    pub(super) fn deliver_report(&mut self, r: Report) {
        let i = r.node;
        let node = &mut self.nodes[i];
        if node.incarnation != r.incarnation {
            return;
        }
        if node.is_paused(self.now) {
            let at = node.paused_until.max(node.report_last_at);
            node.report_last_at = at;
            self.schedule(at - self.now, Event::Report(Box::new(r)));
            return;
        }
        if r.late && r.epoch < node.epoch_handed {
            self.checker
                .counters
                .faults
                .fire(Fault::ReportAcrossTruncation);
        }
        if let Some(raft) = node.raft_at(self.now) {
            if let Some(index) = r.installed {
                raft.on_snapshot_installed(index);
            }
            raft.on_entries_durable(r.index, r.term, r.epoch);
        }
        self.drain(i);
    }

    /// Crashes node `i`; with the torn-batch fault, a random prefix of its
    /// unsynced writes (down to part of one batch of entries) survives.
    pub(super) fn crash_node(&mut self, i: usize) {
        let pending = self.nodes[i].pending.len();
        let (mut writes, mut entries) = (0, 0);
        if self.params.faults.crash_partial && pending > 0 {
            writes = self.rng.below(pending as u64 + 1) as usize;
            if let Some(Write::Entries(es, _)) = self.nodes[i].pending.get(writes) {
                entries = self.rng.below(es.len() as u64) as usize;
            }
            if (writes > 0 && writes < pending) || entries > 0 {
                self.checker.counters.faults.fire(Fault::CrashPartial);
            }
        }
        self.nodes[i].crash_keeping(writes, entries, &mut self.checker);
        self.drop_held(i);
    }

    /// Drops what reached a stalled process that then died; a snapshot
    /// among it fails, as its sender's transfer would.
    pub(super) fn drop_held(&mut self, i: usize) {
        for f in std::mem::take(&mut self.held[i]) {
            self.report_snapshot(&f.msg, f.sender_incarnation, false);
        }
    }
}
