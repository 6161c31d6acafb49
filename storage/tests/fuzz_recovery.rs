//! Fuzzing segment recovery, run by CI for a bounded number of cases: a
//! valid log is written through the public API, its files (segments, index
//! files, `meta`) are damaged by random mutations — bit flips, truncations,
//! garbage appended, zeroed ranges, bytes copied from another file (a
//! misdirected write), a file deleted — and the log is reopened. Recovery
//! must either fail with a [`StorageError`] or open a log whose every entry
//! it hands out is one that was written, at its index, with its term and
//! payload (reads are CRC-checked). It must never panic, and a log that
//! also passes [`SegmentLog::verify`] must be a prefix of what was written.
//!
//! Two disks: the simulated one (`MemFs`, many cases) and the real one (a
//! tempdir through io_uring and memory maps, fewer cases: it also proves a
//! file cut short under a mapping is read without a SIGBUS).
//!
//! CI runs 1,500 simulated and 40 real-disk cases (about 3 s). Long runs:
//! `SAMPAN_FUZZ_CASES=100000 cargo test --workspace --test fuzz_recovery`
//! (the simulated disk runs that many cases, the real disk a tenth).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};
use sampan_fiber::{IO_MEMORY_MIN_BYTES, Runtime, TaskClass};
use sampan_storage::sim::MemFs;
use sampan_storage::{
    DiskFs, LogConfig, LogWriter, RaftLog, RunBuilder, SegmentLog, StorageError, Vfs,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Cases per test: `default`, or `SAMPAN_FUZZ_CASES` for long runs.
fn cases(default: u32) -> u32 {
    std::env::var("SAMPAN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What was written: `(term, payload)` of entry `k + 1` at `k`.
type Written = Vec<(u64, Vec<u8>)>;

/// Entries in appends of a few each, terms rising now and then, payloads
/// of 0..300 bytes: 4 KiB segments hold 10–40 of them, so a log spans
/// several sealed segments and an active one.
fn written() -> impl Strategy<Value = (Written, Vec<usize>)> {
    (
        prop::collection::vec(
            (0u64..2, prop::collection::vec(any::<u8>(), 0..300)),
            1..120,
        ),
        prop::collection::vec(1usize..12, 1..8),
    )
        .prop_map(|(raw, batches)| {
            let mut term = 1;
            let entries = raw
                .into_iter()
                .map(|(bump, payload)| {
                    term += bump;
                    (term, payload)
                })
                .collect();
            (entries, batches)
        })
}

/// A way to damage a file; indexes pick the file and the offsets.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, Index, u8),
    Truncate(Index, Index),
    Append(Index, Vec<u8>),
    Zero(Index, Index, usize),
    /// Bytes of one file written over another's (a misdirected write).
    Copy(Index, Index, Index, Index, usize),
    Delete(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let i = any::<Index>;
    prop_oneof![
        4 => (i(), i(), 1u8..=255).prop_map(|(f, o, x)| Mutation::Flip(f, o, x)),
        2 => (i(), i()).prop_map(|(f, o)| Mutation::Truncate(f, o)),
        2 => (i(), prop::collection::vec(any::<u8>(), 1..200))
            .prop_map(|(f, v)| Mutation::Append(f, v)),
        2 => (i(), i(), 1usize..600).prop_map(|(f, o, n)| Mutation::Zero(f, o, n)),
        2 => (i(), i(), i(), i(), 1usize..400)
            .prop_map(|(a, oa, b, ob, n)| Mutation::Copy(a, oa, b, ob, n)),
        1 => i().prop_map(Mutation::Delete),
    ]
}

/// Files as byte vectors, whatever the disk: what the mutations act on.
trait Files {
    fn files(&self) -> Vec<PathBuf>;
    fn get(&self, path: &Path) -> Vec<u8>;
    fn put(&self, path: &Path, bytes: Vec<u8>);
    fn delete(&self, path: &Path);
}

impl Files for MemFs {
    fn files(&self) -> Vec<PathBuf> {
        self.paths()
    }
    fn get(&self, path: &Path) -> Vec<u8> {
        self.contents(path).unwrap_or_default()
    }
    fn put(&self, path: &Path, bytes: Vec<u8>) {
        self.set_contents(path, bytes);
    }
    fn delete(&self, path: &Path) {
        block_on(self.remove(path)).unwrap();
    }
}

/// The real disk under one log directory.
struct OsDir(PathBuf);

impl Files for OsDir {
    fn files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }
    fn get(&self, path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }
    fn put(&self, path: &Path, bytes: Vec<u8>) {
        std::fs::write(path, bytes).unwrap();
    }
    fn delete(&self, path: &Path) {
        std::fs::remove_file(path).unwrap();
    }
}

fn damage(files: &impl Files, mutations: &[Mutation]) {
    for m in mutations {
        let paths = files.files();
        if paths.is_empty() {
            return;
        }
        let file = |i: &Index| paths[i.index(paths.len())].clone();
        match m {
            Mutation::Flip(f, o, x) => {
                let p = file(f);
                let mut b = files.get(&p);
                if !b.is_empty() {
                    let at = o.index(b.len());
                    b[at] ^= x;
                    files.put(&p, b);
                }
            }
            Mutation::Truncate(f, o) => {
                let p = file(f);
                let mut b = files.get(&p);
                b.truncate(o.index(b.len() + 1));
                files.put(&p, b);
            }
            Mutation::Append(f, v) => {
                let p = file(f);
                let mut b = files.get(&p);
                b.extend_from_slice(v);
                files.put(&p, b);
            }
            Mutation::Zero(f, o, n) => {
                let p = file(f);
                let mut b = files.get(&p);
                let at = o.index(b.len() + 1);
                let end = (at + n).min(b.len());
                b[at..end].fill(0);
                files.put(&p, b);
            }
            Mutation::Copy(a, oa, f, o, n) => {
                let src = files.get(&file(a));
                let p = file(f);
                let mut b = files.get(&p);
                let from = oa.index(src.len() + 1);
                let at = o.index(b.len() + 1);
                let n = (*n).min(src.len() - from).min(b.len() - at);
                b[at..at + n].copy_from_slice(&src[from..from + n]);
                files.put(&p, b);
            }
            Mutation::Delete(f) => files.delete(&file(f)),
        }
    }
}

/// Appends `written` in runs of `batches` sizes (cycled), syncing after
/// each run.
async fn write_log<L: RaftLog>(log: &L, written: &Written, batches: &[usize]) {
    let mut next = 0;
    let mut sizes = batches.iter().cycle();
    while next < written.len() {
        let n = (*sizes.next().unwrap()).min(written.len() - next);
        let mut b = RunBuilder::new(next as u64 + 1);
        for (term, payload) in &written[next..next + n] {
            b.push(*term, 1, payload);
        }
        let run = b.finish();
        log.append(&run).await.unwrap();
        log.sync(run.last_index()).await.unwrap();
        next += n;
    }
}

/// The property, on a log that opened: whatever it hands out was written.
fn check_recovered<V: Vfs>(log: &SegmentLog<V>, written: &Written) -> Result<(), TestCaseError> {
    let (first, last) = (log.first_index(), log.last_index());
    prop_assert!(first >= 1);
    prop_assert!(
        last <= written.len() as u64,
        "the log ends at {last}, only {} entries were written",
        written.len()
    );
    let mut all_read = true;
    for index in first..=last {
        match log.read(index, 1) {
            Ok(run) => {
                prop_assert!(!run.is_empty(), "read of {index} returned nothing");
                let rec = run.iter().next().unwrap();
                let (term, payload) = &written[index as usize - 1];
                prop_assert_eq!(rec.header.index, index);
                prop_assert_eq!(rec.header.term, *term, "term of entry {}", index);
                let got = rec.payload();
                prop_assert_eq!(&got[..], &payload[..], "payload of {}", index);
            }
            // A typed error: the damage is reported, not handed out.
            Err(_) => all_read = false,
        }
    }
    if log.verify().is_ok() {
        prop_assert!(all_read, "verify passed, yet a read failed");
        prop_assert_eq!(first, 1, "nothing was purged");
    }
    Ok(())
}

fn outcome<V: Vfs>(
    opened: Result<SegmentLog<V>, StorageError>,
    written: &Written,
) -> Result<(), TestCaseError> {
    match opened {
        Ok(log) => check_recovered(&log, written),
        // Refusing to open is allowed: every StorageError is typed and names
        // what it refused.
        Err(_) => Ok(()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(1500), ..ProptestConfig::default() })]

    #[test]
    fn damaged_logs_recover_a_written_prefix_or_refuse(
        (written, batches) in written(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let fs = MemFs::new();
        let log = open_mem(&fs, small_cfg()).unwrap();
        block_on(write_log(&log, &written, &batches));
        drop(log);
        damage(&fs, &mutations);
        outcome(open_mem(&fs, small_cfg()), &written)?;
    }
}

fn disk_cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        grow_step_bytes: 1024,
        index_grow_step_bytes: 256,
        zero_ahead_bytes: 0,
        ..LogConfig::default()
    }
}

#[test]
fn damaged_logs_on_a_real_disk_recover_a_written_prefix_or_refuse() {
    let rt = Runtime::builder()
        .shards(1)
        .io_memory_bytes(IO_MEMORY_MIN_BYTES)
        .build()
        .unwrap();
    let shard = rt.shard(0).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let case = std::cell::Cell::new(0u64);
    let mut runner = TestRunner::new(Config {
        cases: std::env::var("SAMPAN_FUZZ_CASES").map_or(40, |_| (cases(0) / 10).max(1)),
        ..Config::default()
    });
    let strategy = (written(), prop::collection::vec(mutation(), 1..4));
    let result = runner.run(&strategy, |((written, batches), mutations)| {
        case.set(case.get() + 1);
        let dir = tmp.path().join(format!("case-{}", case.get()));
        let d = dir.clone();
        let w = written.clone();
        shard
            .run_blocking(TaskClass::Latency, move || async move {
                let log = SegmentLog::open(DiskFs, &d, 1, disk_cfg(), LogWriter::new())
                    .await
                    .unwrap();
                write_log(&log, &w, &batches).await;
            })
            .unwrap();
        damage(&OsDir(dir.clone()), &mutations);
        let d = dir.clone();
        let checked = shard
            .run_blocking(TaskClass::Latency, move || async move {
                let opened = SegmentLog::open(DiskFs, &d, 1, disk_cfg(), LogWriter::new()).await;
                outcome(opened, &written)
            })
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        checked
    });
    rt.shutdown(Duration::from_secs(1)).unwrap();
    if let Err(e) = result {
        panic!("{e}");
    }
}
