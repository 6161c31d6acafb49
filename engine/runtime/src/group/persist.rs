//! The persist fiber: makes a group's writes durable in the order the core
//! handed them out — hard state, then entries (truncating a conflicting
//! tail first) — with one sync for everything queued, then sends the
//! messages that had to wait for it and tells the core what is durable.
//! A follower that received many AppendEntries appends them all and syncs
//! once.

use super::{Event, Outbox};
use crate::raft::{Entry, HardState, Message, SnapshotMeta};
use crate::wire::run_from_entries;
use sampan_fiber::{Receiver, Sender};
use sampan_storage::{RaftLog, StatusFile, Vfs};
use std::cell::RefCell;
use std::rc::Rc;

/// One `Ready`'s writes.
pub(crate) struct PersistJob {
    pub(crate) hard_state: Option<HardState>,
    pub(crate) entries: Vec<Entry>,
    /// The records of exactly `entries` as the leader sent them, when the
    /// follower has them: appended as they are, not encoded again.
    pub(crate) records: Option<sampan_storage::RecordRun>,
    pub(crate) messages: Vec<Message>,
    /// A received snapshot to install first: the log restarts after it.
    pub(crate) snapshot: Option<SnapshotMeta>,
    /// The core's log epoch for these writes, reported back with them.
    pub(crate) log_epoch: u64,
}

/// What a round made durable.
#[derive(Default)]
struct Round {
    /// The last entry written (index, term) and the log epoch of the
    /// newest job, whose writes the log now holds.
    last: Option<(u64, u64, u64)>,
    /// The index of a snapshot the log was reset to.
    installed: Option<u64>,
    messages: Vec<Message>,
}

/// Jobs taken in one round (one sync).
const JOBS_PER_ROUND: usize = 256;

/// A commit index that moved, with term and vote unchanged, is written to
/// the status file at most this often. It is only a lower bound used at
/// restart (replay up to it; the leader brings the rest), so it need not
/// cost an `fdatasync` per round: a status save per round was one extra
/// sync per group per round, in `async` mode too.
const COMMIT_SAVE_EVERY: std::time::Duration = std::time::Duration::from_millis(1_000);

pub(crate) async fn run<L: RaftLog, V: Vfs>(
    group: u64,
    log: L,
    mut status: StatusFile<V>,
    jobs: Receiver<PersistJob>,
    inbox: Sender<Event>,
    outbox: Rc<dyn Outbox>,
    snapshot: Rc<RefCell<SnapshotMeta>>,
) {
    let mut round = Vec::new();
    let mut commit_saved_at = std::time::Instant::now();
    while let Some(job) = jobs.recv().await {
        round.push(job);
        jobs.drain_into(&mut round, JOBS_PER_ROUND - 1);
        match persist_round(
            &log,
            &mut status,
            &mut round,
            &mut commit_saved_at,
            &snapshot,
        )
        .await
        {
            Ok(Round {
                last: durable,
                installed,
                messages,
            }) => {
                if let Some(index) = installed {
                    let _ = inbox.send(Event::SnapshotInstalled(index)).await;
                }
                if let Some((index, term, epoch)) = durable {
                    let _ = inbox.send(Event::Durable { index, term, epoch }).await;
                }
                for m in messages {
                    outbox.send(m, None);
                }
            }
            Err(e) => {
                let err = super::storage_error(group, &e);
                sampan_fiber::group_log!(
                    error,
                    group,
                    "group {group}: persisting failed, the replica stops writing: {e}"
                );
                let _ = inbox.send(Event::Failed(err)).await;
                return;
            }
        }
    }
}

/// Writes a round of jobs; returns the last durable (index, term), if
/// entries were written, and the messages now safe to send.
async fn persist_round<L: RaftLog, V: Vfs>(
    log: &L,
    status: &mut StatusFile<V>,
    round: &mut Vec<PersistJob>,
    commit_saved_at: &mut std::time::Instant,
    snapshot: &RefCell<SnapshotMeta>,
) -> sampan_storage::Result<Round> {
    let mut hard_state = None;
    let mut out = Round::default();
    // Synced by the previous round: the most a commit index saved before
    // this round's sync may claim, or a crash between the two would leave
    // a status file past the end of the log, which refuses to start.
    let index_synced = log.last_index();
    for job in round.drain(..) {
        if job.hard_state.is_some() {
            hard_state = job.hard_state;
        }
        if let Some(meta) = job.snapshot {
            // The snapshot's data is durable in the store already; the
            // log now starts after it.
            log.install_snapshot(meta.index, meta.term).await?;
            out.installed = Some(meta.index);
            out.last = None;
            let mut newest = snapshot.borrow_mut();
            if meta.index > newest.index {
                *newest = meta;
            }
        }
        if let Some(first) = job.entries.first() {
            if first.index <= log.last_index() {
                log.truncate_tail(first.index - 1).await?;
            }
            let run = job
                .records
                .unwrap_or_else(|| run_from_entries(&job.entries));
            log.append(&run).await?;
            out.last = Some((run.last_index(), run.last_term(), job.log_epoch));
        } else if let Some(last) = out.last.as_mut() {
            // Later jobs hold no entries but may follow a truncation the
            // core made since: the log as written covers their epoch too.
            last.2 = job.log_epoch;
        }
        out.messages.extend(job.messages);
    }
    // Successive hard states only move forward: the last one covers the
    // earlier ones of the round.
    if let Some(hs) = hard_state {
        let saved = sampan_storage::HardState {
            term: hs.term,
            vote: hs.vote.map(|n| n.0),
            commit_index: hs.index_commit.min(index_synced),
            config: Vec::new(),
        };
        let old = status.state();
        // Term and vote must be durable before any message that depends on
        // them leaves; a commit index alone can wait.
        let must = old.term != saved.term || old.vote != saved.vote;
        let now = std::time::Instant::now();
        if must || now.duration_since(*commit_saved_at) >= COMMIT_SAVE_EVERY {
            status.save(&saved).await?;
            *commit_saved_at = now;
        }
    }
    if let Some((index, _, _)) = out.last {
        log.sync(index).await?;
    }
    Ok(out)
}
