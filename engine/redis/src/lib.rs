//! The Redis protocol (RESP2) over the KV state machine: parsing requests,
//! turning them into KV commands and reads, and rendering replies with
//! Redis's exact types and error texts, so `redis-cli`, `redis-benchmark`
//! and client libraries work unchanged.
//!
//! **For:** the Redis port of a node. The pure part — bytes to commands
//! ([`resp`], [`command`]), results to bytes ([`render`], [`answer`]) — and
//! the listener that drives it on every shard of a
//! [`RaftServer`](sampan::server::RaftServer) ([`server`]), with the shard's
//! batcher that merges many connections' writes and reads ([`batch`]).
//! **Not for:** routing or Raft; requests reach their group (and its
//! leader) through [`GroupRef`](sampan::server::GroupRef).
//!
//! Who may connect, and what each user may run, is [`acl`]: Redis's
//! `requirepass` and ACL users, with Redis's `-NOAUTH`, `-WRONGPASS` and
//! `-NOPERM` answers.
//!
//! The request parser is hand-written: on 200,000 pipelined `SET`s with
//! 100-byte values it took ~100 ns per command against ~170 ns for the
//! `redis-protocol` crate (6.0.0, `decode_bytes_mut`) on this 2-core
//! machine, and it hands out arguments as slices of the read buffer.

pub mod acl;
pub mod answer;
pub mod batch;
pub mod cluster;
pub mod command;
pub mod command_table;
pub mod exactly_once;
pub use sampan_kv::glob;
pub mod render;
pub mod resp;
pub mod server;
pub mod stats;
pub mod tls;
pub mod typed;

#[cfg(test)]
mod listener_tests;
#[cfg(test)]
mod tests;
