//! The snapshot store: one directory per snapshot under `<dir>/`, written
//! as a stream of chunks into `snap-<index>-<term>.tmp/`, then synced,
//! renamed and the parent synced, so a snapshot is either whole or absent.
//! A `meta` file beside the data holds the last index, last term, config,
//! size and CRC32C of the data, with its own version and CRC. The newest
//! `keep` snapshots are kept. An old one is removed by renaming it to
//! `snap-<index>-<term>.del/` first, so a crash in the middle of the
//! removal never leaves a snapshot directory without its meta; leftovers
//! of unfinished writes and removals are removed on open.
//!
//! ```text
//! meta: u32 magic | u16 version | u16 reserved | u64 last index | u64 last term
//!       | u64 size | u32 data CRC32C | u32 config length | config | u32 CRC32C
//! ```

use crate::error::{Result, StorageError};
use crate::io::{Vfs, VfsFile, parent_of};
use bytes::Bytes;
use std::path::{Path, PathBuf};

const MAGIC: u32 = 0x4E53_5053; // "SPSN"
const VERSION: u16 = 1;
const DATA: &str = "data";
const META: &str = "meta";
/// The suffix of a snapshot being written.
const WRITING: &str = ".tmp";
/// The suffix of a snapshot being removed.
const REMOVING: &str = ".del";
/// Largest config a snapshot meta holds (bytes).
pub const SNAPSHOT_CONFIG_BYTES_MAX: usize = 1 << 20;

/// What a snapshot covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// Last log index the snapshot includes.
    pub last_index: u64,
    /// Term of that entry.
    pub last_term: u64,
    /// Membership config as of `last_index`, encoded by the engine.
    pub config: Vec<u8>,
    /// Bytes of data.
    pub size: u64,
    /// CRC32C of the data.
    pub data_crc: u32,
}

impl SnapshotMeta {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(48 + self.config.len());
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&self.last_index.to_le_bytes());
        b.extend_from_slice(&self.last_term.to_le_bytes());
        b.extend_from_slice(&self.size.to_le_bytes());
        b.extend_from_slice(&self.data_crc.to_le_bytes());
        b.extend_from_slice(&(self.config.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.config);
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a meta file; `None` if anything is off (total).
    fn decode(b: &[u8]) -> Option<SnapshotMeta> {
        let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
        let u64_at = |o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
        let len = u32_at(36)? as usize;
        if u32_at(0)? != MAGIC || len > SNAPSHOT_CONFIG_BYTES_MAX || b.len() != 44 + len {
            return None;
        }
        if crc32c::crc32c(&b[..40 + len]) != u32_at(40 + len)?
            || b.get(4..6)? != VERSION.to_le_bytes()
        {
            return None;
        }
        Some(SnapshotMeta {
            last_index: u64_at(8)?,
            last_term: u64_at(16)?,
            size: u64_at(24)?,
            data_crc: u32_at(32)?,
            config: b.get(40..40 + len)?.to_vec(),
        })
    }
}

/// Whether a directory name is a finished snapshot's.
fn is_finished(name: &str) -> bool {
    name.starts_with("snap-") && !name.ends_with(WRITING) && !name.ends_with(REMOVING)
}

fn dir_name(last_index: u64, last_term: u64) -> String {
    format!("snap-{last_index:020}-{last_term:020}")
}

/// A group's snapshot directory. Clones refer to the same directory.
#[derive(Debug, Clone)]
pub struct SnapshotStore<V: Vfs> {
    vfs: V,
    dir: PathBuf,
    group: u64,
    keep: usize,
}

impl<V: Vfs> SnapshotStore<V> {
    /// Opens (creating) the store in `dir`, keeping the newest `keep`
    /// snapshots (at least 1). Removes what a crash left: unfinished
    /// writes (`*.tmp`), unfinished removals (`*.del`), and an older
    /// snapshot whose meta is gone (a removal by a version before the
    /// rename-first order, cut short). The newest snapshot without its
    /// meta is left for [`SnapshotStore::list`] to report as corrupt.
    pub async fn open(vfs: V, dir: &Path, group: u64, keep: usize) -> Result<SnapshotStore<V>> {
        let io = |op, e| StorageError::io(group, op, dir, 0, e);
        // The directory is made by the first snapshot written: a group that
        // never snapshots (most of thousands of small ones) costs no inode.
        let names = list_or_none(&vfs, dir).await.map_err(|e| io("list", e))?;
        for name in names
            .iter()
            .filter(|n| n.ends_with(WRITING) || n.ends_with(REMOVING))
        {
            sampan_fiber::group_log!(
                info,
                group,
                "group {group}: removing unfinished snapshot {name}"
            );
            vfs.remove_dir_all(&dir.join(name))
                .await
                .map_err(|e| io("remove", e))?;
        }
        // Names sort as indices do (zero-padded): all but the newest.
        let finished: Vec<&String> = names.iter().filter(|n| is_finished(n)).collect();
        for name in finished.iter().rev().skip(1) {
            let meta = dir.join(name).join(META);
            match vfs.open(&meta, false).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    sampan_fiber::group_log!(
                        warn,
                        group,
                        "group {group}: removing snapshot {name}: its meta is gone (a removal cut short by a crash)"
                    );
                    vfs.remove_dir_all(&dir.join(name))
                        .await
                        .map_err(|e| io("remove", e))?;
                }
                Err(e) => return Err(StorageError::io(group, "open", &meta, 0, e)),
            }
        }
        Ok(SnapshotStore {
            vfs,
            dir: dir.to_path_buf(),
            group,
            keep: keep.max(1),
        })
    }

    /// Every finished snapshot, oldest first. A meta that fails its CRC is
    /// [`StorageError::Corrupt`].
    pub async fn list(&self) -> Result<Vec<SnapshotMeta>> {
        let names = list_or_none(&self.vfs, &self.dir)
            .await
            .map_err(|e| StorageError::io(self.group, "list", &self.dir, 0, e))?;
        let mut out = Vec::new();
        for name in names.iter().filter(|n| is_finished(n)) {
            let path = self.dir.join(name).join(META);
            let file = self
                .vfs
                .open(&path, false)
                .await
                .map_err(|e| StorageError::io(self.group, "open", &path, 0, e))?;
            let bytes = file
                .read(0, file.len() as usize)
                .map_err(|e| StorageError::io(self.group, "read", &path, 0, e))?;
            let meta = SnapshotMeta::decode(&bytes)
                .ok_or_else(|| StorageError::corrupt(self.group, &path, 0, "bad snapshot meta"))?;
            out.push(meta);
        }
        out.sort_by_key(|m| m.last_index);
        Ok(out)
    }

    /// The newest finished snapshot.
    pub async fn latest(&self) -> Result<Option<SnapshotMeta>> {
        Ok(self.list().await?.pop())
    }

    /// Starts writing a snapshot up to (`last_index`, `last_term`).
    pub async fn create(
        &self,
        last_index: u64,
        last_term: u64,
        config: Vec<u8>,
    ) -> Result<SnapshotWriter<V>> {
        if config.len() > SNAPSHOT_CONFIG_BYTES_MAX {
            return Err(StorageError::invalid(
                self.group,
                "snapshot config too large",
            ));
        }
        let final_dir = self.dir.join(dir_name(last_index, last_term));
        let tmp_dir = self.dir.join(dir_name(last_index, last_term) + WRITING);
        let io = |op, e| StorageError::io(self.group, op, &tmp_dir, 0, e);
        let _ = self.vfs.remove_dir_all(&tmp_dir).await;
        self.vfs
            .create_dir_all(&tmp_dir)
            .await
            .map_err(|e| io("create dir", e))?;
        let file = self
            .vfs
            .open(&tmp_dir.join(DATA), true)
            .await
            .map_err(|e| io("create", e))?;
        Ok(SnapshotWriter {
            store: self.clone(),
            file,
            meta: SnapshotMeta {
                last_index,
                last_term,
                config,
                size: 0,
                data_crc: 0,
            },
            tmp_dir,
            final_dir,
        })
    }

    /// The directory of the snapshot `meta` describes (what errors name).
    pub fn path_of(&self, meta: &SnapshotMeta) -> PathBuf {
        self.dir.join(dir_name(meta.last_index, meta.last_term))
    }

    /// Opens a finished snapshot for reading in chunks.
    pub async fn reader(&self, meta: &SnapshotMeta) -> Result<SnapshotReader<V>> {
        let path = self
            .dir
            .join(dir_name(meta.last_index, meta.last_term))
            .join(DATA);
        let file = self
            .vfs
            .open(&path, false)
            .await
            .map_err(|e| StorageError::io(self.group, "open", &path, 0, e))?;
        if file.len() != meta.size {
            return Err(StorageError::corrupt(
                self.group,
                &path,
                file.len(),
                format!(
                    "snapshot data is {} bytes, meta says {}",
                    file.len(),
                    meta.size
                ),
            ));
        }
        Ok(SnapshotReader {
            file,
            path,
            group: self.group,
            meta: meta.clone(),
            offset: 0,
            crc: 0,
        })
    }

    async fn prune(&self) -> Result<()> {
        let all = self.list().await?;
        let excess = all.len().saturating_sub(self.keep);
        for m in &all[..excess] {
            // Renamed first: a crash midway leaves a `.del` directory
            // that open removes, never a snapshot without its meta.
            let name = dir_name(m.last_index, m.last_term);
            let (d, gone) = (self.dir.join(&name), self.dir.join(name + REMOVING));
            let io = |op, path: &Path, e| StorageError::io(self.group, op, path, 0, e);
            self.vfs
                .rename(&d, &gone)
                .await
                .map_err(|e| io("rename", &d, e))?;
            self.vfs
                .remove_dir_all(&gone)
                .await
                .map_err(|e| io("remove", &gone, e))?;
        }
        Ok(())
    }
}

/// The names in `dir`; none if it does not exist (yet).
async fn list_or_none<V: Vfs>(vfs: &V, dir: &Path) -> std::io::Result<Vec<String>> {
    match vfs.list(dir).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        other => other,
    }
}

/// A snapshot being written; [`SnapshotWriter::finish`] makes it visible.
/// Dropping it unfinished leaves a `.tmp` directory that the next write of
/// the same snapshot, or the next [`SnapshotStore::open`], removes.
#[derive(Debug)]
pub struct SnapshotWriter<V: Vfs> {
    store: SnapshotStore<V>,
    file: V::File,
    meta: SnapshotMeta,
    tmp_dir: PathBuf,
    final_dir: PathBuf,
}

impl<V: Vfs> SnapshotWriter<V> {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.meta.size
    }

    /// CRC32C of the bytes written so far.
    pub fn crc(&self) -> u32 {
        self.meta.data_crc
    }

    /// The data file's path in the operating system's file system, when
    /// the store is on it and nothing was written yet: a helper thread may
    /// then write the data itself and report it with
    /// [`SnapshotWriter::adopt`].
    pub fn os_data_path(&self) -> Option<PathBuf> {
        if self.meta.size > 0 {
            return None;
        }
        self.store.vfs.os_path(&self.tmp_dir.join(DATA))
    }

    /// Takes the `size` bytes (CRC32C `crc`) another writer put in the data
    /// file ([`SnapshotWriter::os_data_path`]); [`SnapshotWriter::finish`]
    /// then syncs them like its own.
    pub fn adopt(&mut self, size: u64, crc: u32) -> Result<()> {
        if self.meta.size > 0 {
            return Err(StorageError::invalid(
                self.store.group,
                "snapshot data adopted after chunks were written",
            ));
        }
        self.meta.size = size;
        self.meta.data_crc = crc;
        Ok(())
    }

    /// Appends a chunk of data.
    pub async fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        self.write_owned(chunk.to_vec()).await
    }

    /// Appends a chunk of data the caller hands over (no copy).
    pub async fn write_owned(&mut self, chunk: Vec<u8>) -> Result<()> {
        let offset = self.meta.size;
        let crc = crc32c::crc32c_append(self.meta.data_crc, &chunk);
        let len = chunk.len() as u64;
        self.file.write_at(chunk, offset).await.map_err(|e| {
            StorageError::io(
                self.store.group,
                "write",
                self.tmp_dir.join(DATA),
                offset,
                e,
            )
        })?;
        self.meta.data_crc = crc;
        self.meta.size += len;
        Ok(())
    }

    /// Drops the unfinished snapshot and its `.tmp` directory.
    pub async fn abort(self) {
        let _ = self.store.vfs.remove_dir_all(&self.tmp_dir).await;
    }

    /// Syncs data and meta, renames the directory into place, syncs the
    /// parent, and removes snapshots beyond the newest `keep`.
    pub async fn finish(self) -> Result<SnapshotMeta> {
        let s = &self.store;
        let io = |op, p: &Path, e| StorageError::io(s.group, op, p, 0, e);
        self.file
            .sync()
            .await
            .map_err(|e| io("sync", &self.tmp_dir, e))?;
        let meta_path = self.tmp_dir.join(META);
        let meta_file = s
            .vfs
            .open(&meta_path, true)
            .await
            .map_err(|e| io("create", &meta_path, e))?;
        meta_file
            .write_at(self.meta.encode(), 0)
            .await
            .map_err(|e| io("write", &meta_path, e))?;
        meta_file
            .sync()
            .await
            .map_err(|e| io("sync", &meta_path, e))?;
        s.vfs
            .sync_dir(&self.tmp_dir)
            .await
            .map_err(|e| io("sync dir", &self.tmp_dir, e))?;
        let _ = s.vfs.remove_dir_all(&self.final_dir).await;
        s.vfs
            .rename(&self.tmp_dir, &self.final_dir)
            .await
            .map_err(|e| io("rename", &self.tmp_dir, e))?;
        s.vfs
            .sync_dir(&s.dir)
            .await
            .map_err(|e| io("sync dir", &s.dir, e))?;
        // The store's own directory may be new (made by `create`): its
        // name must be durable too. One more sync per snapshot.
        let parent = parent_of(&s.dir);
        s.vfs
            .sync_dir(&parent)
            .await
            .map_err(|e| io("sync dir", &parent, e))?;
        sampan_fiber::group_log!(
            info,
            s.group,
            "group {}: snapshot at index {} (term {}) written: {} bytes",
            s.group,
            self.meta.last_index,
            self.meta.last_term,
            self.meta.size
        );
        s.prune().await?;
        Ok(self.meta)
    }
}

/// Reads a snapshot's data in chunks; the data CRC is checked as the last
/// chunk is read.
#[derive(Debug)]
pub struct SnapshotReader<V: Vfs> {
    file: V::File,
    path: PathBuf,
    group: u64,
    meta: SnapshotMeta,
    offset: u64,
    crc: u32,
}

impl<V: Vfs> SnapshotReader<V> {
    /// The snapshot's meta.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Where the next chunk starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Moves to `offset` (at most the size), reading the bytes skipped so
    /// the data CRC is still checked at the end: how a transfer resumes
    /// where the receiver stopped.
    pub fn skip_to(&mut self, offset: u64) -> Result<()> {
        let offset = offset.min(self.meta.size);
        if offset < self.offset {
            self.offset = 0;
            self.crc = 0;
        }
        while self.offset < offset {
            let len = (offset - self.offset).min(1 << 20) as usize;
            let b = self
                .file
                .read(self.offset, len)
                .map_err(|e| StorageError::io(self.group, "read", &self.path, self.offset, e))?;
            self.crc = crc32c::crc32c_append(self.crc, &b);
            self.offset += len as u64;
        }
        Ok(())
    }

    /// The next chunk of at most `bytes_max` bytes with its offset, zero-copy;
    /// `None` at the end. Fails with [`StorageError::Corrupt`] when the data
    /// read does not match the meta's CRC.
    pub fn next_chunk(&mut self, bytes_max: usize) -> Result<Option<(u64, Bytes)>> {
        if self.offset >= self.meta.size {
            return Ok(None);
        }
        let len = (self.meta.size - self.offset).min(bytes_max.max(1) as u64) as usize;
        let chunk = self
            .file
            .read(self.offset, len)
            .map_err(|e| StorageError::io(self.group, "read", &self.path, self.offset, e))?;
        let at = self.offset;
        self.crc = crc32c::crc32c_append(self.crc, &chunk);
        self.offset += len as u64;
        if self.offset == self.meta.size && self.crc != self.meta.data_crc {
            return Err(StorageError::corrupt(
                self.group,
                &self.path,
                0,
                "snapshot data CRC mismatch",
            ));
        }
        Ok(Some((at, chunk)))
    }

    /// Reads the whole data and checks its CRC.
    pub fn verify(&self) -> Result<()> {
        let mut crc = 0;
        let mut off = 0;
        while off < self.meta.size {
            let len = (self.meta.size - off).min(1 << 20) as usize;
            let b = self
                .file
                .read(off, len)
                .map_err(|e| StorageError::io(self.group, "read", &self.path, off, e))?;
            crc = crc32c::crc32c_append(crc, &b);
            off += len as u64;
        }
        if crc != self.meta.data_crc {
            return Err(StorageError::corrupt(
                self.group,
                &self.path,
                0,
                "snapshot data CRC mismatch",
            ));
        }
        Ok(())
    }
}
