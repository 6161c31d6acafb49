//! The native client against three `RaftServer`s on loopback TCP: it
//! writes through any node, carries on when the leader goes away with
//! every acknowledged write kept, applies a retried write once, and
//! pipelines thousands of requests on one connection.

mod common;

use bytes::{Bytes, BytesMut};
use common::{configs, leader, start};
use sampan::client::{BlockingClient, ClientConfig, ClientError, KeyTtl};
use sampan::config::ServerConfig;
use sampan::raft::Role;
use sampan::server::{RaftFactory, RaftServer};
use sampan::service;
use sampan_kv::kv_factory;
use sampan_kv::{KvCommand, KvRequest, KvResult, ScanRange};
use sampan_net::Body;
use sampan_net::codec::{Decoder, encode_frame};
use sampan_net::frame::{FRAME_BYTES_MAX_DEFAULT, FrameType};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

struct Cluster<F: RaftFactory> {
    servers: Vec<Option<RaftServer<F>>>,
    addrs: Vec<SocketAddr>,
    _dir: tempfile::TempDir,
}

fn cluster(groups: &[u64]) -> Cluster<impl RaftFactory> {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfgs = configs(dir.path(), 1);
    let addrs = cfgs
        .iter()
        .map(|c| SocketAddr::from(([127, 0, 0, 1], c.service_port)))
        .collect();
    let servers = cfgs
        .into_iter()
        .map(|c| Some(start(c, groups, kv_factory())))
        .collect();
    Cluster {
        servers,
        addrs,
        _dir: dir,
    }
}

impl<F: RaftFactory> Cluster<F> {
    fn client_config(&self, seeds: Vec<SocketAddr>) -> ClientConfig {
        ClientConfig::new(seeds)
            .cluster_id(9)
            .request_timeout(Duration::from_secs(30))
    }

    fn shutdown(self) {
        for s in self.servers.into_iter().flatten() {
            s.shutdown().expect("stops");
        }
    }
}

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_string())
}

#[test]
fn the_typed_api_works_through_a_follower() {
    let c = cluster(&[1]);
    let l = leader(&c.servers, 1);
    // Seeds list a follower first: the client is redirected to the leader.
    let follower = c.addrs[(l + 1) % 3];
    let client = BlockingClient::connect(c.client_config(vec![follower])).expect("client");
    client.put(1, "a", "1").expect("put");
    assert_eq!(client.get(1, "a").expect("get"), Some(b("1")));
    assert_eq!(client.leader_addr(1), Some(c.addrs[l]), "leader learned");
    assert_eq!(client.get(1, "nope").expect("get"), None);
    assert_eq!(client.incr(1, "n", 5).expect("incr"), 5);
    assert_eq!(client.incr(1, "n", -2).expect("incr"), 3);
    assert!(matches!(
        client.incr(1, "a", 1),
        Ok(2) // "1" is a decimal integer
    ));
    client.put(1, "text", "hello").expect("put");
    assert!(matches!(
        client.incr(1, "text", 1),
        Err(ClientError::Command { group: 1, .. })
    ));
    assert!(client.cas(1, "c", None, Some(b("x"))).expect("cas"));
    assert!(!client.cas(1, "c", None, Some(b("y"))).expect("cas"));
    assert!(client.cas(1, "c", Some(b("x")), Some(b("z"))).expect("cas"));
    assert_eq!(client.get(1, "c").expect("get"), Some(b("z")));
    let pairs = (0..5).map(|i| (b(&format!("p/{i}")), b("v"))).collect();
    assert_eq!(client.batch_put(1, pairs, None).expect("batch put"), 5);
    let page = client
        .scan(1, ScanRange::Prefix(b("p/")), None, 3)
        .expect("scan");
    assert_eq!(page.items.len(), 3);
    let rest = client
        .scan(1, ScanRange::Prefix(b("p/")), page.next, 3)
        .expect("scan");
    assert_eq!(rest.items.len(), 2);
    assert_eq!(rest.next, None);
    let got = client
        .batch_get(1, vec![b("p/0"), b("zz"), b("p/4")])
        .expect("batch get");
    assert!(got[0].is_some() && got[1].is_none() && got[2].is_some());
    assert_eq!(
        client
            .batch_remove(1, vec![b("p/0"), b("p/1"), b("zz")])
            .expect("remove"),
        2
    );
    assert!(client.remove(1, "p/2").expect("remove"));
    assert!(!client.remove(1, "p/2").expect("remove"));
    client
        .put_ttl(1, "t", "v", Some(Duration::from_secs(600)))
        .expect("put ttl");
    assert!(
        matches!(client.ttl(1, "t"), Ok(KeyTtl::Remaining(d)) if d <= Duration::from_secs(600))
    );
    assert_eq!(client.ttl(1, "a").expect("ttl"), KeyTtl::Persistent);
    assert_eq!(client.ttl(1, "nope").expect("ttl"), KeyTtl::Absent);
    assert!(client.expire(1, "t", None).expect("persist"));
    assert_eq!(client.ttl(1, "t").expect("ttl"), KeyTtl::Persistent);
    // Status: every node's view, one of them the leader.
    let status = client.status(1).expect("status");
    assert_eq!(status.len(), 2, "the seed, and the leader it learned");
    assert!(
        status
            .iter()
            .any(|s| matches!(&s.status, Ok(st) if st.role == Role::Leader))
    );
    // No such group: a typed error, not a hang.
    assert!(matches!(
        client.get(77, "a"),
        Err(ClientError::NoSuchGroup { group: 77, .. })
    ));
    client.close();
    c.shutdown();
}

#[test]
fn the_client_carries_on_when_the_leader_goes_with_every_acknowledged_write_kept() {
    let mut c = cluster(&[1]);
    let client =
        Arc::new(BlockingClient::connect(c.client_config(c.addrs.clone())).expect("client"));
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Acquire) {
                client
                    .put(1, format!("k{i}"), format!("v{i}"))
                    .unwrap_or_else(|e| panic!("write {i} failed: {e}"));
                // Retried increments (a connection cut mid-request, a
                // proposal lost to the leader change) still add once.
                let n = client
                    .incr(1, "count", 1)
                    .unwrap_or_else(|e| panic!("increment {i} failed: {e}"));
                assert_eq!(n, i as i64 + 1, "increment {i} applied once");
                i += 1;
                acked.store(i, Ordering::Release);
            }
            i
        })
    };
    let wait_for = |n: usize| {
        for _ in 0..3_000 {
            if acked.load(Ordering::Acquire) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "only {} writes acknowledged, waited for {n}",
            acked.load(Ordering::Acquire)
        );
    };
    wait_for(50);
    let l = leader(&c.servers, 1);
    c.servers[l]
        .take()
        .expect("leader")
        .shutdown()
        .expect("stops");
    let at_shutdown = acked.load(Ordering::Acquire);
    wait_for(at_shutdown + 50);
    stop.store(true, Ordering::Release);
    let written = writer.join().expect("writer");
    let keys: Vec<Bytes> = (0..written).map(|i| b(&format!("k{i}"))).collect();
    let items = client.batch_get(1, keys).expect("read back");
    for (i, it) in items.iter().enumerate() {
        let v = it.as_ref().map(|it| it.value.clone());
        assert_eq!(v, Some(b(&format!("v{i}"))), "acknowledged write {i} lost");
    }
    assert_eq!(
        client.get(1, "count").expect("read back"),
        Some(b(&written.to_string()))
    );
    let stats = client.stats().expect("stats");
    assert!(
        stats.retries > 0,
        "the leader change cost retries: {stats:?}"
    );
    eprintln!("{written} writes, {at_shutdown} before the leader went: {stats:?}");
    drop(client);
    c.shutdown();
}

/// A TCP proxy that drops the first response to a client request on its
/// way back, as a lost packet or a connection cut would.
fn lossy_proxy(target: SocketAddr, dropped: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(target) else {
                return;
            };
            let (mut c_in, mut s_out) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut s_out);
                let _ = s_out.shutdown(std::net::Shutdown::Both);
            });
            let dropped = dropped.clone();
            std::thread::spawn(move || relay_dropping_one(server, client, &dropped));
        }
    });
    addr
}

fn relay_dropping_one(mut from: TcpStream, mut to: TcpStream, dropped: &AtomicU64) {
    let decoder = Decoder::new(FRAME_BYTES_MAX_DEFAULT);
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 64 << 10];
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Ok(Some(frame)) = decoder.decode(&mut buf) {
            let h = frame.header;
            if h.kind == service::kind::CLIENT
                && h.frame_type == FrameType::Response
                && dropped.load(Ordering::Acquire) == 0
            {
                dropped.store(1, Ordering::Release);
                continue;
            }
            let bytes = encode_frame(&h, &Body::from(frame.body)).expect("encodes");
            if to.write_all(&bytes).is_err() {
                return;
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

#[test]
fn a_write_retried_after_a_lost_response_applies_once() {
    let c = cluster(&[1]);
    let l = leader(&c.servers, 1);
    let dropped = Arc::new(AtomicU64::new(0));
    let proxy = lossy_proxy(c.addrs[l], dropped.clone());
    let cfg = c
        .client_config(vec![proxy])
        .attempt_timeout(Duration::from_millis(500));
    let client = BlockingClient::connect(cfg).expect("client");
    // The first answer is lost; the client times out, retries with the
    // same session and sequence number, and gets the first result.
    assert_eq!(client.incr(1, "n", 5).expect("incr"), 5);
    assert_eq!(dropped.load(Ordering::Acquire), 1, "a response was dropped");
    let stats = client.stats().expect("stats");
    assert!(stats.retries >= 1, "retried: {stats:?}");
    assert_eq!(
        client.get(1, "n").expect("get"),
        Some(b("5")),
        "applied once"
    );
    assert_eq!(client.incr(1, "n", 1).expect("incr"), 6);
    client.close();

    // The same request (session 42, sequence 1) proposed twice, as a
    // client's retry would be: one increment, the same answer twice.
    let g = c.servers[l].as_ref().expect("running").group(1);
    let req = KvRequest {
        time_ms: 0,
        client_id: 42,
        seq: 1,
        acked_below: 1,
        command: KvCommand::Increment {
            key: b("m"),
            delta: 7,
        },
    }
    .to_bytes();
    for _ in 0..2 {
        let r = KvResult::decode(g.propose_blocking(req.clone()).expect("proposed"));
        assert_eq!(r.expect("result"), KvResult::Int(7));
    }
    c.shutdown();
}

#[test]
fn a_proposal_that_cannot_commit_is_answered_uncertain_not_failed_nor_left_waiting() {
    // The leader, cut off from its followers, either still leads when the
    // request's deadline passes (the server's deadline answers) or steps
    // down first (its pending proposals are answered): which one comes
    // first depends on where its check-quorum clock stands, and the
    // request timeout cannot be set below an election timeout. Either way
    // the answer must come, and must say "may still apply".
    let dir = tempfile::tempdir().expect("tempdir");
    let mut servers: Vec<Option<_>> = configs(dir.path(), 1)
        .into_iter()
        .map(|c| ServerConfig {
            election_timeout_ms: 1_000,
            heartbeat_interval_ms: 50,
            request_timeout_ms: 1_000,
            ..c
        })
        .map(|c| Some(start(c, &[1], kv_factory())))
        .collect();
    let l = leader(&servers, 1);
    let put = |key: &str| {
        KvRequest {
            time_ms: 0,
            client_id: 0,
            seq: 0,
            acked_below: 0,
            command: KvCommand::Increment {
                key: b(key),
                delta: 1,
            },
        }
        .to_bytes()
    };
    let g = servers[l].as_ref().expect("leader").group(1);
    g.propose_blocking(put("before")).expect("committed");
    for (i, s) in servers.iter_mut().enumerate() {
        if i != l {
            s.take().expect("follower").shutdown().expect("stops");
        }
    }
    let e = g
        .propose_blocking(put("after"))
        .expect_err("no quorum: it cannot commit");
    assert!(!e.is_definite(), "reported as a failure: {e}");
    // The node goes on serving: its status still answers.
    assert!(g.status_blocking().is_ok());
    for s in servers.into_iter().flatten() {
        s.shutdown().expect("stops");
    }
}

#[test]
fn thousands_of_requests_pipeline_on_one_connection() {
    const REQUESTS: usize = 3_000;
    const KEYS: usize = 10;
    let c = cluster(&[1]);
    let l = leader(&c.servers, 1);
    let client = BlockingClient::connect(c.client_config(vec![c.addrs[l]])).expect("client");
    client.put(1, "warm", "up").expect("put");
    let before = client.stats().expect("stats");
    assert_eq!(before.connections_opened, 1);
    let results = client
        .run(|c| async move {
            let fibers: Vec<_> = (0..REQUESTS)
                .map(|i| {
                    let c = c.clone();
                    sampan_fiber::spawn(sampan_fiber::TaskClass::Latency, "incr", async move {
                        c.incr(1, format!("k{}", i % KEYS), 1).await
                    })
                    .expect("spawned")
                })
                .collect();
            let mut out = Vec::with_capacity(REQUESTS);
            for f in fibers {
                out.push((f.join().await.expect("joined")).expect("incr"));
            }
            out
        })
        .expect("ran");
    // Each key was incremented REQUESTS / KEYS times, each exactly once:
    // the answers for a key are 1..=n, each once.
    let mut per_key: Vec<Vec<i64>> = vec![Vec::new(); KEYS];
    for (i, r) in results.into_iter().enumerate() {
        per_key[i % KEYS].push(r);
    }
    for (k, mut answers) in per_key.into_iter().enumerate() {
        answers.sort_unstable();
        let n = (REQUESTS / KEYS) as i64;
        assert_eq!(answers, (1..=n).collect::<Vec<_>>(), "key k{k}");
        assert_eq!(
            client.get(1, format!("k{k}")).expect("get"),
            Some(b(&n.to_string()))
        );
    }
    let after = client.stats().expect("stats");
    assert_eq!(after.connections_opened, 1, "one connection: {after:?}");
    assert!(after.in_flight_max > 1, "requests overlapped: {after:?}");
    eprintln!("pipelining: {after:?}");
    client.close();
    c.shutdown();
}
