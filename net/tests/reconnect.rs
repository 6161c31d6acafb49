//! A peer that restarts is picked up again by the dialer's backoff loop;
//! requests in flight when the connection drops fail with a typed error.

mod common;

use common::*;
use sampan_fiber::{TaskClass, channel, spawn, timeout};
use sampan_net::{Body, NetConfig, NetError, Responder, Router, Transport};
use std::net::SocketAddr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn config(node: u64) -> NetConfig {
    let mut c = NetConfig::new(CLUSTER, node);
    c.reconnect_delay_min = Duration::from_millis(5);
    c.reconnect_delay_max = Duration::from_millis(100);
    c
}

/// Node 2: echoes, and hands held requests (kind NOTE) to the test.
fn node2(addr: SocketAddr) -> (Transport, SocketAddr, sampan_fiber::Receiver<Responder>) {
    let router = Router::new();
    router
        .register(KIND_ECHO, |inc| {
            if let Some(r) = inc.responder {
                r.respond(inc.frame.body).expect("queued");
            }
        })
        .expect("register");
    let (tx, rx) = channel::<Responder>(8);
    router
        .register(KIND_NOTE, move |inc| {
            if let Some(r) = inc.responder {
                let _ = tx.try_send(r);
            }
        })
        .expect("register");
    let t = Transport::new(config(2), router).expect("node 2");
    let bound = t.listen(addr).expect("listen");
    (t, bound, rx)
}

#[test]
fn a_restarted_peer_is_reconnected_and_requests_in_flight_fail_fast() {
    on_shard(|| async {
        let (first, addr2, held) = node2(local());
        let node1 = Transport::new(config(1), Router::new()).expect("node 1");
        node1.add_peer(2, addr2).expect("peer");
        timeout(WAIT, node1.wait_connected(2))
            .await
            .expect("in time")
            .expect("up");

        // A request node 2 holds without answering...
        let asking = node1.clone();
        let in_flight = spawn(TaskClass::Latency, "in-flight", async move {
            asking
                .request(2, KIND_NOTE, 0, Body::empty(), Duration::from_secs(20))
                .await
        })
        .expect("spawn");
        let responder = held.recv().await.expect("node 2 got the request");
        // ...fails at once when node 2 goes away, long before its timeout.
        first.close();
        let failed = in_flight.join().await.expect("joined");
        assert!(
            matches!(
                failed,
                Err(NetError::ConnectionClosed {
                    kind: KIND_NOTE,
                    ..
                })
            ),
            "{failed:?}"
        );
        drop(responder);
        let down = node1.request(2, KIND_ECHO, 0, Body::empty(), WAIT).await;
        assert!(
            matches!(down, Err(NetError::NotConnected { node: 2 })),
            "{down:?}"
        );

        // Node 2 comes back on the same port: node 1 reconnects by itself.
        let (second, again, _held) = node2(addr2);
        assert_eq!(again, addr2);
        timeout(WAIT, node1.wait_connected(2))
            .await
            .expect("reconnected in time")
            .expect("up");
        let reply = node1
            .request(2, KIND_ECHO, 0, &b"back"[..], WAIT)
            .await
            .expect("echo");
        assert_eq!(&reply.body[..], b"back");

        // Node 1 restarts: node 2 takes the new connection in place of the old.
        node1.close();
        let node1b = Transport::new(config(1), Router::new()).expect("node 1 again");
        node1b.add_peer(2, addr2).expect("peer");
        timeout(WAIT, node1b.wait_connected(2))
            .await
            .expect("in time")
            .expect("up");
        let reply = node1b
            .request(2, KIND_ECHO, 0, &b"new"[..], WAIT)
            .await
            .expect("echo");
        assert_eq!(&reply.body[..], b"new");
        let conn = timeout(WAIT, second.wait_connected(1))
            .await
            .expect("in time")
            .expect("up");
        assert!(!conn.is_closed());
        node1b.close();
        second.close();
    });
}

#[test]
fn the_dialer_backs_off_until_the_peer_first_appears() {
    on_shard(|| async {
        // Reserve a port, free it, and point node 1 at it before node 2 runs.
        let (probe, addr2, _held) = node2(local());
        probe.close();
        let node1 = Transport::new(config(1), Router::new()).expect("node 1");
        node1.add_peer(2, addr2).expect("peer");
        let refused = node1.request(2, KIND_ECHO, 0, Body::empty(), WAIT).await;
        assert!(matches!(refused, Err(NetError::NotConnected { node: 2 })));
        let (late, _, _held) = node2(addr2);
        timeout(WAIT, node1.wait_connected(2))
            .await
            .expect("in time")
            .expect("up");
        let reply = node1
            .request(2, KIND_ECHO, 0, &b"hi"[..], WAIT)
            .await
            .expect("echo");
        assert_eq!(&reply.body[..], b"hi");
        node1.close();
        late.close();
    });
}
