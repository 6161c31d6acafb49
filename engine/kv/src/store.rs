//! The KV state: an ordered map of keys to versioned values with optional
//! expiry, the exactly-once session table, and the expiry index the leader
//! scans. Applying a command is deterministic: it depends only on the
//! command (with the leader's timestamp) and the state.

use super::session::{Admission, Sessions};
use super::value::{Entry, Value};
use crate::key::Key;
use bytes::Bytes;
use imbl::OrdMap;
use sampan_proto::kv::{
    Item, KvAnswer, KvCommand, KvFailure, KvQuery, KvRequest, KvResult, PutCondition,
    QUERY_KEYS_MAX, ScanPage, ScanRange, Ttl,
};
use std::collections::BTreeSet;
use std::ops::Bound;

/// Settings that every replica of a group must share (they shape the state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvConfig {
    /// Sessions idle this long (by leader time) are dropped.
    pub session_idle_ms: u64,
    /// Results remembered per session.
    pub session_results_max: usize,
    /// Idle sessions are swept every this many applied commands.
    pub session_sweep_every: u64,
    /// A snapshot of at most this many keys copies its entries out of the
    /// frozen map first (about 90 bytes per key, no value bytes), so the
    /// map stops sharing nodes with the live one within milliseconds;
    /// larger ones are read from the frozen map, and the live map's writes
    /// copy the nodes they touch until the snapshot is written.
    pub snapshot_flatten_keys_max: usize,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            session_idle_ms: 10 * 60 * 1000,
            session_results_max: 1024,
            session_sweep_every: 4096,
            snapshot_flatten_keys_max: 4_000_000,
        }
    }
}

/// The replicated KV state of one group.
#[derive(Debug, Clone, Default)]
pub struct KvStore {
    pub(crate) map: OrdMap<Key, Entry>,
    pub(crate) sessions: Sessions,
    /// (expire_at_ms, key) of every key with a TTL; derived, rebuilt on
    /// restore, never snapshotted.
    expiry: BTreeSet<(u64, Bytes)>,
    pub(crate) index_applied: u64,
    pub(crate) config: KvConfig,
}

impl KvStore {
    /// Answers `query` at wall-clock `now_ms`.
    pub fn answer(&self, query: &KvQuery, now_ms: u64) -> KvAnswer {
        match query {
            KvQuery::Get(keys) => KvAnswer::Values {
                items: keys.iter().map(|k| self.get(k, now_ms)).collect(),
                at_ms: now_ms,
            },
            KvQuery::Scan {
                range,
                after,
                limit,
            } => {
                let limit = (*limit as usize).clamp(1, QUERY_KEYS_MAX);
                let page = self.scan(range, after.as_ref(), limit, now_ms);
                KvAnswer::Page {
                    items: page.items,
                    next: page.next,
                }
            }
            KvQuery::Len => KvAnswer::Count(self.len() as u64),
            KvQuery::Data(q) => KvAnswer::Reply(self.answer_data(q, now_ms)),
        }
    }

    /// An empty store.
    pub fn new(config: KvConfig) -> KvStore {
        KvStore {
            config,
            ..KvStore::default()
        }
    }

    /// Builds a store from restored parts and re-derives the expiry index.
    pub(crate) fn from_parts(
        map: OrdMap<Key, Entry>,
        sessions: Sessions,
        index_applied: u64,
        config: KvConfig,
    ) -> KvStore {
        let expiry = map
            .iter()
            .filter_map(|(k, it)| it.expire_at_ms.map(|t| (t, k.to_bytes())))
            .collect();
        KvStore {
            map,
            sessions,
            expiry,
            index_applied,
            config,
        }
    }

    /// The index of the last applied command.
    pub fn index_applied(&self) -> u64 {
        self.index_applied
    }

    /// Keys stored, counting expired ones not yet removed.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The live sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The settings the store was made with.
    pub fn config(&self) -> &KvConfig {
        &self.config
    }

    /// Records that the entry at `index` applied without touching the state
    /// (a command that did not decode).
    pub fn skip(&mut self, index: u64) {
        assert!(
            index > self.index_applied,
            "skip out of order: {index} after {}",
            self.index_applied
        );
        self.index_applied = index;
    }

    /// Applies the command at log `index` (which must follow the last one)
    /// and returns its result. Retries within a session return the first
    /// result without applying again.
    pub fn apply(&mut self, index: u64, req: &KvRequest) -> KvResult {
        assert!(
            index > self.index_applied,
            "apply out of order: index {index} after {}",
            self.index_applied
        );
        self.index_applied = index;
        if self.config.session_sweep_every > 0
            && index.is_multiple_of(self.config.session_sweep_every)
        {
            let idle = self.config.session_idle_ms;
            self.sessions.expire_idle(req.time_ms, idle);
        }
        if req.client_id != 0 {
            let admission =
                self.sessions
                    .admit(req.client_id, req.seq, req.acked_below, req.time_ms);
            if let Admission::Answer(r) = admission {
                return r;
            }
        }
        let result = match req.validate() {
            Ok(()) => self.execute(index, req.time_ms, &req.command),
            Err(f) => KvResult::Failed(f),
        };
        if req.client_id != 0 {
            let max = self.config.session_results_max;
            self.sessions.record(req.client_id, req.seq, &result, max);
        }
        result
    }

    fn execute(&mut self, index: u64, now: u64, cmd: &KvCommand) -> KvResult {
        match cmd {
            KvCommand::Put {
                key,
                value,
                ttl,
                condition,
                return_old,
            } => self.put(index, now, key, value, *ttl, *condition, *return_old),
            KvCommand::PutMany { pairs, ttl } => {
                for (k, v) in pairs {
                    self.put(index, now, k, v, *ttl, PutCondition::Always, false);
                }
                KvResult::Count {
                    count: pairs.len() as u64,
                    old: None,
                }
            }
            KvCommand::Remove { keys, return_old } => {
                if *return_old
                    && let Some(first) = keys.first()
                    && self.live(first, now).is_some_and(|e| e.str().is_none())
                {
                    return KvResult::Failed(KvFailure::WrongType);
                }
                let mut count = 0;
                let mut old = None;
                for (i, k) in keys.iter().enumerate() {
                    if let Some(it) = self.remove_live(k, now) {
                        count += 1;
                        if i == 0 && *return_old {
                            old = it.str().cloned();
                        }
                    }
                }
                KvResult::Count { count, old }
            }
            KvCommand::CompareAndSet { key, expected, new } => {
                self.compare_and_set(index, now, key, expected.as_ref(), new.as_ref())
            }
            KvCommand::Increment { key, delta } => self.increment(index, now, key, *delta),
            KvCommand::Append { key, suffix } => self.append(index, now, key, suffix),
            KvCommand::SetTtl { key, ttl } => self.set_ttl(index, now, key, *ttl),
            KvCommand::Expire { key, version } => self.expire(now, key, *version),
            KvCommand::Flush => {
                let count = self.map.len() as u64;
                self.map = OrdMap::new();
                self.expiry.clear();
                KvResult::Count { count, old: None }
            }
            KvCommand::Batch(cmds) => {
                KvResult::Batch(cmds.iter().map(|c| self.execute(index, now, c)).collect())
            }
            KvCommand::Data(d) => KvResult::Reply(self.apply_data(index, now, d)),
            KvCommand::Read(q) => KvResult::Answer(self.answer(q, now)),
            KvCommand::Transaction { watch, commands } => {
                // A watched key changed if its live version is not the one
                // seen (a write, a delete, a creation or an expiry).
                let changed = watch
                    .iter()
                    .any(|(k, seen)| self.live(k, now).map(|e| e.version) != *seen);
                if changed {
                    KvResult::Aborted
                } else {
                    KvResult::Batch(
                        commands
                            .iter()
                            .map(|c| self.execute(index, now, c))
                            .collect(),
                    )
                }
            }
        }
    }

    /// The live entry at `key`, if any (expired entries are treated as
    /// gone).
    pub(crate) fn live(&self, key: &[u8], now: u64) -> Option<&Entry> {
        self.map.get(key).filter(|it| !it.expired_at(now))
    }

    /// Removes `key` whatever its state; returns its item if it was live at
    /// `now`.
    pub(crate) fn remove_live(&mut self, key: &[u8], now: u64) -> Option<Entry> {
        let it = self.map.remove(key)?;
        if let Some(t) = it.expire_at_ms {
            self.expiry.remove(&(t, Bytes::copy_from_slice(key)));
        }
        (!it.expired_at(now)).then_some(it)
    }

    /// Stores `value` at `key`, copying both out of the log's buffer so the
    /// store never pins a segment or a network buffer.
    fn store(&mut self, index: u64, key: &[u8], value: Bytes, expire_at_ms: Option<u64>) {
        self.store_value(index, key, Value::Str(value), expire_at_ms);
    }

    /// Stores any value at `key` (whose bytes the caller already copied
    /// out of the log's buffer), replacing what was there.
    pub(crate) fn store_value(
        &mut self,
        index: u64,
        key: &[u8],
        value: Value,
        expire_at_ms: Option<u64>,
    ) {
        let deadline = expire_at_ms.map(|t| (t, Bytes::copy_from_slice(key)));
        // One walk down the tree: the replaced entry comes back from the
        // insert, with the deadline to take out of the expiry queue.
        let old = self.map.insert(
            Key::new(key),
            Entry {
                value,
                version: index,
                expire_at_ms,
            },
        );
        if let Some(t) = old.and_then(|old| old.expire_at_ms) {
            self.expiry.remove(&(t, Bytes::copy_from_slice(key)));
        }
        if let Some(entry) = deadline {
            self.expiry.insert(entry);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn put(
        &mut self,
        index: u64,
        now: u64,
        key: &Bytes,
        value: &Bytes,
        ttl: Ttl,
        condition: PutCondition,
        return_old: bool,
    ) -> KvResult {
        // A plain SET needs nothing of the old entry: skip the lookup, and
        // the insert is the only walk down the tree.
        let needs_old = return_old || condition != PutCondition::Always || matches!(ttl, Ttl::Keep);
        let old = if needs_old {
            self.live(key, now).map(Entry::item)
        } else {
            None
        };
        if return_old && old.as_ref().is_some_and(|it| it.as_str().is_none()) {
            return KvResult::Failed(KvFailure::WrongType);
        }
        let write = match condition {
            PutCondition::Always => true,
            PutCondition::IfAbsent => old.is_none(),
            PutCondition::IfPresent => old.is_some(),
        };
        if write {
            let expire = expire_at(ttl, now, old.as_ref().and_then(|it| it.expire_at_ms));
            if expire.is_some_and(|t| t <= now) {
                // A deadline already past: the write leaves nothing behind.
                self.remove_live(key, now);
            } else {
                self.store(index, key, Bytes::copy_from_slice(value), expire);
            }
        }
        KvResult::Put {
            written: write,
            old: if return_old {
                old.map(|it| it.value)
            } else {
                None
            },
        }
    }

    fn compare_and_set(
        &mut self,
        index: u64,
        now: u64,
        key: &Bytes,
        expected: Option<&Bytes>,
        new: Option<&Bytes>,
    ) -> KvResult {
        let current = match self.live(key, now) {
            None => None,
            Some(e) => match e.str() {
                Some(b) => Some(b),
                // A collection is never equal to an expected string.
                None => return KvResult::Flag(false),
            },
        };
        if current != expected {
            return KvResult::Flag(false);
        }
        match new {
            Some(v) => {
                let keep = self.live(key, now).and_then(|it| it.expire_at_ms);
                self.store(index, key, Bytes::copy_from_slice(v), keep);
            }
            None => {
                self.remove_live(key, now);
            }
        }
        KvResult::Flag(true)
    }

    fn increment(&mut self, index: u64, now: u64, key: &Bytes, delta: i64) -> KvResult {
        let (current, expire) = match self.live(key, now) {
            None => (0, None),
            Some(it) => match it.str().map(|b| parse_i64(b)) {
                Some(Some(v)) => (v, it.expire_at_ms),
                Some(None) => return KvResult::Failed(KvFailure::NotAnInteger),
                None => return KvResult::Failed(KvFailure::WrongType),
            },
        };
        let Some(next) = current.checked_add(delta) else {
            return KvResult::Failed(KvFailure::Overflow);
        };
        self.store(index, key, Bytes::from(next.to_string()), expire);
        KvResult::Int(next)
    }

    fn append(&mut self, index: u64, now: u64, key: &Bytes, suffix: &Bytes) -> KvResult {
        let (mut value, expire) = match self.live(key, now) {
            Some(it) => match it.str() {
                Some(b) => (b.to_vec(), it.expire_at_ms),
                None => return KvResult::Failed(KvFailure::WrongType),
            },
            None => (Vec::new(), None),
        };
        value.extend_from_slice(suffix);
        let len = value.len() as u64;
        self.store(index, key, Bytes::from(value), expire);
        KvResult::Len(len)
    }

    fn set_ttl(&mut self, index: u64, now: u64, key: &Bytes, ttl: Ttl) -> KvResult {
        let Some(it) = self.live(key, now).cloned() else {
            return KvResult::Flag(false);
        };
        if ttl == Ttl::Persist && it.expire_at_ms.is_none() {
            return KvResult::Flag(false);
        }
        match expire_at(ttl, now, it.expire_at_ms) {
            Some(t) if t <= now => {
                self.remove_live(key, now);
            }
            expire => self.store_value(index, key, it.value, expire),
        }
        KvResult::Flag(true)
    }

    fn expire(&mut self, now: u64, key: &Bytes, version: u64) -> KvResult {
        let due = self
            .map
            .get(&key[..])
            .is_some_and(|it| it.version == version && it.expired_at(now));
        if due {
            self.remove_live(key, 0);
        }
        KvResult::Flag(due)
    }

    /// The live item at `key` at time `now_ms` (an expired key reads as
    /// absent even before its removal is applied): a string's bytes, or a
    /// collection's kind.
    pub fn get(&self, key: &[u8], now_ms: u64) -> Option<Item> {
        self.live(key, now_ms).map(Entry::item)
    }

    /// Live keys in `range` after `after` (exclusive), at most `limit`.
    pub fn scan(
        &self,
        range: &ScanRange,
        after: Option<&Bytes>,
        limit: usize,
        now_ms: u64,
    ) -> ScanPage {
        let (lower, end) = match range {
            ScanRange::Prefix(p) => (p.clone(), None),
            ScanRange::Range { start, end } => (start.clone(), end.clone()),
        };
        let start: Bound<&[u8]> = match after {
            Some(a) if *a >= lower => Bound::Excluded(a),
            _ => Bound::Included(&lower),
        };
        let in_range = |k: &[u8]| match range {
            ScanRange::Prefix(p) => k.starts_with(p),
            ScanRange::Range { .. } => end.as_ref().is_none_or(|e| k < &e[..]),
        };
        let mut items = Vec::new();
        let mut next = None;
        for (k, it) in self.map.range::<_, [u8]>((start, Bound::Unbounded)) {
            if !in_range(k) {
                break;
            }
            if it.expired_at(now_ms) {
                continue;
            }
            if items.len() == limit.max(1) {
                next = items.last().map(|(k, _): &(Bytes, Item)| k.clone());
                break;
            }
            items.push((k.to_bytes(), it.item()));
        }
        ScanPage { items, next }
    }

    /// Keys whose TTL passed at `now_ms`, with the version that expired, at
    /// most `limit`, earliest first: what the leader proposes as
    /// [`KvCommand::Expire`].
    pub fn due_expirations(&self, now_ms: u64, limit: usize) -> Vec<(Bytes, u64)> {
        self.expiry
            .iter()
            .take_while(|(t, _)| *t <= now_ms)
            .filter_map(|(_, k)| self.map.get(&k[..]).map(|it| (k.clone(), it.version)))
            .take(limit)
            .collect()
    }

    /// The earliest pending expiry, for the leader's timer.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.expiry.first().map(|(t, _)| *t)
    }
}

/// The deadline a TTL gives, at leader time `now`, for a key whose
/// previous deadline is `old`.
pub(crate) fn expire_at(ttl: Ttl, now: u64, old: Option<u64>) -> Option<u64> {
    match ttl {
        Ttl::Persist => None,
        Ttl::AfterMs(ms) => Some(now.saturating_add(ms)),
        Ttl::AtMs(t) => Some(t),
        Ttl::Keep => old,
    }
}

/// Parses a decimal i64 as Redis does: optional '-', digits, no spaces.
pub(crate) fn parse_i64(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    std::str::from_utf8(b)
        .ok()?
        .parse::<i64>()
        .ok()
        .filter(|_| b[0] != b'+')
}
