//! Descriptors per group on the real disk: an idle group (no call in
//! flight) keeps at most one file open, its active segment, whatever it
//! did before (appends across segments, syncs, truncations, purges, a
//! snapshot install, a reopen), and the status file keeps none between
//! saves. Counted from `/proc/self/fd`, by where each descriptor points.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sampan_fiber::{IO_MEMORY_MIN_BYTES, Runtime, TaskClass};
use sampan_storage::{DiskFs, HardState, LogConfig, LogWriter, RaftLog, SegmentLog, StatusFile};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn runtime() -> Runtime {
    Runtime::builder()
        .shards(1)
        .io_memory_bytes(IO_MEMORY_MIN_BYTES)
        .build()
        .unwrap()
}

/// Small segments (several per test), with or without the background
/// preparation (zero-ahead and the spare segment).
fn cfg(zero_ahead_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 10,
        grow_step_bytes: 16 << 10,
        index_grow_step_bytes: 4096,
        zero_ahead_bytes,
        ..LogConfig::default()
    }
}

/// The files under `dir` that this process holds open now.
fn open_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        // A descriptor may close between the listing and the readlink.
        if let Ok(target) = std::fs::read_link(entry.unwrap().path())
            && target.starts_with(dir)
        {
            out.push(target);
        }
    }
    out
}

/// Whether `open` is at most one descriptor, a segment's.
fn is_idle(open: &[PathBuf]) -> bool {
    open.len() <= 1
        && open
            .iter()
            .all(|p| p.extension().is_some_and(|e| e == "seg"))
}

/// Asserts the group holds at most one descriptor, a segment's.
fn assert_idle(dir: &Path, step: &str) {
    assert_listing_idle(&open_files_under(dir), step);
}

fn assert_listing_idle(open: &[PathBuf], step: &str) {
    assert!(
        is_idle(open),
        "after {step}: {} files open: {open:?}",
        open.len()
    );
}

/// With the background preparation on, a preparer fiber may be busy right
/// after a call returns (it holds the spare open while filling it): waits
/// for it to finish, then asserts as [`assert_idle`].
async fn assert_idle_settled(dir: &Path, step: &str) {
    // One listing decides: the preparer may open the spare again between
    // two listings, which says nothing about whether it ever lets go.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = open_files_under(dir);
        if is_idle(&open) || Instant::now() >= deadline {
            return assert_listing_idle(&open, step);
        }
        sampan_fiber::sleep(Duration::from_millis(5)).await;
    }
}

async fn open_log(dir: &Path, cfg: LogConfig) -> SegmentLog<DiskFs> {
    SegmentLog::open(DiskFs, &dir.join("log"), 1, cfg, LogWriter::new())
        .await
        .unwrap()
}

/// Appends `n` entries of `term` and waits until they are durable.
async fn append_synced(log: &SegmentLog<DiskFs>, n: u64, term: u64) {
    let run = entries(log.last_index() + 1, n, term, 0);
    log.append(&run).await.unwrap();
    log.sync(run.last_index()).await.unwrap();
}

/// Every change a group makes, checking after each that it is back to one
/// descriptor (`settle`: wait for the background preparer first).
async fn exercise(group_dir: PathBuf, cfg: LogConfig, settle: bool) {
    let check = |step: &'static str| {
        let dir = group_dir.clone();
        async move {
            if settle {
                assert_idle_settled(&dir, step).await;
            } else {
                assert_idle(&dir, step);
            }
        }
    };
    let mut status = StatusFile::open(&DiskFs, &group_dir.join("status"), 1)
        .await
        .unwrap();
    check("opening the status file").await;
    let log = open_log(&group_dir, cfg.clone()).await;
    check("opening the log").await;
    for k in 0..60 {
        append_synced(&log, 25, 1).await;
        if k % 10 == 0 {
            check("appending").await;
        }
    }
    assert!(log.segment_count() >= 5, "{} segments", log.segment_count());
    check("appending across segments").await;
    let hs = HardState {
        term: 1,
        vote: Some(2),
        commit_index: log.last_index(),
        config: b"members".to_vec(),
    };
    status.save(&hs).await.unwrap();
    check("saving the status").await;

    // A truncation inside a sealed segment, then inside the active one.
    let first_of_second = log.segments()[1].first_index;
    log.truncate_tail(first_of_second + 3).await.unwrap();
    check("truncating into a sealed segment").await;
    append_synced(&log, 10, 2).await;
    log.truncate_tail(log.last_index() - 4).await.unwrap();
    check("truncating the active segment").await;
    append_synced(&log, 400, 2).await;
    check("appending after truncations").await;

    // Purges, direct and by `maintain`.
    let purge_to = log.segments()[2].first_index + 1;
    log.purge_head(purge_to).await.unwrap();
    check("purging").await;
    let mark = log.segments()[1].first_index;
    log.mark_purge(mark, Instant::now());
    log.maintain(Instant::now()).await.unwrap();
    check("purging by maintain").await;
    let before = read_all(&log);
    log.verify().unwrap();
    check("reading every segment").await;

    // A reopen finds it all and holds one descriptor again.
    log.close().await.unwrap();
    let log = open_log(&group_dir, cfg.clone()).await;
    check("reopening the log").await;
    assert_eq!(read_all(&log), before);
    let status = StatusFile::open(&DiskFs, &group_dir.join("status"), 1)
        .await
        .unwrap();
    assert_eq!(status.state(), &hs);
    check("reopening the status file").await;

    // A snapshot install voids every segment.
    let at = log.last_index() + 100;
    log.install_snapshot(at, 3).await.unwrap();
    check("installing a snapshot").await;
    append_synced(&log, 300, 3).await;
    check("appending after the install").await;
    log.close().await.unwrap();
    let log = open_log(&group_dir, cfg).await;
    assert_eq!(log.first_index(), at + 1);
    assert_eq!(log.last_index(), at + 300);
    assert_eq!(read_all(&log), expected(at + 1, 300, 3, 0));
    log.verify().unwrap();
    check("reopening after the install").await;
    drop(log);
}

fn run_exercise(zero_ahead_bytes: u64, settle: bool) {
    let tmp = tempfile::tempdir().unwrap();
    // `/proc/self/fd` names canonical paths.
    let group_dir = tmp.path().canonicalize().unwrap().join("group-1");
    std::fs::create_dir_all(&group_dir).unwrap();
    let rt = runtime();
    let dir = group_dir.clone();
    rt.shard(0)
        .unwrap()
        .run_blocking(TaskClass::Latency, move || async move {
            exercise(dir, cfg(zero_ahead_bytes), settle).await;
        })
        .unwrap();
    rt.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn an_idle_group_holds_one_descriptor() {
    // No background work: every call must close what it opened before it
    // returns.
    run_exercise(0, false);
}

#[test]
fn an_idle_group_holds_one_descriptor_with_preparation() {
    // The preparer zero-fills ahead and readies a spare beside the appends:
    // between its runs it holds nothing either.
    run_exercise(LogConfig::default().zero_ahead_bytes, true);
}

#[test]
fn status_file_holds_no_descriptor_between_saves() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let rt = runtime();
    let d = dir.clone();
    rt.shard(0)
        .unwrap()
        .run_blocking(TaskClass::Latency, move || async move {
            let path = d.join("status");
            let mut status = StatusFile::open(&DiskFs, &path, 7).await.unwrap();
            assert_eq!(open_files_under(&d), Vec::<PathBuf>::new(), "after open");
            let mut hs = HardState::default();
            for k in 1..=5u64 {
                hs.term = k;
                hs.vote = Some(k % 3);
                hs.commit_index = 10 * k;
                status.save(&hs).await.unwrap();
                assert_eq!(
                    open_files_under(&d),
                    Vec::<PathBuf>::new(),
                    "after save {k}"
                );
            }
            drop(status);
            let status = StatusFile::open(&DiskFs, &path, 7).await.unwrap();
            assert_eq!(status.state(), &hs);
            assert_eq!(open_files_under(&d), Vec::<PathBuf>::new(), "after reopen");
        })
        .unwrap();
    rt.shutdown(Duration::from_secs(1)).unwrap();
}
