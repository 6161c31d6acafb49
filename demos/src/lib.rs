//! sampan-demos: the binaries a newcomer runs — a node server, a local
//! cluster launcher and a CLI client.
//!
//! **For:** running Sampan as a small replicated KV store. **Not for:**
//! embedding; depend on the `sampan` crate for that.
//!
//! The binaries come with the KV store issue; until then this crate is empty.
