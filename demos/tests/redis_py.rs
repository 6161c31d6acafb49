//! redis-py, the most used Python client, against a real 3-node cluster,
//! as an application uses it: RESP2 and RESP3 (`protocol=3`, which opens
//! with `HELLO 3`), `decode_responses`, pipelines, missing keys as `None`,
//! TTLs, counters, `CLIENT ID/SETNAME/GETNAME/INFO/LIST`, through a
//! follower as through the leader.

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
    # COMMAND: the table of what is implemented.
    assert r.command_count() == len(r.command()) > 30
    other = redis.Redis(port=port, protocol=proto, decode_responses=True)
    assert other.client_id() != cid
print("redis-py %s ok, RESP2 and RESP3" % redis.__version__)
"#;

#[test]
fn redis_py_works_over_resp2_and_resp3_through_any_node() {
    let c = TestCluster::start(3);
    c.wait_leader(1);
    for node in 1..=3 {
        let out = Command::new("python3")
            .args(["-c", SCRIPT, &c.port(node).to_string()])
            .output()
            .expect("python3 runs (scripts/test installs it)");
        assert!(
            out.status.success(),
            "node {node}: redis-py (pip install redis; scripts/test does): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
