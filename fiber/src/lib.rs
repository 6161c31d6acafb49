//! sampan-fiber: the thread-per-core runtime every Sampan Raft group runs on.
//!
//! **What it is for.** Starting a set of *shards* (one [glommio] executor
//! thread each, optionally pinned to a core), and running cooperative
//! *fibers* on them: each Raft group is a [`FiberGroup`] whose fibers (Raft
//! loop, replicators, apply, snapshot) run in the shard's task queue for their
//! [`TaskClass`]. Shard-local primitives ([`Signal`], [`channel`],
//! [`oneshot`], [`sleep`], [`timeout`], [`Ticker`]) let fibers talk without
//! locks; [`within`] bounds the many short waits of a request path by
//! deadlines one sweeper fiber per shard watches, instead of a timer each;
//! [`ShardHandle`] crosses into a shard from another shard or from any OS
//! thread, with async and blocking forms.
//!
//! **What it is not for.** It is not a second scheduler on top of glommio,
//! and it knows nothing of Raft, files or sockets' formats. It does not move
//! work between shards on its own: a group stays on its shard for life.
//! Every glommio call of Sampan lives in this crate, so a move to another
//! io_uring runtime touches only this crate.
//!
//! Settings that matter: the preemption timer defaults to 1 ms (glommio's
//! 100 ms would let a busy fiber delay timers and messages past an election
//! timeout), and io_uring memory is sized to fit `RLIMIT_MEMLOCK` (raised
//! when the hard limit allows).
//!
//! ```
//! use sampan_fiber::{Runtime, TaskClass, FiberGroup, channel};
//! let rt = Runtime::builder().shards(1).io_memory_bytes(512 << 10).build()?;
//! let sum = rt.shard(0)?.run_blocking(TaskClass::Latency, || async {
//!     let group = FiberGroup::new("group-1").expect("on a shard");
//!     let (tx, rx) = channel::<u64>(16);
//!     group.spawn(TaskClass::Latency, "producer", async move {
//!         for i in 1..=10 { tx.send(i).await.expect("receiver alive"); }
//!     }).expect("group open");
//!     let mut sum = 0;
//!     while let Some(i) = rx.recv().await { sum += i; }
//!     sum
//! })?;
//! assert_eq!(sum, 55);
//! rt.shutdown(std::time::Duration::from_secs(1))?;
//! # Ok::<(), sampan_fiber::FiberError>(())
//! ```

mod channel;
mod deadline;
mod error;
pub mod fs;
mod group;
mod id_map;
pub mod log_context;
mod mailbox;
mod memlock;
pub mod net;
mod report;
mod runtime;
mod shard;
mod signal;
mod time;
pub mod tls;

pub use channel::{OneshotReceiver, OneshotSender, Receiver, SendError, Sender, channel, oneshot};
pub use deadline::{Within, within};
pub use error::FiberError;
pub use group::{FiberGroup, FiberHandle, GroupState, spawn, spawn_detached};
pub use id_map::{IdHasher, IdMap};
#[doc(hidden)]
pub use log as __log;
pub use mailbox::{RuntimeHandle, ShardHandle};
pub use memlock::{IO_MEMORY_DEFAULT_BYTES, IO_MEMORY_MIN_BYTES, memlock_limits, plan_io_memory};
pub use runtime::{
    MAILBOX_CAPACITY_DEFAULT, PREEMPT_TIMER_DEFAULT, Runtime, RuntimeBuilder,
    SHUTDOWN_GRACE_DEFAULT, ShardStopReport, ShutdownReport,
};
pub use shard::{
    Busy, TaskClass, begin_drain, blocking, busy, drain_requested, draining, shard_count, shard_id,
    shutdown_requested, stopping, yield_if_needed, yield_now,
};
pub use signal::{Signal, Wait};
pub use time::{Ticker, sleep, sleep_until, timeout, timeout_at};
