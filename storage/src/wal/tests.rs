//! Segment formats and recycling, tested from inside (the chunk format is
//! private): a log written in format 1 still opens and is never recycled,
//! and a recycled file's old chunks never replay.

#![allow(clippy::unwrap_used)]

use super::chunk::{self, Found, SEGMENT_VERSION_1, decode_chunk_header, decode_segment_header};
use super::*;
use crate::format::RunBuilder;
use crate::sim::{CrashMode, MemFs, SimRng};
use futures_lite::future::block_on;

fn cfg() -> WalConfig {
    WalConfig {
        segment_bytes: 8192,
        ..WalConfig::default()
    }
}

fn wal_dir() -> PathBuf {
    PathBuf::from("/data/wal")
}

fn open(fs: &MemFs) -> (ShardWal<MemFs>, WalLog<MemFs>) {
    block_on(async {
        let wal = ShardWal::open(fs.clone(), &wal_dir(), cfg()).await.unwrap();
        let log = WalLog::open(&wal, Path::new("/data/g1"), 1, SyncMode::Sync)
            .await
            .unwrap();
        (wal, log)
    })
}

/// Every payload the same size, so chunks lie at the same offsets in
/// every life of a recycled file: an old chunk starts exactly where the
/// new ones end.
fn payload(index: u64) -> Vec<u8> {
    vec![index as u8; 100]
}

/// Appends entries until the log has `segments` segments; returns the
/// last index.
fn fill(wal: &ShardWal<MemFs>, log: &WalLog<MemFs>, segments: usize) -> u64 {
    block_on(async {
        while wal.segment_ids().len() < segments {
            let first = log.last_index() + 1;
            let mut b = RunBuilder::new(first);
            for i in first..first + 10 {
                b.push(1, 1, &payload(i));
            }
            log.append(&b.finish()).await.unwrap();
            log.sync(log.last_index()).await.unwrap();
        }
        log.last_index()
    })
}

fn check(log: &WalLog<MemFs>, first: u64, last: u64) {
    assert_eq!((log.first_index(), log.last_index()), (first, last));
    let mut at = first;
    while at <= last {
        let run = log.read(at, 1 << 20).unwrap();
        for r in run.iter() {
            assert_eq!((r.header.index, &r.payload()[..]), (at, &payload(at)[..]));
            at += 1;
        }
    }
}

/// Rewrites every segment of the log as format 1 wrote it: segment header
/// version 1, chunks without their segment's id.
fn downgrade_to_format_1(fs: &MemFs) {
    for path in fs.paths() {
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_segment_name)
        else {
            continue;
        };
        let mut data = fs.contents(&path).unwrap();
        let mut h = decode_segment_header(&bytes::Bytes::from(data.clone()))
            .unwrap()
            .unwrap();
        h.version = SEGMENT_VERSION_1;
        h.recycled = false;
        data[..SEGMENT_HEADER_BYTES as usize].copy_from_slice(&chunk::encode_segment_header(&h));
        let mut off = SEGMENT_HEADER_BYTES as usize;
        while off + CHUNK_HEADER_BYTES <= data.len() {
            let Found::Chunk(h) = decode_chunk_header(&data[off..]) else {
                break;
            };
            assert_eq!(h.segment, Some(id as u32));
            let len = h.chunk_len() as usize;
            let body = data
                [off + CHUNK_HEADER_BYTES..off + CHUNK_HEADER_BYTES + h.body_len as usize]
                .to_vec();
            let mut out = Vec::new();
            chunk::encode_chunk(&mut out, &ChunkHeader { segment: None, ..h }, &body);
            data[off..off + len].copy_from_slice(&out);
            off += len;
        }
        fs.set_contents(&path, data);
    }
}

#[test]
fn a_log_in_format_1_opens_reads_back_and_its_segments_are_deleted_not_recycled() {
    let fs = MemFs::new();
    let (wal, log) = open(&fs);
    let last = fill(&wal, &log, 4);
    drop((log, wal));
    downgrade_to_format_1(&fs);
    let (wal, log) = open(&fs);
    check(&log, 1, last);
    // New chunks go into the format 1 active segment beside the old ones,
    // and the log reopens with both.
    let last = fill(&wal, &log, 5);
    drop((log, wal));
    let (wal, log) = open(&fs);
    check(&log, 1, last);
    // Retired format 1 segments are deleted: their chunks do not name
    // them, so a recycled one's could not be told from new ones.
    block_on(log.purge_head(last)).unwrap();
    assert_eq!(wal.recycling().0, 0, "no format 1 file kept to recycle");
    let last = fill(&wal, &log, 3);
    block_on(log.purge_head(last)).unwrap();
    assert!(wal.recycling().0 > 0, "format 2 segments are recycled");
}

#[test]
fn a_recycled_segments_old_chunks_never_replay() {
    let fs = MemFs::new();
    let (wal, log) = open(&fs);
    let mut last = fill(&wal, &log, 4);
    block_on(log.purge_head(last)).unwrap();
    assert_eq!(wal.recycling().0, 3, "segments 1-3 kept to recycle");
    // Roll onto all three, purging as it goes, so the active segment is a
    // recycled file whose old chunks (of this same epoch, each a valid
    // chunk of group 1) lie just past the new ones.
    while wal.recycling().1 < 3 {
        last = fill(&wal, &log, wal.segment_ids().len() + 1);
        block_on(log.purge_head(last)).unwrap();
    }
    let active = *wal.segment_ids().last().unwrap();
    let path = wal_dir().join(segment_name(active));
    let data = fs.contents(&path).unwrap();
    let header = decode_segment_header(&bytes::Bytes::from(data.clone()))
        .unwrap()
        .unwrap();
    assert!(header.recycled, "the header says the file was recycled");
    let mut end = SEGMENT_HEADER_BYTES as usize;
    let stale = loop {
        match decode_chunk_header(&data[end..]) {
            Found::Chunk(h) if h.segment == Some(active as u32) => end += h.chunk_len() as usize,
            found => break found,
        }
    };
    assert!(
        matches!(stale, Found::Chunk(h) if h.group == 1 && h.epoch == wal.inner.epoch),
        "an old chunk of the same group and epoch starts where the new ones end: {stale:?}"
    );
    drop((log, wal));
    for mode in [CrashMode::DropUnsynced, CrashMode::KeepRandomPages] {
        let disk = fs.crash(mode, &mut SimRng::new(7));
        let (_wal, log) = open(&disk);
        check(&log, last, last);
    }
}
