//! The node's record of groups added and removed at runtime
//! ([`sampan_storage::catalog`], the file `<data_dir>/groups.catalog`), so
//! that a restarted node runs the groups it ran before: the ones its config
//! names, minus those removed at runtime, plus those added at runtime.
//! Beside it, `<data_dir>/nodes.catalog` records the nodes learned
//! ([`Op::SetNodes`](crate::service::Op::SetNodes)) and forgotten
//! ([`Op::ForgetNode`](crate::service::Op::ForgetNode)) at runtime, so a
//! restarted node reaches the nodes it reached before.
//!
//! One fiber on shard 0 owns each file; a change from any shard is sent to
//! it and answered once durable. Changes that arrive while a batch is being
//! written go out together in the next one (one sync for all).
//!
//! A [`RaftServer`](crate::server::RaftServer) records a group added or
//! removed through its API or its service port. A group stopped
//! ([`Op::StopGroup`](crate::service::Op::StopGroup)) is not recorded: it
//! runs again after a restart.

use crate::config::GroupConfig;
use crate::service::{self, NodeAddrs};
use sampan_fiber::{OneshotSender, Receiver, Sender, TaskClass};
use sampan_storage::catalog::{Change, Entry, GroupCatalog};
use sampan_storage::{DiskFs, StorageError};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The group catalog's file in a node's data directory.
pub const CATALOG_FILE: &str = "groups.catalog";
/// The node catalog's file in a node's data directory.
pub const NODES_FILE: &str = "nodes.catalog";

/// Where a node's group catalog is.
pub fn catalog_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CATALOG_FILE)
}

/// Which of a node's two catalogs a change is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Book {
    /// Groups, by group id.
    Groups,
    /// Nodes' addresses, by node id.
    Nodes,
}

/// A change to make durable, and who waits for it.
type Request = (Change, OneshotSender<Result<Option<Entry>, String>>);

thread_local! {
    /// The catalog writers on this thread (shard 0), by server id and book.
    static WRITERS: RefCell<HashMap<(u64, Book), Sender<Request>>> = RefCell::new(HashMap::new());
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
    /// Nodes learned at runtime, with their addresses.
    pub nodes: BTreeMap<u64, NodeAddrs>,
    /// Nodes forgotten at runtime.
    pub forgotten: Vec<u64>,
    /// Node entries that cannot be used (node, why): left alone, logged.
    pub unusable_nodes: Vec<(u64, String)>,
}

/// Opens the catalogs of server `server` (on shard 0, at start), starts
/// their writer fibers, and returns what they hold.
pub async fn open(server: u64, data_dir: PathBuf) -> Result<Recorded, StorageError> {
    sampan_fiber::fs::create_dir_all(&data_dir)
        .await
        .map_err(|e| StorageError::io(0, "create", &data_dir, 0, e))?;
    let mut recorded = Recorded::default();
    let groups = GroupCatalog::open(&DiskFs, &catalog_path(&data_dir)).await?;
    for (g, e) in groups.entries() {
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
    let nodes = GroupCatalog::open(&DiskFs, &data_dir.join(NODES_FILE)).await?;
    for (n, e) in nodes.entries() {
        match e {
            Entry::Removed => recorded.forgotten.push(*n),
            Entry::Added(b) => match service::decode_nodes(b.clone()).as_deref() {
                Ok([one]) if one.node == *n => {
                    recorded.nodes.insert(*n, one.clone());
                }
                Ok(_) => recorded
                    .unusable_nodes
                    .push((*n, "it is not this node's one entry".into())),
                Err(e) => recorded
                    .unusable_nodes
                    .push((*n, format!("it does not decode: {e}"))),
            },
        }
    }
    for (book, catalog) in [(Book::Groups, groups), (Book::Nodes, nodes)] {
        let path = catalog.path().to_path_buf();
        let (tx, rx) = sampan_fiber::channel(64);
        sampan_fiber::spawn(TaskClass::Background, "catalog", write(catalog, rx)).map_err(|e| {
            StorageError::Failed {
                group: 0,
                reason: format!("{}: cannot start its writer: {e}", path.display()),
            }
        })?;
        WRITERS.with(|w| w.borrow_mut().insert((server, book), tx));
    }
    Ok(recorded)
}

/// Ends server `server`'s writers (on shard 0, at shutdown) once the
/// changes already sent are written.
pub fn close(server: u64) {
    WRITERS.with(|w| w.borrow_mut().retain(|(s, _), _| *s != server));
}

/// Makes `change` durable in server `server`'s catalog `book`; returns
/// the entry before it (to undo it with). Runs on shard 0 (the caller
/// sends it there).
pub async fn record(server: u64, book: Book, change: Change) -> Result<Option<Entry>, String> {
    let tx = WRITERS
        .with(|w| w.borrow().get(&(server, book)).cloned())
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

/// The change that records node `n`'s addresses.
pub fn node_set(n: &NodeAddrs) -> Change {
    Change::Set(
        n.node,
        Entry::Added(service::encode_nodes(std::slice::from_ref(n))),
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
                "{}: could not record {} change(s): {e}",
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
