//! sampan-net: frames, connections and RPC between Sampan nodes and clients.
//!
//! **For:** one multiplexed, framed, CRC-checked TCP connection per pair of
//! nodes (per pair of shards) carrying every Raft group; one-way frames and
//! requests with per-request timeouts; handlers by frame kind; write
//! coalescing, vectored writes and a byte budget per connection;
//! reconnection with backoff; a replication port for nodes and a service
//! port for clients. Bodies are opaque: a body to send is several `Bytes`
//! pieces written without being joined, a received body is a `Bytes` slice
//! of the read buffer.
//!
//! **Not for:** Raft messages or their codecs (those live in
//! `sampan::wire`), nor the log's entry format (storage's). It knows no
//! Raft. It does not move work between shards: a [`Transport`] and its
//! connections are shard-local (`!Send`); other shards reach them through
//! the owning shard's mailbox ([`sampan_fiber::ShardHandle`]).
//!
//! Modules, one concept each: [`addr`] (a peer's address, IP or host
//! name), [`frame`] (the wire unit), [`codec`]
//! (encode, total decode), [`readbuf`] (zero-copy read buffer),
//! [`handshake`] (who is speaking, proved: [`auth`] keys and tokens,
//! [`tls`] certificates), [`connection`] (reader/writer fibers, budget,
//! close reasons), [`rpc`] (handlers, responders, correlation),
//! [`transport`] (peers, dialers), [`listener`](crate::transport::Transport::listen),
//! [`backoff`], [`cold`] (postcard for cold messages), [`config`], [`error`].
//!
//! ```
//! use sampan_fiber::{Runtime, TaskClass, IO_MEMORY_MIN_BYTES};
//! use sampan_net::{NetConfig, Router, Transport};
//! use std::time::Duration;
//!
//! let rt = Runtime::builder().shards(1).io_memory_bytes(IO_MEMORY_MIN_BYTES).build()?;
//! let answer = rt.shard(0)?.run_blocking(TaskClass::Latency, || async {
//!     const KIND_ECHO: u16 = 16;
//!     let local = "127.0.0.1:0".parse().expect("an address");
//!     // Node 2 answers echo requests.
//!     let router = Router::new();
//!     router.register(KIND_ECHO, |incoming| {
//!         if let Some(r) = incoming.responder {
//!             let _ = r.respond(incoming.frame.body);
//!         }
//!     })?;
//!     let node2 = Transport::new(NetConfig::new(7, 2), router)?;
//!     let addr2 = node2.listen(local)?;
//!     // Node 1 (the lower id) dials node 2.
//!     let node1 = Transport::new(NetConfig::new(7, 1), Router::new())?;
//!     node1.add_peer(2, addr2)?;
//!     sampan_fiber::timeout(Duration::from_secs(10), node1.wait_connected(2)).await??;
//!     let reply = node1.request(2, KIND_ECHO, 1, &b"ping"[..], Duration::from_secs(5)).await?;
//!     node1.close();
//!     node2.close();
//!     Ok::<_, sampan_net::NetError>(reply.body)
//! })??;
//! assert_eq!(&answer[..], b"ping");
//! rt.shutdown(Duration::from_secs(1))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod addr;
pub mod auth;
pub mod backoff;
pub mod codec;
pub mod cold;
pub mod config;
pub mod connection;
pub mod error;
pub mod frame;
pub mod handshake;
mod link;
pub mod readbuf;
pub mod rpc;
pub mod tls;
pub mod transport;

pub use addr::PeerAddr;
pub use auth::{ClientKeys, Credential, Key, Privilege};
pub use config::NetConfig;
pub use connection::{CloseReason, ConnStats, Connection};
pub use error::{FrameError, NetError};
pub use frame::{Body, Frame, FrameHeader, FrameType};
pub use handshake::Role;
pub use rpc::{Incoming, Origin, Responder, Router};
/// The TLS library the transport uses (for [`NetConfig::client_tls`]).
pub use rustls;
pub use sampan_fiber::{IdHasher, IdMap};
pub use transport::{Transport, connect};
