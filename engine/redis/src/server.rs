//! The node's Redis listener: RESP2 on every shard of a [`RaftServer`],
//! one fiber per connection, requests served through the node's KV groups.
//!
//! - **Where.** Every shard binds the same address (`SO_REUSEPORT`: the
//!   kernel spreads connections over the shards). A connection lives on the
//!   shard that accepted it; its requests reach their group through
//!   [`GroupRef`], which hops to the group's shard and, on a follower,
//!   forwards to the leader.
//! - **Databases.** `SELECT n` picks the KV group: database `n` is group
//!   `n + 1` (database 0, the default, is group 1), for `n` below
//!   [`ListenerSettings::databases`]. A database whose group this node does
//!   not host answers `-ERR node N has no group G`.
//! - **Pipelines.** The connection parses every complete request in its
//!   read buffer, runs them in order, and writes all the replies in one
//!   write. Within the batch, consecutive plain writes (`SET k v`, `MSET`)
//!   become one `PutMany` proposal and consecutive key reads (`GET`,
//!   `MGET`, `EXISTS`, `TTL`, `TYPE`, `STRLEN`) one read; the shard's
//!   [`Batcher`] then merges those of all its connections.
//! - **Bad input.** A malformed request gets Redis's `-ERR Protocol error:
//!   ...` reply and closes its connection only; lengths over
//!   [`RespLimits`] are refused before anything is allocated for them.
//! - **Lifetime.** The listeners and connections run until the server's
//!   runtime stops ([`RaftServer::shutdown`]).

use super::acl::{self, Acl, Commands, Denied, User};
use super::answer::{ClientCounts, GroupInfo, info_text, key_read_keys, render_key_read};
use super::batch::{BATCH_BYTES_MAX, BATCH_PAIRS_MAX, Batcher};
use super::cluster;
use super::command::{self, ClientCmd, Local, ParseError, Read, Request, WriteReply};
use super::command_table::{self, COMMANDS};
use super::exactly_once::{WriteError, Writer};
use super::glob::glob_match;
use super::render::{ScanCursors, error_text, render_write};
use super::resp::{Reply, RespLimits, parse_request};
use super::tls::TlsConfig;

mod multi;
use bytes::{Bytes, BytesMut};
use futures_lite::future::or;
use sampan::server::{GroupRef, RaftFactory, RaftServer};
use sampan::state_machine::now_ms;
use sampan_fiber::net::{TcpListener, TcpStream};
use sampan_fiber::tls::TlsStream;
use sampan_fiber::{FiberError, TaskClass};
use sampan_kv::{
    BATCH_COMMANDS_MAX, DataQuery, KEY_MAX_BYTES, KvAnswer, KvCommand, KvQuery, KvRequest,
    KvResult, PutCondition, QUERY_KEYS_MAX, Reply as DataReply, ScanRange, Ttl, VALUE_MAX_BYTES,
    ValueKind,
};
use sampan_proto::service::Route;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Most bytes read from a socket at a time.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// Bytes a new connection's read buffer starts with: an idle connection
/// holds this much, not [`READ_CHUNK_BYTES`] for each of its three
/// buffers (10,000 idle clients would reserve ~1.9 GB, resident as soon
/// as the allocator hands out recycled memory it must zero); it doubles
/// while reads fill it.
const READ_FIRST_BYTES: usize = 4 << 10;
/// An output buffer grown past this is given back after its write.
const OUT_KEEP_BYTES: usize = 1 << 20;
/// Replies pending past this are written out before the pipeline goes on,
/// so a long pipeline of large replies holds about this much, not all of
/// them, and a client that does not read stops its own pipeline.
const OUT_FLUSH_BYTES: usize = 256 << 10;
/// Pause after a failed `accept` (out of file descriptors, say).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// How the Redis listener behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    /// What a client may send (bulk length, argument count, inline length).
    pub limits: RespLimits,
    /// Databases `SELECT` accepts: database `n` is group `n + 1`.
    pub databases: u64,
    /// Merge plain writes and key reads of all the shard's connections
    /// into shared proposals and reads (off: each pipeline on its own).
    pub batching: bool,
    /// Merged proposals (and reads) in flight per group per shard.
    pub in_flight_max: usize,
    /// Most requests of one pipeline run before the next read.
    pub pipeline_max: usize,
    /// Who may connect and what each user may do (default: no
    /// authentication, as Redis without `requirepass`).
    pub acl: Acl,
    /// Refuse to listen on an address other than loopback while no
    /// authentication is configured (Redis's protected mode, made a
    /// refusal to start).
    pub protected_mode: bool,
    /// Most connections at once (Redis's `maxclients`), shared evenly by
    /// the shards; one more is told `-ERR max number of clients reached`
    /// and closed, as Redis does.
    pub maxclients: usize,
    /// Close a connection that sent nothing for this long (Redis's
    /// `timeout`); `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Replies pending for one client past this many bytes close it
    /// (Redis's `client-output-buffer-limit` hard limit): one reply that
    /// large (a `KEYS *` of a huge database) is not built up and kept.
    pub output_buffer_limit: usize,
    /// A client that takes none of its pending replies for this long is
    /// closed (a reader that stopped reading, or reads a byte at a time):
    /// it cannot hold its replies and its fiber forever.
    pub output_stall_timeout: Duration,
    /// Probe a silent connection after this long and close it when the
    /// peer is gone (Redis's `tcp-keepalive`, 300 s); `None`: no probes.
    pub tcp_keepalive: Option<Duration>,
    /// Serve TLS with this config (a Redis `tls-port` listener);
    /// `None`: plain TCP.
    pub tls: Option<TlsConfig>,
    /// A request whose first bytes came must be whole within this long, or
    /// the connection is closed (a client trickling a request cannot hold
    /// its buffer and fiber for ever).
    pub partial_request_timeout: Duration,
    /// The node's key events, which wake blocked pops (`BLPOP`...) when a
    /// push to their key applies here; without them a blocked client
    /// re-tries once a second.
    pub key_events: Option<Arc<sampan_kv::KeyEvents>>,
    /// Answer as a Redis Cluster whose slots are spread over the databases'
    /// groups (see [`crate::cluster`]); `None`: a plain server with
    /// `SELECT`able databases.
    pub cluster: Option<crate::cluster::ClusterSettings>,
}

impl ListenerSettings {
    /// The settings `CONFIG GET` reports, under Redis's names and in its
    /// formats, with what they are here: what redis-benchmark and
    /// monitoring tools ask for. A password is never shown: `requirepass`
    /// reads `(hidden)` when one is set.
    pub fn config_pairs(&self, port: u16) -> Vec<(&'static str, String)> {
        let secs = |d: Option<Duration>| d.map_or(0, |d| d.as_secs()).to_string();
        let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
        let (plain, tls) = if self.tls.is_some() {
            (0, port)
        } else {
            (port, 0)
        };
        vec![
            // Snapshots are Raft's, per group, by log size: no RDB saves.
            ("save", String::new()),
            // Every write is in the Raft log before it is acknowledged.
            ("appendonly", "yes".into()),
            ("appendfsync", "always".into()),
            ("databases", self.databases.to_string()),
            ("cluster-enabled", yes(self.cluster.is_some())),
            ("proto-max-bulk-len", self.limits.bulk_max_bytes.to_string()),
            (
                "client-query-buffer-limit",
                self.limits.request_max_bytes.to_string(),
            ),
            (
                "client-output-buffer-limit",
                format!(
                    "normal {} 0 {}",
                    self.output_buffer_limit,
                    self.output_stall_timeout.as_secs()
                ),
            ),
            ("maxclients", self.maxclients.to_string()),
            ("timeout", secs(self.idle_timeout)),
            ("tcp-keepalive", secs(self.tcp_keepalive)),
            ("protected-mode", yes(self.protected_mode)),
            (
                "requirepass",
                if self.acl.requires_auth() {
                    "(hidden)".into()
                } else {
                    String::new()
                },
            ),
            ("port", plain.to_string()),
            ("tls-port", tls.to_string()),
            // No memory limit or eviction: a write that does not fit is
            // refused by the store's own limits.
            ("maxmemory", "0".into()),
            ("maxmemory-policy", "noeviction".into()),
        ]
    }
}

/// Counters of one listener, all shards together (for `INFO`).
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections open now.
    pub connected_clients: AtomicU64,
    /// Connections refused for `maxclients`.
    pub rejected_connections: AtomicU64,
    /// Connections waiting in a blocking pop now.
    pub blocked_clients: AtomicU64,
    /// Connections closed for the output buffer limit or a stalled reader.
    pub output_buffer_limit_disconnections: AtomicU64,
    /// The id the next connection gets (`CLIENT ID`).
    next_client_id: AtomicU64,
    /// The connections open now, for `CLIENT LIST` (locked when one opens
    /// or closes, and by `CLIENT LIST`; never per request).
    registry: std::sync::Mutex<std::collections::BTreeMap<u64, Arc<ClientEntry>>>,
}

/// The Redis ports' connection counters for `/metrics`
/// ([`sampan::metrics`]), read at each scrape, one sample per port.
/// Register one per node: [`RedisCollector::with`] joins the ports' (two
/// collectors would each write the same families, which a scraper
/// refuses).
#[derive(Debug, Clone)]
pub struct RedisCollector {
    ports: Vec<(u16, Arc<ListenerStats>)>,
}

impl RedisCollector {
    /// This collector with `other`'s ports too.
    pub fn with(mut self, other: RedisCollector) -> RedisCollector {
        self.ports.extend(other.ports);
        self
    }
}

impl prometheus_client::collector::Collector for RedisCollector {
    fn encode(
        &self,
        mut enc: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        type Field = fn(&ListenerStats) -> &AtomicU64;
        let read = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let gauges: [(&str, &str, Field); 2] = [
            (
                "sampan_redis_connected_clients",
                "Redis connections open now.",
                |s| &s.connected_clients,
            ),
            (
                "sampan_redis_blocked_clients",
                "Redis connections waiting in a blocking pop now.",
                |s| &s.blocked_clients,
            ),
        ];
        for (name, help, field) in gauges {
            let mut f =
                enc.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
            for (port, s) in &self.ports {
                ConstGauge::new(i64::try_from(read(field(s))).unwrap_or(i64::MAX))
                    .encode(f.encode_family(&[("port", *port)])?)?;
            }
        }
        let counters: [(&str, &str, Field); 2] = [
            (
                "sampan_redis_rejected_connections",
                "Redis connections refused for maxclients.",
                |s| &s.rejected_connections,
            ),
            (
                "sampan_redis_output_limit_disconnections",
                "Redis connections closed for the output buffer limit or a stalled reader.",
                |s| &s.output_buffer_limit_disconnections,
            ),
        ];
        for (name, help, field) in counters {
            let mut f =
                enc.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
            for (port, s) in &self.ports {
                ConstCounter::new(read(field(s))).encode(f.encode_family(&[("port", *port)])?)?;
            }
        }
        Ok(())
    }
}

/// A connection as `CLIENT INFO` and `CLIENT LIST` show it, in Redis 7's
/// fields (buffer and memory fields are not tracked and show 0). What
/// changes per request is atomic; the names, set rarely, are locked.
#[derive(Debug)]
struct ClientEntry {
    id: u64,
    addr: SocketAddr,
    laddr: Option<SocketAddr>,
    opened: std::time::Instant,
    /// Milliseconds after `opened` of the last request.
    last_ms: AtomicU64,
    db: AtomicU64,
    resp: AtomicU64,
    /// Name, library name, library version, user.
    names: std::sync::Mutex<[Bytes; 4]>,
}

impl ClientEntry {
    fn line(&self) -> String {
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        let user = String::from_utf8_lossy(&names[3]).into_owned();
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        let age = self.opened.elapsed();
        let idle = age.as_millis() as u64
            - self
                .last_ms
                .load(Ordering::Relaxed)
                .min(age.as_millis() as u64);
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags=N db={} sub=0 psub=0 \
             ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 \
             oll=0 omem=0 tot-mem=0 events=r cmd=NULL user={user} redir=-1 resp={} \
             lib-name={} lib-ver={}\n",
            self.id,
            self.addr,
            self.laddr.map_or_else(String::new, |a| a.to_string()),
            text(&names[0]),
            age.as_secs(),
            idle / 1000,
            self.db.load(Ordering::Relaxed),
            self.resp.load(Ordering::Relaxed),
            text(&names[1]),
            text(&names[2]),
        )
    }

    fn set_name(&self, i: usize, value: Bytes) {
        if let Ok(mut names) = self.names.lock() {
            names[i] = value;
        }
    }
}

/// A connection in the listener's registry from [`Registered::new`] until
/// dropped (however its fiber ends).
struct Registered(Arc<ListenerStats>, Arc<ClientEntry>);

impl Registered {
    fn new(stats: Arc<ListenerStats>, entry: Arc<ClientEntry>) -> Registered {
        if let Ok(mut r) = stats.registry.lock() {
            r.insert(entry.id, entry.clone());
        }
        Registered(stats, entry)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut r) = self.0.registry.lock() {
            r.remove(&self.1.id);
        }
    }
}

impl Default for ListenerSettings {
    fn default() -> Self {
        ListenerSettings {
            limits: RespLimits::default(),
            databases: 16,
            batching: true,
            in_flight_max: 4,
            pipeline_max: 1024,
            acl: Acl::default(),
            protected_mode: true,
            maxclients: 10_000,
            idle_timeout: None,
            output_buffer_limit: 64 << 20,
            output_stall_timeout: Duration::from_secs(60),
            tcp_keepalive: Some(Duration::from_secs(300)),
            tls: None,
            partial_request_timeout: Duration::from_secs(60),
            key_events: None,
            cluster: None,
        }
    }
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// A shard could not bind the address.
    #[error("redis listener: shard {shard} cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The shard.
        shard: usize,
        /// The socket error.
        source: io::Error,
    },
    /// A shard could not be reached (the runtime is stopping).
    #[error("redis listener: shard {shard}: {source}")]
    Fiber {
        /// The shard.
        shard: usize,
        /// Why.
        source: FiberError,
    },
    /// The settings make no sense.
    #[error("redis listener: {0}")]
    Settings(String),
}

/// A running Redis listener (it stops with the server's runtime).
#[derive(Debug, Clone)]
pub struct RedisListener {
    addr: SocketAddr,
    shards: usize,
    stats: Arc<ListenerStats>,
}

impl RedisListener {
    /// The address every shard listens on (the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its connection counters (what `INFO clients` shows), live.
    pub fn stats(&self) -> Arc<ListenerStats> {
        self.stats.clone()
    }

    /// A Prometheus collector of its counters, labelled with its port.
    pub fn collector(&self) -> RedisCollector {
        RedisCollector {
            ports: vec![(self.addr.port(), self.stats.clone())],
        }
    }

    /// How many shards accept connections.
    pub fn shards(&self) -> usize {
        self.shards
    }
}

/// Starts the Redis listener on every shard of `server`, at `addr` (port
/// 0: a free port, the same on every shard). Call it from a plain thread.
pub fn listen<F: RaftFactory>(
    server: &RaftServer<F>,
    addr: SocketAddr,
    settings: ListenerSettings,
) -> Result<RedisListener, ListenError> {
    if settings.databases == 0 || settings.pipeline_max == 0 || settings.maxclients == 0 {
        return Err(ListenError::Settings(
            "databases, pipeline_max and maxclients must be at least 1".into(),
        ));
    }
    if settings.output_buffer_limit == 0 || settings.output_stall_timeout.is_zero() {
        return Err(ListenError::Settings(
            "output_buffer_limit and output_stall_timeout must be above zero".into(),
        ));
    }
    let stats = Arc::new(ListenerStats::default());
    // Each shard accepts its share (the kernel spreads connections over
    // the shards' SO_REUSEPORT listeners).
    let clients_max = settings.maxclients.div_ceil(server.shards().max(1));
    if settings.protected_mode && !settings.acl.requires_auth() && !addr.ip().is_loopback() {
        return Err(ListenError::Settings(format!(
            "protected mode: it would listen on {addr}, which is not a loopback address, \
             with no password; set [redis] requirepass (or users), listen on 127.0.0.1, \
             or set [redis] protected_mode = false if the network itself keeps strangers out"
        )));
    }
    let groups: Vec<GroupRef> = (1..=settings.databases).map(|g| server.group(g)).collect();
    let databases = groups.len();
    let node = server.config().node_id;
    let request_timeout = Duration::from_millis(server.config().request_timeout_ms);
    let runtime = server.runtime();
    let mut bound = addr;
    for shard in 0..server.shards() {
        let (groups, settings, at) = (groups.clone(), settings.clone(), bound);
        let stats = stats.clone();
        let local = runtime
            .shard(shard)
            .and_then(|s| {
                s.run_blocking(TaskClass::Latency, move || async move {
                    let listener = TcpListener::bind(at)?;
                    let local = listener.local_addr()?;
                    let writer = Rc::new(Writer::new(request_timeout));
                    let ctx = Rc::new(Ctx {
                        node,
                        port: local.port(),
                        batcher: Batcher::new(
                            settings.batching,
                            settings.in_flight_max,
                            writer.clone(),
                        ),
                        writer,
                        groups,
                        settings,
                        clients: std::cell::Cell::new(0),
                        clients_max,
                        refusing: std::cell::Cell::new(false),
                        stats,
                        leaders: std::cell::RefCell::new(vec![None; databases]),
                    });
                    sampan_fiber::spawn(
                        TaskClass::Latency,
                        "redis-accept",
                        accept_loop(listener, ctx),
                    )
                    .map_err(io::Error::other)?;
                    Ok::<SocketAddr, io::Error>(local)
                })
            })
            .map_err(|source| ListenError::Fiber { shard, source })?
            .map_err(|source| ListenError::Bind {
                addr: at,
                shard,
                source,
            })?;
        bound = local;
    }
    log::info!("node {node}: redis listener on {bound}");
    Ok(RedisListener {
        addr: bound,
        shards: server.shards(),
        stats,
    })
}

/// A group's leader (if any) as a shard last looked it up, and when.
type LeaderSeen = (Option<u64>, Instant);

/// What every connection of one shard shares.
struct Ctx {
    node: u64,
    port: u16,
    /// Database `n`'s group is `groups[n]`.
    groups: Vec<GroupRef>,
    settings: ListenerSettings,
    batcher: Batcher,
    /// Every write goes through it, under an exactly-once session.
    writer: Rc<Writer>,
    /// Connections open on this shard, and the most it takes.
    clients: std::cell::Cell<usize>,
    clients_max: usize,
    /// Whether connections are being refused for `maxclients` now: the
    /// first refusal of a run is logged, not each (a flood of them would
    /// fill the log).
    refusing: std::cell::Cell<bool>,
    /// The listener's counters, shared by its shards.
    stats: Arc<ListenerStats>,
    /// In cluster mode, each database's leader as last looked up, and when.
    leaders: std::cell::RefCell<Vec<Option<LeaderSeen>>>,
}

/// A connection counted as open from [`Client::open`] until dropped
/// (however its fiber ends).
struct Client(Rc<Ctx>);

impl Client {
    /// Counts a connection in, unless the shard is at `maxclients`.
    fn open(ctx: &Rc<Ctx>) -> Option<Client> {
        if ctx.clients.get() >= ctx.clients_max {
            return None;
        }
        ctx.clients.set(ctx.clients.get() + 1);
        ctx.refusing.set(false);
        ctx.stats.connected_clients.fetch_add(1, Ordering::Relaxed);
        Some(Client(ctx.clone()))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.0.clients.set(self.0.clients.get().saturating_sub(1));
        self.0
            .stats
            .connected_clients
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// What Redis tells a connection over `maxclients`.
const MAXCLIENTS_REPLY: &[u8] = b"-ERR max number of clients reached\r\n";

/// One connection's state.
#[derive(Debug, Default)]
struct Conn {
    db: u64,
    cursors: ScanCursors,
    /// Who the connection is; `None` until it authenticates.
    user: Option<Arc<User>>,
    /// The protocol its replies speak: 2 (RESP2), or 3 after `HELLO 3`.
    proto: u8,
    /// What `CLIENT INFO` shows of it.
    entry: Option<Arc<ClientEntry>>,
    /// After `MULTI`: the requests queued for `EXEC` (an error here is
    /// one Redis reports in `EXEC`'s reply, as a bad argument).
    multi: Option<Vec<Result<Request, ParseError>>>,
    /// A queued request was refused: `EXEC` will abort.
    multi_dirty: bool,
    /// `WATCH`ed keys and the version each had (`None`: absent).
    watched: Vec<(Bytes, Option<u64>)>,
    /// In cluster mode, the slot a transaction (or `WATCH`) is bound to.
    cluster_pin: Option<u16>,
}

impl Conn {
    /// The connection is `user` from now on.
    fn set_user(&mut self, user: Arc<User>) {
        if let Some(e) = &self.entry {
            e.set_name(3, Bytes::from(user.name().to_string()));
        }
        self.user = Some(user);
    }
}

impl Ctx {
    fn group(&self, conn: &Conn) -> &GroupRef {
        // `Conn::db` only takes values SELECT checked against `groups`.
        &self.groups[conn.db as usize]
    }
}

async fn accept_loop(listener: TcpListener, ctx: Rc<Ctx>) {
    loop {
        let accepted = or(async { Some(listener.accept().await) }, async {
            sampan_fiber::draining().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok((stream, peer))) => {
                let _ = stream.set_nodelay(true);
                if let Err(e) = stream.set_keepalive(ctx.settings.tcp_keepalive) {
                    log::debug!("node {}: keepalive on {peer}: {e}", ctx.node);
                }
                let Some(client) = Client::open(&ctx) else {
                    ctx.stats
                        .rejected_connections
                        .fetch_add(1, Ordering::Relaxed);
                    if !ctx.refusing.replace(true) {
                        log::warn!(
                            "node {}: refusing redis connections (from {peer} first): \
                             {} clients open, the shard's share of maxclients",
                            ctx.node,
                            ctx.clients.get()
                        );
                    }
                    let plain = ctx.settings.tls.is_none();
                    let refuse = async move {
                        // A TLS client could not read the plain refusal.
                        if plain {
                            let _ = stream.write_all(MAXCLIENTS_REPLY).await;
                        }
                        let _ = stream.shutdown(Shutdown::Both);
                    };
                    let _ = sampan_fiber::spawn(TaskClass::Latency, "redis-refuse", refuse);
                    continue;
                };
                let work = serve_connection(stream, peer, client);
                if let Err(e) = sampan_fiber::spawn(TaskClass::Latency, "redis-conn", work) {
                    log::warn!(
                        "node {}: redis connection from {peer} dropped: {e}",
                        ctx.node
                    );
                }
            }
            Some(Err(e)) => {
                log::warn!("node {}: redis accept failed: {e}", ctx.node);
                sampan_fiber::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

async fn serve_connection(tcp: TcpStream, peer: SocketAddr, client: Client) {
    let ctx = &client.0;
    let stream = match &ctx.settings.tls {
        None => ClientStream::Plain(tcp),
        Some(tls) => {
            let conn = match rustls::ServerConnection::new(tls.0.clone()) {
                Ok(conn) => conn,
                Err(e) => {
                    log::warn!("node {}: TLS for {peer}: {e}", ctx.node);
                    return;
                }
            };
            let handshake = TlsStream::handshake(tcp, conn);
            match sampan_fiber::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(tls)) => ClientStream::Tls(Box::new(tls)),
                Ok(Err(e)) => {
                    log::debug!("node {}: TLS handshake with {peer} failed: {e}", ctx.node);
                    return;
                }
                Err(_) => {
                    log::debug!("node {}: no TLS handshake from {peer} in time", ctx.node);
                    return;
                }
            }
        }
    };
    let entry = Arc::new(ClientEntry {
        id: ctx.stats.next_client_id.fetch_add(1, Ordering::Relaxed) + 1,
        addr: peer,
        laddr: stream.local_addr(),
        opened: std::time::Instant::now(),
        last_ms: AtomicU64::new(0),
        db: AtomicU64::new(0),
        resp: AtomicU64::new(2),
        names: std::sync::Mutex::new(Default::default()),
    });
    if let Some(u) = ctx.settings.acl.on_connect() {
        entry.set_name(3, Bytes::from(u.name().to_string()));
    }
    let _registered = Registered::new(ctx.stats.clone(), entry.clone());
    match connection_loop(&stream, ctx, entry).await {
        Ok(()) => log::debug!("node {}: redis client {peer} left", ctx.node),
        Err(e) => log::debug!("node {}: redis client {peer}: {e}", ctx.node),
    }
    stream.close().await;
}

/// Time a client has to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client's connection: plain, or under TLS (the `tls_port`).
enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl ClientStream {
    fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            ClientStream::Plain(s) => s.local_addr().ok(),
            ClientStream::Tls(s) => s.tcp().local_addr().ok(),
        }
    }

    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(s) => s.read(buf).await,
            ClientStream::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.write_all(buf).await,
            ClientStream::Tls(s) => s.write_all(buf).await,
        }
    }

    /// Whether the client went away (plain TCP: a FIN with nothing unread
    /// before it; under TLS only a failed connection shows, since the
    /// close alert is data).
    fn peer_closed(&self) -> bool {
        match self {
            ClientStream::Plain(s) => s.peer_closed(),
            ClientStream::Tls(s) => s.tcp().peer_closed(),
        }
    }

    async fn close(&self) {
        let _ = match self {
            ClientStream::Plain(s) => s.shutdown(Shutdown::Both),
            ClientStream::Tls(s) => sampan_fiber::timeout(TLS_HANDSHAKE_TIMEOUT, s.close())
                .await
                .unwrap_or(Ok(())),
        };
    }
}

/// Reads requests, runs each batch of them, writes the replies; ends on
/// EOF, `QUIT`, a protocol error or the runtime stopping.
async fn connection_loop(
    stream: &ClientStream,
    ctx: &Ctx,
    entry: Arc<ClientEntry>,
) -> io::Result<()> {
    let mut input = BytesMut::new();
    let mut scratch = vec![0u8; READ_FIRST_BYTES];
    let mut out = BytesMut::new();
    let mut conn = Conn {
        user: ctx.settings.acl.on_connect(),
        proto: 2,
        entry: Some(entry),
        ..Conn::default()
    };
    // When the request in `input` began to arrive.
    let mut begun: Option<std::time::Instant> = None;
    loop {
        let mut batch = Vec::new();
        let mut bad = None;
        while batch.len() < ctx.settings.pipeline_max {
            match parse_request(&mut input, &ctx.settings.limits) {
                Ok(Some(args)) if args.is_empty() => {}
                Ok(Some(args)) => batch.push(args),
                Ok(None) => break,
                Err(e) => {
                    bad = Some(e);
                    break;
                }
            }
        }
        let more_parsed = batch.len() >= ctx.settings.pipeline_max;
        if let Some(e) = &conn.entry
            && !batch.is_empty()
        {
            e.last_ms
                .store(e.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        let quit = {
            // Counted while it runs: a draining node waits for its reply.
            let _serving = sampan_fiber::Busy::begin();
            let quit = execute(ctx, stream, &mut conn, &batch, &mut out).await?;
            if let Some(e) = &bad {
                Reply::new(&mut out).error(&format!("ERR {e}"));
            }
            flush(ctx, stream, &mut out, 1).await?;
            quit
        };
        // A draining node closes a connection once its replies are out:
        // the client goes to another node for what it sends next.
        if quit || bad.is_some() || (sampan_fiber::drain_requested() && !more_parsed) {
            return Ok(());
        }
        if more_parsed {
            continue;
        }
        // A request begun must be finished in time (a slowloris cannot hold
        // its buffer and fiber by trickling bytes); an idle client waits
        // for Redis's `timeout`.
        if input.is_empty() {
            begun = None;
        } else if begun.is_none() {
            begun = Some(std::time::Instant::now());
        }
        let partial_limit = ctx.settings.partial_request_timeout;
        let wait = match (begun, ctx.settings.idle_timeout) {
            (Some(t), _) => Some(partial_limit.saturating_sub(t.elapsed())),
            (None, idle) => idle,
        };
        let read = or(async { Some(stream.read(&mut scratch).await) }, async {
            match wait {
                Some(w) => or(sampan_fiber::draining(), sampan_fiber::sleep(w)).await,
                None => sampan_fiber::draining().await,
            }
            None
        })
        .await;
        let n = match read {
            None if begun.is_some() && !sampan_fiber::drain_requested() => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "a request of {} bytes so far not finished within {partial_limit:?}",
                        input.len()
                    ),
                ));
            }
            None => return Ok(()),
            Some(r) => r?,
        };
        if n == 0 {
            return Ok(());
        }
        input.extend_from_slice(&scratch[..n]);
        // A read that filled the buffer: the client sends more than it
        // holds; read more at a time, up to READ_CHUNK_BYTES.
        if n == scratch.len() && scratch.len() < READ_CHUNK_BYTES {
            scratch.resize(scratch.len() * 2, 0);
        }
    }
}

/// Writes the replies in `out` once there are at least `at_least` bytes
/// of them, within the output limits: more than
/// [`ListenerSettings::output_buffer_limit`] pending, or a client that does
/// not take them within [`ListenerSettings::output_stall_timeout`], fails
/// the connection (and is counted).
async fn flush(
    ctx: &Ctx,
    stream: &ClientStream,
    out: &mut BytesMut,
    at_least: usize,
) -> io::Result<()> {
    if out.is_empty() || out.len() < at_least {
        return Ok(());
    }
    flush_room(ctx, out, 0)?;
    let stall = ctx.settings.output_stall_timeout;
    // No timer unless the socket is full: a write that completes at once
    // never registers its deadline.
    match sampan_fiber::within(Instant::now() + stall, stream.write_all(out)).await {
        Ok(written) => written?,
        Err(_) => {
            return Err(over_limit(
                ctx,
                format!("{} bytes of replies not taken within {stall:?}", out.len()),
            ));
        }
    }
    out.clear();
    if out.capacity() > OUT_KEEP_BYTES {
        *out = BytesMut::new();
    }
    Ok(())
}

/// Fails (and counts) a connection over its output limits.
fn over_limit(ctx: &Ctx, what: String) -> io::Error {
    ctx.stats
        .output_buffer_limit_disconnections
        .fetch_add(1, Ordering::Relaxed);
    io::Error::other(what)
}

/// Whether `more` bytes of replies fit beside those pending in `out`
/// within [`ListenerSettings::output_buffer_limit`]; else fails.
fn flush_room(ctx: &Ctx, out: &BytesMut, more: usize) -> io::Result<()> {
    let limit = ctx.settings.output_buffer_limit;
    let pending = out.len().saturating_add(more);
    if pending > limit {
        return Err(over_limit(
            ctx,
            format!("{pending} bytes of replies pending, over the output buffer limit of {limit}"),
        ));
    }
    Ok(())
}

/// Runs a pipeline's requests in order, their replies appended to `out`
/// (written out as they pass [`OUT_FLUSH_BYTES`]). Returns whether the
/// client asked to quit.
async fn execute(
    ctx: &Ctx,
    stream: &ClientStream,
    conn: &mut Conn,
    batch: &[Vec<Bytes>],
    out: &mut BytesMut,
) -> io::Result<bool> {
    for args in batch {
        if let Some(name) = args.first() {
            crate::stats::call(name);
        }
    }
    let mut parsed: Vec<Result<Request, ParseError>> =
        batch.iter().map(|a| command::parse(a)).collect();
    gate(ctx, conn, batch, &mut parsed);
    let Some(settings) = ctx.settings.cluster.as_ref() else {
        return execute_run(ctx, stream, conn, &parsed, out).await;
    };
    // Cluster mode: each request goes to its slot's database, runs of the
    // same database together.
    let targets = route(ctx, settings, conn, batch, &mut parsed).await;
    let mut start = 0;
    while start < parsed.len() {
        let db = targets[start];
        let end = (start..parsed.len())
            .find(|&j| targets[j] != db)
            .unwrap_or(parsed.len());
        conn.db = db;
        let quit = execute_run(ctx, stream, conn, &parsed[start..end], out).await;
        conn.db = 0;
        if quit? {
            return Ok(true);
        }
        start = end;
    }
    Ok(false)
}

/// The leader of database `db`'s group as this shard last heard, asked
/// again when older than [`cluster::LEADER_TTL`] (meanwhile the old answer
/// stands, so a burst of requests asks once).
async fn leader_of(ctx: &Ctx, db: u64) -> Option<u64> {
    let now = Instant::now();
    let known = ctx.leaders.borrow()[db as usize];
    if let Some((leader, at)) = known
        && now < at + cluster::LEADER_TTL
    {
        return leader;
    }
    let stale = known.and_then(|(l, _)| l);
    ctx.leaders.borrow_mut()[db as usize] = Some((stale, now));
    let leader = match ctx.groups[db as usize].status().await {
        Ok(s) => s.leader,
        Err(_) => None,
    };
    ctx.leaders.borrow_mut()[db as usize] = Some((leader, Instant::now()));
    leader
}

/// Cluster mode: the database each request of a pipeline goes to (its
/// keys' slot's), turning into its error a request whose keys span slots
/// (`CROSSSLOT`, also within a transaction or `WATCH`) or whose group
/// another node leads (`MOVED`). Keyless requests stay where the
/// connection is.
async fn route(
    ctx: &Ctx,
    settings: &cluster::ClusterSettings,
    conn: &mut Conn,
    batch: &[Vec<Bytes>],
    parsed: &mut [Result<Request, ParseError>],
) -> Vec<u64> {
    let dbs = ctx.settings.databases;
    let mut in_multi = conn.multi.is_some();
    let mut targets = Vec::with_capacity(parsed.len());
    for (args, p) in batch.iter().zip(parsed.iter_mut()) {
        let pinned_db = conn
            .cluster_pin
            .map_or(conn.db, |s| cluster::slot_db(s, dbs));
        let slot = match p {
            Err(_) => {
                targets.push(pinned_db);
                continue;
            }
            Ok(Request::Local(Local::Multi)) => {
                in_multi = true;
                targets.push(pinned_db);
                continue;
            }
            Ok(Request::Local(Local::Exec | Local::Discard)) => {
                targets.push(pinned_db);
                if in_multi {
                    conn.cluster_pin = None;
                }
                in_multi = false;
                continue;
            }
            Ok(Request::Local(Local::Unwatch)) if !in_multi => {
                conn.cluster_pin = None;
                targets.push(pinned_db);
                continue;
            }
            Ok(_) => match cluster::request_slot(args) {
                Err(cluster::CrossSlot) => {
                    *p = Err(ParseError(cluster::CROSSSLOT.into()));
                    targets.push(pinned_db);
                    continue;
                }
                Ok(None) => {
                    targets.push(pinned_db);
                    continue;
                }
                Ok(Some(slot)) => slot,
            },
        };
        let binds = in_multi || matches!(p, Ok(Request::Local(Local::Watch(_))));
        if binds {
            if conn.cluster_pin.is_some_and(|pin| pin != slot) {
                *p = Err(ParseError(cluster::CROSSSLOT.into()));
                targets.push(pinned_db);
                continue;
            }
            conn.cluster_pin = Some(slot);
        }
        let db = cluster::slot_db(slot, dbs);
        if let Some(leader) = leader_of(ctx, db).await
            && leader != ctx.node
            && let Some(addr) = settings.addr(leader)
        {
            *p = Err(ParseError(cluster::moved(slot, addr)));
        }
        targets.push(db);
    }
    targets
}

/// Runs a parsed pipeline (or, in cluster mode, a run of it bound for one
/// database) against the connection's database; `true` once it quits.
async fn execute_run(
    ctx: &Ctx,
    stream: &ClientStream,
    conn: &mut Conn,
    parsed: &[Result<Request, ParseError>],
    out: &mut BytesMut,
) -> io::Result<bool> {
    let mut i = 0;
    while i < parsed.len() {
        flush(ctx, stream, out, OUT_FLUSH_BYTES).await?;
        if multi::intercept(ctx, conn, &parsed[i], out).await {
            i += 1;
            continue;
        }
        match &parsed[i] {
            Err(ParseError(msg)) => {
                Reply::new(out).error(msg);
                i += 1;
            }
            Ok(Request::Read(r)) if key_read_keys(r).is_some() => {
                let end = run_end(parsed, i, QUERY_KEYS_MAX, |req| match req {
                    Request::Read(r) => key_read_keys(r).map(<[Bytes]>::len),
                    _ => None,
                });
                key_reads(ctx, stream, conn, &parsed[i..end], out).await?;
                i = end;
            }
            Ok(Request::Write { command, .. }) if mergeable_pairs(command).is_some() => {
                let end = run_end(parsed, i, BATCH_PAIRS_MAX, |req| match req {
                    Request::Write { command, .. } => mergeable_pairs(command),
                    _ => None,
                });
                merged_writes(ctx, conn, &parsed[i..end], out).await;
                i = end;
            }
            Ok(Request::Write { command, reply }) => {
                let end = write_run_end(parsed, i);
                if end - i > 1 {
                    batched_writes(ctx, conn, &parsed[i..end], out).await;
                } else {
                    single_write(ctx, conn, command, *reply, out).await;
                }
                i = end;
            }
            Ok(Request::Read(r)) => {
                other_read(ctx, conn, r, out).await;
                i += 1;
            }
            Ok(Request::Blocking {
                command,
                keys,
                timeout,
                nil_array,
            }) => {
                blocking(ctx, stream, conn, command, keys, *timeout, *nil_array, out).await?;
                i += 1;
            }
            Ok(Request::Local(Local::Cluster(args))) => {
                cluster_command(ctx, conn, args, out).await;
                i += 1;
            }
            Ok(Request::Local(l)) => {
                if local(ctx, conn, l, out) {
                    return Ok(true);
                }
                i += 1;
            }
        }
    }
    Ok(false)
}

/// Applies authentication and permissions to a parsed pipeline, in order:
/// an `AUTH` (or `HELLO ... AUTH`) changes who the connection is for the
/// requests after it, and a `SELECT` the database they are checked
/// against. A request the connection may not run becomes its error reply
/// (`-NOAUTH`, `-WRONGPASS`, `-NOPERM`); an `AUTH` is carried out here.
/// Pipelines from `redis-benchmark -a` start with their `AUTH`.
fn gate(
    ctx: &Ctx,
    conn: &mut Conn,
    batch: &[Vec<Bytes>],
    parsed: &mut [Result<Request, ParseError>],
) {
    let acl = &ctx.settings.acl;
    let mut db = conn.db;
    for (args, p) in batch.iter().zip(parsed.iter_mut()) {
        let Ok(req) = p else {
            continue;
        };
        let outcome: Result<Option<Request>, String> = match req {
            Request::Local(Local::Auth { user, password }) => {
                acl.authenticate(user.as_deref(), &password.0).map(|u| {
                    conn.set_user(u);
                    Some(Request::Local(Local::AuthOk))
                })
            }
            Request::Local(Local::Hello {
                proto,
                auth: Some((user, password)),
                setname,
            }) => {
                let (proto, setname) = (*proto, setname.clone());
                acl.authenticate(Some(user), &password.0).map(|u| {
                    conn.set_user(u);
                    Some(Request::Local(Local::Hello {
                        proto,
                        auth: None,
                        setname,
                    }))
                })
            }
            Request::Local(Local::Quit) => Ok(None),
            _ => match &conn.user {
                None if matches!(req, Request::Local(Local::Hello { .. })) => {
                    Err(acl::HELLO_NOAUTH.to_string())
                }
                None => Err(acl::NOAUTH.to_string()),
                Some(u) => {
                    let allowed = match req {
                        Request::Read(_) => u.may(false, db),
                        Request::Write { .. } | Request::Blocking { .. } => u.may(true, db),
                        Request::Local(Local::Select(n))
                            if (0..ctx.settings.databases as i64).contains(n) =>
                        {
                            let n = *n as u64;
                            u.may_use_db(n).map(|()| db = n)
                        }
                        Request::Local(Local::ConfigGet(_)) if u.commands() != Commands::All => {
                            Err(Denied::Command)
                        }
                        _ => Ok(()),
                    };
                    allowed.map(|()| None).map_err(|d| {
                        let command = match req {
                            Request::Local(Local::ConfigGet(_)) => "config|get".to_string(),
                            _ => String::from_utf8_lossy(&args[0]).to_ascii_lowercase(),
                        };
                        u.refusal(d, &command)
                    })
                }
            },
        };
        match outcome {
            Ok(None) => {}
            Ok(Some(r)) => *p = Ok(r),
            Err(msg) => *p = Err(ParseError(msg)),
        }
    }
}

/// The end of the run of requests from `start` that `weight` accepts
/// (`Some(items)`), holding at most `items_max` items after the first.
fn run_end(
    parsed: &[Result<Request, ParseError>],
    start: usize,
    items_max: usize,
    weight: impl Fn(&Request) -> Option<usize>,
) -> usize {
    let mut items = 0;
    let mut end = start;
    for p in &parsed[start..] {
        let Some(w) = p.as_ref().ok().and_then(&weight) else {
            break;
        };
        if end > start && items + w > items_max {
            break;
        }
        items += w;
        end += 1;
    }
    end
}

/// The pairs of a write that can join a `PutMany`: an unconditional,
/// TTL-less `SET` or `MSET` whose sizes the group accepts.
fn mergeable_pairs(command: &KvCommand) -> Option<usize> {
    let fits = |k: &Bytes, v: &Bytes| k.len() <= KEY_MAX_BYTES && v.len() <= VALUE_MAX_BYTES;
    match command {
        KvCommand::Put {
            key,
            value,
            ttl: Ttl::Persist,
            condition: PutCondition::Always,
            return_old: false,
        } if fits(key, value) => Some(1),
        KvCommand::PutMany {
            pairs,
            ttl: Ttl::Persist,
        } if pairs.len() <= BATCH_PAIRS_MAX
            && pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() <= BATCH_BYTES_MAX
            && pairs.iter().all(|(k, v)| fits(k, v)) =>
        {
            Some(pairs.len())
        }
        _ => None,
    }
}

/// A run of mergeable writes: one `PutMany`, `+OK` for each.
async fn merged_writes(
    ctx: &Ctx,
    conn: &Conn,
    run: &[Result<Request, ParseError>],
    out: &mut BytesMut,
) {
    let mut pairs = Vec::new();
    for req in run {
        match req {
            Ok(Request::Write {
                command: KvCommand::Put { key, value, .. },
                ..
            }) => pairs.push((key.clone(), value.clone())),
            Ok(Request::Write {
                command: KvCommand::PutMany { pairs: p, .. },
                ..
            }) => pairs.extend(p.iter().cloned()),
            _ => {}
        }
    }
    let outcome = ctx.batcher.put_many(ctx.group(conn), pairs).await;
    let mut reply = Reply::with_proto(out, conn.proto);
    for _ in run {
        match &outcome {
            Ok(()) => reply.simple("OK"),
            Err(e) => reply.error(e),
        }
    }
}

/// A run of key reads: one read of all their keys.
async fn key_reads(
    ctx: &Ctx,
    stream: &ClientStream,
    conn: &Conn,
    run: &[Result<Request, ParseError>],
    out: &mut BytesMut,
) -> io::Result<()> {
    let reads: Vec<&Read> = run
        .iter()
        .filter_map(|r| match r {
            Ok(Request::Read(r)) => Some(r),
            _ => None,
        })
        .collect();
    let keys: Vec<Bytes> = reads
        .iter()
        .flat_map(|r| key_read_keys(r).unwrap_or_default().iter().cloned())
        .collect();
    let outcome = ctx.batcher.get(ctx.group(conn), keys).await;
    let now = now_ms();
    let mut at = 0;
    for r in reads {
        let n = key_read_keys(r).map_or(0, <[Bytes]>::len);
        match &outcome {
            Ok(items) => {
                let items = items.get(at..at + n).unwrap_or_default();
                // The values are shared with the store until rendered: a
                // reply that would pass the limit is refused before it is
                // copied (a pipeline of GETs of one large value, an MGET
                // of many).
                let size: usize = items
                    .iter()
                    .map(|i| i.as_ref().map_or(0, |it| it.value.len()) + 16)
                    .sum();
                flush_room(ctx, out, size)?;
                render_key_read(r, items, now, &mut Reply::with_proto(out, conn.proto));
            }
            Err(e) => Reply::new(out).error(e),
        }
        at += n;
        flush(ctx, stream, out, OUT_FLUSH_BYTES).await?;
    }
    Ok(())
}

/// The end of the run of other writes (INCR, DEL, SET EX, ...) from
/// `start`: they go as one `Batch` proposal, bounded in commands and bytes.
fn write_run_end(parsed: &[Result<Request, ParseError>], start: usize) -> usize {
    let mut bytes = 0;
    let mut end = start;
    for p in &parsed[start..] {
        let Ok(Request::Write { command, .. }) = p else {
            break;
        };
        if mergeable_pairs(command).is_some() {
            break;
        }
        // One invalid command would fail the whole batch: it goes alone.
        if command.validate().is_err() {
            return if end == start { start + 1 } else { end };
        }
        let size = KvRequest::without_session(command.clone()).to_bytes().len();
        if end > start && (end - start >= BATCH_COMMANDS_MAX || bytes + size > BATCH_BYTES_MAX) {
            break;
        }
        bytes += size;
        end += 1;
    }
    end
}

/// A pipeline's run of writes as one `Batch` proposal: applied in order at
/// one index, each answered as if alone.
async fn batched_writes(
    ctx: &Ctx,
    conn: &Conn,
    run: &[Result<Request, ParseError>],
    out: &mut BytesMut,
) {
    let (commands, shapes): (Vec<KvCommand>, Vec<WriteReply>) = run
        .iter()
        .filter_map(|r| match r {
            Ok(Request::Write { command, reply }) => Some((command.clone(), *reply)),
            _ => None,
        })
        .unzip();
    let group = ctx.group(conn);
    let mut reply = Reply::with_proto(out, conn.proto);
    let outcome = match ctx.writer.write(group, KvCommand::Batch(commands)).await {
        Ok(KvResult::Batch(results)) if results.len() == shapes.len() => Ok(results),
        Ok(KvResult::Failed(f)) => Ok(vec![KvResult::Failed(f); shapes.len()]),
        // Applied, but not as a batch: its effect is unknown to us.
        Ok(other) => {
            Err(WriteError::Uncertain(format!("unexpected result {other:?}")).reply_text())
        }
        Err(e) => Err(e.reply_text()),
    };
    match outcome {
        Ok(results) => {
            for (shape, result) in shapes.into_iter().zip(&results) {
                render_write(shape, result, &mut reply);
            }
        }
        Err(e) => {
            for _ in &shapes {
                reply.error(&e);
            }
        }
    }
}

/// One more on a gauge for as long as it lives.
struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    fn up(g: &'a AtomicU64) -> Gauge<'a> {
        g.fetch_add(1, Ordering::Relaxed);
        Gauge(g)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How often a blocked client re-tries its pop without a wake-up (a push
/// the events missed, as one installed by a snapshot) and checks that it
/// is still connected.
const BLOCKED_RECHECK: Duration = Duration::from_secs(1);

/// A blocking pop: proposed; if it found nothing, it waits for one of its
/// keys to receive elements on this replica (or the recheck period) and is
/// proposed again, until the timeout, when it answers null. Each try is a
/// write through the exactly-once writer, so a pop applies once. The
/// client's other requests wait behind it, as in Redis.
#[allow(clippy::too_many_arguments)]
async fn blocking(
    ctx: &Ctx,
    stream: &ClientStream,
    conn: &Conn,
    command: &sampan_kv::DataCmd,
    keys: &[Bytes],
    timeout: Option<Duration>,
    nil_array: bool,
    out: &mut BytesMut,
) -> io::Result<()> {
    let group = ctx.group(conn).clone();
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let _blocked = Gauge::up(&ctx.stats.blocked_clients);
    loop {
        // Registered before the try: a push applied after it wakes us.
        let waiter = ctx
            .settings
            .key_events
            .as_ref()
            .map(|e| e.wait(group.id(), keys));
        let mut reply = Reply::with_proto(out, conn.proto);
        match ctx
            .writer
            .write(&group, KvCommand::Data(command.clone()))
            .await
        {
            Ok(KvResult::Reply(DataReply::Nil | DataReply::NilArray)) => {}
            Ok(result) => {
                render_write(WriteReply::Reply, &result, &mut reply);
                return Ok(());
            }
            Err(e) => {
                reply.error(&e.reply_text());
                return Ok(());
            }
        }
        let now = std::time::Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            if nil_array {
                reply.array(None);
            } else {
                reply.null();
            }
            return Ok(());
        }
        let until = deadline.map_or(now + BLOCKED_RECHECK, |d| d.min(now + BLOCKED_RECHECK));
        let woken = async {
            match &waiter {
                Some(w) => w.woken().await,
                None => sampan_fiber::sleep_until(until).await,
            }
        };
        let _ = sampan_fiber::timeout_at(until, or(woken, sampan_fiber::draining())).await;
        if sampan_fiber::drain_requested() {
            return Err(io::Error::other("the node is stopping"));
        }
        if stream.peer_closed() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the client left while blocked",
            ));
        }
    }
}

async fn single_write(
    ctx: &Ctx,
    conn: &Conn,
    command: &KvCommand,
    shape: WriteReply,
    out: &mut BytesMut,
) {
    let group = ctx.group(conn);
    let mut reply = Reply::with_proto(out, conn.proto);
    match ctx.writer.write(group, command.clone()).await {
        Ok(result) => render_write(shape, &result, &mut reply),
        Err(e) => reply.error(&e.reply_text()),
    }
}

/// Reads that are not answered by their keys' values: `SCAN`, `KEYS`,
/// `DBSIZE`, `INFO`.
async fn other_read(ctx: &Ctx, conn: &mut Conn, read: &Read, out: &mut BytesMut) {
    let group = ctx.group(conn).clone();
    let result = match read {
        // In cluster mode a node answers for the slots it is master of:
        // the groups it leads.
        Read::DbSize | Read::Keys(_) if ctx.settings.cluster.is_some() => {
            cluster_keyspace(ctx, conn, read, out).await
        }
        Read::DbSize => key_count(&group).await.map(|n| {
            Reply::with_proto(out, conn.proto).integer(n as i64);
        }),
        Read::Scan {
            cursor,
            pattern,
            count,
            kind,
        } => scan(&group, conn, *cursor, pattern.as_ref(), *count, *kind, out).await,
        Read::Data(q) => query(&group, KvQuery::Data(q.clone()))
            .await
            .and_then(|a| match a {
                KvAnswer::Reply(r) => {
                    Reply::with_proto(out, conn.proto).reply(&r);
                    Ok(())
                }
                other => Err(format!("ERR unexpected answer {other:?}")),
            }),
        Read::ElemScan { cursor, query: q } => elem_scan(&group, conn, *cursor, q, out).await,
        Read::Keys(pattern) => keys(&group, pattern, out).await,
        Read::Info(section) => {
            info(ctx, conn, section.as_deref(), out).await;
            Ok(())
        }
        other => Err(format!("ERR internal: {other:?} is a key read")),
    };
    if let Err(e) = result {
        Reply::new(out).error(&e);
    }
}

async fn query(group: &GroupRef, q: KvQuery) -> Result<KvAnswer, String> {
    let b = group.read(q.to_bytes()).await.map_err(|e| error_text(&e))?;
    KvAnswer::decode(b).map_err(|e| format!("ERR bad answer from group {}: {e}", group.id()))
}

fn all_keys() -> ScanRange {
    ScanRange::Range {
        start: Bytes::new(),
        end: None,
    }
}

/// `HSCAN`/`SSCAN`/`ZSCAN`: the cursor number maps to the element the
/// page continues after, as `SCAN`'s maps to a key.
async fn elem_scan(
    group: &GroupRef,
    conn: &mut Conn,
    cursor: u64,
    q: &DataQuery,
    out: &mut BytesMut,
) -> Result<(), String> {
    let mut q = q.clone();
    if let DataQuery::ElemScan { after, .. } = &mut q
        && cursor != 0
    {
        *after = Some(conn.cursors.take(cursor).ok_or("ERR invalid cursor")?);
    }
    let KvAnswer::Reply(r) = query(group, KvQuery::Data(q)).await? else {
        return Err("ERR unexpected answer to a scan".into());
    };
    let r = match r {
        DataReply::Array(mut parts) if parts.len() == 2 => {
            let next = match &parts[0] {
                DataReply::Bulk(after) => conn.cursors.issue(after.clone()),
                _ => 0,
            };
            parts[0] = DataReply::Bulk(Bytes::from(next.to_string()));
            DataReply::Array(parts)
        }
        other => other,
    };
    Reply::with_proto(out, conn.proto).reply(&r);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn scan(
    group: &GroupRef,
    conn: &mut Conn,
    cursor: u64,
    pattern: Option<&Bytes>,
    count: usize,
    kind: Option<Option<ValueKind>>,
    out: &mut BytesMut,
) -> Result<(), String> {
    let after = match cursor {
        0 => None,
        c => Some(conn.cursors.take(c).ok_or("ERR invalid cursor")?),
    };
    let q = KvQuery::Scan {
        range: all_keys(),
        after,
        limit: count.clamp(1, QUERY_KEYS_MAX) as u32,
    };
    let KvAnswer::Page { items, next } = query(group, q).await? else {
        return Err("ERR unexpected answer to a scan".into());
    };
    let next = next.map_or(0, |k| conn.cursors.issue(k));
    let keys: Vec<&Bytes> = items
        .iter()
        .filter(|(_, it)| kind.is_none_or(|want| want == Some(it.kind)))
        .map(|(k, _)| k)
        .filter(|k| pattern.is_none_or(|p| glob_match(p, k)))
        .collect();
    let mut reply = Reply::with_proto(out, conn.proto);
    reply.array(Some(2));
    reply.bulk(Some(next.to_string().as_bytes()));
    reply.array(Some(keys.len()));
    for k in keys {
        reply.bulk(Some(k));
    }
    Ok(())
}

async fn keys(group: &GroupRef, pattern: &Bytes, out: &mut BytesMut) -> Result<(), String> {
    let found = matching_keys(group, pattern).await?;
    render_keys(&found, &mut Reply::new(out));
    Ok(())
}

/// A list of keys, as `KEYS` answers it.
fn render_keys(keys: &[Bytes], reply: &mut Reply<'_>) {
    reply.array(Some(keys.len()));
    for k in keys {
        reply.bulk(Some(k));
    }
}

/// How many keys `group` holds (`DBSIZE`).
async fn key_count(group: &GroupRef) -> Result<u64, String> {
    match query(group, KvQuery::Len).await? {
        KvAnswer::Count(n) => Ok(n),
        other => Err(format!("ERR unexpected answer {other:?}")),
    }
}

/// `DBSIZE` and `KEYS` in cluster mode: over the groups this node leads.
async fn cluster_keyspace(
    ctx: &Ctx,
    conn: &Conn,
    read: &Read,
    out: &mut BytesMut,
) -> Result<(), String> {
    let mut led = Vec::new();
    for db in 0..ctx.settings.databases {
        if leader_of(ctx, db).await == Some(ctx.node) {
            led.push(&ctx.groups[db as usize]);
        }
    }
    let mut reply = Reply::with_proto(out, conn.proto);
    match read {
        Read::Keys(pattern) => {
            let mut found = Vec::new();
            for g in led {
                found.extend(matching_keys(g, pattern).await?);
            }
            render_keys(&found, &mut reply);
        }
        _ => {
            let mut n = 0;
            for g in led {
                n += key_count(g).await?;
            }
            reply.integer(n as i64);
        }
    }
    Ok(())
}

/// Every key of `group` that `pattern` matches, in order.
async fn matching_keys(group: &GroupRef, pattern: &Bytes) -> Result<Vec<Bytes>, String> {
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let q = KvQuery::Scan {
            range: all_keys(),
            after: after.take(),
            limit: QUERY_KEYS_MAX as u32,
        };
        let KvAnswer::Page { items, next } = query(group, q).await? else {
            return Err("ERR unexpected answer to a scan".into());
        };
        found.extend(
            items
                .into_iter()
                .map(|(k, _)| k)
                .filter(|k| glob_match(pattern, k)),
        );
        match next {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    Ok(found)
}

async fn info(ctx: &Ctx, conn: &Conn, section: Option<&[u8]>, out: &mut BytesMut) {
    let mut groups = Vec::new();
    let want_keys = section.is_none_or(|s| {
        let s = s.to_ascii_lowercase();
        matches!(
            s.as_slice(),
            b"keyspace" | b"all" | b"default" | b"everything"
        )
    });
    for (db, g) in ctx.groups.iter().enumerate() {
        if let Ok(status) = g.status().await {
            // Counted in the local replica: INFO never waits on a leader.
            let keys = if want_keys {
                let q = KvQuery::Len.to_bytes();
                match g.read_routed(q, Route::Local).await.map(KvAnswer::decode) {
                    Ok(Ok(KvAnswer::Count(n))) => Some(n),
                    _ => None,
                }
            } else {
                None
            };
            groups.push(GroupInfo {
                db: db as u64,
                status,
                keys,
            });
        }
    }
    let selected = groups.iter().find(|g| g.db == conn.db);
    let stats = &ctx.stats;
    let clients = ClientCounts {
        connected_clients: stats.connected_clients.load(Ordering::Relaxed),
        maxclients: ctx.settings.maxclients,
        rejected_connections: stats.rejected_connections.load(Ordering::Relaxed),
        blocked_clients: stats.blocked_clients.load(Ordering::Relaxed),
        output_buffer_limit_disconnections: stats
            .output_buffer_limit_disconnections
            .load(Ordering::Relaxed),
    };
    let text = info_text(ctx.node, ctx.port, section, selected, &groups, &clients);
    Reply::new(out).bulk(Some(text.as_bytes()));
}

/// Answers a connection command. Returns whether the client quits.
fn local(ctx: &Ctx, conn: &mut Conn, l: &Local, out: &mut BytesMut) -> bool {
    if let Local::Hello {
        proto: Some(p @ (2 | 3)),
        ..
    } = l
    {
        conn.proto = *p as u8;
    }
    if let Some(e) = &conn.entry {
        match l {
            Local::Hello {
                proto: None | Some(2 | 3),
                setname,
                ..
            } => {
                e.resp.store(u64::from(conn.proto), Ordering::Relaxed);
                if let Some(name) = setname {
                    e.set_name(0, name.clone());
                }
            }
            Local::Client(ClientCmd::SetName(name)) => e.set_name(0, name.clone()),
            Local::Client(ClientCmd::SetInfo { name, value }) => {
                e.set_name(if *name { 1 } else { 2 }, value.clone());
            }
            _ => {}
        }
    }
    let mut reply = Reply::with_proto(out, conn.proto);
    match l {
        Local::Ping(None) => reply.simple("PONG"),
        Local::Ping(Some(m)) | Local::Echo(m) => reply.bulk(Some(m)),
        // `HELLO 3` switches the connection to RESP3 (this answer is the
        // first in it), `HELLO 2` back; a bare `HELLO` keeps the protocol.
        Local::Hello {
            proto: None | Some(2 | 3),
            ..
        } => hello(ctx, conn.proto, &mut reply),
        Local::Hello { .. } => reply.error("NOPROTO sorry, this protocol version is not supported"),
        Local::AuthOk => reply.simple("OK"),
        // Carried out by `gate`, which leaves none behind.
        Local::Auth { .. } => reply.error("ERR AUTH was not carried out"),
        Local::Select(n) if ctx.settings.cluster.is_some() && *n != 0 => {
            reply.error("ERR SELECT is not allowed in cluster mode")
        }
        Local::Select(n) if (0..ctx.settings.databases as i64).contains(n) => {
            conn.db = *n as u64;
            if let Some(e) = &conn.entry {
                e.db.store(conn.db, Ordering::Relaxed);
            }
            reply.simple("OK");
        }
        Local::Select(_) => reply.error("ERR DB index is out of range"),
        Local::Quit => {
            reply.simple("OK");
            return true;
        }
        Local::Multi | Local::Exec | Local::Discard | Local::Watch(_) | Local::Unwatch => {
            reply.error("ERR internal: a transaction command outside the transaction handler")
        }
        Local::Command(args) => command(args, &mut reply),
        Local::ClusterNoop if ctx.settings.cluster.is_some() => reply.simple("OK"),
        Local::ClusterNoop | Local::Cluster(_) => {
            reply.error("ERR This instance has cluster support disabled")
        }
        Local::ConfigGet(pattern) => {
            let pairs: Vec<_> = ctx
                .settings
                .config_pairs(ctx.port)
                .into_iter()
                .filter(|(name, _)| glob_match(&pattern.to_ascii_lowercase(), name.as_bytes()))
                .collect();
            reply.map(pairs.len());
            for (name, value) in pairs {
                reply.bulk(Some(name.as_bytes()));
                reply.bulk(Some(value.as_bytes()));
            }
        }
        Local::Client(cmd) => match cmd {
            ClientCmd::Id => reply.integer(conn.entry.as_ref().map_or(0, |e| e.id as i64)),
            ClientCmd::GetName => {
                let name = conn.entry.as_ref().and_then(|e| {
                    let n = e.names.lock().ok()?[0].clone();
                    (!n.is_empty()).then_some(n)
                });
                reply.bulk(name.as_deref());
            }
            ClientCmd::Info => {
                let line = conn.entry.as_ref().map(|e| e.line());
                reply.bulk(Some(line.unwrap_or_default().as_bytes()));
            }
            ClientCmd::List => {
                let entries: Vec<Arc<ClientEntry>> = ctx
                    .stats
                    .registry
                    .lock()
                    .map(|r| r.values().cloned().collect())
                    .unwrap_or_default();
                let text: String = entries.iter().map(|e| e.line()).collect();
                reply.bulk(Some(text.as_bytes()));
            }
            ClientCmd::SetName(_) | ClientCmd::SetInfo { .. } | ClientCmd::Noop => {
                reply.simple("OK")
            }
        },
    }
    false
}

/// `COMMAND [COUNT | INFO name... | LIST | DOCS ...]`, from the table of
/// what is implemented.
fn command(args: &[Bytes], reply: &mut Reply<'_>) {
    let sub = args.first().map(|s| s.to_ascii_uppercase());
    match sub.as_deref() {
        None => {
            reply.array(Some(COMMANDS.len()));
            for spec in COMMANDS {
                command_table::render(spec, reply);
            }
        }
        Some(b"COUNT") => reply.integer(COMMANDS.len() as i64),
        Some(b"LIST") => {
            reply.array(Some(COMMANDS.len()));
            for spec in COMMANDS {
                reply.bulk(Some(spec.name.as_bytes()));
            }
        }
        Some(b"INFO") => {
            reply.array(Some(args.len() - 1));
            for name in &args[1..] {
                match command_table::spec(name) {
                    Some(spec) => command_table::render(spec, reply),
                    None => reply.array(None),
                }
            }
        }
        // Each command's group and arity; no summaries or argument
        // lists are kept, so redis-cli falls back to its built-in hints.
        Some(b"DOCS") => {
            let specs: Vec<&command_table::CommandSpec> = if args.len() == 1 {
                COMMANDS.iter().collect()
            } else {
                args[1..]
                    .iter()
                    .filter_map(|n| command_table::spec(n))
                    .collect()
            };
            reply.map(specs.len());
            for spec in specs {
                reply.bulk(Some(spec.name.as_bytes()));
                reply.map(1);
                reply.bulk(Some(b"group"));
                reply.bulk(Some(command_table::group(spec).as_bytes()));
            }
        }
        Some(_) => reply.error(&format!(
            "ERR unknown subcommand '{}'. Try COMMAND HELP.",
            String::from_utf8_lossy(&args[0])
        )),
    }
}

/// `HELLO`: the server's properties, a map in RESP3 (a flat array in
/// RESP2).
fn hello(ctx: &Ctx, proto: u8, reply: &mut Reply<'_>) {
    reply.map(7);
    for (k, v) in [("server", "redis"), ("version", "7.0.0")] {
        reply.bulk(Some(k.as_bytes()));
        reply.bulk(Some(v.as_bytes()));
    }
    reply.bulk(Some(b"proto"));
    reply.integer(i64::from(proto));
    reply.bulk(Some(b"id"));
    reply.integer(ctx.node as i64);
    reply.bulk(Some(b"mode"));
    reply.bulk(Some(b"standalone"));
    reply.bulk(Some(b"role"));
    reply.bulk(Some(b"master"));
    reply.bulk(Some(b"modules"));
    reply.array(Some(0));
}

/// Answers `CLUSTER ...` from the groups' leaders as this node knows them
/// (each group asked for its status).
async fn cluster_command(ctx: &Ctx, conn: &Conn, args: &[Bytes], out: &mut BytesMut) {
    let mut reply = Reply::with_proto(out, conn.proto);
    let Some(settings) = ctx.settings.cluster.as_ref() else {
        return reply.error("ERR This instance has cluster support disabled");
    };
    let sub = args[0].to_ascii_uppercase();
    let dbs = ctx.settings.databases;
    let mut shards = Vec::new();
    if matches!(&sub[..], b"SLOTS" | b"SHARDS" | b"NODES" | b"INFO") {
        for db in 0..dbs {
            let (start, end) = cluster::db_slots(db, dbs);
            let (leader, replicas) = match ctx.groups[db as usize].status().await {
                Ok(s) => {
                    let replicas = s
                        .voters
                        .iter()
                        .copied()
                        .filter(|v| Some(*v) != s.leader)
                        .collect();
                    (s.leader, replicas)
                }
                Err(_) => (None, Vec::new()),
            };
            shards.push(cluster::Shard {
                start,
                end,
                leader,
                replicas,
            });
        }
    }
    match (&sub[..], args.len()) {
        (b"SLOTS", 1) => cluster::render_slots(settings, ctx.node, &shards, &mut reply),
        (b"SHARDS", 1) => cluster::render_shards(settings, &shards, &mut reply),
        (b"NODES", 1) => reply.bulk(Some(
            cluster::nodes_text(settings, ctx.node, &shards).as_bytes(),
        )),
        (b"INFO", 1) => reply.bulk(Some(cluster::info_text(settings, &shards).as_bytes())),
        (b"MYID", 1) => reply.bulk(Some(settings.node_id(ctx.node).as_bytes())),
        (b"KEYSLOT", 2) => reply.integer(i64::from(cluster::key_slot(&args[1]))),
        _ => reply.error(&format!(
            "ERR unknown subcommand '{}'. Try CLUSTER HELP.",
            String::from_utf8_lossy(&args[0])
        )),
    }
}
