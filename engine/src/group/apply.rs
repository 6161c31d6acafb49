//! The apply fiber: hands committed entries to the state machine in
//! batches, answers each proposal with its entry's result (or `Lost` if
//! another leader's entry took its index), serves reads once their index is
//! applied, and reports progress to the core.

use super::{ApplyJob, Event, GroupError, Reply};
use crate::raft::{Entry, EntryKind};
use crate::state_machine::{Committed, StateMachine};
use bytes::Bytes;
use sampan_fiber::{Receiver, Sender, yield_if_needed};
use std::collections::BTreeMap;

struct Applier {
    group: u64,
    sm: Box<dyn StateMachine>,
    /// Proposals by index: the term they were proposed in, and the caller.
    pending: BTreeMap<u64, (u64, Reply<Bytes>)>,
    /// Reads by (index, arrival), served in order once applied.
    reads: BTreeMap<(u64, u64), (Bytes, Reply<Bytes>)>,
    reads_seq: u64,
    applied: u64,
    results: Vec<Bytes>,
}

pub(crate) async fn run(
    group: u64,
    sm: Box<dyn StateMachine>,
    jobs: Receiver<ApplyJob>,
    inbox: Sender<Event>,
) {
    let mut a = Applier {
        group,
        sm,
        pending: BTreeMap::new(),
        reads: BTreeMap::new(),
        reads_seq: 0,
        applied: 0,
        results: Vec::new(),
    };
    while let Some(job) = jobs.recv().await {
        match job {
            ApplyJob::Pending { index, term, reply } => {
                a.pending.insert(index, (term, reply));
            }
            ApplyJob::Entries(entries) => {
                a.apply(&entries);
                a.serve_reads();
                let _ = inbox.send(Event::Applied(a.applied)).await;
                yield_if_needed().await;
            }
            ApplyJob::Read {
                index,
                query,
                reply,
            } => {
                a.reads_seq += 1;
                a.reads.insert((index, a.reads_seq), (query, reply));
                a.serve_reads();
            }
            ApplyJob::Role(change) => a.sm.on_role_change(&change),
        }
    }
}

impl Applier {
    fn apply(&mut self, entries: &[Entry]) {
        let batch: Vec<Committed<'_>> = entries
            .iter()
            .filter(|e| e.kind == EntryKind::Normal)
            .map(|e| Committed {
                index: e.index,
                term: e.term,
                payload: &e.payload,
            })
            .collect();
        self.results.clear();
        self.sm.apply(&batch, &mut self.results);
        assert_eq!(
            self.results.len(),
            batch.len(),
            "group {}: one result per entry",
            self.group
        );
        let mut results = std::mem::take(&mut self.results).into_iter();
        for e in entries {
            let result = if e.kind == EntryKind::Normal {
                results.next()
            } else {
                None
            };
            if let Some((term, reply)) = self.pending.remove(&e.index) {
                match result {
                    Some(r) if term == e.term => reply.send(Ok(r)),
                    _ => reply.send(Err(GroupError::Lost {
                        group: self.group,
                        index: e.index,
                    })),
                }
            }
            self.applied = e.index;
        }
        // Proposals below the applied index whose entry never came (a
        // snapshot covered them) are lost too.
        while let Some((&index, _)) = self.pending.first_key_value() {
            if index > self.applied {
                break;
            }
            if let Some((_, (_, reply))) = self.pending.pop_first() {
                reply.send(Err(GroupError::Lost {
                    group: self.group,
                    index,
                }));
            }
        }
    }

    fn serve_reads(&mut self) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        while let Some((&(index, _), _)) = self.reads.first_key_value() {
            if index > self.applied {
                break;
            }
            if let Some((_, (query, reply))) = self.reads.pop_first() {
                let answer = self.sm.read(&query, now_ms).map_err(|e| GroupError::Read {
                    group: self.group,
                    reason: e.to_string(),
                });
                reply.send(answer);
            }
        }
    }
}
