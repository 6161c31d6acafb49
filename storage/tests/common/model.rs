//! The plain model the power-cut tests hold a log to: its entries, purge
//! point and what `sync` promised; the random calls made on it; and the
//! check that a reopened log is a prefix of it holding every promise.

use super::entries;
use sampan_storage::sim::SimRng;
use sampan_storage::{RaftLog, RecordRun};

/// (index, term, payload).
pub type Entry = (u64, u64, Vec<u8>);

/// What a log must hold.
#[derive(Debug, Clone)]
pub struct Model {
    pub first: u64,
    pub prev_term: u64,
    pub entries: Vec<Entry>,
    /// Highest index reported durable (and not truncated since).
    pub promised: u64,
}

/// A call on a log.
pub enum Op {
    Append(RecordRun),
    Sync,
    Truncate(u64),
    Purge(u64),
    Install(u64, u64),
    /// The log's background work (segment preparation, or the shared
    /// log's maintenance); changes nothing the model sees.
    Background,
}

impl Model {
    /// An empty log.
    pub fn new() -> Model {
        Model {
            first: 1,
            prev_term: 0,
            entries: Vec::new(),
            promised: 0,
        }
    }

    pub fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    /// An append of 1 to 8 entries after the last, in a new term one time
    /// in eight (`term` is the newest so far).
    pub fn append_op(&self, rng: &mut SimRng, term: &mut u64) -> Op {
        if rng.below(8) == 0 {
            *term += 1;
        }
        Op::Append(entries(
            self.last() + 1,
            1 + rng.below(8),
            *term,
            rng.below(1000),
        ))
    }

    /// A random call on this log (`term` goes up now and then): appends
    /// 50%, syncs 16%, background work 6%, truncations 12%, purges 12%,
    /// installs 4%.
    pub fn pick(&self, rng: &mut SimRng, term: &mut u64) -> Op {
        let m = self;
        match rng.below(100) {
            0..=49 => m.append_op(rng, term),
            50..=65 => Op::Sync,
            66..=71 => Op::Background,
            72..=83 => Op::Truncate(m.first - 1 + rng.below(m.entries.len() as u64 + 1)),
            84..=95 => {
                Op::Purge((m.first + rng.below(m.entries.len() as u64 + 2)).min(m.last() + 1))
            }
            _ => {
                *term += 1;
                Op::Install(m.last() + rng.below(5), *term)
            }
        }
    }

    /// The model after `op` succeeds.
    pub fn after(&self, op: &Op) -> Model {
        let mut m = self.clone();
        match op {
            Op::Append(run) => m.entries.extend(
                run.iter()
                    .map(|r| (r.header.index, r.header.term, r.payload().to_vec())),
            ),
            Op::Sync => m.promised = m.last(),
            Op::Truncate(k) => {
                m.entries.truncate((k + 1 - m.first) as usize);
                m.promised = m.promised.min(*k);
            }
            Op::Purge(p) => {
                if *p > m.first {
                    m.prev_term = m.entries[(p - 1 - m.first) as usize].1;
                    m.entries.drain(..(p - m.first) as usize);
                    m.first = *p;
                }
            }
            Op::Background => {}
            Op::Install(l, t) => {
                m = Model {
                    first: l + 1,
                    prev_term: *t,
                    entries: Vec::new(),
                    promised: *l,
                }
            }
        }
        m
    }

    /// Whether `log`, which read back as `got`, is a prefix of this model
    /// holding every promise.
    pub fn matches<L: RaftLog>(&self, log: &L, got: &[Entry]) -> bool {
        let c = self;
        log.first_index() == c.first
            && got.len() <= c.entries.len()
            && got[..] == c.entries[..got.len()]
            && log.last_index() >= c.promised.min(c.last())
            && log.term(c.first - 1).ok().flatten() == Some(c.prev_term)
    }
}
