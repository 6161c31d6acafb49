//! What a KV read returns: an item (value, version, deadline), a scan's
//! range and its pages.

use super::data::ValueKind;
use bytes::Bytes;

/// A stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The value (a string's bytes; empty for the other kinds, whose
    /// elements are read with a `DataQuery`).
    pub value: Bytes,
    /// The type of the value.
    pub kind: ValueKind,
    /// The log index that last changed the key (value or TTL).
    pub version: u64,
    /// When the key expires (leader wall-clock ms), if it does.
    pub expire_at_ms: Option<u64>,
}

impl Item {
    /// A string item.
    pub fn string(value: Bytes, version: u64, expire_at_ms: Option<u64>) -> Item {
        Item {
            value,
            kind: ValueKind::String,
            version,
            expire_at_ms,
        }
    }

    /// The string's bytes, or `None` for a value of another type.
    pub fn as_str(&self) -> Option<&Bytes> {
        (self.kind == ValueKind::String).then_some(&self.value)
    }

    /// Whether the item has expired at time `now_ms`.
    pub fn expired_at(&self, now_ms: u64) -> bool {
        self.expire_at_ms.is_some_and(|t| t <= now_ms)
    }
}

/// Which keys a scan covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanRange {
    /// Keys starting with these bytes.
    Prefix(Bytes),
    /// Keys in `[start, end)`; `end: None` is unbounded.
    Range {
        /// First key (inclusive).
        start: Bytes,
        /// Past the last key (exclusive).
        end: Option<Bytes>,
    },
}

/// One page of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    /// Live keys and their items, in key order.
    pub items: Vec<(Bytes, Item)>,
    /// Pass as `after` to get the next page; `None` when the range is done.
    pub next: Option<Bytes>,
}
