//! Sampan: a multi-Raft consensus engine on a thread-per-core runtime.
//!
//! **For:** embedding Raft groups in a Rust server. The pieces, one module
//! each: [`raft`], the pure, deterministic core (no I/O, no clock); [`wire`],
//! the codecs of its messages; [`group`], a group replica as fibers over a
//! log, a state machine and an outbox; [`host`], the groups of one node on
//! one shard, sharing a transport, a log writer, a ticker and a liveness
//! watch; [`server`], a node — shards of hosts, a service port, handles
//! that work from any thread, and the [`server::RaftFactory`] an embedder
//! plugs its state machine and log into; [`service`], the client protocol;
//! [`client`], the native KV client; [`state_machine`], the trait an
//! embedder implements; [`kv`], the replicated key-value state machine;
//! [`redis`], the Redis protocol over it; [`config`], validated server and
//! group settings.
//!
//! **Not for:** the runtime's primitives (`sampan-fiber`), framing and
//! connections (`sampan-net`) or the log's files (`sampan-storage`), which
//! this crate builds on; nor the node binary and CLI (`sampan-demos`).
//!
//! A state machine sees committed commands in order and answers each; the
//! KV store is one:
//!
//! ```
//! use bytes::Bytes;
//! use sampan::kv::{KvCommand, KvConfig, KvMachine, KvRequest, KvResult};
//! use sampan::state_machine::{Committed, StateMachine};
//!
//! let mut sm = KvMachine::new(KvConfig::default());
//! let cmd = KvRequest::without_session(KvCommand::put("k", "v")).to_bytes();
//! let mut results = Vec::new();
//! sm.apply(&[Committed { index: 1, term: 1, payload: &cmd }], &mut results);
//! let result = KvResult::decode(results.remove(0)).expect("a result");
//! assert_eq!(result, KvResult::Put { written: true, old: None });
//! assert_eq!(sm.store().get(b"k", 0).map(|it| it.value.clone()), Some(Bytes::from("v")));
//! ```

/// The native client ([`sampan_client`]), re-exported under its old path.
pub use sampan_client as client;
pub(crate) use sampan_proto::codec;
pub mod config;
pub mod constants;
pub mod factory;
pub mod group;
pub mod host;
pub mod kv;
/// The pure Raft core ([`sampan_raft`]), re-exported under its old path.
pub use sampan_raft as raft;
pub mod redis;
pub mod server;
pub use sampan_proto::service;
pub mod state_machine;
pub mod wire;
