//! File I/O on the shard, through io_uring (glommio's buffered files),
//! behind names of ours so that storage never calls glommio itself.
//!
//! Writes go through the page cache (`pwrite`-like, submitted on the
//! shard's io_uring), not `O_DIRECT`: the storage crate reads its segments
//! through read-only memory mappings, and mixing `O_DIRECT` writes with
//! mapped pages of the same file is the one combination Linux does not keep
//! coherent cheaply. RESEARCH.md measured buffered `pwrite` + `fdatasync`
//! into already-written space at the same p50 as `O_DIRECT` (87–112 µs vs
//! 90–99 µs at 4 KiB).
//!
//! **A past hang, gone with the patched glommio.** With the published
//! glommio 0.9 (kernel 6.18 here) a shard could sleep through a completed
//! file operation: a loop of 60,000 buffered `write_all_at` (+ `fdatasync`)
//! on one shard hung in 4 of 5 release runs, the thread parked in
//! `io_cqring_wait`, and tests and benchmarks kept a 1 ms timer armed as a
//! stopgap. glommio is now patched (third_party/README.md) for a bug that
//! parked the executor with runnable tasks, and the hang no longer
//! reproduces: with no timer armed and both cores busy (`yes > /dev/null`
//! ×2), `examples/fs_hang_probe.rs` ran 39 times in 4 minutes (2.3 million
//! writes) without a hang, the storage disk tests (kill -9 children, group
//! commit, a full tmpfs) ran 59 times in 2.5 minutes without one, and the
//! storage benchmark ran whole. So the timers are gone. If a shard ever
//! stops with file I/O in flight again, the probe is the first thing to run.
//!
//! Everything here must run on a shard (it uses the shard's io_uring);
//! the few calls io_uring cannot do (`readdir`, `mkdir -p`, removing a
//! directory tree) go to a helper thread through [`crate::blocking`].

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

/// A file open for reading and writing, whose I/O goes through the shard's
/// io_uring. Shard-local (`!Send`).
#[derive(Debug)]
pub struct File {
    inner: glommio::io::BufferedFile,
    path: PathBuf,
}

impl File {
    /// Opens `path` for reading and writing; creates it (empty) if `create`
    /// and it does not exist. Never truncates.
    pub async fn open(path: impl AsRef<Path>, create: bool) -> io::Result<File> {
        let path = path.as_ref().to_path_buf();
        let mut opts = glommio::io::OpenOptions::new();
        opts.read(true).write(true).create(create);
        let inner = opts.buffered_open(&path).await.map_err(io::Error::from)?;
        Ok(File { inner, path })
    }

    /// The path the file was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes all of `buf` at `offset` (into the page cache; durable only
    /// after [`File::fdatasync`]). A short write (the disk filled up midway)
    /// is reported as a `WriteZero` error: the caller treats the range as
    /// unwritten, as it would after any failed write.
    pub async fn write_all_at(&self, buf: Vec<u8>, offset: u64) -> io::Result<()> {
        let len = buf.len();
        if len == 0 {
            return Ok(());
        }
        let written = self.inner.write_at(buf, offset).await?;
        self.whole(offset, written, len)
    }

    /// A write of `len` bytes at `offset` that wrote `written`: a short
    /// one is a `WriteZero` error naming the file.
    fn whole(&self, offset: u64, written: usize, len: usize) -> io::Result<()> {
        if written < len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "{}: short write at {offset}: {written} of {len} bytes",
                    self.path.display()
                ),
            ));
        }
        Ok(())
    }

    /// Writes all of `buf` at `offset` and makes that range durable, in one
    /// io_uring operation (`RWF_DSYNC`): a write and an `fdatasync` cost
    /// two trips to the kernel's worker threads, this one. Only the range
    /// written is made durable; other writes not yet synced are not. A
    /// short write is a `WriteZero` error, as for [`File::write_all_at`].
    pub async fn write_all_at_durable(&self, buf: Vec<u8>, offset: u64) -> io::Result<()> {
        let len = buf.len();
        if len == 0 {
            return Ok(());
        }
        let written = self.inner.write_at_dsync(buf, offset).await?;
        self.whole(offset, written, len)
    }

    /// Reads up to `len` bytes at `offset` (fewer at the end of the file).
    pub async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let res = self.inner.read_at(offset, len).await?;
        Ok(res.to_vec())
    }

    /// `fdatasync(2)`: makes every completed write, and the file size,
    /// durable.
    pub async fn fdatasync(&self) -> io::Result<()> {
        self.inner.fdatasync().await.map_err(io::Error::from)
    }

    /// `fallocate(2)` mode 0 over `[0, len)`: reserves real blocks (never a
    /// sparse file, so a later write cannot hit ENOSPC and a mapping over
    /// the range cannot SIGBUS) and grows the file size to at least `len`.
    /// Fails cleanly with `StorageFull` when the disk is full.
    pub async fn pre_allocate(&self, len: u64) -> io::Result<()> {
        self.inner
            .pre_allocate(len, false)
            .await
            .map_err(io::Error::from)
    }

    /// The file's current size in bytes.
    pub async fn size(&self) -> io::Result<u64> {
        self.inner.file_size().await.map_err(io::Error::from)
    }

    /// Closes the file, reporting a close error (dropping it closes it too).
    pub async fn close(self) -> io::Result<()> {
        self.inner.close().await.map_err(io::Error::from)
    }
}

impl AsRawFd for File {
    /// The descriptor, for read-only memory maps of the file.
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

/// `fsync` of a directory, so that files created, renamed or removed in it
/// stay so after a power cut.
pub async fn sync_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let dir = glommio::io::Directory::open(path.as_ref())
        .await
        .map_err(io::Error::from)?;
    dir.sync().await.map_err(io::Error::from)?;
    dir.close().await.map_err(io::Error::from)
}

/// Removes a file (`unlink`). Open descriptors and mappings of it stay
/// valid until dropped.
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    glommio::io::remove(path.as_ref())
        .await
        .map_err(io::Error::from)
}

/// Renames a file or directory (atomically replacing `to` if it is a file).
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    glommio::io::rename(from.as_ref(), to.as_ref())
        .await
        .map_err(io::Error::from)
}

/// Creates a directory and its parents (on a helper thread).
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_path_buf();
    crate::blocking(move || std::fs::create_dir_all(path)).await
}

/// Removes a directory and everything in it (on a helper thread).
pub async fn remove_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_path_buf();
    crate::blocking(move || std::fs::remove_dir_all(path)).await
}

/// The names of the entries of a directory, sorted (on a helper thread).
pub async fn read_dir_names(path: impl AsRef<Path>) -> io::Result<Vec<String>> {
    let path = path.as_ref().to_path_buf();
    crate::blocking(move || {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IO_MEMORY_MIN_BYTES, Runtime, TaskClass};

    fn on_shard<T: Send + 'static, Fut: std::future::Future<Output = T> + 'static>(
        f: impl FnOnce() -> Fut + Send + 'static,
    ) -> T {
        let rt = Runtime::builder()
            .shards(1)
            .io_memory_bytes(IO_MEMORY_MIN_BYTES)
            .build()
            .expect("runtime");
        let out = rt
            .shard(0)
            .expect("shard 0")
            .run_blocking(TaskClass::Latency, || async move { f().await })
            .expect("ran");
        rt.shutdown(std::time::Duration::from_secs(1))
            .expect("shutdown");
        out
    }

    #[test]
    fn write_sync_read_grow_rename_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let result = on_shard(move || async move {
            let sub = root.join("a/b");
            create_dir_all(&sub).await?;
            let p = sub.join("f");
            let f = File::open(&p, true).await?;
            f.pre_allocate(8192).await?;
            assert_eq!(f.size().await?, 8192);
            f.write_all_at(b"hello".to_vec(), 4096).await?;
            f.fdatasync().await?;
            assert_eq!(f.read_at(4096, 5).await?, b"hello");
            assert_eq!(
                f.read_at(0, 4).await?,
                vec![0; 4],
                "allocated space reads as zeros"
            );
            assert_eq!(f.read_at(8190, 10).await?.len(), 2, "short read at the end");
            f.close().await?;
            rename(&p, sub.join("g")).await?;
            sync_dir(&sub).await?;
            assert_eq!(read_dir_names(&sub).await?, vec!["g".to_string()]);
            remove_file(sub.join("g")).await?;
            assert!(read_dir_names(&sub).await?.is_empty());
            remove_dir_all(root.join("a")).await?;
            assert!(File::open(&p, false).await.is_err(), "gone");
            Ok::<(), io::Error>(())
        });
        result.expect("fs calls");
    }
}
