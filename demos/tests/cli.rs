//! `sampan-cli` (the built binary) against an in-process 3-node cluster:
//! its outputs, human and JSON, and its exit codes.

use sampan::config::{Durability, GroupConfig, ServerConfig};
use sampan::server::{RaftServer, kv_factory};
use sampan_fiber::{IO_MEMORY_MIN_BYTES, Runtime};
use std::collections::HashSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

/// Configs of a 3-node cluster (default cluster id) on ports free now.
fn configs(root: &Path) -> Vec<ServerConfig> {
    let mut taken: HashSet<u16> = HashSet::new();
    let mut pick = || -> u16 {
        loop {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            if taken.insert(port) {
                return port;
            }
        }
    };
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (pick(), pick())).collect();
    let servers: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(n, (r, s))| format!("{},127.0.0.1:{r},{s}", n + 1))
        .collect();
    ports
        .iter()
        .enumerate()
        .map(|(n, (r, s))| ServerConfig {
            node_id: n as u64 + 1,
            servers: servers.join(";"),
            cluster_id: sampan::client::CLUSTER_ID_DEFAULT,
            replicate_port: *r,
            service_port: *s,
            election_timeout_ms: 300,
            heartbeat_interval_ms: 30,
            tick_ms: 10,
            shards: 1,
            data_dir: root.join(format!("node-{}", n + 1)),
            request_timeout_ms: 10_000,
            log: Default::default(),
        })
        .collect()
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
