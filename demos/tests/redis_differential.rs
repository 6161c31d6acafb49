//! The Redis port checked against the real thing: the same seeded random
//! command sequence goes to a `redis-server` and to a 3-node Sampan
//! cluster (through a follower, so every write is forwarded), and every
//! reply must be the same, errors included; TTLs may differ by the time
//! between the two calls (a second for TTL, a second's worth for PTTL).
//!
//! `SAMPAN_DIFF_COMMANDS=N` (default 3,000) and `SAMPAN_DIFF_SEED=S` run it
//! longer or with another sequence; a mismatch names the seed and the
//! command's number, so it replays.

mod redis_common;

use redis_common::*;
use std::process::{Child, Command, Stdio};

/// A small deterministic generator (SplitMix64), so a seed replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn key(rng: &mut Rng) -> String {
    format!("k{}", rng.below(12))
}

fn value(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => (rng.below(2000) as i64 - 1000).to_string(),
        1 => "9223372036854775807".into(),
        2 => String::new(),
        3 => "x".repeat(rng.below(70_000) as usize),
        4 => "3.5".into(),
        _ => format!("v{}", rng.below(1000)),
    }
}

/// One random command, as arguments.
fn command(rng: &mut Rng) -> Vec<String> {
    let k = key(rng);
    let s = |v: &str| v.to_string();
    match rng.below(24) {
        0..=3 => {
            let mut c = vec![s("SET"), k, value(rng)];
            match rng.below(8) {
                0 => c.extend([s("EX"), (rng.below(100) + 1).to_string()]),
                1 => c.extend([s("PX"), (rng.below(100_000) + 1000).to_string()]),
                2 => c.push(s("NX")),
                3 => c.push(s("XX")),
                4 => c.push(s("GET")),
                5 => c.push(s("KEEPTTL")),
                6 => c.extend([s("EX"), s("0")]),
                _ => {}
            }
            c
        }
        4..=6 => vec![s("GET"), k],
        7 => vec![s("GETDEL"), k],
        8 => vec![s("SETNX"), k, value(rng)],
        9 => vec![s("SETEX"), k, (rng.below(100) + 1).to_string(), value(rng)],
        10 => {
            let mut c = vec![s("DEL"), k];
            c.push(key(rng));
            c
        }
        11 => vec![s("EXISTS"), k.clone(), key(rng), k],
        12 => vec![s("MSET"), k, value(rng), key(rng), value(rng)],
        13 => vec![s("MGET"), k, key(rng), key(rng)],
        14 => vec![s(rng.pick(&["INCR", "DECR"])), k],
        15 => vec![
            s(rng.pick(&["INCRBY", "DECRBY"])),
            k,
            (rng.below(200) as i64 - 100).to_string(),
        ],
        16 => vec![s("APPEND"), k, value(rng)],
        17 => vec![s("STRLEN"), k],
        18 => vec![
            s(rng.pick(&["EXPIRE", "PEXPIRE"])),
            k,
            (rng.below(200_000) as i64 - 1000).to_string(),
        ],
        19 => vec![s(rng.pick(&["TTL", "PTTL"])), k],
        20 => vec![s("PERSIST"), k],
        21 => vec![s("TYPE"), k],
        22 => vec![s("DBSIZE")],
        _ => vec![s(rng.pick(&["INCRBY", "SETEX", "EXPIRE", "GET"])), k],
    }
}

/// Whether `a` (Redis) and `b` (Sampan) agree on `cmd`.
fn same(cmd: &str, a: &Value, b: &Value) -> bool {
    match (cmd, a, b) {
        ("TTL", Value::Int(x), Value::Int(y)) if *x >= 0 && *y >= 0 => (x - y).abs() <= 1,
        ("PTTL", Value::Int(x), Value::Int(y)) if *x >= 0 && *y >= 0 => (x - y).abs() <= 1000,
        _ => a == b,
    }
}

struct RedisServer(Child);

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn shown(v: &Value) -> String {
    let s = format!("{v}");
    if s.len() > 120 {
        format!("{}… ({} chars)", &s[..120], s.len())
    } else {
        s
    }
}

#[test]
fn the_same_commands_get_the_same_replies_as_redis_server() {
    let ok = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "redis-server is missing: apt-get install redis-server (scripts/test does)"
    );
    let n: usize = std::env::var("SAMPAN_DIFF_COMMANDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let seed: u64 = std::env::var("SAMPAN_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261206);

    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_ports(1)[0];
    let _redis = RedisServer(
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts"),
    );
    wait_until("redis-server answers", || {
        Resp::connect(port).is_ok_and(|mut r| r.call(&["PING"]).is_ok())
    });
    let c = TestCluster::start(3);
    let leader = c.wait_leader(1);
    let follower = (1..=3).find(|n| *n != leader).expect("a follower");
    let mut theirs = Resp::connect_with(port, WAIT).expect("connect redis");
    let mut ours = Resp::connect_with(c.port(follower), WAIT).expect("connect sampan");

    // The command table tells the truth: every command Sampan lists has
    // redis-server's arity and key positions, and COMMAND COUNT counts
    // them.
    let Value::Array(Some(names)) = ours.call(&["COMMAND", "LIST"]).expect("list") else {
        panic!("COMMAND LIST is an array");
    };
    assert_eq!(
        ours.call(&["COMMAND", "COUNT"]).expect("count"),
        Value::Int(names.len() as i64)
    );
    for name in &names {
        let Value::Bulk(Some(name)) = name else {
            panic!("a name: {name:?}");
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let fields = |r: &mut Resp| match r.call(&["COMMAND", "INFO", &name]).expect("info") {
            Value::Array(Some(mut entries)) if entries.len() == 1 => match entries.remove(0) {
                Value::Array(Some(f)) if f.len() >= 6 => {
                    vec![
                        f[0].clone(),
                        f[1].clone(),
                        f[3].clone(),
                        f[4].clone(),
                        f[5].clone(),
                    ]
                }
                other => panic!("{name}: {other:?}"),
            },
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(
            fields(&mut ours),
            fields(&mut theirs),
            "COMMAND INFO {name}"
        );
    }

    let mut rng = Rng(seed);
    let mut mismatches = Vec::new();
    // What kinds of replies were compared: the sequence must reach errors,
    // nils, numbers and values, or it proves little.
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for i in 0..n {
        let args = command(&mut rng);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let a = theirs.call(&refs).expect("redis answers");
        let b = ours.call(&refs).expect("sampan answers");
        let kind = match &a {
            Value::Error(_) => "error",
            Value::Bulk(None) | Value::Array(None) => "nil",
            Value::Int(_) => "integer",
            Value::Bulk(Some(_)) => "bulk",
            Value::Simple(_) => "status",
            Value::Array(Some(_)) | Value::Map(_) => "array",
        };
        *kinds.entry(kind).or_default() += 1;
        if !same(&args[0], &a, &b) {
            let shown_args: Vec<String> = args
                .iter()
                .map(|x| {
                    if x.len() > 20 {
                        format!("<{} bytes>", x.len())
                    } else {
                        x.clone()
                    }
                })
                .collect();
            mismatches.push(format!(
                "#{i} {}: redis {} / sampan {}",
                shown_args.join(" "),
                shown(&a),
                shown(&b)
            ));
        }
    }
    for kind in ["error", "nil", "integer", "bulk", "status", "array"] {
        assert!(
            kinds.get(kind).is_some_and(|n| *n > 0),
            "no {kind} reply compared: {kinds:?}"
        );
    }
    eprintln!("seed {seed}: {n} commands, replies compared by kind: {kinds:?}");
    assert!(
        mismatches.is_empty(),
        "seed {seed}: {} of {n} commands answered differently:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
