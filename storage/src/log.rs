//! `SegmentLog`: the default [`RaftLog`], one per group, as segment files
//! with index files in `<dir>/`, plus a two-copy `meta` file holding where
//! the log starts.
//!
//! How each change becomes durable in one step, so a crash at any point
//! leaves a log that is a prefix of what was written, with no hole:
//! - **append**: records are written into the active segment, then the
//!   group-commit writer syncs it (see [`crate::writer`]). A segment is
//!   sealed (synced) before its successor is created, so no entry is ever
//!   reported durable while an earlier one is not (yugabyte#3490).
//! - **truncate tail** to `k`: a new, empty segment with first index `k+1`
//!   is created and its name synced. Segments are read in id order and each
//!   one cuts the older ones at its first index, so that single step is the
//!   truncation; deleting the segments it supersedes is clean-up that
//!   recovery redoes if a crash interrupts it (braft#119).
//! - **purge head** to `k`: `meta` is written first (first index `k`), then
//!   whole segments below it are deleted, oldest first: a crash midway
//!   leaves files that recovery ignores and deletes (canonical/raft#373).
//! - **install snapshot**: `meta` gets the new start and a minimum segment
//!   id; older segments are void from that instant.
//! - **purge by age** (retention): a purge head to the first segment whose
//!   successor was created at or after the bound (every entry of a segment
//!   is older than its successor's creation, recorded in the successor's
//!   header), capped by the caller's limit. The wall clock is trusted: a
//!   clock set back keeps segments longer, one set forward purges sooner,
//!   never past the limit.
//!
//! Memory per group does not grow with the log: per segment a few fields;
//! entry offsets and terms are read from the mapped index files.
//!
//! **When I/O fails.** A failed write or `fallocate` (a full disk: then
//! [`StorageError::DiskFull`], naming the
//! file) fails the append and changes nothing the log counts: the records
//! it held are written again by the next append, and the log carries on
//! once space returns. If a run spanned several writes, a prefix of it may
//! have been appended: `last_index()` says how far. A failed `fdatasync` of
//! a segment or index file is different, because Linux then drops the
//! writes it covered while still serving them from the page cache, and a
//! retried sync succeeds without them ("fsyncgate"; PostgreSQL, etcd and
//! TigerBeetle stop on it too). So it is fatal for the log: `durable_index`
//! never rises again, and every later change fails with
//! [`StorageError::Failed`], naming the file,
//! until the log is reopened. The open writes the entries after the newest
//! recorded sync floor again and syncs them before counting anything
//! durable (see `recovery::settle_active`), so a reopen in the same boot
//! does not trust pages the kernel never stored. The two-copy `meta` and
//! status files need no such rule: a failed write or sync leaves their
//! sequence unchanged, so the retry rewrites the same copy whole, and the
//! other copy is never touched.

use crate::dualfile::DualFile;
use crate::error::{Result, StorageError};
use crate::format::{self, RecordRun};
use crate::io::{Vfs, VfsFile};
use crate::raft_log::RaftLog;
use crate::segment::Segment;
use crate::writer::{LogWriter, SyncState};
use sampan_fiber::Signal;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Preparing segment space off the append path (zero-ahead, the spare).
mod prepare;
use prepare::Prep;
pub(crate) use prepare::SPARE_FILE;

/// When an entry counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// On disk: after `fdatasync` (the default).
    #[default]
    Sync,
    /// In the page cache: after the write (survives a process crash, not a
    /// power cut). Segments are still synced when sealed.
    Async,
}

/// Settings of a [`SegmentLog`].
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Size at which a segment is sealed and a new one started (bytes).
    pub segment_bytes: u64,
    /// A segment's file grows (fallocate, never sparse) by this much at a
    /// time, so thousands of mostly idle groups do not each hold a whole
    /// segment of disk.
    pub grow_step_bytes: u64,
    /// Index files grow by this much at a time.
    pub index_grow_step_bytes: u64,
    /// Largest payload accepted (bytes).
    pub payload_bytes_max: u32,
    /// When entries count as durable.
    pub sync_mode: SyncMode,
    /// In `sync` mode, how far past the write position the active segment
    /// is kept written with zeros, off the append path, so that appends
    /// write into space that needs no metadata commit; also the size of
    /// the spare segment made ready for the next roll (see
    /// the `prepare` module). 0 turns both off.
    pub zero_ahead_bytes: u64,
    /// In `sync` mode, an append made while everything before it is on disk
    /// is written and made durable in one operation (`RWF_DSYNC`: one trip
    /// to the kernel's I/O workers instead of a write and an `fdatasync`),
    /// needing no sync round. A failure of such a write is fatal for the
    /// log, as a failed sync is: which half failed cannot be told. `false`
    /// (the default): appends only write, and sync rounds make them
    /// durable. Off by default because it loses under deep pipelines: the
    /// append holds the log's lock through its sync, so the next append
    /// cannot write meanwhile (Dongting's shape, 2,000 puts in flight: 77k
    /// puts/s without, 59k with; see `benches/RESULTS.md`).
    pub durable_writes: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 64 << 20,
            grow_step_bytes: 4 << 20,
            index_grow_step_bytes: 256 << 10,
            payload_bytes_max: format::PAYLOAD_BYTES_MAX_DEFAULT,
            sync_mode: SyncMode::Sync,
            zero_ahead_bytes: 4 << 20,
            durable_writes: false,
        }
    }
}

/// Where the log starts, kept in the `meta` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) first_index: u64,
    pub(crate) prev_term: u64,
    pub(crate) min_segment_id: u64,
}

impl Meta {
    pub(crate) const MAGIC: u32 = 0x544D_5053; // "SPMT"

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(24);
        b.extend_from_slice(&self.first_index.to_le_bytes());
        b.extend_from_slice(&self.prev_term.to_le_bytes());
        b.extend_from_slice(&self.min_segment_id.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Meta> {
        let at = |o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
        (b.len() == 24).then_some(())?;
        Some(Meta {
            first_index: at(0)?,
            prev_term: at(8)?,
            min_segment_id: at(16)?,
        })
    }
}

/// Everything behind the lock-free read path.
pub(crate) struct State<V: Vfs> {
    /// In index order; never empty once open (the last one is active).
    pub(crate) segments: VecDeque<Segment<V>>,
    pub(crate) meta: Meta,
    pub(crate) next_segment_id: u64,
    pub(crate) pending_purge: Option<(u64, Instant)>,
    pub(crate) pending_age_purge: Option<AgePurge>,
}

/// A purge by age waiting for [`RaftLog::maintain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AgePurge {
    older_than_ms: u64,
    first_kept_max: u64,
    not_before: Instant,
}

/// One segment of a log, as [`SegmentLog::segments`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment id.
    pub id: u64,
    /// Index of its first entry.
    pub first_index: u64,
    /// Index of its last entry (`first_index - 1` when empty).
    pub last_index: u64,
    /// When it was created (`None` when its header does not say).
    pub created: Option<SystemTime>,
}

pub(crate) struct Inner<V: Vfs> {
    pub(crate) group: u64,
    pub(crate) dir: PathBuf,
    pub(crate) vfs: V,
    pub(crate) cfg: LogConfig,
    pub(crate) st: RefCell<State<V>>,
    pub(crate) meta_file: RefCell<Option<DualFile<V>>>,
    pub(crate) sync: Rc<SyncState<V::File>>,
    pub(crate) writer: LogWriter<V::File>,
    pub(crate) prep: Prep,
    lock_held: Cell<bool>,
    lock_free: Signal,
}

/// A group's log as segment files; cheap to clone (clones share the log).
/// Shard-local (`!Send`).
pub struct SegmentLog<V: Vfs> {
    pub(crate) inner: Rc<Inner<V>>,
}

impl<V: Vfs> Clone for SegmentLog<V> {
    fn clone(&self) -> Self {
        SegmentLog {
            inner: self.inner.clone(),
        }
    }
}

impl<V: Vfs> std::fmt::Debug for SegmentLog<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentLog")
            .field("group", &self.inner.group)
            .field("dir", &self.inner.dir)
            .field("first_index", &self.first_index())
            .field("last_index", &self.last_index())
            .finish()
    }
}

/// Held while a change (append, truncate, purge) runs: one at a time.
pub(crate) struct LockGuard<'a, V: Vfs>(&'a Inner<V>);

impl<V: Vfs> Drop for LockGuard<'_, V> {
    fn drop(&mut self) {
        self.0.lock_held.set(false);
        self.0.lock_free.notify_all();
    }
}

impl<V: Vfs> SegmentLog<V> {
    pub(crate) fn from_parts(
        group: u64,
        dir: &Path,
        vfs: V,
        cfg: LogConfig,
        st: State<V>,
        meta_file: DualFile<V>,
        writer: LogWriter<V::File>,
    ) -> SegmentLog<V> {
        let last = st.segments.back().map_or(0, Segment::last_index);
        let sync = Rc::new(SyncState::new(group, last));
        if let Some(seg) = st.segments.back() {
            *sync.file.borrow_mut() = Some((seg.data.clone(), seg.path.clone()));
        }
        SegmentLog {
            inner: Rc::new(Inner {
                group,
                dir: dir.to_path_buf(),
                vfs,
                cfg,
                st: RefCell::new(st),
                meta_file: RefCell::new(Some(meta_file)),
                sync,
                writer,
                prep: Prep::new(),
                lock_held: Cell::new(false),
                lock_free: Signal::new(),
            }),
        }
    }

    pub(crate) async fn lock(&self) -> LockGuard<'_, V> {
        let inner = &*self.inner;
        loop {
            if !inner.lock_held.get() {
                inner.lock_held.set(true);
                return LockGuard(inner);
            }
            let free = inner.lock_free.wait();
            if inner.lock_held.get() {
                free.await;
            }
        }
    }

    /// The group id.
    pub fn group(&self) -> u64 {
        self.inner.group
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.inner.st.borrow().segments.len()
    }

    /// The segments, oldest first (for tools, metrics and tests).
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let st = self.inner.st.borrow();
        st.segments
            .iter()
            .map(|s| SegmentInfo {
                id: s.id,
                first_index: s.first_index,
                last_index: s.last_index(),
                created: (s.created_ms != 0)
                    .then(|| UNIX_EPOCH + Duration::from_millis(s.created_ms)),
            })
            .collect()
    }

    /// The first index of the oldest segment holding an entry that is not
    /// older than `older_than_ms`: every entry of a segment is older than
    /// its successor's creation, so a segment goes when its successor was
    /// created before the bound. A successor of unknown age, and the
    /// active segment, keep it.
    fn first_kept_by_age(&self, older_than_ms: u64) -> u64 {
        let st = self.inner.st.borrow();
        let young = st
            .segments
            .iter()
            .zip(st.segments.iter().skip(1))
            .position(|(_, next)| next.created_ms == 0 || next.created_ms >= older_than_ms)
            .unwrap_or(st.segments.len().saturating_sub(1));
        st.segments
            .get(young)
            .map_or(st.meta.first_index, |s| s.first_index)
    }

    /// The shard writer this log syncs through.
    pub fn writer(&self) -> &LogWriter<V::File> {
        &self.inner.writer
    }

    /// Checks every record of every segment (CRCs, indexes, terms) and every
    /// index record against its segment; the first fault as
    /// [`StorageError::Corrupt`]. Reads the whole log: for tools and tests.
    pub fn verify(&self) -> Result<()> {
        let mut from = self.first_index();
        while from <= self.last_index() {
            let run = self.read(from, 1 << 20)?;
            for rec in run.iter() {
                let t = self.term(rec.header.index)?;
                if t != Some(rec.header.term) {
                    return Err(StorageError::corrupt(
                        self.inner.group,
                        &self.inner.dir,
                        rec.header.index,
                        "index file term disagrees with the segment",
                    ));
                }
            }
            from = run.last_index() + 1;
        }
        Ok(())
    }

    fn segment_of(st: &State<V>, index: u64) -> Option<&Segment<V>> {
        let pos = st.segments.partition_point(|s| s.first_index <= index);
        let seg = st.segments.get(pos.checked_sub(1)?)?;
        (index <= seg.last_index()).then_some(seg)
    }

    fn read_in(&self, seg: &Segment<V>, from: u64, bytes_max: usize) -> Result<RecordRun> {
        let group = self.inner.group;
        let missing = |index: u64| {
            StorageError::corrupt(
                group,
                seg.index.path(),
                index,
                "index record missing or bad",
            )
        };
        let start = u64::from(seg.entry(from).ok_or_else(|| missing(from))?.offset);
        let mut end = seg.write_pos;
        for next in from + 1..=seg.last_index() {
            let off = u64::from(seg.entry(next).ok_or_else(|| missing(next))?.offset);
            if off - start > bytes_max as u64 {
                end = off;
                break;
            }
        }
        let bytes = seg
            .data
            .read(start, (end - start) as usize)
            .map_err(|e| StorageError::io(group, "read", &seg.path, start, e))?;
        format::parse_run(bytes, Some(from), self.inner.cfg.payload_bytes_max)
            .map_err(|e| StorageError::corrupt(group, &seg.path, start, format!("bad record: {e}")))
    }
}

impl<V: Vfs> RaftLog for SegmentLog<V> {
    fn location(&self) -> Option<String> {
        Some(self.dir().display().to_string())
    }

    fn first_index(&self) -> u64 {
        self.inner.st.borrow().meta.first_index
    }

    fn last_index(&self) -> u64 {
        self.inner.sync.written.get()
    }

    fn last_term(&self) -> u64 {
        let st = self.inner.st.borrow();
        let last = self.inner.sync.written.get();
        match st.segments.iter().rev().find(|s| s.count > 0) {
            Some(seg) if last >= st.meta.first_index => seg.last_term,
            _ => st.meta.prev_term,
        }
    }

    fn durable_index(&self) -> u64 {
        self.inner.sync.durable.get()
    }

    fn bytes(&self) -> u64 {
        let st = self.inner.st.borrow();
        st.segments.iter().map(|s| s.write_pos).sum()
    }

    fn term(&self, index: u64) -> Result<Option<u64>> {
        let st = self.inner.st.borrow();
        if index + 1 == st.meta.first_index {
            return Ok(Some(st.meta.prev_term));
        }
        if index < st.meta.first_index || index > self.inner.sync.written.get() {
            return Ok(None);
        }
        let seg = Self::segment_of(&st, index).ok_or_else(|| {
            StorageError::corrupt(
                self.inner.group,
                &self.inner.dir,
                index,
                "no segment holds it",
            )
        })?;
        let entry = seg.entry(index).ok_or_else(|| {
            StorageError::corrupt(
                self.inner.group,
                seg.index.path(),
                index,
                "bad index record",
            )
        })?;
        Ok(Some(entry.term))
    }

    fn read(&self, from: u64, bytes_max: usize) -> Result<RecordRun> {
        let st = self.inner.st.borrow();
        let last = self.inner.sync.written.get();
        if from < st.meta.first_index || from > last + 1 {
            return Err(StorageError::invalid(
                self.inner.group,
                format!(
                    "read from {from}: log holds {}..={last}",
                    st.meta.first_index
                ),
            ));
        }
        if from == last + 1 {
            return Ok(RecordRun::empty(from));
        }
        let seg = Self::segment_of(&st, from).ok_or_else(|| {
            StorageError::corrupt(
                self.inner.group,
                &self.inner.dir,
                from,
                "no segment holds it",
            )
        })?;
        self.read_in(seg, from, bytes_max)
    }

    fn find_match(&self, term: u64, index: u64) -> Result<Option<(u64, u64)>> {
        crate::raft_log::find_match_in(self, term, index)
    }

    async fn append(&self, run: &RecordRun) -> Result<u64> {
        self.append_run(run).await
    }

    async fn sync(&self, index: u64) -> Result<u64> {
        self.inner
            .writer
            .wait_durable(&self.inner.sync, index)
            .await
    }

    async fn truncate_tail(&self, last_kept: u64) -> Result<()> {
        self.truncate(last_kept).await
    }

    async fn purge_head(&self, first_kept: u64) -> Result<()> {
        self.purge(first_kept).await
    }

    fn mark_purge(&self, first_kept: u64, not_before: Instant) {
        self.inner.st.borrow_mut().pending_purge = Some((first_kept, not_before));
    }

    fn mark_purge_by_age(&self, older_than: SystemTime, first_kept_max: u64, not_before: Instant) {
        self.inner.st.borrow_mut().pending_age_purge = Some(AgePurge {
            older_than_ms: crate::segment::unix_ms(older_than),
            first_kept_max,
            not_before,
        });
    }

    async fn maintain(&self, now: Instant) -> Result<()> {
        let due_age = self
            .inner
            .st
            .borrow()
            .pending_age_purge
            .filter(|m| m.not_before <= now);
        if let Some(mark) = due_age {
            let first_kept = self
                .first_kept_by_age(mark.older_than_ms)
                .min(mark.first_kept_max);
            self.purge(first_kept).await?;
            let mut st = self.inner.st.borrow_mut();
            if st.pending_age_purge == Some(mark) {
                st.pending_age_purge = None;
            }
        }
        let due = self
            .inner
            .st
            .borrow()
            .pending_purge
            .filter(|&(_, t)| t <= now);
        if let Some((first_kept, _)) = due {
            self.purge(first_kept).await?;
            let mut st = self.inner.st.borrow_mut();
            if st.pending_purge.is_some_and(|(i, _)| i == first_kept) {
                st.pending_purge = None;
            }
        }
        Ok(())
    }

    async fn install_snapshot(&self, last_index: u64, last_term: u64) -> Result<()> {
        self.reset(last_index, last_term).await
    }

    async fn close(self) -> Result<()> {
        let last = self.last_index();
        if last > self.durable_index() {
            self.sync(last).await?;
        }
        sampan_fiber::group_log!(
            info,
            self.inner.group,
            "group {}: log closed at index {last}",
            self.inner.group
        );
        Ok(())
    }
}
