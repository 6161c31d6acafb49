//! The entry record: the bytes of one log entry, the same on disk and on
//! the wire, and a total parser/validator for a run of them.
//!
//! ```text
//! offset size field
//!  0      1   version (1)
//!  1      1   kind (entry type, opaque to storage)
//!  2      2   reserved, zero
//!  4      4   payload length (bytes, without padding)
//!  8      8   index
//! 16      8   term
//! 24      8   segment id   (of the log that wrote it; stale bytes of an
//!                           older segment never validate in a newer one)
//! 32      8   sync floor   (every index <= this was durable when this
//!                           record was written: tells a torn tail from
//!                           corruption on recovery)
//! 40      4   CRC32C of the payload
//! 44      4   CRC32C of bytes 0..44
//! 48      .   payload, then zero padding to a multiple of 8
//! ```
//!
//! All integers little-endian. A leader sends records exactly as its log
//! holds them; a follower validates them with [`parse_run`] and appends
//! them with `append_run`, which restamps the segment id and sync floor
//! (header only: the payload and its CRC are never touched).

use crate::error::FormatError;
use bytes::Bytes;

/// Bytes of a record header.
pub const HEADER_BYTES: usize = 48;
/// The record format version this build writes and reads.
pub const RECORD_VERSION: u8 = 1;
/// Records are padded to a multiple of this.
pub const RECORD_ALIGN: usize = 8;
/// Default largest payload a parser accepts (bytes).
pub const PAYLOAD_BYTES_MAX_DEFAULT: u32 = 16 << 20;

const OFF_LEN: usize = 4;
const OFF_INDEX: usize = 8;
const OFF_TERM: usize = 16;
const OFF_SEGMENT: usize = 24;
const OFF_FLOOR: usize = 32;
const OFF_PAYLOAD_CRC: usize = 40;
const OFF_HEADER_CRC: usize = 44;

/// The decoded header of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Entry type, defined by the engine.
    pub kind: u8,
    /// Payload length in bytes (without padding).
    pub payload_len: u32,
    /// Log index.
    pub index: u64,
    /// Term.
    pub term: u64,
    /// Segment id of the log that wrote these bytes.
    pub segment_id: u64,
    /// Every index at or below this was durable when this was written.
    pub sync_floor: u64,
    /// CRC32C of the payload.
    pub payload_crc: u32,
}

impl RecordHeader {
    /// Bytes of the whole record (header, payload, padding).
    pub fn record_len(&self) -> usize {
        record_len(self.payload_len as usize)
    }
}

/// Bytes a record with `payload_len` payload bytes takes (header, payload
/// and padding).
pub fn record_len(payload_len: usize) -> usize {
    HEADER_BYTES + payload_len.div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Appends one encoded record to `out` (segment id and sync floor zero: the
/// log stamps its own when it writes).
pub fn encode_record(out: &mut Vec<u8>, index: u64, term: u64, kind: u8, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("payload above 4 GiB: callers bound it");
    let start = out.len();
    out.reserve(record_len(payload.len()));
    out.push(RECORD_VERSION);
    out.push(kind);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&term.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    let hcrc = crc32c::crc32c(&out[start..start + OFF_HEADER_CRC]);
    out.extend_from_slice(&hcrc.to_le_bytes());
    out.extend_from_slice(payload);
    out.resize(start + record_len(payload.len()), 0);
}

/// Rewrites the segment id and sync floor of the record header at the start
/// of `header`, and its header CRC. The payload CRC is left as it is.
pub fn restamp(header: &mut [u8], segment_id: u64, sync_floor: u64) {
    assert!(header.len() >= HEADER_BYTES, "restamp needs a whole header");
    header[OFF_SEGMENT..OFF_SEGMENT + 8].copy_from_slice(&segment_id.to_le_bytes());
    header[OFF_FLOOR..OFF_FLOOR + 8].copy_from_slice(&sync_floor.to_le_bytes());
    let hcrc = crc32c::crc32c(&header[..OFF_HEADER_CRC]);
    header[OFF_HEADER_CRC..HEADER_BYTES].copy_from_slice(&hcrc.to_le_bytes());
}

/// Whether the `HEADER_BYTES` at the start of `b` are all zero (never
/// written: the clean end of a segment's data).
pub fn is_zero_header(b: &[u8]) -> bool {
    b.len() >= HEADER_BYTES && b[..HEADER_BYTES].iter().all(|&x| x == 0)
}

/// Decodes and checks the header at `offset` of `b` (version, reserved
/// bytes, header CRC, payload length within `payload_max`, and that the
/// whole record fits in `b`). Does not check the payload CRC.
pub fn decode_header(
    b: &[u8],
    offset: usize,
    payload_max: u32,
) -> Result<RecordHeader, FormatError> {
    let header = decode_header_only(b, offset, payload_max)?;
    let needed = header.record_len();
    let available = b.len() - offset;
    if available < needed {
        return Err(FormatError::Truncated {
            offset,
            needed,
            available,
        });
    }
    Ok(header)
}

/// As [`decode_header`], without checking that the payload is in `b`.
pub fn decode_header_only(
    b: &[u8],
    offset: usize,
    payload_max: u32,
) -> Result<RecordHeader, FormatError> {
    let available = b.len().saturating_sub(offset);
    if available < HEADER_BYTES {
        return Err(FormatError::Truncated {
            offset,
            needed: HEADER_BYTES,
            available,
        });
    }
    let h = &b[offset..offset + HEADER_BYTES];
    if crc32c::crc32c(&h[..OFF_HEADER_CRC]) != u32_at(h, OFF_HEADER_CRC) {
        return Err(FormatError::HeaderCrc { offset });
    }
    if h[0] != RECORD_VERSION {
        return Err(FormatError::Version {
            offset,
            version: h[0],
        });
    }
    if h[2] != 0 || h[3] != 0 {
        return Err(FormatError::Reserved { offset });
    }
    let payload_len = u32_at(h, OFF_LEN);
    if payload_len > payload_max {
        return Err(FormatError::TooLarge {
            offset,
            len: u64::from(payload_len),
            limit: u64::from(payload_max),
        });
    }
    let header = RecordHeader {
        kind: h[1],
        payload_len,
        index: u64_at(h, OFF_INDEX),
        term: u64_at(h, OFF_TERM),
        segment_id: u64_at(h, OFF_SEGMENT),
        sync_floor: u64_at(h, OFF_FLOOR),
        payload_crc: u32_at(h, OFF_PAYLOAD_CRC),
    };
    Ok(header)
}

/// Decodes the record at `offset` and checks it whole: header as
/// [`decode_header`], payload CRC, zero padding.
pub fn check_record(
    b: &[u8],
    offset: usize,
    payload_max: u32,
) -> Result<RecordHeader, FormatError> {
    let h = decode_header(b, offset, payload_max)?;
    let start = offset + HEADER_BYTES;
    let end = start + h.payload_len as usize;
    if crc32c::crc32c(&b[start..end]) != h.payload_crc {
        return Err(FormatError::PayloadCrc {
            offset,
            index: h.index,
        });
    }
    if b[end..offset + h.record_len()].iter().any(|&x| x != 0) {
        return Err(FormatError::Reserved { offset });
    }
    Ok(h)
}

/// A validated run of consecutive records, as one `Bytes` (for the wire, or
/// as read from the log without copying).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRun {
    bytes: Bytes,
    first_index: u64,
    count: u64,
    last_term: u64,
}

impl RecordRun {
    /// An empty run that would start at `first_index`.
    pub fn empty(first_index: u64) -> RecordRun {
        RecordRun {
            bytes: Bytes::new(),
            first_index,
            count: 0,
            last_term: 0,
        }
    }

    /// The encoded records.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The index of the first record (or where an empty run would start).
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// The index of the last record; `first_index - 1` when empty.
    pub fn last_index(&self) -> u64 {
        self.first_index + self.count - 1
    }

    /// The term of the last record (0 when empty).
    pub fn last_term(&self) -> u64 {
        self.last_term
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether the run holds no record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The records, in order (zero-copy slices of the run).
    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter {
            bytes: &self.bytes,
            offset: 0,
        }
    }

    /// Splits off the records after `last_kept` (which must be in the run or
    /// just before it), keeping the front in `self`.
    pub fn truncate_after(&mut self, last_kept: u64) {
        if last_kept >= self.last_index() {
            return;
        }
        let keep = last_kept.saturating_sub(self.first_index - 1);
        let (end, term) = self.walk(keep);
        self.bytes.truncate(end);
        self.count = keep;
        self.last_term = term;
    }
}

impl RecordRun {
    /// Each record's end offset and term, in order. Reads only their
    /// lengths and terms: the run's records were validated (or encoded
    /// here) when it was made, so their CRCs are not checked again.
    fn ends(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        let mut offset = 0;
        (0..self.count).map_while(move |_| {
            let h = self.bytes.get(offset..offset + HEADER_BYTES)?;
            offset += record_len(u32_at(h, OFF_LEN) as usize);
            Some((offset, u64_at(h, OFF_TERM)))
        })
    }

    /// The byte offset after the first `n` records, and the last one's
    /// term (0 for none).
    fn walk(&self, n: u64) -> (usize, u64) {
        let (end, term) = self
            .ends()
            .take(usize::try_from(n).unwrap_or(usize::MAX))
            .last()
            .unwrap_or((0, 0));
        (end.min(self.bytes.len()), term)
    }

    /// Where each record starts, then where the last one ends (`len() + 1`
    /// offsets): with them, [`RecordRun::sub_run`] cuts the run anywhere
    /// without walking it.
    pub fn record_offsets(&self) -> Vec<u32> {
        let mut offsets = Vec::with_capacity(self.count as usize + 1);
        offsets.push(0);
        offsets.extend(
            self.ends()
                .map(|(end, _)| u32::try_from(end).unwrap_or(u32::MAX)),
        );
        offsets
    }

    /// The records `first..=last` of this run, zero-copy, cut at `offsets`
    /// (this run's [`RecordRun::record_offsets`]). `None` if they are not
    /// all in the run or the offsets are not this run's.
    pub fn sub_run(&self, offsets: &[u32], first: u64, last: u64) -> Option<RecordRun> {
        if first < self.first_index || last < first || last > self.last_index() {
            return None;
        }
        let a = usize::try_from(first - self.first_index).ok()?;
        let b = usize::try_from(last - self.first_index).ok()? + 1;
        let (start, last_start, end) = (
            *offsets.get(a)? as usize,
            *offsets.get(b - 1)? as usize,
            *offsets.get(b)? as usize,
        );
        let header = self.bytes.get(last_start..last_start + HEADER_BYTES)?;
        if end > self.bytes.len() || u64_at(header, OFF_INDEX) != last {
            return None;
        }
        Some(RecordRun {
            bytes: self.bytes.slice(start..end),
            first_index: first,
            count: last - first + 1,
            last_term: u64_at(header, OFF_TERM),
        })
    }

    /// Consecutive runs as one (their records copied into one buffer:
    /// records are self-contained, so that is a valid run). `None` if a run
    /// does not start where the one before it ended, or its terms go down.
    pub fn concat(runs: &[RecordRun]) -> Option<RecordRun> {
        let first = runs.first()?;
        let mut buf = Vec::with_capacity(runs.iter().map(|r| r.bytes.len()).sum());
        let mut joined = RecordRun::empty(first.first_index);
        for r in runs {
            if r.is_empty() {
                continue;
            }
            let next = joined.first_index + joined.count;
            if r.first_index != next || (joined.count > 0 && r.last_term < joined.last_term) {
                return None;
            }
            buf.extend_from_slice(&r.bytes);
            joined.count += r.count;
            joined.last_term = r.last_term;
        }
        joined.bytes = Bytes::from(buf);
        Some(joined)
    }

    /// Drops the records before `first_kept` (a follower skipping entries
    /// it already holds), keeping the rest, zero-copy.
    pub fn skip_before(&mut self, first_kept: u64) {
        if first_kept <= self.first_index || self.is_empty() {
            return;
        }
        let drop = (first_kept - self.first_index).min(self.count);
        let (start, _) = self.walk(drop);
        self.bytes = self.bytes.slice(start..);
        self.first_index += drop;
        self.count -= drop;
        if self.count == 0 {
            self.last_term = 0;
        }
    }
}

/// One record of a [`RecordRun`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its header.
    pub header: RecordHeader,
    /// The whole record (header, payload, padding).
    pub bytes: Bytes,
}

impl Record {
    /// The payload (zero-copy).
    pub fn payload(&self) -> Bytes {
        self.bytes
            .slice(HEADER_BYTES..HEADER_BYTES + self.header.payload_len as usize)
    }
}

/// Iterator over the records of a validated [`RecordRun`].
#[derive(Debug)]
pub struct RecordIter<'a> {
    bytes: &'a Bytes,
    offset: usize,
}

impl Iterator for RecordIter<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        // The run was validated when built: a failure here ends iteration.
        let header = decode_header(self.bytes, self.offset, u32::MAX).ok()?;
        let end = self.offset + header.record_len();
        let bytes = self.bytes.slice(self.offset..end);
        self.offset = end;
        Some(Record { header, bytes })
    }
}

/// Validates `bytes` as a run of whole records: every header and payload
/// CRC, consecutive indexes (starting at `first_index` when given), terms
/// that never go down, payloads at most `payload_max`. Total: any input
/// gives a run or an error, never a panic.
pub fn parse_run(
    bytes: Bytes,
    first_index: Option<u64>,
    payload_max: u32,
) -> Result<RecordRun, FormatError> {
    let mut offset = 0;
    let mut expected = first_index;
    let mut first = first_index.unwrap_or(0);
    let mut count = 0u64;
    let mut last_term = 0u64;
    while offset < bytes.len() {
        let h = check_record(&bytes, offset, payload_max)?;
        if let Some(e) = expected
            && (h.index != e || h.term < last_term)
        {
            return Err(FormatError::Sequence {
                offset,
                expected: e,
                found: h.index,
                term: h.term,
            });
        }
        if count == 0 {
            first = h.index;
        }
        expected = Some(h.index.wrapping_add(1));
        last_term = h.term;
        count += 1;
        offset += h.record_len();
    }
    Ok(RecordRun {
        bytes,
        first_index: first,
        count,
        last_term,
    })
}

/// Builds a [`RecordRun`] from entries (what a leader's Raft loop does with
/// new proposals).
#[derive(Debug)]
pub struct RunBuilder {
    buf: Vec<u8>,
    first_index: u64,
    next_index: u64,
    last_term: u64,
}

impl RunBuilder {
    /// A builder whose first record will have index `first_index`.
    pub fn new(first_index: u64) -> RunBuilder {
        RunBuilder::with_capacity(first_index, 0)
    }

    /// [`RunBuilder::new`], with room for `bytes` of records (see
    /// [`record_len`]) before it grows.
    pub fn with_capacity(first_index: u64, bytes: usize) -> RunBuilder {
        RunBuilder {
            buf: Vec::with_capacity(bytes),
            first_index,
            next_index: first_index,
            last_term: 0,
        }
    }

    /// Appends an entry at the next index. Terms must not go down.
    pub fn push(&mut self, term: u64, kind: u8, payload: &[u8]) -> &mut Self {
        assert!(term >= self.last_term, "terms of a run never go down");
        encode_record(&mut self.buf, self.next_index, term, kind, payload);
        self.next_index += 1;
        self.last_term = term;
        self
    }

    /// The run built so far.
    pub fn finish(self) -> RecordRun {
        RecordRun {
            bytes: Bytes::from(self.buf),
            first_index: self.first_index,
            count: self.next_index - self.first_index,
            last_term: self.last_term,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(first: u64, payloads: &[&[u8]]) -> RecordRun {
        let mut b = RunBuilder::new(first);
        for (i, p) in payloads.iter().enumerate() {
            b.push(1 + i as u64 / 2, (i % 3) as u8, p);
        }
        b.finish()
    }

    #[test]
    fn a_run_cut_at_its_offsets_is_the_same_as_one_built_from_those_records() {
        let payloads: [&[u8]; 5] = [b"a", b"", b"twelve bytes", b"x", b"yz"];
        let r = run(3, &payloads);
        let offsets = r.record_offsets();
        assert_eq!(offsets.len(), 6);
        assert_eq!(*offsets.last().expect("end") as usize, r.bytes().len());
        for first in 3..=7u64 {
            for last in first..=7 {
                let cut = r.sub_run(&offsets, first, last).expect("in the run");
                let mut whole = r.clone();
                whole.skip_before(first);
                whole.truncate_after(last);
                assert_eq!(cut, whole, "{first}..={last}");
            }
        }
        assert!(r.sub_run(&offsets, 2, 4).is_none(), "before the run");
        assert!(r.sub_run(&offsets, 6, 8).is_none(), "past the run");
        assert!(r.sub_run(&offsets, 5, 4).is_none(), "backwards");
        let other = run(3, &[b"much longer than the first", b"b"]).record_offsets();
        assert!(r.sub_run(&other, 4, 4).is_none(), "another run's offsets");
    }

    #[test]
    fn consecutive_runs_concatenate_into_a_valid_run_and_others_do_not() {
        let a = run(7, &[b"a", b"bb"]);
        let mut b = RunBuilder::new(9);
        b.push(5, 0, b"ccc").push(5, 0, b"");
        let b = b.finish();
        let joined =
            RecordRun::concat(&[a.clone(), RecordRun::empty(9), b.clone()]).expect("consecutive");
        assert_eq!(
            (
                joined.first_index(),
                joined.last_index(),
                joined.last_term()
            ),
            (7, 10, 5)
        );
        let parsed = parse_run(joined.bytes().clone(), Some(7), 1024).expect("valid");
        assert_eq!(parsed, joined);
        let payloads: Vec<Bytes> = parsed.iter().map(|r| r.payload()).collect();
        assert_eq!(payloads, [&b"a"[..], b"bb", b"ccc", b""]);
        // A gap, an overlap, terms going down: refused.
        assert!(RecordRun::concat(&[a.clone(), run(10, &[b"x"])]).is_none());
        assert!(RecordRun::concat(&[a.clone(), run(8, &[b"x"])]).is_none());
        assert!(
            RecordRun::concat(&[b, run(11, &[b"x"])]).is_none(),
            "term 1 after 5"
        );
        assert!(RecordRun::concat(&[]).is_none());
    }

    #[test]
    fn round_trip_and_iterate() {
        let r = run(7, &[b"a", b"", b"hello world, twelve+"]);
        assert_eq!((r.first_index(), r.last_index(), r.len()), (7, 9, 3));
        let parsed = parse_run(r.bytes().clone(), Some(7), 1024).expect("valid");
        assert_eq!(parsed, r);
        let payloads: Vec<_> = parsed.iter().map(|x| x.payload()).collect();
        assert_eq!(payloads[2], Bytes::from_static(b"hello world, twelve+"));
        assert!(r.bytes().len().is_multiple_of(RECORD_ALIGN));
    }

    #[test]
    fn restamp_keeps_records_valid() {
        let r = run(1, &[b"abc"]);
        let mut v = r.bytes().to_vec();
        restamp(&mut v, 42, 7);
        let h = check_record(&v, 0, 1024).expect("valid after restamp");
        assert_eq!((h.segment_id, h.sync_floor), (42, 7));
    }

    #[test]
    fn errors_are_typed() {
        let r = run(1, &[b"abcdef", b"xyz"]);
        let b = r.bytes().to_vec();
        let mut flip = b.clone();
        flip[HEADER_BYTES + 1] ^= 1;
        assert!(matches!(
            parse_run(Bytes::from(flip), None, 1024),
            Err(FormatError::PayloadCrc {
                offset: 0,
                index: 1
            })
        ));
        let mut flip = b.clone();
        flip[9] ^= 1;
        assert!(matches!(
            parse_run(Bytes::from(flip), None, 1024),
            Err(FormatError::HeaderCrc { offset: 0 })
        ));
        assert!(matches!(
            parse_run(Bytes::from(b[..b.len() - 1].to_vec()), None, 1024),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            parse_run(Bytes::from(b.clone()), Some(2), 1024),
            Err(FormatError::Sequence { .. })
        ));
        assert!(matches!(
            parse_run(Bytes::from(b), None, 3),
            Err(FormatError::TooLarge { .. })
        ));
    }

    #[test]
    fn truncate_after_keeps_a_prefix() {
        let mut r = run(5, &[b"a", b"bb", b"ccc"]);
        r.truncate_after(6);
        assert_eq!((r.first_index(), r.last_index()), (5, 6));
        assert_eq!(parse_run(r.bytes().clone(), Some(5), 64).expect("valid"), r);
        r.truncate_after(4);
        assert!(r.is_empty());
        let mut r = run(5, &[b"a", b"bb", b"ccc"]);
        r.skip_before(7);
        assert_eq!((r.first_index(), r.last_index(), r.last_term()), (7, 7, 2));
        assert_eq!(parse_run(r.bytes().clone(), Some(7), 64).expect("valid"), r);
        r.skip_before(9);
        assert!(r.is_empty());
        assert_eq!(r.first_index(), 8);
    }

    proptest! {
        #[test]
        fn parser_is_total(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_run(Bytes::from(data), None, 1 << 20);
        }

        #[test]
        fn any_single_bit_flip_is_caught(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..5),
            bit in any::<usize>(),
        ) {
            let refs: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
            let r = run(1, &refs);
            let mut v = r.bytes().to_vec();
            let bit = bit % (v.len() * 8);
            v[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(parse_run(Bytes::from(v), Some(1), 1 << 20).is_err());
        }
    }
}
