//! The shared log: one write-ahead log per shard holding the entries of
//! every group on it, so one `fdatasync` per round makes all of their
//! appends durable (Dragonboat's `tan` and TiKV's `raft-engine` do the
//! same). The choice, its numbers and the alternatives measured are in
//! `docs/shared-log.md`.
//!
//! **Shape.** A [`ShardWal`] owns a directory of segment files
//! (`<id>.wal`, 64 MiB by default); each group opens a [`WalLog`] on it,
//! which implements [`RaftLog`]. An append writes one *chunk* (a header
//! naming the group, then the entry records exactly as
//! [`crate::format`] encodes them) at the log's write position (the
//! chunks of every group appending in the same turn of the shard go down
//! in one write); a sync
//! round makes everything written so far durable with one `fdatasync` of
//! each segment written since the last round (one, or two across a roll),
//! then raises the durable index of every group whose chunks it covered.
//! Each group keeps in memory where each of its entries lies (segment,
//! offset, length, term: 24 bytes an entry), so reads and term lookups
//! never scan; reads are zero-copy slices of the segments' read-only maps,
//! re-checked (CRC) as [`crate::SegmentLog`] does.
//!
//! **What stays per group** is small and rarely written: `wal-meta` in the
//! group's log directory (a [`DualFile`]) holds the group's *incarnation*
//! (random, replaced when a snapshot is installed or the group is made
//! anew), the shared log's id, and the purge point (first index kept and
//! the term before it). Purging and installing a snapshot only rewrite it:
//! chunks of an older incarnation, and entries below the purge point, are
//! dead wherever they lie. A tail truncation is a chunk of its own.
//!
//! **Retention.** A segment is deleted once no group holds a live entry in
//! it (every group only deletes a prefix of segments, so recovery never
//! sees a chunk whose predecessors that matter are gone). A group that
//! takes no snapshot would pin old segments forever, so once more than
//! [`WalConfig::sealed_segments_max`] sealed segments are kept,
//! [`ShardWal::maintain`] copies the live entries of the oldest one forward
//! (*rewrite* chunks, while the group is held so no truncation slips
//! between reading and copying) and deletes it once the copies are
//! durable.
//!
//! **Recycling.** A retired segment is kept as a spare (`recycle-<n>`, up
//! to [`WalConfig::recycled_segments_max`]) instead of being deleted, and a
//! roll reuses it: a new header (new id) written and synced under the
//! spare's name, then the rename made durable. Its blocks are written
//! already, so no zeroing ahead runs for it (zeroing writes every byte of
//! the log twice). Its old chunks stay after the new ones; every chunk
//! names the segment it was written into, so an old one ends the segment
//! as zeros do. A segment whose mapped bytes are still held (entries on
//! their way to a follower) is deleted instead: rewriting it would change
//! them under their holder. Format 1 segments, whose chunks name no
//! segment, are never recycled.
//!
//! **Recovery** ([`ShardWal::open`]) reads every chunk in order and
//! rebuilds each group's index. The first chunk that does not check out
//! ends the log if nothing later proves it was durable: every chunk
//! carries the position durable when it was written (its sync floor), so a
//! valid chunk in a later segment whose floor lies past the bad one means
//! corruption, and the open fails naming the file and offset. Otherwise
//! the tail from there on was never reported durable and is cut. Chunks
//! carry the epoch (open count) of the log that wrote them, so bytes left
//! behind a cut by an earlier life never validate after newer ones.
//!
//! **Failures.** A full disk fails the append that needed a new segment
//! with [`StorageError::DiskFull`], writing nothing (space is allocated a
//! segment at a time, before any chunk goes in it). A failed write or
//! `fdatasync` fails the whole shared log (each group's calls return
//! [`StorageError::Failed`]) until it is reopened: a hole in the middle of
//! the log would cut off everything after it at the next recovery.

mod chunk;
mod recover;
#[cfg(test)]
mod tests;

use crate::dualfile::DualFile;
use crate::error::{Result, StorageError};
use crate::format::{self, RecordRun};
use crate::io::{Vfs, VfsFile};
use crate::latency::{Latencies, LatencySnapshot};
use crate::log::SyncMode;
use crate::raft_log::RaftLog;
use chunk::{
    CHUNK_HEADER_BYTES, ChunkHeader, Kind, SEGMENT_BYTES_MAX, SEGMENT_HEADER_BYTES, SegmentHeader,
    chunk_len, lsn,
};
use sampan_fiber::{Signal, TaskClass};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

/// Name of a group's meta file in its log directory.
pub const WAL_META_FILE: &str = "wal-meta";
const META_MAGIC: u32 = 0x4154_4d57; // "WMTA"
const META_VERSION: u8 = 1;
/// A batch of appends stops taking more once it holds this many bytes;
/// later appenders wait until it is written (a turn of thousands of groups
/// must not gather an unbounded copy of their entries).
const BATCH_BYTES_MAX: usize = 4 << 20;
/// Zeros go down in writes of this size.
const ZERO_WRITE_BYTES: u64 = 1 << 20;
/// How long an `async` group's writes may stay unsynced.
const ASYNC_SYNC_DELAY: Duration = Duration::from_millis(200);

/// Times a caller that would start a sync round first lets the other
/// fibers of its shard run: the groups woken by the same batch of messages
/// then write their entries first, and one round covers them all, where
/// each used to start a small round of its own (16 groups ran twice the
/// rounds of one group for half its entries, and the rounds' system
/// time was what the shard ran out of).
const ROUND_START_YIELDS: u32 = 2;

/// A future that is pending once (waking itself), so that the fibers
/// already queued on the shard run before it goes on; it needs no
/// executor of its own.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// Settings of a [`ShardWal`].
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Bytes of a segment file (allocated whole when it is made; at most
    /// 4 GiB). A chunk larger than this gets a segment of its own size.
    pub segment_bytes: u64,
    /// Keep the active segment written with zeros (and synced) this far
    /// ahead of the appends, so a sync never commits extent conversions
    /// through the file system's journal (see `log/prepare.rs` for the
    /// measurement). 0: off.
    pub zero_ahead_bytes: u64,
    /// Largest entry payload accepted (bytes).
    pub payload_bytes_max: u32,
    /// Sealed segments kept before the live entries of the oldest are
    /// copied forward so it can go (only when at most a quarter of it is
    /// live: a mostly live segment belongs to busy groups, whose own
    /// snapshots free it).
    pub sealed_segments_max: usize,
    /// Sync rounds that may be in flight at once (at least 1): each
    /// covers everything written before it started, so they may end in
    /// any order. Measured with 16 groups in `sync` mode (propose bench, 2
    /// runs each, alternated): one round at a time 29.5k and 30.7k
    /// proposals/s, two 28.1k and 28.7k; the disk gains nothing from
    /// overlapping flushes, and waiting gathers more.
    pub sync_rounds_max: u32,
    /// Retired segments kept as spares (`recycle-<n>` files) for later
    /// rolls instead of being deleted. A recycled file's blocks are
    /// written already, so appends into it need no zeroing ahead (which
    /// writes every byte twice) and no extent conversion at each sync. The
    /// disk they hold is what the log held at its largest. 0: delete.
    pub recycled_segments_max: usize,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_bytes: 64 << 20,
            zero_ahead_bytes: 4 << 20,
            payload_bytes_max: format::PAYLOAD_BYTES_MAX_DEFAULT,
            sealed_segments_max: 4,
            sync_rounds_max: 1,
            // A snapshot every 256 MiB of log (the group default) frees
            // about four 64 MiB segments at a time.
            recycled_segments_max: 4,
        }
    }
}

/// Where one entry lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) seg: u64,
    pub(crate) off: u32,
    pub(crate) len: u32,
    pub(crate) term: u64,
}

/// One segment file.
#[derive(Debug)]
pub(crate) struct Seg<F> {
    pub(crate) id: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: F,
    /// The segment header's version: only version 2 files (whose chunks
    /// name their segment) are recycled.
    pub(crate) version: u16,
    /// A recycled file: bytes of its earlier life follow the chunks.
    pub(crate) recycled: bool,
}

/// Chunks reserved and encoded end to end in the active segment that one
/// write will put down: the appends of every group that run in the same
/// turn of the shard share it, so 16 groups stepping together cost one
/// write (and one hand-off to the kernel's worker threads, which ext4's
/// buffered writes always take) where each used to cost its own. The
/// appender that opened the batch leads it: it lets the shard's other
/// ready fibers run once, then takes the batch and writes it.
#[derive(Debug)]
struct Batch<F> {
    seg: Rc<Seg<F>>,
    /// Where the batch starts in `seg`; `lsn(seg.id, off)` is in
    /// `State::in_flight` until its write ends.
    off: u64,
    buf: Vec<u8>,
}

/// A batch's leader, from when it opens the batch until the write ends. If
/// its caller goes away first (a group stopped or removed while it wrote:
/// its fibers are cancelled), the region would stay "in flight" for ever
/// and no sync round would pass it: every group on the shard would wait,
/// and the other appenders in the batch would never hear. Dropped early,
/// it writes the batch (again, if its write had started: whichever write
/// lands last, the region holds the same bytes) from a fiber of its own
/// and releases the region once that write ends. With no fiber to do it
/// (the runtime is stopping, or none runs), the log is failed instead: its
/// groups reopen from their files, where the region is a torn tail.
struct Leading<'a, V: Vfs> {
    wal: &'a ShardWal<V>,
    group: u64,
    /// The batch's start (`lsn`).
    start: u64,
    /// A copy of the batch once taken from the state for its write.
    taken: Option<Batch<V::File>>,
    ended: bool,
}

impl<V: Vfs> Leading<'_, V> {
    /// Takes the batch this leader opened out of the state (it is the only
    /// one that takes it), keeping a copy in case the write is cut short.
    fn take(&mut self) -> Batch<V::File> {
        let batch = self
            .wal
            .take_batch(self.start)
            .expect("a leader's batch is its own to take");
        self.taken = Some(Batch {
            seg: batch.seg.clone(),
            off: batch.off,
            buf: batch.buf.clone(),
        });
        batch
    }
}

impl<V: Vfs> Drop for Leading<'_, V> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let Some(Batch { seg, off, buf }) = self
            .taken
            .take()
            .or_else(|| self.wal.take_batch(self.start))
        else {
            return;
        };
        let (wal, group) = (self.wal.clone(), self.group);
        let finish_seg = seg.clone();
        let finish = async move {
            let res = finish_seg.file.write_at(buf, off).await;
            let _ = wal.written(group, &finish_seg, off, res);
        };
        if let Err(e) = sampan_fiber::spawn(TaskClass::Latency, "wal-finish-write", finish) {
            self.wal.fail(format!(
                "an append was dropped while it wrote segment {} at {off}, and it cannot be \
                 finished ({e})",
                seg.id
            ));
            let mut st = self.wal.inner.st.borrow_mut();
            st.in_flight.remove(&self.start);
            drop(st);
            self.wal.inner.changed.notify_all();
        }
    }
}

/// What the shared log knows of one group.
#[derive(Debug)]
pub(crate) struct GroupState {
    pub(crate) group: u64,
    /// Open by a [`WalLog`] (else dormant: recovered, or closed).
    pub(crate) open: bool,
    pub(crate) incarnation: u64,
    /// Index of `entries[0]` (the purge point once open).
    pub(crate) first: u64,
    pub(crate) prev_term: u64,
    pub(crate) entries: VecDeque<Loc>,
    /// The records of `entries`, in bytes.
    pub(crate) bytes: u64,
    /// Live entries per segment.
    pub(crate) per_seg: BTreeMap<u64, u32>,
    /// Last index written (readable).
    pub(crate) written: u64,
    /// Last index known durable.
    pub(crate) durable: u64,
    /// Chunks written and not yet durable: (last index, end position).
    pub(crate) pending: VecDeque<(u64, u64)>,
    pub(crate) sync_mode: SyncMode,
    /// An append, truncation or reset holds the group.
    pub(crate) busy: bool,
    /// Dormant from recovery, and its log directory was never checked.
    pub(crate) unverified: bool,
}

impl GroupState {
    pub(crate) fn new(group: u64, incarnation: u64, first: u64, prev_term: u64) -> GroupState {
        GroupState {
            group,
            open: false,
            incarnation,
            first,
            prev_term,
            entries: VecDeque::new(),
            bytes: 0,
            per_seg: BTreeMap::new(),
            written: first - 1,
            durable: first - 1,
            pending: VecDeque::new(),
            sync_mode: SyncMode::Sync,
            busy: false,
            unverified: false,
        }
    }

    fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    fn loc(&self, index: u64) -> Option<Loc> {
        let i = index.checked_sub(self.first)?;
        self.entries.get(usize::try_from(i).ok()?).copied()
    }

    pub(crate) fn push(&mut self, loc: Loc) {
        *self.per_seg.entry(loc.seg).or_default() += 1;
        self.bytes += u64::from(loc.len);
        self.entries.push_back(loc);
    }

    /// `loc` left the group's entries.
    fn drop_loc(&mut self, loc: Loc) {
        self.bytes -= u64::from(loc.len);
        self.unpin(loc.seg);
    }

    fn unpin(&mut self, seg: u64) {
        if let Some(n) = self.per_seg.get_mut(&seg) {
            *n -= 1;
            if *n == 0 {
                self.per_seg.remove(&seg);
            }
        }
    }

    /// Drops the entries after `last_kept`.
    pub(crate) fn truncate_after(&mut self, last_kept: u64) {
        while self.last() > last_kept {
            let loc = self.entries.pop_back().expect("last() > last_kept");
            self.drop_loc(loc);
        }
    }

    /// Drops the entries before `first_kept`.
    fn purge_before(&mut self, first_kept: u64, prev_term: u64) {
        while self.first < first_kept {
            match self.entries.pop_front() {
                Some(loc) => self.drop_loc(loc),
                None => break,
            }
            self.first += 1;
        }
        self.first = first_kept;
        self.prev_term = prev_term;
    }

    fn reset(&mut self, incarnation: u64, first: u64, prev_term: u64) {
        let sync_mode = self.sync_mode;
        let open = self.open;
        *self = GroupState::new(self.group, incarnation, first, prev_term);
        self.sync_mode = sync_mode;
        self.open = open;
    }
}

/// The mutable state of the shared log.
struct State<F> {
    /// Every segment, by id; the last is active.
    segs: BTreeMap<u64, Rc<Seg<F>>>,
    /// Next write offset in the active segment.
    pos: u64,
    /// Bytes of the active segment.
    active_size: u64,
    /// Start positions of writes in flight (a batch's, from when it opens).
    in_flight: BTreeSet<u64>,
    /// The batch open for appenders to join: it ends at `pos` in the
    /// active segment, and its leader has not taken it yet.
    batch: Option<Batch<F>>,
    /// Everything below this position is durable.
    synced: u64,
    /// Sync rounds in flight, and the highest position one of them covers.
    rounds_in_flight: u32,
    round_target: u64,
    rolling: bool,
    /// Segments written since the last sync round started.
    unsynced: BTreeMap<u64, Rc<Seg<F>>>,
    failed: Option<String>,
    /// The active segment is zeroed (or written) below this offset.
    zeroed_to: u64,
    /// A range of the active segment being zeroed.
    zeroing: Option<(u64, u64)>,
    zeroer_running: bool,
    /// A delayed sync for `async` groups is scheduled.
    flush_scheduled: bool,
    groups: HashMap<u64, Rc<RefCell<GroupState>>>,
    /// Groups with chunks not yet durable.
    waiting: Vec<Rc<RefCell<GroupState>>>,
    rounds: u64,
    file_syncs: u64,
    /// Batches of chunks written.
    batch_writes: u64,
    /// Retired segments waiting to be reused, their renames durable.
    spares: Vec<PathBuf>,
    /// The number in the next spare's name.
    spare_seq: u64,
    /// Rolls onto a recycled file.
    recycled: u64,
}

struct Inner<V: Vfs> {
    vfs: V,
    dir: PathBuf,
    cfg: WalConfig,
    log_id: u64,
    epoch: u32,
    st: RefCell<State<V::File>>,
    /// Notified when a write ends, a sync round ends, a roll or a zeroing
    /// ends, or the log fails.
    changed: Signal,
    /// How long each sync round's fdatasyncs took.
    sync_latency: Latencies,
    /// Notified when a group's `busy` clears (any group's: holding is
    /// rarely contended).
    idle: Signal,
}

/// One shard's shared write-ahead log. Cheap to clone (shared); shard-local.
pub struct ShardWal<V: Vfs> {
    inner: Rc<Inner<V>>,
}

impl<V: Vfs> Clone for ShardWal<V> {
    fn clone(&self) -> Self {
        ShardWal {
            inner: self.inner.clone(),
        }
    }
}

impl<V: Vfs> std::fmt::Debug for ShardWal<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.st.borrow();
        f.debug_struct("ShardWal")
            .field("dir", &self.inner.dir)
            .field("segments", &st.segs.len())
            .field("groups", &st.groups.len())
            .finish()
    }
}

/// A fresh random 64-bit number (ids and incarnations: unique, not secret).
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.finish() | 1
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The file name of segment `id`.
pub(crate) fn segment_name(id: u64) -> String {
    format!("{id:020}.wal")
}

/// The id of a segment file name.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    parse_name_number(name.strip_suffix(".wal")?)
}

/// The number of a file name's 20-digit part.
fn parse_name_number(digits: &str) -> Option<u64> {
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The file name of spare (retired, to be recycled) number `n`.
pub(crate) fn spare_name(n: u64) -> String {
    format!("recycle-{n:020}")
}

/// The number of a spare's file name.
pub(crate) fn parse_spare_name(name: &str) -> Option<u64> {
    parse_name_number(name.strip_prefix("recycle-")?)
}

/// Group id 0 names the shared log itself in errors.
const WAL_GROUP: u64 = 0;

impl<V: Vfs> ShardWal<V> {
    /// Opens (or creates) the shared log in `dir`: reads every segment,
    /// cuts a torn tail, and rebuilds what each group holds (see the module
    /// docs). Fails with [`StorageError::Corrupt`] when something cannot
    /// be a torn tail.
    pub async fn open(vfs: V, dir: &Path, cfg: WalConfig) -> Result<ShardWal<V>> {
        if !(4096..=SEGMENT_BYTES_MAX).contains(&cfg.segment_bytes) {
            return Err(StorageError::invalid(
                WAL_GROUP,
                format!(
                    "shared log segment_bytes {} must be within 4 KiB and 4 GiB",
                    cfg.segment_bytes
                ),
            ));
        }
        let rec = recover::recover(&vfs, dir, &cfg).await?;
        let active = rec
            .segs
            .values()
            .next_back()
            .cloned()
            .expect("recovery leaves an active segment");
        let pos = rec.pos;
        let groups = rec
            .groups
            .into_iter()
            .map(|(g, st)| (g, Rc::new(RefCell::new(st))))
            .collect();
        let st = State {
            segs: rec.segs,
            pos,
            active_size: active.file.len(),
            in_flight: BTreeSet::new(),
            batch: None,
            synced: lsn(active.id, pos),
            rounds_in_flight: 0,
            round_target: 0,
            rolling: false,
            unsynced: BTreeMap::new(),
            failed: None,
            zeroed_to: pos,
            zeroing: None,
            zeroer_running: false,
            flush_scheduled: false,
            groups,
            waiting: Vec::new(),
            rounds: 0,
            file_syncs: 0,
            batch_writes: 0,
            spares: rec.spares,
            spare_seq: rec.spare_seq,
            recycled: 0,
        };
        log::info!(
            "shared log {}: open, {} segment(s), {} group(s), epoch {}",
            dir.display(),
            st.segs.len(),
            st.groups.len(),
            rec.epoch
        );
        Ok(ShardWal {
            inner: Rc::new(Inner {
                vfs,
                dir: dir.to_path_buf(),
                cfg,
                log_id: rec.log_id,
                epoch: rec.epoch,
                st: RefCell::new(st),
                changed: Signal::new(),
                sync_latency: Latencies::new(),
                idle: Signal::new(),
            }),
        })
    }

    /// The directory of the shared log.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Sync rounds run, and file syncs they issued.
    pub fn stats(&self) -> (u64, u64) {
        let st = self.inner.st.borrow();
        (st.rounds, st.file_syncs)
    }

    /// How long the sync rounds' fdatasyncs took.
    pub fn sync_latency(&self) -> LatencySnapshot {
        self.inner.sync_latency.snapshot()
    }

    /// The ids of the segment files kept.
    pub fn segment_ids(&self) -> Vec<u64> {
        self.inner.st.borrow().segs.keys().copied().collect()
    }

    /// Retired segments kept to be recycled, and rolls onto a recycled
    /// file so far (in this open).
    pub fn recycling(&self) -> (usize, u64) {
        let st = self.inner.st.borrow();
        (st.spares.len(), st.recycled)
    }

    fn check(&self, group: u64) -> Result<()> {
        match &self.inner.st.borrow().failed {
            Some(reason) => Err(StorageError::Failed {
                group,
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn fail(&self, reason: String) {
        log::error!(
            "shared log {}: {reason}; every group on it fails until it is reopened",
            self.inner.dir.display()
        );
        self.inner.st.borrow_mut().failed.get_or_insert(reason);
        self.inner.changed.notify_all();
    }

    /// A chunk's write at `off` of `seg` ended with `res`: the region is
    /// no longer in flight, and a later sync round covers it.
    fn written(
        &self,
        group: u64,
        seg: &Rc<Seg<V::File>>,
        off: u64,
        res: std::io::Result<()>,
    ) -> Result<()> {
        {
            // Marked unsynced once written, not when reserved: a round
            // taking the mark before the write ended would not cover it.
            let mut st = self.inner.st.borrow_mut();
            st.in_flight.remove(&lsn(seg.id, off));
            st.unsynced.insert(seg.id, seg.clone());
        }
        self.inner.changed.notify_all();
        if let Err(e) = res {
            let err = StorageError::io(group, "write", &seg.path, off, e);
            self.fail(format!("a write failed ({err})"));
            return Err(err);
        }
        Ok(())
    }

    /// The end of everything written and reserved so far.
    fn end_lsn(&self) -> u64 {
        let st = self.inner.st.borrow();
        let active = st.segs.keys().next_back().copied().unwrap_or(0);
        lsn(active, st.pos)
    }

    /// Writes one chunk; returns where its body starts (segment, offset)
    /// and the position just past it. The body must fit in one segment.
    async fn write_chunk(
        &self,
        group: u64,
        header: ChunkHeader,
        body: &[u8],
    ) -> Result<(u64, u64, u64)> {
        let len = chunk_len(body.len());
        if SEGMENT_HEADER_BYTES + len > SEGMENT_BYTES_MAX {
            return Err(StorageError::invalid(
                group,
                format!("a chunk of {len} bytes is larger than a segment may be"),
            ));
        }
        enum Next {
            Wait,
            Roll,
            /// Joined the open batch that starts at this `lsn`; the
            /// chunk's segment and offset.
            Join(u64, u64, u64),
            /// Opened a batch at this `lsn`, the chunk's segment and offset.
            Lead(u64, u64, u64),
        }
        let next = loop {
            self.check(group)?;
            let next = {
                let mut st = self.inner.st.borrow_mut();
                let full = st
                    .batch
                    .as_ref()
                    .is_some_and(|b| b.buf.len() + len as usize > BATCH_BYTES_MAX);
                if st.rolling || full || st.zeroing.is_some_and(|(_, end)| st.pos < end) {
                    Next::Wait
                } else if st.pos + len > st.active_size {
                    st.rolling = true;
                    Next::Roll
                } else {
                    let off = st.pos;
                    st.pos += len;
                    st.zeroed_to = st.zeroed_to.max(st.pos);
                    let active = st.segs.values().next_back().expect("active").clone();
                    let header = ChunkHeader {
                        sync_floor: st.synced,
                        epoch: self.inner.epoch,
                        segment: Some(active.id as u32),
                        ..header
                    };
                    match &mut st.batch {
                        Some(b) => {
                            // An open batch always ends where the next
                            // chunk goes: reserving and joining happen in
                            // one step, and a roll waits for it to be
                            // written (the seal's sync waits on it).
                            debug_assert_eq!(
                                (b.seg.id, b.off + b.buf.len() as u64),
                                (active.id, off)
                            );
                            chunk::encode_chunk(&mut b.buf, &header, body);
                            Next::Join(lsn(b.seg.id, b.off), b.seg.id, off)
                        }
                        None => {
                            let mut buf = Vec::with_capacity((len as usize).max(16 << 10));
                            chunk::encode_chunk(&mut buf, &header, body);
                            let (seg, start) = (active.id, lsn(active.id, off));
                            st.in_flight.insert(start);
                            st.batch = Some(Batch {
                                seg: active,
                                off,
                                buf,
                            });
                            Next::Lead(start, seg, off)
                        }
                    }
                }
            };
            match next {
                Next::Wait => self.inner.changed.wait().await,
                Next::Roll => {
                    // Clears `rolling` however the roll ends, its caller
                    // gone included (the next append then rolls again).
                    struct Rolling<'a, V: Vfs>(&'a ShardWal<V>);
                    impl<V: Vfs> Drop for Rolling<'_, V> {
                        fn drop(&mut self) {
                            self.0.inner.st.borrow_mut().rolling = false;
                            self.0.inner.changed.notify_all();
                        }
                    }
                    let _rolling = Rolling(self);
                    // The old segment is made durable whole before the
                    // new one takes a chunk: recovery then knows a segment
                    // followed by a written one is complete, so a hole in
                    // it (an unsynced page lost) is never skipped over.
                    self.seal(group).await?;
                    self.roll(group, len).await?;
                }
                joined_or_led => break joined_or_led,
            }
        };
        self.kick_zeroer();
        let (seg, off) = match next {
            Next::Lead(start, seg, off) => {
                let mut leading = Leading {
                    wal: self,
                    group,
                    start,
                    taken: None,
                    ended: false,
                };
                // The shard's other ready fibers (the groups woken by the
                // same messages) append into this batch meanwhile.
                YieldOnce(false).await;
                let batch = leading.take();
                self.inner.st.borrow_mut().batch_writes += 1;
                let res = batch.seg.file.write_at(batch.buf, batch.off).await;
                leading.ended = true;
                self.written(group, &batch.seg, batch.off, res)?;
                (seg, off)
            }
            Next::Join(start, seg, off) => {
                // The leader's write ends, or it fails the log.
                while self.inner.st.borrow().in_flight.contains(&start) {
                    self.check(group)?;
                    self.inner.changed.wait().await;
                }
                self.check(group)?;
                (seg, off)
            }
            Next::Wait | Next::Roll => unreachable!("the loop breaks only on a join or a lead"),
        };
        Ok((seg, off + CHUNK_HEADER_BYTES as u64, lsn(seg, off + len)))
    }

    /// Takes the open batch if it is the one starting at `start`.
    fn take_batch(&self, start: u64) -> Option<Batch<V::File>> {
        let mut st = self.inner.st.borrow_mut();
        let ours = st
            .batch
            .as_ref()
            .is_some_and(|b| lsn(b.seg.id, b.off) == start);
        if ours { st.batch.take() } else { None }
    }

    /// Ends the active segment for a roll: zeros where the next chunk
    /// would start, durably (bytes left there by an earlier life of the
    /// log past a cut, or of a recycled file, must not read as a bad chunk
    /// once the next segment holds chunks; a round alone would not cover
    /// them if everything before `pos` was durable already), then syncs it
    /// whole.
    async fn seal(&self, group: u64) -> Result<()> {
        let (seg, pos) = {
            let mut st = self.inner.st.borrow_mut();
            let seg = st.segs.values().next_back().expect("active").clone();
            st.unsynced.insert(seg.id, seg.clone());
            (seg, st.pos)
        };
        let size = self.inner.st.borrow().active_size;
        let end = (pos + CHUNK_HEADER_BYTES as u64).min(size);
        if end > pos {
            let zeros = vec![0; (end - pos) as usize];
            if let Err(e) = seg.file.write_at_durable(zeros, pos).await {
                let err = StorageError::io(group, "write", &seg.path, pos, e);
                self.fail(format!("sealing a segment failed ({err})"));
                return Err(err);
            }
        }
        // The zeros were written before the round starts, so it covers
        // them; `pos` is what the round's progress is counted in.
        self.sync_to(group, lsn(seg.id, pos)).await
    }

    /// Makes a new active segment: a recycled file if a spare is kept and
    /// `segment_bytes` is enough, else a new file allocated whole (larger
    /// than `segment_bytes` if a chunk of `need` bytes needs it); its
    /// header written, its name durable. A full disk fails here with
    /// nothing written.
    async fn roll(&self, group: u64, need: u64) -> Result<()> {
        let size = self
            .inner
            .cfg
            .segment_bytes
            .max(SEGMENT_HEADER_BYTES + need);
        let id = self
            .inner
            .st
            .borrow()
            .segs
            .keys()
            .next_back()
            .map_or(1, |id| id + 1);
        let spare = if size == self.inner.cfg.segment_bytes {
            self.inner.st.borrow_mut().spares.pop()
        } else {
            None
        };
        let mut recycled = None;
        if let Some(spare) = spare {
            match self.recycle(&spare, id, size).await {
                Ok(seg) => recycled = Some(seg),
                Err(e) => {
                    log::warn!(
                        "shared log {}: recycling {} failed, making a new segment: {e}",
                        self.inner.dir.display(),
                        spare.display()
                    );
                    let _ = self.inner.vfs.remove(&spare).await;
                }
            }
        }
        let seg = match recycled {
            Some(seg) => seg,
            None => {
                let path = self.inner.dir.join(segment_name(id));
                create_segment(&self.inner.vfs, &path, id, self.inner.log_id, size)
                    .await
                    .map_err(|e| {
                        if let StorageError::DiskFull { .. } = e {
                            log::warn!(
                                "shared log {}: disk full making segment {id}; appends fail \
                                 until space returns",
                                self.inner.dir.display()
                            );
                        }
                        e.with_group(group)
                    })?
            }
        };
        let mut st = self.inner.st.borrow_mut();
        st.recycled += u64::from(seg.recycled);
        // A recycled file was written whole in its earlier life: nothing
        // to zero ahead.
        st.zeroed_to = if seg.recycled {
            size
        } else {
            SEGMENT_HEADER_BYTES
        };
        st.segs.insert(id, Rc::new(seg));
        st.pos = SEGMENT_HEADER_BYTES;
        st.active_size = size;
        log::debug!(
            "shared log {}: segment {id} active",
            self.inner.dir.display()
        );
        Ok(())
    }

    /// Makes spare file `spare` segment `id`: a new header written and
    /// synced while it still has its spare's name, then renamed, the
    /// rename made durable. A cut before the rename leaves a spare (its
    /// header is never read); after it, a segment whose old chunks name
    /// another segment and so end it where its new ones end.
    async fn recycle(&self, spare: &Path, id: u64, size: u64) -> Result<Seg<V::File>> {
        let vfs = &self.inner.vfs;
        let io = |op, path: &Path, e| StorageError::io(WAL_GROUP, op, path, 0, e);
        let file = vfs
            .open(spare, false)
            .await
            .map_err(|e| io("open", spare, e))?;
        if file.len() != size {
            return Err(StorageError::corrupt(
                WAL_GROUP,
                spare,
                0,
                format!("a spare of {} bytes, not {size}", file.len()),
            ));
        }
        let header = chunk::encode_segment_header(&SegmentHeader {
            version: chunk::SEGMENT_VERSION,
            recycled: true,
            log_id: self.inner.log_id,
            segment_id: id,
            created_ms: now_ms(),
        });
        file.write_at(header, 0)
            .await
            .map_err(|e| io("write", spare, e))?;
        file.sync().await.map_err(|e| io("sync", spare, e))?;
        drop(file);
        let path = self.inner.dir.join(segment_name(id));
        vfs.rename(spare, &path)
            .await
            .map_err(|e| io("rename", spare, e))?;
        vfs.sync_dir(&self.inner.dir)
            .await
            .map_err(|e| io("sync dir", &self.inner.dir, e))?;
        let file = vfs
            .open(&path, false)
            .await
            .map_err(|e| io("open", &path, e))?;
        Ok(Seg {
            id,
            path,
            file,
            version: chunk::SEGMENT_VERSION,
            recycled: true,
        })
    }

    /// Waits until everything below `target` is durable.
    async fn sync_to(&self, group: u64, target: u64) -> Result<()> {
        // Passes left before this caller starts a round itself (see
        // `ROUND_START_YIELDS`).
        let mut yields = ROUND_START_YIELDS;
        enum Next<F> {
            Wait,
            Yield,
            Run(u64, BTreeMap<u64, Rc<Seg<F>>>),
        }
        loop {
            self.check(group)?;
            let round = {
                let mut st = self.inner.st.borrow_mut();
                if st.synced >= target {
                    return Ok(());
                }
                let active = st.segs.keys().next_back().copied().unwrap_or(0);
                let done = st.in_flight.first().copied().unwrap_or(lsn(active, st.pos));
                if st.round_target >= target
                    || done < target
                    || st.rounds_in_flight >= self.inner.cfg.sync_rounds_max.max(1)
                {
                    Next::Wait // a round in flight covers it, or one must end first
                } else if yields > 0 {
                    Next::Yield
                } else {
                    st.rounds_in_flight += 1;
                    st.round_target = done;
                    Next::Run(done, std::mem::take(&mut st.unsynced))
                }
            };
            match round {
                Next::Wait => self.inner.changed.wait().await,
                Next::Yield => {
                    yields -= 1;
                    YieldOnce(false).await;
                }
                Next::Run(done, segs) => self.run_round(group, done, segs).await?,
            }
        }
    }

    /// One sync round: syncs `segs`, then marks everything below `done`
    /// durable.
    async fn run_round(
        &self,
        group: u64,
        done: u64,
        segs: BTreeMap<u64, Rc<Seg<V::File>>>,
    ) -> Result<()> {
        // A round dropped midway (its waiter gone) hands its segments back
        // to the next round and lowers the covered mark it set.
        struct Guard<'a, V: Vfs> {
            wal: &'a ShardWal<V>,
            segs: Option<BTreeMap<u64, Rc<Seg<V::File>>>>,
        }
        impl<V: Vfs> Drop for Guard<'_, V> {
            fn drop(&mut self) {
                let mut st = self.wal.inner.st.borrow_mut();
                st.rounds_in_flight -= 1;
                if let Some(segs) = self.segs.take() {
                    st.unsynced.extend(segs);
                    st.round_target = st.synced;
                }
                drop(st);
                self.wal.inner.changed.notify_all();
            }
        }
        let mut guard = Guard {
            wal: self,
            segs: Some(segs),
        };
        let segs = guard.segs.as_ref().expect("just set").clone();
        let n = segs.len() as u64;
        // One segment, or two across a roll: one after the other.
        let started = std::time::Instant::now();
        for seg in segs.values() {
            if let Err(e) = seg.file.sync().await {
                let err = StorageError::io(group, "fdatasync", &seg.path, 0, e);
                self.fail(format!("a sync failed ({err})"));
                return Err(err);
            }
        }
        self.inner.sync_latency.record(started.elapsed());
        guard.segs = None;
        let mut st = self.inner.st.borrow_mut();
        st.rounds += 1;
        st.file_syncs += n;
        st.synced = st.synced.max(done);
        let synced = st.synced;
        st.waiting.retain(|g| {
            let mut g = g.borrow_mut();
            while let Some(&(last, end)) = g.pending.front() {
                if end > synced {
                    break;
                }
                g.pending.pop_front();
                g.durable = g.durable.max(last.min(g.written));
            }
            !g.pending.is_empty()
        });
        Ok(())
    }

    /// Starts the background zeroing of the active segment if it is due
    /// (only on a shard).
    fn kick_zeroer(&self) {
        let ahead = self.inner.cfg.zero_ahead_bytes;
        {
            let st = self.inner.st.borrow();
            if ahead == 0
                || st.zeroer_running
                || st.zeroed_to >= (st.pos + ahead / 2).min(st.active_size)
            {
                return;
            }
        }
        self.inner.st.borrow_mut().zeroer_running = true;
        let wal = self.clone();
        let spawned = sampan_fiber::spawn(TaskClass::Background, "wal-zero", async move {
            if let Err(e) = wal.zero_ahead().await {
                log::warn!(
                    "shared log {}: zeroing ahead failed, syncs may cost more: {e}",
                    wal.inner.dir.display()
                );
            }
            wal.inner.st.borrow_mut().zeroer_running = false;
        });
        if spawned.is_err() {
            self.inner.st.borrow_mut().zeroer_running = false;
        }
    }

    /// Zeroes the active segment up to `zero_ahead_bytes` past the write
    /// position, a megabyte at a time, and syncs it.
    async fn zero_ahead(&self) -> Result<()> {
        loop {
            let job = {
                let mut st = self.inner.st.borrow_mut();
                let seg = st.segs.values().next_back().expect("active").clone();
                let start = st.zeroed_to.max(st.pos);
                let goal = (st.pos + self.inner.cfg.zero_ahead_bytes).min(st.active_size);
                if start >= goal || st.rolling {
                    return Ok(());
                }
                let end = (start + ZERO_WRITE_BYTES).min(goal);
                st.zeroing = Some((start, end));
                (seg, start, end)
            };
            let (seg, start, end) = job;
            let res = async {
                seg.file
                    .write_at(vec![0; (end - start) as usize], start)
                    .await?;
                seg.file.sync().await
            }
            .await;
            {
                let mut st = self.inner.st.borrow_mut();
                st.zeroing = None;
                if res.is_ok() && st.segs.keys().next_back() == Some(&seg.id) {
                    st.zeroed_to = st.zeroed_to.max(end);
                }
            }
            self.inner.changed.notify_all();
            res.map_err(|e| StorageError::io(WAL_GROUP, "zero", &seg.path, start, e))?;
        }
    }

    /// Schedules a sync of everything written in a little while, for
    /// `async` groups (whose appends never wait for one).
    fn schedule_flush(&self) {
        if std::mem::replace(&mut self.inner.st.borrow_mut().flush_scheduled, true) {
            return;
        }
        let wal = self.clone();
        let spawned = sampan_fiber::spawn(TaskClass::Background, "wal-flush", async move {
            sampan_fiber::sleep(ASYNC_SYNC_DELAY).await;
            wal.inner.st.borrow_mut().flush_scheduled = false;
            let target = wal.end_lsn();
            if let Err(e) = wal.sync_to(WAL_GROUP, target).await {
                log::warn!(
                    "shared log {}: background sync: {e}",
                    wal.inner.dir.display()
                );
            }
        });
        if spawned.is_err() {
            self.inner.st.borrow_mut().flush_scheduled = false;
        }
    }

    /// Writes of appended chunks issued so far: the appends of every
    /// group that run in one turn of the shard share one.
    pub fn batch_writes(&self) -> u64 {
        self.inner.st.borrow().batch_writes
    }

    /// Makes everything written so far durable.
    pub async fn sync_all(&self) -> Result<()> {
        let target = self.end_lsn();
        self.sync_to(WAL_GROUP, target).await
    }

    /// Forgets a group whose files were deleted (a group removed from the
    /// node): its entries no longer keep segments.
    pub fn forget_group(&self, group: u64) {
        self.inner.st.borrow_mut().groups.remove(&group);
    }

    /// Deletes segments no group needs, and once more than
    /// [`WalConfig::sealed_segments_max`] sealed segments are kept, copies
    /// the live entries of the oldest forward first. `group_dir` says where
    /// a group's log directory is, to tell a removed group (no meta file)
    /// from one not opened yet.
    pub async fn maintain(&self, group_dir: &dyn Fn(u64) -> PathBuf) -> Result<()> {
        self.check(WAL_GROUP)?;
        self.drop_removed_groups(group_dir).await;
        let sealed = self.inner.st.borrow().segs.len().saturating_sub(1);
        if sealed > self.inner.cfg.sealed_segments_max {
            let oldest = *self.inner.st.borrow().segs.keys().next().expect("segments");
            self.rewrite_segment(oldest).await?;
        }
        self.delete_unneeded().await
    }

    /// Dormant groups recovered from the log whose log directory has no
    /// meta file were removed: forget them.
    async fn drop_removed_groups(&self, group_dir: &dyn Fn(u64) -> PathBuf) {
        let unverified: Vec<u64> = self
            .inner
            .st
            .borrow()
            .groups
            .values()
            .filter_map(|g| {
                let g = g.borrow();
                (g.unverified && !g.open).then_some(g.group)
            })
            .collect();
        for group in unverified {
            let meta = group_dir(group).join(WAL_META_FILE);
            let exists = self.inner.vfs.open(&meta, false).await.is_ok();
            let mut st = self.inner.st.borrow_mut();
            if exists {
                if let Some(g) = st.groups.get(&group) {
                    g.borrow_mut().unverified = false;
                }
            } else if st.groups.get(&group).is_some_and(|g| !g.borrow().open) {
                log::info!(
                    "shared log {}: group {group} has no log directory (removed): its \
                     entries are dropped",
                    self.inner.dir.display()
                );
                st.groups.remove(&group);
            }
        }
    }

    /// Retires every sealed segment older than the oldest one a group
    /// holds a live entry in: keeps it as a spare to recycle (see
    /// [`WalConfig::recycled_segments_max`]) or deletes it.
    async fn delete_unneeded(&self) -> Result<()> {
        let doomed: Vec<Rc<Seg<V::File>>> = {
            let mut st = self.inner.st.borrow_mut();
            let active = *st.segs.keys().next_back().expect("active");
            let pinned = st
                .groups
                .values()
                .filter_map(|g| g.borrow().per_seg.keys().next().copied())
                .min()
                .unwrap_or(active)
                .min(active);
            let ids: Vec<u64> = st.segs.range(..pinned).map(|(id, _)| *id).collect();
            ids.iter().filter_map(|id| st.segs.remove(id)).collect()
        };
        if doomed.is_empty() {
            return Ok(());
        }
        let io = |op, path: &Path, e| StorageError::io(WAL_GROUP, op, path, 0, e);
        let (mut spares, mut deleted) = (Vec::new(), 0);
        for seg in doomed {
            self.inner.st.borrow_mut().unsynced.remove(&seg.id);
            let room = self.inner.st.borrow().spares.len() + spares.len()
                < self.inner.cfg.recycled_segments_max;
            // Only a file nothing else uses: no sync round holds it, and
            // no bytes read from it (entries on their way to a follower)
            // are alive to change under their holders.
            let path = seg.path.clone();
            let reusable = match Rc::try_unwrap(seg) {
                Ok(seg) => {
                    room && seg.version == chunk::SEGMENT_VERSION
                        && seg.file.len() == self.inner.cfg.segment_bytes
                        && !seg.file.reads_held()
                }
                Err(_) => false,
            };
            if reusable {
                let seq = {
                    let mut st = self.inner.st.borrow_mut();
                    st.spare_seq += 1;
                    st.spare_seq
                };
                let spare = self.inner.dir.join(spare_name(seq));
                self.inner
                    .vfs
                    .rename(&path, &spare)
                    .await
                    .map_err(|e| io("rename", &path, e))?;
                spares.push(spare);
            } else {
                self.inner
                    .vfs
                    .remove(&path)
                    .await
                    .map_err(|e| io("remove", &path, e))?;
                deleted += 1;
            }
        }
        // A spare is reused only once its new name is durable: a cut
        // must never find a segment's old name on a rewritten file.
        self.inner
            .vfs
            .sync_dir(&self.inner.dir)
            .await
            .map_err(|e| io("sync dir", &self.inner.dir, e))?;
        log::debug!(
            "shared log {}: {deleted} segment(s) deleted, {} kept to recycle",
            self.inner.dir.display(),
            spares.len()
        );
        self.inner.st.borrow_mut().spares.extend(spares);
        Ok(())
    }

    /// Copies the live entries held in segment `id` to the head of the log,
    /// so the segment can be deleted.
    async fn rewrite_segment(&self, id: u64) -> Result<()> {
        let groups: Vec<Rc<RefCell<GroupState>>> = self
            .inner
            .st
            .borrow()
            .groups
            .values()
            .filter(|g| g.borrow().per_seg.contains_key(&id))
            .cloned()
            .collect();
        let seg = self.inner.st.borrow().segs.get(&id).cloned();
        let Some(seg) = seg else { return Ok(()) };
        // A segment still mostly live belongs to busy groups whose own
        // snapshots will free it: copying it would only double their
        // writes. Cold groups pin a segment by a few entries.
        let live: u64 = groups
            .iter()
            .map(|g| {
                g.borrow()
                    .entries
                    .iter()
                    .filter(|l| l.seg == id)
                    .map(|l| u64::from(l.len))
                    .sum::<u64>()
            })
            .sum();
        if live > self.inner.cfg.segment_bytes / 4 {
            return Ok(());
        }
        let mut moved = 0u64;
        for g in groups {
            // The group is held while its entries are copied: a
            // truncation or append between reading them and the copy's
            // place in the log would let the copy bring back entries the
            // group no longer holds. A busy group waits for the next
            // maintenance.
            if std::mem::replace(&mut g.borrow_mut().busy, true) {
                continue;
            }
            let _held = Held(self, &g);
            let mut last_first = None;
            while let Some((first, bytes, locs)) = self.live_range_in(&g, &seg)? {
                if last_first.replace(first) == Some(first) {
                    break; // nothing moved last time: leave the rest pinned
                }
                let (group, incarnation) = {
                    let g = g.borrow();
                    (g.group, g.incarnation)
                };
                let header = ChunkHeader {
                    kind: Kind::Rewrite,
                    epoch: 0,
                    body_len: bytes.len() as u32,
                    group,
                    incarnation,
                    arg: first,
                    sync_floor: 0,
                    segment: None, // filled in by `write_chunk`
                };
                let (new_seg, body_off, end) = self.write_chunk(group, header, &bytes).await?;
                // Only durable copies may stand in for the old segment:
                // until they are, the old locations keep it.
                self.sync_to(group, end).await?;
                let mut st = g.borrow_mut();
                if st.incarnation == incarnation {
                    let mut off = body_off as u32;
                    for (i, old) in locs.iter().enumerate() {
                        let index = first + i as u64;
                        let new = Loc {
                            seg: new_seg,
                            off,
                            ..*old
                        };
                        off += old.len;
                        if st.loc(index) == Some(*old) {
                            let at = (index - st.first) as usize;
                            st.entries[at] = new;
                            st.unpin(old.seg);
                            *st.per_seg.entry(new_seg).or_default() += 1;
                        }
                    }
                }
                moved += bytes.len() as u64;
            }
        }
        log::info!(
            "shared log {}: segment {id}: {moved} live bytes copied forward",
            self.inner.dir.display()
        );
        Ok(())
    }

    /// The first run of a group's live entries in `seg` that lie back to
    /// back there (at most a quarter of a segment): its first index, its
    /// bytes and their locations.
    #[allow(clippy::type_complexity)]
    fn live_range_in(
        &self,
        g: &Rc<RefCell<GroupState>>,
        seg: &Seg<V::File>,
    ) -> Result<Option<(u64, Vec<u8>, Vec<Loc>)>> {
        let g = g.borrow();
        if !g.per_seg.contains_key(&seg.id) {
            return Ok(None);
        }
        let Some(start) = g.entries.iter().position(|l| l.seg == seg.id) else {
            return Ok(None);
        };
        let cap = self.inner.cfg.segment_bytes / 4;
        let mut locs = vec![g.entries[start]];
        let mut bytes = u64::from(g.entries[start].len);
        for l in g.entries.iter().skip(start + 1) {
            let prev = locs.last().expect("one");
            if l.seg != seg.id || l.off != prev.off + prev.len || bytes + u64::from(l.len) > cap {
                break;
            }
            bytes += u64::from(l.len);
            locs.push(*l);
        }
        let data = seg
            .file
            .read(u64::from(locs[0].off), bytes as usize)
            .map_err(|e| StorageError::io(g.group, "read", &seg.path, u64::from(locs[0].off), e))?;
        Ok(Some((g.first + start as u64, data.to_vec(), locs)))
    }
}

/// Creates segment `id` at `path`: allocated whole, header written, the
/// name durable.
pub(crate) async fn create_segment<V: Vfs>(
    vfs: &V,
    path: &Path,
    id: u64,
    log_id: u64,
    size: u64,
) -> Result<Seg<V::File>> {
    let io = |op, e| StorageError::io(WAL_GROUP, op, path, 0, e);
    let file = vfs.open(path, true).await.map_err(|e| io("create", e))?;
    let made = async {
        file.allocate(size).await.map_err(|e| io("allocate", e))?;
        let header = chunk::encode_segment_header(&SegmentHeader {
            version: chunk::SEGMENT_VERSION,
            recycled: false,
            log_id,
            segment_id: id,
            created_ms: now_ms(),
        });
        file.write_at(header, 0).await.map_err(|e| io("write", e))?;
        file.sync().await.map_err(|e| io("sync", e))?;
        vfs.sync_dir(&crate::io::parent_of(path))
            .await
            .map_err(|e| io("sync dir", e))
    }
    .await;
    if let Err(e) = made {
        drop(file);
        let _ = vfs.remove(path).await;
        return Err(e);
    }
    Ok(Seg {
        id,
        path: path.to_path_buf(),
        file,
        version: chunk::SEGMENT_VERSION,
        recycled: false,
    })
}

/// A group's meta file contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    incarnation: u64,
    log_id: u64,
    first_index: u64,
    prev_term: u64,
}

impl Meta {
    fn encode(&self) -> Vec<u8> {
        let mut b = vec![META_VERSION, 0, 0, 0, 0, 0, 0, 0];
        for v in [
            self.incarnation,
            self.log_id,
            self.first_index,
            self.prev_term,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    fn decode(b: &[u8]) -> Option<Meta> {
        if b.len() != 40 || b[0] != META_VERSION {
            return None;
        }
        let at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        Some(Meta {
            incarnation: at(8),
            log_id: at(16),
            first_index: at(24),
            prev_term: at(32),
        })
    }
}

struct LogInner<V: Vfs> {
    wal: ShardWal<V>,
    group: u64,
    dir: PathBuf,
    g: Rc<RefCell<GroupState>>,
    /// Taken out while a save runs (saves are serialized by `busy`).
    meta: RefCell<Option<DualFile<V>>>,
    purge_mark: Cell<Option<(u64, Instant)>>,
}

impl<V: Vfs> Drop for LogInner<V> {
    /// The last handle gone (closed, or its group stopped): the group may
    /// be opened again; its entries stay known to the shared log.
    fn drop(&mut self) {
        self.g.borrow_mut().open = false;
    }
}

/// One group's log in a [`ShardWal`]: what [`RaftLog`] asks, over the
/// shard's shared file. Cheap to clone (shared); shard-local.
pub struct WalLog<V: Vfs> {
    inner: Rc<LogInner<V>>,
}

impl<V: Vfs> Clone for WalLog<V> {
    fn clone(&self) -> Self {
        WalLog {
            inner: self.inner.clone(),
        }
    }
}

impl<V: Vfs> std::fmt::Debug for WalLog<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.inner.g.borrow();
        f.debug_struct("WalLog")
            .field("group", &self.inner.group)
            .field("first", &g.first)
            .field("written", &g.written)
            .field("durable", &g.durable)
            .finish()
    }
}

/// Holds a group busy: one append, truncation or reset at a time, or the
/// shared log's maintenance copying its entries forward.
struct Held<'a, V: Vfs>(&'a ShardWal<V>, &'a Rc<RefCell<GroupState>>);

impl<V: Vfs> Drop for Held<'_, V> {
    fn drop(&mut self) {
        self.1.borrow_mut().busy = false;
        self.0.inner.idle.notify_all();
    }
}

impl<V: Vfs> WalLog<V> {
    /// Opens (or creates) the log of `group` on `wal`; its meta file lives
    /// in `dir`. Fails if the group's entries were written to another
    /// shared log (the node's shard count or data directory changed), or
    /// if entries it must hold are missing.
    pub async fn open(
        wal: &ShardWal<V>,
        dir: &Path,
        group: u64,
        sync_mode: SyncMode,
    ) -> Result<WalLog<V>> {
        let vfs = &wal.inner.vfs;
        vfs.create_dir_all(dir)
            .await
            .map_err(|e| StorageError::io(group, "create dir", dir, 0, e))?;
        let names = vfs
            .list(dir)
            .await
            .map_err(|e| StorageError::io(group, "list", dir, 0, e))?;
        if let Some(other) = names.iter().find(|n| n.as_str() != WAL_META_FILE) {
            return Err(StorageError::invalid(
                group,
                format!(
                    "{} holds {other}: a per-group log (log layout \"per_group\"), which the \
                     shared log cannot open; start the node with the layout it was made with",
                    dir.display()
                ),
            ));
        }
        let meta_path = dir.join(WAL_META_FILE);
        // A new group's meta, saved as the file is created (one sync).
        let fresh = Meta {
            incarnation: random_u64(),
            log_id: wal.inner.log_id,
            first_index: 1,
            prev_term: 0,
        };
        let (meta_file, payload) =
            DualFile::open_with(vfs, &meta_path, META_MAGIC, group, Some(&fresh.encode())).await?;
        let meta = payload.as_deref().and_then(Meta::decode).ok_or_else(|| {
            StorageError::corrupt(group, &meta_path, 0, "meta record of unknown shape")
        })?;
        if meta.log_id != wal.inner.log_id {
            return Err(StorageError::corrupt(
                group,
                &meta_path,
                0,
                format!(
                    "the group's entries are in shared log {:#x}, not in {} ({:#x}): did the \
                     node's shard count or data directory change?",
                    meta.log_id,
                    wal.inner.dir.display(),
                    wal.inner.log_id
                ),
            ));
        }
        let g = {
            let mut st = wal.inner.st.borrow_mut();
            let g = st
                .groups
                .entry(group)
                .or_insert_with(|| {
                    Rc::new(RefCell::new(GroupState::new(
                        group,
                        meta.incarnation,
                        meta.first_index,
                        meta.prev_term,
                    )))
                })
                .clone();
            if g.borrow().open {
                return Err(StorageError::invalid(
                    group,
                    "the group's log is already open",
                ));
            }
            g
        };
        {
            let mut s = g.borrow_mut();
            if s.incarnation != meta.incarnation {
                s.reset(meta.incarnation, meta.first_index, meta.prev_term);
            } else if s.first > meta.first_index && !s.entries.is_empty() {
                return Err(StorageError::corrupt(
                    group,
                    &wal.inner.dir,
                    0,
                    format!(
                        "the log must hold entries from {}, the shared log has them only from {}",
                        meta.first_index, s.first
                    ),
                ));
            } else if s.entries.is_empty() && s.first > meta.first_index {
                // Truncated to nothing past the purge point.
                s.reset(meta.incarnation, meta.first_index, meta.prev_term);
            } else if meta.first_index > s.last() + 1 {
                // Purged past entries a crash took before they were
                // synced: they were covered by a snapshot, none is missed.
                s.reset(meta.incarnation, meta.first_index, meta.prev_term);
            } else {
                s.purge_before(meta.first_index, meta.prev_term);
            }
            s.written = s.last();
            s.durable = s.written;
            s.pending.clear();
            s.sync_mode = sync_mode;
            s.open = true;
            s.unverified = false;
        }
        Ok(WalLog {
            inner: Rc::new(LogInner {
                wal: wal.clone(),
                group,
                dir: dir.to_path_buf(),
                g,
                meta: RefCell::new(Some(meta_file)),
                purge_mark: Cell::new(None),
            }),
        })
    }

    /// The group.
    pub fn group(&self) -> u64 {
        self.inner.group
    }

    async fn hold(&self) -> Held<'_, V> {
        loop {
            if !std::mem::replace(&mut self.inner.g.borrow_mut().busy, true) {
                return Held(&self.inner.wal, &self.inner.g);
            }
            self.inner.wal.inner.idle.wait().await;
        }
    }

    fn meta_now(&self) -> Meta {
        let g = self.inner.g.borrow();
        Meta {
            incarnation: g.incarnation,
            log_id: self.inner.wal.inner.log_id,
            first_index: g.first,
            prev_term: g.prev_term,
        }
    }

    async fn save_meta(&self, meta: Meta) -> Result<()> {
        let mut file = self.inner.meta.borrow_mut().take().ok_or_else(|| {
            StorageError::invalid(self.inner.group, "a meta save is already running")
        })?;
        let saved = file.write(&meta.encode()).await;
        *self.inner.meta.borrow_mut() = Some(file);
        saved
    }

    /// Appends one piece of `run` that fits a segment.
    async fn append_piece(&self, run: &RecordRun) -> Result<()> {
        let (group, incarnation) = {
            let g = self.inner.g.borrow();
            (g.group, g.incarnation)
        };
        let body = run.bytes();
        let header = ChunkHeader {
            kind: Kind::Entries,
            epoch: 0,
            body_len: body.len() as u32,
            group,
            incarnation,
            arg: run.first_index(),
            sync_floor: 0,
            segment: None, // filled in by `write_chunk`
        };
        let (seg, body_off, end) = self.inner.wal.write_chunk(group, header, body).await?;
        let mut g = self.inner.g.borrow_mut();
        let mut off = body_off as u32;
        for rec in run.iter() {
            let len = rec.bytes.len() as u32;
            g.push(Loc {
                seg,
                off,
                len,
                term: rec.header.term,
            });
            off += len;
        }
        g.written = run.last_index();
        match g.sync_mode {
            SyncMode::Sync => {
                if g.pending.is_empty() {
                    self.inner
                        .wal
                        .inner
                        .st
                        .borrow_mut()
                        .waiting
                        .push(self.inner.g.clone());
                }
                g.pending.push_back((run.last_index(), end));
            }
            SyncMode::Async => {
                g.durable = g.written;
                drop(g);
                self.inner.wal.schedule_flush();
            }
        }
        Ok(())
    }

    /// Splits `run` into pieces that each fit in a segment.
    fn pieces(&self, run: &RecordRun) -> Vec<RecordRun> {
        let room = (self.inner.wal.inner.cfg.segment_bytes - SEGMENT_HEADER_BYTES) as usize
            - CHUNK_HEADER_BYTES;
        if run.bytes().len() <= room {
            return vec![run.clone()];
        }
        let mut out = Vec::new();
        let mut rest = run.clone();
        while !rest.is_empty() {
            let mut bytes = 0;
            let mut n = 0u64;
            for rec in rest.iter() {
                if bytes + rec.bytes.len() > room && n > 0 {
                    break;
                }
                bytes += rec.bytes.len();
                n += 1;
            }
            let mut piece = rest.clone();
            piece.truncate_after(rest.first_index() + n - 1);
            rest.skip_before(rest.first_index() + n);
            out.push(piece);
        }
        out
    }
}

impl<V: Vfs> RaftLog for WalLog<V> {
    fn location(&self) -> Option<String> {
        Some(format!(
            "{} (entries in {})",
            self.inner.dir.display(),
            self.inner.wal.inner.dir.display()
        ))
    }

    fn first_index(&self) -> u64 {
        self.inner.g.borrow().first
    }

    fn last_index(&self) -> u64 {
        self.inner.g.borrow().written
    }

    fn last_term(&self) -> u64 {
        let g = self.inner.g.borrow();
        g.loc(g.written).map_or(g.prev_term, |l| l.term)
    }

    fn durable_index(&self) -> u64 {
        self.inner.g.borrow().durable
    }

    fn bytes(&self) -> u64 {
        self.inner.g.borrow().bytes
    }

    fn term(&self, index: u64) -> Result<Option<u64>> {
        let g = self.inner.g.borrow();
        if index + 1 == g.first {
            return Ok(Some(g.prev_term));
        }
        if index > g.written {
            return Ok(None);
        }
        Ok(g.loc(index).map(|l| l.term))
    }

    fn read(&self, from: u64, bytes_max: usize) -> Result<RecordRun> {
        let g = self.inner.g.borrow();
        if from < g.first || from > g.written + 1 {
            return Err(StorageError::invalid(
                g.group,
                format!("read from {from}: log holds {}..={}", g.first, g.written),
            ));
        }
        if from == g.written + 1 {
            return Ok(RecordRun::empty(from));
        }
        let start = g.loc(from).expect("from is held");
        let mut bytes = u64::from(start.len);
        let mut prev = start;
        for index in from + 1..=g.written {
            let l = g.loc(index).expect("held");
            if l.seg != start.seg
                || l.off != prev.off + prev.len
                || bytes + u64::from(l.len) > bytes_max as u64
            {
                break;
            }
            bytes += u64::from(l.len);
            prev = l;
        }
        let seg = self
            .inner
            .wal
            .inner
            .st
            .borrow()
            .segs
            .get(&start.seg)
            .cloned()
            .ok_or_else(|| {
                StorageError::corrupt(
                    g.group,
                    &self.inner.wal.inner.dir,
                    0,
                    format!("segment {} of entry {from} is gone", start.seg),
                )
            })?;
        let data = seg
            .file
            .read(u64::from(start.off), bytes as usize)
            .map_err(|e| StorageError::io(g.group, "read", &seg.path, u64::from(start.off), e))?;
        format::parse_run(data, Some(from), self.inner.wal.inner.cfg.payload_bytes_max).map_err(
            |e| {
                StorageError::corrupt(
                    g.group,
                    &seg.path,
                    u64::from(start.off),
                    format!("bad record: {e}"),
                )
            },
        )
    }

    fn find_match(&self, term: u64, index: u64) -> Result<Option<(u64, u64)>> {
        crate::raft_log::find_match_in(self, term, index)
    }

    async fn append(&self, run: &RecordRun) -> Result<u64> {
        let _busy = self.hold().await;
        let group = self.inner.group;
        let expected = self.inner.g.borrow().written + 1;
        if run.first_index() != expected {
            return Err(StorageError::invalid(
                group,
                format!(
                    "append at {}: the next index is {expected}",
                    run.first_index()
                ),
            ));
        }
        if run.is_empty() {
            return Ok(expected - 1);
        }
        for piece in self.pieces(run) {
            self.append_piece(&piece).await?;
        }
        Ok(self.inner.g.borrow().written)
    }

    async fn sync(&self, index: u64) -> Result<u64> {
        loop {
            let target = {
                let g = self.inner.g.borrow();
                let want = index.min(g.written);
                if want <= g.durable {
                    return Ok(g.durable);
                }
                g.pending
                    .iter()
                    .find(|(last, _)| *last >= want)
                    .map(|(_, end)| *end)
            };
            match target {
                Some(t) => self.inner.wal.sync_to(self.inner.group, t).await?,
                // Written but not yet in `pending`: an append is finishing.
                None => self.inner.wal.sync_all().await?,
            }
        }
    }

    async fn truncate_tail(&self, last_kept: u64) -> Result<()> {
        let _busy = self.hold().await;
        let group = self.inner.group;
        let incarnation = {
            let mut g = self.inner.g.borrow_mut();
            if last_kept >= g.written {
                return Ok(());
            }
            if last_kept + 1 < g.first {
                return Err(StorageError::invalid(
                    group,
                    format!("truncate after {last_kept}: the log starts at {}", g.first),
                ));
            }
            g.truncate_after(last_kept);
            g.written = last_kept;
            g.durable = g.durable.min(last_kept);
            for p in g.pending.iter_mut() {
                p.0 = p.0.min(last_kept);
            }
            g.incarnation
        };
        let header = ChunkHeader {
            kind: Kind::Truncate,
            epoch: 0,
            body_len: 0,
            group,
            incarnation,
            arg: last_kept,
            sync_floor: 0,
            segment: None, // filled in by `write_chunk`
        };
        let (_, _, end) = self.inner.wal.write_chunk(group, header, &[]).await?;
        self.inner.wal.sync_to(group, end).await?;
        let mut g = self.inner.g.borrow_mut();
        if g.pending.is_empty() {
            g.durable = g.written;
        }
        Ok(())
    }

    async fn purge_head(&self, first_kept: u64) -> Result<()> {
        let _busy = self.hold().await;
        let (first, written) = {
            let g = self.inner.g.borrow();
            (g.first, g.written)
        };
        if first_kept <= first {
            return Ok(());
        }
        if first_kept > written + 1 {
            return Err(StorageError::invalid(
                self.inner.group,
                format!("purge before {first_kept}: the last entry is {written}"),
            ));
        }
        let prev_term = self.term(first_kept - 1)?.unwrap_or(0);
        let meta = Meta {
            first_index: first_kept,
            prev_term,
            ..self.meta_now()
        };
        self.save_meta(meta).await?;
        self.inner
            .g
            .borrow_mut()
            .purge_before(first_kept, prev_term);
        self.inner.wal.delete_unneeded().await
    }

    fn mark_purge(&self, first_kept: u64, not_before: Instant) {
        self.inner.purge_mark.set(Some((first_kept, not_before)));
    }

    async fn maintain(&self, now: Instant) -> Result<()> {
        if let Some((first_kept, at)) = self.inner.purge_mark.get()
            && at <= now
        {
            self.inner.purge_mark.set(None);
            let first_kept = first_kept.min(self.last_index() + 1);
            self.purge_head(first_kept).await?;
        }
        Ok(())
    }

    async fn install_snapshot(&self, last_index: u64, last_term: u64) -> Result<()> {
        let _busy = self.hold().await;
        let meta = Meta {
            incarnation: random_u64(),
            log_id: self.inner.wal.inner.log_id,
            first_index: last_index + 1,
            prev_term: last_term,
        };
        self.save_meta(meta).await?;
        self.inner
            .g
            .borrow_mut()
            .reset(meta.incarnation, meta.first_index, meta.prev_term);
        self.inner.wal.delete_unneeded().await
    }

    async fn close(self) -> Result<()> {
        let _busy = self.hold().await;
        let written = self.inner.g.borrow().written;
        let synced = self.sync(written).await;
        self.inner.g.borrow_mut().open = false;
        synced.map(|_| ())
    }
}

impl StorageError {
    /// The same error about `group` (for errors of the shared log met on
    /// a group's behalf).
    pub(crate) fn with_group(self, group: u64) -> StorageError {
        match self {
            StorageError::Io {
                op,
                path,
                offset,
                source,
                ..
            } => StorageError::Io {
                group,
                op,
                path,
                offset,
                source,
            },
            StorageError::DiskFull { path, offset, .. } => StorageError::DiskFull {
                group,
                path,
                offset,
            },
            other => other,
        }
    }
}
