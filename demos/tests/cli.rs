//! `sampan-cli` (the built binary) against an in-process 3-node cluster:
//! its outputs, human and JSON, and its exit codes.

mod redis_common;

use redis_common::json_field;
use sampan::config::{Durability, GroupConfig, ServerConfig};
use sampan::server::RaftServer;
use sampan_fiber::{IO_MEMORY_MIN_BYTES, Runtime};
use sampan_kv::kv_factory;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

/// Configs of a 3-node cluster (default cluster id) on ports free now.
fn configs(root: &Path) -> Vec<ServerConfig> {
    configs_n(root, 3)
}

/// [`configs`] for `n` nodes.
fn configs_n(root: &Path, n: usize) -> Vec<ServerConfig> {
    sampan::config::loopback_cluster(root, n, 1)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cli(servers: &str, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_sampan-cli"))
        .arg("--servers")
        .arg(servers)
        .args(args)
        .output()
        .expect("sampan-cli runs");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[track_caller]
fn expect(run: &Run, code: i32, stdout: &str) {
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (code, stdout),
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn commands_print_what_scripts_expect_and_exit_with_documented_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfgs = configs(dir.path());
    let servers = cfgs
        .iter()
        .map(|c| format!("127.0.0.1:{}", c.service_port))
        .collect::<Vec<_>>()
        .join(",");
    let group = GroupConfig {
        group_id: 1,
        members: "1,2,3".into(),
        observers: String::new(),
        durability: Durability::Sync,
        log_retention_ms: 0,
        ..Default::default()
    };
    let nodes: Vec<_> = cfgs
        .into_iter()
        .map(|c| {
            let rt = Runtime::builder().io_memory_bytes(IO_MEMORY_MIN_BYTES);
            RaftServer::start_with(c, std::slice::from_ref(&group), kv_factory(), rt)
                .expect("node starts")
        })
        .collect();
    let s = servers.as_str();

    expect(&cli(s, &["put", "k", "v"]), 0, "OK\n");
    expect(&cli(s, &["get", "k"]), 0, "v\n");
    expect(&cli(s, &["get", "missing"]), 1, "(not found)\n");
    let got = cli(s, &["--json", "get", "k"]);
    assert_eq!(got.code, 0);
    assert!(
        got.stdout
            .starts_with("{\"found\":true,\"key\":\"k\",\"value\":\"v\",\"version\":"),
        "{}",
        got.stdout
    );
    expect(
        &cli(s, &["--json", "get", "missing"]),
        1,
        "{\"found\":false,\"key\":\"missing\"}\n",
    );

    expect(&cli(s, &["incr", "n", "5"]), 0, "5\n");
    expect(&cli(s, &["incr", "n", "-2"]), 0, "3\n");
    expect(&cli(s, &["--json", "incr", "n"]), 0, "{\"value\":4}\n");
    expect(
        &cli(s, &["cas", "n", "--expected", "4", "--new", "10"]),
        0,
        "OK\n",
    );
    expect(
        &cli(s, &["--json", "cas", "n", "--expected", "4", "--new", "11"]),
        1,
        "{\"swapped\":false}\n",
    );
    expect(&cli(s, &["get", "n"]), 0, "10\n");
    // Incrementing text: the command fails (exit 3, error on stderr).
    let failed = cli(s, &["incr", "k"]);
    assert_eq!(failed.code, 3);
    assert!(failed.stderr.contains("group 1"), "{}", failed.stderr);

    for k in ["p/1", "p/2", "p/3", "q"] {
        expect(&cli(s, &["put", k, &format!("v-{k}")]), 0, "OK\n");
    }
    expect(
        &cli(s, &["scan", "--prefix", "p/", "--limit", "2"]),
        0,
        "p/1\tv-p/1\np/2\tv-p/2\n",
    );
    let page = cli(s, &["--json", "scan", "--prefix", "p/", "--after", "p/2"]);
    assert_eq!(page.code, 0);
    assert!(
        page.stdout
            .starts_with("{\"items\":[{\"key\":\"p/3\",\"value\":\"v-p/3\",\"version\":"),
        "{}",
        page.stdout
    );
    let page = cli(s, &["--json", "scan", "--start", "p/3", "--end", "r"]);
    assert_eq!(page.code, 0);
    assert!(page.stdout.contains("\"key\":\"p/3\"") && page.stdout.contains("\"key\":\"q\""));
    assert!(
        page.stdout.ends_with("],\"next\":null}\n"),
        "{}",
        page.stdout
    );

    expect(&cli(s, &["del", "p/1", "p/2", "nope"]), 0, "2\n");
    expect(&cli(s, &["--json", "del", "p/1"]), 1, "{\"removed\":0}\n");

    expect(&cli(s, &["put", "t", "v", "--ttl-ms", "600000"]), 0, "OK\n");
    let ttl = cli(s, &["ttl", "t"]);
    assert_eq!(ttl.code, 0);
    assert!(ttl.stdout.ends_with(" ms\n"), "{}", ttl.stdout);
    expect(&cli(s, &["ttl", "t", "--persist"]), 0, "OK\n");
    expect(&cli(s, &["ttl", "t"]), 0, "persistent\n");
    expect(
        &cli(s, &["--json", "ttl", "t"]),
        0,
        "{\"found\":true,\"ttl_ms\":null}\n",
    );
    expect(&cli(s, &["ttl", "gone"]), 1, "(not found)\n");

    let status = cli(s, &["status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.starts_with("group 1\nADDRESS"),
        "{}",
        status.stdout
    );
    assert_eq!(
        status.stdout.matches("leader").count(),
        1,
        "{}",
        status.stdout
    );
    let status = cli(s, &["--json", "status"]);
    assert_eq!(status.code, 0);
    assert!(
        status.stdout.contains("\"role\":\"leader\""),
        "{}",
        status.stdout
    );
    assert_eq!(status.stdout.matches("\"role\":").count(), 3);
    assert_eq!(
        status.stdout.matches("\"voters\":[1, 2, 3]").count(),
        3,
        "every node reports the members: {}",
        status.stdout
    );

    // No such group: an error, exit 3.
    assert_eq!(cli(s, &["--group", "9", "get", "k"]).code, 3);

    for n in nodes {
        n.shutdown().expect("stops");
    }
}

#[test]
fn usage_errors_exit_2_and_an_unreachable_cluster_exits_3() {
    assert_eq!(cli("127.0.0.1:1", &[]).code, 2, "no command");
    assert_eq!(cli("not-an-address", &["get", "k"]).code, 2);
    assert_eq!(
        cli("127.0.0.1:1", &["ttl", "k", "--persist", "--set-ms", "5"]).code,
        2
    );
    let help = cli("127.0.0.1:1", &["--help"]);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("Exit codes:"), "{}", help.stdout);

    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let down = format!("127.0.0.1:{port}");
    let run = cli(&down, &["--timeout-ms", "300", "get", "k"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("group 1"), "{}", run.stderr);
    let run = cli(&down, &["--json", "--timeout-ms", "300", "get", "k"]);
    assert_eq!(run.code, 3);
    assert!(run.stdout.starts_with("{\"error\":\""), "{}", run.stdout);
}

#[test]
fn admin_commands_add_a_group_snapshot_move_members_and_remove_the_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfgs = configs_n(dir.path(), 4);
    let addr = |i: usize| format!("127.0.0.1:{}", cfgs[i].service_port);
    let all = (0..4).map(addr).collect::<Vec<_>>().join(",");
    let first3 = (0..3).map(addr).collect::<Vec<_>>().join(",");
    let nodes: Vec<_> = cfgs
        .iter()
        .map(|c| {
            let rt = Runtime::builder().io_memory_bytes(IO_MEMORY_MIN_BYTES);
            RaftServer::start_with(c.clone(), &[], kv_factory(), rt).expect("node starts")
        })
        .collect();

    // Group 5 on its members; node 4 is none and is skipped.
    let added = cli(&all, &["--group", "5", "add-group", "--members", "1,2,3"]);
    assert_eq!(added.code, 0, "{}{}", added.stdout, added.stderr);
    assert_eq!(
        added.stdout.matches("group added").count(),
        3,
        "{}",
        added.stdout
    );
    assert!(
        added
            .stdout
            .contains(&format!("{}: not a member: skipped", addr(3)))
    );
    for n in &nodes[..3] {
        assert_eq!(n.group_ids().expect("groups"), vec![5]);
    }
    expect(&cli(&first3, &["--group", "5", "put", "k", "v"]), 0, "OK\n");

    // What each node runs, and every group's replicas in one table.
    let listed = cli(&all, &["groups"]);
    assert_eq!(listed.code, 0, "{}{}", listed.stdout, listed.stderr);
    for i in 0..3 {
        assert!(
            listed.stdout.contains(&format!("{}: groups 5\n", addr(i))),
            "{}",
            listed.stdout
        );
    }
    assert!(
        listed.stdout.contains(&format!("{}: no groups\n", addr(3))),
        "{}",
        listed.stdout
    );
    let table = cli(&all, &["--json", "status", "--all"]);
    assert_eq!(table.code, 0, "{}{}", table.stdout, table.stderr);
    assert!(
        table.stdout.starts_with("{\"groups\":[{\"group\":5,"),
        "{}",
        table.stdout
    );
    let roles = json_field(&table.stdout, "role");
    assert_eq!(roles.len(), 3, "{}", table.stdout);
    assert_eq!(
        roles.iter().filter(|r| **r == "\"leader\"").count(),
        1,
        "{}",
        table.stdout
    );
    assert_eq!(
        json_field(&table.stdout, "lag").len(),
        3,
        "{}",
        table.stdout
    );
    // Last contact: a number of milliseconds on each follower, none on the
    // leader (in the same order as the roles).
    let contact = json_field(&table.stdout, "leader_contact_ms");
    assert_eq!(contact.len(), 3, "{}", table.stdout);
    for (role, ms) in roles.iter().zip(&contact) {
        assert_eq!(
            *ms == "null",
            *role == "\"leader\"",
            "{role}: {ms}: {}",
            table.stdout
        );
        assert!(*ms == "null" || ms.parse::<u64>().is_ok(), "{ms}");
    }
    let asleep = json_field(&table.stdout, "hibernating");
    assert_eq!(asleep.len(), 3, "{}", table.stdout);
    assert!(
        asleep.iter().all(|h| *h == "true" || *h == "false"),
        "{}",
        table.stdout
    );
    let human = cli(&all, &["status", "--all"]);
    assert!(
        human.stdout.starts_with(" GROUP  NODE ROLE"),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .lines()
            .next()
            .is_some_and(|l| l.ends_with("CONTACT")),
        "{}",
        human.stdout
    );
    // A header, three replicas, and node 4's error (it has none).
    assert_eq!(human.stdout.lines().count(), 5, "{}", human.stdout);
    assert!(
        human
            .stdout
            .lines()
            .last()
            .is_some_and(|l| l.contains("error")),
        "{}",
        human.stdout
    );

    // A snapshot on each member, shown by status.
    let snap = cli(&first3, &["--group", "5", "--json", "snapshot"]);
    assert_eq!(snap.code, 0, "{}{}", snap.stdout, snap.stderr);
    let indexes = json_field(&snap.stdout, "index");
    assert_eq!(indexes.len(), 3, "{}", snap.stdout);
    assert!(
        indexes
            .iter()
            .all(|i| i.parse::<u64>().expect("index") >= 2)
    );
    let status = cli(&first3, &["--group", "5", "--json", "status"]);
    assert_eq!(
        json_field(&status.stdout, "snapshot_index"),
        indexes,
        "{}",
        status.stdout
    );
    // Node 4 has no replica: that node's line is an error, exit 3.
    let partly = cli(&all, &["--group", "5", "snapshot"]);
    assert_eq!(partly.code, 3, "{}", partly.stdout);
    assert!(
        partly.stdout.contains(&format!("{}: error", addr(3))),
        "{}",
        partly.stdout
    );

    // Node 4 joins and takes the lead; node 1 leaves.
    let joined = cli(&all, &["--group", "5", "add-member", "4", "--at", &addr(3)]);
    expect(&joined, 0, "OK\n");
    expect(
        &cli(&all, &["--group", "5", "transfer-leader", "4"]),
        0,
        "OK\n",
    );
    expect(
        &cli(&all, &["--group", "5", "remove-member", "1"]),
        0,
        "OK\n",
    );
    let status = cli(&all, &["--group", "5", "--json", "status"]);
    let leaders = json_field(&status.stdout, "leader");
    assert!(leaders[1..].iter().all(|l| *l == "4"), "{}", status.stdout);
    assert!(
        status.stdout.contains("\"voters\":[2, 3, 4]"),
        "{}",
        status.stdout
    );
    expect(&cli(&all, &["--group", "5", "get", "k"]), 0, "v\n");

    // Removed everywhere: stopped on all four, then the files go.
    let removed = cli(&all, &["--group", "5", "remove-group"]);
    assert_eq!(removed.code, 0, "{}{}", removed.stdout, removed.stderr);
    for (n, c) in nodes.iter().zip(&cfgs) {
        assert!(n.group_ids().expect("groups").is_empty());
        assert!(!c.data_dir.join("group-5").exists());
    }
    for n in nodes {
        n.shutdown().expect("shutdown");
    }
}
