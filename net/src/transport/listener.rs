//! Listeners: accept connections on the replication port (from nodes) or
//! the service port (from clients), run each one's handshake in its own
//! fiber, and hand the connection to the transport.
//!
//! A connection that fails its handshake is closed and recorded with the
//! reason; the listener and every other connection go on.

use super::{TransportInner, conn_config, upgrade};
use crate::connection::{CloseReason, Connection, PeerInfo};
use crate::error::NetError;
use crate::handshake::{self, Expect, Role};
use crate::link::Link;
use crate::rpc::Router;
use sampan_fiber::net::{TcpListener, TcpStream};
use sampan_fiber::{TaskClass, sleep, timeout};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

/// Pause after a failed `accept` (out of file descriptors, say), so a
/// persistent failure does not spin the shard.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(20);

/// Binds `addr` and starts accepting peers of `role` in the transport's
/// fiber group; returns the address bound.
pub(crate) fn start(
    transport: &Rc<TransportInner>,
    addr: SocketAddr,
    role: Role,
    router: Router,
) -> Result<SocketAddr, NetError> {
    let listener = TcpListener::bind(addr).map_err(|source| NetError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| NetError::Bind { addr, source })?;
    let weak = Rc::downgrade(transport);
    let name = format!("net-listen-{bound}");
    transport.fibers.spawn(
        TaskClass::Latency,
        &name,
        accept_loop(weak, listener, role, router),
    )?;
    log::info!(
        "node {} listening for {role:?}s on {bound}",
        transport.config.node_id
    );
    Ok(bound)
}

async fn accept_loop(
    transport: Weak<TransportInner>,
    listener: TcpListener,
    role: Role,
    router: Router,
) {
    loop {
        let accepted = listener.accept().await;
        let Some(t) = transport.upgrade() else { return };
        if t.is_closed() {
            return;
        }
        match accepted {
            Ok((stream, addr)) => {
                if !t.admit(addr) {
                    drop(stream);
                    continue;
                }
                let counted = Handshaking::enter(&t);
                let fiber = format!("net-accept-{addr}");
                let handshake = accept_one(
                    Rc::downgrade(&t),
                    counted,
                    stream,
                    addr,
                    role,
                    router.clone(),
                );
                if let Err(e) = t.fibers.spawn(TaskClass::Latency, &fiber, handshake) {
                    log::warn!("cannot serve {addr}: {e}");
                }
            }
            Err(e) => {
                log::warn!("accept failed: {e}");
                drop(t);
                sleep(ACCEPT_RETRY_DELAY).await;
            }
        }
    }
}

async fn accept_one(
    transport: Weak<TransportInner>,
    _counted: Handshaking,
    stream: TcpStream,
    addr: SocketAddr,
    role: Role,
    router: Router,
) {
    let Some(t) = transport.upgrade() else { return };
    if let Err(e) = stream.set_nodelay(true) {
        log::debug!("TCP_NODELAY on {addr}: {e}");
    }
    let expect = Expect {
        local: t.local_hello(),
        role,
        node_id: None,
    };
    let limit = t.config.handshake_timeout;
    let config = conn_config(&t.config);
    let hook = t.close_hook();
    let keys = t.config.keys(role, false);
    let tls = t.config.tls.as_ref().map(|n| match role {
        Role::Node => n.peer_server.clone(),
        Role::Client => n.service_server.clone(),
    });
    drop(t);
    let label = format!("{addr}");
    let exchange = Box::pin(async {
        let link = match tls {
            None => Link::Plain(stream),
            Some(config) => {
                let conn =
                    rustls::ServerConnection::new(config).map_err(|e| NetError::Handshake {
                        peer: label.clone(),
                        reason: format!("TLS: {e}"),
                    })?;
                upgrade(stream, conn, &label).await?
            }
        };
        let (theirs, privilege, rb) = handshake::accept(&link, &expect, &keys, &label).await?;
        Ok::<_, NetError>((link, theirs, privilege, rb))
    });
    let outcome = timeout(limit, exchange).await;
    let Some(t) = transport.upgrade() else { return };
    let (link, theirs, privilege, rb) = match outcome {
        Ok(Ok(done)) => done,
        Ok(Err(e @ NetError::Auth { .. })) => {
            t.note_auth_failure(addr, &e);
            return t.record_close(addr, CloseReason::Handshake(e.to_string()));
        }
        Ok(Err(e)) => return t.record_close(addr, CloseReason::Handshake(e.to_string())),
        Err(_) => {
            log::warn!("handshake with {addr} failed: no hello within {limit:?}");
            return t.record_close(
                addr,
                CloseReason::Handshake(format!("no hello within {limit:?}")),
            );
        }
    };
    let who = if role == Role::Node { "node" } else { "client" };
    let peer = PeerInfo {
        node_id: theirs.node_id,
        addr,
        label: format!("{who} {} at {addr}", theirs.node_id).into(),
        privilege,
    };
    match Connection::start(link, rb, peer, config, router, Some(hook)) {
        Ok(conn) if role == Role::Node => t.install(conn),
        Ok(conn) => t.add_client(conn),
        Err(e) => log::warn!("cannot start the connection from {addr}: {e}"),
    }
}

/// Counts a connection as in its handshake while alive, for
/// `connections_max`.
struct Handshaking(Weak<TransportInner>);

impl Handshaking {
    fn enter(t: &Rc<TransportInner>) -> Handshaking {
        t.handshaking.set(t.handshaking.get() + 1);
        Handshaking(Rc::downgrade(t))
    }
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        if let Some(t) = self.0.upgrade() {
            t.handshaking.set(t.handshaking.get() - 1);
        }
    }
}
