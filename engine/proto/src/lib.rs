//! The protocol between Sampan's nodes and its clients.
//!
//! **For:** the service requests and replies ([`service`]: operations,
//! routes, errors and the payloads of the admin operations), the group
//! settings and status they carry ([`config`], [`group`]), the KV
//! group's commands, reads and answers ([`kv`]), and the
//! bounds-checked byte [`codec`] every hand-written format of Sampan
//! shares. Every payload starts with a format version; decoders are total
//! (a value or a [`codec::DecodeError`], never a panic, never an
//! allocation sized by an unchecked count). **Not for:** framing,
//! connections or frame checksums (`sampan-net`), the messages replicas
//! send each other (the runtime's `wire`), or running anything: a client
//! that talks to a cluster depends on this crate, not on the runtime.

pub mod codec;
pub mod config;
pub mod group;
pub mod kv;
pub mod service;

/// The wall clock in ms since the Unix epoch (0 if the clock is before
/// it): the time base of KV deadlines on both sides (a client computes a
/// key's remaining TTL from it; a leader stamps commands with it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
