//! Carrying a shard's group messages over sampan-net: an [`Outbox`] that
//! sends each message as a one-way frame of kind [`wire::kind::RAFT`], and
//! the router handler that decodes incoming frames and hands them to the
//! addressed group. AppendEntries bodies go out as two pieces (header and
//! the log's records) without being joined.
//!
//! Heartbeats and their responses are coalesced: the outbox collects them
//! per peer node and a flusher fiber sends one [`wire::HeartbeatBatch`]
//! frame ([`wire::kind::HEARTBEATS`]) per node with every group's, once the
//! groups woken by the same tick have run. A thousand awake groups led
//! here cost one frame per follower node per heartbeat interval.

use super::{GroupHandle, Outbox};
use crate::constants::PEER_SILENT_TIMEOUTS_BEFORE_REDIAL;
use crate::raft::{Body as RaftBody, Message, NodeId};
use crate::wire::{
    self, ChunkAnswer, ChunkStatus, HeartbeatBatch, SnapshotChunk, decode_message, encode_message,
};
use sampan_fiber::TaskClass;
use sampan_net::{Body, Incoming, NetError, Router, Transport};
use sampan_storage::RecordRun;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The groups of one shard, by group id: where incoming messages go.
pub type GroupDirectory = Rc<RefCell<HashMap<u64, GroupHandle>>>;

/// Ids of a shard's groups that started or woke from hibernation since the
/// shard's ticker last looked ([`drive_ticks`] visits only awake groups,
/// and sleeps while there are none).
pub type WakeList = Rc<WakeQueue>;

/// The queue behind a [`WakeList`]: pushing an id also wakes the ticker.
#[derive(Debug, Default)]
pub struct WakeQueue {
    ids: RefCell<Vec<u64>>,
    pushed: sampan_fiber::Signal,
}

impl WakeQueue {
    /// Group `id` started or woke: the ticker ticks it from now on.
    pub fn push(&self, id: u64) {
        self.ids.borrow_mut().push(id);
        self.pushed.notify_all();
    }

    /// Takes the ids pushed since the last call.
    fn take(&self) -> Vec<u64> {
        std::mem::take(&mut *self.ids.borrow_mut())
    }
}

/// An [`Outbox`] over a shard's [`Transport`].
pub struct TransportOutbox {
    transport: Transport,
    dropped: Cell<u64>,
    /// Heartbeats (and responses) waiting for the flusher, per peer node.
    beats: RefCell<HashMap<u64, HeartbeatBatch>>,
    beats_ready: sampan_fiber::Signal,
    batches_sent: Cell<u64>,
    beats_queued: Cell<u64>,
}

impl TransportOutbox {
    /// Sends through `transport` (the shard's). Heartbeats wait for
    /// [`TransportOutbox::flush_heartbeats`], which the caller runs as a
    /// fiber on the same shard.
    pub fn new(transport: Transport) -> TransportOutbox {
        TransportOutbox {
            transport,
            dropped: Cell::new(0),
            beats: RefCell::new(HashMap::new()),
            beats_ready: sampan_fiber::Signal::new(),
            batches_sent: Cell::new(0),
            beats_queued: Cell::new(0),
        }
    }

    /// Messages not sent (peer not connected, budget full): Raft resends.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Heartbeats (and responses) queued, and the batch frames that
    /// carried them, so far.
    pub fn heartbeat_stats(&self) -> (u64, u64) {
        (self.beats_queued.get(), self.batches_sent.get())
    }

    /// The flusher: whenever heartbeats wait, lets the other fibers that
    /// are ready run first (the groups woken by the same tick add theirs),
    /// then sends one batch frame per peer node. Runs until the runtime
    /// stops or `outbox` is dropped.
    pub async fn flush_heartbeats(outbox: std::rc::Weak<TransportOutbox>) {
        let flush = async {
            loop {
                let wait = match outbox.upgrade() {
                    Some(o) if o.beats.borrow().is_empty() => o.beats_ready.wait(),
                    Some(_) => {
                        sampan_fiber::yield_now().await;
                        if let Some(o) = outbox.upgrade() {
                            o.send_batches();
                        }
                        continue;
                    }
                    None => return,
                };
                wait.await;
            }
        };
        futures_lite::future::or(flush, sampan_fiber::stopping()).await;
    }

    fn send_batches(&self) {
        let batches = std::mem::take(&mut *self.beats.borrow_mut());
        for (peer, batch) in batches {
            self.send_batch(peer, &batch);
        }
    }

    fn send_batch(&self, peer: u64, batch: &HeartbeatBatch) {
        let body = Body::from(vec![batch.encode()]);
        match self
            .transport
            .try_send(peer, wire::kind::HEARTBEATS, 0, body)
        {
            Ok(()) => self.batches_sent.set(self.batches_sent.get() + 1),
            Err(e) => {
                self.dropped.set(self.dropped.get() + 1);
                log::debug!("heartbeats to node {peer} not sent: {e}");
            }
        }
    }
}

/// How long a follower may take to store one snapshot chunk.
const SNAPSHOT_CHUNK_TIMEOUT: Duration = Duration::from_secs(10);

impl Outbox for TransportOutbox {
    fn request_snapshot_chunk(
        &self,
        to: NodeId,
        group: u64,
        chunk: Vec<bytes::Bytes>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bytes::Bytes, String>>>> {
        let transport = self.transport.clone();
        Box::pin(async move {
            transport
                .request(
                    to.0,
                    wire::kind::SNAPSHOT,
                    group,
                    Body::from(chunk),
                    SNAPSHOT_CHUNK_TIMEOUT,
                )
                .await
                .map(|frame| frame.body)
                .map_err(|e| e.to_string())
        })
    }

    fn send(&self, msg: Message, records: Option<RecordRun>) {
        if matches!(
            msg.body,
            RaftBody::Heartbeat(_) | RaftBody::HeartbeatResponse(_)
        ) {
            self.beats_queued.set(self.beats_queued.get() + 1);
            let mut beats = self.beats.borrow_mut();
            let first = beats.is_empty();
            beats
                .entry(msg.to.0)
                .or_insert_with(|| HeartbeatBatch::new(msg.from, msg.to))
                .push(&msg);
            drop(beats);
            if first {
                self.beats_ready.notify_one();
            }
            return;
        }
        // Messages between two nodes keep their order: heartbeats waiting
        // for this peer go first (a heartbeat overtaken by a hibernation
        // request would wake a follower its leader left asleep).
        let waiting = self.beats.borrow_mut().remove(&msg.to.0);
        if let Some(batch) = waiting {
            self.send_batch(msg.to.0, &batch);
        }
        let pieces = match encode_message(&msg, records.as_ref()) {
            Ok(p) => p,
            Err(e) => {
                sampan_fiber::group_log!(
                    error,
                    msg.group.0,
                    "group {}: cannot encode a message to {}: {e}",
                    msg.group,
                    msg.to
                );
                return;
            }
        };
        // Never wait here: the Raft loop must not stall on one slow peer.
        if let Err(e) =
            self.transport
                .try_send(msg.to.0, wire::kind::RAFT, msg.group.0, Body::from(pieces))
        {
            self.dropped.set(self.dropped.get() + 1);
            sampan_fiber::group_log!(
                debug,
                msg.group.0,
                "group {}: message to {} not sent: {e}",
                msg.group,
                msg.to
            );
        }
    }
}

/// Registers the handlers of [`wire::kind::RAFT`],
/// [`wire::kind::HEARTBEATS`] and [`wire::kind::SNAPSHOT`] frames on
/// `router`, and answers [`wire::kind::KEEPALIVE`] requests (see
/// [`watch_peers`]): each frame is decoded (records
/// validated, payloads at most `payload_max` bytes) and delivered to its
/// group in `groups` (a heartbeat batch to each of its groups). A frame
/// that does not decode, or whose sender is not the node the connection
/// authenticated, is dropped with a warning.
pub fn route_raft_frames(
    router: &Router,
    groups: GroupDirectory,
    payload_max: u32,
) -> Result<(), NetError> {
    router.register(wire::kind::KEEPALIVE, |incoming: Incoming| {
        if let Some(responder) = incoming.responder
            && let Err(e) = responder.respond(Body::from(Vec::<bytes::Bytes>::new()))
        {
            log::debug!(
                "node {}: keepalive not answered: {e}",
                incoming.from.node_id
            );
        }
    })?;
    let beat_groups = groups.clone();
    router.register(wire::kind::HEARTBEATS, move |incoming: Incoming| {
        let origin = incoming.from.node_id;
        let batch = match HeartbeatBatch::decode(incoming.frame.body) {
            Ok(b) if b.from == NodeId(origin) => b,
            Ok(b) => {
                return log::warn!("node {origin}: heartbeats claim sender {}; dropped", b.from);
            }
            Err(e) => return log::warn!("node {origin}: undecodable heartbeats dropped: {e}"),
        };
        let groups = beat_groups.borrow();
        for msg in batch.into_messages() {
            if let Some(g) = groups.get(&msg.group.0) {
                g.deliver(msg, None);
            }
        }
    })?;
    let snapshot_groups = groups.clone();
    router.register(wire::kind::SNAPSHOT, move |incoming: Incoming| {
        let origin = incoming.from.node_id;
        let group = incoming.frame.header.group_id;
        let Some(responder) = incoming.responder else {
            return log::warn!("node {origin}: a snapshot chunk sent one-way; dropped");
        };
        let reply: Box<dyn FnOnce(ChunkAnswer)> = Box::new(move |answer: ChunkAnswer| {
            if let Err(e) = responder.respond(answer.encode()) {
                sampan_fiber::group_log!(
                    debug,
                    group,
                    "group {group}: snapshot chunk answer not sent: {e}"
                );
            }
        });
        let refused = ChunkAnswer {
            status: ChunkStatus::Refused,
            term: 0,
            next_offset: 0,
        };
        let chunk = match SnapshotChunk::decode(incoming.frame.body) {
            Ok(c) if c.leader == origin => c,
            Ok(c) => {
                log::warn!(
                    "node {origin}: snapshot chunk claims leader {}; refused",
                    c.leader
                );
                return reply(refused);
            }
            Err(e) => {
                log::warn!("node {origin}: undecodable snapshot chunk refused: {e}");
                return reply(refused);
            }
        };
        match snapshot_groups.borrow().get(&group) {
            Some(g) => g.deliver_snapshot_chunk(chunk, reply),
            None => reply(refused),
        }
    })?;
    router.register(wire::kind::RAFT, move |incoming: Incoming| {
        let origin = incoming.from.node_id;
        let decoded = match decode_message(incoming.frame.body, payload_max) {
            Ok(d) => d,
            Err(e) => {
                log::warn!("node {origin}: undecodable Raft message dropped: {e}");
                return;
            }
        };
        let msg = decoded.message;
        if msg.from.0 != origin || msg.group.0 != incoming.frame.header.group_id {
            log::warn!(
                "node {origin}: message claims sender {} and group {}; dropped",
                msg.from,
                msg.group
            );
            return;
        }
        match groups.borrow().get(&msg.group.0) {
            Some(g) => {
                g.deliver(msg, decoded.records);
            }
            None => log::debug!("node {origin}: message for unknown group {}", msg.group),
        }
    })
}

/// The per-node-pair liveness check that lets idle groups hibernate safely.
/// Every `period` it sends each of `peers` a keepalive request (at most one
/// in flight per peer) over the node pair's connection; a peer that has not
/// answered one for `down_after` (an election timeout) — its connection is
/// down, or up but silent: paused, blackholed — is unreachable, and every
/// group of the shard is told, so the hibernating groups that node led wake
/// and elect, and no other group pays anything. Runs until the runtime
/// stops.
pub async fn watch_peers(
    transport: Transport,
    groups: GroupDirectory,
    peers: Rc<RefCell<BTreeSet<u64>>>,
    period: Duration,
    down_after: Duration,
) {
    // When each peer last answered, or was first watched.
    let heard: Rc<RefCell<HashMap<u64, Instant>>> = Rc::default();
    let asking: Rc<RefCell<HashSet<u64>>> = Rc::default();
    let watch = async {
        loop {
            sampan_fiber::sleep(period).await;
            let now = Instant::now();
            let peers: Vec<u64> = peers.borrow().iter().copied().collect();
            heard.borrow_mut().retain(|p, _| peers.contains(p));
            for peer in peers {
                let last = *heard.borrow_mut().entry(peer).or_insert(now);
                if transport.connection(peer).is_some() && asking.borrow_mut().insert(peer) {
                    let ask = keepalive(transport.clone(), peer, down_after, heard.clone());
                    let done = asking.clone();
                    let ask = async move {
                        ask.await;
                        done.borrow_mut().remove(&peer);
                    };
                    if let Err(e) = sampan_fiber::spawn(TaskClass::Latency, "keepalive", ask) {
                        log::debug!("node {peer}: keepalive not sent: {e}");
                        asking.borrow_mut().remove(&peer);
                    }
                }
                if now.duration_since(last) >= down_after {
                    // Repeated while the node stays silent: a group that
                    // went back to sleep is woken again; waking is
                    // idempotent.
                    for g in groups.borrow().values() {
                        g.node_unreachable(peer);
                    }
                }
            }
        }
    };
    futures_lite::future::or(watch, sampan_fiber::stopping()).await;
}

/// One keepalive round trip to `peer`; records when it was answered. A
/// peer silent for [`PEER_SILENT_TIMEOUTS_BEFORE_REDIAL`] × `wait` on an
/// open connection has its connection closed, so that the dialler
/// connects again (and looks its name up again).
async fn keepalive(
    transport: Transport,
    peer: u64,
    wait: Duration,
    heard: Rc<RefCell<HashMap<u64, Instant>>>,
) {
    let Some(conn) = transport.connection(peer) else {
        return;
    };
    let empty = Body::from(Vec::<bytes::Bytes>::new());
    let sent = Instant::now();
    match conn.request(wire::kind::KEEPALIVE, 0, empty, wait).await {
        Ok(_) => {
            crate::stats::peer_rtt(peer, sent.elapsed());
            if let Some(t) = heard.borrow_mut().get_mut(&peer) {
                *t = Instant::now();
            }
        }
        Err(e @ NetError::Timeout { .. }) => {
            let last = heard.borrow().get(&peer).copied();
            let silent = last.map(|t| t.elapsed()).unwrap_or_default();
            if silent >= wait * PEER_SILENT_TIMEOUTS_BEFORE_REDIAL && !conn.is_closed() {
                log::warn!(
                    "node {peer}: silent for {} ms on an open connection ({e}): \
                     closing it to connect again",
                    silent.as_millis()
                );
                conn.close("peer silent: keepalives unanswered");
            } else {
                log::debug!("node {peer}: keepalive unanswered: {e}");
            }
        }
        Err(e) => log::debug!("node {peer}: keepalive unanswered: {e}"),
    }
}

/// The shard's one ticker: every `period`, advances the clock of every group
/// in `groups` that is awake (hibernating groups are skipped by a flag
/// check). Runs until the runtime stops.
pub async fn drive_ticks(groups: GroupDirectory, woken: WakeList, period: Duration) {
    let Ok(mut ticker) = sampan_fiber::Ticker::new(period) else {
        log::error!("shard ticker: period {period:?} is not usable");
        return;
    };
    let drive = async {
        // Only awake groups: a hibernating one ignores ticks, and walking
        // thousands of them every tick was most of an idle node's CPU.
        // A group goes on the wake list when it starts and when it wakes.
        let mut awake: std::collections::HashSet<u64> = std::collections::HashSet::new();
        loop {
            if awake.is_empty() {
                // Every group asleep: no tick until one wakes (a shard of
                // hibernating groups then wakes only for its peers).
                let pushed = woken.pushed.wait();
                if woken.ids.borrow().is_empty() {
                    pushed.await;
                    // From a fresh start: the periods slept through are no
                    // time a woken group should be ticked for at once.
                    match sampan_fiber::Ticker::new(period) {
                        Ok(t) => ticker = t,
                        Err(e) => log::error!("shard ticker: {e}"),
                    }
                }
            }
            let n = ticker.tick().await;
            awake.extend(woken.take());
            let dir = groups.borrow();
            awake.retain(|id| match dir.get(id) {
                Some(g) => {
                    g.tick(n);
                    !g.is_hibernating()
                }
                None => false,
            });
        }
    };
    futures_lite::future::or(drive, sampan_fiber::stopping()).await;
}
