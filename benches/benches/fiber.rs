//! Micro-benchmarks of the fiber runtime: cross-thread submit round trip,
//! cross-shard round trip, local channel throughput, signal wake-up latency.
//!
//! Run: `cargo bench -p sampan-benches --bench fiber` (add `-- --quick` for
//! a short run). Prints a Markdown table.

#![allow(clippy::print_stdout)] // a benchmark prints its table

use sampan_benches::{Latencies, Row, table};
use sampan_fiber::{Runtime, Signal, TaskClass, channel, spawn};
use std::time::{Duration, Instant};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n: u64 = if quick { 20_000 } else { 200_000 };
    let rt = Runtime::builder()
        .shards(2)
        .pin_cpus(true)
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let mut rows = Vec::new();
    rows.push(cross_thread(&rt, n / 4));
    eprintln!("done: cross-thread");
    rows.push(cross_shard(&rt, n / 4));
    eprintln!("done: cross-shard");
    rows.push(local_channel(&rt, n * 10));
    eprintln!("done: local channel");
    rows.push(signal_wakeup(&rt, n));
    eprintln!("done: signal");
    if let Err(e) = rt.shutdown(Duration::from_secs(1)) {
        eprintln!("shutdown: {e}");
    }
    print!("{}", table(&rows));
}

fn cross_thread(rt: &Runtime, n: u64) -> Row {
    let shard = rt.shard(0).unwrap_or_else(|e| panic!("{e}"));
    let mut lat = Latencies::new();
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        shard
            .run_blocking(TaskClass::Latency, || async {})
            .unwrap_or_else(|e| panic!("{e}"));
        lat.record(t.elapsed());
    }
    Row::new(
        "cross-thread submit round trip (std thread -> shard)",
        n,
        start.elapsed(),
        Some(&lat),
    )
}

fn cross_shard(rt: &Runtime, n: u64) -> Row {
    let handle = rt.handle();
    let (lat, wall) = rt
        .shard(0)
        .unwrap_or_else(|e| panic!("{e}"))
        .run_blocking(TaskClass::Latency, move || async move {
            let other = handle.shard(1).unwrap_or_else(|e| panic!("{e}"));
            let mut lat = Latencies::new();
            let start = Instant::now();
            for _ in 0..n {
                let t = Instant::now();
                other
                    .run(TaskClass::Latency, || async {})
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                lat.record(t.elapsed());
            }
            (lat, start.elapsed())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    Row::new(
        "cross-shard round trip (shard 0 -> shard 1)",
        n,
        wall,
        Some(&lat),
    )
}

fn local_channel(rt: &Runtime, n: u64) -> Row {
    let wall = rt
        .shard(0)
        .unwrap_or_else(|e| panic!("{e}"))
        .run_blocking(TaskClass::Latency, move || async move {
            let (tx, rx) = channel::<u64>(1024);
            let start = Instant::now();
            let producer = spawn(TaskClass::Latency, "producer", async move {
                for i in 0..n {
                    if tx.send(i).await.is_err() {
                        break;
                    }
                }
            })
            .unwrap_or_else(|e| panic!("{e}"));
            let mut sum = 0u64;
            while let Some(v) = rx.recv().await {
                sum = sum.wrapping_add(v);
            }
            producer.join().await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(sum, n * (n - 1) / 2);
            start.elapsed()
        })
        .unwrap_or_else(|e| panic!("{e}"));
    Row::new(
        "local channel messages (one shard, cap 1024)",
        n,
        wall,
        None,
    )
}

fn signal_wakeup(rt: &Runtime, n: u64) -> Row {
    let (lat, wall) = rt
        .shard(0)
        .unwrap_or_else(|e| panic!("{e}"))
        .run_blocking(TaskClass::Latency, move || async move {
            let ping = Signal::new();
            let pong = Signal::new();
            let (ping2, pong2) = (ping.clone(), pong.clone());
            let echo = spawn(TaskClass::Latency, "echo", async move {
                for _ in 0..n {
                    let w = ping2.wait();
                    w.await;
                    pong2.notify_one();
                }
            })
            .unwrap_or_else(|e| panic!("{e}"));
            sampan_fiber::yield_now().await;
            let mut lat = Latencies::new();
            let start = Instant::now();
            for _ in 0..n {
                let back = pong.wait();
                let t = Instant::now();
                ping.notify_one();
                back.await;
                // One round trip is two wake-ups.
                lat.record(t.elapsed() / 2);
            }
            echo.join().await.unwrap_or_else(|e| panic!("{e}"));
            (lat, start.elapsed())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    Row::new(
        "signal wake-up (fiber -> fiber, same shard)",
        n * 2,
        wall,
        Some(&lat),
    )
}
