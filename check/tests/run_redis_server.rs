//! The checker judged on a history it did not make up: the harness's
//! Redis clients drive a real `redis-server` (AOF, fsync always) for at
//! least 100,000 operations, and `sampan-check run` (which runs `verify`
//! on the history and the token checks) must find it linearizable.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_redis_server_history_of_100k_operations_is_linearizable() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let port = free_port();
    let server = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run redis-server ({e}): install the package `redis-server` (the README's test script does)")
        });
    let _server = Server(server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = dir.path().join("run");
    let run = Command::new(env!("CARGO_BIN_EXE_sampan-check"))
        .args(["run", "--quiet", "--redis", &format!("127.0.0.1:{port}")])
        .args([
            "--redis-clients",
            "8",
            "--ops",
            "100000",
            "--duration-secs",
            "600",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("sampan-check runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!("{stdout}");
    assert_eq!(
        run.status.code(),
        Some(0),
        "redis-server's history was judged not linearizable (or the run failed):\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("summary.json")).expect("a summary"),
    )
    .expect("the summary is JSON");
    let ops = summary["ok"].as_u64().unwrap_or(0) + summary["fail"].as_u64().unwrap_or(0);
    assert!(ops >= 100_000, "only {ops} operations completed: {summary}");
}
