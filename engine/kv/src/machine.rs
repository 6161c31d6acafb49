//! [`KvMachine`]: the KV store behind the engine's
//! [`StateMachine`](sampan::state_machine::StateMachine) trait.

use super::events::KeyEvents;
use super::snapshot::{KvFrozen, KvRestore};
use super::store::{KvConfig, KvStore};
use bytes::{Bytes, BytesMut};
use sampan::state_machine::{
    Committed, FrozenState, MachineStats, RoleChange, SnapshotInfo, Stamp, StateMachine,
    StateMachineError,
};
use sampan_proto::kv::KvQuery;
use sampan_proto::kv::{KvCommand, KvFailure, KvRequest, KvResult};
use std::collections::HashMap;
use std::sync::Arc;

/// Expirations proposed per call of the TTL manager.
const EXPIRE_BATCH: usize = 256;
/// An expiry proposed this long ago and still not applied (lost to a full
/// queue or a leader change) is proposed again.
const EXPIRE_RETRY_MS: u64 = 1_000;

/// The replicated KV state of one group, as a state machine.
#[derive(Debug)]
pub struct KvMachine {
    store: KvStore,
    restore: Option<(SnapshotInfo, KvRestore)>,
    last_role: Option<RoleChange>,
    /// The TTL manager's expirations in flight, by key: the version
    /// proposed for removal and when (leader only; cleared on role change).
    expiring: HashMap<Bytes, (u64, u64)>,
    /// Where to announce keys that received elements, and this group's id.
    events: Option<(Arc<KeyEvents>, u64)>,
}

/// Announces the keys `command` may have added elements to.
fn publish(events: &KeyEvents, group: u64, command: &KvCommand) {
    match command {
        KvCommand::Data(d) => {
            for k in d.fed_keys() {
                events.publish(group, k);
            }
        }
        KvCommand::Batch(cmds) | KvCommand::Transaction { commands: cmds, .. } => {
            for c in cmds {
                publish(events, group, c);
            }
        }
        _ => {}
    }
}

impl KvMachine {
    /// An empty KV machine.
    pub fn new(config: KvConfig) -> KvMachine {
        KvMachine {
            store: KvStore::new(config),
            restore: None,
            last_role: None,
            expiring: HashMap::new(),
            events: None,
        }
    }

    /// Announces, on `events`, each key of group `group` that a committed
    /// command adds elements to (for the Redis port's blocking pops).
    pub fn with_events(mut self, events: Arc<KeyEvents>, group: u64) -> KvMachine {
        self.events = Some((events, group));
        self
    }

    /// The state, for reads the node serves itself (the Redis port).
    pub fn store(&self) -> &KvStore {
        &self.store
    }

    /// The last role change seen (the TTL manager runs while leader).
    pub fn last_role(&self) -> Option<&RoleChange> {
        self.last_role.as_ref()
    }
}

impl FrozenState for KvFrozen {
    fn index(&self) -> u64 {
        KvFrozen::index(self)
    }

    fn next_chunk(&mut self, bytes_max: usize) -> Option<Bytes> {
        KvFrozen::next_chunk(self, bytes_max)
    }
}

impl StateMachine for KvMachine {
    fn apply(&mut self, batch: &[Committed<'_>], results: &mut Vec<Bytes>) {
        let mut out = BytesMut::with_capacity(16 * batch.len());
        for c in batch {
            // A payload that does not decode fails the same way on every
            // replica: the failure is the result, the state is unchanged.
            let result = match KvRequest::decode(c.payload.clone()) {
                Ok(req) => {
                    if let KvCommand::Expire { key, .. } = &req.command {
                        self.expiring.remove(key);
                    }
                    let result = self.store.apply(c.index, &req);
                    if let Some((events, group)) = &self.events
                        && events.anyone_waiting()
                    {
                        publish(events, *group, &req.command);
                    }
                    result
                }
                Err(e) => {
                    self.store.skip(c.index);
                    KvResult::Failed(KvFailure::Invalid(format!("undecodable command: {e}")))
                }
            };
            result.encode(&mut out);
            results.push(out.split().freeze());
        }
    }

    fn read(&self, query: &Bytes, now_ms: u64) -> Result<Bytes, StateMachineError> {
        let q = KvQuery::decode(query.clone())
            .map_err(|e| StateMachineError::BadQuery(e.to_string()))?;
        Ok(self.store.answer(&q, now_ms).to_bytes())
    }

    fn on_role_change(&mut self, change: &RoleChange) {
        self.last_role = Some(*change);
        // A new leader re-derives every pending expiry from the replicated
        // state; nothing the old term proposed is assumed applied.
        self.expiring.clear();
    }

    fn stats(&self) -> MachineStats {
        MachineStats {
            keys: Some(self.store.len() as u64),
            sessions: Some(self.store.sessions().len() as u64),
        }
    }

    fn stamp(&self) -> Option<Stamp> {
        Some(KvRequest::stamp_time)
    }

    /// The TTL manager (Dongting's): the leader proposes the removal of
    /// each key whose TTL passed, with the version that expired, so a key
    /// rewritten meanwhile is kept; a second removal of the same version
    /// is a no-op, so re-proposing after a leader change is safe.
    fn due_commands(&mut self, now_ms: u64, out: &mut Vec<Bytes>) -> Option<u64> {
        let due = self
            .store
            .due_expirations(now_ms, EXPIRE_BATCH + self.expiring.len());
        let mut waiting = false;
        for (key, version) in due {
            if out.len() >= EXPIRE_BATCH {
                waiting = true;
                break;
            }
            match self.expiring.get(&key) {
                Some((v, at)) if *v == version && now_ms < at + EXPIRE_RETRY_MS => {
                    waiting = true;
                    continue;
                }
                _ => {}
            }
            self.expiring.insert(key.clone(), (version, now_ms));
            out.push(KvRequest::without_session(KvCommand::Expire { key, version }).to_bytes());
        }
        match self.store.next_expiry_ms() {
            // Still due: proposed and in flight, or beyond this batch.
            Some(t) if t <= now_ms || waiting => Some(now_ms + if waiting { 100 } else { 10 }),
            next => next,
        }
    }

    fn applied_through(&mut self, index: u64) {
        if index > self.store.index_applied() {
            self.store.skip(index);
        }
    }

    fn freeze(&mut self) -> Box<dyn FrozenState> {
        Box::new(self.store.freeze())
    }

    fn restore_begin(&mut self, info: SnapshotInfo) -> Result<(), StateMachineError> {
        self.restore = Some((info, KvRestore::new(self.store.config().clone())));
        Ok(())
    }

    fn restore_chunk(&mut self, chunk: Bytes) -> Result<(), StateMachineError> {
        let (info, r) = self.restore.as_mut().ok_or(StateMachineError::NoRestore)?;
        r.push_chunk(chunk)
            .map_err(|e| StateMachineError::BadSnapshot {
                index: info.index,
                reason: e.to_string(),
            })
    }

    fn restore_finish(&mut self) -> Result<(), StateMachineError> {
        let (info, r) = self.restore.take().ok_or(StateMachineError::NoRestore)?;
        let store = r.finish().map_err(|e| StateMachineError::BadSnapshot {
            index: info.index,
            reason: e.to_string(),
        })?;
        if store.index_applied() != info.index {
            return Err(StateMachineError::BadSnapshot {
                index: info.index,
                reason: format!(
                    "holds index {}, meta says {}",
                    store.index_applied(),
                    info.index
                ),
            });
        }
        self.store = store;
        Ok(())
    }

    fn restore_abort(&mut self) {
        self.restore = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KvAnswer, KvCommand};

    fn put(i: u64) -> Bytes {
        KvRequest::without_session(KvCommand::put(format!("k{i}"), format!("v{i}"))).to_bytes()
    }

    /// `payloads` as committed entries at indexes 1, 2, ... of term 1.
    fn committed(payloads: &[Bytes]) -> Vec<Committed<'_>> {
        payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Committed {
                index: i as u64 + 1,
                term: 1,
                payload: p,
            })
            .collect()
    }

    /// Freezes `from` and restores it into `into` under `info`, in chunks
    /// of `chunk` bytes; the result of `restore_finish`.
    fn install(
        from: &mut KvMachine,
        into: &mut KvMachine,
        info: SnapshotInfo,
        chunk: usize,
    ) -> Result<(), StateMachineError> {
        let mut frozen = from.freeze();
        into.restore_begin(info).expect("begin");
        while let Some(c) = frozen.next_chunk(chunk) {
            into.restore_chunk(c).expect("chunk");
        }
        into.restore_finish()
    }

    #[test]
    fn applies_batches_answers_queries_and_installs_snapshots() {
        let mut m = KvMachine::new(KvConfig::default());
        let payloads: Vec<Bytes> = (1..=50).map(put).collect();
        let garbage = Bytes::from_static(b"\xff\x00garbage");
        let mut batch = committed(&payloads);
        batch.push(Committed {
            index: 51,
            term: 1,
            payload: &garbage,
        });
        let mut results = Vec::new();
        m.apply(&batch, &mut results);
        assert_eq!(results.len(), 51, "one result per entry");
        assert!(matches!(
            KvResult::decode(results[50].clone()),
            Ok(KvResult::Failed(KvFailure::Invalid(_)))
        ));
        assert_eq!(m.store().index_applied(), 51);

        let q = KvQuery::Get(vec![Bytes::from("k7"), Bytes::from("nope")]).to_bytes();
        let a = KvAnswer::decode(m.read(&q, 0).expect("read")).expect("answer");
        let KvAnswer::Values { items: v, .. } = a else {
            panic!("values expected")
        };
        assert_eq!(
            v[0].as_ref().map(|it| it.value.clone()),
            Some(Bytes::from("v7"))
        );
        assert!(v[1].is_none());
        assert!(m.read(&Bytes::from_static(b"\x09"), 0).is_err());

        let mut other = KvMachine::new(KvConfig::default());
        install(&mut m, &mut other, SnapshotInfo { index: 51, term: 1 }, 256).expect("finish");
        assert_eq!(other.store().len(), 50);
        assert_eq!(other.store().index_applied(), 51);
        // A snapshot whose meta disagrees with its content is refused, and
        // the live state is kept.
        assert!(
            install(
                &mut m,
                &mut other,
                SnapshotInfo { index: 99, term: 1 },
                4096
            )
            .is_err()
        );
        assert_eq!(other.store().len(), 50);
    }

    /// Found by `sampan-check run`: a snapshot taken right after a new
    /// leader's empty entry (index 52, never a command) was labelled 52
    /// while the store said 51, and every follower refused to install it,
    /// stuck for good.
    #[test]
    fn a_snapshot_after_an_entry_that_is_not_a_command_installs() {
        let mut m = KvMachine::new(KvConfig::default());
        let payloads: Vec<Bytes> = (1..=5).map(put).collect();
        m.apply(&committed(&payloads), &mut Vec::new());
        // The apply fiber passed index 6 (an empty entry) and says so.
        m.applied_through(6);
        let mut other = KvMachine::new(KvConfig::default());
        install(&mut m, &mut other, SnapshotInfo { index: 6, term: 2 }, 256)
            .expect("a snapshot labelled 6 installs");
        assert_eq!(other.store().index_applied(), 6);
        assert_eq!(other.store().len(), 5);
        // Going back is not a thing: an older index changes nothing.
        m.applied_through(3);
        assert_eq!(m.store().index_applied(), 6);
    }
}
