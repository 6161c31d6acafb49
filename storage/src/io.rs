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
//!   the file later (a mapping of a removed file stays readable);
//! - after [`VfsFile::release`] a file holds no descriptor between calls:
//!   each later write, sync or grow opens it by the path it was opened
//!   with (never creating it) for that call only, and reads go through a
//!   mapping of the whole file. A released file must not be renamed.
//!
//! **Descriptors.** The hard `RLIMIT_NOFILE` of a node caps how many groups
//! it can host if every file of a group stays open, so only the file that
//! is written on every append (the active segment) keeps its descriptor;
//! the log releases every other file (see the crate docs). Reopening does
//! not lose a writeback error: the mapping of a released file holds a
//! reference to its inode, so the inode and its error state stay in memory,
//! and Linux (since 4.16) reports an error that no `fsync` has seen yet to
//! the first `fsync` of a descriptor opened after it.

use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

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
    /// `path` in the operating system's file system, if this layer is that
    /// file system: then a helper thread may write the file with plain
    /// syscalls (the snapshot encoder does). The default: none.
    fn os_path(&self, path: &Path) -> Option<PathBuf> {
        let _ = path;
        None
    }
}

/// An open file.
#[allow(async_fn_in_trait)]
pub trait VfsFile: std::fmt::Debug + 'static {
    /// Writes `data` at `offset` (not durable until [`VfsFile::sync`]).
    async fn write_at(&self, data: Vec<u8>, offset: u64) -> io::Result<()>;
    /// Makes every completed write durable (`fdatasync`).
    async fn sync(&self) -> io::Result<()>;
    /// Writes `data` at `offset` and makes that range durable. Other writes
    /// not yet synced are not covered. The default writes, then syncs the
    /// whole file; a disk file does both in one operation.
    async fn write_at_durable(&self, data: Vec<u8>, offset: u64) -> io::Result<()> {
        self.write_at(data, offset).await?;
        self.sync().await
    }
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
    /// Closes the file's descriptor and holds none between calls from now
    /// on (see the module docs); a call in flight keeps its descriptor
    /// until it ends. For files written rarely. The default does nothing
    /// (a layer without descriptors).
    async fn release(&self) -> io::Result<()> {
        Ok(())
    }
    /// Drops the file's own view of its bytes and says whether bytes read
    /// from it are still held elsewhere: slices of a mapping shared with
    /// the file, which would change if the file were overwritten for a new
    /// use (a recycled log segment). For a file about to be closed: later
    /// reads may fail. The default says no: reads are copies.
    fn reads_held(&self) -> bool {
        false
    }
}

/// The real disk, through `sampan_fiber::fs` (io_uring) and memmap2.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskFs;

/// A file of [`DiskFs`]: writes through io_uring, reads from a read-only
/// mapping of the file that is remapped when the file grows. The mapping
/// never extends past the file's size, and files are never shrunk while
/// mapped, so no access can SIGBUS.
///
/// Once released ([`VfsFile::release`]) it holds no descriptor between
/// calls: a write, sync or grow opens the file by its path, and the last
/// call in flight remaps the file if it grew and closes the descriptor
/// before it returns, so the mapping always covers the whole file while no
/// descriptor is open.
#[derive(Debug)]
pub struct DiskFile {
    path: PathBuf,
    /// The open descriptor, if any; calls in flight hold clones.
    fd: RefCell<Option<Rc<sampan_fiber::fs::File>>>,
    /// Calls in flight that use the descriptor.
    fd_users: Cell<u32>,
    /// Released: close the descriptor when no call uses it.
    released: Cell<bool>,
    len: Cell<u64>,
    map: RefCell<Bytes>,
    /// Cloned into the owner of every mapping made: more than one count
    /// means some mapping (the file's own, or bytes read) is alive.
    maps: std::sync::Arc<()>,
}

/// A mapping of a [`DiskFile`], the owner of the bytes read from it.
struct Mapping {
    map: memmap2::Mmap,
    _alive: std::sync::Arc<()>,
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

/// One call's use of a [`DiskFile`]'s descriptor. [`FdUse::end`] closes
/// the descriptor of a released file when this was its last use; if the
/// call is dropped midway, `Drop` does the same without waiting for the
/// close (glommio closes it on its next I/O cycle).
struct FdUse<'a> {
    file: &'a DiskFile,
    fd: Option<Rc<sampan_fiber::fs::File>>,
}

impl FdUse<'_> {
    fn fd(&self) -> &sampan_fiber::fs::File {
        self.fd.as_deref().expect("held until the use ends")
    }

    /// Ends the use. A failure to map or close here does not fail the
    /// call, whose I/O is done (a close reports nothing a sync did not);
    /// it is logged, and a descriptor that could not be mapped stays open.
    async fn end(mut self) {
        self.fd = None;
        self.file.fd_users.set(self.file.fd_users.get() - 1);
        if let Err(e) = self.file.close_if_unused().await {
            log::warn!("{}: closing after use: {e}", self.file.path.display());
        }
    }
}

impl Drop for FdUse<'_> {
    fn drop(&mut self) {
        if self.fd.take().is_some() {
            let file = self.file;
            file.fd_users.set(file.fd_users.get() - 1);
            if file.released.get() && file.fd_users.get() == 0 && file.remap_to_len().is_ok() {
                drop(file.fd.borrow_mut().take());
            }
        }
    }
}

impl Vfs for DiskFs {
    type File = DiskFile;

    fn os_path(&self, path: &Path) -> Option<PathBuf> {
        Some(path.to_path_buf())
    }

    async fn open(&self, path: &Path, create: bool) -> io::Result<DiskFile> {
        let file = sampan_fiber::fs::File::open(path, create).await?;
        let len = file.size().await?;
        Ok(DiskFile {
            path: path.to_path_buf(),
            fd: RefCell::new(Some(Rc::new(file))),
            fd_users: Cell::new(0),
            released: Cell::new(false),
            len: Cell::new(len),
            map: RefCell::new(Bytes::new()),
            maps: std::sync::Arc::new(()),
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
    /// The descriptor for one call, opened by path if none is held.
    async fn use_fd(&self) -> io::Result<FdUse<'_>> {
        let held = self.fd.borrow().clone();
        let fd = match held {
            Some(fd) => fd,
            None => {
                let opened = Rc::new(sampan_fiber::fs::File::open(&self.path, false).await?);
                // Another call may have opened it meanwhile: keep one.
                let other = self.fd.borrow().clone();
                match other {
                    Some(other) => {
                        if let Ok(f) = Rc::try_unwrap(opened) {
                            let _ = f.close().await; // never used
                        }
                        other
                    }
                    None => {
                        *self.fd.borrow_mut() = Some(opened.clone());
                        opened
                    }
                }
            }
        };
        self.fd_users.set(self.fd_users.get() + 1);
        Ok(FdUse {
            file: self,
            fd: Some(fd),
        })
    }

    /// Of a released file with no call in flight: maps the whole file (if
    /// it grew) and closes the descriptor. If the mapping fails the
    /// descriptor stays open, so reads can still map the file.
    async fn close_if_unused(&self) -> io::Result<()> {
        if !self.released.get() || self.fd_users.get() > 0 {
            return Ok(());
        }
        self.remap_to_len()?;
        let fd = self.fd.borrow_mut().take();
        match fd.map(Rc::try_unwrap) {
            Some(Ok(file)) => file.close().await,
            _ => Ok(()),
        }
    }

    /// Remaps the file if the mapping does not cover all of it.
    fn remap_to_len(&self) -> io::Result<()> {
        if (self.map.borrow().len() as u64) < self.len.get() {
            self.remap()?;
        }
        Ok(())
    }

    fn remap(&self) -> io::Result<()> {
        let len = usize::try_from(self.len.get())
            .map_err(|_| io::Error::other("file larger than the address space"))?;
        let fd = self.fd.borrow().clone().ok_or_else(|| {
            // Cannot happen: a released file is mapped whole before its
            // descriptor is closed, and only calls that hold one grow it.
            io::Error::other(format!(
                "{}: no descriptor to map the file with",
                self.path.display()
            ))
        })?;
        // SAFETY: the mapping is read-only and covers only bytes below the
        // file's size; this crate never shrinks a file it maps, so no page
        // of the mapping can lose its backing (no SIGBUS). Other writers
        // change the bytes under us only through the page cache, which the
        // mapping shares: readers see whole records or fail their CRC. The
        // mapping outlives the descriptor (the kernel keeps its own
        // reference to the file).
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(&*fd)? };
        *self.map.borrow_mut() = Bytes::from_owner(Mapping {
            map,
            _alive: self.maps.clone(),
        });
        Ok(())
    }
}

impl VfsFile for DiskFile {
    async fn write_at(&self, data: Vec<u8>, offset: u64) -> io::Result<()> {
        let end = offset + data.len() as u64;
        let fd = self.use_fd().await?;
        let res = fd.fd().write_all_at(data, offset).await;
        if res.is_ok() && end > self.len.get() {
            self.len.set(end);
        }
        fd.end().await;
        res
    }

    async fn sync(&self) -> io::Result<()> {
        let fd = self.use_fd().await?;
        let res = fd.fd().fdatasync().await;
        fd.end().await;
        res
    }

    async fn write_at_durable(&self, data: Vec<u8>, offset: u64) -> io::Result<()> {
        let end = offset + data.len() as u64;
        let fd = self.use_fd().await?;
        let res = fd.fd().write_all_at_durable(data, offset).await;
        if res.is_ok() && end > self.len.get() {
            self.len.set(end);
        }
        fd.end().await;
        res
    }

    async fn allocate(&self, len: u64) -> io::Result<()> {
        if len <= self.len.get() {
            return Ok(());
        }
        let fd = self.use_fd().await?;
        let res = fd.fd().pre_allocate(len).await;
        if res.is_ok() {
            // Another grow may have finished meanwhile (the background
            // preparation allocates beside appends): the size only goes up.
            self.len.set(self.len.get().max(len));
        }
        fd.end().await;
        res
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
                        self.path.display()
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

    async fn release(&self) -> io::Result<()> {
        self.released.set(true);
        self.close_if_unused().await
    }

    fn reads_held(&self) -> bool {
        *self.map.borrow_mut() = Bytes::new();
        std::sync::Arc::strong_count(&self.maps) > 1
    }
}

/// The parent directory of `path` (`.` when it has none).
pub(crate) fn parent_of(path: &Path) -> PathBuf {
    path.parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}
