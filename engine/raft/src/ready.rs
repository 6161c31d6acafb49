//! The output of the core, drained by the caller after each input.
//!
//! # Contract
//!
//! Handle the fields of a [`Ready`] in this order:
//!
//! 1. Send [`Ready::messages`] right away: they come from a leader
//!    (AppendEntries, heartbeats, snapshots, TimeoutNow) and do not need the
//!    leader's own log to be durable. The leader counts its own durable index
//!    like a follower's, so it may replicate before its own fsync finishes.
//!    Its term must be durable, though: a leader that won by its own vote
//!    alone puts its messages in `messages_persisted` until its no-op is.
//! 2. Persist, in this order: [`Ready::hard_state`], then install
//!    [`Ready::snapshot`] (replace the state machine and the log by it), then
//!    append [`Ready::entries`] after dropping every log entry whose index is
//!    at or past the first of them. Writes of successive `Ready`s must reach
//!    the disk in order.
//! 3. Once those writes — and those of every earlier `Ready` — are durable,
//!    send [`Ready::messages_persisted`] (votes, vote requests,
//!    acknowledgements: a vote or an ack sent before its fsync can elect two
//!    leaders or lose a committed entry on a crash) and report it:
//!    `on_snapshot_installed`, then `on_entries_durable(last index, its
//!    term, log_epoch)` with the [`Ready::log_epoch`] of the newest `Ready`
//!    whose writes it covers (a report from before a truncation or a
//!    snapshot must not vouch for entries written again since).
//!    If nothing is waiting to be written, they may be sent at once.
//! 4. Apply [`Ready::entries_committed`] in order and report `on_applied`.
//!    Membership changes among them are already in force in the core (from
//!    the moment they were appended); track them to write snapshot metadata.
//! 5. Serve each [`Ready::reads`] once the state machine has applied its
//!    index; answer each of [`Ready::reads_failed`] with an error (retry
//!    on the leader).

use bytes::Bytes;

use super::message::Message;
use super::read::ReadState;
use super::types::{Entry, HardState, SnapshotMeta};

/// Everything the caller must do after an input; see the module doc.
#[derive(Debug, Default)]
pub struct Ready {
    /// The hard state to persist, if it changed. Its commit index never
    /// passes what earlier `Ready`s made durable.
    pub hard_state: Option<HardState>,
    /// A snapshot received from the leader, to install before `entries`.
    pub snapshot: Option<SnapshotMeta>,
    /// Entries to append; the log is first truncated from `entries[0].index`.
    pub entries: Vec<Entry>,
    /// The log epoch of this `Ready`'s writes, to hand back to
    /// `on_entries_durable` once they are durable.
    pub log_epoch: u64,
    /// Messages to send now.
    pub messages: Vec<Message>,
    /// Messages to send once this `Ready`'s writes are durable.
    pub messages_persisted: Vec<Message>,
    /// Committed entries to apply, in order.
    pub entries_committed: Vec<Entry>,
    /// Reads that may be served once their index is applied.
    pub reads: Vec<ReadState>,
    /// Contexts of reads dropped because leadership was lost.
    pub reads_failed: Vec<Bytes>,
}

impl Ready {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.snapshot.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.messages_persisted.is_empty()
            && self.entries_committed.is_empty()
            && self.reads.is_empty()
            && self.reads_failed.is_empty()
    }
}
