//! The apply fiber: hands committed entries to the state machine in
//! batches, answers each proposal with its entry's result (or `Lost` if
//! another leader's entry took its index), serves reads once their index is
//! applied, and reports progress to the core.

use super::{ApplyJob, Event, GroupError, Reply};
use crate::raft::{Entry, EntryKind};
use crate::state_machine::{self, Committed, Role, StateMachine};
use bytes::Bytes;
use sampan_fiber::{Receiver, Sender, oneshot, yield_if_needed};
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
    /// Whether this replica leads (the state machine's due commands are
    /// proposed only then).
    leading: bool,
    /// When to ask the state machine for due commands again.
    due_at: Option<u64>,
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
        leading: false,
        due_at: None,
    };
    loop {
        let job = match a.due_at.filter(|_| a.leading) {
            Some(at) => {
                let wait =
                    std::time::Duration::from_millis(at.saturating_sub(state_machine::now_ms()));
                let job = async { Some(jobs.recv().await) };
                let timer = async {
                    sampan_fiber::sleep(wait).await;
                    None
                };
                match futures_lite::future::or(job, timer).await {
                    Some(job) => job,
                    None => {
                        a.propose_due(&inbox);
                        continue;
                    }
                }
            }
            None => jobs.recv().await,
        };
        let Some(job) = job else { break };
        match job {
            ApplyJob::Pending { index, term, reply } => {
                a.pending.insert(index, (term, reply));
            }
            ApplyJob::Entries(entries) => {
                a.apply(&entries);
                a.serve_reads();
                let _ = inbox.send(Event::Applied(a.applied)).await;
                if a.leading {
                    a.propose_due(&inbox);
                }
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
            ApplyJob::Role(change) => {
                a.sm.on_role_change(&change);
                a.leading = change.role == Role::Leader;
                if a.leading {
                    a.propose_due(&inbox);
                }
            }
        }
    }
}

impl Applier {
    /// Proposes what the state machine wants proposed now (expirations),
    /// without waiting: a full inbox drops them, and the state machine asks
    /// again at the time it returns.
    fn propose_due(&mut self, inbox: &Sender<Event>) {
        let mut due = Vec::new();
        self.due_at = self.sm.due_commands(state_machine::now_ms(), &mut due);
        for payload in due {
            let (reply, _ignored) = oneshot();
            if inbox.try_send(Event::Propose { payload, reply }).is_err() {
                log::debug!("group {}: a due command waits for room", self.group);
                break;
            }
        }
    }

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
        let now_ms = state_machine::now_ms();
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
