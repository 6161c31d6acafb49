//! redis-py, the most used Python client, against a real 3-node cluster,
//! as an application uses it: RESP2 and RESP3 (`protocol=3`, which opens
//! with `HELLO 3`), `decode_responses`, pipelines, missing keys as `None`,
//! TTLs, counters, hashes, lists, sets, sorted sets, transactions with
//! WATCH, blocking pops, `CLIENT ID/SETNAME/GETNAME/INFO/LIST`, through a
//! follower as through the leader; and data of every type written before a
//! leader kill read back after it.

mod redis_common;

use redis_common::*;
use std::process::Command;

const SCRIPT: &str = r#"
import sys, time, redis
port = int(sys.argv[1])
for proto in (2, 3):
    r = redis.Redis(port=port, protocol=proto, decode_responses=True)
    hello = r.execute_command("HELLO", proto)
    info = hello if isinstance(hello, dict) else dict(zip(hello[::2], hello[1::2]))
    assert int(info["proto"]) == proto, (proto, hello)
    if proto == 3:
        assert isinstance(hello, dict), "RESP3 answers HELLO with a map: %r" % (hello,)
    k = "py%d-%d:" % (proto, port)
    assert r.set(k + "a", "1") is True
    assert r.get(k + "a") == "1"
    assert r.get(k + "missing") is None
    assert r.mget([k + "a", k + "missing"]) == ["1", None]
    assert r.set(k + "a", "2", nx=True) is None
    assert r.incr(k + "n") == 1 and r.incrby(k + "n", 41) == 42
    assert r.set(k + "t", "x", ex=100) is True
    assert 0 < r.ttl(k + "t") <= 100
    assert r.ttl(k + "missing") == -2
    assert r.append(k + "s", "ab") == 2 and r.append(k + "s", "cd") == 4
    assert r.get(k + "s") == "abcd"
    p = r.pipeline(transaction=False)
    for i in range(100):
        p.set(k + "p%d" % i, str(i))
    for i in range(100):
        p.get(k + "p%d" % i)
    out = p.execute()
    assert out[:100] == [True] * 100 and out[100:] == [str(i) for i in range(100)], out
    assert r.delete(k + "a", k + "missing") == 1
    assert r.exists(k + "a") == 0
    raw = redis.Redis(port=port, protocol=proto)
    assert raw.get(k + "s") == b"abcd"
    cfg = r.config_get("databases")
    assert cfg.get("databases") is not None, cfg
    every = r.config_get("*")
    assert every["maxclients"] == "10000" and every["appendfsync"] == "always", every
    assert every["client-output-buffer-limit"].startswith("normal "), every
    assert every["maxmemory-policy"] == "noeviction" and every["requirepass"] == "", every
    # CLIENT: ids, names, info and list, as Redis keeps them.
    cid = r.client_id()
    assert isinstance(cid, int) and cid > 0
    assert r.client_getname() is None
    assert r.client_setname("app-%d" % proto) is True
    assert r.client_getname() == "app-%d" % proto
    info = r.client_info()
    assert int(info["id"]) == cid and info["name"] == "app-%d" % proto, info
    assert int(info["resp"]) == proto and int(info["db"]) == 0, info
    assert info["lib-name"] == "redis-py", info
    listed = [c for c in r.client_list() if int(c["id"]) == cid]
    assert len(listed) == 1 and listed[0]["name"] == "app-%d" % proto, r.client_list()
    try:
        r.client_setname("has space")
        assert False, "a name with a space was taken"
    except redis.exceptions.ResponseError as e:
        assert "cannot contain spaces" in str(e), e
    # INFO in Redis's layout: keyspace counts this replica's keys (a
    # follower applies a moment after the leader: wait for it, bounded).
    deadline = time.time() + 10
    while not r.info("keyspace").get("db0", {}).get("keys", 0) > 0:
        assert time.time() < deadline, r.info("keyspace")
        time.sleep(0.05)
    assert r.info("persistence")["aof_enabled"] == 1
    assert r.info("clients")["connected_clients"] >= 1
    assert r.info()["role"] in ("master", "slave")
    assert r.info("memory")["used_memory"] > 0
    rep = r.info("replication")
    if rep["role"] == "master":
        # Each follower with its matched index and lag, as Redis lists
        # its replicas.
        assert rep["connected_slaves"] == 2, rep
        assert rep["slave0"]["state"] == "online" and rep["slave0"]["lag_entries"] >= 0, rep
    else:
        assert rep["master_link_status"] == "up", rep
    # COMMAND: the table of what is implemented.
    assert r.command_count() == len(r.command()) > 30
    other = redis.Redis(port=port, protocol=proto, decode_responses=True)
    assert other.client_id() != cid
    # Every type, as an application uses them.
    t = k + "t:"
    r.delete(t + "h", t + "l", t + "s", t + "z")
    assert r.hset(t + "h", mapping={"a": "1", "b": "2"}) == 2
    assert r.hgetall(t + "h") == {"a": "1", "b": "2"}
    assert r.hincrby(t + "h", "a", 5) == 6
    assert r.hincrbyfloat(t + "h", "f", 1.5) == 1.5
    assert sorted(r.hkeys(t + "h")) == ["a", "b", "f"]
    assert r.hmget(t + "h", ["a", "nope"]) == ["6", None]
    assert r.rpush(t + "l", "x", "y", "z") == 3
    assert r.lrange(t + "l", 0, -1) == ["x", "y", "z"]
    assert r.lpop(t + "l") == "x" and r.rpop(t + "l", 2) == ["z", "y"]
    assert r.exists(t + "l") == 0, "an emptied list is gone"
    assert r.sadd(t + "s", "a", "b", "c") == 3
    assert r.smembers(t + "s") == {"a", "b", "c"}
    assert r.sismember(t + "s", "a") and not r.sismember(t + "s", "q")
    assert r.zadd(t + "z", {"a": 1, "b": 2.5, "c": -1}) == 3
    got = [tuple(x) for x in r.zrange(t + "z", 0, -1, withscores=True)]
    assert got == [("c", -1.0), ("a", 1.0), ("b", 2.5)], got
    assert r.zscore(t + "z", "b") == 2.5 and r.zrank(t + "z", "b") == 2
    assert r.zrangebyscore(t + "z", "(1", "+inf") == ["b"]
    assert r.type(t + "z") == "zset" and r.type(t + "h") == "hash"
    try:
        r.lpush(t + "h", "x")
        assert False, "LPUSH on a hash was taken"
    except redis.exceptions.ResponseError as e:
        assert "WRONGTYPE" in str(e), e
    assert r.expire(t + "h", 100) and 0 < r.ttl(t + "h") <= 100
    # A transaction, and WATCH seeing another connection's write.
    p = r.pipeline(transaction=True)
    p.incr(t + "tx").rpush(t + "txl", "a").get(t + "tx")
    assert p.execute() == [1, 1, "1"]
    with r.pipeline() as p:
        p.watch(t + "w")
        other = redis.Redis(port=port, protocol=proto, decode_responses=True)
        other.set(t + "w", "theirs")
        p.multi()
        p.set(t + "w", "mine")
        try:
            p.execute()
            assert False, "EXEC ran though the watched key changed"
        except redis.exceptions.WatchError:
            pass
    assert r.get(t + "w") == "theirs"
    # Blocking pops.
    assert r.blpop([t + "none"], timeout=0.1) is None
    r.rpush(t + "bq", "v")
    assert list(r.blpop([t + "bq"], timeout=1)) == [t + "bq", "v"]
print("redis-py %s ok, RESP2 and RESP3" % redis.__version__)
"#;

/// Before a leader kill: data of every type, and a transaction.
const BEFORE_KILL: &str = r#"
import sys, redis
r = redis.Redis(port=int(sys.argv[1]), protocol=3, decode_responses=True)
r.hset("kill:h", mapping={"f": "v"})
r.rpush("kill:l", "a", "b")
r.sadd("kill:s", "m")
r.zadd("kill:z", {"m": 2.5})
p = r.pipeline(transaction=True)
p.incr("kill:n").rpush("kill:l", "c")
assert p.execute() == [1, 3]
"#;

/// After it, through a surviving node: all of it is there, and writes go
/// on.
const AFTER_KILL: &str = r#"
import sys, redis
r = redis.Redis(port=int(sys.argv[1]), protocol=3, decode_responses=True)
assert r.hgetall("kill:h") == {"f": "v"}
assert r.lrange("kill:l", 0, -1) == ["a", "b", "c"]
assert r.smembers("kill:s") == {"m"}
assert r.zscore("kill:z", "m") == 2.5
assert r.get("kill:n") == "1"
p = r.pipeline(transaction=True)
p.incr("kill:n").lpop("kill:l")
assert p.execute() == [2, "a"]
"#;

fn python(script: &str, port: u16) {
    let out = Command::new("python3")
        .args(["-c", script, &port.to_string()])
        .output()
        .expect("python3 runs (scripts/test installs it)");
    assert!(
        out.status.success(),
        "port {port}: redis-py (pip install redis; scripts/test does): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn redis_py_data_and_transactions_survive_a_leader_kill() {
    let mut c = TestCluster::start(3);
    let leader = c.wait_leader(1);
    let other = (1..=3).find(|n| *n != leader).expect("a follower");
    python(BEFORE_KILL, c.port(leader));
    c.kill(leader);
    c.wait_leader(1);
    python(AFTER_KILL, c.port(other));
}

#[test]
fn redis_py_works_over_resp2_and_resp3_through_any_node() {
    let c = TestCluster::start(3);
    c.wait_leader(1);
    for node in 1..=3 {
        python(SCRIPT, c.port(node));
    }
}
