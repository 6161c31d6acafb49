//! Who may talk to a node, attacked with real `sampan-node` processes: the
//! service port wants a token and an admin token for what changes the
//! cluster; a node with the wrong cluster secret, claiming a member's id
//! and ports, gets nothing and is logged once; a node that would listen
//! beyond loopback with no keys refuses to start and says why.

mod redis_common;

use redis_common::*;
use sampan::config::ServiceCredential;
use sampan_demos::config::{NodeConfig, Secret};
use std::process::{Command, Stdio};

const SECRET: &str = "a cluster secret of some length 42";
const APP: &str = "app-token-6f1d";
const OPS: &str = "ops-token-c93e";

fn keyed(cfg: &mut NodeConfig) {
    cfg.server.cluster_secret = Some(Secret(SECRET.into()));
    cfg.server.credentials = vec![
        ServiceCredential {
            name: "app".into(),
            token: Secret(APP.into()),
            admin: false,
        },
        ServiceCredential {
            name: "ops".into(),
            token: Secret(OPS.into()),
            admin: true,
        },
    ];
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `sampan-cli` against `c` as `user` with `token` (none: no token).
fn cli(c: &TestCluster, user: &str, token: Option<&str>, args: &[&str]) -> Run {
    let servers: Vec<String> = c.services().iter().map(|a| a.to_string()).collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sampan-cli"));
    cmd.arg("--servers")
        .arg(servers.join(","))
        .arg("--user")
        .arg(user)
        .arg("--timeout-ms")
        .arg("10000")
        .args(args)
        .env_remove("SAMPAN_TOKEN");
    if let Some(t) = token {
        cmd.env("SAMPAN_TOKEN", t);
    }
    let out = cmd.output().expect("sampan-cli runs");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[track_caller]
fn refused(run: &Run, why: &str) {
    assert_eq!(run.code, 3, "refused: {}{}", run.stdout, run.stderr);
    // Commands run on several nodes report each node's answer on stdout.
    assert!(
        run.stderr.contains(why) || run.stdout.contains(why),
        "the output names {why:?}: {}{}",
        run.stdout,
        run.stderr
    );
}

#[track_caller]
fn done(run: &Run) -> &str {
    assert_eq!(run.code, 0, "done: {}{}", run.stdout, run.stderr);
    &run.stdout
}

#[test]
fn the_service_port_wants_a_token_and_admin_operations_an_admin_token() {
    let c = TestCluster::start_with(3, keyed);
    c.wait_leader(1);
    // The nodes, holding the same secret, formed the cluster: a write
    // through the Redis port replicates.
    let mut r = Resp::connect_with(c.port(1), WAIT).expect("connect");
    assert_eq!(
        r.call(&["SET", "before", "1"]).expect("answer"),
        Value::Simple("OK".into())
    );

    // No token, a wrong token, an unknown name: refused at the handshake,
    // at once (not retried until the timeout).
    refused(
        &cli(&c, "default", None, &["get", "before"]),
        "authentication",
    );
    refused(
        &cli(&c, "app", Some(OPS), &["get", "before"]),
        "authentication",
    );
    refused(
        &cli(&c, "nobody", Some(APP), &["get", "before"]),
        "authentication",
    );

    // A client token reads, writes and asks the status...
    done(&cli(&c, "app", Some(APP), &["put", "k", "v"]));
    assert_eq!(done(&cli(&c, "app", Some(APP), &["get", "k"])), "v\n");
    done(&cli(&c, "app", Some(APP), &["status"]));
    // ...and is refused everything that changes the cluster, which stays
    // as it was.
    let voters = c.running();
    for args in [
        &["snapshot"][..],
        &["transfer-leader", "2"],
        &["remove-member", "3"],
        &["remove-group"],
    ] {
        refused(&cli(&c, "app", Some(APP), args), "permission denied");
    }
    assert_eq!(done(&cli(&c, "app", Some(APP), &["get", "k"])), "v\n");
    assert_eq!(c.running(), voters);
    assert_eq!(
        r.call(&["GET", "before"]).expect("answer"),
        Value::Bulk(Some(b"1".to_vec()))
    );

    // The admin token may.
    done(&cli(&c, "ops", Some(OPS), &["snapshot"]));

    // A snapshot's bytes are every key and value: reading them is an
    // admin operation too, refused to the client token even once a
    // snapshot is there; the admin token gets them, and a backup.
    let read = |user: &str, token: &str| {
        let cfg = sampan::client::ClientConfig::new(c.services())
            .credential(user, token)
            .expect("credential");
        let client = sampan::client::BlockingClient::connect(cfg).expect("client");
        let at = c.service(1);
        let piece = client.run(move |cl| async move {
            let read = sampan::service::SnapshotRead {
                at: None,
                offset: 0,
                bytes_max: 1 << 16,
            };
            cl.read_snapshot_at(at, 1, read).await
        });
        client.close();
        piece.expect("the client's runtime")
    };
    let denied = read("app", APP).expect_err("a client token reads no snapshot");
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    let piece = read("ops", OPS).expect("an admin token reads the snapshot");
    assert!(piece.size > 0 && !piece.data.is_empty(), "{piece:?}");
    let dir = scratch(&c).join("backup");
    let out = dir.to_str().expect("utf-8");
    refused(
        &cli(&c, "app", Some(APP), &["backup", "--out", out]),
        "permission denied",
    );
    // Group 2 may still be electing its first leader: the backup waits
    // for one, up to --timeout-ms (10 s here).
    done(&cli(&c, "ops", Some(OPS), &["backup", "--out", out]));
    for i in 1..=3 {
        assert!(
            !c.log(i).contains(APP) && !c.log(i).contains(OPS) && !c.log(i).contains(SECRET),
            "node {i} logged a secret"
        );
    }
}

#[test]
fn a_node_with_the_wrong_secret_claiming_a_members_id_gets_nothing() {
    let mut c = TestCluster::start_with(3, keyed);
    c.wait_leader(1);
    let mut r = Resp::connect_with(c.port(1), WAIT).expect("connect");
    let set = |r: &mut Resp, k: &str| r.call(&["SET", k, "x"]).expect("answer");
    // Node 3 goes away; an impostor takes its id and ports, with another
    // secret and an empty data directory.
    c.kill(3);
    let mut cfg: NodeConfig =
        toml::from_str(&std::fs::read_to_string(c.config_file(3)).expect("node 3's config"))
            .expect("parses");
    cfg.server.cluster_secret = Some(Secret("not the cluster's secret, though long".into()));
    let dir = scratch(&c);
    cfg.server.data_dir = dir.join("impostor");
    let config = dir.join("impostor.toml");
    std::fs::write(&config, toml::to_string(&cfg).expect("toml")).expect("write");
    let log_path = dir.join("impostor.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut impostor = Command::new(env!("CARGO_BIN_EXE_sampan-node"))
        .arg("--config")
        .arg(&config)
        // Later refusals are logged at debug level: shown here, to count
        // them against the one warning.
        .env("RUST_LOG", "info,sampan_net=debug")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start the impostor");
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // Nodes 1 and 2 (lower ids) dial it again and again: every attempt is
    // refused, and it warns once.
    wait_until("the impostor refused three handshakes", || {
        read_log().matches("authentication with").count() >= 3
    });
    let log_text = read_log();
    let warned = log_text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("authentication with"))
        .count();
    assert_eq!(warned, 1, "one warning for the address:\n{log_text}");
    // The cluster goes on with its two members; the impostor learns nothing.
    for i in 0..20 {
        assert_eq!(
            set(&mut r, &format!("while-{i}")),
            Value::Simple("OK".into())
        );
    }
    // It knows no leader and has applied nothing past a fresh replica's
    // first entry (its own bootstrap membership).
    let info = group_info(cfg.redis.port, 1).expect("the impostor answers INFO");
    let applied: u64 = info["applied"].parse().expect("a number");
    assert!(applied <= 1 && info["leader"] == "0", "{info:?}");
    assert!(
        c.log(1).contains("authentication with"),
        "node 1 logged the refusal"
    );
    impostor.kill().expect("kill");
    impostor.wait().expect("wait");

    // The real node 3 comes back and catches up.
    c.spawn(3);
    wait_until("node 3 caught up", || {
        group_info(c.port(3), 1)
            .and_then(|i| i.get("applied")?.parse::<u64>().ok())
            .is_some_and(|a| a > 20)
    });
}

#[test]
fn protected_mode_refuses_to_listen_beyond_loopback_without_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let base = NodeConfig::local_demo(1, dir.join("node-1"));
    let start = |tweak: &dyn Fn(&mut NodeConfig)| {
        let mut cfg = base.clone();
        cfg.server.servers = "1,192.0.2.1:4001,5001".into();
        cfg.server.replicate_port = 4001;
        cfg.server.service_port = 5001;
        cfg.redis.requirepass = Some(Secret("redis-pass".into()));
        cfg.server.data_dir = dir.join("protected");
        tweak(&mut cfg);
        let path = dir.join("protected.toml");
        std::fs::write(&path, toml::to_string(&cfg).expect("toml")).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_sampan-node"))
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .expect("sampan-node runs");
        assert!(!out.status.success(), "it must not start");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let why = start(&|_| {});
    assert!(
        why.contains("protected mode") && why.contains("cluster_secret"),
        "{why}"
    );
    let why = start(&|cfg| cfg.server.cluster_secret = Some(Secret(SECRET.into())));
    assert!(
        why.contains("protected mode") && why.contains("credential"),
        "{why}"
    );
    // With the switch off it gets past the check (and fails to bind an
    // address this machine does not have, which says so).
    let why = start(&|cfg| cfg.server.protected_mode = false);
    assert!(!why.contains("protected mode"), "{why}");
}
