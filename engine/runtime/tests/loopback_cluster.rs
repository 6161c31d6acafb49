//! Nodes, each its own runtime (its own shard thread) with a `ShardHost`,
//! replicate KV groups over loopback TCP: one transport, one log writer
//! (group commit), one ticker and one liveness watch per shard. They elect
//! and commit; when the leader's runtime stops, the other two elect a new
//! leader that still holds every acknowledged write; and a hundred groups
//! on three nodes commit independently.

use bytes::Bytes;
use sampan::config::{Durability, GroupConfig, ServerConfig};
use sampan::group::{GroupError, GroupHandle};
use sampan::host::ShardHost;
use sampan::raft::Role;
use sampan_fiber::{IO_MEMORY_MIN_BYTES, Runtime, TaskClass, sleep};
use sampan_kv::{KvAnswer, KvCommand, KvConfig, KvMachine, KvQuery, KvRequest};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

thread_local! {
    /// Each node's host lives on its runtime's one shard thread.
    static HOST: RefCell<Option<Rc<ShardHost>>> = const { RefCell::new(None) };
}

fn host() -> Rc<ShardHost> {
    HOST.with(|h| h.borrow().clone())
        .expect("host started on this shard")
}

fn handle(group: u64) -> GroupHandle {
    host().group(group).expect("group running")
}

fn runtime() -> Runtime {
    Runtime::builder()
        .shards(1)
        .io_memory_bytes(IO_MEMORY_MIN_BYTES)
        .build()
        .expect("runtime")
}

/// Node `id`'s settings. `servers` names the members for validation; the
/// test listens on ephemeral ports and hands the real addresses to
/// `add_peers`.
fn server_config(id: u64, data_dir: PathBuf) -> ServerConfig {
    ServerConfig {
        node_id: id,
        servers: "1,127.0.0.1:1;2,127.0.0.1:2;3,127.0.0.1:3".into(),
        bind: None,
        cluster_id: 7,
        replicate_port: 1,
        service_port: 2,
        election_timeout_ms: 200,
        heartbeat_interval_ms: 20,
        tick_ms: 10,
        shards: 1,
        data_dir,
        request_timeout_ms: 10_000,
        log: Default::default(),
        cluster_secret: None,
        credentials: Vec::new(),
        protected_mode: true,
        max_connections: 10_000,
        balance_leaders: false,
        tls: None,
    }
}

/// Starts node `id`'s host and returns its replication address.
fn listen(rt: &Runtime, id: u64, data_dir: PathBuf) -> SocketAddr {
    rt.shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || async move {
            let local = "127.0.0.1:0".parse().expect("addr");
            let (host, addr) = ShardHost::start(server_config(id, data_dir), local).expect("host");
            HOST.with(|h| *h.borrow_mut() = Some(host));
            addr
        })
        .expect("listen")
}

/// Connects a node to its peers and starts its replicas of `groups`.
fn join(rt: &Runtime, peers: Vec<(u64, SocketAddr)>, groups: Vec<u64>) {
    rt.shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || async move {
            let host = host();
            let peers: Vec<_> = peers.into_iter().map(|(id, a)| (id, a.into())).collect();
            host.add_peers(&peers).expect("peers");
            for g in groups {
                let cfg = GroupConfig {
                    group_id: g,
                    members: "1,2,3".into(),
                    observers: String::new(),
                    durability: Durability::Sync,
                    log_retention_ms: 0,
                    ..Default::default()
                };
                host.add_group(&cfg, Box::new(KvMachine::new(KvConfig::default())))
                    .await
                    .expect("group starts");
            }
        })
        .expect("join");
}

/// Starts three nodes running `groups`.
fn cluster(root: &std::path::Path, groups: &[u64]) -> HashMap<u64, Runtime> {
    let nodes: HashMap<u64, Runtime> = (1..=3).map(|id| (id, runtime())).collect();
    let addrs: HashMap<u64, SocketAddr> = nodes
        .iter()
        .map(|(id, rt)| (*id, listen(rt, *id, root.join(format!("node-{id}")))))
        .collect();
    for (id, rt) in &nodes {
        let peers = addrs
            .iter()
            .filter(|(p, _)| *p != id)
            .map(|(p, a)| (*p, *a))
            .collect();
        join(rt, peers, groups.to_vec());
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
                        KvAnswer::Values { items: v, .. } => {
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

/// Sync rounds, file syncs and durable writes of a node's shard writer.
fn writer_stats(rt: &Runtime) -> (u64, u64, u64) {
    rt.shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, || async {
            let (rounds, syncs) = host().writer_stats();
            (rounds, syncs, host().durable_writes())
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
    let (rounds, syncs, durable) = writer_stats(&nodes[&1]);
    eprintln!(
        "node 1's shard writer: {rounds} sync rounds, {syncs} file syncs, {durable} durable \
         writes for 100 groups"
    );
    assert!(
        (rounds > 0 && syncs > 0) || durable > 0,
        "the shared writer made the logs durable"
    );
    let (beats, batches) = nodes
        .values()
        .map(|rt| {
            rt.shard(0)
                .expect("shard")
                .run_blocking(TaskClass::Latency, || async { host().heartbeat_stats() })
                .expect("stats")
        })
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
    eprintln!("heartbeats and responses: {beats} in {batches} batch frames");
    // Unbatched, every frame would carry one heartbeat: beats == batches.
    // Batched, the shard's one ticker wakes every group at once, and the
    // flusher sends after all the groups woken by that tick have run: each
    // frame to a peer carries the heartbeats of every group this node leads
    // whose heartbeat fell due on that tick (about a third of 100 groups,
    // half of them per tick at a 2-tick interval), and a follower answers a
    // frame's heartbeats in one frame. All 100 groups are awake together
    // from their elections until they hibernate, so frames of a dozen or
    // more are certain, whatever the timing; measured, 8-10 beats per frame
    // over the whole test. What can shrink a frame (a peer's beats sent
    // early ahead of an append, a group heartbeating alone while the
    // others hibernate) cannot bring the average near 1; 2 is the bound.
    assert!(
        batches > 0 && beats >= 2 * batches,
        "heartbeats are not batched: {beats} in {batches} frames"
    );
    for (_, rt) in nodes {
        rt.shutdown(Duration::from_millis(200)).expect("stops");
    }
}

#[test]
fn a_host_adds_stops_and_restarts_groups_and_refuses_bad_ones() {
    let root = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let dir = root.path().to_path_buf();
    rt.shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || async move {
            let mut cfg = server_config(1, dir);
            cfg.servers = "1,127.0.0.1:1".into();
            let (host, _) =
                ShardHost::start(cfg, "127.0.0.1:0".parse().expect("addr")).expect("host");
            let group = |id: u64, members: &str| GroupConfig {
                group_id: id,
                members: members.into(),
                observers: String::new(),
                durability: Durability::Async,
                log_retention_ms: 0,
                ..Default::default()
            };
            let kv = || Box::new(KvMachine::new(KvConfig::default()));
            let bad = host
                .add_group(&group(9, "1,5"), kv())
                .await
                .expect_err("node 5 is unknown");
            assert!(bad.to_string().contains("group 9.members"), "{bad}");
            let h = host.add_group(&group(3, "1"), kv()).await.expect("group 3");
            let twice = host
                .add_group(&group(3, "1"), kv())
                .await
                .expect_err("already running");
            assert!(matches!(
                twice,
                sampan::host::HostError::GroupExists { group: 3 }
            ));
            let mut acked = 0;
            for _ in 0..300 {
                match h.propose(put(acked)).await {
                    Ok(_) => acked += 1,
                    Err(GroupError::NotLeader { .. }) => sleep(Duration::from_millis(10)).await,
                    Err(e) => panic!("{e}"),
                }
                if acked == 10 {
                    break;
                }
            }
            assert_eq!(acked, 10, "a one-node group elects itself and commits");
            assert!(host.stop_group(3).await);
            assert!(host.group(3).is_none());
            assert!(!host.stop_group(3).await);
            // Started again, the group recovers its writes from its files.
            let h = host
                .add_group(&group(3, "1"), kv())
                .await
                .expect("group 3 again");
            let keys: Vec<Bytes> = (0..10).map(|i| Bytes::from(format!("k{i}"))).collect();
            let mut found = None;
            for _ in 0..300 {
                match h.read(KvQuery::Get(keys.clone()).to_bytes()).await {
                    Ok(a) => {
                        found = Some(a);
                        break;
                    }
                    Err(GroupError::NotLeader { .. }) => sleep(Duration::from_millis(10)).await,
                    Err(e) => panic!("{e}"),
                }
            }
            let KvAnswer::Values { items: values, .. } =
                KvAnswer::decode(found.expect("read served")).expect("answer")
            else {
                panic!("values expected");
            };
            assert_values(
                &values
                    .into_iter()
                    .map(|v| v.map(|it| it.value))
                    .collect::<Vec<_>>(),
            );
            assert_eq!(host.group_ids(), vec![3]);
            host.close();
        })
        .expect("test body");
    rt.shutdown(Duration::from_millis(200)).expect("stops");
}
