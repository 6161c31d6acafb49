//! The error type of the fiber runtime.

use std::time::Duration;

/// What can go wrong when starting the runtime, spawning fibers or crossing
/// into a shard.
#[derive(Debug, thiserror::Error)]
pub enum FiberError {
    /// The locked-memory limit (`RLIMIT_MEMLOCK`) is too low for the io_uring
    /// buffers of the requested shards, and could not be raised.
    #[error(
        "RLIMIT_MEMLOCK is {soft_bytes} bytes (hard limit {hard_bytes}), but {shards} shard(s) \
         need at least {needed_bytes} bytes of locked memory for io_uring; raise it with \
         `ulimit -l {needed_kib}` (shell), `LimitMEMLOCK={needed_bytes}` (systemd) or a \
         `memlock` line in /etc/security/limits.conf, or run fewer shards"
    )]
    MemlockTooLow {
        /// Current soft limit in bytes.
        soft_bytes: u64,
        /// Current hard limit in bytes.
        hard_bytes: u64,
        /// Number of shards asked for.
        shards: usize,
        /// Minimum bytes the shards need.
        needed_bytes: u64,
        /// The same, in KiB, as `ulimit -l` takes it.
        needed_kib: u64,
    },
    /// A builder setting is out of range.
    #[error("invalid runtime config: {field}: {reason}")]
    InvalidConfig {
        /// The setting at fault.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// The operating system refused to start a shard's executor thread.
    #[error("could not start shard {shard}: {source}")]
    ShardStart {
        /// The shard that failed to start.
        shard: usize,
        /// The underlying error, as glommio reported it.
        source: std::io::Error,
    },
    /// A shard's thread ended with a panic outside any fiber.
    #[error("shard {shard} thread panicked")]
    ShardPanicked {
        /// The shard whose thread died.
        shard: usize,
    },
    /// The runtime (or the shard) is stopping or stopped and takes no new work.
    #[error("shard {shard} is shutting down and takes no new work")]
    ShuttingDown {
        /// The shard that refused the work.
        shard: usize,
    },
    /// A shard id past the number of shards.
    #[error("no shard {shard}: the runtime has {shards} shard(s)")]
    NoSuchShard {
        /// The shard asked for.
        shard: usize,
        /// How many shards there are.
        shards: usize,
    },
    /// The fiber was cancelled (its group was cancelled, or the runtime shut
    /// down) before it produced a result.
    #[error("fiber '{fiber}' of group '{group}' was cancelled")]
    Cancelled {
        /// The fiber group's name.
        group: String,
        /// The fiber's name.
        fiber: String,
    },
    /// The fiber panicked; its group is marked failed.
    #[error("fiber '{fiber}' of group '{group}' panicked: {message}")]
    Panicked {
        /// The fiber group's name.
        group: String,
        /// The fiber's name.
        fiber: String,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// The fiber group was cancelled or failed and takes no new fibers.
    #[error("fiber group '{group}' is closed: {reason}")]
    GroupClosed {
        /// The fiber group's name.
        group: String,
        /// Why: cancelled, or failed and why.
        reason: String,
    },
    /// A blocking call was made from a shard thread, where it would deadlock
    /// the shard.
    #[error("blocking call made on shard thread {shard}: use the async form")]
    BlockingOnShard {
        /// The shard the caller runs on.
        shard: usize,
    },
    /// The shard's mailbox is full (only from calls that do not wait).
    #[error("shard {shard}'s mailbox is full")]
    MailboxFull {
        /// The shard whose mailbox is full.
        shard: usize,
    },
    /// A call needs a shard, but the current thread is not one.
    #[error("not on a Sampan shard thread")]
    NotOnShard,
    /// A deadline passed before the future finished.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}
