//! `ShardHost`: the Raft groups of one node on one shard, sharing what a
//! shard has once — the transport to the other nodes, the log writer (one
//! sync round makes many groups' appends durable), the ticker (hibernating
//! groups cost nothing per tick) and the liveness watch that wakes the
//! groups a lost node led. Groups are added and removed at runtime.
//!
//! Shard-local (`!Send`): create it on its shard and keep it there; the
//! server that spreads groups over shards reaches it through the shard's
//! mailbox.

use crate::config::{ConfigError, Durability, GroupConfig, ServerConfig};
use crate::factory::{
    LogContext, SharedLogSlot, group_dir, group_log_dir, open_default_log, open_snapshot_store,
};
use crate::group::net::{
    GroupDirectory, TransportOutbox, WakeList, drive_ticks, route_raft_frames, watch_peers,
};
use crate::group::{GroupError, GroupHandle, GroupParts, start};
use crate::raft::{self, GroupId, NodeId};
use crate::state_machine::StateMachine;
use bytes::Bytes;
use sampan_fiber::{FiberError, FiberGroup, TaskClass};
use sampan_net::{NetConfig, NetError, PeerAddr, Router, Transport};
use sampan_storage::latency::LatencySnapshot;
use sampan_storage::{
    DiskFile, DiskFs, LogConfig, LogWriter, RaftLog, SnapshotManager, StatusFile, StorageError,
    SyncMode, WalConfig,
};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

pub use crate::constants::PAYLOAD_BYTES_MAX;
use crate::constants::PEER_PROBES_PER_TIMEOUT;

/// Why a host or one of its groups could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A configuration value is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The transport failed (listen, peers).
    #[error("node {node}: network: {source}")]
    Net {
        /// This node.
        node: u64,
        /// The transport's error.
        source: NetError,
    },
    /// The runtime refused (not on a shard, shutting down).
    #[error("node {node}: runtime: {source}")]
    Fiber {
        /// This node.
        node: u64,
        /// The runtime's error.
        source: FiberError,
    },
    /// A group's log or status file could not be opened.
    #[error("group {group}: storage: {source}")]
    Storage {
        /// The group.
        group: u64,
        /// The storage error (names the file).
        source: StorageError,
    },
    /// The group runtime refused to start.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// The group is already running on this host.
    #[error("group {group} is already running here")]
    GroupExists {
        /// The group.
        group: u64,
    },
}

/// The groups of one node on one shard. See the module docs.
pub struct ShardHost {
    cfg: ServerConfig,
    transport: Transport,
    router: Router,
    outbox: Rc<TransportOutbox>,
    groups: GroupDirectory,
    fibers: RefCell<HashMap<u64, FiberGroup>>,
    /// The config each running group was started with.
    configs: RefCell<HashMap<u64, GroupConfig>>,
    writer: LogWriter<DiskFile>,
    /// The shard's shared log (layout `shared`), opened on first use.
    shared: SharedLogSlot,
    /// Groups that started or woke, for the shard's ticker.
    woken: WakeList,
    /// The nodes this shard knows, by id: their replication address (shard
    /// 0's) and service address. Group members must be among them.
    known: RefCell<BTreeMap<u64, Known>>,
    /// The peers the liveness watch probes (changed as nodes are learned
    /// and forgotten).
    watched: Rc<RefCell<BTreeSet<u64>>>,
}

/// The nodes `cfg`'s `servers` names, with their replication and service
/// addresses: what a node knows before its runtime changes.
pub fn configured_nodes(cfg: &ServerConfig) -> Result<BTreeMap<u64, Known>, ConfigError> {
    let services: HashMap<u64, PeerAddr> = cfg.service_addrs()?.into_iter().collect();
    Ok(cfg
        .parse_servers()?
        .into_iter()
        .map(|(id, replicate)| {
            let service = services.get(&id).cloned();
            (id, Known { replicate, service })
        })
        .collect())
}

/// A node's addresses as this shard knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// Its replication address (its shard 0's).
    pub replicate: PeerAddr,
    /// Its service address, if known.
    pub service: Option<PeerAddr>,
}

impl std::fmt::Debug for ShardHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardHost")
            .field("node", &self.cfg.node_id)
            .field("groups", &self.groups.borrow().len())
            .finish()
    }
}

impl ShardHost {
    /// Validates `cfg`, listens for peers on `listen` (port 0 picks one; the
    /// address bound is returned), and starts the shard's ticker. Must run
    /// on a shard. Peers, and the liveness watch over them, are added with
    /// [`ShardHost::add_peers`] once their addresses are known.
    pub fn start(
        cfg: ServerConfig,
        listen: SocketAddr,
    ) -> Result<(Rc<ShardHost>, SocketAddr), HostError> {
        cfg.validate()?;
        let node = cfg.node_id;
        let net = |source| HostError::Net { node, source };
        let groups: GroupDirectory = Rc::default();
        let woken: WakeList = Rc::default();
        let router = Router::new();
        route_raft_frames(&router, groups.clone(), PAYLOAD_BYTES_MAX).map_err(net)?;
        let mut net_config = NetConfig::new(cfg.cluster_id, node);
        (net_config.cluster_secret, net_config.client_keys) = cfg.net_keys()?;
        net_config.tls = cfg.node_tls()?;
        net_config.connections_max = cfg.max_connections;
        let transport = Transport::new(net_config, router.clone()).map_err(net)?;
        let addr = transport.listen(listen).map_err(net)?;
        let tick = Duration::from_millis(cfg.tick_ms);
        let fiber = |source| HostError::Fiber { node, source };
        sampan_fiber::spawn(
            TaskClass::Latency,
            "shard-ticker",
            drive_ticks(groups.clone(), woken.clone(), tick),
        )
        .map_err(fiber)?;
        let watched: Rc<RefCell<BTreeSet<u64>>> = Rc::default();
        // A fifth of an election timeout between probes: a silent peer is
        // found unreachable at most that much after the timeout. Probing
        // every tick was most of what a node of sleeping groups woke for
        // (about 400 wake-ups a second with two peers and 10 ms ticks).
        let probe_every = cfg
            .tick_ms
            .max(cfg.election_timeout_ms / PEER_PROBES_PER_TIMEOUT);
        sampan_fiber::spawn(
            TaskClass::Latency,
            "liveness",
            watch_peers(
                transport.clone(),
                groups.clone(),
                watched.clone(),
                Duration::from_millis(probe_every),
                Duration::from_millis(cfg.election_timeout_ms),
            ),
        )
        .map_err(fiber)?;
        let known = configured_nodes(&cfg)?;
        let outbox = Rc::new(TransportOutbox::new(transport.clone()));
        sampan_fiber::spawn(
            TaskClass::Latency,
            "heartbeats",
            TransportOutbox::flush_heartbeats(Rc::downgrade(&outbox)),
        )
        .map_err(fiber)?;
        let host = Rc::new(ShardHost {
            outbox,
            transport,
            router,
            groups,
            fibers: RefCell::new(HashMap::new()),
            configs: RefCell::new(HashMap::new()),
            writer: LogWriter::new(),
            woken,
            shared: SharedLogSlot::new(
                cfg.data_dir
                    .join("wal")
                    .join(format!("shard-{}", sampan_fiber::shard_id().unwrap_or(0))),
                cfg.data_dir.clone(),
                WalConfig {
                    segment_bytes: cfg.log.segment_bytes,
                    ..WalConfig::default()
                },
            ),
            known: RefCell::new(known),
            watched,
            cfg,
        });
        log::info!("node {node}: shard host listening on {addr}");
        Ok((host, addr))
    }

    /// Connects to the other nodes (`(id, replication address)`, this
    /// shard's), and watches them: a node down for an election timeout
    /// wakes the groups it led. A node not known yet becomes known (without
    /// a service address).
    pub fn add_peers(&self, peers: &[(u64, PeerAddr)]) -> Result<(), HostError> {
        let node = self.cfg.node_id;
        for (id, addr) in peers {
            self.transport
                .add_peer(*id, addr.clone())
                .map_err(|source| HostError::Net { node, source })?;
            self.watched.borrow_mut().insert(*id);
            self.known.borrow_mut().entry(*id).or_insert_with(|| Known {
                replicate: addr.clone(),
                service: None,
            });
        }
        Ok(())
    }

    /// Learns (or updates) node `id`'s addresses (`replicate` is its shard
    /// 0's) and, unless it is this node, connects to it on this shard's
    /// port.
    pub fn set_node(&self, id: u64, known: Known) -> Result<(), HostError> {
        let node = self.cfg.node_id;
        if id != node {
            let shard = sampan_fiber::shard_id().unwrap_or(0) as u16;
            let port = known.replicate.port().checked_add(shard).ok_or_else(|| {
                HostError::Config(ConfigError::new(
                    "servers",
                    format!(
                        "node {id}: replication port {} + shard {shard} passes 65535",
                        known.replicate.port()
                    ),
                ))
            })?;
            let changed =
                self.known.borrow().get(&id).map(|k| &k.replicate) != Some(&known.replicate);
            if changed || self.transport.connection(id).is_none() {
                self.transport
                    .add_peer(id, known.replicate.with_port(port))
                    .map_err(|source| HostError::Net { node, source })?;
            }
            self.watched.borrow_mut().insert(id);
        }
        self.known.borrow_mut().insert(id, known);
        Ok(())
    }

    /// Forgets node `id`: disconnects from it and stops watching it.
    /// Returns whether it was known.
    pub fn forget_node(&self, id: u64) -> bool {
        self.watched.borrow_mut().remove(&id);
        crate::stats::forget_peer(id);
        self.transport.remove_peer(id);
        self.known.borrow_mut().remove(&id).is_some()
    }

    /// The nodes this shard knows, with their addresses.
    pub fn known_nodes(&self) -> BTreeMap<u64, Known> {
        self.known.borrow().clone()
    }

    /// Node `id`'s service address, if known and given as an IP address
    /// (a host name's address may have changed: not given as a hint).
    pub fn service_hint(&self, id: u64) -> Option<SocketAddr> {
        self.known
            .borrow()
            .get(&id)?
            .service
            .as_ref()?
            .socket_addr()
    }

    /// Whether node `id` is known.
    pub fn knows(&self, id: u64) -> bool {
        self.known.borrow().contains_key(&id)
    }

    /// The shard's transport to the other nodes.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The router of frames arriving from the other nodes: a server adds
    /// its own kinds (request forwarding) beside the Raft ones.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// This node's settings.
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// Where the files of `group` live, and the settings and shared writer
    /// its log is opened with: what a [`crate::factory::RaftFactory`] gets.
    pub fn log_context(&self, group: &GroupConfig) -> LogContext {
        let dir = group_dir(&self.cfg.data_dir, group.group_id);
        LogContext {
            group: group.clone(),
            log_dir: group_log_dir(&self.cfg.data_dir, group.group_id),
            snapshot_dir: dir.join("snapshot"),
            group_dir: dir,
            config: LogConfig {
                sync_mode: match group.durability {
                    Durability::Sync => SyncMode::Sync,
                    Durability::Async => SyncMode::Async,
                },
                segment_bytes: self.cfg.log.segment_bytes,
                grow_step_bytes: self.cfg.log.grow_step_bytes,
                ..LogConfig::default()
            },
            writer: self.writer.clone(),
            layout: self.cfg.log.layout,
            shared: self.shared.clone(),
        }
    }

    /// Starts this node's replica of a group with `sm` as its state
    /// machine and the default log (segment files in
    /// `<data_dir>/group-<id>/log`). A new group is bootstrapped from its
    /// members; an existing one recovers from its files.
    pub async fn add_group(
        &self,
        group: &GroupConfig,
        sm: Box<dyn StateMachine>,
    ) -> Result<GroupHandle, HostError> {
        self.check_new(group)?;
        let log = open_default_log(self.log_context(group))
            .await
            .map_err(|source| HostError::Storage {
                group: group.group_id,
                source,
            })?;
        self.add_group_with_log(group, sm, log).await
    }

    /// Checks `group` against the servers and that it does not run here
    /// yet: before any of its files is opened (opening the log or the
    /// snapshot store of a running group would recover, or clean up, files
    /// it is using).
    pub fn check_new(&self, group: &GroupConfig) -> Result<(), HostError> {
        let known: Vec<(u64, ())> = self.known.borrow().keys().map(|id| (*id, ())).collect();
        group.validate(&known)?;
        let g = group.group_id;
        if self.groups.borrow().contains_key(&g) {
            return Err(HostError::GroupExists { group: g });
        }
        Ok(())
    }

    /// Starts this node's replica of a group over a log the caller opened
    /// (an embedder's own [`RaftLog`], or one from
    /// [`ShardHost::log_context`]) and the default snapshot store in
    /// `<data_dir>/group-<id>/snapshot`.
    pub async fn add_group_with_log<L: RaftLog + Clone + 'static>(
        &self,
        group: &GroupConfig,
        sm: Box<dyn StateMachine>,
        log: L,
    ) -> Result<GroupHandle, HostError> {
        self.check_new(group)?;
        let snapshots = open_snapshot_store(self.log_context(group))
            .await
            .map_err(|source| HostError::Storage {
                group: group.group_id,
                source,
            })?;
        self.add_group_with(group, sm, log, snapshots).await
    }

    /// Starts this node's replica of a group over a log and a snapshot
    /// store the caller opened (an embedder's own [`RaftLog`] and
    /// [`SnapshotManager`]); the status file lives in
    /// `<data_dir>/group-<id>/status`.
    pub async fn add_group_with<L, S>(
        &self,
        group: &GroupConfig,
        sm: Box<dyn StateMachine>,
        log: L,
        snapshots: S,
    ) -> Result<GroupHandle, HostError>
    where
        L: RaftLog + Clone + 'static,
        S: SnapshotManager,
    {
        self.check_new(group)?;
        let g = group.group_id;
        let storage = |source| HostError::Storage { group: g, source };
        let status = StatusFile::open(
            &DiskFs,
            &self.log_context(group).group_dir.join("status"),
            g,
        )
        .await
        .map_err(storage)?;
        // Lines about the group name its term from here on.
        sampan_fiber::log_context::set_term(g, status.state().term);
        let mut cfg = raft::Config::new(NodeId(self.cfg.node_id), GroupId(g));
        cfg.ticks_election = self.cfg.ticks_election();
        cfg.ticks_heartbeat = self.cfg.ticks_heartbeat();
        cfg.tick_ms = self.cfg.tick_ms;
        // The core mixes the node and group ids into its seed itself; the
        // seed here must add randomness, not those ids again: XORing them
        // in twice cancelled them, every replica of every group drew the
        // same election timeouts, and two followers split the vote in
        // lockstep round after round (9 s and 7 terms for a failover).
        cfg.seed = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            (self.cfg.node_id, g),
        );
        let ids = |set: BTreeSet<u64>| set.into_iter().map(NodeId).collect::<BTreeSet<_>>();
        let parts = GroupParts {
            cfg,
            log,
            status,
            sm,
            snapshots,
            policy: crate::group::SnapshotPolicy::of(group),
            outbox: self.outbox.clone(),
            // A joining replica takes the membership from the leader.
            bootstrap: (!group.join)
                .then(|| {
                    Ok::<_, ConfigError>((ids(group.member_ids()?), ids(group.observer_ids()?)))
                })
                .transpose()?,
            tick: None,
            woken: Some(self.woken.clone()),
        };
        let fibers =
            FiberGroup::new(format!("node-{}-group-{g}", self.cfg.node_id)).map_err(|source| {
                HostError::Fiber {
                    node: self.cfg.node_id,
                    source,
                }
            })?;
        let handle = start(parts, &fibers).await?;
        self.groups.borrow_mut().insert(g, handle.clone());
        // The ticker visits it from its next tick (it starts awake).
        self.woken.push(g);
        self.fibers.borrow_mut().insert(g, fibers);
        self.configs.borrow_mut().insert(g, group.clone());
        sampan_fiber::group_log!(info, g, "node {}: group {g} started", self.cfg.node_id);
        Ok(handle)
    }

    /// The config a running group was started with.
    pub fn group_config(&self, group: u64) -> Option<GroupConfig> {
        self.configs.borrow().get(&group).cloned()
    }

    /// The handle of a running group.
    pub fn group(&self, group: u64) -> Option<GroupHandle> {
        self.groups.borrow().get(&group).cloned()
    }

    /// [`GroupHandle::read_now_with`] on group `group`, if it runs here.
    pub fn read_now_with(
        &self,
        group: u64,
        make: impl FnOnce() -> Bytes,
    ) -> Option<Result<Bytes, GroupError>> {
        self.groups.borrow().get(&group)?.read_now_with(make)
    }

    /// The groups running here that stopped writing after a storage
    /// failure (a walk of the directory with no copies: the healer looks
    /// every second, and a shard may hold 10,000 groups).
    pub fn failed_group_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .groups
            .borrow()
            .iter()
            .filter(|(_, h)| h.is_failed())
            .map(|(g, _)| *g)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The groups running here.
    pub fn group_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.groups.borrow().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Stops this node's replica of `group` (its files stay); waits until
    /// its fibers have ended. Returns whether it was running.
    pub async fn stop_group(&self, group: u64) -> bool {
        self.groups.borrow_mut().remove(&group);
        self.configs.borrow_mut().remove(&group);
        let fibers = self.fibers.borrow_mut().remove(&group);
        match fibers {
            Some(f) => {
                f.cancel();
                f.join().await;
                sampan_fiber::group_log!(
                    info,
                    group,
                    "node {}: group {group} stopped",
                    self.cfg.node_id
                );
                sampan_fiber::log_context::forget(group);
                true
            }
            None => false,
        }
    }

    /// Stops this node's replica of `group` and deletes its files (log,
    /// status, snapshots): for a group removed everywhere. Returns whether
    /// it ran.
    pub async fn remove_group(&self, group: u64) -> Result<bool, HostError> {
        let ran = self.stop_group(group).await;
        let dir = group_dir(&self.cfg.data_dir, group);
        if sampan_fiber::fs::read_dir_names(&dir).await.is_ok() {
            sampan_fiber::fs::remove_dir_all(&dir)
                .await
                .map_err(|e| HostError::Storage {
                    group,
                    source: StorageError::io(group, "remove", &dir, 0, e),
                })?;
            if let Some(wal) = self.shared.get() {
                wal.forget_group(group);
            }
            sampan_fiber::group_log!(
                info,
                group,
                "node {}: group {group} removed, {} deleted",
                self.cfg.node_id,
                dir.display()
            );
        }
        Ok(ran)
    }

    /// Heartbeats (and responses) this shard's groups sent, and the batch
    /// frames that carried them (each holds every group's to one node).
    pub fn heartbeat_stats(&self) -> (u64, u64) {
        self.outbox.heartbeat_stats()
    }

    /// Raft messages the shard's outbox could not send (Raft resends).
    pub fn messages_dropped(&self) -> u64 {
        self.outbox.dropped()
    }

    /// Sync rounds of the shard's log writer, and file syncs they issued.
    pub fn writer_stats(&self) -> (u64, u64) {
        let (rounds, syncs) = self.writer.stats();
        let (wal_rounds, wal_syncs) = self.shared.get().map_or((0, 0), |w| w.stats());
        (rounds + wal_rounds, syncs + wal_syncs)
    }

    /// How long the shard's sync rounds took (its per-group logs' and its
    /// shared log's together).
    pub fn sync_latency(&self) -> LatencySnapshot {
        let mut all = self.writer.sync_latency();
        if let Some(w) = self.shared.get() {
            all.merge(&w.sync_latency());
        }
        all
    }

    /// Appends the shard's logs wrote and made durable in one operation,
    /// needing no sync round (`sync` mode, nothing unsynced before them).
    pub fn durable_writes(&self) -> u64 {
        self.writer.durable_writes()
    }

    /// Closes the transport; the groups stop hearing from their peers.
    pub fn close(&self) {
        self.transport.close();
    }

    /// Stops every group (their files stay), then closes the transport.
    pub async fn stop(&self) {
        for g in self.group_ids() {
            self.stop_group(g).await;
        }
        self.close();
    }
}
