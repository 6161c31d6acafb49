use super::resp::*;
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

fn parse_all(input: &[u8]) -> Result<Vec<Vec<Bytes>>, RespError> {
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    while let Some(args) = parse_request(&mut buf, &RespLimits::default())? {
        out.push(args);
    }
    Ok(out)
}

#[test]
fn multibulk_and_inline_requests() {
    let got = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n  SET  a b \r\n*1\r\n$0\r\n\r\n")
        .expect("valid");
    assert_eq!(
        got[0],
        vec![Bytes::from_static(b"GET"), Bytes::from_static(b"k")]
    );
    assert_eq!(got[1], vec![Bytes::from_static(b"PING")]);
    assert_eq!(got[2].len(), 3);
    assert_eq!(got[3], vec![Bytes::new()]);
}

#[test]
fn incomplete_input_consumes_nothing() {
    let full = b"*2\r\n$3\r\nGET\r\n$5\r\nhello\r\n";
    for cut in 1..full.len() {
        let mut buf = BytesMut::from(&full[..cut]);
        assert_eq!(
            parse_request(&mut buf, &RespLimits::default()),
            Ok(None),
            "cut {cut}"
        );
        assert_eq!(buf.len(), cut);
    }
}

#[test]
fn oversized_lengths_are_refused_before_any_allocation() {
    let limits = RespLimits {
        bulk_max_bytes: 10,
        args_max: 4,
        inline_max_bytes: 16,
        request_max_bytes: 30,
    };
    let mut b = BytesMut::from(&b"*1\r\n$11\r\n"[..]);
    assert_eq!(parse_request(&mut b, &limits), Err(RespError::BulkTooLong));
    let mut b = BytesMut::from(&b"*5\r\n"[..]);
    assert_eq!(parse_request(&mut b, &limits), Err(RespError::TooManyArgs));
    // Each bulk within its limit, together over the request's.
    let mut b = BytesMut::from(&b"*4\r\n$10\r\n0123456789\r\n$10\r\n"[..]);
    assert_eq!(
        parse_request(&mut b, &limits),
        Err(RespError::RequestTooLong)
    );
    let mut b = BytesMut::from(&b"*9999999999999\r\n"[..]);
    assert_eq!(
        parse_request(&mut b, &RespLimits::default()),
        Err(RespError::TooManyArgs)
    );
    let mut b = BytesMut::from(&[b'x'; 40][..]);
    assert_eq!(
        parse_request(&mut b, &limits),
        Err(RespError::InlineTooLong)
    );
    let mut b = BytesMut::from(&b"*1\r\n+3\r\n"[..]);
    assert!(matches!(
        parse_request(&mut b, &limits),
        Err(RespError::Protocol(_))
    ));
}

#[test]
fn replies_have_redis_exact_bytes() {
    let mut out = BytesMut::new();
    let mut r = Reply::new(&mut out);
    r.simple("OK");
    r.error("ERR wrong number of arguments for 'get' command");
    r.integer(-42);
    r.bulk(Some(b"v"));
    r.bulk(None);
    r.array(Some(2));
    r.integer(0);
    r.bulk(Some(b""));
    r.array(None);
    assert_eq!(
        &out[..],
        &b"+OK\r\n-ERR wrong number of arguments for 'get' command\r\n:-42\r\n$1\r\nv\r\n$-1\r\n*2\r\n:0\r\n$0\r\n\r\n*-1\r\n"[..]
    );
    let mut n = 0;
    let mut rest = &out[..];
    while let Some(len) = skip_reply(rest) {
        rest = &rest[len..];
        n += 1;
    }
    assert_eq!((n, rest.len()), (7, 0));
}

proptest! {
    #[test]
    fn parser_is_total(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut buf = BytesMut::from(&data[..]);
        let limits = RespLimits { bulk_max_bytes: 1 << 16, args_max: 1 << 10, inline_max_bytes: 1 << 10, request_max_bytes: 1 << 20 };
        for _ in 0..600 {
            match parse_request(&mut buf, &limits) {
                Ok(Some(_)) => continue,
                _ => break,
            }
        }
    }

    #[test]
    fn encoded_requests_parse_back(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..8)) {
        let mut wire = format!("*{}\r\n", args.len()).into_bytes();
        for a in &args {
            wire.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            wire.extend_from_slice(a);
            wire.extend_from_slice(b"\r\n");
        }
        let got = parse_all(&wire).expect("valid");
        prop_assert_eq!(got.len(), 1);
        let want: Vec<Bytes> = args.into_iter().map(Bytes::from).collect();
        prop_assert_eq!(&got[0], &want);
    }
}

mod commands {
    use super::super::command::{Request, parse};
    use super::super::render::{ScanCursors, render_read, render_write};
    use super::super::resp::Reply;
    use bytes::{Bytes, BytesMut};
    use sampan_kv::{KvConfig, KvRequest, KvStore};

    /// A single-node stand-in for the server: parse, apply or read, render.
    struct Node {
        store: KvStore,
        index: u64,
        now_ms: u64,
        cursors: ScanCursors,
    }

    impl Node {
        fn new() -> Node {
            Node {
                store: KvStore::new(KvConfig::default()),
                index: 0,
                now_ms: 1_000_000,
                cursors: ScanCursors::default(),
            }
        }

        fn run(&mut self, line: &str) -> String {
            let args: Vec<Bytes> = line
                .split(' ')
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect();
            let mut out = BytesMut::new();
            let mut reply = Reply::new(&mut out);
            match parse(&args) {
                Err(e) => reply.error(&e.0),
                Ok(Request::Write {
                    command,
                    reply: shape,
                }) => {
                    self.index += 1;
                    let req = KvRequest {
                        time_ms: self.now_ms,
                        client_id: 0,
                        seq: 0,
                        acked_below: 0,
                        command,
                    };
                    let result = self.store.apply(self.index, &req);
                    render_write(shape, &result, &mut reply);
                }
                Ok(Request::Read(read)) => render_read(
                    &read,
                    &self.store,
                    self.now_ms,
                    &mut self.cursors,
                    &mut reply,
                ),
                Ok(Request::Local(l)) => reply.simple(&format!("{l:?}")),
                Ok(Request::Blocking { command, .. }) => reply.simple(&format!("{command:?}")),
            }
            String::from_utf8_lossy(&out).into_owned()
        }
    }

    #[test]
    fn typed_commands_refuse_what_would_cost_without_bound() {
        let mut n = Node::new();
        assert_eq!(n.run("HSET h a 1"), ":1\r\n");
        // A negative count may repeat: bounded, so one command cannot
        // build a reply of any size.
        assert!(
            n.run("HRANDFIELD h -2000000")
                .starts_with("-ERR value is out of range")
        );
        assert!(
            n.run("SRANDMEMBER s -2000000")
                .starts_with("-ERR value is out of range")
        );
        assert_eq!(
            n.run("HRANDFIELD h -3"),
            "*3\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n"
        );
        // A string past the value limit is refused with Redis's words.
        assert!(
            n.run("SETRANGE k 9000000 x")
                .starts_with("-ERR string exceeds maximum allowed size"),
            "{}",
            n.run("SETRANGE k 9000000 x")
        );
        assert_eq!(n.run("EXISTS k"), ":0\r\n");
        assert!(n.run("LPUSH h x").starts_with("-WRONGTYPE"));
    }

    #[test]
    fn strings_counters_and_conditions_match_redis() {
        let mut n = Node::new();
        assert_eq!(n.run("SET k v"), "+OK\r\n");
        assert_eq!(n.run("get k"), "$1\r\nv\r\n");
        assert_eq!(n.run("SET k w NX"), "$-1\r\n");
        assert_eq!(n.run("SET k w XX GET"), "$1\r\nv\r\n");
        assert_eq!(n.run("SETNX k z"), ":0\r\n");
        assert_eq!(n.run("APPEND k 12"), ":3\r\n");
        assert_eq!(n.run("STRLEN k"), ":3\r\n");
        assert_eq!(
            n.run("INCR k"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(n.run("INCRBY c 5"), ":5\r\n");
        assert_eq!(n.run("DECR c"), ":4\r\n");
        assert_eq!(n.run("MSET a 1 b 2"), "+OK\r\n");
        assert_eq!(
            n.run("MGET a nope b"),
            "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n"
        );
        assert_eq!(n.run("EXISTS a a nope"), ":2\r\n");
        assert_eq!(n.run("DEL a b nope"), ":2\r\n");
        assert_eq!(n.run("GETDEL c"), "$1\r\n4\r\n");
        assert_eq!(n.run("TYPE k"), "+string\r\n");
        assert_eq!(n.run("TYPE c"), "+none\r\n");
        assert_eq!(n.run("DBSIZE"), ":1\r\n");
        assert_eq!(n.run("FLUSHDB"), "+OK\r\n");
        assert_eq!(n.run("DBSIZE"), ":0\r\n");
    }

    #[test]
    fn ttl_commands_follow_the_clock() {
        let mut n = Node::new();
        assert_eq!(n.run("SET k v EX 10"), "+OK\r\n");
        assert_eq!(n.run("TTL k"), ":10\r\n");
        n.now_ms += 2_500;
        assert_eq!(n.run("PTTL k"), ":7500\r\n");
        assert_eq!(n.run("PERSIST k"), ":1\r\n");
        assert_eq!(n.run("TTL k"), ":-1\r\n");
        assert_eq!(n.run("PEXPIRE k 100"), ":1\r\n");
        n.now_ms += 100;
        assert_eq!(
            n.run("GET k"),
            "$-1\r\n",
            "expired keys read as absent at once"
        );
        assert_eq!(n.run("TTL k"), ":-2\r\n");
        assert_eq!(
            n.run("SETEX s 0 v"),
            "-ERR invalid expire time in 'setex' command\r\n"
        );
        assert_eq!(
            n.run("SET s v EX 0"),
            "-ERR invalid expire time in 'set' command\r\n"
        );
        assert_eq!(n.run("SET s v KEEPTTL EX 5"), "-ERR syntax error\r\n");
        assert_eq!(n.run("EXPIRE missing 5"), ":0\r\n");
    }

    #[test]
    fn errors_have_redis_exact_text() {
        let mut n = Node::new();
        assert_eq!(
            n.run("GET"),
            "-ERR wrong number of arguments for 'get' command\r\n"
        );
        assert_eq!(
            n.run("MSET a"),
            "-ERR wrong number of arguments for 'mset' command\r\n"
        );
        assert_eq!(
            n.run("FOO bar baz"),
            "-ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' \r\n"
        );
        assert_eq!(n.run("SET k v BOGUS"), "-ERR syntax error\r\n");
        assert_eq!(
            n.run("INCRBY k x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        n.run(&format!("SET big {}", i64::MAX));
        assert_eq!(
            n.run("INCR big"),
            "-ERR increment or decrement would overflow\r\n"
        );
    }

    #[test]
    fn scan_walks_every_key_once_and_keys_matches_globs() {
        let mut n = Node::new();
        for i in 0..25 {
            n.run(&format!("SET user:{i:02} x"));
        }
        n.run("SET other x");
        let mut cursor = "0".to_string();
        let mut seen = 0;
        loop {
            let reply = n.run(&format!("SCAN {cursor} MATCH user:* COUNT 7"));
            let lines: Vec<&str> = reply.split("\r\n").collect();
            cursor = lines[2].to_string();
            seen += lines.iter().filter(|l| l.starts_with("user:")).count();
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(seen, 25);
        assert_eq!(n.run("KEYS user:1?").matches("user:1").count(), 10);
        assert_eq!(n.run("SCAN 999"), "-ERR invalid cursor\r\n");
    }
}
