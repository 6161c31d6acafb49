//! Sampan: a multi-Raft consensus engine on a thread-per-core runtime.
//!
//! This crate is what an embedder depends on. Today it holds the pure Raft
//! core ([`raft`]) and the replicated KV state machine ([`kv`]); the group
//! runtime, `RaftServer` and the state machine API follow.

pub mod kv;
pub mod raft;
