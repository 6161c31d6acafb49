//! Basic behaviour of the segment log over the simulated disk.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sampan_storage::RaftLog;
use sampan_storage::sim::MemFs;
use std::time::Instant;

#[test]
fn append_sync_read_roll_reopen() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_cfg()).unwrap();
    assert_eq!(
        (log.first_index(), log.last_index(), log.last_term()),
        (1, 0, 0)
    );
    block_on(async {
        for k in 0..20 {
            let run = entries(log.last_index() + 1, 5, 1 + k / 5, k);
            let last = log.append(&run).await.unwrap();
            assert_eq!(last, run.last_index());
            assert_eq!(log.sync(last).await.unwrap(), last);
        }
    });
    assert!(log.segment_count() > 3, "small segments roll");
    let before = read_all(&log);
    assert_eq!(before.len(), 100);
    log.verify().unwrap();
    drop(log);
    let log = open_mem(&fs, small_cfg()).unwrap();
    assert_eq!(read_all(&log), before);
    assert_eq!(log.term(50).unwrap(), Some(before[49].1));
    assert_eq!(log.last_term(), 4);
}

#[test]
fn truncate_purge_install_and_find_match() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_cfg()).unwrap();
    block_on(async {
        log.append(&entries(1, 40, 1, 0)).await.unwrap();
        log.append(&entries(41, 40, 2, 0)).await.unwrap();
        log.sync(80).await.unwrap();
        assert_eq!(log.find_match(1, 60).unwrap(), Some((40, 1)));
        assert_eq!(log.find_match(2, 60).unwrap(), Some((60, 2)));
        log.truncate_tail(50).await.unwrap();
        assert_eq!((log.last_index(), log.last_term()), (50, 2));
        log.append(&entries(51, 10, 3, 9)).await.unwrap();
        log.sync(60).await.unwrap();
        log.purge_head(30).await.unwrap();
        assert_eq!(log.first_index(), 30);
        assert_eq!(log.term(29).unwrap(), Some(1));
        assert_eq!(log.term(28).unwrap(), None);
        log.mark_purge(45, Instant::now());
        log.maintain(Instant::now()).await.unwrap();
        assert_eq!(log.first_index(), 45);
    });
    let before = read_all(&log);
    drop(log);
    let log = open_mem(&fs, small_cfg()).unwrap();
    assert_eq!(read_all(&log), before);
    assert_eq!(log.first_index(), 45);
    block_on(async {
        log.install_snapshot(1000, 7).await.unwrap();
        assert_eq!(
            (log.first_index(), log.last_index(), log.last_term()),
            (1001, 1000, 7)
        );
        log.append(&entries(1001, 3, 7, 0)).await.unwrap();
        log.sync(1003).await.unwrap();
    });
    drop(log);
    let log = open_mem(&fs, small_cfg()).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (1001, 1003));
    assert_eq!(read_all(&log), expected(1001, 3, 7, 0));
    assert_eq!(log.term(1000).unwrap(), Some(7));
    assert_eq!(
        fs.paths().len(),
        3,
        "meta + one segment + its index: {:?}",
        fs.paths()
    );
}

#[test]
fn appends_that_do_not_follow_are_refused() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_cfg()).unwrap();
    block_on(async {
        log.append(&entries(1, 3, 2, 0)).await.unwrap();
        assert!(log.append(&entries(5, 1, 2, 0)).await.is_err(), "gap");
        assert!(
            log.append(&entries(4, 1, 1, 0)).await.is_err(),
            "term goes down"
        );
        assert!(log.sync(10).await.is_err(), "not written");
    });
}

#[test]
fn disk_full_fails_the_append_and_the_log_recovers() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_cfg()).unwrap();
    block_on(async {
        log.append(&entries(1, 10, 1, 0)).await.unwrap();
        log.sync(10).await.unwrap();
        fs.set_space_bytes(Some(0));
        let mut failed = false;
        for _ in 0..50 {
            let next = log.last_index() + 1;
            if let Err(e) = log.append(&entries(next, 10, 1, 0)).await {
                assert!(
                    matches!(e, sampan_storage::StorageError::DiskFull { .. }),
                    "{e}"
                );
                failed = true;
                break;
            }
        }
        assert!(failed, "a full disk shows");
        fs.set_space_bytes(None);
        let next = log.last_index() + 1;
        log.append(&entries(next, 30, 1, 0)).await.unwrap();
        log.sync(log.last_index()).await.unwrap();
    });
    let before = read_all(&log);
    drop(log);
    let log = open_mem(&fs, small_cfg()).unwrap();
    assert_eq!(read_all(&log), before);
}

/// Waits (on the wall clock, without sleeping a guessed time) until it
/// reads a later millisecond than `t`; returns the new time.
fn next_ms(t: std::time::SystemTime) -> std::time::SystemTime {
    let ms =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    loop {
        let now = std::time::SystemTime::now();
        if ms(now) > ms(t) {
            return now;
        }
        std::thread::yield_now();
    }
}

fn roll_segments(log: &sampan_storage::SegmentLog<MemFs>, n: usize) {
    let want = log.segment_count() + n;
    block_on(async {
        while log.segment_count() < want {
            let next = log.last_index() + 1;
            log.append(&entries(next, 5, 1, 0)).await.unwrap();
        }
        log.sync(log.last_index()).await.unwrap();
    });
}

#[test]
fn purge_by_age_removes_whole_segments_older_than_the_bound() {
    use std::time::{Duration, SystemTime};
    let fs = MemFs::new();
    let log = open_mem(&fs, small_cfg()).unwrap();
    roll_segments(&log, 4);
    // Every segment created so far is older than `bound`, every later one
    // younger.
    let bound = next_ms(SystemTime::now());
    next_ms(bound);
    let active_then = log.segments().last().unwrap().clone();
    assert!(active_then.created.unwrap() < bound);
    roll_segments(&log, 3);
    assert!(log.segments().last().unwrap().created.unwrap() > bound);
    let before = read_all(&log);
    // Reopened: the ages come from the segment headers.
    drop(log);
    let log = open_mem(&fs, small_cfg()).unwrap();
    let now = Instant::now();

    // Not due yet: nothing happens.
    log.mark_purge_by_age(bound, u64::MAX, now + Duration::from_secs(3600));
    block_on(log.maintain(now)).unwrap();
    assert_eq!(log.first_index(), 1);

    // A limit below the age bound wins (entry granularity).
    log.mark_purge_by_age(bound, 3, now);
    block_on(log.maintain(now)).unwrap();
    assert_eq!(log.first_index(), 3);

    // The segment that was active at `bound` got its last entries after
    // it: it stays, everything before it goes.
    log.mark_purge_by_age(bound, u64::MAX, now);
    block_on(log.maintain(now)).unwrap();
    assert_eq!(log.first_index(), active_then.first_index);
    assert_eq!(log.segments()[0].id, active_then.id);
    let kept = &before[(active_then.first_index - 1) as usize..];
    assert_eq!(read_all(&log), kept);
    // Done: the mark is cleared, and an older bound removes nothing more.
    block_on(log.maintain(now)).unwrap();
    log.mark_purge_by_age(SystemTime::UNIX_EPOCH, u64::MAX, now);
    block_on(log.maintain(now)).unwrap();
    assert_eq!(log.first_index(), active_then.first_index);

    // A bound in the future: all but the active segment.
    log.mark_purge_by_age(SystemTime::now() + Duration::from_secs(3600), u64::MAX, now);
    block_on(log.maintain(now)).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.first_index(), log.segments()[0].first_index);
    drop(log);
    let log = open_mem(&fs, small_cfg()).unwrap();
    assert_eq!(log.segment_count(), 1, "durable");
    assert_eq!(
        read_all(&log),
        before[before.len() - read_all(&log).len()..]
    );
}

#[test]
fn prepared_space_is_zeroed_ahead_and_the_next_roll_takes_the_spare() {
    use sampan_storage::sim::{CrashMode, SimRng};
    let cfg = sampan_storage::LogConfig {
        segment_bytes: 64 << 10,
        zero_ahead_bytes: 16 << 10,
        ..small_cfg()
    };
    let fs = MemFs::new();
    let log = open_mem(&fs, cfg.clone()).unwrap();
    let seg_len = |fs: &MemFs| {
        let paths = fs.paths();
        let seg = paths
            .iter()
            .rfind(|p| p.extension().is_some_and(|e| e == "seg"));
        fs.contents(seg.unwrap()).unwrap().len()
    };
    let spare = std::path::Path::new("/g1/log/spare");
    block_on(async {
        log.append(&entries(1, 10, 1, 0)).await.unwrap();
        log.prepare().await.unwrap();
    });
    // 16 KiB past the records, written and synced: a power cut keeps it.
    let cut = fs.crash(CrashMode::DropUnsynced, &mut SimRng::new(1));
    assert!(seg_len(&cut) >= 16 << 10, "{}", seg_len(&cut));
    assert!(
        fs.contents(spare).is_none(),
        "no spare while the segment is young"
    );
    // Past half the segment a spare is made ready...
    block_on(async {
        while fs.contents(spare).is_none() {
            assert_eq!(log.segment_count(), 1, "a spare is ready before the roll");
            let next = log.last_index() + 1;
            log.append(&entries(next, 10, 1, 0)).await.unwrap();
            log.prepare().await.unwrap();
        }
    });
    assert_eq!(fs.contents(spare).map(|c| c.len()), Some(16 << 10));
    // ...and the roll renames it into the next segment.
    block_on(async {
        while log.segment_count() < 2 {
            let next = log.last_index() + 1;
            log.append(&entries(next, 10, 1, 0)).await.unwrap();
        }
        log.sync(log.last_index()).await.unwrap();
    });
    assert!(fs.contents(spare).is_none(), "the spare was used");
    assert_eq!(seg_len(&fs), 16 << 10, "the new segment is the spare");
    let before = read_all(&log);
    drop(log);
    let log = open_mem(&fs, cfg).unwrap();
    assert_eq!(read_all(&log), before);
    log.verify().unwrap();
}
