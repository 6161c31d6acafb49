//! redis-cli against a real 3-node cluster: the common commands through
//! each of the three nodes (a follower forwards to the leader), and keys
//! with a TTL expiring everywhere.

mod redis_common;
use redis_common::*;

#[test]
fn commands_work_through_every_node() {
    require_redis_cli();
    let c = TestCluster::start(3);
    c.wait_leader(1);
    for n in 1..=3u64 {
        let p = c.port(n);
        let k = |s: &str| format!("n{n}:{s}");
        assert_eq!(cli(p, &["PING"]), "PONG");
        // HELLO 3 switches to RESP3 (a map; a missing key is `_`), HELLO 2
        // back to RESP2 (a flat array; `$-1`); each says which it speaks.
        // Other versions get Redis's NOPROTO.
        let mut conn = Resp::connect(p).expect("connect");
        let proto_of = |pairs: Vec<(Value, Value)>| {
            pairs
                .into_iter()
                .find(|(k, _)| *k == Value::Bulk(Some(b"proto".to_vec())))
                .map(|(_, v)| v)
        };
        let Value::Map(pairs) = conn.call(&["HELLO", "3"]).expect("hello") else {
            panic!("HELLO 3: no map");
        };
        assert_eq!(proto_of(pairs), Some(Value::Int(3)));
        // On the wire: RESP3's null, not RESP2's `$-1`.
        let mut raw = std::net::TcpStream::connect(("127.0.0.1", p)).expect("connect");
        raw.set_read_timeout(Some(WAIT)).expect("timeout");
        std::io::Write::write_all(
            &mut raw,
            b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*2\r\n$3\r\nGET\r\n$9\r\nno-such-k\r\n",
        )
        .expect("send");
        let mut got = Vec::new();
        while !got.ends_with(b"_\r\n") {
            let mut buf = [0u8; 4096];
            let n = std::io::Read::read(&mut raw, &mut buf).expect("read");
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            got.starts_with(b"%7\r\n"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        let Value::Array(Some(fields)) = conn.call(&["HELLO", "2"]).expect("hello") else {
            panic!("HELLO 2: no array");
        };
        let pairs = fields
            .chunks(2)
            .map(|kv| (kv[0].clone(), kv[1].clone()))
            .collect();
        assert_eq!(proto_of(pairs), Some(Value::Int(2)));
        match conn.call(&["HELLO", "4"]).expect("hello 4") {
            Value::Error(e) => assert!(e.starts_with("NOPROTO"), "{e}"),
            other => panic!("HELLO 4: {other:?}"),
        }
        assert_eq!(cli(p, &["SET", &k("a"), "va"]), "OK");
        for m in 1..=3 {
            let got = cli(c.port(m), &["GET", &k("a")]);
            assert!(
                got == "va",
                "node {m} reads {got:?}, not node {n}'s write \"va\"; logs:\n{}",
                (1..=3)
                    .map(|i| format!("--- node {i}\n{}", c.log(i)))
                    .collect::<String>()
            );
        }
        assert_eq!(cli(p, &["SET", &k("a"), "vb", "NX"]), "");
        assert_eq!(cli(p, &["SET", &k("a"), "vc", "XX", "GET"]), "va");
        assert_eq!(cli(p, &["MSET", &k("b"), "1", &k("c"), "2"]), "OK");
        assert_eq!(
            cli(p, &["MGET", &k("a"), &k("b"), &k("nope"), &k("c")]),
            "vc\n1\n\n2"
        );
        assert_eq!(cli(p, &["INCR", &k("n")]), "1");
        assert_eq!(cli(p, &["INCRBY", &k("n"), "41"]), "42");
        assert_eq!(cli(p, &["DECR", &k("n")]), "41");
        assert_eq!(
            cli(p, &["INCR", &k("a")]),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(cli(p, &["APPEND", &k("a"), "!"]), "3");
        assert_eq!(cli(p, &["STRLEN", &k("a")]), "3");
        assert_eq!(cli(p, &["EXISTS", &k("a"), &k("a"), &k("nope")]), "2");
        assert_eq!(cli(p, &["TYPE", &k("a")]), "string");
        assert_eq!(cli(p, &["TTL", &k("a")]), "-1");
        assert_eq!(cli(p, &["TTL", &k("nope")]), "-2");
        assert_eq!(cli(p, &["EXPIRE", &k("a"), "100"]), "1");
        let ttl: i64 = cli(p, &["TTL", &k("a")]).parse().expect("ttl");
        assert!((1..=100).contains(&ttl), "ttl {ttl}");
        assert_eq!(cli(p, &["PERSIST", &k("a")]), "1");
        assert_eq!(cli(p, &["TTL", &k("a")]), "-1");
        assert_eq!(cli(p, &["DEL", &k("a"), &k("nope")]), "1");
        assert_eq!(cli(p, &["GET", &k("a")]), "");
        assert_eq!(cli(p, &["GETDEL", &k("b")]), "1");
        assert_eq!(
            cli(p, &["GET"]),
            "ERR wrong number of arguments for 'get' command"
        );
        assert!(cli(p, &["NOSUCH", "x"]).starts_with("ERR unknown command 'NOSUCH'"));
    }
    // SCAN (redis-cli --scan pages through with COUNT 10) sees every key,
    // through every node.
    let want: Vec<String> = (1..=3)
        .flat_map(|n| [format!("n{n}:c"), format!("n{n}:n")])
        .collect();
    for n in 1..=3 {
        let mut got: Vec<String> = cli(c.port(n), &["--scan"])
            .lines()
            .map(str::to_string)
            .collect();
        got.sort();
        assert_eq!(got, want, "scan through node {n}");
        // Page by page, two keys at a time, on one connection.
        let mut conn = Resp::connect(c.port(n)).expect("connect");
        let mut cursor = "0".to_string();
        let mut paged = Vec::new();
        loop {
            let reply = conn.call(&["SCAN", &cursor, "COUNT", "2"]).expect("scan");
            let Value::Array(Some(parts)) = reply else {
                panic!("scan reply {reply:?}");
            };
            let [Value::Bulk(Some(next)), Value::Array(Some(keys))] = &parts[..] else {
                panic!("scan reply {parts:?}");
            };
            assert!(keys.len() <= 2);
            for k in keys {
                let Value::Bulk(Some(k)) = k else {
                    panic!("key {k:?}")
                };
                paged.push(String::from_utf8_lossy(k).into_owned());
            }
            cursor = String::from_utf8_lossy(next).into_owned();
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(paged, want, "paged scan through node {n}");
        let mut one: Vec<String> = cli(c.port(n), &["--scan", "--pattern", "n2:*"])
            .lines()
            .map(str::to_string)
            .collect();
        one.sort();
        assert_eq!(one, vec!["n2:c", "n2:n"]);
        assert_eq!(cli(c.port(n), &["DBSIZE"]), "6");
    }
    // Database 1 is group 2: its own keys.
    assert_eq!(cli(c.port(2), &["-n", "1", "SET", "g2", "x"]), "OK");
    assert_eq!(cli(c.port(3), &["-n", "1", "GET", "g2"]), "x");
    assert_eq!(cli(c.port(3), &["GET", "g2"]), "");
    assert_eq!(cli(c.port(1), &["-n", "1", "DBSIZE"]), "1");
}

#[test]
fn keys_with_a_ttl_expire_on_every_node() {
    require_redis_cli();
    let c = TestCluster::start(3);
    c.wait_leader(1);
    assert_eq!(cli(c.port(1), &["SET", "keep", "v"]), "OK");
    assert_eq!(cli(c.port(2), &["SET", "t1", "v", "PX", "300"]), "OK");
    assert_eq!(cli(c.port(3), &["SET", "t2", "v"]), "OK");
    assert_eq!(cli(c.port(3), &["PEXPIRE", "t2", "300"]), "1");
    assert_eq!(cli(c.port(1), &["SETEX", "t3", "1", "v"]), "OK");
    // Reads never show an expired key; DBSIZE counts keys until the
    // leader's expiry has gone through the log.
    for n in 1..=3 {
        let p = c.port(n);
        wait_until("the keys to expire", || {
            ["t1", "t2", "t3"]
                .iter()
                .all(|k| cli(p, &["GET", k]).is_empty() && cli(p, &["TTL", k]) == "-2")
        });
        wait_until("DBSIZE to drop to 1", || cli(p, &["DBSIZE"]) == "1");
        assert_eq!(cli(p, &["GET", "keep"]), "v");
    }
}
