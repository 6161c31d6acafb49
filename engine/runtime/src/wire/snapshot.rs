//! InstallSnapshot as chunks: the leader streams a snapshot's stored bytes
//! to a follower as requests of kind [`super::kind::SNAPSHOT`], one chunk
//! per request, and each answer says where to go on (flow control: one
//! chunk in flight per transfer). The receiver's answer names the offset
//! it expects next, so a transfer cut half-way resumes there.
//!
//! Layout, version 1 (little-endian):
//!
//! ```text
//! chunk:  version u8 | flags u8 (bit 0: last) | term u64 | leader u64
//!         | snapshot meta (index, term, membership) | offset u64
//!         | data CRC32C u32 (of the whole snapshot; in the last chunk)
//!         | chunk CRC32C u32 | len u32 | data
//! answer: version u8 | status u8 | term u64 | next offset u64
//! ```

use super::WIRE_VERSION;
use super::error::WireError;
use super::message::{put_snapshot_meta, read_snapshot_meta};
use crate::codec::Reader;
use crate::raft::SnapshotMeta;
use bytes::{BufMut, Bytes, BytesMut};

const FLAG_LAST: u8 = 1;

/// One piece of a snapshot on its way to a follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The leader's term.
    pub term: u64,
    /// The leader's node id.
    pub leader: u64,
    /// The snapshot the bytes belong to.
    pub meta: SnapshotMeta,
    /// Where `data` starts in the snapshot's bytes.
    pub offset: u64,
    /// Whether this is the last chunk.
    pub last: bool,
    /// CRC32C of the whole snapshot's bytes (meaningful in the last chunk).
    pub data_crc: u32,
    /// The bytes.
    pub data: Bytes,
}

impl SnapshotChunk {
    /// Encodes the chunk as two pieces: the header and the data itself.
    pub fn encode(&self) -> Vec<Bytes> {
        let mut out = BytesMut::with_capacity(96);
        out.put_u8(WIRE_VERSION);
        out.put_u8(if self.last { FLAG_LAST } else { 0 });
        out.put_u64_le(self.term);
        out.put_u64_le(self.leader);
        put_snapshot_meta(&mut out, &self.meta);
        out.put_u64_le(self.offset);
        out.put_u32_le(self.data_crc);
        out.put_u32_le(crc32c::crc32c(&self.data));
        out.put_u32_le(self.data.len() as u32);
        vec![out.freeze(), self.data.clone()]
    }

    /// Decodes a chunk; its data is a slice of `body`, checked against the
    /// chunk's CRC.
    pub fn decode(body: Bytes) -> Result<SnapshotChunk, WireError> {
        let mut r = Reader::new(body);
        let version = r.u8("version")?;
        if version != WIRE_VERSION {
            return Err(WireError::Version(version));
        }
        let flags = r.u8("flags")?;
        let term = r.u64("term")?;
        let leader = r.u64("leader")?;
        let meta = read_snapshot_meta(&mut r)?;
        let offset = r.u64("offset")?;
        let data_crc = r.u32("data crc")?;
        let chunk_crc = r.u32("chunk crc")?;
        let len = r.u32("chunk length")? as usize;
        let data = r.rest();
        if data.len() != len {
            return Err(WireError::Invalid {
                what: "snapshot chunk",
                detail: format!("{} bytes, header says {len}", data.len()),
            });
        }
        if crc32c::crc32c(&data) != chunk_crc {
            return Err(WireError::Invalid {
                what: "snapshot chunk",
                detail: format!("CRC mismatch at offset {offset}"),
            });
        }
        Ok(SnapshotChunk {
            term,
            leader,
            meta,
            offset,
            last: flags & FLAG_LAST != 0,
            data_crc,
            data,
        })
    }
}

/// What the receiver of a chunk says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkStatus {
    /// Taken (or not the expected offset): send from `next_offset`.
    Continue,
    /// The snapshot is whole and durable here; the transfer is over.
    Done,
    /// Refused (a stale term, a broken stream, a storage failure): stop
    /// this transfer; Raft probes the follower again.
    Refused,
}

/// The receiver's answer to a [`SnapshotChunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkAnswer {
    /// What to do next.
    pub status: ChunkStatus,
    /// The receiver's term.
    pub term: u64,
    /// The offset the receiver expects next.
    pub next_offset: u64,
}

impl ChunkAnswer {
    /// Encodes the answer.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(18);
        out.put_u8(WIRE_VERSION);
        out.put_u8(match self.status {
            ChunkStatus::Continue => 0,
            ChunkStatus::Done => 1,
            ChunkStatus::Refused => 2,
        });
        out.put_u64_le(self.term);
        out.put_u64_le(self.next_offset);
        out.freeze()
    }

    /// Decodes an answer.
    pub fn decode(body: Bytes) -> Result<ChunkAnswer, WireError> {
        let mut r = Reader::new(body);
        let version = r.u8("version")?;
        if version != WIRE_VERSION {
            return Err(WireError::Version(version));
        }
        let status = match r.u8("status")? {
            0 => ChunkStatus::Continue,
            1 => ChunkStatus::Done,
            2 => ChunkStatus::Refused,
            tag => {
                return Err(WireError::UnknownTag {
                    what: "chunk status",
                    tag,
                });
            }
        };
        let term = r.u64("term")?;
        let next_offset = r.u64("next offset")?;
        r.finish("chunk answer")?;
        Ok(ChunkAnswer {
            status,
            term,
            next_offset,
        })
    }
}

/// A snapshot's description as its store keeps it (the `config` bytes of
/// the store's meta file): version, index, term, membership.
pub fn encode_snapshot_meta(meta: &SnapshotMeta) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(64);
    out.put_u8(WIRE_VERSION);
    put_snapshot_meta(&mut out, meta);
    out.to_vec()
}

/// Decodes [`encode_snapshot_meta`]'s bytes.
pub fn decode_snapshot_meta(bytes: Bytes) -> Result<SnapshotMeta, WireError> {
    let mut r = Reader::new(bytes);
    let version = r.u8("version")?;
    if version != WIRE_VERSION {
        return Err(WireError::Version(version));
    }
    let meta = read_snapshot_meta(&mut r)?;
    r.finish("snapshot meta")?;
    Ok(meta)
}
