//! sampan-net: frames, connections and RPC between Sampan nodes and clients.
//!
//! **For:** one multiplexed, framed, CRC-checked connection per pair of
//! nodes, request/response matching and backpressure. **Not for:** Raft
//! messages or their codecs (those live in `sampan::wire`); it carries
//! bodies as opaque bytes.
//!
//! Being built (issue "Net"); this crate is empty until then.
