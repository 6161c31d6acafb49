//! The KV TTL manager on three `RaftServer`s: the leader proposes each
//! expiry through the log, so every replica removes the key at the same
//! index — including when the leader changes while expiries are pending —
//! and a key rewritten before its expiry applies is kept.

mod common;

use bytes::Bytes;
use common::{configs, get, leader, start};
use sampan::server::machines;
use sampan::state_machine::{
    Committed, FrozenState, RoleChange, SnapshotInfo, Stamp, StateMachine, StateMachineError,
};
use sampan_kv::{KvCommand, KvConfig, KvMachine, KvRequest, Ttl};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A KV machine that publishes how many keys it physically holds, so the
/// test sees each replica's state (reads go to the leader).
struct Observed {
    kv: KvMachine,
    keys: Arc<AtomicUsize>,
}

impl StateMachine for Observed {
    fn apply(&mut self, batch: &[Committed<'_>], results: &mut Vec<Bytes>) {
        self.kv.apply(batch, results);
        self.keys.store(self.kv.store().len(), Ordering::SeqCst);
    }
    fn read(&self, query: &Bytes, now_ms: u64) -> Result<Bytes, StateMachineError> {
        self.kv.read(query, now_ms)
    }
    fn on_role_change(&mut self, change: &RoleChange) {
        self.kv.on_role_change(change);
    }
    fn stamp(&self) -> Option<Stamp> {
        self.kv.stamp()
    }
    fn due_commands(&mut self, now_ms: u64, out: &mut Vec<Bytes>) -> Option<u64> {
        self.kv.due_commands(now_ms, out)
    }
    fn freeze(&mut self) -> Box<dyn FrozenState> {
        self.kv.freeze()
    }
    fn restore_begin(&mut self, info: SnapshotInfo) -> Result<(), StateMachineError> {
        self.kv.restore_begin(info)
    }
    fn restore_chunk(&mut self, chunk: Bytes) -> Result<(), StateMachineError> {
        self.kv.restore_chunk(chunk)
    }
    fn restore_finish(&mut self) -> Result<(), StateMachineError> {
        self.kv.restore_finish()
    }
    fn restore_abort(&mut self) {
        self.kv.restore_abort();
    }
}

fn put_ttl(key: &str, ttl_ms: u64) -> Bytes {
    KvRequest::without_session(KvCommand::Put {
        key: Bytes::from(key.to_string()),
        value: Bytes::from_static(b"v"),
        ttl: Ttl::AfterMs(ttl_ms),
        condition: sampan_kv::PutCondition::Always,
        return_old: false,
    })
    .to_bytes()
}

/// Waits (bounded) until every counter in `keys` reads `want`.
fn wait_keys(keys: &[&Arc<AtomicUsize>], want: usize) {
    for _ in 0..1_000 {
        if keys.iter().all(|k| k.load(Ordering::SeqCst) == want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let now: Vec<usize> = keys.iter().map(|k| k.load(Ordering::SeqCst)).collect();
    panic!("replicas hold {now:?} keys after 10 s, want {want}");
}

#[test]
fn expiries_are_proposed_by_the_leader_and_survive_a_leader_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::default()).collect();
    let mut servers: Vec<Option<_>> = configs(dir.path(), 1)
        .into_iter()
        .zip(&keys)
        .map(|(c, k)| {
            let k = k.clone();
            let factory = machines(move |_| {
                Box::new(Observed {
                    kv: KvMachine::new(KvConfig::default()),
                    keys: k.clone(),
                })
            });
            Some(start(c, &[1], factory))
        })
        .collect();
    let l = leader(&servers, 1);
    let g = servers[l].as_ref().expect("running").group(1);

    // Round 1: a short TTL and a long one, one leader throughout.
    g.propose_blocking(put_ttl("short", 200)).expect("put");
    g.propose_blocking(put_ttl("long", 3_600_000)).expect("put");
    g.propose_blocking(put_ttl("rewritten", 200)).expect("put");
    g.propose_blocking(KvRequest::without_session(KvCommand::put("rewritten", "kept")).to_bytes())
        .expect("rewrite without a TTL");
    wait_keys(&[&keys[0], &keys[1], &keys[2]], 2);
    assert_eq!(get(&g, "short"), None);
    assert_eq!(get(&g, "long").as_deref(), Some(&b"v"[..]));
    assert_eq!(get(&g, "rewritten").as_deref(), Some(&b"kept"[..]));

    // Round 2: keys expire while the leader that wrote them is gone; the
    // new leader re-derives the pending expiries and proposes them.
    for i in 0..20 {
        g.propose_blocking(put_ttl(&format!("pending-{i}"), 2_000))
            .expect("put");
    }
    let alive: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    wait_keys(&[&keys[alive[0]], &keys[alive[1]]], 22);
    servers[l]
        .take()
        .expect("leader")
        .shutdown()
        .expect("stops");
    let l2 = leader(&servers, 1);
    assert_ne!(l2, l);
    wait_keys(&[&keys[alive[0]], &keys[alive[1]]], 2);
    let g2 = servers[l2].as_ref().expect("running").group(1);
    assert_eq!(get(&g2, "pending-7"), None);
    assert_eq!(get(&g2, "long").as_deref(), Some(&b"v"[..]));
    for s in servers.into_iter().flatten() {
        s.shutdown().expect("stops");
    }
}
