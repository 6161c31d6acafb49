//! What a key holds: a string or a collection, with its version and
//! deadline.
//!
//! Collections sit behind an `Arc`. Freezing the store for a snapshot
//! clones the map (persistent, O(1)) and so shares every collection; the
//! first write to a shared collection copies it (`Arc::make_mut`), the rest
//! write in place. Most collections are small, so the copy is cheap; a
//! collection of a million members written while a snapshot holds it is
//! copied once per snapshot (see `benches/RESULTS.md`).

use super::hash::Hash;
use super::list::List;
use super::zset::ZSet;
use bytes::Bytes;
use sampan_proto::kv::{Item, ValueKind};
use std::collections::BTreeSet;
use std::sync::Arc;

/// A key's value.
#[derive(Debug, Clone)]
pub enum Value {
    /// Bytes.
    Str(Bytes),
    /// Field → value, in field order (small ones packed).
    Hash(Arc<Hash>),
    /// A sequence (small ones packed).
    List(Arc<List>),
    /// Members, in member order.
    Set(Arc<BTreeSet<Bytes>>),
    /// Members by score.
    ZSet(Arc<ZSet>),
}

impl Value {
    /// The value's type.
    pub fn kind(&self) -> ValueKind {
        match self {
            Value::Str(_) => ValueKind::String,
            Value::Hash(_) => ValueKind::Hash,
            Value::List(_) => ValueKind::List,
            Value::Set(_) => ValueKind::Set,
            Value::ZSet(_) => ValueKind::ZSet,
        }
    }

    /// Elements held (a string counts as one).
    pub fn len(&self) -> usize {
        match self {
            Value::Str(_) => 1,
            Value::Hash(h) => h.len(),
            Value::List(l) => l.len(),
            Value::Set(s) => s.len(),
            Value::ZSet(z) => z.len(),
        }
    }

    /// Whether a collection is empty (then its key must go, as in Redis).
    pub fn is_empty(&self) -> bool {
        !matches!(self, Value::Str(_)) && self.len() == 0
    }

    /// Redis 7.0's `OBJECT ENCODING` for the value: hashes and sorted sets
    /// name the form Sampan holds them in (packed up to 128 elements of
    /// up to 64 bytes, as Redis's listpack); strings, lists and sets name
    /// what Redis would use, for tools that ask.
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Str(b) => {
                let int = b.len() <= 20
                    && std::str::from_utf8(b)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .is_some_and(|i| i.to_string().as_bytes() == &b[..]);
                if int {
                    "int"
                } else if b.len() <= 44 {
                    "embstr"
                } else {
                    "raw"
                }
            }
            // Like Redis's, a hash that outgrew the packed form keeps
            // the map.
            Value::Hash(h) if h.is_compact() => "listpack",
            Value::Hash(_) => "hashtable",
            Value::List(_) => "quicklist",
            Value::Set(s) => {
                let ints = s.len() <= 512
                    && s.iter().all(|m| {
                        std::str::from_utf8(m)
                            .ok()
                            .and_then(|t| t.parse::<i64>().ok())
                            .is_some_and(|i| i.to_string().as_bytes() == &m[..])
                    });
                // Redis 7.0 has no listpack sets (7.2 added them).
                if ints { "intset" } else { "hashtable" }
            }
            // Like Redis's, a set that outgrew the compact form keeps the
            // tree.
            Value::ZSet(z) if z.is_compact() => "listpack",
            Value::ZSet(_) => "skiplist",
        }
    }
}

/// A key's value with its version (the log index that last changed it)
/// and deadline.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The value.
    pub value: Value,
    /// The log index that last changed the key.
    pub version: u64,
    /// When the key expires (leader wall-clock ms), if it does.
    pub expire_at_ms: Option<u64>,
}

impl Entry {
    /// Whether the entry has expired at `now_ms`.
    pub fn expired_at(&self, now_ms: u64) -> bool {
        self.expire_at_ms.is_some_and(|t| t <= now_ms)
    }

    /// The entry as a read returns it: a string's bytes, or the kind of a
    /// collection with no bytes.
    pub fn item(&self) -> Item {
        Item {
            value: match &self.value {
                Value::Str(b) => b.clone(),
                _ => Bytes::new(),
            },
            kind: self.value.kind(),
            version: self.version,
            expire_at_ms: self.expire_at_ms,
        }
    }

    /// The string's bytes, if the value is a string.
    pub fn str(&self) -> Option<&Bytes> {
        match &self.value {
            Value::Str(b) => Some(b),
            _ => None,
        }
    }
}
