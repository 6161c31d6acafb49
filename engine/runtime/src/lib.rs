//! Sampan: a multi-Raft consensus engine on a thread-per-core runtime.
//!
//! **For:** embedding Raft groups in a Rust server. The pieces, one module
//! each: [`raft`], the pure, deterministic core (no I/O, no clock; the
//! `sampan-raft` crate); [`wire`], the codecs of its messages between
//! nodes; [`group`], a group replica as fibers over a log, a state machine
//! and an outbox; [`host`], the groups of one node on one shard, sharing a
//! transport, a log writer, a ticker and a liveness watch; [`server`], a
//! node — shards of hosts, a service port, handles that work from any
//! thread; [`factory`], the [`factory::RaftFactory`] an embedder plugs its
//! state machine, log and snapshot store into; [`state_machine`], the trait
//! an embedder implements; [`service`], the client protocol (the
//! `sampan-proto` crate); [`config`], validated server and group settings;
//! [`constants`], the fixed limits and the relations between them.
//!
//! **Not for:** any particular state machine: the replicated KV store is
//! `sampan-kv`, written against this crate's public API as any embedder's
//! would be, and the Redis port over it is `sampan-redis`. Nor the
//! runtime's primitives (`sampan-fiber`), framing and connections
//! (`sampan-net`) or the log's files (`sampan-storage`), which this crate
//! builds on; nor the node binary and CLI (`sampan-demos`). The native
//! client is `sampan-client`, re-exported here as [`client`].
//!
//! A state machine sees committed commands in order and answers each; one
//! small enough to save whole at each snapshot implements
//! [`state_machine::SmallState`]:
//!
//! ```
//! use bytes::Bytes;
//! use sampan::state_machine::{Committed, Small, SmallState, StateMachine, StateMachineError};
//!
//! /// The last value written.
//! #[derive(Default)]
//! struct Register(Bytes);
//!
//! impl SmallState for Register {
//!     fn apply(&mut self, command: &Bytes) -> Bytes {
//!         std::mem::replace(&mut self.0, command.clone())
//!     }
//!     fn read(&self, _query: &Bytes) -> Result<Bytes, StateMachineError> {
//!         Ok(self.0.clone())
//!     }
//!     fn save(&self) -> Bytes {
//!         self.0.clone()
//!     }
//!     fn load(bytes: Bytes) -> Result<Self, StateMachineError> {
//!         Ok(Register(bytes))
//!     }
//! }
//!
//! let mut sm = Small::new(Register::default());
//! let mut results = Vec::new();
//! sm.apply(&[Committed { index: 1, term: 1, payload: &Bytes::from("v") }], &mut results);
//! assert_eq!(results, vec![Bytes::new()]);
//! assert_eq!(sm.read(&Bytes::new(), 0), Ok(Bytes::from("v")));
//! ```

/// The native client ([`sampan_client`]), re-exported under its old path.
pub use sampan_client as client;
pub(crate) use sampan_proto::codec;
pub mod backup;
pub mod catalog;
pub mod config;
pub mod constants;
pub mod factory;
pub mod group;
pub mod host;
pub mod metrics;
/// The pure Raft core ([`sampan_raft`]), re-exported under its old path.
pub use sampan_raft as raft;
pub mod server;
pub use sampan_proto::service;
pub mod state_machine;
pub mod stats;
pub mod wire;
