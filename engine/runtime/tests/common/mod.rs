//! Helpers of the engine's cluster tests: 3-node configs on free ports,
//! servers started with small io memory, waiting for a leader.

#![allow(dead_code)]

use bytes::Bytes;
use sampan::config::{Durability, GroupConfig, ServerConfig};
use sampan::raft::Role;
use sampan::server::{GroupRef, RaftFactory, RaftServer};
use sampan::service::ServerError;
use sampan_fiber::{IO_MEMORY_MIN_BYTES, Runtime};
use sampan_kv::{KvAnswer, KvQuery};
use std::path::Path;
use std::time::Duration;

/// The configs of a 3-node cluster with `shards` shards each, on ports
/// free now: each node gets `shards` consecutive replication ports and a
/// service port, none shared.
pub fn configs(root: &Path, shards: usize) -> Vec<ServerConfig> {
    configs_n(root, shards, 3)
}

/// [`configs`] for `nodes` nodes, every one in each node's `servers`.
pub fn configs_n(root: &Path, shards: usize, nodes: usize) -> Vec<ServerConfig> {
    sampan::config::loopback_cluster(root, nodes, shards)
        .into_iter()
        .map(|c| ServerConfig { cluster_id: 9, ..c })
        .collect()
}

pub fn group(id: u64) -> GroupConfig {
    GroupConfig {
        group_id: id,
        members: "1,2,3".into(),
        observers: String::new(),
        durability: Durability::Sync,
        log_retention_ms: 0,
        ..Default::default()
    }
}

pub fn start<F: RaftFactory>(cfg: ServerConfig, groups: &[u64], factory: F) -> RaftServer<F> {
    let groups: Vec<GroupConfig> = groups.iter().map(|g| group(*g)).collect();
    let rt = Runtime::builder().io_memory_bytes(IO_MEMORY_MIN_BYTES);
    RaftServer::start_with(cfg, &groups, factory, rt).expect("server starts")
}

/// Waits (bounded) until one of `servers` leads `group`; returns its index.
pub fn leader<F: RaftFactory>(servers: &[Option<RaftServer<F>>], group: u64) -> usize {
    for _ in 0..1_000 {
        for (i, s) in servers.iter().enumerate() {
            let Some(s) = s else { continue };
            match s.group(group).status_blocking() {
                Ok(st) if st.role == Role::Leader => return i,
                Ok(_) | Err(ServerError::NoSuchGroup { .. }) => {}
                Err(e) => panic!("status: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no leader of group {group} within 10 s");
}

/// The last index in the log of `group`'s leader among `servers`.
pub fn leader_last<F: RaftFactory>(servers: &[Option<RaftServer<F>>], group: u64) -> u64 {
    let l = leader(servers, group);
    servers[l]
        .as_ref()
        .expect("leader")
        .group(group)
        .status_blocking()
        .expect("status")
        .index_last
}

/// Reads `key` of a KV group linearizably (forwarded to the leader).
pub fn get(g: &GroupRef, key: &str) -> Option<Bytes> {
    let q = KvQuery::Get(vec![Bytes::from(key.to_string())]).to_bytes();
    match KvAnswer::decode(g.read_blocking(q).expect("read")).expect("answer") {
        KvAnswer::Values { items: mut v, .. } => v.remove(0).map(|it| it.value),
        other => panic!("unexpected {other:?}"),
    }
}

/// Waits (bounded, 20 s) until `done` holds; panics naming `what`.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Writes `pairs` to a KV group in one proposal.
pub fn put_many(g: &GroupRef, pairs: Vec<(Bytes, Bytes)>) {
    use sampan_kv::{KvCommand, KvRequest};
    let cmd = KvCommand::PutMany {
        pairs,
        ttl: sampan_kv::Ttl::Persist,
    };
    g.propose_blocking(KvRequest::without_session(cmd).to_bytes())
        .expect("put many");
}

/// Every key and value of this node's replica of a KV group, read
/// locally (no ReadIndex: what this replica has applied).
pub fn dump_local(g: &GroupRef) -> Vec<(Bytes, Bytes)> {
    use sampan_kv::ScanRange;
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let q = KvQuery::Scan {
            range: ScanRange::Prefix(Bytes::new()),
            after: after.take(),
            limit: 10_000,
        };
        match KvAnswer::decode(g.read_local_blocking(q.to_bytes()).expect("local read"))
            .expect("answer")
        {
            KvAnswer::Page { items, next } => {
                out.extend(items.into_iter().map(|(k, it)| (k, it.value)));
                match next {
                    Some(n) => after = Some(n),
                    None => return out,
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
