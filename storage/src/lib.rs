//! sampan-storage: the Raft log, the status file and the snapshot store of
//! a Sampan group, crash-safe, with a CRC32C on every record.
//!
//! **For:** keeping each group's log in segment files with index files
//! ([`SegmentLog`], behind the [`RaftLog`] trait an embedder may replace);
//! making appends of every group on a shard durable together
//! ([`LogWriter`], group commit); the record format that the log holds and
//! the wire carries unchanged ([`format`](mod@format), with the total validator
//! [`parse_run`]); the hard-state file ([`StatusFile`]); snapshots written
//! and read as chunks ([`SnapshotStore`]); recovery after a crash that cuts
//! a torn tail and refuses anything else that is corrupt, naming the file
//! and offset ([`StorageError::Corrupt`]).
//!
//! **Not for:** Raft logic (what entries mean, when to truncate), or
//! networking. It never blocks the shard thread: file I/O goes through
//! io_uring (`sampan_fiber::fs`), directory listing through a helper
//! thread; reads are served from read-only memory maps (a cold page costs a
//! page fault on the shard, the known price of mapped reads).
//!
//! **The measured choice: bytes enter a segment through io_uring writes,
//! never through the mapping.** Mappings are used for reading segments and
//! index files only. On this machine (2 vCPU, ext4 on a virtual disk; see
//! RESEARCH.md for the raw numbers: memcpy into a mapping + `msync` was never
//! faster than `pwrite` + `fdatasync`, page faults on a mapping stalled the
//! thread up to 12 ms, and a truncated or sparse mapping dies with SIGBUS),
//! `cargo bench -p sampan-benches --bench storage -- --quick` gives, log
//! against a plain `write` (+ `fdatasync`) loop on the same disk in the same
//! run, one entry per append (a run with the disk shared by other builds;
//! absolute figures move with load, the ratios much less):
//!
//! | append | sync: log / plain | async (page cache): log / plain |
//! |---|---|---|
//! | 100 B | 5,700/s vs 5,260/s, p50 170 µs | 20,000/s vs 21,500/s |
//! | 1 KiB | 5,130/s vs 4,780/s, p50 182 µs | 18,900/s vs 20,400/s |
//! | 64 KiB | 210 MiB/s vs 229 MiB/s (92%) | 605 vs 833 MiB/s (73%) |
//!
//! In async mode a 64 MiB segment is synced when sealed (so a power cut can
//! lose a tail but never leave a hole), which is the gap at 64 KiB; in
//! another, busier run the same line read 496 vs 419 MiB/s. Group commit,
//! 4 KiB entries, each group appending and waiting for durability: 4 and 16
//! groups reach 87–98% of as many plain loops each syncing its own file
//! (6,000–7,900 synced appends/s), 64 groups 65–85%. Reads of 64 KiB runs
//! (mapped, CRC-checked): 3.4–5.3 GiB/s. Opening a 1 GiB log (17 segments,
//! page cache warm): 15 ms.
//!
//! **Segments per group, grown in steps.** Each group has its own segments
//! (64 MiB by default) that grow with `fallocate` in 4 MiB steps (never
//! sparse: a full disk fails the append with [`StorageError::DiskFull`]
//! instead of a SIGBUS), so an idle group costs 4 MiB of disk, not 64. Each
//! group's sync is its own `fdatasync`, issued concurrently with the other
//! groups' through io_uring; a shared per-shard write-ahead file would need
//! one sync for all and is the next step if thousands of busy groups per
//! node make syncs the bottleneck (not built yet).
//!
//! ```
//! use sampan_storage::{LogConfig, LogWriter, RaftLog, RunBuilder, SegmentLog};
//! use sampan_storage::sim::MemFs; // the real disk is `DiskFs`, on a shard
//! use std::path::Path;
//! futures_lite::future::block_on(async {
//!     let writer = LogWriter::new(); // one per shard, shared by its logs
//!     let log = SegmentLog::open(MemFs::new(), Path::new("/g1/log"), 1,
//!                                LogConfig::default(), writer).await?;
//!     let mut run = RunBuilder::new(log.last_index() + 1);
//!     run.push(1, 0, b"hello").push(1, 0, b"world");
//!     let last = log.append(&run.finish()).await?; // written
//!     log.sync(last).await?;                       // durable
//!     let read = log.read(1, 1 << 20)?;             // zero-copy records
//!     let payloads: Vec<_> = read.iter().map(|r| r.payload()).collect();
//!     assert_eq!(payloads, [&b"hello"[..], &b"world"[..]]);
//!     Ok::<(), sampan_storage::StorageError>(())
//! })?;
//! # Ok::<(), sampan_storage::StorageError>(())
//! ```

mod append;
pub mod dualfile;
pub mod error;
pub mod format;
pub mod index;
pub mod io;
pub mod log;
pub mod raft_log;
mod recovery;
pub mod segment;
pub mod sim;
pub mod snapshot;
pub mod status;
mod truncate;
pub mod writer;

pub use error::{FormatError, Result, StorageError};
pub use format::{Record, RecordHeader, RecordRun, RunBuilder, parse_run};
pub use io::{DiskFile, DiskFs, Vfs, VfsFile};
pub use log::{LogConfig, SegmentLog, SyncMode};
pub use raft_log::RaftLog;
pub use snapshot::{SnapshotMeta, SnapshotReader, SnapshotStore, SnapshotWriter};
pub use status::{HardState, StatusFile};
pub use writer::LogWriter;
