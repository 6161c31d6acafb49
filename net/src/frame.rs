//! The frame: the unit on the wire. A fixed 36-byte header, then the body.
//!
//! ```text
//! offset size field
//!      0    4 magic        "SMPN" (0x534D504E), little endian like every field
//!      4    1 version      FRAME_VERSION
//!      5    1 frame type   0 one-way, 1 request, 2 response, 3 error response
//!      6    2 kind         what the body is (0..16 reserved for the transport)
//!      8    8 group id     the Raft group (0 when none)
//!     16    8 request id   matches a response to its request (0 for one-way)
//!     24    4 body length  bytes after the header
//!     28    4 body CRC32C  of the body bytes
//!     32    4 header CRC32C of bytes 0..32
//! ```
//!
//! Two CRCs, not one over everything: the header CRC is checked before the
//! body length is trusted, so a flipped bit in the length is caught at once
//! instead of making the reader wait for, or reserve room for, a body that
//! will never come (or misread the next frame as this one's body). The body
//! CRC is folded over the body's pieces one by one (`crc32c_append`), so a
//! body made of a header plus log slices is checked without joining it.

use bytes::Bytes;

/// The first four bytes of every frame ("SMPN").
pub const MAGIC: u32 = 0x534D_504E;
/// The frame format this build writes and reads.
pub const FRAME_VERSION: u8 = 1;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 36;
/// Default maximum frame size (header + body): 16 MiB.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 16 << 20;
/// The handshake's kind (reserved).
pub const KIND_HANDSHAKE: u16 = 0;
/// The first kind free for users of the transport; lower kinds are reserved.
pub const KIND_USER_MIN: u16 = 16;

/// What a frame is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// A message that expects no response.
    OneWay,
    /// A request; the peer answers with a response of the same request id.
    Request,
    /// A successful response to a request.
    Response,
    /// A failed response: the body is an error code and a message.
    ErrorResponse,
}

impl FrameType {
    /// The byte on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            FrameType::OneWay => 0,
            FrameType::Request => 1,
            FrameType::Response => 2,
            FrameType::ErrorResponse => 3,
        }
    }

    /// The type for a wire byte, if it is one.
    pub fn from_byte(b: u8) -> Option<FrameType> {
        match b {
            0 => Some(FrameType::OneWay),
            1 => Some(FrameType::Request),
            2 => Some(FrameType::Response),
            3 => Some(FrameType::ErrorResponse),
            _ => None,
        }
    }

    /// Whether this answers a request (either way).
    pub fn is_response(self) -> bool {
        matches!(self, FrameType::Response | FrameType::ErrorResponse)
    }
}

/// The fields of a frame header that carry meaning (the rest — magic,
/// version, length and CRCs — is computed by the codec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// One-way, request or response.
    pub frame_type: FrameType,
    /// What the body is.
    pub kind: u16,
    /// The Raft group the frame is for (0 when none).
    pub group_id: u64,
    /// Request/response correlation (0 for one-way frames).
    pub request_id: u64,
}

/// A received frame: its header and its body, a slice of the connection's
/// read buffer (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The header's fields.
    pub header: FrameHeader,
    /// The body.
    pub body: Bytes,
}

/// A body to send: one or more `Bytes` pieces, written one after another
/// without being joined (a message header plus slices of the log, say).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body {
    pieces: Pieces,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Pieces {
    #[default]
    Empty,
    One(Bytes),
    Many(Vec<Bytes>),
}

impl Body {
    /// An empty body.
    pub fn empty() -> Body {
        Body::default()
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> &[Bytes] {
        match &self.pieces {
            Pieces::Empty => &[],
            Pieces::One(b) => std::slice::from_ref(b),
            Pieces::Many(v) => v,
        }
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.pieces().iter().map(Bytes::len).sum()
    }

    /// Whether the body holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.pieces().iter().all(Bytes::is_empty)
    }

    /// CRC32C of the body, folded piece by piece.
    pub fn crc(&self) -> u32 {
        self.pieces()
            .iter()
            .fold(0, |crc, p| crc32c::crc32c_append(crc, p))
    }

    /// Appends a piece.
    pub fn push(&mut self, piece: Bytes) {
        self.pieces = match std::mem::take(&mut self.pieces) {
            Pieces::Empty => Pieces::One(piece),
            Pieces::One(first) => Pieces::Many(vec![first, piece]),
            Pieces::Many(mut v) => {
                v.push(piece);
                Pieces::Many(v)
            }
        };
    }

    /// The body as one contiguous `Bytes` (copies only when there are
    /// several pieces). For tests and cold paths.
    pub fn to_bytes(&self) -> Bytes {
        match &self.pieces {
            Pieces::Empty => Bytes::new(),
            Pieces::One(b) => b.clone(),
            Pieces::Many(v) => Bytes::from(v.concat()),
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Body {
        Body {
            pieces: Pieces::One(b),
        }
    }
}

impl From<Vec<Bytes>> for Body {
    fn from(v: Vec<Bytes>) -> Body {
        Body {
            pieces: Pieces::Many(v),
        }
    }
}

impl From<&'static [u8]> for Body {
    fn from(s: &'static [u8]) -> Body {
        Body::from(Bytes::from_static(s))
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Body {
        Body::from(Bytes::from(v))
    }
}
