//! A segment: one file of records, named by its first index and id, with a
//! small header, and its index file beside it.
//!
//! ```text
//! header (64 bytes): u32 magic | u16 version | u16 reserved | u64 segment id
//!                    | u64 first index | u64 created (Unix ms, 0: unknown)
//!                    | 28 reserved | u32 CRC32C of 0..60
//! then records (see crate::format), each 8-byte aligned; zeros after.
//! ```
//!
//! The creation time bounds the age of the segment before it: a segment is
//! created only after its predecessor's last entry was written, so every
//! entry of a segment is older than its successor's creation. That is what
//! a purge by age (log retention) goes by.
//!
//! Segment ids grow with every segment a log creates. A segment holds the
//! entries `first_index..` and, by its existence, cuts any older segment
//! (smaller id) at `first_index - 1`: that is how a tail truncation becomes
//! durable in one step (see [`crate::log`]).
//!
//! Only the active segment keeps its data file's descriptor: a sealed one
//! is released (`Segment::seal_fd`) and read through its mapping, and an
//! index file never keeps one (see [`crate::index`]).

use crate::error::{Result, StorageError};
use crate::format::{self, HEADER_BYTES};
use crate::index::{IndexEntry, IndexFile};
use crate::io::{Vfs, VfsFile};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes of the segment header; records start here.
pub const SEGMENT_HEADER_BYTES: u64 = 64;
const MAGIC: u32 = 0x4753_5053; // "SPSG"
const VERSION: u16 = 1;
/// Where the creation time sits in the header.
const OFF_CREATED: usize = 24;

/// Milliseconds since the Unix epoch (0 for a clock before it).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The file names of a segment (data, index).
pub fn file_names(first_index: u64, id: u64) -> (String, String) {
    let stem = format!("{first_index:020}-{id:016}");
    (format!("{stem}.seg"), format!("{stem}.idx"))
}

/// Parses a segment or index file name: (first index, id, is index).
pub fn parse_name(name: &str) -> Option<(u64, u64, bool)> {
    let (stem, is_index) = match name.rsplit_once('.')? {
        (s, "seg") => (s, false),
        (s, "idx") => (s, true),
        _ => return None,
    };
    let (first, id) = stem.split_once('-')?;
    if first.len() != 20 || id.len() != 16 {
        return None;
    }
    Some((first.parse().ok()?, id.parse().ok()?, is_index))
}

fn header(id: u64, first_index: u64, created_ms: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(SEGMENT_HEADER_BYTES as usize);
    b.extend_from_slice(&MAGIC.to_le_bytes());
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&id.to_le_bytes());
    b.extend_from_slice(&first_index.to_le_bytes());
    b.extend_from_slice(&created_ms.to_le_bytes());
    b.resize(60, 0);
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Closes `file`'s descriptor and holds none from now on (see
/// [`VfsFile::release`]). A close that fails is logged, not returned: the
/// file was synced before (or is being removed), and a close reports
/// nothing a sync did not.
pub(crate) async fn release_fd<F: VfsFile>(group: u64, file: &F, path: &Path) {
    if let Err(e) = file.release().await {
        sampan_fiber::group_log!(
            warn,
            group,
            "group {group}: closing {}: {e}",
            path.display()
        );
    }
}

/// Why a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// It found the count it was asked for.
    Limit,
    /// Zeros or the end of the file: a clean end.
    End,
    /// A record that does not validate at this offset.
    Bad {
        /// Where.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// What a scan of a segment found.
#[derive(Debug)]
pub struct Scan {
    /// (offset, term) of every good record, in order.
    pub entries: Vec<(u32, u64)>,
    /// End of the last good record.
    pub end: u64,
    /// Why it stopped.
    pub stop: ScanStop,
}

/// One segment of a log.
#[derive(Debug)]
pub struct Segment<V: Vfs> {
    /// Segment id (unique, growing, per log).
    pub id: u64,
    /// Index of its first entry.
    pub first_index: u64,
    /// The data file's path.
    pub path: PathBuf,
    /// The data file (shared with the group-commit writer).
    pub data: Rc<V::File>,
    /// Its index file (shared with in-flight writes).
    pub index: Rc<IndexFile<V>>,
    /// Entries of the log held here.
    pub count: u64,
    /// End of the last record.
    pub write_pos: u64,
    /// Term of the last entry (0 when empty).
    pub last_term: u64,
    /// When the segment was created (Unix ms; 0 when unknown).
    pub created_ms: u64,
    /// End of the space known written with zeros and synced (see
    /// the `prepare` module); appends below it pay no extent conversion.
    pub(crate) zeroed_end: u64,
    /// End of the last append write issued (in flight or done): zeroing
    /// never starts before it.
    pub(crate) writing_end: u64,
    /// Index records of the newest entries not yet written to the index
    /// file (offset, term): the last `pending.len()` of `count`. Written
    /// in batches of [`INDEX_BATCH_RECORDS`], so a small append costs one
    /// write, not two.
    pub pending: Vec<(u32, u64)>,
}

/// Index records kept in memory before they are written (4 KiB of them).
pub const INDEX_BATCH_RECORDS: usize = 256;

impl<V: Vfs> Segment<V> {
    /// A segment with its header written and no entry counted yet (entries
    /// of an opened one are found by the scan that follows).
    fn empty(
        id: u64,
        first_index: u64,
        created_ms: u64,
        path: PathBuf,
        data: V::File,
        index: IndexFile<V>,
    ) -> Segment<V> {
        Segment {
            id,
            first_index,
            created_ms,
            zeroed_end: SEGMENT_HEADER_BYTES,
            writing_end: SEGMENT_HEADER_BYTES,
            path,
            data: Rc::new(data),
            index: Rc::new(index),
            count: 0,
            write_pos: SEGMENT_HEADER_BYTES,
            last_term: 0,
            pending: Vec::new(),
        }
    }

    /// Creates a new, empty segment with `alloc_bytes` of space; durable on
    /// return except for its name (the caller syncs the directory).
    pub async fn create(
        vfs: &V,
        dir: &Path,
        group: u64,
        id: u64,
        first_index: u64,
        alloc_bytes: u64,
    ) -> Result<Segment<V>> {
        let (data_name, index_name) = file_names(first_index, id);
        let path = dir.join(data_name);
        let io = |op, e| StorageError::io(group, op, &path, 0, e);
        let data = vfs.open(&path, true).await.map_err(|e| io("create", e))?;
        data.allocate(alloc_bytes.max(SEGMENT_HEADER_BYTES))
            .await
            .map_err(|e| io("allocate", e))?;
        let created_ms = unix_ms(SystemTime::now());
        data.write_at(header(id, first_index, created_ms), 0)
            .await
            .map_err(|e| io("write header", e))?;
        data.sync().await.map_err(|e| io("sync", e))?;
        let (index, _) =
            IndexFile::open(vfs, &dir.join(index_name), group, id, first_index).await?;
        Ok(Segment::empty(
            id,
            first_index,
            created_ms,
            path,
            data,
            index,
        ))
    }

    /// Turns the spare file (allocated, zero-filled, synced, closed) into
    /// a new, empty segment: renamed, opened under its new name, then given
    /// its header; durable on return except for its name (the caller syncs
    /// the directory).
    pub(crate) async fn from_spare(
        vfs: &V,
        dir: &Path,
        spare: &Path,
        group: u64,
        id: u64,
        first_index: u64,
    ) -> Result<Segment<V>> {
        let (data_name, index_name) = file_names(first_index, id);
        let path = dir.join(data_name);
        let io = |op, e| StorageError::io(group, op, &path, 0, e);
        vfs.rename(spare, &path)
            .await
            .map_err(|e| io("rename spare", e))?;
        let data = vfs.open(&path, false).await.map_err(|e| io("open", e))?;
        let created_ms = unix_ms(SystemTime::now());
        data.write_at(header(id, first_index, created_ms), 0)
            .await
            .map_err(|e| io("write header", e))?;
        data.sync().await.map_err(|e| io("sync", e))?;
        let zeroed_end = data.len();
        let (index, _) =
            IndexFile::open(vfs, &dir.join(index_name), group, id, first_index).await?;
        let mut seg = Segment::empty(id, first_index, created_ms, path, data, index);
        seg.zeroed_end = zeroed_end;
        Ok(seg)
    }

    /// Opens an existing segment. `Ok(None)` when its header is blank or
    /// cut short (a segment whose creation never became durable).
    pub async fn open(
        vfs: &V,
        dir: &Path,
        group: u64,
        id: u64,
        first_index: u64,
    ) -> Result<Option<(Segment<V>, bool)>> {
        let (data_name, index_name) = file_names(first_index, id);
        let path = dir.join(data_name);
        let data = vfs
            .open(&path, false)
            .await
            .map_err(|e| StorageError::io(group, "open", &path, 0, e))?;
        let got = if data.len() >= SEGMENT_HEADER_BYTES {
            data.read(0, SEGMENT_HEADER_BYTES as usize)
                .map_err(|e| StorageError::io(group, "read", &path, 0, e))?
        } else {
            bytes::Bytes::new()
        };
        let created_ms = got
            .get(OFF_CREATED..OFF_CREATED + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes);
        if got[..] != header(id, first_index, created_ms)[..] {
            let _ = data.release().await; // closed now, not when dropped
            if got.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            return Err(StorageError::corrupt(group, &path, 0, "bad segment header"));
        }
        let (index, index_good) =
            IndexFile::open(vfs, &dir.join(index_name), group, id, first_index).await?;
        let seg = Segment::empty(id, first_index, created_ms, path, data, index);
        Ok(Some((seg, index_good)))
    }

    /// Closes the data file's descriptor and holds none from now on: for a
    /// sealed segment (read through its mapping; a later sync opens it for
    /// that call) or one about to be dropped. A close that fails is logged:
    /// the segment was synced before it was sealed.
    pub(crate) async fn seal_fd(&self, group: u64) {
        release_fd(group, &*self.data, &self.path).await;
    }

    /// The last index held (`first_index - 1` when empty).
    pub fn last_index(&self) -> u64 {
        self.first_index + self.count - 1
    }

    /// Entries whose index records are in the index file.
    pub fn flushed(&self) -> u64 {
        self.count - self.pending.len() as u64
    }

    /// Drops entries past `count` (a tail truncation), with their pending
    /// index records.
    pub fn cut_to(&mut self, count: u64) {
        let flushed = self.flushed();
        self.pending
            .truncate(count.saturating_sub(flushed) as usize);
        self.count = count;
    }

    /// Index record of `index`, if held and valid.
    pub fn entry(&self, index: u64) -> Option<IndexEntry> {
        if index < self.first_index || index > self.last_index() {
            return None;
        }
        let k = index - self.first_index;
        let flushed = self.flushed();
        if k >= flushed {
            let (offset, term) = *self.pending.get((k - flushed) as usize)?;
            return Some(IndexEntry { offset, term });
        }
        self.index.get(k)
    }

    /// Validates records from `offset` (holding `index` on), at most
    /// `limit` of them. Records must carry this segment's id.
    pub fn scan(&self, mut offset: u64, mut index: u64, limit: u64, payload_max: u32) -> Scan {
        let len = self.data.len();
        let mut entries = Vec::new();
        let stop = loop {
            if entries.len() as u64 >= limit {
                break ScanStop::Limit;
            }
            if offset + HEADER_BYTES as u64 > len {
                break ScanStop::End;
            }
            match self.check_at(offset, index, payload_max) {
                Ok((rec_len, term)) => {
                    entries.push((offset as u32, term));
                    offset += rec_len;
                    index += 1;
                }
                Err(reason) => {
                    let head = self.data.read(offset, HEADER_BYTES);
                    if head.is_ok_and(|h| format::is_zero_header(&h)) {
                        break ScanStop::End;
                    }
                    break ScanStop::Bad { offset, reason };
                }
            }
        };
        Scan {
            entries,
            end: offset,
            stop,
        }
    }

    /// Checks the record at `offset` is entry `index` of this segment;
    /// returns its length and term.
    pub fn check_at(
        &self,
        offset: u64,
        index: u64,
        payload_max: u32,
    ) -> std::result::Result<(u64, u64), String> {
        let len = self.data.len();
        let head = self
            .data
            .read(offset, HEADER_BYTES)
            .map_err(|e| e.to_string())?;
        let h = format::decode_header_only(&head, 0, payload_max).map_err(|e| e.to_string())?;
        let rec_len = h.record_len() as u64;
        if offset + rec_len > len {
            return Err(format!("record of {rec_len} bytes runs past the file end"));
        }
        let rec = self
            .data
            .read(offset, rec_len as usize)
            .map_err(|e| e.to_string())?;
        let h = format::check_record(&rec, 0, payload_max).map_err(|e| e.to_string())?;
        if h.segment_id != self.id || h.index != index {
            return Err(format!(
                "record of segment {} index {} where segment {} index {index} belongs",
                h.segment_id, h.index, self.id
            ));
        }
        Ok((rec_len, h.term))
    }

    /// Whether a valid record of this segment at or after `from` claims
    /// that `index` was durable (its sync floor is at least `index`): then a
    /// bad record at `index` is corruption, not a torn tail.
    pub fn durable_after(&self, from: u64, index: u64, payload_max: u32) -> Option<u64> {
        let len = self.data.len();
        let bytes = self.data.read(0, len as usize).ok()?;
        let mut off = from.next_multiple_of(format::RECORD_ALIGN as u64) as usize;
        let id = self.id.to_le_bytes();
        while off + HEADER_BYTES <= bytes.len() {
            let h = &bytes[off..off + HEADER_BYTES];
            if h[0] == format::RECORD_VERSION
                && h[24..32] == id
                && let Ok(hdr) = format::check_record(&bytes, off, payload_max)
                && hdr.sync_floor >= index
            {
                return Some(off as u64);
            }
            off += format::RECORD_ALIGN;
        }
        None
    }
}
