//! The error types of the transport: [`FrameError`] for bytes that are not a
//! frame, [`NetError`] for everything a caller of the transport can see.

use std::time::Duration;

/// Why a byte string is not a valid frame. Every decoder path ends in a
/// frame, "need more bytes", or one of these: never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first four bytes are not [`crate::frame::MAGIC`].
    #[error("bad magic {found:#010x}")]
    BadMagic {
        /// What was there instead.
        found: u32,
    },
    /// A frame version this build does not speak.
    #[error("unsupported frame version {found} (this build speaks {supported})")]
    UnsupportedVersion {
        /// The version in the frame.
        found: u8,
        /// The version this build speaks.
        supported: u8,
    },
    /// The header's CRC32C does not match its bytes.
    #[error("header CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderCrc {
        /// The CRC the frame carries.
        stored: u32,
        /// The CRC of the bytes received.
        computed: u32,
    },
    /// The body's CRC32C does not match its bytes.
    #[error(
        "body CRC mismatch on a frame of kind {kind}: stored {stored:#010x}, computed {computed:#010x}"
    )]
    BodyCrc {
        /// The frame's kind.
        kind: u16,
        /// The CRC the header carries.
        stored: u32,
        /// The CRC of the body received.
        computed: u32,
    },
    /// The frame is larger than the configured maximum.
    #[error("frame of kind {kind} is {bytes} bytes, over the limit of {bytes_max}")]
    TooLarge {
        /// The frame's kind.
        kind: u16,
        /// Header plus body, in bytes.
        bytes: u64,
        /// The configured maximum.
        bytes_max: usize,
    },
    /// The frame-type byte is none of the known types.
    #[error("unknown frame type {found}")]
    UnknownFrameType {
        /// The byte found.
        found: u8,
    },
}

/// What can go wrong in the transport. Messages name the peer (node id
/// and/or address) and the frame kind where there is one.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A setting is out of range.
    #[error("invalid net config: {field}: {reason}")]
    InvalidConfig {
        /// The setting at fault.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// A kind below [`crate::frame::KIND_USER_MIN`] (reserved for the
    /// transport) was used for a message, or a handler was registered twice.
    #[error("kind {kind} cannot be used: {reason}")]
    InvalidKind {
        /// The kind.
        kind: u16,
        /// Why not.
        reason: &'static str,
    },
    /// Binding a listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A peer's host name did not resolve to an address.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host name and port.
        host: String,
        /// Why not.
        reason: String,
    },
    /// Connecting to a peer failed.
    #[error("cannot connect to {peer}: {source}")]
    Connect {
        /// The peer.
        peer: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A socket read or write failed.
    #[error("I/O error on the connection to {peer}: {source}")]
    Io {
        /// The peer.
        peer: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The peer sent bytes that are not a valid frame.
    #[error("bad frame from {peer}: {source}")]
    Frame {
        /// The peer.
        peer: String,
        /// What was wrong.
        source: FrameError,
    },
    /// The handshake failed or was refused (by us or by the peer).
    #[error("handshake with {peer} failed: {reason}")]
    Handshake {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// Authentication failed: a wrong or missing key on either side. The
    /// reason never holds key material.
    #[error("authentication with {peer} failed: {reason}")]
    Auth {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// No connection to that node is up right now.
    #[error("no connection to node {node}")]
    NotConnected {
        /// The node asked for.
        node: u64,
    },
    /// The connection closed before the request got its response, or
    /// before the frame could be queued.
    #[error("connection to {peer} closed ({reason}); frame of kind {kind} not answered")]
    ConnectionClosed {
        /// The peer.
        peer: String,
        /// The frame's kind.
        kind: u16,
        /// Why the connection closed.
        reason: String,
    },
    /// The request got no response in time.
    #[error("request of kind {kind} to {peer} timed out after {after:?}")]
    Timeout {
        /// The peer.
        peer: String,
        /// The request's kind.
        kind: u16,
        /// The timeout that passed.
        after: Duration,
    },
    /// The peer answered the request with an error.
    #[error("{peer} answered the request of kind {kind} with error {code}: {message}")]
    Remote {
        /// The peer.
        peer: String,
        /// The request's kind.
        kind: u16,
        /// The error code the peer sent (see [`crate::rpc::ERROR_CODE_NO_RESPONSE`]).
        code: u16,
        /// The peer's message.
        message: String,
    },
    /// The body is larger than the maximum frame size.
    #[error("frame of kind {kind} to {peer} would be {bytes} bytes, over the limit of {bytes_max}")]
    TooLarge {
        /// The peer.
        peer: String,
        /// The frame's kind.
        kind: u16,
        /// Header plus body, in bytes.
        bytes: u64,
        /// The configured maximum.
        bytes_max: usize,
    },
    /// The connection's send budget is used up (only from calls that do not
    /// wait).
    #[error("send queue to {peer} is full ({bytes_queued} bytes queued)")]
    Full {
        /// The peer.
        peer: String,
        /// Bytes queued and not yet written.
        bytes_queued: usize,
    },
    /// The transport was closed.
    #[error("the transport is closed")]
    Closed,
    /// A cold message could not be encoded or decoded.
    #[error("cold message {what}: {source}")]
    Cold {
        /// "encode" or "decode" and the type.
        what: String,
        /// postcard's error.
        source: postcard::Error,
    },
    /// The fiber runtime refused (not on a shard, shutting down).
    #[error(transparent)]
    Fiber(#[from] sampan_fiber::FiberError),
}
