//! What the harness checks once the faults are healed: the cluster
//! converges, a last read of every key, every acknowledged append token
//! present exactly once, and every node's replica of a group the same.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sampan::client::BlockingClient;
use sampan::service::{Op as ServiceOp, Route};
use sampan_kv::{KvAnswer, KvQuery, ScanRange};

use super::HarnessError;
use super::clients::{self, Op, Outcome, Recorder, Services, Workload};
use super::cluster::Cluster;
use crate::history::{self, EventType, Function};

/// Waits until each group has one leader whose voters are every node (no
/// joint change under way), and
/// every node has applied what that leader had committed when it was
/// first seen (a target fixed once: with clients still writing, "applied
/// all the leader has committed now" is a moving target followers are
/// always a step behind).
pub fn wait_converged(cluster: &Cluster, within: Duration) -> Result<(), HarnessError> {
    let deadline = Instant::now() + within;
    let ids = cluster.ids();
    let mut targets: BTreeMap<u64, u64> = BTreeMap::new();
    loop {
        let mut pending = Vec::new();
        for (group, _) in super::cluster::GROUPS {
            let status = cluster.status(group).unwrap_or_default();
            let leader = super::cluster::newest_leader(&status);
            let Some(leader) = leader else {
                pending.push(format!("group {group}: no leader"));
                continue;
            };
            let members_done = leader.voters == ids && leader.voters_outgoing.is_empty();
            if !members_done {
                pending.push(format!(
                    "group {group}: voters {:?} (outgoing {:?})",
                    leader.voters, leader.voters_outgoing
                ));
            }
            if status.len() != ids.len() {
                pending.push(format!(
                    "group {group}: {} of {} nodes answer",
                    status.len(),
                    ids.len()
                ));
            }
            if !members_done || status.len() != ids.len() {
                continue;
            }
            let target = *targets.entry(group).or_insert(leader.index_commit);
            for s in &status {
                if s.index_applied < target {
                    pending.push(format!(
                        "group {group}: node {} applied {} of {target}",
                        s.node, s.index_applied
                    ));
                }
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(HarnessError::Cluster(format!(
                "did not converge within {within:?} after the faults healed: {}",
                pending.join("; ")
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every key the workload can have touched, as the history names it,
/// with its group and stored name.
fn all_keys(w: &Workload) -> Vec<(String, u64, String)> {
    let mut out = Vec::new();
    for &group in &w.groups {
        for k in 0..w.keys {
            let mut raws: Vec<String> = (0..=w.key_period_now())
                .flat_map(|p| ["r", "c", "h", "z"].map(|family| format!("{family}{k}.{p}")))
                .collect();
            raws.extend((0..=w.period()).flat_map(|p| [format!("a{k}.{p}"), format!("l{k}.{p}")]));
            for raw in raws {
                out.push((format!("g{group}/{raw}"), group, raw));
            }
        }
    }
    out
}

/// Reads every key once more (linearizable reads, recorded in the
/// history by a process of their own), with the native client when there
/// are `services`, else over the first Redis port; returns key -> value.
/// A read that fails is tried again (as a new process) for up to a
/// minute: the faults are healed, so the system owes an answer.
pub fn final_reads(
    redis: &[SocketAddr],
    redis_password: Option<&str>,
    services: &Services,
    rec: &Recorder,
    w: &Workload,
) -> Result<BTreeMap<String, Option<String>>, HarnessError> {
    let native = if services.addrs.is_empty() {
        None
    } else {
        Some(
            services
                .connect(Duration::from_secs(10))
                .map_err(|e| HarnessError::Cluster(format!("refused the final reader: {e}")))?,
        )
    };
    let mut redis_conn = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = BTreeMap::new();
    for (key, group, raw_key) in all_keys(w) {
        loop {
            let op = Op {
                process: rec.process(),
                f: Function::Get,
                key: key.clone(),
                group,
                raw_key: raw_key.clone(),
                input: serde_json::Value::Null,
            };
            let outcome = match (&native, redis.first()) {
                (Some(client), _) => rec.perform(&op, "", |op| clients::native_exec(client, op)),
                (None, Some(addr)) => {
                    if redis_conn.is_none() {
                        redis_conn = clients::redis_connect(*addr, redis_password).ok();
                    }
                    match redis_conn.as_mut() {
                        Some(c) => {
                            rec.perform(&op, &addr.to_string(), |op| clients::redis_exec(c, op))
                        }
                        None => Outcome::Fail(format!("cannot connect to {addr}")),
                    }
                }
                (None, None) => return Err(HarnessError::Setup("no address to read from".into())),
            };
            match outcome {
                Outcome::Ok(v) => {
                    out.insert(key.clone(), v.as_str().map(str::to_owned));
                    break;
                }
                Outcome::Fail(e) | Outcome::Info(e) => {
                    redis_conn = None;
                    if Instant::now() > deadline {
                        if let Some(c) = native {
                            c.close();
                        }
                        return Err(HarnessError::Cluster(format!(
                            "failed the final read of {key} for a minute after the faults healed: {e}"
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
    if let Some(c) = native {
        c.close();
    }
    Ok(out)
}

/// FNV-1a, 64 bits.
fn fnv(hash: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *hash ^= u64::from(*b);
        *hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

/// A group and each node's digest of its replica.
pub type GroupDigests = (u64, Vec<(u64, u64)>);

/// Per group, each node's digest of its replica: keys, values and the
/// index that last wrote each, from a local (follower) scan on every node
/// once all have applied the same index.
pub fn replica_digests(cluster: &Cluster, w: &Workload) -> Result<Vec<GroupDigests>, HarnessError> {
    let client = cluster
        .native()
        .connect(sampan::client::REQUEST_TIMEOUT_DEFAULT)
        .map_err(|e| HarnessError::Cluster(format!("refused the digest client: {e}")))?;
    let mut out = Vec::new();
    for &group in &w.groups {
        let mut tries = 0;
        let digests = loop {
            tries += 1;
            wait_converged(cluster, Duration::from_secs(30))?;
            let before: Vec<u64> = cluster
                .status(group)?
                .iter()
                .map(|s| s.index_applied)
                .collect();
            let mut per_node = Vec::new();
            for id in cluster.ids() {
                per_node.push((id, scan_digest(&client, cluster, id, group)?));
            }
            let after: Vec<u64> = cluster
                .status(group)?
                .iter()
                .map(|s| s.index_applied)
                .collect();
            let same = before == after && before.windows(2).all(|p| p[0] == p[1]);
            if same || tries >= 10 {
                break per_node;
            }
        };
        out.push((group, digests));
    }
    client.close();
    Ok(out)
}

fn scan_digest(
    client: &BlockingClient,
    cluster: &Cluster,
    node: u64,
    group: u64,
) -> Result<u64, HarnessError> {
    let addr = cluster.service(node);
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut after: Option<Bytes> = None;
    loop {
        let query = KvQuery::Scan {
            range: ScanRange::Prefix(Bytes::new()),
            after: after.clone(),
            limit: 1000,
        }
        .to_bytes();
        let body = client
            .run(move |c| async move {
                c.request_at(addr, group, ServiceOp::Read, Route::Local, query)
                    .await
            })
            .and_then(|r| r)
            .map_err(|e| {
                HarnessError::Cluster(format!(
                    "node {node}, group {group}: local scan failed: {e}"
                ))
            })?;
        let answer = KvAnswer::decode(body).map_err(|e| {
            HarnessError::Cluster(format!("node {node}, group {group}: bad scan reply: {e}"))
        })?;
        let KvAnswer::Page { items, next } = answer else {
            return Err(HarnessError::Cluster(format!(
                "node {node}, group {group}: a scan answered {answer:?}"
            )));
        };
        for (key, item) in items {
            fnv(&mut hash, &(key.len() as u64).to_le_bytes());
            fnv(&mut hash, &key);
            fnv(&mut hash, &(item.value.len() as u64).to_le_bytes());
            fnv(&mut hash, &item.value);
            fnv(&mut hash, &item.version.to_le_bytes());
            // A collection's elements are not in a scan's items: its kind
            // and version (the index that last changed it) stand for it.
            fnv(&mut hash, &[item.kind.to_u8()]);
        }
        match next {
            Some(n) => after = Some(n),
            None => return Ok(hash),
        }
    }
}

/// Checks the append keys against the history: each token acknowledged
/// is in the final value, no token is there twice, and none whose append
/// failed or was never sent is there.
pub fn token_problems(
    history_file: &Path,
    finals: &BTreeMap<String, Option<String>>,
) -> Result<Vec<String>, HarnessError> {
    let events = history::read(history_file).map_err(|e| HarnessError::Setup(e.to_string()))?;
    // key -> token -> completion type (Invoke while open).
    let mut tokens: HashMap<String, HashMap<String, EventType>> = HashMap::new();
    for e in events.iter().filter(|e| e.f == Function::Append) {
        if let Some(t) = e.value.as_str() {
            tokens
                .entry(e.key.clone())
                .or_default()
                .insert(t.trim().to_owned(), e.kind);
        }
    }
    let mut problems = Vec::new();
    for (key, value) in finals.iter().filter(|(k, _)| k.contains("/a")) {
        let sent = tokens.get(key).cloned().unwrap_or_default();
        let mut seen = BTreeSet::new();
        for t in value.as_deref().unwrap_or("").split_whitespace() {
            if !seen.insert(t) {
                problems.push(format!("{key}: token {t} appears twice in the final value"));
            }
            match sent.get(t) {
                None => problems.push(format!("{key}: token {t} was never appended")),
                Some(EventType::Fail) => problems.push(format!(
                    "{key}: token {t} is there though its append failed"
                )),
                _ => {}
            }
        }
        for (t, kind) in &sent {
            if *kind == EventType::Ok && !seen.contains(t.as_str()) {
                problems.push(format!("{key}: acknowledged token {t} is lost"));
            }
        }
    }
    Ok(problems)
}
