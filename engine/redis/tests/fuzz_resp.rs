//! Fuzzing the RESP request parser, run by CI for a bounded number of
//! cases. Byte streams — valid pipelines of multibulk and inline requests,
//! the same mutated (flips, cuts, inserts, hostile length lines), and
//! random bytes — are parsed the way the Redis listener parses them (read
//! by read, every complete request taken after each read) with random read
//! sizes, and all at once. Both must give the same requests and stop the
//! same way; no request may break a limit; the read buffer never grows past
//! a request's limit plus one read; and a parse never allocates more than a
//! small multiple of the bytes it was given, whatever lengths they declare.
//!
//! CI: 3 × 20,000 cases, about 2 s in the test profile. Long runs:
//! `SAMPAN_FUZZ_CASES=1000000 cargo test --workspace --test fuzz_resp`.
#![allow(clippy::unwrap_used)]

#[path = "../../runtime/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use bytes::{Bytes, BytesMut};
use fuzz_support::{Counting, cases, peak_bytes};
use proptest::prelude::*;
use proptest::sample::Index;
use sampan_redis::resp::{RespError, RespLimits, parse_request};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes a parse may hold per byte of input, plus a constant. The worst
/// case is an inline line of one-letter words: two input bytes per
/// argument, each a 32-byte `Bytes` in a vector that grows by doubling.
/// (A multibulk argument takes at least 6 bytes, `$0` CRLF CRLF, and costs
/// its `Bytes` and a 16-byte span.) What matters is that the bound is a
/// multiple of the input, not of what the input declares.
const ALLOC_PER_INPUT_BYTE: usize = 32;
const ALLOC_SLACK_BYTES: usize = 4096;

/// How a stream of requests parsed.
#[derive(Debug, PartialEq)]
struct Outcome {
    requests: Vec<Vec<Bytes>>,
    /// The error that closed the connection, if any.
    end: Option<RespError>,
    /// Bytes left unparsed (an incomplete request) when the stream ended.
    left: usize,
}

/// One `parse_request`, checked for what it may allocate and return.
fn parse_one(buf: &mut BytesMut, limits: &RespLimits) -> Result<Option<Vec<Bytes>>, RespError> {
    let len = buf.len();
    let (r, peak) = peak_bytes(|| parse_request(buf, limits));
    assert!(
        peak <= ALLOC_PER_INPUT_BYTE * len + ALLOC_SLACK_BYTES,
        "parsing {len} bytes held {peak} bytes"
    );
    if let Ok(Some(args)) = &r {
        assert!(args.len() <= limits.args_max, "{} arguments", args.len());
        for a in args {
            assert!(a.len() <= limits.bulk_max_bytes.max(limits.inline_max_bytes));
        }
    }
    r
}

/// Every complete request at the front of `buf`; `Err` ends the stream.
fn drain(buf: &mut BytesMut, limits: &RespLimits, out: &mut Vec<Vec<Bytes>>) -> Option<RespError> {
    loop {
        match parse_one(buf, limits) {
            Ok(Some(args)) => out.push(args),
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}

fn all_at_once(bytes: &[u8], limits: &RespLimits) -> Outcome {
    let mut buf = BytesMut::from(bytes);
    let mut requests = Vec::new();
    let end = drain(&mut buf, limits, &mut requests);
    let left = if end.is_some() { 0 } else { buf.len() };
    Outcome {
        requests,
        end,
        left,
    }
}

/// As the listener reads: a read of the next size (cycled), then every
/// complete request. Returns the outcome and the largest the read buffer
/// grew.
fn read_by_read(bytes: &[u8], reads: &[usize], limits: &RespLimits) -> (Outcome, usize) {
    let mut buf = BytesMut::new();
    let mut requests = Vec::new();
    let mut sizes = reads.iter().cycle();
    let (mut at, mut buf_max) = (0, 0);
    while at < bytes.len() {
        let n = (*sizes.next().unwrap()).clamp(1, bytes.len() - at);
        buf.extend_from_slice(&bytes[at..at + n]);
        at += n;
        buf_max = buf_max.max(buf.len());
        if let Some(e) = drain(&mut buf, limits, &mut requests) {
            let end = Some(e);
            return (
                Outcome {
                    requests,
                    end,
                    left: 0,
                },
                buf_max,
            );
        }
    }
    let left = buf.len();
    (
        Outcome {
            requests,
            end: None,
            left,
        },
        buf_max,
    )
}

fn check(bytes: &[u8], reads: &[usize], limits: &RespLimits) {
    let whole = all_at_once(bytes, limits);
    let (by_reads, buf_max) = read_by_read(bytes, reads, limits);
    assert_eq!(whole, by_reads, "read sizes {reads:?} change the outcome");
    // A request holds up the buffer only while it is within its limits
    // (its bulks, then at most a 32-byte length line; or an inline line).
    let read_max = reads.iter().max().copied().unwrap_or(1);
    let request_max = (limits.request_max_bytes + 32).max(limits.inline_max_bytes + 1);
    assert!(
        buf_max <= request_max + read_max,
        "the read buffer grew to {buf_max} bytes"
    );
}

/// Small limits, so the fuzzer reaches every one of them, or the defaults.
fn limits() -> impl Strategy<Value = RespLimits> {
    prop_oneof![
        Just(RespLimits::default()),
        (1usize..300, 1usize..12, 4usize..120, 16usize..2000).prop_map(|(b, a, i, r)| {
            RespLimits {
                bulk_max_bytes: b,
                args_max: a,
                inline_max_bytes: i,
                request_max_bytes: r,
            }
        }),
    ]
}

fn multibulk(args: &[Vec<u8>]) -> Vec<u8> {
    let mut wire = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        wire.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        wire.extend_from_slice(a);
        wire.extend_from_slice(b"\r\n");
    }
    wire
}

/// A pipeline of multibulk requests with binary arguments and inline ones
/// of printable words.
fn pipeline() -> impl Strategy<Value = Vec<u8>> {
    let arg = prop::collection::vec(any::<u8>(), 0..60);
    let word = "[!-~&&[^*]][!-~]{0,12}";
    let request = prop_oneof![
        3 => prop::collection::vec(arg, 0..6).prop_map(|args| multibulk(&args)),
        1 => (prop::collection::vec(word, 0..4), any::<bool>()).prop_map(|(words, cr)| {
            let mut line = words.join(" ").into_bytes();
            line.extend_from_slice(if cr { b"\r\n" } else { b"\n" });
            line
        }),
    ];
    prop::collection::vec(request, 0..8).prop_map(|r| r.concat())
}

/// Length lines a hostile client might send.
fn hostile_line() -> impl Strategy<Value = Vec<u8>> {
    let n = prop_oneof![
        Just("999999999".to_string()),
        Just("2147483647".to_string()),
        Just("4294967296".to_string()),
        Just("9223372036854775807".to_string()),
        Just("99999999999999999999".to_string()),
        Just("-1".to_string()),
        Just("-2147483648".to_string()),
        Just("+5".to_string()),
        Just(" 3".to_string()),
        Just("".to_string()),
        any::<u32>().prop_map(|n| n.to_string()),
    ];
    (prop_oneof![Just(b'*'), Just(b'$')], n).prop_map(|(kind, n)| {
        let mut line = vec![kind];
        line.extend_from_slice(n.as_bytes());
        line.extend_from_slice(b"\r\n");
        line
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    Hostile(Index, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..20))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<Index>(), 1usize..20).prop_map(|(i, n)| Mutation::Remove(i, n)),
        (any::<Index>(), hostile_line()).prop_map(|(i, v)| Mutation::Hostile(i, v)),
    ]
}

fn mutate(mut wire: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = wire.len();
        match m {
            Mutation::Flip(i, x) if len > 0 => wire[i.index(len)] ^= x,
            Mutation::Truncate(i) => wire.truncate(i.index(len + 1)),
            Mutation::Insert(i, v) | Mutation::Hostile(i, v) => {
                let at = i.index(len + 1);
                wire.splice(at..at, v.iter().copied());
            }
            Mutation::Remove(i, n) if len > 0 => {
                let at = i.index(len);
                wire.drain(at..(at + n).min(len));
            }
            _ => {}
        }
    }
    wire
}

fn reads() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..200, 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(20_000), ..ProptestConfig::default() })]

    #[test]
    fn valid_pipelines_parse_back_whatever_the_read_sizes(
        args in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..60), 1..6),
        rest in pipeline(),
        reads in reads(),
    ) {
        let mut wire = multibulk(&args);
        wire.extend_from_slice(&rest);
        let (got, _) = read_by_read(&wire, &reads, &RespLimits::default());
        prop_assert_eq!(got.end, None);
        prop_assert_eq!(got.left, 0);
        let want: Vec<Bytes> = args.into_iter().map(Bytes::from).collect();
        prop_assert_eq!(&got.requests[0], &want);
        check(&wire, &reads, &RespLimits::default());
    }

    #[test]
    fn mutated_pipelines(
        wire in pipeline(),
        mutations in prop::collection::vec(mutation(), 1..4),
        reads in reads(),
        limits in limits(),
    ) {
        check(&mutate(wire, &mutations), &reads, &limits);
    }

    #[test]
    fn random_bytes(
        first in prop_oneof![Just(b'*'), Just(b'$'), any::<u8>()],
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        reads in reads(),
        limits in limits(),
    ) {
        let mut wire = vec![first];
        wire.extend_from_slice(&bytes);
        check(&wire, &reads, &limits);
    }
}

/// The measure the other tests trust: an allocation is seen, and its size.
#[test]
fn the_allocation_counter_counts() {
    let (v, peak) = peak_bytes(|| Vec::<u8>::with_capacity(1 << 20));
    assert!(peak >= 1 << 20 && v.capacity() >= 1 << 20, "{peak}");
    let (_, peak) = peak_bytes(|| drop(Vec::<u8>::with_capacity(1 << 20)));
    assert!(peak >= 1 << 20, "a freed allocation still counts: {peak}");
}

/// Hostile lengths are refused, or waited on, without allocating for them.
#[test]
fn hostile_lengths_allocate_nothing_for_what_they_declare() {
    let limits = RespLimits::default();
    let bulk_max = limits.bulk_max_bytes;
    let cases: Vec<(Vec<u8>, Result<(), RespError>)> = vec![
        (b"*999999999\r\n".to_vec(), Err(RespError::TooManyArgs)),
        (
            b"*1\r\n$2147483647\r\n".to_vec(),
            Err(RespError::BulkTooLong),
        ),
        (
            b"*1\r\n$4294967296\r\n".to_vec(),
            Err(RespError::BulkTooLong),
        ),
        (b"*1\r\n$-5\r\n".to_vec(), Err(RespError::BulkTooLong)),
        (
            format!("*1\r\n${}\r\n", bulk_max + 1).into_bytes(),
            Err(RespError::BulkTooLong),
        ),
        // As many arguments as allowed: waited on, nothing reserved.
        (format!("*{}\r\n", limits.args_max).into_bytes(), Ok(())),
        // The largest bulk allowed: waited on, nothing reserved.
        (format!("*1\r\n${bulk_max}\r\n").into_bytes(), Ok(())),
        (
            b"*99999999999999999999\r\n".to_vec(),
            Err(RespError::Protocol("invalid multibulk length".into())),
        ),
        (
            b"*1\r\n$99999999999999999999\r\n".to_vec(),
            Err(RespError::Protocol("invalid bulk length".into())),
        ),
    ];
    for (wire, want) in cases {
        let mut buf = BytesMut::from(&wire[..]);
        let got = parse_one(&mut buf, &limits);
        let shown = String::from_utf8_lossy(&wire);
        match want {
            Ok(()) => assert_eq!(got, Ok(None), "{shown}"),
            Err(e) => assert_eq!(got, Err(e), "{shown}"),
        }
    }
}

/// Bulks each within `bulk_max_bytes` but together over the request limit:
/// refused once the lengths say so, with the read buffer never holding more
/// than the limit plus a read. (Before the request limit, a client could
/// make a connection buffer `args_max` × `bulk_max_bytes`, 8 TiB.)
#[test]
fn a_request_of_many_large_bulks_is_refused_at_its_limit() {
    let limits = RespLimits::default();
    let bulk = vec![b'x'; limits.bulk_max_bytes];
    let n = limits.request_max_bytes / bulk.len() + 2;
    let mut wire = format!("*{n}\r\n").into_bytes();
    for _ in 0..n {
        wire.extend_from_slice(format!("${}\r\n", bulk.len()).as_bytes());
        wire.extend_from_slice(&bulk);
        wire.extend_from_slice(b"\r\n");
    }
    let read = 64 << 10;
    let (got, buf_max) = read_by_read(&wire, &[read], &limits);
    assert_eq!(got.end, Some(RespError::RequestTooLong));
    assert!(got.requests.is_empty());
    assert!(
        buf_max <= limits.request_max_bytes + read,
        "buffered {buf_max} bytes"
    );
}

/// The most arguments a request may have, each empty, arriving in the
/// listener's 64 KiB reads: every read re-scans the request from its
/// start, so this is the parser's worst case for time. It must stay far
/// from a hang.
#[test]
fn the_most_arguments_in_small_reads_parse_in_bounded_time() {
    let limits = RespLimits::default();
    let args = vec![Vec::new(); limits.args_max];
    let wire = multibulk(&args);
    let start = Instant::now();
    let (got, _) = read_by_read(&wire, &[64 << 10], &limits);
    let took = start.elapsed();
    assert_eq!((got.end, got.left), (None, 0));
    assert_eq!(got.requests.len(), 1);
    assert_eq!(got.requests[0].len(), limits.args_max);
    assert!(
        took < Duration::from_secs(20),
        "{} arguments in 64 KiB reads took {took:?}",
        limits.args_max
    );
}
