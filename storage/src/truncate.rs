//! Cutting a [`SegmentLog`] at either end, and resetting it after a
//! snapshot install, each made durable in one step (see [`crate::log`]).

use crate::error::{Result, StorageError};
use crate::io::{Vfs, VfsFile};
use crate::log::{Meta, SegmentLog};
use crate::raft_log::RaftLog;
use crate::segment::Segment;

impl<V: Vfs> SegmentLog<V> {
    pub(crate) async fn truncate(&self, last_kept: u64) -> Result<()> {
        let _guard = self.lock().await;
        let inner = &*self.inner;
        inner.sync.check()?;
        let last = inner.sync.written.get();
        if last_kept >= last {
            return Ok(());
        }
        if last_kept + 1 < self.first_index() {
            return Err(StorageError::invalid(
                inner.group,
                format!(
                    "truncate to {last_kept}: the log starts at {}",
                    self.first_index()
                ),
            ));
        }
        self.flush_index().await?; // the cut segment keeps a whole index
        // The kept entries of the active segment must be durable before the
        // new segment makes the cut: the writer only syncs the active file.
        let holder = {
            let st = inner.st.borrow();
            let seg = st
                .segments
                .iter()
                .rev()
                .find(|s| s.first_index <= last_kept);
            seg.map(|s| (s.data.clone(), s.index.clone(), s.path.clone()))
        };
        if let Some((data, index, path)) = &holder {
            // Sealed from here: its index must be whole.
            index.sync().await.map_err(|e| self.fatal(e))?;
            data.sync()
                .await
                .map_err(|e| self.fatal(StorageError::io(inner.group, "sync", path, 0, e)))?;
        }
        let id = inner.st.borrow().next_segment_id;
        let seg = Segment::create(
            &inner.vfs,
            &inner.dir,
            inner.group,
            id,
            last_kept + 1,
            inner.cfg.grow_step_bytes,
        )
        .await?;
        self.sync_dir().await?; // the truncation is durable from here
        let removed = self.cut_segments(last_kept, seg);
        if let Some((data, _, path)) = &holder {
            // Sealed now (it may have been the active segment).
            crate::segment::release_fd(inner.group, &**data, path).await;
        }
        inner.sync.epoch.set(inner.sync.epoch.get() + 1);
        inner.sync.reset_to(last_kept);
        sampan_fiber::group_log!(
            info,
            inner.group,
            "group {}: log truncated after {last_kept} (was {last})",
            inner.group
        );
        for seg in removed.iter().rev() {
            seg.remove_files(&inner.vfs, inner.group).await;
        }
        if !removed.is_empty() {
            self.sync_dir().await?;
        }
        Ok(())
    }

    /// Drops segments past `last_kept`, cuts the one holding it, and makes
    /// `new` the active segment. Returns the dropped segments, oldest first.
    fn cut_segments(&self, last_kept: u64, new: Segment<V>) -> Vec<Segment<V>> {
        let inner = &*self.inner;
        let mut st = inner.st.borrow_mut();
        let mut removed = Vec::new();
        while st
            .segments
            .back()
            .is_some_and(|s| s.first_index > last_kept)
        {
            removed.extend(st.segments.pop_back());
        }
        removed.reverse();
        if let Some(seg) = st.segments.back_mut()
            && seg.last_index() > last_kept
        {
            if let Some(next) = seg.entry(last_kept + 1) {
                seg.write_pos = u64::from(next.offset);
            }
            seg.last_term = seg.entry(last_kept).map_or(0, |e| e.term);
            seg.cut_to(last_kept + 1 - seg.first_index);
        }
        st.next_segment_id = new.id + 1;
        *inner.sync.file.borrow_mut() = Some((new.data.clone(), new.path.clone()));
        st.segments.push_back(new);
        removed
    }

    pub(crate) async fn purge(&self, first_kept: u64) -> Result<()> {
        let _guard = self.lock().await;
        let inner = &*self.inner;
        inner.sync.check()?;
        let first_kept = first_kept.min(inner.sync.written.get() + 1);
        if first_kept <= self.first_index() {
            return Ok(());
        }
        let prev_term = self.term(first_kept - 1)?.ok_or_else(|| {
            StorageError::invalid(inner.group, format!("no term for {}", first_kept - 1))
        })?;
        let meta = Meta {
            first_index: first_kept,
            prev_term,
            min_segment_id: inner.st.borrow().meta.min_segment_id,
        };
        self.write_meta(meta).await?; // the purge is durable from here
        let removed: Vec<_> = {
            let mut st = inner.st.borrow_mut();
            st.meta = meta;
            let mut removed = Vec::new();
            while st.segments.len() > 1
                && st
                    .segments
                    .front()
                    .is_some_and(|s| s.last_index() < first_kept)
            {
                removed.extend(st.segments.pop_front());
            }
            removed
        };
        for seg in &removed {
            seg.remove_files(&inner.vfs, inner.group).await;
        }
        if !removed.is_empty() {
            self.sync_dir().await?;
        }
        sampan_fiber::group_log!(
            info,
            inner.group,
            "group {}: log purged before {first_kept} ({} segment(s) deleted)",
            inner.group,
            removed.len()
        );
        Ok(())
    }

    pub(crate) async fn reset(&self, last_index: u64, last_term: u64) -> Result<()> {
        let _guard = self.lock().await;
        let inner = &*self.inner;
        inner.sync.check()?;
        let id = inner.st.borrow().next_segment_id;
        let meta = Meta {
            first_index: last_index + 1,
            prev_term: last_term,
            min_segment_id: id,
        };
        self.write_meta(meta).await?; // older segments are void from here
        let seg = Segment::create(
            &inner.vfs,
            &inner.dir,
            inner.group,
            id,
            last_index + 1,
            inner.cfg.grow_step_bytes,
        )
        .await?;
        self.sync_dir().await?;
        let removed: Vec<_> = {
            let mut st = inner.st.borrow_mut();
            st.meta = meta;
            st.next_segment_id = id + 1;
            st.pending_purge = None;
            st.pending_age_purge = None;
            *inner.sync.file.borrow_mut() = Some((seg.data.clone(), seg.path.clone()));
            let old = std::mem::take(&mut st.segments);
            st.segments.push_back(seg);
            old.into_iter().collect()
        };
        inner.sync.epoch.set(inner.sync.epoch.get() + 1);
        inner.sync.reset_to(last_index);
        for seg in &removed {
            seg.remove_files(&inner.vfs, inner.group).await;
        }
        self.sync_dir().await?;
        sampan_fiber::group_log!(
            info,
            inner.group,
            "group {}: log reset after snapshot at {last_index} (term {last_term})",
            inner.group
        );
        Ok(())
    }

    pub(crate) async fn write_meta(&self, meta: Meta) -> Result<()> {
        let inner = &*self.inner;
        let mut file = inner
            .meta_file
            .borrow_mut()
            .take()
            .ok_or_else(|| StorageError::Failed {
                group: inner.group,
                reason: "meta file lost by an earlier failure".into(),
            })?;
        let res = file.write(&meta.encode()).await;
        *inner.meta_file.borrow_mut() = Some(file);
        res
    }
}
