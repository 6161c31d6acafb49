//! Killing the leader (SIGKILL): every acknowledged write survives, and
//! keys with a TTL still expire under the new leader.

mod redis_common;
use redis_common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[test]
fn killing_the_leader_keeps_every_acknowledged_write() {
    require_redis_cli();
    let mut c = TestCluster::start(3);
    let leader = c.wait_leader(1);
    let writer_node = (1..=3).find(|n| *n != leader).expect("a follower");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, done, port) = (acked.clone(), done.clone(), c.port(writer_node));
        std::thread::spawn(move || {
            let mut conn = Resp::connect(port).expect("connect");
            let mut i = 0u64;
            while !done.load(Ordering::SeqCst) {
                let key = format!("ack:{i}");
                match conn.call(&["SET", &key, &i.to_string()]) {
                    Ok(Value::Simple(s)) if s == "OK" => acked.lock().expect("lock").push(i),
                    // Lost to the leader change: maybe applied, maybe not.
                    Ok(_) => {}
                    Err(_) => conn = Resp::connect(port).expect("reconnect"),
                }
                i += 1;
            }
        })
    };
    let count = || acked.lock().expect("lock").len();
    wait_until("200 acknowledged writes", || count() >= 200);
    c.kill(leader);
    let before = count();
    wait_until("200 more writes after the failover", || {
        count() >= before + 200
    });
    done.store(true, Ordering::SeqCst);
    writer.join().expect("writer");
    let new_leader = c.wait_leader(1);
    assert_ne!(new_leader, leader);
    let acked = acked.lock().expect("lock").clone();
    for n in c.running() {
        let mut conn = Resp::connect(c.port(n)).expect("connect");
        for chunk in acked.chunks(500) {
            let keys: Vec<String> = chunk.iter().map(|i| format!("ack:{i}")).collect();
            let mut args = vec!["MGET"];
            args.extend(keys.iter().map(String::as_str));
            let Value::Array(Some(values)) = conn.call(&args).expect("mget") else {
                panic!("MGET gave no array");
            };
            for (i, v) in chunk.iter().zip(values) {
                assert_eq!(
                    v,
                    Value::Bulk(Some(i.to_string().into_bytes())),
                    "ack:{i} through node {n}"
                );
            }
        }
    }
    // The killed node comes back and catches up.
    c.spawn(leader);
    wait_until("the restarted node to serve", || {
        Resp::connect(c.port(leader))
            .and_then(|mut r| r.call(&["GET", &format!("ack:{}", acked[0])]))
            .is_ok_and(|v| v == Value::Bulk(Some(acked[0].to_string().into_bytes())))
    });
}

#[test]
fn keys_expire_across_a_leader_change() {
    require_redis_cli();
    let mut c = TestCluster::start(3);
    let leader = c.wait_leader(1);
    let other = (1..=3).find(|n| *n != leader).expect("a follower");
    assert_eq!(cli(c.port(other), &["SET", "keep", "v"]), "OK");
    assert_eq!(
        cli(c.port(other), &["SET", "short", "v", "PX", "1500"]),
        "OK"
    );
    assert_eq!(cli(c.port(other), &["DBSIZE"]), "2");
    // The old leader dies before the TTL passes: the new one expires it.
    c.kill(leader);
    c.wait_leader(1);
    for n in c.running() {
        wait_until("the key to expire under the new leader", || {
            cli(c.port(n), &["GET", "short"]).is_empty() && cli(c.port(n), &["DBSIZE"]) == "1"
        });
        assert_eq!(cli(c.port(n), &["GET", "keep"]), "v");
    }
}

/// Clients writing to one node.
const DRAIN_CLIENTS: usize = 8;

/// SIGTERM to the leader while Redis clients on it write: the node drains
/// (takes no new request, answers the ones it took, then closes each
/// connection) before it stops. Each client runs `INCR` on its own counter
/// until its connection closes; then the counter, read from the rest of
/// the cluster, equals the replies the client got: no increment applied
/// whose reply was lost, none answered with an error, each reply the count
/// so far. Before the drain, requests in flight when the groups stopped
/// were answered with errors, or not at all, though they could still
/// apply.
#[test]
fn a_node_stopped_by_sigterm_answers_every_request_it_took() {
    let mut c = TestCluster::start(3);
    let leader = c.wait_leader(1);
    c.wait_leader(2);
    let port = c.port(leader);
    let clients: Vec<_> = (0..DRAIN_CLIENTS)
        .map(|k| {
            let replies = Arc::new(Mutex::new((0i64, Vec::<String>::new())));
            let seen = replies.clone();
            let t = std::thread::spawn(move || {
                let mut conn = Resp::connect(port).expect("connect");
                let key = format!("drain:{k}");
                loop {
                    match conn.call(&["INCR", &key]) {
                        Ok(Value::Int(n)) => {
                            let mut r = seen.lock().expect("lock");
                            r.0 += 1;
                            if n != r.0 {
                                let wrong = format!("INCR {key} answered {n} as reply {}", r.0);
                                r.1.push(wrong);
                            }
                        }
                        Ok(other) => seen.lock().expect("lock").1.push(format!("{key}: {other}")),
                        // The node closed the connection (or never read
                        // what was sent): nothing more to count.
                        Err(_) => return,
                    }
                }
            });
            (k, replies, t)
        })
        .collect();
    wait_until("every client to get 20 replies", || {
        clients
            .iter()
            .all(|(_, r, _)| r.lock().expect("lock").0 >= 20)
    });
    c.stop_cleanly(leader);
    let other = (1..=3).find(|n| *n != leader).expect("another node");
    c.wait_leader(1);
    let mut check = Resp::connect(c.port(other)).expect("connect");
    for (k, replies, t) in clients {
        t.join().expect("client");
        let (got, wrong) = replies.lock().expect("lock").clone();
        assert!(wrong.is_empty(), "client {k}: {wrong:?}");
        let stored = match check.call(&["GET", &format!("drain:{k}")]).expect("GET") {
            Value::Bulk(Some(b)) => String::from_utf8_lossy(&b).parse::<i64>().expect("number"),
            v => panic!("drain:{k}: {v}"),
        };
        assert_eq!(
            stored,
            got,
            "client {k}: the counter is {stored} but the client got {got} replies: an increment \
             applied without its reply\n{}",
            c.log(leader)
        );
    }
    let log = c.log(leader);
    assert!(log.contains("every request in flight answered"), "{log}");
}
