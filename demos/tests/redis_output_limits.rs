//! What a client may cost a real `sampan-node`: a client that stops
//! reading is closed once its replies stall (its pipeline does not pile up
//! replies without bound), a reply over the output buffer limit closes its
//! connection before it is built, and both are counted in `INFO stats`; a
//! client that trickles a request byte by byte (slowloris) is closed when
//! the request is not whole in time. Every other client is served as
//! before.

mod redis_common;

use redis_common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};

const MIB: usize = 1 << 20;

fn node() -> TestCluster {
    let c = TestCluster::start_with(1, |cfg| {
        cfg.redis.output_stall_timeout = 2;
        cfg.redis.partial_request_timeout = 2;
        // The smallest allowed: one largest value and a little.
        cfg.redis.output_buffer_limit = 9 * MIB;
    });
    c.wait_leader(1);
    c
}

/// A RESP request of `args`.
fn request(args: &[&[u8]]) -> Vec<u8> {
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a);
        req.extend_from_slice(b"\r\n");
    }
    req
}

/// `INFO stats`' count of connections closed for their output.
fn output_disconnections(port: u16) -> u64 {
    let mut r = Resp::connect_with(port, WAIT).expect("connect");
    let Value::Bulk(Some(text)) = r.call(&["INFO", "stats"]).expect("INFO") else {
        panic!("INFO answers a bulk string");
    };
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix("client_output_buffer_limit_disconnections:"))
        .expect("the counter is shown")
        .trim()
        .parse()
        .expect("a number")
}

/// Sets `key` to `len` bytes over `r`.
fn set_big(r: &mut Resp, key: &str, len: usize) {
    r.send_raw(&request(&[b"SET", key.as_bytes(), &vec![b'v'; len]]))
        .expect("send");
    assert_eq!(r.read_value().expect("reply"), Value::Simple("OK".into()));
}

#[test]
fn a_client_that_stops_reading_is_closed_and_others_are_served() {
    let c = node();
    let port = c.port(1);
    let mut r = Resp::connect_with(port, WAIT).expect("connect");
    set_big(&mut r, "big", MIB);
    let before = output_disconnections(port);

    // 512 GETs of a 1 MiB value, 512 MiB of replies, and not one read.
    let mut slow = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).expect("connect");
    let get = request(&[b"GET", b"big"]);
    slow.write_all(&get.repeat(512)).expect("send the pipeline");

    // Its replies stall; the node closes it and counts it.
    wait_until("the stalled reader was closed", || {
        output_disconnections(port) > before
    });
    // Meanwhile and after, everyone else is served.
    assert_eq!(
        r.call(&["SET", "k", "v"]).expect("answer"),
        Value::Simple("OK".into())
    );
    assert_eq!(
        r.call(&["GET", "k"]).expect("answer"),
        Value::Bulk(Some(b"v".to_vec()))
    );
    // What the slow client can still read ends early: the connection was
    // closed (reset, as its unread requests were dropped with it).
    slow.set_read_timeout(Some(WAIT)).expect("timeout");
    let drained = std::io::copy(&mut slow, &mut std::io::sink());
    match drained {
        Ok(n) => assert!((n as usize) < 512 * MIB, "ended after {n} bytes"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[test]
fn a_reply_over_the_output_limit_closes_its_connection_before_it_is_built() {
    let c = node();
    let port = c.port(1);
    let mut r = Resp::connect_with(port, WAIT).expect("connect");
    for k in ["a", "b", "c"] {
        set_big(&mut r, k, 4 * MIB);
    }
    let before = output_disconnections(port);
    // One MGET of 12 MiB, over the 9 MiB limit: no reply, the connection
    // closes, and it is counted.
    let mut m = Resp::connect_with(port, WAIT).expect("connect");
    m.send_raw(&request(&[b"MGET", b"a", b"b", b"c"]))
        .expect("send");
    let got = m.read_to_end().expect("the connection closes");
    assert!(got.is_empty(), "no reply: {} bytes", got.len());
    assert_eq!(output_disconnections(port), before + 1);
    // Each value alone fits, and the node serves it.
    let Value::Bulk(Some(v)) = r.call(&["GET", "a"]).expect("answer") else {
        panic!("a value");
    };
    assert_eq!(v.len(), 4 * MIB);
}

#[test]
fn a_request_trickled_byte_by_byte_is_cut_off() {
    let c = node();
    let port = c.port(1);
    let mut slow = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).expect("connect");
    slow.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut writer = slow.try_clone().expect("clone");
    // A SET whose value arrives one byte every 200 ms: 60 s for the whole.
    let trickle = std::thread::spawn(move || {
        let mut sent = 0;
        let head = b"*3\r\n$3\r\nSET\r\n$4\r\nslow\r\n$300\r\n";
        if writer.write_all(head).is_err() {
            return sent;
        }
        for _ in 0..300 {
            if writer.write_all(b"x").is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        sent
    });
    // The node closes it (after its 2 s), long before the request is whole.
    let mut buf = [0u8; 64];
    let end = std::io::Read::read(&mut slow, &mut buf);
    match end {
        Ok(n) => assert_eq!(n, 0, "no reply, only the close"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    let _ = slow.shutdown(std::net::Shutdown::Both);
    let sent = trickle.join().expect("trickler");
    assert!(sent < 300, "cut off after {sent} of 300 bytes");
    // Others are served.
    let mut r = Resp::connect_with(port, WAIT).expect("connect");
    assert_eq!(
        r.call(&["SET", "k", "v"]).expect("answer"),
        Value::Simple("OK".into())
    );
    assert_eq!(r.call(&["EXISTS", "slow"]).expect("answer"), Value::Int(0));
}
