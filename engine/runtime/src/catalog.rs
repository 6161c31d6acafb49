//! The node's record of groups added and removed at runtime
//! ([`sampan_storage::catalog`], the file `<data_dir>/groups.catalog`), so
//! that a restarted node runs the groups it ran before: the ones its config
//! names, minus those removed at runtime, plus those added at runtime.
//!
//! One fiber on shard 0 owns the file; a change from any shard is sent to
//! it and answered once durable. Changes that arrive while a batch is being
//! written go out together in the next one (one sync for all).
//!
//! A [`RaftServer`](crate::server::RaftServer) records a group added or
//! removed through its API or its service port. A group stopped
//! ([`Op::StopGroup`](crate::service::Op::StopGroup)) is not recorded: it
//! runs again after a restart.

use crate::config::GroupConfig;
use crate::service;
use sampan_fiber::{OneshotSender, Receiver, Sender, TaskClass};
use sampan_storage::catalog::{Change, Entry, GroupCatalog};
use sampan_storage::{DiskFs, StorageError};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The catalog's file in a node's data directory.
pub const CATALOG_FILE: &str = "groups.catalog";

/// Where a node's catalog is.
pub fn catalog_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CATALOG_FILE)
}

/// A change to make durable, and who waits for it.
type Request = (Change, OneshotSender<Result<Option<Entry>, String>>);

thread_local! {
    /// The catalog writers on this thread (shard 0), by server id.
    static WRITERS: RefCell<HashMap<u64, Sender<Request>>> = RefCell::new(HashMap::new());
}

/// What a node's catalog says to run, once read at start.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Groups added at runtime, with their config.
    pub added: BTreeMap<u64, GroupConfig>,
    /// Groups removed at runtime.
    pub removed: Vec<u64>,
    /// Entries that cannot be used (group, why): left alone, logged.
    pub unusable: Vec<(u64, String)>,
}

/// Opens the catalog of server `server` (on shard 0, at start), starts its
/// writer fiber, and returns what it holds.
pub async fn open(server: u64, data_dir: PathBuf) -> Result<Recorded, StorageError> {
    let path = catalog_path(&data_dir);
    sampan_fiber::fs::create_dir_all(&data_dir)
        .await
        .map_err(|e| StorageError::io(0, "create", &data_dir, 0, e))?;
    let catalog = GroupCatalog::open(&DiskFs, &path).await?;
    let mut recorded = Recorded::default();
    for (g, e) in catalog.entries() {
        match e {
            Entry::Removed => recorded.removed.push(*g),
            Entry::Added(b) => match service::decode_group_config(b.clone()) {
                Ok(cfg) if cfg.group_id == *g => {
                    recorded.added.insert(*g, cfg);
                }
                Ok(cfg) => recorded
                    .unusable
                    .push((*g, format!("its config names group {}", cfg.group_id))),
                Err(e) => recorded
                    .unusable
                    .push((*g, format!("its config does not decode: {e}"))),
            },
        }
    }
    let (tx, rx) = sampan_fiber::channel(64);
    sampan_fiber::spawn(TaskClass::Background, "group-catalog", write(catalog, rx)).map_err(
        |e| StorageError::Failed {
            group: 0,
            reason: format!("{}: cannot start its writer: {e}", path.display()),
        },
    )?;
    WRITERS.with(|w| w.borrow_mut().insert(server, tx));
    Ok(recorded)
}

/// Ends server `server`'s writer (on shard 0, at shutdown) once the
/// changes already sent are written.
pub fn close(server: u64) {
    WRITERS.with(|w| w.borrow_mut().remove(&server));
}

/// Makes `change` durable in server `server`'s catalog; returns the
/// group's entry before it (to undo it with). Runs on shard 0 (the caller
/// sends it there).
pub async fn record(server: u64, change: Change) -> Result<Option<Entry>, String> {
    let tx = WRITERS
        .with(|w| w.borrow().get(&server).cloned())
        .ok_or_else(|| "the node is stopping".to_string())?;
    let (done, answer) = sampan_fiber::oneshot();
    tx.send((change, done))
        .await
        .map_err(|_| "the node is stopping".to_string())?;
    answer
        .recv()
        .await
        .unwrap_or_else(|| Err("the node is stopping".to_string()))
}

/// The change that records `group` added with `cfg`.
pub fn added(cfg: &GroupConfig) -> Change {
    Change::Set(
        cfg.group_id,
        Entry::Added(service::encode_group_config(cfg)),
    )
}

/// The writer: takes every change waiting, writes them as one batch, and
/// answers each.
async fn write(mut catalog: GroupCatalog<DiskFs>, rx: Receiver<Request>) {
    let mut batch: Vec<Request> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        rx.drain_into(&mut batch, usize::MAX);
        let changes: Vec<Change> = batch.iter().map(|(c, _)| c.clone()).collect();
        let before: Vec<Option<Entry>> = changes
            .iter()
            .map(|c| catalog.entries().get(&c.group()).cloned())
            .collect();
        let result = catalog.record(&changes).await.map_err(|e| {
            log::error!(
                "{}: could not record {} group change(s): {e}",
                catalog.path().display(),
                changes.len()
            );
            e.to_string()
        });
        for ((_, done), before) in batch.drain(..).zip(before) {
            done.send(result.clone().map(|()| before));
        }
    }
}
