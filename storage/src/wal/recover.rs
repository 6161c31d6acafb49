//! Opening a shared log: read every chunk in order, cut a torn tail, tell
//! it from corruption, and rebuild what each group holds. See the module
//! docs of [`super`] for the rules.

use super::chunk::{self, CHUNK_HEADER_BYTES, ChunkHeader, Found, Kind, SEGMENT_HEADER_BYTES, lsn};
use super::{
    GroupState, Loc, Seg, WAL_GROUP, WalConfig, create_segment, parse_segment_name,
    parse_spare_name, random_u64,
};
use crate::dualfile::DualFile;
use crate::error::{Result, StorageError};
use crate::format;
use crate::io::{Vfs, VfsFile};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The file that counts the opens of a shared log.
const EPOCH_FILE: &str = "epoch";

/// What recovery found.
pub(super) struct Recovered<F> {
    pub(super) segs: BTreeMap<u64, Rc<Seg<F>>>,
    /// Write offset in the last segment.
    pub(super) pos: u64,
    pub(super) log_id: u64,
    /// The epoch this open writes with.
    pub(super) epoch: u32,
    pub(super) groups: HashMap<u64, GroupState>,
    /// Spare files (retired segments to recycle) found.
    pub(super) spares: Vec<PathBuf>,
    /// The highest spare number in use.
    pub(super) spare_seq: u64,
}

/// A group's entries while the chunks are replayed.
struct Replay {
    incarnation: u64,
    /// Incarnations seen before this one: their chunks are dead.
    older: Vec<u64>,
    entries: BTreeMap<u64, Loc>,
}

pub(super) async fn recover<V: Vfs>(
    vfs: &V,
    dir: &Path,
    cfg: &WalConfig,
) -> Result<Recovered<V::File>> {
    let io = |op, path: &Path, off, e| StorageError::io(WAL_GROUP, op, path, off, e);
    vfs.create_dir_all(dir)
        .await
        .map_err(|e| io("create dir", dir, 0, e))?;
    let names = vfs.list(dir).await.map_err(|e| io("list", dir, 0, e))?;
    let mut ids: Vec<u64> = Vec::new();
    let (mut spares, mut spare_seq) = (Vec::new(), 0);
    for name in &names {
        if let Some(id) = parse_segment_name(name) {
            ids.push(id);
        } else if let Some(n) = parse_spare_name(name) {
            // Retired: its content is dead, whatever it holds.
            spares.push((n, dir.join(name)));
            spare_seq = spare_seq.max(n);
        } else if name != EPOCH_FILE {
            log::warn!("shared log {}: ignoring unknown file {name}", dir.display());
        }
    }
    ids.sort_unstable();
    spares.sort_unstable();
    // More spares than now wanted (the setting was lowered): delete the
    // oldest.
    let extra = spares.len().saturating_sub(cfg.recycled_segments_max);
    for (_, path) in spares.drain(..extra) {
        vfs.remove(&path)
            .await
            .map_err(|e| io("remove", &path, 0, e))?;
    }
    let spares: Vec<PathBuf> = spares.into_iter().map(|(_, p)| p).collect();
    let mut segs: BTreeMap<u64, Rc<Seg<V::File>>> = BTreeMap::new();
    let mut log_id = None;
    for (i, &id) in ids.iter().enumerate() {
        let path = dir.join(super::segment_name(id));
        let file = vfs
            .open(&path, false)
            .await
            .map_err(|e| io("open", &path, 0, e))?;
        let head = if file.len() >= SEGMENT_HEADER_BYTES {
            file.read(0, SEGMENT_HEADER_BYTES as usize)
                .map_err(|e| io("read", &path, 0, e))?
        } else {
            bytes::Bytes::new()
        };
        let header = match chunk::decode_segment_header(&head) {
            Ok(Some(h)) => h,
            Ok(None) | Err(_) if i + 1 == ids.len() => {
                // The last segment's making was cut short (its header is
                // synced before any chunk goes in): nothing in it counts.
                drop(file);
                log::warn!(
                    "shared log {}: removing segment {id}, whose making was cut short",
                    dir.display()
                );
                vfs.remove(&path)
                    .await
                    .map_err(|e| io("remove", &path, 0, e))?;
                vfs.sync_dir(dir)
                    .await
                    .map_err(|e| io("sync dir", dir, 0, e))?;
                continue;
            }
            Ok(None) => {
                return Err(StorageError::corrupt(
                    WAL_GROUP,
                    &path,
                    0,
                    "blank segment header",
                ));
            }
            Err(why) => return Err(StorageError::corrupt(WAL_GROUP, &path, 0, why)),
        };
        if header.segment_id != id || *log_id.get_or_insert(header.log_id) != header.log_id {
            return Err(StorageError::corrupt(
                WAL_GROUP,
                &path,
                0,
                format!(
                    "segment header says segment {} of log {:#x}: not this log's segment {id}",
                    header.segment_id, header.log_id
                ),
            ));
        }
        segs.insert(
            id,
            Rc::new(Seg {
                id,
                path,
                file,
                version: header.version,
                recycled: header.recycled,
            }),
        );
    }
    let log_id = log_id.unwrap_or_else(random_u64);
    if segs.is_empty() {
        let path = dir.join(super::segment_name(1));
        let epoch = next_epoch(vfs, dir, 0).await?;
        let seg = create_segment(vfs, &path, 1, log_id, cfg.segment_bytes).await?;
        segs.insert(1, Rc::new(seg));
        return Ok(Recovered {
            segs,
            pos: SEGMENT_HEADER_BYTES,
            log_id,
            epoch,
            groups: HashMap::new(),
            spares,
            spare_seq,
        });
    }

    let mut replays: HashMap<u64, Replay> = HashMap::new();
    let mut epoch = 0u32;
    let mut end = (0, SEGMENT_HEADER_BYTES);
    let list: Vec<Rc<Seg<V::File>>> = segs.values().cloned().collect();
    for (i, seg) in list.iter().enumerate() {
        let (stop, why) = scan(seg, cfg, &mut epoch, |h, body_off, body| {
            replay(&mut replays, seg.id, h, body_off, body);
            true
        })?;
        end = (seg.id, stop);
        // A segment is synced whole before the next one takes a chunk, so
        // one followed by a written segment is complete: damage in it is
        // corruption, and its zeros are its clean end.
        // Its first chunk tells: a later one is never durable without it.
        let next_written = match list.get(i + 1) {
            Some(next) => {
                let mut e = epoch;
                let mut found = false;
                scan(next, cfg, &mut e, |_, _, _| {
                    found = true;
                    false
                })?;
                found
            }
            None => false,
        };
        match (why, next_written) {
            (Some(why), true) => {
                return Err(StorageError::corrupt(
                    WAL_GROUP,
                    &seg.path,
                    stop,
                    format!(
                        "{why}, yet the next segment holds chunks (a segment is synced whole \
                         before the next is written)"
                    ),
                ));
            }
            (None, true) => continue,
            (Some(why), false) => {
                if let Some(at) = durable_chunk_after(seg, stop, epoch)? {
                    return Err(StorageError::corrupt(
                        WAL_GROUP,
                        &seg.path,
                        stop,
                        format!(
                            "{why}, yet the chunk at offset {at} was written after this one \
                             was durable"
                        ),
                    ));
                }
                if seg.recycled {
                    // Expected at every reopen: the file's earlier life
                    // follows the last chunk (or a write was cut short:
                    // the two look alike, and neither was reported durable).
                    log::info!(
                        "shared log {}: segment {} (a recycled file) ends at offset {stop} \
                         ({why}: its earlier life's bytes, or a write cut short)",
                        dir.display(),
                        seg.id
                    );
                } else {
                    log::warn!(
                        "shared log {}: segment {} offset {stop}: {why}; cutting the tail there",
                        dir.display(),
                        seg.id
                    );
                }
                break;
            }
            (None, false) => break,
        }
    }
    // Drop the segments past the cut, or past the last one written.
    let after: Vec<u64> = segs.range(end.0 + 1..).map(|(id, _)| *id).collect();
    for id in after {
        let seg = segs.remove(&id).expect("listed");
        log::warn!(
            "shared log {}: removing segment {id}, past the end of the log",
            dir.display()
        );
        vfs.remove(&seg.path)
            .await
            .map_err(|e| io("remove", &seg.path, 0, e))?;
        vfs.sync_dir(dir)
            .await
            .map_err(|e| io("sync dir", dir, 0, e))?;
    }
    // What the page cache held is durable before anything new is written
    // after it (a process crash leaves writes unsynced but readable).
    for seg in segs.values() {
        seg.file
            .sync()
            .await
            .map_err(|e| io("fdatasync", &seg.path, 0, e))?;
    }
    let groups = replays
        .into_iter()
        .filter_map(|(group, r)| Some((group, into_state(group, r)?)))
        .collect();
    Ok(Recovered {
        segs,
        pos: end.1,
        log_id,
        epoch: next_epoch(vfs, dir, epoch).await?,
        groups,
        spares,
        spare_seq,
    })
}

/// The epoch of this open: one past every earlier open's (kept durably in
/// the `epoch` file, since an earlier open's chunks may all be gone) and
/// past `seen`, the newest epoch found in a chunk. Saved before anything
/// is written with it.
async fn next_epoch<V: Vfs>(vfs: &V, dir: &Path, seen: u32) -> Result<u32> {
    const MAGIC: u32 = 0x4850_4557; // "WEPH"
    let path = dir.join(EPOCH_FILE);
    let (mut file, payload) = DualFile::open(vfs, &path, MAGIC, WAL_GROUP).await?;
    let stored = match payload {
        Some(p) => u32::from_le_bytes(p.as_slice().try_into().map_err(|_| {
            StorageError::corrupt(WAL_GROUP, &path, 0, "epoch record of unknown shape")
        })?),
        None => 0,
    };
    let epoch = stored
        .max(seen)
        .checked_add(1)
        .ok_or_else(|| StorageError::corrupt(WAL_GROUP, &path, 0, "epoch counter exhausted"))?;
    file.write(&epoch.to_le_bytes()).await?;
    Ok(epoch)
}

/// Reads the chunks of `seg` in order, handing each valid one to `each`
/// (header, body offset, body), which says whether to go on. Returns where
/// the chunks end (or `each` stopped) and, if they end at a chunk that
/// does not check out, why.
fn scan<F: VfsFile>(
    seg: &Seg<F>,
    cfg: &WalConfig,
    epoch: &mut u32,
    mut each: impl FnMut(&ChunkHeader, u64, bytes::Bytes) -> bool,
) -> Result<(u64, Option<String>)> {
    let len = seg.file.len();
    let read = |off: u64, n: usize| {
        seg.file
            .read(off, n)
            .map_err(|e| StorageError::io(WAL_GROUP, "read", &seg.path, off, e))
    };
    let mut off = SEGMENT_HEADER_BYTES;
    loop {
        if off + CHUNK_HEADER_BYTES as u64 > len {
            return Ok((off, None));
        }
        let h = match chunk::decode_chunk_header(&read(off, CHUNK_HEADER_BYTES)?) {
            Found::End => return Ok((off, None)),
            Found::Bad(why) => return Ok((off, Some(why))),
            Found::Chunk(h) => h,
        };
        if h.epoch < *epoch || !chunk::belongs(&h, seg.id, seg.version) {
            // Left behind a cut by an earlier life of the log, or by the
            // earlier life of a recycled file.
            return Ok((off, None));
        }
        if off + h.chunk_len() > len {
            return Ok((off, Some("chunk runs past the end of the segment".into())));
        }
        let body_off = off + CHUNK_HEADER_BYTES as u64;
        let body = read(body_off, h.body_len as usize)?;
        let valid = match h.kind {
            Kind::Entries | Kind::Rewrite => {
                format::parse_run(body.clone(), Some(h.arg), cfg.payload_bytes_max)
                    .map(|_| ())
                    .map_err(|e| format!("bad entry in chunk: {e}"))
            }
            Kind::Truncate if h.body_len == 0 => Ok(()),
            Kind::Truncate => Err("truncate chunk with a body".into()),
        };
        if let Err(why) = valid {
            return Ok((off, Some(why)));
        }
        *epoch = h.epoch;
        off += h.chunk_len();
        if !each(&h, body_off, body) {
            return Ok((off, None));
        }
    }
}

/// Past a bad chunk at `bad`, the offset of a valid chunk header (at any
/// 8-byte step) whose sync floor says the bad one had been made durable:
/// proof of corruption rather than a torn tail.
fn durable_chunk_after<F: VfsFile>(seg: &Seg<F>, bad: u64, epoch: u32) -> Result<Option<u64>> {
    let len = seg.file.len();
    if bad + CHUNK_HEADER_BYTES as u64 > len {
        return Ok(None);
    }
    let rest = seg
        .file
        .read(bad, (len - bad) as usize)
        .map_err(|e| StorageError::io(WAL_GROUP, "read", &seg.path, bad, e))?;
    let bad_lsn = lsn(seg.id, bad);
    let mut at = 8;
    while at + CHUNK_HEADER_BYTES <= rest.len() {
        if let Found::Chunk(h) = chunk::decode_chunk_header(&rest[at..])
            && h.epoch >= epoch
            && chunk::belongs(&h, seg.id, seg.version)
            && h.sync_floor > bad_lsn
        {
            return Ok(Some(bad + at as u64));
        }
        at += 8;
    }
    Ok(None)
}

/// Applies one valid chunk to its group's replay.
fn replay(
    replays: &mut HashMap<u64, Replay>,
    seg: u64,
    h: &ChunkHeader,
    body_off: u64,
    body: bytes::Bytes,
) {
    let r = replays.entry(h.group).or_insert_with(|| Replay {
        incarnation: h.incarnation,
        older: Vec::new(),
        entries: BTreeMap::new(),
    });
    if r.incarnation != h.incarnation {
        if r.older.contains(&h.incarnation) {
            return; // a late copy from an incarnation already replaced
        }
        let old = std::mem::replace(&mut r.incarnation, h.incarnation);
        r.older.push(old);
        r.entries.clear();
    }
    match h.kind {
        Kind::Truncate => {
            r.entries.split_off(&(h.arg + 1));
        }
        Kind::Entries | Kind::Rewrite => {
            if h.kind == Kind::Entries {
                r.entries.split_off(&h.arg);
            }
            let run = format::parse_run(body, Some(h.arg), u32::MAX).expect("checked by scan");
            let mut off = body_off;
            for rec in run.iter() {
                let len = rec.bytes.len() as u64;
                r.entries.insert(
                    rec.header.index,
                    Loc {
                        seg,
                        off: off as u32,
                        len: len as u32,
                        term: rec.header.term,
                    },
                );
                off += len;
            }
        }
    }
}

/// A dormant group from its replay: the run of entries that ends at its
/// last one without a gap (anything before a gap lies below its purge
/// point, which its open checks).
fn into_state(group: u64, r: Replay) -> Option<GroupState> {
    let (&last, _) = r.entries.last_key_value()?;
    let mut first = last;
    while first > 1 && r.entries.contains_key(&(first - 1)) {
        first -= 1;
    }
    let mut st = GroupState::new(group, r.incarnation, first, 0);
    for (_, loc) in r.entries.range(first..) {
        st.push(*loc);
    }
    st.written = last;
    st.durable = last;
    st.unverified = true;
    Some(st)
}
