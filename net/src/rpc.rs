//! Requests and responses: the handlers a shard registers by frame kind
//! ([`Router`]), what a handler gets ([`Incoming`]) and how it answers
//! ([`Responder`]), and the table that matches responses to requests.
//!
//! Handlers are plain synchronous closures called on the connection's
//! reader fiber: they must not block, and typically hand the frame to the
//! group's fiber through a channel (`try_send`), keeping the [`Responder`]
//! to answer later (after an fsync, say). The reader never waits on a
//! handler, so two nodes sending to each other cannot deadlock.

use crate::auth::Privilege;
use crate::error::NetError;
use crate::frame::{Body, Frame, FrameHeader, FrameType, KIND_USER_MIN};
use bytes::{BufMut, Bytes, BytesMut};
use sampan_fiber::OneshotSender;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

/// Error code sent when a handler drops a [`Responder`] without answering.
pub const ERROR_CODE_NO_RESPONSE: u16 = 1;
/// Error code for an error the application reports (free text).
pub const ERROR_CODE_APPLICATION: u16 = 2;
/// Longest error message sent in an error response, in bytes.
pub const ERROR_MESSAGE_BYTES_MAX: usize = 1024;

/// A handler for incoming frames of one kind.
pub type Handler = Rc<dyn Fn(Incoming)>;

/// The handlers of a shard (or of one listener), by frame kind. Clones share
/// the same table. Shard-local.
#[derive(Clone, Default)]
pub struct Router {
    handlers: Rc<RefCell<HashMap<u16, Handler>>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kinds: Vec<u16> = self.handlers.borrow().keys().copied().collect();
        kinds.sort_unstable();
        f.debug_struct("Router").field("kinds", &kinds).finish()
    }
}

impl Router {
    /// An empty router: every kind is unknown (and closes the connection).
    pub fn new() -> Router {
        Router::default()
    }

    /// Registers `handler` for `kind` (at least [`KIND_USER_MIN`], not yet
    /// registered).
    pub fn register(
        &self,
        kind: u16,
        handler: impl Fn(Incoming) + 'static,
    ) -> Result<(), NetError> {
        check_user_kind(kind)?;
        let mut handlers = self.handlers.borrow_mut();
        if handlers.contains_key(&kind) {
            return Err(NetError::InvalidKind {
                kind,
                reason: "a handler is registered for it already",
            });
        }
        handlers.insert(kind, Rc::new(handler));
        Ok(())
    }

    /// Removes the handler of `kind`; frames of that kind close their
    /// connection from now on.
    pub fn unregister(&self, kind: u16) -> bool {
        self.handlers.borrow_mut().remove(&kind).is_some()
    }

    /// The handler of `kind`, if any.
    pub(crate) fn get(&self, kind: u16) -> Option<Handler> {
        self.handlers.borrow().get(&kind).cloned()
    }
}

/// Refuses kinds reserved for the transport.
pub(crate) fn check_user_kind(kind: u16) -> Result<(), NetError> {
    if kind < KIND_USER_MIN {
        return Err(NetError::InvalidKind {
            kind,
            reason: "kinds below 16 are reserved for the transport",
        });
    }
    Ok(())
}

/// Who sent an incoming frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The sender's node id (a client id for clients), from the handshake.
    pub node_id: u64,
    /// The sender's address.
    pub addr: SocketAddr,
    /// What the sender proved it may do, in the handshake.
    pub privilege: Privilege,
}

/// A frame handed to a handler.
#[derive(Debug)]
pub struct Incoming {
    /// The frame: header fields and body (a slice of the read buffer).
    pub frame: Frame,
    /// Who sent it.
    pub from: Origin,
    /// How to answer, for requests (`None` for one-way frames).
    pub responder: Option<Responder>,
}

/// Where a [`Responder`] queues its answer: the connection the request
/// came on (implemented there, so this module needs nothing of it).
pub(crate) trait ResponseSink {
    /// Queues a response frame now, outside the send budget.
    fn enqueue_response(
        &self,
        frame_type: FrameType,
        kind: u16,
        group_id: u64,
        request_id: u64,
        body: Body,
    ) -> Result<(), NetError>;
}

/// Answers one request. Dropping it unanswered sends an error response
/// ([`ERROR_CODE_NO_RESPONSE`]), so the requester never waits for its
/// timeout because a handler forgot.
#[derive(Debug)]
pub struct Responder {
    conn: Weak<dyn ResponseSink>,
    peer: Rc<str>,
    kind: u16,
    group_id: u64,
    request_id: u64,
    answered: bool,
}

impl Responder {
    pub(crate) fn new(conn: Weak<dyn ResponseSink>, peer: Rc<str>, header: &FrameHeader) -> Self {
        Responder {
            conn,
            peer,
            kind: header.kind,
            group_id: header.group_id,
            request_id: header.request_id,
            answered: false,
        }
    }

    /// The request's kind.
    pub fn kind(&self) -> u16 {
        self.kind
    }

    /// Sends a successful response. Responses are queued at once, outside
    /// the send budget (they are bounded by the peer's requests); fails if
    /// the connection closed meanwhile or the body is too large.
    pub fn respond(mut self, body: impl Into<Body>) -> Result<(), NetError> {
        self.answered = true;
        self.send(FrameType::Response, body.into())
    }

    /// Sends an error response with an application error code and message.
    pub fn respond_error(mut self, code: u16, message: &str) -> Result<(), NetError> {
        self.answered = true;
        self.send(FrameType::ErrorResponse, error_body(code, message))
    }

    fn send(&self, frame_type: FrameType, body: Body) -> Result<(), NetError> {
        let Some(conn) = self.conn.upgrade() else {
            return Err(NetError::ConnectionClosed {
                peer: self.peer.to_string(),
                kind: self.kind,
                reason: "the connection is gone".into(),
            });
        };
        conn.enqueue_response(frame_type, self.kind, self.group_id, self.request_id, body)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            let body = error_body(ERROR_CODE_NO_RESPONSE, "the handler dropped the request");
            // The connection may be gone: nobody waits for this answer then.
            let _ = self.send(FrameType::ErrorResponse, body);
        }
    }
}

/// The body of an error response: code (u16 LE), then a UTF-8 message.
pub(crate) fn error_body(code: u16, message: &str) -> Body {
    let mut end = message.len().min(ERROR_MESSAGE_BYTES_MAX);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut b = BytesMut::with_capacity(2 + end);
    b.put_u16_le(code);
    b.put_slice(&message.as_bytes()[..end]);
    Body::from(b.freeze())
}

/// Reads an error response's body (total: a short body gives code 0).
pub(crate) fn parse_error_body(body: &Bytes) -> (u16, String) {
    if body.len() < 2 {
        return (0, String::from_utf8_lossy(body).into_owned());
    }
    let code = u16::from_le_bytes([body[0], body[1]]);
    (code, String::from_utf8_lossy(&body[2..]).into_owned())
}

/// What a waiting request gets: the response frame, or why there is none.
pub(crate) type Reply = Result<Frame, NetError>;

/// A request waiting for its answer.
pub(crate) struct Waiter {
    pub(crate) kind: u16,
    pub(crate) tx: OneshotSender<Reply>,
    /// When it times out, and the timeout it was given.
    pub(crate) deadline: Instant,
    pub(crate) timeout: Duration,
}

/// Requests sent on one connection and not yet answered, with their
/// deadlines: one fiber per connection fails the requests whose deadline
/// passed (see `connection::reap_loop`), so a request arms no timer of its
/// own (a timer per request was a tenth of a busy client's CPU).
#[derive(Default)]
pub(crate) struct Pending {
    next_id: u64,
    waiting: sampan_fiber::IdMap<Waiter>,
}

impl Pending {
    /// Registers a request of `kind` that times out `timeout` after `now`;
    /// returns its id and its deadline.
    pub(crate) fn register(
        &mut self,
        kind: u16,
        tx: OneshotSender<Reply>,
        now: Instant,
        timeout: Duration,
    ) -> (u64, Instant) {
        // Ids start at 1: 0 marks one-way frames and the handshake.
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let id = self.next_id;
        // A timeout too large to add is as good as none.
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
        self.waiting.insert(
            id,
            Waiter {
                kind,
                tx,
                deadline,
                timeout,
            },
        );
        (id, deadline)
    }

    /// Takes the waiter of `id` (none if it timed out already).
    pub(crate) fn take(&mut self, id: u64) -> Option<Waiter> {
        self.waiting.remove(&id)
    }

    /// Takes every waiter (the connection closed).
    pub(crate) fn drain(&mut self) -> Vec<Waiter> {
        self.waiting.drain().map(|(_, w)| w).collect()
    }

    /// Takes the waiters whose deadline is not after `now`; returns them and
    /// the earliest deadline of the rest.
    pub(crate) fn expire(&mut self, now: Instant) -> (Vec<Waiter>, Option<Instant>) {
        let mut next: Option<Instant> = None;
        let mut due = Vec::new();
        for (&id, w) in &self.waiting {
            if w.deadline <= now {
                due.push(id);
            } else if next.is_none_or(|n| w.deadline < n) {
                next = Some(w.deadline);
            }
        }
        let expired = due
            .iter()
            .filter_map(|id| self.waiting.remove(id))
            .collect();
        (expired, next)
    }

    /// Requests waiting.
    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_round_trip_and_are_bounded() {
        let b = error_body(7, "nope").to_bytes();
        assert_eq!(parse_error_body(&b), (7, "nope".into()));
        let long = "é".repeat(ERROR_MESSAGE_BYTES_MAX);
        let b = error_body(2, &long).to_bytes();
        assert!(b.len() <= 2 + ERROR_MESSAGE_BYTES_MAX);
        assert_eq!(parse_error_body(&Bytes::from_static(b"x")).0, 0);
    }

    #[test]
    fn expiry_takes_the_due_requests_and_names_the_next_deadline() {
        let mut p = Pending::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let (a, _) = p.register(20, sampan_fiber::oneshot().0, t0, ms(10));
        let (b, db) = p.register(21, sampan_fiber::oneshot().0, t0, ms(30));
        let (c, dc) = p.register(22, sampan_fiber::oneshot().0, t0, ms(20));
        assert_eq!(p.expire(t0 + ms(5)).0.len(), 0);
        let (due, next) = p.expire(t0 + ms(10));
        assert_eq!(due.iter().map(|w| w.kind).collect::<Vec<_>>(), vec![20]);
        assert_eq!(next, Some(dc));
        assert!(p.take(a).is_none(), "an expired request is gone");
        assert!(p.take(c).is_some());
        assert_eq!(
            p.expire(t0 + ms(10)).1,
            Some(db),
            "answered requests leave the count"
        );
        assert!(p.take(b).is_some());
        let (due, next) = p.expire(t0 + ms(40));
        assert!(due.is_empty() && next.is_none());
    }

    #[test]
    fn reserved_and_duplicate_kinds_are_refused() {
        let r = Router::new();
        assert!(r.register(3, |_| {}).is_err());
        r.register(16, |_| {}).expect("free kind");
        assert!(r.register(16, |_| {}).is_err());
        assert!(r.unregister(16));
        assert!(r.get(16).is_none());
    }
}
