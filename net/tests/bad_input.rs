//! Bad input against a live listener: each case closes only the offending
//! connection, with its reason recorded (and logged), while a good peer
//! connection keeps working.

mod common;

use common::*;
use sampan_fiber::net::TcpStream;
use sampan_fiber::timeout;
use sampan_net::codec::Decoder;
use sampan_net::frame::HEADER_LEN;
use sampan_net::readbuf::ReadBuf;
use sampan_net::{
    CloseReason, FrameError, FrameType, NetConfig, NetError, Role, Router, Transport,
};
use std::cell::Cell;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const FRAME_BYTES_MAX: usize = 64 << 10;

struct Setup {
    node1: Transport,
    node2: Transport,
    addr2: SocketAddr,
    notes: Rc<Cell<u32>>,
    /// Node 2's handlers (shared with the live transport).
    router2: Router,
}

async fn setup() -> Setup {
    let notes = Rc::new(Cell::new(0));
    let router2 = Router::new();
    router2
        .register(KIND_ECHO, |inc| {
            if let Some(r) = inc.responder {
                r.respond(inc.frame.body).expect("queued");
            }
        })
        .expect("register");
    let count = notes.clone();
    router2
        .register(KIND_NOTE, move |_| count.set(count.get() + 1))
        .expect("register");
    let mut config2 = NetConfig::new(CLUSTER, 2);
    config2.frame_bytes_max = FRAME_BYTES_MAX;
    let node2 = Transport::new(config2, router2.clone()).expect("node 2");
    let addr2 = node2.listen(local()).expect("listen");
    let node1 = Transport::new(NetConfig::new(CLUSTER, 1), Router::new()).expect("node 1");
    node1.add_peer(2, addr2).expect("peer");
    timeout(WAIT, node1.wait_connected(2))
        .await
        .expect("in time")
        .expect("up");
    Setup {
        node1,
        node2,
        addr2,
        notes,
        router2,
    }
}

impl Setup {
    /// The good peer still gets answers.
    async fn good_peer_still_works(&self) {
        let reply = self
            .node1
            .request(2, KIND_ECHO, 0, &b"still here"[..], WAIT)
            .await
            .expect("the good connection is unaffected");
        assert_eq!(&reply.body[..], b"still here");
    }

    /// Why node 2 closed the connection from `client`.
    fn reason_for(&self, client: &TcpStream) -> CloseReason {
        let addr = client.local_addr().expect("addr");
        self.node2
            .recent_closes()
            .into_iter()
            .rev()
            .find(|(a, _)| *a == addr)
            .map(|(_, r)| r)
            .expect("node 2 recorded the close")
    }

    /// Handshakes as node `node_id`, sends `bytes` (then half-closes if
    /// `half_close`), and waits until node 2 closes the connection.
    async fn after_handshake(&self, node_id: u64, bytes: &[u8], half_close: bool) -> CloseReason {
        let s = raw_connect(self.addr2, &hello(CLUSTER, node_id, Role::Node)).await;
        read_exact(&s, OPEN_ANSWER_LEN).await;
        s.write_all(bytes).await.expect("send");
        if half_close {
            s.shutdown(Shutdown::Write).expect("half close");
        }
        read_to_end(&s).await;
        self.reason_for(&s)
    }

    fn close(&self) {
        self.node1.close();
        self.node2.close();
    }
}

#[test]
fn each_bad_frame_closes_only_its_connection() {
    on_shard(|| async {
        let t = setup().await;
        let note = frame(FrameType::OneWay, KIND_NOTE, 0, b"hello");

        let r = t
            .after_handshake(50, b"GET / HTTP/1.1\r\n\r\n", false)
            .await;
        assert!(
            matches!(r, CloseReason::BadFrame(FrameError::BadMagic { .. })),
            "{r:?}"
        );
        t.good_peer_still_works().await;

        let mut bad_crc = note.clone();
        bad_crc[HEADER_LEN + 1] ^= 0x40;
        let r = t.after_handshake(51, &bad_crc, false).await;
        assert!(
            matches!(
                r,
                CloseReason::BadFrame(FrameError::BodyCrc {
                    kind: KIND_NOTE,
                    ..
                })
            ),
            "{r:?}"
        );
        t.good_peer_still_works().await;

        // Only the header of a frame claiming 1 MiB: refused before the body.
        let huge = frame(FrameType::OneWay, KIND_NOTE, 0, &vec![0u8; 1 << 20]);
        let r = t.after_handshake(52, &huge[..HEADER_LEN], false).await;
        assert!(
            matches!(r, CloseReason::BadFrame(FrameError::TooLarge { .. })),
            "{r:?}"
        );
        t.good_peer_still_works().await;

        let r = t.after_handshake(53, &note[..note.len() - 2], true).await;
        assert_eq!(
            r,
            CloseReason::Truncated {
                bytes: note.len() - 2
            }
        );
        t.good_peer_still_works().await;

        let unknown = frame(FrameType::OneWay, 99, 0, b"?");
        let r = t.after_handshake(54, &unknown, false).await;
        assert_eq!(r, CloseReason::UnknownKind(99));
        t.good_peer_still_works().await;

        let before = t.notes.get();
        let mut then_garbage = note.clone();
        then_garbage.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4]);
        let r = t.after_handshake(55, &then_garbage, false).await;
        assert!(
            matches!(r, CloseReason::BadFrame(FrameError::BadMagic { .. })),
            "{r:?}"
        );
        assert_eq!(
            t.notes.get(),
            before + 1,
            "the valid frame before the garbage was handled"
        );
        t.good_peer_still_works().await;

        let again = frame(
            FrameType::Request,
            0,
            0,
            &opening(&hello(CLUSTER, 56, Role::Node)),
        );
        let r = t.after_handshake(56, &again, false).await;
        assert!(matches!(r, CloseReason::Protocol(_)), "{r:?}");
        t.good_peer_still_works().await;
        t.close();
    });
}

/// Reads the one frame node 2 answers a handshake with.
async fn read_answer(s: &TcpStream) -> sampan_net::Frame {
    let decoder = Decoder::new(FRAME_BYTES_MAX);
    let mut rb = ReadBuf::new();
    loop {
        if let Some(f) = rb.take_frame(&decoder).expect("a valid answer") {
            return f;
        }
        let n = s.read(rb.spare(rb.wanted(&decoder))).await.expect("read");
        assert!(n > 0, "closed before answering");
        rb.advance(n);
    }
}

#[test]
fn handshake_mismatches_are_refused_and_reported_on_both_sides() {
    on_shard(|| async {
        let t = setup().await;

        // A raw dialer of another cluster gets the reason, then the close.
        let s = raw_connect(t.addr2, &hello(CLUSTER + 1, 60, Role::Node)).await;
        let answer = read_answer(&s).await;
        assert_eq!(answer.header.frame_type, FrameType::ErrorResponse);
        assert!(String::from_utf8_lossy(&answer.body).contains("cluster id mismatch"));
        read_to_end(&s).await;
        assert!(
            matches!(t.reason_for(&s), CloseReason::Handshake(why) if why.contains("cluster id"))
        );
        t.good_peer_still_works().await;

        // A frame before any handshake.
        let s = TcpStream::connect(t.addr2, WAIT).await.expect("connect");
        s.write_all(&frame(FrameType::OneWay, KIND_NOTE, 0, b"hi"))
            .await
            .expect("send");
        read_to_end(&s).await;
        assert!(
            matches!(t.reason_for(&s), CloseReason::Handshake(why) if why.contains("expected a handshake"))
        );

        // A client on the replication port.
        let s = raw_connect(t.addr2, &hello(CLUSTER, 61, Role::Client)).await;
        read_to_end(&s).await;
        assert!(
            matches!(t.reason_for(&s), CloseReason::Handshake(why) if why.contains("expected a Node"))
        );

        // Our own dialer, wrong cluster: it fails with the peer's reason.
        let wrong = NetConfig::new(CLUSTER + 1, 62);
        let e = sampan_net::connect(t.addr2, &wrong, Role::Node, Some(2), Router::new())
            .await
            .expect_err("refused");
        assert!(
            matches!(&e, NetError::Handshake { reason, .. } if reason.contains("cluster id mismatch")),
            "{e}"
        );

        // Our dialer reaches node 2 but meant node 5: it refuses, and node 2
        // hears why.
        let meant5 = NetConfig::new(CLUSTER, 63);
        let e = sampan_net::connect(t.addr2, &meant5, Role::Node, Some(5), Router::new())
            .await
            .expect_err("wrong node");
        assert!(
            matches!(&e, NetError::Handshake { reason, .. } if reason.contains("expected node 5")),
            "{e}"
        );
        let heard = timeout(WAIT, async {
            loop {
                let found = t.node2.recent_closes().into_iter().any(|(_, r)| {
                    matches!(r, CloseReason::Rejected(ref why) if why.contains("expected node 5"))
                });
                if found {
                    return;
                }
                sampan_fiber::yield_now().await;
            }
        })
        .await;
        assert!(heard.is_ok(), "node 2 logged the dialer's reason");
        t.good_peer_still_works().await;
        t.close();
    });
}

/// Waits until node `t` records a close matching `want` (bounded).
async fn closed_with(t: &Transport, want: impl Fn(&CloseReason) -> bool) -> bool {
    let found = timeout(WAIT, async {
        loop {
            if t.recent_closes().iter().any(|(_, r)| want(r)) {
                return;
            }
            sampan_fiber::yield_now().await;
        }
    })
    .await;
    found.is_ok()
}

#[test]
fn a_peer_that_never_reads_its_answers_is_cut_off() {
    on_shard(|| async {
        const KIND_BIG: u16 = 20;
        let router = Router::new();
        router
            .register(KIND_BIG, |inc| {
                if let Some(r) = inc.responder {
                    let _ = r.respond(vec![9u8; 32 << 10]);
                }
            })
            .expect("register");
        let mut config = NetConfig::new(CLUSTER, 2);
        config.bytes_in_flight_max = 64 << 10;
        let node2 = Transport::new(config, router).expect("node 2");
        let addr2 = node2.listen(local()).expect("listen");
        // Asks and asks, and reads nothing after the handshake answer.
        let s = raw_connect(addr2, &hello(CLUSTER, 70, Role::Node)).await;
        read_exact(&s, OPEN_ANSWER_LEN).await;
        let mut asks = Vec::new();
        for id in 1..=2000u64 {
            asks.extend(frame(FrameType::Request, KIND_BIG, id, b""));
        }
        s.write_all(&asks).await.expect("send the requests");
        let cut = closed_with(
            &node2,
            |r| matches!(r, CloseReason::Protocol(why) if why.contains("does not read")),
        );
        assert!(
            cut.await,
            "node 2 closed the connection: {:?}",
            node2.recent_closes()
        );
        node2.close();
    });
}

#[test]
fn a_panicking_handler_closes_only_its_connection() {
    on_shard(|| async {
        let t = setup().await;
        t.router2
            .register(30, |_| panic!("handler bug"))
            .expect("register");
        let r = t
            .after_handshake(71, &frame(FrameType::OneWay, 30, 0, b"boom"), false)
            .await;
        assert_eq!(r, CloseReason::HandlerPanicked(30));
        t.good_peer_still_works().await;
        t.close();
    });
}

/// A flood of connections that never say hello, on the service port and
/// the replication port: past `connections_max` each further one is closed
/// at accept and counted; the node link already up keeps working; once
/// the silent ones time out, a client gets in and is served. Established
/// node links do not count against the cap.
#[test]
fn a_flood_of_silent_connections_is_capped_and_the_node_keeps_serving() {
    on_shard(|| async {
        const CAP: usize = 4;
        let router = Router::new();
        router
            .register(KIND_ECHO, |inc| {
                if let Some(r) = inc.responder {
                    r.respond(inc.frame.body).expect("queued");
                }
            })
            .expect("register");
        let mut config2 = NetConfig::new(CLUSTER, 2);
        config2.connections_max = CAP;
        config2.handshake_timeout = Duration::from_millis(1500);
        let node2 = Transport::new(config2, router.clone()).expect("node 2");
        let peer_port = node2.listen(local()).expect("listen");
        let service = node2.listen_service(local(), router).expect("service");
        let node1 = Transport::new(NetConfig::new(CLUSTER, 1), Router::new()).expect("node 1");
        node1.add_peer(2, peer_port).expect("peer");
        timeout(WAIT, node1.wait_connected(2))
            .await
            .expect("in time")
            .expect("up");

        // Silent connections fill the cap, half on each port.
        let mut silent = Vec::new();
        for i in 0..CAP {
            let port = if i % 2 == 0 { service } else { peer_port };
            silent.push(
                TcpStream::connect(port, WAIT)
                    .await
                    .expect("a silent one is accepted"),
            );
        }
        // The listener counts each in as it accepts it, in order, so every
        // further connection meets a full house.
        for (n, port) in [service, peer_port, service].into_iter().enumerate() {
            let extra = TcpStream::connect(port, WAIT).await.expect("TCP connects");
            let got = timeout(Duration::from_millis(1000), read_to_end(&extra)).await;
            assert_eq!(
                got.ok().map(|b| b.len()),
                Some(0),
                "connection {} past the cap is closed at once with nothing said",
                n + 1
            );
        }
        assert_eq!(node2.connections_refused(), 3);
        // The node link up before the flood still carries requests.
        let reply = node1
            .request(2, KIND_ECHO, 0, &b"through"[..], WAIT)
            .await
            .expect("the node link still works");
        assert_eq!(&reply.body[..], b"through");

        // The silent ones time out in their handshake; then a client gets
        // in (and nothing more was refused on its way).
        for s in &silent {
            let got = timeout(WAIT, read_to_end(s)).await.expect("closed in time");
            assert!(got.is_empty(), "a silent connection is told nothing");
        }
        let client = NetConfig::new(CLUSTER, 900);
        let conn = sampan_net::connect(service, &client, Role::Client, None, Router::new())
            .await
            .expect("a client gets in once the flood has gone");
        let reply = conn
            .request(KIND_ECHO, 0, &b"served"[..], WAIT)
            .await
            .expect("answered");
        assert_eq!(&reply.body[..], b"served");
        assert_eq!(node2.connections_refused(), 3);
        conn.close("done");
        node1.close();
        node2.close();
    });
}
