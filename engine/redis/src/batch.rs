//! The shard's batcher: plain writes (`SET k v`, `MSET`) and key reads
//! (`GET`, `MGET`, `EXISTS`...) from every connection on the shard, merged
//! per group into few proposals (one `PutMany`) and few reads (one
//! `KvQuery::Get`).
//!
//! Shard-local (`Rc`, `!Send`), one per listener per shard. Each group
//! queue runs at most `in_flight_max` proposals (or reads) at a time; while
//! they are out, new requests wait in the queue and leave together with the
//! next one. The first request of an idle queue leaves at once (the flusher
//! fiber runs as soon as the connection yields), so batching adds no wait
//! when the load is light.
//!
//! A key read that the group's leader on this shard can answer from its
//! lease at once (`GroupRef::read_now_with`) skips the queue altogether.
//!
//! Merging keeps Redis's guarantees: requests of different connections are
//! concurrent, so any order between them is a valid one; each connection
//! waits for its own request before sending its next, so its order holds;
//! a read that joins a batch is asked (ReadIndex) after it arrived, so it
//! stays linearizable.

use super::exactly_once::Writer;
use bytes::Bytes;
use sampan::server::GroupRef;
use sampan_fiber::{OneshotSender, TaskClass, oneshot};
use sampan_kv::{Item, KvAnswer, KvCommand, KvQuery, KvResult, QUERY_KEYS_MAX, Ttl};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Most key-value pairs in one merged proposal.
pub const BATCH_PAIRS_MAX: usize = 4096;
/// Most key and value bytes in one merged proposal.
pub const BATCH_BYTES_MAX: usize = 4 << 20;

/// Per-item results of a batch, or the error text every member gets.
type Outcome<U> = Result<Vec<U>, String>;

/// A request's item count and where its results go.
type Waiter<U> = (usize, OneshotSender<Outcome<U>>);

/// Requests waiting for their group's next proposal or read.
struct Queue<T, U> {
    items: Vec<T>,
    /// Each waiter's item count and where its results go.
    waiters: Vec<Waiter<U>>,
    /// Flusher fibers running.
    flushers: usize,
}

impl<T, U> Default for Queue<T, U> {
    fn default() -> Self {
        Queue {
            items: Vec::new(),
            waiters: Vec::new(),
            flushers: 0,
        }
    }
}

impl<T, U: Clone> Queue<T, U> {
    /// Takes whole waiters from the front while `fits` accepts the items
    /// (always at least one waiter).
    fn take(&mut self, mut fits: impl FnMut(&T) -> bool) -> (Vec<T>, Vec<Waiter<U>>) {
        let mut n_items = 0;
        let mut n_waiters = 0;
        'outer: for (count, _) in &self.waiters {
            if n_waiters > 0 {
                for it in &self.items[n_items..n_items + count] {
                    if !fits(it) {
                        break 'outer;
                    }
                }
            }
            n_items += count;
            n_waiters += 1;
        }
        let rest_items = self.items.split_off(n_items);
        let rest_waiters = self.waiters.split_off(n_waiters);
        (
            std::mem::replace(&mut self.items, rest_items),
            std::mem::replace(&mut self.waiters, rest_waiters),
        )
    }
}

/// Hands each waiter its slice of the results, or the shared error.
fn distribute<U: Clone>(waiters: Vec<Waiter<U>>, outcome: Outcome<U>) {
    match outcome {
        Ok(results) => {
            let mut it = results.into_iter();
            for (count, tx) in waiters {
                tx.send(Ok(it.by_ref().take(count).collect()));
            }
        }
        Err(e) => {
            for (_, tx) in waiters {
                tx.send(Err(e.clone()));
            }
        }
    }
}

/// A shard's queues, one per group.
type Queues<T, U> = RefCell<HashMap<u64, Rc<RefCell<Queue<T, U>>>>>;

/// The batcher of one shard. See the module docs.
pub struct Batcher {
    /// Off: every request is its own proposal or read (for measuring).
    enabled: bool,
    in_flight_max: usize,
    writer: Rc<Writer>,
    writes: Queues<(Bytes, Bytes), ()>,
    reads: Queues<Bytes, Option<Item>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("enabled", &self.enabled)
            .field("in_flight_max", &self.in_flight_max)
            .finish()
    }
}

impl Batcher {
    /// A batcher whose writes go through `writer`; `enabled: false` sends
    /// every request on its own.
    pub fn new(enabled: bool, in_flight_max: usize, writer: Rc<Writer>) -> Batcher {
        Batcher {
            enabled,
            in_flight_max: in_flight_max.max(1),
            writer,
            writes: RefCell::new(HashMap::new()),
            reads: RefCell::new(HashMap::new()),
        }
    }

    /// Writes `pairs` (no TTL, unconditionally) through `group`'s log.
    pub async fn put_many(
        &self,
        group: &GroupRef,
        pairs: Vec<(Bytes, Bytes)>,
    ) -> Result<(), String> {
        if !self.enabled {
            return propose_pairs(&self.writer, group, pairs).await.map(|_| ());
        }
        let writer = self.writer.clone();
        let limits = Limits {
            items_max: BATCH_PAIRS_MAX,
            bytes_max: BATCH_BYTES_MAX,
            size: |(k, v): &(Bytes, Bytes)| k.len() + v.len(),
        };
        submit(
            &self.writes,
            self.in_flight_max,
            group,
            pairs,
            "redis-batch-write",
            limits,
            move |g, items| {
                let writer = writer.clone();
                async move { propose_pairs(&writer, &g, items).await }
            },
        )
        .await
        .map(|_| ())
    }

    /// The items of `keys` (absent or expired: `None`), by a linearizable
    /// read of `group`.
    pub async fn get(
        &self,
        group: &GroupRef,
        keys: Vec<Bytes>,
    ) -> Result<Vec<Option<Item>>, String> {
        // Answered on the spot when this shard leads the group and its
        // lease allows a read at once: a batch would only add the flush
        // fiber's turn and a channel each way.
        if let Some(answer) = group.read_now_with(|| KvQuery::Get(keys.clone()).to_bytes()) {
            return items_of(group, keys.len(), answer.map_err(|e| format!("ERR {e}")));
        }
        if !self.enabled {
            return read_keys(group, keys).await;
        }
        let limits = Limits {
            items_max: QUERY_KEYS_MAX,
            bytes_max: usize::MAX,
            size: |_: &Bytes| 0,
        };
        submit(
            &self.reads,
            self.in_flight_max,
            group,
            keys,
            "redis-batch-read",
            limits,
            |g, items| async move { read_keys(&g, items).await },
        )
        .await
    }
}

/// How much one merged proposal or read may carry.
struct Limits<T> {
    items_max: usize,
    bytes_max: usize,
    size: fn(&T) -> usize,
}

/// Queues `items` on `group`'s queue in `queues`, starts a flusher if fewer
/// than `in_flight_max` run, and waits for this request's results. Each
/// flusher takes whole requests from the front within `limits`, runs `op`
/// on them, hands the results out, and repeats until the queue is empty.
async fn submit<T, U, F, Fut>(
    queues: &Queues<T, U>,
    in_flight_max: usize,
    group: &GroupRef,
    items: Vec<T>,
    name: &'static str,
    limits: Limits<T>,
    op: F,
) -> Outcome<U>
where
    T: 'static,
    U: Clone + 'static,
    F: Fn(GroupRef, Vec<T>) -> Fut + 'static,
    Fut: std::future::Future<Output = Outcome<U>>,
{
    let queue = queues.borrow_mut().entry(group.id()).or_default().clone();
    let (tx, rx) = oneshot();
    let start = {
        let mut q = queue.borrow_mut();
        q.waiters.push((items.len(), tx));
        q.items.extend(items);
        q.flushers < in_flight_max && {
            q.flushers += 1;
            true
        }
    };
    if start {
        let group = group.clone();
        let q = queue.clone();
        spawn_flusher(
            name,
            async move {
                loop {
                    let mut bytes = 0usize;
                    let mut n = 0usize;
                    let (items, waiters) = q.borrow_mut().take(|it| {
                        n += 1;
                        bytes = bytes.saturating_add((limits.size)(it));
                        n <= limits.items_max && bytes <= limits.bytes_max
                    });
                    if waiters.is_empty() {
                        q.borrow_mut().flushers -= 1;
                        return;
                    }
                    let outcome = op(group.clone(), items).await;
                    distribute(waiters, outcome);
                }
            },
            &queue,
        );
    }
    rx.recv()
        .await
        .unwrap_or_else(|| Err("ERR batch dropped".into()))
}

/// Starts a flusher fiber. If it cannot start (the shard is stopping) and
/// no other flusher runs, the waiting requests fail now rather than never.
fn spawn_flusher<T: 'static, U: Clone + 'static>(
    name: &'static str,
    work: impl std::future::Future<Output = ()> + 'static,
    queue: &Rc<RefCell<Queue<T, U>>>,
) {
    if let Err(e) = sampan_fiber::spawn_detached(TaskClass::Latency, name, work) {
        log::warn!("redis: {name} not started: {e}");
        let waiters = {
            let mut q = queue.borrow_mut();
            q.flushers -= 1;
            if q.flushers > 0 {
                return;
            }
            q.items.clear();
            std::mem::take(&mut q.waiters)
        };
        distribute(waiters, Err(format!("ERR {e}")));
    }
}

/// One `PutMany` proposal, exactly once; one `()` per pair on success.
async fn propose_pairs(
    writer: &Writer,
    group: &GroupRef,
    pairs: Vec<(Bytes, Bytes)>,
) -> Outcome<()> {
    let n = pairs.len();
    let command = KvCommand::PutMany {
        pairs,
        ttl: Ttl::Persist,
    };
    match writer.write(group, command).await {
        Ok(KvResult::Failed(f)) => Err(super::render::failure_text(&f)),
        Ok(_) => Ok(vec![(); n]),
        Err(e) => Err(e.reply_text()),
    }
}

/// One `KvQuery::Get`; one item per key.
pub async fn read_keys(group: &GroupRef, keys: Vec<Bytes>) -> Outcome<Option<Item>> {
    let n = keys.len();
    let reply = group
        .read(KvQuery::Get(keys).to_bytes())
        .await
        .map_err(|e| format!("ERR {e}"));
    items_of(group, n, reply)
}

/// The `n` items of a `KvQuery::Get`'s answer.
fn items_of(group: &GroupRef, n: usize, reply: Result<Bytes, String>) -> Outcome<Option<Item>> {
    let reply = reply?;
    // Deadlines onto this node's clock: a TTL shows what the leader judged.
    let now = sampan::state_machine::now_ms();
    match KvAnswer::decode(reply).map(|a| a.into_items(now)) {
        Ok(Some(v)) if v.len() == n => Ok(v),
        other => Err(format!(
            "ERR unexpected answer from group {}: {other:?}",
            group.id()
        )),
    }
}
