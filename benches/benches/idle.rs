//! The cost of idle groups: 3 node processes on loopback with 1,000 and
//! then 10,000 groups each; once every group has a leader and has gone
//! to sleep (hibernation), the CPU each node uses over a window is read
//! from /proc. `cargo bench -p sampan-benches --bench idle [-- --quick]`.

/// The node binary's allocator (`demos/src/bin/sampan-node.rs`): this
/// process also runs the nodes (`--node`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use sampan::config::Durability;
use sampan::service::{Op, decode_status};
use sampan_benches::cluster::{Cluster, NodeSpec, call, client_runtime, connect_all, run_node};
use sampan_fiber::TaskClass;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--node") {
        return run_node(&args[i + 1]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let window = Duration::from_secs(if quick { 3 } else { 10 });
    let base = std::env::var_os("SAMPAN_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let root = base.join(format!("sampan-idle-bench-{}", std::process::id()));
    let client = client_runtime();
    let mut out = String::from(
        "| groups per node | start to all asleep | CPU per node (% of one core) |\n|---:|---:|---|\n",
    );
    // `--groups 1000,4000` measures other counts.
    let counts: Vec<u64> = args
        .iter()
        .position(|a| a == "--groups")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || vec![1_000, 10_000],
            |v| v.split(',').filter_map(|n| n.parse().ok()).collect(),
        );
    for groups in counts {
        let spec = NodeSpec {
            durability: Durability::Async,
            groups,
            grow_step_bytes: 64 << 10,
            ..NodeSpec::default()
        };
        let start = Instant::now();
        let cluster = Cluster::start(&root.join(format!("g{groups}")), spec);
        let services = cluster.services.clone();
        client
            .shard(0)
            .unwrap_or_else(|e| panic!("{e}"))
            .run_blocking(TaskClass::Latency, move || async move {
                wait_asleep(&services, groups).await;
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let settled = start.elapsed();
        eprintln!("{groups} groups: all asleep after {settled:.1?}; measuring {window:?}");
        let before: Vec<u64> = cluster.pids().iter().map(|p| cpu_ticks(*p)).collect();
        let t = Instant::now();
        std::thread::sleep(window);
        let wall = t.elapsed().as_secs_f64();
        let after: Vec<u64> = cluster.pids().iter().map(|p| cpu_ticks(*p)).collect();
        let hz = clock_ticks_per_sec();
        let cpu: Vec<String> = before
            .iter()
            .zip(&after)
            .map(|(b, a)| format!("{:.2}%", (a - b) as f64 / hz / wall * 100.0))
            .collect();
        out.push_str(&format!(
            "| {groups} | {:.1} s | {} |\n",
            settled.as_secs_f64(),
            cpu.join(", ")
        ));
        drop(cluster);
    }
    let _ = std::fs::remove_dir_all(&root);
    let _ = writeln!(std::io::stdout().lock(), "{out}");
}

/// Waits until every group has a leader that reports it hibernating.
async fn wait_asleep(services: &[std::net::SocketAddr], groups: u64) {
    let conns = connect_all(services).await;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut next = 1;
    let mut last_report = Instant::now();
    while next <= groups {
        let mut asleep = false;
        for c in &conns {
            asleep = match call(c, next, Op::Status, Bytes::new()).await {
                Ok(b) => decode_status(b).is_ok_and(|s| s.leader.is_some() && s.hibernating),
                // Not started there yet (the node still starts its groups,
                // or has not reached this one).
                Err(e) if e.contains("has no group") || e.contains("is starting") => false,
                Err(e) => panic!("group {next}: {e} (did a node die?)"),
            };
            if !asleep {
                break;
            }
        }
        if asleep {
            next += 1;
            continue;
        }
        assert!(
            Instant::now() < deadline,
            "group {next} not asleep after 10 min"
        );
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("waiting: {} of {groups} groups asleep", next - 1);
            last_report = Instant::now();
        }
        sampan_fiber::sleep(Duration::from_millis(50)).await;
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    num(11) + num(12) // utime, stime (fields 14 and 15 of stat)
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}
