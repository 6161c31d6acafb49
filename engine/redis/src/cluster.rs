//! Redis Cluster mode: the port answers as one Redis Cluster whose 16,384
//! hash slots are spread over the node's KV groups, so cluster clients
//! (`redis-cli -c`, `redis-benchmark --cluster`, redis-py's
//! `RedisCluster`, ...) send each key straight to its group's leader.
//!
//! - **Slots to groups.** Slot `s` belongs to database (group index)
//!   `s × databases / 16384`: contiguous, even ranges. A key's slot is
//!   Redis's: CRC16 (XMODEM) of the key, or of its `{hash tag}`, mod 16384.
//! - **Masters are leaders.** A slot range's master is its group's leader,
//!   its replicas the group's other voters; while no leader is known,
//!   `CLUSTER SLOTS` names the answering node (if a voter) as master, so a
//!   client's slot map never has a hole. A keyed request that reaches a
//!   node which knows another node leads the group gets `-MOVED slot
//!   host:port`; while no leader is known the request waits and is
//!   forwarded as outside cluster mode, so nothing is refused during an
//!   election. Each shard looks the leader up at most every
//!   [`LEADER_TTL`]; a stale answer costs a redirect, never a wrong write
//!   (whoever receives a write it cannot lead forwards it).
//! - **One slot per request.** A request whose keys hash to different
//!   slots gets `-CROSSSLOT`, as does a transaction (or `WATCH`) whose
//!   commands do. `SELECT` other than 0 is refused.
//! - **Keyspace commands:** `DBSIZE` and `KEYS` on a node cover the groups
//!   it leads, as a Redis master answers for its own slots; `SCAN` covers
//!   group 1 only.
//! - **Introspection:** `CLUSTER SLOTS`, `SHARDS`, `NODES`, `INFO`,
//!   `KEYSLOT`, `MYID`, `COUNTKEYSINSLOT` is not answered; `READONLY`,
//!   `READWRITE` and `ASKING` answer `+OK` (reads on replicas are served
//!   linearizably through the leader either way).
//!
//! Not for: resharding (slots never move between groups; `CLUSTER
//! SETSLOT`, `MIGRATE` and `ASK` do not exist here), or the cluster bus.

use crate::command_table;
use crate::resp::Reply;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::Duration;

/// Redis Cluster's slot count.
pub const SLOTS: u16 = 16_384;

/// How long a shard trusts its idea of who leads a group before asking the
/// group again.
pub const LEADER_TTL: Duration = Duration::from_millis(100);

/// What the port needs to answer as a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The cluster's id (for node ids).
    pub cluster_id: u64,
    /// Every node's Redis address, as clients reach it.
    pub nodes: Vec<(u64, SocketAddr)>,
}

impl ClusterSettings {
    /// The Redis address of `node`.
    pub fn addr(&self, node: u64) -> Option<SocketAddr> {
        self.nodes.iter().find(|(n, _)| *n == node).map(|(_, a)| *a)
    }

    /// `node`'s 40-character Redis node id (stable: derived from the
    /// cluster and node ids).
    pub fn node_id(&self, node: u64) -> String {
        let digest = Sha256::digest(format!("sampan:{}:{node}", self.cluster_id));
        digest[..20].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// CRC16-CCITT (XMODEM), as Redis Cluster hashes keys.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `key`: of its hash tag if it has a non-empty `{...}`.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS
}

/// The database (group index) that holds `slot` among `databases`.
pub fn slot_db(slot: u16, databases: u64) -> u64 {
    u64::from(slot) * databases / u64::from(SLOTS)
}

/// The slots of database `db`: `start..=end`.
pub fn db_slots(db: u64, databases: u64) -> (u16, u16) {
    let first = |d: u64| (d * u64::from(SLOTS)).div_ceil(databases);
    (first(db) as u16, (first(db + 1) - 1) as u16)
}

/// Why a request cannot go to one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrossSlot;

/// Redis's words for [`CrossSlot`].
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// The one slot a request's keys hash to (`None`: it has no keys), from
/// the command table's key positions.
pub fn request_slot(args: &[Bytes]) -> Result<Option<u16>, CrossSlot> {
    let Some(name) = args.first() else {
        return Ok(None);
    };
    let Some(spec) = command_table::spec(name) else {
        return Ok(None);
    };
    let (first, step) = match spec.name {
        // OBJECT <subcommand> key
        "object" => (2, 1),
        _ if spec.first_key <= 0 => return Ok(None),
        _ => (spec.first_key as usize, spec.step.max(1) as usize),
    };
    let last = match spec.name {
        "object" => 2,
        _ if spec.last_key < 0 => {
            let back = (-spec.last_key) as usize;
            if args.len() < back {
                return Ok(None);
            }
            args.len() - back
        }
        _ => spec.last_key as usize,
    };
    let mut slot = None;
    let mut i = first;
    while i <= last && i < args.len() {
        let s = key_slot(&args[i]);
        if slot.is_some_and(|x| x != s) {
            return Err(CrossSlot);
        }
        slot = Some(s);
        i += step;
    }
    Ok(slot)
}

/// The `-MOVED` error for `slot`, now served at `addr`.
pub fn moved(slot: u16, addr: SocketAddr) -> String {
    format!("MOVED {slot} {addr}")
}

/// One slot range as the `CLUSTER` answers describe it: its slots, the
/// node that leads it (if known) and the other voters.
#[derive(Debug, Clone)]
pub struct Shard {
    /// First slot.
    pub start: u16,
    /// Last slot.
    pub end: u16,
    /// The leader (master), if one is known.
    pub leader: Option<u64>,
    /// The other voters (replicas).
    pub replicas: Vec<u64>,
}

/// The nodes `CLUSTER SLOTS` lists for a range, master first: the leader
/// and the other voters. While no leader is known, `me` (the node
/// answering, which is up) is listed as master if it is a voter, else the
/// lowest voter: a keyed request it receives waits for the election and
/// is forwarded, so a cluster client keeps every slot covered through a
/// failover, as a Redis Cluster lists a failed master until a replica
/// takes over. Before, such a range was left out, and redis-py's
/// `RedisCluster` failed reads of its keys with `SlotNotCoveredError`
/// after a leader kill. Empty only if the group's voters are unknown.
pub fn slot_nodes(s: &Shard, me: u64) -> Vec<u64> {
    match s.leader {
        Some(l) => std::iter::once(l)
            .chain(s.replicas.iter().copied())
            .collect(),
        None => {
            let mut nodes = s.replicas.clone();
            if let Some(i) = nodes.iter().position(|&n| n == me) {
                nodes[..=i].rotate_right(1);
            }
            nodes
        }
    }
}

/// Answers `CLUSTER SLOTS`.
pub fn render_slots(settings: &ClusterSettings, me: u64, shards: &[Shard], reply: &mut Reply<'_>) {
    let listed: Vec<(&Shard, Vec<u64>)> = shards
        .iter()
        .map(|s| (s, slot_nodes(s, me)))
        .filter(|(_, nodes)| !nodes.is_empty())
        .collect();
    reply.array(Some(listed.len()));
    for (s, nodes) in listed {
        let nodes: Vec<(u64, SocketAddr)> = nodes
            .into_iter()
            .filter_map(|n| settings.addr(n).map(|a| (n, a)))
            .collect();
        reply.array(Some(2 + nodes.len()));
        reply.integer(i64::from(s.start));
        reply.integer(i64::from(s.end));
        for (n, addr) in nodes {
            reply.array(Some(4));
            reply.bulk(Some(addr.ip().to_string().as_bytes()));
            reply.integer(i64::from(addr.port()));
            reply.bulk(Some(settings.node_id(n).as_bytes()));
            reply.array(Some(0));
        }
    }
}

/// Answers `CLUSTER SHARDS` (Redis 7's form: a map per shard).
pub fn render_shards(settings: &ClusterSettings, shards: &[Shard], reply: &mut Reply<'_>) {
    reply.array(Some(shards.len()));
    for s in shards {
        reply.map(2);
        reply.bulk(Some(b"slots"));
        reply.array(Some(2));
        reply.integer(i64::from(s.start));
        reply.integer(i64::from(s.end));
        reply.bulk(Some(b"nodes"));
        let nodes: Vec<(u64, bool)> = s
            .leader
            .map(|l| (l, true))
            .into_iter()
            .chain(s.replicas.iter().map(|&r| (r, false)))
            .filter(|(n, _)| settings.addr(*n).is_some())
            .collect();
        reply.array(Some(nodes.len()));
        for (n, master) in nodes {
            let addr = settings.addr(n).unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
            reply.map(7);
            reply.bulk(Some(b"id"));
            reply.bulk(Some(settings.node_id(n).as_bytes()));
            reply.bulk(Some(b"port"));
            reply.integer(i64::from(addr.port()));
            reply.bulk(Some(b"ip"));
            reply.bulk(Some(addr.ip().to_string().as_bytes()));
            reply.bulk(Some(b"endpoint"));
            reply.bulk(Some(addr.ip().to_string().as_bytes()));
            reply.bulk(Some(b"role"));
            reply.bulk(Some(if master { &b"master"[..] } else { b"replica" }));
            reply.bulk(Some(b"replication-offset"));
            reply.integer(0);
            reply.bulk(Some(b"health"));
            reply.bulk(Some(b"online"));
        }
    }
}

/// Answers `CLUSTER NODES`: every node a master, with the slot ranges it
/// leads (a node can lead one group and follow another, which Redis's
/// master/replica flags cannot say; `CLUSTER SLOTS` lists the replicas).
pub fn nodes_text(settings: &ClusterSettings, me: u64, shards: &[Shard]) -> String {
    let mut out = String::new();
    for &(n, addr) in &settings.nodes {
        let myself = if n == me { "myself,master" } else { "master" };
        let slots: Vec<String> = shards
            .iter()
            .filter(|s| s.leader == Some(n))
            .map(|s| format!("{}-{}", s.start, s.end))
            .collect();
        out.push_str(&format!(
            "{} {}:{}@{} {myself} - 0 0 {n} connected{}{}\n",
            settings.node_id(n),
            addr.ip(),
            addr.port(),
            u32::from(addr.port()) + 10_000,
            if slots.is_empty() { "" } else { " " },
            slots.join(" ")
        ));
    }
    out
}

/// Answers `CLUSTER INFO`.
pub fn info_text(settings: &ClusterSettings, shards: &[Shard]) -> String {
    let ok = shards.iter().all(|s| s.leader.is_some());
    let assigned: u32 = shards
        .iter()
        .map(|s| u32::from(s.end) - u32::from(s.start) + 1)
        .sum();
    format!(
        "cluster_enabled:1\r\ncluster_state:{}\r\ncluster_slots_assigned:{assigned}\r\n\
         cluster_slots_ok:{assigned}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\n\
         cluster_known_nodes:{}\r\ncluster_size:{}\r\ncluster_current_epoch:0\r\n\
         cluster_my_epoch:0\r\n",
        if ok { "ok" } else { "fail" },
        settings.nodes.len(),
        shards.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_slots() {
        // Values from redis-server 7.0.15's CLUSTER KEYSLOT.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_eq!(key_slot(b"{}foo"), crc16(b"{}foo") % SLOTS);
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn a_range_without_a_leader_still_lists_a_master() {
        let shard = |leader, replicas: &[u64]| Shard {
            start: 0,
            end: 10,
            leader,
            replicas: replicas.to_vec(),
        };
        assert_eq!(slot_nodes(&shard(Some(2), &[1, 3]), 3), vec![2, 1, 3]);
        // No leader: the answering voter first (it is up), then the rest.
        assert_eq!(slot_nodes(&shard(None, &[1, 2, 3]), 3), vec![3, 1, 2]);
        assert_eq!(slot_nodes(&shard(None, &[1, 2, 3]), 1), vec![1, 2, 3]);
        // Not a voter itself: the lowest voter.
        assert_eq!(slot_nodes(&shard(None, &[2, 3]), 1), vec![2, 3]);
        assert!(slot_nodes(&shard(None, &[]), 1).is_empty());
    }

    #[test]
    fn slot_ranges_cover_every_slot_once() {
        for dbs in [1u64, 2, 3, 6, 16] {
            let mut next = 0u32;
            for db in 0..dbs {
                let (s, e) = db_slots(db, dbs);
                assert_eq!(u32::from(s), next, "{dbs} dbs, db {db}");
                for slot in [s, e] {
                    assert_eq!(slot_db(slot, dbs), db, "{dbs} dbs, slot {slot}");
                }
                next = u32::from(e) + 1;
            }
            assert_eq!(next, u32::from(SLOTS));
        }
    }

    #[test]
    fn a_requests_keys_must_share_a_slot() {
        let args = |v: &[&str]| -> Vec<Bytes> {
            v.iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect()
        };
        assert_eq!(request_slot(&args(&["get", "foo"])), Ok(Some(12182)));
        assert_eq!(request_slot(&args(&["ping"])), Ok(None));
        assert_eq!(
            request_slot(&args(&["mset", "{a}1", "x", "{a}2", "y"])),
            Ok(Some(key_slot(b"a")))
        );
        assert_eq!(
            request_slot(&args(&["mset", "foo", "x", "bar", "y"])),
            Err(CrossSlot)
        );
        assert_eq!(
            request_slot(&args(&["blpop", "foo", "{foo}x", "0"])),
            Ok(Some(12182))
        );
        assert_eq!(
            request_slot(&args(&["object", "encoding", "foo"])),
            Ok(Some(12182))
        );
    }
}
