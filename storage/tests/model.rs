//! Property test: random sequences of append / sync / truncate tail /
//! purge head / install / reopen against a plain in-memory model; every
//! read is compared after every step.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use proptest::prelude::*;
use sampan_storage::sim::MemFs;
use sampan_storage::{RaftLog, SegmentLog};

#[derive(Debug, Clone)]
enum Op {
    Append {
        n: u64,
        bump_term: bool,
        salt: u64,
    },
    Sync,
    Truncate(u64),
    Purge(u64),
    Install(u64),
    Reopen,
    /// Prepare segment space, concurrently with an append.
    PrepareWhileAppending {
        n: u64,
        salt: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..12u64, any::<bool>(), any::<u64>()).prop_map(|(n, b, salt)| Op::Append { n, bump_term: b, salt }),
        2 => Just(Op::Sync),
        2 => any::<u64>().prop_map(Op::Truncate),
        2 => any::<u64>().prop_map(Op::Purge),
        1 => (0..4u64).prop_map(Op::Install),
        1 => Just(Op::Reopen),
        2 => (1..12u64, any::<u64>()).prop_map(|(n, salt)| Op::PrepareWhileAppending { n, salt }),
    ]
}

struct Model {
    first: u64,
    prev_term: u64,
    entries: Vec<(u64, u64, Vec<u8>)>,
    term: u64,
}

impl Model {
    fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }
}

fn check(log: &SegmentLog<MemFs>, m: &Model) {
    assert_eq!(log.first_index(), m.first);
    assert_eq!(log.last_index(), m.last());
    assert_eq!(
        log.last_term(),
        m.entries.last().map_or(m.prev_term, |e| e.1)
    );
    assert_eq!(log.term(m.first - 1).unwrap(), Some(m.prev_term));
    assert_eq!(read_all(log), m.entries);
    for e in &m.entries {
        assert_eq!(log.term(e.0).unwrap(), Some(e.1));
    }
    assert_eq!(log.term(m.last() + 1).unwrap(), None);
    // Its segments hold at least its live records (purged ones stay until
    // their segment goes).
    assert!(
        log.bytes() >= record_bytes(&m.entries),
        "bytes {} for {} entries",
        log.bytes(),
        m.entries.len()
    );
}

fn run(ops: Vec<Op>, big: bool) {
    // Big segments hold more than a batch of pending index records.
    let cfg = if big {
        sampan_storage::LogConfig {
            segment_bytes: 256 << 10,
            ..small_cfg()
        }
    } else {
        small_cfg()
    };
    let fs = MemFs::new();
    fs.set_interleave(true);
    let mut log = open_mem(&fs, cfg.clone()).unwrap();
    let mut m = Model {
        first: 1,
        prev_term: 0,
        entries: Vec::new(),
        term: 1,
    };
    for op in ops {
        match op {
            Op::Append { n, bump_term, salt } => {
                m.term += u64::from(bump_term);
                let run = entries(m.last() + 1, n, m.term, salt);
                block_on(log.append(&run)).unwrap();
                m.entries.extend(
                    run.iter()
                        .map(|r| (r.header.index, r.header.term, r.payload().to_vec())),
                );
            }
            Op::Sync => assert_eq!(block_on(log.sync(m.last())).unwrap(), m.last()),
            Op::Truncate(k) => {
                let k = m.first - 1 + k % (m.entries.len() as u64 + 1);
                block_on(log.truncate_tail(k)).unwrap();
                m.entries.truncate((k + 1 - m.first) as usize);
            }
            Op::Purge(p) => {
                let p = m.first + p % (m.entries.len() as u64 + 1);
                block_on(log.purge_head(p)).unwrap();
                if p > m.first {
                    m.prev_term = m.entries[(p - 1 - m.first) as usize].1;
                    m.entries.drain(..(p - m.first) as usize);
                    m.first = p;
                }
            }
            Op::Install(ahead) => {
                m.term += 1;
                let l = m.last() + ahead;
                block_on(log.install_snapshot(l, m.term)).unwrap();
                m = Model {
                    first: l + 1,
                    prev_term: m.term,
                    entries: Vec::new(),
                    term: m.term,
                };
            }
            Op::PrepareWhileAppending { n, salt } => {
                let run = entries(m.last() + 1, n, m.term, salt);
                let (appended, prepared) =
                    block_on(futures_lite::future::zip(log.append(&run), log.prepare()));
                appended.unwrap();
                prepared.unwrap();
                m.entries.extend(
                    run.iter()
                        .map(|r| (r.header.index, r.header.term, r.payload().to_vec())),
                );
            }
            Op::Reopen => {
                block_on(log.clone().close()).unwrap();
                drop(log);
                log = open_mem(&fs, cfg.clone()).unwrap();
            }
        }
        check(&log, &m);
    }
    // Memory stays bounded: old segments go as the head is purged (files:
    // two per segment, the meta file and perhaps a spare).
    let files = fs.paths().len();
    assert!(
        files <= 2 * log.segment_count() + 2,
        "{files} files for {} segments",
        log.segment_count()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn the_log_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..120), big in any::<bool>()) {
        run(ops, big);
    }
}
