//! The client service protocol: what a client (or a node forwarding for a
//! client) sends to a node's service port to reach a group, and what it gets
//! back. Carried in sampan-net frames (which hold the group id, a request id
//! and the CRCs); this module encodes the bodies by hand.
//!
//! Request body: `version u8, op u8, route u8, reserved u8, payload…`.
//! Reply body: `version u8, status u8`, then the result bytes (status 0) or
//! an error's fields (status = the error's code). Decoders are total.

use crate::codec::{DecodeError, Reader, put_bytes};
use crate::group::{GroupError, GroupStatus, SnapshotSaved, StorageFault};
use bytes::{BufMut, Bytes, BytesMut};
use sampan_raft::Role;
use std::collections::BTreeSet;
use std::net::SocketAddr;

/// Frame kinds of the service protocol.
pub mod kind {
    /// A client's request on a service port.
    pub const CLIENT: u16 = 0x0200;
    /// A request a node forwards to the leader over the replication link.
    pub const FORWARD: u16 = 0x0201;
}

/// Format version of request and reply bodies.
pub const VERSION: u8 = 1;

/// What a request asks of the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Propose a command; the reply is the state machine's result.
    Propose,
    /// A linearizable read; the reply is the state machine's answer.
    Read,
    /// The replica's status (role, term, leader, indexes).
    Status,
    /// Write a snapshot on this replica now; the reply is
    /// [`encode_saved`]'s.
    SnapshotNow,
    /// Change the group's membership (leader): the payload is
    /// [`encode_members`]'s.
    ChangeMembers,
    /// Hand leadership to a voter (leader): the payload is its id (u64).
    TransferLeader,
    /// Start this node's replica of a group: the payload is the
    /// [`crate::config::GroupConfig`] ([`encode_group_config`]).
    AddGroup,
    /// Stop this node's replica of the group and delete its files.
    RemoveGroup,
    /// Stop this node's replica of the group; its files stay (a later
    /// [`Op::AddGroup`] recovers it).
    StopGroup,
    /// The groups this node runs (the request's group is ignored): the
    /// reply is [`encode_group_ids`]'s.
    ListGroups,
    /// The nodes this node knows, with their addresses (its `servers`,
    /// changed by [`Op::SetNodes`] and [`Op::ForgetNode`]; the request's
    /// group is ignored): the reply is [`encode_nodes`]'s.
    ListNodes,
    /// Learn (or update) nodes' addresses, durably, and connect to them:
    /// the payload is [`encode_nodes`]'s.
    SetNodes,
    /// Forget a node that no group here has as a member, durably, and
    /// disconnect from it: the payload is its id (u64).
    ForgetNode,
    /// A piece of this replica's newest (or a named) snapshot, for a
    /// backup: the payload is [`SnapshotRead::encode`]'s, the reply
    /// [`SnapshotPiece::encode`]'s. Served by any replica, never
    /// forwarded.
    ReadSnapshot,
}

impl Op {
    /// Whether the operation changes the cluster (groups, membership,
    /// leadership, snapshots) and so needs an admin credential on a node
    /// whose service port has credentials.
    pub fn is_admin(self) -> bool {
        match self {
            Op::Propose | Op::Read | Op::Status | Op::ListGroups | Op::ListNodes => false,
            Op::SnapshotNow
            | Op::ChangeMembers
            | Op::TransferLeader
            | Op::AddGroup
            | Op::RemoveGroup
            | Op::StopGroup
            | Op::SetNodes
            | Op::ForgetNode
            // The whole state, every key and value.
            | Op::ReadSnapshot => true,
        }
    }

    fn tag(self) -> u8 {
        match self {
            Op::Propose => 1,
            Op::Read => 2,
            Op::Status => 3,
            Op::SnapshotNow => 4,
            Op::ChangeMembers => 5,
            Op::TransferLeader => 6,
            Op::AddGroup => 7,
            Op::RemoveGroup => 8,
            Op::StopGroup => 9,
            Op::ListGroups => 10,
            Op::ListNodes => 11,
            Op::SetNodes => 12,
            Op::ForgetNode => 13,
            Op::ReadSnapshot => 14,
        }
    }

    fn from_tag(tag: u8) -> Option<Op> {
        Some(match tag {
            1 => Op::Propose,
            2 => Op::Read,
            3 => Op::Status,
            4 => Op::SnapshotNow,
            5 => Op::ChangeMembers,
            6 => Op::TransferLeader,
            7 => Op::AddGroup,
            8 => Op::RemoveGroup,
            9 => Op::StopGroup,
            10 => Op::ListGroups,
            11 => Op::ListNodes,
            12 => Op::SetNodes,
            13 => Op::ForgetNode,
            14 => Op::ReadSnapshot,
            _ => return None,
        })
    }
}

/// The payload of [`Op::ChangeMembers`]: the target voters and learners,
/// and, for a conditional change, where the membership it was computed
/// from was set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembersChange {
    /// The target voters.
    pub voters: BTreeSet<u64>,
    /// The target learners (observers).
    pub learners: BTreeSet<u64>,
    /// Refuse unless the membership in force is the one set at this
    /// (index, term) ([`GroupStatus::membership_index`] and
    /// `membership_term`) or already the target.
    pub expected: Option<(u64, u64)>,
}

/// Encodes a [`MembersChange`]: version, voters, learners, then a flag byte
/// and the expected (index, term) when conditional (a payload that ends
/// after the learners is unconditional).
pub fn encode_members(change: &MembersChange) -> Bytes {
    let sets = change.voters.len() + change.learners.len();
    let mut b = BytesMut::with_capacity(26 + 8 * sets);
    b.put_u8(VERSION);
    for ids in [&change.voters, &change.learners] {
        b.put_u32_le(u32::try_from(ids.len()).unwrap_or(u32::MAX));
        for id in ids {
            b.put_u64_le(*id);
        }
    }
    if let Some((index, term)) = change.expected {
        b.put_u8(1);
        b.put_u64_le(index);
        b.put_u64_le(term);
    }
    b.freeze()
}

/// Decodes [`encode_members`]'s bytes.
pub fn decode_members(body: Bytes) -> Result<MembersChange, DecodeError> {
    let mut r = Reader::new(body);
    version(&mut r, "members")?;
    let voters = ids(&mut r, "voters")?.into_iter().collect();
    let learners = ids(&mut r, "learners")?.into_iter().collect();
    let expected = if r.remaining() == 0 {
        None
    } else {
        match r.u8("expected flag")? {
            1 => Some((r.u64("expected index")?, r.u64("expected term")?)),
            flag => {
                return Err(DecodeError::Invalid {
                    what: "expected flag",
                    detail: format!("{flag} (1 or absent)"),
                });
            }
        }
    };
    r.finish("members")?;
    Ok(MembersChange {
        voters,
        learners,
        expected,
    })
}

/// The reply of [`Op::SnapshotNow`].
pub fn encode_saved(s: &SnapshotSaved) -> Bytes {
    let mut b = BytesMut::with_capacity(41);
    b.put_u8(VERSION);
    put_saved(&mut b, s);
    b.freeze()
}

/// A [`SnapshotSaved`]'s fields (also part of a [`GroupStatus`]).
fn put_saved(b: &mut BytesMut, s: &SnapshotSaved) {
    for v in [s.index, s.term, s.bytes, s.write_ms, s.applied_meanwhile] {
        b.put_u64_le(v);
    }
}

fn read_saved(r: &mut Reader) -> Result<SnapshotSaved, DecodeError> {
    Ok(SnapshotSaved {
        index: r.u64("index")?,
        term: r.u64("term")?,
        bytes: r.u64("bytes")?,
        write_ms: r.u64("write ms")?,
        applied_meanwhile: r.u64("applied meanwhile")?,
    })
}

/// Decodes [`encode_saved`]'s bytes.
pub fn decode_saved(body: Bytes) -> Result<SnapshotSaved, DecodeError> {
    let mut r = Reader::new(body);
    version(&mut r, "snapshot saved")?;
    let s = read_saved(&mut r)?;
    r.finish("snapshot saved")?;
    Ok(s)
}

/// The reply to [`Op::ListGroups`]: a version byte, a count (u32) and the
/// group ids (u64 each), little-endian.
pub fn encode_group_ids(ids: &[u64]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + 8 * ids.len());
    b.put_u8(VERSION);
    b.put_u32_le(u32::try_from(ids.len()).unwrap_or(u32::MAX));
    for id in ids {
        b.put_u64_le(*id);
    }
    b.freeze()
}

/// Decodes [`encode_group_ids`]'s bytes.
pub fn decode_group_ids(body: Bytes) -> Result<Vec<u64>, DecodeError> {
    let mut r = Reader::new(body);
    version(&mut r, "group ids")?;
    let list = ids(&mut r, "group ids")?;
    r.finish("group ids")?;
    Ok(list)
}

/// A node's addresses as its `servers` entry gives them: `host:port`,
/// the host an IP address or a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddrs {
    /// The node's id.
    pub node: u64,
    /// Its replication address (its shard 0's; shard i listens on the
    /// port + i).
    pub replicate: String,
    /// Its service address.
    pub service: String,
}

/// Longest address text in a [`NodeAddrs`] (a 253-byte host name, ':' and
/// a port).
pub const NODE_ADDR_BYTES_MAX: usize = 260;

/// The payload of [`Op::SetNodes`] and the reply to [`Op::ListNodes`]: a
/// version byte, a count (u32), then per node its id (u64) and its two
/// addresses (u32 length, UTF-8).
pub fn encode_nodes(nodes: &[NodeAddrs]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + nodes.len() * 48);
    b.put_u8(VERSION);
    b.put_u32_le(u32::try_from(nodes.len()).unwrap_or(u32::MAX));
    for n in nodes {
        b.put_u64_le(n.node);
        put_bytes(&mut b, n.replicate.as_bytes());
        put_bytes(&mut b, n.service.as_bytes());
    }
    b.freeze()
}

/// Decodes [`encode_nodes`]'s bytes; an address that is not UTF-8 or is
/// longer than [`NODE_ADDR_BYTES_MAX`] is an error.
pub fn decode_nodes(body: Bytes) -> Result<Vec<NodeAddrs>, DecodeError> {
    const WHAT: &str = "nodes";
    let mut r = Reader::new(body);
    version(&mut r, WHAT)?;
    // Each takes at least an id and two lengths.
    let n = r.count(WHAT, 16)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let node = r.u64(WHAT)?;
        let mut text = || -> Result<String, DecodeError> {
            let b = r.bytes(WHAT)?;
            if b.len() > NODE_ADDR_BYTES_MAX {
                return Err(DecodeError::Invalid {
                    what: WHAT,
                    detail: format!("an address of {} bytes", b.len()),
                });
            }
            String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Invalid {
                what: WHAT,
                detail: "an address that is not UTF-8".into(),
            })
        };
        let replicate = text()?;
        let service = text()?;
        out.push(NodeAddrs {
            node,
            replicate,
            service,
        });
    }
    r.finish(WHAT)?;
    Ok(out)
}

/// The payload of [`Op::AddGroup`]: a version byte and the config as
/// postcard.
pub fn encode_group_config(g: &crate::config::GroupConfig) -> Bytes {
    let mut b = vec![VERSION];
    // A plain struct of strings and numbers: postcard cannot fail on it.
    b.extend(postcard::to_allocvec(g).unwrap_or_default());
    Bytes::from(b)
}

/// Decodes [`encode_group_config`]'s bytes.
pub fn decode_group_config(body: Bytes) -> Result<crate::config::GroupConfig, DecodeError> {
    let mut r = Reader::new(body);
    version(&mut r, "group config")?;
    let body = r.rest();
    let (g, extra) = postcard::take_from_bytes(&body).map_err(|e| DecodeError::Invalid {
        what: "group config",
        detail: e.to_string(),
    })?;
    // Like every other decoder here: bytes after the value are an error,
    // not something to ignore.
    match extra.len() {
        0 => Ok(g),
        extra => Err(DecodeError::Trailing {
            what: "group config",
            extra,
        }),
    }
}

/// Most data bytes one [`Op::ReadSnapshot`] reply carries.
pub const SNAPSHOT_PIECE_BYTES_MAX: u32 = 1 << 20;

/// The payload of [`Op::ReadSnapshot`]: which snapshot, and which bytes
/// of its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotRead {
    /// The snapshot's (last index, last term); `None`: the newest one.
    pub at: Option<(u64, u64)>,
    /// The first data byte wanted.
    pub offset: u64,
    /// Most data bytes wanted (the node sends at most
    /// [`SNAPSHOT_PIECE_BYTES_MAX`]).
    pub bytes_max: u32,
}

impl SnapshotRead {
    /// Version, a flag byte (1: `at` follows), `at`, offset, bytes_max.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(30);
        b.put_u8(VERSION);
        match self.at {
            Some((index, term)) => {
                b.put_u8(1);
                b.put_u64_le(index);
                b.put_u64_le(term);
            }
            None => b.put_u8(0),
        }
        b.put_u64_le(self.offset);
        b.put_u32_le(self.bytes_max);
        b.freeze()
    }

    /// Decodes [`SnapshotRead::encode`]'s bytes.
    pub fn decode(body: Bytes) -> Result<SnapshotRead, DecodeError> {
        const WHAT: &str = "snapshot read";
        let mut r = Reader::new(body);
        version(&mut r, WHAT)?;
        let at = match r.u8(WHAT)? {
            0 => None,
            1 => Some((r.u64(WHAT)?, r.u64(WHAT)?)),
            tag => return Err(unknown("snapshot read flag", tag, r.offset())),
        };
        let read = SnapshotRead {
            at,
            offset: r.u64(WHAT)?,
            bytes_max: r.u32(WHAT)?,
        };
        r.finish(WHAT)?;
        Ok(read)
    }
}

/// The reply to [`Op::ReadSnapshot`]: the snapshot's description, the
/// group's config on the node that answered, and a piece of the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPiece {
    /// The last log index the snapshot covers.
    pub index: u64,
    /// The term of that entry.
    pub term: u64,
    /// The data's length in bytes.
    pub size: u64,
    /// CRC32C of the whole data.
    pub data_crc: u32,
    /// The engine's description of the snapshot (index, term,
    /// membership), as the snapshot store keeps it.
    pub meta: Bytes,
    /// The group's config on the node ([`encode_group_config`]'s bytes).
    pub group_config: Bytes,
    /// Where `data` starts in the snapshot's data.
    pub offset: u64,
    /// The bytes from `offset` (empty at the end).
    pub data: Bytes,
}

impl SnapshotPiece {
    /// Encodes the piece: version, index, term, size, data CRC, meta,
    /// group config, offset, data (lengths as u32).
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(
            48 + self.meta.len() + self.group_config.len() + self.data.len(),
        );
        b.put_u8(VERSION);
        for v in [self.index, self.term, self.size] {
            b.put_u64_le(v);
        }
        b.put_u32_le(self.data_crc);
        put_bytes(&mut b, &self.meta);
        put_bytes(&mut b, &self.group_config);
        b.put_u64_le(self.offset);
        put_bytes(&mut b, &self.data);
        b.freeze()
    }

    /// Decodes [`SnapshotPiece::encode`]'s bytes; the data is a slice of
    /// `body`.
    pub fn decode(body: Bytes) -> Result<SnapshotPiece, DecodeError> {
        const WHAT: &str = "snapshot piece";
        let mut r = Reader::new(body);
        version(&mut r, WHAT)?;
        let piece = SnapshotPiece {
            index: r.u64(WHAT)?,
            term: r.u64(WHAT)?,
            size: r.u64(WHAT)?,
            data_crc: r.u32(WHAT)?,
            meta: r.bytes(WHAT)?,
            group_config: r.bytes(WHAT)?,
            offset: r.u64(WHAT)?,
            data: r.bytes(WHAT)?,
        };
        r.finish(WHAT)?;
        if piece.data.len() > SNAPSHOT_PIECE_BYTES_MAX as usize
            || piece.offset.saturating_add(piece.data.len() as u64) > piece.size
        {
            return Err(DecodeError::Invalid {
                what: WHAT,
                detail: format!(
                    "{} bytes at offset {} of a {}-byte snapshot",
                    piece.data.len(),
                    piece.offset,
                    piece.size
                ),
            });
        }
        Ok(piece)
    }
}

/// What a replica that is not the leader does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Route {
    /// Answer [`ServerError::NotLeader`] with the leader's id and address.
    Redirect,
    /// Pass the request to the leader and relay its answer (the default).
    #[default]
    Forward,
    /// A read served by this node's replica at what it has applied, with
    /// no ReadIndex round: possibly stale, never forwarded (a follower
    /// read; also how a test compares the replicas' states).
    Local,
}

/// A request to one group (the group id travels in the frame header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequest {
    /// What to do.
    pub op: Op,
    /// Redirect or forward, on a non-leader.
    pub route: Route,
    /// The command or query (empty for status).
    pub payload: Bytes,
}

impl ServiceRequest {
    /// Encodes the body as two pieces: the 4-byte head and the payload.
    pub fn encode(&self) -> Vec<Bytes> {
        let op = self.op.tag();
        let route = match self.route {
            Route::Redirect => 0,
            Route::Forward => 1,
            Route::Local => 2,
        };
        vec![
            Bytes::copy_from_slice(&[VERSION, op, route, 0]),
            self.payload.clone(),
        ]
    }

    /// Decodes a body; the payload is a slice of it.
    pub fn decode(body: Bytes) -> Result<ServiceRequest, DecodeError> {
        let mut r = Reader::new(body);
        version(&mut r, "service request")?;
        let tag = r.u8("op")?;
        let op = Op::from_tag(tag).ok_or_else(|| unknown("op", tag, r.offset()))?;
        let route = match r.u8("route")? {
            0 => Route::Redirect,
            1 => Route::Forward,
            2 => Route::Local,
            tag => return Err(unknown("route", tag, r.offset())),
        };
        r.u8("reserved")?;
        Ok(ServiceRequest {
            op,
            route,
            payload: r.rest(),
        })
    }
}

fn version(r: &mut Reader, what: &'static str) -> Result<(), DecodeError> {
    match r.u8(what)? {
        VERSION => Ok(()),
        version => Err(DecodeError::Version { what, version }),
    }
}

fn unknown(what: &'static str, tag: u8, offset: usize) -> DecodeError {
    DecodeError::UnknownTag {
        what,
        tag,
        offset: offset.saturating_sub(1),
    }
}

/// Why a request to a server's group did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    /// This node does not lead the group. `leader` and its service address
    /// are given when known: retry there.
    #[error("group {group}: node {node} is not the leader (leader: {leader:?} at {addr:?})")]
    NotLeader {
        /// The group.
        group: u64,
        /// The node that answered.
        node: u64,
        /// The leader's node id, if known.
        leader: Option<u64>,
        /// The leader's service address, if known.
        addr: Option<SocketAddr>,
    },
    /// The node has no replica of the group.
    #[error("node {node} has no group {group}")]
    NoSuchGroup {
        /// The group asked for.
        group: u64,
        /// The node that answered.
        node: u64,
    },
    /// The group answered with an error (lost to a leader change, busy,
    /// stopped, storage failure, refused, read failed).
    #[error(transparent)]
    Group(#[from] GroupError),
    /// The request was not sent to the node that should serve it (no
    /// connection to the leader to forward to): it did not apply.
    #[error("group {group}: node {node} unreachable: {reason}")]
    Unreachable {
        /// The group.
        group: u64,
        /// The node that could not be reached.
        node: u64,
        /// Why.
        reason: String,
    },
    /// The node is shutting down.
    #[error("node {node} is shutting down")]
    ShuttingDown {
        /// The node.
        node: u64,
    },
    /// The connection's credential does not allow the operation (an admin
    /// operation from a plain client): nothing was done.
    #[error("node {node}: permission denied: {reason}")]
    Denied {
        /// The node that refused.
        node: u64,
        /// What was asked and what the connection may do.
        reason: String,
    },
    /// The request or its reply was malformed.
    #[error("bad request or reply: {reason}")]
    BadMessage {
        /// What was wrong.
        reason: String,
    },
    /// The request may have reached the node that serves it, but no answer
    /// came back (the connection closed, the time ran out): whether it
    /// applied is unknown. Under an exactly-once session a retry tells.
    #[error("group {group}: node {node}: outcome unknown: {reason}")]
    Uncertain {
        /// The group.
        group: u64,
        /// The node that was asked.
        node: u64,
        /// What happened.
        reason: String,
    },
}

impl ServerError {
    /// Whether retrying the same request elsewhere or later may succeed and
    /// is safe without a session: the request did not apply (a refusal, or
    /// never sent), or applying it again is harmless for a read. An
    /// [`ServerError::Uncertain`] answer is retried only by a sender whose
    /// request carries an exactly-once session (see [`Self::is_definite`]).
    pub fn is_retryable(&self) -> bool {
        match self {
            ServerError::NotLeader { .. }
            | ServerError::Unreachable { .. }
            | ServerError::ShuttingDown { .. } => true,
            ServerError::Group(g) => matches!(
                g,
                GroupError::Lost { .. }
                    | GroupError::Busy { .. }
                    | GroupError::NotLeader { .. }
                    | GroupError::Stopped { .. }
            ),
            ServerError::NoSuchGroup { .. }
            | ServerError::Denied { .. }
            | ServerError::BadMessage { .. }
            | ServerError::Uncertain { .. } => false,
        }
    }

    /// Whether the error means the request surely did not and will not
    /// apply. `false`: it may have applied, or may still; only a retry
    /// under the same exactly-once session can tell.
    pub fn is_definite(&self) -> bool {
        match self {
            ServerError::NotLeader { .. }
            | ServerError::NoSuchGroup { .. }
            | ServerError::Denied { .. }
            | ServerError::BadMessage { .. } => true,
            ServerError::Group(g) => g.is_definite(),
            ServerError::Unreachable { .. }
            | ServerError::ShuttingDown { .. }
            | ServerError::Uncertain { .. } => false,
        }
    }
}

fn put_str(out: &mut BytesMut, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn get_str(r: &mut Reader, what: &'static str) -> Result<String, DecodeError> {
    let b = r.bytes(what)?;
    String::from_utf8(b.to_vec()).map_err(|e| DecodeError::Invalid {
        what,
        detail: e.to_string(),
    })
}

fn opt_id(id: u64) -> Option<u64> {
    (id != 0).then_some(id)
}

/// Encodes a reply body: the result, or the error.
pub fn encode_reply(reply: &Result<Bytes, ServerError>) -> Vec<Bytes> {
    let mut head = BytesMut::with_capacity(32);
    head.put_u8(VERSION);
    let group_error = |head: &mut BytesMut, code: u8, group: u64| {
        head.put_u8(code);
        head.put_u64_le(group);
    };
    match reply {
        Ok(result) => {
            head.put_u8(0);
            return vec![head.freeze(), result.clone()];
        }
        Err(ServerError::NotLeader {
            group,
            node,
            leader,
            addr,
        }) => {
            group_error(&mut head, 1, *group);
            head.put_u64_le(*node);
            head.put_u64_le(leader.unwrap_or(0));
            put_str(&mut head, &addr.map(|a| a.to_string()).unwrap_or_default());
        }
        Err(ServerError::NoSuchGroup { group, node }) => {
            group_error(&mut head, 2, *group);
            head.put_u64_le(*node);
        }
        Err(ServerError::Unreachable {
            group,
            node,
            reason,
        }) => {
            group_error(&mut head, 3, *group);
            head.put_u64_le(*node);
            put_str(&mut head, reason);
        }
        Err(ServerError::ShuttingDown { node }) => {
            group_error(&mut head, 4, 0);
            head.put_u64_le(*node);
        }
        Err(ServerError::BadMessage { reason }) => {
            group_error(&mut head, 5, 0);
            put_str(&mut head, reason);
        }
        Err(ServerError::Denied { node, reason }) => {
            group_error(&mut head, 7, 0);
            head.put_u64_le(*node);
            put_str(&mut head, reason);
        }
        Err(ServerError::Uncertain {
            group,
            node,
            reason,
        }) => {
            group_error(&mut head, 6, *group);
            head.put_u64_le(*node);
            put_str(&mut head, reason);
        }
        Err(ServerError::Group(g)) => match g {
            GroupError::NotLeader { group, leader } => {
                group_error(&mut head, 10, *group);
                head.put_u64_le(leader.unwrap_or(0));
            }
            GroupError::Lost { group, index } => {
                group_error(&mut head, 11, *group);
                head.put_u64_le(*index);
            }
            GroupError::Stopped { group } => group_error(&mut head, 12, *group),
            GroupError::Busy { group } => group_error(&mut head, 13, *group),
            GroupError::Storage {
                group,
                fault,
                reason,
            } => {
                group_error(&mut head, 14, *group);
                put_str(&mut head, reason);
                // After the reason: older nodes end there.
                head.put_u8(fault.tag());
            }
            GroupError::Refused { group, reason } => {
                group_error(&mut head, 15, *group);
                put_str(&mut head, reason);
            }
            GroupError::Read { group, reason } => {
                group_error(&mut head, 16, *group);
                put_str(&mut head, reason);
            }
            GroupError::Uncertain {
                group,
                index,
                reason,
            } => {
                group_error(&mut head, 17, *group);
                head.put_u64_le(*index);
                put_str(&mut head, reason);
            }
            GroupError::Halted { group, reason } => {
                group_error(&mut head, 18, *group);
                put_str(&mut head, reason);
            }
        },
    }
    vec![head.freeze()]
}

/// Decodes a reply body.
pub fn decode_reply(body: Bytes) -> Result<Result<Bytes, ServerError>, DecodeError> {
    let mut r = Reader::new(body);
    version(&mut r, "service reply")?;
    let code = r.u8("status")?;
    if code == 0 {
        return Ok(Ok(r.rest()));
    }
    let group = r.u64("group")?;
    let err = match code {
        1 => {
            let node = r.u64("node")?;
            let leader = opt_id(r.u64("leader")?);
            let addr = get_str(&mut r, "leader address")?;
            let addr = if addr.is_empty() {
                None
            } else {
                Some(addr.parse().map_err(|e| DecodeError::Invalid {
                    what: "leader address",
                    detail: format!("'{addr}': {e}"),
                })?)
            };
            ServerError::NotLeader {
                group,
                node,
                leader,
                addr,
            }
        }
        2 => ServerError::NoSuchGroup {
            group,
            node: r.u64("node")?,
        },
        3 => ServerError::Unreachable {
            group,
            node: r.u64("node")?,
            reason: get_str(&mut r, "reason")?,
        },
        4 => ServerError::ShuttingDown {
            node: r.u64("node")?,
        },
        5 => ServerError::BadMessage {
            reason: get_str(&mut r, "reason")?,
        },
        6 => ServerError::Uncertain {
            group,
            node: r.u64("node")?,
            reason: get_str(&mut r, "reason")?,
        },
        7 => ServerError::Denied {
            node: r.u64("node")?,
            reason: get_str(&mut r, "reason")?,
        },
        10 => GroupError::NotLeader {
            group,
            leader: opt_id(r.u64("leader")?),
        }
        .into(),
        11 => GroupError::Lost {
            group,
            index: r.u64("index")?,
        }
        .into(),
        12 => GroupError::Stopped { group }.into(),
        13 => GroupError::Busy { group }.into(),
        14 => {
            let reason = get_str(&mut r, "reason")?;
            let fault = if r.remaining() > 0 {
                StorageFault::from_tag(r.u8("storage fault")?)
            } else {
                StorageFault::Other
            };
            GroupError::Storage {
                group,
                fault,
                reason,
            }
            .into()
        }
        15 => GroupError::Refused {
            group,
            reason: get_str(&mut r, "reason")?,
        }
        .into(),
        16 => GroupError::Read {
            group,
            reason: get_str(&mut r, "reason")?,
        }
        .into(),
        17 => GroupError::Uncertain {
            group,
            index: r.u64("index")?,
            reason: get_str(&mut r, "reason")?,
        }
        .into(),
        18 => GroupError::Halted {
            group,
            reason: get_str(&mut r, "reason")?,
        }
        .into(),
        tag => return Err(unknown("reply status", tag, 2)),
    };
    r.finish("service reply")?;
    Ok(Err(err))
}

/// Encodes a [`GroupStatus`] (the result of [`Op::Status`]).
pub fn encode_status(s: &GroupStatus) -> Bytes {
    let mut b = BytesMut::with_capacity(75);
    b.put_u8(VERSION);
    b.put_u64_le(s.group);
    b.put_u8(match s.role {
        Role::Follower => 0,
        Role::PreCandidate => 1,
        Role::Candidate => 2,
        Role::Leader => 3,
    });
    b.put_u64_le(s.term);
    b.put_u64_le(s.leader.unwrap_or(0));
    b.put_u64_le(s.index_commit);
    b.put_u64_le(s.index_last);
    b.put_u64_le(s.index_applied);
    b.put_u8(u8::from(s.hibernating));
    b.put_u64_le(s.node);
    for ids in [&s.voters, &s.learners] {
        b.put_u32_le(u32::try_from(ids.len()).unwrap_or(u32::MAX));
        for id in ids {
            b.put_u64_le(*id);
        }
    }
    b.put_u64_le(s.snapshot_index);
    b.put_u64_le(s.snapshot_term);
    b.put_u64_le(s.membership_index);
    b.put_u64_le(s.membership_term);
    b.put_u32_le(u32::try_from(s.voters_outgoing.len()).unwrap_or(u32::MAX));
    for id in &s.voters_outgoing {
        b.put_u64_le(*id);
    }
    b.put_u32_le(u32::try_from(s.matched.len()).unwrap_or(u32::MAX));
    for (id, index) in &s.matched {
        b.put_u64_le(*id);
        b.put_u64_le(*index);
    }
    put_opt_u64(&mut b, s.leader_contact_ms);
    b.put_u64_le(s.log_bytes);
    match &s.snapshot_saved {
        Some(saved) => {
            b.put_u8(1);
            put_saved(&mut b, saved);
        }
        None => b.put_u8(0),
    }
    put_opt_u64(&mut b, s.keys);
    put_opt_u64(&mut b, s.sessions);
    b.freeze()
}

/// A flag byte, then the value if there is one.
fn put_opt_u64(b: &mut BytesMut, v: Option<u64>) {
    match v {
        Some(v) => {
            b.put_u8(1);
            b.put_u64_le(v);
        }
        None => b.put_u8(0),
    }
}

fn opt_u64(r: &mut Reader, what: &'static str) -> Result<Option<u64>, DecodeError> {
    Ok(if r.bool(what)? {
        Some(r.u64(what)?)
    } else {
        None
    })
}

fn ids(r: &mut Reader, what: &'static str) -> Result<Vec<u64>, DecodeError> {
    let n = r.count(what, 8)?;
    (0..n).map(|_| r.u64(what)).collect()
}

/// Decodes a [`GroupStatus`].
pub fn decode_status(body: Bytes) -> Result<GroupStatus, DecodeError> {
    let mut r = Reader::new(body);
    version(&mut r, "group status")?;
    let group = r.u64("group")?;
    let role = match r.u8("role")? {
        0 => Role::Follower,
        1 => Role::PreCandidate,
        2 => Role::Candidate,
        3 => Role::Leader,
        tag => return Err(unknown("role", tag, r.offset())),
    };
    let mut s = GroupStatus {
        group,
        role,
        term: r.u64("term")?,
        leader: opt_id(r.u64("leader")?),
        index_commit: r.u64("commit index")?,
        index_last: r.u64("last index")?,
        index_applied: r.u64("applied index")?,
        hibernating: r.bool("hibernating")?,
        node: r.u64("node")?,
        voters: ids(&mut r, "voters")?,
        learners: ids(&mut r, "learners")?,
        snapshot_index: r.u64("snapshot index")?,
        snapshot_term: r.u64("snapshot term")?,
        membership_index: 0,
        membership_term: 0,
        voters_outgoing: Vec::new(),
        matched: Vec::new(),
        leader_contact_ms: None,
        log_bytes: 0,
        snapshot_saved: None,
        keys: None,
        sessions: None,
    };
    // Nodes before conditional membership changes end here.
    if r.remaining() > 0 {
        s.membership_index = r.u64("membership index")?;
        s.membership_term = r.u64("membership term")?;
    }
    // Nodes before `voters_outgoing` end here (and report the joint
    // configuration's voters together in `voters`).
    if r.remaining() > 0 {
        s.voters_outgoing = ids(&mut r, "outgoing voters")?;
    }
    // Nodes before `matched` end here.
    if r.remaining() > 0 {
        let n = r.count("matched", 16)?;
        for _ in 0..n {
            s.matched
                .push((r.u64("matched node")?, r.u64("matched index")?));
        }
    }
    // Nodes before `leader_contact_ms` end here.
    if r.remaining() > 0 {
        s.leader_contact_ms = opt_u64(&mut r, "leader contact")?;
    }
    // Nodes before `log_bytes` end here.
    if r.remaining() > 0 {
        s.log_bytes = r.u64("log bytes")?;
        if r.bool("snapshot saved")? {
            s.snapshot_saved = Some(read_saved(&mut r)?);
        }
        s.keys = opt_u64(&mut r, "keys")?;
        s.sessions = opt_u64(&mut r, "sessions")?;
    }
    r.finish("group status")?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(pieces: Vec<Bytes>) -> Bytes {
        pieces.concat().into()
    }

    #[test]
    fn requests_replies_and_statuses_round_trip() {
        for op in [Op::Propose, Op::Read, Op::Status] {
            for route in [Route::Redirect, Route::Forward] {
                let req = ServiceRequest {
                    op,
                    route,
                    payload: Bytes::from_static(b"cmd"),
                };
                assert_eq!(ServiceRequest::decode(join(req.encode())), Ok(req));
            }
        }
        let replies: Vec<Result<Bytes, ServerError>> = vec![
            Ok(Bytes::from_static(b"result")),
            Ok(Bytes::new()),
            Err(ServerError::NotLeader {
                group: 3,
                node: 1,
                leader: Some(2),
                addr: Some("127.0.0.1:5002".parse().expect("addr")),
            }),
            Err(ServerError::NotLeader {
                group: 3,
                node: 1,
                leader: None,
                addr: None,
            }),
            Err(ServerError::NoSuchGroup { group: 9, node: 1 }),
            Err(ServerError::Unreachable {
                group: 3,
                node: 2,
                reason: "refused".into(),
            }),
            Err(ServerError::ShuttingDown { node: 1 }),
            Err(ServerError::BadMessage { reason: "x".into() }),
            Err(ServerError::Denied {
                node: 2,
                reason: "y".into(),
            }),
            Err(GroupError::Lost { group: 3, index: 7 }.into()),
            Err(GroupError::Busy { group: 3 }.into()),
            Err(GroupError::Stopped { group: 3 }.into()),
            Err(GroupError::NotLeader {
                group: 3,
                leader: None,
            }
            .into()),
            Err(GroupError::Storage {
                group: 3,
                fault: StorageFault::DiskFull,
                reason: "disk".into(),
            }
            .into()),
            Err(GroupError::Refused {
                group: 3,
                reason: "no".into(),
            }
            .into()),
            Err(GroupError::Halted {
                group: 3,
                reason: "two leaders in term 4".into(),
            }
            .into()),
            Err(GroupError::Read {
                group: 3,
                reason: "bad".into(),
            }
            .into()),
        ];
        for reply in replies {
            assert_eq!(decode_reply(join(encode_reply(&reply))), Ok(reply));
        }
        let status = GroupStatus {
            group: 4,
            role: Role::Leader,
            term: 9,
            leader: Some(2),
            index_commit: 10,
            index_last: 11,
            index_applied: 10,
            hibernating: true,
            node: 2,
            voters: vec![1, 2, 3],
            learners: vec![4],
            snapshot_index: 8,
            snapshot_term: 7,
            membership_index: 6,
            membership_term: 2,
            voters_outgoing: vec![1, 2, 5],
            matched: vec![(2, 40), (3, 39)],
            leader_contact_ms: None,
            log_bytes: 1 << 30,
            snapshot_saved: Some(SnapshotSaved {
                index: 8,
                term: 7,
                bytes: 4096,
                write_ms: 12,
                applied_meanwhile: 3,
            }),
            keys: Some(5),
            sessions: None,
        };
        assert_eq!(decode_status(encode_status(&status)), Ok(status.clone()));
        let follower = GroupStatus {
            role: Role::Follower,
            leader_contact_ms: Some(42),
            snapshot_saved: None,
            keys: None,
            sessions: Some(3),
            ..status
        };
        assert_eq!(decode_status(encode_status(&follower)), Ok(follower));
        let mut change = MembersChange {
            voters: [1, 2, 5].into(),
            learners: [4].into(),
            expected: None,
        };
        assert_eq!(decode_members(encode_members(&change)), Ok(change.clone()));
        change.expected = Some((17, 3));
        assert_eq!(decode_members(encode_members(&change)), Ok(change));
        let saved = SnapshotSaved {
            index: 10,
            term: 2,
            bytes: 1 << 20,
            write_ms: 3,
            applied_meanwhile: 5,
        };
        assert_eq!(decode_saved(encode_saved(&saved)), Ok(saved));
        let g = crate::config::GroupConfig {
            group_id: 9,
            members: "1,2,3".into(),
            join: true,
            ..Default::default()
        };
        assert_eq!(decode_group_config(encode_group_config(&g)), Ok(g));
    }

    #[test]
    fn garbage_never_panics_and_truncation_is_an_error() {
        let reply = join(encode_reply(&Err(ServerError::Unreachable {
            group: 3,
            node: 2,
            reason: "refused".into(),
        })));
        for cut in 0..reply.len() {
            assert!(decode_reply(reply.slice(..cut)).is_err(), "cut at {cut}");
        }
        let status = encode_status(&GroupStatus {
            group: 1,
            role: Role::Follower,
            term: 1,
            leader: None,
            index_commit: 0,
            index_last: 0,
            index_applied: 0,
            hibernating: false,
            node: 1,
            voters: vec![1],
            learners: Vec::new(),
            snapshot_index: 0,
            snapshot_term: 0,
            membership_index: 0,
            membership_term: 0,
            voters_outgoing: vec![2],
            matched: Vec::new(),
            leader_contact_ms: None,
            log_bytes: 0,
            snapshot_saved: None,
            keys: None,
            sessions: None,
        });
        // Older nodes' statuses end before the log bytes (11 bytes here),
        // before the leader contact (1 more), before the matched indexes
        // (4 more), before the outgoing voters (4 + 8 more) or before the
        // membership position (16 more).
        let older = [
            status.len() - 11,
            status.len() - 12,
            status.len() - 16,
            status.len() - 28,
            status.len() - 44,
        ];
        for cut in 0..status.len() {
            let decoded = decode_status(status.slice(..cut));
            assert_eq!(decoded.is_ok(), older.contains(&cut), "cut at {cut}");
        }
        assert!(ServiceRequest::decode(Bytes::from_static(&[2, 1, 1, 0])).is_err());
        assert!(ServiceRequest::decode(Bytes::from_static(&[1, 99, 1, 0])).is_err());
        assert!(ServiceRequest::decode(Bytes::from_static(&[1, 1, 3, 0])).is_err());
        proptest::proptest!(|(bytes: Vec<u8>)| {
            let b = Bytes::from(bytes);
            let _ = ServiceRequest::decode(b.clone());
            let _ = decode_reply(b.clone());
            let _ = decode_status(b);
        });
    }
}
