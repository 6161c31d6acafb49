//! The short fault schedule CI runs: a 3-node cluster of real
//! `sampan-node` processes in network namespaces, Redis and native
//! clients, and every fault kind of the nemesis; the run must end
//! linearizable, with every acknowledged append present once, equal
//! replicas, every fault effective and no node crashed.
//!
//! A second run fills a node's disk again and again: the replicas there
//! must refuse writes with a clear error and resume once space returns
//! (the run waits for every replica to catch up). A third restarts every
//! node in turn by SIGTERM, again and again: each must hand over its
//! leaderships and exit by itself, and the clients must complete
//! operations while each node is down.
//!
//! Needs root (namespaces, iptables, tmpfs) and the demo binaries beside
//! `sampan-check` (`cargo test --workspace` builds them). The seed is
//! random unless `SAMPAN_CHECK_SEED` is set, and is printed; the length is
//! `SAMPAN_CHECK_SECS` (default 100 s, enough for every kind twice). The
//! runs take turns: two clusters at once would halve each on 2 cores.

use std::path::PathBuf;
use std::process::Command;

/// One run at a time.
static RUNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_cluster_under_every_fault_kind_stays_linearizable() {
    let secs = std::env::var("SAMPAN_CHECK_SECS").unwrap_or_else(|_| "100".into());
    run_check(&["--duration-secs", &secs]);
}

#[test]
fn a_full_disk_refuses_writes_and_the_node_resumes_when_space_returns() {
    run_check(&["--duration-secs", "30", "--faults", "disk-full"]);
}

#[test]
fn rolling_restarts_by_sigterm_under_load_keep_serving_and_lose_nothing() {
    run_check(&["--duration-secs", "40", "--faults", "rolling-restart"]);
}

/// Runs `sampan-check run` with `args` and a seed; panics with its
/// report (keeping the evidence) unless every check held.
fn run_check(args: &[&str]) {
    let _turn = RUNS.lock().unwrap_or_else(|e| e.into_inner());
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_sampan-check"));
    let bin_dir = exe.parent().expect("a directory").to_path_buf();
    for bin in ["sampan-node", "sampan-cli"] {
        assert!(
            bin_dir.join(bin).is_file(),
            "{} is missing: run the tests with `cargo test --workspace`, which builds the demo binaries",
            bin_dir.join(bin).display()
        );
    }
    for (tool, package) in [("ip", "iproute2"), ("iptables", "iptables")] {
        let found = Command::new(tool).arg("-V").output().is_ok();
        assert!(
            found,
            "`{tool}` is missing: install the package `{package}`"
        );
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the fault harness needs root (network namespaces, iptables, tmpfs)"
    );
    let seed = std::env::var("SAMPAN_CHECK_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let dir = tempfile::tempdir().expect("a scratch directory");
    let out = dir.path().join("run");
    eprintln!("sampan-check run --seed {seed} {}", args.join(" "));
    let run = Command::new(&exe)
        .args(["run", "--quiet", "--seed", &seed.to_string()])
        .args(args)
        .arg("--out")
        .arg(&out)
        .env("RUST_LOG", "warn,sampan_check=info")
        .output()
        .expect("sampan-check runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!("{stdout}");
    if run.status.code() != Some(0) {
        // Keep the evidence: the history, the faults and the nodes' logs.
        let kept = std::env::temp_dir().join(format!("sampan-check-failed-{seed}"));
        let _ = std::fs::remove_dir_all(&kept);
        let _ = Command::new("cp").arg("-r").arg(&out).arg(&kept).status();
        panic!(
            "seed {seed}: the fault run failed (evidence kept in {}):\n{stdout}\n{}",
            kept.display(),
            String::from_utf8_lossy(&run.stderr)
        );
    }
}
