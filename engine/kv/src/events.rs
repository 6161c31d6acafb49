//! [`KeyEvents`]: who is waiting for a key to receive elements, and the
//! wake-up when a command that adds to it applies on this replica — what
//! Redis's blocking pops (`BLPOP`, `BLMOVE`, `BZPOPMIN`...) wait on.
//!
//! The apply fiber publishes after each command that pushes to a list or
//! adds to a sorted set, but only while someone waits: with no waiter the
//! cost on the write path is one atomic load, and no lock is taken. A
//! waiter registers *before* it tries its pop, so a push that applies
//! between the failed try and the wait still wakes it. Waiters live on any
//! shard: a wake-up is a `flume` message, which any executor can await.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

type Waiters = HashMap<(u64, Bytes), Vec<flume::Sender<()>>>;

/// The node's registry of waiters on keys, shared by its KV machines (which
/// publish) and its Redis listeners (which wait).
#[derive(Debug, Default)]
pub struct KeyEvents {
    waiting: AtomicUsize,
    waiters: Mutex<Waiters>,
}

/// A registration: woken (a message on [`Waiter::woken`]) when one of its
/// keys receives elements. Dropping it unregisters.
#[derive(Debug)]
pub struct Waiter {
    events: Weak<KeyEvents>,
    group: u64,
    keys: Vec<Bytes>,
    rx: flume::Receiver<()>,
    tx: flume::Sender<()>,
}

/// A registry equals only itself (settings that hold one compare by it).
impl PartialEq for KeyEvents {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for KeyEvents {}

impl KeyEvents {
    /// A new registry.
    pub fn new() -> Arc<KeyEvents> {
        Arc::new(KeyEvents::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        // A panic while holding this lock leaves the map consistent (each
        // operation is one insert or removal), so a poisoned lock is used.
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers interest in `keys` of `group`.
    pub fn wait(self: &Arc<Self>, group: u64, keys: &[Bytes]) -> Waiter {
        let (tx, rx) = flume::bounded(1);
        {
            let mut w = self.lock();
            for k in keys {
                w.entry((group, k.clone())).or_default().push(tx.clone());
            }
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Waiter {
            events: Arc::downgrade(self),
            group,
            keys: keys.to_vec(),
            rx,
            tx,
        }
    }

    /// Whether anyone waits (the apply path checks this first).
    pub fn anyone_waiting(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// `key` of `group` received elements: wakes its waiters.
    pub fn publish(&self, group: u64, key: &[u8]) {
        if !self.anyone_waiting() {
            return;
        }
        let w = self.lock();
        if let Some(senders) = w.get(&(group, Bytes::copy_from_slice(key))) {
            for s in senders {
                // Full: already woken and not yet awake; either way it
                // will try again.
                let _ = s.try_send(());
            }
        }
    }
}

impl Waiter {
    /// Resolves when a key is published (or the registry is gone).
    pub async fn woken(&self) {
        let _ = self.rx.recv_async().await;
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let Some(events) = self.events.upgrade() else {
            return;
        };
        {
            let mut w = events.lock();
            for k in &self.keys {
                let slot = (self.group, k.clone());
                if let Some(list) = w.get_mut(&slot) {
                    list.retain(|s| !s.same_channel(&self.tx));
                    if list.is_empty() {
                        w.remove(&slot);
                    }
                }
            }
        }
        events.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_wakes_only_the_waiters_of_its_key_and_drop_unregisters() {
        let events = KeyEvents::new();
        assert!(!events.anyone_waiting());
        let a = events.wait(1, &[Bytes::from("q")]);
        let b = events.wait(1, &[Bytes::from("other")]);
        let c = events.wait(2, &[Bytes::from("q")]);
        events.publish(1, b"q");
        assert!(a.rx.try_recv().is_ok());
        assert!(b.rx.try_recv().is_err());
        assert!(c.rx.try_recv().is_err());
        drop((a, b, c));
        assert!(!events.anyone_waiting());
        assert!(events.lock().is_empty());
    }
}
