//! The bytes of the shared log: a segment header, then chunks, each a
//! header and a body.
//!
//! ```text
//! segment header (64 bytes, at offset 0):
//!  0 u64 magic "SAMPWAL\0" | 8 u16 version (1 or 2)
//! 10 u16 flags (bit 0: a recycled file; reserved, zero, in version 1)
//! 12 u32 reserved | 16 u64 log id (random, made with the log)
//! 24 u64 segment id | 32 u64 created (unix ms) | 40..60 reserved
//! 60 u32 CRC32C of bytes 0..60
//!
//! chunk header (56 bytes), then `body length` bytes, padded to 8:
//!  0 u32 magic | 4 u8 version | 5 u8 kind | 6 u16 reserved
//!  8 u32 epoch (the open of the log that wrote it)
//! 12 u32 body length
//! 16 u64 group | 24 u64 incarnation (of the group's log)
//! 32 u64 argument: first index (entries, rewrite), last kept (truncate)
//! 40 u64 sync floor: every position below it was durable when this was
//!        written (tells a torn tail from corruption on recovery)
//! 48 u32 segment: low 32 bits of the id of the segment it was written
//!        into (version 2; reserved, zero, in version 1)
//! 52 u32 CRC32C of bytes 0..52
//! ```
//!
//! A version 2 segment may be a *recycled* file: a retired segment renamed
//! and given a new header, whose old chunks still follow the new ones. A
//! chunk belongs to the segment it lies in only if its `segment` field
//! names it (a version 1 chunk only in a version 1 segment, which is never
//! recycled); any other valid chunk is left over from the file's earlier
//! life and ends the segment, as zeros do ([`belongs`]).
//!
//! An entries or rewrite body is a run of entry records exactly as
//! [`crate::format`] defines them (each with its own CRCs), so a read
//! hands the mapped bytes to the wire without copying. Positions in the
//! log are `segment id << 40 | offset` ([`lsn`]).

use bytes::Bytes;

/// Bytes of a segment header; the first chunk starts here.
pub(crate) const SEGMENT_HEADER_BYTES: u64 = 64;
/// Bytes of a chunk header.
pub(crate) const CHUNK_HEADER_BYTES: usize = 56;
const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"SAMPWAL\0");
/// Segments written now: their chunks name them (see the module docs).
pub(crate) const SEGMENT_VERSION: u16 = 2;
/// Segments written before chunks named their segment: never recycled.
pub(crate) const SEGMENT_VERSION_1: u16 = 1;
const CHUNK_MAGIC: u32 = 0x4b48_434c; // "LCHK"
/// Chunks that name their segment.
const CHUNK_VERSION: u8 = 2;
const CHUNK_VERSION_1: u8 = 1;
/// Offsets within a segment stay below this (`lsn` packs them in 40 bits).
pub(crate) const SEGMENT_BYTES_MAX: u64 = 1 << 32;

/// What a chunk says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// New entries from `arg` on: entries at and after `arg` that the
    /// group held are replaced.
    Entries = 1,
    /// A copy of entries the group still holds, moved out of an old
    /// segment so that segment can go; replaces nothing else.
    Rewrite = 2,
    /// The group's entries after `arg` are gone.
    Truncate = 3,
}

/// A decoded chunk header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkHeader {
    pub(crate) kind: Kind,
    pub(crate) epoch: u32,
    pub(crate) body_len: u32,
    pub(crate) group: u64,
    pub(crate) incarnation: u64,
    pub(crate) arg: u64,
    pub(crate) sync_floor: u64,
    /// Low 32 bits of the id of the segment written into: `Some` in a
    /// version 2 chunk (every chunk written now), `None` in version 1.
    pub(crate) segment: Option<u32>,
}

impl ChunkHeader {
    /// Bytes of the whole chunk (header, body, padding).
    pub(crate) fn chunk_len(&self) -> u64 {
        chunk_len(self.body_len as usize)
    }
}

/// Whether a chunk found in segment `segment_id` (whose header has
/// `segment_version`) was written into that segment, rather than left over
/// from an earlier life of a recycled file.
pub(crate) fn belongs(h: &ChunkHeader, segment_id: u64, segment_version: u16) -> bool {
    match h.segment {
        Some(s) => s == segment_id as u32,
        None => segment_version == SEGMENT_VERSION_1,
    }
}

/// Bytes a chunk with a body of `body_len` bytes takes.
pub(crate) fn chunk_len(body_len: usize) -> u64 {
    (CHUNK_HEADER_BYTES + body_len.div_ceil(8) * 8) as u64
}

/// A position in the log: segment id and offset.
pub(crate) fn lsn(segment: u64, offset: u64) -> u64 {
    (segment << 40) | offset
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// Encodes a chunk header followed by `body` (and padding) into `out`:
/// version 2 if it names its segment, else version 1 (only tests write
/// those now, as older data).
pub(crate) fn encode_chunk(out: &mut Vec<u8>, h: &ChunkHeader, body: &[u8]) {
    debug_assert_eq!(h.body_len as usize, body.len());
    let start = out.len();
    out.reserve(chunk_len(body.len()) as usize);
    out.extend_from_slice(&CHUNK_MAGIC.to_le_bytes());
    out.push(if h.segment.is_some() {
        CHUNK_VERSION
    } else {
        CHUNK_VERSION_1
    });
    out.push(h.kind as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&h.epoch.to_le_bytes());
    out.extend_from_slice(&h.body_len.to_le_bytes());
    out.extend_from_slice(&h.group.to_le_bytes());
    out.extend_from_slice(&h.incarnation.to_le_bytes());
    out.extend_from_slice(&h.arg.to_le_bytes());
    out.extend_from_slice(&h.sync_floor.to_le_bytes());
    out.extend_from_slice(&h.segment.unwrap_or(0).to_le_bytes());
    let crc = crc32c::crc32c(&out[start..start + 52]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(body);
    out.resize(start + chunk_len(body.len()) as usize, 0);
}

/// What is at a chunk position.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// Zeros: nothing was ever written here.
    End,
    /// A header that does not check out (torn, or corrupt): why.
    Bad(String),
    /// A good header.
    Chunk(ChunkHeader),
}

/// Decodes the chunk header at the start of `b` (which holds at least
/// `CHUNK_HEADER_BYTES`).
pub(crate) fn decode_chunk_header(b: &[u8]) -> Found {
    let h = &b[..CHUNK_HEADER_BYTES];
    if h.iter().all(|&x| x == 0) {
        return Found::End;
    }
    if crc32c::crc32c(&h[..52]) != u32_at(h, 52) {
        return Found::Bad("bad chunk header CRC".into());
    }
    if u32_at(h, 0) != CHUNK_MAGIC {
        return Found::Bad(format!("bad chunk magic {:#x}", u32_at(h, 0)));
    }
    let segment = match h[4] {
        CHUNK_VERSION => Some(u32_at(h, 48)),
        CHUNK_VERSION_1 => None,
        v => return Found::Bad(format!("unknown chunk version {v}")),
    };
    let kind = match h[5] {
        1 => Kind::Entries,
        2 => Kind::Rewrite,
        3 => Kind::Truncate,
        k => return Found::Bad(format!("unknown chunk kind {k}")),
    };
    Found::Chunk(ChunkHeader {
        kind,
        epoch: u32_at(h, 8),
        body_len: u32_at(h, 12),
        group: u64_at(h, 16),
        incarnation: u64_at(h, 24),
        arg: u64_at(h, 32),
        sync_floor: u64_at(h, 40),
        segment,
    })
}

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// [`SEGMENT_VERSION`] for every segment made now.
    pub(crate) version: u16,
    /// The file held an earlier segment: bytes of that life may follow
    /// the chunks.
    pub(crate) recycled: bool,
    pub(crate) log_id: u64,
    pub(crate) segment_id: u64,
    pub(crate) created_ms: u64,
}

/// The segment header's bytes.
pub(crate) fn encode_segment_header(h: &SegmentHeader) -> Vec<u8> {
    let mut b = vec![0u8; SEGMENT_HEADER_BYTES as usize];
    b[0..8].copy_from_slice(&SEGMENT_MAGIC.to_le_bytes());
    b[8..10].copy_from_slice(&h.version.to_le_bytes());
    b[10..12].copy_from_slice(&u16::from(h.recycled).to_le_bytes());
    b[16..24].copy_from_slice(&h.log_id.to_le_bytes());
    b[24..32].copy_from_slice(&h.segment_id.to_le_bytes());
    b[32..40].copy_from_slice(&h.created_ms.to_le_bytes());
    let crc = crc32c::crc32c(&b[..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes a segment header: `Ok(None)` for zeros (never written).
pub(crate) fn decode_segment_header(b: &Bytes) -> Result<Option<SegmentHeader>, String> {
    if b.len() < SEGMENT_HEADER_BYTES as usize {
        return Err(format!("{} bytes, shorter than a segment header", b.len()));
    }
    let h = &b[..SEGMENT_HEADER_BYTES as usize];
    if h.iter().all(|&x| x == 0) {
        return Ok(None);
    }
    if crc32c::crc32c(&h[..60]) != u32_at(h, 60) {
        return Err("bad segment header CRC".into());
    }
    if u64_at(h, 0) != SEGMENT_MAGIC {
        return Err("not a shared log segment (bad magic)".into());
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != SEGMENT_VERSION && version != SEGMENT_VERSION_1 {
        return Err(format!("unknown segment version {version}"));
    }
    Ok(Some(SegmentHeader {
        version,
        recycled: u16::from_le_bytes([h[10], h[11]]) & 1 == 1,
        log_id: u64_at(h, 16),
        segment_id: u64_at(h, 24),
        created_ms: u64_at(h, 32),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ChunkHeader {
        ChunkHeader {
            kind: Kind::Entries,
            epoch: 3,
            body_len: 5,
            group: 7,
            incarnation: 99,
            arg: 12,
            sync_floor: lsn(2, 4096),
            segment: Some(2),
        }
    }

    #[test]
    fn a_chunk_header_round_trips_and_any_flipped_bit_is_caught() {
        let mut out = Vec::new();
        encode_chunk(&mut out, &header(), b"hello");
        assert_eq!(out.len() as u64, chunk_len(5));
        assert_eq!(decode_chunk_header(&out), Found::Chunk(header()));
        for bit in 0..CHUNK_HEADER_BYTES * 8 {
            let mut bad = out.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(decode_chunk_header(&bad), Found::Bad(_)),
                "bit {bit} flipped went unseen"
            );
        }
        assert_eq!(decode_chunk_header(&[0; 64]), Found::End);
    }

    #[test]
    fn a_chunk_belongs_only_to_the_segment_it_names() {
        let mut out = Vec::new();
        encode_chunk(&mut out, &header(), b"hello");
        let Found::Chunk(h) = decode_chunk_header(&out) else {
            panic!("a good chunk")
        };
        assert!(belongs(&h, 2, SEGMENT_VERSION));
        assert!(belongs(&h, 2, SEGMENT_VERSION_1));
        // The same low 32 bits, another segment: left over from a file's
        // earlier life 2^32 segments ago.
        assert!(!belongs(&h, 3, SEGMENT_VERSION));
        assert!(belongs(&h, 2 + (1 << 32), SEGMENT_VERSION));
        // A version 1 chunk (no segment named) reads only in a version 1
        // segment: version 2 segments may be recycled files.
        let old = ChunkHeader {
            segment: None,
            ..header()
        };
        let mut out = Vec::new();
        encode_chunk(&mut out, &old, b"hello");
        assert_eq!(decode_chunk_header(&out), Found::Chunk(old));
        assert!(belongs(&old, 2, SEGMENT_VERSION_1));
        assert!(!belongs(&old, 2, SEGMENT_VERSION));
    }

    #[test]
    fn a_segment_header_round_trips_and_refuses_damage() {
        let h = SegmentHeader {
            version: SEGMENT_VERSION,
            recycled: true,
            log_id: 5,
            segment_id: 9,
            created_ms: 1234,
        };
        let b = Bytes::from(encode_segment_header(&h));
        assert_eq!(decode_segment_header(&b), Ok(Some(h)));
        let mut bad = b.to_vec();
        bad[20] ^= 1;
        assert!(decode_segment_header(&Bytes::from(bad)).is_err());
        let v1 = SegmentHeader {
            version: SEGMENT_VERSION_1,
            recycled: false,
            ..h
        };
        let b1 = Bytes::from(encode_segment_header(&v1));
        assert_eq!(decode_segment_header(&b1), Ok(Some(v1)));
        let v3 = Bytes::from(encode_segment_header(&SegmentHeader { version: 3, ..h }));
        assert!(decode_segment_header(&v3).is_err());
        assert_eq!(decode_segment_header(&Bytes::from(vec![0; 64])), Ok(None));
    }
}
