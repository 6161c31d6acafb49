//! A simulated disk for power-loss tests: an in-memory [`Vfs`] that
//! remembers, for every file, what is durable and what was written since
//! the last sync, and for every directory which names are durable.
//!
//! [`MemFs::crash`] returns the disk as a power cut would leave it: durable
//! names and bytes, plus (in [`CrashMode::KeepRandomPages`]) a random subset
//! of the unsynced 4 KiB pages, as a disk that reorders writes may keep.
//! [`MemFs::fail_after_ops`] makes every mutating call after the n-th fail,
//! which is how a test stops the real log code at an exact step.
//! [`MemFs::set_space_bytes`] simulates a full disk (ENOSPC).
//! [`MemFs::fail_syncs`] and [`MemFs::fail_writes`] make the next file
//! syncs or writes fail with EIO. A failed sync behaves as Linux does
//! ("fsyncgate"): the writes it should have made durable are dropped from
//! the disk's view but stay readable from the cache, and a later sync
//! succeeds without writing them.
//!
//! Directories themselves are durable as soon as created (the log creates
//! them once, at open, and syncs their parent).

use crate::io::{Vfs, VfsFile};
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

const PAGE: usize = 4096;

/// What survives of unsynced data at a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Everything not synced is lost.
    DropUnsynced,
    /// Each unsynced page survives with probability 1/2, independently.
    KeepRandomPages,
}

#[derive(Debug, Clone)]
enum Pending {
    Write(u64, Vec<u8>),
    Grow(u64),
}

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

type InodeRef = Rc<RefCell<Inode>>;

#[derive(Debug, Default)]
struct State {
    names: BTreeMap<PathBuf, InodeRef>,
    durable_names: BTreeMap<PathBuf, InodeRef>,
    dirs: BTreeMap<PathBuf, ()>,
    ops: u64,
    fail_after: Option<u64>,
    space_bytes: Option<u64>,
    syncs: u64,
    syncs_to_fail: u64,
    writes_to_fail: u64,
    interleave: bool,
}

/// The simulated disk. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct MemFs {
    state: Rc<RefCell<State>>,
}

/// A file of [`MemFs`].
#[derive(Debug)]
pub struct MemFile {
    fs: MemFs,
    inode: InodeRef,
}

fn power_cut() -> io::Error {
    io::Error::other("simulated power cut")
}

fn injected_eio(what: &str) -> io::Error {
    io::Error::other(format!("simulated EIO on {what} (injected)"))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}", path.display()))
}

/// splitmix64: a small deterministic generator for crash choices.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, n)` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

impl MemFs {
    /// An empty disk.
    pub fn new() -> MemFs {
        MemFs::default()
    }

    /// Makes the `n`-th mutating call from now, and every one after it,
    /// fail as if the power went out (`None`: never).
    pub fn fail_after_ops(&self, n: Option<u64>) {
        let mut s = self.state.borrow_mut();
        s.fail_after = n.map(|n| s.ops + n);
    }

    /// Makes the next `n` file syncs fail with EIO. Like Linux after a
    /// failed writeback, the failed sync loses the writes it covered: they
    /// stay readable (the page cache still holds them) but never reach the
    /// disk, and the next sync of the file succeeds without them.
    pub fn fail_syncs(&self, n: u64) {
        self.state.borrow_mut().syncs_to_fail = n;
    }

    /// Makes the next `n` file writes fail with EIO, writing nothing.
    pub fn fail_writes(&self, n: u64) {
        self.state.borrow_mut().writes_to_fail = n;
    }

    /// Makes every mutating call yield once before it acts, as a real
    /// disk's calls suspend, so that concurrent futures of the log (joined
    /// in one task) interleave at every I/O step.
    pub fn set_interleave(&self, on: bool) {
        self.state.borrow_mut().interleave = on;
    }

    async fn pause(&self) {
        if self.state.borrow().interleave {
            futures_lite::future::yield_now().await;
        }
    }

    /// Mutating calls so far (to pick crash points).
    pub fn ops(&self) -> u64 {
        self.state.borrow().ops
    }

    /// File syncs so far.
    pub fn syncs(&self) -> u64 {
        self.state.borrow().syncs
    }

    /// Limits the total bytes of all files (`None`: unlimited); writes and
    /// allocations past it fail with ENOSPC.
    pub fn set_space_bytes(&self, limit: Option<u64>) {
        self.state.borrow_mut().space_bytes = limit;
    }

    /// The disk after a power cut now: a new, independent `MemFs`.
    pub fn crash(&self, mode: CrashMode, rng: &mut SimRng) -> MemFs {
        let s = self.state.borrow();
        let mut names = BTreeMap::new();
        let mut copies: Vec<(*const RefCell<Inode>, InodeRef)> = Vec::new();
        for (path, inode) in &s.durable_names {
            let key = Rc::as_ptr(inode);
            let copy = match copies.iter().find(|(k, _)| *k == key) {
                Some((_, c)) => c.clone(),
                None => {
                    let c = Rc::new(RefCell::new(survivor(&inode.borrow(), mode, rng)));
                    copies.push((key, c.clone()));
                    c
                }
            };
            names.insert(path.clone(), copy);
        }
        MemFs {
            state: Rc::new(RefCell::new(State {
                durable_names: names.clone(),
                names,
                dirs: s.dirs.clone(),
                ..State::default()
            })),
        }
    }

    /// The current bytes of a file (for tests that corrupt files).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.state.borrow();
        s.names.get(path).map(|i| i.borrow().data.clone())
    }

    /// Replaces the bytes of a file, durably (for corruption tests).
    pub fn set_contents(&self, path: &Path, data: Vec<u8>) {
        let s = self.state.borrow();
        if let Some(i) = s.names.get(path) {
            let mut i = i.borrow_mut();
            i.durable = data.clone();
            i.data = data;
            i.pending.clear();
        }
    }

    /// Every file's path, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.state.borrow().names.keys().cloned().collect()
    }

    fn step(&self) -> io::Result<()> {
        let mut s = self.state.borrow_mut();
        s.ops += 1;
        match s.fail_after {
            Some(n) if s.ops >= n => Err(power_cut()),
            _ => Ok(()),
        }
    }

    /// Consumes one injected fault from the counter `which`, if any.
    fn take_fault(&self, which: impl FnOnce(&mut State) -> &mut u64) -> bool {
        let mut s = self.state.borrow_mut();
        let n = which(&mut s);
        if *n == 0 {
            return false;
        }
        *n -= 1;
        true
    }

    fn check_space(&self, inode: &Inode, new_len: u64) -> io::Result<()> {
        let s = self.state.borrow();
        let Some(limit) = s.space_bytes else {
            return Ok(());
        };
        let total: u64 = s
            .names
            .values()
            .map(|i| {
                i.try_borrow()
                    .map_or(inode.data.len() as u64, |i| i.data.len() as u64)
            })
            .sum();
        let grow = new_len.saturating_sub(inode.data.len() as u64);
        if total + grow > limit {
            return Err(io::Error::from_raw_os_error(libc_enospc()));
        }
        Ok(())
    }
}

const fn libc_enospc() -> i32 {
    28
}

fn survivor(inode: &Inode, mode: CrashMode, rng: &mut SimRng) -> Inode {
    let mut data = inode.durable.clone();
    if mode == CrashMode::KeepRandomPages {
        for p in &inode.pending {
            match p {
                Pending::Grow(len) => {
                    if rng.below(2) == 0 && (*len as usize) > data.len() {
                        data.resize(*len as usize, 0);
                    }
                }
                Pending::Write(off, bytes) => keep_pages(&mut data, *off as usize, bytes, rng),
            }
        }
    }
    Inode {
        durable: data.clone(),
        data,
        pending: Vec::new(),
    }
}

fn keep_pages(data: &mut Vec<u8>, off: usize, bytes: &[u8], rng: &mut SimRng) {
    let end = off + bytes.len();
    let mut pos = off;
    while pos < end {
        let page_end = ((pos / PAGE) + 1) * PAGE;
        let chunk_end = page_end.min(end);
        if rng.below(2) == 0 {
            if data.len() < chunk_end {
                data.resize(chunk_end, 0);
            }
            data[pos..chunk_end].copy_from_slice(&bytes[pos - off..chunk_end - off]);
        }
        pos = chunk_end;
    }
}

impl Vfs for MemFs {
    type File = MemFile;

    async fn open(&self, path: &Path, create: bool) -> io::Result<MemFile> {
        self.pause().await;
        if let Some(inode) = self.state.borrow().names.get(path) {
            return Ok(MemFile {
                fs: self.clone(),
                inode: inode.clone(),
            });
        }
        if !create {
            return Err(not_found(path));
        }
        self.step()?;
        let inode = InodeRef::default();
        self.state
            .borrow_mut()
            .names
            .insert(path.to_path_buf(), inode.clone());
        Ok(MemFile {
            fs: self.clone(),
            inode,
        })
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        self.pause().await;
        self.step()?;
        let mut s = self.state.borrow_mut();
        s.names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.pause().await;
        self.step()?;
        let mut s = self.state.borrow_mut();
        let moved: Vec<PathBuf> = s
            .names
            .keys()
            .filter(|p| p.starts_with(from))
            .cloned()
            .collect();
        if moved.is_empty() {
            return Err(not_found(from));
        }
        for p in moved {
            let rest = p
                .strip_prefix(from)
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let target = if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            };
            if let Some(inode) = s.names.remove(&p) {
                s.names.insert(target, inode);
            }
        }
        Ok(())
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.pause().await;
        self.step()?;
        let mut s = self.state.borrow_mut();
        let under = |p: &Path| p.parent() == Some(dir) || p.starts_with(dir);
        s.durable_names.retain(|p, _| !under(p));
        let current: Vec<_> = s
            .names
            .iter()
            .filter(|(p, _)| under(p))
            .map(|(p, i)| (p.clone(), i.clone()))
            .collect();
        s.durable_names.extend(current);
        Ok(())
    }

    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.state.borrow_mut().dirs.insert(dir.to_path_buf(), ());
        Ok(())
    }

    async fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.pause().await;
        self.step()?;
        let mut s = self.state.borrow_mut();
        s.names.retain(|p, _| !p.starts_with(dir));
        s.dirs.retain(|p, _| !p.starts_with(dir));
        Ok(())
    }

    async fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.state.borrow();
        let mut out: Vec<String> = s
            .names
            .keys()
            .chain(s.dirs.keys())
            .filter_map(|p| {
                let rest = p.strip_prefix(dir).ok()?;
                rest.components()
                    .next()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
            })
            .filter(|n| !n.is_empty())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl VfsFile for MemFile {
    async fn write_at(&self, data: Vec<u8>, offset: u64) -> io::Result<()> {
        self.fs.pause().await;
        self.fs.step()?;
        if self.fs.take_fault(|s| &mut s.writes_to_fail) {
            return Err(injected_eio("write"));
        }
        let end = offset as usize + data.len();
        self.fs.check_space(&self.inode.borrow(), end as u64)?;
        let mut i = self.inode.borrow_mut();
        if i.data.len() < end {
            i.data.resize(end, 0);
        }
        i.data[offset as usize..end].copy_from_slice(&data);
        i.pending.push(Pending::Write(offset, data));
        Ok(())
    }

    async fn sync(&self) -> io::Result<()> {
        self.fs.pause().await;
        self.fs.step()?;
        let mut i = self.inode.borrow_mut();
        if self.fs.take_fault(|s| &mut s.syncs_to_fail) {
            // The pages are marked clean although they never reached the
            // disk: the data stays readable, the disk never gets it.
            i.pending.clear();
            return Err(injected_eio("fdatasync"));
        }
        self.fs.state.borrow_mut().syncs += 1;
        let pending = std::mem::take(&mut i.pending);
        for p in pending {
            match p {
                Pending::Grow(len) => {
                    if i.durable.len() < len as usize {
                        i.durable.resize(len as usize, 0);
                    }
                }
                Pending::Write(off, bytes) => {
                    let (off, end) = (off as usize, off as usize + bytes.len());
                    if i.durable.len() < end {
                        i.durable.resize(end, 0);
                    }
                    i.durable[off..end].copy_from_slice(&bytes);
                }
            }
        }
        Ok(())
    }

    async fn allocate(&self, len: u64) -> io::Result<()> {
        self.fs.pause().await;
        if len <= self.len() {
            return Ok(());
        }
        self.fs.step()?;
        self.fs.check_space(&self.inode.borrow(), len)?;
        let mut i = self.inode.borrow_mut();
        i.data.resize(len as usize, 0);
        i.pending.push(Pending::Grow(len));
        Ok(())
    }

    fn len(&self) -> u64 {
        self.inode.borrow().data.len() as u64
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let i = self.inode.borrow();
        let start = offset as usize;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= i.data.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        Ok(Bytes::copy_from_slice(&i.data[start..end]))
    }
}
