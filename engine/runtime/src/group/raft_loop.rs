//! The Raft loop: the one fiber that owns a group's core. It takes events
//! from the inbox in batches, feeds them to the core, and routes each
//! `Ready` as its contract says: leader messages out at once, writes to the
//! persist fiber (in order), committed entries and reads to the apply
//! fiber.

use super::gate::ReadGate;
use super::net::WakeList;
use super::snapshot::{
    ChunkReply, SnapJob, SnapshotFiber, SnapshotPolicy, Snapshots, Transfer, restore,
};
use super::view::StorageView;
use super::{
    ApplyJob, Event, GroupError, GroupHandle, GroupStatus, Outbox, ProposeReply, Reply,
    StorageFault, TickBox, apply, persist,
};
use crate::constants::{
    APPLY_QUEUE_CAPACITY, INBOX_CAPACITY, PERSIST_QUEUE_CAPACITY, SHARD_TAIL_CACHE_BYTES,
    SNAPSHOT_QUEUE_CAPACITY, TAIL_CACHE_BYTES,
};
use crate::raft::{
    self, ConfChange, EntryKind, HardState, NodeId, Raft, RaftError, Ready, Role, SnapshotMeta,
};
use crate::state_machine::{self, RoleChange, StateMachine};
use crate::wire::run_from_entries;
use crate::wire::{ChunkAnswer, ChunkStatus, SnapshotChunk, decode_snapshot_meta};
use bytes::Bytes;
use sampan_fiber::{FiberGroup, Receiver, Sender, TaskClass, Ticker, channel, yield_if_needed};
use sampan_storage::{RaftLog, SnapshotManager, StatusFile, Vfs};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;

/// Everything a group replica is made of.
pub struct GroupParts<L, V: Vfs, S> {
    /// The core's settings (node id, group id, ticks...).
    pub cfg: raft::Config,
    /// The group's log.
    pub log: L,
    /// The group's status file (term, vote, commit).
    pub status: StatusFile<V>,
    /// The state machine.
    pub sm: Box<dyn StateMachine>,
    /// The group's snapshot store.
    pub snapshots: S,
    /// When to take snapshots and purge the log.
    pub policy: SnapshotPolicy,
    /// Where messages to peers go.
    pub outbox: Rc<dyn Outbox>,
    /// Voters and learners of a brand-new group (written as entry 1 when
    /// the log and status are empty).
    pub bootstrap: Option<(BTreeSet<NodeId>, BTreeSet<NodeId>)>,
    /// Length of one tick, for a group with a ticker of its own; `None`
    /// when the shard's one ticker drives every group
    /// ([`super::net::drive_ticks`]), as a host of many groups should.
    pub tick: Option<Duration>,
    /// With the shard's ticker (`tick: None`): where the group puts its
    /// id when it wakes from hibernation (its host puts it there when it
    /// enters the shard's directory), so the ticker visits only awake
    /// groups (10,000 idle groups cost it a walk
    /// over all of them 20 times a second before).
    pub woken: Option<WakeList>,
}

/// The kind of a failure the core met reading the log: the read itself
/// failed, or what it read does not fit (entries missing).
fn log_fault(e: &raft::LogError) -> StorageFault {
    match e {
        raft::LogError::Storage { .. } => StorageFault::Io,
        _ => StorageFault::Corrupt,
    }
}

fn storage(group: u64) -> impl Fn(sampan_storage::StorageError) -> GroupError {
    move |e| super::storage_error(group, &e)
}

/// Writes entry 1 (the initial membership) of a brand-new group, so every
/// founding member starts from the same log.
async fn bootstrap<L: RaftLog, V: Vfs>(
    group: u64,
    log: &L,
    status: &mut StatusFile<V>,
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
) -> Result<(), GroupError> {
    let entry = raft::Entry {
        term: 1,
        index: 1,
        kind: EntryKind::ConfChange(Box::new(ConfChange::Set { voters, learners })),
        payload: Bytes::new(),
    };
    let last = log
        .append(&run_from_entries(&[entry]))
        .await
        .map_err(storage(group))?;
    log.sync(last).await.map_err(storage(group))?;
    let hs = sampan_storage::HardState {
        term: 1,
        vote: None,
        commit_index: 1,
        config: Vec::new(),
    };
    status.save(&hs).await.map_err(storage(group))?;
    sampan_fiber::group_log!(info, group, "group {group}: bootstrapped");
    Ok(())
}

/// Loads the newest snapshot into `sm` and returns its description, and
/// lines the log up behind it. A snapshot that does not read back whole is
/// refused with an error naming its directory: this replica then does not
/// start (the previous snapshot cannot stand in, as the log it needs was
/// purged), and the others on the node go on.
async fn recover_snapshot<L: RaftLog, S: SnapshotManager>(
    group: u64,
    log: &L,
    store: &S,
    sm: &mut dyn StateMachine,
) -> Result<Option<SnapshotMeta>, GroupError> {
    // Past reading the store, what fails here is the data: a snapshot that
    // does not read back, or a log that does not join it.
    let fail = |reason: String| GroupError::Storage {
        group,
        fault: StorageFault::Corrupt,
        reason,
    };
    let Some(stored) = store.latest().await.map_err(storage(group))? else {
        return Ok(None);
    };
    let path = store.location(&stored);
    let meta = decode_snapshot_meta(bytes::Bytes::from(stored.config.clone()))
        .map_err(|e| fail(format!("snapshot {path}: bad meta: {e}")))?;
    if meta.index != stored.last_index || meta.term != stored.last_term {
        return Err(fail(format!(
            "snapshot {path}: meta names index {} term {}",
            meta.index, meta.term
        )));
    }
    if log.first_index() > meta.index + 1 {
        return Err(fail(format!(
            "the log starts at {}, after the snapshot {path} (index {}): entries are missing",
            log.first_index(),
            meta.index
        )));
    }
    let started = std::time::Instant::now();
    restore(sm, store, &stored).await.map_err(fail)?;
    // A received snapshot the log was not yet reset to (a crash between
    // the two), or a log that disagrees with it: the snapshot wins.
    let agrees = log.term(meta.index).ok().flatten() == Some(meta.term);
    if !agrees {
        log.install_snapshot(meta.index, meta.term)
            .await
            .map_err(|e| fail(e.to_string()))?;
    }
    sampan_fiber::group_log!(
        info,
        group,
        "group {group}: restored the snapshot at {} ({} bytes) in {:?}",
        meta.index,
        stored.size,
        started.elapsed()
    );
    Ok(Some(meta))
}

/// Starts a group replica's fibers (Raft loop, persist, apply, snapshot,
/// ticker) in `fibers`, on the current shard, and returns its handle. A
/// brand-new group is bootstrapped from `parts.bootstrap`; an existing one
/// recovers from its newest snapshot, status file and log (its state
/// machine replays the log after the snapshot).
pub async fn start<L, V, S>(
    parts: GroupParts<L, V, S>,
    fibers: &FiberGroup,
) -> Result<GroupHandle, GroupError>
where
    L: RaftLog + Clone + 'static,
    V: Vfs,
    S: SnapshotManager,
{
    let GroupParts {
        cfg,
        log,
        mut status,
        mut sm,
        snapshots,
        policy,
        outbox,
        bootstrap: boot,
        tick,
        woken,
    } = parts;
    let group = cfg.group.0;
    let node = cfg.id.0;
    let recovered = recover_snapshot(group, &log, &snapshots, sm.as_mut()).await?;
    if let Some((voters, learners)) = boot
        && status.state().term == 0
        && log.last_index() == 0
        && recovered.is_none()
    {
        bootstrap(group, &log, &mut status, voters, learners).await?;
    }
    let snapshot = Rc::new(RefCell::new(recovered.clone().unwrap_or_default()));
    let applied = recovered.as_ref().map_or(0, |m| m.index);
    let raft = open_core(cfg, &log, &status, snapshot.clone(), applied)?;
    let log_reader = log.clone();
    let stamp = sm.stamp();
    let snaps = Rc::new(Snapshots::new(snapshots, snapshot.clone(), policy));
    let (inbox_tx, inbox_rx) = channel(INBOX_CAPACITY);
    let (persist_tx, persist_rx) = channel(PERSIST_QUEUE_CAPACITY);
    let (apply_tx, apply_rx) = channel(APPLY_QUEUE_CAPACITY);
    let (snap_tx, snap_rx) = channel(SNAPSHOT_QUEUE_CAPACITY);
    let spawn_err = |e: sampan_fiber::FiberError| GroupError::Refused {
        group,
        reason: e.to_string(),
    };
    fibers
        .spawn(
            TaskClass::Latency,
            "persist",
            persist::run(
                group,
                log.clone(),
                status,
                persist_rx,
                inbox_tx.clone(),
                outbox.clone(),
                snapshot.clone(),
            ),
        )
        .map_err(spawn_err)?;
    let gate = Rc::new(ReadGate::new(group, Rc::new(RefCell::new(sm)), applied));
    let start = apply::ApplyStart {
        gate: gate.clone(),
        applied,
        applied_term: recovered.as_ref().map_or(0, |m| m.term),
        membership: recovered.map(|m| m.membership).unwrap_or_default(),
        snaps: snaps.clone(),
        snap_jobs: snap_tx.clone(),
    };
    fibers
        .spawn(
            TaskClass::Throughput,
            "apply",
            apply::run(group, start, apply_rx, inbox_tx.clone()),
        )
        .map_err(spawn_err)?;
    let snapshot_fiber = SnapshotFiber {
        group,
        node,
        log: log.clone(),
        snaps: snaps.clone(),
        gate: gate.clone(),
        inbox: inbox_tx.clone(),
        apply: apply_tx.clone(),
    };
    fibers
        .spawn(
            TaskClass::Background,
            "snapshot",
            snapshot_fiber.run(snap_rx),
        )
        .map_err(spawn_err)?;
    let ticks = Rc::new(TickBox::default());
    if let Some(period) = tick {
        fibers
            .spawn(
                TaskClass::Latency,
                "ticker",
                run_ticker(period, inbox_tx.clone(), ticks.clone()),
            )
            .map_err(spawn_err)?;
    }
    let hibernating = Rc::new(std::cell::Cell::new(false));
    let failure = Rc::new(std::cell::RefCell::new(None));
    let core = Loop {
        raft,
        group,
        persist: persist_tx,
        apply: apply_tx,
        outbox,
        reads: HashMap::new(),
        read_next: 0,
        role_seen: None,
        leader_heard: None,
        index_applied: 0,
        failed: None,
        received: Vec::new(),
        hibernating: hibernating.clone(),
        woken,
        failure: failure.clone(),
        ticks: ticks.clone(),
        stamp,
        log: log_reader,
        tail: TailCache::default(),
        snaps,
        snap_jobs: snap_tx,
        fibers: fibers.clone(),
        inbox: inbox_tx.clone(),
        conf_waiters: Vec::new(),
        transfer_waiters: Vec::new(),
        gate: gate.clone(),
    };
    fibers
        .spawn(TaskClass::Latency, "raft", core.run(inbox_rx))
        .map_err(spawn_err)?;
    Ok(GroupHandle {
        group,
        inbox: inbox_tx,
        hibernating,
        failure,
        ticks,
        gate,
    })
}

/// The pure core of a group over its recovered log and snapshot, from
/// the hard state in its status file.
fn open_core<L: RaftLog + Clone + 'static, V: Vfs>(
    cfg: raft::Config,
    log: &L,
    status: &StatusFile<V>,
    snapshot: Rc<RefCell<raft::SnapshotMeta>>,
    applied: u64,
) -> Result<Raft<StorageView<L>>, GroupError> {
    let group = cfg.group.0;
    let saved = status.state();
    let hard_state = HardState {
        term: saved.term,
        vote: saved.vote.map(NodeId),
        index_commit: saved.commit_index,
    };
    let view = StorageView::new(log.clone(), snapshot);
    Raft::new(cfg, view, hard_state, applied).map_err(|e| match e {
        RaftError::Log { source, .. } => GroupError::Storage {
            group,
            fault: log_fault(&source),
            reason: format!(
                "log {}: {source}",
                log.location().as_deref().unwrap_or("(no location)")
            ),
        },
        e => GroupError::Refused {
            group,
            reason: e.to_string(),
        },
    })
}

async fn run_ticker(period: Duration, inbox: Sender<Event>, ticks: Rc<TickBox>) {
    let Ok(mut ticker) = Ticker::new(period) else {
        return;
    };
    loop {
        let n = ticker.tick().await;
        if !ticks.add(n, &inbox) && inbox.is_closed() {
            return;
        }
    }
}

thread_local! {
    /// Bytes held by the tail caches of the groups on this shard.
    static SHARD_TAIL_BYTES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn shard_tail_add(delta: isize) -> usize {
    SHARD_TAIL_BYTES.with(|b| {
        let v = b.get().saturating_add_signed(delta);
        b.set(v);
        v
    })
}

/// The leader's newest record runs (what it just encoded for its own log),
/// bounded in bytes per group and, with every other group's, per shard:
/// AppendEntries for entries still here go out as these very bytes; older
/// ones are read from the log (mmap slices, no copy), so a follower far
/// behind is fed from disk, never from unbounded memory.
#[derive(Default)]
struct TailCache {
    /// Runs in log order, each with its records' offsets (so a message
    /// that starts or ends inside a run is cut from it without a walk).
    runs: std::collections::VecDeque<(sampan_storage::RecordRun, Vec<u32>)>,
    bytes: usize,
}

impl TailCache {
    fn push(&mut self, run: sampan_storage::RecordRun) {
        if self
            .runs
            .back()
            .is_some_and(|(b, _)| b.last_index() + 1 != run.first_index())
        {
            self.clear();
        }
        let len = run.bytes().len();
        self.bytes += len;
        let mut shard = shard_tail_add(len as isize);
        let offsets = run.record_offsets();
        self.runs.push_back((run, offsets));
        while (self.bytes > TAIL_CACHE_BYTES || shard > SHARD_TAIL_CACHE_BYTES)
            && self.runs.len() > 1
        {
            if let Some((old, _)) = self.runs.pop_front() {
                let len = old.bytes().len();
                self.bytes -= len;
                shard = shard_tail_add(-(len as isize));
            }
        }
    }

    fn clear(&mut self) {
        self.runs.clear();
        shard_tail_add(-(self.bytes as isize));
        self.bytes = 0;
    }

    /// Whether `index` is in the cached range.
    fn holds(&self, index: u64) -> bool {
        self.runs
            .front()
            .is_some_and(|(r, _)| r.first_index() <= index)
            && self
                .runs
                .back()
                .is_some_and(|(r, _)| index <= r.last_index())
    }

    /// The records `first..=last` if the cache holds them all: one run
    /// as it is; parts of runs cut at their records' offsets (zero-copy),
    /// and several runs copied into one. Either costs less than encoding
    /// the entries again.
    fn slice(&self, first: u64, last: u64) -> Option<sampan_storage::RecordRun> {
        if first > last {
            return None;
        }
        // Newest first: the entries a leader sends are almost always the
        // ones it just encoded.
        let from = self
            .runs
            .iter()
            .rposition(|(r, _)| r.first_index() <= first && first <= r.last_index())?;
        let mut runs = Vec::new();
        for (r, offsets) in self.runs.range(from..) {
            let (a, b) = (first.max(r.first_index()), last.min(r.last_index()));
            runs.push(if (a, b) == (r.first_index(), r.last_index()) {
                r.clone()
            } else {
                r.sub_run(offsets, a, b)?
            });
            if b == last {
                break;
            }
        }
        if runs.last()?.last_index() != last {
            return None;
        }
        if runs.len() == 1 {
            return runs.pop();
        }
        sampan_storage::RecordRun::concat(&runs)
    }
}

impl Drop for TailCache {
    fn drop(&mut self) {
        self.clear();
    }
}

/// A membership change waiting to be in force and committed.
struct ConfWaiter {
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
    /// The last index when the membership first matched: done once that
    /// commits.
    matched_at: Option<u64>,
    reply: Reply<()>,
}

struct Loop<L: RaftLog, S: SnapshotManager> {
    /// Where reads on this shard learn whether the lease lets them skip
    /// this loop.
    gate: Rc<ReadGate>,
    /// The group's log, for sending old entries' records as they are.
    log: L,
    snaps: Rc<Snapshots<S>>,
    snap_jobs: Sender<SnapJob>,
    /// The group's fibers: snapshot senders join them.
    fibers: FiberGroup,
    inbox: Sender<Event>,
    conf_waiters: Vec<ConfWaiter>,
    transfer_waiters: Vec<(NodeId, Reply<()>)>,
    /// The leader's newest encoded runs.
    tail: TailCache,
    /// The state machine's leader stamp, applied to every proposal.
    stamp: Option<state_machine::Stamp>,
    raft: Raft<StorageView<L>>,
    group: u64,
    persist: Sender<persist::PersistJob>,
    apply: Sender<ApplyJob>,
    outbox: Rc<dyn Outbox>,
    reads: HashMap<u64, (Bytes, Reply<Bytes>)>,
    read_next: u64,
    role_seen: Option<(Role, u64, Option<NodeId>)>,
    /// When this replica last heard from its leader (and which node that
    /// was), for [`GroupStatus::leader_contact_ms`].
    leader_heard: Option<(NodeId, std::time::Instant)>,
    index_applied: u64,
    failed: Option<GroupError>,
    /// Record runs received in this batch of events: a follower appends the
    /// leader's bytes as they are when the core accepts a whole run.
    received: Vec<sampan_storage::RecordRun>,
    /// Shared with the handles: a hibernating group is skipped by the
    /// shard's ticker, so idle groups cost nothing per tick.
    hibernating: Rc<std::cell::Cell<bool>>,
    woken: Option<WakeList>,
    /// Shared with the handles: why the replica stopped writing, if it did
    /// (the server restarts such a replica from its files).
    failure: Rc<std::cell::RefCell<Option<GroupError>>>,
    /// Ticks the ticker counted and this loop has not taken yet.
    ticks: Rc<TickBox>,
}

impl<L: RaftLog + Clone + 'static, S: SnapshotManager> Loop<L, S> {
    async fn run(mut self, inbox: Receiver<Event>) {
        // Grows on first use (idle groups keep nothing).
        let mut batch = Vec::new();
        while let Some(ev) = inbox.recv().await {
            batch.push(ev);
            inbox.drain_into(&mut batch, 255);
            for ev in batch.drain(..) {
                // Per event, not per batch: handling one may wait (a full
                // apply queue), and a lease check must not see a stale clock.
                self.raft.set_now_ms(super::monotonic_ms());
                self.handle(ev).await;
            }
            self.drain_ready().await;
            self.check_waiters();
            self.publish_lease();
            self.received.clear();
            let asleep = self.raft.is_hibernating();
            if self.hibernating.replace(asleep)
                && !asleep
                && let Some(w) = &self.woken
            {
                w.push(self.group);
            }
            yield_if_needed().await;
        }
    }

    /// Tells the read gate when the lease ends and what is committed.
    fn publish_lease(&self) {
        let until = self
            .failed
            .is_none()
            .then(|| self.raft.lease_until_ms())
            .flatten();
        self.gate.publish(until, self.raft.index_commit());
    }

    fn not_leader(&self) -> GroupError {
        GroupError::NotLeader {
            group: self.group,
            leader: self.raft.leader().map(|n| n.0),
        }
    }

    fn refused(&self, e: RaftError) -> GroupError {
        match e {
            RaftError::NotLeader { .. } => self.not_leader(),
            // Refused before it was appended, for the moment this leader
            // hands over (a node stopping, a balance): the client retries
            // and finds the new leader, instead of failing a request that
            // a leader takes a moment later.
            RaftError::TransferInProgress { .. } => GroupError::NotLeader {
                group: self.group,
                leader: None,
            },
            e => GroupError::Refused {
                group: self.group,
                reason: e.to_string(),
            },
        }
    }

    async fn handle(&mut self, ev: Event) {
        match ev {
            Event::Propose { payload, reply } => self.propose(payload, reply).await,
            Event::Read { query, reply } => self.read(query, reply),
            Event::ReadLocal { query, reply } => {
                let job = ApplyJob::Read {
                    index: 0,
                    query,
                    reply,
                };
                let _ = self.apply.send(job).await;
            }
            Event::Step { msg, records } => {
                if let Some(run) = records.filter(|r| !r.is_empty()) {
                    self.received.push(run);
                }
                let from = msg.from;
                if let Err(e) = self.raft.step(msg) {
                    sampan_fiber::group_log!(
                        warn,
                        self.group,
                        "group {}: dropped a message: {e}",
                        self.group
                    );
                }
                // The leader's last contact, for the status: any message
                // from the node this replica now takes for its leader.
                if self.raft.leader() == Some(from) {
                    self.leader_heard = Some((from, std::time::Instant::now()));
                }
            }
            Event::Tick => {
                // Every elapsed tick, even those counted while the inbox was
                // full (bounded: past an election timeout more add nothing).
                let n = self.ticks.take();
                for _ in 0..n.min(1_000) {
                    if !self.raft.is_hibernating() {
                        self.raft.tick();
                    }
                }
            }
            Event::Durable { index, term, epoch } => {
                self.raft.on_entries_durable(index, term, epoch)
            }
            Event::Applied(index) => {
                self.index_applied = index;
                self.raft.on_applied(index);
            }
            Event::Status(reply) => reply.send(Ok(self.status())),
            Event::NodeUnreachable(node) => self.raft.on_node_unreachable(NodeId(node)),
            Event::Failed(e) => self.stop_writing(e),
            Event::SnapshotChunk { chunk, reply } => self.snapshot_chunk(chunk, reply),
            Event::SnapshotSent { to, ok } => self.raft.report_snapshot(NodeId(to), ok),
            Event::SnapshotInstalled(index) => self.raft.on_snapshot_installed(index),
            Event::SnapshotNow(reply) => {
                let _ = self.apply.send(ApplyJob::SnapshotNow(reply)).await;
            }
            Event::ReadSnapshot { read, reply } => {
                let (snaps, group) = (self.snaps.clone(), self.group);
                let task = async move {
                    let piece = super::snapshot::read_piece(&snaps.store, read)
                        .await
                        .map_err(|reason| GroupError::Refused { group, reason });
                    reply.send(piece);
                };
                // A fiber that cannot start drops the reply: the caller
                // hears the group stopped (it is stopping).
                if let Err(e) = self
                    .fibers
                    .spawn(TaskClass::Background, "snapshot-read", task)
                {
                    sampan_fiber::group_log!(
                        warn,
                        group,
                        "group {group}: snapshot read not served: {e}"
                    );
                }
            }
            Event::ChangeMembers {
                expected,
                voters,
                learners,
                reply,
            } => self.change_members(expected, voters, learners, reply),
            Event::TransferLeader { to, reply } => self.transfer_leader(to, reply),
        }
    }

    /// A command to replicate: refused at once if this replica stopped
    /// writing or it is too big, else handed to the core (stamped with the
    /// leader's clock) and its reply to the apply fiber.
    async fn propose(&mut self, payload: Bytes, reply: ProposeReply) {
        if let Some(f) = &self.failed {
            // Never handed to the core: certainly not applied,
            // which the client must hear (the failure itself is
            // "outcome unknown" for the proposals it caught in
            // flight, not for these).
            return reply.send(Err(GroupError::Refused {
                group: self.group,
                reason: format!("not proposed: this replica stopped writing ({f})"),
            }));
        }
        if payload.len() > super::PROPOSAL_BYTES_MAX {
            return reply.send(Err(GroupError::Refused {
                group: self.group,
                reason: format!(
                    "a command of {} bytes is over the {} byte limit",
                    payload.len(),
                    super::PROPOSAL_BYTES_MAX
                ),
            }));
        }
        let payload = match self.stamp {
            Some(stamp) if self.raft.role() == Role::Leader => {
                stamp(payload, state_machine::now_ms())
            }
            _ => payload,
        };
        match self.raft.propose(payload) {
            Ok(index) => {
                let job = ApplyJob::Pending {
                    index,
                    term: self.raft.term(),
                    reply,
                };
                let _ = self.apply.send(job).await;
            }
            Err(e) => reply.send(Err(self.refused(e))),
        }
    }

    /// A linearizable read: a ReadIndex round, answered once applied.
    fn read(&mut self, query: Bytes, reply: Reply<Bytes>) {
        if let Some(f) = &self.failed {
            return reply.send(Err(f.clone()));
        }
        self.read_next += 1;
        let id = self.read_next;
        match self
            .raft
            .read_index(Bytes::copy_from_slice(&id.to_le_bytes()))
        {
            Ok(()) => {
                self.reads.insert(id, (query, reply));
            }
            Err(e) => reply.send(Err(self.refused(e))),
        }
    }

    /// The replica's storage failed: no more writes, waiting reads fail.
    fn stop_writing(&mut self, e: GroupError) {
        sampan_fiber::group_log!(
            error,
            self.group,
            "group {}: {e}; no more writes",
            self.group
        );
        // Reads waiting for a quorum round would wait forever: the
        // core is no longer driven.
        for (_, (_, reply)) in self.reads.drain() {
            reply.send(Err(e.clone()));
        }
        *self.failure.borrow_mut() = Some(e.clone());
        self.failed = Some(e);
        self.publish_lease();
    }

    /// A chunk of a snapshot from the leader, for the snapshot fiber
    /// (refused when stale, failed or the fiber is behind).
    fn snapshot_chunk(&mut self, chunk: SnapshotChunk, reply: ChunkReply) {
        if chunk.term < self.raft.term() || self.failed.is_some() {
            return reply(ChunkAnswer {
                status: ChunkStatus::Refused,
                term: self.raft.term(),
                next_offset: 0,
            });
        }
        if let Err(e) = self.snap_jobs.try_send(SnapJob::Chunk { chunk, reply }) {
            // The snapshot fiber is behind: the leader retries.
            if let SnapJob::Chunk { reply, .. } = e.into_inner() {
                reply(ChunkAnswer {
                    status: ChunkStatus::Refused,
                    term: self.raft.term(),
                    next_offset: 0,
                });
            }
        }
    }

    /// A membership change, conditional on `expected` if given; answered
    /// once in force and committed ([`Loop::check_waiters`]).
    fn change_members(
        &mut self,
        expected: Option<(u64, u64)>,
        voters: BTreeSet<u64>,
        learners: BTreeSet<u64>,
        reply: Reply<()>,
    ) {
        let ids = |s: BTreeSet<u64>| s.into_iter().map(NodeId).collect::<BTreeSet<_>>();
        let (voters, learners) = (ids(voters), ids(learners));
        match self
            .raft
            .change_membership_if(expected, voters.clone(), learners.clone())
        {
            Ok(()) => self.conf_waiters.push(ConfWaiter {
                voters,
                learners,
                matched_at: None,
                reply,
            }),
            Err(e) => reply.send(Err(self.refused(e))),
        }
    }

    /// A leader transfer to `to`; answered once `to` leads.
    fn transfer_leader(&mut self, to: u64, reply: Reply<()>) {
        if to == self.raft.id().0 && self.raft.role() == Role::Leader {
            return reply.send(Ok(()));
        }
        match self.raft.transfer_leader(NodeId(to)) {
            Ok(()) => self.transfer_waiters.push((NodeId(to), reply)),
            Err(e) => reply.send(Err(self.refused(e))),
        }
    }

    /// Answers the membership changes and leader transfers that finished
    /// (or can no longer finish here).
    fn check_waiters(&mut self) {
        if self.conf_waiters.is_empty() && self.transfer_waiters.is_empty() {
            return;
        }
        let leader = self.raft.role() == Role::Leader;
        let commit = self.raft.index_commit();
        let last = self.raft.index_last();
        let m = self.raft.membership().clone();
        for mut w in std::mem::take(&mut self.conf_waiters) {
            if !leader {
                w.reply.send(Err(self.not_leader()));
                continue;
            }
            if !m.is_joint() && m.voters() == &w.voters && m.learners() == w.learners {
                let at = *w.matched_at.get_or_insert(last);
                if commit >= at {
                    w.reply.send(Ok(()));
                    continue;
                }
            }
            self.conf_waiters.push(w);
        }
        for (to, reply) in std::mem::take(&mut self.transfer_waiters) {
            if self.raft.leader() == Some(to) && !leader {
                reply.send(Ok(()));
            } else if leader && self.raft.transferee() != Some(to) {
                reply.send(Err(GroupError::Refused {
                    group: self.group,
                    reason: format!("the transfer to node {} was abandoned", to.0),
                }));
            } else if !leader && self.raft.leader().is_some_and(|l| l != to) {
                reply.send(Err(GroupError::Refused {
                    group: self.group,
                    reason: format!(
                        "node {} leads, not node {}",
                        self.raft.leader().map_or(0, |l| l.0),
                        to.0
                    ),
                }));
            } else {
                self.transfer_waiters.push((to, reply));
            }
        }
    }

    fn status(&self) -> GroupStatus {
        let leader = self.raft.leader();
        let leader_contact_ms = match self.leader_heard {
            Some((from, at)) if leader == Some(from) && from != self.raft.id() => {
                Some(u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX))
            }
            _ => None,
        };
        // Borrowed by the apply fiber only while it replaces the state
        // with a snapshot's: counts unknown for that moment.
        let machine = self
            .gate
            .machine()
            .try_borrow()
            .map(|m| m.stats())
            .unwrap_or_default();
        GroupStatus {
            leader_contact_ms,
            group: self.group,
            role: self.raft.role(),
            term: self.raft.term(),
            leader: self.raft.leader().map(|n| n.0),
            index_commit: self.raft.index_commit(),
            index_last: self.raft.index_last(),
            index_applied: self.index_applied,
            matched: self
                .raft
                .peers_matched()
                .into_iter()
                .map(|(n, i)| (n.0, i))
                .collect(),
            hibernating: self.raft.is_hibernating(),
            node: self.raft.id().0,
            voters: self
                .raft
                .membership()
                .voters()
                .iter()
                .map(|n| n.0)
                .collect(),
            voters_outgoing: self
                .raft
                .membership()
                .voters_outgoing()
                .iter()
                .map(|n| n.0)
                .collect(),
            learners: self
                .raft
                .membership()
                .learners()
                .iter()
                .map(|n| n.0)
                .collect(),
            snapshot_index: self.snaps.meta.borrow().index,
            snapshot_term: self.snaps.meta.borrow().term,
            membership_index: self.raft.membership_at().0,
            membership_term: self.raft.membership_at().1,
            log_bytes: self.log.bytes(),
            snapshot_saved: self.snaps.last.get(),
            keys: machine.keys,
            sessions: machine.sessions,
        }
    }

    async fn drain_ready(&mut self) {
        while self.failed.is_none() && self.raft.has_ready() {
            match self.raft.ready() {
                Ok(rd) => self.route(rd).await,
                Err(e) => {
                    let err = match e {
                        RaftError::Invariant { what, .. } => GroupError::Halted {
                            group: self.group,
                            reason: what,
                        },
                        RaftError::Log { source, .. } => GroupError::Storage {
                            group: self.group,
                            fault: log_fault(&source),
                            reason: source.to_string(),
                        },
                        e => GroupError::Storage {
                            group: self.group,
                            fault: StorageFault::Other,
                            reason: e.to_string(),
                        },
                    };
                    self.handle(Event::Failed(err)).await;
                }
            }
        }
    }

    /// Tells the apply fiber about a new role before any entry of the new
    /// term reaches it.
    async fn note_role(&mut self) {
        let now = (self.raft.role(), self.raft.term(), self.raft.leader());
        if self.role_seen == Some(now) {
            return;
        }
        let before = self.role_seen.replace(now);
        sampan_fiber::log_context::set_term(self.group, now.1);
        if matches!(now.0, Role::Candidate)
            && before.is_none_or(|b| b.0 != Role::Candidate || b.1 != now.1)
        {
            crate::stats::election();
        }
        if now.2.is_some() && before.is_none_or(|b| b.2 != now.2) {
            crate::stats::leader_change();
        }
        let role = match now.0 {
            Role::Leader => state_machine::Role::Leader,
            Role::Follower if self.raft.membership().is_learner(self.raft.id()) => {
                state_machine::Role::Observer
            }
            Role::Candidate | Role::PreCandidate => state_machine::Role::Candidate,
            _ => state_machine::Role::Follower,
        };
        let change = RoleChange {
            group: self.group,
            role,
            term: now.1,
            leader: now.2.map(|n| n.0),
        };
        sampan_fiber::group_log!(
            info,
            self.group,
            "group {}: {:?} in term {} (leader {:?})",
            self.group,
            now.0,
            now.1,
            now.2
        );
        let job = ApplyJob::Role {
            change,
            index_commit: self.raft.index_commit(),
        };
        let _ = self.apply.send(job).await;
    }

    async fn route(&mut self, rd: Ready) {
        // Before anything of this Ready leaves or this loop waits: a
        // transfer's `TimeoutNow` must not go out while the gate still
        // serves reads from the lease it ends.
        self.publish_lease();
        self.note_role().await;
        // A leader encodes its new entries once: the same records go to
        // its log and to the followers.
        let mut records = self.received_run_for(&rd.entries);
        if records.is_none() && !rd.entries.is_empty() {
            let run = run_from_entries(&rd.entries);
            if self.raft.role() == Role::Leader {
                self.tail.push(run.clone());
            }
            records = Some(run);
        }
        if self.raft.role() != Role::Leader {
            self.tail.clear();
        }
        for m in rd.messages {
            if let raft::Body::Snapshot(meta) = m.body {
                self.send_snapshot(m.to.0, *meta);
                continue;
            }
            let run = self.records_of(&m);
            self.outbox.send(m, run);
        }
        if let Some(meta) = &rd.snapshot {
            // The state machine takes the snapshot's state (in the apply
            // fiber, before any later entry) while the log restarts after
            // it (in the persist fiber, before any later write).
            let _ = self.apply.send(ApplyJob::Install(meta.clone())).await;
        }
        if rd.hard_state.is_some()
            || rd.snapshot.is_some()
            || !rd.entries.is_empty()
            || !rd.messages_persisted.is_empty()
        {
            let job = persist::PersistJob {
                hard_state: rd.hard_state,
                entries: rd.entries,
                records,
                messages: rd.messages_persisted,
                snapshot: rd.snapshot,
                log_epoch: rd.log_epoch,
            };
            let _ = self.persist.send(job).await;
        }
        if !rd.entries_committed.is_empty() {
            let _ = self
                .apply
                .send(ApplyJob::Entries(rd.entries_committed))
                .await;
        }
        for r in rd.reads {
            if let Some((query, reply)) = self.take_read(&r.context) {
                let _ = self
                    .apply
                    .send(ApplyJob::Read {
                        index: r.index,
                        query,
                        reply,
                    })
                    .await;
            }
        }
        for ctx in rd.reads_failed {
            if let Some((_, reply)) = self.take_read(&ctx) {
                reply.send(Err(self.not_leader()));
            }
        }
    }

    /// Streams the newest snapshot to `to` in a fiber of the group, unless
    /// a transfer to it already runs.
    fn send_snapshot(&mut self, to: u64, meta: SnapshotMeta) {
        if !Transfer::claim(&self.snaps, to) {
            return;
        }
        let transfer = Transfer {
            group: self.group,
            node: self.raft.id().0,
            term: self.raft.term(),
            to,
            meta,
            snaps: self.snaps.clone(),
            outbox: self.outbox.clone(),
            inbox: self.inbox.clone(),
        };
        if let Err(e) = self
            .fibers
            .spawn(TaskClass::Background, "snapshot-send", transfer.run())
        {
            sampan_fiber::group_log!(
                warn,
                self.group,
                "group {}: snapshot to node {to} not sent: {e}",
                self.group
            );
            self.raft.report_snapshot(NodeId(to), false);
        }
    }

    /// The log's own records of an AppendEntries' entries: from the tail
    /// cache, else read from the log; `None` (the entries get encoded
    /// again) only if neither holds them all in one run.
    fn records_of(&self, m: &raft::Message) -> Option<sampan_storage::RecordRun> {
        let raft::Body::Append(a) = &m.body else {
            return None;
        };
        let (first, last) = (a.entries.first()?.index, a.entries.last()?.index);
        if let Some(run) = self.tail.slice(first, last) {
            return Some(run);
        }
        if self.tail.holds(first) {
            return None; // recent, but past the cache's end: encoded
        }
        // Older than the cache (a follower catching up): the log's records,
        // read as mmap slices. Payloads plus room for each record's header and padding.
        let bytes: usize = a
            .entries
            .iter()
            .map(|e| e.size_bytes() as usize + 128)
            .sum();
        let mut run = self.log.read(first, bytes).ok()?;
        run.truncate_after(last);
        (run.first_index() == first && run.last_index() == last).then_some(run)
    }

    /// The received run holding exactly `entries`, if there is one.
    fn received_run_for(&self, entries: &[raft::Entry]) -> Option<sampan_storage::RecordRun> {
        let (first, last) = (entries.first()?, entries.last()?);
        self.received
            .iter()
            .find(|r| {
                r.first_index() == first.index
                    && r.last_index() == last.index
                    && r.last_term() == last.term
            })
            .cloned()
    }

    fn take_read(&mut self, ctx: &Bytes) -> Option<(Bytes, Reply<Bytes>)> {
        let id = u64::from_le_bytes(ctx.as_ref().try_into().ok()?);
        self.reads.remove(&id)
    }
}

#[cfg(test)]
mod tail_tests {
    use super::*;

    fn run(first: u64, n: u64, payload: usize) -> sampan_storage::RecordRun {
        let entries: Vec<raft::Entry> = (first..first + n)
            .map(|index| raft::Entry {
                term: 1,
                index,
                kind: raft::EntryKind::Normal,
                payload: Bytes::from(vec![7u8; payload]),
            })
            .collect();
        run_from_entries(&entries)
    }

    #[test]
    fn the_tail_cache_slices_runs_and_stays_within_its_bounds() {
        let mut tail = TailCache::default();
        tail.push(run(1, 10, 100));
        tail.push(run(11, 10, 100));
        let s = tail.slice(11, 20).expect("the second run");
        assert_eq!((s.first_index(), s.last_index(), s.len()), (11, 20, 10));
        let part = tail.slice(3, 7).expect("part of a run");
        assert_eq!((part.first_index(), part.last_index()), (3, 7));
        assert!(tail.holds(3) && tail.holds(20) && !tail.holds(21));
        let parts = tail.slice(8, 12).expect("parts of two runs");
        assert_eq!(
            parts.bytes(),
            run(8, 5, 100).bytes(),
            "the records as encoded, cut at their boundaries"
        );
        let both = tail.slice(1, 20).expect("two whole runs");
        assert_eq!(
            (both.first_index(), both.last_index(), both.len()),
            (1, 20, 20)
        );
        assert_eq!(
            both.bytes(),
            &[
                run(1, 10, 100).bytes().clone(),
                run(11, 10, 100).bytes().clone()
            ]
            .concat()[..],
            "the records as encoded"
        );
        assert!(tail.slice(15, 21).is_none(), "ends past the cache");
        assert!(tail.slice(21, 21).is_none(), "not cached");
        // A gap (a new term's log) starts the cache again.
        tail.push(run(30, 1, 10));
        assert!(tail.slice(1, 1).is_none());
        // Bounded: 64 KiB runs far past the per-group budget.
        for i in 0..200 {
            tail.push(run(31 + i, 1, 64 << 10));
        }
        assert!(
            tail.bytes <= TAIL_CACHE_BYTES + (70 << 10),
            "{}",
            tail.bytes
        );
        assert_eq!(SHARD_TAIL_BYTES.with(|b| b.get()), tail.bytes);
        drop(tail);
        assert_eq!(
            SHARD_TAIL_BYTES.with(|b| b.get()),
            0,
            "dropped caches give bytes back"
        );
    }
}
