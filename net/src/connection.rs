//! A live connection after its handshake: one reader fiber, one writer
//! fiber, a send queue with a byte budget, and the table of requests
//! waiting for their responses.
//!
//! Shard-local (`!Send`): a connection lives on the shard that made it;
//! other shards reach it through that shard's mailbox.
//!
//! - **Write coalescing.** Senders only queue frames and wake the writer.
//!   The writer takes everything queued by the time it runs and writes it
//!   in one vectored `sendmsg` (headers and body pieces as separate buffers,
//!   never joined), so frames queued during one wake-up go out together.
//! - **Backpressure.** Bytes queued and not yet written are bounded by
//!   `bytes_in_flight_max`; [`Connection::send`] and [`Connection::request`]
//!   wait for room, [`Connection::try_send`] fails with [`NetError::Full`].
//!   Responses are queued outside the budget, so a reader that answers
//!   requests never waits on its own writer.
//! - **Closing.** Any bad frame, unknown kind, I/O error or end of stream
//!   closes the connection with a [`CloseReason`] that is logged; every
//!   request waiting on it fails at once with [`NetError::ConnectionClosed`].

use crate::auth::Privilege;
use crate::codec::{Decoder, encode_header};
use crate::error::{FrameError, NetError};
use crate::frame::{Body, Frame, FrameType, HEADER_LEN, KIND_HANDSHAKE};
use crate::link::{Link, LinkRead, LinkWrite};
use crate::readbuf::ReadBuf;
use crate::rpc::{
    Incoming, Origin, Pending, Reply, Responder, ResponseSink, Router, check_user_kind,
};
use sampan_fiber::net::ShutdownHandle;
use sampan_fiber::{Signal, TaskClass, oneshot, spawn, yield_if_needed};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Why a connection closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Closed by its owner ([`Connection::close`]) or the transport.
    Local(String),
    /// The peer closed its side (end of stream).
    PeerClosed,
    /// A socket read or write failed.
    Io(String),
    /// The peer sent bytes that are not a valid frame.
    BadFrame(FrameError),
    /// The peer sent a frame of a kind nobody handles here.
    UnknownKind(u16),
    /// The peer broke the protocol some other way.
    Protocol(String),
    /// The peer refused us (an error response to the handshake).
    Rejected(String),
    /// A handler panicked on a frame of this kind.
    HandlerPanicked(u16),
    /// The peer closed the stream in the middle of a frame.
    Truncated {
        /// Bytes of the unfinished frame received.
        bytes: usize,
    },
    /// The handshake failed (recorded by listeners; such a connection never
    /// becomes a [`Connection`]).
    Handshake(String),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Local(why) => write!(f, "closed locally: {why}"),
            CloseReason::PeerClosed => write!(f, "closed by the peer"),
            CloseReason::Io(e) => write!(f, "I/O error: {e}"),
            CloseReason::BadFrame(e) => write!(f, "bad frame: {e}"),
            CloseReason::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            CloseReason::Protocol(why) => write!(f, "protocol error: {why}"),
            CloseReason::Rejected(why) => write!(f, "rejected by the peer: {why}"),
            CloseReason::HandlerPanicked(k) => write!(f, "the handler of kind {k} panicked"),
            CloseReason::Truncated { bytes } => {
                write!(f, "the peer closed the stream {bytes} bytes into a frame")
            }
            CloseReason::Handshake(why) => write!(f, "handshake failed: {why}"),
        }
    }
}

impl CloseReason {
    /// Whether the peer misbehaved (logged as a warning), as opposed to a
    /// normal end of the connection (logged as info).
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            CloseReason::BadFrame(_)
                | CloseReason::UnknownKind(_)
                | CloseReason::Protocol(_)
                | CloseReason::Rejected(_)
                | CloseReason::Truncated { .. }
                | CloseReason::Handshake(_)
        )
    }
}

/// Counters of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Frames written to the socket.
    pub frames_sent: u64,
    /// Batches written (one wake-up of the writer each): fewer than
    /// `frames_sent` when writes coalesce.
    pub write_batches: u64,
    /// Bytes written, headers included.
    pub bytes_sent: u64,
    /// Frames received.
    pub frames_received: u64,
    /// Bytes received in those frames, headers included.
    pub bytes_received: u64,
}

/// Settings of a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnConfig {
    pub(crate) decoder: Decoder,
    pub(crate) bytes_in_flight_max: usize,
}

/// How far past `bytes_in_flight_max` responses may queue (they skip the
/// budget) before the connection is closed as a peer that does not read.
pub const RESPONSE_OVERFLOW_FACTOR: usize = 4;

/// Called when a connection closes, before its socket is shut down.
pub(crate) type CloseHook = Rc<dyn Fn(SocketAddr, &CloseReason)>;

/// Who is at the other end.
#[derive(Debug, Clone)]
pub(crate) struct PeerInfo {
    pub(crate) node_id: u64,
    pub(crate) addr: SocketAddr,
    /// "node 2 at 127.0.0.1:4000", for logs and errors.
    pub(crate) label: Rc<str>,
    /// What it proved it may do.
    pub(crate) privilege: Privilege,
}

struct OutFrame {
    header: [u8; HEADER_LEN],
    body: Body,
}

impl OutFrame {
    fn bytes(&self) -> usize {
        HEADER_LEN + self.body.len()
    }
}

#[derive(Default)]
struct Outbox {
    queue: VecDeque<OutFrame>,
    bytes_queued: usize,
}

pub(crate) struct ConnInner {
    peer: PeerInfo,
    config: ConnConfig,
    router: Router,
    outbox: RefCell<Outbox>,
    /// Wakes the writer: frames queued, or closed.
    wake_writer: Signal,
    /// Wakes senders waiting for budget: bytes written, or closed.
    room: Signal,
    pending: RefCell<Pending>,
    /// Wakes the reaper: a request with an earlier deadline than the one
    /// it sleeps until, or closed.
    wake_reaper: Signal,
    /// The deadline the reaper sleeps until (`None`: none pending).
    reap_at: Cell<Option<Instant>>,
    close_reason: RefCell<Option<CloseReason>>,
    closed: Signal,
    socket: ShutdownHandle,
    stats: Cell<ConnStats>,
    on_close: Option<CloseHook>,
}

/// A connection to a peer (a node or a client). Clones refer to the same
/// connection. Shard-local.
#[derive(Clone)]
pub struct Connection {
    inner: Rc<ConnInner>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.inner.peer.label)
            .field("closed", &self.inner.close_reason.borrow())
            .finish()
    }
}

impl Connection {
    /// Starts the reader and writer fibers on a stream whose handshake is
    /// done; `rb` holds any bytes read past the handshake.
    pub(crate) fn start(
        stream: Link,
        rb: ReadBuf,
        peer: PeerInfo,
        config: ConnConfig,
        router: Router,
        on_close: Option<CloseHook>,
    ) -> Result<Connection, NetError> {
        let socket = stream.shutdown_handle();
        let wake_writer = Signal::new();
        let (read, write) = stream.into_split(wake_writer.clone());
        let inner = Rc::new(ConnInner {
            peer,
            config,
            router,
            outbox: RefCell::new(Outbox::default()),
            wake_writer,
            room: Signal::new(),
            pending: RefCell::new(Pending::default()),
            wake_reaper: Signal::new(),
            reap_at: Cell::new(None),
            close_reason: RefCell::new(None),
            closed: Signal::new(),
            socket,
            stats: Cell::new(ConnStats::default()),
            on_close,
        });
        log::info!("connection to {} is up", inner.peer.label);
        spawn(
            TaskClass::Latency,
            "net-writer",
            write_loop(inner.clone(), write),
        )?;
        if let Err(e) = spawn(TaskClass::Latency, "net-reaper", reap_loop(inner.clone())) {
            inner.close(CloseReason::Local(format!("cannot start its reaper: {e}")));
            return Err(e.into());
        }
        let reader = spawn(
            TaskClass::Latency,
            "net-reader",
            read_loop(inner.clone(), read, rb),
        );
        if let Err(e) = reader {
            inner.close(CloseReason::Local(format!("cannot start its reader: {e}")));
            return Err(e.into());
        }
        Ok(Connection { inner })
    }

    /// The peer's node id (client id for clients), from the handshake.
    pub fn peer_node(&self) -> u64 {
        self.inner.peer.node_id
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer.addr
    }

    /// Builds a one-way frame of a user `kind` (the check `send` and
    /// `try_send` share).
    fn one_way(&self, kind: u16, group_id: u64, body: Body) -> Result<OutFrame, NetError> {
        check_user_kind(kind)?;
        self.inner.frame(FrameType::OneWay, kind, group_id, 0, body)
    }

    /// Sends a one-way frame, waiting for room in the send budget.
    pub async fn send(
        &self,
        kind: u16,
        group_id: u64,
        body: impl Into<Body>,
    ) -> Result<(), NetError> {
        let frame = self.one_way(kind, group_id, body.into())?;
        self.inner.enqueue(frame, kind, true).await
    }

    /// Sends a one-way frame now, or fails with [`NetError::Full`] when the
    /// send budget is used up.
    pub fn try_send(
        &self,
        kind: u16,
        group_id: u64,
        body: impl Into<Body>,
    ) -> Result<(), NetError> {
        let frame = self.one_way(kind, group_id, body.into())?;
        self.inner.try_enqueue(frame, kind, true)
    }

    /// Sends a request and waits for its response, at most `timeout` in all
    /// (the wait for send budget included). An error response from the peer
    /// is [`NetError::Remote`]; a connection that closes first fails the
    /// request at once with [`NetError::ConnectionClosed`].
    pub async fn request(
        &self,
        kind: u16,
        group_id: u64,
        body: impl Into<Body>,
        timeout: Duration,
    ) -> Result<Frame, NetError> {
        check_user_kind(kind)?;
        let inner = &self.inner;
        let (tx, rx) = oneshot();
        let (id, deadline) = inner
            .pending
            .borrow_mut()
            .register(kind, tx, Instant::now(), timeout);
        let _forget = ForgetOnDrop { inner, id };
        if inner.reap_at.get().is_none_or(|at| deadline < at) {
            inner.reap_at.set(Some(deadline));
            inner.wake_reaper.notify_all();
        }
        let frame = inner.frame(FrameType::Request, kind, group_id, id, body.into())?;
        if inner.is_closed() {
            return Err(inner.closed_error(kind));
        }
        // The reaper answers the request with a timeout once its deadline
        // passes; only a request that must wait for room to be queued
        // (which the reaper cannot cut short) needs a timer of its own.
        if let Err(frame) = inner.push(frame, true) {
            // Boxed: waiting for room (with a timer) is rare, and its
            // future would otherwise make every request's state ~1.5 KB
            // instead of a few hundred bytes.
            let wait = async {
                inner.enqueue(frame, kind, true).await?;
                match rx.recv().await {
                    Some(reply) => reply,
                    None => Err(inner.closed_error(kind)),
                }
            };
            return match Box::pin(sampan_fiber::timeout_at(deadline, wait)).await {
                Ok(reply) => reply,
                Err(_) => Err(inner.timeout_error(kind, timeout)),
            };
        }
        match rx.recv().await {
            Some(reply) => reply,
            None => Err(inner.closed_error(kind)),
        }
    }

    /// Closes the connection: requests waiting on it fail, queued frames are
    /// dropped, the socket is shut down.
    pub fn close(&self, why: &str) {
        self.inner.close(CloseReason::Local(why.to_string()));
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.close_reason.borrow().is_some()
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.inner.close_reason.borrow().clone()
    }

    /// Completes when the connection has closed; returns why.
    pub async fn closed(&self) -> CloseReason {
        loop {
            let woken = self.inner.closed.wait();
            if let Some(reason) = self.close_reason() {
                return reason;
            }
            woken.await;
        }
    }

    /// Bytes queued and not yet written.
    pub fn bytes_queued(&self) -> usize {
        self.inner.outbox.borrow().bytes_queued
    }

    /// Requests sent and not yet answered.
    pub fn requests_pending(&self) -> usize {
        self.inner.pending.borrow().len()
    }

    /// The connection's counters.
    pub fn stats(&self) -> ConnStats {
        self.inner.stats.get()
    }
}

/// Removes a request from the pending table when its caller stops waiting
/// (answered, timed out or cancelled).
struct ForgetOnDrop<'a> {
    inner: &'a ConnInner,
    id: u64,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.inner.pending.borrow_mut().take(self.id);
    }
}

impl ConnInner {
    fn frame(
        &self,
        frame_type: FrameType,
        kind: u16,
        group_id: u64,
        request_id: u64,
        body: Body,
    ) -> Result<OutFrame, NetError> {
        let too_large = |bytes: u64| NetError::TooLarge {
            peer: self.peer.label.to_string(),
            kind,
            bytes,
            bytes_max: self.config.decoder.frame_bytes_max(),
        };
        let body_len = body.len();
        if self.config.decoder.check_len(kind, body_len).is_err() {
            return Err(too_large((HEADER_LEN + body_len) as u64));
        }
        let header = crate::frame::FrameHeader {
            frame_type,
            kind,
            group_id,
            request_id,
        };
        let header = encode_header(&header, &body).ok_or_else(|| too_large(u64::MAX))?;
        Ok(OutFrame { header, body })
    }

    fn closed_error(&self, kind: u16) -> NetError {
        let reason = self
            .close_reason
            .borrow()
            .as_ref()
            .map_or_else(|| "closing".to_string(), ToString::to_string);
        NetError::ConnectionClosed {
            peer: self.peer.label.to_string(),
            kind,
            reason,
        }
    }

    /// Queues `frame` if the budget allows (or `budget` is off); gives the
    /// frame back when it does not fit.
    fn push(&self, frame: OutFrame, budget: bool) -> Result<(), OutFrame> {
        let mut out = self.outbox.borrow_mut();
        let bytes = frame.bytes();
        // A frame larger than the whole budget still goes when the queue is
        // empty; the frame size limit bounds it.
        let max = self.config.bytes_in_flight_max;
        let fits = out.bytes_queued == 0 || out.bytes_queued + bytes <= max;
        if budget && !fits {
            return Err(frame);
        }
        // Responses skip the budget, but a peer that keeps asking and never
        // reads its answers must not grow our queue without bound.
        let overflow = max.saturating_mul(RESPONSE_OVERFLOW_FACTOR);
        if !budget && out.bytes_queued > 0 && out.bytes_queued + bytes > overflow {
            drop(out);
            self.close(CloseReason::Protocol(format!(
                "the peer does not read its responses ({overflow} bytes queued)"
            )));
            return Err(frame);
        }
        out.bytes_queued += bytes;
        out.queue.push_back(frame);
        drop(out);
        self.wake_writer.notify_all();
        Ok(())
    }

    fn try_enqueue(&self, frame: OutFrame, kind: u16, budget: bool) -> Result<(), NetError> {
        if self.close_reason.borrow().is_some() {
            return Err(self.closed_error(kind));
        }
        self.push(frame, budget).map_err(|_| NetError::Full {
            peer: self.peer.label.to_string(),
            bytes_queued: self.outbox.borrow().bytes_queued,
        })
    }

    async fn enqueue(&self, mut frame: OutFrame, kind: u16, budget: bool) -> Result<(), NetError> {
        // A waiter is registered only when the queue is full (nothing runs
        // between the failed push and the registration): a frame that finds
        // room, almost every one, allocates no waiter.
        loop {
            if self.close_reason.borrow().is_some() {
                return Err(self.closed_error(kind));
            }
            match self.push(frame, budget) {
                Ok(()) => return Ok(()),
                Err(back) => frame = back,
            }
            self.room.wait().await;
        }
    }

    pub(crate) fn close(&self, reason: CloseReason) {
        if self.close_reason.borrow().is_some() {
            return;
        }
        if reason.is_peer_fault() {
            log::warn!("closing the connection to {}: {reason}", self.peer.label);
        } else {
            log::info!("connection to {} closed: {reason}", self.peer.label);
        }
        if let Some(hook) = &self.on_close {
            hook(self.peer.addr, &reason);
        }
        *self.close_reason.borrow_mut() = Some(reason);
        let waiting = self.pending.borrow_mut().drain();
        for w in waiting {
            w.tx.send(Err(self.closed_error(w.kind)));
        }
        self.wake_reaper.notify_all();
        let mut out = self.outbox.borrow_mut();
        out.queue.clear();
        out.bytes_queued = 0;
        drop(out);
        if let Err(e) = self.socket.shutdown(Shutdown::Both) {
            log::debug!("shutdown of the socket to {}: {e}", self.peer.label);
        }
        self.wake_writer.notify_all();
        self.room.notify_all();
        self.closed.notify_all();
    }

    fn is_closed(&self) -> bool {
        self.close_reason.borrow().is_some()
    }

    fn timeout_error(&self, kind: u16, after: Duration) -> NetError {
        NetError::Timeout {
            peer: self.peer.label.to_string(),
            kind,
            after,
        }
    }

    fn count(&self, f: impl FnOnce(&mut ConnStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// Hands a received frame to whoever waits for it.
    fn dispatch(self: &Rc<Self>, frame: Frame) -> Result<(), CloseReason> {
        let bytes = (HEADER_LEN + frame.body.len()) as u64;
        self.count(|s| {
            s.frames_received += 1;
            s.bytes_received += bytes;
        });
        let h = frame.header;
        if h.frame_type.is_response() {
            if h.kind == KIND_HANDSHAKE {
                let (_, message) = crate::rpc::parse_error_body(&frame.body);
                return Err(CloseReason::Rejected(message));
            }
            self.complete(frame);
            return Ok(());
        }
        if h.kind == KIND_HANDSHAKE {
            return Err(CloseReason::Protocol(
                "a handshake after the handshake".into(),
            ));
        }
        let Some(handler) = self.router.get(h.kind) else {
            return Err(CloseReason::UnknownKind(h.kind));
        };
        let responder = (h.frame_type == FrameType::Request).then(|| {
            let sink: std::rc::Weak<ConnInner> = Rc::downgrade(self);
            Responder::new(sink, self.peer.label.clone(), &h)
        });
        let incoming = Incoming {
            frame,
            from: Origin {
                node_id: self.peer.node_id,
                addr: self.peer.addr,
                privilege: self.peer.privilege,
            },
            responder,
        };
        let run = std::panic::AssertUnwindSafe(|| handler(incoming));
        std::panic::catch_unwind(run).map_err(|_| {
            log::error!(
                "the handler of kind {} panicked on a frame from {}",
                h.kind,
                self.peer.label
            );
            CloseReason::HandlerPanicked(h.kind)
        })
    }

    fn complete(&self, frame: Frame) {
        let h = frame.header;
        let Some(crate::rpc::Waiter { kind, tx, .. }) =
            self.pending.borrow_mut().take(h.request_id)
        else {
            // Its caller gave up (timeout) before the answer came.
            log::debug!("late response {} from {}", h.request_id, self.peer.label);
            return;
        };
        let reply: Reply = if h.frame_type == FrameType::ErrorResponse {
            let (code, message) = crate::rpc::parse_error_body(&frame.body);
            Err(NetError::Remote {
                peer: self.peer.label.to_string(),
                kind,
                code,
                message,
            })
        } else {
            Ok(frame)
        };
        tx.send(reply);
    }
}

/// Fails the requests whose deadline passed with [`NetError::Timeout`]. It
/// sleeps until the earliest deadline pending (found by a walk over the
/// pending requests, once per wake-up) or until a request with an earlier
/// one registers; with nothing pending it sleeps until a request comes.
async fn reap_loop(inner: Rc<ConnInner>) {
    loop {
        let woken = inner.wake_reaper.wait();
        if inner.is_closed() {
            return;
        }
        let (expired, next) = inner.pending.borrow_mut().expire(Instant::now());
        for w in expired {
            w.tx.send(Err(inner.timeout_error(w.kind, w.timeout)));
        }
        inner.reap_at.set(next);
        match next {
            None => woken.await,
            // Woken early or at the deadline: either way, look again.
            Some(at) => drop(sampan_fiber::timeout_at(at, woken).await),
        }
    }
}

async fn read_loop(inner: Rc<ConnInner>, socket: LinkRead, mut rb: ReadBuf) {
    let decoder = inner.config.decoder;
    loop {
        loop {
            match rb.take_frame(&decoder) {
                Ok(Some(_)) if inner.is_closed() => return,
                Ok(Some(frame)) => {
                    if let Err(reason) = inner.dispatch(frame) {
                        inner.close(reason);
                        return;
                    }
                    yield_if_needed().await;
                }
                Ok(None) => break,
                Err(e) => {
                    inner.close(CloseReason::BadFrame(e));
                    return;
                }
            }
        }
        if inner.is_closed() {
            return;
        }
        let want = rb.wanted(&decoder);
        match socket.read(rb.spare(want)).await {
            Ok(0) => {
                let bytes = rb.filled().len();
                let reason = if bytes == 0 {
                    CloseReason::PeerClosed
                } else {
                    CloseReason::Truncated { bytes }
                };
                inner.close(reason);
                return;
            }
            Ok(n) => rb.advance(n),
            Err(e) => {
                inner.close(CloseReason::Io(e.to_string()));
                return;
            }
        }
    }
}

async fn write_loop(inner: Rc<ConnInner>, socket: LinkWrite) {
    let mut batch: Vec<OutFrame> = Vec::new();
    loop {
        if inner.is_closed() {
            return;
        }
        batch.extend(inner.outbox.borrow_mut().queue.drain(..));
        // Under TLS the reader may leave output (an alert, a key update's
        // answer) with nothing queued: it goes out with an empty batch.
        if batch.is_empty() && !socket.wants_write() {
            // Registered after the queue was found empty, with nothing run
            // in between: a frame queued from now on wakes it.
            inner.wake_writer.wait().await;
            continue;
        }
        let result = write_batch(&socket, &batch).await;
        let bytes: usize = batch.iter().map(OutFrame::bytes).sum();
        let frames = batch.len() as u64;
        batch.clear();
        if let Err(e) = result {
            inner.close(CloseReason::Io(e.to_string()));
            return;
        }
        inner.count(|s| {
            s.frames_sent += frames;
            s.write_batches += 1;
            s.bytes_sent += bytes as u64;
        });
        let mut out = inner.outbox.borrow_mut();
        out.bytes_queued = out.bytes_queued.saturating_sub(bytes);
        drop(out);
        inner.room.notify_all();
    }
}

/// Writes a batch of frames with vectored writes: each header and each body
/// piece is its own buffer.
async fn write_batch(socket: &LinkWrite, batch: &[OutFrame]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(batch.len() * 2);
    for frame in batch {
        slices.push(IoSlice::new(&frame.header));
        slices.extend(
            frame
                .body
                .pieces()
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| IoSlice::new(p)),
        );
    }
    socket.write_all_vectored(&mut slices).await
}

impl ResponseSink for ConnInner {
    fn enqueue_response(
        &self,
        frame_type: FrameType,
        kind: u16,
        group_id: u64,
        request_id: u64,
        body: Body,
    ) -> Result<(), NetError> {
        let frame = self.frame(frame_type, kind, group_id, request_id, body)?;
        self.try_enqueue(frame, kind, false)
    }
}
