//! The storage error type: every variant names the group, file and offset
//! it is about, so a log line or a failed open says where to look.

use std::path::PathBuf;

/// What a decoder found wrong in bytes that claim to be records (on disk or
/// on the wire). Offsets are relative to the start of the bytes parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Fewer bytes than a header, or than the length the header announces.
    #[error("truncated record at offset {offset}: need {needed} bytes, have {available}")]
    Truncated {
        /// Where the record starts.
        offset: usize,
        /// Bytes the record needs.
        needed: usize,
        /// Bytes there are.
        available: usize,
    },
    /// The header's CRC32C does not match (a torn write or flipped bits).
    #[error("bad header CRC at offset {offset}")]
    HeaderCrc {
        /// Where the record starts.
        offset: usize,
    },
    /// The payload's CRC32C does not match.
    #[error("bad payload CRC at offset {offset} (index {index})")]
    PayloadCrc {
        /// Where the record starts.
        offset: usize,
        /// The record's log index.
        index: u64,
    },
    /// A format version this build does not know.
    #[error("unknown record version {version} at offset {offset}")]
    Version {
        /// Where the record starts.
        offset: usize,
        /// The version found.
        version: u8,
    },
    /// A payload length above the configured limit.
    #[error("record at offset {offset} claims {len} payload bytes, limit {limit}")]
    TooLarge {
        /// Where the record starts.
        offset: usize,
        /// The claimed length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// Indexes of a run must be consecutive; terms must not go down.
    #[error("record at offset {offset}: index {found} term {term}, expected index {expected}")]
    Sequence {
        /// Where the record starts.
        offset: usize,
        /// The index expected there.
        expected: u64,
        /// The index found.
        found: u64,
        /// The term found.
        term: u64,
    },
    /// Non-zero padding or reserved bits.
    #[error("record at offset {offset}: non-zero reserved bytes")]
    Reserved {
        /// Where the record starts.
        offset: usize,
    },
}

/// Errors of the log, the status file and the snapshot store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call failed.
    #[error("group {group}: {op} {path} at offset {offset}: {source}")]
    Io {
        /// The group.
        group: u64,
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Where in the file (0 when not applicable).
        offset: u64,
        /// The cause.
        source: std::io::Error,
    },
    /// The disk is full. Nothing durable was harmed; the append can be
    /// retried when space returns.
    #[error("group {group}: disk full writing {path} at offset {offset}")]
    DiskFull {
        /// The group.
        group: u64,
        /// The file.
        path: PathBuf,
        /// Where the write was.
        offset: u64,
    },
    /// Data on disk is corrupt in a place where a torn write cannot explain
    /// it. The node must not start on this data without an operator.
    #[error("group {group}: corrupt {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The group.
        group: u64,
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Records handed to the log are malformed.
    #[error("group {group}: bad records: {source}")]
    Format {
        /// The group.
        group: u64,
        /// What the parser found.
        source: FormatError,
    },
    /// A call that does not fit the log's state (an index out of range, an
    /// append that does not follow the last index...).
    #[error("group {group}: {reason}")]
    Invalid {
        /// The group.
        group: u64,
        /// Why the call was refused.
        reason: String,
    },
    /// A previous I/O error left the log in a state only a reopen can
    /// repair (the in-memory view may not match the disk).
    #[error("group {group}: log failed earlier and must be reopened: {reason}")]
    Failed {
        /// The group.
        group: u64,
        /// The first error.
        reason: String,
    },
}

impl StorageError {
    /// Wraps an I/O error, turning ENOSPC into [`StorageError::DiskFull`].
    pub fn io(
        group: u64,
        op: &'static str,
        path: impl Into<PathBuf>,
        offset: u64,
        source: std::io::Error,
    ) -> StorageError {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::StorageFull || source.raw_os_error() == Some(28) {
            return StorageError::DiskFull {
                group,
                path,
                offset,
            };
        }
        StorageError::Io {
            group,
            op,
            path,
            offset,
            source,
        }
    }

    /// A corruption error.
    pub fn corrupt(
        group: u64,
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> StorageError {
        StorageError::Corrupt {
            group,
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// An invalid-call error.
    pub fn invalid(group: u64, reason: impl Into<String>) -> StorageError {
        StorageError::Invalid {
            group,
            reason: reason.into(),
        }
    }

    /// Whether this is a corruption error.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, StorageError::Corrupt { .. })
    }
}

/// Result with [`StorageError`].
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
