//! The native client: reaches the groups of a Sampan cluster through any
//! node's service port.
//!
//! **For:** applications talking to a cluster of `RaftServer`s. The client
//! finds each group's leader (asking with [`Route::Redirect`], then caching
//! the address a node names), follows leader changes, and retries what may
//! be retried until the request timeout: reads at will, writes under an
//! exactly-once session (an id and a sequence number kept across retries,
//! so the state machine applies a retried write once and answers it with
//! the first result). Requests to one node share one connection, many in
//! flight at once. **Not for:** admin (adding groups or members), nor
//! talking to a node in-process (use the runtime's `sampan::server::GroupRef`).
//!
//! Two forms: [`Client`] is shard-local (`!Send`) and async, for code that
//! runs on a `sampan-fiber` shard; [`BlockingClient`] is `Send + Sync` and
//! blocks the calling thread, for plain threads: it owns a small one-shard
//! runtime of its own that holds the [`Client`].
//!
//! ```no_run
//! use sampan_client::{BlockingClient, ClientConfig};
//!
//! # fn main() -> Result<(), sampan_client::ClientError> {
//! let servers = vec!["127.0.0.1:5001".parse().expect("addr")];
//! let client = BlockingClient::connect(ClientConfig::new(servers))?;
//! client.put(1, "k", "v")?;
//! assert_eq!(client.get(1, "k")?.as_deref(), Some(&b"v"[..]));
//! assert_eq!(client.incr(1, "n", 5)?, 5);
//! client.close();
//! # Ok(()) }
//! ```
//!
//! Retry policy, per try of one operation (bounded by
//! [`ClientConfig::request_timeout`]; each try by `attempt_timeout`):
//! - `NotLeader` with an address: go there at once (a few hops in a row,
//!   then pause), and remember it as the group's leader.
//! - `NotLeader` without one (an election): ask again with
//!   [`Route::Forward`], so the node waits for the new leader and forwards.
//! - A timeout, a lost or refused connection, a node shutting down, a
//!   forward that failed: pause (backoff with jitter), forget the leader,
//!   try the next node.
//! - `Busy` or `Lost` (a leader change dropped the proposal): pause, retry.
//! - Anything else (storage failure, refused, malformed): fail at once.

mod admin;
mod blocking;
mod config;
mod error;
mod kv;
mod pool;
pub mod session;

pub use blocking::BlockingClient;
pub use config::{
    ATTEMPT_TIMEOUT_DEFAULT, CLUSTER_ID_DEFAULT, ClientConfig, REQUEST_TIMEOUT_DEFAULT,
    RETRY_DELAY_MAX_DEFAULT, RETRY_DELAY_MIN_DEFAULT, SESSION_RENEW_IDLE_DEFAULT,
    SESSION_WINDOW_DEFAULT, SESSIONS_PER_GROUP_DEFAULT,
};
pub use error::ClientError;
pub use kv::{KeyTtl, NodeStatus};

use bytes::Bytes;
use pool::{ConnectError, Pool};
use sampan_net::backoff::Backoff;
use sampan_net::rpc::ERROR_CODE_NO_RESPONSE;
use sampan_net::{Body, NetConfig, NetError};
use sampan_proto::group::GroupError;
use sampan_proto::service::{self, Op, Route, ServerError, ServiceRequest};
use session::Sessions;
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Redirects followed in a row without a pause: enough to cross a cluster
/// whose nodes disagree for a moment about the leader.
const REDIRECTS_IN_A_ROW_MAX: u32 = 3;

/// Counters of a client, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Connections opened (reconnections included).
    pub connections_opened: u64,
    /// Connections up now.
    pub connections_up: usize,
    /// Tries sent to a node (first tries and retries).
    pub attempts: u64,
    /// Tries that were retries of an operation.
    pub retries: u64,
    /// Redirects followed.
    pub redirects: u64,
    /// Requests waiting for an answer now.
    pub in_flight: u64,
    /// The most requests ever waiting for an answer at once.
    pub in_flight_max: u64,
}

/// The async client: shard-local (`!Send`), cheap to clone (clones share
/// connections, leaders and sessions). See the module docs.
#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.inner.cfg.servers)
            .field("leaders", &self.inner.leaders.borrow())
            .finish()
    }
}

struct Inner {
    cfg: ClientConfig,
    pool: Pool,
    sessions: Sessions,
    /// The leader's service address of each group, as last learned.
    leaders: RefCell<sampan_net::IdMap<SocketAddr>>,
    /// Which seed to ask next when a group's leader is unknown.
    cursor: Cell<usize>,
    stats: Cell<ClientStats>,
    closed: Cell<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.pool.close();
    }
}

/// The state of one operation's tries.
struct Tries {
    /// How the next try asks a node that does not lead.
    route: Route,
    /// Redirects followed since the last pause.
    redirects: u32,
    attempts: u32,
    /// The nodes that said they do not have the group (a node restarting
    /// its replica says so for a moment: one node saying it twice is not
    /// "no node has it").
    no_group: BTreeSet<SocketAddr>,
    /// What went wrong last, for the timeout's message (empty: nothing
    /// yet; not allocated on the way of a request that succeeds at once).
    last: String,
    /// Whether some try may have applied.
    unknown: bool,
    /// Whether the request is a proposal (a write).
    propose: bool,
}

impl Tries {
    /// What went wrong last, or "none".
    fn last_text(&self) -> String {
        if self.last.is_empty() {
            "none".to_string()
        } else {
            self.last.clone()
        }
    }

    fn pause_if(&self, pause: bool) -> Step {
        if pause { Step::Pause } else { Step::Again }
    }

    /// `err` as the answer to the whole request: a write one of whose
    /// earlier tries may have applied is uncertain, whatever this last
    /// try said (found by sampan-check: a try that reached a leader before
    /// its connection broke applied, and the retry's "no such group" from
    /// a node restarting its replica was reported as "not applied").
    fn finish(&self, group: u64, after: Duration, err: ClientError) -> Step {
        if self.unknown && self.propose && err.is_definite() {
            return Step::Return(Err(ClientError::Uncertain {
                group,
                after,
                last: format!(
                    "{err}, after a try whose outcome is unknown ({})",
                    self.last_text()
                ),
            }));
        }
        Step::Return(Err(err))
    }
}

/// What the retry loop does next.
enum Step {
    Return(Result<Bytes, ClientError>),
    /// Try again at once.
    Again,
    /// Try again after a backoff pause.
    Pause,
}

/// What one try came to.
enum Outcome {
    Done(Bytes),
    /// Not the leader; the leader's address if known.
    Redirect(Option<SocketAddr>),
    /// Worth another try after a pause; `elsewhere`: on another node;
    /// `unknown`: this try may have applied (it was sent and no outcome
    /// came back).
    Retry {
        why: String,
        elsewhere: bool,
        unknown: bool,
    },
    /// The node does not have the group.
    NoGroup(String),
    Fail(ClientError),
}

impl Client {
    /// A client with `cfg`; connects lazily, on the first request. Call it
    /// on a shard (the connections live there).
    pub fn new(cfg: ClientConfig) -> Result<Client, ClientError> {
        cfg.validate()?;
        let mut net = NetConfig::new(cfg.cluster_id, session::random_id());
        net.credential = cfg.credential.clone();
        net.client_tls = cfg.tls.clone();
        net.validate().map_err(|e| ClientError::Config {
            field: "net",
            reason: e.to_string(),
        })?;
        Ok(Client {
            inner: Rc::new(Inner {
                pool: Pool::new(net, cfg.retry_delay_max),
                sessions: Sessions::new(&cfg),
                leaders: RefCell::new(sampan_net::IdMap::default()),
                cursor: Cell::new(0),
                stats: Cell::new(ClientStats::default()),
                closed: Cell::new(false),
                cfg,
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// The leader's address of `group`, as last learned (None: unknown).
    pub fn leader_of(&self, group: u64) -> Option<SocketAddr> {
        self.inner.leaders.borrow().get(&group).copied()
    }

    /// The client's counters.
    pub fn stats(&self) -> ClientStats {
        let mut s = self.inner.stats.get();
        s.connections_opened = self.inner.pool.opened();
        s.connections_up = self.inner.pool.up();
        s
    }

    /// Closes every connection; later calls fail with
    /// [`ClientError::Closed`]. Calls in flight fail or finish.
    pub fn close(&self) {
        self.inner.closed.set(true);
        self.inner.pool.close();
    }

    fn bump(&self, f: impl FnOnce(&mut ClientStats)) {
        let mut s = self.inner.stats.get();
        f(&mut s);
        self.inner.stats.set(s);
    }

    /// Where to send the next try for `group`: its leader if known, else
    /// the seed under the cursor.
    fn target(&self, group: u64) -> SocketAddr {
        if let Some(a) = self.leader_of(group) {
            return a;
        }
        let seeds = &self.inner.cfg.servers;
        seeds[self.inner.cursor.get() % seeds.len()]
    }

    /// Forgets `addr` as the leader of `group` and moves the cursor on, so
    /// the next try goes to another node.
    fn move_on(&self, group: u64, addr: SocketAddr) {
        let mut leaders = self.inner.leaders.borrow_mut();
        if leaders.get(&group) == Some(&addr) {
            leaders.remove(&group);
        }
        let seeds = &self.inner.cfg.servers;
        let at = self.inner.cursor.get();
        if seeds[at % seeds.len()] == addr || !seeds.contains(&addr) {
            self.inner.cursor.set(at.wrapping_add(1));
        }
    }

    /// Sends `payload` as `op` to `group`'s leader, retrying per the policy
    /// in the module docs until the request timeout. A proposal must be
    /// safe to apply more than once or carry a session.
    pub(crate) async fn call(
        &self,
        group: u64,
        op: Op,
        payload: Bytes,
    ) -> Result<Bytes, ClientError> {
        let now = Instant::now();
        self.call_from(
            group,
            op,
            payload,
            now,
            now + self.inner.cfg.request_timeout,
        )
        .await
    }

    /// [`Client::call`] with the clock read at `now` (each read costs, and
    /// a request reads it often) and the deadline of an operation that may
    /// have begun earlier (a write that waited for room in its session).
    pub(crate) async fn call_from(
        &self,
        group: u64,
        op: Op,
        payload: Bytes,
        mut now: Instant,
        deadline: Instant,
    ) -> Result<Bytes, ClientError> {
        let cfg = &self.inner.cfg;
        // Made at the first pause: most requests never pause, and a seed
        // costs a clock read, a pid and a hash.
        let mut backoff: Option<Backoff> = None;
        let mut tries = Tries {
            route: Route::Redirect,
            redirects: 0,
            attempts: 0,
            no_group: BTreeSet::new(),
            last: String::new(),
            unknown: false,
            propose: op == Op::Propose,
        };
        while now < deadline {
            if self.inner.closed.get() {
                return Err(ClientError::Closed);
            }
            let addr = self.target(group);
            tries.attempts += 1;
            let retry = tries.attempts > 1;
            self.bump(|s| {
                s.attempts += 1;
                s.retries += u64::from(retry);
            });
            let req = ServiceRequest {
                op,
                route: tries.route,
                payload: payload.clone(),
            };
            let outcome = self.attempt(addr, group, &req, now, deadline).await;
            match self.react(group, addr, outcome, &mut tries) {
                Step::Return(r) => return r,
                Step::Again => {}
                Step::Pause => {
                    tries.redirects = 0;
                    let backoff = backoff.get_or_insert_with(|| {
                        Backoff::new(
                            cfg.retry_delay_min,
                            cfg.retry_delay_max,
                            session::random_id(),
                        )
                    });
                    let wake = Instant::now() + backoff.next_delay();
                    sampan_fiber::sleep_until(wake.min(deadline)).await;
                }
            }
            now = Instant::now();
        }
        if tries.unknown && op == Op::Propose {
            return Err(ClientError::Uncertain {
                group,
                after: cfg.request_timeout,
                last: tries.last_text(),
            });
        }
        Err(ClientError::Timeout {
            group,
            after: cfg.request_timeout,
            attempts: tries.attempts,
            last: tries.last_text(),
        })
    }

    /// What to do after a try on `addr` came to `outcome`: the retry
    /// policy of the module docs.
    fn react(&self, group: u64, addr: SocketAddr, outcome: Outcome, t: &mut Tries) -> Step {
        match outcome {
            Outcome::Done(b) => {
                if t.route == Route::Redirect {
                    let mut leaders = self.inner.leaders.borrow_mut();
                    if leaders.get(&group) != Some(&addr) {
                        leaders.insert(group, addr);
                    }
                }
                Step::Return(Ok(b))
            }
            Outcome::Fail(e) => t.finish(group, self.inner.cfg.request_timeout, e),
            Outcome::Redirect(Some(leader)) => {
                self.bump(|s| s.redirects += 1);
                self.inner.leaders.borrow_mut().insert(group, leader);
                t.route = Route::Redirect;
                t.redirects += 1;
                t.last = format!("{addr} redirected to {leader}");
                t.pause_if(t.redirects > REDIRECTS_IN_A_ROW_MAX)
            }
            Outcome::Redirect(None) => {
                // An election: asked to forward, the node waits for its
                // end; ask again that way, and pause if that was the way.
                self.inner.leaders.borrow_mut().remove(&group);
                t.last = format!("{addr} knows no leader");
                let again = t.route == Route::Forward;
                t.route = Route::Forward;
                t.pause_if(again)
            }
            Outcome::NoGroup(why) => {
                t.no_group.insert(addr);
                t.last = why;
                if t.no_group.len() >= self.inner.cfg.servers.len() {
                    let nodes = t.no_group.len();
                    let err = ClientError::NoSuchGroup { group, nodes };
                    return t.finish(group, self.inner.cfg.request_timeout, err);
                }
                self.move_on(group, addr);
                // A node may answer so while it restarts its replica: go
                // round the others before asking it again.
                t.pause_if(t.no_group.contains(&self.target(group)))
            }
            Outcome::Retry {
                why,
                elsewhere,
                unknown,
            } => {
                t.unknown |= unknown;
                if elsewhere {
                    self.move_on(group, addr);
                }
                t.route = Route::Redirect;
                t.last = why;
                Step::Pause
            }
        }
    }

    /// The pooled connection to `addr`, dialed (within `limit`) if there
    /// is none; what the attempt comes to if there is none in time. (A
    /// caller looks for a connection already up first: that costs no
    /// timer.)
    async fn connection(
        &self,
        addr: SocketAddr,
        group: u64,
        limit: Duration,
    ) -> Result<sampan_net::Connection, Outcome> {
        match sampan_fiber::timeout(limit, self.inner.pool.get(addr)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(ConnectError::Failed(why))) => Err(Outcome::Retry {
                why,
                elsewhere: true,
                unknown: false,
            }),
            Ok(Err(ConnectError::Fatal(source))) => Err(Outcome::Fail(ClientError::Net {
                group,
                addr,
                source,
            })),
            Err(_) => Err(Outcome::Retry {
                why: format!("no connection to {addr} within {limit:?}"),
                elsewhere: true,
                unknown: false,
            }),
        }
    }

    /// One try on the node at `addr`.
    async fn attempt(
        &self,
        addr: SocketAddr,
        group: u64,
        req: &ServiceRequest,
        now: Instant,
        deadline: Instant,
    ) -> Outcome {
        let left = deadline.saturating_duration_since(now);
        let limit = left.min(self.inner.cfg.attempt_timeout);
        // A connection already up took no time: no second clock read.
        // Connecting (handshake, TLS) is boxed: its 2.4 KB future would
        // otherwise sit in every request's state, which thousands in
        // flight keep warm in the cache for nothing.
        let (conn, now) = match self.inner.pool.ready(addr) {
            Some(c) => (c, now),
            None => match Box::pin(self.connection(addr, group, limit)).await {
                Ok(c) => (c, Instant::now()),
                Err(outcome) => return outcome,
            },
        };
        self.bump(|s| {
            s.in_flight += 1;
            s.in_flight_max = s.in_flight_max.max(s.in_flight);
        });
        let left = deadline.saturating_duration_since(now);
        let sent = conn
            .request(
                service::kind::CLIENT,
                group,
                Body::from(req.encode()),
                left.min(limit),
            )
            .await;
        self.bump(|s| s.in_flight -= 1);
        let frame = match sent {
            Ok(f) => f,
            Err(e) => {
                let retry = net_retryable(&e);
                if retry && !matches!(e, NetError::Timeout { .. }) {
                    self.inner.pool.discard(addr, &conn, "request failed");
                }
                if retry {
                    // Sent, unless refused before it left (no connection).
                    let unknown = !matches!(e, NetError::NotConnected { .. });
                    return Outcome::Retry {
                        why: e.to_string(),
                        elsewhere: true,
                        unknown,
                    };
                }
                return Outcome::Fail(ClientError::Net {
                    group,
                    addr,
                    source: e,
                });
            }
        };
        match service::decode_reply(frame.body) {
            Ok(Ok(b)) => Outcome::Done(b),
            Ok(Err(e)) => server_outcome(group, e),
            Err(source) => Outcome::Fail(ClientError::BadReply {
                group,
                addr,
                source,
            }),
        }
    }

    /// The node id behind a connected address, from its handshake.
    fn node_at(&self, addr: SocketAddr) -> Option<u64> {
        self.inner.pool.node_of(addr)
    }
}

/// Whether a transport failure may be cured by another try.
fn net_retryable(e: &NetError) -> bool {
    match e {
        NetError::Timeout { .. }
        | NetError::ConnectionClosed { .. }
        | NetError::Connect { .. }
        | NetError::Io { .. }
        | NetError::Handshake { .. }
        | NetError::NotConnected { .. }
        | NetError::Frame { .. } => true,
        NetError::Remote { code, .. } => *code == ERROR_CODE_NO_RESPONSE,
        _ => false,
    }
}

/// What a node's error answer means for the next try.
fn server_outcome(group: u64, e: ServerError) -> Outcome {
    let why = e.to_string();
    match e {
        ServerError::NotLeader { addr, .. } => Outcome::Redirect(addr),
        ServerError::Group(GroupError::NotLeader { .. }) => Outcome::Redirect(None),
        ServerError::NoSuchGroup { .. } => Outcome::NoGroup(why),
        ServerError::Group(GroupError::Busy { .. } | GroupError::Lost { .. }) => Outcome::Retry {
            why,
            elsewhere: false,
            unknown: false,
        },
        ServerError::Unreachable { .. }
        | ServerError::ShuttingDown { .. }
        // Outcome unknown: the write's session makes a retry safe, and the
        // retry learns the outcome.
        | ServerError::Uncertain { .. }
        // A replica that halted itself: the others elect a leader.
        | ServerError::Group(
            GroupError::Stopped { .. } | GroupError::Uncertain { .. } | GroupError::Halted { .. },
        ) => Outcome::Retry {
            unknown: !e.is_definite(),
            why,
            elsewhere: true,
        },
        source => Outcome::Fail(ClientError::Server { group, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_sorted_into_redirects_retries_and_failures() {
        let addr: SocketAddr = "127.0.0.1:5002".parse().expect("addr");
        let redirect = ServerError::NotLeader {
            group: 1,
            node: 1,
            leader: Some(2),
            addr: Some(addr),
        };
        assert!(matches!(server_outcome(1, redirect), Outcome::Redirect(Some(a)) if a == addr));
        let election = ServerError::NotLeader {
            group: 1,
            node: 1,
            leader: None,
            addr: None,
        };
        assert!(matches!(
            server_outcome(1, election),
            Outcome::Redirect(None)
        ));
        let busy = GroupError::Busy { group: 1 }.into();
        assert!(matches!(
            server_outcome(1, busy),
            Outcome::Retry {
                elsewhere: false,
                ..
            }
        ));
        // A try that reached a node and learned nothing may have applied:
        // it makes a write that runs out of time Uncertain, not Timeout.
        let unknown = ServerError::Uncertain {
            group: 1,
            node: 2,
            reason: "forwarded, no answer".into(),
        };
        assert!(matches!(
            server_outcome(1, unknown),
            Outcome::Retry { unknown: true, .. }
        ));
        let lost = GroupError::Lost { group: 1, index: 9 }.into();
        assert!(matches!(
            server_outcome(1, lost),
            Outcome::Retry { unknown: false, .. }
        ));
        let down = ServerError::ShuttingDown { node: 1 };
        assert!(matches!(
            server_outcome(1, down),
            Outcome::Retry {
                elsewhere: true,
                ..
            }
        ));
        let disk = GroupError::Storage {
            group: 1,
            fault: sampan_proto::group::StorageFault::DiskFull,
            reason: "disk".into(),
        }
        .into();
        assert!(matches!(
            server_outcome(1, disk),
            Outcome::Fail(ClientError::Server { group: 1, .. })
        ));
        let gone = ServerError::NoSuchGroup { group: 1, node: 1 };
        assert!(matches!(server_outcome(1, gone), Outcome::NoGroup(_)));
        let too_big = NetError::TooLarge {
            peer: "x".into(),
            kind: 1,
            bytes: 1,
            bytes_max: 0,
        };
        assert!(!net_retryable(&too_big));
        let cut = NetError::ConnectionClosed {
            peer: "x".into(),
            kind: 1,
            reason: "reset".into(),
        };
        assert!(net_retryable(&cut));
    }

    /// A write whose earlier try may have applied is never reported "not
    /// applied" because a later try was refused or found no replica.
    #[test]
    fn a_definite_last_answer_after_an_unknown_try_is_uncertain() {
        let mut t = Tries {
            route: Route::Redirect,
            redirects: 0,
            attempts: 2,
            no_group: BTreeSet::new(),
            last: "connection closed".into(),
            unknown: false,
            propose: true,
        };
        let after = Duration::from_secs(1);
        let gone = || ClientError::NoSuchGroup { group: 1, nodes: 3 };
        assert!(matches!(
            t.finish(1, after, gone()),
            Step::Return(Err(ClientError::NoSuchGroup { .. }))
        ));
        t.unknown = true;
        match t.finish(1, after, gone()) {
            Step::Return(Err(e @ ClientError::Uncertain { .. })) => {
                assert!(!e.is_definite());
                assert!(e.to_string().contains("no node has it"), "{e}");
            }
            _ => panic!("not uncertain"),
        }
        // A read changes nothing: its last answer stands.
        t.propose = false;
        assert!(matches!(
            t.finish(1, after, gone()),
            Step::Return(Err(ClientError::NoSuchGroup { .. }))
        ));
    }

    #[test]
    fn configs_out_of_range_are_refused_with_the_field() {
        let mut cfg = ClientConfig::new(Vec::new());
        assert!(matches!(
            cfg.validate(),
            Err(ClientError::Config {
                field: "servers",
                ..
            })
        ));
        cfg.servers.push("127.0.0.1:1".parse().expect("addr"));
        assert!(cfg.validate().is_ok());
        cfg.session_window = 0;
        assert!(matches!(
            cfg.validate(),
            Err(ClientError::Config {
                field: "session_window",
                ..
            })
        ));
    }
}
