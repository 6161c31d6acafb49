//! Carrying a shard's group messages over sampan-net: an [`Outbox`] that
//! sends each message as a one-way frame of kind [`wire::kind::RAFT`], and
//! the router handler that decodes incoming frames and hands them to the
//! addressed group. AppendEntries bodies go out as two pieces (header and
//! the log's records) without being joined.

use super::{GroupHandle, Outbox};
use crate::raft::Message;
use crate::wire::{self, decode_message, encode_message};
use sampan_net::{Body, Incoming, NetError, Router, Transport};
use sampan_storage::RecordRun;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The groups of one shard, by group id: where incoming messages go.
pub type GroupDirectory = Rc<RefCell<HashMap<u64, GroupHandle>>>;

/// An [`Outbox`] over a shard's [`Transport`].
pub struct TransportOutbox {
    transport: Transport,
    dropped: Cell<u64>,
}

impl TransportOutbox {
    /// Sends through `transport` (the shard's).
    pub fn new(transport: Transport) -> TransportOutbox {
        TransportOutbox {
            transport,
            dropped: Cell::new(0),
        }
    }

    /// Messages not sent (peer not connected, budget full): Raft resends.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

impl Outbox for TransportOutbox {
    fn send(&self, msg: Message, records: Option<RecordRun>) {
        let pieces = match encode_message(&msg, records.as_ref()) {
            Ok(p) => p,
            Err(e) => {
                log::error!(
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
            log::debug!("group {}: message to {} not sent: {e}", msg.group, msg.to);
        }
    }
}

/// Registers the handler of [`wire::kind::RAFT`] frames on `router`: each is
/// decoded (records validated, payloads at most `payload_max` bytes) and
/// delivered to its group in `groups`. A frame that does not decode, or
/// whose sender is not the node the connection authenticated, is dropped
/// with a warning.
pub fn route_raft_frames(
    router: &Router,
    groups: GroupDirectory,
    payload_max: u32,
) -> Result<(), NetError> {
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

/// The per-node-pair liveness check that lets idle groups hibernate safely:
/// every `period`, looks at the connection to each of `peers`; once one has
/// been down for `down_after` (an election timeout), tells every group of
/// the shard, so the hibernating groups that node led wake and elect, and
/// no other group pays anything. Runs until the runtime stops.
pub async fn watch_peers(
    transport: Transport,
    groups: GroupDirectory,
    peers: Vec<u64>,
    period: Duration,
    down_after: Duration,
) {
    let mut down_since: HashMap<u64, Instant> = HashMap::new();
    let watch = async {
        loop {
            sampan_fiber::sleep(period).await;
            let now = Instant::now();
            for &peer in &peers {
                if transport.connection(peer).is_some() {
                    down_since.remove(&peer);
                    continue;
                }
                let since = *down_since.entry(peer).or_insert(now);
                if now.duration_since(since) >= down_after {
                    // Repeated while the node stays down: a group that went
                    // back to sleep is woken again; waking is idempotent.
                    for g in groups.borrow().values() {
                        g.node_unreachable(peer);
                    }
                }
            }
        }
    };
    futures_lite::future::or(watch, sampan_fiber::stopping()).await;
}

/// The shard's one ticker: every `period`, advances the clock of every group
/// in `groups` that is awake (hibernating groups are skipped by a flag
/// check). Runs until the runtime stops.
pub async fn drive_ticks(groups: GroupDirectory, period: Duration) {
    let Ok(mut ticker) = sampan_fiber::Ticker::new(period) else {
        log::error!("shard ticker: period {period:?} is not usable");
        return;
    };
    let drive = async {
        loop {
            let n = ticker.tick().await;
            for g in groups.borrow().values() {
                g.tick(n);
            }
        }
    };
    futures_lite::future::or(drive, sampan_fiber::stopping()).await;
}
