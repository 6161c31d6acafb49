//! The Redis port under TLS, on a real `sampan-node` with certificates from
//! `sampan-cli certs`: `redis-cli --tls` and `redis-benchmark --tls` work
//! with a client certificate the cluster's CA signed; no certificate, one
//! from another CA, or plain text on the TLS port get nothing; the plain
//! port serves as before.

mod redis_common;

use redis_common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn certs(out: &Path, args: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_sampan-cli"))
        .arg("certs")
        .arg("--out")
        .arg(out)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("sampan-cli runs");
    assert!(status.success(), "sampan-cli certs");
}

/// `redis-cli --tls` against `port` with the CA of `dir` and, if given,
/// client `name`'s certificate from `client_dir`.
fn tls_cli(port: u16, ca: &Path, client: Option<(&Path, &str)>, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("redis-cli");
    cmd.arg("--tls")
        .arg("--cacert")
        .arg(ca.join("ca.pem"))
        .arg("-p")
        .arg(port.to_string());
    if let Some((dir, name)) = client {
        cmd.arg("--cert")
            .arg(dir.join(format!("client-{name}.pem")))
            .arg("--key")
            .arg(dir.join(format!("client-{name}.key")));
    }
    let out = cmd.args(args).output().expect("redis-cli runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && !text.contains("Could not"), text)
}

#[test]
fn redis_tools_speak_tls_with_the_clusters_certificates_and_others_get_nothing() {
    require_redis_cli();
    let dir = tempfile::tempdir().expect("tempdir");
    let ours: PathBuf = dir.path().join("ours");
    let theirs: PathBuf = dir.path().join("theirs");
    certs(&ours, &["--nodes", "1", "--clients", "app"]);
    certs(&theirs, &["--nodes", "1", "--clients", "app"]);
    let tls_port = free_ports(1)[0];
    let certs_dir = ours.clone();
    let c = TestCluster::start_with(1, move |cfg| {
        cfg.redis.tls_port = tls_port;
        cfg.redis.tls_cert_file = Some(certs_dir.join("node-1.pem"));
        cfg.redis.tls_key_file = Some(certs_dir.join("node-1.key"));
        cfg.redis.tls_ca_cert_file = Some(certs_dir.join("ca.pem"));
    });
    c.wait_leader(1);

    // With the CA and a client certificate it signed: served.
    let app = Some((ours.as_path(), "app"));
    let (ok, out) = tls_cli(tls_port, &ours, app, &["SET", "k", "over tls"]);
    assert!(ok && out.contains("OK"), "{out}");
    let (ok, out) = tls_cli(tls_port, &ours, app, &["GET", "k"]);
    assert!(ok && out.contains("over tls"), "{out}");
    // The plain port serves the same data.
    assert!(cli(c.port(1), &["GET", "k"]).contains("over tls"));

    // No client certificate, or one from another CA: the handshake fails.
    let (ok, out) = tls_cli(tls_port, &ours, None, &["GET", "k"]);
    assert!(!ok && !out.contains("over tls"), "{out}");
    let foreign = Some((theirs.as_path(), "app"));
    let (ok, out) = tls_cli(tls_port, &ours, foreign, &["GET", "k"]);
    assert!(!ok && !out.contains("over tls"), "{out}");
    // A client that trusts another CA refuses the node.
    let (ok, out) = tls_cli(tls_port, &theirs, foreign, &["GET", "k"]);
    assert!(!ok && !out.contains("over tls"), "{out}");
    // Plain text on the TLS port: no Redis answer, the connection ends.
    let mut plain = Resp::connect_with(tls_port, WAIT).expect("connect");
    assert!(plain.call(&["PING"]).is_err(), "no answer in the clear");

    // redis-benchmark over TLS, as a user would run it.
    let out = Command::new("redis-benchmark")
        .args(["--tls", "--cacert"])
        .arg(ours.join("ca.pem"))
        .arg("--cert")
        .arg(ours.join("client-app.pem"))
        .arg("--key")
        .arg(ours.join("client-app.key"))
        .args([
            "-p",
            &tls_port.to_string(),
            "-t",
            "set,get",
            "-n",
            "2000",
            "-q",
        ])
        .output()
        .expect("redis-benchmark runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("SET") && text.contains("GET"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Still the one node serving both ports.
    let (ok, out) = tls_cli(tls_port, &ours, app, &["DBSIZE"]);
    assert!(ok, "{out}");
}
