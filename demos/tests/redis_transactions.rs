//! `MULTI`/`EXEC` and `WATCH` against real node processes: another
//! client's write to a watched key aborts `EXEC`; and transactions from
//! several clients, through followers, across a leader kill (SIGKILL),
//! apply whole or not at all, with nothing between their commands — every
//! read sees the two counters they raise together equal, and each counter
//! equals the number of transactions known applied, give or take those
//! whose outcome the nodes could not know.

mod redis_common;
use redis_common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Bulk(Some(b)) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::Bulk(None) => Some(0),
        _ => None,
    }
}

#[test]
fn a_write_by_another_client_aborts_a_watching_exec() {
    let c = TestCluster::start(3);
    let leader = c.wait_leader(1);
    let follower = (1..=3).find(|n| *n != leader).expect("a follower");
    let mut a = Resp::connect(c.port(follower)).expect("connect a");
    let mut b = Resp::connect(c.port(leader)).expect("connect b");
    let ok = Value::Simple("OK".into());
    assert_eq!(a.call(&["SET", "balance", "10"]).expect("set"), ok);

    // Untouched: EXEC applies.
    assert_eq!(a.call(&["WATCH", "balance"]).expect("watch"), ok);
    assert_eq!(a.call(&["MULTI"]).expect("multi"), ok);
    assert_eq!(
        a.call(&["DECRBY", "balance", "3"]).expect("queued"),
        Value::Simple("QUEUED".into())
    );
    assert_eq!(
        a.call(&["EXEC"]).expect("exec"),
        Value::Array(Some(vec![Value::Int(7)]))
    );

    // Touched by b between WATCH and EXEC: EXEC answers null, nothing
    // applies.
    assert_eq!(a.call(&["WATCH", "balance"]).expect("watch"), ok);
    assert_eq!(
        b.call(&["INCRBY", "balance", "100"]).expect("b"),
        Value::Int(107)
    );
    assert_eq!(a.call(&["MULTI"]).expect("multi"), ok);
    a.call(&["DECRBY", "balance", "3"]).expect("queued");
    a.call(&["SET", "audit", "x"]).expect("queued");
    assert_eq!(a.call(&["EXEC"]).expect("exec"), Value::Array(None));
    assert_eq!(
        a.call(&["MGET", "balance", "audit"]).expect("mget"),
        Value::Array(Some(vec![
            Value::Bulk(Some(b"107".to_vec())),
            Value::Bulk(None)
        ]))
    );

    // A key that did not exist and was created meanwhile counts as
    // touched too; so does one that expired.
    assert_eq!(a.call(&["WATCH", "fresh"]).expect("watch"), ok);
    b.call(&["SET", "fresh", "1"]).expect("b");
    a.call(&["MULTI"]).expect("multi");
    a.call(&["SET", "fresh", "2"]).expect("queued");
    assert_eq!(a.call(&["EXEC"]).expect("exec"), Value::Array(None));
    b.call(&["SET", "short", "1", "PX", "300"]).expect("b");
    assert_eq!(a.call(&["WATCH", "short"]).expect("watch"), ok);
    wait_until("the key to expire", || {
        b.call(&["EXISTS", "short"])
            .is_ok_and(|v| v == Value::Int(0))
    });
    a.call(&["MULTI"]).expect("multi");
    a.call(&["SET", "short", "2"]).expect("queued");
    assert_eq!(a.call(&["EXEC"]).expect("exec"), Value::Array(None));

    // Errors: a bad argument fails in EXEC's reply, the rest applies; an
    // unknown command aborts the whole transaction.
    a.call(&["MULTI"]).expect("multi");
    a.call(&["SET", "t1", "v"]).expect("queued");
    assert_eq!(
        a.call(&["ZADD", "t1", "notafloat", "m"]).expect("queued"),
        Value::Simple("QUEUED".into())
    );
    a.call(&["LPUSH", "t1", "x"]).expect("queued");
    let Value::Array(Some(replies)) = a.call(&["EXEC"]).expect("exec") else {
        panic!("EXEC gave no array");
    };
    assert_eq!(replies[0], ok);
    assert!(matches!(&replies[1], Value::Error(e) if e.contains("not a valid float")));
    assert!(matches!(&replies[2], Value::Error(e) if e.starts_with("WRONGTYPE")));
    a.call(&["MULTI"]).expect("multi");
    a.call(&["SET", "t2", "v"]).expect("queued");
    assert!(matches!(
        a.call(&["NOSUCHCOMMAND"]).expect("refused"),
        Value::Error(_)
    ));
    assert!(matches!(
        a.call(&["EXEC"]).expect("exec"),
        Value::Error(e) if e.starts_with("EXECABORT")
    ));
    assert_eq!(a.call(&["EXISTS", "t2"]).expect("exists"), Value::Int(0));
}

#[test]
fn transactions_stay_whole_across_a_leader_kill() {
    let mut c = TestCluster::start(3);
    let leader = c.wait_leader(1);
    let followers: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();
    let done = Arc::new(AtomicBool::new(false));
    // Transactions acknowledged, and those whose outcome is unknown.
    let acked = Arc::new(AtomicU64::new(0));
    let unknown = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..4 {
        let port = c.port(followers[w % followers.len()]);
        let (done, acked, unknown) = (done.clone(), acked.clone(), unknown.clone());
        writers.push(std::thread::spawn(move || {
            let mut conn = Resp::connect(port).expect("connect");
            while !done.load(Ordering::SeqCst) {
                let outcome = (|| -> std::io::Result<Value> {
                    conn.call(&["MULTI"])?;
                    conn.call(&["INCR", "a"])?;
                    conn.call(&["RPUSH", "log", "x"])?;
                    conn.call(&["INCR", "b"])?;
                    conn.call(&["EXEC"])
                })();
                match outcome {
                    Ok(Value::Array(Some(r))) if r.len() == 3 => {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Value::Error(e)) if !e.starts_with("UNCERTAIN") => {
                        // Refused before it was proposed (no leader yet).
                        let _ = conn.call(&["DISCARD"]);
                    }
                    _ => {
                        unknown.fetch_add(1, Ordering::SeqCst);
                        conn = match Resp::connect(port) {
                            Ok(c) => c,
                            Err(_) => return,
                        };
                    }
                }
            }
        }));
    }
    // A reader checks the invariant all along, on every node it can reach.
    let reader = {
        let done = done.clone();
        let ports: Vec<u16> = (1..=3).map(|n| c.port(n)).collect();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(Ordering::SeqCst) {
                for port in &ports {
                    let Ok(mut r) = Resp::connect(*port) else {
                        continue;
                    };
                    if let Ok(Value::Array(Some(v))) = r.call(&["MGET", "a", "b"]) {
                        let (a, b) = (int(&v[0]), int(&v[1]));
                        assert_eq!(a, b, "a read saw half a transaction through port {port}");
                        reads += 1;
                    }
                }
            }
            reads
        })
    };
    wait_until("100 transactions", || acked.load(Ordering::SeqCst) >= 100);
    c.kill(leader);
    let before = acked.load(Ordering::SeqCst);
    wait_until("100 more after the failover", || {
        acked.load(Ordering::SeqCst) >= before + 100
    });
    done.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().expect("writer");
    }
    let reads = reader
        .join()
        .expect("the reader saw only whole transactions");
    assert!(reads > 0, "the reader read");
    let new_leader = c.wait_leader(1);
    let mut r = Resp::connect(c.port(new_leader)).expect("connect");
    let Value::Array(Some(v)) = r.call(&["MGET", "a", "b"]).expect("mget") else {
        panic!("no array");
    };
    let (a, b) = (int(&v[0]).expect("a"), int(&v[1]).expect("b"));
    let len = int(&r.call(&["LLEN", "log"]).expect("llen")).expect("len");
    assert_eq!(a, b);
    assert_eq!(a, len, "the list grew with the counters");
    let (acked, unknown) = (acked.load(Ordering::SeqCst), unknown.load(Ordering::SeqCst));
    assert!(
        (acked as i64..=(acked + unknown) as i64).contains(&a),
        "{a} applied, {acked} acknowledged, {unknown} unknown"
    );
    eprintln!("{acked} transactions acknowledged, {unknown} unknown, {a} applied, {reads} reads");
}
