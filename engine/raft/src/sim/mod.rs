//! The deterministic simulator of the Raft core (tests only).
//!
//! 3 to 7 nodes in memory (sometimes one voter and the rest learners); a
//! network that drops, duplicates, reorders, delays and partitions; a disk
//! whose unsynced writes are lost on a crash, or partly kept; crashes and
//! restarts; the runtime faults of `faults.rs` (lost and bunched ticks,
//! process stalls longer than an election timeout, clocks drifting up to
//! the lease's bound, late durability reports across truncations);
//! proposals, reads, leader transfers, membership changes and compaction —
//! all drawn from one seed. Invariants are checked after every input (see
//! `check.rs`); after healing, progress must resume within a bounded number
//! of ticks. The summary counts how often each runtime fault fired; a run
//! of many seeds fails if a fault some run was configured for never did.
//!
//! `SAMPAN_SIM_SEEDS=N` runs N seeds (default 10,000, about 15 s on two
//! cores),
//! starting at `SAMPAN_SIM_SEED_START` (default 0); `SAMPAN_SIM_SEED=S`
//! replays one seed, and `SAMPAN_SIM_TRACE=1` prints every node's state
//! every 10 ticks. A failing seed prints the command that replays it.

mod check;
mod cluster;
mod faults;
mod node;
pub(crate) mod storage;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::rng::SplitMix64;

pub(crate) use self::check::Counters;
pub(crate) use self::cluster::{Cluster, Params};

/// The default number of seeds a plain `cargo test` runs.
const SEEDS_DEFAULT: u64 = 10_000;

/// Runs of at least this many seeds must fire every fault they configure
/// (a replay of a few seeds need not).
const SEEDS_FAULTS_CHECKED: usize = 1_000;

fn run_seed(seed: u64) -> Result<Counters, String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut rng = SplitMix64::new(seed);
        let params = Params::random(&mut rng);
        if std::env::var_os("SAMPAN_SIM_SEED").is_some() {
            eprintln!("params: {params:?}");
        }
        let mut cluster = Cluster::new(seed, params);
        cluster.run();
        let mut counters = cluster.checker.counters;
        counters.ticks = cluster.tick;
        counters
    }));
    outcome.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panic".to_owned())
    })
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn seeds() {
    let seeds: Vec<u64> = match env_u64("SAMPAN_SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let start = env_u64("SAMPAN_SIM_SEED_START").unwrap_or(0);
            let count = env_u64("SAMPAN_SIM_SEEDS").unwrap_or(SEEDS_DEFAULT);
            (start..start.saturating_add(count)).collect()
        }
    };
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let totals = std::sync::Mutex::new((Counters::default(), Vec::<(u64, String)>::new()));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(&seed) = seeds.get(k) else { break };
                    let result = run_seed(seed);
                    let mut guard = totals.lock().unwrap_or_else(|e| e.into_inner());
                    match result {
                        Ok(counters) => guard.0.add(&counters),
                        Err(msg) => guard.1.push((seed, msg)),
                    }
                }
            });
        }
    });
    let (stats, mut failures) = totals.into_inner().unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "raft sim: {} seeds in {:.1?} on {threads} threads",
        seeds.len(),
        started.elapsed()
    );
    eprintln!("raft sim: {stats:?}");
    let silent = stats.faults.never_fired();
    failures.sort();
    for (seed, msg) in &failures {
        eprintln!("seed {seed} failed: {msg}");
        eprintln!(
            "  replay: SAMPAN_SIM_SEED={seed} cargo test -p sampan-raft --lib sim::seeds -- --nocapture"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed",
        failures.len(),
        seeds.len()
    );
    assert!(
        seeds.len() < SEEDS_FAULTS_CHECKED || silent.is_empty(),
        "faults configured but never fired: {silent:?}"
    );
}
