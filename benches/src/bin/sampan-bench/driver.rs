//! The Redis-protocol load: a few threads (`--threads`), each driving
//! several connections with `ppoll`, each connection keeping up to
//! `--pipeline` requests in flight. Closed loop: a
//! new request as soon as a reply frees a slot. Open loop (`--rate`): each
//! request has a due time on a fixed schedule; it is sent then (or as soon
//! as a slot frees, if the server is behind) and timed from when it was
//! due, so a slow server cannot slow the schedule down and hide its own
//! stalls (no coordinated omission).

use crate::error::{BenchError, Result};
use crate::record::{Outcome, Recorder, Window};
use crate::resp::{Conn, READ_TIMEOUT, Reply};
use crate::workload::{Generator, KeySpace, Op};
use indicatif::ProgressBar;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// Keys written per round trip while preloading.
const PRELOAD_BATCH: usize = 256;
/// Threads that preload at most.
const PRELOAD_THREADS: usize = 8;
/// How long a connection keeps trying to reconnect before it gives up.
const RECONNECT_FOR: Duration = Duration::from_secs(10);

/// What every connection of a run may send.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Requests in flight per connection at most.
    pub pipeline: usize,
    /// Measured requests left to send, for a run of `--requests`.
    pub budget: Option<Arc<AtomicI64>>,
}

/// Where a connection goes.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The server's Redis port.
    pub addr: SocketAddr,
    /// The database.
    pub db: u64,
    /// `AUTH` password.
    pub password: Option<String>,
}

impl Endpoint {
    /// A new connection.
    pub fn connect(&self) -> io::Result<Conn> {
        Conn::connect(self.addr, self.password.as_deref(), self.db)
    }
}

/// Whether a request due or sent at `t` may go out: not after a timed
/// window ends, nor past the measured budget.
fn claim(plan: &Plan, window: &Window, t: Instant) -> bool {
    if crate::interrupt::stopped() {
        return false;
    }
    if window.end.is_some_and(|e| t >= e) {
        return false;
    }
    match &plan.budget {
        Some(b) if t >= window.start => b.fetch_sub(1, Ordering::Relaxed) > 0,
        _ => true,
    }
}

/// Judges one reply to a request due or sent at `from`.
fn judge(rec: &mut Recorder, reply: Reply, op: Op, from: Instant, now: Instant) {
    match reply {
        Reply::Error(e) => rec.error(from, || e),
        Reply::Nil => rec.ok(from, now, op == Op::Read),
        Reply::Value(_) => rec.ok(from, now, false),
    }
}

/// One connection of a load thread, with its requests in flight.
pub struct Lane {
    endpoint: Endpoint,
    /// None while reconnecting.
    conn: Option<Conn>,
    generator: Generator,
    inflight: VecDeque<(Instant, Op)>,
    /// Open loop: when the next request is due, and the interval.
    pace: Option<(Instant, Duration)>,
    stopping: bool,
    /// The last reply (or the first send after none were in flight).
    last_progress: Instant,
    /// Reconnecting: the next try, and when to give up.
    retry: Option<(Instant, Instant)>,
}

impl Lane {
    /// A connection to `endpoint` sending `generator`'s commands; `pace`
    /// for an open loop (first due time, interval).
    pub fn new(
        endpoint: Endpoint,
        conn: Conn,
        generator: Generator,
        pace: Option<(Instant, Duration)>,
    ) -> Lane {
        Lane {
            endpoint,
            conn: Some(conn),
            generator,
            inflight: VecDeque::new(),
            pace,
            stopping: false,
            last_progress: Instant::now(),
            retry: None,
        }
    }

    fn finished(&self) -> bool {
        self.stopping && self.inflight.is_empty() && self.retry.is_none()
    }

    /// When this lane needs the thread awake without a reply: its next
    /// due time (open loop, a slot free) or its next reconnect.
    fn wake_at(&self, pipeline: usize) -> Option<Instant> {
        if let Some((t, _)) = self.retry {
            return Some(t);
        }
        match self.pace {
            Some((due, _)) if !self.stopping && self.inflight.len() < pipeline => Some(due),
            _ => None,
        }
    }

    /// The socket to wait on, when replies are awaited.
    fn fd(&self) -> Option<RawFd> {
        match &self.conn {
            Some(c) if !self.inflight.is_empty() => Some(c.fd()),
            _ => None,
        }
    }

    /// Sends what is due at `now` (reconnecting first if need be).
    fn send(
        &mut self,
        now: Instant,
        plan: &Plan,
        window: &Window,
        keys: &KeySpace,
        rec: &mut Recorder,
    ) {
        if let Some((next_try, give_up)) = self.retry {
            if self.stopping || window.end.is_some_and(|e| now >= e) || crate::interrupt::stopped()
            {
                self.stopping = true;
                self.retry = None;
                return;
            }
            if now < next_try {
                return;
            }
            match self.endpoint.connect() {
                Ok(c) => {
                    self.conn = Some(c);
                    self.retry = None;
                }
                Err(e) if now > give_up => {
                    rec.note(format!("{}: gave up reconnecting: {e}", self.endpoint.addr));
                    self.stopping = true;
                    self.retry = None;
                    return;
                }
                Err(_) => {
                    self.retry = Some((now + Duration::from_millis(100), give_up));
                    return;
                }
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let was_idle = self.inflight.is_empty();
        if !self.stopping {
            match &mut self.pace {
                Some((due, interval)) => {
                    while self.inflight.len() < plan.pipeline && *due <= now {
                        if !claim(plan, window, *due) {
                            self.stopping = true;
                            break;
                        }
                        let op = self.generator.next(keys, &mut conn.wbuf);
                        self.inflight.push_back((*due, op));
                        *due += *interval;
                    }
                    if let Some(end) = window.end
                        && now >= end
                    {
                        // Behind schedule when the window closed (every
                        // slot busy): what was due but never sent is
                        // counted, not timed.
                        let from = (*due).max(window.start);
                        if from < end {
                            let behind = (end - from).as_secs_f64() / interval.as_secs_f64();
                            rec.unsent(behind.ceil() as u64);
                        }
                        self.stopping = true;
                    }
                }
                None => {
                    while self.inflight.len() < plan.pipeline {
                        if !claim(plan, window, now) {
                            self.stopping = true;
                            break;
                        }
                        let op = self.generator.next(keys, &mut conn.wbuf);
                        self.inflight.push_back((now, op));
                    }
                }
            }
        }
        if was_idle && !self.inflight.is_empty() {
            self.last_progress = now;
        }
        if let Err(e) = conn.flush() {
            self.fail(&e, now, rec);
        }
    }

    /// Reads the replies that came.
    fn receive(&mut self, rec: &mut Recorder) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let step = conn.fill().and_then(|()| {
            let now = Instant::now();
            while let Some(reply) = conn.parse()? {
                let Some((from, op)) = self.inflight.pop_front() else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a reply to no request",
                    ));
                };
                judge(rec, reply, op, from, now);
            }
            self.last_progress = now;
            Ok(())
        });
        if let Err(e) = step {
            self.fail(&e, Instant::now(), rec);
        }
    }

    /// Fails the lane if replies are awaited and none came for
    /// [`READ_TIMEOUT`].
    fn check_silence(&mut self, now: Instant, rec: &mut Recorder) {
        if !self.inflight.is_empty() && now.duration_since(self.last_progress) > READ_TIMEOUT {
            let e = io::Error::new(io::ErrorKind::TimedOut, "no reply in time");
            self.fail(&e, now, rec);
        }
    }

    /// Counts what was in flight as failed and starts reconnecting.
    fn fail(&mut self, e: &io::Error, now: Instant, rec: &mut Recorder) {
        let why = format!("{}: {e}", self.endpoint.addr);
        for (from, _) in self.inflight.drain(..) {
            rec.error(from, || why.clone());
        }
        self.conn = None;
        if !self.stopping {
            self.retry = Some((now + Duration::from_millis(100), now + RECONNECT_FOR));
        }
    }
}

/// Drives `lanes` from one thread until the window ends (or the budget is
/// spent) and every reply is in: sends what each may send, then waits
/// (`ppoll`) for replies or the next due time.
pub fn drive(mut lanes: Vec<Lane>, keys: Arc<KeySpace>, plan: Plan, mut rec: Recorder) -> Outcome {
    let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(lanes.len());
    let mut polled: Vec<usize> = Vec::with_capacity(lanes.len());
    let window = rec.window().clone();
    loop {
        let now = Instant::now();
        for lane in &mut lanes {
            lane.send(now, &plan, &window, &keys, &mut rec);
        }
        lanes.retain(|l| !l.finished());
        if lanes.is_empty() {
            break;
        }
        let mut wake = now + READ_TIMEOUT;
        pfds.clear();
        polled.clear();
        for (i, lane) in lanes.iter().enumerate() {
            if let Some(t) = lane.wake_at(plan.pipeline) {
                wake = wake.min(t);
            }
            if let Some(fd) = lane.fd() {
                pfds.push(libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
                polled.push(i);
            }
        }
        let timeout = wake.saturating_duration_since(Instant::now());
        if pfds.is_empty() {
            std::thread::sleep(timeout);
            continue;
        }
        if let Err(e) = poll(&mut pfds, timeout) {
            rec.note(format!("poll: {e}"));
            std::thread::sleep(Duration::from_millis(10));
        }
        let now = Instant::now();
        for (pfd, i) in pfds.iter().zip(&polled) {
            if pfd.revents != 0 {
                lanes[*i].receive(&mut rec);
            } else {
                lanes[*i].check_silence(now, &mut rec);
            }
        }
    }
    rec.finish()
}

/// Waits until one of `fds` is readable or `timeout` passes.
fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `fds` is a valid slice of pollfd for the call's duration, and
    // `ts` a valid timespec on the stack.
    let n = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Writes every key of the key space once (SET or HSET, as the workload
/// reads them), pipelined over a few connections.
pub fn preload(
    endpoints: &[Endpoint],
    keys: &KeySpace,
    make: &(dyn Fn(u64) -> Generator + Sync),
    bar: &ProgressBar,
) -> Result<()> {
    // Each job: an endpoint (one per database) and a slice of its keys.
    let mut jobs: Vec<(&Endpoint, &[u64])> = Vec::new();
    let per_db = PRELOAD_THREADS.div_ceil(endpoints.len()).max(1);
    for e in endpoints {
        let ids = keys.ids(e.db);
        if ids.is_empty() {
            continue;
        }
        for chunk in ids.chunks(ids.len().div_ceil(per_db)) {
            jobs.push((e, chunk));
        }
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(e, ids)| {
                s.spawn(move || -> Result<()> {
                    let err = |what: String| BenchError::server(e.addr, format!("preload: {what}"));
                    let mut conn = e.connect().map_err(|x| err(x.to_string()))?;
                    let mut generator = make(e.db);
                    for batch in ids.chunks(PRELOAD_BATCH) {
                        if crate::interrupt::stopped() {
                            return Err(BenchError::Interrupted);
                        }
                        for id in batch {
                            generator.preload(*id, &mut conn.wbuf);
                        }
                        conn.flush().map_err(|x| err(x.to_string()))?;
                        let mut got = 0;
                        while got < batch.len() {
                            match conn.parse().map_err(|x| err(x.to_string()))? {
                                Some(Reply::Error(x)) => return Err(err(x)),
                                Some(_) => got += 1,
                                None => conn.fill().map_err(|x| err(x.to_string()))?,
                            }
                        }
                        bar.inc(batch.len() as u64);
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(BenchError::Cluster("a preload thread panicked".into()))
                })
            })
            .collect::<Result<Vec<()>>>()
            .map(|_| ())
    })
}
