//! `Runtime`: starts the shards (one glommio executor thread each), and stops
//! them gracefully.

use crate::error::FiberError;
use crate::mailbox::{Envelope, HandleShared, RuntimeHandle, ShardHandle};
use crate::memlock::{IO_MEMORY_DEFAULT_BYTES, IO_MEMORY_MIN_BYTES, plan_io_memory};
pub use crate::report::{ShardStopReport, ShutdownReport};
use crate::shard::{ShardContext, shard_id};
use crate::time::timeout;
use glommio::{LocalExecutorBuilder, Placement};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Preemption budget of the latency queue and the executor, unless set.
/// glommio's own default (100 ms) lets a busy fiber hold back timers and
/// messages for longer than an election timeout.
pub const PREEMPT_TIMER_DEFAULT: Duration = Duration::from_millis(1);

/// How long shutdown waits for fibers to finish before cancelling them,
/// unless set.
pub const SHUTDOWN_GRACE_DEFAULT: Duration = Duration::from_secs(5);

/// Mailbox capacity per shard (envelopes), unless set.
pub const MAILBOX_CAPACITY_DEFAULT: usize = 4096;

/// How long `build` waits for every shard to report that it started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings for a [`Runtime`]; get one from [`Runtime::builder`].
#[derive(Debug, Clone)]
pub struct RuntimeBuilder {
    name: String,
    shards: Option<usize>,
    pin_cpus: bool,
    io_memory_bytes: Option<usize>,
    preempt_timer: Duration,
    mailbox_capacity: usize,
    detect_stalls: bool,
    grace_default: Duration,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        RuntimeBuilder {
            name: "sampan".into(),
            shards: None,
            pin_cpus: false,
            io_memory_bytes: None,
            preempt_timer: PREEMPT_TIMER_DEFAULT,
            mailbox_capacity: MAILBOX_CAPACITY_DEFAULT,
            detect_stalls: false,
            grace_default: SHUTDOWN_GRACE_DEFAULT,
        }
    }
}

impl RuntimeBuilder {
    /// Thread name prefix (`<name>-shard-<i>`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Number of shards; default: the CPUs this process may use.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Pin shard `i` to the i-th CPU this process may use (default: off).
    pub fn pin_cpus(mut self, pin: bool) -> Self {
        self.pin_cpus = pin;
        self
    }

    /// I/O memory per shard in bytes (registered with io_uring, charged to
    /// `RLIMIT_MEMLOCK`). Default 2 MiB, cut down to fit the limit.
    pub fn io_memory_bytes(mut self, bytes: usize) -> Self {
        self.io_memory_bytes = Some(bytes);
        self
    }

    /// Preemption timer: how long a fiber may run before
    /// [`crate::yield_if_needed`] yields. Default 1 ms.
    pub fn preempt_timer(mut self, dur: Duration) -> Self {
        self.preempt_timer = dur;
        self
    }

    /// Envelopes each shard's mailbox holds before senders wait.
    pub fn mailbox_capacity(mut self, capacity: usize) -> Self {
        self.mailbox_capacity = capacity;
        self
    }

    /// Log a warning with a backtrace when a fiber runs past its budget
    /// without yielding (glommio's stall detector). Off by default; tests
    /// turn it on.
    pub fn detect_stalls(mut self, on: bool) -> Self {
        self.detect_stalls = on;
        self
    }

    /// Grace period used when the runtime is dropped without
    /// [`Runtime::shutdown`].
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace_default = grace;
        self
    }

    fn validate(&self, shards: usize) -> Result<(), FiberError> {
        let invalid = |field, reason: &str| {
            Err(FiberError::InvalidConfig {
                field,
                reason: reason.into(),
            })
        };
        if shards == 0 {
            return invalid("shards", "must be at least 1");
        }
        if shards > 1024 {
            return invalid("shards", "at most 1024");
        }
        if self.preempt_timer.is_zero() || self.preempt_timer > Duration::from_secs(1) {
            return invalid("preempt_timer", "must be in (0, 1 s]");
        }
        if self.mailbox_capacity == 0 {
            return invalid("mailbox_capacity", "must be at least 1");
        }
        if self
            .io_memory_bytes
            .is_some_and(|b| b < IO_MEMORY_MIN_BYTES)
        {
            return invalid("io_memory_bytes", "below glommio's minimum of 512 KiB");
        }
        Ok(())
    }

    /// Starts the shards and returns once every one is running.
    pub fn build(self) -> Result<Runtime, FiberError> {
        let cpus = allowed_cpus();
        let shards = self.shards.unwrap_or(cpus.len().max(1));
        self.validate(shards)?;
        let io_memory = plan_io_memory(
            shards,
            self.io_memory_bytes.unwrap_or(IO_MEMORY_DEFAULT_BYTES),
        )?;
        let mut senders = Vec::with_capacity(shards);
        let mut receivers = Vec::with_capacity(shards);
        for _ in 0..shards {
            let (tx, rx) = flume::bounded(self.mailbox_capacity);
            senders.push(tx);
            receivers.push(rx);
        }
        let handle = RuntimeHandle {
            shared: Arc::new(HandleShared {
                mailboxes: senders,
                closed: AtomicBool::new(false),
            }),
        };
        let (started_tx, started_rx) = flume::unbounded();
        let mut threads = Vec::with_capacity(shards);
        for (id, rx) in receivers.into_iter().enumerate() {
            let placement = match (self.pin_cpus, cpus.is_empty()) {
                (true, false) => Placement::Fixed(cpus[id % cpus.len()]),
                _ => Placement::Unbound,
            };
            let mut builder = LocalExecutorBuilder::new(placement)
                .name(&format!("{}-shard-{id}", self.name))
                .io_memory(io_memory)
                .preempt_timer(self.preempt_timer);
            if self.detect_stalls {
                builder =
                    builder.detect_stalls(Some(Box::new(glommio::DefaultStallDetectionHandler {})));
            }
            let started = started_tx.clone();
            let preempt = self.preempt_timer;
            let spawned = builder.spawn(move || async move {
                let ctx = ShardContext::install(id, shards, preempt);
                let _ = started.send(id);
                let report = shard_main(&ctx, rx).await;
                drop(ctx);
                ShardContext::uninstall();
                report
            });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    let rt = Runtime::from_parts(handle, threads, self.grace_default);
                    drop(rt);
                    return Err(FiberError::ShardStart {
                        shard: id,
                        source: std::io::Error::other(e.to_string()),
                    });
                }
            }
        }
        drop(started_tx);
        let rt = Runtime::from_parts(handle, threads, self.grace_default);
        for _ in 0..shards {
            if started_rx.recv_timeout(START_TIMEOUT).is_err() {
                let missing = shards; // which one is unknown: report the count
                drop(rt);
                return Err(FiberError::ShardStart {
                    shard: missing,
                    source: std::io::Error::other("a shard thread died while starting"),
                });
            }
        }
        log::info!(
            "runtime '{}' started: {shards} shard(s), pinned: {}, io memory {io_memory} B/shard, \
             preempt timer {:?}",
            self.name,
            self.pin_cpus,
            self.preempt_timer
        );
        Ok(rt)
    }
}

/// The CPUs this process may run on, from its affinity mask.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: we pass the size of the set we own.
    let rc = unsafe { libc::sched_getaffinity(0, size, &mut set) };
    if rc != 0 {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        return (0..n).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: i is below CPU_SETSIZE.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

/// The shard's main loop: run mailbox jobs until told to stop.
async fn shard_main(
    ctx: &std::rc::Rc<ShardContext>,
    rx: flume::Receiver<Envelope>,
) -> ShardStopReport {
    loop {
        match rx.recv_async().await {
            Ok(Envelope::Job(job)) => job(),
            Ok(Envelope::Stop { grace, done }) => {
                let report = stop_shard(ctx, grace).await;
                let _ = done.send(report.clone());
                return report;
            }
            // Every handle is gone: nobody can reach this shard any more.
            Err(flume::RecvError::Disconnected) => {
                return stop_shard(ctx, SHUTDOWN_GRACE_DEFAULT).await;
            }
        }
        crate::shard::yield_if_needed().await;
    }
}

async fn wait_idle(ctx: &ShardContext) {
    loop {
        let idle = ctx.idle.wait();
        if ctx.live_fibers() == 0 {
            return;
        }
        idle.await;
    }
}

/// Graceful stop: wake fibers watching [`crate::stopping`], wait up to
/// `grace` for them to end, then cancel the rest.
async fn stop_shard(ctx: &ShardContext, grace: Duration) -> ShardStopReport {
    ctx.begin_stop();
    let mut fibers_cancelled = 0;
    // Fibers still running a second in are named: what a slow stop waits for.
    let patience = grace.min(STOP_PATIENCE);
    if timeout(patience, wait_idle(ctx)).await.is_err() {
        let names = ctx.running_fibers();
        log::info!(
            "shard {}: waiting up to {grace:?} for {} fiber(s) to end: {}",
            ctx.id,
            names.len(),
            summarize(&names)
        );
    }
    if timeout(grace.saturating_sub(patience), wait_idle(ctx))
        .await
        .is_err()
    {
        fibers_cancelled = ctx.cancel_all();
        log::warn!(
            "shard {}: {fibers_cancelled} fiber(s) still running after {grace:?}; cancelled",
            ctx.id
        );
        // Cancelled fibers are dropped the next time the executor runs them.
        if timeout(Duration::from_secs(5), wait_idle(ctx))
            .await
            .is_err()
        {
            log::error!("shard {}: cancelled fibers did not end", ctx.id);
        }
    }
    ShardStopReport {
        shard: ctx.id,
        fibers_cancelled,
    }
}

/// How long a stopping shard waits before it names the fibers it waits for.
const STOP_PATIENCE: Duration = Duration::from_secs(1);

/// `names` counted by name: `a x2, b`.
fn summarize(names: &[String]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for n in names {
        match counts.last_mut() {
            Some((last, c)) if *last == n.as_str() => *c += 1,
            _ => counts.push((n, 1)),
        }
    }
    counts
        .iter()
        .map(|(n, c)| {
            if *c > 1 {
                format!("{n} x{c}")
            } else {
                (*n).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A running set of shards. Drop it, or call [`Runtime::shutdown`], to stop.
pub struct Runtime {
    handle: RuntimeHandle,
    threads: Vec<glommio::ExecutorJoinHandle<ShardStopReport>>,
    grace_default: Duration,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("shards", &self.handle.shards())
            .finish()
    }
}

impl Runtime {
    /// Settings for a new runtime.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    fn from_parts(
        handle: RuntimeHandle,
        threads: Vec<glommio::ExecutorJoinHandle<ShardStopReport>>,
        grace_default: Duration,
    ) -> Runtime {
        Runtime {
            handle,
            threads,
            grace_default,
        }
    }

    /// A cloneable, `Send` handle for reaching the shards from anywhere.
    pub fn handle(&self) -> RuntimeHandle {
        self.handle.clone()
    }

    /// A handle to shard `id`.
    pub fn shard(&self, id: usize) -> Result<ShardHandle, FiberError> {
        self.handle.shard(id)
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.handle.shards()
    }

    /// Stops the runtime: new work is refused at once, fibers get `grace` to
    /// finish (they can watch [`crate::stopping`]), the rest are cancelled,
    /// and the shard threads are joined. Call it from outside the runtime.
    pub fn shutdown(mut self, grace: Duration) -> Result<ShutdownReport, FiberError> {
        self.stop(grace)
    }

    fn stop(&mut self, grace: Duration) -> Result<ShutdownReport, FiberError> {
        if let Some(shard) = shard_id() {
            return Err(FiberError::BlockingOnShard { shard });
        }
        self.handle.shared.closed.store(true, Ordering::Release);
        let mut waits = Vec::new();
        for (id, mailbox) in self.handle.shared.mailboxes.iter().enumerate() {
            let (done, report) = flume::bounded(1);
            if mailbox.send(Envelope::Stop { grace, done }).is_ok() {
                waits.push((id, report));
            }
        }
        let mut report = ShutdownReport::default();
        for (id, wait) in waits {
            if let Ok(r) = wait.recv() {
                report.shards.push(r);
            } else {
                log::warn!("shard {id} ended without a stop report");
            }
        }
        let mut result = Ok(());
        for (id, t) in self.threads.drain(..).enumerate() {
            if t.join().is_err() {
                result = Err(FiberError::ShardPanicked { shard: id });
            }
        }
        log::info!(
            "runtime stopped; {} fiber(s) cancelled",
            report.fibers_cancelled()
        );
        result.map(|()| report)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        if let Err(e) = self.stop(self.grace_default) {
            log::error!("runtime drop: {e}");
        }
    }
}
