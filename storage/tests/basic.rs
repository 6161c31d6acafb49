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
