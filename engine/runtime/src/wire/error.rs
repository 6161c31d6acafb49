//! Why a wire body could not be decoded (or a message encoded).

use crate::codec::DecodeError;
use sampan_storage::FormatError;

/// A wire body that does not decode, or a message that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A field is truncated, out of range, or followed by stray bytes.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A format version this build does not read.
    #[error("unsupported wire version {0}")]
    Version(u8),
    /// A tag with no meaning.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// What the tag selects.
        what: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// A count or value out of range.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// The records of an AppendEntries failed validation.
    #[error("bad records: {0}")]
    Records(#[from] FormatError),
}
