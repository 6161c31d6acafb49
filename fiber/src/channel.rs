//! Shard-local channels: a bounded multi-producer queue with backpressure,
//! and a one-shot reply slot.
//!
//! These are for fibers of the same shard (the Raft loop receiving proposals,
//! a replicator handing results back). They are `!Send` and lock-free by
//! construction: no atomics, just `Rc<RefCell<..>>` on one thread. To cross
//! shards or threads use [`crate::ShardHandle`].

use crate::signal::Signal;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Why a send failed; the item comes back to the caller.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError<T> {
    /// The receiver is gone.
    #[error("channel closed: the receiver was dropped")]
    Closed(T),
    /// The channel holds `capacity` items already (only from `try_send`).
    #[error("channel full")]
    Full(T),
}

impl<T> SendError<T> {
    /// The item that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Closed(t) | SendError::Full(t) => t,
        }
    }
}

struct Chan<T> {
    queue: VecDeque<T>,
    capacity: usize,
    senders: usize,
    receiver_alive: bool,
}

struct Shared<T> {
    chan: RefCell<Chan<T>>,
    /// Notified when an item arrives or the last sender leaves.
    readable: Signal,
    /// Notified when room appears or the receiver leaves.
    writable: Signal,
}

/// Slots a channel's queue has before its first item: it grows (by
/// doubling) up to the channel's capacity as items wait.
const CAPACITY_INITIAL_MAX: usize = 8;

/// Creates a bounded channel holding at most `capacity` items (at least 1).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.max(1);
    let shared = Rc::new(Shared {
        chan: RefCell::new(Chan {
            // Grows with use: a group has several channels of thousands of
            // slots, and 10,000 mostly idle groups on a shard made with
            // their whole capacity took gigabytes (and their start-up time
            // went into the kernel zeroing those pages).
            queue: VecDeque::with_capacity(capacity.min(CAPACITY_INITIAL_MAX)),
            capacity,
            senders: 1,
            receiver_alive: true,
        }),
        readable: Signal::new(),
        writable: Signal::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// The sending side of [`channel`]; clone it for more producers.
pub struct Sender<T> {
    shared: Rc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `item` now, or says why not.
    pub fn try_send(&self, item: T) -> Result<(), SendError<T>> {
        let mut chan = self.shared.chan.borrow_mut();
        if !chan.receiver_alive {
            return Err(SendError::Closed(item));
        }
        if chan.queue.len() >= chan.capacity {
            return Err(SendError::Full(item));
        }
        chan.queue.push_back(item);
        drop(chan);
        self.shared.readable.notify_one();
        Ok(())
    }

    /// Queues `item`, waiting for room while the channel is full
    /// (backpressure). Fails only when the receiver is gone.
    pub async fn send(&self, mut item: T) -> Result<(), SendError<T>> {
        // Try first and register a wait only when full: a send that finds
        // room (almost all) allocates nothing and leaves no dead waiter
        // behind. Nothing runs between the try and the registration (no
        // await), so no wake-up can fall between them.
        loop {
            match self.try_send(item) {
                Err(SendError::Full(back)) => item = back,
                other => return other,
            }
            self.shared.writable.wait().await;
        }
    }

    /// Items waiting in the channel.
    pub fn len(&self) -> usize {
        self.shared.chan.borrow().queue.len()
    }

    /// Whether no item is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        !self.shared.chan.borrow().receiver_alive
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.chan.borrow_mut().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut chan = self.shared.chan.borrow_mut();
        chan.senders -= 1;
        let last = chan.senders == 0;
        drop(chan);
        if last {
            self.shared.readable.notify_all();
        }
    }
}

/// The receiving side of [`channel`].
pub struct Receiver<T> {
    shared: Rc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// Takes the next item if one is queued.
    pub fn try_recv(&self) -> Option<T> {
        let item = self.shared.chan.borrow_mut().queue.pop_front();
        if item.is_some() {
            self.shared.writable.notify_one();
        }
        item
    }

    /// Waits for the next item; `None` once every sender is gone and the
    /// queue is drained.
    pub async fn recv(&self) -> Option<T> {
        // As `send`: a wait is registered only when there is nothing to take.
        loop {
            if let Some(item) = self.try_recv() {
                return Some(item);
            }
            if self.shared.chan.borrow().senders == 0 {
                return None;
            }
            self.shared.readable.wait().await;
        }
    }

    /// Moves up to `max` queued items into `out` without waiting; returns how
    /// many. Lets a consumer work in batches.
    pub fn drain_into(&self, out: &mut Vec<T>, max: usize) -> usize {
        let mut chan = self.shared.chan.borrow_mut();
        let n = chan.queue.len().min(max);
        out.extend(chan.queue.drain(..n));
        drop(chan);
        if n > 0 {
            self.shared.writable.notify_all();
        }
        n
    }

    /// Items waiting in the channel.
    pub fn len(&self) -> usize {
        self.shared.chan.borrow().queue.len()
    }

    /// Whether no item is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Receiver<T> {
    /// Closes the channel and drops what was queued, so what the items
    /// carry (reply slots, callbacks) tells their waiters now rather than
    /// when the last sender goes.
    fn drop(&mut self) {
        let queued = {
            let mut chan = self.shared.chan.borrow_mut();
            chan.receiver_alive = false;
            std::mem::take(&mut chan.queue)
        };
        self.shared.writable.notify_all();
        // Outside the borrow: an item's drop may use the channel.
        drop(queued);
    }
}

/// A [`oneshot`]'s slot, shared by its two ends: one allocation, no
/// queue of waiters (there is only ever the one receiver).
struct OneshotState<T> {
    value: Cell<Option<T>>,
    sender_alive: Cell<bool>,
    /// The receiver's waker while it waits.
    waker: Cell<Option<Waker>>,
}

/// Creates a one-shot reply slot: one value, from one fiber to another.
pub fn oneshot<T>() -> (OneshotSender<T>, OneshotReceiver<T>) {
    let state = Rc::new(OneshotState {
        value: Cell::new(None),
        sender_alive: Cell::new(true),
        waker: Cell::new(None),
    });
    (
        OneshotSender {
            state: state.clone(),
        },
        OneshotReceiver { state },
    )
}

/// Sends the one value of a [`oneshot`].
pub struct OneshotSender<T> {
    state: Rc<OneshotState<T>>,
}

impl<T> OneshotSender<T> {
    /// Delivers the value.
    pub fn send(self, value: T) {
        self.state.value.set(Some(value));
        // Drop runs next and wakes the receiver.
    }
}

impl<T> Drop for OneshotSender<T> {
    fn drop(&mut self) {
        self.state.sender_alive.set(false);
        if let Some(w) = self.state.waker.take() {
            w.wake();
        }
    }
}

/// Receives the one value of a [`oneshot`].
pub struct OneshotReceiver<T> {
    state: Rc<OneshotState<T>>,
}

impl<T> OneshotReceiver<T> {
    /// The value, or `None` if the sender was dropped without sending.
    pub fn recv(self) -> impl Future<Output = Option<T>> {
        Recv { state: self.state }
    }
}

/// [`OneshotReceiver::recv`]'s future.
struct Recv<T> {
    state: Rc<OneshotState<T>>,
}

impl<T> Future for Recv<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let state = &self.state;
        if let Some(v) = state.value.take() {
            return Poll::Ready(Some(v));
        }
        if !state.sender_alive.get() {
            return Poll::Ready(None);
        }
        // Keep the waker already stored if it would wake the same task.
        let keep = state.waker.take().filter(|w| w.will_wake(cx.waker()));
        state
            .waker
            .set(Some(keep.unwrap_or_else(|| cx.waker().clone())));
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn bounded_channel_applies_backpressure_and_keeps_order() {
        let (tx, rx) = channel::<u32>(2);
        tx.try_send(1).expect("room");
        tx.try_send(2).expect("room");
        assert_eq!(tx.try_send(3), Err(SendError::Full(3)));
        let tx2 = tx.clone();
        let mut blocked = Box::pin(tx2.send(3));
        assert!(future::block_on(future::poll_once(&mut blocked)).is_none());
        assert_eq!(future::block_on(rx.recv()), Some(1));
        assert_eq!(future::block_on(blocked), Ok(()));
        let mut out = Vec::new();
        assert_eq!(rx.drain_into(&mut out, 10), 2);
        assert_eq!(out, vec![2, 3]);
    }

    #[test]
    fn a_dropped_receiver_drops_what_was_queued_while_senders_live() {
        let (tx, rx) = channel::<OneshotSender<u32>>(4);
        let (reply, answer) = oneshot::<u32>();
        assert!(tx.try_send(reply).is_ok());
        drop(rx);
        // The queued reply slot is gone with the receiver: its waiter
        // hears at once, though a sender still holds the channel.
        assert_eq!(
            future::block_on(future::poll_once(answer.recv())),
            Some(None),
            "the reply slot's waiter is told at once"
        );
        let (late, _) = oneshot::<u32>();
        assert!(matches!(tx.try_send(late), Err(SendError::Closed(_))));
    }

    #[test]
    fn a_send_with_room_and_a_recv_with_an_item_register_no_waiter() {
        let (tx, rx) = channel::<u32>(64);
        for i in 0..50 {
            assert_eq!(future::block_on(tx.send(i)), Ok(()));
        }
        assert_eq!(tx.shared.writable.waiters(), 0, "sends left waiters");
        for i in 0..48 {
            assert_eq!(future::block_on(rx.recv()), Some(i));
        }
        assert_eq!(tx.shared.readable.waiters(), 0, "receives left waiters");
        let (tx, rx) = channel::<u32>(2);
        // One that must wait still wakes when room comes.
        tx.try_send(1).expect("room");
        tx.try_send(2).expect("room");
        let mut blocked = Box::pin(tx.send(3));
        assert!(future::block_on(future::poll_once(&mut blocked)).is_none());
        assert_eq!(tx.shared.writable.waiters(), 1);
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(future::block_on(blocked), Ok(()));
        let mut waiting = Box::pin(async { (rx.recv().await, rx.recv().await, rx.recv().await) });
        assert!(future::block_on(future::poll_once(&mut waiting)).is_none());
        tx.try_send(4).expect("room");
        assert_eq!(future::block_on(waiting), (Some(2), Some(3), Some(4)));
    }

    #[test]
    fn recv_ends_when_senders_are_gone_and_send_fails_without_receiver() {
        let (tx, rx) = channel::<u32>(4);
        tx.try_send(7).expect("room");
        drop(tx);
        assert_eq!(future::block_on(rx.recv()), Some(7));
        assert_eq!(future::block_on(rx.recv()), None);
        let (tx, rx) = channel::<u32>(4);
        drop(rx);
        assert_eq!(future::block_on(tx.send(1)), Err(SendError::Closed(1)));
    }

    #[test]
    fn oneshot_delivers_or_reports_a_dropped_sender() {
        let (tx, rx) = oneshot();
        tx.send(5u8);
        assert_eq!(future::block_on(rx.recv()), Some(5));
        let (tx, rx) = oneshot::<u8>();
        drop(tx);
        assert_eq!(future::block_on(rx.recv()), None);
    }

    /// Counts its wake-ups.
    struct Counter(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counter {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_waiting_oneshot_receiver_is_woken_by_a_send_or_a_drop() {
        for send in [true, false] {
            let (tx, rx) = oneshot::<u8>();
            let counter = std::sync::Arc::new(Counter(0.into()));
            let waker = Waker::from(counter.clone());
            let mut cx = Context::from_waker(&waker);
            let mut waiting = Box::pin(rx.recv());
            assert!(waiting.as_mut().poll(&mut cx).is_pending());
            assert!(waiting.as_mut().poll(&mut cx).is_pending());
            if send {
                tx.send(9);
            } else {
                drop(tx);
            }
            assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 1);
            assert_eq!(
                waiting.as_mut().poll(&mut cx),
                Poll::Ready(send.then_some(9))
            );
        }
    }
}
