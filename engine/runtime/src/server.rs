//! `RaftServer`: one node of a Sampan cluster — a runtime of shards, each
//! hosting the groups placed on it ([`ShardHost`]), a service port for
//! clients on every shard, and [`GroupRef`] handles that work from any
//! thread.
//!
//! - **Placement.** Group `g` lives on shard `g % shards` for life. Every
//!   node runs the same number of shards, so a group's replicas sit on the
//!   same shard index everywhere; shard `i` talks to shard `i` of the other
//!   nodes on replication port `replicate_port + i`.
//! - **Requests.** A request names its group. It reaches the owning shard
//!   directly (a handle used on that shard), through the shard's mailbox
//!   (any other thread or shard), or over the service port. A replica that
//!   is not the leader forwards it to the leader over the replication link
//!   ([`Route::Forward`], the default), or answers
//!   [`ServerError::NotLeader`] with the leader's id and service address
//!   ([`Route::Redirect`]). While no leader is known, a forwarded request
//!   waits (up to `request_timeout_ms`) for one to be elected.
//! - **Extension.** A [`RaftFactory`] gives each group its state machine and
//!   its log (`sampan-storage`'s segment log by default, or the embedder's
//!   own [`RaftLog`](sampan_storage::RaftLog)).
//!
//! ```no_run
//! use bytes::Bytes;
//! use sampan::config::{GroupConfig, ServerConfig};
//! use sampan::server::{RaftServer, machines};
//! use sampan::state_machine::{Small, SmallState, StateMachineError};
//!
//! /// Counts the commands it applied.
//! #[derive(Default)]
//! struct Count(u64);
//!
//! impl SmallState for Count {
//!     fn apply(&mut self, _command: &Bytes) -> Bytes {
//!         self.0 += 1;
//!         self.save()
//!     }
//!     fn read(&self, _query: &Bytes) -> Result<Bytes, StateMachineError> {
//!         Ok(self.save())
//!     }
//!     fn save(&self) -> Bytes {
//!         Bytes::copy_from_slice(&self.0.to_le_bytes())
//!     }
//!     fn load(bytes: Bytes) -> Result<Self, StateMachineError> {
//!         let n = bytes[..].try_into().map_err(|_| StateMachineError::BadQuery("8 bytes".into()))?;
//!         Ok(Count(u64::from_le_bytes(n)))
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg: ServerConfig = toml::from_str(r#"
//!     node_id = 1
//!     servers = "1,127.0.0.1:4001"
//!     replicate_port = 4001
//!     service_port = 5001
//!     data_dir = "/tmp/sampan-doc"
//! "#)?;
//! let group: GroupConfig = toml::from_str("group_id = 1\nmembers = \"1\"")?;
//! let server = RaftServer::start(cfg, &[group], machines(|_| Box::new(Small::new(Count::default()))))?;
//! server.group(1).propose_blocking(Bytes::from_static(b"tick"))?;
//! server.shutdown()?;
//! # Ok(()) }
//! ```

use crate::catalog::Book;
use crate::codec::DecodeError;
use crate::config::{ConfigError, GroupConfig, ServerConfig};
pub use crate::constants::SNAPSHOTS_KEPT;
use crate::constants::{HEAL_BACKOFF_MAX, HEAL_BACKOFF_MIN, HEAL_CHECK_EVERY};
pub use crate::factory::{
    LogContext, Machines, RaftFactory, machines, open_segment_log, open_snapshot_store,
};
use crate::group::{GroupError, GroupHandle, GroupStatus, SnapshotSaved};
use crate::host::{HostError, Known, ShardHost};
use crate::service::{
    self, NodeAddrs, Op, Route, ServerError, ServiceRequest, decode_reply, encode_reply,
    encode_status,
};
use bytes::Bytes;
use sampan_fiber::{FiberError, Runtime, RuntimeBuilder, RuntimeHandle, ShutdownReport, TaskClass};
use sampan_net::{Body, Incoming, NetError, PeerAddr, Privilege, Router};
use sampan_storage::catalog::{Change, Entry};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What every shard of one server shares; `Send + Sync`.
#[derive(Debug)]
struct Shared {
    /// Tells this server's shard state apart from another server's in the
    /// same process (tests run several nodes in one process).
    id: u64,
    node: u64,
    shards: usize,
    runtime: RuntimeHandle,
    request_timeout: Duration,
    /// How long to wait between looks for a leader while one is elected.
    retry_pause: Duration,
    /// Starts a replica of a group with the server's factory.
    adder: Arc<dyn GroupAdder>,
    /// The groups this node runs at start are running: until then a
    /// request for a group it does not run yet is "try again", not "no
    /// such group" (its service port listens before its groups start).
    started: std::sync::atomic::AtomicBool,
}

/// Starts a group's replica on a shard host with a server's factory (the
/// factory's type erased, so the shard-side code needs no type parameter).
trait GroupAdder: Send + Sync + std::fmt::Debug {
    fn add(
        &self,
        host: Rc<ShardHost>,
        group: GroupConfig,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), HostError>>>>;
}

struct Adder<F>(Arc<F>);

impl<F> std::fmt::Debug for Adder<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Adder")
    }
}

impl<F: RaftFactory> GroupAdder for Adder<F> {
    fn add(
        &self,
        host: Rc<ShardHost>,
        g: GroupConfig,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), HostError>>>> {
        let factory = self.0.clone();
        Box::pin(async move {
            let storage = |source| HostError::Storage {
                group: g.group_id,
                source,
            };
            host.check_new(&g)?;
            let ctx = host.log_context(&g);
            let log = factory.open_log(ctx.clone()).await.map_err(storage)?;
            let snapshots = factory.open_snapshots(ctx).await.map_err(storage)?;
            host.add_group_with(&g, factory.state_machine(&g), log, snapshots)
                .await?;
            Ok(())
        })
    }
}

impl Shared {
    fn owner(&self, group: u64) -> usize {
        (group % self.shards as u64) as usize
    }

    fn not_leader(&self, group: u64, leader: Option<u64>) -> ServerError {
        ServerError::NotLeader {
            group,
            node: self.node,
            leader,
            addr: leader.and_then(|l| local_host(self.id)?.service_hint(l)),
        }
    }

    fn shutting_down(&self) -> ServerError {
        ServerError::ShuttingDown { node: self.node }
    }

    /// What a request for `group`, which does not run here, is answered:
    /// "no such group" once the node's groups have started; before,
    /// "unreachable" (a client retries it), since the group may be one
    /// about to start.
    fn no_such_group(&self, group: u64) -> ServerError {
        if self.started.load(Ordering::Acquire) {
            ServerError::NoSuchGroup {
                group,
                node: self.node,
            }
        } else {
            ServerError::Unreachable {
                group,
                node: self.node,
                reason: format!(
                    "node {} is starting: its groups are not running yet",
                    self.node
                ),
            }
        }
    }
}

thread_local! {
    /// The shard hosts on this thread, by server id.
    static HOSTS: RefCell<HashMap<u64, Rc<ShardHost>>> = RefCell::new(HashMap::new());
}

fn local_host(server: u64) -> Option<Rc<ShardHost>> {
    HOSTS.with(|h| h.borrow().get(&server).cloned())
}

/// Restarts, from their files, the replicas on this shard that stopped
/// writing after a storage failure (a full disk, an I/O error), so a node
/// resumes once space returns. A restart that fails (the disk is still
/// full) is tried again with a growing pause; the replica meanwhile
/// refuses writes with the failure, and the other replicas go on.
async fn heal_failed_groups(shared: Arc<Shared>) {
    // group -> (its config, when to try next, the pause after that).
    let mut waiting: HashMap<u64, (GroupConfig, Instant, Duration)> = HashMap::new();
    // group -> (when it was last restarted, the pause before the next).
    let mut backoff: HashMap<u64, (Instant, Duration)> = HashMap::new();
    loop {
        sampan_fiber::sleep(HEAL_CHECK_EVERY).await;
        let Some(host) = local_host(shared.id) else {
            return;
        };
        let now = Instant::now();
        for g in host.failed_group_ids() {
            let Some(handle) = host.group(g) else {
                continue;
            };
            let Some(GroupError::Storage { fault, reason, .. }) = handle.failure() else {
                continue;
            };
            let Some(cfg) = host.group_config(g) else {
                continue;
            };
            // Restarted a moment ago and failed again: wait, longer each
            // time; healthy for a while: at once, from the shortest pause.
            let (at, pause) = match backoff.get(&g) {
                Some((last, pause)) if now.duration_since(*last) < HEAL_BACKOFF_MAX * 2 => {
                    (*last + *pause, (*pause * 2).min(HEAL_BACKOFF_MAX))
                }
                _ => (now, HEAL_BACKOFF_MIN),
            };
            sampan_fiber::group_log!(
                warn,
                g,
                "node {}: group {g} stopped writing ({fault}: {reason}); restarting it from its files \
                 (its files are checked again as it opens)",
                shared.node
            );
            host.stop_group(g).await;
            waiting.insert(g, (cfg, at, pause));
        }
        let due: Vec<u64> = waiting
            .iter()
            .filter(|(_, (_, at, _))| *at <= now)
            .map(|(g, _)| *g)
            .collect();
        for g in due {
            let Some((cfg, _, pause)) = waiting.remove(&g) else {
                continue;
            };
            match shared.adder.add(host.clone(), cfg.clone()).await {
                Ok(()) => {
                    sampan_fiber::group_log!(
                        info,
                        g,
                        "node {}: group {g} restarted after a storage failure",
                        shared.node
                    );
                    backoff.insert(g, (Instant::now(), pause));
                }
                Err(e) => {
                    sampan_fiber::group_log!(
                        warn,
                        g,
                        "node {}: group {g} cannot restart yet ({e}); trying again in {pause:?}",
                        shared.node
                    );
                    let next = (pause * 2).min(HEAL_BACKOFF_MAX);
                    waiting.insert(g, (cfg, Instant::now() + pause, next));
                }
            }
        }
    }
}

static SERVER_IDS: AtomicU64 = AtomicU64::new(1);

/// One node: shards hosting groups, their service ports, and the handles
/// to reach the groups. See the module docs.
pub struct RaftServer<F: RaftFactory> {
    shared: Arc<Shared>,
    factory: Arc<F>,
    cfg: ServerConfig,
    runtime: Mutex<Option<Runtime>>,
}

impl<F: RaftFactory> std::fmt::Debug for RaftServer<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftServer")
            .field("node", &self.shared.node)
            .field("shards", &self.shared.shards)
            .finish()
    }
}

impl<F: RaftFactory> RaftServer<F> {
    /// Validates `cfg` and `groups`, starts a runtime with `cfg.shards`
    /// shards, listens on the replication and service ports, connects to
    /// the other nodes and starts this node's replica of each group (new
    /// groups bootstrap, existing ones recover from their files). Call it
    /// from a plain thread, not from a shard.
    pub fn start(cfg: ServerConfig, groups: &[GroupConfig], factory: F) -> Result<Self, HostError> {
        Self::start_with(cfg, groups, factory, Runtime::builder())
    }

    /// [`RaftServer::start`] with runtime settings of the caller's (io
    /// memory, CPU pinning, stall detection); the shard count and the name
    /// come from `cfg`.
    pub fn start_with(
        cfg: ServerConfig,
        groups: &[GroupConfig],
        factory: F,
        builder: RuntimeBuilder,
    ) -> Result<Self, HostError> {
        cfg.validate()?;
        let node = cfg.node_id;
        raise_open_files_limit(node);
        let servers = cfg.parse_servers()?;
        for g in groups {
            g.validate(&servers)?;
        }
        let fiber = |source| HostError::Fiber { node, source };
        let mut builder = builder.name(format!("sampan-node-{node}"));
        if cfg.shards > 0 {
            builder = builder.shards(cfg.shards);
        }
        let runtime = builder.build().map_err(fiber)?;
        let shards = runtime.shards();
        check_ports(&cfg, &servers, shards)?;
        let factory = Arc::new(factory);
        let shared = Arc::new(Shared {
            adder: Arc::new(Adder(factory.clone())),
            id: SERVER_IDS.fetch_add(1, Ordering::Relaxed),
            node,
            shards,
            runtime: runtime.handle(),
            request_timeout: Duration::from_millis(cfg.request_timeout_ms),
            retry_pause: Duration::from_millis(cfg.tick_ms),
            started: std::sync::atomic::AtomicBool::new(false),
        });
        let own = cfg.listen_ip()?;
        for shard in 0..shards {
            let (mut cfg, shared) = (cfg.clone(), shared.clone());
            // Each shard's listeners hold their share (the kernel spreads
            // connections over the shards' SO_REUSEPORT sockets).
            cfg.max_connections = cfg.max_connections.div_ceil(shards);
            let replicate = SocketAddr::new(own, cfg.replicate_port + shard as u16);
            let service = SocketAddr::new(own, cfg.service_port);
            run_on(&runtime.handle(), node, shard, move || async move {
                let (host, _) = ShardHost::start(cfg, replicate)?;
                let net = |source| HostError::Net { node, source };
                let forwarded = shared.clone();
                host.router()
                    .register(service::kind::FORWARD, move |incoming| {
                        answer(forwarded.clone(), incoming, false);
                    })
                    .map_err(net)?;
                let clients = Router::new();
                let served = shared.clone();
                clients
                    .register(service::kind::CLIENT, move |incoming| {
                        answer(served.clone(), incoming, true);
                    })
                    .map_err(net)?;
                host.transport()
                    .listen_service(service, clients)
                    .map_err(net)?;
                HOSTS.with(|h| h.borrow_mut().insert(shared.id, host));
                sampan_fiber::spawn(
                    TaskClass::Background,
                    "storage-healer",
                    heal_failed_groups(shared.clone()),
                )
                .map_err(|source| HostError::Fiber { node, source })?;
                Ok::<(), HostError>(())
            })??;
        }
        let (id, data_dir) = (shared.id, cfg.data_dir.clone());
        let recorded = run_on(&runtime.handle(), node, 0, move || {
            crate::catalog::open(id, data_dir)
        })?
        .map_err(|source| HostError::Storage { group: 0, source })?;
        let book = known_at_start(&cfg, &recorded)?;
        for shard in 0..shards {
            let (id, book) = (shared.id, book.clone());
            run_on(&runtime.handle(), node, shard, move || async move {
                let Some(h) = local_host(id) else {
                    return Ok(());
                };
                for n in h.known_nodes().keys() {
                    if !book.contains_key(n) {
                        h.forget_node(*n);
                    }
                }
                for (n, known) in book {
                    h.set_node(n, known)?;
                }
                Ok::<(), HostError>(())
            })??;
        }
        let server = RaftServer {
            shared,
            factory,
            cfg,
            runtime: Mutex::new(Some(runtime)),
        };
        let known: Vec<(u64, ())> = book.keys().map(|n| (*n, ())).collect();
        let groups = server.groups_to_run(groups, recorded, &known)?;
        server.add_groups(&groups)?;
        server.shared.started.store(true, Ordering::Release);
        log::info!(
            "node {node}: started with {shards} shard(s) and {} group(s)",
            groups.len()
        );
        Ok(server)
    }

    /// The groups a starting node runs: those of its config file minus
    /// those removed at runtime, plus those added at runtime (the
    /// catalog's). Finishes a removal a crash interrupted (deletes the
    /// group's files).
    fn groups_to_run(
        &self,
        configured: &[GroupConfig],
        recorded: crate::catalog::Recorded,
        known: &[(u64, ())],
    ) -> Result<Vec<GroupConfig>, HostError> {
        let node = self.shared.node;
        let removed: BTreeSet<u64> = recorded.removed.iter().copied().collect();
        let mut run: Vec<GroupConfig> = Vec::new();
        for g in configured {
            if removed.contains(&g.group_id) {
                sampan_fiber::group_log!(
                    warn,
                    g.group_id,
                    "node {node}: group {} is in the config file but was removed at runtime; \
                     not started (add it again at runtime, or delete it from the config file)",
                    g.group_id
                );
            } else {
                run.push(g.clone());
            }
        }
        for (g, why) in &recorded.unusable {
            sampan_fiber::group_log!(
                error,
                *g,
                "node {node}: group {g} was added at runtime but {why}; not started (its files are kept)"
            );
        }
        for (g, cfg) in recorded.added {
            if configured.iter().any(|c| c.group_id == g) {
                continue;
            }
            match cfg.validate(known) {
                Ok(()) => run.push(cfg),
                Err(e) => sampan_fiber::group_log!(
                    error,
                    g,
                    "node {node}: group {g} was added at runtime but its config no longer fits \
                     this node's: {e}; not started (its files are kept)"
                ),
            }
        }
        for g in removed {
            let id = self.shared.id;
            let finished = self.run(self.shared.owner(g), move || async move {
                match local_host(id) {
                    Some(h) => h.remove_group(g).await,
                    None => Ok(false),
                }
            })?;
            finished?;
        }
        Ok(run)
    }

    /// The factory this server builds its groups' parts with.
    pub fn factory(&self) -> &F {
        &self.factory
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.shared.node
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.shared.shards
    }

    /// This node's settings.
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// The runtime's handle: to run an embedder's own fibers (a protocol
    /// listener, say) on the server's shards, beside its groups.
    pub fn runtime(&self) -> RuntimeHandle {
        self.shared.runtime.clone()
    }

    /// A handle to `group` (whether or not this node has a replica: calls
    /// answer [`ServerError::NoSuchGroup`] if it does not). `Send + Sync`,
    /// cheap to clone.
    pub fn group(&self, group: u64) -> GroupRef {
        GroupRef {
            group,
            shared: self.shared.clone(),
        }
    }

    /// Starts this node's replica of a group at runtime (every member must
    /// be given the same config). Blocks the calling thread (not a shard)
    /// until the replica runs.
    pub fn add_group(&self, group: &GroupConfig) -> Result<GroupRef, HostError> {
        let (g, shared) = (group.clone(), self.shared.clone());
        self.run(self.shared.owner(g.group_id), move || async move {
            let host = local_host(shared.id).ok_or(HostError::Fiber {
                node: shared.node,
                source: FiberError::ShuttingDown { shard: 0 },
            })?;
            add_recorded(&shared, host, g).await
        })??;
        Ok(self.group(group.group_id))
    }

    /// Starts this node's replicas of `groups` (as [`RaftServer::add_group`]
    /// does one), each shard up to [`GROUPS_STARTING_MAX`] at a time, the
    /// shards in parallel: a group's start waits mostly for its files'
    /// syncs, which overlap (the file system commits them together). The
    /// first error is returned once every start has ended.
    fn add_groups(&self, groups: &[GroupConfig]) -> Result<(), HostError> {
        let mut by_shard: Vec<Vec<GroupConfig>> = vec![Vec::new(); self.shared.shards];
        for g in groups {
            by_shard[self.shared.owner(g.group_id)].push(g.clone());
        }
        let (id, node) = (self.shared.id, self.shared.node);
        let work = by_shard
            .into_iter()
            .enumerate()
            .filter(|(_, gs)| !gs.is_empty());
        let results = on_shards_at_once(work, |shard, gs| {
            let adder = self.shared.adder.clone();
            self.run(shard, move || start_groups(id, node, adder, gs))?
        });
        results.into_iter().collect()
    }

    /// Closes this node's connections to node `peer` on every shard (they
    /// come back with the transport's reconnect backoff): to force a
    /// reconnect, or to test what a cut connection does.
    pub fn disconnect(&self, peer: u64) -> Result<(), HostError> {
        for shard in 0..self.shared.shards {
            let id = self.shared.id;
            self.run(shard, move || async move {
                if let Some(c) = local_host(id).and_then(|h| h.transport().connection(peer)) {
                    c.close("disconnected by the operator");
                }
            })?;
        }
        Ok(())
    }

    /// Stops this node's replica of `group` and deletes its files: for a
    /// group removed from every member (stop it everywhere first, so no
    /// member still needs this one's log). Returns whether it ran.
    pub fn remove_group(&self, group: u64) -> Result<bool, HostError> {
        let shared = self.shared.clone();
        self.run(self.shared.owner(group), move || async move {
            match local_host(shared.id) {
                Some(h) => remove_recorded(&shared, &h, group).await,
                None => Ok(false),
            }
        })?
    }

    /// Stops this node's replica of `group` (its files stay, and a later
    /// [`RaftServer::add_group`] recovers it). Returns whether it ran.
    pub fn stop_group(&self, group: u64) -> Result<bool, HostError> {
        let id = self.shared.id;
        self.run(self.shared.owner(group), move || async move {
            match local_host(id) {
                Some(h) => h.stop_group(group).await,
                None => false,
            }
        })
    }

    /// The groups this node runs, in order.
    pub fn group_ids(&self) -> Result<Vec<u64>, HostError> {
        let mut all = Vec::new();
        for shard in 0..self.shared.shards {
            let id = self.shared.id;
            all.extend(self.run(shard, move || async move {
                local_host(id).map(|h| h.group_ids()).unwrap_or_default()
            })?);
        }
        all.sort_unstable();
        Ok(all)
    }

    /// One step of leader balancing, so that leaders (and their work)
    /// spread over the nodes: if this node leads at least two groups more
    /// than a voter of one of them leads (as this node's replicas know the
    /// leaders), it hands that group's leadership to the voter leading
    /// fewest. Returns the move made (group, new leader), if any. Only the
    /// node with too many acts, and each move narrows the gap, so nodes
    /// running it side by side settle. Blocking: call it from a plain
    /// thread.
    pub fn balance_leaders_once(&self) -> Result<Option<(u64, u64)>, ServerError> {
        let me = self.shared.node;
        let ids = self.group_ids().map_err(|e| ServerError::BadMessage {
            reason: e.to_string(),
        })?;
        let statuses: Vec<GroupStatus> = ids
            .iter()
            .filter_map(|&g| self.group(g).status_blocking().ok())
            .collect();
        let mut led: BTreeMap<u64, usize> = BTreeMap::new();
        for s in &statuses {
            for &v in &s.voters {
                led.entry(v).or_default();
            }
            if let Some(l) = s.leader {
                *led.entry(l).or_default() += 1;
            }
        }
        let mine = led.get(&me).copied().unwrap_or(0);
        for s in statuses
            .iter()
            .filter(|s| s.role == crate::raft::Role::Leader)
        {
            // Not during a membership change: the voters are moving.
            if !s.voters_outgoing.is_empty() {
                continue;
            }
            let target = s
                .voters
                .iter()
                .copied()
                .filter(|&v| v != me)
                .min_by_key(|v| (led.get(v).copied().unwrap_or(0), *v));
            if let Some(to) = target
                && mine >= led.get(&to).copied().unwrap_or(0) + 2
            {
                self.group(s.group).transfer_leader_blocking(to)?;
                return Ok(Some((s.group, to)));
            }
        }
        Ok(None)
    }

    /// A handle that reads this server's state for metrics and readiness
    /// from a plain thread ([`crate::metrics`]).
    pub fn observer(&self) -> Observer {
        Observer {
            shared: self.shared.clone(),
        }
    }

    /// Hands the leadership of every group this node leads to another
    /// voter (the one holding most of its log), all at once, before this
    /// node stops: the groups then elect no one while it is gone, and no
    /// proposal in flight is left with an unknown outcome (a transfer waits
    /// until the leader's log is committed). A voter that does not take it
    /// within an election timeout is passed over for the next. Returns once
    /// this node leads nothing or `within` has passed. Blocking: call it
    /// from a plain thread.
    pub fn hand_over_leadership(&self, within: Duration) -> Result<HandOver, HostError> {
        let deadline = Instant::now() + within;
        let mut out = HandOver::default();
        let mut tried: HashMap<u64, BTreeSet<u64>> = HashMap::new();
        let (id, me) = (self.shared.id, self.shared.node);
        loop {
            let work = (0..self.shared.shards).map(|shard| (shard, tried.clone()));
            let rounds = on_shards_at_once(work, |shard, tried| {
                self.run(shard, move || hand_over_on_shard(id, me, deadline, tried))
                    .and_then(|r| r)
            });
            let (mut led, mut attempted) = (Vec::new(), 0);
            for r in rounds {
                let r = r?;
                attempted += r.attempted;
                out.handed.extend(r.handed);
                out.stepped_down.extend(r.stepped_down);
                for (g, to) in r.refused {
                    tried.entry(g).or_default().insert(to);
                }
                led.extend(r.led);
            }
            if led.is_empty() || attempted == 0 || Instant::now() >= deadline {
                led.sort_unstable();
                out.kept = led;
                out.handed.sort_unstable();
                return Ok(out);
            }
        }
    }

    /// Begins to drain, before this node stops: from now on its shards
    /// answer new client requests on the service port with
    /// [`ServerError::ShuttingDown`] (a client retries them on another
    /// node), and fibers watching [`sampan_fiber::draining`] (a Redis
    /// port's listener and idle connections) end; requests forwarded by
    /// other nodes are still served, and the groups run on. Blocking:
    /// call it from a plain thread.
    pub fn begin_drain(&self) -> Result<(), HostError> {
        for shard in 0..self.shared.shards {
            self.run(shard, || async { sampan_fiber::begin_drain() })?;
        }
        log::info!(
            "node {}: draining: no new client requests",
            self.shared.node
        );
        Ok(())
    }

    /// Waits until no request is being served on any shard (those taken
    /// before [`RaftServer::begin_drain`] are answered) or `within` has
    /// passed; returns how many were still being served then (0: all
    /// answered). Blocking: call it from a plain thread.
    pub fn wait_drained(&self, within: Duration) -> Result<u64, HostError> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let mut busy = 0;
            for shard in 0..self.shared.shards {
                busy += self.run(shard, || async { sampan_fiber::busy() })?;
            }
            if busy == 0 || std::time::Instant::now() >= deadline {
                return Ok(busy);
            }
            std::thread::sleep(DRAIN_POLL);
        }
    }

    fn run<T, Fut>(
        &self,
        shard: usize,
        f: impl FnOnce() -> Fut + Send + 'static,
    ) -> Result<T, HostError>
    where
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        run_on(&self.shared.runtime, self.shared.node, shard, f)
    }

    /// Stops gracefully: every group stops (requests still waiting fail
    /// with [`GroupError::Stopped`]; what the log reported durable stays
    /// durable), the listeners and connections close, then the runtime
    /// stops. Call it from a plain thread.
    pub fn shutdown(self) -> Result<ShutdownReport, HostError> {
        let node = self.shared.node;
        let id = self.shared.id;
        self.run(0, move || async move { crate::catalog::close(id) })?;
        for shard in 0..self.shared.shards {
            let id = self.shared.id;
            self.run(shard, move || async move {
                if let Some(h) = HOSTS.with(|h| h.borrow_mut().remove(&id)) {
                    h.stop().await;
                }
            })?;
        }
        let runtime = self.runtime.lock().ok().and_then(|mut r| r.take());
        let report = match runtime {
            Some(rt) => rt
                .shutdown(Duration::from_secs(5))
                .map_err(|source| HostError::Fiber { node, source })?,
            None => ShutdownReport::default(),
        };
        log::info!("node {node}: stopped");
        Ok(report)
    }
}

/// Reads a server's state for operators (metrics, readiness) from any
/// thread but a shard: `Send + Sync`, cheap to clone. See
/// [`crate::metrics`].
#[derive(Debug, Clone)]
pub struct Observer {
    shared: Arc<Shared>,
}

/// How long [`Observer::snapshot`] waits for each shard.
const SNAPSHOT_SHARD_WAIT: Duration = Duration::from_secs(2);

impl Observer {
    /// Every group's status and every shard's counters now: one job per
    /// shard, the shards at once, each bounded by a wait of 2 s (a shard
    /// that does not answer is counted in
    /// [`NodeSnapshot::shards_silent`](crate::metrics::NodeSnapshot)).
    /// Blocking: call it from a plain thread.
    pub fn snapshot(&self) -> Result<crate::metrics::NodeSnapshot, HostError> {
        let shared = &self.shared;
        let id = shared.id;
        let parts = on_shards_at_once((0..shared.shards).map(|s| (s, ())), |shard, ()| {
            run_on(&shared.runtime, shared.node, shard, move || async move {
                sampan_fiber::timeout(SNAPSHOT_SHARD_WAIT, shard_snapshot(id, shard))
                    .await
                    .ok()
                    .flatten()
            })
            .ok()
            .flatten()
        });
        let mut snap = crate::metrics::NodeSnapshot {
            node: shared.node,
            ..Default::default()
        };
        for part in parts {
            match part {
                Some((counters, groups)) => {
                    snap.shards.push(counters);
                    snap.groups.extend(groups);
                }
                None => snap.shards_silent += 1,
            }
        }
        snap.groups.sort_by_key(|s| s.group);
        Ok(snap)
    }
}

/// One shard's part of [`Observer::snapshot`].
async fn shard_snapshot(
    id: u64,
    shard: usize,
) -> Option<(crate::metrics::ShardCounters, Vec<GroupStatus>)> {
    let host = local_host(id)?;
    let (heartbeats, heartbeat_frames) = host.heartbeat_stats();
    let (sync_rounds, syncs) = host.writer_stats();
    let transport = host.transport();
    let links = host
        .known_nodes()
        .keys()
        .filter_map(|n| Some((*n, transport.connection(*n)?.stats())))
        .collect();
    let counters = crate::metrics::ShardCounters {
        shard,
        heartbeats,
        heartbeat_frames,
        sync_rounds,
        syncs,
        sync_latency: host.sync_latency(),
        durable_writes: host.durable_writes(),
        messages_dropped: host.messages_dropped(),
        stats: crate::stats::snapshot(),
        links,
        auth_failures: transport.auth_failures(),
        connections_refused: transport.connections_refused(),
    };
    let mut groups = Vec::new();
    for g in host.group_ids() {
        if let Some(handle) = host.group(g)
            && let Ok(s) = handle.status().await
        {
            groups.push(s);
        }
    }
    Some((counters, groups))
}

/// What [`RaftServer::hand_over_leadership`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandOver {
    /// `(group, new leader)` for each group handed over.
    pub handed: Vec<(u64, u64)>,
    /// Groups whose leadership ended here without a transfer (this node
    /// lost its quorum: the other nodes stop too, say): they elect once a
    /// quorum is back.
    pub stepped_down: Vec<u64>,
    /// Groups this node still led when the time was up.
    pub kept: Vec<u64>,
}

/// One round of [`RaftServer::hand_over_leadership`] on one shard.
#[derive(Debug, Default)]
struct ShardHandOver {
    handed: Vec<(u64, u64)>,
    /// Transfers that failed: `(group, target)`.
    refused: Vec<(u64, u64)>,
    /// Groups still led here after the round.
    led: Vec<u64>,
    /// Groups whose leadership ended without a transfer.
    stepped_down: Vec<u64>,
    /// Transfers started.
    attempted: usize,
}

/// How one group's handover ended.
enum Handing {
    /// The target leads.
    Handed,
    /// The transfer was refused or abandoned.
    Refused,
    /// This replica stopped leading without a handover.
    SteppedDown,
}

/// How often a group being handed over checks whether it still leads.
const HANDOVER_POLL: Duration = Duration::from_millis(50);

/// Transfers the leadership of every group this shard leads, at once, each
/// to the voter that holds most of its log among those not `tried` yet for
/// it; waits for them (at most until `deadline`).
async fn hand_over_on_shard(
    id: u64,
    me: u64,
    deadline: Instant,
    tried: HashMap<u64, BTreeSet<u64>>,
) -> Result<ShardHandOver, HostError> {
    let mut out = ShardHandOver::default();
    let Some(host) = local_host(id) else {
        return Ok(out);
    };
    let mut transfers = Vec::new();
    for g in host.group_ids() {
        let Some(handle) = host.group(g) else {
            continue;
        };
        let Ok(s) = handle.status().await else {
            continue;
        };
        if s.role != crate::raft::Role::Leader {
            continue;
        }
        let skip = tried.get(&g);
        let matched = |v: &u64| {
            s.matched
                .iter()
                .find(|(n, _)| n == v)
                .map_or(0, |(_, m)| *m)
        };
        let target = s
            .voters
            .iter()
            .copied()
            .filter(|v| *v != me && !skip.is_some_and(|t| t.contains(v)))
            .max_by_key(|v| (matched(v), std::cmp::Reverse(*v)));
        let Some(to) = target else {
            // No voter left to try (a single-voter group, or every one
            // refused): it stays led here.
            out.led.push(g);
            continue;
        };
        let task = sampan_fiber::spawn(TaskClass::Latency, "hand-over", async move {
            // Done when the target leads, or when this replica stops
            // leading some other way (it lost its quorum: the other
            // nodes are stopping too), whichever comes first.
            let transfer = async {
                match handle.transfer_leader(to).await {
                    Ok(()) => Handing::Handed,
                    Err(_) => Handing::Refused,
                }
            };
            let stepped_down = async {
                loop {
                    sampan_fiber::sleep(HANDOVER_POLL).await;
                    if handle
                        .status()
                        .await
                        .is_ok_and(|s| s.role != crate::raft::Role::Leader)
                    {
                        return Handing::SteppedDown;
                    }
                }
            };
            let r = sampan_fiber::timeout_at(
                deadline,
                futures_lite::future::or(transfer, stepped_down),
            )
            .await;
            (g, to, r)
        })
        .map_err(|source| HostError::Fiber { node: me, source })?;
        transfers.push(task);
        out.attempted += 1;
    }
    for t in transfers {
        match t.join().await {
            Ok((g, to, Ok(Handing::Handed))) => out.handed.push((g, to)),
            // Not led here any more, and no one took it over.
            Ok((g, _, Ok(Handing::SteppedDown))) => out.stepped_down.push(g),
            // Refused, or no answer in time: the next voter, next round.
            Ok((g, to, Ok(Handing::Refused) | Err(_))) => {
                out.refused.push((g, to));
                out.led.push(g);
            }
            Err(_) => {}
        }
    }
    Ok(out)
}

/// Open files a node asks for: an idle group holds one (its active
/// segment; index, status and meta files are opened only while written),
/// and a few more while it writes, so 10,000 groups need well over the
/// usual soft limit of 1,024.
const OPEN_FILES_WANTED: u64 = 1 << 20;

/// Raises `RLIMIT_NOFILE`: both limits to [`OPEN_FILES_WANTED`] (capped by
/// `fs.nr_open`) when privileged, else the soft limit to the hard one.
/// Logs what it got; a group that still hits the limit fails to open with
/// an error naming its file.
fn raise_open_files_limit(node: u64) {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(OPEN_FILES_WANTED);
    let want = OPEN_FILES_WANTED.min(nr_open);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to fill and then read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur >= want as libc::rlim_t {
            return;
        }
        let both = libc::rlimit {
            rlim_cur: want as libc::rlim_t,
            rlim_max: (want as libc::rlim_t).max(lim.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &both) == 0 {
            log::info!("node {node}: open files limit raised to {want}");
            return;
        }
        let soft = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0 {
            log::info!(
                "node {node}: open files limit raised to the hard limit {} (~1 per group, more while writing; raise it with `ulimit -n` or LimitNOFILE= for more groups)",
                lim.rlim_max
            );
        }
    }
}

/// Runs `job(shard, item)` for each `(shard, item)` of `work` on a thread
/// of its own, all at once (each waits on its shard's mailbox, so the
/// shards work in parallel); returns the results in `work`'s order. A job
/// that panics panics the caller.
fn on_shards_at_once<I: Send, T: Send>(
    work: impl IntoIterator<Item = (usize, I)>,
    job: impl Fn(usize, I) -> T + Sync,
) -> Vec<T> {
    std::thread::scope(|scope| {
        let job = &job;
        let runs: Vec<_> = work
            .into_iter()
            .map(|(shard, item)| scope.spawn(move || job(shard, item)))
            .collect();
        runs.into_iter()
            .map(|r| r.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

fn run_on<T, Fut>(
    runtime: &RuntimeHandle,
    node: u64,
    shard: usize,
    f: impl FnOnce() -> Fut + Send + 'static,
) -> Result<T, HostError>
where
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    runtime
        .shard(shard)
        .and_then(|s| s.run_blocking(TaskClass::Latency, f))
        .map_err(|source| HostError::Fiber { node, source })
}

/// The nodes a starting node knows: its config's `servers`, changed by
/// the nodes learned and forgotten at runtime (its node catalog).
fn known_at_start(
    cfg: &ServerConfig,
    recorded: &crate::catalog::Recorded,
) -> Result<BTreeMap<u64, Known>, HostError> {
    let node = cfg.node_id;
    let mut book = crate::host::configured_nodes(cfg)?;
    for (n, why) in &recorded.unusable_nodes {
        log::error!("node {node}: node {n} was learned at runtime but {why}; left out");
    }
    for (n, addrs) in &recorded.nodes {
        match known_from(addrs) {
            Ok(known) if *n != node => {
                book.insert(*n, known);
            }
            Ok(_) => {}
            Err(why) => {
                log::error!("node {node}: node {n} was learned at runtime but {why}; left out")
            }
        }
    }
    for n in &recorded.forgotten {
        // Only a node of `servers` can still be in the book: a forgotten
        // node's catalog entry is its removal.
        if *n != node && book.remove(n).is_some() {
            log::warn!(
                "node {node}: node {n} is in `servers` but was forgotten at runtime; not connected \
                 (learn it again with sampan-cli add-node, or delete it from `servers`)"
            );
        }
    }
    Ok(book)
}

/// A node's addresses as the service protocol carries them, checked.
fn known_from(n: &NodeAddrs) -> Result<Known, String> {
    let replicate: PeerAddr = n
        .replicate
        .parse()
        .map_err(|e| format!("its replication address {e}"))?;
    let service: PeerAddr = n
        .service
        .parse()
        .map_err(|e| format!("its service address {e}"))?;
    Ok(Known {
        replicate,
        service: Some(service),
    })
}

/// Shard `i` of every node listens on `replicate_port + i`: on one host,
/// those ranges must not run into another node's ports.
fn check_ports(
    cfg: &ServerConfig,
    servers: &[(u64, PeerAddr)],
    shards: usize,
) -> Result<(), ConfigError> {
    // Two entries on one host (the same IP, or the same name) must not
    // share a port of their ranges; different names may be one host, which
    // only the network knows.
    let host = |a: &PeerAddr| a.with_port(0);
    for (id, a) in servers {
        let lo = a.port();
        let Some(hi) = lo.checked_add(shards as u16 - 1) else {
            return Err(ConfigError {
                field: "shards".into(),
                reason: format!("node {id}: replication ports {lo}+{shards} pass 65535"),
            });
        };
        for (other, b) in servers.iter().filter(|(o, _)| o != id) {
            if host(b) == host(a) && (lo..=hi).contains(&b.port()) {
                return Err(ConfigError {
                    field: "shards".into(),
                    reason: format!(
                        "with {shards} shards node {id} uses replication ports {lo}..={hi}, \
                         which include node {other}'s {}: space the nodes' ports apart or use fewer shards",
                        b.port()
                    ),
                });
            }
        }
        if *id == cfg.node_id && (lo..=hi).contains(&cfg.service_port) {
            return Err(ConfigError {
                field: "service_port".into(),
                reason: format!("inside this node's replication ports {lo}..={hi}"),
            });
        }
    }
    Ok(())
}

/// How often [`RaftServer::wait_drained`] looks at the shards.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Serves a request that arrived on a shard (from a client, or forwarded
/// by another node) and responds on its connection. A draining node takes
/// no new client request.
fn answer(shared: Arc<Shared>, incoming: Incoming, may_forward: bool) {
    let Some(responder) = incoming.responder else {
        return;
    };
    let group = incoming.frame.header.group_id;
    if may_forward && sampan_fiber::drain_requested() {
        respond(responder, group, &Err(shared.shutting_down()));
        return;
    }
    let from = incoming.from;
    let request = ServiceRequest::decode(incoming.frame.body);
    if let Ok(req) = &request
        && let Some(answer) = read_at_once(&shared, group, req)
    {
        respond(responder, group, &Ok(answer));
        return;
    }
    let (request, responder) = match request {
        Ok(req) if req.op == Op::Propose => {
            match propose_here(&shared, group, req, responder, from, may_forward) {
                None => return,
                Some((req, responder)) => (Ok(req), responder),
            }
        }
        other => (other, responder),
    };
    serve_in_fiber(shared, group, request, responder, from, may_forward);
}

/// Writes `reply` to a request of `group` (a connection gone meanwhile is
/// only logged: its client hears nothing either way).
fn respond(responder: sampan_net::Responder, group: u64, reply: &Result<Bytes, ServerError>) {
    if let Err(e) = responder.respond(Body::from(encode_reply(reply))) {
        sampan_fiber::group_log!(debug, group, "group {group}: reply not sent: {e}");
    }
}

/// Serves a request in a fiber of its own: the full path (forwarding,
/// waiting for a leader, operations on the node).
fn serve_in_fiber(
    shared: Arc<Shared>,
    group: u64,
    request: Result<ServiceRequest, DecodeError>,
    responder: sampan_net::Responder,
    from: sampan_net::Origin,
    may_forward: bool,
) {
    let serving = sampan_fiber::Busy::begin();
    let work = async move {
        let _serving = serving;
        let reply = match request {
            Ok(req) if req.op.is_admin() && from.privilege < Privilege::Admin => {
                log::debug!(
                    "node {}: {:?} on group {group} from {} denied: not an admin",
                    shared.node,
                    req.op,
                    from.addr
                );
                Err(ServerError::Denied {
                    node: shared.node,
                    reason: format!(
                        "{:?} changes the cluster and needs an admin credential; this connection proved a client's",
                        req.op
                    ),
                })
            }
            Ok(req) => dispatch(&shared, group, req, may_forward).await,
            Err(e) => Err(ServerError::BadMessage {
                reason: e.to_string(),
            }),
        };
        respond(responder, group, &reply);
    };
    if let Err(e) = sampan_fiber::spawn_detached(TaskClass::Latency, "service-request", work) {
        sampan_fiber::group_log!(warn, group, "group {group}: request dropped: {e}");
    }
}

/// Proposes a command to a group this shard holds without a fiber per
/// request: the group's own fibers answer the client when the outcome is
/// known ([`GroupHandle::propose_then`]). A replica that does not lead
/// (certainly not proposed) hands the request to the full path, which
/// forwards or redirects it. Gives the request back when it is not for a
/// group here.
fn propose_here(
    shared: &Arc<Shared>,
    group: u64,
    req: ServiceRequest,
    responder: sampan_net::Responder,
    from: sampan_net::Origin,
    may_forward: bool,
) -> Option<(ServiceRequest, sampan_net::Responder)> {
    let handle = (req.payload.len() <= crate::group::PROPOSAL_BYTES_MAX
        && sampan_fiber::shard_id() == Some(shared.owner(group)))
    .then(|| local_host(shared.id).and_then(|host| host.group(group)))
    .flatten();
    let Some(handle) = handle else {
        return Some((req, responder));
    };
    let serving = sampan_fiber::Busy::begin();
    let shared = shared.clone();
    let payload = req.payload.clone();
    handle.propose_then(payload, move |result| {
        let _serving = serving;
        let reply = match result {
            Err(GroupError::NotLeader { .. }) => {
                // Not proposed here: the full path forwards or redirects.
                return serve_in_fiber(shared, group, Ok(req), responder, from, may_forward);
            }
            other => other.map_err(ServerError::from),
        };
        respond(responder, group, &reply);
    });
    None
}

/// The answer to a linearizable read that this shard can give at once,
/// from its group's leader lease ([`GroupHandle::read_now`]): no fiber, no
/// hop. `None` for anything else, which takes the full path (and any
/// error, which it reports the same way).
fn read_at_once(shared: &Shared, group: u64, req: &ServiceRequest) -> Option<Bytes> {
    if req.op != Op::Read || req.route == Route::Local {
        return None;
    }
    read_now_here(shared, group, || req.payload.clone())?.ok()
}

/// [`GroupHandle::read_now_with`] on this node's replica of `group`, if it
/// lives on the calling shard.
fn read_now_here(
    shared: &Shared,
    group: u64,
    make: impl FnOnce() -> Bytes,
) -> Option<Result<Bytes, ServerError>> {
    if sampan_fiber::shard_id() != Some(shared.owner(group)) {
        return None;
    }
    local_host(shared.id)?
        .read_now_with(group, make)
        .map(|r| r.map_err(ServerError::from))
}

/// Groups one shard starts at once when its node starts.
pub const GROUPS_STARTING_MAX: usize = 64;

/// Starts `groups` on this shard, up to [`GROUPS_STARTING_MAX`] at a time.
async fn start_groups(
    id: u64,
    node: u64,
    adder: Arc<dyn GroupAdder>,
    groups: Vec<GroupConfig>,
) -> Result<(), HostError> {
    let host = local_host(id).ok_or(HostError::Fiber {
        node,
        source: FiberError::ShuttingDown { shard: 0 },
    })?;
    let fiber = |source| HostError::Fiber { node, source };
    let mut starting: std::collections::VecDeque<sampan_fiber::FiberHandle<Result<(), HostError>>> =
        std::collections::VecDeque::new();
    let mut first_error = None;
    let mut keep = |r: Result<Result<(), HostError>, FiberError>| {
        if let Err(e) = r.map_err(fiber).and_then(|r| r)
            && first_error.is_none()
        {
            first_error = Some(e);
        }
    };
    for g in groups {
        if starting.len() >= GROUPS_STARTING_MAX
            && let Some(oldest) = starting.pop_front()
        {
            keep(oldest.join().await);
        }
        let started = adder.add(host.clone(), g);
        match sampan_fiber::spawn(TaskClass::Latency, "group-start", started) {
            Ok(h) => starting.push_back(h),
            Err(e) => keep(Err(e)),
        }
    }
    for h in starting {
        keep(h.join().await);
    }
    first_error.map_or(Ok(()), Err)
}

/// Runs a request on the shard that owns its group: here, or through that
/// shard's mailbox.
async fn dispatch(
    shared: &Arc<Shared>,
    group: u64,
    req: ServiceRequest,
    may_forward: bool,
) -> Result<Bytes, ServerError> {
    let owner = shared.owner(group);
    if sampan_fiber::shard_id() == Some(owner)
        && let Some(host) = local_host(shared.id)
    {
        return serve(shared, &host, group, req, may_forward).await;
    }
    let (s, id) = (shared.clone(), shared.id);
    let handle = shared
        .runtime
        .shard(owner)
        .map_err(|_| shared.shutting_down())?;
    let served = handle
        .run(TaskClass::Latency, move || async move {
            match local_host(id) {
                Some(host) => serve(&s, &host, group, req, may_forward).await,
                None => Err(s.shutting_down()),
            }
        })
        .await;
    served.unwrap_or_else(|_| Err(shared.shutting_down()))
}

/// A group refused a request (as a service error).
fn refused(group: u64, e: &dyn std::fmt::Display) -> ServerError {
    ServerError::Group(GroupError::Refused {
        group,
        reason: e.to_string(),
    })
}

/// A payload that does not decode.
fn bad(e: DecodeError) -> ServerError {
    ServerError::BadMessage {
        reason: e.to_string(),
    }
}

/// Serves a request on the group's own shard: locally when this replica
/// leads (or for a status), else forwarded or redirected.
async fn serve(
    shared: &Shared,
    host: &ShardHost,
    group: u64,
    req: ServiceRequest,
    may_forward: bool,
) -> Result<Bytes, ServerError> {
    let deadline = Instant::now() + shared.request_timeout;
    if req.op == Op::Propose && req.payload.len() > crate::group::PROPOSAL_BYTES_MAX {
        // Refused here, on any node: forwarded, it would not fit a frame.
        return Err(refused(
            group,
            &format!(
                "a command of {} bytes is over the {} byte limit",
                req.payload.len(),
                crate::group::PROPOSAL_BYTES_MAX
            ),
        ));
    }
    if is_node_op(req.op) {
        // Boxed: the rare paths' state would otherwise make every request's
        // future kilobytes larger, copied at each spawn.
        return Box::pin(serve_node_op(shared, host, group, req)).await;
    }
    loop {
        let Some(handle) = host.group(group) else {
            return Err(shared.no_such_group(group));
        };
        let local = match serve_local(shared, &handle, group, &req, deadline).await {
            Local::Final(answer) => return answer,
            Local::AsLeader(local) => local,
        };
        let leader = match local {
            Err(GroupError::NotLeader { leader, .. }) => leader.filter(|l| *l != shared.node),
            other => return other.map_err(ServerError::from),
        };
        if req.route == Route::Redirect || !may_forward {
            return Err(shared.not_leader(group, leader));
        }
        let mut not_sent = None;
        if let Some(leader) = leader {
            match Box::pin(forward(host, leader, group, &req, deadline)).await {
                // The leader moved on since: look again.
                Err(ServerError::NotLeader { .. }) => {}
                // Not sent (no connection to it now): nothing applied, so
                // looking again is safe.
                Err(e @ ServerError::Unreachable { .. }) => not_sent = Some(e),
                other => return other,
            }
        }
        // No leader known yet (an election), or it just changed, or it
        // cannot be reached: wait a little and look again, up to the
        // request timeout.
        if Instant::now() + shared.retry_pause >= deadline {
            return Err(not_sent.unwrap_or_else(|| shared.not_leader(group, leader)));
        }
        sampan_fiber::sleep(shared.retry_pause).await;
    }
}

/// Whether `op` is served by the node (its groups, its peers, a stored
/// snapshot) rather than by a group's replica.
fn is_node_op(op: Op) -> bool {
    matches!(
        op,
        Op::AddGroup
            | Op::RemoveGroup
            | Op::StopGroup
            | Op::ListGroups
            | Op::ListNodes
            | Op::SetNodes
            | Op::ForgetNode
            | Op::ReadSnapshot
    )
}

/// Serves an operation on the node rather than on a group's replica
/// ([`is_node_op`]).
async fn serve_node_op(
    shared: &Shared,
    host: &ShardHost,
    group: u64,
    req: ServiceRequest,
) -> Result<Bytes, ServerError> {
    match req.op {
        Op::AddGroup => add_group(shared, group, &req).await,
        Op::RemoveGroup => {
            let ran = remove_recorded(shared, host, group)
                .await
                .map_err(|e| refused(group, &e))?;
            Ok(Bytes::from(vec![u8::from(ran)]))
        }
        Op::StopGroup => {
            let ran = host.stop_group(group).await;
            Ok(Bytes::from(vec![u8::from(ran)]))
        }
        Op::ListGroups => Ok(service::encode_group_ids(&all_group_ids(shared).await?)),
        Op::ListNodes => {
            let nodes: Vec<NodeAddrs> = host
                .known_nodes()
                .into_iter()
                .map(|(node, k)| NodeAddrs {
                    node,
                    replicate: k.replicate.to_string(),
                    service: k.service.map(|a| a.to_string()).unwrap_or_default(),
                })
                .collect();
            Ok(service::encode_nodes(&nodes))
        }
        Op::SetNodes => set_nodes(shared, &req).await,
        Op::ForgetNode => forget_node(shared, &req).await,
        Op::ReadSnapshot => read_snapshot(shared, host, group, req.payload).await,
        op => Err(ServerError::BadMessage {
            reason: format!("{op:?} is an operation on a group's replica, not on the node"),
        }),
    }
}

/// The groups this node runs, every shard's, in order.
async fn all_group_ids(shared: &Shared) -> Result<Vec<u64>, ServerError> {
    let mut all: Vec<u64> = on_every_host(shared, |h| async move { h.group_ids() })
        .await?
        .into_iter()
        .flatten()
        .collect();
    all.sort_unstable();
    Ok(all)
}

/// Runs `job` on every shard's host of this server, one shard after the
/// other; the results in shard order.
async fn on_every_host<T, Fut>(
    shared: &Shared,
    job: impl Fn(Rc<ShardHost>) -> Fut + Clone + Send + 'static,
) -> Result<Vec<T>, ServerError>
where
    T: Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    let mut out = Vec::with_capacity(shared.shards);
    for shard in 0..shared.shards {
        let (id, job) = (shared.id, job.clone());
        let result = shared
            .runtime
            .shard(shard)
            .map_err(|_| shared.shutting_down())?
            .run(TaskClass::Latency, move || async move {
                match local_host(id) {
                    Some(h) => Some(job(h).await),
                    None => None,
                }
            })
            .await
            .map_err(|_| shared.shutting_down())?
            .ok_or_else(|| shared.shutting_down())?;
        out.push(result);
    }
    Ok(out)
}

/// Learns nodes' addresses ([`Op::SetNodes`]): records them in the node
/// catalog, then connects every shard to them. This node's own entry is
/// skipped (its addresses come from its config).
async fn set_nodes(shared: &Shared, req: &ServiceRequest) -> Result<Bytes, ServerError> {
    let nodes = service::decode_nodes(req.payload.clone()).map_err(bad)?;
    let mut checked = Vec::new();
    for n in nodes {
        if n.node == 0 {
            return Err(ServerError::BadMessage {
                reason: "node id 0".into(),
            });
        }
        let known = known_from(&n).map_err(|why| ServerError::BadMessage {
            reason: format!("node {}: {why}", n.node),
        })?;
        if n.node != shared.node {
            checked.push((n, known));
        }
    }
    for (n, _) in &checked {
        record_change(shared, Book::Nodes, crate::catalog::node_set(n))
            .await
            .map_err(|e| refused(0, &e))?;
        log::info!(
            "node {}: learned node {} at {} (service {})",
            shared.node,
            n.node,
            n.replicate,
            n.service
        );
    }
    let learned: Vec<(u64, Known)> = checked.into_iter().map(|(n, k)| (n.node, k)).collect();
    for result in on_every_host(shared, move |h| {
        let learned = learned.clone();
        async move {
            learned
                .iter()
                .try_for_each(|(n, k)| h.set_node(*n, k.clone()))
        }
    })
    .await?
    {
        result.map_err(|e| refused(0, &e))?;
    }
    Ok(Bytes::new())
}

/// Forgets a node ([`Op::ForgetNode`]) that no group here has as a voter
/// or learner: records it in the node catalog, then disconnects every
/// shard from it. Answers whether it was known.
async fn forget_node(shared: &Shared, req: &ServiceRequest) -> Result<Bytes, ServerError> {
    let Some(n) = req
        .payload
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
    else {
        return Err(ServerError::BadMessage {
            reason: "forget node: no node id".into(),
        });
    };
    if n == shared.node {
        return Err(refused(0, &format!("node {n} cannot forget itself")));
    }
    let member_of: Vec<u64> = on_every_host(shared, move |h| async move {
        let mut with = Vec::new();
        for g in h.group_ids() {
            let Some(handle) = h.group(g) else { continue };
            if let Ok(st) = handle.status().await
                && st
                    .voters
                    .iter()
                    .chain(&st.voters_outgoing)
                    .chain(&st.learners)
                    .any(|m| *m == n)
            {
                with.push(g);
            }
        }
        with
    })
    .await?
    .into_iter()
    .flatten()
    .collect();
    if !member_of.is_empty() {
        return Err(refused(
            0,
            &format!(
                "node {n} is still a member of group(s) {member_of:?} here: \
                 remove it from them first (sampan-cli remove-member)"
            ),
        ));
    }
    record_change(shared, Book::Nodes, Change::Set(n, Entry::Removed))
        .await
        .map_err(|e| refused(0, &e))?;
    let known = on_every_host(shared, move |h| async move { h.forget_node(n) }).await?;
    log::info!("node {}: forgot node {n}", shared.node);
    Ok(Bytes::from(vec![u8::from(known.contains(&true))]))
}

/// Starts the replica of the group a request's config describes, if this
/// node is a member or an observer of it.
async fn add_group(
    shared: &Shared,
    group: u64,
    req: &ServiceRequest,
) -> Result<Bytes, ServerError> {
    let g = service::decode_group_config(req.payload.clone()).map_err(bad)?;
    if g.group_id != group {
        return Err(ServerError::BadMessage {
            reason: format!("group {} in a request for group {group}", g.group_id),
        });
    }
    let member = g.member_ids().is_ok_and(|m| m.contains(&shared.node))
        || g.observer_ids().is_ok_and(|o| o.contains(&shared.node));
    if !member {
        return Err(refused(
            group,
            &format!(
                "node {} is neither a member nor an observer of group {group}",
                shared.node
            ),
        ));
    }
    let host = local_host(shared.id).ok_or_else(|| shared.shutting_down())?;
    add_recorded(shared, host, g)
        .await
        .map_err(|e| refused(group, &e))?;
    Ok(Bytes::new())
}

/// Makes `change` durable in the node's catalog (its writer runs on shard
/// 0); returns the group's entry before it.
async fn record_change(
    shared: &Shared,
    book: Book,
    change: Change,
) -> Result<Option<Entry>, HostError> {
    let (id, group) = (shared.id, change.group());
    let failed = |reason: String| HostError::Storage {
        group,
        source: sampan_storage::StorageError::Failed {
            group,
            reason: format!("recording the change in the node's catalog: {reason}"),
        },
    };
    shared
        .runtime
        .shard(0)
        .map_err(|e| failed(e.to_string()))?
        .run(TaskClass::Latency, move || {
            crate::catalog::record(id, book, change)
        })
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(failed)
}

/// Records `g` in the node's catalog, then starts this node's replica of
/// it (on the group's shard). A replica that does not start has its record
/// undone.
async fn add_recorded(
    shared: &Shared,
    host: Rc<ShardHost>,
    g: GroupConfig,
) -> Result<(), HostError> {
    host.check_new(&g)?;
    let group = g.group_id;
    let before = record_change(shared, Book::Groups, crate::catalog::added(&g)).await?;
    if let Err(e) = shared.adder.add(host, g).await {
        let undo = match before {
            Some(entry) => Change::Set(group, entry),
            None => Change::Clear(group),
        };
        if let Err(undo) = record_change(shared, Book::Groups, undo).await {
            sampan_fiber::group_log!(
                error,
                group,
                "node {}: group {group} did not start ({e}), and its record in the catalog \
                 could not be undone ({undo}): a restart will try to start it",
                shared.node
            );
        }
        return Err(e);
    }
    Ok(())
}

/// Records `group` removed in the node's catalog (a restart does not start
/// it, even if the config file names it), then stops this node's replica
/// and deletes its files. Returns whether it ran.
async fn remove_recorded(shared: &Shared, host: &ShardHost, group: u64) -> Result<bool, HostError> {
    record_change(shared, Book::Groups, Change::Set(group, Entry::Removed)).await?;
    host.remove_group(group).await
}

/// Serves [`Op::ReadSnapshot`] from this node's replica of `group`,
/// whatever its role: a piece of its stored snapshot, with the group's
/// config here (what a restore starts the group with).
async fn read_snapshot(
    shared: &Shared,
    host: &ShardHost,
    group: u64,
    payload: Bytes,
) -> Result<Bytes, ServerError> {
    let read = service::SnapshotRead::decode(payload).map_err(bad)?;
    let (Some(handle), Some(cfg)) = (host.group(group), host.group_config(group)) else {
        return Err(shared.no_such_group(group));
    };
    let (stored, data) = handle.read_snapshot(read).await?;
    Ok(service::SnapshotPiece {
        index: stored.last_index,
        term: stored.last_term,
        size: stored.size,
        data_crc: stored.data_crc,
        meta: Bytes::from(stored.config),
        group_config: service::encode_group_config(&cfg),
        offset: read.offset,
        data,
    }
    .encode())
}

/// What a replica made of a request.
enum Local {
    /// The answer, whoever leads: a status, a local read, a snapshot, a
    /// malformed or refused request.
    Final(Result<Bytes, ServerError>),
    /// What the replica did as a would-be leader: "not the leader" sends
    /// the request on.
    AsLeader(Result<Bytes, GroupError>),
}

/// Runs a request on this replica.
async fn serve_local(
    shared: &Shared,
    handle: &GroupHandle,
    group: u64,
    req: &ServiceRequest,
    deadline: Instant,
) -> Local {
    let payload = req.payload.clone();
    let done = |r: Result<(), GroupError>| Local::AsLeader(r.map(|()| Bytes::new()));
    match req.op {
        Op::Propose => Local::AsLeader(
            sampan_fiber::within(deadline, handle.propose(payload))
                .await
                .unwrap_or_else(|_| timed_out(group)),
        ),
        Op::Read if req.route == Route::Local => {
            Local::Final(handle.read_local(payload).await.map_err(Into::into))
        }
        Op::Read => Local::AsLeader(handle.read(payload).await),
        Op::Status => Local::Final(
            handle
                .status()
                .await
                .map(|s| encode_status(&s))
                .map_err(Into::into),
        ),
        Op::SnapshotNow => Local::Final(
            handle
                .snapshot_now()
                .await
                .map(|s| service::encode_saved(&s))
                .map_err(Into::into),
        ),
        Op::ChangeMembers => {
            let change = match service::decode_members(payload) {
                Ok(change) => change,
                Err(e) => return Local::Final(Err(bad(e))),
            };
            // A node the cluster cannot reach would never catch up: the
            // change would wait forever.
            if let Some(n) = change
                .voters
                .iter()
                .chain(&change.learners)
                .find(|n| !local_host(shared.id).is_some_and(|h| h.knows(**n)))
            {
                return Local::Final(Err(refused(
                    group,
                    &format!(
                        "node {n} is not a node this one knows: add it to `servers`, \
                         or with sampan-cli add-node"
                    ),
                )));
            }
            let call = handle.change_membership_if(change.expected, change.voters, change.learners);
            done(
                sampan_fiber::within(deadline, call)
                    .await
                    .unwrap_or_else(|_| timed_out(group)),
            )
        }
        Op::TransferLeader => {
            let to = payload
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_le_bytes);
            match to {
                Some(to) => done(
                    sampan_fiber::within(deadline, handle.transfer_leader(to))
                        .await
                        .unwrap_or_else(|_| timed_out(group)),
                ),
                None => Local::Final(Err(ServerError::BadMessage {
                    reason: "transfer: no node id".into(),
                })),
            }
        }
        // Served by `serve` before it gets here ([`is_node_op`]).
        op => Local::Final(Err(ServerError::BadMessage {
            reason: format!("{op:?} is an operation on the node, not on a group's replica"),
        })),
    }
}

/// What a proposal, membership change or transfer that was not done by
/// its deadline ([`sampan_fiber::within`]) is: it may still complete.
fn timed_out<T>(group: u64) -> Result<T, GroupError> {
    Err(GroupError::Uncertain {
        group,
        index: 0,
        reason: "not done within request_timeout_ms; it may still complete".into(),
    })
}

/// Sends a request to the leader over the replication link and relays its
/// answer. A refusal (`NotLeader`) or a request that was never sent
/// (`Unreachable`) is retried by the caller; any other failure may have
/// applied the command, so it is reported as [`ServerError::Uncertain`],
/// never repeated here (the server cannot tell whether the payload carries
/// an exactly-once session; its sender can, and retries under it).
async fn forward(
    host: &ShardHost,
    leader: u64,
    group: u64,
    req: &ServiceRequest,
    deadline: Instant,
) -> Result<Bytes, ServerError> {
    let failed = |e: NetError| match e {
        NetError::NotConnected { .. } => ServerError::Unreachable {
            group,
            node: leader,
            reason: e.to_string(),
        },
        e => ServerError::Uncertain {
            group,
            node: leader,
            reason: format!("forwarded, no answer: {e}"),
        },
    };
    let body = ServiceRequest {
        route: Route::Redirect,
        ..req.clone()
    }
    .encode();
    let wait = deadline.saturating_duration_since(Instant::now());
    let frame = host
        .transport()
        .request(
            leader,
            service::kind::FORWARD,
            group,
            Body::from(body),
            wait,
        )
        .await
        .map_err(failed)?;
    let reply = decode_reply(frame.body).map_err(|e| ServerError::Uncertain {
        group,
        node: leader,
        reason: format!("its reply does not decode: {e}"),
    })?;
    if let Err(ServerError::NotLeader { leader: l, .. }) = &reply {
        sampan_fiber::group_log!(
            debug,
            group,
            "group {group}: node {leader} no longer leads (it names {l:?})"
        );
    }
    reply
}

/// A handle to one group of a [`RaftServer`]: `Send + Sync`, usable from
/// the group's shard (no hop), another shard or any thread (through the
/// owning shard's mailbox), async or blocking.
#[derive(Debug, Clone)]
pub struct GroupRef {
    group: u64,
    shared: Arc<Shared>,
}

impl GroupRef {
    /// The group's id.
    pub fn id(&self) -> u64 {
        self.group
    }

    /// The id of the node this handle belongs to.
    pub fn node(&self) -> u64 {
        self.shared.node
    }

    async fn call(&self, op: Op, payload: Bytes, route: Route) -> Result<Bytes, ServerError> {
        let req = ServiceRequest { op, route, payload };
        dispatch(&self.shared, self.group, req, true).await
    }

    fn call_blocking(&self, op: Op, payload: Bytes, route: Route) -> Result<Bytes, ServerError> {
        let req = ServiceRequest { op, route, payload };
        let (shared, group) = (self.shared.clone(), self.group);
        let handle = self
            .shared
            .runtime
            .shard(self.shared.owner(group))
            .map_err(|_| self.shared.shutting_down())?;
        handle
            .run_blocking(TaskClass::Latency, move || async move {
                dispatch(&shared, group, req, true).await
            })
            .unwrap_or_else(|e| match e {
                FiberError::BlockingOnShard { .. } => Err(ServerError::BadMessage {
                    reason: "a blocking call on a shard thread: use the async form".into(),
                }),
                _ => Err(self.shared.shutting_down()),
            })
    }

    /// Proposes `command`; resolves with the state machine's result once it
    /// is applied. A non-leader forwards it to the leader.
    pub async fn propose(&self, command: Bytes) -> Result<Bytes, ServerError> {
        self.call(Op::Propose, command, Route::Forward).await
    }

    /// [`GroupRef::propose`], choosing what a non-leader does.
    pub async fn propose_routed(&self, command: Bytes, route: Route) -> Result<Bytes, ServerError> {
        self.call(Op::Propose, command, route).await
    }

    /// A linearizable read (ReadIndex): the state machine answers `query`
    /// once it has applied everything committed when the read was asked.
    pub async fn read(&self, query: Bytes) -> Result<Bytes, ServerError> {
        self.call(Op::Read, query, Route::Forward).await
    }

    /// The answer to a linearizable read right now, without waiting, if
    /// this node's replica of the group lives on the calling shard and its
    /// leader lease allows it ([`GroupHandle::read_now`]); `make` builds
    /// the query only then. `None`: use [`GroupRef::read`].
    pub fn read_now_with(
        &self,
        make: impl FnOnce() -> Bytes,
    ) -> Option<Result<Bytes, ServerError>> {
        read_now_here(&self.shared, self.group, make)
    }

    /// [`GroupRef::read`], choosing what a non-leader does.
    pub async fn read_routed(&self, query: Bytes, route: Route) -> Result<Bytes, ServerError> {
        self.call(Op::Read, query, route).await
    }

    /// A read of this node's replica as applied so far (possibly stale,
    /// never forwarded): see [`Route::Local`].
    pub fn read_local_blocking(&self, query: Bytes) -> Result<Bytes, ServerError> {
        self.call_blocking(Op::Read, query, Route::Local)
    }

    /// This node's replica's role, term, leader and indexes.
    pub async fn status(&self) -> Result<GroupStatus, ServerError> {
        let b = self.call(Op::Status, Bytes::new(), Route::Redirect).await?;
        decode_status_reply(b)
    }

    /// Writes a snapshot of this node's replica now (see
    /// [`crate::group::GroupHandle::snapshot_now`]).
    pub async fn snapshot_now(&self) -> Result<SnapshotSaved, ServerError> {
        let b = self
            .call(Op::SnapshotNow, Bytes::new(), Route::Redirect)
            .await?;
        service::decode_saved(b).map_err(|e| ServerError::BadMessage {
            reason: format!("snapshot: {e}"),
        })
    }

    /// Changes the membership (on the leader, forwarded there from a
    /// follower); resolves once the new one is in force and committed.
    pub async fn change_membership(
        &self,
        voters: &BTreeSet<u64>,
        learners: &BTreeSet<u64>,
    ) -> Result<(), ServerError> {
        let payload = service::encode_members(&service::MembersChange {
            voters: voters.clone(),
            learners: learners.clone(),
            expected: None,
        });
        self.call(Op::ChangeMembers, payload, Route::Forward)
            .await
            .map(|_| ())
    }

    /// Hands leadership to voter `to`; resolves once `to` leads.
    pub async fn transfer_leader(&self, to: u64) -> Result<(), ServerError> {
        let payload = Bytes::copy_from_slice(&to.to_le_bytes());
        self.call(Op::TransferLeader, payload, Route::Forward)
            .await
            .map(|_| ())
    }

    /// [`GroupRef::snapshot_now`] from a plain thread.
    pub fn snapshot_now_blocking(&self) -> Result<SnapshotSaved, ServerError> {
        let b = self.call_blocking(Op::SnapshotNow, Bytes::new(), Route::Redirect)?;
        service::decode_saved(b).map_err(|e| ServerError::BadMessage {
            reason: format!("snapshot: {e}"),
        })
    }

    /// [`GroupRef::change_membership`] from a plain thread.
    pub fn change_membership_blocking(
        &self,
        voters: &BTreeSet<u64>,
        learners: &BTreeSet<u64>,
    ) -> Result<(), ServerError> {
        let payload = service::encode_members(&service::MembersChange {
            voters: voters.clone(),
            learners: learners.clone(),
            expected: None,
        });
        self.call_blocking(Op::ChangeMembers, payload, Route::Forward)
            .map(|_| ())
    }

    /// [`GroupRef::transfer_leader`] from a plain thread.
    pub fn transfer_leader_blocking(&self, to: u64) -> Result<(), ServerError> {
        let payload = Bytes::copy_from_slice(&to.to_le_bytes());
        self.call_blocking(Op::TransferLeader, payload, Route::Forward)
            .map(|_| ())
    }

    /// [`GroupRef::propose`] from a plain thread (not a shard).
    pub fn propose_blocking(&self, command: Bytes) -> Result<Bytes, ServerError> {
        self.call_blocking(Op::Propose, command, Route::Forward)
    }

    /// [`GroupRef::propose_routed`] from a plain thread.
    pub fn propose_routed_blocking(
        &self,
        command: Bytes,
        route: Route,
    ) -> Result<Bytes, ServerError> {
        self.call_blocking(Op::Propose, command, route)
    }

    /// [`GroupRef::read`] from a plain thread.
    pub fn read_blocking(&self, query: Bytes) -> Result<Bytes, ServerError> {
        self.call_blocking(Op::Read, query, Route::Forward)
    }

    /// [`GroupRef::read_routed`] from a plain thread.
    pub fn read_routed_blocking(&self, query: Bytes, route: Route) -> Result<Bytes, ServerError> {
        self.call_blocking(Op::Read, query, route)
    }

    /// [`GroupRef::status`] from a plain thread.
    pub fn status_blocking(&self) -> Result<GroupStatus, ServerError> {
        decode_status_reply(self.call_blocking(Op::Status, Bytes::new(), Route::Redirect)?)
    }
}

fn decode_status_reply(b: Bytes) -> Result<GroupStatus, ServerError> {
    service::decode_status(b).map_err(|e| ServerError::BadMessage {
        reason: format!("status: {e}"),
    })
}
