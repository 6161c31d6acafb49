//! Exactly-once sessions on the client side: each write gets a session id
//! and a sequence number, kept across its retries, so the state machine
//! applies it once and answers a retry with the first result (see
//! `kv::session` for the server's half).
//!
//! A group has up to `sessions_per_group_max` sessions ("lanes"), each with
//! a bounded window: the span from its oldest unanswered write to its
//! newest stays below `session_window`, so the servers, which remember a
//! bounded number of results per session, still hold the answer to every
//! write in flight. A write waits for room when every lane is full.

use super::ClientConfig;
use sampan_fiber::Signal;
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A fresh random id, never 0 (0 means "no session" to the server).
pub fn random_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(now.as_nanos());
    h.finish().max(1)
}

/// One session: its id, the next sequence number, the writes in flight.
#[derive(Debug)]
struct Lane {
    id: Cell<u64>,
    seq_next: Cell<u64>,
    in_flight: RefCell<BTreeSet<u64>>,
    used_last: Cell<Instant>,
}

impl Lane {
    fn new() -> Lane {
        Lane {
            id: Cell::new(random_id()),
            seq_next: Cell::new(1),
            in_flight: RefCell::new(BTreeSet::new()),
            used_last: Cell::new(Instant::now()),
        }
    }

    fn oldest_unanswered(&self) -> u64 {
        self.in_flight
            .borrow()
            .first()
            .copied()
            .unwrap_or(self.seq_next.get())
    }

    fn has_room(&self, window: u64) -> bool {
        // Every write in flight is below `seq_next` (a renewal clears them),
        // so this never underflows.
        self.seq_next.get() - self.oldest_unanswered() < window
    }

    /// Starts afresh under a new id when idle so long that the servers may
    /// have dropped the session (a write then would be refused as stale).
    fn renew_if_idle(&self, idle_max: Duration) {
        if self.in_flight.borrow().is_empty() && self.used_last.get().elapsed() >= idle_max {
            self.id.set(random_id());
            self.seq_next.set(1);
        }
    }
}

/// The sessions of one group.
#[derive(Debug, Default)]
struct GroupSessions {
    lanes: RefCell<Vec<Rc<Lane>>>,
    room: Signal,
}

/// Every group's sessions. Shard-local.
#[derive(Debug)]
pub struct Sessions {
    groups: RefCell<sampan_net::IdMap<Rc<GroupSessions>>>,
    window: u64,
    lanes_max: usize,
    renew_idle: Duration,
}

/// A write's place in a session, held while the write is in flight.
/// Dropping it marks the write answered (or given up) and makes room.
#[derive(Debug)]
pub struct Lease {
    group: Rc<GroupSessions>,
    lane: Rc<Lane>,
    /// The session id.
    pub client_id: u64,
    /// The write's sequence number.
    pub seq: u64,
    /// Every answer below this has reached the client.
    pub acked_below: u64,
}

impl Lease {
    /// The servers forgot this session: later writes use a new id. The
    /// old session's other writes still in flight no longer count against
    /// the window (their leases, under the old id, leave the lane alone).
    pub fn renew_session(&self) {
        if self.lane.id.get() == self.client_id {
            self.lane.id.set(random_id());
            self.lane.seq_next.set(1);
            self.lane.in_flight.borrow_mut().clear();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.lane.id.get() == self.client_id {
            self.lane.in_flight.borrow_mut().remove(&self.seq);
        }
        self.lane.used_last.set(Instant::now());
        self.group.room.notify_all();
    }
}

impl Sessions {
    /// Sessions with the limits `cfg` sets.
    pub fn new(cfg: &ClientConfig) -> Sessions {
        Sessions::with_limits(
            cfg.session_window,
            cfg.sessions_per_group_max,
            cfg.session_renew_idle,
        )
    }

    /// Sessions of at most `window` writes in flight each, at most
    /// `lanes_max` per group, renewed after `renew_idle` without use.
    pub fn with_limits(window: u64, lanes_max: usize, renew_idle: Duration) -> Sessions {
        Sessions {
            groups: RefCell::new(sampan_net::IdMap::default()),
            window: window.max(1),
            lanes_max: lanes_max.max(1),
            renew_idle,
        }
    }

    /// Takes the next sequence number of a session of `group` with room,
    /// waiting for room if every session is full (the caller bounds the
    /// wait with its deadline).
    pub async fn lease(&self, group: u64) -> Lease {
        let g = self.groups.borrow_mut().entry(group).or_default().clone();
        loop {
            if let Some(lane) = self.lane_with_room(&g) {
                return take(g, lane);
            }
            // Nothing runs between the look and the registration (no
            // await), so no wake-up is missed; and a lease with room, the
            // usual case, registers no waiter at all.
            g.room.wait().await;
        }
    }

    fn lane_with_room(&self, g: &GroupSessions) -> Option<Rc<Lane>> {
        let mut lanes = g.lanes.borrow_mut();
        for lane in lanes.iter() {
            lane.renew_if_idle(self.renew_idle);
            if lane.has_room(self.window) {
                return Some(lane.clone());
            }
        }
        if lanes.len() < self.lanes_max {
            let lane = Rc::new(Lane::new());
            lanes.push(lane.clone());
            return Some(lane);
        }
        None
    }
}

fn take(group: Rc<GroupSessions>, lane: Rc<Lane>) -> Lease {
    let seq = lane.seq_next.get();
    lane.seq_next.set(seq + 1);
    lane.in_flight.borrow_mut().insert(seq);
    lane.used_last.set(Instant::now());
    let acked_below = lane.oldest_unanswered();
    debug_assert!(
        acked_below <= seq,
        "a write in flight is never acknowledged"
    );
    Lease {
        client_id: lane.id.get(),
        group,
        lane,
        seq,
        acked_below,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(window: u64, lanes: usize) -> Sessions {
        let mut cfg = ClientConfig::new(vec!["127.0.0.1:1".parse().expect("addr")]);
        cfg.session_window = window;
        cfg.sessions_per_group_max = lanes;
        Sessions::new(&cfg)
    }

    fn now<T>(f: impl std::future::Future<Output = T>) -> T {
        futures_lite::future::block_on(f)
    }

    #[test]
    fn sequences_count_up_and_acked_below_trails_the_oldest_in_flight() {
        let s = sessions(8, 1);
        let a = now(s.lease(1));
        let b = now(s.lease(1));
        assert_eq!((a.seq, a.acked_below), (1, 1));
        assert_eq!((b.seq, b.acked_below), (2, 1));
        assert_eq!(a.client_id, b.client_id);
        drop(a);
        let c = now(s.lease(1));
        assert_eq!((c.seq, c.acked_below), (3, 2));
        // Another group: its own numbering.
        let d = now(s.lease(2));
        assert_eq!(d.seq, 1);
    }

    #[test]
    fn a_full_window_opens_another_session_up_to_the_limit() {
        let s = sessions(2, 2);
        let held: Vec<Lease> = (0..4).map(|_| now(s.lease(1))).collect();
        assert_eq!(held[0].client_id, held[1].client_id);
        assert_ne!(held[1].client_id, held[2].client_id);
        let g = s.groups.borrow().get(&1).cloned().expect("group");
        assert!(s.lane_with_room(&g).is_none(), "both sessions full");
        drop(held);
        assert!(s.lane_with_room(&g).is_some());
    }

    /// A session the servers forgot is renewed while other writes of it
    /// are still in flight (seen under faults: the window arithmetic
    /// underflowed, a panic in debug builds and a lane full for ever in
    /// release ones).
    #[test]
    fn renewing_a_session_with_writes_in_flight_leaves_the_lane_usable() {
        let s = sessions(4, 1);
        let held: Vec<Lease> = (0..3).map(|_| now(s.lease(1))).collect();
        let old = held[0].client_id;
        held[2].renew_session();
        let fresh = now(s.lease(1));
        assert_ne!(fresh.client_id, old);
        assert_eq!((fresh.seq, fresh.acked_below), (1, 1));
        // The old session's leases end without touching the new one.
        drop(held);
        let next = now(s.lease(1));
        assert_eq!(
            (next.client_id, next.seq, next.acked_below),
            (fresh.client_id, 2, 1)
        );
        let more: Vec<Lease> = (0..2).map(|_| now(s.lease(1))).collect();
        assert_eq!(more.last().map(|l| l.seq), Some(4));
        let g = s.groups.borrow().get(&1).cloned().expect("group");
        assert!(s.lane_with_room(&g).is_none(), "a window of 4 in flight");
        drop(fresh);
        assert!(s.lane_with_room(&g).is_some());
    }
}
