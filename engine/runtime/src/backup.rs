//! Backups of a cluster's groups, and a node's data directory restored
//! from one.
//!
//! [`backup`] copies out, for each group, a snapshot its leader writes
//! for the purpose, through the service port
//! ([`Op::ReadSnapshot`](crate::service::Op::ReadSnapshot), an admin
//! operation): the cluster goes on serving meanwhile. A backup is a
//! directory:
//!
//! ```text
//! manifest                          the groups it holds (below)
//! group-<id>/snap-<index>-<term>/   each group's snapshot, in the snapshot
//!     meta, data                    store's own format (versioned, CRC32C)
//! ```
//!
//! It is written as `<dir>.partial` and renamed to `<dir>` once complete
//! and synced: a directory with the asked-for name is a whole backup.
//!
//! [`restore`] writes a node's data directory (which must be empty: the
//! node is not running) from a backup: each group's snapshot, a status
//! file whose term and commit index are the snapshot's, and, for a group
//! the node's config does not name, an entry in its group catalog with the
//! config the group had. Every node of the new cluster is restored from
//! the same backup (with the same `members`, if given); started, they are
//! a cluster whose groups hold the state as of the backup, and elect
//! leaders in a later term. Writes made after the backup are not in it.
//!
//! ```text
//! manifest: u32 magic | u16 version | u16 reserved | u64 created (unix ms)
//!           | u32 groups | per group: u64 group | u64 index | u64 term
//!           | u64 size | u32 data CRC32C | u64 node copied from
//!           | u32 length | group config | ... | u32 CRC32C of all before
//! ```

use crate::client::{Client, ClientError};
use crate::config::{GroupConfig, ServerConfig};
use crate::group::newest_leader;
use crate::raft::{Membership, NodeId};
use crate::service::{self, SnapshotRead};
use crate::wire::{decode_snapshot_meta, encode_snapshot_meta};
use bytes::{BufMut, Bytes, BytesMut};
use sampan_storage::catalog::GroupCatalog;
use sampan_storage::{DiskFs, HardState, SnapshotStore, StatusFile, StorageError};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

const MAGIC: u32 = 0x4B42_5053; // "SPBK"
const VERSION: u16 = 1;
/// The manifest's file name in a backup.
pub const MANIFEST: &str = "manifest";
/// Data bytes asked for per [`Op::ReadSnapshot`](crate::service::Op::ReadSnapshot).
const PIECE_BYTES: u32 = service::SNAPSHOT_PIECE_BYTES_MAX;
/// Times a group's copy starts over when a newer snapshot replaced the one
/// being copied.
const COPY_ATTEMPTS: u32 = 3;
/// Snapshots a backup's or a restored group's store keeps.
const KEEP: usize = 2;

/// Why a backup or a restore did not complete. Each names the group, file
/// or node it is about.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The backup directory is there already: a backup never overwrites.
    #[error("{}: already exists; a backup goes to a new directory", path.display())]
    Exists {
        /// The directory.
        path: PathBuf,
    },
    /// The data directory to restore into holds files: a restore only
    /// writes a node's data from nothing.
    #[error(
        "{}: is not empty; a restore writes a node's data directory from nothing (stop the node, move the directory away)",
        path.display()
    )]
    NotEmpty {
        /// The directory.
        path: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{}: {op}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A snapshot store (the backup's or the node's) failed; the error
    /// names the file.
    #[error("group {group}: {source}")]
    Storage {
        /// The group.
        group: u64,
        /// The storage error.
        source: StorageError,
    },
    /// The cluster did not answer a request for the group.
    #[error("group {group}: {source}")]
    Client {
        /// The group.
        group: u64,
        /// The client's error.
        source: ClientError,
    },
    /// No node in the list leads the group, nor names a leader, within the
    /// request timeout: there is nothing known up to date to copy.
    #[error(
        "group {group}: no leader found through {servers:?} within the request timeout (is a majority of its members up?)"
    )]
    NoLeader {
        /// The group.
        group: u64,
        /// The addresses asked.
        servers: Vec<SocketAddr>,
    },
    /// The backup is damaged or does not hold what its manifest says.
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The node restored is not a member of the group in the backup.
    #[error(
        "group {group}: node {node} is not a member of it in the backup (members {members:?}); \
         restore the nodes it had, or give the new members"
    )]
    NotAMember {
        /// The group.
        group: u64,
        /// The node being restored.
        node: u64,
        /// The group's voters and learners in the backup.
        members: BTreeSet<u64>,
    },
    /// A copy did not complete for another reason (a node answered
    /// something that does not fit, the runtime refused).
    #[error("group {group}: {reason}")]
    Failed {
        /// The group (0: not about one).
        group: u64,
        /// What happened.
        reason: String,
    },
}

/// One group in a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackedUpGroup {
    /// The group.
    pub group: u64,
    /// The last log index the snapshot covers.
    pub index: u64,
    /// The term of that entry.
    pub term: u64,
    /// Bytes of snapshot data.
    pub size: u64,
    /// CRC32C of the data.
    pub data_crc: u32,
    /// The node it was copied from (the group's leader then).
    pub node: u64,
    /// The group's config on that node.
    pub config: GroupConfig,
}

/// How a backup goes, as it goes: what [`backup`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupProgress<'a> {
    /// A group's snapshot, of `size` bytes, starts to be copied.
    Started {
        /// The group.
        group: u64,
        /// Bytes to copy.
        size: u64,
    },
    /// `copied` bytes of the group's snapshot are in the backup so far.
    Copied {
        /// The group.
        group: u64,
        /// Bytes copied.
        copied: u64,
    },
    /// The group's snapshot is whole in the backup.
    Done(&'a BackedUpGroup),
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// When it was taken (ms since the Unix epoch).
    pub created_unix_ms: u64,
    /// Its groups, by id.
    pub groups: Vec<BackedUpGroup>,
}

impl Manifest {
    /// The manifest file's bytes (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = BytesMut::with_capacity(64 + 128 * self.groups.len());
        b.put_u32_le(MAGIC);
        b.put_u16_le(VERSION);
        b.put_u16_le(0);
        b.put_u64_le(self.created_unix_ms);
        b.put_u32_le(u32::try_from(self.groups.len()).unwrap_or(u32::MAX));
        for g in &self.groups {
            for v in [g.group, g.index, g.term, g.size] {
                b.put_u64_le(v);
            }
            b.put_u32_le(g.data_crc);
            b.put_u64_le(g.node);
            crate::codec::put_bytes(&mut b, &service::encode_group_config(&g.config));
        }
        let crc = crc32c::crc32c(&b);
        b.put_u32_le(crc);
        b.to_vec()
    }

    /// Decodes a manifest file's bytes; the error says what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        let Some((body, crc)) = bytes.split_last_chunk::<4>() else {
            return Err("too short to be a manifest".into());
        };
        if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
            return Err("CRC mismatch: the manifest is damaged".into());
        }
        let mut r = crate::codec::Reader::new(Bytes::copy_from_slice(body));
        let e = |e: crate::codec::DecodeError| e.to_string();
        if r.u32("magic").map_err(e)? != MAGIC {
            return Err("not a Sampan backup manifest".into());
        }
        let version =
            u16::from(r.u8("version").map_err(e)?) | (u16::from(r.u8("version").map_err(e)?) << 8);
        if version != VERSION {
            return Err(format!(
                "manifest version {version}; this build reads version {VERSION}"
            ));
        }
        r.u8("reserved").map_err(e)?;
        r.u8("reserved").map_err(e)?;
        let created_unix_ms = r.u64("created").map_err(e)?;
        let n = r.count("groups", 48).map_err(e)?;
        let mut groups = Vec::with_capacity(n);
        for _ in 0..n {
            let (group, index, term, size) = (
                r.u64("group").map_err(e)?,
                r.u64("index").map_err(e)?,
                r.u64("term").map_err(e)?,
                r.u64("size").map_err(e)?,
            );
            let data_crc = r.u32("data crc").map_err(e)?;
            let node = r.u64("node").map_err(e)?;
            let config =
                service::decode_group_config(r.bytes("group config").map_err(e)?).map_err(e)?;
            if config.group_id != group {
                return Err(format!(
                    "group {group}'s config names group {}",
                    config.group_id
                ));
            }
            groups.push(BackedUpGroup {
                group,
                index,
                term,
                size,
                data_crc,
                node,
                config,
            });
        }
        r.finish("manifest").map_err(e)?;
        Ok(Manifest {
            created_unix_ms,
            groups,
        })
    }

    /// Reads and checks `<dir>/manifest`.
    pub fn read(dir: &Path) -> Result<Manifest, BackupError> {
        let path = dir.join(MANIFEST);
        let bytes = std::fs::read(&path).map_err(|source| BackupError::Io {
            op: "read",
            path: path.clone(),
            source,
        })?;
        Manifest::decode(&bytes).map_err(|reason| BackupError::Corrupt { path, reason })
    }
}

/// Where group `group`'s snapshot is in a backup.
fn group_dir(backup: &Path, group: u64) -> PathBuf {
    backup.join(format!("group-{group}"))
}

/// Copies a snapshot of each of `groups` (none: every group a node of
/// `servers` runs) from its leader into a new directory `out`, telling
/// `progress` how it goes (each group's start, every piece copied, each
/// group done). Runs on a client's shard (its files are written with the
/// runtime's I/O).
pub async fn backup(
    client: &Client,
    servers: &[SocketAddr],
    groups: &[u64],
    out: &Path,
    mut progress: impl FnMut(BackupProgress<'_>),
) -> Result<Manifest, BackupError> {
    let fs = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Io { op, path, source }
    };
    if exists(out).await {
        return Err(BackupError::Exists {
            path: out.to_path_buf(),
        });
    }
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    // A partial backup is what an interrupted earlier run left.
    if exists(&partial).await {
        sampan_fiber::fs::remove_dir_all(&partial)
            .await
            .map_err(fs("remove", &partial))?;
    }
    sampan_fiber::fs::create_dir_all(&partial)
        .await
        .map_err(fs("create", &partial))?;
    let ids: Vec<u64> = if groups.is_empty() {
        let mut all = BTreeSet::new();
        for addr in servers {
            match client.list_groups_at(*addr).await {
                Ok(ids) => all.extend(ids),
                Err(e) => log::warn!("backup: the groups of the node at {addr}: {e}"),
            }
        }
        all.into_iter().collect()
    } else {
        groups.to_vec()
    };
    if ids.is_empty() {
        return Err(BackupError::Failed {
            group: 0,
            reason: format!("no node of {servers:?} runs a group"),
        });
    }
    let mut manifest = Manifest {
        created_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        groups: Vec::with_capacity(ids.len()),
    };
    for group in ids {
        let done = copy_group(
            client,
            servers,
            group,
            &group_dir(&partial, group),
            &mut progress,
        )
        .await?;
        progress(BackupProgress::Done(&done));
        manifest.groups.push(done);
    }
    let path = partial.join(MANIFEST);
    write_synced(&path, manifest.encode()).await?;
    sampan_fiber::fs::rename(&partial, out)
        .await
        .map_err(fs("rename", &partial))?;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sampan_fiber::fs::sync_dir(parent)
        .await
        .map_err(fs("sync", parent))?;
    Ok(manifest)
}

/// Whether anything is at `path` (a file, a directory, a link), asked on
/// a helper thread: never a blocking call on the shard.
async fn exists(path: &Path) -> bool {
    let path = path.to_path_buf();
    sampan_fiber::blocking(move || std::fs::symlink_metadata(path).is_ok()).await
}

/// Writes `bytes` to a new file at `path` and syncs it and its directory.
async fn write_synced(path: &Path, bytes: Vec<u8>) -> Result<(), BackupError> {
    use sampan_storage::{Vfs, VfsFile};
    let io = |op| {
        let path = path.to_path_buf();
        move |source| BackupError::Io { op, path, source }
    };
    let file = DiskFs.open(path, true).await.map_err(io("create"))?;
    file.write_at_durable(bytes, 0).await.map_err(io("write"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    DiskFs.sync_dir(dir).await.map_err(io("sync dir"))
}

/// How often [`leader_of`] asks again while a group elects.
const LEADER_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// The service address of the node leading `group`, and its id, waiting
/// up to the client's request timeout while the group elects one (a
/// cluster just started, a leader just lost).
async fn leader_of(
    client: &Client,
    servers: &[SocketAddr],
    group: u64,
) -> Result<(SocketAddr, u64), BackupError> {
    let deadline = std::time::Instant::now() + client.config().request_timeout;
    loop {
        if let Some(found) = find_leader(client, servers, group).await {
            return Ok(found);
        }
        if std::time::Instant::now() >= deadline {
            return Err(BackupError::NoLeader {
                group,
                servers: servers.to_vec(),
            });
        }
        sampan_fiber::sleep(LEADER_POLL).await;
    }
}

/// A node of `servers` that leads `group`, else the leader they name,
/// found in their address book (`servers` need not list every node).
async fn find_leader(
    client: &Client,
    servers: &[SocketAddr],
    group: u64,
) -> Option<(SocketAddr, u64)> {
    let statuses = client.status(group).await;
    let known = || statuses.iter().filter_map(|s| s.status.as_ref().ok());
    if let Some(lead) = newest_leader(known())
        && let Some(at) = statuses.iter().find(|s| s.node == Some(lead.node))
    {
        return Some((at.addr, lead.node));
    }
    let named = known()
        .filter(|st| st.leader.is_some())
        .max_by_key(|st| st.term)
        .and_then(|st| st.leader);
    if let Some(leader) = named {
        for at in servers {
            let Ok(nodes) = client.list_nodes_at(*at).await else {
                continue;
            };
            let Some(entry) = nodes.into_iter().find(|n| n.node == leader) else {
                continue;
            };
            let text = entry.service.clone();
            let resolved = sampan_fiber::blocking(move || {
                use std::net::ToSocketAddrs;
                text.to_socket_addrs().ok().and_then(|mut a| a.next())
            })
            .await;
            if let Some(addr) = resolved {
                return Some((addr, leader));
            }
        }
    }
    None
}

/// Has the leader of `group` write a snapshot and copies it into `dir`
/// (a snapshot store of its own); starts over if a newer snapshot
/// replaced it meanwhile.
async fn copy_group(
    client: &Client,
    servers: &[SocketAddr],
    group: u64,
    dir: &Path,
    progress: &mut impl FnMut(BackupProgress<'_>),
) -> Result<BackedUpGroup, BackupError> {
    let storage = |source| BackupError::Storage { group, source };
    let store = SnapshotStore::open(DiskFs, dir, group, KEEP)
        .await
        .map_err(storage)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (addr, node) = leader_of(client, servers, group).await?;
        let client_err = |source| BackupError::Client { group, source };
        let saved = client.snapshot_at(addr, group).await.map_err(client_err)?;
        let at = (saved.index, saved.term);
        match copy_snapshot(client, addr, group, at, &store, progress).await {
            Ok((piece, config)) => {
                return Ok(BackedUpGroup {
                    group,
                    index: piece.index,
                    term: piece.term,
                    size: piece.size,
                    data_crc: piece.data_crc,
                    node,
                    config,
                });
            }
            Err(BackupError::Client { source, .. })
                if attempt < COPY_ATTEMPTS && source.to_string().contains("no stored snapshot") =>
            {
                log::warn!(
                    "backup: group {group}: the snapshot at {} on node {node} was replaced while \
                     being copied; copying a new one",
                    saved.index
                );
            }
            Err(e) => return Err(e),
        }
    }
}

/// Copies the snapshot at `at` of `group` from the node at `addr` into
/// `store`, checking its CRC; returns its first piece's description and
/// the group's config.
async fn copy_snapshot(
    client: &Client,
    addr: SocketAddr,
    group: u64,
    at: (u64, u64),
    store: &SnapshotStore<DiskFs>,
    progress: &mut impl FnMut(BackupProgress<'_>),
) -> Result<(service::SnapshotPiece, GroupConfig), BackupError> {
    let client_err = |source| BackupError::Client { group, source };
    let mismatch = |reason: String| BackupError::Failed {
        group,
        reason: format!("the node at {addr}: {reason}"),
    };
    let read = |offset| SnapshotRead {
        at: Some(at),
        offset,
        bytes_max: PIECE_BYTES,
    };
    let first = client
        .read_snapshot_at(addr, group, read(0))
        .await
        .map_err(client_err)?;
    if (first.index, first.term) != at {
        return Err(mismatch(format!(
            "asked for the snapshot at {at:?}, got ({}, {})",
            first.index, first.term
        )));
    }
    let config = service::decode_group_config(first.group_config.clone())
        .map_err(|e| mismatch(format!("the group's config: {e}")))?;
    let mut sink = store
        .create(first.index, first.term, first.meta.to_vec())
        .await
        .map_err(|source| BackupError::Storage { group, source })?;
    progress(BackupProgress::Started {
        group,
        size: first.size,
    });
    let mut piece = first.clone();
    loop {
        if piece.offset != sink.size()
            || (piece.size, piece.data_crc) != (first.size, first.data_crc)
        {
            let why = format!(
                "a piece at offset {} of {} bytes does not follow the {} bytes copied",
                piece.offset,
                piece.size,
                sink.size()
            );
            sink.abort().await;
            return Err(mismatch(why));
        }
        let end = piece.data.is_empty() || sink.size() + piece.data.len() as u64 >= first.size;
        if let Err(source) = sink.write_owned(piece.data.to_vec()).await {
            sink.abort().await;
            return Err(BackupError::Storage { group, source });
        }
        progress(BackupProgress::Copied {
            group,
            copied: sink.size(),
        });
        if end {
            break;
        }
        piece = match client
            .read_snapshot_at(addr, group, read(sink.size()))
            .await
        {
            Ok(p) => p,
            Err(e) => {
                sink.abort().await;
                return Err(client_err(e));
            }
        };
    }
    if sink.size() != first.size || sink.crc() != first.data_crc {
        let (size, crc) = (sink.size(), sink.crc());
        sink.abort().await;
        return Err(mismatch(format!(
            "copied {size} bytes with CRC {crc:#010x}; the snapshot has {} bytes with CRC {:#010x}",
            first.size, first.data_crc
        )));
    }
    sink.finish()
        .await
        .map_err(|source| BackupError::Storage { group, source })?;
    Ok((first, config))
}

/// What [`restore`] wrote for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredGroup {
    /// The group.
    pub group: u64,
    /// The snapshot's last index (the restored group's commit index).
    pub index: u64,
    /// Its term.
    pub term: u64,
    /// Bytes of state.
    pub size: u64,
    /// Its voters, as restored.
    pub voters: BTreeSet<u64>,
    /// Its learners, as restored.
    pub learners: BTreeSet<u64>,
    /// Recorded in the node's group catalog (its config does not name it).
    pub cataloged: bool,
}

/// What [`restore`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RestoreReport {
    /// The groups restored.
    pub groups: Vec<RestoredGroup>,
    /// Groups of the backup this node is not a member of (left out).
    pub skipped: Vec<u64>,
    /// Groups the node's config names that the backup does not hold:
    /// they start empty.
    pub not_in_backup: Vec<u64>,
}

/// Writes the data directory of node `server` from the backup at
/// `backup`, for a node that is not running and has no data: each group
/// of the backup this node is a member of (or all of them, with
/// `members`: the voters every group gets, the same on every node
/// restored) gets its snapshot, a status file at the snapshot's term and
/// index, and, when `configured` does not name it, an entry in the node's
/// group catalog. Runs the storage code on a runtime of its own; call it
/// from a plain thread.
pub fn restore(
    server: &ServerConfig,
    configured: &[GroupConfig],
    backup: &Path,
    members: Option<&BTreeSet<u64>>,
) -> Result<RestoreReport, BackupError> {
    let manifest = Manifest::read(backup)?;
    let data_dir = server.data_dir.clone();
    match std::fs::read_dir(&data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty { path: data_dir });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(BackupError::Io {
                op: "list",
                path: data_dir,
                source,
            });
        }
    }
    let node = server.node_id;
    let configured: BTreeSet<u64> = configured.iter().map(|g| g.group_id).collect();
    let members = members.cloned();
    let backup = backup.to_path_buf();
    let runtime = sampan_fiber::Runtime::builder()
        .name("sampan-restore")
        .shards(1)
        .pin_cpus(false)
        .build()
        .map_err(|e| BackupError::Failed {
            group: 0,
            reason: format!("starting the runtime: {e}"),
        })?;
    let shard = runtime.shard(0).map_err(|e| BackupError::Failed {
        group: 0,
        reason: e.to_string(),
    })?;
    let report = shard
        .run_blocking(sampan_fiber::TaskClass::Latency, move || async move {
            restore_on_shard(node, &data_dir, &configured, &backup, &manifest, members).await
        })
        .map_err(|e| BackupError::Failed {
            group: 0,
            reason: e.to_string(),
        })?;
    let _ = runtime.shutdown(std::time::Duration::from_secs(5));
    report
}

async fn restore_on_shard(
    node: u64,
    data_dir: &Path,
    configured: &BTreeSet<u64>,
    backup: &Path,
    manifest: &Manifest,
    members: Option<BTreeSet<u64>>,
) -> Result<RestoreReport, BackupError> {
    let mut report = RestoreReport::default();
    let mut catalog = Vec::new();
    for g in &manifest.groups {
        let group = g.group;
        let storage = |source| BackupError::Storage { group, source };
        let dir = group_dir(backup, group);
        let from = SnapshotStore::open(DiskFs, &dir, group, usize::MAX)
            .await
            .map_err(storage)?;
        let stored = from
            .list()
            .await
            .map_err(storage)?
            .into_iter()
            .find(|m| (m.last_index, m.last_term) == (g.index, g.term))
            .ok_or_else(|| BackupError::Corrupt {
                path: dir.clone(),
                reason: format!(
                    "no snapshot at index {} (term {}), which the manifest lists",
                    g.index, g.term
                ),
            })?;
        if (stored.size, stored.data_crc) != (g.size, g.data_crc) {
            return Err(BackupError::Corrupt {
                path: from.path_of(&stored),
                reason: format!(
                    "holds {} bytes with CRC {:#010x}; the manifest says {} bytes with CRC {:#010x}",
                    stored.size, stored.data_crc, g.size, g.data_crc
                ),
            });
        }
        let bad_meta = |reason: String| BackupError::Corrupt {
            path: from.path_of(&stored),
            reason,
        };
        let mut meta = decode_snapshot_meta(Bytes::from(stored.config.clone()))
            .map_err(|e| bad_meta(format!("its meta: {e}")))?;
        if (meta.index, meta.term) != (g.index, g.term) {
            return Err(bad_meta(format!(
                "its meta names index {} term {}",
                meta.index, meta.term
            )));
        }
        if let Some(voters) = &members {
            meta.membership = Membership::new(
                voters.iter().copied().map(NodeId).collect(),
                BTreeSet::new(),
            )
            .map_err(|e| BackupError::Failed {
                group,
                reason: format!("members {voters:?}: {e}"),
            })?;
        }
        let ids = |s: &BTreeSet<NodeId>| s.iter().map(|n| n.0).collect::<BTreeSet<u64>>();
        let (voters, learners) = (
            ids(&meta.membership.voters_all()),
            ids(&meta.membership.learners()),
        );
        if !meta.membership.nodes().contains(&NodeId(node)) {
            if members.is_none() {
                report.skipped.push(group);
                continue;
            }
            return Err(BackupError::NotAMember {
                group,
                node,
                members: voters.union(&learners).copied().collect(),
            });
        }
        let target = crate::factory::group_dir(data_dir, group);
        let to = SnapshotStore::open(DiskFs, &target.join("snapshot"), group, KEEP)
            .await
            .map_err(storage)?;
        let mut reader = from.reader(&stored).await.map_err(storage)?;
        let mut sink = to
            .create(meta.index, meta.term, encode_snapshot_meta(&meta))
            .await
            .map_err(storage)?;
        // The reader checks the data's CRC as it goes, and fails the last
        // chunk of data that does not match.
        loop {
            match reader.next_chunk(PIECE_BYTES as usize) {
                Ok(Some((_, chunk))) => {
                    if let Err(e) = sink.write_owned(chunk.to_vec()).await {
                        sink.abort().await;
                        return Err(storage(e));
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    sink.abort().await;
                    return Err(storage(e));
                }
            }
        }
        sink.finish().await.map_err(storage)?;
        let mut status = StatusFile::open(&DiskFs, &target.join("status"), group)
            .await
            .map_err(storage)?;
        status
            .save(&HardState {
                term: meta.term,
                vote: None,
                commit_index: meta.index,
                config: Vec::new(),
            })
            .await
            .map_err(storage)?;
        let cataloged = !configured.contains(&group);
        if cataloged {
            let list =
                |s: &BTreeSet<u64>| s.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
            let cfg = GroupConfig {
                members: list(&voters),
                observers: list(&learners),
                ..g.config.clone()
            };
            catalog.push(crate::catalog::added(&cfg));
        }
        report.groups.push(RestoredGroup {
            group,
            index: meta.index,
            term: meta.term,
            size: stored.size,
            voters,
            learners,
            cataloged,
        });
    }
    if !catalog.is_empty() {
        let path = crate::catalog::catalog_path(data_dir);
        let mut groups = GroupCatalog::open(&DiskFs, &path)
            .await
            .map_err(|source| BackupError::Storage { group: 0, source })?;
        groups
            .record(&catalog)
            .await
            .map_err(|source| BackupError::Storage { group: 0, source })?;
    }
    let restored: BTreeSet<u64> = manifest.groups.iter().map(|g| g.group).collect();
    report.not_in_backup = configured.difference(&restored).copied().collect();
    Ok(report)
}
