//! The shard: one executor thread, its task queues by class of work, and the
//! registry of its live fiber groups.
//!
//! Everything here is shard-local (`!Send`), reached through a thread-local
//! that the runtime installs when the shard starts.

use crate::signal::Signal;
use glommio::{Latency, Shares, TaskQueueHandle};
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

/// The class of work a fiber does, which picks the task queue it runs in.
///
/// A shard has one queue per class, shared by all groups on it (a node hosts
/// thousands of groups; a task queue per group would not scale).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskClass {
    /// Raft loop, replicators, log writer, network: short, frequent work
    /// whose delay delays elections and commits.
    Latency,
    /// Applying committed entries: long batches, fewer shares.
    Throughput,
    /// Snapshots, compaction, cleanup: runs when the rest is idle.
    Background,
}

impl TaskClass {
    /// All classes, in queue order.
    pub const ALL: [TaskClass; 3] = [
        TaskClass::Latency,
        TaskClass::Throughput,
        TaskClass::Background,
    ];

    fn index(self) -> usize {
        match self {
            TaskClass::Latency => 0,
            TaskClass::Throughput => 1,
            TaskClass::Background => 2,
        }
    }

    /// The queue's shares and latency class: latency work gets the most
    /// shares and a short preemption budget.
    fn queue_params(self, preempt: Duration) -> (Shares, Latency, &'static str) {
        match self {
            TaskClass::Latency => (Shares::Static(1000), Latency::Matters(preempt), "latency"),
            TaskClass::Throughput => (Shares::Static(300), Latency::NotImportant, "throughput"),
            TaskClass::Background => (Shares::Static(50), Latency::NotImportant, "background"),
        }
    }
}

/// What the shard needs of a fiber group to stop it: the groups register
/// themselves (`group.rs` implements this), so this file needs nothing
/// of them.
pub(crate) trait CancelFibers {
    /// Closes the group and cancels its fibers; returns how many.
    fn cancel_fibers(&self, reason: &str) -> usize;
    /// `group/fiber` for each fiber still running.
    fn running(&self) -> Vec<String>;
}

/// Per-shard state, installed in a thread-local on the shard thread.
pub(crate) struct ShardContext {
    pub(crate) id: usize,
    pub(crate) count: usize,
    queues: [TaskQueueHandle; 3],
    groups: RefCell<Vec<Weak<dyn CancelFibers>>>,
    /// Fibers alive on this shard, all groups together.
    live: Cell<usize>,
    /// Notified whenever `live` drops to zero.
    pub(crate) idle: Signal,
    stopping: Cell<bool>,
    /// Draining: no new client work is taken; what runs finishes.
    draining: Cell<bool>,
    /// Client requests being served ([`Busy`] guards alive).
    busy: Cell<u64>,
    stop_signal: Signal,
    /// Run when the shard's state is uninstalled (the default group,
    /// which points back at this context, clears itself there).
    on_uninstall: RefCell<Vec<Box<dyn FnOnce()>>>,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<ShardContext>>> = const { RefCell::new(None) };
}

impl ShardContext {
    /// Creates the shard's task queues; must run on the shard's executor.
    pub(crate) fn install(id: usize, count: usize, preempt: Duration) -> Rc<ShardContext> {
        let ex = glommio::executor();
        let queues = TaskClass::ALL.map(|class| {
            let (shares, latency, name) = class.queue_params(preempt);
            ex.create_task_queue(shares, latency, name)
        });
        let ctx = Rc::new(ShardContext {
            id,
            count,
            queues,
            groups: RefCell::new(Vec::new()),
            live: Cell::new(0),
            idle: Signal::new(),
            stopping: Cell::new(false),
            draining: Cell::new(false),
            busy: Cell::new(0),
            stop_signal: Signal::new(),
            on_uninstall: RefCell::new(Vec::new()),
        });
        CURRENT.with(|c| *c.borrow_mut() = Some(ctx.clone()));
        ctx
    }

    /// Removes the thread-local, so the shard's state drops with its thread.
    pub(crate) fn uninstall() {
        if let Some(ctx) = CURRENT.with(|c| c.borrow_mut().take()) {
            // E.g. the default group, which points back at the context:
            // break the cycle.
            for hook in ctx.on_uninstall.take() {
                hook();
            }
        }
    }

    /// The context of the shard this thread runs, if any.
    pub(crate) fn current() -> Option<Rc<ShardContext>> {
        CURRENT.with(|c| c.borrow().clone())
    }

    pub(crate) fn queue(&self, class: TaskClass) -> TaskQueueHandle {
        self.queues[class.index()]
    }

    pub(crate) fn register_group(&self, group: Weak<dyn CancelFibers>) {
        let mut groups = self.groups.borrow_mut();
        groups.retain(|g| g.strong_count() > 0);
        groups.push(group);
    }

    /// Runs `hook` when the shard's state is uninstalled.
    pub(crate) fn on_uninstall(&self, hook: Box<dyn FnOnce()>) {
        self.on_uninstall.borrow_mut().push(hook);
    }

    pub(crate) fn fiber_started(&self) {
        self.live.set(self.live.get() + 1);
    }

    pub(crate) fn fiber_ended(&self) {
        let live = self.live.get();
        debug_assert!(live > 0, "fiber count underflow on shard {}", self.id);
        self.live.set(live.saturating_sub(1));
        if live <= 1 {
            self.idle.notify_all();
        }
    }

    pub(crate) fn live_fibers(&self) -> usize {
        self.live.get()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Starts a graceful stop: fibers watching [`crate::shutdown_requested`]
    /// are woken.
    pub(crate) fn begin_stop(&self) {
        self.stopping.set(true);
        self.stop_signal.notify_all();
    }

    /// Whether a drain or a stop has begun.
    fn is_draining(&self) -> bool {
        self.draining.get() || self.stopping.get()
    }

    pub(crate) fn stop_signal(&self) -> &Signal {
        &self.stop_signal
    }

    /// The shard's groups that are still alive.
    fn live_groups(&self) -> Vec<std::rc::Rc<dyn CancelFibers>> {
        self.groups
            .borrow()
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// `group/fiber` for every fiber still running on the shard, sorted.
    pub(crate) fn running_fibers(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .live_groups()
            .iter()
            .flat_map(|g| g.running())
            .collect();
        names.sort_unstable();
        names
    }

    /// Cancels every fiber of every group; returns how many were cancelled.
    pub(crate) fn cancel_all(&self) -> usize {
        self.live_groups()
            .iter()
            .map(|g| g.cancel_fibers("runtime shutdown"))
            .sum()
    }
}

/// The id of the shard this thread runs, or `None` off the runtime.
pub fn shard_id() -> Option<usize> {
    CURRENT.with(|c| c.borrow().as_ref().map(|s| s.id))
}

/// The number of shards of the runtime this thread belongs to, or `None` off
/// the runtime.
pub fn shard_count() -> Option<usize> {
    CURRENT.with(|c| c.borrow().as_ref().map(|s| s.count))
}

/// Whether the runtime has begun to stop (`false` off the runtime).
pub fn shutdown_requested() -> bool {
    ShardContext::current().is_some_and(|s| s.is_stopping())
}

/// Completes when the runtime begins to stop: long-running fibers select on
/// this to finish their work and exit within the grace period.
pub async fn stopping() {
    until(ShardContext::is_stopping).await
}

/// Completes once `reached` holds for this shard (never off the runtime),
/// looking again each time the stop signal fires.
async fn until(reached: fn(&ShardContext) -> bool) {
    let Some(shard) = ShardContext::current() else {
        return std::future::pending().await;
    };
    loop {
        let woken = shard.stop_signal().wait();
        if reached(&shard) {
            return;
        }
        woken.await;
    }
}

/// Starts draining this shard (no-op off the runtime): fibers that serve
/// clients watch [`draining`] to take no new work and end once what they
/// serve is answered, while the rest (a node's groups, its links to other
/// nodes) go on until the runtime stops. For a node that is about to stop:
/// its clients move elsewhere first.
pub fn begin_drain() {
    if let Some(shard) = ShardContext::current() {
        shard.draining.set(true);
        shard.stop_signal().notify_all();
    }
}

/// Whether this shard drains or stops (`false` off the runtime).
pub fn drain_requested() -> bool {
    ShardContext::current().is_some_and(|s| s.is_draining())
}

/// Completes when this shard begins to drain ([`begin_drain`]) or to stop.
pub async fn draining() {
    until(ShardContext::is_draining).await
}

/// Client requests being served on this shard now: [`Busy`] guards alive
/// (0 off the runtime). A draining node waits for it to reach 0.
pub fn busy() -> u64 {
    ShardContext::current().map_or(0, |s| s.busy.get())
}

/// Counts one client request as being served on this shard while it
/// lives ([`busy`]); a plain cell, no atomics.
pub struct Busy(Option<Rc<ShardContext>>);

impl Busy {
    /// Counts a request in (nothing off the runtime).
    pub fn begin() -> Busy {
        let shard = ShardContext::current();
        if let Some(s) = &shard {
            s.busy.set(s.busy.get() + 1);
        }
        Busy(shard)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.busy.set(s.busy.get().saturating_sub(1));
        }
    }
}

/// Yields to other fibers if this one has used up its time slice (the
/// preemption timer fired). Call it in every long loop.
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await;
}

/// Yields to other fibers unconditionally.
pub async fn yield_now() {
    glommio::executor().yield_now().await;
}

/// Runs a blocking function on a helper thread, never on the shard thread,
/// and returns its result.
pub async fn blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    glommio::executor().spawn_blocking(f).await
}
