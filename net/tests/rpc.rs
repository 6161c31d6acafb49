//! Requests, one-way frames, error responses, timeouts, write coalescing
//! and backpressure between live transports on loopback.

mod common;

use bytes::Bytes;
use common::*;
use sampan_fiber::net::TcpListener;
use sampan_fiber::{TaskClass, channel, spawn, timeout, yield_now};
use sampan_net::rpc::ERROR_CODE_NO_RESPONSE;
use sampan_net::{Body, FrameType, NetConfig, NetError, Responder, Role, Router, Transport};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Node 1 dialing node 2, both with `router`s; returns them connected.
async fn pair(router1: Router, router2: Router) -> (Transport, Transport) {
    let node2 = Transport::new(NetConfig::new(CLUSTER, 2), router2).expect("node 2");
    let addr2 = node2.listen(local()).expect("listen");
    let node1 = Transport::new(NetConfig::new(CLUSTER, 1), router1).expect("node 1");
    let addr1 = node1.listen(local()).expect("listen");
    node1.add_peer(2, addr2).expect("peer 2");
    node2.add_peer(1, addr1).expect("peer 1");
    timeout(WAIT, node1.wait_connected(2))
        .await
        .expect("in time")
        .expect("up");
    timeout(WAIT, node2.wait_connected(1))
        .await
        .expect("in time")
        .expect("up");
    (node1, node2)
}

fn echo_router() -> Router {
    let r = Router::new();
    r.register(KIND_ECHO, |inc| {
        if let Some(resp) = inc.responder {
            resp.respond(inc.frame.body).expect("answer queued");
        }
    })
    .expect("register");
    r
}

#[test]
fn requests_both_ways_one_way_frames_and_error_answers() {
    on_shard(|| async {
        let router2 = echo_router();
        let (notes_tx, notes_rx) = channel::<(u64, Bytes)>(64);
        router2
            .register(KIND_NOTE, move |inc| {
                let item = (inc.frame.header.group_id, inc.frame.body);
                notes_tx.try_send(item).expect("room for notes");
            })
            .expect("register");
        router2
            .register(18, |inc| drop(inc.responder))
            .expect("register");
        router2
            .register(19, |inc| {
                let r = inc.responder.expect("a request");
                r.respond_error(2, "not the leader").expect("queued");
            })
            .expect("register");
        let (node1, node2) = pair(echo_router(), router2).await;

        // A body of three pieces comes back joined, on one connection.
        let body = Body::from(vec![
            Bytes::from_static(b"head:"),
            Bytes::from(vec![7u8; 1000]),
            Bytes::from_static(b":tail"),
        ]);
        let want = body.to_bytes();
        let reply = node1
            .request(2, KIND_ECHO, 5, body, WAIT)
            .await
            .expect("echo");
        assert_eq!(reply.body, want);
        assert_eq!(reply.header.frame_type, FrameType::Response);
        assert_eq!(reply.header.group_id, 5);
        // The accepting side uses the same connection to ask back.
        let back = node2
            .request(1, KIND_ECHO, 6, &b"back"[..], WAIT)
            .await
            .expect("echo back");
        assert_eq!(&back.body[..], b"back");

        for g in 0..10u64 {
            node1
                .send(2, KIND_NOTE, g, Bytes::from(g.to_le_bytes().to_vec()))
                .await
                .expect("sent");
        }
        for g in 0..10u64 {
            let (group, body) = notes_rx.recv().await.expect("a note");
            assert_eq!((group, &body[..]), (g, &g.to_le_bytes()[..]));
        }

        let dropped = node1.request(2, 18, 0, Body::empty(), WAIT).await;
        assert!(
            matches!(
                dropped,
                Err(NetError::Remote {
                    code: ERROR_CODE_NO_RESPONSE,
                    ..
                })
            ),
            "{dropped:?}"
        );
        let refused = node1.request(2, 19, 0, Body::empty(), WAIT).await;
        match refused {
            Err(NetError::Remote {
                code: 2,
                message,
                kind: 19,
                ..
            }) => {
                assert_eq!(message, "not the leader")
            }
            other => panic!("expected a remote error, got {other:?}"),
        }
        let reserved = node1.request(2, 3, 0, Body::empty(), WAIT).await;
        assert!(matches!(
            reserved,
            Err(NetError::InvalidKind { kind: 3, .. })
        ));
        assert!(matches!(
            node1.send(9, KIND_NOTE, 0, Body::empty()).await,
            Err(NetError::NotConnected { node: 9 })
        ));
        node1.close();
        node2.close();
    });
}

/// Two connected nodes; node 2 echoes, and keeps the responder of every
/// `KIND_NOTE` request unanswered in the returned list.
async fn pair_holding_notes() -> (Transport, Transport, Rc<RefCell<Vec<Responder>>>) {
    let held: Rc<RefCell<Vec<Responder>>> = Rc::default();
    let router2 = echo_router();
    let keep = held.clone();
    router2
        .register(KIND_NOTE, move |inc| {
            keep.borrow_mut().extend(inc.responder)
        })
        .expect("register");
    let (node1, node2) = pair(Router::new(), router2).await;
    (node1, node2, held)
}

#[test]
fn an_unanswered_request_times_out_and_its_late_answer_is_dropped() {
    on_shard(|| async {
        let (node1, node2, held) = pair_holding_notes().await;
        let conn = node1.connection(2).expect("connected");
        let late = node1
            .request(2, KIND_NOTE, 0, Body::empty(), Duration::from_millis(50))
            .await;
        assert!(
            matches!(
                late,
                Err(NetError::Timeout {
                    kind: KIND_NOTE,
                    ..
                })
            ),
            "{late:?}"
        );
        assert_eq!(
            conn.requests_pending(),
            0,
            "a timed-out request is forgotten"
        );
        let responder = held.borrow_mut().pop().expect("the handler kept it");
        responder.respond(&b"too late"[..]).expect("queued");
        // The connection is still good for the next request.
        let reply = node1
            .request(2, KIND_ECHO, 0, &b"x"[..], WAIT)
            .await
            .expect("echo");
        assert_eq!(&reply.body[..], b"x");
        assert!(!conn.is_closed());
        node1.close();
        node2.close();
    });
}

/// One fiber per connection times requests out, sleeping until the
/// earliest deadline: a short request sent while a long one waits must
/// wake it early, and the long one must stay pending until answered.
#[test]
fn a_short_request_times_out_while_a_longer_one_waits() {
    on_shard(|| async {
        let (node1, node2, held) = pair_holding_notes().await;
        let conn = node1.connection(2).expect("connected");
        let long_conn = conn.clone();
        let long = spawn(TaskClass::Latency, "long", async move {
            long_conn
                .request(KIND_NOTE, 1, Body::empty(), Duration::from_secs(600))
                .await
        })
        .expect("spawn");
        // The long request reaches the peer (and the reaper sleeps for it).
        while held.borrow().is_empty() {
            sampan_fiber::sleep(Duration::from_millis(1)).await;
        }
        let short = timeout(
            WAIT,
            conn.request(KIND_NOTE, 2, Body::empty(), Duration::from_millis(50)),
        )
        .await
        .expect("the short request ended before the long one's deadline");
        assert!(
            matches!(
                short,
                Err(NetError::Timeout {
                    kind: KIND_NOTE,
                    ..
                })
            ),
            "{short:?}"
        );
        assert_eq!(conn.requests_pending(), 1, "the long request still waits");
        let first = held.borrow_mut().remove(0);
        first.respond(&b"long"[..]).expect("queued");
        let reply = long.join().await.expect("joined").expect("answered");
        assert_eq!(&reply.body[..], b"long");
        assert_eq!(conn.requests_pending(), 0);
        node1.close();
        node2.close();
    });
}

#[test]
fn frames_queued_in_one_wake_up_go_out_in_one_write() {
    on_shard(|| async {
        let router2 = Router::new();
        let (tx, rx) = channel::<u64>(200);
        router2
            .register(KIND_NOTE, move |inc| {
                tx.try_send(inc.frame.header.group_id).expect("room");
            })
            .expect("register");
        let (node1, node2) = pair(Router::new(), router2).await;
        let conn = node1.connection(2).expect("connected");
        let before = conn.stats();
        for g in 0..100u64 {
            conn.try_send(KIND_NOTE, g, vec![1u8; 100]).expect("budget");
        }
        for g in 0..100u64 {
            assert_eq!(rx.recv().await, Some(g));
        }
        let after = conn.stats();
        assert_eq!(after.frames_sent - before.frames_sent, 100);
        assert_eq!(
            after.write_batches - before.write_batches,
            1,
            "one write for the lot"
        );
        node1.close();
        node2.close();
    });
}

#[test]
fn a_full_send_budget_makes_senders_wait_until_the_peer_reads() {
    on_shard(|| async {
        // A fake node that answers the handshake and then does not read.
        let listener = TcpListener::bind(local()).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = spawn(TaskClass::Latency, "fake-node", async move {
            let (s, _) = listener.accept().await.expect("accept");
            read_exact(&s, OPENING_LEN).await;
            let ours = open_answer(&hello(CLUSTER, 9, Role::Node));
            s.write_all(&frame(FrameType::Response, 0, 0, &ours))
                .await
                .expect("answer");
            s
        })
        .expect("spawn");
        let mut config = NetConfig::new(CLUSTER, 100);
        config.bytes_in_flight_max = 256 << 10;
        let conn = sampan_net::connect(addr, &config, Role::Client, Some(9), Router::new())
            .await
            .expect("connected");
        let server = server.join().await.expect("fake node");
        let body = Bytes::from(vec![3u8; 64 << 10]);
        let mut sent = 0usize;
        let full = loop {
            assert!(sent < 10_000, "the budget never filled");
            match conn.try_send(KIND_NOTE, 0, body.clone()) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            yield_now().await;
        };
        assert!(matches!(full, NetError::Full { .. }), "{full:?}");
        assert!(conn.bytes_queued() <= config.bytes_in_flight_max + body.len() + 36);
        let waiting = conn.clone();
        let blocked_body = body.clone();
        let done = Rc::new(std::cell::Cell::new(false));
        let done_in = done.clone();
        let blocked = spawn(TaskClass::Latency, "blocked-sender", async move {
            let r = waiting.send(KIND_NOTE, 0, blocked_body).await;
            done_in.set(true);
            r
        })
        .expect("spawn");
        for _ in 0..10 {
            yield_now().await;
        }
        assert!(!done.get(), "the send waits while the budget is used up");
        // A request that cannot even be queued waits for room only until
        // its deadline, and says so; it leaves nothing queued behind.
        let queued = conn.bytes_queued();
        let stuck = conn
            .request(KIND_NOTE, 0, body.clone(), Duration::from_millis(50))
            .await;
        assert!(matches!(stuck, Err(NetError::Timeout { .. })), "{stuck:?}");
        assert_eq!(conn.bytes_queued(), queued);
        // The peer reads everything: the waiting send goes through.
        read_exact(&server, (sent + 1) * (36 + body.len())).await;
        blocked
            .join()
            .await
            .expect("joined")
            .expect("sent once room came");
        conn.close("done");
    });
}

#[test]
fn clients_use_the_service_port_and_nodes_are_refused_there() {
    on_shard(|| async {
        let (node1, node2) = pair(Router::new(), Router::new()).await;
        let service = echo_router();
        let service_addr = node2
            .listen_service(local(), service)
            .expect("service port");
        let client_config = NetConfig::new(CLUSTER, 1000);
        let client = sampan_net::connect(
            service_addr,
            &client_config,
            Role::Client,
            None,
            Router::new(),
        )
        .await
        .expect("client connects");
        assert_eq!(client.peer_node(), 2);
        let reply = client
            .request(KIND_ECHO, 0, &b"get k"[..], WAIT)
            .await
            .expect("echo");
        assert_eq!(&reply.body[..], b"get k");
        // A node hello on the service port is refused.
        let mut small = NetConfig::new(CLUSTER, 1001);
        small.frame_bytes_max = 1024;
        let as_node =
            sampan_net::connect(service_addr, &small, Role::Node, None, Router::new()).await;
        assert!(
            matches!(&as_node, Err(NetError::Handshake { reason, .. }) if reason.contains("expected a Client")),
            "{as_node:?}"
        );
        // A body over the limit is refused before it is queued.
        let small_client = sampan_net::connect(
            service_addr,
            &NetConfig {
                node_id: 1002,
                ..small
            },
            Role::Client,
            None,
            Router::new(),
        )
        .await
        .expect("client connects");
        let big = small_client
            .request(KIND_ECHO, 0, vec![0u8; 2000], WAIT)
            .await;
        assert!(
            matches!(
                big,
                Err(NetError::TooLarge {
                    kind: KIND_ECHO,
                    ..
                })
            ),
            "{big:?}"
        );
        // Closing the node closes its clients too.
        node2.close();
        let why = timeout(WAIT, client.closed())
            .await
            .expect("closed in time");
        assert_eq!(why, sampan_net::CloseReason::PeerClosed);
        node1.close();
    });
}

#[test]
fn adding_a_peer_again_keeps_its_live_connection() {
    on_shard(|| async {
        let (node1, node2) = pair(Router::new(), echo_router()).await;
        let on1 = node1.connection(2).expect("up");
        let on2 = node2.connection(1).expect("up");
        node2
            .add_peer(1, on2.peer_addr())
            .expect("re-add on the accepting side");
        node1
            .add_peer(2, on1.peer_addr())
            .expect("re-add on the dialing side");
        for _ in 0..10 {
            yield_now().await;
        }
        assert!(!on1.is_closed() && !on2.is_closed());
        let reply = node1
            .request(2, KIND_ECHO, 0, &b"same"[..], WAIT)
            .await
            .expect("echo");
        assert_eq!(&reply.body[..], b"same");
        assert_eq!(node1.connection(2).map(|c| c.stats()), Some(on1.stats()));
        node1.close();
        node2.close();
    });
}
