//! `Signal`: wake fibers that wait for a condition on the same shard.
//!
//! Like Dongting's `FiberCondition` or a condition variable: a fiber checks
//! its condition, and if it does not hold, waits on the signal; whoever
//! changes the state calls [`Signal::notify_one`] or [`Signal::notify_all`].
//! A notify with nobody waiting is lost, so always re-check the condition
//! after waking. Registration happens when [`Signal::wait`] is called (not at
//! the first poll), so "check, then wait" cannot miss a notify in between.
//!
//! Shard-local: `Signal` is `!Send`; it costs one `Rc` and a queue of weak
//! slots, with no atomics.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Slot {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Slot {
    fn fire(&self) {
        self.fired.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

/// A shard-local wake-up for fibers waiting on a condition. Clones share the
/// same waiters.
#[derive(Clone, Default)]
pub struct Signal {
    waiters: Rc<RefCell<VecDeque<Weak<Slot>>>>,
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signal")
            .field("waiters", &self.waiters.borrow().len())
            .finish()
    }
}

impl Signal {
    /// A signal with no waiters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a waiter now and returns a future that completes when a
    /// notify reaches it. Dropping the future unregisters it.
    pub fn wait(&self) -> Wait {
        let slot = Rc::new(Slot::default());
        self.waiters.borrow_mut().push_back(Rc::downgrade(&slot));
        Wait { slot }
    }

    /// Wakes the longest-waiting live waiter, if any. Returns whether one was
    /// woken.
    pub fn notify_one(&self) -> bool {
        loop {
            let next = self.waiters.borrow_mut().pop_front();
            match next {
                None => return false,
                Some(weak) => {
                    if let Some(slot) = weak.upgrade() {
                        slot.fire();
                        return true;
                    }
                }
            }
        }
    }

    /// Wakes every waiter registered so far. Returns how many were woken.
    pub fn notify_all(&self) -> usize {
        // Taken whole (no copy); a fired slot runs no code that could wait
        // on this signal again before the loop ends.
        let drained = std::mem::take(&mut *self.waiters.borrow_mut());
        drained
            .into_iter()
            .filter_map(|w| w.upgrade())
            .map(|slot| slot.fire())
            .count()
    }

    /// Number of registered waiters (including ones whose futures were
    /// dropped but not yet pruned).
    pub fn waiters(&self) -> usize {
        self.waiters.borrow().len()
    }
}

/// The future returned by [`Signal::wait`].
#[must_use = "a Wait does nothing unless awaited"]
pub struct Wait {
    slot: Rc<Slot>,
}

impl Future for Wait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.slot.fired.get() {
            return Poll::Ready(());
        }
        *self.slot.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn notify_one_wakes_in_order_and_notify_all_wakes_the_rest() {
        let s = Signal::new();
        let w1 = s.wait();
        let w2 = s.wait();
        let w3 = s.wait();
        assert_eq!(s.waiters(), 3);
        assert!(s.notify_one());
        future::block_on(w1);
        let mut w2 = Box::pin(w2);
        assert!(future::block_on(future::poll_once(&mut w2)).is_none());
        assert_eq!(s.notify_all(), 2);
        future::block_on(w2);
        future::block_on(w3);
        assert!(!s.notify_one(), "nobody left");
    }

    #[test]
    fn a_dropped_waiter_does_not_swallow_a_notify() {
        let s = Signal::new();
        drop(s.wait());
        let w = s.wait();
        assert!(s.notify_one());
        future::block_on(w);
    }

    #[test]
    fn notify_between_wait_and_first_poll_is_not_lost() {
        let s = Signal::new();
        let w = s.wait();
        s.notify_all();
        future::block_on(w);
    }
}
