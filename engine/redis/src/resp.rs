//! RESP2, the Redis wire protocol: a total, zero-copy request parser and a
//! reply encoder.
//!
//! Requests are arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`),
//! or inline commands (`PING\r\n`) as telnet and old clients send them. The
//! parser never allocates by a length it has not checked against its limits
//! (Redis's `proto-max-bulk-len` and a cap on arguments), never panics, and
//! hands out the arguments as slices of the read buffer.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use sampan_kv::{Reply as DataReply, format_score};

/// Limits on what a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespLimits {
    /// Largest bulk string (Redis's `proto-max-bulk-len`, 512 MiB there).
    pub bulk_max_bytes: usize,
    /// Most arguments in one command.
    pub args_max: usize,
    /// Longest inline command or length line.
    pub inline_max_bytes: usize,
    /// Most bytes in one multibulk request, every argument counted (Redis's
    /// `client-query-buffer-limit`). Without it the other limits still let
    /// one request declare `args_max` bulks of `bulk_max_bytes` each, and a
    /// connection buffer terabytes waiting for it.
    pub request_max_bytes: usize,
}

/// The default [`RespLimits::request_max_bytes`]: a few times the largest
/// proposal, since a larger write could never apply anyway.
pub const REQUEST_MAX_BYTES_DEFAULT: usize = 64 << 20;
const _: () = assert!(
    REQUEST_MAX_BYTES_DEFAULT > 2 * sampan::group::PROPOSAL_BYTES_MAX
        && sampan::group::PROPOSAL_BYTES_MAX > sampan_kv::VALUE_MAX_BYTES
);

impl Default for RespLimits {
    fn default() -> Self {
        RespLimits {
            bulk_max_bytes: sampan_kv::VALUE_MAX_BYTES,
            args_max: 1 << 20,
            inline_max_bytes: 64 << 10,
            request_max_bytes: REQUEST_MAX_BYTES_DEFAULT,
        }
    }
}

/// Why a request could not be parsed. Each closes only the connection that
/// sent it; the text is what Redis answers before closing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// A length line that is not a number, or a wrong type byte.
    #[error("Protocol error: {0}")]
    Protocol(String),
    /// A bulk string over the limit.
    #[error("Protocol error: invalid bulk length")]
    BulkTooLong,
    /// Too many arguments.
    #[error("Protocol error: invalid multibulk length")]
    TooManyArgs,
    /// An inline command or length line over the limit.
    #[error("Protocol error: too big inline request")]
    InlineTooLong,
    /// A multibulk request whose lengths add up to more than
    /// [`RespLimits::request_max_bytes`]; refused as soon as a length line
    /// says so, before its bytes arrive.
    #[error("Protocol error: too big request")]
    RequestTooLong,
}

/// Parses one request from the front of `buf`. `Ok(None)`: need more bytes
/// (nothing consumed). `Ok(Some(args))`: the request's bytes are consumed and
/// the arguments are slices of them. An empty inline line gives an empty
/// argument list (Redis ignores it).
pub fn parse_request(
    buf: &mut BytesMut,
    limits: &RespLimits,
) -> Result<Option<Vec<Bytes>>, RespError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != b'*' {
        return parse_inline(buf, limits);
    }
    // First pass: find where the request ends, checking every length,
    // without copying. Second pass: split it off and slice the arguments.
    let Some((end, spans)) = scan_multibulk(buf, limits)? else {
        return Ok(None);
    };
    let frame = buf.split_to(end).freeze();
    Ok(Some(
        spans.into_iter().map(|(s, e)| frame.slice(s..e)).collect(),
    ))
}

/// Byte ranges of a request's arguments within its frame.
type Spans = Vec<(usize, usize)>;

/// Finds the end of a multibulk request and the byte ranges of its
/// arguments; `None` if incomplete.
fn scan_multibulk(buf: &[u8], limits: &RespLimits) -> Result<Option<(usize, Spans)>, RespError> {
    // Redis's words for a count or a length that is not a number.
    let bad_count = |_| RespError::Protocol("invalid multibulk length".into());
    let bad_len = |_| RespError::Protocol("invalid bulk length".into());
    let Some((n, mut pos)) = read_length(buf, 1, limits).map_err(bad_count)? else {
        return Ok(None);
    };
    if n < 0 {
        return Ok(Some((pos, Vec::new())));
    }
    let n = n as usize;
    if n > limits.args_max {
        return Err(RespError::TooManyArgs);
    }
    // Capacity from the count only up to a small bound: the bytes prove the rest.
    let mut spans = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        if pos >= buf.len() {
            return Ok(None);
        }
        if buf[pos] != b'$' {
            return Err(RespError::Protocol(format!(
                "expected '$', got '{}'",
                char::from(buf[pos])
            )));
        }
        let Some((len, start)) = read_length(buf, pos + 1, limits).map_err(bad_len)? else {
            return Ok(None);
        };
        if len < 0 || len as usize > limits.bulk_max_bytes {
            return Err(RespError::BulkTooLong);
        }
        let end = start + len as usize;
        if end + 2 > limits.request_max_bytes {
            return Err(RespError::RequestTooLong);
        }
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(RespError::Protocol(
                "bulk string not followed by CRLF".into(),
            ));
        }
        spans.push((start, end));
        pos = end + 2;
    }
    Ok(Some((pos, spans)))
}

/// Reads a decimal length terminated by CRLF starting at `at`; returns it and
/// the position after the CRLF, or `None` if the line is incomplete.
fn read_length(
    buf: &[u8],
    at: usize,
    limits: &RespLimits,
) -> Result<Option<(i64, usize)>, RespError> {
    let window = &buf[at.min(buf.len())..];
    let Some(nl) = window
        .iter()
        .take(limits.inline_max_bytes.min(32))
        .position(|&b| b == b'\r')
    else {
        if window.len() >= 32 {
            return Err(RespError::Protocol("invalid length line".into()));
        }
        return Ok(None);
    };
    if window.len() < nl + 2 {
        return Ok(None);
    }
    if window[nl + 1] != b'\n' {
        return Err(RespError::Protocol("length line not ended by CRLF".into()));
    }
    let text = std::str::from_utf8(&window[..nl])
        .map_err(|_| RespError::Protocol("invalid length".into()))?;
    let n: i64 = text
        .parse()
        .map_err(|_| RespError::Protocol("invalid length".into()))?;
    Ok(Some((n, at + nl + 2)))
}

fn parse_inline(buf: &mut BytesMut, limits: &RespLimits) -> Result<Option<Vec<Bytes>>, RespError> {
    let Some(nl) = buf
        .iter()
        .take(limits.inline_max_bytes + 1)
        .position(|&b| b == b'\n')
    else {
        if buf.len() > limits.inline_max_bytes {
            return Err(RespError::InlineTooLong);
        }
        return Ok(None);
    };
    let line = buf.split_to(nl + 1).freeze();
    let text_end = if nl > 0 && line[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let mut args = Vec::new();
    let mut i = 0;
    while i < text_end {
        while i < text_end && line[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while i < text_end && !line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i > start {
            if args.len() == limits.args_max {
                return Err(RespError::TooManyArgs);
            }
            args.push(line.slice(start..i));
        }
    }
    Ok(Some(args))
}

/// Builds replies into an output buffer; many replies queue up and go out in
/// one write.
pub struct Reply<'a> {
    out: &'a mut BytesMut,
    /// RESP3 (after `HELLO 3`): nulls are `_`, maps are `%`.
    resp3: bool,
}

impl<'a> Reply<'a> {
    /// Writes RESP2 replies at the end of `out`.
    pub fn new(out: &'a mut BytesMut) -> Reply<'a> {
        Reply { out, resp3: false }
    }

    /// Writes replies in protocol `proto` (2 or 3, as `HELLO` set it).
    pub fn with_proto(out: &'a mut BytesMut, proto: u8) -> Reply<'a> {
        Reply {
            out,
            resp3: proto >= 3,
        }
    }

    /// The header of a map of `n` pairs (write each key, then its value):
    /// `%n` in RESP3, a flat array of `2n` in RESP2.
    pub fn map(&mut self, n: usize) {
        if self.resp3 {
            self.out.put_u8(b'%');
            self.put_decimal(n as i64);
            self.out.put_slice(b"\r\n");
        } else {
            self.array(Some(2 * n));
        }
    }

    /// The null: `_` in RESP3, the nil bulk `$-1` in RESP2.
    pub fn null(&mut self) {
        if self.resp3 {
            self.out.put_slice(b"_\r\n");
        } else {
            self.out.put_slice(b"$-1\r\n");
        }
    }

    /// `+OK`-style status.
    pub fn simple(&mut self, s: &str) {
        self.out.put_u8(b'+');
        self.out.put_slice(s.as_bytes());
        self.out.put_slice(b"\r\n");
    }

    /// An error; `msg` starts with its code (`ERR ...`, `WRONGTYPE ...`).
    pub fn error(&mut self, msg: &str) {
        crate::stats::error(msg);
        self.out.put_u8(b'-');
        // An error line may not hold CR or LF.
        for &b in msg.as_bytes() {
            self.out
                .put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
        self.out.put_slice(b"\r\n");
    }

    /// `:n`.
    pub fn integer(&mut self, n: i64) {
        self.out.put_u8(b':');
        self.put_decimal(n);
        self.out.put_slice(b"\r\n");
    }

    /// `$len` + bytes, or the nil bulk `$-1` for `None`.
    pub fn bulk(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                self.out.put_u8(b'$');
                self.put_decimal(b.len() as i64);
                self.out.put_slice(b"\r\n");
                self.out.put_slice(b);
                self.out.put_slice(b"\r\n");
            }
            None => self.null(),
        }
    }

    /// The header of an array of `n` elements (write them next), or the nil
    /// array `*-1` for `None`.
    pub fn array(&mut self, n: Option<usize>) {
        match n {
            Some(n) => {
                self.out.put_u8(b'*');
                self.put_decimal(n as i64);
                self.out.put_slice(b"\r\n");
            }
            None if self.resp3 => self.out.put_slice(b"_\r\n"),
            None => self.out.put_slice(b"*-1\r\n"),
        }
    }

    /// The header of a set of `n` members: `~n` in RESP3, an array in
    /// RESP2.
    pub fn set(&mut self, n: usize) {
        if self.resp3 {
            self.out.put_u8(b'~');
            self.put_decimal(n as i64);
            self.out.put_slice(b"\r\n");
        } else {
            self.array(Some(n));
        }
    }

    /// A double: `,1.5` in RESP3, a bulk string in RESP2, formatted as
    /// Redis 7.0 formats scores.
    pub fn double(&mut self, v: f64) {
        let text = format_score(v);
        if self.resp3 {
            self.out.put_u8(b',');
            self.out.put_slice(text.as_bytes());
            self.out.put_slice(b"\r\n");
        } else {
            self.bulk(Some(text.as_bytes()));
        }
    }

    /// A reply tree from the state machine, in this connection's protocol.
    pub fn reply(&mut self, r: &DataReply) {
        match r {
            DataReply::Nil => self.null(),
            DataReply::NilArray => self.array(None),
            DataReply::Ok => self.simple("OK"),
            DataReply::Status(s) => self.simple(s),
            DataReply::Int(n) => self.integer(*n),
            DataReply::Bulk(b) => self.bulk(Some(b)),
            DataReply::Double(v) => self.double(*v),
            DataReply::Error(e) => self.error(e),
            DataReply::Array(items) => {
                self.array(Some(items.len()));
                items.iter().for_each(|i| self.reply(i));
            }
            DataReply::Set(items) => {
                self.set(items.len());
                items.iter().for_each(|i| self.reply(i));
            }
            DataReply::Map(pairs) => {
                self.map(pairs.len());
                for (k, v) in pairs {
                    self.reply(k);
                    self.reply(v);
                }
            }
            DataReply::Pairs(pairs) => {
                if self.resp3 {
                    self.array(Some(pairs.len()));
                    for (k, v) in pairs {
                        self.array(Some(2));
                        self.reply(k);
                        self.reply(v);
                    }
                } else {
                    self.array(Some(2 * pairs.len()));
                    for (k, v) in pairs {
                        self.reply(k);
                        self.reply(v);
                    }
                }
            }
        }
    }

    fn put_decimal(&mut self, n: i64) {
        let mut tmp = itoa_buf(n);
        self.out.put_slice(tmp.as_bytes_mut());
    }
}

/// Decimal text of `n` without allocating.
struct Decimal {
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    fn as_bytes_mut(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(n: i64) -> Decimal {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let neg = n < 0;
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    Decimal { buf, start: i }
}

/// Splits `buf` at each complete reply; used by tests and the CLI to read
/// what a server wrote. Returns the number of bytes of complete replies.
pub fn skip_reply(buf: &[u8]) -> Option<usize> {
    let mut b = buf;
    let len = reply_len(&mut b)?;
    Some(len)
}

fn reply_len(buf: &mut &[u8]) -> Option<usize> {
    let start_len = buf.len();
    let kind = *buf.first()?;
    let nl = buf.iter().position(|&b| b == b'\n')?;
    let line = &buf[1..nl.saturating_sub(1)];
    buf.advance(nl + 1);
    match kind {
        b'+' | b'-' | b':' => {}
        b'$' => {
            let n: i64 = std::str::from_utf8(line).ok()?.parse().ok()?;
            if n >= 0 {
                let n = n as usize;
                if buf.len() < n + 2 {
                    return None;
                }
                buf.advance(n + 2);
            }
        }
        b'*' => {
            let n: i64 = std::str::from_utf8(line).ok()?.parse().ok()?;
            for _ in 0..n.max(0) {
                reply_len(buf)?;
            }
        }
        _ => return None,
    }
    Some(start_len - buf.len())
}
