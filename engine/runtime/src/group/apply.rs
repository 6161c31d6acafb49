//! The apply fiber: hands committed entries to the state machine in
//! batches, answers each proposal with its entry's result (or `Lost` if
//! another leader's entry took its index), serves reads once their index is
//! applied, and reports progress to the core.

use super::SnapshotSaved;
use super::gate::ReadGate;
use super::snapshot::{SnapJob, Snapshots, find, restore};
use super::{ApplyJob, Event, GroupError, ProposeReply, Reply};
use crate::raft::{self, Entry, EntryKind, Membership};
use crate::state_machine::{self, Committed, Role};
use bytes::Bytes;
use sampan_fiber::{Receiver, Sender, oneshot, yield_if_needed};
use sampan_storage::SnapshotManager;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Where the apply fiber starts: the state machine, and what it holds
/// (restored from the newest snapshot at start, or empty).
pub(crate) struct ApplyStart<S: SnapshotManager> {
    /// The state machine, shared with the read gate.
    pub(crate) gate: Rc<ReadGate>,
    pub(crate) applied: u64,
    pub(crate) applied_term: u64,
    pub(crate) membership: Membership,
    pub(crate) snaps: Rc<Snapshots<S>>,
    pub(crate) snap_jobs: Sender<SnapJob>,
}

/// How often snapshot requests that wait for the one being written look
/// again.
const SNAPSHOT_RETRY: Duration = Duration::from_millis(10);

/// Proposals waiting for their entry, by index: the term each was
/// proposed in, and its caller.
type Pending = BTreeMap<u64, (u64, ProposeReply)>;

struct Applier<S: SnapshotManager> {
    group: u64,
    /// The state machine (through the read gate, which reads it between
    /// applies and learns here how far it has applied).
    gate: Rc<ReadGate>,
    /// The term of the entry at `applied`, and the membership as of it:
    /// what a snapshot taken now describes.
    applied_term: u64,
    membership: Membership,
    snaps: Rc<Snapshots<S>>,
    snap_jobs: Sender<SnapJob>,
    /// Entry bytes applied since the last snapshot was frozen.
    bytes_since_snapshot: u64,
    snapshot_at: Instant,
    /// `snapshot_now` callers waiting for the snapshot being written to
    /// finish before theirs is frozen.
    snapshot_waiters: Vec<Reply<SnapshotSaved>>,
    /// Proposals by index: the term they were proposed in, and the caller.
    pending: Pending,
    /// Reads by (index, arrival), served in order once applied.
    reads: BTreeMap<(u64, u64), (Bytes, Reply<Bytes>)>,
    reads_seq: u64,
    applied: u64,
    results: Vec<Bytes>,
    /// Whether this replica leads (the state machine's due commands are
    /// proposed only then).
    leading: bool,
    /// When to ask the state machine for due commands again.
    due_at: Option<u64>,
}

pub(crate) async fn run<S: SnapshotManager>(
    group: u64,
    start: ApplyStart<S>,
    jobs: Receiver<ApplyJob>,
    inbox: Sender<Event>,
) {
    start.gate.set_applied(start.applied);
    let mut a = Applier {
        group,
        gate: start.gate,
        applied_term: start.applied_term,
        membership: start.membership,
        snaps: start.snaps,
        snap_jobs: start.snap_jobs,
        bytes_since_snapshot: 0,
        snapshot_at: Instant::now(),
        snapshot_waiters: Vec::new(),
        pending: BTreeMap::new(),
        reads: BTreeMap::new(),
        reads_seq: 0,
        applied: start.applied,
        results: Vec::new(),
        leading: false,
        due_at: None,
    };
    loop {
        let job = match a.next_wake() {
            Some(at) => {
                let job = async { Some(jobs.recv().await) };
                let timer = async {
                    sampan_fiber::sleep(at.saturating_duration_since(Instant::now())).await;
                    None
                };
                match futures_lite::future::or(job, timer).await {
                    Some(job) => job,
                    None => {
                        if a.leading && a.due_at.is_some_and(|d| d <= state_machine::now_ms()) {
                            a.propose_due(&inbox);
                        }
                        a.maybe_snapshot();
                        continue;
                    }
                }
            }
            None => jobs.recv().await,
        };
        let Some(job) = job else { break };
        match job {
            ApplyJob::Pending { index, term, reply } => {
                a.pending.insert(index, (term, reply));
            }
            ApplyJob::Entries(entries) => {
                a.apply(&entries);
                a.published_applied();
                a.serve_reads();
                let _ = inbox.send(Event::Applied(a.applied)).await;
                if a.leading {
                    a.propose_due(&inbox);
                }
                a.maybe_snapshot();
                yield_if_needed().await;
            }
            ApplyJob::Install(meta) => {
                if let Err(reason) = a.install(&meta).await {
                    sampan_fiber::group_log!(
                        error,
                        group,
                        "group {group}: installing the snapshot failed: {reason}"
                    );
                    let _ = inbox
                        .send(Event::Failed(GroupError::Storage {
                            group,
                            // A snapshot that does not read back whole, or
                            // that the state machine refuses.
                            fault: super::StorageFault::Corrupt,
                            reason,
                        }))
                        .await;
                    continue;
                }
                a.published_applied();
                a.serve_reads();
                let _ = inbox.send(Event::Applied(a.applied)).await;
            }
            ApplyJob::SnapshotDue => a.maybe_snapshot(),
            ApplyJob::SnapshotNow(reply) => {
                if a.applied == 0 {
                    reply.send(Err(GroupError::Refused {
                        group,
                        reason: "nothing applied yet: no snapshot to take".into(),
                    }));
                    continue;
                }
                a.snapshot_waiters.push(reply);
                a.maybe_snapshot();
            }
            ApplyJob::Read {
                index,
                query,
                reply,
            } => {
                a.reads_seq += 1;
                a.reads.insert((index, a.reads_seq), (query, reply));
                a.serve_reads();
            }
            ApplyJob::Role {
                change,
                index_commit,
            } => {
                a.gate.machine().borrow_mut().on_role_change(&change);
                a.leading = change.role == Role::Leader;
                a.uncertain_above(index_commit, change.term);
                if a.leading {
                    a.propose_due(&inbox);
                }
            }
        }
    }
}

impl<S: SnapshotManager> Applier<S> {
    /// Tells the read gate (and through it the snapshot fiber) how far
    /// this replica has applied.
    fn published_applied(&self) {
        self.gate.set_applied(self.applied);
    }

    /// When the loop must wake without a job: the leader's due commands,
    /// a snapshot request waiting for the current one.
    fn next_wake(&self) -> Option<Instant> {
        let now = Instant::now();
        let due = self
            .due_at
            .filter(|_| self.leading)
            .map(|at| now + Duration::from_millis(at.saturating_sub(state_machine::now_ms())));
        // (The snapshot interval is watched by the snapshot fiber, which
        // sends `SnapshotDue`: no timer here per batch for it.)
        let snapshot = (!self.snapshot_waiters.is_empty()).then(|| now + SNAPSHOT_RETRY);
        match (due, snapshot) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Freezes the state and hands it to the snapshot fiber when one is
    /// asked for or due (by applied bytes or time), unless one is being
    /// written: the freeze is O(1) and applies go on at once.
    fn maybe_snapshot(&mut self) {
        if self.snaps.busy.get() || self.applied == 0 {
            return;
        }
        let policy = &self.snaps.policy;
        let newer = self.applied > self.snaps.meta.borrow().index;
        let due = !self.snapshot_waiters.is_empty()
            || (newer && policy.log_bytes > 0 && self.bytes_since_snapshot >= policy.log_bytes)
            || (newer
                && policy
                    .interval
                    .is_some_and(|i| self.snapshot_at.elapsed() >= i));
        if !due {
            return;
        }
        let meta = raft::SnapshotMeta {
            index: self.applied,
            term: self.applied_term,
            membership: self.membership.clone(),
        };
        let frozen = self.gate.machine().borrow_mut().freeze();
        self.snaps.busy.set(true);
        self.bytes_since_snapshot = 0;
        self.snapshot_at = Instant::now();
        let waiters = std::mem::take(&mut self.snapshot_waiters);
        sampan_fiber::group_log!(
            debug,
            self.group,
            "group {}: snapshot frozen at {}",
            self.group,
            meta.index
        );
        if let Err(e) = self.snap_jobs.try_send(SnapJob::Save {
            frozen,
            meta,
            waiters,
        }) {
            self.snaps.busy.set(false);
            if let SnapJob::Save { waiters, .. } = e.into_inner() {
                for w in waiters {
                    w.send(Err(GroupError::Stopped { group: self.group }));
                }
            }
        }
    }

    /// Replaces the state by the received snapshot `meta` describes (its
    /// data is in the store), yielding between chunks.
    // The machine stays borrowed across the restore's awaits on purpose:
    // the read gate then finds it borrowed and sends reads the full way,
    // which waits for the install (nothing else borrows it meanwhile: this
    // fiber is the only writer).
    #[allow(clippy::await_holding_refcell_ref)]
    async fn install(&mut self, meta: &raft::SnapshotMeta) -> Result<(), String> {
        let store = &self.snaps.store;
        let stored = find(store, meta.index, meta.term).await?;
        {
            let mut machine = self.gate.machine().borrow_mut();
            restore(machine.as_mut(), store, &stored).await?;
        }
        sampan_fiber::group_log!(
            info,
            self.group,
            "group {}: state restored from the snapshot at {}",
            self.group,
            meta.index
        );
        self.applied = meta.index;
        self.applied_term = meta.term;
        self.membership = meta.membership.clone();
        self.bytes_since_snapshot = 0;
        // The snapshot may or may not hold the entries these proposals had:
        // their outcome is unknown here (a retry under their session tells).
        let covered = self.take_through(meta.index);
        self.answer_uncertain(covered, "a snapshot replaced the log around it");
        Ok(())
    }

    /// Proposals above `index_commit` made in an earlier term than `term`,
    /// or any if this replica no longer leads: it cannot tell whether they
    /// will commit. They are answered now rather than when (if ever) this
    /// replica learns their fate; never as "not leader", which would read
    /// as "not applied".
    fn uncertain_above(&mut self, index_commit: u64, term: u64) {
        let leading = self.leading;
        let (kept, stale): (Pending, Pending) = self
            .pending
            .split_off(&(index_commit + 1))
            .into_iter()
            .partition(|(_, (t, _))| leading && *t >= term);
        self.pending.extend(kept);
        self.answer_uncertain(stale, "its leader lost the lead before it committed");
    }

    /// Takes the proposals at or below `index` out of `pending`.
    fn take_through(&mut self, index: u64) -> Pending {
        let above = self.pending.split_off(&(index + 1));
        std::mem::replace(&mut self.pending, above)
    }

    fn answer_uncertain(&self, pending: Pending, reason: &str) {
        for (index, (_, reply)) in pending {
            reply.send(Err(GroupError::Uncertain {
                group: self.group,
                index,
                reason: reason.to_string(),
            }));
        }
    }

    /// Proposes what the state machine wants proposed now (expirations),
    /// without waiting: a full inbox drops them, and the state machine asks
    /// again at the time it returns.
    fn propose_due(&mut self, inbox: &Sender<Event>) {
        let mut due = Vec::new();
        self.due_at = self
            .gate
            .machine()
            .borrow_mut()
            .due_commands(state_machine::now_ms(), &mut due);
        for payload in due {
            let (reply, _ignored) = oneshot();
            let reply = ProposeReply::Wait(reply);
            if inbox.try_send(Event::Propose { payload, reply }).is_err() {
                sampan_fiber::group_log!(
                    debug,
                    self.group,
                    "group {}: a due command waits for room",
                    self.group
                );
                break;
            }
        }
    }

    fn apply(&mut self, entries: &[Entry]) {
        let batch: Vec<Committed<'_>> = entries
            .iter()
            .filter(|e| e.kind == EntryKind::Normal)
            .map(|e| Committed {
                index: e.index,
                term: e.term,
                payload: &e.payload,
            })
            .collect();
        self.results.clear();
        self.gate
            .machine()
            .borrow_mut()
            .apply(&batch, &mut self.results);
        assert_eq!(
            self.results.len(),
            batch.len(),
            "group {}: one result per entry",
            self.group
        );
        let mut results = std::mem::take(&mut self.results).into_iter();
        for e in entries {
            let result = if e.kind == EntryKind::Normal {
                results.next()
            } else {
                None
            };
            if let EntryKind::ConfChange(cc) = &e.kind {
                match self.membership.apply(cc) {
                    Ok(m) => self.membership = m,
                    Err(err) => sampan_fiber::group_log!(
                        warn,
                        self.group,
                        "group {}: membership change at {} does not apply: {err}",
                        self.group,
                        e.index
                    ),
                }
            }
            self.bytes_since_snapshot += e.size_bytes();
            self.applied_term = e.term;
            if let Some((term, reply)) = self.pending.remove(&e.index) {
                match result {
                    Some(r) if term == e.term => reply.send(Ok(r)),
                    _ => reply.send(Err(GroupError::Lost {
                        group: self.group,
                        index: e.index,
                    })),
                }
            }
            self.applied = e.index;
        }
        if entries.last().is_some_and(|e| e.kind != EntryKind::Normal) {
            // A snapshot frozen now is labelled with this index.
            self.gate
                .machine()
                .borrow_mut()
                .applied_through(self.applied);
        }
        // Proposals whose index was passed without their entry coming
        // here (none expected: a safety net, never a "not applied").
        let passed = self.take_through(self.applied);
        self.answer_uncertain(passed, "the log passed its index without it");
    }

    fn serve_reads(&mut self) {
        let now_ms = state_machine::now_ms();
        while let Some((&(index, _), _)) = self.reads.first_key_value() {
            if index > self.applied {
                break;
            }
            if let Some((_, (query, reply))) = self.reads.pop_first() {
                let answer = self.gate.machine().borrow().read(&query, now_ms);
                let answer = answer.map_err(|e| GroupError::Read {
                    group: self.group,
                    reason: e.to_string(),
                });
                reply.send(answer);
            }
        }
    }
}
