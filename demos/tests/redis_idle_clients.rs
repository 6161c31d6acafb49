//! 10,000 idle Redis connections to one real node: it keeps serving a new
//! client, and they cost it under 64 KiB of resident memory each. (The
//! bound catches a connection that touches large buffers up front; fresh
//! zeroed pages are not resident until used, so it does not tell 4 KiB
//! first buffers from 64 KiB ones.)

mod redis_common;

use redis_common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const IDLE: usize = 10_000;

/// The resident memory of a process, in KiB (`VmRSS` in /proc).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn ten_thousand_idle_connections_leave_the_node_serving_at_little_cost() {
    // The test holds 10,000 sockets; the node's own limit is its own.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    assert!(
        limit.rlim_max >= (IDLE + 1_000) as u64,
        "this test needs {} open files, the hard limit is {}: raise it (ulimit -Hn)",
        IDLE + 1_000,
        limit.rlim_max
    );
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads the struct we own.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);

    let c = TestCluster::start_with(1, |cfg| cfg.redis.maxclients = IDLE + 100);
    c.wait_leader(1);
    let pid = c.pid(1).expect("node runs");
    let before = rss_kib(pid);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], c.port(1)));
    // Each says PING once, so the node has surely accepted it and set up
    // its connection, then stays idle.
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|i| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            s.write_all(b"PING\r\n").expect("PING");
            let mut pong = [0u8; 7];
            s.read_exact(&mut pong)
                .unwrap_or_else(|e| panic!("idle connection {i} got no PONG: {e}"));
            assert_eq!(&pong, b"+PONG\r\n");
            s
        })
        .collect();
    // A new client is served while they sit there.
    let mut active = Resp::connect_with(c.port(1), Duration::from_secs(20)).expect("connect");
    assert_eq!(
        active.call(&["SET", "k", "v"]).expect("SET"),
        Value::Simple("OK".into())
    );
    assert_eq!(
        active.call(&["GET", "k"]).expect("GET"),
        Value::Bulk(Some(b"v".to_vec()))
    );
    let after = rss_kib(pid);
    let per_connection = (after.saturating_sub(before) * 1024) / IDLE as u64;
    assert!(
        per_connection < 64 << 10,
        "{IDLE} idle connections grew the node by {} MiB ({per_connection} bytes each); \
         a connection's buffers should start small",
        (after - before) / 1024
    );
    drop(idle);
}
