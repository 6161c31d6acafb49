//! The operators' endpoint (`[metrics] address`) of three real
//! `sampan-node` processes: `/metrics` shows each group's role, term,
//! leader and indexes as the nodes see them, and follows a SIGKILL of the
//! leader; `/health` answers 200 once every group has a leader and has
//! applied what it knows committed; bad requests get clear errors and the
//! endpoint goes on serving.
//!
//! Every wait is bounded polling for a condition ([`wait_until`]).

mod redis_common;
use redis_common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `request` as is; returns the status code and the body.
fn http(port: u16, request: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(request).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    http(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
}

/// The value of the sample `name{group="g"}` in a `/metrics` body.
fn sample(body: &str, name: &str, group: u64) -> Option<i64> {
    let prefix = format!("{name}{{group=\"{group}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// The value of the sample whose name and labels are exactly `series`
/// (`sampan_reads_total{shard="0",result="ok"}`).
fn series(body: &str, series: &str) -> Option<f64> {
    let prefix = format!("{series} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// The leader of `group` every running node's `/metrics` agrees on.
fn agreed_leader(c: &TestCluster, ports: &[u16], group: u64) -> Option<u64> {
    let mut named = None;
    for n in c.running() {
        let (code, body) = get(ports[n as usize - 1], "/metrics")?;
        let leader = sample(&body, "sampan_group_leader", group)?;
        if code != 200 || leader == 0 || named.is_some_and(|l| l != leader) {
            return None;
        }
        named = Some(leader);
    }
    named.map(|l| l as u64)
}

#[test]
fn metrics_and_health_follow_a_leader_kill() {
    let ports = free_ports(3);
    let m = ports.clone();
    let mut c = TestCluster::start_with(3, move |cfg| {
        cfg.metrics.address = Some(format!("127.0.0.1:{}", m[cfg.server.node_id as usize - 1]));
    });
    wait_until("every node ready", || {
        (1..=3).all(|n| get(ports[n - 1], "/health").is_some_and(|(code, _)| code == 200))
    });
    let mut leader = 0;
    wait_until("the nodes' metrics to agree on group 1's leader", || {
        agreed_leader(&c, &ports, 1).is_some_and(|l| {
            leader = l;
            true
        })
    });
    for n in 1..=3u64 {
        let (_, body) = get(ports[n as usize - 1], "/metrics").expect("metrics");
        let role = sample(&body, "sampan_group_role", 1).expect("a role line");
        assert_eq!(
            role == 3,
            n == leader,
            "node {n}: role {role}, leader {leader}"
        );
        for g in [1, 2] {
            let commit = sample(&body, "sampan_group_commit_index", g).expect("commit");
            let applied = sample(&body, "sampan_group_applied_index", g).expect("applied");
            assert!(commit >= 1 && applied <= commit, "node {n} group {g}");
        }
        assert!(body.contains("sampan_fsyncs_total{shard=\"0\"}"), "{body}");
        assert!(
            body.contains(&format!(
                "sampan_redis_connected_clients{{port=\"{}\"}}",
                c.port(n)
            )),
            "{body}"
        );
        assert!(body.trim_end().ends_with("# EOF"), "OpenMetrics text");
    }

    c.kill(leader);
    let old = leader;
    wait_until("a new leader in the survivors' metrics", || {
        agreed_leader(&c, &ports, 1).is_some_and(|l| {
            leader = l;
            l != old
        })
    });
    wait_until("the survivors ready", || {
        c.running()
            .iter()
            .all(|&n| get(ports[n as usize - 1], "/health").is_some_and(|(code, _)| code == 200))
    });
    let (_, body) = get(ports[leader as usize - 1], "/metrics").expect("metrics");
    assert_eq!(sample(&body, "sampan_group_role", 1), Some(3));
    let lag_line = format!("sampan_follower_lag{{group=\"1\",node=\"{old}\"}}");
    assert!(body.contains(&lag_line), "the dead node's lag: {body}");

    // The hot path's counters on the new leader: writes and reads through
    // its Redis port, the election it won, its sync rounds, its links.
    const WRITES: usize = 50;
    let mut r = Resp::connect_with(c.port(leader), Duration::from_secs(10)).expect("redis");
    for i in 0..WRITES {
        let k = format!("m{i}");
        assert_eq!(
            r.call(&["SET", &k, "v"]).expect("SET"),
            Value::Simple("OK".into())
        );
        assert!(matches!(
            r.call(&["GET", &k]).expect("GET"),
            Value::Bulk(Some(_))
        ));
    }
    assert!(
        matches!(r.call(&["LPUSH", "m0", "x"]).expect("LPUSH"), Value::Error(e) if e.starts_with("WRONGTYPE"))
    );
    assert!(matches!(
        r.call(&["NOSUCHCOMMAND"]).expect("unknown"),
        Value::Error(_)
    ));
    let (_, body) = get(ports[leader as usize - 1], "/metrics").expect("metrics");
    let at_least = |name: &str, min: f64| {
        let v = series(&body, name).unwrap_or_else(|| panic!("no {name}: {body}"));
        assert!(v >= min, "{name} = {v}, expected at least {min}");
    };
    at_least(
        "sampan_proposals_total{shard=\"0\",result=\"ok\"}",
        WRITES as f64,
    );
    at_least("sampan_proposal_seconds_count{shard=\"0\"}", WRITES as f64);
    at_least(
        "sampan_reads_total{shard=\"0\",result=\"ok\"}",
        WRITES as f64,
    );
    at_least("sampan_read_seconds_count{shard=\"0\"}", WRITES as f64);
    at_least("sampan_sync_round_seconds_count{shard=\"0\"}", 1.0);
    at_least(
        "sampan_redis_commands_total{command=\"set\"}",
        WRITES as f64,
    );
    at_least(
        "sampan_redis_commands_total{command=\"get\"}",
        WRITES as f64,
    );
    at_least("sampan_redis_commands_total{command=\"unknown\"}", 1.0);
    at_least("sampan_redis_errors_total{code=\"WRONGTYPE\"}", 1.0);
    at_least("sampan_redis_errors_total{code=\"ERR\"}", 1.0);
    assert_eq!(
        body.matches("# TYPE sampan_redis_connected_clients ")
            .count(),
        1,
        "each family once: {body}"
    );
    // What the group holds: its log on disk, the keys written, the
    // exactly-once session the Redis port wrote them under.
    at_least("sampan_group_log_bytes{group=\"1\"}", 1.0);
    at_least("sampan_group_keys{group=\"1\"}", WRITES as f64);
    at_least("sampan_group_sessions{group=\"1\"}", 1.0);
    assert!(
        !body.contains("sampan_group_snapshot_seconds{group=\"1\"}"),
        "no snapshot taken yet: {body}"
    );
    at_least("sampan_elections_total{shard=\"0\"}", 1.0);
    at_least("sampan_leader_changes_total{shard=\"0\"}", 2.0);
    let other = c
        .running()
        .into_iter()
        .find(|n| *n != leader)
        .expect("a follower");
    at_least(
        &format!("sampan_peer_sent_bytes_total{{shard=\"0\",peer=\"{other}\"}}"),
        1.0,
    );
    at_least(
        &format!("sampan_peer_received_bytes_total{{shard=\"0\",peer=\"{other}\"}}"),
        1.0,
    );
    // The killed node's last contact grows past an election timeout while
    // the follower's stays fresh.
    wait_until("the dead node's silence to show", || {
        get(ports[leader as usize - 1], "/metrics").is_some_and(|(_, b)| {
            let silent = |n: u64| {
                series(
                    &b,
                    &format!("sampan_peer_silent_seconds{{shard=\"0\",peer=\"{n}\"}}"),
                )
            };
            silent(old).is_some_and(|s| s > 2.0) && silent(other).is_some_and(|s| s < 2.0)
        })
    });
    wait_until("a round trip to the follower", || {
        get(ports[leader as usize - 1], "/metrics").is_some_and(|(_, b)| {
            series(
                &b,
                &format!("sampan_peer_rtt_seconds{{shard=\"0\",peer=\"{other}\"}}"),
            )
            .is_some_and(|rtt| rtt > 0.0 && rtt < 10.0)
        })
    });
    // A snapshot taken by command (on each node) shows its duration and
    // size, and the CLI's status reports the same counts.
    let taken = sampan_cli(&c, &["--group", "1", "--json", "snapshot"]);
    let taken = String::from_utf8_lossy(&taken.stdout).into_owned();
    let (_, snapped) = get(ports[leader as usize - 1], "/metrics").expect("metrics");
    let metric = |name: &str| {
        series(&snapped, &format!("{name}{{group=\"1\"}}"))
            .unwrap_or_else(|| panic!("no {name}: {snapped}"))
    };
    let ms = (metric("sampan_group_snapshot_seconds") * 1000.0)
        .round()
        .to_string();
    assert!(
        json_field(&taken, "write_ms").contains(&ms.as_str()),
        "{ms} ms: {taken}"
    );
    let bytes = metric("sampan_group_snapshot_bytes").to_string();
    assert!(
        json_field(&taken, "bytes").contains(&bytes.as_str()),
        "{bytes}: {taken}"
    );
    let status = sampan_cli(&c, &["--group", "1", "--json", "status"]);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    let counts = |name: &str| -> Vec<u64> {
        json_field(&status, name)
            .iter()
            .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} {v}: {status}")))
            .collect()
    };
    let keys = counts("keys");
    assert_eq!(keys.len(), 2, "a line per running node: {status}");
    assert!(keys.iter().max() >= Some(&(WRITES as u64)), "{status}");
    assert!(counts("sessions").iter().all(|s| *s >= 1), "{status}");
    assert_eq!(counts("snapshot_ms").len(), 2, "{status}");
    // (Their logs may be empty now: the snapshot lets them purge it.)
    assert_eq!(counts("log_bytes").len(), 2, "{status}");
    // Every metric the Grafana dashboard in docs/ plots is one a node
    // exports (the dashboard cannot drift from the names).
    let (_, now) = get(ports[leader as usize - 1], "/metrics").expect("metrics");
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana/sampan.json"),
    )
    .expect("docs/grafana/sampan.json");
    let mut used: Vec<&str> = dashboard
        .match_indices("sampan_")
        .map(|(i, _)| {
            let rest = &dashboard[i..];
            let end = rest
                .find(|ch: char| !(ch.is_ascii_lowercase() || ch == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| *name != "sampan_")
        .collect();
    used.sort_unstable();
    used.dedup();
    assert!(used.len() >= 20, "{used:?}");
    for name in used {
        assert!(
            now.lines()
                .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))),
            "the dashboard plots {name}, which the node does not export"
        );
    }
    // A histogram's buckets are cumulative and end at +Inf with the count.
    let count = series(&body, "sampan_proposal_seconds_count{shard=\"0\"}");
    let inf = series(
        &body,
        "sampan_proposal_seconds_bucket{le=\"+Inf\",shard=\"0\"}",
    )
    .or_else(|| {
        series(
            &body,
            "sampan_proposal_seconds_bucket{shard=\"0\",le=\"+Inf\"}",
        )
    });
    assert_eq!(count, inf, "{body}");

    // Bad requests: clear answers, and the endpoint goes on serving.
    let port = ports[leader as usize - 1];
    assert_eq!(get(port, "/nope").map(|r| r.0), Some(404));
    assert_eq!(
        http(port, b"POST /metrics HTTP/1.1\r\n\r\n").map(|r| r.0),
        Some(405)
    );
    assert_eq!(
        http(port, b"\x16\x03\x01garbage\r\n\r\n").map(|r| r.0),
        Some(400)
    );
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(http(port, huge.as_bytes()).map(|r| r.0), Some(431));
    assert_eq!(get(port, "/metrics").map(|r| r.0), Some(200));

    // A node whose groups have no leader is not ready, and says why.
    let survivors = c.running();
    c.kill(survivors[0]);
    let last = survivors[1];
    wait_until("the last node to say it is not ready", || {
        get(ports[last as usize - 1], "/health")
            .is_some_and(|(code, body)| code == 503 && body.contains("no leader"))
    });
}
