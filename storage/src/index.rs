//! The index file beside each segment: a header, then one fixed-width
//! record per entry, in index order, mapping the entry to its offset in the
//! segment and its term. Read through the file layer's mapping, so a long
//! log costs no memory per entry.
//!
//! ```text
//! header (64 bytes): u32 magic | u16 version | u16 reserved | u64 segment id
//!                    | u64 first index | 36 reserved | u32 CRC32C of 0..60
//! record k (16 bytes, at 64 + 16k): u32 offset | u32 CRC32C | u64 term
//!   the CRC covers (segment id, first index + k, offset, term), so a record
//!   of another segment or position never validates.
//! ```
//!
//! The index of the active segment is written with each append but synced
//! only when the segment is sealed: recovery rebuilds it from the segment.
//!
//! An index file holds no descriptor between calls (it is released as soon
//! as it is opened, see [`crate::io`]): reads go through its mapping, and a
//! write (a batch of records, every [`crate::segment::INDEX_BATCH_RECORDS`]
//! entries), a grow or a sync opens it for that call only.

use crate::error::{Result, StorageError};
use crate::io::{Vfs, VfsFile};
use std::path::{Path, PathBuf};

/// Bytes of the index file header.
pub const INDEX_HEADER_BYTES: u64 = 64;
/// Bytes of one index record.
pub const INDEX_RECORD_BYTES: u64 = 16;
const MAGIC: u32 = 0x5849_5053; // "SPIX"
const VERSION: u16 = 1;

/// One decoded index record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Offset of the record in the segment.
    pub offset: u32,
    /// The entry's term.
    pub term: u64,
}

/// The index file of one segment.
#[derive(Debug)]
pub struct IndexFile<V: Vfs> {
    file: V::File,
    path: PathBuf,
    group: u64,
    segment_id: u64,
    first_index: u64,
}

fn record_crc(segment_id: u64, index: u64, offset: u32, term: u64) -> u32 {
    let mut b = [0u8; 28];
    b[..8].copy_from_slice(&segment_id.to_le_bytes());
    b[8..16].copy_from_slice(&index.to_le_bytes());
    b[16..20].copy_from_slice(&offset.to_le_bytes());
    b[20..28].copy_from_slice(&term.to_le_bytes());
    crc32c::crc32c(&b)
}

fn header(segment_id: u64, first_index: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(INDEX_HEADER_BYTES as usize);
    b.extend_from_slice(&MAGIC.to_le_bytes());
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&segment_id.to_le_bytes());
    b.extend_from_slice(&first_index.to_le_bytes());
    b.resize(60, 0);
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

impl<V: Vfs> IndexFile<V> {
    /// Opens the index file at `path` (creating it); a header that does not
    /// match is rewritten (the caller then rebuilds the records).
    /// Returns the file and whether its header was already good.
    pub async fn open(
        vfs: &V,
        path: &Path,
        group: u64,
        segment_id: u64,
        first_index: u64,
    ) -> Result<(IndexFile<V>, bool)> {
        let file = vfs
            .open(path, true)
            .await
            .map_err(|e| StorageError::io(group, "open", path, 0, e))?;
        let idx: IndexFile<V> = IndexFile {
            file,
            path: path.to_path_buf(),
            group,
            segment_id,
            first_index,
        };
        let want = header(segment_id, first_index);
        let good = VfsFile::len(&idx.file) >= INDEX_HEADER_BYTES
            && idx
                .file
                .read(0, want.len())
                .is_ok_and(|b: bytes::Bytes| b[..] == want[..]);
        if !good {
            idx.file
                .write_at(want, 0)
                .await
                .map_err(|e| StorageError::io(group, "write", path, 0, e))?;
        }
        idx.file
            .release()
            .await
            .map_err(|e| StorageError::io(group, "close", path, 0, e))?;
        Ok((idx, good))
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record `k` (the entry `first_index + k`) if present and valid.
    pub fn get(&self, k: u64) -> Option<IndexEntry> {
        let off = INDEX_HEADER_BYTES + k * INDEX_RECORD_BYTES;
        if off + INDEX_RECORD_BYTES > self.file.len() {
            return None;
        }
        let b = self.file.read(off, INDEX_RECORD_BYTES as usize).ok()?;
        let offset = u32::from_le_bytes(b[0..4].try_into().ok()?);
        let crc = u32::from_le_bytes(b[4..8].try_into().ok()?);
        let term = u64::from_le_bytes(b[8..16].try_into().ok()?);
        (crc == record_crc(self.segment_id, self.first_index + k, offset, term))
            .then_some(IndexEntry { offset, term })
    }

    /// Encodes records `k, k+1, ...` for `entries` (offset, term).
    pub fn encode(&self, k: u64, entries: &[(u32, u64)]) -> Vec<u8> {
        let mut b = Vec::with_capacity(entries.len() * INDEX_RECORD_BYTES as usize);
        for (j, &(offset, term)) in entries.iter().enumerate() {
            let index = self.first_index + k + j as u64;
            b.extend_from_slice(&offset.to_le_bytes());
            b.extend_from_slice(&record_crc(self.segment_id, index, offset, term).to_le_bytes());
            b.extend_from_slice(&term.to_le_bytes());
        }
        b
    }

    /// Writes encoded records starting at record `k` (not synced), growing
    /// the file by `step_bytes` at a time.
    pub async fn write(&self, k: u64, encoded: Vec<u8>, step_bytes: u64) -> Result<()> {
        let off = INDEX_HEADER_BYTES + k * INDEX_RECORD_BYTES;
        let end = off + encoded.len() as u64;
        if end > self.file.len() {
            let len = end.div_ceil(step_bytes) * step_bytes;
            self.file
                .allocate(len)
                .await
                .map_err(|e| StorageError::io(self.group, "allocate", &self.path, off, e))?;
        }
        self.file
            .write_at(encoded, off)
            .await
            .map_err(|e| StorageError::io(self.group, "write", &self.path, off, e))
    }

    /// Makes the index durable.
    pub async fn sync(&self) -> Result<()> {
        self.file
            .sync()
            .await
            .map_err(|e| StorageError::io(self.group, "sync", &self.path, 0, e))
    }
}
