//! Group commit: one [`LogWriter`] per shard makes the appends of every log
//! on that shard durable together. Appends only write (into the page
//! cache); whoever waits for durability starts a *sync round*, which takes
//! every log written since its last sync and issues all their `fdatasync`s
//! at once through io_uring, then tells each log its new durable index.
//!
//! Each log has at most one sync in flight: waiters that need more than the
//! in-flight sync covers wait for it, then one of them starts the next round
//! covering everything written meanwhile (many proposals, one sync). Rounds
//! of different logs overlap freely, so the disk sees as many syncs in
//! flight as there are busy logs, as a plain loop per file would give it.
//!
//! There is no writer fiber: the waiter that starts a round drives it (if
//! it is dropped midway, the round's logs are released and the next waiter
//! starts again). So the same code runs under `futures_lite::block_on` in
//! tests.

use crate::error::{Result, StorageError};
use crate::io::VfsFile;
use crate::latency::{Latencies, LatencySnapshot};
use sampan_fiber::Signal;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

/// What the writer knows of one log.
#[derive(Debug)]
pub(crate) struct SyncState<F> {
    pub(crate) group: u64,
    /// The file whose sync makes `written` durable (the active segment).
    pub(crate) file: RefCell<Option<(Rc<F>, PathBuf)>>,
    /// Last index written (in the page cache).
    pub(crate) written: Cell<u64>,
    /// Last index known durable.
    pub(crate) durable: Cell<u64>,
    /// Last index known on disk (made so by a successful `fdatasync`):
    /// `durable` in `sync` mode, behind it in `async` mode. Records carry
    /// it as their sync floor, which recovery trusts.
    pub(crate) synced: Cell<u64>,
    /// Bumped when the log's tail is cut: a round started before must not
    /// raise `durable` over entries written after.
    pub(crate) epoch: Cell<u64>,
    /// Set when a sync failed: the data's state is unknown.
    pub(crate) failed: RefCell<Option<String>>,
    dirty: Cell<bool>,
    /// A sync of this log is in flight.
    in_flight: Cell<bool>,
    /// Notified when `durable` rises, a sync ends, or the log fails.
    pub(crate) changed: Signal,
}

impl<F> SyncState<F> {
    pub(crate) fn new(group: u64, index: u64) -> SyncState<F> {
        SyncState {
            group,
            file: RefCell::new(None),
            written: Cell::new(index),
            durable: Cell::new(index),
            synced: Cell::new(index),
            epoch: Cell::new(0),
            failed: RefCell::new(None),
            dirty: Cell::new(false),
            in_flight: Cell::new(false),
            changed: Signal::new(),
        }
    }

    /// Raises the durable index (never over `written`) and wakes waiters.
    pub(crate) fn set_durable(&self, index: u64) {
        let index = index.min(self.written.get());
        if index > self.durable.get() {
            self.durable.set(index);
            self.changed.notify_all();
        }
    }

    /// Records that a sync stored everything up to `index`.
    pub(crate) fn set_synced(&self, index: u64) {
        let index = index.min(self.written.get());
        if index > self.synced.get() {
            self.synced.set(index);
        }
        self.set_durable(index);
    }

    /// Sets every mark to `index` (the log was cut or reset there, durably).
    pub(crate) fn reset_to(&self, index: u64) {
        self.written.set(index);
        self.durable.set(index);
        self.synced.set(index);
    }

    /// Whether everything written is known on disk, with no sync in
    /// flight or pending: a write made durable by itself then leaves the
    /// log wholly durable.
    pub(crate) fn all_synced(&self) -> bool {
        !self.in_flight.get() && !self.dirty.get() && self.synced.get() == self.written.get()
    }

    pub(crate) fn fail(&self, reason: String) {
        sampan_fiber::group_log!(
            error,
            self.group,
            "group {}: {reason}; the log must be reopened",
            self.group
        );
        self.failed.borrow_mut().get_or_insert(reason);
        self.changed.notify_all();
    }

    pub(crate) fn check(&self) -> Result<()> {
        match &*self.failed.borrow() {
            Some(reason) => Err(StorageError::Failed {
                group: self.group,
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

struct Inner<F> {
    dirty: RefCell<Vec<Rc<SyncState<F>>>>,
    rounds: Cell<u64>,
    file_syncs: Cell<u64>,
    durable_writes: Cell<u64>,
    /// How long each sync round took (its syncs run at once).
    sync_latency: Latencies,
}

/// The shard's group-commit writer; clone it into every log of the shard.
/// Shard-local (`!Send`).
pub struct LogWriter<F> {
    inner: Rc<Inner<F>>,
}

impl<F> Clone for LogWriter<F> {
    fn clone(&self) -> Self {
        LogWriter {
            inner: self.inner.clone(),
        }
    }
}

impl<F> std::fmt::Debug for LogWriter<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("rounds", &self.inner.rounds.get())
            .field("file_syncs", &self.inner.file_syncs.get())
            .finish()
    }
}

impl<F: VfsFile> Default for LogWriter<F> {
    fn default() -> Self {
        Self::new()
    }
}

/// Releases a round's logs (and wakes their waiters) even if the round is
/// dropped midway.
struct RoundGuard<F>(Vec<Rc<SyncState<F>>>);

impl<F> Drop for RoundGuard<F> {
    fn drop(&mut self) {
        for log in &self.0 {
            log.in_flight.set(false);
            log.changed.notify_all();
        }
    }
}

impl<F: VfsFile> LogWriter<F> {
    /// A writer with no logs.
    pub fn new() -> LogWriter<F> {
        LogWriter {
            inner: Rc::new(Inner {
                dirty: RefCell::new(Vec::new()),
                rounds: Cell::new(0),
                file_syncs: Cell::new(0),
                durable_writes: Cell::new(0),
                sync_latency: Latencies::new(),
            }),
        }
    }

    /// Sync rounds run so far, and file syncs they issued.
    pub fn stats(&self) -> (u64, u64) {
        (self.inner.rounds.get(), self.inner.file_syncs.get())
    }

    /// How long the sync rounds took.
    pub fn sync_latency(&self) -> LatencySnapshot {
        self.inner.sync_latency.snapshot()
    }

    /// Appends that were written and made durable in one operation, with
    /// no sync round (in `sync` mode, when nothing else was unsynced).
    pub fn durable_writes(&self) -> u64 {
        self.inner.durable_writes.get()
    }

    pub(crate) fn count_durable_write(&self) {
        self.inner
            .durable_writes
            .set(self.inner.durable_writes.get() + 1);
    }

    /// Notes that `log` has writes to make durable in the next round.
    pub(crate) fn mark_dirty(&self, log: &Rc<SyncState<F>>) {
        if !log.dirty.replace(true) {
            self.inner.dirty.borrow_mut().push(log.clone());
        }
    }

    /// Waits until `index` of `log` is durable, running sync rounds as
    /// needed; returns the durable index.
    pub(crate) async fn wait_durable(&self, log: &Rc<SyncState<F>>, index: u64) -> Result<u64> {
        loop {
            log.check()?;
            if log.durable.get() >= index {
                return Ok(log.durable.get());
            }
            if index > log.written.get() {
                return Err(StorageError::invalid(
                    log.group,
                    format!(
                        "cannot wait for index {index}: last written is {}",
                        log.written.get()
                    ),
                ));
            }
            if log.in_flight.get() {
                let changed = log.changed.wait();
                if log.in_flight.get() {
                    changed.await;
                }
                continue;
            }
            self.mark_dirty(log);
            self.round().await;
        }
    }

    /// Syncs every dirty log that has no sync in flight, all at once.
    async fn round(&self) {
        let inner = &*self.inner;
        let mut batch = Vec::new();
        inner.dirty.borrow_mut().retain(|log| {
            if log.in_flight.get() {
                return true; // stays dirty for the round after its sync
            }
            log.dirty.set(false);
            log.in_flight.set(true);
            batch.push(log.clone());
            false
        });
        let guard = RoundGuard(batch);
        let mut points = Vec::with_capacity(guard.0.len());
        for log in &guard.0 {
            let file = log.file.borrow().clone();
            if let Some((file, path)) = file {
                points.push((log.clone(), file, path, log.written.get(), log.epoch.get()));
            }
        }
        let syncs = points.iter().map(|(_, file, ..)| file.sync()).collect();
        let started = std::time::Instant::now();
        let results = join_all(syncs).await;
        inner.sync_latency.record(started.elapsed());
        inner.rounds.set(inner.rounds.get() + 1);
        inner
            .file_syncs
            .set(inner.file_syncs.get() + points.len() as u64);
        for ((log, _, path, target, epoch), res) in points.into_iter().zip(results) {
            match res {
                Ok(()) if log.epoch.get() == epoch => log.set_synced(target),
                Ok(()) => {}
                Err(e) => log.fail(format!("fdatasync of {} failed: {e}", path.display())),
            }
        }
        drop(guard);
    }
}

/// Polls all `futs` concurrently; their outputs in order.
pub(crate) async fn join_all<T, Fut: Future<Output = T>>(futs: Vec<Fut>) -> Vec<T> {
    let mut futs: Vec<Pin<Box<Fut>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, slot) in futs.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
