//! A small record kept in two copies (slots) of one file, each with a
//! version, a sequence number and a CRC32C, written alternately and synced:
//! a torn write can only damage the copy being written, so the previous
//! good one always survives. Used by the status file and the log's meta.
//!
//! Both are written rarely (the status on a term or vote change and at most
//! about once a second for the commit index; the meta on a purge or a
//! snapshot install), so a `DualFile` holds no descriptor: each write opens
//! the file, writes one copy, syncs it and closes it, and the open reads
//! both copies and closes the file. An idle group then keeps only its
//! active segment open (see the crate docs).
//!
//! ```text
//! slot (4096 bytes, two of them):
//!  0 u32 magic | 4 u16 version | 6 u16 reserved | 8 u64 sequence
//! 16 u32 payload length | 20 payload | u32 CRC32C of everything before it
//! ```

use crate::error::{Result, StorageError};
use crate::io::{Vfs, VfsFile, parent_of};
use std::path::{Path, PathBuf};

/// Bytes of one slot.
pub const SLOT_BYTES: usize = 4096;
/// Largest payload a slot holds.
pub const SLOT_PAYLOAD_MAX: usize = SLOT_BYTES - 24;
const VERSION: u16 = 1;

/// A two-copy record file. Holds no open descriptor between calls.
#[derive(Debug)]
pub struct DualFile<V: Vfs> {
    vfs: V,
    path: PathBuf,
    group: u64,
    magic: u32,
    seq: u64,
}

enum Slot {
    Zero,
    Bad(String),
    Good(u64, Vec<u8>),
}

fn decode_slot(b: &[u8], magic: u32) -> Slot {
    if b.iter().all(|&x| x == 0) {
        return Slot::Zero;
    }
    let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    if u32_at(0) != magic {
        return Slot::Bad(format!("bad magic {:#x}", u32_at(0)));
    }
    let len = u32_at(16) as usize;
    if len > SLOT_PAYLOAD_MAX {
        return Slot::Bad(format!("payload length {len} too large"));
    }
    if crc32c::crc32c(&b[..20 + len]) != u32_at(20 + len) {
        return Slot::Bad("CRC mismatch".into());
    }
    let version = u16::from_le_bytes([b[4], b[5]]);
    if version != VERSION {
        return Slot::Bad(format!("unknown version {version}"));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&b[8..16]);
    Slot::Good(u64::from_le_bytes(seq), b[20..20 + len].to_vec())
}

impl<V: Vfs> DualFile<V> {
    /// Opens (creating if missing) the file at `path`; returns it with the
    /// newest good payload, or `None` for a new file. Fails with
    /// [`StorageError::Corrupt`] when neither copy is good and the file is
    /// not blank. The file is closed again before this returns.
    pub async fn open(
        vfs: &V,
        path: &Path,
        magic: u32,
        group: u64,
    ) -> Result<(DualFile<V>, Option<Vec<u8>>)> {
        Self::open_with(vfs, path, magic, group, None).await
    }

    /// As [`DualFile::open`], but a file with nothing saved gets `initial`
    /// saved durably before this returns, and `initial` is the payload
    /// returned. A new file is created with it in one write and one sync
    /// (then the directory's): half the syncs of an open and a write,
    /// which is most of what a node spends starting thousands of groups.
    /// A crash before this returns leaves the file blank or holding
    /// `initial`, never anything else.
    pub async fn open_with(
        vfs: &V,
        path: &Path,
        magic: u32,
        group: u64,
        initial: Option<&[u8]>,
    ) -> Result<(DualFile<V>, Option<Vec<u8>>)> {
        if let Some(p) = initial {
            check_fits(p, path, group)?;
        }
        let file = vfs
            .open(path, true)
            .await
            .map_err(|e| StorageError::io(group, "open", path, 0, e))?;
        Self::load_and_close(vfs, file, path, magic, group, initial).await
    }

    /// As [`DualFile::open`] for a file that exists; `None` (and nothing
    /// created) if it does not.
    pub async fn open_existing(
        vfs: &V,
        path: &Path,
        magic: u32,
        group: u64,
    ) -> Result<Option<(DualFile<V>, Option<Vec<u8>>)>> {
        let file = match vfs.open(path, false).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(group, "open", path, 0, e)),
        };
        Self::load_and_close(vfs, file, path, magic, group, None)
            .await
            .map(Some)
    }

    async fn load_and_close(
        vfs: &V,
        file: V::File,
        path: &Path,
        magic: u32,
        group: u64,
        initial: Option<&[u8]>,
    ) -> Result<(DualFile<V>, Option<Vec<u8>>)> {
        let loaded = Self::load(vfs, &file, path, magic, group, initial).await;
        close(file, group, path).await;
        let (seq, payload) = loaded?;
        let mut dual = DualFile {
            vfs: vfs.clone(),
            path: path.to_path_buf(),
            group,
            magic,
            seq,
        };
        match (payload, initial) {
            (Some(p), _) => Ok((dual, Some(p))),
            (None, None) => Ok((dual, None)),
            // Nothing saved in a file that was there (a blank one, or one
            // whose first save was torn): save `initial` the usual way.
            (None, Some(p)) => {
                dual.write(p).await?;
                Ok((dual, Some(p.to_vec())))
            }
        }
    }

    /// Reads the newest good copy of an open file: its sequence and
    /// payload. A new file (or one cut short before its first sync: nothing
    /// in it counts) is written whole first, in one write and one sync: the
    /// blank mark in the first slot and `initial`, if given, as sequence 1
    /// in the second; then its directory is synced.
    async fn load(
        vfs: &V,
        file: &V::File,
        path: &Path,
        magic: u32,
        group: u64,
        initial: Option<&[u8]>,
    ) -> Result<(u64, Option<Vec<u8>>)> {
        let io = |op, e| StorageError::io(group, op, path, 0, e);
        if file.len() < (2 * SLOT_BYTES) as u64 {
            let mut both = slot_bytes(magic, 0, &[]);
            match initial {
                Some(p) => both.extend_from_slice(&slot_bytes(magic, 1, p)),
                None => both.resize(2 * SLOT_BYTES, 0),
            }
            file.write_at(both, 0).await.map_err(|e| io("write", e))?;
            file.sync().await.map_err(|e| io("sync", e))?;
            vfs.sync_dir(&parent_of(path))
                .await
                .map_err(|e| io("sync dir", e))?;
            return Ok(match initial {
                Some(p) => (1, Some(p.to_vec())),
                None => (0, None),
            });
        }
        let bytes = file.read(0, 2 * SLOT_BYTES).map_err(|e| io("read", e))?;
        let a = decode_slot(&bytes[..SLOT_BYTES], magic);
        let b = decode_slot(&bytes[SLOT_BYTES..], magic);
        let (seq, payload) = match (a, b) {
            // Blank, or a blank whose seq-0 mark was torn: the first real
            // write (seq 1) goes to the second slot, so a bad first slot
            // beside a zero second one was never anything but the mark.
            (Slot::Zero | Slot::Bad(_), Slot::Zero) => {
                file.write_at(slot_bytes(magic, 0, &[]), 0)
                    .await
                    .map_err(|e| io("write", e))?;
                file.sync().await.map_err(|e| io("sync", e))?;
                (0, None)
            }
            (Slot::Good(sa, pa), Slot::Good(sb, pb)) => {
                if sa >= sb {
                    (sa, Some(pa))
                } else {
                    (sb, Some(pb))
                }
            }
            (Slot::Good(s, p), other) | (other, Slot::Good(s, p)) => {
                if let Slot::Bad(why) = other {
                    sampan_fiber::group_log!(
                        warn,
                        group,
                        "group {group}: {}: one copy is bad ({why}), using the other (seq {s})",
                        path.display()
                    );
                }
                (s, Some(p))
            }
            (Slot::Bad(why), _) | (_, Slot::Bad(why)) => {
                return Err(StorageError::corrupt(
                    group,
                    path,
                    0,
                    format!("both copies are bad: {why}"),
                ));
            }
        };
        // Sequence 0 is the blank mark a new file gets, so that a torn first
        // write (to the second slot) falls back to "nothing saved", which is
        // the truth: that write never returned.
        Ok((seq, payload.filter(|_| seq > 0)))
    }

    /// Writes `payload` durably into the older copy.
    pub async fn write(&mut self, payload: &[u8]) -> Result<()> {
        check_fits(payload, &self.path, self.group)?;
        let seq = self.seq + 1;
        let b = slot_bytes(self.magic, seq, payload);
        let offset = (seq % 2) * SLOT_BYTES as u64;
        let io = |op, e| StorageError::io(self.group, op, &self.path, offset, e);
        // Never created here: a file that vanished is an error, not blank.
        let file = self
            .vfs
            .open(&self.path, false)
            .await
            .map_err(|e| io("open", e))?;
        let written = match file.write_at(b, offset).await {
            Ok(()) => file.sync().await.map_err(|e| io("sync", e)),
            Err(e) => Err(io("write", e)),
        };
        close(file, self.group, &self.path).await;
        written?;
        self.seq = seq;
        Ok(())
    }
}

/// Refuses a payload larger than a slot.
fn check_fits(payload: &[u8], path: &Path, group: u64) -> Result<()> {
    if payload.len() > SLOT_PAYLOAD_MAX {
        return Err(StorageError::invalid(
            group,
            format!("{}: {} bytes exceed a slot", path.display(), payload.len()),
        ));
    }
    Ok(())
}

/// One slot holding `payload` at sequence `seq`.
fn slot_bytes(magic: u32, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(SLOT_BYTES);
    b.extend_from_slice(&magic.to_le_bytes());
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend_from_slice(payload);
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b.resize(SLOT_BYTES, 0);
    b
}

/// Closes `file` now. A close that fails is logged, not returned: what was
/// read is read, and what was written was synced before (a close reports
/// nothing a sync did not).
async fn close<F: VfsFile>(file: F, group: u64, path: &Path) {
    if let Err(e) = file.release().await {
        sampan_fiber::group_log!(
            warn,
            group,
            "group {group}: closing {}: {e}",
            path.display()
        );
    }
}
