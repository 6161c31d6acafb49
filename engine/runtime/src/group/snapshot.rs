//! A group's snapshots: the snapshot fiber writes a frozen state machine
//! view to the snapshot store in chunks (yielding between chunks, in the
//! shard's background queue, while the apply fiber keeps applying), then
//! purges the log it covers; it also receives a snapshot streamed by the
//! leader (InstallSnapshot) into the store, resumably. Sender fibers stream
//! the newest stored snapshot to a follower that needs purged entries.
//!
//! The stored bytes are the state machine's chunks, each framed as
//! `len u32 | chunk` (the chunks are self-checking; the store adds a CRC
//! over all of it), so a restore hands the state machine exactly the chunks
//! its frozen view produced.

use super::{ApplyJob, Event, Outbox, Reply, SnapshotSaved};
use crate::raft::{self, Body, Message, NodeId};
use crate::state_machine::{FrozenState, SnapshotInfo, StateMachine};
use crate::wire::{ChunkAnswer, ChunkStatus, SnapshotChunk, encode_snapshot_meta};
use bytes::Bytes;
use sampan_fiber::{Receiver, Sender, yield_if_needed};
use sampan_storage::{RaftLog, SnapshotManager, SnapshotSink, SnapshotSource};
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// When a group takes snapshots and what happens to the log after one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Take one this often if anything was applied since the last
    /// (Dongting's `saveSnapshotSeconds`); `None`: not by time.
    pub interval: Option<Duration>,
    /// Take one once this many bytes of entries were applied since the
    /// last; 0: not by size.
    pub log_bytes: u64,
    /// Keep the log this long after a snapshot covers it, then purge it
    /// (Dongting's `markTruncateByTimestamp`); zero purges at once.
    pub retention: Duration,
    /// Bytes per chunk, written to the store and sent to followers.
    pub chunk_bytes: usize,
    /// Most bytes per second a snapshot is written at; 0: no limit.
    pub write_bytes_per_sec: u64,
}

impl SnapshotPolicy {
    /// The policy `cfg` sets.
    pub fn of(cfg: &crate::config::GroupConfig) -> SnapshotPolicy {
        let ms = std::time::Duration::from_millis;
        SnapshotPolicy {
            interval: (cfg.snapshot_interval_ms > 0).then(|| ms(cfg.snapshot_interval_ms)),
            log_bytes: cfg.snapshot_log_bytes,
            retention: ms(cfg.log_retention_ms),
            chunk_bytes: usize::try_from(cfg.snapshot_chunk_bytes).unwrap_or(usize::MAX),
            write_bytes_per_sec: cfg.snapshot_write_bytes_per_sec,
        }
    }
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            interval: Some(Duration::from_secs(3600)),
            log_bytes: 256 << 20,
            retention: Duration::ZERO,
            chunk_bytes: 256 << 10,
            write_bytes_per_sec: 100 << 20,
        }
    }
}

/// How a chunk's receiver answers its sender.
pub(crate) type ChunkReply = Box<dyn FnOnce(ChunkAnswer)>;

/// Work for the snapshot fiber.
pub(crate) enum SnapJob {
    /// Write a frozen view as the snapshot `meta` describes.
    Save {
        frozen: Box<dyn FrozenState>,
        meta: raft::SnapshotMeta,
        waiters: Vec<Reply<SnapshotSaved>>,
    },
    /// A chunk of a snapshot the leader streams here.
    Chunk {
        chunk: SnapshotChunk,
        reply: ChunkReply,
    },
}

/// What the fibers of one group share about its snapshots.
pub(crate) struct Snapshots<S: SnapshotManager> {
    pub(crate) store: S,
    /// The newest durable snapshot; the core's log view shares it.
    pub(crate) meta: Rc<RefCell<raft::SnapshotMeta>>,
    pub(crate) policy: SnapshotPolicy,
    /// A snapshot is being written (the apply fiber freezes no other).
    pub(crate) busy: Cell<bool>,
    /// The last snapshot written here, for status.
    pub(crate) last: Cell<Option<SnapshotSaved>>,
    /// Followers a snapshot is streaming to.
    sending: RefCell<HashSet<u64>>,
}

impl<S: SnapshotManager> Snapshots<S> {
    pub(crate) fn new(
        store: S,
        meta: Rc<RefCell<raft::SnapshotMeta>>,
        policy: SnapshotPolicy,
    ) -> Snapshots<S> {
        Snapshots {
            store,
            meta,
            policy,
            busy: Cell::new(false),
            last: Cell::new(None),
            sending: RefCell::new(HashSet::new()),
        }
    }

    /// Makes `meta` the newest snapshot, unless a newer one is already.
    pub(crate) fn advance(&self, meta: &raft::SnapshotMeta) {
        let mut m = self.meta.borrow_mut();
        if meta.index > m.index {
            *m = meta.clone();
        }
    }
}

/// The stored snapshot at (`index`, `term`).
pub(crate) async fn find<S: SnapshotManager>(
    store: &S,
    index: u64,
    term: u64,
) -> Result<sampan_storage::SnapshotMeta, String> {
    let all = store.list().await.map_err(|e| e.to_string())?;
    all.into_iter()
        .rev()
        .find(|m| m.last_index == index && m.last_term == term)
        .ok_or_else(|| format!("no stored snapshot at index {index} (term {term})"))
}

/// The stored snapshot `read.at` names (else the newest) and up to
/// `read.bytes_max` bytes (at most a reply's worth) of its data from
/// `read.offset`.
pub(crate) async fn read_piece<S: SnapshotManager>(
    store: &S,
    read: crate::service::SnapshotRead,
) -> Result<(sampan_storage::SnapshotMeta, Bytes), String> {
    let stored = match read.at {
        Some((index, term)) => find(store, index, term).await?,
        None => store
            .latest()
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no snapshot is stored here yet".to_string())?,
    };
    if read.offset > stored.size {
        return Err(format!(
            "offset {} is past the end of the {}-byte snapshot at index {}",
            read.offset, stored.size, stored.last_index
        ));
    }
    let mut reader = store.open(&stored).await.map_err(|e| e.to_string())?;
    reader
        .skip_to(read.offset)
        .await
        .map_err(|e| e.to_string())?;
    let bytes_max = read
        .bytes_max
        .clamp(1, crate::service::SNAPSHOT_PIECE_BYTES_MAX) as usize;
    Ok((stored, next_data(&mut reader, bytes_max).await?))
}

/// The next at most `bytes_max` bytes of a snapshot's data (none at its
/// end).
async fn next_data<R: SnapshotSource>(reader: &mut R, bytes_max: usize) -> Result<Bytes, String> {
    Ok(reader
        .next_chunk(bytes_max)
        .await
        .map_err(|e| e.to_string())?
        .map(|(_, b)| b)
        .unwrap_or_default())
}

/// Feeds the stored snapshot `stored` to `sm` chunk by chunk (yielding
/// between chunks); the live state is replaced only if all of it reads
/// back whole. The error names the snapshot's directory.
pub(crate) async fn restore<S: SnapshotManager>(
    sm: &mut dyn StateMachine,
    store: &S,
    stored: &sampan_storage::SnapshotMeta,
) -> Result<(), String> {
    let path = store.location(stored);
    let info = SnapshotInfo {
        index: stored.last_index,
        term: stored.last_term,
    };
    let fail = |e: String| format!("snapshot {path}: {e}");
    let mut reader = store.open(stored).await.map_err(|e| e.to_string())?;
    sm.restore_begin(info).map_err(|e| fail(e.to_string()))?;
    let fed = async {
        while let Some((at, head)) = reader.next_chunk(4).await.map_err(|e| e.to_string())? {
            let len = <[u8; 4]>::try_from(&head[..])
                .map(u32::from_le_bytes)
                .map_err(|_| format!("truncated chunk header at offset {at}"))?
                as usize;
            let body = match reader.next_chunk(len).await.map_err(|e| e.to_string())? {
                Some((_, b)) if b.len() == len => b,
                _ => return Err(format!("truncated chunk at offset {at}")),
            };
            sm.restore_chunk(body).map_err(|e| e.to_string())?;
            yield_if_needed().await;
        }
        sm.restore_finish().map_err(|e| e.to_string())
    };
    match fed.await {
        Ok(()) => Ok(()),
        Err(e) => {
            sm.restore_abort();
            Err(fail(e))
        }
    }
}

/// A snapshot being received from the leader.
struct Receive<W> {
    meta: raft::SnapshotMeta,
    writer: W,
}

/// The snapshot fiber of one group. See the module docs.
pub(crate) struct SnapshotFiber<L, S: SnapshotManager> {
    pub(crate) group: u64,
    pub(crate) node: u64,
    pub(crate) log: L,
    pub(crate) snaps: Rc<Snapshots<S>>,
    /// How far the apply fiber has applied (its read gate).
    pub(crate) gate: Rc<super::gate::ReadGate>,
    pub(crate) inbox: Sender<Event>,
    /// The apply fiber, told when a snapshot may be due by time.
    pub(crate) apply: Sender<ApplyJob>,
}

impl<L: RaftLog, S: SnapshotManager> SnapshotFiber<L, S> {
    pub(crate) async fn run(self, jobs: Receiver<SnapJob>) {
        let mut receiving: Option<Receive<S::Sink>> = None;
        let mut purge_due: Option<Instant> = None;
        // The interval trigger: this fiber asks the apply fiber to look
        // four times per interval (so a snapshot comes at most 1.25
        // intervals after the last), and the apply fiber's own loop keeps
        // no timer for it on its hot path.
        let period = self.snaps.policy.interval.map(|i| i / 4);
        let mut look_at = period.map(|p| Instant::now() + p);
        loop {
            let wake = match (purge_due, look_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let job = match wake {
                Some(at) => {
                    let job = async { Some(jobs.recv().await) };
                    let timer = async {
                        sampan_fiber::sleep(at.saturating_duration_since(Instant::now())).await;
                        None
                    };
                    futures_lite::future::or(job, timer).await
                }
                None => Some(jobs.recv().await),
            };
            let job = match job {
                Some(Some(job)) => job,
                Some(None) => break,
                None => {
                    let now = Instant::now();
                    if purge_due.is_some_and(|at| at <= now) {
                        purge_due = None;
                        if let Err(e) = self.log.maintain(now).await {
                            sampan_fiber::group_log!(
                                warn,
                                self.group,
                                "group {}: log purge failed: {e}",
                                self.group
                            );
                        }
                    }
                    if let (Some(at), Some(p)) = (look_at, period)
                        && at <= now
                    {
                        look_at = Some(now + p);
                        // A full queue: the next look asks again.
                        let _ = self.apply.try_send(ApplyJob::SnapshotDue);
                    }
                    continue;
                }
            };
            match job {
                SnapJob::Save {
                    frozen,
                    meta,
                    waiters,
                } => {
                    let outcome = self.save(frozen, &meta, &mut purge_due).await;
                    self.snaps.busy.set(false);
                    if let Err(e) = &outcome {
                        sampan_fiber::group_log!(
                            warn,
                            self.group,
                            "group {}: snapshot at {} failed: {e}",
                            self.group,
                            meta.index
                        );
                    }
                    for w in waiters {
                        w.send(
                            outcome
                                .clone()
                                .map_err(|reason| super::GroupError::Storage {
                                    group: self.group,
                                    fault: super::StorageFault::Other,
                                    reason,
                                }),
                        );
                    }
                }
                SnapJob::Chunk { chunk, reply } => {
                    let answer = self.receive(&mut receiving, chunk).await;
                    reply(answer);
                }
            }
        }
    }

    async fn save(
        &self,
        frozen: Box<dyn FrozenState>,
        meta: &raft::SnapshotMeta,
        purge_due: &mut Option<Instant>,
    ) -> Result<SnapshotSaved, String> {
        let started = Instant::now();
        let store = &self.snaps.store;
        let mut w = store
            .create(meta.index, meta.term, encode_snapshot_meta(meta))
            .await
            .map_err(|e| e.to_string())?;
        let chunk_bytes = self.snaps.policy.chunk_bytes.max(4096);
        let pace = self.snaps.policy.write_bytes_per_sec;
        let frozen = match w.os_data_path() {
            // The helper thread encodes and writes the file itself: the
            // shard neither copies nor checksums the bytes.
            Some(path) => match encoder::encode_to_file(frozen, chunk_bytes, path, pace) {
                Ok(done) => {
                    let (size, crc) = done
                        .recv_async()
                        .await
                        .map_err(|_| "the snapshot encoder stopped".to_string())??;
                    w.adopt(size, crc).map_err(|e| e.to_string())?;
                    let stored = w.finish().await.map_err(|e| e.to_string())?;
                    return self.saved(meta, stored.size, started, purge_due).await;
                }
                Err(frozen) => frozen,
            },
            None => frozen,
        };
        match encoder::encode(frozen, chunk_bytes, pace) {
            // Encoded and framed on a low-priority helper thread; written
            // here as they are.
            Ok(chunks) => {
                while let Ok(framed) = chunks.recv_async().await {
                    w.write_chunk(framed?).await.map_err(|e| e.to_string())?;
                }
            }
            // No helper thread could start: encode here, between yields.
            Err(mut frozen) => {
                while let Some(chunk) = frozen.next_chunk(chunk_bytes) {
                    w.write_chunk(encoder::frame(&chunk)?)
                        .await
                        .map_err(|e| e.to_string())?;
                    yield_if_needed().await;
                }
            }
        }
        let stored = w.finish().await.map_err(|e| e.to_string())?;
        self.saved(meta, stored.size, started, purge_due).await
    }

    /// A snapshot of `bytes` is durable: it becomes the newest, and the
    /// log it covers goes.
    async fn saved(
        &self,
        meta: &raft::SnapshotMeta,
        bytes: u64,
        started: Instant,
        purge_due: &mut Option<Instant>,
    ) -> Result<SnapshotSaved, String> {
        self.snaps.advance(meta);
        let saved = SnapshotSaved {
            index: meta.index,
            term: meta.term,
            bytes,
            write_ms: started.elapsed().as_millis() as u64,
            applied_meanwhile: self.gate.applied().saturating_sub(meta.index),
        };
        self.snaps.last.set(Some(saved));
        // Only what is durable here and covered by the snapshot goes.
        let first_kept = meta.index.min(self.log.durable_index()) + 1;
        let retention = self.snaps.policy.retention;
        if retention.is_zero() {
            self.log
                .purge_head(first_kept)
                .await
                .map_err(|e| e.to_string())?;
        } else {
            let at = Instant::now() + retention;
            self.log.mark_purge(first_kept, at);
            *purge_due = Some(at);
        }
        Ok(saved)
    }

    async fn receive(
        &self,
        receiving: &mut Option<Receive<S::Sink>>,
        c: SnapshotChunk,
    ) -> ChunkAnswer {
        let answer = |status, next_offset| ChunkAnswer {
            status,
            term: c.term,
            next_offset,
        };
        let same = receiving
            .as_ref()
            .is_some_and(|r| r.meta.index == c.meta.index && r.meta.term == c.meta.term);
        if !same {
            if c.offset != 0 {
                // A transfer this node knows nothing of (or forgot): from
                // the start.
                return answer(ChunkStatus::Continue, 0);
            }
            if let Some(old) = receiving.take() {
                sampan_fiber::group_log!(
                    info,
                    self.group,
                    "group {}: dropping the unfinished snapshot at {} for the one at {}",
                    self.group,
                    old.meta.index,
                    c.meta.index
                );
                old.writer.abort().await;
            }
            let w = match self
                .snaps
                .store
                .create(c.meta.index, c.meta.term, encode_snapshot_meta(&c.meta))
                .await
            {
                Ok(w) => w,
                Err(e) => {
                    sampan_fiber::group_log!(
                        warn,
                        self.group,
                        "group {}: cannot receive a snapshot: {e}",
                        self.group
                    );
                    return answer(ChunkStatus::Refused, 0);
                }
            };
            sampan_fiber::group_log!(
                info,
                self.group,
                "group {}: receiving a snapshot at {} from node {}",
                self.group,
                c.meta.index,
                c.leader
            );
            *receiving = Some(Receive {
                meta: c.meta.clone(),
                writer: w,
            });
        }
        let Some(r) = receiving.as_mut() else {
            return answer(ChunkStatus::Refused, 0);
        };
        if c.offset != r.writer.size() {
            return answer(ChunkStatus::Continue, r.writer.size());
        }
        if let Err(e) = r.writer.write_chunk(c.data.to_vec()).await {
            sampan_fiber::group_log!(
                warn,
                self.group,
                "group {}: snapshot chunk not written: {e}",
                self.group
            );
            if let Some(r) = receiving.take() {
                r.writer.abort().await;
            }
            return answer(ChunkStatus::Refused, 0);
        }
        if !c.last {
            return answer(ChunkStatus::Continue, r.writer.size());
        }
        let Some(r) = receiving.take() else {
            return answer(ChunkStatus::Refused, 0);
        };
        if r.writer.crc() != c.data_crc {
            sampan_fiber::group_log!(
                warn,
                self.group,
                "group {}: received snapshot at {} fails its CRC; dropped",
                self.group,
                r.meta.index
            );
            r.writer.abort().await;
            return answer(ChunkStatus::Refused, 0);
        }
        if let Err(e) = r.writer.finish().await {
            sampan_fiber::group_log!(
                warn,
                self.group,
                "group {}: received snapshot not stored: {e}",
                self.group
            );
            return answer(ChunkStatus::Refused, 0);
        }
        // The data is durable here: now the core may install it.
        let msg = Message {
            group: raft::GroupId(self.group),
            from: NodeId(c.leader),
            to: NodeId(self.node),
            term: c.term,
            body: Body::Snapshot(Box::new(r.meta)),
        };
        let _ = self.inbox.send(Event::Step { msg, records: None }).await;
        answer(ChunkStatus::Done, c.offset + c.data.len() as u64)
    }
}

/// Everything a sender fiber needs to stream the newest snapshot to `to`.
pub(crate) struct Transfer<S: SnapshotManager> {
    pub(crate) group: u64,
    pub(crate) node: u64,
    pub(crate) term: u64,
    pub(crate) to: u64,
    pub(crate) meta: raft::SnapshotMeta,
    pub(crate) snaps: Rc<Snapshots<S>>,
    pub(crate) outbox: Rc<dyn Outbox>,
    pub(crate) inbox: Sender<Event>,
}

impl<S: SnapshotManager> Transfer<S> {
    /// Whether a transfer to `to` may start (none runs yet); marks it.
    pub(crate) fn claim(snaps: &Snapshots<S>, to: u64) -> bool {
        snaps.sending.borrow_mut().insert(to)
    }

    /// Streams the snapshot, one chunk in flight, resuming where the
    /// follower says; reports the outcome to the core.
    pub(crate) async fn run(self) {
        let ok = match self.stream().await {
            Ok(()) => true,
            Err(e) => {
                sampan_fiber::group_log!(
                    info,
                    self.group,
                    "group {}: snapshot at {} to node {} stopped: {e}",
                    self.group,
                    self.meta.index,
                    self.to
                );
                false
            }
        };
        self.snaps.sending.borrow_mut().remove(&self.to);
        let _ = self
            .inbox
            .send(Event::SnapshotSent { to: self.to, ok })
            .await;
    }

    async fn stream(&self) -> Result<(), String> {
        let store = &self.snaps.store;
        let stored = find(store, self.meta.index, self.meta.term).await?;
        let mut reader = store.open(&stored).await.map_err(|e| e.to_string())?;
        let chunk_bytes = self.snaps.policy.chunk_bytes.max(4096);
        let started = Instant::now();
        loop {
            let offset = reader.offset();
            let data = next_data(&mut reader, chunk_bytes).await?;
            let last = offset + data.len() as u64 >= stored.size;
            let chunk = SnapshotChunk {
                term: self.term,
                leader: self.node,
                meta: self.meta.clone(),
                offset,
                last,
                data_crc: stored.data_crc,
                data,
            };
            let body = self
                .outbox
                .request_snapshot_chunk(NodeId(self.to), self.group, chunk.encode())
                .await?;
            let answer = ChunkAnswer::decode(body).map_err(|e| e.to_string())?;
            match answer.status {
                ChunkStatus::Done => {
                    sampan_fiber::group_log!(
                        info,
                        self.group,
                        "group {}: snapshot at {} ({} bytes) sent to node {} in {:?}",
                        self.group,
                        self.meta.index,
                        stored.size,
                        self.to,
                        started.elapsed()
                    );
                    return Ok(());
                }
                ChunkStatus::Refused => return Err(format!("node {} refused it", self.to)),
                ChunkStatus::Continue => {
                    if answer.next_offset > stored.size {
                        return Err(format!("node {} asks for offset past the end", self.to));
                    }
                    if answer.next_offset != reader.offset() {
                        sampan_fiber::group_log!(
                            info,
                            self.group,
                            "group {}: snapshot at {} to node {} goes on from byte {}",
                            self.group,
                            self.meta.index,
                            self.to,
                            answer.next_offset
                        );
                        reader
                            .skip_to(answer.next_offset)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
        }
    }
}

/// The helper threads that encode frozen views: the state machine's
/// `next_chunk` runs there, at the lowest CPU priority (nice 19), so it
/// uses cycles the shards leave idle instead of the shard's own. Measured
/// with the encoding on the shard, a snapshot of 1 M keys halved the
/// shard's apply rate while it was written, whatever the task queue's
/// shares (the encoder ran whenever the other fibers waited for I/O, and
/// held the thread for a whole chunk).
mod encoder {
    use crate::state_machine::FrozenState;
    use bytes::Bytes;
    use std::sync::OnceLock;

    /// Chunks encoded ahead of the writer (bounded memory: a snapshot
    /// larger than memory streams through).
    const AHEAD: usize = 4;

    struct Job {
        frozen: Box<dyn FrozenState>,
        chunk_bytes: usize,
        /// Most bytes per second (0: no limit).
        pace: u64,
        out: Out,
    }

    /// Sleeps while `done` bytes are ahead of `pace` bytes per second
    /// since `started` (on the helper thread: only the snapshot waits).
    fn keep_pace(pace: u64, started: std::time::Instant, done: u64) {
        if pace == 0 {
            return;
        }
        let due = std::time::Duration::from_secs_f64(done as f64 / pace as f64);
        if let Some(ahead) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }

    /// Where a job's chunks go.
    enum Out {
        /// Framed, to the shard, which writes them.
        Chunks(flume::Sender<Result<Vec<u8>, String>>),
        /// Framed, into this file; the size and CRC to the shard.
        File {
            path: std::path::PathBuf,
            done: flume::Sender<Result<(u64, u32), String>>,
        },
        /// Moved out while the job runs.
        Taken,
    }

    /// Framed chunks in order, or why encoding stopped.
    pub(super) type Chunks = flume::Receiver<Result<Vec<u8>, String>>;

    /// A chunk as the store keeps it: `len u32 | chunk`.
    pub(super) fn frame(chunk: &Bytes) -> Result<Vec<u8>, String> {
        let len = u32::try_from(chunk.len()).map_err(|_| "a chunk over 4 GiB".to_string())?;
        let mut framed = Vec::with_capacity(4 + chunk.len());
        framed.extend_from_slice(&len.to_le_bytes());
        framed.extend_from_slice(chunk);
        Ok(framed)
    }

    fn pool() -> Option<&'static flume::Sender<Job>> {
        static POOL: OnceLock<Option<flume::Sender<Job>>> = OnceLock::new();
        POOL.get_or_init(|| {
            let (tx, rx) = flume::unbounded::<Job>();
            let n = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
            let mut started = 0;
            for i in 0..n {
                let rx = rx.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("sampan-snapshot-{i}"))
                    .spawn(move || {
                        lower_priority();
                        while let Ok(job) = rx.recv() {
                            run(job);
                        }
                    });
                match spawned {
                    Ok(_) => started += 1,
                    Err(e) => log::warn!("snapshot encoder thread not started: {e}"),
                }
            }
            (started > 0).then_some(tx)
        })
        .as_ref()
    }

    /// The calling thread runs at nice 19 (Linux: per thread).
    fn lower_priority() {
        // SAFETY: plain syscalls on the calling thread.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 19)
        };
        if rc != 0 {
            log::debug!(
                "snapshot encoder keeps its priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }

    fn run(mut job: Job) {
        match std::mem::replace(&mut job.out, Out::Taken) {
            Out::Chunks(out) => {
                let (started, mut sent) = (std::time::Instant::now(), 0u64);
                while let Some(chunk) = job.frozen.next_chunk(job.chunk_bytes) {
                    let framed = frame(&chunk);
                    let failed = framed.is_err();
                    sent += framed.as_ref().map_or(0, |f| f.len() as u64);
                    if out.send(framed).is_err() || failed {
                        return; // the writer gave up, or will
                    }
                    keep_pace(job.pace, started, sent);
                }
            }
            Out::File { path, done } => {
                let written = write_file(&mut job, &path, &done);
                let _ = done.send(written);
            }
            Out::Taken => {}
        }
    }

    /// Encodes `frozen` in chunks of about `chunk_bytes` and writes them,
    /// framed, to the file at `path` (plain syscalls, on the helper
    /// thread); the channel then gets the bytes written and their CRC32C.
    /// The file is not synced: the store's `finish` does that. Gives
    /// `frozen` back if no helper thread runs.
    pub(super) fn encode_to_file(
        frozen: Box<dyn FrozenState>,
        chunk_bytes: usize,
        path: std::path::PathBuf,
        pace: u64,
    ) -> Result<Written, Box<dyn FrozenState>> {
        let Some(pool) = pool() else {
            return Err(frozen);
        };
        let (done, written) = flume::bounded(1);
        pool.send(Job {
            frozen,
            chunk_bytes,
            pace,
            out: Out::File { path, done },
        })
        .map_err(|e| e.into_inner().frozen)?;
        Ok(written)
    }

    /// The bytes a file job wrote and their CRC32C, or why it stopped.
    pub(super) type Written = flume::Receiver<Result<(u64, u32), String>>;

    fn write_file(
        job: &mut Job,
        path: &std::path::Path,
        done: &flume::Sender<Result<(u64, u32), String>>,
    ) -> Result<(u64, u32), String> {
        use std::os::unix::fs::FileExt;
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(fail)?;
        let (mut size, mut crc) = (0u64, 0u32);
        let started = std::time::Instant::now();
        while let Some(chunk) = job.frozen.next_chunk(job.chunk_bytes) {
            if done.is_disconnected() {
                return Err("the snapshot writer gave up".into());
            }
            let framed = frame(&chunk)?;
            file.write_all_at(&framed, size).map_err(fail)?;
            crc = crc32c::crc32c_append(crc, &framed);
            size += framed.len() as u64;
            keep_pace(job.pace, started, size);
        }
        Ok((size, crc))
    }

    /// Starts encoding `frozen` in chunks of about `chunk_bytes`; the
    /// chunks arrive, in order, on the returned channel, which closes after
    /// the last. Gives `frozen` back if no helper thread runs.
    pub(super) fn encode(
        frozen: Box<dyn FrozenState>,
        chunk_bytes: usize,
        pace: u64,
    ) -> Result<Chunks, Box<dyn FrozenState>> {
        let Some(pool) = pool() else {
            return Err(frozen);
        };
        let (out, chunks) = flume::bounded(AHEAD);
        pool.send(Job {
            frozen,
            chunk_bytes,
            pace,
            out: Out::Chunks(out),
        })
        .map_err(|e| e.into_inner().frozen)?;
        Ok(chunks)
    }
}
