//! Helpers shared by the transport's integration tests: a small runtime,
//! raw sockets that speak (or break) the protocol by hand.

#![allow(dead_code)] // each test binary uses a subset

use sampan_fiber::net::TcpStream;
use sampan_fiber::{IO_MEMORY_MIN_BYTES, Runtime, TaskClass};
use sampan_net::auth::NONCE_LEN;
use sampan_net::codec::encode_frame;
use sampan_net::frame::HEADER_LEN;
use sampan_net::handshake::{HELLO_LEN, Hello, MODE_OPEN, PROTOCOL_VERSION};
use sampan_net::{Body, FrameHeader, FrameType, Role};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// The cluster id the tests use.
pub const CLUSTER: u64 = 77;
/// A kind the tests register.
pub const KIND_ECHO: u16 = 16;
/// Another kind the tests register.
pub const KIND_NOTE: u16 = 17;
/// Bound on any one scenario: a stuck test fails instead of hanging.
pub const SCENARIO_LIMIT: Duration = Duration::from_secs(30);

/// 127.0.0.1, port picked by the OS.
pub fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Runs `f` on shard 0 of a fresh one-shard runtime (minimal io memory),
/// within [`SCENARIO_LIMIT`], then stops the runtime.
pub fn on_shard<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let _ = env_logger::builder().is_test(true).try_init();
    let rt = Runtime::builder()
        .name("net-test")
        .shards(1)
        .io_memory_bytes(IO_MEMORY_MIN_BYTES)
        .build()
        .expect("runtime starts");
    let out = rt
        .shard(0)
        .expect("shard 0")
        .run_blocking(TaskClass::Latency, move || async move {
            sampan_fiber::timeout(SCENARIO_LIMIT, f())
                .await
                .expect("scenario finished in time")
        })
        .expect("scenario ran");
    rt.shutdown(Duration::from_secs(2)).expect("runtime stops");
    out
}

/// One frame's bytes.
pub fn frame(frame_type: FrameType, kind: u16, request_id: u64, body: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        frame_type,
        kind,
        group_id: 1,
        request_id,
    };
    encode_frame(&header, &Body::from(body.to_vec())).expect("fits")
}

/// A hello as `role` with `node_id` in `cluster`.
pub fn hello(cluster_id: u64, node_id: u64, role: Role) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        role,
        shard: 0,
        cluster_id,
        node_id,
    }
}

/// Bytes of an open acceptor's handshake answer: header, hello, nonce,
/// mode.
pub const OPEN_ANSWER_LEN: usize = HEADER_LEN + HELLO_LEN + NONCE_LEN + 1;
/// Bytes of a dialer's opening frame with no credential name.
pub const OPENING_LEN: usize = HEADER_LEN + HELLO_LEN + NONCE_LEN + 1;

/// A dialer's opening body: `hello`, a nonce, no credential name.
pub fn opening(hello: &Hello) -> Vec<u8> {
    let mut b = hello.encode().to_vec();
    b.extend_from_slice(&[7u8; NONCE_LEN]);
    b.push(0);
    b
}

/// An open acceptor's answer body: `hello`, a nonce, [`MODE_OPEN`].
pub fn open_answer(hello: &Hello) -> Vec<u8> {
    let mut b = hello.encode().to_vec();
    b.extend_from_slice(&[9u8; NONCE_LEN]);
    b.push(MODE_OPEN);
    b
}

/// Connects a raw socket and sends a handshake request with `hello`.
pub async fn raw_connect(addr: SocketAddr, hello: &Hello) -> TcpStream {
    let s = TcpStream::connect(addr, Duration::from_secs(5))
        .await
        .expect("connect");
    let bytes = frame(FrameType::Request, 0, 0, &opening(hello));
    s.write_all(&bytes).await.expect("send hello");
    s
}

/// Reads until the peer closes; returns everything read.
pub async fn read_to_end(s: &TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads exactly `n` bytes.
pub async fn read_exact(s: &TcpStream, n: usize) -> Vec<u8> {
    let mut all = vec![0u8; n];
    let mut at = 0;
    while at < n {
        let got = s.read(&mut all[at..]).await.expect("read");
        assert!(got > 0, "peer closed after {at} of {n} bytes");
        at += got;
    }
    all
}

/// How long [`eventually`] waits.
pub const EVENTUALLY: Duration = Duration::from_secs(10);

/// Waits (at most [`EVENTUALLY`]) until `check` holds; fails naming
/// `what` otherwise.
pub async fn eventually(what: &str, check: impl Fn() -> bool) {
    let done = sampan_fiber::timeout(EVENTUALLY, async {
        while !check() {
            sampan_fiber::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "{what}");
}
