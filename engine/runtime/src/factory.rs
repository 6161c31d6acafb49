//! How a server builds each group's parts: the extension points an
//! embedder fills (Dongting's `RaftFactory`: the state machine, the log,
//! the snapshot store) and the defaults (segment log, snapshot directory
//! store). The KV server's factory is `sampan_kv::kv_factory`.
//!
//! **For:** what the host opens when a group starts, and what an embedder
//! implements to bring its own state machine, log or snapshots. **Not
//! for:** running groups (`host`) or serving requests (`server`): both
//! use this module, neither is used by it.

use crate::config::GroupConfig;
use crate::constants::SNAPSHOTS_KEPT;
use crate::state_machine::StateMachine;
use sampan_storage::{
    DiskFile, DiskFs, LogConfig, LogWriter, RaftLog, SegmentLog, SnapshotManager, SnapshotStore,
    StorageError,
};
use std::future::Future;
use std::path::PathBuf;

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
    /// The shard's log writer: group commit across the shard's groups.
    pub writer: LogWriter<DiskFile>,
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
    type Log = SegmentLog<DiskFs>;
    type Snapshots = SnapshotStore<DiskFs>;

    fn state_machine(&self, group: &GroupConfig) -> Box<dyn StateMachine> {
        (self.0)(group)
    }

    fn open_log(&self, ctx: LogContext) -> impl Future<Output = Result<Self::Log, StorageError>> {
        open_segment_log(ctx)
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
