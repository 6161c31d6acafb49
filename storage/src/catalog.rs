//! A node's catalog: which groups were added and removed at runtime, kept
//! across restarts. The engine records a group's config before it starts a
//! group an operator added, and a removal before it deletes the group's
//! files; a restarted node starts the groups its config file names, minus
//! the removed ones, plus the added ones.
//!
//! The catalog is a map from group id to an [`Entry`]: the config an
//! operator added (opaque bytes to this crate) or a mark that the group was
//! removed. It is kept as a journal of changes in one file, each change a
//! record in the log's own format ([`format`](mod@crate::format): version,
//! CRC32C of header and payload), numbered from 1:
//!
//! ```text
//! record field   catalog meaning
//! index          sequence number of the change (1, 2, ...)
//! term           group id
//! kind           1 added (payload: config), 2 removed, 3 cleared
//! segment id     CATALOG_TAG (catalog records only)
//! sync floor     every change up to this one was durable when it was written
//! ```
//!
//! A batch of changes is written at the end in one write and synced before
//! [`GroupCatalog::record`] returns. A power cut can only tear the batch
//! being written, which was never acknowledged: on open, the first record
//! that does not check ends the journal, unless a later good record's sync
//! floor shows it was durable (then it is corruption, and opening fails
//! naming the file and offset). A torn tail is dropped by rewriting the
//! file whole. The file is rewritten the same way (a new file synced, then
//! renamed over the old one, then the directory synced) once it holds more
//! than twice as many changes as live entries.

use crate::error::{Result, StorageError};
use crate::format::{self, HEADER_BYTES};
use crate::io::{Vfs, VfsFile, parent_of};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The segment id every catalog record carries ("SMPNCATL").
pub const CATALOG_TAG: u64 = 0x534D_504E_4341_544C;
/// Largest config a catalog entry holds (bytes).
pub const CATALOG_ENTRY_BYTES_MAX: usize = 64 << 10;
/// A journal shorter than this many changes is never rewritten.
const COMPACT_MIN_RECORDS: u64 = 64;

const KIND_ADDED: u8 = 1;
const KIND_REMOVED: u8 = 2;
const KIND_CLEARED: u8 = 3;

/// What the catalog holds for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Added at runtime with this config.
    Added(Bytes),
    /// Removed at runtime: not started again even if the node's config
    /// file names it.
    Removed,
}

/// One change to the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The group now has this entry.
    Set(u64, Entry),
    /// The group has no entry any more (the config file alone decides).
    Clear(u64),
}

impl Change {
    /// The group it changes.
    pub fn group(&self) -> u64 {
        match self {
            Change::Set(g, _) | Change::Clear(g) => *g,
        }
    }
}

/// A node's catalog of runtime group changes, in one file. See the module
/// docs. Not shared: one owner writes it.
#[derive(Debug)]
pub struct GroupCatalog<V: Vfs> {
    vfs: V,
    path: PathBuf,
    entries: BTreeMap<u64, Entry>,
    /// The open journal; `None` until the first change is written.
    file: Option<V::File>,
    /// Where the next batch goes.
    end: u64,
    /// Changes in the file (the last one's sequence number).
    records: u64,
    /// A write failed: what the file holds past `end` is unknown, so the
    /// next batch rewrites the file whole.
    broken: bool,
}

fn corrupt(path: &Path, offset: u64, reason: String) -> StorageError {
    StorageError::Corrupt {
        group: 0,
        path: path.to_path_buf(),
        offset,
        reason,
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

impl<V: Vfs> GroupCatalog<V> {
    /// Opens the catalog at `path`; a missing file is an empty catalog (the
    /// file is made by the first change). A torn last batch is dropped;
    /// anything else that does not check is [`StorageError::Corrupt`].
    pub async fn open(vfs: &V, path: &Path) -> Result<GroupCatalog<V>> {
        let io = |op, e| StorageError::io(0, op, path, 0, e);
        let tmp = tmp_path(path);
        // A rewrite that did not finish: the old file is whole.
        match vfs.remove(&tmp).await {
            Ok(()) => log::warn!("{}: removed an unfinished rewrite", tmp.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", e)),
        }
        let mut catalog = GroupCatalog {
            vfs: vfs.clone(),
            path: path.to_path_buf(),
            entries: BTreeMap::new(),
            file: None,
            end: 0,
            records: 0,
            broken: false,
        };
        let file = match vfs.open(path, false).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(catalog),
            Err(e) => return Err(io("open", e)),
        };
        let len = file.len() as usize;
        let bytes = file.read(0, len).map_err(|e| io("read", e))?;
        let (entries, records, end) = replay(&bytes, path)?;
        catalog.entries = entries;
        catalog.records = records;
        catalog.end = end as u64;
        catalog.file = Some(file);
        if end < len {
            log::warn!(
                "{}: dropped a torn last change at offset {end} ({} bytes); rewriting the file",
                path.display(),
                len - end
            );
            catalog.rewrite().await?;
        }
        Ok(catalog)
    }

    /// The entries, by group id.
    pub fn entries(&self) -> &BTreeMap<u64, Entry> {
        &self.entries
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes `changes` durable, in order, then applies them to
    /// [`GroupCatalog::entries`]. On an error none of them is applied (some
    /// may be on disk: a reopen may find them).
    pub async fn record(&mut self, changes: &[Change]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        for c in changes {
            if let Change::Set(_, Entry::Added(b)) = c
                && b.len() > CATALOG_ENTRY_BYTES_MAX
            {
                return Err(StorageError::Invalid {
                    group: c.group(),
                    reason: format!(
                        "a catalog entry of {} bytes is over the {CATALOG_ENTRY_BYTES_MAX} byte limit",
                        b.len()
                    ),
                });
            }
        }
        let mut next = self.entries.clone();
        for c in changes {
            apply(&mut next, c);
        }
        let live = next.len() as u64;
        let total = self.records + changes.len() as u64;
        if self.broken || self.file.is_none() || (total > COMPACT_MIN_RECORDS && total > 2 * live) {
            let old = std::mem::replace(&mut self.entries, next);
            if let Err(e) = self.rewrite().await {
                self.entries = old;
                return Err(e);
            }
            return Ok(());
        }
        let mut buf = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            encode_change(&mut buf, self.records + 1 + i as u64, self.records, c);
        }
        let file = self.file.as_ref().expect("checked above");
        let offset = self.end;
        let n = buf.len() as u64;
        if let Err(e) = file.write_at_durable(buf, offset).await {
            self.broken = true;
            return Err(StorageError::io(0, "append", &self.path, offset, e));
        }
        self.end += n;
        self.records = total;
        self.entries = next;
        Ok(())
    }

    /// Writes the entries whole to a new file, syncs it, renames it over
    /// the journal and syncs the directory.
    async fn rewrite(&mut self) -> Result<()> {
        let tmp = tmp_path(&self.path);
        let io = |op, path: &Path, e| StorageError::io(0, op, path, 0, e);
        let mut buf = Vec::new();
        let changes: Vec<Change> = self
            .entries
            .iter()
            .map(|(g, e)| Change::Set(*g, e.clone()))
            .collect();
        for (i, c) in changes.iter().enumerate() {
            encode_change(&mut buf, i as u64 + 1, 0, c);
        }
        let n = buf.len() as u64;
        self.file = None;
        self.broken = true;
        match self.vfs.remove(&tmp).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &tmp, e)),
        }
        let file = self
            .vfs
            .open(&tmp, true)
            .await
            .map_err(|e| io("create", &tmp, e))?;
        file.write_at_durable(buf, 0)
            .await
            .map_err(|e| io("write", &tmp, e))?;
        drop(file);
        self.vfs
            .rename(&tmp, &self.path)
            .await
            .map_err(|e| io("rename", &tmp, e))?;
        let dir = parent_of(&self.path);
        self.vfs
            .sync_dir(&dir)
            .await
            .map_err(|e| io("sync", &dir, e))?;
        let file = self
            .vfs
            .open(&self.path, false)
            .await
            .map_err(|e| io("open", &self.path, e))?;
        self.file = Some(file);
        self.end = n;
        self.records = changes.len() as u64;
        self.broken = false;
        Ok(())
    }
}

fn apply(entries: &mut BTreeMap<u64, Entry>, c: &Change) {
    match c {
        Change::Set(g, e) => {
            entries.insert(*g, e.clone());
        }
        Change::Clear(g) => {
            entries.remove(g);
        }
    }
}

fn encode_change(out: &mut Vec<u8>, seq: u64, sync_floor: u64, c: &Change) {
    let start = out.len();
    let (kind, payload): (u8, &[u8]) = match c {
        Change::Set(_, Entry::Added(b)) => (KIND_ADDED, b),
        Change::Set(_, Entry::Removed) => (KIND_REMOVED, &[]),
        Change::Clear(_) => (KIND_CLEARED, &[]),
    };
    format::encode_record(out, seq, c.group(), kind, payload);
    format::restamp(&mut out[start..], CATALOG_TAG, sync_floor);
}

/// The entries the journal in `b` holds, its number of changes, and where
/// its last good change ends.
fn replay(b: &[u8], path: &Path) -> Result<(BTreeMap<u64, Entry>, u64, usize)> {
    let max = CATALOG_ENTRY_BYTES_MAX as u32;
    let mut entries = BTreeMap::new();
    let (mut off, mut seq) = (0usize, 0u64);
    while off < b.len() {
        let h = match format::check_record(b, off, max) {
            Ok(h) if h.segment_id == CATALOG_TAG && h.index == seq + 1 => h,
            _ => break,
        };
        let payload = &b[off + HEADER_BYTES..off + HEADER_BYTES + h.payload_len as usize];
        let change = match h.kind {
            KIND_ADDED => Change::Set(h.term, Entry::Added(Bytes::copy_from_slice(payload))),
            KIND_REMOVED => Change::Set(h.term, Entry::Removed),
            KIND_CLEARED => Change::Clear(h.term),
            k => {
                return Err(corrupt(
                    path,
                    off as u64,
                    format!("change {} has unknown kind {k}", h.index),
                ));
            }
        };
        apply(&mut entries, &change);
        seq = h.index;
        off += h.record_len();
    }
    if off < b.len() {
        // Torn, unless a later good change says this one was durable.
        let mut at = off + format::RECORD_ALIGN;
        while at + HEADER_BYTES <= b.len() {
            if let Ok(h) = format::check_record(b, at, max)
                && h.segment_id == CATALOG_TAG
                && h.sync_floor > seq
            {
                return Err(corrupt(
                    path,
                    off as u64,
                    format!(
                        "change {} does not check, but change {} at offset {at} was written after it was durable",
                        seq + 1,
                        h.index
                    ),
                ));
            }
            at += format::RECORD_ALIGN;
        }
    }
    Ok((entries, seq, off))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sim::MemFs;

    fn added(b: &'static [u8]) -> Entry {
        Entry::Added(Bytes::from_static(b))
    }

    #[test]
    fn changes_survive_a_reopen_and_the_last_one_wins() {
        futures_lite::future::block_on(async {
            let fs = MemFs::new();
            let path = Path::new("/d/catalog");
            let mut c = GroupCatalog::open(&fs, path).await.unwrap();
            assert!(c.entries().is_empty());
            assert!(fs.contents(path).is_none(), "opening makes no file");
            c.record(&[Change::Set(5, added(b"five"))]).await.unwrap();
            c.record(&[
                Change::Set(6, added(b"six")),
                Change::Set(5, Entry::Removed),
            ])
            .await
            .unwrap();
            c.record(&[Change::Clear(6), Change::Set(7, added(b"seven"))])
                .await
                .unwrap();
            let again = GroupCatalog::open(&fs, path).await.unwrap();
            let want: BTreeMap<u64, Entry> = [(5, Entry::Removed), (7, added(b"seven"))]
                .into_iter()
                .collect();
            assert_eq!(again.entries(), &want);
            assert_eq!(c.entries(), &want);
        });
    }

    #[test]
    fn a_long_journal_is_rewritten_to_its_live_entries() {
        futures_lite::future::block_on(async {
            let fs = MemFs::new();
            let path = Path::new("/d/catalog");
            let mut c = GroupCatalog::open(&fs, path).await.unwrap();
            for i in 0..500u64 {
                c.record(&[Change::Set(i % 3, added(b"x"))]).await.unwrap();
            }
            let len = fs.contents(path).unwrap().len();
            assert!(len < 200 * 56, "rewritten: {len} bytes");
            let again = GroupCatalog::open(&fs, path).await.unwrap();
            assert_eq!(again.entries().len(), 3);
        });
    }

    #[test]
    fn a_flipped_bit_in_a_durable_change_is_corruption() {
        futures_lite::future::block_on(async {
            let fs = MemFs::new();
            let path = Path::new("/d/catalog");
            let mut c = GroupCatalog::open(&fs, path).await.unwrap();
            c.record(&[Change::Set(1, added(b"one"))]).await.unwrap();
            c.record(&[Change::Set(2, added(b"two"))]).await.unwrap();
            let mut bytes = fs.contents(path).unwrap();
            bytes[HEADER_BYTES] ^= 1; // the first change's payload
            fs.set_contents(path, bytes);
            let e = GroupCatalog::open(&fs, path).await.unwrap_err();
            assert!(matches!(e, StorageError::Corrupt { offset: 0, .. }), "{e}");
        });
    }

    #[test]
    fn an_oversized_entry_is_refused_and_nothing_changes() {
        futures_lite::future::block_on(async {
            let fs = MemFs::new();
            let path = Path::new("/d/catalog");
            let mut c = GroupCatalog::open(&fs, path).await.unwrap();
            let big = Bytes::from(vec![0u8; CATALOG_ENTRY_BYTES_MAX + 1]);
            let e = c
                .record(&[Change::Set(1, Entry::Added(big))])
                .await
                .unwrap_err();
            assert!(matches!(e, StorageError::Invalid { group: 1, .. }), "{e}");
            assert!(c.entries().is_empty());
        });
    }
}
