//! How a runtime's stop went: what a shard reports through its mailbox
//! when it stops, and what the runtime returns.

/// How a shard's stop went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardStopReport {
    /// The shard.
    pub shard: usize,
    /// Fibers still running when the grace period ended, then cancelled.
    pub fibers_cancelled: usize,
}

/// How a whole runtime's stop went, shard by shard.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// One report per shard, in shard order.
    pub shards: Vec<ShardStopReport>,
}

impl ShutdownReport {
    /// Fibers cancelled across all shards.
    pub fn fibers_cancelled(&self) -> usize {
        self.shards.iter().map(|s| s.fibers_cancelled).sum()
    }
}
