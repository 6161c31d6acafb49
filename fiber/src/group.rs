//! `FiberGroup`: the fibers of one Raft group (or any unit of work), spawned,
//! cancelled and joined together.
//!
//! A group is not a task queue: its fibers run in the shard's queue of their
//! [`TaskClass`]. A panic in any fiber is caught, logged with the group's
//! name, marks the group failed and cancels its other fibers; the shard and
//! every other group go on.

use crate::channel::{OneshotReceiver, oneshot};
use crate::error::FiberError;
use crate::shard::{CancelFibers, ShardContext, TaskClass};
use crate::signal::Signal;
use futures_lite::FutureExt;
use glommio::task::JoinHandle;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::rc::{Rc, Weak};

/// Whether a group takes new fibers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupState {
    /// Running (possibly with no fibers).
    Open,
    /// Cancelled by its owner or by shutdown.
    Cancelled(String),
    /// A fiber panicked: which one and why.
    Failed {
        /// The fiber that panicked.
        fiber: String,
        /// The panic message.
        message: String,
    },
}

/// A running fiber: its handle and its name.
type Running = (JoinHandle<()>, FiberName);

/// A fiber's name: most are literals, kept without an allocation (a
/// fiber per request paid two for its name).
#[derive(Clone, Debug)]
pub(crate) enum FiberName {
    Static(&'static str),
    Shared(Rc<str>),
}

impl std::ops::Deref for FiberName {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            FiberName::Static(s) => s,
            FiberName::Shared(s) => s,
        }
    }
}

impl std::fmt::Display for FiberName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

pub(crate) struct GroupInner {
    name: Rc<str>,
    shard: Rc<ShardContext>,
    /// Each running fiber's handle and name.
    fibers: RefCell<crate::IdMap<Running>>,
    next_fiber: Cell<u64>,
    state: RefCell<GroupState>,
    /// Notified when the group's last fiber ends.
    done: Signal,
    /// Whether a panic fails the whole group (a Raft group's fibers live and
    /// die together) or only the fiber (the shard's default group, whose
    /// fibers are unrelated).
    fail_together: bool,
}

impl CancelFibers for GroupInner {
    /// Marks the group closed and cancels every fiber; returns how many.
    fn cancel_fibers(&self, reason: &str) -> usize {
        {
            let mut state = self.state.borrow_mut();
            if *state == GroupState::Open {
                *state = GroupState::Cancelled(reason.to_string());
            }
        }
        // Handles stay in the map until each fiber's guard drops, so `join`
        // waits for the futures to be really gone, not just flagged.
        let fibers = self.fibers.borrow();
        for (h, _) in fibers.values() {
            h.cancel();
        }
        fibers.len()
    }

    fn running(&self) -> Vec<String> {
        self.fibers
            .borrow()
            .values()
            .map(|(_, name)| format!("{}/{name}", self.name))
            .collect()
    }
}

impl GroupInner {
    fn fail(&self, fiber: &str, message: &str) {
        if !self.fail_together {
            log::error!(
                "fiber '{fiber}' on shard {} panicked: {message}",
                self.shard.id
            );
            return;
        }
        log::error!(
            "fiber '{fiber}' of group '{}' on shard {} panicked: {message}; group marked failed",
            self.name,
            self.shard.id
        );
        {
            let mut state = self.state.borrow_mut();
            if !matches!(*state, GroupState::Failed { .. }) {
                *state = GroupState::Failed {
                    fiber: fiber.to_string(),
                    message: message.to_string(),
                };
            }
        }
        self.cancel_fibers("a sibling fiber panicked");
    }
}

/// Decrements the counts when a fiber ends, however it ends (completion,
/// panic, or cancellation, which drops the future).
struct FiberGuard {
    group: Rc<GroupInner>,
    id: u64,
}

impl Drop for FiberGuard {
    fn drop(&mut self) {
        let mut fibers = self.group.fibers.borrow_mut();
        fibers.remove(&self.id);
        let empty = fibers.is_empty();
        drop(fibers);
        self.group.shard.fiber_ended();
        if empty {
            self.group.done.notify_all();
        }
    }
}

/// A named set of fibers on one shard. Clones refer to the same group.
#[derive(Clone)]
pub struct FiberGroup {
    inner: Rc<GroupInner>,
}

impl std::fmt::Debug for FiberGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FiberGroup")
            .field("name", &self.inner.name)
            .field("fibers", &self.fiber_count())
            .field("state", &*self.inner.state.borrow())
            .finish()
    }
}

impl FiberGroup {
    /// A new, empty group on the current shard.
    pub fn new(name: impl Into<String>) -> Result<FiberGroup, FiberError> {
        let shard = ShardContext::current().ok_or(FiberError::NotOnShard)?;
        if shard.is_stopping() {
            return Err(FiberError::ShuttingDown { shard: shard.id });
        }
        Ok(FiberGroup::new_on(shard, name.into(), true))
    }

    pub(crate) fn new_on(shard: Rc<ShardContext>, name: String, fail_together: bool) -> FiberGroup {
        let inner = Rc::new(GroupInner {
            name: name.into(),
            shard,
            fibers: RefCell::new(crate::IdMap::default()),
            next_fiber: Cell::new(0),
            state: RefCell::new(GroupState::Open),
            done: Signal::new(),
            fail_together,
        });
        let weak: std::rc::Weak<GroupInner> = Rc::downgrade(&inner);
        inner.shard.register_group(weak);
        FiberGroup { inner }
    }

    /// The group's name, as logs show it.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Spawns `fut` as a fiber of this group, in the shard's queue for
    /// `class`. The fiber starts at the next scheduling point.
    pub fn spawn<T, F>(
        &self,
        class: TaskClass,
        fiber: &str,
        fut: F,
    ) -> Result<FiberHandle<T>, FiberError>
    where
        F: Future<Output = T> + 'static,
        T: 'static,
    {
        let (tx, rx) = oneshot();
        let name = FiberName::Shared(fiber.into());
        let id = self.spawn_with(class, name.clone(), fut, move |r| tx.send(r))?;
        Ok(FiberHandle {
            rx,
            group: Rc::downgrade(&self.inner),
            id,
            fiber: name,
        })
    }

    /// Spawns `fut` with no handle to wait on, for work nobody joins (a
    /// fiber per request): no result slot, and a literal name kept as it
    /// is. It is cancelled with the group like any other fiber, and a
    /// panic in it fails the group the same way.
    pub fn spawn_detached<F>(
        &self,
        class: TaskClass,
        fiber: &'static str,
        fut: F,
    ) -> Result<(), FiberError>
    where
        F: Future<Output = ()> + 'static,
    {
        self.spawn_with(class, FiberName::Static(fiber), fut, |_| {})
            .map(|_| ())
    }

    /// Spawns `fut`; `sink` gets its result, or the panic as an error. If the
    /// fiber is cancelled, `sink` is dropped uncalled. Returns the fiber id.
    pub(crate) fn spawn_with<T, F, S>(
        &self,
        class: TaskClass,
        name: FiberName,
        fut: F,
        sink: S,
    ) -> Result<u64, FiberError>
    where
        F: Future<Output = T> + 'static,
        T: 'static,
        S: FnOnce(Result<T, FiberError>) + 'static,
    {
        self.check_open()?;
        // Boxed once, here: the future then moves through the wrapper below
        // and glommio's spawn as a pointer. A request's future (decode,
        // dispatch, serve, reply) is kilobytes, and copying it through each
        // layer cost ~10% of a node's CPU under reads (profile, session 11).
        let fut = Box::pin(fut);
        let inner = &self.inner;
        let id = inner.next_fiber.get();
        inner.next_fiber.set(id + 1);
        let guard = FiberGuard {
            group: inner.clone(),
            id,
        };
        let kept = name.clone();
        let body = async move {
            let guard = guard;
            match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(v) => sink(Ok(v)),
                Err(payload) => {
                    let message = panic_message(payload.as_ref());
                    sink(Err(FiberError::Panicked {
                        group: guard.group.name.to_string(),
                        fiber: name.to_string(),
                        message: message.clone(),
                    }));
                    guard.group.fail(&name, &message);
                }
            }
        };
        let task = glommio::spawn_local_into(body, inner.shard.queue(class)).map_err(|e| {
            FiberError::GroupClosed {
                group: inner.name.to_string(),
                reason: format!("spawn failed: {e}"),
            }
        })?;
        inner.shard.fiber_started();
        inner.fibers.borrow_mut().insert(id, (task.detach(), kept));
        Ok(id)
    }

    fn check_open(&self) -> Result<(), FiberError> {
        let reason = match &*self.inner.state.borrow() {
            GroupState::Open if self.inner.shard.is_stopping() => "the shard is stopping".into(),
            GroupState::Open => return Ok(()),
            GroupState::Cancelled(why) => format!("cancelled: {why}"),
            GroupState::Failed { fiber, message } => {
                format!("failed: fiber '{fiber}' panicked: {message}")
            }
        };
        Err(FiberError::GroupClosed {
            group: self.inner.name.to_string(),
            reason,
        })
    }

    /// Cancels every fiber of the group at once and closes it to new fibers.
    /// Cancelled fibers stop at their next suspension point.
    pub fn cancel(&self) {
        let n = self.inner.cancel_fibers("cancelled by its owner");
        log::debug!("group '{}': cancelled {n} fiber(s)", self.inner.name);
    }

    /// Waits until every fiber of the group has ended.
    pub async fn join(&self) {
        loop {
            let done = self.inner.done.wait();
            if self.inner.fibers.borrow().is_empty() {
                return;
            }
            done.await;
        }
    }

    /// Fibers of the group still alive.
    pub fn fiber_count(&self) -> usize {
        self.inner.fibers.borrow().len()
    }

    /// The group's state: open, cancelled, or failed and why.
    pub fn state(&self) -> GroupState {
        self.inner.state.borrow().clone()
    }

    /// Whether a fiber of the group panicked.
    pub fn is_failed(&self) -> bool {
        matches!(*self.inner.state.borrow(), GroupState::Failed { .. })
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// The result of one fiber, awaited with [`FiberHandle::join`]; dropping the
/// handle does not cancel the fiber.
pub struct FiberHandle<T> {
    rx: OneshotReceiver<Result<T, FiberError>>,
    group: Weak<GroupInner>,
    id: u64,
    fiber: FiberName,
}

impl<T> FiberHandle<T> {
    /// Waits for the fiber's result: its value, or why it has none
    /// (cancelled, panicked).
    pub async fn join(self) -> Result<T, FiberError> {
        let group = self
            .group
            .upgrade()
            .map(|g| g.name.to_string())
            .unwrap_or_default();
        match self.rx.recv().await {
            Some(result) => result,
            None => Err(FiberError::Cancelled {
                group,
                fiber: self.fiber.to_string(),
            }),
        }
    }

    /// Cancels this one fiber; the group stays open.
    pub fn cancel(&self) {
        if let Some(group) = self.group.upgrade()
            && let Some((h, _)) = group.fibers.borrow().get(&self.id)
        {
            h.cancel();
        }
    }
}

/// Spawns a fiber outside any named group (in the shard's default group),
/// in the queue of `class`.
pub fn spawn<T, F>(class: TaskClass, fiber: &str, fut: F) -> Result<FiberHandle<T>, FiberError>
where
    F: Future<Output = T> + 'static,
    T: 'static,
{
    let shard = ShardContext::current().ok_or(FiberError::NotOnShard)?;
    default_group(&shard).spawn(class, fiber, fut)
}

/// [`FiberGroup::spawn_detached`] in the current shard's default group.
pub fn spawn_detached<F>(class: TaskClass, fiber: &'static str, fut: F) -> Result<(), FiberError>
where
    F: Future<Output = ()> + 'static,
{
    let shard = ShardContext::current().ok_or(FiberError::NotOnShard)?;
    default_group(&shard).spawn_detached(class, fiber, fut)
}

thread_local! {
    /// The shard's default group (one shard per thread).
    static DEFAULT_GROUP: RefCell<Option<FiberGroup>> = const { RefCell::new(None) };
}

/// The group that free-standing fibers ([`spawn`]) join, made on first use
/// and dropped when the shard's state is (it points back at it).
pub(crate) fn default_group(shard: &Rc<ShardContext>) -> FiberGroup {
    DEFAULT_GROUP.with(|d| {
        d.borrow_mut()
            .get_or_insert_with(|| {
                shard.on_uninstall(Box::new(|| {
                    DEFAULT_GROUP.with(|d| d.borrow_mut().take());
                }));
                FiberGroup::new_on(shard.clone(), format!("shard-{}", shard.id), false)
            })
            .clone()
    })
}
