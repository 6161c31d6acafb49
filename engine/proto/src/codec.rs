//! Byte-level helpers shared by the hand-written codecs (the KV commands,
//! queries and snapshots, and the Raft wire): a bounds-checked reader and
//! length-prefixed writes. Every read is total: it returns a value or a
//! [`DecodeError`], never panics, and never allocates more than the input
//! holds.

use bytes::{BufMut, Bytes, BytesMut};

/// Why bytes could not be decoded (a KV command, answer or snapshot
/// record, or a field of a Raft message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("truncated {what}: need {need} more byte(s) at offset {offset}")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Offset of the field in the input.
        offset: usize,
        /// Bytes missing.
        need: usize,
    },
    /// A format version this build does not read.
    #[error("unsupported {what} format version {version}")]
    Version {
        /// What was being read.
        what: &'static str,
        /// The version found.
        version: u8,
    },
    /// A tag byte with no meaning.
    #[error("unknown {what} tag {tag} at offset {offset}")]
    UnknownTag {
        /// What the tag selects.
        what: &'static str,
        /// The tag found.
        tag: u8,
        /// Where.
        offset: usize,
    },
    /// Bytes left over after a complete value.
    #[error("{extra} trailing byte(s) after {what}")]
    Trailing {
        /// What was decoded.
        what: &'static str,
        /// How many bytes remain.
        extra: usize,
    },
    /// A count or value outside its allowed range.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The field at fault.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// A checksum did not match.
    #[error("CRC mismatch in {what}: stored {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// What was checked.
        what: &'static str,
        /// CRC in the input.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
}

/// Reads fixed-width little-endian fields and length-prefixed byte strings
/// from a `Bytes`, slicing (not copying) the byte strings.
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    /// A reader at the start of `buf`.
    pub fn new(buf: Bytes) -> Reader {
        Reader { buf, pos: 0 }
    }

    /// Bytes read so far.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                what,
                offset: self.pos,
                need: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// One byte; `what` names the field in errors (as for every read).
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(a))
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(a))
    }

    /// A little-endian `f64`; NaN is refused (no score or float is NaN).
    pub fn f64(&mut self, what: &'static str) -> Result<f64, DecodeError> {
        let v = f64::from_bits(self.u64(what)?);
        if v.is_nan() {
            return Err(DecodeError::Invalid {
                what,
                detail: "NaN".into(),
            });
        }
        Ok(v)
    }

    /// A little-endian `i64`.
    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(self.u64(what)? as i64)
    }

    /// A byte that must be 0 or 1.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::Invalid {
                what,
                detail: format!("boolean byte {other}"),
            }),
        }
    }

    /// A `u32` length, then that many bytes, as a slice of the input.
    pub fn bytes(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u32(what)? as usize;
        if self.remaining() < len {
            return Err(DecodeError::Truncated {
                what,
                offset: self.pos,
                need: len - self.remaining(),
            });
        }
        let b = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(b)
    }

    /// A presence byte, then the bytes if present.
    pub fn opt_bytes(&mut self, what: &'static str) -> Result<Option<Bytes>, DecodeError> {
        if self.bool(what)? {
            Ok(Some(self.bytes(what)?))
        } else {
            Ok(None)
        }
    }

    /// A count of items that each take at least `min_item_bytes`, checked
    /// against what the input can hold, so a forged count never sizes an
    /// allocation.
    pub fn count(
        &mut self,
        what: &'static str,
        min_item_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_item_bytes.max(1)) > self.remaining() {
            return Err(DecodeError::Invalid {
                what,
                detail: format!("count {n} exceeds the {} byte(s) left", self.remaining()),
            });
        }
        Ok(n)
    }

    /// The unread rest of the input, as a slice.
    pub fn rest(&mut self) -> Bytes {
        let b = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        b
    }

    /// Ends the read: an error if bytes are left over.
    pub fn finish(self, what: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::Trailing { what, extra }),
        }
    }
}

/// Writes a `u32` length, then the bytes ([`Reader::bytes`] reads them).
pub fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32_le(u32::try_from(b.len()).unwrap_or(u32::MAX));
    out.put_slice(b);
}

/// Writes a presence byte, then the bytes if present
/// ([`Reader::opt_bytes`] reads them).
pub fn put_opt_bytes(out: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            out.put_u8(1);
            put_bytes(out, b);
        }
        None => out.put_u8(0),
    }
}
