//! The shared log (one write-ahead log per shard for all its groups),
//! attacked as the per-group log is in `power_loss.rs`: the real code over
//! the simulated disk, cut at a random step of a random mix of appends,
//! syncs, truncations, purges, snapshot installs and segment rewrites by
//! three groups. After each cut every group must reopen as a prefix of its
//! log before or after the interrupted call, holding everything `sync`
//! promised; then keep working.
#![allow(clippy::unwrap_used)]

mod common;

use common::model::{Model, Op};
use common::*;
use sampan_storage::sim::{CrashMode, MemFs, SimRng};
use sampan_storage::{RaftLog, ShardWal, StorageError, SyncMode, WalConfig, WalLog};
use std::path::{Path, PathBuf};

const GROUPS: u64 = 3;

fn cfg() -> WalConfig {
    WalConfig {
        segment_bytes: 8192,
        sealed_segments_max: 3,
        ..WalConfig::default()
    }
}

fn group_dir(g: u64) -> PathBuf {
    PathBuf::from(format!("/data/group-{g}/log"))
}

fn open_wal(fs: &MemFs) -> sampan_storage::Result<ShardWal<MemFs>> {
    open_wal_with(fs, cfg())
}

fn open_wal_with(fs: &MemFs, cfg: WalConfig) -> sampan_storage::Result<ShardWal<MemFs>> {
    block_on(ShardWal::open(fs.clone(), Path::new("/data/wal"), cfg))
}

fn open_group(wal: &ShardWal<MemFs>, g: u64) -> sampan_storage::Result<WalLog<MemFs>> {
    block_on(WalLog::open(wal, &group_dir(g), g, SyncMode::Sync))
}

fn open_all(fs: &MemFs) -> (ShardWal<MemFs>, Vec<WalLog<MemFs>>) {
    open_all_with(fs, cfg())
}

fn open_all_with(fs: &MemFs, cfg: WalConfig) -> (ShardWal<MemFs>, Vec<WalLog<MemFs>>) {
    let wal = open_wal_with(fs, cfg).unwrap();
    let logs = (1..=GROUPS).map(|g| open_group(&wal, g).unwrap()).collect();
    (wal, logs)
}

/// A random call: appends 55%, syncs 15%, truncations 8%, purges 12%,
/// maintenance 5%, installs 5%. With this mix and order the test catches a
/// round that skips a write in flight when it started (put back by hand,
/// that bug failed at seed 1047; the per-group log's mix missed it in
/// 10,000 seeds).
fn pick(m: &Model, rng: &mut SimRng, term: &mut u64) -> Op {
    match rng.below(100) {
        0..=54 => m.append_op(rng, term),
        55..=69 => Op::Sync,
        70..=77 => Op::Truncate(m.first - 1 + rng.below(m.entries.len() as u64 + 1)),
        78..=89 => Op::Purge((m.first + rng.below(m.entries.len() as u64 + 2)).min(m.last() + 1)),
        90..=94 => Op::Background,
        _ => {
            *term += 1;
            Op::Install(m.last() + rng.below(5), *term)
        }
    }
}

async fn run_op(
    wal: &ShardWal<MemFs>,
    log: &WalLog<MemFs>,
    m: &Model,
    op: &Op,
) -> Result<(), StorageError> {
    match op {
        Op::Append(run) => log.append(run).await.map(|_| ()),
        Op::Sync => log.sync(m.last()).await.map(|d| assert!(d >= m.last())),
        Op::Truncate(k) => log.truncate_tail(*k).await,
        Op::Purge(p) => log.purge_head(*p).await,
        Op::Install(l, t) => log.install_snapshot(*l, *t).await,
        Op::Background => wal.maintain(&group_dir).await,
    }
}

/// One run cut at a random step, with `rounds` sync rounds allowed in
/// flight at once: whether it was cut, the entries promised, and the rolls
/// onto recycled segment files before the cut.
fn one_crash(seed: u64, rounds: u32) -> (bool, u64, u64) {
    let mut rng = SimRng::new(seed);
    let fs = MemFs::new();
    fs.set_interleave(true);
    let cfg = WalConfig {
        sync_rounds_max: rounds,
        ..cfg()
    };
    let (wal, logs) = open_all_with(&fs, cfg);
    let mut models = vec![Model::new(); GROUPS as usize];
    let mut afters = models.clone();
    let mut term = 1;
    fs.fail_after_ops(Some(1 + rng.below(600)));
    let mut crashed = false;
    for _ in 0..300 {
        // Two groups at once, interleaved at every I/O step (writes of one
        // in flight while the other's sync round starts).
        let g = rng.below(GROUPS) as usize;
        let h = (g + 1 + rng.below(GROUPS - 1) as usize) % GROUPS as usize;
        let op_g = pick(&models[g], &mut rng, &mut term);
        let op_h = pick(&models[h], &mut rng, &mut term);
        afters[g] = models[g].after(&op_g);
        afters[h] = models[h].after(&op_h);
        let (a, b) = block_on(futures_lite::future::zip(
            run_op(&wal, &logs[g], &models[g], &op_g),
            run_op(&wal, &logs[h], &models[h], &op_h),
        ));
        // A call that returned keeps its promise even if the other failed.
        if a.is_ok() {
            models[g] = afters[g].clone();
        }
        if b.is_ok() {
            models[h] = afters[h].clone();
        }
        if a.is_err() || b.is_err() {
            crashed = true;
            break;
        }
    }
    // Truncations and purges took their entries' bytes off the count.
    if !crashed {
        for (g, log) in logs.iter().enumerate() {
            assert_eq!(
                log.bytes(),
                record_bytes(&read_all(log)),
                "seed {seed} group {g}"
            );
        }
    }
    let recycled = wal.recycling().1;
    drop(logs);
    drop(wal);
    let mode = if seed.is_multiple_of(2) {
        CrashMode::DropUnsynced
    } else {
        CrashMode::KeepRandomPages
    };
    let disk = fs.crash(mode, &mut rng);
    let wal = open_wal(&disk)
        .unwrap_or_else(|e| panic!("seed {seed}: reopen after a power cut failed: {e}"));
    let mut promised = 0;
    let mut logs = Vec::new();
    for g in 1..=GROUPS {
        let log = open_group(&wal, g)
            .unwrap_or_else(|e| panic!("seed {seed}: group {g} reopen failed: {e}"));
        let got = read_all(&log);
        assert_eq!(log.bytes(), record_bytes(&got), "seed {seed} group {g}");
        let (m, a) = (&models[g as usize - 1], &afters[g as usize - 1]);
        promised += m.promised;
        assert!(
            m.matches(&log, &got) || a.matches(&log, &got),
            "seed {seed} group {g}: log {}..={} is a prefix of neither {}..={} (promised {}) \
             nor {}..={} (promised {})",
            log.first_index(),
            log.last_index(),
            m.first,
            m.last(),
            m.promised,
            a.first,
            a.last(),
            a.promised,
        );
        logs.push(log);
    }
    // It keeps working, and a second cut keeps what was synced after.
    let mut expect = Vec::new();
    for log in &logs {
        let run = entries(log.last_index() + 1, 5, term + 1, 77);
        block_on(async {
            log.append(&run).await.unwrap();
            log.sync(run.last_index()).await.unwrap();
        });
        let got = read_all(log);
        assert_eq!(
            log.bytes(),
            record_bytes(&got),
            "seed {seed}: after the cut"
        );
        expect.push(got);
    }
    drop(logs);
    drop(wal);
    let disk = disk.crash(CrashMode::KeepRandomPages, &mut rng);
    let (_wal, logs) = open_all(&disk);
    for (log, want) in logs.iter().zip(expect) {
        assert_eq!(read_all(log), want, "seed {seed}: second cut");
    }
    (crashed, promised, recycled)
}

#[test]
fn two_thousand_power_cuts_across_three_groups_two_at_a_time() {
    let seeds: u64 = std::env::var("SAMPAN_POWER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let (mut crashes, mut promised, mut recycled) = (0, 0, 0);
    for seed in 0..seeds {
        // One sync round at a time (the default) and two overlapping: a
        // round that skipped a write in flight when it started (a bug
        // found here) shows within these seeds only with two (seed 1047;
        // with one, first at seed 24,549).
        for rounds in [1, 2] {
            let (crashed, p, r) = one_crash(seed, rounds);
            crashes += u64::from(crashed);
            promised += p;
            recycled += r;
        }
    }
    assert!(
        crashes * 10 >= seeds * 2 * 8,
        "only {crashes} of {seeds} runs were cut"
    );
    assert!(
        promised >= seeds * 2 * 20,
        "logs too short: {promised} promised in all"
    );
    // Most cuts land in logs that write into recycled files, whose old
    // chunks lie past the new ones (with recycling off, seed 451 passed
    // with a maintenance race that recycling's timing exposed).
    assert!(
        recycled >= seeds,
        "only {recycled} rolls onto recycled files in {seeds} seeds"
    );
    eprintln!("{crashes} cuts, {promised} entries promised, {recycled} recycled rolls");
}

/// Groups share one sync: appends of three groups, then one sync of each,
/// cost one file sync (not three).
#[test]
fn one_sync_serves_every_group() {
    let fs = MemFs::new();
    let (wal, logs) = open_all(&fs);
    let before = fs.syncs();
    block_on(async {
        for (i, log) in logs.iter().enumerate() {
            log.append(&entries(1, 4, 1, i as u64)).await.unwrap();
        }
        for log in &logs {
            assert_eq!(log.sync(4).await.unwrap(), 4);
        }
    });
    assert_eq!(fs.syncs() - before, 1, "three groups, one fdatasync");
    assert_eq!(wal.stats(), (1, 1));
}

/// The appends of groups that run in one turn of the shard go down in one
/// write (appends one after another take one each), and every group reads
/// back its own entries after a crash.
#[test]
fn appends_of_one_turn_share_one_write() {
    let fs = MemFs::new();
    let (wal, logs) = open_all(&fs);
    block_on(async {
        // One after the other: a write each.
        let before = wal.batch_writes();
        for (i, log) in logs.iter().enumerate() {
            log.append(&entries(1, 2, 1, i as u64)).await.unwrap();
        }
        assert_eq!(wal.batch_writes() - before, logs.len() as u64);
        // Together, as groups woken by the same messages run: one write.
        let before = wal.batch_writes();
        let (a, (b, c)) = futures_lite::future::zip(
            logs[0].append(&entries(3, 2, 1, 0)),
            futures_lite::future::zip(
                logs[1].append(&entries(3, 2, 1, 1)),
                logs[2].append(&entries(3, 2, 1, 2)),
            ),
        )
        .await;
        assert_eq!((a.unwrap(), b.unwrap(), c.unwrap()), (4, 4, 4));
        assert_eq!(
            wal.batch_writes() - before,
            1,
            "three groups' appends, one write"
        );
        for log in &logs {
            assert_eq!(log.sync(4).await.unwrap(), 4);
        }
    });
    // Each group reads back its own entries after a reopen.
    drop(logs);
    drop(wal);
    let (_wal, logs) = open_all(&fs.crash(CrashMode::DropUnsynced, &mut SimRng::new(7)));
    for (i, log) in logs.iter().enumerate() {
        assert_eq!(
            read_all(log),
            expected(1, 4, 1, i as u64),
            "group {}",
            i + 1
        );
    }
}

/// Purged groups let their segments go; a group that never purges is
/// copied forward so the log stays bounded; everything reads back after a
/// reopen.
#[test]
fn old_segments_go_even_when_a_group_never_purges() {
    let fs = MemFs::new();
    let (wal, logs) = open_all(&fs);
    // Group 1 writes once and then stays cold, never purging.
    block_on(async {
        logs[0].append(&entries(1, 3, 1, 5)).await.unwrap();
        logs[0].sync(3).await.unwrap();
    });
    let mut next = 1;
    for round in 0..60u64 {
        block_on(async {
            let run = entries(next, 6, 1, round);
            logs[1].append(&run).await.unwrap();
            logs[1].sync(run.last_index()).await.unwrap();
            next = run.last_index() + 1;
            logs[1].purge_head(next).await.unwrap();
            wal.maintain(&group_dir).await.unwrap();
        });
    }
    let kept = wal.segment_ids();
    assert!(
        kept.len() <= cfg().sealed_segments_max + 2,
        "segments kept: {kept:?}"
    );
    assert!(kept[0] > 1, "the cold group still pins segment 1: {kept:?}");
    assert_eq!(read_all(&logs[0]), expected(1, 3, 1, 5));
    drop(logs);
    drop(wal);
    let (_wal, logs) = open_all(&fs.crash(CrashMode::DropUnsynced, &mut SimRng::new(1)));
    assert_eq!(read_all(&logs[0]), expected(1, 3, 1, 5));
    assert_eq!(logs[1].first_index(), next);
}

/// A group removed from the node (its directory gone) stops pinning
/// segments once `maintain` sees it is gone; a group made anew with the
/// same id never sees the old one's entries.
#[test]
fn a_removed_group_leaves_nothing_behind() {
    let fs = MemFs::new();
    {
        let (_wal, logs) = open_all(&fs);
        block_on(async {
            logs[2].append(&entries(1, 10, 1, 1)).await.unwrap();
            logs[2].sync(10).await.unwrap();
        });
    }
    block_on(sampan_storage::Vfs::remove_dir_all(&fs, &group_dir(3))).unwrap();
    let wal = open_wal(&fs).unwrap();
    let fresh = open_group(&wal, 3).unwrap();
    assert_eq!((fresh.first_index(), fresh.last_index()), (1, 0));
    block_on(async {
        fresh.append(&entries(1, 2, 4, 9)).await.unwrap();
        fresh.sync(2).await.unwrap();
    });
    assert_eq!(read_all(&fresh), expected(1, 2, 4, 9));
}

/// Bytes flipped inside a chunk that later chunks prove durable are
/// corruption, not a torn tail: the open fails naming the file.
#[test]
fn damage_before_durable_chunks_is_refused() {
    let fs = MemFs::new();
    {
        let (_wal, logs) = open_all(&fs);
        block_on(async {
            for k in 0..40u64 {
                let log = &logs[(k % GROUPS) as usize];
                let run = entries(log.last_index() + 1, 3, 1, k);
                log.append(&run).await.unwrap();
                log.sync(run.last_index()).await.unwrap();
            }
        });
    }
    let first = PathBuf::from("/data/wal/00000000000000000001.wal");
    let mut bytes = fs.contents(&first).unwrap();
    bytes[64 + 56 + 60] ^= 0x40; // inside the first chunk's first record
    fs.set_contents(&first, bytes);
    let err = open_wal(&fs).unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    assert!(
        err.to_string().contains("00000000000000000001.wal"),
        "{err}"
    );
}

/// A group whose log directory holds a per-group log, or whose entries
/// are in another shared log, is refused with a message saying why.
#[test]
fn a_group_from_another_layout_or_shard_is_refused() {
    let fs = MemFs::new();
    {
        let _seg = open_mem(&fs, small_cfg()).unwrap(); // a per-group log in /g1/log
    }
    let wal = open_wal(&fs).unwrap();
    let err = block_on(WalLog::open(&wal, Path::new("/g1/log"), 1, SyncMode::Sync)).unwrap_err();
    assert!(err.to_string().contains("per-group log"), "{err}");
    drop(wal);

    {
        let (_wal, _logs) = open_all(&fs);
    }
    let other = block_on(ShardWal::open(fs.clone(), Path::new("/data/wal-2"), cfg())).unwrap();
    let err = block_on(WalLog::open(&other, &group_dir(1), 1, SyncMode::Sync)).unwrap_err();
    assert!(err.to_string().contains("shard count"), "{err}");
}

/// The same within the last segment: a later chunk whose sync floor lies
/// past the damage proves the damaged one was durable.
#[test]
fn damage_in_the_last_segment_before_durable_chunks_is_refused() {
    let fs = MemFs::new();
    {
        let (wal, logs) = open_all(&fs);
        block_on(async {
            for k in 0..6u64 {
                let log = &logs[(k % GROUPS) as usize];
                let run = entries(log.last_index() + 1, 2, 1, k);
                log.append(&run).await.unwrap();
                log.sync(run.last_index()).await.unwrap();
            }
        });
        assert_eq!(wal.segment_ids(), [1], "one segment in this test");
    }
    let first = PathBuf::from("/data/wal/00000000000000000001.wal");
    let mut bytes = fs.contents(&first).unwrap();
    bytes[64 + 56 + 60] ^= 0x40;
    fs.set_contents(&first, bytes);
    let err = open_wal(&fs).unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    assert!(err.to_string().contains("written after"), "{err}");
}

/// And the other way: a per-group log refuses a directory of the shared log.
#[test]
fn a_per_group_log_refuses_a_shared_log_group() {
    let fs = MemFs::new();
    let wal = open_wal(&fs).unwrap();
    drop(block_on(WalLog::open(&wal, Path::new("/g1/log"), 1, SyncMode::Sync)).unwrap());
    let err = open_mem(&fs, small_cfg()).unwrap_err();
    assert!(err.to_string().contains("shared log"), "{err}");
}

/// An entry larger than a segment gets a segment of its own size, and
/// reads back after a reopen.
#[test]
fn an_entry_larger_than_a_segment_is_kept() {
    let fs = MemFs::new();
    let big: Vec<u8> = (0..3 * cfg().segment_bytes).map(|i| i as u8).collect();
    {
        let (_wal, logs) = open_all(&fs);
        let mut run = sampan_storage::RunBuilder::new(1);
        run.push(1, 0, b"small")
            .push(1, 0, &big)
            .push(1, 0, b"after");
        block_on(async {
            logs[0].append(&run.finish()).await.unwrap();
            logs[0].sync(3).await.unwrap();
        });
    }
    let (_wal, logs) = open_all(&fs);
    let got = read_all(&logs[0]);
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].2, big);
}

/// A full disk fails the append that needs a new segment with `DiskFull`,
/// writing nothing and failing no group; once space returns the same
/// append succeeds, and everything acknowledged survives a power cut.
#[test]
fn a_full_disk_fails_appends_and_loses_nothing() {
    let fs = MemFs::new();
    let (_wal, logs) = open_all(&fs);
    let mut next = 1;
    let mut refused = 0;
    block_on(async {
        for round in 0..40u64 {
            if round == 10 {
                // No room for another byte past what the files hold now
                // (writes into a segment's allocated space still go).
                let used: u64 = fs
                    .paths()
                    .iter()
                    .filter_map(|p| fs.contents(p))
                    .map(|c| c.len() as u64)
                    .sum();
                fs.set_space_bytes(Some(used));
            }
            if round == 30 {
                fs.set_space_bytes(None);
            }
            let run = entries(next, 6, 1, round);
            match logs[0].append(&run).await {
                Ok(_) => {
                    logs[0].sync(run.last_index()).await.unwrap();
                    next = run.last_index() + 1;
                }
                Err(e @ StorageError::DiskFull { .. }) => {
                    refused += 1;
                    assert_eq!(logs[0].last_index(), next - 1, "{e}: nothing half-appended");
                }
                Err(e) => panic!("round {round}: {e}"),
            }
            // Another group is not failed by it.
            logs[1].sync(logs[1].last_index()).await.unwrap();
        }
    });
    assert!(refused > 0, "the disk never filled up");
    let want = read_all(&logs[0]);
    assert_eq!(want.len() as u64, next - 1);
    drop(logs);
    let (_wal, logs) = open_all(&fs.crash(CrashMode::DropUnsynced, &mut SimRng::new(3)));
    assert_eq!(read_all(&logs[0]), want);
}

/// Polls `f` up to `polls` times, letting other fibers run between polls
/// when on a shard (the simulated disk never blocks, so a future that is
/// not done by then never will be); `None` if it was not done.
async fn within_polls<T>(polls: u32, f: impl std::future::Future<Output = T>) -> Option<T> {
    let mut f = std::pin::pin!(f);
    for _ in 0..polls {
        if let Some(v) = futures_lite::future::poll_once(&mut f).await {
            return Some(v);
        }
        if sampan_fiber::shard_id().is_some() {
            sampan_fiber::yield_now().await;
        }
    }
    None
}

/// Group 1's append dropped after `drop_after` polls, then group 2 appends
/// and syncs: what group 2's sync returned, or `None` if it never ended.
/// With `joined`, group 2's append is polled once right after group 1's
/// first poll, so it joins the batch group 1 opened and leads, and waits
/// on it while group 1 goes away.
async fn drop_an_append_then_sync_another(
    logs: &[WalLog<MemFs>],
    drop_after: u32,
    joined: bool,
) -> Option<Result<u64, StorageError>> {
    let run = entries(1, 3, 1, 0);
    let mut first = Box::pin(logs[0].append(&run));
    let mut other = Box::pin(async {
        logs[1].append(&entries(1, 2, 1, 1)).await?;
        logs[1].sync(2).await
    });
    let mut other_done = None;
    if joined && futures_lite::future::poll_once(&mut first).await.is_none() {
        other_done = futures_lite::future::poll_once(&mut other).await;
    }
    let _ = within_polls(drop_after, &mut first).await;
    drop(first);
    match other_done {
        Some(done) => Some(done),
        None => within_polls(10_000, other).await,
    }
}

/// An append whose caller goes away while it writes (a group stopped or
/// removed under load: its fibers are cancelled) must not wedge the shard:
/// on a shard, the other groups' appends and syncs go on, the dropped
/// group writes again, and after a crash every group reopens with what its
/// syncs promised. Dropped at every point the disk yields.
#[test]
fn an_append_dropped_mid_write_leaves_the_other_groups_working() {
    let rt = sampan_fiber::Runtime::builder()
        .shards(1)
        .io_memory_bytes(sampan_fiber::IO_MEMORY_MIN_BYTES)
        .build()
        .unwrap();
    let shard = rt.shard(0).unwrap();
    let cases = (0..=8u32).flat_map(|d| [(d, false), (d, true)]);
    for (drop_after, joined) in cases {
        for mode in [CrashMode::DropUnsynced, CrashMode::KeepRandomPages] {
            shard
                .run_blocking(sampan_fiber::TaskClass::Latency, move || async move {
                    let fs = MemFs::new();
                    fs.set_interleave(true);
                    let (wal, logs) = open_all(&fs);
                    let other = drop_an_append_then_sync_another(&logs, drop_after, joined).await;
                    assert!(
                        matches!(other, Some(Ok(2))),
                        "group 2 after group 1's append was dropped at poll {drop_after} \
                         (joined its batch: {joined}): {other:?}"
                    );
                    let again = within_polls(10_000, async {
                        let next = logs[0].last_index() + 1;
                        logs[0].append(&entries(next, 1, 1, 0)).await?;
                        logs[0].sync(next).await
                    })
                    .await;
                    assert!(
                        matches!(again, Some(Ok(_))),
                        "group 1 writing again (poll {drop_after}): {again:?}"
                    );
                    drop((wal, logs));
                    let mut rng = SimRng::new(u64::from(drop_after));
                    let disk = fs.crash(mode, &mut rng);
                    let (_, logs) = open_all(&disk);
                    assert_eq!(
                        read_all(&logs[1]),
                        expected(1, 2, 1, 1),
                        "poll {drop_after} ({mode:?}, joined: {joined})"
                    );
                    assert!(logs[0].last_index() >= 1, "poll {drop_after} ({mode:?})");
                })
                .unwrap();
        }
    }
    rt.shutdown(std::time::Duration::from_secs(5)).unwrap();
}

/// Off a shard no fiber can finish a dropped append's write: the log
/// fails (its groups reopen from their files) rather than wedging.
#[test]
fn off_a_shard_a_dropped_append_fails_the_log_instead_of_wedging_it() {
    for (drop_after, joined) in (0..=8u32).flat_map(|d| [(d, false), (d, true)]) {
        let fs = MemFs::new();
        fs.set_interleave(true);
        let (_wal, logs) = open_all(&fs);
        let other = block_on(drop_an_append_then_sync_another(&logs, drop_after, joined));
        assert!(
            other.is_some(),
            "group 2's sync never ended after group 1's append was dropped at poll {drop_after} \
             (joined its batch: {joined})"
        );
    }
}
