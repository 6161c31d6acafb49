//! Preparing segment space off the append path: the active segment is kept
//! written with zeros (and synced) some way past the write position, and a
//! spare segment file, allocated and zero-filled, waits for the next roll.
//!
//! Why zeros and not just `fallocate`: on ext4 (and XFS) `fallocate`
//! leaves *unwritten* extents, and the first write into one must commit an
//! extent conversion with the data, so each `fdatasync` also commits
//! metadata through the journal. Measured here with `dd oflag=dsync`, 4 KiB
//! writes: 136 µs each into fallocated space, 148 µs appending to a growing
//! file, 90 µs into space already written and synced. RESEARCH.md saw
//! p50 150–200 µs against 90–110 µs the same way.
//!
//! The work runs in a background fiber ([`TaskClass::Background`]) that an
//! append starts when the zeroed space runs low or no spare is ready; off a
//! shard (tests under `block_on`) nobody starts it and the caller may run
//! [`SegmentLog::prepare`] itself. Nothing depends on it having run: an
//! append that outruns it allocates inline, as before, and a roll without a
//! spare creates the segment.
//!
//! The one rule that keeps it safe: zeros are written only past the end of
//! every append write issued so far (`Segment::writing_end`), and an append
//! that would reach a range being zeroed waits for the zeroing to finish.
//! Zeros past the last record are what recovery expects there anyway, so a
//! crash in the middle of preparing leaves nothing to repair; a leftover
//! spare file is deleted on open.
//!
//! Descriptors: the zeroing writes into the active segment, whose
//! descriptor the log keeps anyway; the spare file is open only while it
//! is being prepared, then closed, and reopened under its segment name at
//! the roll, so a group holds no descriptor for it between uses.
//!
//! Zero-ahead is for `sync` mode only: in
//! `async` mode no append waits for a sync, and writing every byte twice
//! would cost bandwidth for nothing; the spare is prepared in both modes.

use super::{SegmentLog, SyncMode};
use crate::error::{Result, StorageError};
use crate::io::{Vfs, VfsFile};
use crate::segment::Segment;
use sampan_fiber::{Signal, TaskClass};
use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;

/// Name of the spare segment file in a log's directory.
pub(crate) const SPARE_FILE: &str = "spare";
/// Zeros go down in writes of this size.
const ZERO_WRITE_BYTES: u64 = 1 << 20;

/// A range of the active segment being zeroed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Claim {
    segment_id: u64,
    start: u64,
}

/// Zeroing work on the active segment.
struct ZeroJob<V: Vfs> {
    segment_id: u64,
    file: Rc<V::File>,
    path: PathBuf,
    start: u64,
    end: u64,
}

/// The preparation state of one log.
pub(crate) struct Prep {
    running: Cell<bool>,
    claim: Cell<Option<Claim>>,
    /// Notified when a claim ends.
    done: Signal,
    /// A spare file is ready (allocated, zero-filled, synced, closed).
    spare_ready: Cell<bool>,
    /// The active segment when a background preparation last failed (a
    /// full disk, say): no new one starts before the next segment, so a
    /// failing disk costs one warning per segment, not one per append.
    failed_on: Cell<Option<u64>>,
}

impl Prep {
    pub(crate) fn new() -> Prep {
        Prep {
            running: Cell::new(false),
            claim: Cell::new(None),
            done: Signal::new(),
            spare_ready: Cell::new(false),
            failed_on: Cell::new(None),
        }
    }
}

/// Ends a claim (and the run) even if the preparing future is dropped.
struct RunGuard<'a>(&'a Prep);

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.0.claim.set(None);
        self.0.running.set(false);
        self.0.done.notify_all();
    }
}

impl<V: Vfs> SegmentLog<V> {
    /// Bytes to keep zeroed past the write position (0: none).
    fn zero_ahead_bytes(&self) -> u64 {
        match self.inner.cfg.sync_mode {
            SyncMode::Sync => self.inner.cfg.zero_ahead_bytes,
            SyncMode::Async => 0,
        }
    }

    fn spare_bytes(&self) -> u64 {
        let cfg = &self.inner.cfg;
        cfg.zero_ahead_bytes.min(cfg.segment_bytes)
    }

    fn spare_path(&self) -> PathBuf {
        self.inner.dir.join(SPARE_FILE)
    }

    /// What the zero-ahead should cover now, or `None` when all of the
    /// window past the write position is zeroed (`lazy`: half of it).
    fn zero_target(&self, lazy: bool) -> Option<ZeroJob<V>> {
        let ahead = self.zero_ahead_bytes();
        let st = self.inner.st.borrow();
        let seg = st.segments.back()?;
        let written = seg.write_pos.max(seg.writing_end);
        let end = (written + ahead).min(self.inner.cfg.segment_bytes);
        let start = seg.zeroed_end.max(written);
        let enough = if lazy {
            written + (end.saturating_sub(written)) / 2
        } else {
            end
        };
        (ahead > 0 && start < end && seg.zeroed_end < enough).then(|| ZeroJob {
            segment_id: seg.id,
            file: seg.data.clone(),
            path: seg.path.clone(),
            start,
            end,
        })
    }

    /// A spare is made once the active segment is half full, so that idle
    /// groups hold none.
    fn spare_wanted(&self) -> bool {
        let half_full = self
            .inner
            .st
            .borrow()
            .segments
            .back()
            .is_some_and(|s| s.write_pos >= self.inner.cfg.segment_bytes / 2);
        half_full && self.spare_bytes() > 0 && !self.inner.prep.spare_ready.get()
    }

    fn needs_prep(&self) -> bool {
        self.spare_wanted() || self.zero_target(true).is_some()
    }

    /// Starts the background preparation if there is work and it is not
    /// running (only on a shard; elsewhere [`SegmentLog::prepare`] is
    /// called by hand).
    pub(crate) fn kick_preparer(&self) {
        let prep = &self.inner.prep;
        let active = self.inner.st.borrow().segments.back().map(|s| s.id);
        if prep.running.get() || prep.failed_on.get() == active || !self.needs_prep() {
            return;
        }
        let log = self.clone();
        let spawned = sampan_fiber::spawn(TaskClass::Background, "log-prepare", async move {
            if let Err(e) = log.prepare().await {
                log.inner.prep.failed_on.set(active);
                sampan_fiber::group_log!(
                    warn,
                    log.group(),
                    "group {}: preparing segment space failed, appends allocate inline \
                     until the next segment: {e}",
                    log.group()
                );
            }
        });
        if let Err(e) = spawned {
            sampan_fiber::group_log!(
                debug,
                self.group(),
                "group {}: no background preparer: {e}",
                self.group()
            );
        }
    }

    /// Prepares segment space now: zeroes the active segment ahead of the
    /// write position (`sync` mode) and makes a spare segment ready. Does
    /// nothing if a preparation is already running. A failed sync of the
    /// active segment is fatal for the log, as any failed sync of it is.
    pub async fn prepare(&self) -> Result<()> {
        let prep = &self.inner.prep;
        self.inner.sync.check()?;
        if prep.running.replace(true) {
            return Ok(());
        }
        let _guard = RunGuard(prep);
        if let Some(job) = self.zero_target(false) {
            prep.claim.set(Some(Claim {
                segment_id: job.segment_id,
                start: job.start,
            }));
            let res = self.zero_range(&job).await;
            prep.claim.set(None);
            prep.done.notify_all();
            res?;
        }
        if self.spare_wanted() {
            self.make_spare().await?;
        }
        Ok(())
    }

    async fn zero_range(&self, job: &ZeroJob<V>) -> Result<()> {
        let inner = &*self.inner;
        let io = |op, at, e| StorageError::io(inner.group, op, &job.path, at, e);
        let file = &job.file;
        file.allocate(job.end)
            .await
            .map_err(|e| io("allocate", job.start, e))?;
        let mut at = job.start;
        while at < job.end {
            let n = ZERO_WRITE_BYTES.min(job.end - at);
            file.write_at(vec![0u8; n as usize], at)
                .await
                .map_err(|e| io("write zeros", at, e))?;
            at += n;
        }
        // The active segment's sync: failing it is fatal, as in a commit,
        // unless a truncation dropped the segment meanwhile (its file is
        // gone, and a released file is reopened by name for the sync).
        if let Err(e) = file.sync().await {
            let err = io("sync", 0, e);
            let in_log = inner
                .st
                .borrow()
                .segments
                .iter()
                .any(|s| s.id == job.segment_id);
            return Err(if in_log { self.fatal(err) } else { err });
        }
        let mut st = inner.st.borrow_mut();
        if let Some(seg) = st.segments.back_mut().filter(|s| s.id == job.segment_id) {
            seg.zeroed_end = seg.zeroed_end.max(job.end);
        }
        Ok(())
    }

    async fn make_spare(&self) -> Result<()> {
        let inner = &*self.inner;
        let path = self.spare_path();
        let len = self.spare_bytes();
        let io = |op, e| StorageError::io(inner.group, op, &path, 0, e);
        let file = inner
            .vfs
            .open(&path, true)
            .await
            .map_err(|e| io("create", e))?;
        let filled = async {
            file.allocate(len).await.map_err(|e| io("allocate", e))?;
            let mut at = 0;
            while at < len {
                let n = ZERO_WRITE_BYTES.min(len - at);
                file.write_at(vec![0u8; n as usize], at)
                    .await
                    .map_err(|e| io("write zeros", e))?;
                at += n;
            }
            file.sync().await.map_err(|e| io("sync", e))
        }
        .await;
        // Closed between uses: the roll opens it under its segment name.
        let closed = file.release().await.map_err(|e| io("close", e));
        filled.and(closed)?;
        inner.prep.spare_ready.set(true);
        Ok(())
    }

    /// Waits until no zeroing of segment `segment_id` starts before `end`,
    /// then records `end` as the end of the append write about to be issued
    /// (so no zeroing starts before it).
    pub(crate) async fn reserve_write(&self, segment_id: u64, end: u64) {
        let prep = &self.inner.prep;
        loop {
            let blocked = prep
                .claim
                .get()
                .is_some_and(|c| c.segment_id == segment_id && c.start < end);
            if !blocked {
                let mut st = self.inner.st.borrow_mut();
                if let Some(seg) = st.segments.back_mut() {
                    seg.writing_end = seg.writing_end.max(end);
                }
                return;
            }
            let done = prep.done.wait();
            if prep.claim.get().is_some() {
                done.await;
            }
        }
    }

    /// The next segment, on the spare if one is ready (a rename and a
    /// header write), else created.
    pub(crate) async fn next_segment(&self, id: u64, first_index: u64) -> Result<Segment<V>> {
        let inner = &*self.inner;
        if inner.prep.spare_ready.replace(false) {
            match Segment::from_spare(
                &inner.vfs,
                &inner.dir,
                &self.spare_path(),
                inner.group,
                id,
                first_index,
            )
            .await
            {
                Ok(seg) => return Ok(seg),
                Err(e) => sampan_fiber::group_log!(
                    warn,
                    inner.group,
                    "group {}: spare segment unusable ({e}); creating one",
                    inner.group
                ),
            }
        }
        Segment::create(
            &inner.vfs,
            &inner.dir,
            inner.group,
            id,
            first_index,
            inner.cfg.grow_step_bytes,
        )
        .await
    }
}
