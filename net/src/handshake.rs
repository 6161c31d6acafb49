//! The handshake: the first frame each way on a new connection says who is
//! speaking (protocol version, cluster id, node id, shard, role). A mismatch
//! closes the connection; both sides log why.
//!
//! The dialer sends a request of kind [`KIND_HANDSHAKE`] with its [`Hello`];
//! the acceptor checks it and answers with its own `Hello` (a response) or
//! with the reason it refuses (an error response), then closes. The dialer
//! checks the answer in turn (that the node it reached is the node it
//! meant); if that fails it sends an error response of kind
//! `KIND_HANDSHAKE` with the reason, so the acceptor logs it too.

use crate::codec::{Decoder, encode_frame};
use crate::error::NetError;
use crate::frame::{Body, Frame, FrameHeader, FrameType, HEADER_LEN, KIND_HANDSHAKE};
use crate::readbuf::ReadBuf;
use crate::rpc::{ERROR_MESSAGE_BYTES_MAX, error_body, parse_error_body};
use sampan_fiber::net::TcpStream;

/// Largest handshake frame read (a hello, or a refusal with its reason): a
/// peer that has not said who it is cannot make us reserve more than this.
pub const HANDSHAKE_FRAME_BYTES_MAX: usize = HEADER_LEN + 2 + ERROR_MESSAGE_BYTES_MAX;

/// The protocol version this build speaks (of the transport and the
/// messages above it; bump on an incompatible change).
pub const PROTOCOL_VERSION: u16 = 1;

/// Bytes of an encoded [`Hello`].
pub const HELLO_LEN: usize = 24;

/// Who is at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A node of the cluster (replication port).
    Node,
    /// A client (service port).
    Client,
}

impl Role {
    fn to_byte(self) -> u8 {
        match self {
            Role::Node => 1,
            Role::Client => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Role> {
        match b {
            1 => Some(Role::Node),
            2 => Some(Role::Client),
            _ => None,
        }
    }
}

/// One side's introduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub protocol_version: u16,
    /// Node or client.
    pub role: Role,
    /// The sender's shard (connections are per pair of shards).
    pub shard: u16,
    /// The cluster the sender belongs to.
    pub cluster_id: u64,
    /// The sender's node id (a client id for clients).
    pub node_id: u64,
}

impl Hello {
    /// Encodes the hello (24 bytes, little endian).
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[0..2].copy_from_slice(&self.protocol_version.to_le_bytes());
        b[2] = self.role.to_byte();
        b[4..6].copy_from_slice(&self.shard.to_le_bytes());
        b[8..16].copy_from_slice(&self.cluster_id.to_le_bytes());
        b[16..24].copy_from_slice(&self.node_id.to_le_bytes());
        b
    }

    /// Decodes a hello; a reason on bad input. Extra bytes past
    /// [`HELLO_LEN`] are ignored (room for later versions).
    pub fn decode(b: &[u8]) -> Result<Hello, String> {
        if b.len() < HELLO_LEN {
            return Err(format!(
                "handshake body is {} bytes, expected {HELLO_LEN}",
                b.len()
            ));
        }
        let u64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(a)
        };
        let role = Role::from_byte(b[2]).ok_or_else(|| format!("unknown role {}", b[2]))?;
        Ok(Hello {
            protocol_version: u16::from_le_bytes([b[0], b[1]]),
            role,
            shard: u16::from_le_bytes([b[4], b[5]]),
            cluster_id: u64_at(8),
            node_id: u64_at(16),
        })
    }
}

/// What a side expects of the other's hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// Our own hello (version, cluster and shard must match ours).
    pub local: Hello,
    /// The role the other side must have.
    pub role: Role,
    /// The node id the other side must have, when we know it (a dialer
    /// knows which node it called).
    pub node_id: Option<u64>,
}

impl Expect {
    /// Checks the other side's hello; the reason for refusing if it fails.
    pub fn check(&self, theirs: &Hello) -> Result<(), String> {
        let ours = &self.local;
        if theirs.protocol_version != ours.protocol_version {
            return Err(format!(
                "protocol version mismatch: ours {}, theirs {}",
                ours.protocol_version, theirs.protocol_version
            ));
        }
        if theirs.cluster_id != ours.cluster_id {
            return Err(format!(
                "cluster id mismatch: ours {}, theirs {}",
                ours.cluster_id, theirs.cluster_id
            ));
        }
        if theirs.role != self.role {
            return Err(format!(
                "expected a {:?}, got a {:?}",
                self.role, theirs.role
            ));
        }
        let both_nodes = theirs.role == Role::Node && ours.role == Role::Node;
        if both_nodes && theirs.shard != ours.shard {
            return Err(format!(
                "shard mismatch: ours {}, theirs {}",
                ours.shard, theirs.shard
            ));
        }
        if both_nodes && theirs.node_id == ours.node_id {
            return Err(format!("the peer has our own node id {}", ours.node_id));
        }
        if let Some(want) = self.node_id
            && theirs.node_id != want
        {
            return Err(format!(
                "expected node {want}, reached node {}",
                theirs.node_id
            ));
        }
        Ok(())
    }
}

fn fail(peer: &str, reason: String) -> NetError {
    log::warn!("handshake with {peer} failed: {reason}");
    NetError::Handshake {
        peer: peer.to_string(),
        reason,
    }
}

async fn write_frame(stream: &TcpStream, frame_type: FrameType, body: Body) -> std::io::Result<()> {
    let header = FrameHeader {
        frame_type,
        kind: KIND_HANDSHAKE,
        group_id: 0,
        request_id: 0,
    };
    let bytes = encode_frame(&header, &body).ok_or(std::io::ErrorKind::InvalidInput)?;
    stream.write_all(&bytes).await
}

/// Reads the one handshake frame; bytes read past it stay in `rb`.
async fn read_frame(stream: &TcpStream, rb: &mut ReadBuf) -> Result<Frame, String> {
    let decoder = Decoder::new(HANDSHAKE_FRAME_BYTES_MAX);
    loop {
        match rb.take_frame(&decoder) {
            Ok(Some(frame)) => return Ok(frame),
            Ok(None) => {}
            Err(e) => return Err(format!("bad handshake frame: {e}")),
        }
        let want = rb.wanted(&decoder);
        match stream.read(rb.spare(want)).await {
            Ok(0) => return Err("the peer closed the connection".into()),
            Ok(n) => rb.advance(n),
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
}

/// Refuses the other side: tells it why (best effort), logs, and fails.
async fn refuse(stream: &TcpStream, peer: &str, reason: String) -> NetError {
    let body = error_body(0, &reason);
    if let Err(e) = write_frame(stream, FrameType::ErrorResponse, body).await {
        log::debug!("could not tell {peer} why it was refused: {e}");
    }
    fail(peer, reason)
}

/// The dialer's side: sends our hello, checks the answer. Returns the
/// peer's hello and any bytes read past the handshake.
pub(crate) async fn dial(
    stream: &TcpStream,
    expect: &Expect,
    peer: &str,
) -> Result<(Hello, ReadBuf), NetError> {
    let hello = Body::from(expect.local.encode().to_vec());
    if let Err(e) = write_frame(stream, FrameType::Request, hello).await {
        return Err(fail(peer, format!("write failed: {e}")));
    }
    let mut rb = ReadBuf::new();
    let frame = read_frame(stream, &mut rb)
        .await
        .map_err(|r| fail(peer, r))?;
    let h = frame.header;
    if h.kind != KIND_HANDSHAKE || !h.frame_type.is_response() {
        return Err(refuse(
            stream,
            peer,
            format!("expected a handshake answer, got kind {}", h.kind),
        )
        .await);
    }
    if h.frame_type == FrameType::ErrorResponse {
        let (_, message) = parse_error_body(&frame.body);
        return Err(fail(peer, format!("refused by the peer: {message}")));
    }
    let theirs = match Hello::decode(&frame.body) {
        Ok(theirs) => theirs,
        Err(reason) => return Err(refuse(stream, peer, reason).await),
    };
    if let Err(reason) = expect.check(&theirs) {
        return Err(refuse(stream, peer, reason).await);
    }
    Ok((theirs, rb))
}

/// The acceptor's side: reads and checks the dialer's hello, answers with
/// ours. Returns the peer's hello and any bytes read past the handshake.
pub(crate) async fn accept(
    stream: &TcpStream,
    expect: &Expect,
    peer: &str,
) -> Result<(Hello, ReadBuf), NetError> {
    let mut rb = ReadBuf::new();
    let frame = read_frame(stream, &mut rb)
        .await
        .map_err(|r| fail(peer, r))?;
    let h = frame.header;
    if h.kind != KIND_HANDSHAKE || h.frame_type != FrameType::Request {
        let reason = format!("expected a handshake, got a frame of kind {}", h.kind);
        return Err(refuse(stream, peer, reason).await);
    }
    let theirs = match Hello::decode(&frame.body) {
        Ok(theirs) => theirs,
        Err(reason) => return Err(refuse(stream, peer, reason).await),
    };
    if let Err(reason) = expect.check(&theirs) {
        return Err(refuse(stream, peer, reason).await);
    }
    let ours = Body::from(expect.local.encode().to_vec());
    if let Err(e) = write_frame(stream, FrameType::Response, ours).await {
        return Err(fail(peer, format!("write failed: {e}")));
    }
    Ok((theirs, rb))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(node_id: u64) -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            role: Role::Node,
            shard: 0,
            cluster_id: 42,
            node_id,
        }
    }

    #[test]
    fn hello_round_trips_and_short_input_is_refused() {
        let h = hello(7);
        assert_eq!(Hello::decode(&h.encode()), Ok(h));
        assert!(Hello::decode(&h.encode()[..23]).is_err());
        let mut bad = h.encode();
        bad[2] = 9;
        assert!(Hello::decode(&bad).is_err());
    }

    #[test]
    fn each_mismatch_is_refused_with_its_reason() {
        let expect = Expect {
            local: hello(1),
            role: Role::Node,
            node_id: Some(2),
        };
        assert_eq!(expect.check(&hello(2)), Ok(()));
        let cases = [
            (
                Hello {
                    cluster_id: 43,
                    ..hello(2)
                },
                "cluster id",
            ),
            (
                Hello {
                    protocol_version: 9,
                    ..hello(2)
                },
                "protocol version",
            ),
            (
                Hello {
                    role: Role::Client,
                    ..hello(2)
                },
                "expected a Node",
            ),
            (
                Hello {
                    shard: 1,
                    ..hello(2)
                },
                "shard",
            ),
            (hello(3), "expected node 2"),
        ];
        for (theirs, why) in cases {
            let reason = expect.check(&theirs).expect_err("refused");
            assert!(reason.contains(why), "{reason} should mention {why}");
        }
        let anyone = Expect {
            node_id: None,
            ..expect
        };
        assert!(
            anyone
                .check(&hello(1))
                .expect_err("self")
                .contains("own node id")
        );
    }
}
