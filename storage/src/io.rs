//! The narrow file layer under every file the storage crate writes: a
//! handful of calls (write at an offset, sync, grow, read a range, and the
//! directory operations), so the same log code runs over the real disk
//! ([`DiskFs`], io_uring writes through `sampan_fiber::fs`, reads from
//! read-only memory maps) and over the simulated disk of [`crate::sim`],
//! which loses unsynced data at a chosen crash point.
//!
//! Contract the storage code relies on, and which both layers keep:
//! - a write is durable only after [`VfsFile::sync`] of its file returns;
//! - a new, removed or renamed name is durable only after
//!   [`Vfs::sync_dir`] of its directory;
//! - [`VfsFile::allocate`] only grows a file, never leaves it sparse;
//! - [`VfsFile::read`] returns bytes that stay valid whatever happens to
//!   the file later (a mapping of a removed file stays readable).

use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::io;
use std::path::{Path, PathBuf};

/// A file system: opens files and changes names.
#[allow(async_fn_in_trait)] // shard-local futures: `Send` is neither needed nor wanted
pub trait Vfs: Clone + std::fmt::Debug + 'static {
    /// The open-file type.
    type File: VfsFile;

    /// Opens `path` for reading and writing, creating it empty if `create`.
    async fn open(&self, path: &Path, create: bool) -> io::Result<Self::File>;
    /// Removes a file.
    async fn remove(&self, path: &Path) -> io::Result<()>;
    /// Renames a file or a directory.
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the names in `dir` durable.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates a directory and its parents.
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Removes a directory and all it holds.
    async fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names in `dir`, sorted.
    async fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
}

/// An open file.
#[allow(async_fn_in_trait)]
pub trait VfsFile: std::fmt::Debug + 'static {
    /// Writes `data` at `offset` (not durable until [`VfsFile::sync`]).
    async fn write_at(&self, data: Vec<u8>, offset: u64) -> io::Result<()>;
    /// Makes every completed write durable (`fdatasync`).
    async fn sync(&self) -> io::Result<()>;
    /// Grows the file to at least `len` bytes of real, zeroed space.
    async fn allocate(&self, len: u64) -> io::Result<()>;
    /// The file's size in bytes.
    fn len(&self) -> u64;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The bytes `[offset, offset + len)`, which must lie within the file.
    fn read(&self, offset: u64, len: usize) -> io::Result<Bytes>;
}

/// The real disk, through `sampan_fiber::fs` (io_uring) and memmap2.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskFs;

/// A file of [`DiskFs`]: writes through io_uring, reads from a read-only
/// mapping of the file that is remapped when the file grows. The mapping
/// never extends past the file's size, and files are never shrunk while
/// mapped, so no access can SIGBUS.
#[derive(Debug)]
pub struct DiskFile {
    file: sampan_fiber::fs::File,
    len: Cell<u64>,
    map: RefCell<Bytes>,
}

impl Vfs for DiskFs {
    type File = DiskFile;

    async fn open(&self, path: &Path, create: bool) -> io::Result<DiskFile> {
        let file = sampan_fiber::fs::File::open(path, create).await?;
        let len = file.size().await?;
        Ok(DiskFile {
            file,
            len: Cell::new(len),
            map: RefCell::new(Bytes::new()),
        })
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        sampan_fiber::fs::remove_file(path).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        sampan_fiber::fs::rename(from, to).await
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        sampan_fiber::fs::sync_dir(dir).await
    }

    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        sampan_fiber::fs::create_dir_all(dir).await
    }

    async fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        sampan_fiber::fs::remove_dir_all(dir).await
    }

    async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        sampan_fiber::fs::read_dir_names(dir).await
    }
}

impl DiskFile {
    fn remap(&self) -> io::Result<()> {
        let len = usize::try_from(self.len.get())
            .map_err(|_| io::Error::other("file larger than the address space"))?;
        // SAFETY: the mapping is read-only and covers only bytes below the
        // file's size; this crate never shrinks a file it maps, so no page
        // of the mapping can lose its backing (no SIGBUS). Other writers
        // change the bytes under us only through the page cache, which the
        // mapping shares: readers see whole records or fail their CRC.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(&self.file)? };
        *self.map.borrow_mut() = Bytes::from_owner(map);
        Ok(())
    }
}

impl VfsFile for DiskFile {
    async fn write_at(&self, data: Vec<u8>, offset: u64) -> io::Result<()> {
        let end = offset + data.len() as u64;
        self.file.write_all_at(data, offset).await?;
        if end > self.len.get() {
            self.len.set(end);
        }
        Ok(())
    }

    async fn sync(&self) -> io::Result<()> {
        self.file.fdatasync().await
    }

    async fn allocate(&self, len: u64) -> io::Result<()> {
        if len <= self.len.get() {
            return Ok(());
        }
        self.file.pre_allocate(len).await?;
        // Another grow may have finished meanwhile (the background
        // preparation allocates beside appends): the size only goes up.
        self.len.set(self.len.get().max(len));
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len.get()
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let end = offset
            .checked_add(len as u64)
            .filter(|&e| e <= self.len.get())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "read [{offset}, +{len}) past the end of {}",
                        self.file.path().display()
                    ),
                )
            })?;
        if len == 0 {
            return Ok(Bytes::new());
        }
        if (self.map.borrow().len() as u64) < end {
            self.remap()?;
        }
        let map = self.map.borrow();
        Ok(map.slice(offset as usize..end as usize))
    }
}

/// The parent directory of `path` (`.` when it has none).
pub(crate) fn parent_of(path: &Path) -> PathBuf {
    path.parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}
