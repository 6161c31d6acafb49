//! Redis Cluster mode on real `sampan-node` processes: three groups, the
//! 16,384 slots spread over them, each node answering `CLUSTER SLOTS` /
//! `NODES` / `SHARDS` with the groups' leaders; a key asked of a node that
//! does not lead its group gets `-MOVED` to the one that does, keys of two
//! slots in one request (or one transaction) get `-CROSSSLOT`; `redis-cli
//! -c` and redis-py's `RedisCluster` work through any node, across a
//! leader kill; and leaders piled on one node spread out again.

mod redis_common;

use redis_common::*;
use sampan_demos::config::NodeConfig;
use std::process::Command;
use std::time::Duration;

const GROUPS: u64 = 3;

/// Each node's config in cluster mode: groups 1..=3 (sync) on every node,
/// leaders balanced.
fn cluster_mode(cfg: &mut NodeConfig, ports: &[u16]) {
    let first = cfg.groups[0].clone();
    cfg.groups = (1..=GROUPS)
        .map(|g| sampan::config::GroupConfig {
            group_id: g,
            ..first.clone()
        })
        .collect();
    cfg.redis.cluster_enabled = true;
    cfg.redis.cluster_nodes = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{},127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(";");
    cfg.server.balance_leaders = true;
}

fn start() -> TestCluster {
    require_redis_cli();
    let c = TestCluster::start_with_ports(3, cluster_mode);
    for g in 1..=GROUPS {
        c.wait_leader(g);
    }
    // The balancer settles first (one group per node), so no leader moves
    // under a test's feet.
    wait_until("each node to lead one group", || {
        led_by(c.port(1)) == vec![1, 1, 1]
    });
    // And every node's slot map names those leaders: a shard trusts its
    // idea of a group's leader for `LEADER_TTL`, so right after the last
    // transfer a node may still send a key to the old leader (a `-MOVED`
    // a client follows, but a test asking once would take it as wrong).
    wait_until("every node's slot map to name the leaders", || {
        let leaders: Vec<u16> = (1..=GROUPS).map(|g| c.port(c.wait_leader(g))).collect();
        (1..=3).all(|n| masters(c.port(n)) == leaders)
    });
    c
}

/// The master's Redis port of each slot range, as `port`'s node answers
/// `CLUSTER SLOTS` (0 for a range without a known leader).
fn masters(port: u16) -> Vec<u16> {
    let Value::Array(Some(ranges)) = call(port, &["CLUSTER", "SLOTS"]) else {
        return Vec::new();
    };
    ranges
        .iter()
        .map(|r| match r {
            Value::Array(Some(r)) => match r.get(2) {
                Some(Value::Array(Some(m))) => match m.get(1) {
                    Some(Value::Int(p)) => u16::try_from(*p).unwrap_or(0),
                    _ => 0,
                },
                _ => 0,
            },
            _ => 0,
        })
        .collect()
}

/// A key of group `g` (its slot in the group's range), and its slot.
fn key_of_group(g: u64) -> (String, u16) {
    (0..)
        .map(|i| format!("key-{i}"))
        .map(|k| {
            let slot = sampan_redis::cluster::key_slot(k.as_bytes());
            (k, slot)
        })
        .find(|(_, slot)| sampan_redis::cluster::slot_db(*slot, GROUPS) == g - 1)
        .expect("some key lands in every group")
}

fn call(port: u16, args: &[&str]) -> Value {
    let mut r = Resp::connect(port).expect("connect");
    r.call(args).expect("answered")
}

#[test]
fn each_key_goes_to_its_groups_leader_and_cross_slot_requests_are_refused() {
    let c = start();
    // CLUSTER SLOTS: three ranges covering every slot, each led by its
    // group's leader (listed first), with the other voters after it.
    let Value::Array(Some(ranges)) = call(c.port(1), &["CLUSTER", "SLOTS"]) else {
        panic!("CLUSTER SLOTS answers an array");
    };
    assert_eq!(ranges.len(), GROUPS as usize);
    let mut covered = 0;
    for (g, range) in (1..=GROUPS).zip(&ranges) {
        let Value::Array(Some(r)) = range else {
            panic!("a range is an array: {range:?}")
        };
        let (Value::Int(start), Value::Int(end)) = (&r[0], &r[1]) else {
            panic!("a range starts with its slots: {r:?}")
        };
        assert_eq!(*start, covered, "ranges follow each other");
        covered = end + 1;
        let Value::Array(Some(master)) = &r[2] else {
            panic!("then its master: {r:?}")
        };
        let leader = c.wait_leader(g);
        assert_eq!(master[1], Value::Int(i64::from(c.port(leader))));
        assert_eq!(r.len(), 2 + 3, "the master and two replicas");
    }
    assert_eq!(covered, 16_384);

    for g in 1..=GROUPS {
        let leader = c.wait_leader(g);
        let (key, slot) = key_of_group(g);
        // A node that does not lead the key's group sends the client on.
        for node in (1..=3).filter(|n| *n != leader) {
            let got = call(c.port(node), &["SET", &key, "v"]);
            assert_eq!(
                got,
                Value::Error(format!("MOVED {slot} 127.0.0.1:{}", c.port(leader))),
                "node {node}, key {key} of group {g}"
            );
        }
        assert_eq!(
            call(c.port(leader), &["SET", &key, "v"]),
            Value::Simple("OK".into())
        );
        // redis-cli -c follows the redirect from any node.
        for node in 1..=3 {
            let v = format!("from-{node}");
            assert_eq!(cli(c.port(node), &["-c", "SET", &key, &v]), "OK");
            assert_eq!(cli(c.port(node % 3 + 1), &["-c", "GET", &key]), v);
        }
    }

    // Keys of two slots in one request, or in one transaction: refused.
    let (k1, _) = key_of_group(1);
    let (k3, _) = key_of_group(3);
    let cross = Value::Error("CROSSSLOT Keys in request don't hash to the same slot".into());
    assert_eq!(call(c.port(1), &["MSET", &k1, "a", &k3, "b"]), cross);
    assert_eq!(call(c.port(1), &["MGET", &k1, &k3]), cross);
    let l1 = c.wait_leader(1);
    let mut r = Resp::connect(c.port(l1)).expect("connect");
    assert_eq!(
        r.call(&["MULTI"]).expect("multi"),
        Value::Simple("OK".into())
    );
    assert_eq!(
        r.call(&["SET", &k1, "x"]).expect("queued"),
        Value::Simple("QUEUED".into())
    );
    assert_eq!(r.call(&["SET", &k3, "y"]).expect("refused"), cross);
    let Value::Error(e) = r.call(&["EXEC"]).expect("exec") else {
        panic!("EXEC of a cross-slot transaction fails");
    };
    assert!(e.starts_with("EXECABORT"), "{e}");
    assert_eq!(
        cli(c.port(1), &["-c", "GET", &k1]),
        "from-3",
        "nothing applied"
    );
    // Hash tags put keys in one slot: a multi-key request then works.
    assert_eq!(
        cli(
            c.port(2),
            &["-c", "MSET", "{user7}.a", "1", "{user7}.b", "2"]
        ),
        "OK"
    );
    assert_eq!(
        cli(c.port(3), &["-c", "MGET", "{user7}.a", "{user7}.b"]),
        "1\n2"
    );
    assert_eq!(
        call(c.port(1), &["SELECT", "1"]),
        Value::Error("ERR SELECT is not allowed in cluster mode".into())
    );
    assert_eq!(
        call(c.port(2), &["CLUSTER", "KEYSLOT", "foo"]),
        Value::Int(12182)
    );
    let Value::Bulk(Some(info)) = call(c.port(3), &["CLUSTER", "INFO"]) else {
        panic!("CLUSTER INFO answers a bulk");
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    assert!(info.contains("cluster_state:ok"), "{info}");

    // Each node answers DBSIZE and KEYS for the groups it leads: together,
    // every key exactly once, as a cluster client summing its masters sees.
    let mut all = Vec::new();
    let mut total = 0;
    for node in 1..=3 {
        let Value::Int(n) = call(c.port(node), &["DBSIZE"]) else {
            panic!("DBSIZE answers an integer");
        };
        total += n;
        let Value::Array(Some(keys)) = call(c.port(node), &["KEYS", "*"]) else {
            panic!("KEYS answers an array");
        };
        assert_eq!(keys.len() as i64, n, "node {node}: KEYS agrees with DBSIZE");
        all.extend(keys);
    }
    let mut want: Vec<Value> = [key_of_group(1).0, key_of_group(2).0, key_of_group(3).0]
        .into_iter()
        .chain(["{user7}.a".to_string(), "{user7}.b".to_string()])
        .map(|k| Value::Bulk(Some(k.into_bytes())))
        .collect();
    let key = |v: &Value| format!("{v:?}");
    all.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(all, want, "every key once over the masters");
    assert_eq!(total, 5);
}

const REDIS_PY: &str = r#"
import sys, time, redis
from redis.cluster import RedisCluster
port, phase = int(sys.argv[1]), sys.argv[2]
rc = RedisCluster(host="127.0.0.1", port=port, decode_responses=True)
if phase == "before":
    for i in range(300):
        assert rc.set("py%d" % i, "v%d" % i) is True
    p = rc.pipeline()
    for i in range(100):
        p.incr("n%d" % (i % 10))
    assert p.execute()[-1] == 10
    assert rc.hset("{h}x", mapping={"a": "1", "b": "2"}) == 2
else:
    deadline = time.time() + 30
    while True:
        try:
            assert [rc.get("py%d" % i) for i in range(300)] == ["v%d" % i for i in range(300)]
            assert rc.incr("n0") == 11
            break
        except (redis.exceptions.ConnectionError, redis.exceptions.ClusterDownError,
                redis.exceptions.TimeoutError, redis.exceptions.ResponseError) as e:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    assert rc.hgetall("{h}x") == {"a": "1", "b": "2"}
"#;

fn redis_py(port: u16, phase: &str) {
    let out = Command::new("python3")
        .args(["-c", REDIS_PY, &port.to_string(), phase])
        .output()
        .expect("python3 runs (scripts/test installs it)");
    assert!(
        out.status.success(),
        "redis-py RedisCluster via port {port}, {phase} (pip install redis; scripts/test \
         does): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn redis_py_cluster_client_keeps_its_data_across_a_leader_kill() {
    let mut c = start();
    redis_py(c.port(1), "before");
    let leader = c.wait_leader(1);
    c.kill(leader);
    c.wait_leader(1);
    let other = (1..=3).find(|n| *n != leader).expect("a survivor");
    redis_py(c.port(other), "after");
}

/// Which node leads each group, from `CLUSTER NODES` (a node's slot
/// ranges are the groups it leads).
fn led_by(port: u16) -> Vec<usize> {
    let Value::Bulk(Some(text)) = call(port, &["CLUSTER", "NODES"]) else {
        panic!("CLUSTER NODES answers a bulk");
    };
    String::from_utf8_lossy(&text)
        .lines()
        .map(|l| l.split(' ').skip(8).count())
        .collect()
}

#[test]
fn leaders_piled_on_one_node_spread_out() {
    let c = start();
    let cli_bin = env!("CARGO_BIN_EXE_sampan-cli");
    let servers = c
        .services()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    for g in 1..=GROUPS {
        let out = Command::new(cli_bin)
            .args(["--servers", &servers, "--group", &g.to_string()])
            .args(["transfer-leader", "3"])
            .output()
            .expect("sampan-cli runs");
        assert!(out.status.success(), "transfer of group {g}: {out:?}");
    }
    // All three on node 3 now (or already moving away from it); within a
    // few balancing rounds each node leads one.
    wait_until("each node to lead one group", || {
        led_by(c.port(1)) == vec![1, 1, 1]
    });
}

/// While no group has a leader (two of the three nodes paused), the node
/// left still answers `CLUSTER SLOTS` with every slot, naming itself as
/// master, as a Redis Cluster keeps listing a failed master until a
/// replica takes over. A range left out made redis-py's `RedisCluster`
/// fail reads with `SlotNotCoveredError` after a leader kill.
#[test]
fn cluster_slots_cover_every_slot_while_no_group_has_a_leader() {
    let c = start();
    c.pause(2);
    c.pause(3);
    // A request wakes a hibernating group, whose ticks then run out its
    // leader (or its lease, if it led) with no quorum to renew it.
    for g in 1..=GROUPS {
        if let Ok(mut r) = Resp::connect_with(c.port(1), Duration::from_millis(200)) {
            let _ = r.call(&["GET", &key_of_group(g).0]);
        }
    }
    wait_until("node 1 to know no leader of any group", || {
        (1..=GROUPS).all(|g| group_role(c.port(1), g).is_some_and(|(_, leader)| leader == 0))
    });
    let Value::Array(Some(ranges)) = call(c.port(1), &["CLUSTER", "SLOTS"]) else {
        panic!("CLUSTER SLOTS answers an array");
    };
    let mut covered = 0;
    for range in &ranges {
        let Value::Array(Some(r)) = range else {
            panic!("a range is an array: {range:?}")
        };
        let (Value::Int(start), Value::Int(end), Value::Array(Some(master))) =
            (&r[0], &r[1], &r[2])
        else {
            panic!("a range is its slots and master: {r:?}")
        };
        assert_eq!(*start, covered, "ranges follow each other: {ranges:?}");
        covered = end + 1;
        assert_eq!(
            master[1],
            Value::Int(i64::from(c.port(1))),
            "the node answering is the master while no leader is known"
        );
    }
    assert_eq!(covered, 16_384, "every slot listed: {ranges:?}");
    c.resume(2);
    c.resume(3);
}
