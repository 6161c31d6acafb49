//! What can go wrong in a benchmark run, each case saying what it was
//! about: the flag, the address, the file or the node.

use std::path::PathBuf;

/// Why `sampan-bench` stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A command-line value is out of range or does not fit the others.
    #[error("{flag}: {reason}")]
    Usage {
        /// The flag, as typed (`--read-ratio`).
        flag: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A server answered something unexpected, or not at all.
    #[error("{addr}: {reason}")]
    Server {
        /// The server's address.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The local cluster could not be started or stopped.
    #[error("local cluster: {0}")]
    Cluster(String),
    /// A result file cannot be read or written.
    #[error("{}: {reason}", file.display())]
    File {
        /// The file.
        file: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The native client failed.
    #[error("native client: {0}")]
    Native(String),
    /// Ctrl-C or SIGTERM stopped the run.
    #[error("interrupted: no result written")]
    Interrupted,
    /// The chart could not be drawn.
    #[error("chart {}: {reason}", file.display())]
    Plot {
        /// The SVG file.
        file: PathBuf,
        /// The drawing library's message.
        reason: String,
    },
}

/// A result of this program.
pub type Result<T> = std::result::Result<T, BenchError>;

impl BenchError {
    /// A usage error naming `flag`.
    pub fn usage(flag: &'static str, reason: impl Into<String>) -> BenchError {
        BenchError::Usage {
            flag,
            reason: reason.into(),
        }
    }

    /// A closure turning an I/O error into one saying `what` was done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let what = what.into();
        move |source| BenchError::Io { what, source }
    }

    /// An error of the server at `addr`.
    pub fn server(addr: impl std::fmt::Display, reason: impl Into<String>) -> BenchError {
        BenchError::Server {
            addr: addr.to_string(),
            reason: reason.into(),
        }
    }
}
