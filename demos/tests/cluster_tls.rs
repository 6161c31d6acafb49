//! Mutual TLS between real `sampan-node` processes, with certificates from
//! `sampan-cli certs`: the cluster forms and replicates over TLS, the
//! native client reaches the service port over TLS, and a process holding
//! node 2's genuine certificate that claims to be node 3 (with node 3's
//! ports and id) is refused by both members and learns nothing.

mod redis_common;

use redis_common::*;
use sampan::config::TlsFiles;
use sampan_demos::config::NodeConfig;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn certs(out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_sampan-cli"))
        .args(["certs", "--out"])
        .arg(out)
        .args(["--nodes", "1,2,3"])
        .stdout(Stdio::null())
        .status()
        .expect("sampan-cli runs");
    assert!(status.success(), "sampan-cli certs");
}

fn tls_files(dir: &Path, cert_of: u64) -> TlsFiles {
    TlsFiles {
        cert_file: dir.join(format!("node-{cert_of}.pem")),
        key_file: dir.join(format!("node-{cert_of}.key")),
        ca_file: dir.join("ca.pem"),
    }
}

fn cli(c: &TestCluster, ca: Option<&Path>, args: &[&str]) -> (i32, String) {
    let servers: Vec<String> = c.services().iter().map(|a| a.to_string()).collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sampan-cli"));
    cmd.arg("--servers")
        .arg(servers.join(","))
        .args(["--timeout-ms", "5000"]);
    if let Some(ca) = ca {
        cmd.arg("--tls-ca").arg(ca.join("ca.pem"));
    }
    let out = cmd.args(args).output().expect("sampan-cli runs");
    (
        out.status.code().expect("exited"),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn nodes_replicate_over_mutual_tls_and_a_borrowed_certificate_gets_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki: PathBuf = dir.path().join("pki");
    certs(&pki);
    let pki_for_nodes = pki.clone();
    let mut c = TestCluster::start_with(3, move |cfg| {
        cfg.server.tls = Some(tls_files(&pki_for_nodes, cfg.server.node_id));
    });
    c.wait_leader(1);
    // Replicated over TLS: a write through the Redis port, read back with
    // the native client over the TLS service port.
    let mut r = Resp::connect_with(c.port(1), WAIT).expect("connect");
    assert_eq!(
        r.call(&["SET", "k", "over mutual tls"]).expect("answer"),
        Value::Simple("OK".into())
    );
    let (code, out) = cli(&c, Some(&pki), &["get", "k"]);
    assert_eq!((code, out.as_str()), (0, "over mutual tls\n"));
    // Without TLS, the service port gives nothing.
    let (code, out) = cli(&c, None, &["get", "k"]);
    assert_ne!(code, 0, "{out}");

    // Node 3 goes; a process with node 2's certificate takes its id and
    // ports.
    c.kill(3);
    let mut cfg: NodeConfig =
        toml::from_str(&std::fs::read_to_string(c.config_file(3)).expect("config"))
            .expect("parses");
    cfg.server.tls = Some(tls_files(&pki, 2));
    cfg.server.data_dir = dir.path().join("impostor");
    let config = dir.path().join("impostor.toml");
    std::fs::write(&config, toml::to_string(&cfg).expect("toml")).expect("write");
    let log_path = dir.path().join("impostor.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut impostor = Command::new(env!("CARGO_BIN_EXE_sampan-node"))
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start the impostor");
    // Nodes 1 and 2 dial it (lower ids dial) and refuse it: its
    // certificate does not name node 3. It hears their alert. (Their own
    // warnings may have gone to an earlier refusal from 127.0.0.1: one per
    // address.)
    wait_until("the members refused the impostor", || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("authentication with")
    });
    for i in 0..20 {
        assert_eq!(
            r.call(&["SET", &format!("while-{i}"), "x"])
                .expect("answer"),
            Value::Simple("OK".into())
        );
    }
    let info = group_info(cfg.redis.port, 1).expect("the impostor answers INFO");
    let applied: u64 = info["applied"].parse().expect("a number");
    assert!(applied <= 1 && info["leader"] == "0", "{info:?}");
    impostor.kill().expect("kill");
    impostor.wait().expect("wait");
    // The real node 3 comes back and catches up over TLS.
    c.spawn(3);
    wait_until("node 3 caught up", || {
        group_info(c.port(3), 1)
            .and_then(|i| i.get("applied")?.parse::<u64>().ok())
            .is_some_and(|a| a > 20)
    });
}
