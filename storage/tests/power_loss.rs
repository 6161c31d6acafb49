//! Power-loss tests: the real log code over the simulated disk, cut at a
//! random step; what survives is the durable state plus (in half of the
//! runs) a random subset of unsynced pages. The promise checked at every
//! crash point: the log reopens without error, as a prefix of the log
//! before or after the interrupted call, holding every entry `sync`
//! reported durable; it then keeps working.
#![allow(clippy::unwrap_used)]

mod common;

use common::model::{Model, Op};
use common::*;
use sampan_storage::RaftLog;
use sampan_storage::sim::{CrashMode, MemFs, SimRng};

async fn run_op(
    log: &sampan_storage::SegmentLog<MemFs>,
    m: &Model,
    op: &Op,
) -> Result<(), sampan_storage::StorageError> {
    match op {
        // Preparation runs beside every append, interleaved at each I/O
        // step (the disk yields), as the background fiber does on a shard.
        Op::Append(run) => {
            let (appended, _) = futures_lite::future::zip(log.append(run), log.prepare()).await;
            appended.map(|_| ())
        }
        Op::Background => log.prepare().await,
        Op::Sync => log.sync(m.last()).await.map(|d| assert!(d >= m.last())),
        Op::Truncate(k) => log.truncate_tail(*k).await,
        Op::Purge(p) => log.purge_head(*p).await,
        Op::Install(l, t) => log.install_snapshot(*l, *t).await,
    }
}

fn one_crash(seed: u64) -> (bool, u64, u64) {
    let mut rng = SimRng::new(seed);
    let fs = MemFs::new();
    fs.set_interleave(true);
    let log = open_mem(&fs, small_cfg()).unwrap();
    let mut m = Model::new();
    let mut term = 1;
    fs.fail_after_ops(Some(1 + rng.below(400)));
    let mut after = m.clone();
    let mut crashed = false;
    for _ in 0..300 {
        let op = m.pick(&mut rng, &mut term);
        after = m.after(&op);
        if block_on(run_op(&log, &m, &op)).is_err() {
            crashed = true;
            break;
        }
        m = after.clone();
    }
    drop(log);
    let mode = if seed.is_multiple_of(2) {
        CrashMode::DropUnsynced
    } else {
        CrashMode::KeepRandomPages
    };
    let disk = fs.crash(mode, &mut rng);
    let log = open_mem(&disk, small_cfg())
        .unwrap_or_else(|e| panic!("seed {seed}: reopen after a power cut failed: {e}"));
    let got = read_all(&log);
    let stats = (crashed, m.promised, got.len() as u64);
    assert!(
        m.matches(&log, &got) || after.matches(&log, &got),
        "seed {seed}: log {}..={} (last term {}) is a prefix of neither {}..={} (promised {}) \
         nor {}..={} (promised {})",
        log.first_index(),
        log.last_index(),
        log.last_term(),
        m.first,
        m.last(),
        m.promised,
        after.first,
        after.last(),
        after.promised,
    );
    // It keeps working, and a second cut keeps what was synced after.
    let next = log.last_index() + 1;
    let run = entries(next, 5, term + 1, 77);
    block_on(async {
        log.append(&run).await.unwrap();
        log.sync(run.last_index()).await.unwrap();
    });
    let expect = read_all(&log);
    drop(log);
    let disk = disk.crash(CrashMode::KeepRandomPages, &mut rng);
    let log = open_mem(&disk, small_cfg()).unwrap();
    assert_eq!(read_all(&log), expect, "seed {seed}: second cut");
    stats
}

#[test]
fn a_thousand_power_cuts() {
    let seeds: u64 = std::env::var("SAMPAN_POWER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1200);
    let (mut crashes, mut promised, mut kept) = (0, 0, 0);
    for seed in 0..seeds {
        let (crashed, p, k) = one_crash(seed);
        crashes += u64::from(crashed);
        promised += p;
        kept += k;
    }
    // The cuts must land mid-work, on logs with real content.
    assert!(
        crashes * 10 >= seeds * 9,
        "only {crashes} of {seeds} runs were cut"
    );
    assert!(
        promised >= seeds * 20,
        "logs too short: {promised} promised in all"
    );
    eprintln!("{crashes} cuts, {promised} entries promised, {kept} entries found after");
}

/// A crash at every step of a truncate, a purge, an install and a roll:
/// the log reopens as the state before or after, never with a hole
/// (braft#119, canonical/raft#373, yugabyte#3490).
#[test]
fn a_crash_at_every_step_of_each_change() {
    let base = MemFs::new();
    let mut m = Model::new();
    {
        let log = open_mem(&base, small_cfg()).unwrap();
        for k in 0..6u64 {
            let op = Op::Append(entries(m.last() + 1, 10, 1 + k / 2, k));
            block_on(run_op(&log, &m, &op)).unwrap();
            m = m.after(&op);
            block_on(run_op(&log, &m, &Op::Sync)).unwrap();
            m = m.after(&Op::Sync);
        }
        assert!(log.segment_count() >= 4);
    }
    let ops = [
        Op::Truncate(25),
        Op::Truncate(0),
        Op::Purge(33),
        Op::Install(70, 9),
        Op::Append(entries(61, 30, 5, 1)), // rolls segments
    ];
    let mut rng = SimRng::new(7);
    for op in &ops {
        let after = m.after(op);
        let mut completed = false;
        for n in 1..200u64 {
            for mode in [CrashMode::DropUnsynced, CrashMode::KeepRandomPages] {
                let disk = base.crash(CrashMode::DropUnsynced, &mut rng); // a copy of the synced state
                disk.set_interleave(true);
                let log = open_mem(&disk, small_cfg()).unwrap();
                disk.fail_after_ops(Some(n));
                let ok = block_on(async {
                    run_op(&log, &m, op).await?;
                    if matches!(op, Op::Append(_)) {
                        run_op(&log, &after, &Op::Sync).await?;
                    }
                    Ok::<(), sampan_storage::StorageError>(())
                })
                .is_ok();
                drop(log);
                let cut = disk.crash(mode, &mut rng);
                let log = open_mem(&cut, small_cfg()).unwrap_or_else(|e| panic!("{n}: {e}"));
                let got = read_all(&log);
                let mut done = after.clone();
                if matches!(op, Op::Append(_)) {
                    done.promised = done.last();
                }
                let fine = if ok {
                    done.matches(&log, &got)
                } else {
                    m.matches(&log, &got) || after.matches(&log, &got)
                };
                assert!(
                    fine,
                    "step {n} ({mode:?}) of {:?}",
                    std::mem::discriminant(op)
                );
                completed |= ok;
            }
            if completed {
                break;
            }
        }
        assert!(completed, "the change finished within 200 steps");
    }
}

#[test]
fn status_and_snapshots_survive_power_cuts() {
    use sampan_storage::snapshot::SnapshotStore;
    use sampan_storage::status::{HardState, StatusFile};
    use std::path::Path;
    let mut rng = SimRng::new(11);
    let s1 = HardState {
        term: 1,
        vote: Some(1),
        commit_index: 5,
        config: vec![1; 100],
    };
    let s2 = HardState {
        term: 2,
        vote: None,
        commit_index: 9,
        config: vec![2; 200],
    };
    let path = Path::new("/g/status");
    let dir = Path::new("/g/snapshots");
    for n in 1..40u64 {
        let fs = MemFs::new();
        block_on(async {
            let mut st = StatusFile::open(&fs, path, 1).await.unwrap();
            st.save(&s1).await.unwrap();
            let store = SnapshotStore::open(fs.clone(), dir, 1, 2).await.unwrap();
            let mut w = store.create(10, 1, b"a".to_vec()).await.unwrap();
            w.write_chunk(&[1; 5000]).await.unwrap();
            w.finish().await.unwrap();
            fs.fail_after_ops(Some(n));
            let saved = st.save(&s2).await.is_ok();
            let finished = async {
                let mut w = store.create(20, 2, b"b".to_vec()).await?;
                w.write_chunk(&[2; 9000]).await?;
                w.finish().await
            }
            .await
            .is_ok();
            let mode = if n % 2 == 0 {
                CrashMode::DropUnsynced
            } else {
                CrashMode::KeepRandomPages
            };
            let disk = fs.crash(mode, &mut rng);
            let st = StatusFile::open(&disk, path, 1).await.unwrap();
            assert!(
                st.state() == &s2 || (!saved && st.state() == &s1),
                "status after cut {n}"
            );
            let store = SnapshotStore::open(disk.clone(), dir, 1, 2).await.unwrap();
            let latest = store.latest().await.unwrap().unwrap();
            assert!(latest.last_index == 20 || (!finished && latest.last_index == 10));
            store.reader(&latest).await.unwrap().verify().unwrap();
            assert!(
                !disk
                    .paths()
                    .iter()
                    .any(|p| p.to_string_lossy().contains(".tmp"))
            );
        });
    }
}

/// `async` mode: durable means the page cache, so a power cut may lose
/// the tail, but the log must reopen without error as a hole-free prefix
/// holding at least every sealed segment. (Sync floors stamped from the
/// page-cache index once made such a cut look like corruption.)
#[test]
fn async_mode_power_cuts_leave_a_prefix_without_a_hole() {
    let cfg = sampan_storage::LogConfig {
        sync_mode: sampan_storage::SyncMode::Async,
        ..small_cfg()
    };
    for seed in 0..300u64 {
        let mut rng = SimRng::new(seed);
        let fs = MemFs::new();
        fs.set_interleave(true);
        let log = open_mem(&fs, cfg.clone()).unwrap();
        for _ in 0..(5 + rng.below(60)) {
            let run = entries(log.last_index() + 1, 1 + rng.below(8), 1, 0);
            let (appended, _) =
                block_on(futures_lite::future::zip(log.append(&run), log.prepare()));
            appended.unwrap();
        }
        let sealed = log
            .segments()
            .iter()
            .rev()
            .nth(1)
            .map_or(0, |s| s.last_index);
        let written = log.last_index();
        drop(log);
        let mode = if seed % 2 == 0 {
            CrashMode::DropUnsynced
        } else {
            CrashMode::KeepRandomPages
        };
        let log = open_mem(&fs.crash(mode, &mut rng), cfg.clone())
            .unwrap_or_else(|e| panic!("seed {seed}: reopen after the cut: {e}"));
        let got = read_all(&log);
        assert!(
            log.last_index() >= sealed && log.last_index() <= written,
            "seed {seed}: {} entries, {sealed} sealed, {written} written",
            got.len()
        );
        for (n, (i, t, p)) in got.iter().enumerate() {
            assert!(
                *i == n as u64 + 1 && *t == 1 && *p == payload(*i, 1, 0),
                "seed {seed}: entry {i}"
            );
        }
    }
}

/// Runs `case` once per cut point in `1..cuts` and crash mode, each on a
/// new simulated disk with its own random source; `case` returns whether
/// the change it cut returned. Fails unless some cut fell inside it.
fn each_cut<F>(cuts: u64, seed: u64, mut case: impl FnMut(u64, CrashMode, MemFs, SimRng) -> F)
where
    F: std::future::Future<Output = bool>,
{
    let mut inside = 0;
    for n in 1..cuts {
        for mode in [CrashMode::DropUnsynced, CrashMode::KeepRandomPages] {
            let rng = SimRng::new(seed.wrapping_mul(1_000).wrapping_add(n));
            inside += u32::from(!block_on(case(n, mode, MemFs::new(), rng)));
        }
    }
    assert!(inside > 0, "some cut fell inside the change");
}

/// A record file created with its first payload in one write: cut at
/// every step of the creation, it reopens blank or holding that payload,
/// and a creation that returned is never lost. A file that holds a
/// payload gives that one back, not the `initial` of a later open.
#[test]
fn a_record_file_created_with_its_payload_survives_power_cuts() {
    use sampan_storage::dualfile::DualFile;
    use std::path::Path;
    const MAGIC: u32 = 0x5445_5354;
    let path = Path::new("/g/log/meta");
    each_cut(16, 17, |n, mode, fs, mut rng| async move {
        fs.fail_after_ops(Some(n));
        let created = DualFile::open_with(&fs, path, MAGIC, 1, Some(b"first"))
            .await
            .is_ok();
        let disk = fs.crash(mode, &mut rng);
        let (mut file, got) = DualFile::open_with(&disk, path, MAGIC, 1, Some(b"second"))
            .await
            .unwrap_or_else(|e| panic!("reopen after cut {n}: {e}"));
        let got = got.unwrap();
        assert!(
            got == b"first" || (!created && got == b"second"),
            "cut {n} ({mode:?}): created {created}, reopened {:?}",
            String::from_utf8_lossy(&got)
        );
        // It goes on as a record file: a later write wins.
        file.write(b"third").await.unwrap();
        let (_, again) = DualFile::open_with(&disk, path, MAGIC, 1, Some(b"fourth"))
            .await
            .unwrap();
        assert_eq!(again.as_deref(), Some(&b"third"[..]));
        created
    });
}

/// A status file is made by its first save: opening one that is not there
/// creates nothing, and a cut at any step of the first save leaves either
/// no saved state or the whole of it.
#[test]
fn a_status_file_made_by_its_first_save_survives_power_cuts() {
    use sampan_storage::status::{HardState, StatusFile};
    use std::path::Path;
    let first = HardState {
        term: 1,
        vote: Some(2),
        commit_index: 1,
        config: vec![7; 40],
    };
    let path = Path::new("/g/status");
    each_cut(12, 23, |n, mode, fs, mut rng| {
        let first = first.clone();
        async move {
            let mut st = StatusFile::open(&fs, path, 1).await.unwrap();
            assert!(fs.paths().is_empty(), "open created {:?}", fs.paths());
            assert_eq!(st.state(), &HardState::default());
            fs.fail_after_ops(Some(n));
            let saved = st.save(&first).await.is_ok();
            let disk = fs.crash(mode, &mut rng);
            let back = StatusFile::open(&disk, path, 1)
                .await
                .unwrap_or_else(|e| panic!("reopen after cut {n}: {e}"));
            assert!(
                back.state() == &first || (!saved && back.state() == &HardState::default()),
                "cut {n} ({mode:?}): saved {saved}, reopened {:?}",
                back.state()
            );
            saved
        }
    });
}

/// The group catalog under power cuts, for a batch that makes the file, a
/// batch appended to it, and a batch that rewrites a long journal: every
/// change recorded before the cut survives, and of the batch that was cut
/// a prefix survives (none of it if it never returned and nothing was
/// kept, all of it if it returned). The catalog then takes more changes.
#[test]
fn the_group_catalog_keeps_every_recorded_change_through_power_cuts() {
    use bytes::Bytes;
    use sampan_storage::catalog::{Change, Entry, GroupCatalog};
    use std::collections::BTreeMap;
    use std::path::Path;
    let path = Path::new("/node/groups.catalog");
    let added = |g: u64| Entry::Added(Bytes::from(format!("config of group {g}")));
    let batch = vec![
        Change::Set(100, added(100)),
        Change::Set(3, Entry::Removed),
        Change::Clear(1),
        Change::Set(101, added(101)),
    ];
    // Changes made before the cut: none (the batch makes the file), a few
    // (it is appended), many of one group (it rewrites the journal).
    for (case, before) in [0u64, 5, 70].into_iter().enumerate() {
        let batch = batch.clone();
        each_cut(14, 29 + case as u64, move |n, mode, fs, mut rng| {
            let batch = batch.clone();
            async move {
                let mut c = GroupCatalog::open(&fs, path).await.unwrap();
                for i in 0..before {
                    let g = if before > 10 { 1 } else { i % 4 };
                    c.record(&[Change::Set(g, added(i))]).await.unwrap();
                }
                let start = c.entries().clone();
                fs.fail_after_ops(Some(n));
                let recorded = c.record(&batch).await.is_ok();
                let disk = fs.crash(mode, &mut rng);
                let mut back = GroupCatalog::open(&disk, path)
                    .await
                    .unwrap_or_else(|e| panic!("case {case}, reopen after cut {n}: {e}"));
                let prefixes: Vec<BTreeMap<u64, Entry>> = (0..=batch.len())
                    .map(|k| {
                        let mut m = start.clone();
                        for c in &batch[..k] {
                            match c {
                                Change::Set(g, e) => {
                                    m.insert(*g, e.clone());
                                }
                                Change::Clear(g) => {
                                    m.remove(g);
                                }
                            }
                        }
                        m
                    })
                    .collect();
                let got = back.entries().clone();
                assert!(
                    if recorded {
                        got == prefixes[batch.len()]
                    } else {
                        prefixes.contains(&got)
                    },
                    "case {case}, cut {n} ({mode:?}): recorded {recorded}, reopened {got:?}"
                );
                // It goes on: a later change is kept with the rest.
                back.record(&[Change::Set(200, added(200))]).await.unwrap();
                let again = GroupCatalog::open(&disk, path).await.unwrap();
                let mut want = got;
                want.insert(200, added(200));
                assert_eq!(again.entries(), &want, "case {case}, cut {n}");
                recorded
            }
        });
    }
}
