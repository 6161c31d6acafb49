//! The read gate: lets a linearizable read on the leader's shard be
//! answered by the state machine right where it is asked, without a trip
//! through the Raft loop and the apply fiber, while the leader lease holds.
//!
//! The Raft loop publishes what its core knows — when the lease ends
//! ([`crate::raft::Raft::lease_until_ms`]) and the commit index — after
//! every batch of events and before any message it emits leaves; the
//! apply fiber publishes how far the state machine has applied. A read is
//! served here only if, when it is asked:
//!
//! - the monotonic clock is before the published lease end (a shard that
//!   stalled past it, or a paused process, finds it over: real time, not
//!   ticks, bounds it), and
//! - the state machine has applied at least the published commit index,
//!   so it holds every write any replica may have acknowledged, and
//! - the state machine is not being replaced by a snapshot (it is then
//!   borrowed by the apply fiber).
//!
//! Otherwise the read takes the full path (ReadIndex through the loop),
//! which waits for what is missing. Which of the two answered is not
//! visible to the caller.

use crate::state_machine::{self, StateMachine};
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::GroupError;

/// A group's state machine, shared on its shard by the apply fiber (which
/// changes it) and the read gate (which reads it between applies).
pub(crate) type SharedMachine = Rc<RefCell<Box<dyn StateMachine>>>;

/// What a leader's replica publishes for reads served without a hop.
pub(crate) struct ReadGate {
    group: u64,
    /// The lease's end on [`super::monotonic_ms`]'s clock (exclusive);
    /// 0: no lease to serve from.
    until_ms: Cell<u64>,
    /// The leader's commit index when `until_ms` was published.
    committed: Cell<u64>,
    /// How far the state machine has applied.
    applied: Cell<u64>,
    machine: SharedMachine,
}

impl ReadGate {
    /// A closed gate over `machine`, which has applied `applied`.
    pub(crate) fn new(group: u64, machine: SharedMachine, applied: u64) -> ReadGate {
        ReadGate {
            group,
            until_ms: Cell::new(0),
            committed: Cell::new(0),
            applied: Cell::new(applied),
            machine,
        }
    }

    /// The state machine, for the apply fiber.
    pub(crate) fn machine(&self) -> &SharedMachine {
        &self.machine
    }

    /// The Raft loop's view: the lease's end (`None`: no lease) and the
    /// commit index.
    pub(crate) fn publish(&self, until_ms: Option<u64>, committed: u64) {
        self.until_ms.set(until_ms.unwrap_or(0));
        self.committed.set(committed);
    }

    /// The apply fiber's progress.
    pub(crate) fn set_applied(&self, applied: u64) {
        self.applied.set(applied);
    }

    /// How far the state machine has applied.
    pub(crate) fn applied(&self) -> u64 {
        self.applied.get()
    }

    /// The answer from the state machine now to the query `make` builds
    /// (called only if the gate is open), if the lease allows it (see the
    /// module's doc); `None`: take the full path.
    pub(crate) fn try_read(
        &self,
        make: impl FnOnce() -> Bytes,
    ) -> Option<Result<Bytes, GroupError>> {
        let until = self.until_ms.get();
        if until == 0 || self.applied.get() < self.committed.get() {
            return None;
        }
        if super::monotonic_ms() >= until {
            return None;
        }
        let machine = self.machine.try_borrow().ok()?;
        Some(
            machine
                .read(&make(), state_machine::now_ms())
                .map_err(|e| GroupError::Read {
                    group: self.group,
                    reason: e.to_string(),
                }),
        )
    }
}
