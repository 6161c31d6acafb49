//! Encoding frame headers and decoding frames from a byte stream.
//!
//! The decoder is total: for any bytes it returns a frame, "need more
//! bytes" (`Ok(None)`), or a [`FrameError`]. It reads a body length only
//! after the header CRC holds and the length is within the configured
//! maximum, so no allocation or wait is ever sized by an unchecked length.

use crate::error::FrameError;
use crate::frame::{Body, FRAME_VERSION, Frame, FrameHeader, FrameType, HEADER_LEN, MAGIC};
use bytes::{Buf, BytesMut};

/// Encodes the header of a frame carrying `body`. The caller checks the
/// size against its maximum first ([`Decoder::check_len`]); a body longer
/// than `u32::MAX` cannot be framed and is refused with `None`.
pub fn encode_header(header: &FrameHeader, body: &Body) -> Option<[u8; HEADER_LEN]> {
    let body_len = u32::try_from(body.len()).ok()?;
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4] = FRAME_VERSION;
    h[5] = header.frame_type.to_byte();
    h[6..8].copy_from_slice(&header.kind.to_le_bytes());
    h[8..16].copy_from_slice(&header.group_id.to_le_bytes());
    h[16..24].copy_from_slice(&header.request_id.to_le_bytes());
    h[24..28].copy_from_slice(&body_len.to_le_bytes());
    h[28..32].copy_from_slice(&body.crc().to_le_bytes());
    let crc = crc32c::crc32c(&h[..32]);
    h[32..36].copy_from_slice(&crc.to_le_bytes());
    Some(h)
}

/// Encodes a whole frame into one buffer (tests, fuzzing, cold paths; the
/// connection writes header and pieces without joining them).
pub fn encode_frame(header: &FrameHeader, body: &Body) -> Option<Vec<u8>> {
    let h = encode_header(header, body)?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&h);
    for p in body.pieces() {
        out.extend_from_slice(p);
    }
    Some(out)
}

/// A header that passed every check, with what is needed to take its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedHeader {
    /// The header's fields.
    pub header: FrameHeader,
    /// Body length in bytes (within the maximum).
    pub body_len: usize,
    /// The body's CRC32C, to check once the body is in.
    pub body_crc: u32,
}

impl CheckedHeader {
    /// Header plus body, in bytes.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len
    }
}

/// Decodes frames with a maximum frame size.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    frame_bytes_max: usize,
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Decoder {
    /// A decoder that refuses frames over `frame_bytes_max` bytes (header
    /// included; at least [`HEADER_LEN`]).
    pub fn new(frame_bytes_max: usize) -> Decoder {
        Decoder {
            frame_bytes_max: frame_bytes_max.max(HEADER_LEN),
        }
    }

    /// The maximum frame size, header included.
    pub fn frame_bytes_max(&self) -> usize {
        self.frame_bytes_max
    }

    /// Checks that a frame of `kind` with a body of `body_len` bytes fits.
    pub fn check_len(&self, kind: u16, body_len: usize) -> Result<(), FrameError> {
        let bytes = (HEADER_LEN as u64).saturating_add(body_len as u64);
        if bytes > self.frame_bytes_max as u64 {
            return Err(FrameError::TooLarge {
                kind,
                bytes,
                bytes_max: self.frame_bytes_max,
            });
        }
        Ok(())
    }

    /// Checks the header at the start of `buf`: `Ok(None)` if fewer than
    /// [`HEADER_LEN`] bytes are there. The magic is checked first (so that
    /// garbage is called garbage), then the header CRC, then the rest.
    pub fn peek_header(&self, buf: &[u8]) -> Result<Option<CheckedHeader>, FrameError> {
        if buf.len() < 4 {
            // A partial magic that is already wrong need not wait for more.
            let want = &MAGIC.to_le_bytes()[..buf.len()];
            if buf != want {
                let mut a = [0u8; 4];
                a[..buf.len()].copy_from_slice(buf);
                return Err(FrameError::BadMagic {
                    found: u32::from_le_bytes(a),
                });
            }
            return Ok(None);
        }
        let magic = le_u32(buf, 0);
        if magic != MAGIC {
            return Err(FrameError::BadMagic { found: magic });
        }
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let h = &buf[..HEADER_LEN];
        let stored = le_u32(h, 32);
        let computed = crc32c::crc32c(&h[..32]);
        if stored != computed {
            return Err(FrameError::HeaderCrc { stored, computed });
        }
        if h[4] != FRAME_VERSION {
            return Err(FrameError::UnsupportedVersion {
                found: h[4],
                supported: FRAME_VERSION,
            });
        }
        let frame_type =
            FrameType::from_byte(h[5]).ok_or(FrameError::UnknownFrameType { found: h[5] })?;
        let kind = u16::from_le_bytes([h[6], h[7]]);
        let body_len = le_u32(h, 24) as usize;
        self.check_len(kind, body_len)?;
        Ok(Some(CheckedHeader {
            header: FrameHeader {
                frame_type,
                kind,
                group_id: le_u64(h, 8),
                request_id: le_u64(h, 16),
            },
            body_len,
            body_crc: le_u32(h, 28),
        }))
    }

    /// Takes one frame off the front of `buf` if a whole one is there.
    /// The body is split off `buf` without copying. On an error `buf` is
    /// left as it was (the connection is closed anyway).
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(checked) = self.peek_header(buf)? else {
            return Ok(None);
        };
        if buf.len() < checked.frame_len() {
            return Ok(None);
        }
        let computed = crc32c::crc32c(&buf[HEADER_LEN..checked.frame_len()]);
        if computed != checked.body_crc {
            return Err(FrameError::BodyCrc {
                kind: checked.header.kind,
                stored: checked.body_crc,
                computed,
            });
        }
        let mut whole = buf.split_to(checked.frame_len());
        whole.advance(HEADER_LEN);
        Ok(Some(Frame {
            header: checked.header,
            body: whole.freeze(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn header(frame_type: FrameType, kind: u16, group_id: u64, request_id: u64) -> FrameHeader {
        FrameHeader {
            frame_type,
            kind,
            group_id,
            request_id,
        }
    }

    fn any_frame_type() -> impl Strategy<Value = FrameType> {
        (0u8..4).prop_map(|b| FrameType::from_byte(b).unwrap_or(FrameType::OneWay))
    }

    fn any_frame() -> impl Strategy<Value = (FrameHeader, Vec<Vec<u8>>)> {
        (
            any_frame_type(),
            any::<u16>(),
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..5),
        )
            .prop_map(|(t, k, g, r, pieces)| (header(t, k, g, r), pieces))
    }

    fn body_of(pieces: &[Vec<u8>]) -> Body {
        Body::from(pieces.iter().cloned().map(Bytes::from).collect::<Vec<_>>())
    }

    proptest! {
        // A stream of frames, cut at arbitrary points, decodes to the same
        // frames in order, with bodies equal to the joined pieces.
        #[test]
        fn frames_round_trip_across_any_split(
            frames in prop::collection::vec(any_frame(), 1..8),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let decoder = Decoder::new(1 << 20);
            let mut wire = Vec::new();
            for (h, pieces) in &frames {
                wire.extend(encode_frame(h, &body_of(pieces)).expect("fits"));
            }
            let mut cut_at: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
            cut_at.push(wire.len());
            cut_at.sort_unstable();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut from = 0;
            for at in cut_at {
                buf.extend_from_slice(&wire[from..at]);
                from = at;
                while let Some(f) = decoder.decode(&mut buf).expect("valid stream") {
                    got.push(f);
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got.len(), frames.len());
            for (f, (h, pieces)) in got.iter().zip(&frames) {
                prop_assert_eq!(&f.header, h);
                prop_assert_eq!(f.body.as_ref(), &pieces.concat()[..]);
            }
        }

        // Any single flipped bit in a frame is caught: a typed error, never
        // a different frame, never a panic.
        #[test]
        fn a_flipped_bit_is_an_error(
            (h, pieces) in any_frame(),
            bit in any::<prop::sample::Index>(),
        ) {
            let decoder = Decoder::new(1 << 20);
            let mut wire = encode_frame(&h, &body_of(&pieces)).expect("fits");
            let bit = bit.index(wire.len() * 8);
            wire[bit / 8] ^= 1 << (bit % 8);
            let mut buf = BytesMut::from(&wire[..]);
            // The header CRC covers the length too, so even a flipped length
            // bit is caught at once rather than read as "wait for more".
            let got = decoder.decode(&mut buf);
            prop_assert!(got.is_err(), "corrupt frame not refused: {:?}", got);
        }

        // The fuzz harness: any bytes at all give frames, "need more" or an
        // error; the body of a frame never exceeds the maximum.
        #[test]
        fn any_bytes_decode_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            fuzz_one(&bytes);
        }

        // Garbage behind a valid header: same guarantee.
        #[test]
        fn garbage_after_a_valid_frame(
            (h, pieces) in any_frame(),
            tail in prop::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut wire = encode_frame(&h, &body_of(&pieces)).expect("fits");
            wire.extend(tail);
            fuzz_one(&wire);
        }
    }

    /// Decodes `bytes` as a stream until it ends or fails.
    pub(crate) fn fuzz_one(bytes: &[u8]) {
        let decoder = Decoder::new(4096);
        let mut buf = BytesMut::from(bytes);
        let mut frames = 0;
        while let Ok(Some(f)) = decoder.decode(&mut buf) {
            assert!(f.body.len() + HEADER_LEN <= 4096);
            frames += 1;
            assert!(
                frames <= bytes.len() / HEADER_LEN,
                "a frame takes at least a header"
            );
        }
    }

    #[test]
    fn typed_errors_for_each_bad_input() {
        let d = Decoder::new(1024);
        let h = header(FrameType::Request, 20, 7, 9);
        let good = encode_frame(&h, &Body::from(vec![1u8; 10])).expect("fits");
        let decode = |bytes: &[u8]| d.decode(&mut BytesMut::from(bytes));
        assert!(matches!(
            decode(b"GET / HTTP/1.1\r\n"),
            Err(FrameError::BadMagic { .. })
        ));
        assert!(matches!(decode(b"G"), Err(FrameError::BadMagic { .. })));
        assert_eq!(decode(&good[..2]), Ok(None));
        assert_eq!(decode(&good[..HEADER_LEN + 3]), Ok(None));
        let mut bad = good.clone();
        bad[10] ^= 1;
        assert!(matches!(decode(&bad), Err(FrameError::HeaderCrc { .. })));
        let mut bad = good.clone();
        bad[HEADER_LEN] ^= 1;
        assert!(matches!(
            decode(&bad),
            Err(FrameError::BodyCrc { kind: 20, .. })
        ));
        let big = encode_frame(&h, &Body::from(vec![0u8; 2000])).expect("fits");
        assert!(matches!(
            decode(&big),
            Err(FrameError::TooLarge { bytes: 2036, .. })
        ));
        let mut bad = good.clone();
        bad[5] = 9;
        let crc = crc32c::crc32c(&bad[..32]);
        bad[32..36].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&bad), Err(FrameError::UnknownFrameType { found: 9 }));
        bad[5] = 1;
        bad[4] = 2;
        let crc = crc32c::crc32c(&bad[..32]);
        bad[32..36].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode(&bad),
            Err(FrameError::UnsupportedVersion { found: 2, .. })
        ));
    }

    #[test]
    fn decoded_body_shares_the_read_buffer() {
        let d = Decoder::new(1024);
        let h = header(FrameType::OneWay, 16, 0, 0);
        let wire = encode_frame(&h, &Body::from(vec![5u8; 100])).expect("fits");
        let mut buf = BytesMut::from(&wire[..]);
        let start = buf.as_ptr() as usize;
        let f = d.decode(&mut buf).expect("valid").expect("whole");
        assert_eq!(f.body.as_ptr() as usize, start + HEADER_LEN, "no copy");
    }
}
