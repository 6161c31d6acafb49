//! redis-rs, the Rust Redis client, as an embedder's application uses it:
//! typed commands on every type, an atomic pipeline (MULTI/EXEC),
//! WRONGTYPE as an error of kind `TypeError`... through a follower; then a
//! leader kill (SIGKILL) in the middle of a stream of transactions, after
//! which the client reconnects to a surviving node and finds every
//! acknowledged transaction whole.

mod redis_common;

use redis::Commands;
use redis_common::*;
use std::collections::{HashMap, HashSet};

fn connect(port: u16) -> redis::Connection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("client");
    let conn = client
        .get_connection_with_timeout(std::time::Duration::from_secs(5))
        .expect("connect");
    conn.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    conn
}

#[test]
fn redis_rs_speaks_every_type_and_transactions_across_a_leader_kill() {
    let mut c = TestCluster::start(3);
    let leader = c.wait_leader(1);
    let other = (1..=3).find(|n| *n != leader).expect("a follower");
    let mut con = connect(c.port(other));

    let _: () = con
        .hset_multiple("h", &[("a", "1"), ("b", "2")])
        .expect("hset");
    let h: HashMap<String, String> = con.hgetall("h").expect("hgetall");
    assert_eq!(h.get("a").map(String::as_str), Some("1"));
    assert_eq!(con.hincr::<_, _, _, i64>("h", "a", 4).expect("hincrby"), 5);
    let n: usize = con.rpush("l", &["x", "y", "z"]).expect("rpush");
    assert_eq!(n, 3);
    let l: Vec<String> = con.lrange("l", 0, -1).expect("lrange");
    assert_eq!(l, ["x", "y", "z"]);
    let _: usize = con.sadd("s", &["a", "b"]).expect("sadd");
    let s: HashSet<String> = con.smembers("s").expect("smembers");
    assert_eq!(s, HashSet::from(["a".to_string(), "b".to_string()]));
    let _: usize = con
        .zadd_multiple("z", &[(2.5, "b"), (1.0, "a")])
        .expect("zadd");
    let z: Vec<(String, f64)> = con.zrange_withscores("z", 0, -1).expect("zrange");
    assert_eq!(z, [("a".to_string(), 1.0), ("b".to_string(), 2.5)]);
    let wrong: redis::RedisResult<usize> = con.lpush("h", "x");
    let e = wrong.expect_err("LPUSH on a hash");
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
    let (a, len, got): (i64, usize, String) = redis::pipe()
        .atomic()
        .incr("n", 1)
        .lpush("nl", "v")
        .get("n")
        .query(&mut con)
        .expect("MULTI/EXEC");
    assert_eq!((a, len, got.as_str()), (1, 1, "1"));

    // Transactions in a stream, with a leader kill in the middle.
    let mut acked = 0i64;
    let mut unknown = 0i64;
    for i in 0..200 {
        if i == 100 {
            c.kill(leader);
        }
        let r: redis::RedisResult<(i64, usize)> = redis::pipe()
            .atomic()
            .incr("tx:a", 1)
            .rpush("tx:log", i)
            .query(&mut con);
        match r {
            Ok(_) => acked += 1,
            Err(_) => {
                unknown += 1;
                con = connect(c.port(other));
            }
        }
    }
    c.wait_leader(1);
    let a: i64 = con.get("tx:a").expect("get");
    let log: usize = con.llen("tx:log").expect("llen");
    assert_eq!(a as usize, log, "each transaction whole");
    assert!(
        (acked..=acked + unknown).contains(&a),
        "{a} applied, {acked} acknowledged, {unknown} unknown"
    );
}
