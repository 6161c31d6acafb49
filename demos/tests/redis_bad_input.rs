//! Malformed RESP: an error reply (as Redis words it) and the connection
//! closed, or just an error reply for an inline line; the node keeps
//! serving every other connection.

mod redis_common;
use redis_common::*;

fn answer_then_close(port: u16, bytes: &[u8]) -> String {
    let mut c = Resp::connect(port).expect("connect");
    c.send_raw(bytes).expect("send");
    String::from_utf8_lossy(&c.read_to_end().expect("server closes the connection")).into_owned()
}

#[test]
fn bad_input_closes_only_its_connection() {
    require_redis_cli();
    let c = TestCluster::start(1);
    c.wait_leader(1);
    let p = c.port(1);
    let mut good = Resp::connect(p).expect("connect");
    assert_eq!(
        good.call(&["SET", "k", "v"]).expect("set"),
        Value::Simple("OK".into())
    );
    let cases: [(&[u8], &str); 6] = [
        // A bulk beyond proto-max-bulk-len: refused before any allocation.
        (
            b"*1\r\n$99999999999\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*99999999999\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        // What came before the bad request is answered first.
        (
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n+3\r\n",
            "$1\r\nv\r\n-ERR Protocol error: expected '$', got '+'\r\n",
        ),
        (
            b"*1\r\n$3\r\nGETXX\r\n",
            "-ERR Protocol error: bulk string not followed by CRLF\r\n",
        ),
        (
            b"*abc\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$x1\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(answer_then_close(p, bytes), want, "{bytes:?}");
        assert_eq!(
            good.call(&["GET", "k"]).expect("still served"),
            Value::Bulk(Some(b"v".to_vec()))
        );
    }
    // An inline line longer than the limit, never ended.
    let long = vec![b'x'; 70 << 10];
    assert_eq!(
        answer_then_close(p, &long),
        "-ERR Protocol error: too big inline request\r\n"
    );
    // Garbage on an inline line is an unknown command, not fatal.
    let mut c2 = Resp::connect(p).expect("connect");
    c2.send_raw(b"\x01\x02 zz\r\n").expect("send");
    assert!(
        matches!(c2.read_value().expect("reply"), Value::Error(e) if e.starts_with("ERR unknown command"))
    );
    assert_eq!(
        c2.call(&["PING"]).expect("ping"),
        Value::Simple("PONG".into())
    );
    // A client that vanishes mid-request harms nobody.
    {
        let mut c3 = Resp::connect(p).expect("connect");
        c3.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\n").expect("send");
    }
    assert_eq!(
        good.call(&["PING"]).expect("ping"),
        Value::Simple("PONG".into())
    );
    assert_eq!(cli(p, &["GET", "k"]), "v");
}
