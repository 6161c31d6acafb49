//! Why a wire body could not be decoded (or a message encoded).

use sampan_storage::FormatError;

/// A wire body that does not decode, or a message that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The body ended inside a field.
    #[error("truncated {what} at offset {offset}")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Where it started.
        offset: usize,
    },
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
    /// Bytes left over after a complete body.
    #[error("{0} trailing byte(s)")]
    Trailing(usize),
    /// The records of an AppendEntries failed validation.
    #[error("bad records: {0}")]
    Records(#[from] FormatError),
}
