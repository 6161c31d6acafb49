//! `redis-cli --pipe` with 10,000 commands: all applied, once, in order.

mod redis_common;
use redis_common::*;
use std::process::{Command, Stdio};

fn resp(args: &[&str]) -> String {
    let mut s = format!("*{}\r\n", args.len());
    for a in args {
        s.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s
}

#[test]
fn ten_thousand_pipelined_commands_apply_once_in_order() {
    require_redis_cli();
    let c = TestCluster::start(3);
    let leader = c.wait_leader(1);
    // Through a follower, so every batch is also forwarded.
    let node = (1..=3).find(|n| *n != leader).expect("a follower");
    let mut input = String::new();
    for i in 1..=10_000u32 {
        let s = i.to_string();
        let cmd = match i % 10 {
            // Not idempotent: a command applied twice shows.
            0 => resp(&["INCR", "counter"]),
            // The same key over and over: the last one must win.
            5 => resp(&["SET", "last", &s]),
            _ => resp(&["SET", &format!("p:{i}"), &s]),
        };
        input.push_str(&cmd);
    }
    let file = c.dir.path().join("pipe.txt");
    std::fs::write(&file, input).expect("write");
    let out = Command::new("redis-cli")
        .args(["-p", &c.port(node).to_string(), "--pipe"])
        .stdin(std::fs::File::open(&file).expect("open"))
        .stdout(Stdio::piped())
        .output()
        .expect("redis-cli --pipe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("errors: 0, replies: 10000"), "{text}");
    let p = c.port(leader);
    assert_eq!(cli(p, &["GET", "counter"]), "1000");
    assert_eq!(cli(p, &["GET", "last"]), "9995");
    assert_eq!(cli(p, &["DBSIZE"]), (8000 + 2).to_string());
    let mut conn = Resp::connect(p).expect("connect");
    let ids: Vec<u32> = (1..=10_000)
        .filter(|i| i % 10 != 0 && i % 10 != 5)
        .collect();
    let keys: Vec<String> = ids.iter().map(|i| format!("p:{i}")).collect();
    let mut args = vec!["MGET"];
    args.extend(keys.iter().map(String::as_str));
    let Value::Array(Some(values)) = conn.call(&args).expect("mget") else {
        panic!("no array");
    };
    for (i, v) in ids.iter().zip(values) {
        assert_eq!(v, Value::Bulk(Some(i.to_string().into_bytes())), "p:{i}");
    }
}

/// The commit index of group 1 on the node at `port` (INFO replication).
fn commit_index(port: u16) -> u64 {
    let info = cli(port, &["INFO", "replication"]);
    info.lines()
        .find_map(|l| l.trim().strip_prefix("commit_index:"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no commit_index in {info}"))
}

#[test]
fn a_pipeline_of_mixed_writes_goes_as_few_proposals() {
    require_redis_cli();
    let c = TestCluster::start(3);
    let leader = c.wait_leader(1);
    let p = c.port(leader);
    let before = commit_index(p);
    let mut input = String::new();
    for i in 0..1_000u32 {
        input.push_str(&match i % 4 {
            0 | 1 => resp(&["INCR", "n"]),
            2 => resp(&["SET", &format!("t:{i}"), "x", "EX", "600"]),
            _ => resp(&["DEL", &format!("t:{}", i - 1)]),
        });
    }
    let file = c.dir.path().join("mixed.txt");
    std::fs::write(&file, input).expect("write");
    let out = Command::new("redis-cli")
        .args(["-p", &p.to_string(), "--pipe"])
        .stdin(std::fs::File::open(&file).expect("open"))
        .stdout(Stdio::piped())
        .output()
        .expect("redis-cli --pipe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("errors: 0, replies: 1000"), "{text}");
    assert_eq!(cli(p, &["GET", "n"]), "500");
    assert_eq!(cli(p, &["DBSIZE"]), "1", "every t:i was deleted again");
    // 1,000 writes, each its own proposal before: now runs of them share one.
    let proposals = commit_index(p) - before;
    assert!(
        proposals < 100,
        "{proposals} entries for 1,000 pipelined writes"
    );
}
