//! The group runtime: one Raft group's replica as fibers on its shard — the
//! Raft loop that drives the pure core, the persist fiber that makes its
//! log and hard state durable (group commit through the shard's log
//! writer), and the apply fiber that feeds the state machine and answers
//! proposers and readers (one group, its log, its state machine, and an
//! [`Outbox`] for messages to peers; `docs/architecture.md`, "Per group",
//! says what each fiber does). The server that hosts many
//! groups on a shard's transport builds on [`start`]; embedders that bring
//! their own network can call it directly.

mod apply;
mod gate;
pub mod net;
mod persist;
mod raft_loop;
pub(crate) mod snapshot;
pub(crate) mod view;

use crate::raft::Message;
use crate::state_machine::RoleChange;
use bytes::Bytes;
use sampan_fiber::{OneshotSender, Sender, oneshot};
use sampan_storage::RecordRun;

pub use raft_loop::{GroupParts, start};
pub use sampan_proto::group::{
    GroupError, GroupStatus, SnapshotSaved, StorageFault, newest_leader,
};
pub use snapshot::SnapshotPolicy;

use crate::wire::{ChunkAnswer, SnapshotChunk};
use std::collections::BTreeSet;

/// Milliseconds on the monotonic clock since this process first asked
/// (from 1): the time base of every core's leader lease
/// ([`crate::raft::Raft::set_now_ms`]). Unlike ticks, it cannot fall
/// behind real time when a shard stalls.
pub(crate) fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// Where a replica's messages to its peers go (the shard's transport in a
/// server; a fake network in tests). `records` are the log's own bytes for
/// an AppendEntries, when the sender has them.
pub trait Outbox {
    /// Sends `msg`; delivery is best effort (Raft retries).
    fn send(&self, msg: Message, records: Option<RecordRun>);

    /// Sends one chunk of a snapshot (an encoded [`SnapshotChunk`]) to the
    /// replica of `group` on node `to` and resolves with the body of its
    /// answer (an encoded [`ChunkAnswer`]). The default cannot: followers
    /// that need purged entries then wait, and the log is not purged past
    /// what they hold only if snapshots are off.
    fn request_snapshot_chunk(
        &self,
        to: crate::raft::NodeId,
        group: u64,
        chunk: Vec<Bytes>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes, String>>>> {
        let _ = (to, group, chunk);
        Box::pin(async { Err("this outbox cannot stream snapshots".to_string()) })
    }
}

type Reply<T> = OneshotSender<Result<T, GroupError>>;

/// Where a proposal's outcome goes: to a fiber waiting for it, or to a
/// callback that whichever of the group's fibers learns the outcome (the
/// Raft loop, or the apply fiber) runs on the spot, so no fiber per
/// request waits.
pub(crate) enum ProposeReply {
    /// A fiber awaits it ([`GroupHandle::propose`]).
    Wait(Reply<Bytes>),
    /// A callback takes it ([`GroupHandle::propose_then`]).
    Call(ProposeCallback),
}

impl ProposeReply {
    /// Delivers the outcome.
    pub(crate) fn send(self, result: ProposeResult) {
        match self {
            ProposeReply::Wait(tx) => tx.send(result),
            ProposeReply::Call(mut callback) => callback.call(result),
        }
    }
}

/// A proposal's callback: called once with its outcome. Dropped uncalled
/// (its group stopped with the proposal queued or pending), it is called
/// with [`GroupError::Stopped`], which is what a waiting caller hears then.
pub(crate) struct ProposeCallback {
    group: u64,
    f: Option<Box<dyn FnOnce(ProposeResult)>>,
}

/// A proposal's outcome.
type ProposeResult = Result<Bytes, GroupError>;

/// Counts a proposal's outcome and latency in the shard's stats (a
/// refusal as not leader is neither: the request goes on elsewhere).
fn record_proposal(started: std::time::Instant, result: &ProposeResult) {
    if !matches!(result, Err(GroupError::NotLeader { .. })) {
        crate::stats::proposal(started.elapsed(), result.is_ok());
    }
}

impl ProposeCallback {
    fn call(&mut self, result: ProposeResult) {
        if let Some(f) = self.f.take() {
            f(result);
        }
    }
}

impl Drop for ProposeCallback {
    fn drop(&mut self) {
        self.call(Err(GroupError::Stopped { group: self.group }));
    }
}

/// Inputs of the Raft loop.
pub(crate) enum Event {
    Propose {
        payload: Bytes,
        reply: ProposeReply,
    },
    Read {
        query: Bytes,
        reply: Reply<Bytes>,
    },
    ReadLocal {
        query: Bytes,
        reply: Reply<Bytes>,
    },
    Step {
        msg: Message,
        records: Option<RecordRun>,
    },
    Tick,
    Durable {
        index: u64,
        term: u64,
        /// The log epoch of the newest write covered.
        epoch: u64,
    },
    Applied(u64),
    Status(Reply<GroupStatus>),
    Failed(GroupError),
    NodeUnreachable(u64),
    /// A chunk of a snapshot the leader streams here.
    SnapshotChunk {
        chunk: SnapshotChunk,
        reply: snapshot::ChunkReply,
    },
    /// A sender fiber finished streaming a snapshot to `to`.
    SnapshotSent {
        to: u64,
        ok: bool,
    },
    /// The persist fiber reset the log to a received snapshot.
    SnapshotInstalled(u64),
    SnapshotNow(Reply<SnapshotSaved>),
    /// A piece of a stored snapshot, for a backup.
    ReadSnapshot {
        read: crate::service::SnapshotRead,
        reply: Reply<(sampan_storage::SnapshotMeta, Bytes)>,
    },
    ChangeMembers {
        /// Where the membership the target was computed from was set
        /// (index, term), if conditional.
        expected: Option<(u64, u64)>,
        voters: BTreeSet<u64>,
        learners: BTreeSet<u64>,
        reply: Reply<()>,
    },
    TransferLeader {
        to: u64,
        reply: Reply<()>,
    },
}

/// Work for the apply fiber, in order.
pub(crate) enum ApplyJob {
    /// A proposal waits for its entry (index, term) to apply.
    Pending {
        index: u64,
        term: u64,
        reply: ProposeReply,
    },
    /// Committed entries, in order.
    Entries(Vec<crate::raft::Entry>),
    /// A read to serve once `index` is applied.
    Read {
        index: u64,
        query: Bytes,
        reply: Reply<Bytes>,
    },
    /// The replica's role changed; `index_commit` is the commit index
    /// known then: a leader's proposals above it that it no longer leads
    /// for have an unknown outcome.
    Role {
        change: RoleChange,
        index_commit: u64,
    },
    /// Replace the state by the received snapshot `meta` describes.
    Install(crate::raft::SnapshotMeta),
    /// Freeze now and write a snapshot.
    SnapshotNow(Reply<SnapshotSaved>),
    /// The snapshot interval may have passed: take one if it has.
    SnapshotDue,
}

pub use crate::constants::PROPOSAL_BYTES_MAX;

/// A shard-local handle to a running group.
#[derive(Clone)]
pub struct GroupHandle {
    group: u64,
    inbox: Sender<Event>,
    hibernating: std::rc::Rc<std::cell::Cell<bool>>,
    failure: std::rc::Rc<std::cell::RefCell<Option<GroupError>>>,
    ticks: std::rc::Rc<TickBox>,
    gate: std::rc::Rc<gate::ReadGate>,
}

/// Ticks not yet taken by the Raft loop, and whether a `Tick` event that
/// will take them is queued: the ticker adds, the loop takes them all.
#[derive(Debug, Default)]
pub(crate) struct TickBox {
    pending: std::cell::Cell<u64>,
    queued: std::cell::Cell<bool>,
}

impl TickBox {
    /// Adds `n` ticks, queuing a `Tick` event unless one is queued;
    /// `false` if it could not be queued now (it will be on the next add).
    pub(crate) fn add(&self, n: u64, inbox: &Sender<Event>) -> bool {
        self.pending.set(self.pending.get().saturating_add(n));
        if self.queued.get() {
            return true;
        }
        let sent = inbox.try_send(Event::Tick).is_ok();
        self.queued.set(sent);
        sent
    }

    /// Takes every pending tick (the `Tick` event is being handled).
    pub(crate) fn take(&self) -> u64 {
        self.queued.set(false);
        self.pending.take()
    }
}

impl std::fmt::Debug for GroupHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupHandle")
            .field("group", &self.group)
            .finish()
    }
}

impl GroupHandle {
    /// The group's id.
    pub fn group(&self) -> u64 {
        self.group
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Event) -> Result<T, GroupError> {
        let (tx, rx) = oneshot();
        let stopped = || GroupError::Stopped { group: self.group };
        // Queued at once when the inbox has room (almost always); only a
        // full inbox waits, boxed, so a request's state does not carry an
        // event and a send future across its wait for the answer.
        match self.inbox.try_send(make(tx)) {
            Ok(()) => {}
            Err(sampan_fiber::SendError::Full(event)) => Box::pin(self.inbox.send(event))
                .await
                .map_err(|_| stopped())?,
            Err(sampan_fiber::SendError::Closed(_)) => return Err(stopped()),
        }
        rx.recv().await.unwrap_or_else(|| Err(stopped()))
    }

    /// Proposes `command`; resolves with the state machine's result once it
    /// is applied here.
    pub async fn propose(&self, command: Bytes) -> Result<Bytes, GroupError> {
        let started = std::time::Instant::now();
        let result = self
            .call(|reply| Event::Propose {
                payload: command,
                reply: ProposeReply::Wait(reply),
            })
            .await;
        record_proposal(started, &result);
        result
    }

    /// Proposes `command` and calls `then` with the outcome (what
    /// [`GroupHandle::propose`] would return), from the group's own fibers
    /// on this shard, so no fiber waits for it: a request served this way
    /// costs no fiber unless the group's inbox is full. `then` is called
    /// exactly once; if the group stops first, with
    /// [`GroupError::Stopped`]. Call it on the group's shard.
    pub fn propose_then(
        &self,
        command: Bytes,
        then: impl FnOnce(Result<Bytes, GroupError>) + 'static,
    ) {
        let started = std::time::Instant::now();
        let f = move |result: ProposeResult| {
            record_proposal(started, &result);
            then(result);
        };
        let event = Event::Propose {
            payload: command,
            reply: ProposeReply::Call(ProposeCallback {
                group: self.group,
                f: Some(Box::new(f)),
            }),
        };
        match self.inbox.try_send(event) {
            Ok(()) => {}
            // Dropped here: its callback hears the group stopped.
            Err(sampan_fiber::SendError::Closed(_)) => {}
            Err(sampan_fiber::SendError::Full(event)) => {
                // Rare: wait for room in a fiber of its own. If none can
                // run, or the group stops first, the event is dropped and
                // its callback hears the group stopped.
                let inbox = self.inbox.clone();
                let _ = sampan_fiber::spawn_detached(
                    sampan_fiber::TaskClass::Latency,
                    "propose-wait",
                    async move {
                        let _ = inbox.send(event).await;
                    },
                );
            }
        }
    }

    /// A linearizable read: answered by the state machine once this replica
    /// has applied everything committed when the read was asked.
    /// While the leader lease holds and the state machine is caught up,
    /// it is answered at once, without a trip through the group's fibers.
    pub async fn read(&self, query: Bytes) -> Result<Bytes, GroupError> {
        let started = std::time::Instant::now();
        let result = match self.read_now(&query) {
            Some(answer) => answer,
            None => self.call(|reply| Event::Read { query, reply }).await,
        };
        if !matches!(result, Err(GroupError::NotLeader { .. })) {
            crate::stats::read(started.elapsed(), result.is_ok());
        }
        result
    }

    /// The answer to a linearizable read of `query` right now, without
    /// waiting, if the leader lease allows it (see [`GroupHandle::read`]);
    /// `None`: it needs [`GroupHandle::read`]'s full path.
    pub fn read_now(&self, query: &Bytes) -> Option<Result<Bytes, GroupError>> {
        self.gate.try_read(|| query.clone())
    }

    /// [`GroupHandle::read_now`] with the query built by `make`, which is
    /// called only if the read can be answered now.
    pub fn read_now_with(&self, make: impl FnOnce() -> Bytes) -> Option<Result<Bytes, GroupError>> {
        let started = std::time::Instant::now();
        let answer = self.gate.try_read(make)?;
        crate::stats::read(started.elapsed(), answer.is_ok());
        Some(answer)
    }

    /// A read of this replica's state as applied so far, with no ReadIndex
    /// round: possibly stale (a follower read), never forwarded.
    pub async fn read_local(&self, query: Bytes) -> Result<Bytes, GroupError> {
        self.call(|reply| Event::ReadLocal { query, reply }).await
    }

    /// The replica's role, term, leader and indexes.
    pub async fn status(&self) -> Result<GroupStatus, GroupError> {
        self.call(Event::Status).await
    }

    /// Writes a snapshot now (after the one being written, if any) and
    /// purges the log it covers; resolves once it is durable.
    pub async fn snapshot_now(&self) -> Result<SnapshotSaved, GroupError> {
        self.call(Event::SnapshotNow).await
    }

    /// The description of this replica's newest snapshot (or the one
    /// `read.at` names) and up to `read.bytes_max` bytes of its data from
    /// `read.offset` (fewer at its end, none past it), read on a fiber of
    /// its own: what a backup copies out. Refused when there is no such
    /// snapshot (none written yet, or a newer one replaced it).
    pub async fn read_snapshot(
        &self,
        read: crate::service::SnapshotRead,
    ) -> Result<(sampan_storage::SnapshotMeta, Bytes), GroupError> {
        self.call(|reply| Event::ReadSnapshot { read, reply }).await
    }

    /// Changes the membership to `voters` and `learners` (observers): new
    /// nodes join as learners, catch up, then enter by joint consensus;
    /// removed ones leave the same way. Only on the leader. Resolves once
    /// the new membership is in force and committed.
    pub async fn change_membership(
        &self,
        voters: BTreeSet<u64>,
        learners: BTreeSet<u64>,
    ) -> Result<(), GroupError> {
        self.change_membership_if(None, voters, learners).await
    }

    /// [`GroupHandle::change_membership`], refused (nothing changed) unless
    /// the membership in force is the one at `expected` (its position,
    /// [`GroupStatus::membership_index`] and `membership_term`) or already
    /// the target: what an admin tool that read the membership, computed a
    /// target and may retry needs, so that a late or repeated request never
    /// undoes a change made since.
    pub async fn change_membership_if(
        &self,
        expected: Option<(u64, u64)>,
        voters: BTreeSet<u64>,
        learners: BTreeSet<u64>,
    ) -> Result<(), GroupError> {
        self.call(|reply| Event::ChangeMembers {
            expected,
            voters,
            learners,
            reply,
        })
        .await
    }

    /// Hands leadership to voter `to` (once it holds the whole log).
    /// Only on the leader. Resolves once this replica sees `to` lead, or
    /// fails if the transfer was abandoned (after an election timeout).
    pub async fn transfer_leader(&self, to: u64) -> Result<(), GroupError> {
        self.call(|reply| Event::TransferLeader { to, reply }).await
    }

    /// Hands a snapshot chunk from the leader to the group; `reply` gets
    /// the answer to send back (a refusal at once when the inbox is full:
    /// the leader tries again later, from where this replica stopped).
    pub fn deliver_snapshot_chunk(
        &self,
        chunk: SnapshotChunk,
        reply: Box<dyn FnOnce(ChunkAnswer)>,
    ) {
        if let Err(e) = self.inbox.try_send(Event::SnapshotChunk { chunk, reply })
            && let Event::SnapshotChunk { chunk, reply } = e.into_inner()
        {
            reply(ChunkAnswer {
                status: crate::wire::ChunkStatus::Refused,
                term: chunk.term,
                next_offset: 0,
            });
        }
    }

    /// Advances the group's clock by `ticks` (from the shard's ticker); a
    /// hibernating group is skipped without a message. Ticks are never
    /// lost: they add up in the group's tick box, and one `Tick` event at a
    /// time carries them all (a full inbox only delays them to the next
    /// period). Returns `false` if the tick could not be queued yet.
    pub fn tick(&self, ticks: u64) -> bool {
        self.hibernating.get() || self.ticks.add(ticks, &self.inbox)
    }

    /// Whether the group is hibernating (idle, not ticking).
    pub fn is_hibernating(&self) -> bool {
        self.hibernating.get()
    }

    /// Whether this replica stopped writing (see [`GroupHandle::failure`]).
    pub fn is_failed(&self) -> bool {
        self.failure.borrow().is_some()
    }

    /// Why this replica stopped writing (a storage failure), if it did: it
    /// then refuses writes and reads until restarted from its files.
    pub fn failure(&self) -> Option<GroupError> {
        self.failure.borrow().clone()
    }

    /// Tells the group that node `node` is unreachable (its connection has
    /// been down for longer than an election timeout): a hibernating group
    /// that it led wakes and elects. Returns `false` if the inbox is full.
    pub fn node_unreachable(&self, node: u64) -> bool {
        self.inbox.try_send(Event::NodeUnreachable(node)).is_ok()
    }

    /// Hands a message from a peer (decoded with [`crate::wire`]) to the
    /// group, with the records an AppendEntries carried; returns `false`
    /// when the inbox is full and the message was dropped (Raft retries).
    pub fn deliver(&self, msg: Message, records: Option<RecordRun>) -> bool {
        self.inbox.try_send(Event::Step { msg, records }).is_ok()
    }
}

#[cfg(test)]
mod tests;

/// The kind of a storage crate error, as clients are told it.
pub(crate) fn storage_fault(e: &sampan_storage::StorageError) -> StorageFault {
    use sampan_storage::StorageError as E;
    match e {
        E::Io { .. } | E::Failed { .. } => StorageFault::Io,
        E::DiskFull { .. } => StorageFault::DiskFull,
        E::Corrupt { .. } | E::Format { .. } => StorageFault::Corrupt,
        E::Invalid { .. } => StorageFault::Other,
    }
}

/// A storage crate error as a [`GroupError`]: its kind, and its text
/// (group, file, offset, cause).
pub(crate) fn storage_error(group: u64, e: &sampan_storage::StorageError) -> GroupError {
    GroupError::Storage {
        group,
        fault: storage_fault(e),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod fault_tests {
    use super::*;
    use sampan_storage::StorageError;

    #[test]
    fn storage_errors_keep_their_kind_as_a_group_error() {
        let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let full = StorageError::io(7, "write", "/d/seg", 4096, enospc);
        let e = storage_error(7, &full);
        assert!(
            matches!(e, GroupError::Storage { group: 7, fault: StorageFault::DiskFull, ref reason } if reason.contains("/d/seg")),
            "{e}"
        );
        let eio = std::io::Error::from_raw_os_error(libc::EIO);
        let io = StorageError::io(7, "fdatasync", "/d/seg", 0, eio);
        assert!(matches!(
            storage_error(7, &io),
            GroupError::Storage {
                fault: StorageFault::Io,
                ..
            }
        ));
        let corrupt = StorageError::Corrupt {
            group: 7,
            path: "/d/seg".into(),
            offset: 12,
            reason: "bad crc".into(),
        };
        assert!(matches!(
            storage_error(7, &corrupt),
            GroupError::Storage {
                fault: StorageFault::Corrupt,
                ..
            }
        ));
    }
}
