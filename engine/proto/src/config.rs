//! The settings of a Raft group, as the node's config file and the
//! `AddGroup` request carry them, and the error a bad setting gets.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// A configuration value that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config field `{field}`: {reason}")]
pub struct ConfigError {
    /// The field, as it is spelled in the config file (`groups[2].members`).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    /// The error for `field`, with `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

fn invalid<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::new(field, reason))
}

/// When an entry counts as durable, per group (Dongting's `syncForce`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Acknowledged after `fdatasync` on a quorum (the default).
    #[default]
    Sync,
    /// Acknowledged after the write reached the page cache on a quorum:
    /// survives process crashes, not a power cut of a majority.
    Async,
}

/// One Raft group's settings; every member must be given the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// The group's id (> 0).
    pub group_id: u64,
    /// Voting members, by node id: `"1,2,3"`.
    pub members: String,
    /// Observers (learners): receive the log, never vote. `""` for none.
    #[serde(default)]
    pub observers: String,
    /// When an entry counts as durable.
    #[serde(default)]
    pub durability: Durability,
    /// Keep the log this long after a snapshot covers it before purging
    /// (Dongting's `markTruncateByTimestamp`); 0 purges at once.
    #[serde(default)]
    pub log_retention_ms: u64,
    /// Take a snapshot this often when anything was applied since the
    /// last (Dongting's `saveSnapshotSeconds`, in ms); 0: not by time.
    #[serde(default = "default_snapshot_interval_ms")]
    pub snapshot_interval_ms: u64,
    /// Take a snapshot once this many bytes of entries were applied since
    /// the last; 0: not by size.
    #[serde(default = "default_snapshot_log_bytes")]
    pub snapshot_log_bytes: u64,
    /// Bytes per snapshot chunk, written to the store and streamed to a
    /// follower (one chunk in flight per transfer).
    #[serde(default = "default_snapshot_chunk_bytes")]
    pub snapshot_chunk_bytes: u64,
    /// Most bytes per second a snapshot is written at (TiKV's
    /// `snap-io-max-bytes-per-sec` has the same default), so that writing
    /// it leaves the disk and the page cache to the log and the applies; 0:
    /// no limit.
    #[serde(default = "default_snapshot_write_bytes_per_sec")]
    pub snapshot_write_bytes_per_sec: u64,
    /// This replica joins a running group (added by a membership change):
    /// it starts with an empty log and waits for the leader, instead of
    /// writing the founding membership (which only founders do).
    #[serde(default)]
    pub join: bool,
}

fn default_snapshot_interval_ms() -> u64 {
    3_600_000
}

fn default_snapshot_write_bytes_per_sec() -> u64 {
    100 << 20
}

fn default_snapshot_chunk_bytes() -> u64 {
    256 << 10
}

fn default_snapshot_log_bytes() -> u64 {
    256 << 20
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            group_id: 1,
            members: String::new(),
            observers: String::new(),
            durability: Durability::default(),
            log_retention_ms: 0,
            snapshot_interval_ms: default_snapshot_interval_ms(),
            snapshot_log_bytes: default_snapshot_log_bytes(),
            snapshot_chunk_bytes: default_snapshot_chunk_bytes(),
            snapshot_write_bytes_per_sec: default_snapshot_write_bytes_per_sec(),
            join: false,
        }
    }
}

impl GroupConfig {
    /// Parses a node id list like `"1,2,3"`.
    fn parse_ids(&self, field: &str, list: &str) -> Result<BTreeSet<u64>, ConfigError> {
        let mut ids = BTreeSet::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<u64>() {
                Ok(id) if id > 0 => {
                    if !ids.insert(id) {
                        return invalid(field, format!("node {id} appears twice"));
                    }
                }
                _ => return invalid(field, format!("'{part}' is not a node id > 0")),
            }
        }
        Ok(ids)
    }

    /// The voting members.
    pub fn member_ids(&self) -> Result<BTreeSet<u64>, ConfigError> {
        self.parse_ids("members", &self.members)
    }

    /// The observers.
    pub fn observer_ids(&self) -> Result<BTreeSet<u64>, ConfigError> {
        self.parse_ids("observers", &self.observers)
    }

    /// Checks the group against the cluster's `servers` (node id and
    /// address).
    pub fn validate<A>(&self, servers: &[(u64, A)]) -> Result<(), ConfigError> {
        let g = self.group_id;
        let field = |f: &str| format!("group {g}.{f}");
        if g == 0 {
            return invalid("group_id", "must be > 0");
        }
        let members = self.member_ids().map_err(|e| ConfigError {
            field: field(&e.field),
            ..e
        })?;
        let observers = self.observer_ids().map_err(|e| ConfigError {
            field: field(&e.field),
            ..e
        })?;
        if !(4096..=(8 << 20)).contains(&self.snapshot_chunk_bytes) {
            return invalid(field("snapshot_chunk_bytes"), "must be in 4096..=8388608");
        }
        if members.is_empty() {
            return invalid(field("members"), "a group needs at least one voting member");
        }
        if let Some(both) = members.intersection(&observers).next() {
            return invalid(field("observers"), format!("node {both} is also a member"));
        }
        for id in members.iter().chain(&observers) {
            if !servers.iter().any(|(s, _)| s == id) {
                return invalid(
                    field("members"),
                    format!(
                        "node {id} is not a known node (in `servers`, or added by sampan-cli add-node)"
                    ),
                );
            }
        }
        Ok(())
    }
}

/// A secret from a config file (a password, a token, a cluster secret):
/// `Debug` shows `"(hidden)"`, so a config printed for a log shows none.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"(hidden)\"")
    }
}
