//! Three nodes, each its own runtime (its own shard thread), replicate one
//! KV group over loopback TCP through sampan-net: they elect, commit, and
//! when the leader's runtime is stopped the other two elect a new leader
//! that still holds every acknowledged write.

use bytes::Bytes;
use sampan::group::net::{
    GroupDirectory, TransportOutbox, drive_ticks, route_raft_frames, watch_peers,
};
use sampan::group::{GroupError, GroupHandle, GroupParts, start};
use sampan::kv::{KvAnswer, KvCommand, KvConfig, KvMachine, KvQuery, KvRequest};
use sampan::raft::{Config, GroupId, NodeId, Role};
use sampan_fiber::{FiberGroup, IO_MEMORY_MIN_BYTES, Runtime, TaskClass, sleep};
use sampan_net::{NetConfig, Router, Transport};
use sampan_storage::{DiskFs, LogConfig, LogWriter, SegmentLog, StatusFile};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

const CLUSTER: u64 = 7;
const GROUP: u64 = 1;

/// What a node keeps on its shard thread.
struct NodeState {
    transport: Transport,
    groups: GroupDirectory,
    fibers: Option<FiberGroup>,
}

thread_local! {
    static NODE: RefCell<Option<NodeState>> = const { RefCell::new(None) };
}

fn handle() -> GroupHandle {
    NODE.with(|n| {
        n.borrow()
            .as_ref()
            .and_then(|s| s.groups.borrow().get(&GROUP).cloned())
    })
    .expect("group running")
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
            NODE.with(|n| {
                *n.borrow_mut() = Some(NodeState {
                    transport,
                    groups,
                    fibers: None,
                })
            });
            addr
        })
        .expect("listen")
}

/// Connects node `id` to its peers and starts its replica of the group.
fn start_replica(rt: &Runtime, id: u64, peers: Vec<(u64, SocketAddr)>, dir: PathBuf) {
    rt.shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || async move {
            let (transport, groups) = NODE
                .with(|n| {
                    n.borrow()
                        .as_ref()
                        .map(|s| (s.transport.clone(), s.groups.clone()))
                })
                .expect("node");
            for &(peer, addr) in &peers {
                transport.add_peer(peer, addr).expect("peer");
            }
            let ids = peers.iter().map(|(p, _)| *p).collect();
            sampan_fiber::spawn(
                TaskClass::Latency,
                "liveness",
                watch_peers(
                    transport.clone(),
                    groups.clone(),
                    ids,
                    Duration::from_millis(20),
                    Duration::from_millis(200),
                ),
            )
            .expect("liveness fiber");
            // One ticker for the shard drives every group on it.
            sampan_fiber::spawn(
                TaskClass::Latency,
                "ticker",
                drive_ticks(groups.clone(), Duration::from_millis(10)),
            )
            .expect("ticker fiber");
            let log = SegmentLog::open(
                DiskFs,
                &dir.join("log"),
                GROUP,
                LogConfig::default(),
                LogWriter::new(),
            )
            .await
            .expect("log");
            let status = StatusFile::open(&DiskFs, &dir.join("status"), GROUP)
                .await
                .expect("status");
            let mut cfg = Config::new(NodeId(id), GroupId(GROUP));
            cfg.seed = id;
            let fibers = FiberGroup::new(format!("group-{GROUP}")).expect("fibers");
            let parts = GroupParts {
                cfg,
                log,
                status,
                sm: Box::new(KvMachine::new(KvConfig::default())),
                outbox: Rc::new(TransportOutbox::new(transport)),
                bootstrap: Some(([1, 2, 3].into_iter().map(NodeId).collect(), BTreeSet::new())),
                tick: None,
            };
            let h = start(parts, &fibers).await.expect("group");
            groups.borrow_mut().insert(GROUP, h);
            NODE.with(|n| {
                if let Some(s) = n.borrow_mut().as_mut() {
                    s.fibers = Some(fibers);
                }
            });
        })
        .expect("start");
}

fn role(rt: &Runtime) -> Role {
    rt.shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, || async {
            handle().status().await.expect("status").role
        })
        .expect("status")
}

/// Waits (bounded) for one of `nodes` to lead; returns its id.
fn leader(nodes: &HashMap<u64, Runtime>) -> u64 {
    for _ in 0..1_000 {
        if let Some((id, _)) = nodes.iter().find(|(_, rt)| role(rt) == Role::Leader) {
            return *id;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no leader within 10 s");
}

fn put(i: u64) -> Bytes {
    KvRequest::without_session(KvCommand::put(format!("k{i}"), format!("v{i}"))).to_bytes()
}

/// Proposes `puts` on `rt` (the leader); returns how many were acknowledged.
fn propose_all(rt: &Runtime, puts: std::ops::Range<u64>) -> u64 {
    rt.shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || async move {
            let h = handle();
            let mut acked = 0;
            for i in puts {
                match h.propose(put(i)).await {
                    Ok(_) => acked += 1,
                    Err(GroupError::NotLeader { .. }) => break,
                    Err(e) => panic!("proposal {i}: {e}"),
                }
            }
            acked
        })
        .expect("propose")
}

/// Reads keys `k0..k{n}` on `rt` (a leader) with linearizable reads.
fn read_all(rt: &Runtime, n: u64) -> Vec<Option<Bytes>> {
    rt.shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || async move {
            let h = handle();
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

#[test]
fn three_nodes_over_tcp_elect_commit_and_survive_the_leaders_runtime_stopping() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut nodes: HashMap<u64, Runtime> = (1..=3).map(|id| (id, runtime())).collect();
    let addrs: HashMap<u64, SocketAddr> = nodes
        .iter()
        .map(|(id, rt)| (*id, listen(rt, *id)))
        .collect();
    for (id, rt) in &nodes {
        let peers = addrs
            .iter()
            .filter(|(p, _)| *p != id)
            .map(|(p, a)| (*p, *a))
            .collect();
        start_replica(rt, *id, peers, root.path().join(format!("node-{id}")));
    }
    let first = leader(&nodes);
    let acked = propose_all(&nodes[&first], 0..200);
    assert_eq!(acked, 200, "a stable leader acknowledges every proposal");
    let values = read_all(&nodes[&first], 200);
    assert!(
        values
            .iter()
            .enumerate()
            .all(|(i, v)| v.as_deref() == Some(format!("v{i}").as_bytes()))
    );

    // Stop the leader's whole runtime: its connections close, its fibers end.
    let old = nodes.remove(&first).expect("leader runtime");
    old.shutdown(Duration::from_millis(200)).expect("stops");
    let second = leader(&nodes);
    assert_ne!(second, first);
    let values = read_all(&nodes[&second], 200);
    for (i, v) in values.iter().enumerate() {
        assert_eq!(
            v.as_deref(),
            Some(format!("v{i}").as_bytes()),
            "acknowledged k{i} lost"
        );
    }
    assert_eq!(
        propose_all(&nodes[&second], 200..250),
        50,
        "two of three still commit"
    );
    for (_, rt) in nodes {
        rt.shutdown(Duration::from_millis(200)).expect("stops");
    }
}
