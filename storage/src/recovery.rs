//! Opening a [`SegmentLog`]: find the segments, drop what a crash left
//! half-done (superseded or purged segments, a segment whose creation never
//! became durable), check sealed segments against their index files
//! (rebuilding a missing or short one), scan the active segment whole and
//! cut a torn tail. Anything a torn write cannot explain fails the open
//! with [`StorageError::Corrupt`] naming the file and offset.

use crate::dualfile::DualFile;
use crate::error::{Result, StorageError};
use crate::format;
use crate::io::{Vfs, VfsFile};
use crate::log::{LogConfig, Meta, SegmentLog, State, SyncMode};
use crate::segment::{self, SEGMENT_HEADER_BYTES, ScanStop, Segment};
use crate::writer::LogWriter;
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

const META_FILE: &str = "meta";

/// Files of one segment id found in the directory.
#[derive(Debug, Default)]
struct Found {
    first_index: u64,
    data: bool,
    index: bool,
}

impl<V: Vfs> SegmentLog<V> {
    /// Opens (creating if needed) the log of `group` in `dir`, syncing
    /// through `writer` (one per shard, shared by all its logs).
    pub async fn open(
        vfs: V,
        dir: &Path,
        group: u64,
        cfg: LogConfig,
        writer: LogWriter<V::File>,
    ) -> Result<SegmentLog<V>> {
        if cfg.segment_bytes < 4096 || cfg.segment_bytes > u64::from(u32::MAX / 2) {
            return Err(StorageError::invalid(
                group,
                "segment_bytes must be in [4 KiB, 2 GiB)",
            ));
        }
        vfs.create_dir_all(dir)
            .await
            .map_err(|e| StorageError::io(group, "create dir", dir, 0, e))?;
        let meta_path = dir.join(META_FILE);
        let (meta_file, payload) = DualFile::open(&vfs, &meta_path, Meta::MAGIC, group).await?;
        let meta = match payload {
            None => Meta {
                first_index: 1,
                prev_term: 0,
                min_segment_id: 0,
            },
            Some(p) => Meta::decode(&p).ok_or_else(|| {
                StorageError::corrupt(group, &meta_path, 0, "meta does not decode")
            })?,
        };
        let found = list_segments(&vfs, dir, group).await?;
        let next_id = found
            .keys()
            .next_back()
            .map_or(0, |&id| id)
            .max(meta.min_segment_id)
            + 1;
        let segments = load_chain(&vfs, dir, group, &cfg, &meta, found).await?;
        let synced = match segments.back() {
            Some(seg) => settle_active(group, &cfg, seg).await?,
            None => 0,
        };
        let st = State {
            segments,
            meta,
            next_segment_id: next_id,
            pending_purge: None,
            pending_age_purge: None,
        };
        let log = SegmentLog::from_parts(group, dir, vfs, cfg, st, meta_file, writer);
        let written = log.inner.sync.written.get();
        log.inner.sync.synced.set(synced.min(written));
        log.ensure_active().await?;
        sampan_fiber::group_log!(
            info,
            group,
            "group {group}: log opened in {}: entries {}..={}, {} segment(s)",
            dir.display(),
            meta.first_index,
            log.inner.sync.written.get(),
            log.segment_count()
        );
        Ok(log)
    }

    /// Makes sure there is an active segment that ends at or after the log
    /// start (after a crash that lost entries a purge had counted on).
    async fn ensure_active(&self) -> Result<()> {
        let inner = &*self.inner;
        let (first, need) = {
            let st = inner.st.borrow();
            let first = st.meta.first_index;
            (
                first,
                st.segments
                    .back()
                    .is_none_or(|s| s.last_index() + 1 < first),
            )
        };
        if !need {
            return Ok(());
        }
        let id = inner.st.borrow().next_segment_id;
        let seg = Segment::create(
            &inner.vfs,
            &inner.dir,
            inner.group,
            id,
            first,
            inner.cfg.grow_step_bytes,
        )
        .await?;
        self.sync_dir().await?;
        let old: Vec<_> = {
            let mut st = inner.st.borrow_mut();
            st.next_segment_id = id + 1;
            *inner.sync.file.borrow_mut() = Some((seg.data.clone(), seg.path.clone()));
            let old = std::mem::take(&mut st.segments);
            st.segments.push_back(seg);
            old.into_iter().collect()
        };
        inner.sync.reset_to(first - 1);
        for seg in &old {
            seg.remove_files(&inner.vfs, inner.group).await;
        }
        Ok(())
    }
}

async fn list_segments<V: Vfs>(vfs: &V, dir: &Path, group: u64) -> Result<BTreeMap<u64, Found>> {
    let names = vfs
        .list(dir)
        .await
        .map_err(|e| StorageError::io(group, "list", dir, 0, e))?;
    let mut found: BTreeMap<u64, Found> = BTreeMap::new();
    for name in names {
        match segment::parse_name(&name) {
            Some((first_index, id, is_index)) => {
                let f = found.entry(id).or_default();
                f.first_index = first_index;
                if is_index {
                    f.index = true
                } else {
                    f.data = true
                }
            }
            None if name == META_FILE => {}
            None if name == crate::wal::WAL_META_FILE => {
                return Err(StorageError::invalid(
                    group,
                    format!(
                        "{} holds a group of the shared log (log layout \"shared\"), which a \
                         per-group log cannot open; start the node with the layout it was made with",
                        dir.display()
                    ),
                ));
            }
            None if name == crate::log::SPARE_FILE => {
                // Zeros made ready for a roll that never came.
                let _ = vfs.remove(&dir.join(&name)).await;
            }
            None => sampan_fiber::group_log!(
                warn,
                group,
                "group {group}: ignoring unknown file {name} in {}",
                dir.display()
            ),
        }
    }
    Ok(found)
}

async fn remove_pair<V: Vfs>(vfs: &V, dir: &Path, group: u64, first: u64, id: u64, why: &str) {
    let (d, i) = segment::file_names(first, id);
    sampan_fiber::group_log!(info, group, "group {group}: removing segment {d} ({why})");
    for name in [d, i] {
        let _ = vfs.remove(&dir.join(name)).await;
    }
}

/// Opens the segments that make up the log, in index order.
async fn load_chain<V: Vfs>(
    vfs: &V,
    dir: &Path,
    group: u64,
    cfg: &LogConfig,
    meta: &Meta,
    found: BTreeMap<u64, Found>,
) -> Result<VecDeque<Segment<V>>> {
    let mut opened: Vec<Segment<V>> = Vec::new();
    let mut index_good = Vec::new();
    let last_id = found
        .iter()
        .filter(|(_, f)| f.data)
        .map(|(&id, _)| id)
        .next_back();
    for (id, f) in found {
        if id < meta.min_segment_id || !f.data {
            remove_pair(vfs, dir, group, f.first_index, id, "void or without data").await;
            continue;
        }
        match Segment::open(vfs, dir, group, id, f.first_index).await? {
            Some((seg, good)) => {
                if Some(id) != last_id {
                    // Sealed: checked through its mapping, no descriptor
                    // held (so opening a long log holds one at a time).
                    seg.seal_fd(group).await;
                }
                opened.push(seg);
                index_good.push(good);
            }
            None if Some(id) == last_id => {
                remove_pair(
                    vfs,
                    dir,
                    group,
                    f.first_index,
                    id,
                    "creation never became durable",
                )
                .await;
            }
            None => {
                let (d, _) = segment::file_names(f.first_index, id);
                return Err(StorageError::corrupt(
                    group,
                    dir.join(d),
                    0,
                    "blank segment header",
                ));
            }
        }
    }
    let (mut chain, bounds) = drop_superseded(vfs, group, meta, opened, index_good).await;
    if let Some(active) = chain.back_mut()
        && Some(active.id) != last_id
    {
        // The newest segment was void and removed, so a released one is
        // active again: it keeps a descriptor for its appends.
        let data = vfs
            .open(&active.path, false)
            .await
            .map_err(|e| StorageError::io(group, "open", &active.path, 0, e))?;
        active.data = std::rc::Rc::new(data);
    }
    let n = chain.len();
    for (k, seg) in chain.iter_mut().enumerate() {
        let (next_first, good) = bounds[k];
        if k + 1 == n {
            load_active(vfs, group, cfg, seg).await?;
        } else {
            load_sealed(group, cfg, seg, next_first - 1, good).await?;
        }
    }
    if let Some(first) = chain.front()
        && first.first_index > meta.first_index
        && first.last_index() >= first.first_index
    {
        return Err(StorageError::corrupt(
            group,
            &first.path,
            0,
            format!(
                "log should start at {} but its first segment starts at {}",
                meta.first_index, first.first_index
            ),
        ));
    }
    Ok(chain)
}

/// Keeps the segments that still hold part of the log (each segment cuts
/// the older ones at its first index; purged ones are gone), removing the
/// rest. Returns them in index order, each with the first index of the next
/// one (`u64::MAX` for the last) and whether its index file header was good.
async fn drop_superseded<V: Vfs>(
    vfs: &V,
    group: u64,
    meta: &Meta,
    opened: Vec<Segment<V>>,
    index_good: Vec<bool>,
) -> (VecDeque<Segment<V>>, Vec<(u64, bool)>) {
    let mut bound = u64::MAX;
    let mut keep = vec![false; opened.len()];
    for (k, seg) in opened.iter().enumerate().rev() {
        let is_last = k + 1 == opened.len();
        keep[k] = is_last || (bound >= seg.first_index && bound >= meta.first_index);
        bound = bound.min(seg.first_index.saturating_sub(1));
    }
    let mut chain = VecDeque::new();
    let mut bounds = Vec::new();
    let mut next_first = u64::MAX;
    for (k, seg) in opened.into_iter().enumerate().rev() {
        if keep[k] {
            bounds.push((next_first, index_good[k]));
            next_first = seg.first_index;
            chain.push_front(seg);
        } else {
            seg.remove_files(vfs, group).await;
        }
    }
    bounds.reverse();
    (chain, bounds)
}

/// A sealed segment must hold every entry up to `last_needed`: checked
/// against its index file (a whole index that disagrees with the segment
/// is corruption), rebuilt from the segment when the index is missing,
/// short or has records that fail their CRC.
async fn load_sealed<V: Vfs>(
    group: u64,
    cfg: &LogConfig,
    seg: &mut Segment<V>,
    last_needed: u64,
    index_good: bool,
) -> Result<()> {
    let count = last_needed + 1 - seg.first_index;
    let max = cfg.payload_bytes_max;
    let complete = index_good && (0..count).all(|k| seg.index.get(k).is_some());
    if complete {
        // A whole, CRC-valid index of a sealed segment was synced when the
        // segment was sealed: if it disagrees with the segment, something
        // corrupted one of them, and guessing which is not ours to do.
        let first = seg.index.get(0).map_or(0, |e| u64::from(e.offset));
        let last = seg.index.get(count - 1).map_or(0, |e| u64::from(e.offset));
        let checked = seg
            .check_at(first, seg.first_index, max)
            .map_err(|e| (first, seg.first_index, e))
            .and_then(|_| {
                seg.check_at(last, last_needed, max)
                    .map_err(|e| (last, last_needed, e))
            });
        return match checked {
            Ok((len, term)) if first == SEGMENT_HEADER_BYTES => {
                seg.count = count;
                seg.write_pos = last + len;
                seg.last_term = term;
                Ok(())
            }
            Ok(_) => Err(StorageError::corrupt(
                group,
                seg.index.path(),
                0,
                format!("first record not at {SEGMENT_HEADER_BYTES}"),
            )),
            Err((offset, index, reason)) => Err(StorageError::corrupt(
                group,
                &seg.path,
                offset,
                format!(
                    "{} says entry {index} is here: {reason}",
                    seg.index.path().display()
                ),
            )),
        };
    }
    sampan_fiber::group_log!(
        warn,
        group,
        "group {group}: rebuilding index {} from its segment",
        seg.index.path().display()
    );
    let scan = seg.scan(SEGMENT_HEADER_BYTES, seg.first_index, count, max);
    if (scan.entries.len() as u64) < count {
        let (offset, reason) = match scan.stop {
            ScanStop::Bad { offset, reason } => (offset, reason),
            _ => (scan.end, "segment ends early".to_string()),
        };
        return Err(StorageError::corrupt(
            group,
            &seg.path,
            offset,
            format!(
                "sealed segment must hold up to index {last_needed}, has {} valid entries: {reason}",
                scan.entries.len()
            ),
        ));
    }
    rewrite_index(cfg, seg, &scan.entries).await?;
    seg.index.sync().await?;
    seg.count = count;
    seg.write_pos = scan.end;
    seg.last_term = scan.entries.last().map_or(0, |e| e.1);
    Ok(())
}

/// Writes the index records from the first one that differs from `entries`.
async fn rewrite_index<V: Vfs>(
    cfg: &LogConfig,
    seg: &Segment<V>,
    entries: &[(u32, u64)],
) -> Result<()> {
    let differs = entries.iter().enumerate().position(|(k, &(offset, term))| {
        seg.index.get(k as u64) != Some(crate::index::IndexEntry { offset, term })
    });
    if let Some(k) = differs {
        let bytes = seg.index.encode(k as u64, &entries[k..]);
        seg.index
            .write(k as u64, bytes, cfg.index_grow_step_bytes.max(64))
            .await?;
    }
    Ok(())
}

/// The active segment is scanned whole. Where the good records end, what
/// follows is a torn tail (cut, and zeroed so no stale record can ever
/// follow new ones) unless a later record of this segment says the bad
/// spot was durable: then it is corruption.
async fn load_active<V: Vfs>(
    vfs: &V,
    group: u64,
    cfg: &LogConfig,
    seg: &mut Segment<V>,
) -> Result<()> {
    let _ = vfs;
    let max = cfg.payload_bytes_max;
    let scan = seg.scan(SEGMENT_HEADER_BYTES, seg.first_index, u64::MAX, max);
    let next_index = seg.first_index + scan.entries.len() as u64;
    let garbage_end = last_nonzero_end(seg, scan.end);
    if garbage_end > scan.end {
        if let Some(at) = seg.durable_after(scan.end, next_index, max) {
            let reason = match &scan.stop {
                ScanStop::Bad { reason, .. } => reason.clone(),
                _ => "missing record".into(),
            };
            return Err(StorageError::corrupt(
                group,
                &seg.path,
                scan.end,
                format!(
                    "bad or missing entry {next_index} ({reason}), yet the record at {at} says it was durable"
                ),
            ));
        }
        sampan_fiber::group_log!(
            warn,
            group,
            "group {group}: {}: torn tail cut at offset {} after index {} ({} bytes zeroed)",
            seg.path.display(),
            scan.end,
            next_index - 1,
            garbage_end - scan.end
        );
        let zeros = vec![0u8; (garbage_end - scan.end) as usize];
        seg.data
            .write_at(zeros, scan.end)
            .await
            .and(seg.data.sync().await)
            .map_err(|e| StorageError::io(group, "zero torn tail", &seg.path, scan.end, e))?;
    }
    rewrite_index(cfg, seg, &scan.entries).await?;
    seg.count = scan.entries.len() as u64;
    seg.write_pos = scan.end;
    seg.last_term = scan.entries.last().map_or(0, |e| e.1);
    Ok(())
}

/// In `sync` mode, makes every entry the open found durable before the log
/// reports it so (an open counts all it finds as durable); returns the last
/// index known on disk. After a kill -9 the newest
/// entries may be only in the page cache; a sync stores them. After a
/// failed `fdatasync` in this boot, Linux may hold them in pages it marked
/// clean without writing them ("fsyncgate"), which a sync skips: so the
/// entries after the newest sync floor the segment records (the last point
/// a sync was known to succeed) are first written again, from the mapping,
/// which re-dirties those pages. That is the last batch or so in `sync`
/// mode; a failed writeback of older pages is reported by the sync itself
/// (the kernel reports a writeback error to the next `fdatasync` of a file
/// that nobody has seen it on). In `async` mode, where durable means the
/// page cache, nothing is written: the floor is what is known on disk.
async fn settle_active<V: Vfs>(group: u64, cfg: &LogConfig, seg: &Segment<V>) -> Result<u64> {
    if seg.count == 0 {
        return Ok(seg.first_index - 1);
    }
    let io = |op, offset, e| StorageError::io(group, op, &seg.path, offset, e);
    let last = seg
        .entry(seg.last_index())
        .map(|e| u64::from(e.offset))
        .ok_or_else(|| {
            StorageError::corrupt(
                group,
                seg.index.path(),
                0,
                "index just rebuilt is unreadable",
            )
        })?;
    let head = seg
        .data
        .read(last, format::HEADER_BYTES)
        .map_err(|e| io("read", last, e))?;
    let floor = format::decode_header_only(&head, 0, cfg.payload_bytes_max)
        .map_err(|e| StorageError::corrupt(group, &seg.path, last, e.to_string()))?
        .sync_floor;
    let from = (floor + 1).max(seg.first_index);
    if cfg.sync_mode == SyncMode::Async {
        return Ok(from - 1);
    }
    if let Some(entry) = seg.entry(from) {
        let offset = u64::from(entry.offset);
        let bytes = seg
            .data
            .read(offset, (seg.write_pos - offset) as usize)
            .map_err(|e| io("read", offset, e))?;
        seg.data
            .write_at(bytes.to_vec(), offset)
            .await
            .map_err(|e| io("rewrite unsynced tail", offset, e))?;
    }
    seg.data.sync().await.map_err(|e| io("sync", 0, e))?;
    Ok(seg.last_index())
}

/// The end of the last non-zero byte of the segment at or after `from`
/// (`from` when there is none).
fn last_nonzero_end<V: Vfs>(seg: &Segment<V>, from: u64) -> u64 {
    const STEP: u64 = 64 << 10;
    let mut end = seg.data.len();
    while end > from {
        let start = end.saturating_sub(STEP).max(from);
        let Ok(b) = seg.data.read(start, (end - start) as usize) else {
            return end;
        };
        if let Some(p) = b.iter().rposition(|&x| x != 0) {
            return start + p as u64 + 1;
        }
        end = start;
    }
    from
}
