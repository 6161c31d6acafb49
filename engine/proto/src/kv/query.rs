//! Reads of the KV state (what the KV machine's `StateMachine::read`
//! answers for the native client), and their codecs.
//!
//! Layout (little-endian), version 3: `version u8 | tag u8 | body`.
//! Version 3 added each item's kind and the typed reads ([`DataQuery`],
//! answered with a [`Reply`]).

use super::data::{DataQuery, Reply, ValueKind, from_postcard, to_postcard};
use super::items::{Item, ScanRange};
use crate::codec::{DecodeError, Reader, put_bytes, put_opt_bytes};
use bytes::{BufMut, Bytes, BytesMut};

/// Format version of encoded queries and answers.
pub const QUERY_VERSION: u8 = 3;

/// The most keys one query may name or return.
pub const QUERY_KEYS_MAX: usize = 100_000;

/// A read of the KV state.
#[derive(Debug, Clone, PartialEq)]
pub enum KvQuery {
    /// Values (with versions) of these keys; absent or expired keys answer
    /// `None`.
    Get(Vec<Bytes>),
    /// One page of live keys in `range` after `after`, at most `limit`.
    Scan {
        /// Which keys.
        range: ScanRange,
        /// Continue after this key (a previous page's `next`).
        after: Option<Bytes>,
        /// Keys per page.
        limit: u32,
    },
    /// How many keys the store holds, counting those whose TTL passed but
    /// whose removal is not applied yet (Redis's `DBSIZE` counts the same).
    Len,
    /// A read of a typed value (or a string read that is more than a get).
    Data(DataQuery),
}

/// The answer to a [`KvQuery`].
#[derive(Debug, Clone, PartialEq)]
pub enum KvAnswer {
    /// One entry per key asked, in order, judged (expired or not) at the
    /// serving replica's wall clock `at_ms` — the leader's, for a
    /// linearizable read. Use [`KvAnswer::into_items`] to move their
    /// deadlines onto the receiver's clock.
    Values {
        /// The items (None: absent or expired).
        items: Vec<Option<Item>>,
        /// The serving replica's wall clock when it judged them.
        at_ms: u64,
    },
    /// A page of a scan.
    Page {
        /// Keys and items, in key order.
        items: Vec<(Bytes, Item)>,
        /// Where the next page starts, if there is one.
        next: Option<Bytes>,
    },
    /// The answer to [`KvQuery::Len`].
    Count(u64),
    /// The answer to [`KvQuery::Data`].
    Reply(Reply),
}

mod tag {
    pub const GET: u8 = 1;
    pub const SCAN_PREFIX: u8 = 2;
    pub const SCAN_RANGE: u8 = 3;
    pub const LEN: u8 = 4;
    pub const DATA: u8 = 5;
    pub const VALUES: u8 = 1;
    pub const PAGE: u8 = 2;
    pub const COUNT: u8 = 3;
    pub const REPLY: u8 = 4;
}

impl KvQuery {
    /// Encodes the query.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(32);
        out.put_u8(QUERY_VERSION);
        match self {
            KvQuery::Get(keys) => {
                out.put_u8(tag::GET);
                out.put_u32_le(keys.len() as u32);
                for k in keys {
                    put_bytes(&mut out, k);
                }
            }
            KvQuery::Scan {
                range,
                after,
                limit,
            } => {
                match range {
                    ScanRange::Prefix(p) => {
                        out.put_u8(tag::SCAN_PREFIX);
                        put_bytes(&mut out, p);
                    }
                    ScanRange::Range { start, end } => {
                        out.put_u8(tag::SCAN_RANGE);
                        put_bytes(&mut out, start);
                        put_opt_bytes(&mut out, end.as_deref());
                    }
                }
                put_opt_bytes(&mut out, after.as_deref());
                out.put_u32_le(*limit);
            }
            KvQuery::Len => out.put_u8(tag::LEN),
            KvQuery::Data(q) => {
                out.put_u8(tag::DATA);
                put_bytes(&mut out, &to_postcard(q));
            }
        }
        out.freeze()
    }

    /// Decodes a query (total).
    pub fn decode(buf: Bytes) -> Result<KvQuery, DecodeError> {
        let mut r = Reader::new(buf);
        let version = r.u8("query version")?;
        if version != QUERY_VERSION {
            return Err(DecodeError::Version {
                what: "query",
                version,
            });
        }
        let offset = r.offset();
        let q = match r.u8("query tag")? {
            tag::GET => {
                let n = r.count("key count", 4)?;
                if n > QUERY_KEYS_MAX {
                    return Err(DecodeError::Invalid {
                        what: "key count",
                        detail: format!("{n} over {QUERY_KEYS_MAX}"),
                    });
                }
                let keys = (0..n).map(|_| r.bytes("key")).collect::<Result<_, _>>()?;
                KvQuery::Get(keys)
            }
            t @ (tag::SCAN_PREFIX | tag::SCAN_RANGE) => {
                let range = if t == tag::SCAN_PREFIX {
                    ScanRange::Prefix(r.bytes("prefix")?)
                } else {
                    ScanRange::Range {
                        start: r.bytes("start")?,
                        end: r.opt_bytes("end")?,
                    }
                };
                let after = r.opt_bytes("after")?;
                let limit = r.u32("limit")?;
                KvQuery::Scan {
                    range,
                    after,
                    limit,
                }
            }
            tag::LEN => KvQuery::Len,
            tag::DATA => KvQuery::Data(from_postcard("data query", &r.bytes("data query")?)?),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "query",
                    tag,
                    offset,
                });
            }
        };
        r.finish("query")?;
        Ok(q)
    }
}

fn put_item(out: &mut BytesMut, it: &Item) {
    put_bytes(out, &it.value);
    out.put_u8(it.kind.to_u8());
    out.put_u64_le(it.version);
    out.put_u64_le(it.expire_at_ms.map_or(0, |t| t.saturating_add(1)));
}

fn read_item(r: &mut Reader) -> Result<Item, DecodeError> {
    let value = r.bytes("value")?;
    let offset = r.offset();
    let tag = r.u8("value kind")?;
    let kind = ValueKind::from_u8(tag).ok_or(DecodeError::UnknownTag {
        what: "value kind",
        tag,
        offset,
    })?;
    Ok(Item {
        value,
        kind,
        version: r.u64("version")?,
        expire_at_ms: r.u64("expire")?.checked_sub(1),
    })
}

impl KvAnswer {
    /// The items of a [`KvAnswer::Values`] with their deadlines moved onto
    /// a clock that reads `now_ms` (the receiver's), so that what is left
    /// of a TTL is what the serving replica judged, whatever the skew
    /// between the two clocks; `None` for another kind of answer.
    pub fn into_items(self, now_ms: u64) -> Option<Vec<Option<Item>>> {
        let KvAnswer::Values { items, at_ms } = self else {
            return None;
        };
        Some(
            items
                .into_iter()
                .map(|it| {
                    it.map(|mut it| {
                        it.expire_at_ms = it
                            .expire_at_ms
                            .map(|t| now_ms.saturating_add(t.saturating_sub(at_ms)));
                        it
                    })
                })
                .collect(),
        )
    }

    /// Encodes the answer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.size_hint());
        out.put_u8(QUERY_VERSION);
        match self {
            KvAnswer::Values {
                items: values,
                at_ms,
            } => {
                out.put_u8(tag::VALUES);
                out.put_u64_le(*at_ms);
                out.put_u32_le(values.len() as u32);
                for v in values {
                    match v {
                        Some(it) => {
                            out.put_u8(1);
                            put_item(&mut out, it);
                        }
                        None => out.put_u8(0),
                    }
                }
            }
            KvAnswer::Page { items, next } => {
                out.put_u8(tag::PAGE);
                out.put_u32_le(items.len() as u32);
                for (k, it) in items {
                    put_bytes(&mut out, k);
                    put_item(&mut out, it);
                }
                put_opt_bytes(&mut out, next.as_deref());
            }
            KvAnswer::Count(n) => {
                out.put_u8(tag::COUNT);
                out.put_u64_le(*n);
            }
            KvAnswer::Reply(reply) => {
                out.put_u8(tag::REPLY);
                put_bytes(&mut out, &to_postcard(reply));
            }
        }
        out.freeze()
    }

    /// About how many bytes [`KvAnswer::to_bytes`] writes: enough that
    /// a read's answer is built without growing (and copying) its buffer.
    fn size_hint(&self) -> usize {
        // Length prefix, kind, version and deadline around each value.
        const ITEM: usize = 4 + 1 + 8 + 8;
        let items = match self {
            KvAnswer::Values { items, .. } => items
                .iter()
                .map(|v| 1 + v.as_ref().map_or(0, |it| ITEM + it.value.len()))
                .sum(),
            KvAnswer::Page { items, next } => {
                let keys: usize = items
                    .iter()
                    .map(|(k, it)| 4 + k.len() + ITEM + it.value.len())
                    .sum();
                keys + 5 + next.as_ref().map_or(0, |n| n.len())
            }
            KvAnswer::Count(_) | KvAnswer::Reply(_) => 0,
        };
        64 + items
    }

    /// Decodes an answer (total).
    pub fn decode(buf: Bytes) -> Result<KvAnswer, DecodeError> {
        let mut r = Reader::new(buf);
        let version = r.u8("answer version")?;
        if version != QUERY_VERSION {
            return Err(DecodeError::Version {
                what: "answer",
                version,
            });
        }
        let offset = r.offset();
        let a = match r.u8("answer tag")? {
            tag::VALUES => {
                let at_ms = r.u64("judged at")?;
                let n = r.count("value count", 1)?;
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    values.push(if r.bool("present")? {
                        Some(read_item(&mut r)?)
                    } else {
                        None
                    });
                }
                KvAnswer::Values {
                    items: values,
                    at_ms,
                }
            }
            tag::COUNT => KvAnswer::Count(r.u64("count")?),
            tag::REPLY => KvAnswer::Reply(from_postcard("reply", &r.bytes("reply")?)?),
            tag::PAGE => {
                let n = r.count("item count", 20)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push((r.bytes("key")?, read_item(&mut r)?));
                }
                KvAnswer::Page {
                    items,
                    next: r.opt_bytes("next")?,
                }
            }
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "answer",
                    tag,
                    offset,
                });
            }
        };
        r.finish("answer")?;
        Ok(a)
    }
}
