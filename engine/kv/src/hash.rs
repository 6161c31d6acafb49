//! A hash: small ones packed in one buffer, as Redis keeps them in one
//! listpack; larger ones in a `BTreeMap`.
//!
//! A small hash (at most [`SMALL_FIELDS_MAX`] fields, each field and value
//! at most [`SMALL_BYTES_MAX`] bytes) is one `Vec<u8>` of `len u8 | field |
//! len u8 | value` entries sorted by field: one allocation for the lot,
//! where a map allocates a node and two `Bytes` per field. Lookups scan it
//! (at most 128 entries). Past the limits it becomes a map for good, as
//! Redis's listpack becomes a hash table.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::ops::Bound;

/// A small hash holds at most this many fields...
pub const SMALL_FIELDS_MAX: usize = 128;
/// ...each field and value at most this many bytes (Redis 7.0's limits).
pub const SMALL_BYTES_MAX: usize = 64;

/// Field → value.
#[derive(Debug, Clone)]
pub enum Hash {
    /// Packed entries sorted by field, and their count.
    Small(Vec<u8>, usize),
    /// The map.
    Large(BTreeMap<Bytes, Bytes>),
}

impl Default for Hash {
    fn default() -> Self {
        Hash::Small(Vec::new(), 0)
    }
}

/// The packed entries of `buf`, in order: (start offset, field, value).
fn entries(buf: &[u8]) -> impl Iterator<Item = (usize, &[u8], &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= buf.len() {
            return None;
        }
        let start = at;
        let flen = buf[at] as usize;
        let field = &buf[at + 1..at + 1 + flen];
        at += 1 + flen;
        let vlen = buf[at] as usize;
        let value = &buf[at + 1..at + 1 + vlen];
        at += 1 + vlen;
        Some((start, field, value))
    })
}

fn put_entry(buf: &mut Vec<u8>, field: &[u8], value: &[u8]) {
    buf.push(field.len() as u8);
    buf.extend_from_slice(field);
    buf.push(value.len() as u8);
    buf.extend_from_slice(value);
}

impl Hash {
    /// Fields held.
    pub fn len(&self) -> usize {
        match self {
            Hash::Small(_, n) => *n,
            Hash::Large(m) => m.len(),
        }
    }

    /// Whether no field is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the hash is in its packed form (`OBJECT ENCODING`:
    /// `listpack`).
    pub fn is_compact(&self) -> bool {
        matches!(self, Hash::Small(..))
    }

    /// The value of `field`.
    pub fn get(&self, field: &[u8]) -> Option<Bytes> {
        match self {
            Hash::Small(buf, _) => entries(buf)
                .find(|(_, f, _)| *f == field)
                .map(|(_, _, v)| Bytes::copy_from_slice(v)),
            Hash::Large(m) => m.get(field).cloned(),
        }
    }

    /// Whether `field` is held.
    pub fn contains_key(&self, field: &[u8]) -> bool {
        match self {
            Hash::Small(buf, _) => entries(buf).any(|(_, f, _)| f == field),
            Hash::Large(m) => m.contains_key(field),
        }
    }

    /// Sets `field` to `value`; whether the field is new.
    pub fn insert(&mut self, field: Bytes, value: Bytes) -> bool {
        if let Hash::Small(buf, n) = self {
            let fits = field.len() <= SMALL_BYTES_MAX && value.len() <= SMALL_BYTES_MAX;
            let existing = entries(buf).find(|(_, f, _)| *f >= &field[..]);
            let (at, same) = match existing {
                Some((start, f, _)) => (start, f == &field[..]),
                None => (buf.len(), false),
            };
            if fits && (same || *n < SMALL_FIELDS_MAX) {
                let mut out = Vec::with_capacity(buf.len() + 2 + field.len() + value.len());
                out.extend_from_slice(&buf[..at]);
                put_entry(&mut out, &field, &value);
                let rest = if same {
                    // Skip the old entry.
                    let flen = buf[at] as usize;
                    let vat = at + 1 + flen;
                    vat + 1 + buf[vat] as usize
                } else {
                    at
                };
                out.extend_from_slice(&buf[rest..]);
                *buf = out;
                if !same {
                    *n += 1;
                }
                return !same;
            }
            // Past the packed form's limits: to the map, for good.
            let map = entries(buf)
                .map(|(_, f, v)| (Bytes::copy_from_slice(f), Bytes::copy_from_slice(v)))
                .collect();
            *self = Hash::Large(map);
        }
        match self {
            Hash::Large(m) => m.insert(field, value).is_none(),
            Hash::Small(..) => false,
        }
    }

    /// Removes `field`; whether it was there.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            Hash::Small(buf, n) => {
                let Some((start, f, v)) = entries(buf).find(|(_, f, _)| *f == field) else {
                    return false;
                };
                let end = start + 2 + f.len() + v.len();
                buf.drain(start..end);
                buf.shrink_to_fit();
                *n -= 1;
                true
            }
            Hash::Large(m) => m.remove(field).is_some(),
        }
    }

    /// Every field and value, in field order.
    pub fn pairs(&self) -> Vec<(Bytes, Bytes)> {
        self.pairs_after(None, usize::MAX)
    }

    /// At most `limit` fields after `after` (exclusive), in field order.
    pub fn pairs_after(&self, after: Option<&[u8]>, limit: usize) -> Vec<(Bytes, Bytes)> {
        match self {
            Hash::Small(buf, _) => entries(buf)
                .filter(|(_, f, _)| after.is_none_or(|a| *f > a))
                .take(limit)
                .map(|(_, f, v)| (Bytes::copy_from_slice(f), Bytes::copy_from_slice(v)))
                .collect(),
            Hash::Large(m) => {
                let lower = after.map_or(Bound::Unbounded, |a| {
                    Bound::Excluded(Bytes::copy_from_slice(a))
                });
                m.range((lower, Bound::Unbounded))
                    .take(limit)
                    .map(|(f, v)| (f.clone(), v.clone()))
                    .collect()
            }
        }
    }

    /// The longest field or value.
    pub fn longest(&self) -> usize {
        match self {
            Hash::Small(buf, _) => entries(buf)
                .map(|(_, f, v)| f.len().max(v.len()))
                .max()
                .unwrap_or(0),
            Hash::Large(m) => m
                .iter()
                .map(|(f, v)| f.len().max(v.len()))
                .max()
                .unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against a `BTreeMap`: random sets, overwrites and removals of
        /// fields, some past the packed form's limits.
        #[test]
        fn agrees_with_a_map(ops in proptest::collection::vec((0u16..200, 0usize..80, any::<bool>()), 0..600)) {
            let mut h = Hash::default();
            let mut model: BTreeMap<Bytes, Bytes> = BTreeMap::new();
            for (f, vlen, set) in ops {
                let field = Bytes::from(format!("f{f}"));
                if set {
                    let value = Bytes::from(vec![b'v'; vlen]);
                    prop_assert_eq!(h.insert(field.clone(), value.clone()), model.insert(field, value).is_none());
                } else {
                    prop_assert_eq!(h.remove(&field), model.remove(&field).is_some());
                }
                prop_assert_eq!(h.len(), model.len());
            }
            let want: Vec<(Bytes, Bytes)> = model.iter().map(|(f, v)| (f.clone(), v.clone())).collect();
            prop_assert_eq!(h.pairs(), want.clone());
            for (f, v) in &want {
                prop_assert_eq!(h.get(f), Some(v.clone()));
                prop_assert!(h.contains_key(f));
            }
            if let Some((f, _)) = want.get(want.len() / 2) {
                let tail: Vec<_> = want.iter().filter(|(g, _)| g > f).take(3).cloned().collect();
                prop_assert_eq!(h.pairs_after(Some(f), 3), tail);
            }
            if model.len() > SMALL_FIELDS_MAX || model.values().any(|v| v.len() > SMALL_BYTES_MAX) {
                prop_assert!(!h.is_compact());
            }
        }
    }
}
