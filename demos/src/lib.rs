//! sampan-demos: the binaries a newcomer runs — `sampan-node` (one node of
//! a replicated KV store, from a TOML file), `sampan-cluster` (a local
//! 3-node cluster in one command) and `sampan-cli` (a command-line client)
//! — and the node's config file format they share.
//!
//! **For:** running Sampan as a small replicated KV store. **Not for:**
//! embedding; depend on the `sampan` crate for that.

pub mod certs;
pub mod config;
pub mod json;
pub mod logging;
pub mod resp;
pub mod signals;
