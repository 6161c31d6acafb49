//! Copy-on-write snapshots of the KV state.
//!
//! [`KvStore::freeze`] clones the persistent maps: O(1), on the apply fiber,
//! after which applies go on while the frozen view is written out in chunks
//! by [`KvFrozen::next_chunk`] (on the engine's snapshot encoder thread).
//! While the frozen map shares B-tree nodes with the live one, each write
//! to a node not yet copied copies it (~3 µs per put at 1 M random keys),
//! so the first chunk copies the entries out (reference counts only, up to
//! [`KvConfig::snapshot_flatten_keys_max`] keys) and drops the frozen map:
//! the sharing, and the copying, end within milliseconds. Measured in
//! `benches/RESULTS.md` ("Snapshot under load"). [`KvRestore`] rebuilds a store from chunks
//! and leaves whatever state the caller holds untouched until `finish`
//! succeeds, so an install that fails half-way loses nothing.
//!
//! Chunk layout (little-endian), version 2: `version u8 | flags u8 (bit 0:
//! last) | chunk_no u32 | records u32 | body_len u32 | crc32c(body) u32 |
//! body`. The first chunk's body starts with the store's header record.
//! Records never span chunks. A string is one `ITEM` record; a collection
//! is a `COLLECTION` record (key, kind, version, deadline, element count)
//! followed by `ELEMENTS` records of at most about a chunk each, so a
//! collection of any size travels in bounded chunks. Version 1 (strings
//! only) is still read.

use super::session::{Session, Sessions};
use super::store::{KvConfig, KvStore};
use super::value::{Entry, Value};
use super::zset::ZSet;
use crate::key::Key;
use bytes::{BufMut, Bytes, BytesMut};
use imbl::OrdMap;
use sampan_proto::codec::{DecodeError, Reader, put_bytes};
use sampan_proto::kv::{KvResult, ValueKind};
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

/// Format version of snapshot chunks.
pub const SNAPSHOT_VERSION: u8 = 2;

const CHUNK_HEADER_BYTES: usize = 18;
const FLAG_LAST: u8 = 1;

mod rec {
    pub const HEADER: u8 = 1;
    pub const ITEM: u8 = 2;
    pub const SESSION: u8 = 3;
    pub const COLLECTION: u8 = 4;
    pub const ELEMENTS: u8 = 5;
}

/// One element of a collection, as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Elem {
    /// A list element or set member.
    One(Bytes),
    /// A hash field and value.
    Pair(Bytes, Bytes),
    /// A sorted-set score and member.
    Scored(f64, Bytes),
}

impl Elem {
    fn encode(&self, out: &mut BytesMut) {
        match self {
            Elem::One(b) => put_bytes(out, b),
            Elem::Pair(f, v) => {
                put_bytes(out, f);
                put_bytes(out, v);
            }
            Elem::Scored(s, m) => {
                out.put_f64_le(*s);
                put_bytes(out, m);
            }
        }
    }
}

/// A collection's elements, in a stable order, sharing their bytes.
pub(crate) fn elements(v: &Value) -> Vec<Elem> {
    match v {
        Value::Str(_) => Vec::new(),
        Value::Hash(h) => h
            .pairs()
            .into_iter()
            .map(|(f, v)| Elem::Pair(f, v))
            .collect(),
        Value::List(l) => l.items().iter().cloned().map(Elem::One).collect(),
        Value::Set(s) => s.iter().cloned().map(Elem::One).collect(),
        Value::ZSet(z) => z
            .iter_all()
            .into_iter()
            .map(|(s, m)| Elem::Scored(s, m))
            .collect(),
    }
}

/// A frozen, immutable view of a store at one index, cheap to take and
/// independent of later applies.
#[derive(Debug, Clone)]
pub struct KvFrozen {
    map: OrdMap<Key, Entry>,
    sessions: Sessions,
    index: u64,
    /// The elements of the collection being written, and how many are out.
    pending: Option<(Vec<Elem>, usize)>,
    /// Where the next chunk starts.
    cursor: Cursor,
    chunk_no: u32,
    /// The items, copied out of the map when the first chunk is made (see
    /// [`KvConfig::snapshot_flatten_keys_max`]).
    flat: Option<std::vec::IntoIter<(Bytes, Entry)>>,
    /// Whether to copy them out.
    flatten: bool,
}

#[derive(Debug, Clone)]
enum Cursor {
    Start,
    Items(Option<Bytes>),
    Sessions(Option<u64>),
    Done,
}

impl KvStore {
    /// Freezes the state at the last applied index, in O(1): the maps are
    /// persistent, so later applies copy only the paths they change.
    pub fn freeze(&self) -> KvFrozen {
        KvFrozen {
            map: self.map.clone(),
            sessions: self.sessions.clone(),
            index: self.index_applied,
            pending: None,
            cursor: Cursor::Start,
            chunk_no: 0,
            flat: None,
            flatten: self.map.len() <= self.config().snapshot_flatten_keys_max,
        }
    }
}

impl KvFrozen {
    /// The log index the view reflects.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Keys in the view.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the view holds no key.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The next chunk of about `max_bytes` (more if one record is larger),
    /// or `None` after the last one. Callers yield between chunks.
    pub fn next_chunk(&mut self, max_bytes: usize) -> Option<Bytes> {
        let max_bytes = max_bytes.max(1);
        if matches!(self.cursor, Cursor::Done) {
            return None;
        }
        let mut body = BytesMut::with_capacity(max_bytes.min(1 << 20) + 64);
        let mut records = 0u32;
        if matches!(self.cursor, Cursor::Start) {
            body.put_u8(rec::HEADER);
            body.put_u64_le(self.index);
            body.put_u64_le(self.map.len() as u64);
            if self.flatten {
                // Copy the entries out (reference counts, not bytes) and
                // let the frozen map go: while it shares nodes with the
                // live map, every first write to a node copies the node.
                let flat: Vec<(Bytes, Entry)> = self
                    .map
                    .iter()
                    .map(|(k, v)| (k.to_bytes(), v.clone()))
                    .collect();
                self.map = OrdMap::new();
                self.flat = Some(flat.into_iter());
            }
            records += 1;
            self.cursor = Cursor::Items(None);
        }
        while body.len() < max_bytes && !matches!(self.cursor, Cursor::Done) {
            self.cursor = match std::mem::replace(&mut self.cursor, Cursor::Done) {
                Cursor::Items(after) => self.fill_items(after, &mut body, &mut records, max_bytes),
                Cursor::Sessions(after) => {
                    self.fill_sessions(after, &mut body, &mut records, max_bytes)
                }
                other => other,
            };
        }
        let last = matches!(self.cursor, Cursor::Done);
        let mut chunk = BytesMut::with_capacity(CHUNK_HEADER_BYTES + body.len());
        chunk.put_u8(SNAPSHOT_VERSION);
        chunk.put_u8(if last { FLAG_LAST } else { 0 });
        chunk.put_u32_le(self.chunk_no);
        chunk.put_u32_le(records);
        chunk.put_u32_le(body.len() as u32);
        chunk.put_u32_le(crc32c::crc32c(&body));
        chunk.put_slice(&body);
        self.chunk_no += 1;
        Some(chunk.freeze())
    }

    fn fill_items(
        &mut self,
        after: Option<Bytes>,
        body: &mut BytesMut,
        records: &mut u32,
        max: usize,
    ) -> Cursor {
        let mut last = after;
        let lower: Bound<&[u8]> = last.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let mut from_map = self.map.range::<_, [u8]>((lower, Bound::Unbounded));
        while body.len() < max {
            if let Some((elems, done)) = self.pending.as_mut() {
                // The rest of a collection, in records of about `max`.
                let start = *done;
                let at = body.len();
                body.put_u8(rec::ELEMENTS);
                body.put_u32_le(0);
                while *done < elems.len() && (*done == start || body.len() < max) {
                    elems[*done].encode(body);
                    *done += 1;
                }
                let n = (*done - start) as u32;
                body[at + 1..at + 5].copy_from_slice(&n.to_le_bytes());
                *records += 1;
                if *done == elems.len() {
                    self.pending = None;
                }
                continue;
            }
            let next = match self.flat.as_mut() {
                Some(flat) => flat.next(),
                None => from_map.next().map(|(k, it)| (k.to_bytes(), it.clone())),
            };
            let Some((k, it)) = next else {
                return Cursor::Sessions(None);
            };
            let expire = it.expire_at_ms.map_or(0, |t| t.saturating_add(1));
            match &it.value {
                Value::Str(v) => {
                    body.put_u8(rec::ITEM);
                    put_bytes(body, &k);
                    put_bytes(body, v);
                    body.put_u64_le(it.version);
                    body.put_u64_le(expire);
                }
                collection => {
                    let elems = elements(collection);
                    body.put_u8(rec::COLLECTION);
                    put_bytes(body, &k);
                    body.put_u8(collection.kind().to_u8());
                    body.put_u64_le(it.version);
                    body.put_u64_le(expire);
                    body.put_u64_le(elems.len() as u64);
                    if !elems.is_empty() {
                        self.pending = Some((elems, 0));
                    }
                }
            }
            *records += 1;
            last = Some(k);
        }
        Cursor::Items(last)
    }

    fn fill_sessions(
        &self,
        after: Option<u64>,
        body: &mut BytesMut,
        records: &mut u32,
        max: usize,
    ) -> Cursor {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut last = after;
        for (client, s) in self.sessions.by_client.range((lower, Bound::Unbounded)) {
            if body.len() >= max {
                return Cursor::Sessions(last);
            }
            body.put_u8(rec::SESSION);
            body.put_u64_le(*client);
            body.put_u64_le(s.oldest_kept);
            body.put_u64_le(s.last_active_ms);
            body.put_u32_le(s.results.len() as u32);
            for (seq, r) in s.results.iter() {
                body.put_u64_le(seq);
                r.encode(body);
            }
            *records += 1;
            last = Some(*client);
        }
        Cursor::Done
    }
}

/// Rebuilds a store from snapshot chunks, in order. The caller's current
/// store is not touched; it swaps in the result of [`KvRestore::finish`].
#[derive(Debug)]
pub struct KvRestore {
    map: OrdMap<Key, Entry>,
    /// The collection being read: its key, entry so far and elements
    /// still to come.
    building: Option<(Bytes, Entry, u64)>,
    sessions: Sessions,
    index: Option<u64>,
    keys_expected: u64,
    next_chunk: u32,
    done: bool,
    config: KvConfig,
}

impl KvRestore {
    /// Starts a restore; the store will use `config`.
    pub fn new(config: KvConfig) -> KvRestore {
        KvRestore {
            map: OrdMap::new(),
            building: None,
            sessions: Sessions::default(),
            index: None,
            keys_expected: 0,
            next_chunk: 0,
            done: false,
            config,
        }
    }

    /// Checks one chunk (version, order, CRC, every record) and takes in its
    /// records.
    pub fn push_chunk(&mut self, chunk: Bytes) -> Result<(), DecodeError> {
        let mut r = Reader::new(chunk);
        let version = r.u8("snapshot chunk version")?;
        if version != SNAPSHOT_VERSION && version != 1 {
            return Err(DecodeError::Version {
                what: "snapshot chunk",
                version,
            });
        }
        let flags = r.u8("chunk flags")?;
        let chunk_no = r.u32("chunk number")?;
        if self.done || chunk_no != self.next_chunk {
            return Err(DecodeError::Invalid {
                what: "chunk number",
                detail: format!(
                    "got {chunk_no}, expected {} (done: {})",
                    self.next_chunk, self.done
                ),
            });
        }
        let records = r.u32("record count")?;
        let body_len = r.u32("body length")? as usize;
        let stored = r.u32("chunk crc")?;
        if r.remaining() != body_len {
            return Err(DecodeError::Invalid {
                what: "chunk body length",
                detail: format!("header says {body_len}, {} present", r.remaining()),
            });
        }
        let body = r.rest();
        let computed = crc32c::crc32c(&body);
        if computed != stored {
            return Err(DecodeError::Crc {
                what: "snapshot chunk",
                stored,
                computed,
            });
        }
        let mut body = Reader::new(body);
        for _ in 0..records {
            self.read_record(&mut body)?;
        }
        body.finish("snapshot chunk")?;
        self.next_chunk += 1;
        self.done = flags & FLAG_LAST != 0;
        Ok(())
    }

    fn read_record(&mut self, r: &mut Reader) -> Result<(), DecodeError> {
        let offset = r.offset();
        let tag = r.u8("record tag")?;
        if self.index.is_none() && tag != rec::HEADER {
            return Err(DecodeError::Invalid {
                what: "snapshot",
                detail: "no header record first".into(),
            });
        }
        if self.building.is_some() != (tag == rec::ELEMENTS) {
            return Err(DecodeError::Invalid {
                what: "snapshot",
                detail: format!("record {tag} where a collection's elements were due or not"),
            });
        }
        match tag {
            rec::HEADER => {
                self.index = Some(r.u64("snapshot index")?);
                self.keys_expected = r.u64("key count")?;
            }
            rec::ITEM => {
                let key = r.bytes("key")?;
                let value = r.bytes("value")?;
                let version = r.u64("version")?;
                let expire = r.u64("expire")?;
                let item = Entry {
                    value: Value::Str(Bytes::copy_from_slice(&value)),
                    version,
                    expire_at_ms: expire.checked_sub(1),
                };
                self.map.insert(Key::new(&key), item);
            }
            rec::COLLECTION => {
                let key = Bytes::copy_from_slice(&r.bytes("key")?);
                let at = r.offset();
                let tag = r.u8("value kind")?;
                let value = match ValueKind::from_u8(tag) {
                    Some(ValueKind::Hash) => Value::Hash(Arc::default()),
                    Some(ValueKind::List) => Value::List(Arc::default()),
                    Some(ValueKind::Set) => Value::Set(Arc::new(BTreeSet::new())),
                    Some(ValueKind::ZSet) => Value::ZSet(Arc::new(ZSet::new())),
                    _ => {
                        return Err(DecodeError::UnknownTag {
                            what: "collection kind",
                            tag,
                            offset: at,
                        });
                    }
                };
                let entry = Entry {
                    value,
                    version: r.u64("version")?,
                    expire_at_ms: r.u64("expire")?.checked_sub(1),
                };
                let count = r.u64("element count")?;
                if count == 0 {
                    return Err(DecodeError::Invalid {
                        what: "collection",
                        detail: "an empty collection is never stored".into(),
                    });
                }
                self.building = Some((key, entry, count));
            }
            rec::ELEMENTS => {
                let Some((key, mut entry, left)) = self.building.take() else {
                    return Err(DecodeError::Invalid {
                        what: "snapshot",
                        detail: "elements outside a collection".into(),
                    });
                };
                let n = u64::from(r.u32("elements in record")?);
                if n == 0 || n > left {
                    return Err(DecodeError::Invalid {
                        what: "collection elements",
                        detail: format!("{n} in a record, {left} left"),
                    });
                }
                let copy = |b: Bytes| Bytes::copy_from_slice(&b);
                for _ in 0..n {
                    match &mut entry.value {
                        Value::Hash(h) => {
                            let f = copy(r.bytes("field")?);
                            Arc::make_mut(h).insert(f, copy(r.bytes("value")?));
                        }
                        Value::List(l) => {
                            let e = copy(r.bytes("element")?);
                            Arc::make_mut(l).modify(|d| d.push_back(e));
                        }
                        Value::Set(s) => {
                            Arc::make_mut(s).insert(copy(r.bytes("member")?));
                        }
                        Value::ZSet(z) => {
                            let score = r.f64("score")?;
                            Arc::make_mut(z).insert(copy(r.bytes("member")?), score);
                        }
                        Value::Str(_) => {}
                    }
                }
                if n == left {
                    self.map.insert(Key::new(&key), entry);
                } else {
                    self.building = Some((key, entry, left - n));
                }
            }
            rec::SESSION => {
                let client = r.u64("client id")?;
                let mut s = Session {
                    oldest_kept: r.u64("oldest kept")?,
                    last_active_ms: r.u64("last active")?,
                    ..Session::default()
                };
                let n = r.count("session results", 9)?;
                for _ in 0..n {
                    let seq = r.u64("seq")?;
                    s.results.insert(seq, KvResult::read(r)?);
                }
                self.sessions.by_client.insert(client, s);
            }
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "snapshot record",
                    tag,
                    offset,
                });
            }
        }
        Ok(())
    }

    /// The restored store, once the last chunk arrived and the key count
    /// matches the header.
    pub fn finish(self) -> Result<KvStore, DecodeError> {
        let (Some(index), true) = (self.index, self.done) else {
            return Err(DecodeError::Invalid {
                what: "snapshot",
                detail: "incomplete: last chunk missing".into(),
            });
        };
        if let Some((key, _, left)) = &self.building {
            return Err(DecodeError::Invalid {
                what: "snapshot",
                detail: format!("ends inside collection {key:?}, {left} element(s) missing"),
            });
        }
        if self.map.len() as u64 != self.keys_expected {
            return Err(DecodeError::Invalid {
                what: "snapshot key count",
                detail: format!(
                    "header says {}, chunks held {}",
                    self.keys_expected,
                    self.map.len()
                ),
            });
        }
        Ok(KvStore::from_parts(
            self.map,
            self.sessions,
            index,
            self.config,
        ))
    }
}
