//! Nodes, each its own runtime (its own shard thread), replicate KV groups
//! over loopback TCP through sampan-net, with one transport, one log writer
//! (group commit), one ticker and one liveness watch per shard. They elect
//! and commit; when the leader's runtime stops, the other two elect a new
//! leader that still holds every acknowledged write; and a hundred groups
//! on three nodes commit independently.

use bytes::Bytes;
use sampan::group::net::{
    GroupDirectory, TransportOutbox, drive_ticks, route_raft_frames, watch_peers,
};
use sampan::group::{GroupError, GroupHandle, GroupParts, start};
use sampan::kv::{KvAnswer, KvCommand, KvConfig, KvMachine, KvQuery, KvRequest};
use sampan::raft::{Config, GroupId, NodeId, Role};
use sampan_fiber::{FiberGroup, IO_MEMORY_MIN_BYTES, Runtime, TaskClass, sleep};
use sampan_net::{NetConfig, Router, Transport};
use sampan_storage::{DiskFile, DiskFs, LogConfig, LogWriter, SegmentLog, StatusFile};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

const CLUSTER: u64 = 7;

/// What a node keeps on its shard thread.
struct NodeState {
    transport: Transport,
    groups: GroupDirectory,
    writer: LogWriter<DiskFile>,
    fibers: Vec<FiberGroup>,
}

thread_local! {
    static NODE: RefCell<Option<NodeState>> = const { RefCell::new(None) };
}

fn with_node<T>(f: impl FnOnce(&mut NodeState) -> T) -> T {
    NODE.with(|n| f(n.borrow_mut().as_mut().expect("node started on this shard")))
}

fn handle(group: u64) -> GroupHandle {
    with_node(|s| s.groups.borrow().get(&group).cloned()).expect("group running")
}

fn runtime() -> Runtime {
    Runtime::builder()
        .shards(1)
        .io_memory_bytes(IO_MEMORY_MIN_BYTES)
        .build()
        .expect("runtime")
}

/// Starts node `id`'s transport and returns its replication address.
fn listen(rt: &Runtime, id: u64) -> SocketAddr {
    rt.shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || async move {
            let groups: GroupDirectory = Rc::default();
            let router = Router::new();
            route_raft_frames(&router, groups.clone(), 1 << 20).expect("route");
            let transport = Transport::new(NetConfig::new(CLUSTER, id), router).expect("transport");
            let addr = transport
                .listen("127.0.0.1:0".parse().expect("addr"))
                .expect("listen");
            let writer = LogWriter::new();
            NODE.with(|n| {
                *n.borrow_mut() = Some(NodeState {
                    transport,
                    groups,
                    writer,
                    fibers: Vec::new(),
                })
            });
            addr
        })
        .expect("listen")
}

/// Connects node `id` to its peers and starts the shard's ticker and
/// liveness watch.
fn connect(rt: &Runtime, peers: Vec<(u64, SocketAddr)>) {
    rt.shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || async move {
            let (transport, groups) = with_node(|s| (s.transport.clone(), s.groups.clone()));
            for &(peer, addr) in &peers {
                transport.add_peer(peer, addr).expect("peer");
            }
            let ids = peers.iter().map(|(p, _)| *p).collect();
            let watch = watch_peers(
                transport,
                groups.clone(),
                ids,
                Duration::from_millis(20),
                Duration::from_millis(200),
            );
            sampan_fiber::spawn(TaskClass::Latency, "liveness", watch).expect("liveness fiber");
            let ticks = drive_ticks(groups, Duration::from_millis(10));
            sampan_fiber::spawn(TaskClass::Latency, "ticker", ticks).expect("ticker fiber");
        })
        .expect("connect");
}

/// Starts node `id`'s replicas of `groups` (members 1, 2, 3), their logs
/// sharing the shard's writer.
fn start_groups(rt: &Runtime, id: u64, dir: PathBuf, groups: Vec<u64>) {
    rt.shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || async move {
            let (transport, directory, writer) =
                with_node(|s| (s.transport.clone(), s.groups.clone(), s.writer.clone()));
            let outbox = Rc::new(TransportOutbox::new(transport));
            // Small growth steps: a hundred groups must not take a GiB.
            let cfg_log = LogConfig {
                grow_step_bytes: 256 << 10,
                index_grow_step_bytes: 64 << 10,
                ..LogConfig::default()
            };
            for g in groups {
                let gdir = dir.join(format!("group-{g}"));
                let log = SegmentLog::open(
                    DiskFs,
                    &gdir.join("log"),
                    g,
                    cfg_log.clone(),
                    writer.clone(),
                )
                .await
                .expect("log");
                let status = StatusFile::open(&DiskFs, &gdir.join("status"), g)
                    .await
                    .expect("status");
                let mut cfg = Config::new(NodeId(id), GroupId(g));
                cfg.seed = id * 1_000 + g;
                let fibers = FiberGroup::new(format!("group-{g}")).expect("fibers");
                let parts = GroupParts {
                    cfg,
                    log,
                    status,
                    sm: Box::new(KvMachine::new(KvConfig::default())),
                    outbox: outbox.clone(),
                    bootstrap: Some(([1, 2, 3].into_iter().map(NodeId).collect(), BTreeSet::new())),
                    tick: None,
                };
                let h = start(parts, &fibers).await.expect("group");
                directory.borrow_mut().insert(g, h);
                with_node(|s| s.fibers.push(fibers));
            }
        })
        .expect("start");
}

/// Starts three nodes running `groups`.
fn cluster(root: &std::path::Path, groups: &[u64]) -> HashMap<u64, Runtime> {
    let nodes: HashMap<u64, Runtime> = (1..=3).map(|id| (id, runtime())).collect();
    let addrs: HashMap<u64, SocketAddr> = nodes
        .iter()
        .map(|(id, rt)| (*id, listen(rt, *id)))
        .collect();
    for (id, rt) in &nodes {
        connect(
            rt,
            addrs
                .iter()
                .filter(|(p, _)| *p != id)
                .map(|(p, a)| (*p, *a))
                .collect(),
        );
        start_groups(rt, *id, root.join(format!("node-{id}")), groups.to_vec());
    }
    nodes
}

fn role(rt: &Runtime, group: u64) -> Role {
    rt.shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || async move {
            handle(group).status().await.expect("status").role
        })
        .expect("status")
}

/// Waits (bounded) for one of `nodes` to lead `group`; returns its id.
fn leader(nodes: &HashMap<u64, Runtime>, group: u64) -> u64 {
    for _ in 0..1_000 {
        if let Some((id, _)) = nodes.iter().find(|(_, rt)| role(rt, group) == Role::Leader) {
            return *id;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no leader of group {group} within 10 s");
}

fn put(i: u64) -> Bytes {
    KvRequest::without_session(KvCommand::put(format!("k{i}"), format!("v{i}"))).to_bytes()
}

/// Proposes `puts` to `group` on `rt` (its leader); returns how many were
/// acknowledged.
fn propose_all(rt: &Runtime, group: u64, puts: std::ops::Range<u64>) -> u64 {
    rt.shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || async move {
            let h = handle(group);
            let mut acked = 0;
            for i in puts {
                match h.propose(put(i)).await {
                    Ok(_) => acked += 1,
                    Err(GroupError::NotLeader { .. }) => break,
                    Err(e) => panic!("group {group} proposal {i}: {e}"),
                }
            }
            acked
        })
        .expect("propose")
}

/// Reads keys `k0..k{n}` of `group` on `rt` (a leader), linearizably.
fn read_all(rt: &Runtime, group: u64, n: u64) -> Vec<Option<Bytes>> {
    rt.shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || async move {
            let h = handle(group);
            let keys: Vec<Bytes> = (0..n).map(|i| Bytes::from(format!("k{i}"))).collect();
            for _ in 0..500 {
                match h.read(KvQuery::Get(keys.clone()).to_bytes()).await {
                    Ok(a) => match KvAnswer::decode(a).expect("answer") {
                        KvAnswer::Values(v) => {
                            return v.into_iter().map(|it| it.map(|it| it.value)).collect();
                        }
                        other => panic!("unexpected {other:?}"),
                    },
                    // A new leader confirms its term before it serves reads.
                    Err(GroupError::NotLeader { .. }) => sleep(Duration::from_millis(10)).await,
                    Err(e) => panic!("read: {e}"),
                }
            }
            panic!("reads refused for 5 s")
        })
        .expect("read")
}

fn assert_values(values: &[Option<Bytes>]) {
    for (i, v) in values.iter().enumerate() {
        assert_eq!(
            v.as_deref(),
            Some(format!("v{i}").as_bytes()),
            "acknowledged k{i} lost"
        );
    }
}

fn writer_stats(rt: &Runtime) -> (u64, u64) {
    rt.shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, || async {
            with_node(|s| s.writer.stats())
        })
        .expect("stats")
}

#[test]
fn three_nodes_over_tcp_elect_commit_and_survive_the_leaders_runtime_stopping() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut nodes = cluster(root.path(), &[1]);
    let first = leader(&nodes, 1);
    assert_eq!(
        propose_all(&nodes[&first], 1, 0..200),
        200,
        "a stable leader acknowledges every proposal"
    );
    assert_values(&read_all(&nodes[&first], 1, 200));

    // Stop the leader's whole runtime: its connections close, its fibers end.
    let old = nodes.remove(&first).expect("leader runtime");
    old.shutdown(Duration::from_millis(200)).expect("stops");
    let second = leader(&nodes, 1);
    assert_ne!(second, first);
    assert_values(&read_all(&nodes[&second], 1, 200));
    assert_eq!(
        propose_all(&nodes[&second], 1, 200..250),
        50,
        "two of three still commit"
    );
    for (_, rt) in nodes {
        rt.shutdown(Duration::from_millis(200)).expect("stops");
    }
}

#[test]
fn a_hundred_groups_on_three_nodes_commit_independently() {
    let root = tempfile::tempdir().expect("tempdir");
    let groups: Vec<u64> = (1..=100).collect();
    let nodes = cluster(root.path(), &groups);
    let mut leaders = HashMap::new();
    for &g in &groups {
        let l = leader(&nodes, g);
        assert_eq!(propose_all(&nodes[&l], g, 0..5), 5, "group {g} commits");
        leaders.insert(g, l);
    }
    for &g in &groups {
        assert_values(&read_all(&nodes[&leaders[&g]], g, 5));
    }
    let (rounds, syncs) = writer_stats(&nodes[&1]);
    eprintln!("node 1's shard writer: {rounds} sync rounds, {syncs} file syncs for 100 groups");
    assert!(
        rounds > 0 && syncs > 0,
        "the shared writer made the logs durable"
    );
    for (_, rt) in nodes {
        rt.shutdown(Duration::from_millis(200)).expect("stops");
    }
}
