//! Deadlines for many waits at once, swept by one timer per shard.
//!
//! [`crate::timeout_at`] arms a timer of the executor for each wait: an
//! insert into and a removal from the reactor's timer tree, and a future
//! kilobytes large. That is fine for a handful of waits; a server that
//! bounds every request by a deadline pays it per request. [`within`] puts
//! the deadline in a queue of the shard instead, ordered by time, and one
//! sweeper fiber sleeps until the earliest one and fails the waits that are
//! due. A wait that ends in time just leaves the queue.
//!
//! The sweeper runs only while waits are registered: the first wait starts
//! it and it ends once none is left, so it never holds a shard's stop.
//! Off a shard (no sweeper can be started), a wait falls back to a timer of
//! its own.

use crate::error::FiberError;
use crate::{Signal, TaskClass};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Runs `fut` until `deadline`: [`FiberError::Timeout`] (with the time it
/// had left when it first had to wait) if it is not done by then, and the
/// future is dropped. Like [`crate::timeout_at`], without a timer of its
/// own on a shard, and without reading the clock for work done at once.
pub fn within<F: Future>(deadline: Instant, fut: F) -> Within<F> {
    Within {
        fut,
        wait: Wait::new(deadline),
    }
}

pin_project_lite::pin_project! {
    /// [`within`]'s future: the work and its place in the queue, no more.
    pub struct Within<F> {
        #[pin]
        fut: F,
        wait: Wait,
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, FiberError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match this.wait.poll_due(cx) {
            Poll::Ready(()) => Poll::Ready(Err(FiberError::Timeout(this.wait.given))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// One wait's place in its shard's queue, taken at its first pending poll
/// and given back when it is dropped.
struct Wait {
    deadline: Instant,
    /// The time it was given, from its first pending poll (the clock is
    /// read then, not for work that is done at once).
    given: Duration,
    state: WaitState,
}

enum WaitState {
    /// Not registered yet (the work has not had to wait).
    New,
    /// In the shard's queue.
    Queued(Rc<Queue>, Key),
    /// Off a shard: a timer of its own.
    Timer(Pin<Box<dyn Future<Output = ()>>>),
}

impl Wait {
    fn new(deadline: Instant) -> Self {
        Wait {
            deadline,
            given: Duration::ZERO,
            state: WaitState::New,
        }
    }

    /// Ready once the deadline has passed.
    fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if matches!(self.state, WaitState::New) {
            self.given = self.deadline.saturating_duration_since(Instant::now());
            if self.given.is_zero() {
                return Poll::Ready(());
            }
            self.state = match Queue::of_this_shard() {
                Some(q) => {
                    let key = q.register(self.deadline, cx.waker());
                    WaitState::Queued(q, key)
                }
                None => WaitState::Timer(Box::pin(crate::sleep_until(self.deadline))),
            };
        }
        match &mut self.state {
            WaitState::New => Poll::Pending,
            WaitState::Queued(q, key) => q.poll_due(*key, cx.waker()),
            WaitState::Timer(t) => t.as_mut().poll(cx),
        }
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let WaitState::Queued(q, key) = &self.state {
            q.release(*key);
        }
    }
}

/// A registered wait: its slot, and the slot's generation when it was
/// taken (a slot is reused once its wait is gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    slot: u32,
    generation: u32,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    waker: Option<Waker>,
    due: bool,
}

/// A deadline in the queue.
struct Due {
    at: Instant,
    key: Key,
}

/// The shard's waits, in deadline order.
#[derive(Default)]
struct Queue {
    inner: RefCell<Inner>,
    /// Wakes the sweeper: an earlier deadline than it sleeps for, or no
    /// wait left.
    rearm: Signal,
}

#[derive(Default)]
struct Inner {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Deadlines in time order; those of waits already gone are dropped
    /// when they reach the front.
    order: VecDeque<Due>,
    /// Waits registered and not yet released.
    live: usize,
    /// Whether the sweeper fiber runs.
    sweeping: bool,
    /// When the sweeper will next look, if it sleeps on a timer.
    armed: Option<Instant>,
}

thread_local! {
    /// This thread's queue (a shard is a thread).
    static QUEUE: RefCell<Option<Rc<Queue>>> = const { RefCell::new(None) };
}

impl Queue {
    /// The calling shard's queue, its sweeper started; `None` off a shard.
    fn of_this_shard() -> Option<Rc<Queue>> {
        crate::shard_id()?;
        let q = QUEUE.with(|q| q.borrow_mut().get_or_insert_with(Rc::default).clone());
        if !q.inner.borrow().sweeping {
            crate::spawn(TaskClass::Latency, "deadlines", sweep(q.clone())).ok()?;
            q.inner.borrow_mut().sweeping = true;
        }
        Some(q)
    }

    fn register(&self, at: Instant, waker: &Waker) -> Key {
        let mut inner = self.inner.borrow_mut();
        let slot = match inner.free.pop() {
            Some(s) => s,
            None => {
                inner.slots.push(Slot::default());
                u32::try_from(inner.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let s = &mut inner.slots[slot as usize];
        s.waker = Some(waker.clone());
        s.due = false;
        let key = Key {
            slot,
            generation: s.generation,
        };
        inner.live += 1;
        // Deadlines mostly come in time order: their place is at the back.
        if inner.order.back().is_none_or(|d| d.at <= at) {
            inner.order.push_back(Due { at, key });
        } else {
            let pos = inner.order.partition_point(|d| d.at <= at);
            inner.order.insert(pos, Due { at, key });
        }
        let earlier = inner.armed.is_none_or(|armed| at < armed);
        drop(inner);
        if earlier {
            self.rearm.notify_all();
        }
        key
    }

    fn poll_due(&self, key: Key, waker: &Waker) -> Poll<()> {
        let mut inner = self.inner.borrow_mut();
        let slot = &mut inner.slots[key.slot as usize];
        if slot.due {
            return Poll::Ready(());
        }
        if !slot.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            slot.waker = Some(waker.clone());
        }
        Poll::Pending
    }

    fn release(&self, key: Key) {
        let idle = {
            let mut inner = self.inner.borrow_mut();
            let inner = &mut *inner;
            let slot = &mut inner.slots[key.slot as usize];
            slot.generation = slot.generation.wrapping_add(1);
            slot.waker = None;
            slot.due = false;
            inner.free.push(key.slot);
            inner.live -= 1;
            inner.drop_gone();
            inner.live == 0
        };
        if idle {
            self.rearm.notify_all();
        }
    }

    /// Marks the waits due by `now` and wakes them; the next deadline, or
    /// `None` if no wait is left (the sweeper ends).
    fn expire(&self, now: Instant) -> Option<Option<Instant>> {
        let mut woken = Vec::new();
        let next = {
            let mut inner = self.inner.borrow_mut();
            let inner = &mut *inner;
            while let Some(d) = inner.order.front()
                && d.at <= now
            {
                let key = d.key;
                inner.order.pop_front();
                let slot = &mut inner.slots[key.slot as usize];
                if slot.generation == key.generation {
                    slot.due = true;
                    woken.extend(slot.waker.take());
                }
            }
            inner.drop_gone();
            if inner.live == 0 {
                // The sweeper ends; its guard marks it stopped.
                inner.order.clear();
                None
            } else {
                inner.armed = inner.order.front().map(|d| d.at);
                Some(inner.armed)
            }
        };
        woken.into_iter().for_each(Waker::wake);
        next
    }
}

impl Inner {
    /// Drops the deadlines at the front whose waits are gone.
    fn drop_gone(&mut self) {
        while let Some(d) = self.order.front()
            && self.slots[d.key.slot as usize].generation != d.key.generation
        {
            self.order.pop_front();
        }
    }
}

/// Marks the sweeper stopped however its fiber ends (cancelled with its
/// shard too), so the next wait starts another.
struct Sweeping(Rc<Queue>);

impl Drop for Sweeping {
    fn drop(&mut self) {
        let mut inner = self.0.inner.borrow_mut();
        inner.sweeping = false;
        inner.armed = None;
    }
}

/// The sweeper: sleeps until the earliest deadline (or until woken for an
/// earlier one), fails the waits that are due, and ends when none is left.
async fn sweep(q: Rc<Queue>) {
    let guard = Sweeping(q);
    loop {
        let woken = guard.0.rearm.wait();
        match guard.0.expire(Instant::now()) {
            None => return,
            Some(None) => woken.await,
            Some(Some(at)) => {
                // Woken early or at the deadline: either way, look again.
                let _ = crate::timeout_at(at, woken).await;
            }
        }
    }
}

/// How many waits the calling shard's queue holds, and whether its sweeper
/// runs (for tests).
#[cfg(test)]
fn queued() -> (usize, usize, bool) {
    QUEUE.with(|q| {
        q.borrow().as_ref().map_or((0, 0, false), |q| {
            let inner = q.inner.borrow();
            (inner.live, inner.order.len(), inner.sweeping)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Runtime;

    /// Runs `f` on a one-shard runtime.
    fn on_shard<T: Send + 'static, Fut: Future<Output = T> + 'static>(
        f: impl FnOnce() -> Fut + Send + 'static,
    ) -> T {
        let rt = Runtime::builder().shards(1).build().expect("runtime");
        let out = rt
            .shard(0)
            .expect("shard")
            .run_blocking(TaskClass::Latency, f)
            .expect("ran");
        rt.shutdown(Duration::from_secs(5)).expect("stopped");
        out
    }

    #[test]
    fn work_done_in_time_leaves_nothing_queued_and_the_sweeper_ends() {
        let (value, after) = on_shard(|| async {
            let v = within(Instant::now() + Duration::from_secs(600), async {
                crate::sleep(Duration::from_millis(5)).await;
                7
            })
            .await;
            let after = queued();
            // Its sweeper sees no wait left and ends.
            crate::yield_now().await;
            (v, (after, queued()))
        });
        assert_eq!(value.expect("in time"), 7);
        let ((live, _, _), (live_later, order, sweeping)) = after;
        assert_eq!((live, live_later, order, sweeping), (0, 0, 0, false));
    }

    #[test]
    fn waits_fail_in_deadline_order_whatever_order_they_came_in() {
        // Registered out of time order: the queue must sort them, or the
        // 30 ms wait would only be failed with the 300 ms one before it.
        let (failed_in, not_early, after) = on_shard(|| async {
            let start = Instant::now();
            let order = Rc::new(RefCell::new(Vec::new()));
            let not_early = Rc::new(std::cell::Cell::new(true));
            let waits = [300u64, 30, 600_000, 100].map(|ms| {
                let (order, not_early) = (order.clone(), not_early.clone());
                crate::spawn(TaskClass::Latency, "waiter", async move {
                    let deadline = start + Duration::from_millis(ms);
                    let r = within(deadline, std::future::pending::<()>()).await;
                    assert!(matches!(r, Err(FiberError::Timeout(_))), "{ms} ms: {r:?}");
                    not_early.set(not_early.get() && Instant::now() >= deadline);
                    order.borrow_mut().push(ms);
                })
                .expect("spawned")
            });
            let [slow, fast, never, mid] = waits;
            for h in [fast, mid, slow] {
                h.join().await.expect("joined");
            }
            // The 600 s wait is still queued; cancelled, it leaves the queue
            // and the sweeper ends.
            assert_eq!(queued().0, 1);
            never.cancel();
            assert!(
                never.join().await.is_err(),
                "the 600 s wait ended by itself"
            );
            crate::yield_now().await;
            let failed_in = order.borrow().clone();
            (failed_in, not_early.get(), queued())
        });
        assert_eq!(failed_in, vec![30, 100, 300]);
        assert!(not_early, "a wait failed before its deadline");
        assert_eq!(after, (0, 0, false));
    }

    #[test]
    fn off_a_shard_a_wait_has_a_timer_of_its_own() {
        let ex = glommio::LocalExecutorBuilder::default()
            .make()
            .expect("executor");
        let r = ex.run(async {
            within(
                Instant::now() + Duration::from_millis(20),
                std::future::pending::<()>(),
            )
            .await
        });
        assert!(matches!(r, Err(FiberError::Timeout(_))));
        assert_eq!(queued(), (0, 0, false));
    }
}
