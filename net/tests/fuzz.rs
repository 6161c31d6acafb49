//! The fuzz harness of the frame decoder, run by CI for a bounded number of
//! cases: random and mutated byte streams, fed in random read sizes, through
//! both decoding paths ([`Decoder::decode`] on a `BytesMut`, and the
//! connection's [`ReadBuf`]). Both must agree, never panic, and never
//! return a frame over the limit. `net/fuzz/` holds the same check as a
//! cargo-fuzz target for longer runs (not built by CI); or raise the
//! cases: `SAMPAN_FUZZ_CASES=1000000 cargo test --workspace --test fuzz`.

use bytes::BytesMut;
use proptest::prelude::*;
use sampan_net::codec::{Decoder, encode_frame};
use sampan_net::frame::{Body, FrameHeader, FrameType, HEADER_LEN};
use sampan_net::readbuf::ReadBuf;
use sampan_net::{Frame, FrameError};

const FRAME_BYTES_MAX: usize = 4096;

/// What a decoder made of a stream: the frames, then how it stopped.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    end: Option<FrameError>,
}

fn with_decode(bytes: &[u8]) -> Outcome {
    let d = Decoder::new(FRAME_BYTES_MAX);
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    loop {
        match d.decode(&mut buf) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return Outcome { frames, end: None },
            Err(e) => {
                return Outcome {
                    frames,
                    end: Some(e),
                };
            }
        }
    }
}

fn with_readbuf(bytes: &[u8], reads: &[usize]) -> Outcome {
    let d = Decoder::new(FRAME_BYTES_MAX);
    let mut rb = ReadBuf::new();
    let mut frames = Vec::new();
    let mut at = 0;
    let mut step = reads.iter().cycle();
    loop {
        loop {
            match rb.take_frame(&d) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    return Outcome {
                        frames,
                        end: Some(e),
                    };
                }
            }
        }
        if at == bytes.len() {
            return Outcome { frames, end: None };
        }
        let room = rb.spare(rb.wanted(&d));
        let n = step
            .next()
            .copied()
            .unwrap_or(1)
            .max(1)
            .min(room.len())
            .min(bytes.len() - at);
        room[..n].copy_from_slice(&bytes[at..at + n]);
        rb.advance(n);
        at += n;
    }
}

fn check(bytes: &[u8], reads: &[usize]) {
    let a = with_decode(bytes);
    for f in &a.frames {
        assert!(HEADER_LEN + f.body.len() <= FRAME_BYTES_MAX);
    }
    assert!(a.frames.len() <= bytes.len() / HEADER_LEN);
    let b = with_readbuf(bytes, reads);
    assert_eq!(a.frames, b.frames, "the two decoding paths disagree");
    // The same kind of error; its details may differ (a wrong magic is
    // reported from however many of its bytes had arrived).
    assert_eq!(
        a.end.as_ref().map(std::mem::discriminant),
        b.end.as_ref().map(std::mem::discriminant),
        "the two decoding paths stop differently: {:?} / {:?}",
        a.end,
        b.end
    );
}

fn valid_stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        (
            0u8..4,
            any::<u16>(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..600),
        ),
        0..6,
    )
    .prop_map(|frames| {
        let mut wire = Vec::new();
        for (t, kind, id, body) in frames {
            let header = FrameHeader {
                frame_type: FrameType::from_byte(t).unwrap_or(FrameType::OneWay),
                kind,
                group_id: id.rotate_left(7),
                request_id: id,
            };
            wire.extend(encode_frame(&header, &Body::from(body)).unwrap_or_default());
        }
        wire
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Truncate(prop::sample::Index),
    Insert(prop::sample::Index, Vec<u8>),
    Remove(prop::sample::Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 1..40)
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<prop::sample::Index>(), 1usize..40).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn mutate(mut wire: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = wire.len();
        match m {
            Mutation::Flip(i, x) if len > 0 => wire[i.index(len)] ^= x,
            Mutation::Truncate(i) => wire.truncate(i.index(len + 1)),
            Mutation::Insert(i, v) => {
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

/// Cases per property: 20,000, or `SAMPAN_FUZZ_CASES` for long runs.
fn cases() -> u32 {
    std::env::var("SAMPAN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..3000),
                    reads in prop::collection::vec(1usize..5000, 1..8)) {
        check(&bytes, &reads);
    }

    #[test]
    fn mutated_valid_streams(wire in valid_stream(),
                             mutations in prop::collection::vec(mutation(), 0..4),
                             reads in prop::collection::vec(1usize..5000, 1..8)) {
        check(&mutate(wire, &mutations), &reads);
    }
}
