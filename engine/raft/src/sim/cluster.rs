//! The simulated cluster: an event queue in simulated time, a network that
//! drops, duplicates, reorders, delays and partitions, crashes and restarts,
//! clients that propose and read, membership changes and leader transfers,
//! and the runtime faults of `faults.rs`, all drawn from one seeded RNG.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use bytes::Bytes;

use crate::rng::SplitMix64;
use crate::{Body, EntryKind, GroupId, HardState, Message, NodeId, Ready, Role, SnapshotMeta};

mod runtime;

use super::check::{Checker, ReadIssued, decode_write, encode_write};
use super::faults::{Fault, FaultPlan};
use super::node::{DRIFT_PPM_MAX, SimNode, sim_config};
use super::storage::{LogData, SmData, Write};

/// Simulated time units (1 ms each) per nominal tick.
pub(crate) const UNIT: u64 = 20;

/// Clock and tick rate error of a node in a run without the drift fault.
const DRIFT_PPM_PLAIN: u64 = 50_000;

/// A bound on events per run, so a livelock fails instead of hanging.
const EVENTS_MAX: u64 = 2_000_000;

/// Fault rates and durations for one run, in per mille per tick.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) nodes: usize,
    pub(crate) voters: usize,
    pub(crate) ticks_chaos: u64,
    pub(crate) ticks_heal_max: u64,
    pub(crate) drop_pm: u64,
    pub(crate) dup_pm: u64,
    pub(crate) delay_long_pm: u64,
    pub(crate) crash_pm: u64,
    pub(crate) partition_pm: u64,
    pub(crate) propose_pm: u64,
    pub(crate) read_pm: u64,
    pub(crate) transfer_pm: u64,
    pub(crate) reconfig_pm: u64,
    pub(crate) compact_pm: u64,
    pub(crate) hibernate: bool,
    /// Chance per tick that clients go quiet for a while (lets groups hibernate).
    pub(crate) quiet_pm: u64,
    /// Isolate leaders and read from every leader every tick.
    pub(crate) lease_stress: bool,
    /// Nodes (bit i: node i + 1) that campaign without pre-vote.
    pub(crate) pre_vote_off_mask: u64,
    /// Keep one node down after healing.
    pub(crate) heal_keep_down: bool,
    /// The runtime faults of this run.
    pub(crate) faults: FaultPlan,
}

impl Params {
    /// Random parameters for a seed: 3 to 7 nodes, varied fault rates.
    pub(crate) fn random(rng: &mut SplitMix64) -> Self {
        let nodes = 3 + rng.below(5) as usize;
        // A lone voter with learners wins its elections by itself.
        let voters = if rng.chance(120) {
            1
        } else if nodes >= 5 && rng.chance(500) {
            5
        } else {
            3
        };
        let mut params = Self {
            nodes,
            voters,
            ticks_chaos: 250 + rng.below(150),
            ticks_heal_max: 300,
            drop_pm: rng.below(100),
            dup_pm: rng.below(50),
            delay_long_pm: rng.below(80),
            crash_pm: rng.below(25),
            partition_pm: rng.below(25),
            propose_pm: 300 + rng.below(500),
            read_pm: 200 + rng.below(400),
            transfer_pm: rng.below(20),
            reconfig_pm: rng.below(30),
            compact_pm: rng.below(60),
            hibernate: rng.chance(700),
            quiet_pm: rng.below(40),
            lease_stress: rng.chance(300),
            heal_keep_down: rng.chance(300),
            pre_vote_off_mask: if rng.chance(300) { rng.below(128) } else { 0 },
            faults: FaultPlan::random(rng),
        };
        if voters == 1 {
            // It stays the lone voter: no transfers, no new voters.
            params.transfer_pm = 0;
            params.reconfig_pm = 0;
        }
        params
    }
}

enum Event {
    Tick(usize, u64),
    Deliver(Box<InFlight>),
    Sync(usize, u64),
    Report(Box<Report>),
    Resume(usize, u64),
    SnapshotReport(Box<Message>, u64, bool),
    Chaos,
}

/// A durability report on its way from the disk to the core.
struct Report {
    node: usize,
    incarnation: u64,
    index: u64,
    term: u64,
    epoch: u64,
    installed: Option<u64>,
    late: bool,
}

struct InFlight {
    msg: Message,
    snapshot: Option<(u64, SmData)>,
    sender_incarnation: u64,
}

/// One simulated run.
pub(crate) struct Cluster {
    pub(crate) rng: SplitMix64,
    pub(crate) params: Params,
    pub(crate) nodes: Vec<SimNode>,
    pub(crate) checker: Checker,
    group: GroupId,
    seed: u64,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Event>,
    partition: Option<Vec<bool>>,
    partition_until: u64,
    /// Messages that reached a stalled process, handed over on resume.
    held: Vec<Vec<InFlight>>,
    /// One link down while both ends still reach everyone else: a
    /// follower cut from its leader campaigns through a node that still
    /// acknowledges the leader.
    link_cut: Option<(usize, usize)>,
    link_cut_until: u64,
    quiet_until: u64,
    pub(crate) tick: u64,
    faults: bool,
    value_next: u64,
    reads: HashMap<u64, ReadIssued>,
    read_next: u64,
    marker: Option<(usize, u64, u64, u64)>,
    pub(crate) healed_at: Option<u64>,
    trace: bool,
}

fn idx(id: NodeId) -> usize {
    (id.0 - 1) as usize
}

impl Cluster {
    /// A cluster of `params.nodes`, the first `params.voters` bootstrapped.
    pub(crate) fn new(seed: u64, params: Params) -> Self {
        let mut rng = SplitMix64::new(seed);
        let voters: BTreeSet<NodeId> = (1..=params.voters as u64).map(NodeId).collect();
        let learners: BTreeSet<NodeId> = match params.voters {
            1 => (2..=params.nodes as u64).map(NodeId).collect(),
            _ => BTreeSet::new(),
        };
        let bootstrap = crate::Entry {
            term: 1,
            index: 1,
            kind: EntryKind::ConfChange(Box::new(crate::ConfChange::Set {
                voters: voters.clone(),
                learners,
            })),
            payload: Bytes::new(),
        };
        let mut nodes = Vec::new();
        let mut checker = Checker::default();
        let drift_max = if params.faults.drift {
            DRIFT_PPM_MAX
        } else {
            DRIFT_PPM_PLAIN
        };
        for i in 0..params.nodes {
            let id = NodeId(i as u64 + 1);
            // Up to the bound either way; with the drift fault, at the
            // bound itself a third of the time.
            let offset = if params.faults.drift && rng.chance(333) {
                if rng.chance(500) { 0 } else { 2 * drift_max }
            } else {
                rng.below(2 * drift_max + 1)
            };
            let rate = 1_000_000 - drift_max + offset;
            if params.faults.drift && rate.abs_diff(1_000_000) * 10 >= drift_max * 9 {
                checker.counters.faults.fire(Fault::ClockAtDriftBound);
            }
            let (log, hs) = if voters.contains(&id) {
                let log = LogData {
                    snapshot: SnapshotMeta::default(),
                    entries: vec![bootstrap.clone()],
                };
                (
                    log,
                    HardState {
                        term: 1,
                        vote: None,
                        index_commit: 1,
                    },
                )
            } else {
                (LogData::default(), HardState::default())
            };
            nodes.push(SimNode::new(id, log, hs, rate));
        }
        let n = nodes.len();
        let mut c = Self {
            rng,
            nodes,
            checker,
            held: (0..n).map(|_| Vec::new()).collect(),
            link_cut: None,
            link_cut_until: 0,
            group: GroupId(seed % 1000),
            seed,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            partition: None,
            partition_until: 0,
            quiet_until: 0,
            tick: 0,
            faults: true,
            value_next: 1,
            reads: HashMap::new(),
            read_next: 1,
            marker: None,
            healed_at: None,
            trace: std::env::var_os("SAMPAN_SIM_TRACE").is_some(),
            params,
        };
        c.configure_faults();
        for i in 0..c.nodes.len() {
            c.start_node(i);
        }
        c.schedule(UNIT, Event::Chaos);
        c
    }

    /// Notes which runtime faults this run injects, so a summary over many
    /// seeds can tell a fault that never fired.
    fn configure_faults(&mut self) {
        let plan = &self.params.faults;
        let on = [
            (self.params.voters == 1, Fault::LoneVoterElection),
            (plan.tick_lost_pm > 0, Fault::TickLost),
            (plan.tick_late_pm > 0, Fault::TickLate),
            (plan.pause_pm > 0, Fault::Pause),
            (plan.drift, Fault::ClockAtDriftBound),
            (plan.report_late_pm > 0, Fault::ReportLate),
            (plan.report_late_pm > 0, Fault::ReportAcrossTruncation),
            (
                plan.crash_partial && self.params.crash_pm > 0,
                Fault::CrashPartial,
            ),
            (plan.link_cut_pm > 0, Fault::LinkCut),
        ];
        for (enabled, fault) in on {
            if enabled {
                self.checker.counters.faults.configure(fault);
            }
        }
    }

    fn schedule(&mut self, delay: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((self.now + delay, self.seq)));
        self.events.insert(self.seq, event);
    }

    fn start_node(&mut self, i: usize) {
        let hibernate = self.params.hibernate;
        let seed = self.seed.wrapping_add(self.nodes[i].incarnation * 7919);
        let mut cfg = sim_config(self.nodes[i].id, self.group, seed, hibernate);
        // A rolling upgrade: some nodes campaign without pre-vote, so terms
        // can run ahead of the log (the etcd#9586 setting).
        // Upgrades and rollbacks flip it across restarts.
        cfg.pre_vote = self.params.pre_vote_off_mask & (1 << i) == 0
            || (self.nodes[i].incarnation > 0 && self.rng.chance(500));
        self.nodes[i].start(cfg);
        self.drop_held(i);
        let inc = self.nodes[i].incarnation;
        let phase = 1 + self.rng.below(UNIT);
        let node = &mut self.nodes[i];
        node.tick_phase = self.now + phase;
        node.tick_count = 0;
        self.schedule(phase, Event::Tick(i, inc));
    }

    /// Runs until the cluster made progress after healing; panics on any
    /// violated invariant or if progress does not resume in time.
    pub(crate) fn run(&mut self) {
        let mut events = 0u64;
        while let Some(Reverse((time, seq))) = self.queue.pop() {
            events += 1;
            assert!(
                events < EVENTS_MAX,
                "runaway: {events} events by tick {}: {}",
                self.tick,
                self.describe()
            );
            self.now = time;
            let Some(event) = self.events.remove(&seq) else {
                continue;
            };
            match event {
                Event::Tick(i, inc) => self.on_tick(i, inc),
                Event::Deliver(f) => self.deliver(*f),
                Event::Sync(i, inc) => self.on_sync(i, inc),
                Event::Report(r) => self.deliver_report(*r),
                Event::Resume(i, inc) => self.resume(i, inc),
                Event::SnapshotReport(msg, inc, ok) => self.report_snapshot(&msg, inc, ok),
                Event::Chaos => {
                    if self.on_chaos() {
                        return;
                    }
                }
            }
        }
    }

    /// One line per node: role, term, commit, last index, hibernation.
    pub(crate) fn describe(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            match &n.raft {
                Some(r) => out.push_str(&format!(
                    "[{} {:?} t{} c{} l{} a{}{} v{:?} o{:?} l{:?}] ",
                    n.id,
                    r.role(),
                    r.term(),
                    r.index_commit(),
                    r.index_last(),
                    n.applied,
                    if r.is_hibernating() { " zz" } else { "" },
                    r.membership()
                        .voters()
                        .iter()
                        .map(|n| n.0)
                        .collect::<Vec<_>>(),
                    r.membership()
                        .voters_outgoing()
                        .iter()
                        .map(|n| n.0)
                        .collect::<Vec<_>>(),
                    r.membership()
                        .learners()
                        .iter()
                        .map(|n| n.0)
                        .collect::<Vec<_>>(),
                )),
                None => out.push_str(&format!("[{} down] ", n.id)),
            }
        }
        out
    }

    fn blocked(&self, a: usize, b: usize) -> bool {
        let cut = self
            .link_cut
            .is_some_and(|(x, y)| (x, y) == (a, b) || (x, y) == (b, a));
        cut || self
            .partition
            .as_ref()
            .is_some_and(|side| side[a] != side[b])
    }

    fn send(&mut self, from: usize, msg: Message) {
        self.checker
            .check_send(self.nodes[from].id, &msg, self.nodes[from].hs_durable.term);
        if msg.body == Body::TimeoutNow {
            self.checker.counters.transfers += 1;
        }
        let snapshot = match &msg.body {
            Body::Snapshot(meta) => {
                let node = &self.nodes[from];
                assert_eq!(
                    node.durable.snapshot.index, meta.index,
                    "snapshot meta and data disagree"
                );
                Some((meta.index, node.sm_durable.clone()))
            }
            _ => None,
        };
        let sender_incarnation = self.nodes[from].incarnation;
        let copies = if self.faults && self.rng.chance(self.params.drop_pm) {
            0
        } else if self.faults && self.rng.chance(self.params.dup_pm) {
            2
        } else {
            1
        };
        if copies == 0 {
            self.report_snapshot(&msg, sender_incarnation, false);
        }
        for _ in 0..copies {
            let long = self.faults && self.rng.chance(self.params.delay_long_pm);
            let delay = if long {
                1 + self.rng.below(8 * UNIT)
            } else if self.params.lease_stress {
                // Fast links: a new leader commits as early as it can.
                1 + self.rng.below(UNIT / 4)
            } else {
                1 + self.rng.below(UNIT)
            };
            let f = InFlight {
                msg: msg.clone(),
                snapshot: snapshot.clone(),
                sender_incarnation,
            };
            self.schedule(delay, Event::Deliver(Box::new(f)));
        }
    }

    fn report_snapshot(&mut self, msg: &Message, sender_incarnation: u64, ok: bool) {
        if !matches!(msg.body, Body::Snapshot(_)) {
            return;
        }
        let from = idx(msg.from);
        if self.nodes[from].incarnation != sender_incarnation {
            return;
        }
        if self.nodes[from].is_paused(self.now) {
            let delay = self.nodes[from].paused_until - self.now;
            let event = Event::SnapshotReport(Box::new(msg.clone()), sender_incarnation, ok);
            self.schedule(delay, event);
            return;
        }
        if let Some(raft) = self.nodes[from].raft_at(self.now) {
            raft.report_snapshot(msg.to, ok);
        }
        self.drain(from);
    }

    fn deliver(&mut self, f: InFlight) {
        let (from, to) = (idx(f.msg.from), idx(f.msg.to));
        if self.nodes[to].is_up() && self.nodes[to].is_paused(self.now) {
            self.held[to].push(f);
            return;
        }
        if !self.nodes[to].is_up() || self.blocked(from, to) {
            self.report_snapshot(&f.msg, f.sender_incarnation, false);
            return;
        }
        let is_snapshot = f.snapshot.is_some();
        self.nodes[to].incoming_snapshot = f.snapshot;
        if let Some(raft) = self.nodes[to].raft_at(self.now) {
            raft.step(f.msg.clone()).expect("step");
        }
        self.drain(to);
        self.nodes[to].incoming_snapshot = None;
        if is_snapshot {
            self.report_snapshot(&f.msg, f.sender_incarnation, true);
        }
    }

    /// Drains every `Ready` of node `i` and checks the invariants.
    pub(crate) fn drain(&mut self, i: usize) {
        for _ in 0..16 {
            let Some(raft) = self.nodes[i].raft_at(self.now) else {
                return;
            };
            if !raft.has_ready() {
                break;
            }
            let ready = raft.ready().expect("ready");
            self.handle_ready(i, ready);
        }
        self.check_node(i);
    }

    fn handle_ready(&mut self, i: usize, rd: Ready) {
        self.nodes[i].epoch_handed = rd.log_epoch;
        for m in rd.messages {
            self.send(i, m);
        }
        if let Some(hs) = rd.hard_state {
            self.nodes[i].pending.push(Write::HardState(hs));
        }
        if let Some(meta) = rd.snapshot {
            self.install_snapshot(i, meta);
        }
        if !rd.entries.is_empty() {
            self.append(i, rd.entries, rd.log_epoch);
        }
        if !rd.messages_persisted.is_empty() {
            if self.nodes[i].pending.is_empty() {
                for m in rd.messages_persisted {
                    self.send(i, m);
                }
            } else {
                self.nodes[i]
                    .pending
                    .push(Write::Messages(rd.messages_persisted));
            }
        }
        for e in &rd.entries_committed {
            self.apply(i, e);
        }
        for r in rd.reads_failed {
            self.reads
                .remove(&u64::from_le_bytes(r[..].try_into().expect("read ctx")));
        }
        self.nodes[i].reads_waiting.extend(rd.reads);
        self.serve_reads(i);
        let node = &mut self.nodes[i];
        if !node.pending.is_empty() && !node.sync_scheduled {
            node.sync_scheduled = true;
            let inc = node.incarnation;
            // With late reports on, the disk is sometimes slow too: a
            // report from before a truncation then finds the entries
            // written again still unsynced.
            let slow = self.faults && self.params.faults.report_late_pm > 0 && self.rng.chance(100);
            let delay = if slow {
                self.rng.below(8 * UNIT)
            } else if self.params.lease_stress {
                self.rng.below(3)
            } else {
                self.rng.below(UNIT / 2)
            };
            self.schedule(delay, Event::Sync(i, inc));
        }
    }

    fn install_snapshot(&mut self, i: usize, meta: SnapshotMeta) {
        let node = &mut self.nodes[i];
        let (index, data) = node
            .incoming_snapshot
            .take()
            .expect("snapshot data arrived with the message");
        assert_eq!(
            index, meta.index,
            "installing a snapshot whose data did not arrive"
        );
        node.written.0.borrow_mut().install(meta.clone());
        node.sm = data.clone();
        node.applied = meta.index;
        node.membership_applied = meta.membership.clone();
        node.reads_waiting.clear();
        node.pending.push(Write::Snapshot(meta, data));
        self.checker.counters.snapshots_installed += 1;
    }

    fn append(&mut self, i: usize, entries: Vec<crate::Entry>, epoch: u64) {
        let node = &mut self.nodes[i];
        node.written.0.borrow_mut().truncate_append(&entries);
        node.pending.push(Write::Entries(entries, epoch));
    }

    fn apply(&mut self, i: usize, e: &crate::Entry) {
        let node = &mut self.nodes[i];
        assert_eq!(
            e.index,
            node.applied + 1,
            "{}: applied out of order",
            node.id
        );
        self.checker.on_apply(node.id, e);
        match &e.kind {
            EntryKind::Normal => {
                if let Some((key, value)) = decode_write(&e.payload) {
                    node.sm.insert(key, value);
                }
            }
            EntryKind::ConfChange(cc) => {
                self.checker.counters.conf_changes += 1;
                node.membership_applied = node
                    .membership_applied
                    .apply(cc)
                    .expect("committed conf change applies");
            }
            EntryKind::NoOp => {}
        }
        node.applied = e.index;
        if let Some(raft) = node.raft.as_mut() {
            raft.on_applied(e.index);
        }
    }

    fn serve_reads(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let applied = node.applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = node
            .reads_waiting
            .drain(..)
            .partition(|r| r.index <= applied);
        node.reads_waiting = waiting;
        for r in ready {
            let id = u64::from_le_bytes(r.context[..].try_into().expect("read ctx"));
            let Some(read) = self.reads.remove(&id) else {
                continue;
            };
            let value = self.nodes[i].sm.get(&read.key).copied().unwrap_or(0);
            let node_id = self.nodes[i].id;
            self.checker
                .check_read(node_id, &read, value, r.index, applied);
        }
    }

    /// Per-node invariants after an input: one leader per term, leader
    /// completeness, commit never going back.
    fn check_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let Some(raft) = node.raft.as_ref() else {
            return;
        };
        // Durability: what the core counts durable is on the disk.
        let claimed = raft.log.index_durable();
        if !raft.log.is_snapshot_pending() && claimed > node.durable.snapshot.index {
            assert_eq!(
                node.durable.term(claimed),
                raft.term_at(claimed),
                "{}: the core counts index {claimed} durable; the disk disagrees",
                node.id
            );
        }
        let commit = raft.index_commit();
        assert!(
            commit >= node.commit_seen,
            "{}: commit went back {} -> {commit}",
            node.id,
            node.commit_seen
        );
        for index in node.commit_seen + 1..=commit {
            self.checker
                .on_commit(node.id, index, raft.term_at(index), raft.term());
        }
        node.commit_seen = commit;
        if raft.is_hibernating() && !node.asleep {
            self.checker.counters.hibernations += 1;
        }
        node.asleep = raft.is_hibernating();
        if raft.role() == Role::Leader && node.term_led != raft.term() {
            node.term_led = raft.term();
            if self.params.voters == 1 {
                self.checker.counters.faults.fire(Fault::LoneVoterElection);
            }
            self.checker.on_leader(raft.term(), node.id);
            self.checker
                .check_leader_log(node.id, raft.term(), raft.index_last(), |j| raft.term_at(j));
            let term = raft.term();
            self.check_no_lease_at_election(i, term);
        }
    }

    /// Lease safety, checked where it must hold rather than through a read
    /// that happens to miss a write: when node `i` wins `term`, no leader
    /// of an earlier term may still hold a valid lease by its own clock.
    fn check_no_lease_at_election(&mut self, i: usize, term: u64) {
        let now = self.now;
        for j in (0..self.nodes.len()).filter(|&j| j != i) {
            let id = self.nodes[j].id;
            let Some(raft) = self.nodes[j].raft_at(now) else {
                continue;
            };
            assert!(
                raft.term() >= term || !raft.lease_valid(),
                "n{}: won term {term} while {id} (term {}) still holds a lease",
                i + 1,
                raft.term()
            );
        }
    }
}

impl Cluster {
    /// Once per nominal tick: faults, clients, admin; after the chaos
    /// phase, heal and wait for progress. True when the run is over.
    fn on_chaos(&mut self) -> bool {
        self.tick += 1;
        if self.trace && self.tick.is_multiple_of(10) {
            eprintln!("tick {}: {}", self.tick, self.describe());
        }
        self.schedule(UNIT, Event::Chaos);
        if self.tick.is_multiple_of(5) {
            self.report_liveness();
        }
        if self.tick < self.params.ticks_chaos {
            self.inject_faults();
            self.client_ops();
            return false;
        }
        if self.healed_at.is_none() {
            self.heal();
        }

        if self.tick > self.params.ticks_chaos + self.params.ticks_heal_max {
            panic!(
                "no progress within {} ticks after healing: {}",
                self.params.ticks_heal_max,
                self.describe()
            );
        }
        self.progress_resumed()
    }

    fn report_liveness(&mut self) {
        for a in 0..self.nodes.len() {
            for b in 0..self.nodes.len() {
                let stalled = self.nodes[b].is_paused(self.now);
                let gone = !self.nodes[b].is_up() || stalled || self.blocked(a, b);
                let can_hear = self.nodes[a].is_up() && !self.nodes[a].is_paused(self.now);
                if a == b || !gone || !can_hear {
                    continue;
                }
                let id = self.nodes[b].id;
                if let Some(raft) = self.nodes[a].raft_at(self.now) {
                    raft.on_node_unreachable(id);
                }
                self.drain(a);
            }
        }
    }

    fn inject_faults(&mut self) {
        let n = self.nodes.len();
        for i in 0..n {
            if !self.nodes[i].is_up() && self.tick >= self.nodes[i].down_until_tick {
                self.start_node(i);
            }
        }
        let down = self.nodes.iter().filter(|n| !n.is_up()).count();
        let sleeping_leader = (0..n).find(|&i| self.nodes[i].is_leader() && self.nodes[i].asleep);
        if let Some(i) = sleeping_leader
            && down < 2
            && self.rng.chance(100)
        {
            // The case hibernation must survive: its leader dies in its sleep.
            self.crash_node(i);
            self.nodes[i].down_until_tick = self.tick + 20 + self.rng.below(40);
            self.checker.counters.crashes += 1;
            self.checker.counters.hibernated_leader_crashes += 1;
        } else if down < 2 && self.rng.chance(self.params.crash_pm) {
            let i = self.pick_crash_victim();
            self.checker.counters.crashes += 1;
            if self.nodes[i].is_leader() && self.nodes[i].asleep {
                self.checker.counters.hibernated_leader_crashes += 1;
            }
            self.crash_node(i);
            self.nodes[i].down_until_tick = self.tick + 5 + self.rng.below(40);
        }
        self.inject_link_cut();
        let pause_pm = self.params.faults.pause_pm;
        for i in 0..n {
            let node = &self.nodes[i];
            if node.is_up() && !node.is_paused(self.now) && self.rng.chance(pause_pm) {
                self.pause(i);
            }
        }
        if self.partition.is_some() && self.tick >= self.partition_until {
            self.partition = None;
        } else if self.partition.is_none() && self.rng.chance(self.params.partition_pm) {
            let leader = (0..n).find(|&i| self.nodes[i].is_leader());
            let lone = match leader {
                Some(l) if self.params.lease_stress => l,
                _ => self.rng.below(n as u64) as usize,
            };
            let split: Vec<bool> = if self.rng.chance(500) {
                (0..n).map(|i| i == lone).collect()
            } else {
                (0..n).map(|_| self.rng.chance(500)).collect()
            };
            self.partition = Some(split);
            self.checker.counters.partitions += 1;
            self.partition_until = self.tick + 10 + self.rng.below(60);
        }
    }

    /// Cuts one link, from a leader to a follower when there is a leader.
    fn inject_link_cut(&mut self) {
        if self.link_cut.is_some() && self.tick >= self.link_cut_until {
            self.link_cut = None;
        }
        let n = self.nodes.len() as u64;
        if self.link_cut.is_some() || !self.rng.chance(self.params.faults.link_cut_pm) {
            return;
        }
        let a = match (0..self.nodes.len()).find(|&i| self.nodes[i].is_leader()) {
            Some(l) => l,
            None => self.rng.below(n) as usize,
        };
        let b = (a + 1 + self.rng.below(n - 1) as usize) % self.nodes.len();
        self.link_cut = Some((a, b));
        self.link_cut_until = self.tick + 10 + self.rng.below(50);
        self.checker.counters.faults.fire(Fault::LinkCut);
    }

    /// Prefers crashing a leader (the interesting case), sometimes anyone.
    fn pick_crash_victim(&mut self) -> usize {
        let leaders: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_leader())
            .collect();
        if !leaders.is_empty() && self.rng.chance(500) {
            return leaders[self.rng.below(leaders.len() as u64) as usize];
        }
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_up())
            .collect();
        up[self.rng.below(up.len() as u64) as usize]
    }

    /// A node that believes it leads and is not stalled (clients reach it).
    fn pick_leader(&mut self) -> Option<usize> {
        let leaders: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_leader() && !self.nodes[i].is_paused(self.now))
            .collect();
        if leaders.is_empty() {
            return None;
        }
        Some(leaders[self.rng.below(leaders.len() as u64) as usize])
    }

    fn client_ops(&mut self) {
        if self.tick < self.quiet_until {
            return;
        }
        if self.rng.chance(self.params.quiet_pm) {
            self.quiet_until = self.tick + 30 + self.rng.below(60);
            return;
        }
        if self.rng.chance(self.params.propose_pm) {
            self.propose_write();
        }
        if self.rng.chance(self.params.read_pm) {
            self.issue_read();
        }
        if self.params.lease_stress {
            // Every node that believes it leads serves a read every tick.
            for i in 0..self.nodes.len() {
                if self.nodes[i].is_leader() && !self.nodes[i].is_paused(self.now) {
                    self.issue_read_at(i);
                }
            }
        }
        if self.rng.chance(self.params.transfer_pm) {
            self.transfer();
        }
        if self.rng.chance(self.params.reconfig_pm) {
            self.reconfigure();
        }
        for i in 0..self.nodes.len() {
            if self.rng.chance(self.params.compact_pm) && !self.nodes[i].is_paused(self.now) {
                self.compact(i);
            }
        }
    }

    fn propose_write(&mut self) {
        let i = match self.pick_leader() {
            Some(i) if !self.rng.chance(100) => i,
            _ => self.rng.below(self.nodes.len() as u64) as usize,
        };
        let key = self.rng.below(4) as u8;
        let value = self.value_next;
        self.value_next += 1;
        if self.nodes[i].is_paused(self.now) {
            return;
        }
        if let Some(raft) = self.nodes[i].raft_at(self.now) {
            let _ = raft.propose(encode_write(key, value));
        }
        self.drain(i);
    }

    fn issue_read(&mut self) {
        if let Some(i) = self.pick_leader() {
            self.issue_read_at(i);
        }
    }

    fn issue_read_at(&mut self, i: usize) {
        let id = self.read_next;
        self.read_next += 1;
        let key = self.rng.below(4) as u8;
        let commit_at_issue = self.checker.commit_max;
        let ctx = Bytes::copy_from_slice(&id.to_le_bytes());
        let lease = self.nodes[i]
            .raft_at(self.now)
            .is_some_and(|r| r.lease_valid());
        let ok = self.nodes[i]
            .raft
            .as_mut()
            .is_some_and(|r| r.read_index(ctx).is_ok());
        if ok {
            let read = ReadIssued {
                key,
                commit_at_issue,
                lease,
            };
            self.reads.insert(id, read);
            self.checker.counters.reads_lease += u64::from(lease);
        }
        self.drain(i);
    }

    fn transfer(&mut self) {
        let Some(i) = self.pick_leader() else { return };
        let Some(raft) = self.nodes[i].raft.as_ref() else {
            return;
        };
        let voters: Vec<NodeId> = raft.membership().voters().iter().copied().collect();
        let to = voters[self.rng.below(voters.len() as u64) as usize];
        if let Some(raft) = self.nodes[i].raft_at(self.now) {
            let _ = raft.transfer_leader(to);
        }
        self.drain(i);
    }

    fn reconfigure(&mut self) {
        let Some(i) = self.pick_leader() else { return };
        if self.rng.chance(200) {
            if let Some(raft) = self.nodes[i].raft_at(self.now) {
                let _ = raft.cancel_membership_change();
            }
            return;
        }
        let n = self.nodes.len() as u64;
        let size = (3 + self.rng.below(3)).min(n);
        let mut all: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let mut voters = BTreeSet::new();
        while voters.len() < size as usize {
            let k = self.rng.below(all.len() as u64) as usize;
            voters.insert(all.swap_remove(k));
        }
        let learners: BTreeSet<NodeId> = all.into_iter().filter(|_| self.rng.chance(500)).collect();
        if let Some(raft) = self.nodes[i].raft_at(self.now) {
            let _ = raft.change_membership(voters, learners);
        }
        self.drain(i);
    }

    /// Takes a snapshot at the applied index and purges the log up to it.
    fn compact(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        // Only what is durable may be purged: wait for pending writes.
        let synced = node.pending.is_empty();
        if !node.is_up() || !synced || node.applied < node.durable.snapshot.index + 5 {
            return;
        }
        let index = node.applied;
        let Some(term) = node.durable.term(index) else {
            return;
        };
        let meta = SnapshotMeta {
            index,
            term,
            membership: node.membership_applied.clone(),
        };
        node.written.0.borrow_mut().compact(meta.clone());
        node.durable.compact(meta);
        node.sm_durable = node.sm.clone();
    }

    fn heal(&mut self) {
        self.healed_at = Some(self.tick);
        self.faults = false;
        self.partition = None;
        self.link_cut = None;
        // Sometimes one node stays down: a majority must still make progress.
        let n = self.nodes.len() as u64;
        let leader = (0..self.nodes.len()).find(|&i| self.nodes[i].is_leader());
        let pick = match leader {
            // A lone voter's group cannot go on without it: a learner stays down.
            _ if self.params.voters == 1 => 1 + self.rng.below(n - 1) as usize,
            Some(l) if self.rng.chance(500) => l,
            _ => self.rng.below(n) as usize,
        };
        let keep_down = self.params.heal_keep_down.then_some(pick);
        for i in 0..self.nodes.len() {
            if Some(i) == keep_down {
                self.crash_node(i);
            } else if !self.nodes[i].is_up() {
                self.start_node(i);
            }
        }
    }

    /// Whether a leader committed a fresh entry that all its members applied.
    fn progress_resumed(&mut self) -> bool {
        let Some(i) = (0..self.nodes.len()).find(|&i| self.nodes[i].is_leader()) else {
            return false;
        };
        let raft = self.nodes[i].raft.as_ref().expect("leader is up");
        let (term, inc) = (raft.term(), self.nodes[i].incarnation);
        let fresh = matches!(self.marker, Some((m, t, mi, _)) if m == i && t == term && mi == inc);
        if !fresh {
            let value = self.value_next;
            self.value_next += 1;
            let raft = self.nodes[i].raft_at(self.now).expect("leader is up");
            if let Ok(index) = raft.propose(encode_write(0, value)) {
                self.marker = Some((i, term, inc, index));
            }
            self.drain(i);
            return false;
        }
        let Some((_, _, _, index)) = self.marker else {
            return false;
        };
        // Done when the marker and everything else is committed, applied by
        // every live member, and all agree on a membership that is not joint
        // (a group must never stay joint: etcd#21694).
        let Some(leader) = self.nodes[i].raft.as_ref() else {
            return false;
        };
        let commit = leader.index_commit();
        let settled = leader.term_at(index) == Some(term)
            && commit >= index
            && commit == leader.index_last()
            && !leader.membership().is_joint();
        let membership = leader.membership().clone();
        settled
            && membership.nodes().iter().all(|&m| {
                let node = &self.nodes[idx(m)];
                let agrees = node
                    .raft
                    .as_ref()
                    .is_some_and(|r| *r.membership() == membership);
                !node.is_up() || (node.applied >= commit && agrees)
            })
    }
}
