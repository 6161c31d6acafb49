//! sampan-storage: the Raft log, the status file and the snapshot store of
//! a Sampan group, crash-safe, with a CRC32C on every record.
//!
//! **For:** keeping each group's log in segment files with index files
//! ([`SegmentLog`], behind the [`RaftLog`] trait an embedder may replace),
//! or all of a shard's groups in one shared write-ahead log ([`ShardWal`],
//! [`WalLog`]);
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
//! the log keeps up with a plain `write` (+ `fdatasync`) loop on the same
//! disk, and beats it in `sync` mode thanks to prepared segment space
//! (below); the figures, with group commit and read speed, are in
//! `benches/RESULTS.md` ("The log").
//!
//! **Prepared segment space** (`log/prepare.rs`): in `sync` mode a background
//! fiber keeps the active segment written with zeros and synced 4 MiB ahead
//! of the appends, and makes a zero-filled spare segment ready once the
//! active one is half full, so an append neither converts unwritten extents
//! (a journal commit in every `fdatasync`) nor creates a segment. What the
//! log still pays and a plain loop does not is the sync of each 64 MiB
//! segment when it is sealed (the no-hole promise), which binds large
//! `async` appends to the disk's write bandwidth once the page cache stops
//! hiding it.
//!
//! **One operation per durable append (off by default).** With
//! [`LogConfig::durable_writes`], in `sync` mode an append made while
//! everything before it is on disk is written with `RWF_DSYNC`: one trip
//! to io_uring's worker threads
//! instead of a write and an `fdatasync` (on ext4 both leave the shard's
//! thread), 27% less CPU per durable append in
//! `fiber/examples/fs_sync_latency.rs`. Appends that find unsynced bytes
//! before them (a sync round in flight) only write, and the next round
//! covers them. Since the append holds the log's lock for the whole
//! durable write, proposals that arrive meanwhile go together into the
//! next one: group commit without a round. But the next append cannot
//! write while the sync runs, which loses under deep pipelines (Dongting's
//! shape: 59k puts/s with it, 77k without), so it is off by default.
//!
//! **Failures and retention.** A full disk or a failed write fails the
//! append with a typed error naming the file, and the log carries on once
//! space returns (tested on a real, full tmpfs); a failed `fdatasync` is
//! fatal for the log until it is reopened, and the open re-writes what that
//! sync may have lost (see [`log`](mod@log), "When I/O fails"). Whole
//! segments older than a wall-clock bound go with
//! [`RaftLog::mark_purge_by_age`], each segment header recording when it was
//! created.
//!
//! **Segments per group, grown in steps.** Each group has its own segments
//! (64 MiB by default) that grow with `fallocate` in 4 MiB steps (never
//! sparse: a full disk fails the append with [`StorageError::DiskFull`]
//! instead of a SIGBUS), so an idle group costs 4–8 MiB of disk (its last
//! step, zeroed 4 MiB past its last write in `sync` mode), not 64; only a
//! group whose active segment is half full keeps a spare beside it. Each
//! group's sync is its own `fdatasync`, issued concurrently with the other
//! groups' through io_uring.
//!
//! **Or one log per shard, shared by its groups** ([`ShardWal`] and
//! [`WalLog`], the runtime's default layout): every group's appends go to
//! one file, so one `fdatasync` per round makes all of them durable
//! (16 busy groups on a node cost one sync a round, not 16). The design,
//! its recovery rules and its numbers are in [`wal`] and
//! `docs/shared-log.md`; [`AnyLog`] holds a group's log in either layout.
//!
//! **One file descriptor per idle group.** A node hosts thousands of
//! groups under a hard `RLIMIT_NOFILE` it may not be allowed to raise
//! (20,000 on the machine this was built for, for 10,000 groups plus
//! sockets), so between calls a group keeps open only the file written on
//! every append: its active segment. Everything else is opened for the
//! call that needs it and closed before the call returns:
//! - the status file ([`StatusFile`]) and the log's `meta`, both two-copy
//!   files written rarely (term or vote changes and about once a second
//!   for the commit index; purges and snapshot installs), are opened for
//!   each save, synced and closed; their open reads them and closes them;
//! - index files, and the data files of sealed segments, are read through
//!   their memory maps, which stay valid with no descriptor; an index file
//!   is opened only to write a batch of records (every 256 entries), to
//!   grow (then remapped) or to be synced, and a sealed segment only to be
//!   synced by a truncation;
//! - the spare segment is open only while the preparer fills it, and is
//!   reopened under its segment name at the roll.
//!
//! So an idle group holds 1 descriptor where it held 4 (segment, index,
//! `meta`, status) plus 2 per sealed segment and 1 for a ready spare; a
//! busy one briefly holds a second or third (an index batch, the spare
//! being filled, a save), and opening a log holds one more while it checks
//! each sealed segment. The price: an open and a close every 256 entries
//! (an index batch) and on each save of the status. No writeback error is
//! lost by closing: the mapping keeps the inode, and its unseen error,
//! until the next open's sync (see [`io`](mod@io)). Sockets and snapshot
//! transfers are not counted here.
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

mod any_log;
mod append;
pub mod catalog;
pub mod dualfile;
pub mod error;
pub mod format;
pub mod index;
pub mod io;
pub mod latency;
pub mod log;
pub mod raft_log;
mod recovery;
pub mod segment;
pub mod sim;
pub mod snapshot;
pub mod snapshot_manager;
pub mod status;
mod truncate;
pub mod wal;
pub mod writer;

pub use any_log::AnyLog;
pub use error::{FormatError, Result, StorageError};
pub use format::{Record, RecordHeader, RecordRun, RunBuilder, parse_run};
pub use io::{DiskFile, DiskFs, Vfs, VfsFile};
pub use log::{LogConfig, SegmentInfo, SegmentLog, SyncMode};
pub use raft_log::RaftLog;
pub use snapshot::{SnapshotMeta, SnapshotReader, SnapshotStore, SnapshotWriter};
pub use snapshot_manager::{SnapshotManager, SnapshotSink, SnapshotSource};
pub use status::{HardState, StatusFile};
pub use wal::{ShardWal, WalConfig, WalLog};
pub use writer::LogWriter;
