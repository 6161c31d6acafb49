//! The read buffer of a connection: bytes read from the socket, from which
//! whole frames are split off without copying.
//!
//! The buffer keeps zeroed room behind the bytes read so far, so a read
//! goes into already-initialised memory (no `unsafe`) and that room is
//! zeroed once, not before every read. A received body is a `Bytes` that
//! shares the buffer's allocation: holding a small body for long pins the
//! whole chunk it was read into (the engine copies what it keeps for long).

use crate::codec::Decoder;
use crate::error::FrameError;
use crate::frame::{Frame, HEADER_LEN};
use bytes::{Buf, BytesMut};

/// Room made for each read when no bigger frame is pending.
pub const READ_CHUNK_BYTES: usize = 64 << 10;
/// Least room a read is given: below this the buffer grows first, so reads
/// do not dwindle into many small ones at the end of a chunk.
pub const READ_ROOM_MIN_BYTES: usize = 4 << 10;

/// Bytes read from a socket and not yet taken as frames.
#[derive(Debug, Default)]
pub struct ReadBuf {
    /// `buf[..filled]` holds bytes read; `buf[filled..]` is zeroed room.
    buf: BytesMut,
    filled: usize,
}

impl ReadBuf {
    /// An empty buffer.
    pub fn new() -> ReadBuf {
        ReadBuf::default()
    }

    /// The bytes read and not yet taken.
    pub fn filled(&self) -> &[u8] {
        &self.buf[..self.filled]
    }

    /// Room for the next read, at least `want` bytes (callers pass what the
    /// frame in progress still needs, a length the decoder has checked).
    pub fn spare(&mut self, want: usize) -> &mut [u8] {
        let want = want.max(READ_ROOM_MIN_BYTES);
        if self.buf.len() - self.filled < want {
            let target = self.filled + want.max(READ_CHUNK_BYTES);
            self.buf.reserve(target - self.buf.len());
            self.buf.resize(target, 0);
        }
        &mut self.buf[self.filled..]
    }

    /// Marks `n` bytes of the room as read.
    pub fn advance(&mut self, n: usize) {
        debug_assert!(self.filled + n <= self.buf.len(), "read past the room");
        self.filled = (self.filled + n).min(self.buf.len());
    }

    /// How many more bytes the frame at the front needs (at least one
    /// header's worth when its header is not in yet).
    pub fn wanted(&self, decoder: &Decoder) -> usize {
        match decoder.peek_header(self.filled()) {
            Ok(Some(h)) => h.frame_len().saturating_sub(self.filled),
            _ => HEADER_LEN.saturating_sub(self.filled).max(1),
        }
    }

    /// Takes the frame at the front if it is all there; the body is split
    /// off the buffer without copying.
    pub fn take_frame(&mut self, decoder: &Decoder) -> Result<Option<Frame>, FrameError> {
        let Some(h) = decoder.peek_header(self.filled())? else {
            return Ok(None);
        };
        let frame_len = h.frame_len();
        if self.filled < frame_len {
            return Ok(None);
        }
        let computed = crc32c::crc32c(&self.buf[HEADER_LEN..frame_len]);
        if computed != h.body_crc {
            return Err(FrameError::BodyCrc {
                kind: h.header.kind,
                stored: h.body_crc,
                computed,
            });
        }
        let mut whole = self.buf.split_to(frame_len);
        self.filled -= frame_len;
        whole.advance(HEADER_LEN);
        Ok(Some(Frame {
            header: h.header,
            body: whole.freeze(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_frame;
    use crate::frame::{Body, FrameHeader, FrameType};

    #[test]
    fn frames_come_out_whole_whatever_the_read_sizes() {
        let d = Decoder::new(1 << 20);
        let h = FrameHeader {
            frame_type: FrameType::OneWay,
            kind: 16,
            group_id: 1,
            request_id: 0,
        };
        let mut wire = Vec::new();
        for len in [0usize, 1, 100, 200_000, 3] {
            wire.extend(encode_frame(&h, &Body::from(vec![len as u8; len])).expect("fits"));
        }
        let mut rb = ReadBuf::new();
        let mut got = Vec::new();
        let mut at = 0;
        for step in [1usize, 35, 7, 100_000, 1, 150_000, 10_000].iter().cycle() {
            while let Some(f) = rb.take_frame(&d).expect("valid") {
                got.push(f.body.len());
            }
            if at == wire.len() {
                break;
            }
            let want = rb.wanted(&d);
            assert!(want > 0);
            let room = rb.spare(want);
            let n = (*step).min(room.len()).min(wire.len() - at);
            room[..n].copy_from_slice(&wire[at..at + n]);
            rb.advance(n);
            at += n;
        }
        assert_eq!(got, vec![0, 1, 100, 200_000, 3]);
        assert!(rb.filled().is_empty());
    }
}
