//! Typed values on the store: applying a [`DataCmd`] and answering a
//! [`DataQuery`], with Redis's semantics, edge cases and error texts.
//!
//! A collection that becomes empty is removed with its key, as in Redis.
//! A write keeps the key's deadline; every change sets the key's version
//! to the command's index, so a pending expiry of the old version is void.
//! Randomness (`SPOP`, `SRANDMEMBER`, `HRANDFIELD`, `RANDOMKEY`) comes
//! from a seed in the command or query; for a write it is in the log, so
//! every replica takes the same members.

use super::hash::Hash;
use super::key::Key;
use super::store::{KvStore, expire_at, parse_i64};
use super::value::{Entry, Value};
use super::zset::{ZSet, cmp_entry};
use bytes::Bytes;
use sampan_proto::kv::{
    DataCmd, DataQuery, ExpireCond, LexBound, Reply, ScoreBound, SetOp, ValueKind, ZAddFlags,
    ZRangeBy, ZRangeSpec, format_float, format_score, parse_float,
};
use std::cmp::Ordering;
use std::collections::{BTreeSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

type Outcome = Result<Reply, Reply>;

/// An element of a command, copied for keeping: a clone would share (and
/// first promote, with a header allocation) the buffer the command was
/// decoded into.
fn own(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
}

fn int(n: usize) -> Reply {
    Reply::Int(n as i64)
}

fn bulks<'a>(items: impl IntoIterator<Item = &'a Bytes>) -> Vec<Reply> {
    items.into_iter().map(|b| Reply::Bulk(b.clone())).collect()
}

/// A small deterministic generator (splitmix64) for the seeded choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// `k` distinct indexes below `n`, ascending (`k <= n`).
    fn distinct(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut picked = BTreeSet::new();
        if k * 2 > n {
            // Most of them: pick the ones left out instead (memory in
            // proportion to those, not to the whole collection).
            let mut out = BTreeSet::new();
            while out.len() < n - k {
                out.insert(self.below(n));
            }
            return (0..n).filter(|i| !out.contains(i)).collect();
        }
        while picked.len() < k {
            picked.insert(self.below(n));
        }
        picked.into_iter().collect()
    }
}

/// Redis's index normalisation for `LRANGE`/`GETRANGE`/`ZRANGE` by rank:
/// the inclusive range `start..=stop` of a sequence of `len`, or `None`
/// when it is empty.
fn rank_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    (start <= stop && start < len && stop >= 0).then_some((start as usize, stop as usize))
}

fn score_above_min(score: f64, min: &ScoreBound) -> bool {
    if min.exclusive {
        score > min.value
    } else {
        score >= min.value
    }
}

fn score_below_max(score: f64, max: &ScoreBound) -> bool {
    if max.exclusive {
        score < max.value
    } else {
        score <= max.value
    }
}

fn lex_above_min(m: &[u8], min: &LexBound) -> bool {
    match min {
        LexBound::Min => true,
        LexBound::Max => false,
        LexBound::Inclusive(b) => m >= &b[..],
        LexBound::Exclusive(b) => m > &b[..],
    }
}

fn lex_below_max(m: &[u8], max: &LexBound) -> bool {
    match max {
        LexBound::Min => false,
        LexBound::Max => true,
        LexBound::Inclusive(b) => m <= &b[..],
        LexBound::Exclusive(b) => m < &b[..],
    }
}

/// The ascending ranks `[lo, hi)` a score or lex range covers.
fn zrank_span(z: &ZSet, by: &ZRangeBy) -> (usize, usize) {
    match by {
        ZRangeBy::Rank { start, stop } => match rank_range(*start, *stop, z.len()) {
            Some((a, b)) => (a, b + 1),
            None => (0, 0),
        },
        ZRangeBy::Score { min, max } => {
            let lo = z.count_below(|s, _| !score_above_min(s, min));
            let hi = z.count_below(|s, _| score_below_max(s, max));
            (lo, hi.max(lo))
        }
        ZRangeBy::Lex { min, max } => lex_span(z, min, max, false),
    }
}

/// Members at most this many are searched as Redis searches a listpack:
/// one pass in score order, which gives Redis's answers even when the
/// members' scores differ (where a lex range is unspecified but
/// deterministic). Larger sets are binary-searched, as Redis's skip list
/// is, which agrees whenever the scores are equal.
const LEX_SCAN_MAX: usize = 128;

/// The ascending ranks `[lo, hi)` of a lex range: the run that starts at
/// the first member `>= min` (or, reversed, ends at the last `<= max`).
fn lex_span(z: &ZSet, min: &LexBound, max: &LexBound, rev: bool) -> (usize, usize) {
    let empty = match (min, max) {
        (LexBound::Max, _) | (_, LexBound::Min) => true,
        (
            LexBound::Inclusive(a) | LexBound::Exclusive(a),
            LexBound::Inclusive(b) | LexBound::Exclusive(b),
        ) => {
            a > b
                || (a == b
                    && (matches!(min, LexBound::Exclusive(_))
                        || matches!(max, LexBound::Exclusive(_))))
        }
        _ => false,
    };
    let n = z.len();
    if empty || n == 0 {
        return (0, 0);
    }
    if n > LEX_SCAN_MAX {
        let lo = z.count_below(|_, m| !lex_above_min(m, min));
        let hi = z.count_below(|_, m| lex_below_max(m, max));
        return (lo, hi.max(lo));
    }
    let all = z.iter_all();
    let (first, last) = (&all[0].1, &all[n - 1].1);
    if !lex_above_min(last, min) || !lex_below_max(first, max) {
        return (0, 0);
    }
    if rev {
        let Some(j) = all.iter().rposition(|(_, m)| lex_below_max(m, max)) else {
            return (0, 0);
        };
        if !lex_above_min(&all[j].1, min) {
            return (0, 0);
        }
        let i = all[..=j]
            .iter()
            .rposition(|(_, m)| !lex_above_min(m, min))
            .map_or(0, |p| p + 1);
        (i, j + 1)
    } else {
        let Some(i) = all.iter().position(|(_, m)| lex_above_min(m, min)) else {
            return (0, 0);
        };
        if !lex_below_max(&all[i].1, max) {
            return (0, 0);
        }
        let j = all[i..]
            .iter()
            .position(|(_, m)| !lex_below_max(m, max))
            .map_or(n, |p| i + p);
        (i, j)
    }
}

/// The members (with scores) a `ZRANGE` takes, in the order asked.
fn zrange(z: &ZSet, spec: &ZRangeSpec) -> Vec<(f64, Bytes)> {
    let n = z.len();
    let (lo, hi) = match (&spec.by, spec.rev) {
        // Reversed ranks count from the highest score.
        (ZRangeBy::Rank { start, stop }, true) => match rank_range(*start, *stop, n) {
            Some((a, b)) => (n - 1 - b, n - a),
            None => (0, 0),
        },
        (ZRangeBy::Lex { min, max }, rev) => lex_span(z, min, max, rev),
        (by, _) => zrank_span(z, by),
    };
    let (offset, count) = match spec.limit {
        Some((o, _)) if o < 0 => (usize::MAX, 0),
        Some((o, c)) => (o as usize, if c < 0 { usize::MAX } else { c as usize }),
        None => (0, usize::MAX),
    };
    let span = hi.saturating_sub(lo);
    if offset >= span {
        return Vec::new();
    }
    let take = count.min(span - offset);
    if spec.rev {
        let end = hi - offset;
        let mut v = z.range(end - take, end);
        v.reverse();
        v
    } else {
        z.range(lo + offset, lo + offset + take)
    }
}

fn scored(items: Vec<(f64, Bytes)>, with_scores: bool) -> Reply {
    if with_scores {
        Reply::Pairs(
            items
                .into_iter()
                .map(|(s, m)| (Reply::Bulk(m), Reply::Double(s)))
                .collect(),
        )
    } else {
        Reply::Array(items.into_iter().map(|(_, m)| Reply::Bulk(m)).collect())
    }
}

impl Value {
    fn empty(kind: ValueKind) -> Value {
        match kind {
            ValueKind::String => Value::Str(Bytes::new()),
            ValueKind::Hash => Value::Hash(Arc::default()),
            ValueKind::List => Value::List(Arc::default()),
            ValueKind::Set => Value::Set(Arc::default()),
            ValueKind::ZSet => Value::ZSet(Arc::new(ZSet::new())),
        }
    }
}

impl KvStore {
    /// The live value at `key` if it is of `kind`; `Err(WRONGTYPE)` if it
    /// is of another.
    fn typed(&self, key: &[u8], now: u64, kind: ValueKind) -> Result<Option<&Value>, Reply> {
        match self.live(key, now) {
            Some(e) if e.value.kind() != kind => Err(Reply::wrong_type()),
            Some(e) => Ok(Some(&e.value)),
            None => Ok(None),
        }
    }

    fn hash(&self, key: &[u8], now: u64) -> Result<Option<&Hash>, Reply> {
        Ok(match self.typed(key, now, ValueKind::Hash)? {
            Some(Value::Hash(h)) => Some(h),
            _ => None,
        })
    }

    /// The list at `key` (a small one unpacked for the caller).
    fn list(
        &self,
        key: &[u8],
        now: u64,
    ) -> Result<Option<std::borrow::Cow<'_, VecDeque<Bytes>>>, Reply> {
        Ok(match self.typed(key, now, ValueKind::List)? {
            Some(Value::List(l)) => Some(l.items()),
            _ => None,
        })
    }

    fn set(&self, key: &[u8], now: u64) -> Result<Option<&BTreeSet<Bytes>>, Reply> {
        Ok(match self.typed(key, now, ValueKind::Set)? {
            Some(Value::Set(s)) => Some(s),
            _ => None,
        })
    }

    fn zset(&self, key: &[u8], now: u64) -> Result<Option<&ZSet>, Reply> {
        Ok(match self.typed(key, now, ValueKind::ZSet)? {
            Some(Value::ZSet(z)) => Some(z),
            _ => None,
        })
    }

    /// Runs `f` on the value of `kind` at `key` (created empty if absent
    /// and `create`), then sets the key's version to `index` and removes
    /// it if `f` left it empty. `Ok(None)`: absent and not created.
    fn modify<R>(
        &mut self,
        index: u64,
        now: u64,
        key: &[u8],
        kind: ValueKind,
        create: bool,
        f: impl FnOnce(&mut Value) -> R,
    ) -> Result<Option<R>, Reply> {
        match self.live(key, now) {
            Some(e) if e.value.kind() != kind => return Err(Reply::wrong_type()),
            Some(_) => {}
            None if !create => return Ok(None),
            None => {
                // An expired leftover goes first, with its deadline.
                self.remove_live(key, now);
                self.store_value(index, key, Value::empty(kind), None);
            }
        }
        let Some(entry) = self.map.get_mut(key) else {
            return Ok(None);
        };
        let r = f(&mut entry.value);
        entry.version = index;
        if entry.value.is_empty() {
            self.remove_live(key, now);
        }
        Ok(Some(r))
    }

    fn hash_mut<R>(
        &mut self,
        (index, now): (u64, u64),
        key: &[u8],
        create: bool,
        f: impl FnOnce(&mut Hash) -> R,
    ) -> Result<Option<R>, Reply> {
        let r = self.modify(index, now, key, ValueKind::Hash, create, |v| match v {
            Value::Hash(h) => Some(f(Arc::make_mut(h))),
            _ => None,
        })?;
        Ok(r.flatten())
    }

    fn list_mut<R>(
        &mut self,
        (index, now): (u64, u64),
        key: &[u8],
        create: bool,
        f: impl FnOnce(&mut VecDeque<Bytes>) -> R,
    ) -> Result<Option<R>, Reply> {
        let r = self.modify(index, now, key, ValueKind::List, create, |v| match v {
            Value::List(l) => Some(Arc::make_mut(l).modify(f)),
            _ => None,
        })?;
        Ok(r.flatten())
    }

    fn set_mut<R>(
        &mut self,
        (index, now): (u64, u64),
        key: &[u8],
        create: bool,
        f: impl FnOnce(&mut BTreeSet<Bytes>) -> R,
    ) -> Result<Option<R>, Reply> {
        let r = self.modify(index, now, key, ValueKind::Set, create, |v| match v {
            Value::Set(s) => Some(f(Arc::make_mut(s))),
            _ => None,
        })?;
        Ok(r.flatten())
    }

    fn zset_mut<R>(
        &mut self,
        (index, now): (u64, u64),
        key: &[u8],
        create: bool,
        f: impl FnOnce(&mut ZSet) -> R,
    ) -> Result<Option<R>, Reply> {
        let r = self.modify(index, now, key, ValueKind::ZSet, create, |v| match v {
            Value::ZSet(z) => Some(f(Arc::make_mut(z))),
            _ => None,
        })?;
        Ok(r.flatten())
    }

    /// Applies a typed command at log `index`, leader time `now`.
    pub(crate) fn apply_data(&mut self, index: u64, now: u64, cmd: &DataCmd) -> Reply {
        if let Err(f) = cmd.validate() {
            return match f {
                sampan_proto::kv::KvFailure::Invalid(why) => Reply::err(why),
                other => Reply::err(format!("{other:?}")),
            };
        }
        match self.apply_data_inner((index, now), cmd) {
            Ok(r) | Err(r) => r,
        }
    }

    fn apply_data_inner(&mut self, at: (u64, u64), cmd: &DataCmd) -> Outcome {
        let (index, now) = at;
        Ok(match cmd {
            DataCmd::SetRange { key, offset, value } => {
                let current = match self.live(key, now) {
                    Some(e) => match e.str() {
                        Some(b) => Some((b.clone(), e.expire_at_ms)),
                        None => return Err(Reply::wrong_type()),
                    },
                    None => None,
                };
                if value.is_empty() {
                    return Ok(int(current.map_or(0, |(b, _)| b.len())));
                }
                let (old, expire) = current.unwrap_or_default();
                let offset = *offset as usize;
                let mut v = old.to_vec();
                if v.len() < offset + value.len() {
                    v.resize(offset + value.len(), 0);
                }
                v[offset..offset + value.len()].copy_from_slice(value);
                let len = v.len();
                self.store_value(index, key, Value::Str(Bytes::from(v)), expire);
                int(len)
            }
            DataCmd::IncrByFloat { key, delta } => {
                let (current, expire) = match self.live(key, now) {
                    Some(e) => match e.str() {
                        Some(b) => match parse_float(b).filter(|_| !b.is_empty()) {
                            Some(v) => (v, e.expire_at_ms),
                            None => return Err(Reply::err("value is not a valid float")),
                        },
                        None => return Err(Reply::wrong_type()),
                    },
                    None => (0.0, None),
                };
                let next = current + delta;
                if !next.is_finite() {
                    return Err(Reply::err("increment would produce NaN or Infinity"));
                }
                // Whole numbers add exactly, as Redis's long double does up
                // to 2^64; other sums are a double's.
                let exact = self
                    .live(key, now)
                    .and_then(Entry::str)
                    .map_or(Some(0i128), |b| {
                        std::str::from_utf8(b).ok()?.parse::<i128>().ok()
                    })
                    .filter(|_| delta.fract() == 0.0 && delta.abs() < 9.2e18)
                    .map(|c| c + *delta as i128)
                    .filter(|n| n.unsigned_abs() < 1 << 64);
                let text = Bytes::from(exact.map_or_else(|| format_float(next), |n| n.to_string()));
                self.store_value(index, key, Value::Str(text.clone()), expire);
                Reply::Bulk(text)
            }
            DataCmd::MSetNx { pairs } => {
                if pairs.iter().any(|(k, _)| self.live(k, now).is_some()) {
                    return Ok(Reply::Int(0));
                }
                for (k, v) in pairs {
                    self.remove_live(k, now);
                    self.store_value(index, k, Value::Str(own(v)), None);
                }
                Reply::Int(1)
            }
            DataCmd::GetEx { key, ttl } => {
                let Some(e) = self.live(key, now).cloned() else {
                    return Ok(Reply::Nil);
                };
                let Some(v) = e.str().cloned() else {
                    return Err(Reply::wrong_type());
                };
                match expire_at(*ttl, now, e.expire_at_ms) {
                    Some(t) if t <= now => {
                        self.remove_live(key, now);
                    }
                    t if t != e.expire_at_ms => self.store_value(index, key, e.value, t),
                    _ => {}
                }
                Reply::Bulk(v)
            }
            DataCmd::Expire { key, ttl, cond } => {
                let Some(e) = self.live(key, now).cloned() else {
                    return Ok(Reply::Int(0));
                };
                let new = expire_at(*ttl, now, e.expire_at_ms);
                let ok = match (cond, e.expire_at_ms, new) {
                    (ExpireCond::Always, _, _) => true,
                    (ExpireCond::Nx, old, _) => old.is_none(),
                    (ExpireCond::Xx, old, _) => old.is_some(),
                    // No deadline counts as infinite.
                    (ExpireCond::Gt, Some(old), Some(new)) => new > old,
                    (ExpireCond::Gt, _, _) => false,
                    (ExpireCond::Lt, None, _) => true,
                    (ExpireCond::Lt, Some(old), Some(new)) => new < old,
                    (ExpireCond::Lt, Some(_), None) => false,
                };
                if !ok {
                    return Ok(Reply::Int(0));
                }
                match new {
                    Some(t) if t <= now => {
                        self.remove_live(key, now);
                    }
                    t => self.store_value(index, key, e.value, t),
                }
                Reply::Int(1)
            }
            DataCmd::Rename { from, to, nx } => {
                let Some(e) = self.live(from, now).cloned() else {
                    return Err(Reply::err("no such key"));
                };
                if from == to {
                    return Ok(if *nx { Reply::Int(0) } else { Reply::Ok });
                }
                if *nx && self.live(to, now).is_some() {
                    return Ok(Reply::Int(0));
                }
                self.remove_live(from, now);
                self.remove_live(to, now);
                self.store_value(index, to, e.value, e.expire_at_ms);
                if *nx { Reply::Int(1) } else { Reply::Ok }
            }
            DataCmd::Copy { from, to, replace } => {
                if from == to {
                    return Err(Reply::err("source and destination objects are the same"));
                }
                let Some(e) = self.live(from, now).cloned() else {
                    return Ok(Reply::Int(0));
                };
                if self.live(to, now).is_some() && !replace {
                    return Ok(Reply::Int(0));
                }
                self.remove_live(to, now);
                self.store_value(index, to, e.value, e.expire_at_ms);
                Reply::Int(1)
            }
            DataCmd::HSet { key, pairs, nx, ok } => {
                let added = self
                    .hash_mut(at, key, true, |h| {
                        let mut added = 0;
                        for (f, v) in pairs {
                            if *nx && h.contains_key(f) {
                                continue;
                            }
                            if h.insert(own(f), own(v)) {
                                added += 1;
                            }
                        }
                        added
                    })?
                    .unwrap_or(0);
                if *ok { Reply::Ok } else { int(added) }
            }
            DataCmd::HDel { key, fields } => int(self
                .hash_mut(at, key, false, |h| {
                    fields.iter().filter(|f| h.remove(f)).count()
                })?
                .unwrap_or(0)),
            DataCmd::HIncrBy { key, field, delta } => {
                let current = match self.hash(key, now)?.and_then(|h| h.get(field)) {
                    Some(v) => {
                        parse_i64(&v).ok_or_else(|| Reply::err("hash value is not an integer"))?
                    }
                    None => 0,
                };
                let next = current
                    .checked_add(*delta)
                    .ok_or_else(|| Reply::err("increment or decrement would overflow"))?;
                self.hash_mut(at, key, true, |h| {
                    h.insert(own(field), Bytes::from(next.to_string()))
                })?;
                Reply::Int(next)
            }
            DataCmd::HIncrByFloat { key, field, delta } => {
                let current = match self.hash(key, now)?.and_then(|h| h.get(field)) {
                    Some(v) => {
                        parse_float(&v).ok_or_else(|| Reply::err("hash value is not a float"))?
                    }
                    None => 0.0,
                };
                let next = current + delta;
                if !next.is_finite() {
                    return Err(Reply::err("increment would produce NaN or Infinity"));
                }
                let text = Bytes::from(format_float(next));
                self.hash_mut(at, key, true, |h| h.insert(own(field), text.clone()))?;
                Reply::Bulk(text)
            }
            DataCmd::Push {
                key,
                left,
                values,
                existing,
            } => int(self
                .list_mut(at, key, !existing, |l| {
                    for v in values {
                        if *left {
                            l.push_front(own(v));
                        } else {
                            l.push_back(own(v));
                        }
                    }
                    l.len()
                })?
                .unwrap_or(0)),
            DataCmd::Pop { key, left, count } => {
                let popped = self.list_mut(at, key, false, |l| {
                    let n = count.unwrap_or(1).min(l.len() as u64) as usize;
                    let mut out = Vec::with_capacity(n);
                    for _ in 0..n {
                        let v = if *left { l.pop_front() } else { l.pop_back() };
                        out.extend(v);
                    }
                    out
                })?;
                match (popped, count) {
                    (None, None) => Reply::Nil,
                    (None, Some(_)) => Reply::NilArray,
                    (Some(mut v), None) => v.pop().map_or(Reply::Nil, Reply::Bulk),
                    (Some(v), Some(_)) => Reply::Array(bulks(&v)),
                }
            }
            DataCmd::PopFirst { keys, left } => {
                for k in keys {
                    if self.list(k, now)?.is_none() {
                        continue;
                    }
                    let v = self
                        .list_mut(at, k, false, |l| {
                            if *left { l.pop_front() } else { l.pop_back() }
                        })?
                        .flatten();
                    if let Some(v) = v {
                        return Ok(Reply::Array(vec![Reply::Bulk(k.clone()), Reply::Bulk(v)]));
                    }
                }
                Reply::NilArray
            }
            DataCmd::ZPopFirst { keys, max } => {
                for k in keys {
                    if self.zset(k, now)?.is_none() {
                        continue;
                    }
                    let popped = self
                        .zset_mut(at, k, false, |z| {
                            let n = z.len();
                            let first = if *max { z.at(n - 1) } else { z.at(0) };
                            let (score, member) = first?;
                            z.remove(&member);
                            Some((score, member))
                        })?
                        .flatten();
                    if let Some((score, member)) = popped {
                        return Ok(Reply::Array(vec![
                            Reply::Bulk(k.clone()),
                            Reply::Bulk(member),
                            Reply::Double(score),
                        ]));
                    }
                }
                Reply::NilArray
            }
            DataCmd::LSet {
                key,
                index: i,
                value,
            } => {
                let done = self.list_mut(at, key, false, |l| {
                    let len = l.len() as i64;
                    let i = if *i < 0 { len + i } else { *i };
                    match l
                        .get_mut(i.max(0) as usize)
                        .filter(|_| (0..len).contains(&i))
                    {
                        Some(slot) => {
                            *slot = value.clone();
                            true
                        }
                        None => false,
                    }
                })?;
                match done {
                    None => return Err(Reply::err("no such key")),
                    Some(false) => return Err(Reply::err("index out of range")),
                    Some(true) => Reply::Ok,
                }
            }
            DataCmd::LInsert {
                key,
                before,
                pivot,
                value,
            } => {
                let r = self.list_mut(at, key, false, |l| {
                    match l.iter().position(|v| v == pivot) {
                        Some(p) => {
                            l.insert(if *before { p } else { p + 1 }, own(value));
                            l.len() as i64
                        }
                        None => -1,
                    }
                })?;
                Reply::Int(r.unwrap_or(0))
            }
            DataCmd::LRem { key, count, value } => int(self
                .list_mut(at, key, false, |l| {
                    let limit = if *count == 0 {
                        usize::MAX
                    } else {
                        count.unsigned_abs() as usize
                    };
                    let mut removed = 0;
                    if *count >= 0 {
                        let mut i = 0;
                        while i < l.len() && removed < limit {
                            if l[i] == *value {
                                l.remove(i);
                                removed += 1;
                            } else {
                                i += 1;
                            }
                        }
                    } else {
                        let mut i = l.len();
                        while i > 0 && removed < limit {
                            i -= 1;
                            if l[i] == *value {
                                l.remove(i);
                                removed += 1;
                            }
                        }
                    }
                    removed
                })?
                .unwrap_or(0)),
            DataCmd::LTrim { key, start, stop } => {
                self.list_mut(at, key, false, |l| {
                    match rank_range(*start, *stop, l.len()) {
                        Some((a, b)) => {
                            l.truncate(b + 1);
                            l.drain(..a);
                        }
                        None => l.clear(),
                    }
                })?;
                Reply::Ok
            }
            DataCmd::LMove {
                from,
                to,
                from_left,
                to_left,
            } => {
                if self.list(from, now)?.is_none() {
                    return Ok(Reply::Nil);
                }
                self.list(to, now)?;
                let v = self
                    .list_mut(at, from, false, |l| {
                        if *from_left {
                            l.pop_front()
                        } else {
                            l.pop_back()
                        }
                    })?
                    .flatten();
                let Some(v) = v else {
                    return Ok(Reply::Nil);
                };
                self.list_mut(at, to, true, |l| {
                    if *to_left {
                        l.push_front(v.clone());
                    } else {
                        l.push_back(v.clone());
                    }
                })?;
                Reply::Bulk(v)
            }
            DataCmd::SAdd { key, members } => int(self
                .set_mut(at, key, true, |s| {
                    members.iter().filter(|m| s.insert(own(m))).count()
                })?
                .unwrap_or(0)),
            DataCmd::SRem { key, members } => int(self
                .set_mut(at, key, false, |s| {
                    members.iter().filter(|m| s.remove(*m)).count()
                })?
                .unwrap_or(0)),
            DataCmd::SPop { key, count, seed } => {
                let mut rng = Rng(*seed);
                let popped = self.set_mut(at, key, false, |s| {
                    let k = count.unwrap_or(1).min(s.len() as u64) as usize;
                    let picks = rng.distinct(s.len(), k);
                    let chosen: Vec<Bytes> = pick(s.iter().cloned(), &picks);
                    for m in &chosen {
                        s.remove(m);
                    }
                    chosen
                })?;
                match (popped, count) {
                    (None, None) => Reply::Nil,
                    (None, Some(_)) => Reply::Set(Vec::new()),
                    (Some(mut v), None) => v.pop().map_or(Reply::Nil, Reply::Bulk),
                    (Some(v), Some(_)) => Reply::Set(bulks(&v)),
                }
            }
            DataCmd::SMove { from, to, member } => {
                // Redis answers 0 for an absent source before it looks at
                // the destination's type.
                let Some(src) = self.set(from, now)? else {
                    return Ok(Reply::Int(0));
                };
                let present = src.contains(member);
                self.set(to, now)?;
                if !present {
                    return Ok(Reply::Int(0));
                }
                if from == to {
                    return Ok(Reply::Int(1));
                }
                self.set_mut(at, from, false, |s| s.remove(member))?;
                self.set_mut(at, to, true, |s| s.insert(own(member)))?;
                Reply::Int(1)
            }
            DataCmd::SStore { op, dest, keys } => {
                let result = self.combine(*op, keys, now)?;
                let n = result.len();
                self.remove_live(dest, now);
                if n > 0 {
                    self.store_value(index, dest, Value::Set(Arc::new(result)), None);
                }
                int(n)
            }
            DataCmd::ZAdd { key, flags, pairs } => self.zadd(at, key, *flags, pairs)?,
            DataCmd::ZIncrBy { key, delta, member } => {
                let flags = ZAddFlags {
                    incr: true,
                    ..ZAddFlags::default()
                };
                self.zadd(at, key, flags, &[(*delta, member.clone())])?
            }
            DataCmd::ZRem { key, members } => int(self
                .zset_mut(at, key, false, |z| {
                    members.iter().filter(|m| z.remove(m).is_some()).count()
                })?
                .unwrap_or(0)),
            DataCmd::ZPop { key, max, count } => {
                let popped = self
                    .zset_mut(at, key, false, |z| {
                        let k = count.unwrap_or(1).min(z.len() as u64) as usize;
                        let n = z.len();
                        let mut items = if *max {
                            let mut v = z.range(n - k, n);
                            v.reverse();
                            v
                        } else {
                            z.range(0, k)
                        };
                        for (_, m) in &items {
                            z.remove(m);
                        }
                        items.shrink_to_fit();
                        items
                    })?
                    .unwrap_or_default();
                if count.is_some() {
                    scored(popped, true)
                } else {
                    Reply::Array(
                        popped
                            .into_iter()
                            .flat_map(|(s, m)| [Reply::Bulk(m), Reply::Double(s)])
                            .collect(),
                    )
                }
            }
            DataCmd::ZRemRange { key, by } => int(self
                .zset_mut(at, key, false, |z| {
                    let (lo, hi) = zrank_span(z, by);
                    let doomed = z.range(lo, hi);
                    for (_, m) in &doomed {
                        z.remove(m);
                    }
                    doomed.len()
                })?
                .unwrap_or(0)),
        })
    }

    fn zadd(
        &mut self,
        at: (u64, u64),
        key: &Bytes,
        flags: ZAddFlags,
        pairs: &[(f64, Bytes)],
    ) -> Outcome {
        let (_, now) = at;
        let existing = self.zset(key, now)?.is_some();
        // Nothing would be added to an absent key: leave it absent.
        if !existing && flags.xx {
            return Ok(if flags.incr {
                Reply::Nil
            } else {
                Reply::Int(0)
            });
        }
        let outcome = self
            .zset_mut(at, key, true, |z| {
                let (mut added, mut changed) = (0, 0);
                let mut last = None;
                for (score, member) in pairs {
                    let old = z.score(member);
                    if (flags.nx && old.is_some()) || (flags.xx && old.is_none()) {
                        continue;
                    }
                    let new = if flags.incr {
                        old.unwrap_or(0.0) + score
                    } else {
                        *score
                    };
                    if new.is_nan() {
                        return Err(Reply::err("resulting score is not a number (NaN)"));
                    }
                    if let Some(old) = old
                        && ((flags.gt && new <= old) || (flags.lt && new >= old))
                    {
                        continue;
                    }
                    match old {
                        None => added += 1,
                        Some(o) if o != new => changed += 1,
                        Some(_) => {}
                    }
                    if old != Some(new) {
                        z.insert(own(member), new);
                    }
                    last = Some(new);
                }
                Ok((added, changed, last))
            })?
            .unwrap_or(Ok((0, 0, None)))?;
        let (added, changed, last) = outcome;
        Ok(if flags.incr {
            last.map_or(Reply::Nil, Reply::Double)
        } else if flags.ch {
            int(added + changed)
        } else {
            int(added)
        })
    }

    fn combine(&self, op: SetOp, keys: &[Bytes], now: u64) -> Result<BTreeSet<Bytes>, Reply> {
        let mut sets = Vec::with_capacity(keys.len());
        for k in keys {
            sets.push(self.set(k, now)?);
        }
        let empty = BTreeSet::new();
        let mut it = sets.into_iter().map(|s| s.unwrap_or(&empty));
        let Some(first) = it.next() else {
            return Ok(BTreeSet::new());
        };
        let mut acc = first.clone();
        for s in it {
            match op {
                SetOp::Inter => acc.retain(|m| s.contains(m)),
                SetOp::Union => acc.extend(s.iter().cloned()),
                SetOp::Diff => acc.retain(|m| !s.contains(m)),
            }
        }
        Ok(acc)
    }

    /// Answers a typed read at wall-clock `now`.
    pub fn answer_data(&self, q: &DataQuery, now: u64) -> Reply {
        match self.answer_data_inner(q, now) {
            Ok(r) | Err(r) => r,
        }
    }

    fn answer_data_inner(&self, q: &DataQuery, now: u64) -> Outcome {
        Ok(match q {
            DataQuery::GetRange { key, start, end } => {
                let v = match self.live(key, now) {
                    Some(e) => e.str().ok_or_else(Reply::wrong_type)?.clone(),
                    None => Bytes::new(),
                };
                // Unlike LRANGE's, a negative end clamps to 0, after
                // Redis's own first check.
                if *start < 0 && *end < 0 && start > end {
                    return Ok(Reply::Bulk(Bytes::new()));
                }
                let len = v.len() as i64;
                let fix = |i: i64| if i < 0 { (len + i).max(0) } else { i };
                let (a, b) = (fix(*start), fix(*end).min(len - 1));
                if len == 0 || a > b {
                    Reply::Bulk(Bytes::new())
                } else {
                    Reply::Bulk(v.slice(a as usize..=b as usize))
                }
            }
            DataQuery::HGet { key, field } => self
                .hash(key, now)?
                .and_then(|h| h.get(field))
                .map_or(Reply::Nil, Reply::Bulk),
            DataQuery::HMGet { key, fields } => {
                let h = self.hash(key, now)?;
                Reply::Array(
                    fields
                        .iter()
                        .map(|f| h.and_then(|h| h.get(f)).map_or(Reply::Nil, Reply::Bulk))
                        .collect(),
                )
            }
            DataQuery::HExists { key, field } => Reply::Int(i64::from(
                self.hash(key, now)?.is_some_and(|h| h.contains_key(field)),
            )),
            DataQuery::HStrLen { key, field } => int(self
                .hash(key, now)?
                .and_then(|h| h.get(field))
                .map_or(0, |v| v.len())),
            DataQuery::Len { key, kind } => int(self.typed(key, now, *kind)?.map_or(0, Value::len)),
            DataQuery::HGetAll {
                key,
                fields,
                values,
            } => {
                let pairs = self.hash(key, now)?.map(Hash::pairs).unwrap_or_default();
                let pairs = pairs.into_iter();
                match (fields, values) {
                    (true, true) => Reply::Map(
                        pairs
                            .map(|(f, v)| (Reply::Bulk(f), Reply::Bulk(v)))
                            .collect(),
                    ),
                    (true, false) => Reply::Array(pairs.map(|(f, _)| Reply::Bulk(f)).collect()),
                    _ => Reply::Array(pairs.map(|(_, v)| Reply::Bulk(v)).collect()),
                }
            }
            DataQuery::HRandField {
                key,
                count,
                with_values,
                seed,
            } => {
                let h = self.hash(key, now)?;
                let picks = random_picks(h.map_or(0, Hash::len), *count, *seed);
                let items: Vec<(Bytes, Bytes)> = match h {
                    Some(h) => pick_with_repeats(h.pairs().into_iter(), &picks),
                    None => Vec::new(),
                };
                match count {
                    None => items
                        .into_iter()
                        .next()
                        .map_or(Reply::Nil, |(f, _)| Reply::Bulk(f)),
                    Some(_) if *with_values => Reply::Pairs(
                        items
                            .into_iter()
                            .map(|(f, v)| (Reply::Bulk(f), Reply::Bulk(v)))
                            .collect(),
                    ),
                    Some(_) => {
                        Reply::Array(items.into_iter().map(|(f, _)| Reply::Bulk(f)).collect())
                    }
                }
            }
            DataQuery::LRange { key, start, stop } => {
                let l = self.list(key, now)?;
                let items = l.and_then(|l| {
                    rank_range(*start, *stop, l.len()).map(|(a, b)| bulks(l.range(a..=b)))
                });
                Reply::Array(items.unwrap_or_default())
            }
            DataQuery::LIndex { key, index } => {
                let l = self.list(key, now)?;
                let item = l.and_then(|l| {
                    let len = l.len() as i64;
                    let i = if *index < 0 { len + index } else { *index };
                    (0..len).contains(&i).then(|| l[i as usize].clone())
                });
                item.map_or(Reply::Nil, Reply::Bulk)
            }
            DataQuery::LPos {
                key,
                element,
                rank,
                count,
                maxlen,
            } => {
                let l = self.list(key, now)?;
                let mut found = Vec::new();
                if let Some(l) = l {
                    let want = match count {
                        None => 1,
                        Some(0) => usize::MAX,
                        Some(n) => *n as usize,
                    };
                    let limit = if *maxlen == 0 {
                        l.len()
                    } else {
                        (*maxlen as usize).min(l.len())
                    };
                    let mut skip = rank.unsigned_abs().saturating_sub(1);
                    let indexes: Box<dyn Iterator<Item = usize>> = if *rank > 0 {
                        Box::new(0..limit)
                    } else {
                        Box::new((l.len() - limit..l.len()).rev())
                    };
                    for i in indexes {
                        if l[i] != *element {
                            continue;
                        }
                        if skip > 0 {
                            skip -= 1;
                            continue;
                        }
                        found.push(Reply::Int(i as i64));
                        if found.len() >= want {
                            break;
                        }
                    }
                }
                match count {
                    None => found.pop().unwrap_or(Reply::Nil),
                    Some(_) => Reply::Array(found),
                }
            }
            DataQuery::SIsMember { key, member } => Reply::Int(i64::from(
                self.set(key, now)?.is_some_and(|s| s.contains(member)),
            )),
            DataQuery::SMIsMember { key, members } => {
                let s = self.set(key, now)?;
                Reply::Array(
                    members
                        .iter()
                        .map(|m| Reply::Int(i64::from(s.is_some_and(|s| s.contains(m)))))
                        .collect(),
                )
            }
            DataQuery::SMembers { key } => {
                Reply::Set(self.set(key, now)?.map(bulks).unwrap_or_default())
            }
            DataQuery::SRandMember { key, count, seed } => {
                let s = self.set(key, now)?;
                let picks = random_picks(s.map_or(0, BTreeSet::len), *count, *seed);
                let items: Vec<&Bytes> = match s {
                    Some(s) => pick_with_repeats(s.iter(), &picks),
                    None => Vec::new(),
                };
                match count {
                    None => items
                        .first()
                        .map_or(Reply::Nil, |m| Reply::Bulk((*m).clone())),
                    Some(_) => Reply::Array(bulks(items)),
                }
            }
            DataQuery::SCombine { op, keys } => Reply::Set(bulks(&self.combine(*op, keys, now)?)),
            DataQuery::ZScore { key, member } => self
                .zset(key, now)?
                .and_then(|z| z.score(member))
                .map_or(Reply::Nil, Reply::Double),
            DataQuery::ZMScore { key, members } => {
                let z = self.zset(key, now)?;
                Reply::Array(
                    members
                        .iter()
                        .map(|m| z.and_then(|z| z.score(m)).map_or(Reply::Nil, Reply::Double))
                        .collect(),
                )
            }
            DataQuery::ZCount { key, by } => int(self.zset(key, now)?.map_or(0, |z| {
                let (lo, hi) = zrank_span(z, by);
                hi - lo
            })),
            DataQuery::ZRank { key, member, rev } => {
                let z = self.zset(key, now)?;
                match z.and_then(|z| z.rank(member).map(|r| (r, z.len()))) {
                    Some((r, n)) => int(if *rev { n - 1 - r } else { r }),
                    None => Reply::Nil,
                }
            }
            DataQuery::ZRange { key, spec } => {
                let items = self
                    .zset(key, now)?
                    .map(|z| zrange(z, spec))
                    .unwrap_or_default();
                scored(items, spec.with_scores)
            }
            DataQuery::ElemScan {
                key,
                kind,
                after,
                count,
                pattern,
            } => self.elem_scan(key, *kind, after.as_ref(), *count, pattern.as_ref(), now)?,
            DataQuery::Encoding { key } => self
                .live(key, now)
                .map_or(Reply::Nil, |e| Reply::bulk(e.value.encoding().as_bytes())),
            DataQuery::Refuse { key, kind, error } => {
                self.typed(key, now, *kind)?;
                Reply::Error(error.clone())
            }
            DataQuery::RandomKey { seed } => {
                // A walk to a random position (O(n), no copy), then to the
                // next live key, wrapping around.
                let n = self.map.len();
                if n == 0 {
                    return Ok(Reply::Nil);
                }
                let start = Rng(*seed).below(n);
                let live = |(_, e): &(&Key, &Entry)| !e.expired_at(now);
                self.map
                    .iter()
                    .skip(start)
                    .find(live)
                    .or_else(|| self.map.iter().take(start).find(live))
                    .map_or(Reply::Nil, |(k, _)| Reply::Bulk(k.to_bytes()))
            }
        })
    }

    /// A page of a hash's, set's or sorted set's elements after `after`:
    /// `[next cursor or nil, elements]`. A sorted set pages in score order
    /// (its cursor is the last score and member).
    fn elem_scan(
        &self,
        key: &[u8],
        kind: ValueKind,
        after: Option<&Bytes>,
        count: u32,
        pattern: Option<&Bytes>,
        now: u64,
    ) -> Outcome {
        let count = count.max(1) as usize;
        let keep = |b: &[u8]| pattern.is_none_or(|p| crate::glob::glob_match(p, b));
        let lower = |a: Option<&Bytes>| a.map_or(Bound::Unbounded, |a| Bound::Excluded(a.clone()));
        let mut out = Vec::new();
        let next: Option<Bytes> = match kind {
            ValueKind::Hash => match self.hash(key, now)? {
                None => None,
                Some(h) => {
                    let mut last = None;
                    for (f, v) in h.pairs_after(after.map(|a| &a[..]), count) {
                        if keep(&f) {
                            out.push(Reply::Bulk(f.clone()));
                            out.push(Reply::Bulk(v));
                        }
                        last = Some(f);
                    }
                    last.filter(|l| !h.pairs_after(Some(l), 1).is_empty())
                }
            },
            ValueKind::Set => match self.set(key, now)? {
                None => None,
                Some(s) => {
                    let mut last = None;
                    for m in s.range((lower(after), Bound::Unbounded)).take(count) {
                        if keep(m) {
                            out.push(Reply::Bulk(m.clone()));
                        }
                        last = Some(m.clone());
                    }
                    last.filter(|l| {
                        s.range((Bound::Excluded(l.clone()), Bound::Unbounded))
                            .next()
                            .is_some()
                    })
                }
            },
            ValueKind::ZSet => match self.zset(key, now)? {
                None => None,
                Some(z) => {
                    let start = match after.filter(|a| a.len() >= 8) {
                        Some(a) => {
                            let mut s = [0u8; 8];
                            s.copy_from_slice(&a[..8]);
                            let (score, member) = (f64::from_le_bytes(s), &a[8..]);
                            z.count_below(|sc, m| {
                                cmp_entry(sc, m, score, member) != Ordering::Greater
                            })
                        }
                        None => 0,
                    };
                    let page = z.range(start, start + count);
                    for (s, m) in &page {
                        if keep(m) {
                            out.push(Reply::Bulk(m.clone()));
                            out.push(Reply::bulk(format_score(*s).as_bytes()));
                        }
                    }
                    (start + page.len() < z.len())
                        .then(|| page.last())
                        .flatten()
                        .map(|(s, m)| {
                            let mut c = s.to_le_bytes().to_vec();
                            c.extend_from_slice(m);
                            Bytes::from(c)
                        })
                }
            },
            other => return Err(Reply::err(format!("no element scan for {}", other.name()))),
        };
        Ok(Reply::Array(vec![
            next.map_or(Reply::Nil, Reply::Bulk),
            Reply::Array(out),
        ]))
    }

    /// Whether `key` holds a live entry of any type.
    pub fn exists(&self, key: &[u8], now: u64) -> bool {
        self.live(key, now).is_some()
    }

    /// The live entry at `key`, for reads of the whole value.
    pub fn entry(&self, key: &[u8], now: u64) -> Option<&Entry> {
        self.live(key, now)
    }
}

/// The most elements a random pick with repeats (a negative count) gives:
/// the port refuses larger counts before they reach the store.
pub const RANDOM_REPEATS_MAX: usize = 1 << 20;

/// Redis's choice of how many random elements and whether they may
/// repeat: `None` one; `Some(n >= 0)` up to n distinct; `Some(n < 0)`
/// |n| that may repeat. Returns indexes into the `len` elements, in the
/// order they are replied.
fn random_picks(len: usize, count: Option<i64>, seed: u64) -> Vec<usize> {
    let mut rng = Rng(seed);
    if len == 0 {
        return Vec::new();
    }
    match count {
        None => vec![rng.below(len)],
        Some(n) if n >= 0 => rng.distinct(len, (n as usize).min(len)),
        Some(n) => (0..n.unsigned_abs().min(RANDOM_REPEATS_MAX as u64))
            .map(|_| rng.below(len))
            .collect(),
    }
}

/// The elements at `indexes` (ascending, distinct) of `items`.
fn pick<T: Clone>(items: impl Iterator<Item = T>, indexes: &[usize]) -> Vec<T> {
    let mut want = indexes.iter().peekable();
    let mut out = Vec::with_capacity(indexes.len());
    for (i, item) in items.enumerate() {
        match want.peek() {
            Some(&&w) if w == i => {
                out.push(item);
                want.next();
            }
            Some(_) => {}
            None => break,
        }
    }
    out
}

/// The elements at `indexes` (any order, repeats allowed) of `items`.
fn pick_with_repeats<T: Clone>(items: impl Iterator<Item = T>, indexes: &[usize]) -> Vec<T> {
    let mut sorted: Vec<usize> = indexes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let found = pick(items, &sorted);
    indexes
        .iter()
        .filter_map(|i| sorted.binary_search(i).ok().map(|at| found[at].clone()))
        .collect()
}
