//! A list: small ones packed in one buffer (as Redis packs a list's
//! elements in listpack nodes), larger ones in a `VecDeque`.
//!
//! A small list (at most [`SMALL_ELEMENTS_MAX`] elements of at most
//! [`SMALL_BYTES_MAX`] bytes) is one `Vec<u8>` of `len u8 | element`
//! entries. A change decodes it, applies the change to a `VecDeque` and
//! packs the result again (at most 128 short elements: the cost of a
//! listpack's rewrite); past the limits it stays a `VecDeque` for good.

use bytes::Bytes;
use std::borrow::Cow;
use std::collections::VecDeque;

/// A small list holds at most this many elements...
pub const SMALL_ELEMENTS_MAX: usize = 128;
/// ...each at most this many bytes.
pub const SMALL_BYTES_MAX: usize = 64;

/// A sequence of elements.
#[derive(Debug, Clone)]
pub enum List {
    /// Packed elements, and their count.
    Small(Vec<u8>, usize),
    /// The elements.
    Large(VecDeque<Bytes>),
}

impl Default for List {
    fn default() -> Self {
        List::Small(Vec::new(), 0)
    }
}

fn decode(buf: &[u8], n: usize) -> VecDeque<Bytes> {
    let mut out = VecDeque::with_capacity(n);
    let mut at = 0;
    while at < buf.len() {
        let len = buf[at] as usize;
        out.push_back(Bytes::copy_from_slice(&buf[at + 1..at + 1 + len]));
        at += 1 + len;
    }
    out
}

fn packable(items: &VecDeque<Bytes>) -> bool {
    items.len() <= SMALL_ELEMENTS_MAX && items.iter().all(|e| e.len() <= SMALL_BYTES_MAX)
}

fn encode(items: &VecDeque<Bytes>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(items.iter().map(|e| 1 + e.len()).sum());
    for e in items {
        buf.push(e.len() as u8);
        buf.extend_from_slice(e);
    }
    buf
}

impl List {
    /// Elements held.
    pub fn len(&self) -> usize {
        match self {
            List::Small(_, n) => *n,
            List::Large(d) => d.len(),
        }
    }

    /// Whether no element is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements (a small list is unpacked for the caller).
    pub fn items(&self) -> Cow<'_, VecDeque<Bytes>> {
        match self {
            List::Small(buf, n) => Cow::Owned(decode(buf, *n)),
            List::Large(d) => Cow::Borrowed(d),
        }
    }

    /// Runs `f` on the elements and keeps what it leaves, packed if it
    /// still fits (a list that outgrew the packed form stays unpacked).
    pub fn modify<R>(&mut self, f: impl FnOnce(&mut VecDeque<Bytes>) -> R) -> R {
        match self {
            List::Large(d) => f(d),
            List::Small(buf, n) => {
                let mut d = decode(buf, *n);
                let r = f(&mut d);
                if packable(&d) {
                    *buf = encode(&d);
                    *n = d.len();
                } else {
                    *self = List::Large(d);
                }
                r
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against a `VecDeque`: pushes at both ends (some elements too
        /// long to pack), pops and removals, through the conversion.
        #[test]
        fn agrees_with_a_deque(ops in proptest::collection::vec((0u8..4, 0usize..80), 0..500)) {
            let mut l = List::default();
            let mut model: VecDeque<Bytes> = VecDeque::new();
            for (op, len) in ops {
                let e = Bytes::from(vec![b'a' + (len % 26) as u8; len]);
                match op {
                    0 => { l.modify(|d| d.push_back(e.clone())); model.push_back(e); }
                    1 => { l.modify(|d| d.push_front(e.clone())); model.push_front(e); }
                    2 => { prop_assert_eq!(l.modify(|d| d.pop_front()), model.pop_front()); }
                    _ => { prop_assert_eq!(l.modify(|d| d.pop_back()), model.pop_back()); }
                }
                prop_assert_eq!(l.len(), model.len());
            }
            prop_assert_eq!(l.items().into_owned(), model);
        }
    }
}
