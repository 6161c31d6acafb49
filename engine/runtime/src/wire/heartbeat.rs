//! Coalesced heartbeats: one frame carries the heartbeats (or responses) of
//! every group between two nodes in one tick, so thousands of groups cost
//! one small frame per node pair, not one each.
//!
//! Layout, version 1: `version u8 | tag u8 | from u64 | to u64 | count u32 |
//! count × (group u64 | term u64 | fields)`.

use super::WIRE_VERSION;
use super::error::WireError;
use super::message::{
    put_heartbeat, put_heartbeat_response, read_heartbeat, read_heartbeat_response,
};
use crate::codec::Reader;
use crate::raft::{Body, GroupId, Heartbeat, HeartbeatResponse, Message, NodeId};
use bytes::{BufMut, Bytes, BytesMut};

const TAG_HEARTBEATS: u8 = 1;
const TAG_RESPONSES: u8 = 2;

/// The heartbeats of many groups from one node to another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatBatch {
    /// Sending node.
    pub from: NodeId,
    /// Receiving node.
    pub to: NodeId,
    /// Leader-to-follower heartbeats.
    pub beats: Vec<(GroupId, u64, Heartbeat)>,
    /// Follower-to-leader responses.
    pub responses: Vec<(GroupId, u64, HeartbeatResponse)>,
}

impl HeartbeatBatch {
    /// An empty batch from `from` to `to`.
    pub fn new(from: NodeId, to: NodeId) -> HeartbeatBatch {
        HeartbeatBatch {
            from,
            to,
            ..HeartbeatBatch::default()
        }
    }

    /// Adds `msg` if it is a heartbeat or a heartbeat response between this
    /// batch's nodes; returns whether it did (other messages travel alone).
    pub fn push(&mut self, msg: &Message) -> bool {
        if msg.from != self.from || msg.to != self.to {
            return false;
        }
        match msg.body {
            Body::Heartbeat(h) => self.beats.push((msg.group, msg.term, h)),
            Body::HeartbeatResponse(h) => self.responses.push((msg.group, msg.term, h)),
            _ => return false,
        }
        true
    }

    /// Whether the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.beats.is_empty() && self.responses.is_empty()
    }

    /// The per-group messages of the batch.
    pub fn into_messages(self) -> impl Iterator<Item = Message> {
        let (from, to) = (self.from, self.to);
        let beats = self.beats.into_iter().map(move |(group, term, h)| Message {
            group,
            from,
            to,
            term,
            body: Body::Heartbeat(h),
        });
        let responses = self
            .responses
            .into_iter()
            .map(move |(group, term, h)| Message {
                group,
                from,
                to,
                term,
                body: Body::HeartbeatResponse(h),
            });
        beats.chain(responses)
    }

    /// Encodes the batch as one body (two sections: beats, responses).
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(32 + 40 * (self.beats.len() + self.responses.len()));
        out.put_u8(WIRE_VERSION);
        out.put_u8(TAG_HEARTBEATS);
        out.put_u64_le(self.from.0);
        out.put_u64_le(self.to.0);
        out.put_u32_le(self.beats.len() as u32);
        for (g, term, h) in &self.beats {
            out.put_u64_le(g.0);
            out.put_u64_le(*term);
            put_heartbeat(&mut out, h);
        }
        out.put_u8(TAG_RESPONSES);
        out.put_u32_le(self.responses.len() as u32);
        for (g, term, h) in &self.responses {
            out.put_u64_le(g.0);
            out.put_u64_le(*term);
            put_heartbeat_response(&mut out, h);
        }
        out.freeze()
    }

    /// Decodes a batch (total).
    pub fn decode(body: Bytes) -> Result<HeartbeatBatch, WireError> {
        let mut r = Reader::new(body);
        let version = r.u8("version")?;
        if version != WIRE_VERSION {
            return Err(WireError::Version(version));
        }
        expect_tag(&mut r, TAG_HEARTBEATS)?;
        let mut batch = HeartbeatBatch::new(NodeId(r.u64("from")?), NodeId(r.u64("to")?));
        let n = r.count("heartbeat count", 40)?;
        for _ in 0..n {
            let (g, term) = (GroupId(r.u64("group")?), r.u64("term")?);
            batch.beats.push((g, term, read_heartbeat(&mut r)?));
        }
        expect_tag(&mut r, TAG_RESPONSES)?;
        let n = r.count("response count", 32)?;
        for _ in 0..n {
            let (g, term) = (GroupId(r.u64("group")?), r.u64("term")?);
            batch
                .responses
                .push((g, term, read_heartbeat_response(&mut r)?));
        }
        r.finish("heartbeat batch")?;
        Ok(batch)
    }
}

fn expect_tag(r: &mut Reader, want: u8) -> Result<(), WireError> {
    match r.u8("section tag")? {
        t if t == want => Ok(()),
        tag => Err(WireError::UnknownTag {
            what: "heartbeat section",
            tag,
        }),
    }
}
