//! I/O faults over the simulated disk: a failed `fdatasync` is fatal for
//! the log and never reported durable (Linux drops the writes a failed
//! writeback covered: "fsyncgate"); a failed write fails the append with an
//! error naming the file and the log carries on; a reopen in the same boot
//! stores what the failed sync did not before calling it durable.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sampan_storage::sim::{CrashMode, MemFs, SimRng};
use sampan_storage::{RaftLog, SegmentLog, StorageError};

/// Every entry is `payload(i, 1, 0)`: checks the log is a hole-free run of
/// them holding at least `promised`.
fn check_prefix(log: &SegmentLog<MemFs>, promised: u64, what: &str) {
    let got = read_all(log);
    assert!(
        log.last_index() >= promised,
        "{what}: log ends at {}, {promised} was reported durable",
        log.last_index()
    );
    for (n, (i, t, p)) in got.iter().enumerate() {
        assert_eq!(*i, log.first_index() + n as u64, "{what}: no hole");
        assert!(
            *t == 1 && *p == payload(*i, 1, 0),
            "{what}: entry {i} intact"
        );
    }
}

fn failed_naming(err: &StorageError, needle: &str) {
    assert!(
        matches!(err, StorageError::Failed { .. }),
        "a failed sync is fatal: {err}"
    );
    assert!(err.to_string().contains(needle), "names the file: {err}");
}

#[test]
fn a_failed_fdatasync_is_fatal_and_never_reported_durable() {
    let fs = MemFs::new();
    let log = open_mem(&fs, plain_cfg()).unwrap();
    let active = block_on(async {
        log.append(&entries(1, 10, 1, 0)).await.unwrap();
        log.sync(10).await.unwrap();
        log.append(&entries(11, 10, 1, 0)).await.unwrap();
        // (A segment sealed on the way is durable already.)
        let durable = log.durable_index();
        assert!(durable < 20);
        fs.fail_syncs(1);
        let err = log.sync(20).await.unwrap_err();
        failed_naming(&err, ".seg");
        assert_eq!(
            log.durable_index(),
            durable,
            "the failed sync raised nothing"
        );
        // Every later change is refused until the log is reopened, and a
        // retried sync does not pretend (the kernel would say yes).
        failed_naming(&log.sync(20).await.unwrap_err(), ".seg");
        failed_naming(
            &log.append(&entries(21, 1, 1, 0)).await.unwrap_err(),
            ".seg",
        );
        failed_naming(&log.truncate_tail(15).await.unwrap_err(), ".seg");
        assert_eq!(log.durable_index(), durable);
        err.to_string()
    });
    // Reads still work: the entries are in the (simulated) page cache.
    assert_eq!(read_all(&log), expected(1, 20, 1, 0), "{active}");
    drop(log);
    // The disk itself holds only what the good sync stored.
    let lost = fs.crash(CrashMode::DropUnsynced, &mut SimRng::new(1));
    let log = open_mem(&lost, plain_cfg()).unwrap();
    check_prefix(&log, 10, "power cut after the failed sync");
    drop(log);
    // Reopening in the same boot finds all 20 in the cache and reports them
    // durable: so they must really be on disk, power cut or not.
    let log = open_mem(&fs, plain_cfg()).unwrap();
    assert_eq!(
        (log.last_index(), log.durable_index()),
        (20, 20),
        "reopened"
    );
    check_prefix(&log, 20, "reopened");
    drop(log);
    let cut = fs.crash(CrashMode::DropUnsynced, &mut SimRng::new(2));
    let log = open_mem(&cut, plain_cfg()).unwrap();
    check_prefix(&log, 20, "power cut after the reopen");
    assert_eq!(log.last_index(), 20);
}

#[test]
fn a_failed_seal_or_truncate_sync_is_fatal() {
    // The sync that seals a full segment before the next one starts.
    let fs = MemFs::new();
    let log = open_mem(&fs, small_cfg()).unwrap();
    block_on(async {
        log.append(&entries(1, 5, 1, 0)).await.unwrap();
        log.sync(5).await.unwrap();
        fs.fail_syncs(1);
        let mut next = 6;
        let err = loop {
            match log.append(&entries(next, 5, 1, 0)).await {
                Ok(last) => next = last + 1,
                Err(e) => break e,
            }
            assert!(next < 200, "the segment rolled");
        };
        assert!(err.to_string().contains(".seg"), "{err}");
        assert_eq!(log.segment_count(), 1, "no segment after a failed seal");
        assert!(matches!(
            log.append(&entries(log.last_index() + 1, 1, 1, 0)).await,
            Err(StorageError::Failed { .. })
        ));
    });
    drop(log);
    let log = open_mem(&fs, small_cfg()).unwrap();
    let last = log.last_index();
    drop(log);
    let log = open_mem(
        &fs.crash(CrashMode::DropUnsynced, &mut SimRng::new(3)),
        small_cfg(),
    )
    .unwrap();
    check_prefix(&log, last, "seal");

    // The sync that makes the kept part of a cut segment durable.
    let fs = MemFs::new();
    let log = open_mem(&fs, small_cfg()).unwrap();
    block_on(async {
        log.append(&entries(1, 8, 1, 0)).await.unwrap();
        fs.fail_syncs(1);
        let err = log.truncate_tail(4).await.unwrap_err();
        assert!(err.to_string().contains(".idx") || err.to_string().contains(".seg"));
        assert_eq!(log.last_index(), 8, "not truncated");
        assert_eq!(read_all(&log), expected(1, 8, 1, 0), "not truncated");
        assert!(matches!(
            log.truncate_tail(4).await,
            Err(StorageError::Failed { .. })
        ));
    });
}

#[test]
fn a_failed_write_fails_the_append_and_the_log_carries_on() {
    let fs = MemFs::new();
    let log = open_mem(&fs, plain_cfg()).unwrap();
    block_on(async {
        log.append(&entries(1, 10, 1, 0)).await.unwrap();
        log.sync(10).await.unwrap();
        fs.fail_writes(1);
        let err = log.append(&entries(11, 3, 1, 0)).await.unwrap_err();
        match &err {
            StorageError::Io { path, op, .. } => {
                assert_eq!(*op, "write");
                assert!(path.to_string_lossy().ends_with(".seg"), "{err}");
            }
            other => panic!("a typed I/O error: {other}"),
        }
        assert_eq!((log.last_index(), log.durable_index()), (10, 10));
        // Not fatal: nothing reached the file, the next append succeeds.
        log.append(&entries(11, 30, 1, 0)).await.unwrap();
        log.sync(40).await.unwrap();
    });
    check_prefix(&log, 40, "after the failed write");
    drop(log);
    let log = open_mem(
        &fs.crash(CrashMode::KeepRandomPages, &mut SimRng::new(4)),
        plain_cfg(),
    )
    .unwrap();
    check_prefix(&log, 40, "power cut");
    assert_eq!(log.last_index(), 40);
}

#[test]
fn a_failed_sync_while_preparing_space_is_fatal_too() {
    let fs = MemFs::new();
    let log = open_mem(&fs, plain_cfg()).unwrap();
    block_on(async {
        log.append(&entries(1, 3, 1, 0)).await.unwrap();
        fs.fail_syncs(1);
        // Its sync also covers the appended entries: they may be lost.
        let err = log.prepare().await.unwrap_err();
        assert!(err.to_string().contains(".seg"), "{err}");
        failed_naming(&log.sync(3).await.unwrap_err(), ".seg");
        assert_eq!(log.durable_index(), 0);
    });
    drop(log);
    let log = open_mem(&fs, plain_cfg()).unwrap();
    drop(log);
    let log = open_mem(
        &fs.crash(CrashMode::DropUnsynced, &mut SimRng::new(5)),
        plain_cfg(),
    )
    .unwrap();
    check_prefix(&log, 3, "reopened, then cut");
}

/// Random appends, syncs, preparations and purges with random failed writes and syncs;
/// a failed log is reopened in the same boot (the cache keeps what the disk
/// lost). At the end a power cut: everything ever reported durable is
/// there, with no hole.
#[test]
fn random_write_and_sync_faults_never_lose_a_durable_entry() {
    for seed in 0..300u64 {
        let mut rng = SimRng::new(seed);
        let fs = MemFs::new();
        let mut log = open_mem(&fs, small_cfg()).unwrap();
        let mut promised = 0;
        let mut faults = 0;
        for _ in 0..60 {
            match rng.below(10) {
                0 => fs.fail_syncs(1),
                1 => fs.fail_writes(1),
                _ => {}
            }
            let res = block_on(async {
                match rng.below(10) {
                    0..=5 => {
                        let run = entries(log.last_index() + 1, 1 + rng.below(6), 1, 0);
                        log.append(&run).await.map(|_| ())
                    }
                    6..=7 => log.sync(log.last_index()).await.map(|d| promised = d),
                    8 => log.prepare().await,
                    _ => {
                        let to = log.first_index() + rng.below(4);
                        log.purge_head(to.min(log.last_index() + 1)).await
                    }
                }
            });
            fs.fail_syncs(0);
            fs.fail_writes(0);
            match res {
                Ok(()) => {}
                Err(StorageError::Failed { .. }) => {
                    faults += 1;
                    drop(log);
                    log = open_mem(&fs, small_cfg()).unwrap();
                    promised = promised.max(log.durable_index());
                }
                Err(StorageError::Io { .. }) => faults += 1,
                Err(e) => panic!("seed {seed}: unexpected {e}"),
            }
            check_prefix(&log, promised, &format!("seed {seed}"));
        }
        drop(log);
        let mode = if seed % 2 == 0 {
            CrashMode::DropUnsynced
        } else {
            CrashMode::KeepRandomPages
        };
        let log = open_mem(&fs.crash(mode, &mut rng), small_cfg())
            .unwrap_or_else(|e| panic!("seed {seed}: reopen after the cut: {e}"));
        check_prefix(
            &log,
            promised,
            &format!("seed {seed}, {faults} faults, cut"),
        );
    }
}

#[test]
fn a_durable_write_needs_no_sync_round_and_survives_a_power_cut() {
    let fs = MemFs::new();
    let log = open_mem(&fs, durable_cfg()).unwrap();
    block_on(async {
        log.append(&entries(1, 10, 1, 0)).await.unwrap();
        // Nothing was unsynced before it: the append itself made it durable.
        assert_eq!(log.durable_index(), 10);
        log.append(&entries(11, 5, 1, 0)).await.unwrap();
        assert_eq!(log.durable_index(), 15);
    });
    drop(log);
    let log = open_mem(
        &fs.crash(CrashMode::DropUnsynced, &mut SimRng::new(9)),
        durable_cfg(),
    )
    .unwrap();
    check_prefix(&log, 15, "power cut after durable writes");
}

#[test]
fn a_failed_durable_write_is_fatal_and_never_reported_durable() {
    for fail_the_write in [true, false] {
        let fs = MemFs::new();
        let log = open_mem(&fs, durable_cfg()).unwrap();
        block_on(async {
            log.append(&entries(1, 10, 1, 0)).await.unwrap();
            assert_eq!(log.durable_index(), 10);
            // Whichever half fails, the bytes' state is unknown.
            if fail_the_write {
                fs.fail_writes(1);
            } else {
                fs.fail_syncs(1);
            }
            let err = log.append(&entries(11, 3, 1, 0)).await.unwrap_err();
            assert!(err.to_string().contains(".seg"), "names the file: {err}");
            assert_eq!(log.durable_index(), 10, "the failure raised nothing");
            // Every later change is refused until the log is reopened.
            failed_naming(
                &log.append(&entries(11, 3, 1, 0)).await.unwrap_err(),
                ".seg",
            );
        });
        drop(log);
        let log = open_mem(
            &fs.crash(CrashMode::KeepRandomPages, &mut SimRng::new(6)),
            small_cfg(),
        )
        .unwrap();
        check_prefix(&log, 10, "reopened after a failed durable write");
    }
}
