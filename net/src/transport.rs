//! The transport of one shard: its peers by node id, the one connection to
//! each, the dialers that keep those connections up, and its listeners.
//!
//! **One connection per pair of nodes** (per pair of shards: shard `i` of
//! one node talks to shard `i` of the other). The node with the lower id
//! dials, the other accepts, and both then send requests and one-way frames
//! over the same connection. So both nodes must [`Transport::add_peer`]
//! each other; the higher-id one only learns who may call.
//!
//! A dialer reconnects with exponential backoff and jitter whenever its
//! connection drops, so a peer that restarts is picked up again by itself.
//! A new connection from a node that has one already replaces the old one
//! (its restart was seen here before the old connection's end was).

use crate::addr::PeerAddr;
use crate::auth::Privilege;
use crate::backoff::Backoff;
use crate::codec::Decoder;
use crate::config::NetConfig;
use crate::connection::{CloseHook, CloseReason, ConnConfig, Connection, PeerInfo};
use crate::error::NetError;
use crate::frame::{Body, Frame};
use crate::handshake::{self, Expect, Hello, PROTOCOL_VERSION, Role};
use crate::link::Link;
use crate::rpc::Router;
use crate::tls;
use sampan_fiber::net::TcpStream;
use sampan_fiber::tls::TlsStream;
use sampan_fiber::{FiberGroup, FiberHandle, Signal, TaskClass, sleep, timeout};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::rc::{Rc, Weak};
use std::time::Duration;

/// Accepting connections: the transport's listening half.
mod listener;

/// Addresses remembered as logged for a failed authentication.
const AUTH_LOGGED_MAX: usize = 4096;

/// Closes remembered by [`Transport::recent_closes`].
pub const RECENT_CLOSES_MAX: usize = 64;

#[derive(Default)]
struct PeerSlot {
    addr: Option<PeerAddr>,
    conn: Option<Connection>,
    dialer: Option<FiberHandle<()>>,
}

pub(crate) struct TransportInner {
    pub(crate) config: NetConfig,
    shard: u16,
    pub(crate) router: Router,
    peers: RefCell<HashMap<u64, PeerSlot>>,
    /// Notified whenever a connection to a peer is installed.
    connected: Signal,
    pub(crate) fibers: FiberGroup,
    clients: RefCell<Vec<Connection>>,
    recent_closes: RefCell<VecDeque<(SocketAddr, CloseReason)>>,
    /// Handshakes refused for a wrong or missing key, both ports.
    auth_failures: Cell<u64>,
    /// Addresses whose refusal was logged: a peer that keeps trying with a
    /// wrong key is logged once, then only counted.
    auth_logged: RefCell<HashSet<IpAddr>>,
    /// Accepted connections still in their handshake, both ports.
    handshaking: Cell<usize>,
    /// Connections closed on accept for `connections_max`.
    connections_refused: Cell<u64>,
    /// Whether the listeners are refusing now: logged once per run of
    /// refusals, so a flood cannot fill the log.
    refusing: Cell<bool>,
    closed: Cell<bool>,
}

/// The transport of one shard. Clones refer to the same transport.
/// Shard-local; call [`Transport::close`] to stop it (its fibers hold only
/// weak references, but its connections stay up until closed).
#[derive(Clone)]
pub struct Transport {
    inner: Rc<TransportInner>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("node_id", &self.inner.config.node_id)
            .field("shard", &self.inner.shard)
            .field("peers", &self.inner.peers.borrow().len())
            .finish()
    }
}

/// Connects to `addr` and does the handshake as `role`, expecting node
/// `expect_node` if given. Used by dialers and by clients.
pub async fn connect(
    addr: SocketAddr,
    config: &NetConfig,
    role: Role,
    expect_node: Option<u64>,
    router: Router,
) -> Result<Connection, NetError> {
    config.validate()?;
    connect_with(addr, config, role, expect_node, router, None).await
}

async fn connect_with(
    addr: SocketAddr,
    config: &NetConfig,
    role: Role,
    expect_node: Option<u64>,
    router: Router,
    on_close: Option<CloseHook>,
) -> Result<Connection, NetError> {
    let label = match expect_node {
        Some(node) => format!("node {node} at {addr}"),
        None => format!("{addr}"),
    };
    let io_err = |source| NetError::Connect {
        peer: label.clone(),
        source,
    };
    let stream = TcpStream::connect(addr, config.connect_timeout)
        .await
        .map_err(io_err)?;
    stream.set_nodelay(true).map_err(io_err)?;
    let expect = Expect {
        local: local_hello(config, role),
        role: Role::Node,
        node_id: expect_node,
    };
    let keys = config.keys(role, true);
    let exchange = Box::pin(async {
        let link = match dial_tls(config, role, expect_node, addr) {
            Ok(None) => Link::Plain(stream),
            Ok(Some(conn)) => upgrade(stream, conn, &label).await?,
            Err(reason) => {
                return Err(NetError::Handshake {
                    peer: label.clone(),
                    reason,
                });
            }
        };
        let (theirs, rb) = handshake::dial(&link, &expect, &keys, &label).await?;
        Ok((link, theirs, rb))
    });
    let (link, theirs, rb) =
        timeout(config.handshake_timeout, exchange)
            .await
            .map_err(|_| NetError::Handshake {
                peer: label.clone(),
                reason: format!("no answer within {:?}", config.handshake_timeout),
            })??;
    let peer = PeerInfo {
        node_id: theirs.node_id,
        addr,
        label: format!("node {} at {addr}", theirs.node_id).into(),
        privilege: Privilege::Node,
    };
    Connection::start(link, rb, peer, conn_config(config), router, on_close)
}

/// The TLS connection a dial as `role` starts with, if TLS is configured:
/// a node checks that the peer's certificate names the node it dials; a
/// client, that it is valid for the address it dials.
fn dial_tls(
    config: &NetConfig,
    role: Role,
    expect_node: Option<u64>,
    addr: SocketAddr,
) -> Result<Option<rustls::ClientConnection>, String> {
    let (tls, name) = match role {
        Role::Node => {
            let Some(t) = &config.tls else {
                return Ok(None);
            };
            let node = expect_node.ok_or("TLS between nodes needs the id of the node dialed")?;
            (
                t.peer_client.clone(),
                tls::server_name(tls::node_name(config.cluster_id, node))?,
            )
        }
        Role::Client => {
            let Some(c) = &config.client_tls else {
                return Ok(None);
            };
            (
                c.clone(),
                rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
            )
        }
    };
    rustls::ClientConnection::new(tls, name)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Runs the TLS handshake of `conn` on `stream`. A refusal over
/// certificates (an alert, a certificate that does not verify) is an
/// authentication failure.
pub(crate) async fn upgrade(
    stream: TcpStream,
    conn: impl Into<rustls::Connection>,
    peer: &str,
) -> Result<Link, NetError> {
    match TlsStream::handshake(stream, conn).await {
        Ok(tls) => Ok(Link::Tls(Box::new(tls))),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(NetError::Auth {
            peer: peer.to_string(),
            reason: format!("TLS: {e}"),
        }),
        Err(e) => Err(NetError::Handshake {
            peer: peer.to_string(),
            reason: format!("TLS: {e}"),
        }),
    }
}

fn local_hello(config: &NetConfig, role: Role) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        role,
        shard: sampan_fiber::shard_id().unwrap_or(0) as u16,
        cluster_id: config.cluster_id,
        node_id: config.node_id,
    }
}

pub(crate) fn conn_config(config: &NetConfig) -> ConnConfig {
    ConnConfig {
        decoder: Decoder::new(config.frame_bytes_max),
        bytes_in_flight_max: config.bytes_in_flight_max,
    }
}

impl Transport {
    /// A transport for this shard with `router` for frames from nodes. Must
    /// run on a shard.
    pub fn new(config: NetConfig, router: Router) -> Result<Transport, NetError> {
        config.validate()?;
        let shard = sampan_fiber::shard_id().ok_or(sampan_fiber::FiberError::NotOnShard)?;
        let fibers = FiberGroup::new(format!("net-node-{}-shard-{shard}", config.node_id))?;
        log::info!(
            "transport of node {} on shard {shard} started",
            config.node_id
        );
        Ok(Transport {
            inner: Rc::new(TransportInner {
                config,
                shard: shard as u16,
                router,
                peers: RefCell::new(HashMap::new()),
                connected: Signal::new(),
                fibers,
                clients: RefCell::new(Vec::new()),
                recent_closes: RefCell::new(VecDeque::new()),
                auth_failures: Cell::new(0),
                auth_logged: RefCell::new(HashSet::new()),
                handshaking: Cell::new(0),
                connections_refused: Cell::new(0),
                refusing: Cell::new(false),
                closed: Cell::new(false),
            }),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.inner.config.node_id
    }

    /// Listens for nodes (the replication port) on `addr`; returns the
    /// address bound (port 0 picks one).
    pub fn listen(&self, addr: SocketAddr) -> Result<SocketAddr, NetError> {
        self.check_open()?;
        listener::start(&self.inner, addr, Role::Node, self.inner.router.clone())
    }

    /// Listens for clients (the service port) on `addr`, with `router` for
    /// their frames; returns the address bound.
    pub fn listen_service(&self, addr: SocketAddr, router: Router) -> Result<SocketAddr, NetError> {
        self.check_open()?;
        listener::start(&self.inner, addr, Role::Client, router)
    }

    /// Adds node `node_id` at `addr` (its replication port: an IP address,
    /// or a host name looked up at each connect). If our id is lower we
    /// dial it now and keep reconnecting; otherwise we wait for it to dial
    /// us.
    pub fn add_peer(&self, node_id: u64, addr: impl Into<PeerAddr>) -> Result<(), NetError> {
        let addr = addr.into();
        self.check_open()?;
        if node_id == self.node_id() {
            return Err(NetError::InvalidConfig {
                field: "peer node id",
                reason: format!("{node_id} is this node's own id"),
            });
        }
        // A connection already up (the peer dialed us first) is kept.
        let old_dialer = self
            .inner
            .peers
            .borrow_mut()
            .get_mut(&node_id)
            .and_then(|slot| slot.dialer.take());
        if let Some(d) = old_dialer {
            d.cancel();
        }
        let dialer = if self.node_id() < node_id {
            let weak = Rc::downgrade(&self.inner);
            let name = format!("net-dial-{node_id}");
            Some(self.inner.fibers.spawn(
                TaskClass::Latency,
                &name,
                dial_loop(weak, node_id, addr.clone()),
            )?)
        } else {
            None
        };
        let mut peers = self.inner.peers.borrow_mut();
        let slot = peers.entry(node_id).or_default();
        slot.addr = Some(addr);
        slot.dialer = dialer;
        Ok(())
    }

    /// Forgets node `node_id`: stops its dialer and closes its connection.
    pub fn remove_peer(&self, node_id: u64) {
        let slot = self.inner.peers.borrow_mut().remove(&node_id);
        if let Some(slot) = slot {
            if let Some(d) = slot.dialer {
                d.cancel();
            }
            if let Some(c) = slot.conn {
                c.close("peer removed");
            }
        }
    }

    /// The live connection to `node_id`, if one is up.
    pub fn connection(&self, node_id: u64) -> Option<Connection> {
        self.inner.connection(node_id)
    }

    fn require(&self, node_id: u64) -> Result<Connection, NetError> {
        self.check_open()?;
        self.connection(node_id)
            .ok_or(NetError::NotConnected { node: node_id })
    }

    /// Sends a one-way frame to `node_id`, waiting for send budget.
    /// [`NetError::NotConnected`] at once if no connection is up.
    pub async fn send(
        &self,
        node_id: u64,
        kind: u16,
        group_id: u64,
        body: impl Into<Body>,
    ) -> Result<(), NetError> {
        self.require(node_id)?.send(kind, group_id, body).await
    }

    /// Sends a one-way frame to `node_id` now, or fails ([`NetError::Full`]).
    pub fn try_send(
        &self,
        node_id: u64,
        kind: u16,
        group_id: u64,
        body: impl Into<Body>,
    ) -> Result<(), NetError> {
        self.require(node_id)?.try_send(kind, group_id, body)
    }

    /// Sends a request to `node_id` and waits for the response, at most
    /// `timeout`; see [`Connection::request`].
    pub async fn request(
        &self,
        node_id: u64,
        kind: u16,
        group_id: u64,
        body: impl Into<Body>,
        timeout: Duration,
    ) -> Result<Frame, NetError> {
        self.require(node_id)?
            .request(kind, group_id, body, timeout)
            .await
    }

    /// Completes once a connection to `node_id` is up (wrap it in a
    /// timeout).
    pub async fn wait_connected(&self, node_id: u64) -> Result<Connection, NetError> {
        loop {
            let woken = self.inner.connected.wait();
            self.check_open()?;
            if let Some(conn) = self.connection(node_id) {
                return Ok(conn);
            }
            woken.await;
        }
    }

    /// The last [`RECENT_CLOSES_MAX`] connections closed or refused, with
    /// why: for diagnostics and tests (each is logged too).
    pub fn recent_closes(&self) -> Vec<(SocketAddr, CloseReason)> {
        self.inner.recent_closes.borrow().iter().cloned().collect()
    }

    /// Handshakes refused so far for a wrong or missing key (a peer or
    /// client that could not prove it holds the cluster secret or a token,
    /// or a node we dialed that could not prove it to us).
    pub fn auth_failures(&self) -> u64 {
        self.inner.auth_failures.get()
    }

    /// Connections closed as soon as they were accepted because the
    /// listeners held [`NetConfig::connections_max`] already.
    pub fn connections_refused(&self) -> u64 {
        self.inner.connections_refused.get()
    }

    /// Stops listening and dialing, and closes every connection.
    pub fn close(&self) {
        if self.inner.closed.replace(true) {
            return;
        }
        self.inner.fibers.cancel();
        let peers: Vec<PeerSlot> = self
            .inner
            .peers
            .borrow_mut()
            .drain()
            .map(|(_, s)| s)
            .collect();
        for conn in peers.into_iter().filter_map(|s| s.conn) {
            conn.close("transport closed");
        }
        let clients: Vec<Connection> = self.inner.clients.borrow_mut().drain(..).collect();
        for conn in clients {
            conn.close("transport closed");
        }
        self.inner.connected.notify_all();
        log::info!(
            "transport of node {} on shard {} closed",
            self.node_id(),
            self.inner.shard
        );
    }

    fn check_open(&self) -> Result<(), NetError> {
        if self.inner.closed.get() {
            return Err(NetError::Closed);
        }
        Ok(())
    }
}

impl Drop for TransportInner {
    fn drop(&mut self) {
        // Dropped without `close`: stop the listeners and dialers anyway
        // (their fibers hold only weak references and would end later).
        if !self.closed.get() {
            self.fibers.cancel();
        }
    }
}

impl TransportInner {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    fn connection(&self, node_id: u64) -> Option<Connection> {
        let peers = self.peers.borrow();
        let conn = peers.get(&node_id)?.conn.as_ref()?;
        (!conn.is_closed()).then(|| conn.clone())
    }

    /// The hook that records a connection's close.
    pub(crate) fn close_hook(self: &Rc<Self>) -> CloseHook {
        let weak = Rc::downgrade(self);
        Rc::new(move |addr, reason| {
            if let Some(t) = weak.upgrade() {
                t.record_close(addr, reason.clone());
            }
        })
    }

    pub(crate) fn record_close(&self, addr: SocketAddr, reason: CloseReason) {
        let mut recent = self.recent_closes.borrow_mut();
        if recent.len() == RECENT_CLOSES_MAX {
            recent.pop_front();
        }
        recent.push_back((addr, reason));
    }

    /// Counts an authentication failure with `addr`, and logs it if it is
    /// the first from that address (at most 4,096 addresses are
    /// remembered; past that, each is logged at debug level only).
    pub(crate) fn note_auth_failure(&self, addr: SocketAddr, error: &NetError) {
        self.auth_failures.set(self.auth_failures.get() + 1);
        let mut logged = self.auth_logged.borrow_mut();
        if logged.len() < AUTH_LOGGED_MAX && logged.insert(addr.ip()) {
            log::warn!(
                "node {}: {error} (further failures from {} are counted, not logged)",
                self.config.node_id,
                addr.ip()
            );
        } else {
            log::debug!("node {}: {error}", self.config.node_id);
        }
    }

    pub(crate) fn local_hello(&self) -> Hello {
        Hello {
            shard: self.shard,
            ..local_hello(&self.config, Role::Node)
        }
    }

    /// Makes `conn` the connection to its node, closing any older one.
    pub(crate) fn install(&self, conn: Connection) {
        let node = conn.peer_node();
        let old = {
            let mut peers = self.peers.borrow_mut();
            peers.entry(node).or_default().conn.replace(conn)
        };
        if let Some(old) = old {
            old.close("replaced by a newer connection to the same node");
        }
        self.connected.notify_all();
    }

    /// Whether one more accepted connection fits under `connections_max`;
    /// if not, counts the refusal (logging the first of a run of them).
    pub(crate) fn admit(&self, addr: SocketAddr) -> bool {
        let held = {
            let mut clients = self.clients.borrow_mut();
            clients.retain(|c| !c.is_closed());
            clients.len() + self.handshaking.get()
        };
        if held < self.config.connections_max {
            if self.refusing.replace(false) {
                log::info!("node {}: accepting connections again", self.config.node_id);
            }
            return true;
        }
        self.connections_refused
            .set(self.connections_refused.get() + 1);
        if !self.refusing.replace(true) {
            log::warn!(
                "node {}: {held} connections held (connections_max); closing {addr} and any \
                 more until one ends (counted, not logged)",
                self.config.node_id
            );
        }
        false
    }

    /// Keeps a client's connection, to close it with the transport.
    pub(crate) fn add_client(&self, conn: Connection) {
        let mut clients = self.clients.borrow_mut();
        clients.retain(|c| !c.is_closed());
        clients.push(conn);
    }
}

/// Keeps a connection to `node` up: connect, handshake, wait for the end,
/// back off, again. Ends when the transport is gone or closed.
async fn dial_loop(transport: Weak<TransportInner>, node: u64, peer: PeerAddr) {
    let mut backoff = {
        let Some(t) = transport.upgrade() else { return };
        let c = &t.config;
        Backoff::new(
            c.reconnect_delay_min,
            c.reconnect_delay_max,
            c.node_id << 32 ^ node,
        )
    };
    loop {
        let live = transport.upgrade().and_then(|t| t.connection(node));
        if let Some(conn) = live {
            // Up already (re-added peer): dial again only once it ends.
            conn.closed().await;
        }
        let attempt = {
            let Some(t) = transport.upgrade() else { return };
            if t.is_closed() {
                return;
            }
            let hook = t.close_hook();
            let config = t.config.clone();
            let router = t.router.clone();
            drop(t);
            // A host name is looked up again at every attempt: a restarted
            // container or pod comes back under its name, at a new address.
            match peer.resolve().await {
                Ok(addr) => connect_with(addr, &config, Role::Node, Some(node), router, Some(hook))
                    .await
                    .map_err(|e| (Some(addr), e)),
                Err(e) => Err((None, e)),
            }
        };
        match attempt {
            Ok(conn) => {
                backoff.reset();
                match transport.upgrade() {
                    Some(t) if !t.is_closed() => t.install(conn.clone()),
                    _ => {
                        conn.close("transport closed");
                        return;
                    }
                }
                conn.closed().await;
            }
            Err((Some(addr), e @ NetError::Auth { .. })) => match transport.upgrade() {
                Some(t) => t.note_auth_failure(addr, &e),
                None => return,
            },
            Err((_, e)) if backoff.failures() == 0 => {
                log::warn!("cannot reach node {node} at {peer}: {e}; retrying")
            }
            Err((_, e)) => log::debug!("cannot reach node {node} at {peer}: {e}"),
        }
        sleep(backoff.next_delay()).await;
    }
}
