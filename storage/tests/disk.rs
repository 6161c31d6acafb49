//! The log on the real disk (io_uring writes, mapped reads) inside the
//! fiber runtime: group commit across groups, and a kill -9 crash test
//! (a child process appends and syncs, printing what is durable, and is
//! killed at a random point; the parent reopens the log and checks).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use common::*;
use sampan_fiber::{IO_MEMORY_MIN_BYTES, Runtime, TaskClass};
use sampan_storage::sim::SimRng;
use sampan_storage::{
    DiskFs, LogConfig, LogWriter, RaftLog, SegmentLog, ShardWal, SyncMode, WalConfig, WalLog,
};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A one-shard runtime. (No timer is kept armed any more: the shard hang
/// it guarded against is gone with the patched glommio; see
/// `sampan_fiber::fs`.)
fn runtime() -> Runtime {
    Runtime::builder()
        .shards(1)
        .io_memory_bytes(IO_MEMORY_MIN_BYTES)
        .build()
        .unwrap()
}

fn disk_cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 10,
        grow_step_bytes: 16 << 10,
        index_grow_step_bytes: 4096,
        ..LogConfig::default()
    }
}

async fn open_disk(
    dir: &Path,
    group: u64,
    writer: LogWriter<sampan_storage::DiskFile>,
) -> SegmentLog<DiskFs> {
    SegmentLog::open(
        DiskFs,
        &dir.join(format!("group-{group}")),
        group,
        disk_cfg(),
        writer,
    )
    .await
    .unwrap()
}

#[test]
fn many_groups_commit_together_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let rt = runtime();
    let (rounds, syncs, waits) = rt
        .shard(0)
        .unwrap()
        .run_blocking(TaskClass::Latency, move || async move {
            let writer = LogWriter::new();
            let mut fibers = Vec::new();
            for g in 1..=8u64 {
                let log = open_disk(&dir, g, writer.clone()).await;
                fibers.push(
                    sampan_fiber::spawn(TaskClass::Latency, "appender", async move {
                        for k in 0..40u64 {
                            let run = entries(k * 5 + 1, 5, 1, g);
                            log.append(&run).await.unwrap();
                            assert!(log.sync(run.last_index()).await.unwrap() >= run.last_index());
                        }
                        read_all(&log)
                    })
                    .unwrap(),
                );
            }
            for (g, f) in (1..=8u64).zip(fibers) {
                assert_eq!(f.join().await.unwrap(), expected(1, 200, 1, g));
            }
            // Reopen every group from disk: all there, each its own bytes.
            for g in 1..=8u64 {
                let log = open_disk(&dir, g, writer.clone()).await;
                assert_eq!(read_all(&log), expected(1, 200, 1, g), "group {g}");
                log.verify().unwrap();
            }
            let (rounds, syncs) = writer.stats();
            (rounds, syncs, 8 * 40)
        })
        .unwrap();
    // Informational: how much the rounds batched (never asserted: timing).
    println!("{waits} waits -> {rounds} sync rounds, {syncs} fdatasyncs");
    assert!(syncs >= rounds);
    rt.shutdown(Duration::from_secs(1)).unwrap();
}

const CHILD_ENV: &str = "SAMPAN_CRASH_CHILD_DIR";

/// Runs only as the child of `kill_9_never_loses_a_durable_entry`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let term: u64 = std::env::var("SAMPAN_CRASH_TERM").unwrap().parse().unwrap();
    let rt = runtime();
    rt.shard(0)
        .unwrap()
        .run_blocking(TaskClass::Latency, move || async move {
            let log = open_disk(Path::new(&dir), 1, LogWriter::new()).await;
            let mut out = std::io::stdout();
            let mut k = 0u64;
            loop {
                let run = entries(log.last_index() + 1, 1 + k % 7, term, 0);
                log.append(&run).await.unwrap();
                let d = log.sync(run.last_index()).await.unwrap();
                writeln!(out, "durable {d}").unwrap();
                out.flush().unwrap();
                k += 1;
            }
        })
        .unwrap();
}

#[test]
fn kill_9_never_loses_a_durable_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().to_path_buf();
    let mut rng = SimRng::new(std::process::id().into());
    let rt = runtime();
    let mut promised = 0;
    for term in 1..=8u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .env("SAMPAN_CRASH_TERM", term.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Lines arrive through a thread, so a child that stops talking (a
        // stuck shard) ends the round instead of the test run.
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(d) = line.strip_prefix("durable ") {
                    let _ = tx.send(d.trim().parse::<u64>().unwrap());
                }
            }
        });
        let stop_after = 1 + rng.below(300);
        for _ in 0..stop_after {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(d) => promised = promised.max(d),
                Err(_) => break,
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        // Lines already sent before the kill were durable too.
        while let Ok(d) = rx.try_recv() {
            promised = promised.max(d);
        }
        let d = dir.clone();
        let got = rt
            .shard(0)
            .unwrap()
            .run_blocking(TaskClass::Latency, move || async move {
                let log = open_disk(&d, 1, LogWriter::new()).await;
                read_all(&log)
            })
            .unwrap();
        assert!(
            got.len() as u64 >= promised,
            "round {term}: {} entries, {promised} were durable",
            got.len()
        );
        for (n, (i, t, p)) in got.iter().enumerate() {
            assert_eq!(*i, n as u64 + 1, "no hole");
            assert!(*t <= term && *p == payload(*i, *t, 0), "entry {i} intact");
        }
        promised = got.len() as u64;
    }
    assert!(promised > 8, "the children wrote something");
    rt.shutdown(Duration::from_secs(1)).unwrap();
}

/// Runs `body` on a one-shard runtime with a fresh directory.
fn on_one_shard<F, Fut>(body: F)
where
    F: FnOnce(PathBuf) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let rt = runtime();
    rt.shard(0)
        .unwrap()
        .run_blocking(TaskClass::Latency, move || body(dir))
        .unwrap();
    rt.shutdown(Duration::from_secs(1)).unwrap();
}

/// `run` (entries from 1, as `entries(_, _, 1, 3)` made them) still
/// parses and holds its `held` entries' payloads.
fn assert_intact(run: &sampan_storage::RecordRun, held: u64) {
    let again = sampan_storage::parse_run(run.bytes().clone(), Some(1), 1 << 20).unwrap();
    assert_eq!(again.len(), held);
    assert!(
        again
            .iter()
            .all(|r| r.payload() == payload(r.header.index, 1, 3))
    );
}

#[test]
fn reads_stay_valid_after_their_segment_is_deleted() {
    on_one_shard(|dir| async move {
        let log = open_disk(&dir, 1, LogWriter::new()).await;
        while log.segment_count() < 3 {
            let next = log.last_index() + 1;
            log.append(&entries(next, 20, 1, 3)).await.unwrap();
        }
        log.sync(log.last_index()).await.unwrap();
        let run = log.read(1, 1 << 20).unwrap();
        let held = run.len();
        log.purge_head(log.last_index()).await.unwrap();
        assert!(log.segment_count() < 3, "old segments deleted");
        // The bytes still map the deleted file, and still validate.
        assert_intact(&run, held);
    });
}

/// The shared log recycles retired segments, but never one whose mapped
/// bytes someone still holds (entries on their way to a follower): those
/// bytes would change under their holder once the file is rewritten. The
/// held run must read back unchanged after rolls that reuse every spare.
#[test]
fn a_shared_log_never_recycles_a_segment_whose_bytes_are_held() {
    on_one_shard(|dir| async move {
        let cfg = WalConfig {
            segment_bytes: 64 << 10,
            zero_ahead_bytes: 0,
            ..WalConfig::default()
        };
        let wal = ShardWal::open(DiskFs, &dir.join("wal"), cfg).await.unwrap();
        let log = WalLog::open(&wal, &dir.join("group-1"), 1, SyncMode::Sync)
            .await
            .unwrap();
        let fill = |until: usize| {
            let (wal, log) = (&wal, &log);
            async move {
                while wal.segment_ids().len() < until {
                    let next = log.last_index() + 1;
                    log.append(&entries(next, 20, 1, 3)).await.unwrap();
                    log.sync(log.last_index()).await.unwrap();
                }
            }
        };
        fill(4).await;
        // Entries 1.. lie in segment 1: hold them, as a message to a
        // follower would.
        let run = log.read(1, 1 << 20).unwrap();
        let held = run.len();
        assert!(held > 0);
        log.purge_head(log.last_index()).await.unwrap();
        let (spares, _) = wal.recycling();
        assert_eq!(spares, 2, "segments 2 and 3 kept to recycle, 1 deleted");
        // Roll until both spares are reused and a new file is made.
        fill(wal.segment_ids().len() + 3).await;
        assert_eq!(wal.recycling(), (0, 2), "spares reused");
        assert_intact(&run, held);
    });
}

/// Whether this process runs as root (effective uid 0), from /proc.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts `size` of tmpfs at `dir`; the reason when it cannot.
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        if !is_root() {
            return Err("not running as root (mount needs it)".into());
        }
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with a file; returns its path.
fn fill_up(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![1u8; 4096];
    loop {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = f.sync_all();
    path
}

/// A real ENOSPC (a full 8 MiB tmpfs): the append fails with `DiskFull`
/// naming the file, the durable entries stay readable and intact, and once
/// space is freed the log appends, syncs and reopens with everything.
#[test]
fn a_real_full_disk_fails_the_append_and_the_log_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let _fs = match Tmpfs::mount(&mnt, "8m") {
        Ok(fs) => fs,
        Err(why) => {
            println!("SKIPPED a_real_full_disk_fails_the_append_and_the_log_recovers: {why}");
            return;
        }
    };
    let rt = runtime();
    let shard = rt.shard(0).unwrap();
    let dir = mnt.clone();
    let durable = shard
        .run_blocking(TaskClass::Latency, move || async move {
            let log = open_disk(&dir, 1, LogWriter::new()).await;
            log.append(&entries(1, 200, 1, 0)).await.unwrap();
            log.sync(200).await.unwrap()
        })
        .unwrap();
    let filler = fill_up(&mnt);
    let dir = mnt.clone();
    let (kept, err) = shard
        .run_blocking(TaskClass::Latency, move || async move {
            let log = open_disk(&dir, 1, LogWriter::new()).await;
            let err = loop {
                let next = log.last_index() + 1;
                match log.append(&entries(next, 20, 1, 0)).await {
                    Ok(_) => assert!(next < 1_000_000, "the disk never filled"),
                    Err(e) => break e,
                }
            };
            // What was appended before the failure syncs fine (its space
            // was allocated before it was written).
            log.sync(log.last_index()).await.unwrap();
            let all = read_all(&log);
            (all, err.to_string())
        })
        .unwrap();
    println!("full disk: {err}");
    assert!(
        err.contains("disk full") && err.contains(mnt.to_str().unwrap()),
        "{err}"
    );
    assert!(kept.len() as u64 >= durable, "durable entries kept");
    for (n, (i, t, p)) in kept.iter().enumerate() {
        assert!(
            *i == n as u64 + 1 && *t == 1 && *p == payload(*i, 1, 0),
            "entry {i}"
        );
    }
    std::fs::remove_file(&filler).unwrap();
    let dir = mnt.clone();
    let after = shard
        .run_blocking(TaskClass::Latency, move || async move {
            let log = open_disk(&dir, 1, LogWriter::new()).await;
            let last = log.last_index();
            for k in 0..20 {
                log.append(&entries(last + 1 + k * 20, 20, 1, 0))
                    .await
                    .unwrap();
            }
            log.sync(log.last_index()).await.unwrap();
            let all = read_all(&log);
            drop(log);
            let log = open_disk(&dir, 1, LogWriter::new()).await;
            assert_eq!(read_all(&log), all, "reopens with everything");
            log.verify().unwrap();
            all
        })
        .unwrap();
    assert_eq!(after.len(), kept.len() + 400);
    for (n, (i, t, p)) in after.iter().enumerate() {
        assert!(
            *i == n as u64 + 1 && *t == 1 && *p == payload(*i, 1, 0),
            "entry {i} after space returned"
        );
    }
    rt.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn a_snapshot_written_outside_the_store_is_adopted_synced_and_checked() {
    use sampan_storage::SnapshotStore;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("snapshot");
    let rt = runtime();
    rt.shard(0)
        .unwrap()
        .run_blocking(TaskClass::Latency, move || async move {
            let store = SnapshotStore::open(DiskFs, &dir, 1, 2).await.unwrap();
            let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
            // Another thread writes the data file, then the writer adopts it.
            let mut w = store.create(7, 2, b"conf".to_vec()).await.unwrap();
            let path = w.os_data_path().expect("on the OS file system");
            let written = data.clone();
            std::thread::spawn(move || std::fs::write(path, written).unwrap())
                .join()
                .unwrap();
            w.adopt(data.len() as u64, crc32c::crc32c(&data)).unwrap();
            let meta = w.finish().await.unwrap();
            let mut r = store.reader(&meta).await.unwrap();
            let mut back = Vec::new();
            while let Some((_, c)) = r.next_chunk(30_000).unwrap() {
                back.extend_from_slice(&c);
            }
            assert_eq!(back, data);
            // A wrong CRC is caught when the data is read back.
            let mut w = store.create(8, 2, Vec::new()).await.unwrap();
            let (path, written) = (w.os_data_path().unwrap(), data.clone());
            std::thread::spawn(move || std::fs::write(path, written).unwrap())
                .join()
                .unwrap();
            w.adopt(data.len() as u64, 12345).unwrap();
            let meta = w.finish().await.unwrap();
            assert!(store.reader(&meta).await.unwrap().verify().is_err());
            // Nothing is adopted after chunks went through the writer.
            let mut w = store.create(9, 2, Vec::new()).await.unwrap();
            w.write_chunk(b"x").await.unwrap();
            assert!(w.os_data_path().is_none());
            assert!(w.adopt(1, 0).is_err());
        })
        .unwrap();
    rt.shutdown(Duration::from_secs(1)).unwrap();
}
