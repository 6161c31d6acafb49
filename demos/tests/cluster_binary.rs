//! `sampan-cluster --no-demo` starts three nodes on the fixed demo ports,
//! serves Redis through each, and stops them all on SIGTERM; with
//! `--requirepass` every Redis port wants the password.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PORTS: [u16; 9] = [4001, 4002, 4003, 5001, 5002, 5003, 6381, 6382, 6383];

/// The demo ports something listens on now. (Binding would be the wrong
/// test: the nodes' listeners use SO_REUSEPORT, so a port whose old
/// connections sit in TIME_WAIT refuses a plain bind but not a node.)
fn ports_taken() -> Vec<u16> {
    PORTS
        .iter()
        .copied()
        .filter(|p| {
            let addr = SocketAddr::from(([127, 0, 0, 1], *p));
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
        })
        .collect()
}

fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

#[test]
fn the_cluster_binary_starts_serves_and_stops() {
    assert!(
        cli(1, &["--version"]).is_some(),
        "redis-cli is not installed: install the Debian package redis-tools"
    );
    // One after the other: both use the demo's fixed ports.
    run_demo_cluster(None);
    run_demo_cluster(Some("demo-pw-3c9d"));
}

/// Starts `sampan-cluster --no-demo` (with `--requirepass` when given),
/// checks every node serves, stops it with SIGTERM.
fn run_demo_cluster(requirepass: Option<&str>) {
    let auth: Vec<&str> = match requirepass {
        Some(p) => vec!["--no-auth-warning", "-a", p],
        None => Vec::new(),
    };
    let cli = |port: u16, args: &[&str]| {
        let all: Vec<&str> = auth.iter().chain(args).copied().collect();
        cli(port, &all)
    };
    let taken = ports_taken();
    assert!(
        taken.is_empty(),
        "the demo's fixed ports {taken:?} are taken: stop the demo cluster (or \
         whatever holds them) and run the test again"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sampan-cluster"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--no-demo")
        .args(
            requirepass
                .map(|p| ["--requirepass", p])
                .into_iter()
                .flatten(),
        )
        // Not under `cargo run`: the node binary is built already.
        .env_remove("CARGO")
        .stdout(Stdio::piped())
        // Its errors show in the test's output.
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sampan-cluster");
    // Collect stdout as it comes: the welcome (addresses) is printed only
    // once every group has a leader all nodes agree on, which can be after
    // the Redis ports already answer. SIGTERM before it would stop the
    // binary before it printed what this test checks.
    let output = Arc::new(Mutex::new(String::new()));
    let reader = {
        let output = output.clone();
        let mut stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                output
                    .lock()
                    .expect("output lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let welcomed = || {
        output
            .lock()
            .expect("output lock")
            .contains("The cluster is up")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut served = false;
    while Instant::now() < deadline && !served {
        served = welcomed()
            && (1..=3).all(|n| {
                let port = 6380 + n;
                let key = format!("k{n}");
                cli(port, &["SET", &key, "v"]).as_deref() == Some("OK")
                    && cli(port, &["GET", &key]).as_deref() == Some("v")
                    // With a password, a client without it is refused.
                    && (requirepass.is_none()
                        || self::cli(port, &["GET", &key])
                            .is_some_and(|o| o.contains("NOAUTH")))
            });
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // SAFETY: a pid we started and still own.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    reader.join().expect("stdout reader");
    let out = output.lock().expect("output lock").clone();
    assert!(served, "the cluster did not serve; output:\n{out}");
    assert!(status.success(), "{status}; output:\n{out}");
    assert!(
        out.contains("127.0.0.1:4001") && out.contains("6381"),
        "{out}"
    );
    if let Some(p) = requirepass {
        assert!(
            out.contains("redis-cli -p 6381 -a <password>") && !out.contains(p),
            "the hints say to pass the password, and do not print it:\n{out}"
        );
    }
    for n in 1..=3 {
        assert!(
            out.contains(&format!("node {n} stopped (exit status: 0)")),
            "{out}"
        );
    }
    let taken = ports_taken();
    assert!(
        taken.is_empty(),
        "ports {taken:?} are still taken after the stop"
    );
}
