//! Replicated proposals: 3 nodes, one process each, on loopback; 64
//! concurrent proposers of 100-byte KV puts, sent to each group's leader
//! over the service port; `sync` and `async` durability, 1 and 16 groups.
//! The disk's raw `write` + `fdatasync` rate is measured in the same run.
//!
//! `cargo bench -p sampan-benches --bench propose [-- --quick]`. The bench
//! binary starts its own nodes: it runs itself again with `--node`.
//! `SAMPAN_BENCH_LOG_LAYOUT=per_group` runs the nodes with each group's
//! own log files instead of the shard's shared log; `--leaders-on-one`
//! moves every group's leader to node 1 first; `--only sync-16` runs one
//! case.

/// The node binary's allocator (`demos/src/bin/sampan-node.rs`): this
/// process also runs the nodes (`--node`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use sampan::config::Durability;
use sampan::raft::Role;
use sampan::service::{Op, decode_status};
use sampan_benches::cluster::{Cluster, NodeSpec, call, client_runtime, connect_all, run_node};
use sampan_benches::{Latencies, Row, closed_loop, table};
use sampan_fiber::TaskClass;
use sampan_kv::{KvCommand, KvRequest};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

const PROPOSERS: usize = 64;
const COMMAND_BYTES: usize = 100;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--node") {
        return run_node(&args[i + 1]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let (warm, secs): (f64, f64) = if quick { (1.0, 2.0) } else { (3.0, 10.0) };
    let base = std::env::var_os("SAMPAN_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let root = base.join(format!("sampan-propose-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let fsyncs = raw_fdatasync_rate(&root, secs.min(3.0));
    eprintln!("raw write(4 KiB) + fdatasync: {fsyncs:.0}/s");
    let cases = [
        (Durability::Sync, 1),
        (Durability::Async, 1),
        (Durability::Sync, 16),
        (Durability::Async, 16),
    ];
    let bar = ProgressBar::new(cases.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let client = client_runtime();
    let mut rows = vec![Row::new(
        "raw write(4 KiB)+fdatasync, same disk",
        (fsyncs * secs) as u64,
        Duration::from_secs_f64(secs),
        None,
    )];
    // `--leaders-on-one`: every group's leader moved to node 1 before the
    // load (by default they stay where their elections put them).
    let one_leader_node = args.iter().any(|a| a == "--leaders-on-one");
    // `--only async-16` runs one case (for profiling).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    for (durability, groups) in cases {
        let tag = format!("{durability:?}-{groups}").to_lowercase();
        if only.as_ref().is_some_and(|o| *o != tag) {
            continue;
        }
        let name = format!("3 nodes, {groups} group(s), {durability:?}, {PROPOSERS} proposers");
        bar.set_message(name.clone());
        let dir = root.join(format!("{durability:?}-{groups}"));
        let cluster = Cluster::start(
            &dir,
            NodeSpec {
                durability,
                groups,
                ..NodeSpec::default()
            },
        );
        let services = cluster.services.clone();
        let (ops, wall, lat) = client
            .shard(0)
            .unwrap_or_else(|e| panic!("{e}"))
            .run_blocking(TaskClass::Latency, move || async move {
                load(services, groups, one_leader_node, warm, secs).await
            })
            .unwrap_or_else(|e| panic!("{e}"));
        drop(cluster);
        rows.push(Row::new(&name, ops, wall, Some(&lat)));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&root);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", table(&rows));
}

/// Writes 4 KiB at the start of a preallocated file and `fdatasync`s it,
/// for `secs`: the disk's ceiling for synced writes one at a time.
fn raw_fdatasync_rate(dir: &Path, secs: f64) -> f64 {
    let path = dir.join("raw-fsync");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let block = vec![7u8; 4096];
    f.write_all(&block).unwrap_or_else(|e| panic!("{e}"));
    f.sync_all().unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        use std::os::unix::fs::FileExt;
        f.write_all_at(&block, 0).unwrap_or_else(|e| panic!("{e}"));
        f.sync_data().unwrap_or_else(|e| panic!("{e}"));
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// A 100-byte put command.
fn command(i: u64) -> Bytes {
    let key = format!("key-{:012}", i % 100_000);
    let overhead = KvRequest::without_session(KvCommand::put(key.clone(), ""))
        .to_bytes()
        .len();
    let value = vec![b'x'; COMMAND_BYTES.saturating_sub(overhead)];
    KvRequest::without_session(KvCommand::put(key, value)).to_bytes()
}

/// Connects to every node, finds each group's leader, and runs the
/// proposers: `warm` seconds not reported, then `secs` measured.
async fn load(
    services: Vec<SocketAddr>,
    groups: u64,
    one_leader_node: bool,
    warm: f64,
    secs: f64,
) -> (u64, Duration, Latencies) {
    let conns = connect_all(&services).await;
    let mut leaders = Vec::new();
    for g in 1..=groups {
        let deadline = Instant::now() + Duration::from_secs(30);
        'found: loop {
            for (i, c) in conns.iter().enumerate() {
                if let Ok(b) = call(c, g, Op::Status, Bytes::new()).await
                    && decode_status(b).is_ok_and(|s| s.role == Role::Leader)
                {
                    if !one_leader_node || i == 0 {
                        leaders.push(i);
                        break 'found;
                    }
                    // Node 1 (the first service address) takes it over.
                    let to = Bytes::copy_from_slice(&1u64.to_le_bytes());
                    let _ = call(c, g, Op::TransferLeader, to).await;
                }
            }
            assert!(Instant::now() < deadline, "no leader of group {g}");
            sampan_fiber::sleep(Duration::from_millis(20)).await;
        }
    }
    let conns = Rc::new(conns);
    let secs = Duration::from_secs_f64(secs);
    closed_loop(
        PROPOSERS,
        Duration::from_secs_f64(warm),
        secs,
        move |p, n| {
            let (conns, group) = (conns.clone(), (p as u64 % groups) + 1);
            let at = leaders[(group - 1) as usize];
            async move {
                call(
                    &conns[at],
                    group,
                    Op::Propose,
                    command(p as u64 * 1_000_000 + n),
                )
                .await
                .map(|_| ())
                .map_err(|e| format!("group {group}: {e}"))
            }
        },
    )
    .await
}
