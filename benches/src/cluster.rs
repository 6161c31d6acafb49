//! Node processes for the cluster benchmarks: the bench binary runs itself
//! again with `--node SPEC` for each node ([`run_node`]), so a benchmark
//! needs no other binary; [`Cluster`] starts three and stops them (by
//! closing their stdin) when dropped.

use bytes::Bytes;
use sampan::config::{Durability, GroupConfig, LogLayout, LogSettings, ServerConfig};
use sampan::server::RaftServer;
use sampan::service::{self, Op, Route, ServiceRequest, decode_reply};
use sampan_kv::kv_factory;
use sampan_net::{Connection, NetConfig, Role, Router};
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The cluster id of benchmark clusters.
pub const CLUSTER: u64 = 77;

/// What each node of a benchmark cluster runs.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Durability of every group.
    pub durability: Durability,
    /// Groups 1..=groups, on every node.
    pub groups: u64,
    /// Segment files grow this much at a time (small for many groups).
    pub grow_step_bytes: u64,
    /// Length of a Raft tick.
    pub tick_ms: u64,
}

impl Default for NodeSpec {
    fn default() -> Self {
        NodeSpec {
            durability: Durability::Sync,
            groups: 1,
            grow_step_bytes: LogSettings::default().grow_step_bytes,
            tick_ms: 10,
        }
    }
}

/// Three node processes; stopped on drop.
pub struct Cluster {
    nodes: Vec<Child>,
    /// Each node's service address (node `i + 1` at index `i`).
    pub services: Vec<SocketAddr>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("a free port: {e}"))
}

impl Cluster {
    /// Starts three nodes with data under `dir`.
    pub fn start(dir: &Path, spec: NodeSpec) -> Cluster {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let servers: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(n, (r, s))| format!("{},127.0.0.1:{r},{s}", n + 1))
            .collect();
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
        let mut nodes = Vec::new();
        for (n, (r, s)) in ports.iter().enumerate() {
            let arg = format!(
                "{}|{}|{r}|{s}|{}|{}|{}|{}|{}",
                n + 1,
                servers.join(";"),
                dir.join(format!("node-{}", n + 1)).display(),
                matches!(spec.durability, Durability::Sync),
                spec.groups,
                spec.grow_step_bytes,
                spec.tick_ms,
            );
            let child = Command::new(&exe)
                .args(["--node", &arg])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
            nodes.push(child);
        }
        let services = ports
            .iter()
            .map(|(_, s)| SocketAddr::from(([127, 0, 0, 1], *s)))
            .collect();
        Cluster { nodes, services }
    }

    /// The process ids of the nodes.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(Child::id).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            drop(n.stdin.take()); // the node stops when its stdin closes
        }
        for n in &mut self.nodes {
            let _ = n.wait();
        }
    }
}

/// Runs one node from the `--node` argument [`Cluster::start`] gives;
/// returns when stdin closes, after a clean shutdown.
pub fn run_node(arg: &str) {
    let f: Vec<&str> = arg.split('|').collect();
    let parse = |i: usize| -> u64 { f[i].parse().unwrap_or_else(|e| panic!("{arg}: {e}")) };
    let cfg = ServerConfig {
        node_id: parse(0),
        servers: f[1].into(),
        bind: None,
        cluster_id: CLUSTER,
        replicate_port: parse(2) as u16,
        service_port: parse(3) as u16,
        election_timeout_ms: 1_000,
        heartbeat_interval_ms: 100,
        tick_ms: parse(8),
        shards: 1,
        data_dir: f[4].into(),
        request_timeout_ms: 10_000,
        log: LogSettings {
            grow_step_bytes: parse(7),
            // `SAMPAN_BENCH_LOG_LAYOUT=per_group` runs the per-group log
            // (for before/after figures); the default is the node's.
            layout: match std::env::var("SAMPAN_BENCH_LOG_LAYOUT").as_deref() {
                Ok("per_group") => LogLayout::PerGroup,
                Ok("shared") | Err(_) => LogLayout::Shared,
                Ok(other) => panic!("SAMPAN_BENCH_LOG_LAYOUT={other}: per_group or shared"),
            },
            ..LogSettings::default()
        },
        cluster_secret: None,
        credentials: Vec::new(),
        protected_mode: true,
        max_connections: 10_000,
        balance_leaders: false,
        tls: None,
    };
    let durability = if f[5] == "true" {
        Durability::Sync
    } else {
        Durability::Async
    };
    let groups: Vec<GroupConfig> = (1..=parse(6))
        .map(|g| GroupConfig {
            group_id: g,
            members: "1,2,3".into(),
            observers: String::new(),
            durability,
            log_retention_ms: 0,
            ..Default::default()
        })
        .collect();
    let server = RaftServer::start(cfg, &groups, kv_factory()).unwrap_or_else(|e| panic!("{e}"));
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    let _ = server.shutdown();
}

/// The benchmark client's runtime: one shard, small io memory.
pub fn client_runtime() -> sampan_fiber::Runtime {
    sampan_fiber::Runtime::builder()
        .name("bench-client")
        .shards(1)
        .io_memory_bytes(sampan_fiber::IO_MEMORY_MIN_BYTES)
        .build()
        .unwrap_or_else(|e| panic!("client runtime: {e}"))
}

/// Connects to every node's service port (retrying for up to 20 s while
/// the nodes start), as client `1000 + i`.
pub async fn connect_all(services: &[SocketAddr]) -> Vec<Connection> {
    let mut conns = Vec::new();
    for addr in services {
        let cfg = NetConfig::new(CLUSTER, 1_000 + conns.len() as u64);
        let deadline = Instant::now() + Duration::from_secs(20);
        let conn = loop {
            match sampan_net::connect(*addr, &cfg, Role::Client, None, Router::new()).await {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => panic!("{addr}: {e}"),
                Err(_) => sampan_fiber::sleep(Duration::from_millis(50)).await,
            }
        };
        conns.push(conn);
    }
    conns
}

/// One service request (forwarded to the leader by a follower).
pub async fn call(conn: &Connection, group: u64, op: Op, payload: Bytes) -> Result<Bytes, String> {
    let req = ServiceRequest {
        op,
        route: Route::Forward,
        payload,
    };
    let frame = conn
        .request(
            service::kind::CLIENT,
            group,
            req.encode(),
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| e.to_string())?;
    decode_reply(frame.body)
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}
