//! The handshake: the first frames each way on a new connection say who is
//! speaking (protocol version, cluster id, node id, shard, role) and, where
//! keys are configured, prove it (see [`crate::auth`]). A mismatch closes
//! the connection; both sides log why.
//!
//! All frames are of kind [`KIND_HANDSHAKE`]:
//!
//! 1. dialer → acceptor, request: its [`Hello`] (24 bytes), a nonce (32),
//!    and the credential name it uses (a length byte, then the name; empty
//!    for nodes);
//! 2. acceptor → dialer, response: its `Hello`, its nonce, a mode byte
//!    ([`MODE_OPEN`] or [`MODE_PROOF`]) and, with `MODE_PROOF`, its proof
//!    (32) over frames 1 and 2;
//! 3. with `MODE_PROOF` only: dialer → acceptor, request: the dialer's
//!    proof (32);
//! 4. with `MODE_PROOF` only: acceptor → dialer, response: one byte, the
//!    [`Privilege`] granted.
//!
//! Either side that refuses sends an error response of kind
//! `KIND_HANDSHAKE` with the reason (best effort) and closes, so the other
//! side logs it too. A dialer that holds a key refuses an acceptor that
//! does not ask for one: authentication is mutual or not at all.

use crate::auth::{
    ACCEPTOR_LABEL, ClientKeys, DIALER_LABEL, Key, NAME_BYTES_MAX, NONCE_LEN, PROOF_LEN, Privilege,
    nonce, prove, verify,
};
use crate::codec::{Decoder, encode_frame};
use crate::error::NetError;
use crate::frame::{Body, Frame, FrameHeader, FrameType, HEADER_LEN, KIND_HANDSHAKE};
use crate::link::Link;
use crate::readbuf::ReadBuf;
use crate::rpc::{ERROR_MESSAGE_BYTES_MAX, error_body, parse_error_body};
use bytes::Bytes;
use std::sync::Arc;

/// Largest handshake frame read (a hello, or a refusal with its reason): a
/// peer that has not said who it is cannot make us reserve more than this.
pub const HANDSHAKE_FRAME_BYTES_MAX: usize = HEADER_LEN + 2 + ERROR_MESSAGE_BYTES_MAX;

/// The protocol version this build speaks (of the transport and the
/// messages above it; bump on an incompatible change).
pub const PROTOCOL_VERSION: u16 = 2;

/// Mode byte of an acceptor that asks for no proof.
pub const MODE_OPEN: u8 = 0;
/// Mode byte of an acceptor that proves it holds the key and asks the
/// dialer to prove it too.
pub const MODE_PROOF: u8 = 1;

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

    /// Decodes a hello; a reason on bad input. Bytes past [`HELLO_LEN`] are
    /// not read (the rest of a handshake frame).
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

/// The keys a side authenticates with.
#[derive(Debug, Clone, Default)]
pub enum Keys {
    /// No authentication: every dialer is let in (as [`Privilege::Node`]
    /// on the replication port, [`Privilege::Admin`] on the service port).
    #[default]
    Open,
    /// The cluster secret (nodes, both sides).
    Cluster(Key),
    /// A dialing client's credential: a token under a name.
    Client {
        /// The name the node knows the token by.
        name: String,
        /// The token.
        key: Key,
    },
    /// The tokens a node accepts from clients.
    Clients(Arc<ClientKeys>),
}

impl Keys {
    /// The dialer's name and key.
    fn dialer(&self) -> (&str, Option<&Key>) {
        match self {
            Keys::Open | Keys::Clients(_) => ("", None),
            Keys::Cluster(key) => ("", Some(key)),
            Keys::Client { name, key } => (name, Some(key)),
        }
    }
}

/// What the acceptor decided for a dialer.
struct Grant {
    key: Key,
    privilege: Privilege,
    /// False for an unknown name: the exchange runs on a random key and
    /// fails at the dialer's proof, like a wrong token.
    known: bool,
}

fn fail(peer: &str, reason: String) -> NetError {
    log::warn!("handshake with {peer} failed: {reason}");
    NetError::Handshake {
        peer: peer.to_string(),
        reason,
    }
}

/// An authentication failure: not logged here (the caller logs it once per
/// peer address, so a prober cannot flood the log).
fn auth_failed(peer: &str, reason: String) -> NetError {
    NetError::Auth {
        peer: peer.to_string(),
        reason,
    }
}

async fn write_frame(stream: &Link, frame_type: FrameType, body: Body) -> std::io::Result<()> {
    let header = FrameHeader {
        frame_type,
        kind: KIND_HANDSHAKE,
        group_id: 0,
        request_id: 0,
    };
    let bytes = encode_frame(&header, &body).ok_or(std::io::ErrorKind::InvalidInput)?;
    stream.write_all(&bytes).await
}

/// Reads one handshake frame; bytes read past it stay in `rb`.
async fn read_frame(stream: &Link, rb: &mut ReadBuf) -> Result<Frame, String> {
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

/// Refuses the other side: tells it why (best effort), and fails with
/// `error`.
async fn refuse_with(stream: &Link, peer: &str, reason: &str, error: NetError) -> NetError {
    let body = error_body(0, reason);
    if let Err(e) = write_frame(stream, FrameType::ErrorResponse, body).await {
        log::debug!("could not tell {peer} why it was refused: {e}");
    }
    error
}

/// Refuses the other side over a mismatch: tells it why, logs, and fails.
async fn refuse(stream: &Link, peer: &str, reason: String) -> NetError {
    let error = fail(peer, reason.clone());
    refuse_with(stream, peer, &reason, error).await
}

/// Refuses the other side over authentication. The other side is told
/// only that it failed; `reason` (ours, for the log) may say more.
async fn refuse_auth(stream: &Link, peer: &str, reason: String) -> NetError {
    refuse_with(
        stream,
        peer,
        "authentication failed",
        auth_failed(peer, reason),
    )
    .await
}

/// Reads the other side's next handshake frame: its body if it is of the
/// kind and type `want`, else the reason (an error response: the other
/// side's reason, marked as such).
async fn expect_frame(
    stream: &Link,
    rb: &mut ReadBuf,
    peer: &str,
    want: FrameType,
) -> Result<Bytes, NetError> {
    let frame = read_frame(stream, rb).await.map_err(|r| fail(peer, r))?;
    let h = frame.header;
    if h.kind == KIND_HANDSHAKE && h.frame_type == FrameType::ErrorResponse {
        let (_, message) = parse_error_body(&frame.body);
        if message == "authentication failed" {
            return Err(auth_failed(peer, "refused by the peer: wrong key".into()));
        }
        return Err(fail(peer, format!("refused by the peer: {message}")));
    }
    if h.kind != KIND_HANDSHAKE || h.frame_type != want {
        let reason = format!(
            "expected a handshake {want:?}, got a {:?} of kind {}",
            h.frame_type, h.kind
        );
        return Err(refuse(stream, peer, reason).await);
    }
    Ok(frame.body)
}

/// Splits the fixed-size parts off a handshake body.
fn split_at<'a>(body: &'a [u8], len: usize, what: &str) -> Result<(&'a [u8], &'a [u8]), String> {
    if body.len() < len {
        return Err(format!("handshake {what} is cut short"));
    }
    Ok(body.split_at(len))
}

/// Decodes and checks a hello at the start of `body`.
fn checked_hello(body: &[u8], expect: &Expect) -> Result<Hello, String> {
    let theirs = Hello::decode(body)?;
    expect.check(&theirs)?;
    Ok(theirs)
}

/// The dialer's side: sends our hello, checks the answer, and proves our
/// key if the acceptor asks. Returns the peer's hello and any bytes read
/// past the handshake.
pub(crate) async fn dial(
    stream: &Link,
    expect: &Expect,
    keys: &Keys,
    peer: &str,
) -> Result<(Hello, ReadBuf), NetError> {
    let (name, key) = keys.dialer();
    if name.len() > NAME_BYTES_MAX {
        return Err(fail(
            peer,
            format!("a credential name over {NAME_BYTES_MAX} bytes"),
        ));
    }
    let mut opening = expect.local.encode().to_vec();
    opening.extend_from_slice(&nonce());
    opening.push(name.len() as u8);
    opening.extend_from_slice(name.as_bytes());
    if let Err(e) = write_frame(stream, FrameType::Request, Body::from(opening.clone())).await {
        return Err(fail(peer, format!("write failed: {e}")));
    }
    let mut rb = ReadBuf::new();
    let answer = expect_frame(stream, &mut rb, peer, FrameType::Response).await?;
    let parsed = checked_hello(&answer, expect).and_then(|theirs| {
        let (hello, rest) = split_at(&answer, HELLO_LEN, "answer")?;
        let (nonce_a, rest) = split_at(rest, NONCE_LEN, "answer")?;
        let (mode, proof) = split_at(rest, 1, "answer")?;
        Ok((theirs, hello, nonce_a, mode[0], proof))
    });
    let (theirs, hello_a, nonce_a, mode, proof_a) = match parsed {
        Ok(parts) => parts,
        Err(reason) => return Err(refuse(stream, peer, reason).await),
    };
    let transcript: [&[u8]; 3] = [&opening, hello_a, nonce_a];
    match (mode, key) {
        (MODE_OPEN, None) => Ok((theirs, rb)),
        (MODE_OPEN, Some(_)) => {
            let reason = "the peer asks for no key and we hold one: refusing a peer \
                          that cannot prove it belongs"
                .to_string();
            Err(refuse_auth(stream, peer, reason).await)
        }
        (MODE_PROOF, None) => {
            let reason = "the peer asks for a key and none is configured here".to_string();
            Err(refuse_auth(stream, peer, reason).await)
        }
        (MODE_PROOF, Some(key)) => {
            if !verify(key, ACCEPTOR_LABEL, &transcript, proof_a) {
                let reason = "the peer did not prove it holds our key (a different \
                              cluster secret, or a wrong or unknown token)"
                    .to_string();
                return Err(refuse_auth(stream, peer, reason).await);
            }
            let proof = prove(key, DIALER_LABEL, &transcript);
            if let Err(e) =
                write_frame(stream, FrameType::Request, Body::from(proof.to_vec())).await
            {
                return Err(fail(peer, format!("write failed: {e}")));
            }
            let granted = expect_frame(stream, &mut rb, peer, FrameType::Response).await?;
            let privilege = match granted[..] {
                [b] => Privilege::from_byte(b),
                _ => None,
            };
            if privilege.is_none() {
                let reason = format!("a grant of {} bytes, not a privilege", granted.len());
                return Err(refuse(stream, peer, reason).await);
            }
            Ok((theirs, rb))
        }
        (mode, _) => Err(refuse(stream, peer, format!("unknown handshake mode {mode}")).await),
    }
}

/// The acceptor's side: reads and checks the dialer's hello, answers with
/// ours, and with keys configured proves ours and checks the dialer's
/// proof. Returns the peer's hello, what it may do, and any bytes read past
/// the handshake.
pub(crate) async fn accept(
    stream: &Link,
    expect: &Expect,
    keys: &Keys,
    peer: &str,
) -> Result<(Hello, Privilege, ReadBuf), NetError> {
    let mut rb = ReadBuf::new();
    let opening = expect_frame(stream, &mut rb, peer, FrameType::Request).await?;
    let parsed = checked_hello(&opening, expect).and_then(|theirs| {
        let (_, rest) = split_at(&opening, HELLO_LEN + NONCE_LEN, "opening")?;
        let (len, name) = split_at(rest, 1, "opening")?;
        let len = usize::from(len[0]);
        if len > NAME_BYTES_MAX || name.len() != len {
            return Err(format!("a credential name of {} bytes", name.len()));
        }
        let name = std::str::from_utf8(name).map_err(|_| "a credential name not in UTF-8")?;
        Ok((theirs, name.to_string()))
    });
    let (theirs, name) = match parsed {
        Ok(parts) => parts,
        Err(reason) => return Err(refuse(stream, peer, reason).await),
    };
    // Under TLS a node's certificate must name the node it claims to be.
    if theirs.role == Role::Node
        && let Link::Tls(_) = stream
        && let Err(why) = crate::tls::check_peer_node(
            stream.peer_certificates(),
            expect.local.cluster_id,
            theirs.node_id,
        )
    {
        let reason = format!("it claims to be node {}, but {why}", theirs.node_id);
        return Err(refuse_auth(stream, peer, reason).await);
    }
    let grant = match keys {
        Keys::Open => None,
        Keys::Cluster(key) => Some(Grant {
            key: key.clone(),
            privilege: Privilege::Node,
            known: true,
        }),
        Keys::Clients(clients) => {
            let (key, privilege, known) = clients.lookup(&name);
            Some(Grant {
                key,
                privilege,
                known,
            })
        }
        Keys::Client { .. } => {
            return Err(fail(peer, "a client credential cannot accept".into()));
        }
    };
    let hello_a = expect.local.encode();
    let nonce_a = nonce();
    let mut answer = hello_a.to_vec();
    answer.extend_from_slice(&nonce_a);
    let transcript: [&[u8]; 3] = [&opening, &hello_a, &nonce_a];
    let Some(grant) = grant else {
        answer.push(MODE_OPEN);
        if let Err(e) = write_frame(stream, FrameType::Response, Body::from(answer)).await {
            return Err(fail(peer, format!("write failed: {e}")));
        }
        let open = match theirs.role {
            Role::Node => Privilege::Node,
            Role::Client => Privilege::Admin,
        };
        return Ok((theirs, open, rb));
    };
    answer.push(MODE_PROOF);
    answer.extend_from_slice(&prove(&grant.key, ACCEPTOR_LABEL, &transcript));
    if let Err(e) = write_frame(stream, FrameType::Response, Body::from(answer)).await {
        return Err(fail(peer, format!("write failed: {e}")));
    }
    let proof = expect_frame(stream, &mut rb, peer, FrameType::Request).await?;
    if proof.len() != PROOF_LEN {
        // Not a proof at all (a frame repeated on the way, say): a broken
        // exchange, not a wrong key.
        let reason = format!("a proof of {} bytes, not {PROOF_LEN}", proof.len());
        return Err(refuse(stream, peer, reason).await);
    }
    let proved = verify(&grant.key, DIALER_LABEL, &transcript, &proof) && grant.known;
    if !proved {
        let reason = if grant.known {
            format!("a wrong key (name {name:?})")
        } else {
            format!("an unknown credential name {name:?}")
        };
        return Err(refuse_auth(stream, peer, reason).await);
    }
    let granted = Body::from(vec![grant.privilege.to_byte()]);
    if let Err(e) = write_frame(stream, FrameType::Response, granted).await {
        return Err(fail(peer, format!("write failed: {e}")));
    }
    Ok((theirs, grant.privilege, rb))
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
