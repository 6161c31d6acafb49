//! Blocking pops on real node processes: `BLPOP`/`BLMOVE`/`BZPOPMIN` wait
//! (counted in `INFO`'s `blocked_clients`) until a push committed through
//! another node reaches them, time out with null, leave when their client
//! does; and blocked consumers on one list, across a leader SIGKILL, never
//! receive an element twice.

mod redis_common;
use redis_common::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

fn blocked(port: u16) -> u64 {
    Resp::connect(port)
        .and_then(|mut r| r.call(&["INFO", "clients"]))
        .ok()
        .and_then(|v| match v {
            Value::Bulk(Some(b)) => String::from_utf8(b).ok(),
            _ => None,
        })
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("blocked_clients:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn bulk(s: &str) -> Value {
    Value::Bulk(Some(s.as_bytes().to_vec()))
}

#[test]
fn blocked_pops_wait_for_a_push_time_out_and_leave_with_their_client() {
    let c = TestCluster::start(3);
    let leader = c.wait_leader(1);
    let follower = (1..=3).find(|n| *n != leader).expect("a follower");
    let (fport, lport) = (c.port(follower), c.port(leader));

    // Nothing to pop: a timeout answers the null array (BLMOVE too, as
    // Redis 7.0 answers).
    let mut a = Resp::connect(fport).expect("connect");
    assert_eq!(
        a.call(&["BLPOP", "q", "0.2"]).expect("blpop"),
        Value::Array(None)
    );
    assert_eq!(
        a.call(&["BLMOVE", "q", "d", "LEFT", "RIGHT", "0.2"])
            .expect("blmove"),
        Value::Array(None)
    );
    assert!(matches!(
        a.call(&["BLPOP", "q", "-1"]).expect("negative"),
        Value::Error(e) if e.contains("timeout is negative")
    ));

    // Something there already: no wait.
    let mut b = Resp::connect(lport).expect("connect");
    b.call(&["RPUSH", "q", "first"]).expect("push");
    assert_eq!(
        a.call(&["BLPOP", "nothing", "q", "1"]).expect("blpop"),
        Value::Array(Some(vec![bulk("q"), bulk("first")]))
    );

    // Blocked on a follower, fed through the leader.
    for (cmd, feed, want) in [
        (
            vec!["BLPOP", "q", "0"],
            vec!["RPUSH", "q", "hello"],
            Value::Array(Some(vec![bulk("q"), bulk("hello")])),
        ),
        (
            vec!["BLMOVE", "src", "dst", "RIGHT", "LEFT", "30"],
            vec!["LPUSH", "src", "moved"],
            bulk("moved"),
        ),
        (
            vec!["BZPOPMIN", "z", "30"],
            vec!["ZADD", "z", "2.5", "m"],
            Value::Array(Some(vec![bulk("z"), bulk("m"), bulk("2.5")])),
        ),
    ] {
        let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        let waiter = std::thread::spawn(move || {
            let mut a = Resp::connect(fport).expect("connect");
            let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
            a.call(&refs).expect("blocking reply")
        });
        wait_until("the client to block", || blocked(fport) == 1);
        b.call(&feed).expect("feed");
        assert_eq!(waiter.join().expect("waiter"), want);
        wait_until("no client blocked", || blocked(fport) == 0);
    }
    assert_eq!(
        b.call(&["LRANGE", "dst", "0", "-1"]).expect("dst"),
        Value::Array(Some(vec![bulk("moved")]))
    );

    // A client that leaves while blocked stops waiting.
    {
        let mut gone = Resp::connect(fport).expect("connect");
        gone.send_raw(b"*3\r\n$5\r\nBLPOP\r\n$5\r\nnever\r\n$1\r\n0\r\n")
            .expect("send");
        wait_until("the client to block", || blocked(fport) == 1);
    }
    wait_until("the blocked client's departure noticed", || {
        blocked(fport) == 0
    });
    // And its pop never happens: a later push stays.
    b.call(&["RPUSH", "never", "kept"]).expect("push");
    assert_eq!(b.call(&["LLEN", "never"]).expect("llen"), Value::Int(1));

    // Inside MULTI a blocking pop does not block.
    a.call(&["MULTI"]).expect("multi");
    a.call(&["BLPOP", "empty", "0"]).expect("queued");
    assert_eq!(
        a.call(&["EXEC"]).expect("exec"),
        Value::Array(Some(vec![Value::Array(None)]))
    );
}

#[test]
fn blocked_consumers_never_get_an_element_twice_across_a_leader_kill() {
    let mut c = TestCluster::start(3);
    let leader = c.wait_leader(1);
    let followers: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();
    let got = Arc::new(Mutex::new(Vec::<String>::new()));
    let uncertain = Arc::new(Mutex::new(0u64));
    let stop = Arc::new(AtomicBool::new(false));
    let mut consumers = Vec::new();
    for i in 0..3 {
        let port = c.port(followers[i % followers.len()]);
        let (got, uncertain, stop) = (got.clone(), uncertain.clone(), stop.clone());
        consumers.push(std::thread::spawn(move || {
            let mut conn = Resp::connect(port).expect("connect");
            while !stop.load(Ordering::SeqCst) {
                match conn.call(&["BLPOP", "jobs", "1"]) {
                    Ok(Value::Array(Some(kv))) if kv.len() == 2 => {
                        if let Value::Bulk(Some(v)) = &kv[1] {
                            got.lock()
                                .expect("lock")
                                .push(String::from_utf8_lossy(v).into_owned());
                        }
                    }
                    Ok(Value::Array(None)) => {}
                    // Lost to the leader change: popped or not, unknown.
                    Ok(_) | Err(_) => {
                        *uncertain.lock().expect("lock") += 1;
                        match Resp::connect(port) {
                            Ok(c) => conn = c,
                            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
                        }
                    }
                }
            }
        }));
    }
    let mut pushed = Vec::new();
    let mut producer = Resp::connect(c.port(followers[0])).expect("connect");
    let mut push = |i: u64, producer: &mut Resp| {
        let job = format!("job{i}");
        if producer
            .call(&["RPUSH", "jobs", &job])
            .is_ok_and(|v| matches!(v, Value::Int(_)))
        {
            pushed.push(job);
        }
    };
    for i in 0..150 {
        push(i, &mut producer);
    }
    c.kill(leader);
    for i in 150..300 {
        push(i, &mut producer);
    }
    wait_until("the list drained", || {
        Resp::connect(c.port(followers[0]))
            .and_then(|mut r| r.call(&["LLEN", "jobs"]))
            .is_ok_and(|v| v == Value::Int(0))
    });
    stop.store(true, Ordering::SeqCst);
    for t in consumers {
        t.join().expect("consumer");
    }
    let got = got.lock().expect("lock").clone();
    let unique: BTreeSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "an element was delivered twice");
    let pushed_set: BTreeSet<&String> = pushed.iter().collect();
    assert!(
        unique.is_subset(&pushed_set),
        "delivered only what was pushed"
    );
    let lost = pushed.len() - got.len();
    let uncertain = *uncertain.lock().expect("lock");
    assert!(
        lost as u64 <= uncertain,
        "{lost} pushed elements never delivered, but only {uncertain} pops had an unknown outcome"
    );
    eprintln!(
        "{} pushed, {} delivered once each, {uncertain} pops uncertain",
        pushed.len(),
        got.len()
    );
}
