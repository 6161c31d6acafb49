//! Appending to a [`SegmentLog`]: records are restamped with the segment id
//! and sync floor, copied into one buffer per segment, and written with
//! their index records; a full segment is sealed (synced) and a new one
//! started.

use crate::error::{Result, StorageError};
use crate::format::{self, Record, RecordRun};
use crate::io::{Vfs, VfsFile};
use crate::log::{SegmentLog, SyncMode};
use crate::raft_log::RaftLog;
use crate::segment::{INDEX_BATCH_RECORDS, Segment};
use std::iter::Peekable;

/// Records of one write into the active segment.
struct Chunk {
    buf: Vec<u8>,
    entries: Vec<(u32, u64)>,
    last_index: u64,
    last_term: u64,
}

impl<V: Vfs> SegmentLog<V> {
    pub(crate) async fn append_run(&self, run: &RecordRun) -> Result<u64> {
        let _guard = self.lock().await;
        let inner = &*self.inner;
        inner.sync.check()?;
        let last = inner.sync.written.get();
        if run.is_empty() {
            return Ok(last);
        }
        let first_term = run.iter().next().map_or(0, |r| r.header.term);
        if run.first_index() != last + 1 || first_term < self.last_term() {
            return Err(StorageError::invalid(
                inner.group,
                format!(
                    "append of {}..={} (term {first_term}) does not follow {last} (term {})",
                    run.first_index(),
                    run.last_index(),
                    self.last_term()
                ),
            ));
        }
        let max = inner.cfg.payload_bytes_max;
        if let Some(r) = run.iter().find(|r| r.header.payload_len > max) {
            return Err(StorageError::invalid(
                inner.group,
                format!(
                    "entry {} has {} payload bytes, limit {max}",
                    r.header.index, r.header.payload_len
                ),
            ));
        }
        let mut records = run.iter().peekable();
        while records.peek().is_some() {
            match self.fill_chunk(&mut records) {
                Some(chunk) => self.write_chunk(chunk).await?,
                None => self.roll().await?,
            }
        }
        Ok(inner.sync.written.get())
    }

    /// Takes the records that fit in the active segment; `None` when not
    /// even the next one fits (time to roll).
    fn fill_chunk(&self, records: &mut Peekable<impl Iterator<Item = Record>>) -> Option<Chunk> {
        let st = self.inner.st.borrow();
        let seg = st.segments.back()?;
        let limit = self.inner.cfg.segment_bytes;
        let floor = self.inner.sync.synced.get();
        let mut pos = seg.write_pos;
        let mut chunk = Chunk {
            buf: Vec::new(),
            entries: Vec::new(),
            last_index: 0,
            last_term: 0,
        };
        while let Some(rec) = records.peek() {
            let size = rec.bytes.len() as u64;
            let alone = seg.count == 0 && chunk.entries.is_empty();
            if pos + size > limit && !alone {
                break;
            }
            let start = chunk.buf.len();
            chunk.buf.extend_from_slice(&rec.bytes);
            format::restamp(&mut chunk.buf[start..], seg.id, floor);
            chunk.entries.push((pos as u32, rec.header.term));
            chunk.last_index = rec.header.index;
            chunk.last_term = rec.header.term;
            pos += size;
            records.next();
        }
        (!chunk.entries.is_empty()).then_some(chunk)
    }

    async fn write_chunk(&self, chunk: Chunk) -> Result<()> {
        let inner = &*self.inner;
        let (data, write_pos, path, id) = {
            let st = inner.st.borrow();
            let seg = st
                .segments
                .back()
                .expect("a log always has an active segment");
            (seg.data.clone(), seg.write_pos, seg.path.clone(), seg.id)
        };
        let end = write_pos + chunk.buf.len() as u64;
        self.reserve_write(id, end).await;
        if end > data.len() {
            let step = inner.cfg.grow_step_bytes.max(1);
            let alloc = (end.div_ceil(step) * step).min(inner.cfg.segment_bytes.max(end));
            data.allocate(alloc)
                .await
                .map_err(|e| StorageError::io(inner.group, "allocate", &path, write_pos, e))?;
        }
        // In `sync` mode, when everything written before is on disk, the
        // chunk is written and made durable in one operation (one trip to
        // the kernel's workers instead of a write and an `fdatasync`). Its
        // range is all that is unsynced, so it is then durable as a whole.
        let durable_write = inner.cfg.durable_writes
            && inner.cfg.sync_mode == SyncMode::Sync
            && inner.sync.all_synced();
        let epoch = inner.sync.epoch.get();
        if durable_write {
            // Whether the write or its sync failed cannot be told apart: the
            // bytes' state is unknown, so the log fails as for a failed sync.
            data.write_at_durable(chunk.buf, write_pos)
                .await
                .map_err(|e| {
                    self.fatal(StorageError::io(
                        inner.group,
                        "durable write",
                        &path,
                        write_pos,
                        e,
                    ))
                })?;
        } else {
            data.write_at(chunk.buf, write_pos)
                .await
                .map_err(|e| StorageError::io(inner.group, "write", &path, write_pos, e))?;
        }
        let batch_full = {
            let mut st = inner.st.borrow_mut();
            let seg = st.segments.back_mut().expect("active segment");
            debug_assert_eq!(
                seg.id, id,
                "the active segment changed under the append lock"
            );
            seg.count += chunk.entries.len() as u64;
            seg.pending.extend_from_slice(&chunk.entries);
            seg.write_pos = end;
            seg.last_term = chunk.last_term;
            seg.pending.len() >= INDEX_BATCH_RECORDS
        };
        inner.sync.written.set(chunk.last_index);
        match inner.cfg.sync_mode {
            SyncMode::Async => inner.sync.set_durable(chunk.last_index),
            SyncMode::Sync if durable_write => {
                if inner.sync.epoch.get() == epoch {
                    inner.sync.set_synced(chunk.last_index);
                }
                inner.writer.count_durable_write();
            }
            SyncMode::Sync => inner.writer.mark_dirty(&inner.sync),
        }
        if batch_full {
            self.flush_index().await?;
        }
        self.kick_preparer();
        Ok(())
    }

    /// Writes the active segment's pending index records (not synced: the
    /// index of the active segment is rebuilt from it on recovery).
    pub(crate) async fn flush_index(&self) -> Result<()> {
        let inner = &*self.inner;
        let (index, k, encoded, n) = {
            let st = inner.st.borrow();
            let seg = st.segments.back().expect("active segment");
            let k = seg.flushed();
            (
                seg.index.clone(),
                k,
                seg.index.encode(k, &seg.pending),
                seg.pending.len(),
            )
        };
        if n == 0 {
            return Ok(());
        }
        index
            .write(k, encoded, inner.cfg.index_grow_step_bytes.max(64))
            .await?;
        let mut st = inner.st.borrow_mut();
        let seg = st.segments.back_mut().expect("active segment");
        // Records stay readable from memory until they are in the file.
        seg.pending.drain(..n.min(seg.pending.len()));
        Ok(())
    }

    /// Seals the active segment (syncs it and its index) and starts the next.
    pub(crate) async fn roll(&self) -> Result<()> {
        let inner = &*self.inner;
        self.flush_index().await?;
        let (data, index, last, path, id) = {
            let st = inner.st.borrow();
            let seg = st.segments.back().expect("active segment");
            let id = st.next_segment_id;
            (
                seg.data.clone(),
                seg.index.clone(),
                seg.last_index(),
                seg.path.clone(),
                id,
            )
        };
        let epoch = inner.sync.epoch.get();
        let (ds, is) = futures_lite::future::zip(data.sync(), index.sync()).await;
        if let Err(e) = ds {
            return Err(self.fatal(StorageError::io(inner.group, "sync", &path, 0, e)));
        }
        is.map_err(|e| self.fatal(e))?;
        if inner.sync.epoch.get() == epoch {
            inner.sync.set_synced(last);
        }
        let seg = self.next_segment(id, last + 1).await?;
        self.sync_dir().await?;
        sampan_fiber::group_log!(
            info,
            inner.group,
            "group {}: segment {} started at index {}",
            inner.group,
            seg.path.display(),
            last + 1
        );
        {
            let mut st = inner.st.borrow_mut();
            st.next_segment_id = id + 1;
            *inner.sync.file.borrow_mut() = Some((seg.data.clone(), seg.path.clone()));
            st.segments.push_back(seg);
        }
        // Sealed: read through its mapping from now on, no descriptor held.
        crate::segment::release_fd(inner.group, &*data, &path).await;
        Ok(())
    }

    /// A failed `fdatasync` of a log file is fatal for the log (see
    /// [`crate::log`], "When a sync fails"): the log refuses every later
    /// change until it is reopened, and `err` is returned to the caller.
    pub(crate) fn fatal(&self, err: StorageError) -> StorageError {
        self.inner.sync.fail(err.to_string());
        err
    }

    pub(crate) async fn sync_dir(&self) -> Result<()> {
        let inner = &*self.inner;
        inner
            .vfs
            .sync_dir(&inner.dir)
            .await
            .map_err(|e| StorageError::io(inner.group, "sync dir", &inner.dir, 0, e))
    }
}

impl<V: Vfs> Segment<V> {
    /// Removes the segment's files (data, then index) and closes them.
    pub(crate) async fn remove_files(&self, vfs: &V, group: u64) {
        self.seal_fd(group).await;
        for path in [self.path.clone(), self.index.path().to_path_buf()] {
            if let Err(e) = vfs.remove(&path).await {
                sampan_fiber::group_log!(
                    warn,
                    group,
                    "group {group}: could not remove {}: {e}; recovery will",
                    path.display()
                );
            }
        }
    }
}
