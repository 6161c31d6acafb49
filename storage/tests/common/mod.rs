//! Helpers shared by the storage tests.
#![allow(dead_code, clippy::unwrap_used)]

pub mod model;

use sampan_storage::sim::MemFs;
use sampan_storage::{LogConfig, LogWriter, RaftLog, RecordRun, RunBuilder, SegmentLog};
use std::path::Path;

pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    futures_lite::future::block_on(f)
}

/// Tiny segments so tests roll, truncate and purge across many files.
pub fn small_cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        grow_step_bytes: 1024,
        index_grow_step_bytes: 256,
        ..LogConfig::default()
    }
}

/// [`small_cfg`] whose appends only write, so that sync rounds (and their
/// failures) make them durable (the default, said outright).
pub fn plain_cfg() -> LogConfig {
    LogConfig {
        durable_writes: false,
        ..small_cfg()
    }
}

/// [`small_cfg`] with durable writes: an append into an all-synced log is
/// written and made durable in one operation.
pub fn durable_cfg() -> LogConfig {
    LogConfig {
        durable_writes: true,
        ..small_cfg()
    }
}

/// A run of entries `first..first+n` with deterministic payloads.
pub fn entries(first: u64, n: u64, term: u64, salt: u64) -> RecordRun {
    let mut b = RunBuilder::new(first);
    for i in first..first + n {
        b.push(term, 1, &payload(i, term, salt));
    }
    b.finish()
}

pub fn payload(index: u64, term: u64, salt: u64) -> Vec<u8> {
    let len = ((index * 31 + term * 7 + salt) % 300) as usize;
    (0..len).map(|k| (k as u64 + index + salt) as u8).collect()
}

/// What [`read_all`] must return for the entries [`entries`] made.
pub fn expected(first: u64, n: u64, term: u64, salt: u64) -> Vec<(u64, u64, Vec<u8>)> {
    (first..first + n)
        .map(|i| (i, term, payload(i, term, salt)))
        .collect()
}

/// Every entry of the log as (index, term, payload).
/// Bytes the records of `entries` take (headers and padded payloads).
pub fn record_bytes(entries: &[(u64, u64, Vec<u8>)]) -> u64 {
    entries
        .iter()
        .map(|e| sampan_storage::format::record_len(e.2.len()) as u64)
        .sum()
}

pub fn read_all<L: RaftLog>(log: &L) -> Vec<(u64, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut from = log.first_index();
    while from <= log.last_index() {
        let run = log.read(from, 1000).unwrap();
        assert!(!run.is_empty(), "read from {from} returned nothing");
        for r in run.iter() {
            out.push((r.header.index, r.header.term, r.payload().to_vec()));
        }
        from = run.last_index() + 1;
    }
    out
}

pub fn open_mem(fs: &MemFs, cfg: LogConfig) -> sampan_storage::Result<SegmentLog<MemFs>> {
    block_on(SegmentLog::open(
        fs.clone(),
        Path::new("/g1/log"),
        1,
        cfg,
        LogWriter::new(),
    ))
}
