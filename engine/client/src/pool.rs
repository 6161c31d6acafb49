//! One connection per node, shared by every request to it (requests are
//! multiplexed by id, so many are in flight at once: pipelining).
//!
//! Concurrent callers of a node that is not connected wait for one connect
//! instead of each dialing; a failed connect is remembered for a short
//! while, so a burst of requests to a dead node fails fast and moves on.

use sampan_fiber::Signal;
use sampan_net::{Connection, NetConfig, NetError, Role, Router};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

enum Slot {
    Up(Connection),
    Connecting(Signal),
    /// The last connect failed at this time, for this reason.
    Failed(Instant, Rc<str>),
}

/// The client's connections, by node address. Shard-local.
pub(crate) struct Pool {
    net: NetConfig,
    slots: RefCell<HashMap<SocketAddr, Slot>>,
    /// How long a failed connect is answered from memory.
    failure_memory: Duration,
    opened: Cell<u64>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("slots", &self.slots.borrow().len())
            .finish()
    }
}

/// Why no connection could be had.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The connect failed (now, or a moment ago).
    Failed(String),
    /// A setting refused by the transport (not worth retrying).
    Fatal(NetError),
}

/// Takes a `Connecting` slot back out if the connect is dropped half-way
/// (its caller timed out), so later callers do not wait forever.
struct Dialing<'a> {
    pool: &'a Pool,
    addr: SocketAddr,
    signal: Signal,
}

impl Drop for Dialing<'_> {
    fn drop(&mut self) {
        let mut slots = self.pool.slots.borrow_mut();
        if matches!(slots.get(&self.addr), Some(Slot::Connecting(_))) {
            slots.remove(&self.addr);
        }
        drop(slots);
        self.signal.notify_all();
    }
}

impl Pool {
    pub(crate) fn new(net: NetConfig, failure_memory: Duration) -> Pool {
        Pool {
            net,
            slots: RefCell::new(HashMap::new()),
            failure_memory,
            opened: Cell::new(0),
        }
    }

    /// The connection to `addr` if one is up now (no dialing, no waiting).
    pub(crate) fn ready(&self, addr: SocketAddr) -> Option<Connection> {
        match self.slots.borrow().get(&addr) {
            Some(Slot::Up(c)) if !c.is_closed() => Some(c.clone()),
            _ => None,
        }
    }

    /// The connection to `addr`, connecting if there is none.
    pub(crate) async fn get(&self, addr: SocketAddr) -> Result<Connection, ConnectError> {
        loop {
            if let Some(c) = self.ready(addr) {
                return Ok(c);
            }
            let wait = match self.slots.borrow().get(&addr) {
                Some(Slot::Connecting(s)) => Some(s.wait()),
                Some(Slot::Failed(at, why)) if at.elapsed() < self.failure_memory => {
                    return Err(ConnectError::Failed(why.to_string()));
                }
                _ => None,
            };
            match wait {
                Some(w) => w.await,
                None => return self.dial(addr).await,
            }
        }
    }

    async fn dial(&self, addr: SocketAddr) -> Result<Connection, ConnectError> {
        let signal = Signal::new();
        self.slots
            .borrow_mut()
            .insert(addr, Slot::Connecting(signal.clone()));
        let guard = Dialing {
            pool: self,
            addr,
            signal,
        };
        let dialed = sampan_net::connect(addr, &self.net, Role::Client, None, Router::new()).await;
        let (slot, result) = match dialed {
            Ok(conn) => {
                self.opened.set(self.opened.get() + 1);
                (Slot::Up(conn.clone()), Ok(conn))
            }
            // A wrong or missing token is not cured by trying again.
            Err(
                e @ (NetError::InvalidConfig { .. } | NetError::Fiber(_) | NetError::Auth { .. }),
            ) => {
                self.slots.borrow_mut().remove(&addr);
                return Err(ConnectError::Fatal(e));
            }
            Err(e) => {
                let why: Rc<str> = e.to_string().into();
                (
                    Slot::Failed(Instant::now(), why.clone()),
                    Err(ConnectError::Failed(why.to_string())),
                )
            }
        };
        self.slots.borrow_mut().insert(addr, slot);
        drop(guard);
        result
    }

    /// Drops the connection to `addr` (after a failure on it): the next
    /// request dials again.
    pub(crate) fn discard(&self, addr: SocketAddr, conn: &Connection, why: &str) {
        conn.close(why);
        let mut slots = self.slots.borrow_mut();
        if let Some(Slot::Up(c)) = slots.get(&addr)
            && c.is_closed()
        {
            slots.remove(&addr);
        }
    }

    /// The node id a connected address reported in its handshake.
    pub(crate) fn node_of(&self, addr: SocketAddr) -> Option<u64> {
        match self.slots.borrow().get(&addr) {
            Some(Slot::Up(c)) => Some(c.peer_node()),
            _ => None,
        }
    }

    /// Connections opened so far (reconnections included).
    pub(crate) fn opened(&self) -> u64 {
        self.opened.get()
    }

    /// Connections up now.
    pub(crate) fn up(&self) -> usize {
        self.slots
            .borrow()
            .values()
            .filter(|s| matches!(s, Slot::Up(c) if !c.is_closed()))
            .count()
    }

    /// Closes every connection.
    pub(crate) fn close(&self) {
        let slots: Vec<Slot> = self.slots.borrow_mut().drain().map(|(_, s)| s).collect();
        for slot in slots {
            if let Slot::Up(c) = slot {
                c.close("client closed");
            }
        }
    }
}
