//! Sampan: a multi-Raft consensus engine on a thread-per-core runtime.
//!
//! This crate is what an embedder depends on. Today it holds the pure Raft
//! core ([`raft`]) and the replicated KV state machine ([`kv`]); the group
//! runtime, `RaftServer` and the state machine API follow. [`redis`] speaks
//! RESP2 over the KV state machine.

mod codec;
pub mod config;
pub mod group;
pub mod host;
pub mod kv;
pub mod raft;
pub mod redis;
pub mod state_machine;
pub mod wire;
