//! Benchmarks of the storage crate on the real disk: log append throughput
//! (`sync` and `async`) against a plain `write` + `fdatasync` loop on the
//! same disk, group commit across groups against concurrent plain syncs,
//! reads, and the open time of a 1 GiB log.
//!
//! Run: `cargo bench -p sampan-benches --bench storage` (add `-- --quick`
//! for a short run; `SAMPAN_BENCH_DIR` picks the disk, default the temp
//! directory). Prints Markdown tables.

#![allow(clippy::print_stdout)] // a benchmark prints its table

use indicatif::{ProgressBar, ProgressStyle};
use sampan_benches::Latencies;
use sampan_fiber::fs::File;
use sampan_fiber::{Runtime, TaskClass, spawn};
use sampan_storage::{
    DiskFile, DiskFs, LogConfig, LogWriter, RaftLog, RunBuilder, SegmentLog, SyncMode,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One measured line.
struct Line {
    name: String,
    entries_per_sec: f64,
    mib_per_sec: f64,
    lat: Option<(Duration, Duration)>,
    note: String,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let base = std::env::var_os("SAMPAN_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let root = base.join(format!("sampan-storage-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let rt = Runtime::builder()
        .shards(1)
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let shard = rt.shard(0).unwrap_or_else(|e| panic!("{e}"));
    let secs = if quick { 0.5 } else { 3.0 };
    let bar = ProgressBar::new(18);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut lines = Vec::new();
    // `SAMPAN_BENCH_APPEND=65536` measures one entry size and skips the
    // rest (for profiling).
    let only: Option<usize> = std::env::var("SAMPAN_BENCH_APPEND")
        .ok()
        .and_then(|v| v.parse().ok());
    let sizes = only.map_or_else(|| vec![100usize, 1024, 4096, 64 << 10], |s| vec![s]);
    for &size in &sizes {
        for mode in [SyncMode::Sync, SyncMode::Async] {
            bar.set_message(format!("append {size} B {mode:?}"));
            let r = root.clone();
            let plain = shard
                .run_blocking(TaskClass::Latency, move || async move {
                    plain_loop(&r.join("plain"), size, mode, secs).await
                })
                .unwrap_or_else(|e| panic!("{e}"));
            settle(&root.join("plain"));
            let mut logs = vec![(String::new(), cfg(mode))];
            if size == 4096 && mode == SyncMode::Sync {
                // The same append with segment space only fallocated (no
                // zero-ahead, no spare): what the preparation buys.
                let bare = LogConfig {
                    zero_ahead_bytes: 0,
                    ..cfg(mode)
                };
                logs.push((" (no zero-ahead)".into(), bare));
            }
            for (k, (suffix, cfg)) in logs.into_iter().enumerate() {
                let dir = root.join(format!("log-{size}-{mode:?}-{k}"));
                let d = dir.clone();
                let log = shard
                    .run_blocking(TaskClass::Latency, move || async move {
                        log_append(&d, size, cfg, secs).await
                    })
                    .unwrap_or_else(|e| panic!("{e}"));
                settle(&dir);
                let ratio = log.mib_per_sec / plain.mib_per_sec.max(1e-9);
                lines.push(Line {
                    name: format!("{}{suffix}", log.name),
                    note: format!("{:.0}% of plain", ratio * 100.0),
                    ..log
                });
            }
            lines.push(plain);
            bar.inc(1);
            eprintln!("done: append {size} B {mode:?}");
        }
    }
    if only.is_some() {
        bar.finish_and_clear();
        if let Err(e) = rt.shutdown(Duration::from_secs(5)) {
            eprintln!("shutdown: {e}");
        }
        let _ = std::fs::remove_dir_all(&root);
        print!("{}", table(&lines));
        return;
    }
    for groups in [1usize, 4, 16, 64] {
        bar.set_message(format!("group commit, {groups} groups"));
        let r = root.clone();
        let (plain, log) = shard
            .run_blocking(TaskClass::Latency, move || async move {
                let plain = plain_concurrent(&r.join(format!("pc-{groups}")), groups, secs).await;
                let log = group_commit(&r.join(format!("gc-{groups}")), groups, secs).await;
                (plain, log)
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let ratio = log.entries_per_sec / plain.entries_per_sec.max(1e-9);
        lines.push(Line {
            note: format!("{} ({:.0}% of plain)", log.note, ratio * 100.0),
            ..log
        });
        lines.push(plain);
        bar.inc(1);
        eprintln!("done: group commit, {groups} groups");
    }
    bar.set_message("reads");
    let r = root.clone();
    lines.push(
        shard
            .run_blocking(TaskClass::Latency, move || async move {
                reads(&r.join("reads"), secs).await
            })
            .unwrap_or_else(|e| panic!("{e}")),
    );
    bar.inc(1);
    eprintln!("done: reads; filling the log for the open benchmark");
    let gib = if quick { 256u64 << 20 } else { 1 << 30 };
    let r = root.clone();
    lines.push(
        shard
            .run_blocking(TaskClass::Latency, move || async move {
                open_time(&r.join("open"), gib).await
            })
            .unwrap_or_else(|e| panic!("{e}")),
    );
    bar.inc(1);
    bar.finish_and_clear();
    if let Err(e) = rt.shutdown(Duration::from_secs(5)) {
        eprintln!("shutdown: {e}");
    }
    let _ = std::fs::remove_dir_all(&root);
    print!("{}", table(&lines));
}

/// Removes a measured run's files and flushes the page cache, so that the
/// next measurement does not pay for the writeback of this one (a plain
/// `async` loop leaves gigabytes dirty).
fn settle(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    if let Err(e) = std::process::Command::new("sync").status() {
        eprintln!("sync: {e}");
    }
}

fn table(lines: &[Line]) -> String {
    let mut out = String::from(
        "| benchmark | entries/s | MiB/s | p50 | p99 | note |\n|---|---:|---:|---:|---:|---|\n",
    );
    for l in lines {
        let (p50, p99) = l.lat.map_or(("-".into(), "-".into()), |(a, b)| {
            (format!("{a:.1?}"), format!("{b:.1?}"))
        });
        out.push_str(&format!(
            "| {} | {:.0} | {:.1} | {p50} | {p99} | {} |\n",
            l.name, l.entries_per_sec, l.mib_per_sec, l.note
        ));
    }
    out
}

fn line(
    name: String,
    n: u64,
    bytes: u64,
    wall: Duration,
    lat: Option<&Latencies>,
    note: String,
) -> Line {
    let s = wall.as_secs_f64().max(1e-9);
    Line {
        name,
        entries_per_sec: n as f64 / s,
        mib_per_sec: bytes as f64 / s / (1 << 20) as f64,
        lat: lat.map(|l| (l.quantile(0.5), l.quantile(0.99))),
        note,
    }
}

fn cfg(mode: SyncMode) -> LogConfig {
    LogConfig {
        sync_mode: mode,
        ..LogConfig::default()
    }
}

async fn open_log(
    dir: &Path,
    group: u64,
    mode: SyncMode,
    writer: LogWriter<DiskFile>,
) -> SegmentLog<DiskFs> {
    SegmentLog::open(DiskFs, dir, group, cfg(mode), writer)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Appends one `size`-byte entry at a time and waits until it is durable,
/// until `secs` after `start`; returns the count and each append's latency.
async fn append_until(
    log: &SegmentLog<DiskFs>,
    size: usize,
    start: Instant,
    secs: f64,
) -> (u64, Latencies) {
    let payload = vec![7u8; size];
    let mut lat = Latencies::new();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        let mut b = RunBuilder::new(log.last_index() + 1);
        b.push(1, 1, &payload);
        let last = log
            .append(&b.finish())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        log.sync(last).await.unwrap_or_else(|e| panic!("{e}"));
        lat.record(t.elapsed());
        n += 1;
    }
    (n, lat)
}

/// A plain loop on the same disk: `write` (+ `fdatasync` in sync mode) of
/// `size` bytes at a time into a file preallocated in 4 MiB steps, as the
/// log's segments are.
async fn plain_loop(dir: &Path, size: usize, mode: SyncMode, secs: f64) -> Line {
    sampan_fiber::fs::create_dir_all(dir)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let f = File::open(dir.join(format!("plain-{size}-{mode:?}")), true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut lat = Latencies::new();
    let (mut n, mut off, mut alloc) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        if off + size as u64 > alloc {
            alloc += (4 << 20).max(size as u64);
            f.pre_allocate(alloc)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        f.write_all_at(vec![7u8; size], off)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if mode == SyncMode::Sync {
            f.fdatasync().await.unwrap_or_else(|e| panic!("{e}"));
        }
        lat.record(t.elapsed());
        off += size as u64;
        n += 1;
    }
    line(
        format!(
            "plain write{} {size} B",
            if mode == SyncMode::Sync {
                "+fdatasync"
            } else {
                ""
            }
        ),
        n,
        off,
        start.elapsed(),
        Some(&lat),
        String::new(),
    )
}

async fn log_append(dir: &Path, size: usize, cfg: LogConfig, secs: f64) -> Line {
    let mode = cfg.sync_mode;
    let log = SegmentLog::open(DiskFs, dir, 1, cfg, LogWriter::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    let (n, lat) = append_until(&log, size, start, secs).await;
    let wall = start.elapsed();
    line(
        format!("log append {size} B {mode:?}"),
        n,
        n * size as u64,
        wall,
        Some(&lat),
        String::new(),
    )
}

/// `groups` fibers, each appending 4 KiB entries to its own log and waiting
/// for durability: syncs per second under group commit.
async fn group_commit(dir: &Path, groups: usize, secs: f64) -> Line {
    let writer = LogWriter::new();
    let mut fibers = Vec::new();
    let mut logs = Vec::new();
    for g in 0..groups {
        logs.push(
            open_log(
                &dir.join(format!("g{g}")),
                g as u64,
                SyncMode::Sync,
                writer.clone(),
            )
            .await,
        );
    }
    let start = Instant::now();
    for log in logs {
        fibers.push(
            spawn(TaskClass::Latency, "appender", async move {
                append_until(&log, 4096, start, secs).await
            })
            .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let mut total = 0;
    let mut lat = Latencies::new();
    for f in fibers {
        let (n, l) = f.join().await.unwrap_or_else(|e| panic!("{e}"));
        total += n;
        if lat.count() == 0 {
            lat = l;
        }
    }
    let wall = start.elapsed();
    let (rounds, syncs) = writer.stats();
    line(
        format!("group commit, {groups} group(s), 4 KiB"),
        total,
        total * 4096,
        wall,
        Some(&lat),
        format!("{rounds} rounds, {syncs} fdatasyncs"),
    )
}

/// The same load without the log: `groups` fibers, each `write` +
/// `fdatasync` of 4 KiB to its own preallocated file.
async fn plain_concurrent(dir: &Path, groups: usize, secs: f64) -> Line {
    sampan_fiber::fs::create_dir_all(dir)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    let mut fibers = Vec::new();
    for g in 0..groups {
        let f = File::open(dir.join(format!("f{g}")), true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        fibers.push(
            spawn(TaskClass::Latency, "plain", async move {
                let (mut n, mut off, mut alloc) = (0u64, 0u64, 0u64);
                while start.elapsed().as_secs_f64() < secs {
                    if off + 4096 > alloc {
                        alloc += 4 << 20;
                        f.pre_allocate(alloc)
                            .await
                            .unwrap_or_else(|e| panic!("{e}"));
                    }
                    f.write_all_at(vec![7u8; 4096], off)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    f.fdatasync().await.unwrap_or_else(|e| panic!("{e}"));
                    off += 4096;
                    n += 1;
                }
                n
            })
            .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    let mut total = 0;
    for f in fibers {
        total += f.join().await.unwrap_or_else(|e| panic!("{e}"));
    }
    line(
        format!("plain write+fdatasync, {groups} file(s), 4 KiB"),
        total,
        total * 4096,
        start.elapsed(),
        None,
        String::new(),
    )
}

async fn fill(log: &SegmentLog<DiskFs>, bytes: u64, entry: usize) {
    let payload = vec![7u8; entry];
    let mut written = 0;
    while written < bytes {
        let mut b = RunBuilder::new(log.last_index() + 1);
        for _ in 0..16 {
            b.push(1, 1, &payload);
        }
        log.append(&b.finish())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        written += 16 * entry as u64;
    }
    log.sync(log.last_index())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn reads(dir: &Path, secs: f64) -> Line {
    let log = open_log(dir, 1, SyncMode::Async, LogWriter::new()).await;
    fill(&log, 128 << 20, 1024).await;
    let (mut n, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    let mut from = log.first_index();
    while start.elapsed().as_secs_f64() < secs {
        let run = log.read(from, 64 << 10).unwrap_or_else(|e| panic!("{e}"));
        n += run.len();
        bytes += run.bytes().len() as u64;
        from = if run.last_index() >= log.last_index() {
            log.first_index()
        } else {
            run.last_index() + 1
        };
    }
    line(
        "read 64 KiB runs of 1 KiB entries (mapped, CRC-checked)".into(),
        n,
        bytes,
        start.elapsed(),
        None,
        String::new(),
    )
}

async fn open_time(dir: &Path, bytes: u64) -> Line {
    let log = open_log(dir, 1, SyncMode::Async, LogWriter::new()).await;
    fill(&log, bytes, 4096).await;
    let entries = log.last_index();
    log.close().await.unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    let log = open_log(dir, 1, SyncMode::Sync, LogWriter::new()).await;
    let wall = start.elapsed();
    assert_eq!(log.last_index(), entries);
    line(
        format!(
            "open a {} MiB log ({} segments)",
            bytes >> 20,
            log.segment_count()
        ),
        entries,
        bytes,
        wall,
        None,
        format!("ready in {:.0} ms", wall.as_secs_f64() * 1e3),
    )
}
