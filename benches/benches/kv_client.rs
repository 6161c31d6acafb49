//! Dongting's benchmark shape with Sampan's native client: one client
//! (`BlockingClient`, one shard) with 2,000 requests in flight against 3
//! node processes on loopback (`--clients N` splits them over N client
//! threads: on 2 cores, two measured slower than one); 256-byte values
//! over 10,000 random keys;
//! put then get, with `sync` (fdatasync on a quorum before the ack) and
//! `async` durability. Each case warms up, then is measured for 30 s
//! (`--quick`: 3 s): ops/s and p50 / p99 / max latency.
//!
//! `cargo bench -p sampan-benches --bench kv_client [-- --quick]`
//! (`--only sync-put` runs one case, for profiling; the leader's pid is
//! printed on stderr). The bench binary starts its own nodes: it runs
//! itself again with `--node`.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark prints its table

/// The node binary's allocator (`demos/src/bin/sampan-node.rs`): this
/// process also runs the nodes (`--node`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use sampan::client::{BlockingClient, Client, ClientConfig};
use sampan::config::Durability;
use sampan::raft::Role;
use sampan_benches::Latencies;
use sampan_benches::cluster::{CLUSTER, Cluster, NodeSpec, run_node};
use sampan_fiber::TaskClass;
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Requests in flight at once, one per fiber of the client's shard
/// (`--in-flight N` changes it, for diagnosis).
const IN_FLIGHT: usize = 2_000;
/// Client threads sharing them (`--clients N`).
const CLIENTS: usize = 1;
const VALUE_BYTES: usize = 256;
const KEYS: u64 = 10_000;
const GROUP: u64 = 1;
/// Keys per request when the keys are written before the get case.
const PRELOAD_BATCH: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Put,
    Get,
}

/// One measured case.
struct Measured {
    name: String,
    ops: u64,
    errors: u64,
    wall: Duration,
    lat: Latencies,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--node") {
        return run_node(&args[i + 1]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let (warm, secs) = if quick {
        (Duration::from_secs(1), Duration::from_secs(3))
    } else {
        (Duration::from_secs(5), Duration::from_secs(30))
    };
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let in_flight: usize = args
        .iter()
        .position(|a| a == "--in-flight")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(IN_FLIGHT);
    let clients: usize = args
        .iter()
        .position(|a| a == "--clients")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(CLIENTS)
        .clamp(1, in_flight.max(1));
    let base = std::env::var_os("SAMPAN_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let root = base.join(format!("sampan-kv-client-bench-{}", std::process::id()));
    let cases = [
        (Durability::Sync, Kind::Put),
        (Durability::Sync, Kind::Get),
        (Durability::Async, Kind::Put),
        (Durability::Async, Kind::Get),
    ];
    let chosen: Vec<_> = cases
        .into_iter()
        .filter(|(d, k)| only.as_ref().is_none_or(|o| *o == tag(*d, *k)))
        .collect();
    let bar = ProgressBar::new(chosen.len() as u64 * (warm + secs).as_secs());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {elapsed}/{duration} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    for durability in [Durability::Sync, Durability::Async] {
        let kinds: Vec<Kind> = chosen
            .iter()
            .filter(|(d, _)| *d == durability)
            .map(|(_, k)| *k)
            .collect();
        if kinds.is_empty() {
            continue;
        }
        let dir = root.join(format!("{durability:?}").to_lowercase());
        let cluster = Cluster::start(
            &dir,
            NodeSpec {
                durability,
                ..NodeSpec::default()
            },
        );
        let pool: Vec<BlockingClient> = (0..clients)
            .map(|_| {
                BlockingClient::connect(
                    ClientConfig::new(cluster.services.clone()).cluster_id(CLUSTER),
                )
                .unwrap_or_else(|e| panic!("client: {e}"))
            })
            .collect();
        let client = &pool[0];
        let leader = wait_leader(client);
        eprintln!(
            "{durability:?}: group {GROUP} leader is node {leader}, pid {}",
            cluster.pids()[leader as usize - 1]
        );
        for kind in kinds {
            if kind == Kind::Get {
                preload(client);
            }
            let name = format!(
                "{} {}, {in_flight} in flight, {clients} client thread{}",
                format!("{durability:?}").to_lowercase(),
                if kind == Kind::Put { "put" } else { "get" },
                if clients == 1 { "" } else { "s" }
            );
            bar.set_message(name.clone());
            let (ops, errors, wall, lat) = std::thread::scope(|s| {
                let runs: Vec<_> = pool
                    .iter()
                    .enumerate()
                    .map(|(i, client)| {
                        // The first thread's share takes the remainder.
                        let share =
                            in_flight / clients + usize::from(i == 0) * (in_flight % clients);
                        let b = (i == 0).then(|| bar.clone());
                        s.spawn(move || {
                            client
                                .run(move |c| async move {
                                    load(c, kind, share, warm, secs, b).await
                                })
                                .unwrap_or_else(|e| panic!("client {i}: {e}"))
                        })
                    })
                    .collect();
                let mut total = (0, 0, Duration::ZERO, Latencies::new());
                for run in runs {
                    let (ops, errors, wall, lat) = run.join().expect("client thread");
                    total.0 += ops;
                    total.1 += errors;
                    total.2 = total.2.max(wall);
                    total.3.merge(&lat);
                }
                total
            });
            for client in &pool {
                let stats = client.stats().unwrap_or_else(|e| panic!("{e}"));
                eprintln!("{name}: client {stats:?}");
            }
            rows.push(Measured {
                name,
                ops,
                errors,
                wall,
                lat,
            });
        }
        for client in pool {
            client.close();
        }
        drop(cluster);
    }
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&root);
    println!("{}", table(&rows));
}

fn tag(d: Durability, k: Kind) -> String {
    format!("{d:?}-{k:?}").to_lowercase()
}

/// Waits (up to 30 s) for a node to say it leads the group; its id.
fn wait_leader(client: &BlockingClient) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = client
            .status(GROUP)
            .unwrap_or_else(|e| panic!("status: {e}"))
            .into_iter()
            .find(|s| s.status.as_ref().is_ok_and(|st| st.role == Role::Leader))
            .and_then(|s| s.node);
        if let Some(n) = found {
            return n;
        }
        assert!(Instant::now() < deadline, "no leader of group {GROUP}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("key-{:05}", i % KEYS))
}

/// Writes every key once, so every get finds its value.
fn preload(client: &BlockingClient) {
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    let keys: Vec<u64> = (0..KEYS).collect();
    for chunk in keys.chunks(PRELOAD_BATCH) {
        let pairs = chunk.iter().map(|i| (key(*i), value.clone())).collect();
        client
            .batch_put(GROUP, pairs, None)
            .unwrap_or_else(|e| panic!("preload: {e}"));
    }
}

/// A fiber's own random key stream (xorshift64*).
fn next_key(state: &mut u64) -> Bytes {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    key(state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32)
}

/// Runs `in_flight` fibers of back-to-back requests for `warm + secs`;
/// counts and times those that start after the warm-up.
async fn load(
    client: Client,
    kind: Kind,
    in_flight: usize,
    warm: Duration,
    secs: Duration,
    bar: Option<ProgressBar>,
) -> (u64, u64, Duration, Latencies) {
    let lat = Rc::new(RefCell::new(Latencies::new()));
    let (ops, errors) = (Rc::new(Cell::new(0u64)), Rc::new(Cell::new(0u64)));
    let start = Instant::now();
    let measure_from = start + warm;
    let end = measure_from + secs;
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    let mut fibers = Vec::with_capacity(in_flight);
    for f in 0..in_flight {
        let (client, lat, ops, errors, value) = (
            client.clone(),
            lat.clone(),
            ops.clone(),
            errors.clone(),
            value.clone(),
        );
        let fiber = sampan_fiber::spawn(TaskClass::Latency, "kv-client", async move {
            let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (f as u64 + 1);
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                let k = next_key(&mut state);
                let ok = match kind {
                    Kind::Put => client.put(GROUP, k, value.clone()).await.is_ok(),
                    Kind::Get => client.get(GROUP, k).await.is_ok_and(|v| v.is_some()),
                };
                if t >= measure_from {
                    if ok {
                        lat.borrow_mut().record(t.elapsed());
                        ops.set(ops.get() + 1);
                    } else {
                        errors.set(errors.get() + 1);
                    }
                }
            }
        })
        .unwrap_or_else(|e| panic!("spawn: {e}"));
        fibers.push(fiber);
    }
    let ticker = {
        let ops = ops.clone();
        sampan_fiber::spawn(TaskClass::Latency, "progress", async move {
            let mut last = (Instant::now(), 0u64);
            while Instant::now() < end {
                sampan_fiber::sleep(Duration::from_secs(1)).await;
                let now = (Instant::now(), ops.get());
                let rate = (now.1 - last.1) as f64 / (now.0 - last.0).as_secs_f64();
                if let Some(bar) = &bar {
                    bar.inc(1);
                    bar.set_message(format!("{kind:?}: {rate:.0} ops/s (this thread)"));
                }
                last = now;
            }
        })
        .unwrap_or_else(|e| panic!("spawn: {e}"))
    };
    for f in fibers {
        let _ = f.join().await;
    }
    let _ = ticker.join().await;
    let lat = Rc::try_unwrap(lat)
        .map(RefCell::into_inner)
        .unwrap_or_default();
    (ops.get(), errors.get(), secs, lat)
}

/// The results as a Markdown table.
fn table(rows: &[Measured]) -> String {
    let mut out = String::from(
        "| case | ops/s | p50 | p99 | max | errors |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {:.0} | {} | {} | {} | {} |\n",
            r.name,
            r.ops as f64 / r.wall.as_secs_f64(),
            ms(r.lat.quantile(0.5)),
            ms(r.lat.quantile(0.99)),
            ms(r.lat.quantile(1.0)),
            r.errors,
        ));
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
