//! How a server builds each group's parts: the extension points an
//! embedder fills (Dongting's `RaftFactory`: the state machine, the log,
//! the snapshot store) and the defaults (segment log, snapshot directory
//! store). The KV server's factory is `sampan_kv::kv_factory`.
//!
//! **For:** what the host opens when a group starts, and what an embedder
//! implements to bring its own state machine, log or snapshots. **Not
//! for:** running groups (`host`) or serving requests (`server`): both
//! use this module, neither is used by it.

use crate::config::{GroupConfig, LogLayout};
use crate::constants::SNAPSHOTS_KEPT;
use crate::state_machine::StateMachine;
use sampan_fiber::{Signal, TaskClass};
use sampan_storage::{
    AnyLog, DiskFile, DiskFs, LogConfig, LogWriter, RaftLog, SegmentLog, ShardWal, SnapshotManager,
    SnapshotStore, StorageError, WalConfig, WalLog,
};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::time::Duration;

/// `<data_dir>/group-<id>`: where a group's files live on a node.
pub fn group_dir(data_dir: &std::path::Path, group: u64) -> PathBuf {
    data_dir.join(format!("group-{group}"))
}

/// `<data_dir>/group-<id>/log`: a group's log directory (its segments, or
/// its `wal-meta` in the shared layout).
pub fn group_log_dir(data_dir: &std::path::Path, group: u64) -> PathBuf {
    group_dir(data_dir, group).join("log")
}

/// How often a shard's shared log deletes the segments no group needs
/// (and copies cold groups' entries forward).
const WAL_MAINTAIN_EVERY: Duration = Duration::from_secs(1);

/// A shard's shared log, opened by the first group that needs it (opening
/// reads every segment, so it is done once, on the shard, not at start).
#[derive(Clone)]
pub struct SharedLogSlot {
    inner: Rc<SlotInner>,
}

struct SlotInner {
    dir: PathBuf,
    data_dir: PathBuf,
    cfg: WalConfig,
    wal: RefCell<Option<ShardWal<DiskFs>>>,
    opening: Cell<bool>,
    opened: Signal,
}

impl std::fmt::Debug for SharedLogSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLogSlot")
            .field("dir", &self.inner.dir)
            .field("open", &self.inner.wal.borrow().is_some())
            .finish()
    }
}

impl SharedLogSlot {
    /// The slot of the shared log in `dir`, for groups under `data_dir`
    /// (`group-<id>/log`).
    pub fn new(dir: PathBuf, data_dir: PathBuf, cfg: WalConfig) -> SharedLogSlot {
        SharedLogSlot {
            inner: Rc::new(SlotInner {
                dir,
                data_dir,
                cfg,
                wal: RefCell::new(None),
                opening: Cell::new(false),
                opened: Signal::new(),
            }),
        }
    }

    /// The shared log if it is open.
    pub fn get(&self) -> Option<ShardWal<DiskFs>> {
        self.inner.wal.borrow().clone()
    }

    /// The shared log, opened (and its maintenance started) on first use.
    pub async fn open(&self) -> Result<ShardWal<DiskFs>, StorageError> {
        loop {
            if let Some(wal) = self.get() {
                return Ok(wal);
            }
            if !self.inner.opening.replace(true) {
                let opened = ShardWal::open(DiskFs, &self.inner.dir, self.inner.cfg.clone()).await;
                self.inner.opening.set(false);
                self.inner.opened.notify_all();
                let wal = opened?;
                *self.inner.wal.borrow_mut() = Some(wal.clone());
                self.start_maintenance();
                return Ok(wal);
            }
            self.inner.opened.wait().await;
        }
    }

    fn start_maintenance(&self) {
        let slot: Weak<SlotInner> = Rc::downgrade(&self.inner);
        let spawned = sampan_fiber::spawn(TaskClass::Background, "wal-maintain", async move {
            loop {
                sampan_fiber::sleep(WAL_MAINTAIN_EVERY).await;
                let Some(slot) = slot.upgrade() else { return };
                let Some(wal) = slot.wal.borrow().clone() else {
                    return;
                };
                let data_dir = slot.data_dir.clone();
                drop(slot);
                let log_dir = |g: u64| group_log_dir(&data_dir, g);
                if let Err(e) = wal.maintain(&log_dir).await {
                    log::warn!("shared log {}: maintenance: {e}", wal.dir().display());
                }
            }
        });
        if let Err(e) = spawned {
            log::warn!(
                "shared log {}: no maintenance fiber: {e}",
                self.inner.dir.display()
            );
        }
    }
}

/// What a group's log is opened from: its config, its directories, the
/// settings derived from the server's and the group's config, and the
/// shard's shared log writer (one sync round for all its groups).
#[derive(Debug, Clone)]
pub struct LogContext {
    /// The group.
    pub group: GroupConfig,
    /// `<data_dir>/group-<id>`: the group's directory (status file here).
    pub group_dir: PathBuf,
    /// `<data_dir>/group-<id>/log`: where the default log keeps segments.
    pub log_dir: PathBuf,
    /// `<data_dir>/group-<id>/snapshot`: where the default snapshot store
    /// keeps snapshots.
    pub snapshot_dir: PathBuf,
    /// Segment sizes and durability for the default log.
    pub config: LogConfig,
    /// The shard's log writer: group commit across the shard's groups
    /// (layout `per_group`).
    pub writer: LogWriter<DiskFile>,
    /// Which layout the default log uses.
    pub layout: LogLayout,
    /// The shard's shared log (layout `shared`).
    pub shared: SharedLogSlot,
}

/// Opens the default log of a group, in the node's layout.
pub async fn open_default_log(ctx: LogContext) -> Result<AnyLog<DiskFs>, StorageError> {
    match ctx.layout {
        LogLayout::PerGroup => open_segment_log(ctx).await.map(AnyLog::PerGroup),
        LogLayout::Shared => {
            let wal = ctx.shared.open().await?;
            WalLog::open(&wal, &ctx.log_dir, ctx.group.group_id, ctx.config.sync_mode)
                .await
                .map(AnyLog::Shared)
        }
    }
}

/// Opens the default log (segment files) of a group.
pub async fn open_segment_log(ctx: LogContext) -> Result<SegmentLog<DiskFs>, StorageError> {
    SegmentLog::open(
        DiskFs,
        &ctx.log_dir,
        ctx.group.group_id,
        ctx.config,
        ctx.writer,
    )
    .await
}

/// How a server builds each group's parts (Dongting's `RaftFactory`): the
/// state machine, the log and the snapshot store. Called on the group's
/// shard, once per start of the group (at server start, when a group is
/// added, after a restart).
pub trait RaftFactory: Send + Sync + 'static {
    /// The log type the groups use.
    type Log: RaftLog + Clone + 'static;
    /// The snapshot store type the groups use.
    type Snapshots: SnapshotManager;

    /// A fresh state machine for `group` (the newest snapshot, then the
    /// log, are replayed into it).
    fn state_machine(&self, group: &GroupConfig) -> Box<dyn StateMachine>;

    /// Opens (or creates) the log of a group.
    fn open_log(&self, ctx: LogContext) -> impl Future<Output = Result<Self::Log, StorageError>>;

    /// Opens (or creates) the snapshot store of a group.
    fn open_snapshots(
        &self,
        ctx: LogContext,
    ) -> impl Future<Output = Result<Self::Snapshots, StorageError>>;
}

/// Opens the default snapshot store (a directory per snapshot) of a group.
pub async fn open_snapshot_store(ctx: LogContext) -> Result<SnapshotStore<DiskFs>, StorageError> {
    SnapshotStore::open(
        DiskFs,
        &ctx.snapshot_dir,
        ctx.group.group_id,
        SNAPSHOTS_KEPT,
    )
    .await
}

/// A [`RaftFactory`] from a function that makes state machines, with the
/// default segment log. See [`machines`].
pub struct Machines<F>(F);

impl<F> std::fmt::Debug for Machines<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Machines")
    }
}

impl<F> RaftFactory for Machines<F>
where
    F: Fn(&GroupConfig) -> Box<dyn StateMachine> + Send + Sync + 'static,
{
    type Log = AnyLog<DiskFs>;
    type Snapshots = SnapshotStore<DiskFs>;

    fn state_machine(&self, group: &GroupConfig) -> Box<dyn StateMachine> {
        (self.0)(group)
    }

    fn open_log(&self, ctx: LogContext) -> impl Future<Output = Result<Self::Log, StorageError>> {
        open_default_log(ctx)
    }

    fn open_snapshots(
        &self,
        ctx: LogContext,
    ) -> impl Future<Output = Result<Self::Snapshots, StorageError>> {
        open_snapshot_store(ctx)
    }
}

/// A factory that gives every group a state machine from `make` and the
/// default log: all an embedder with its own state machine needs.
pub fn machines<F>(make: F) -> Machines<F>
where
    F: Fn(&GroupConfig) -> Box<dyn StateMachine> + Send + Sync + 'static,
{
    Machines(make)
}
