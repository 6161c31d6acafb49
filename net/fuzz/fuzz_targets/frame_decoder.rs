//! Any bytes through the frame decoder, whole and in two reads: frames,
//! "need more" or a typed error, never a panic, never a frame over the limit.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sampan_net::codec::Decoder;
use sampan_net::frame::HEADER_LEN;
use sampan_net::readbuf::ReadBuf;

const FRAME_BYTES_MAX: usize = 64 << 10;

fuzz_target!(|data: &[u8]| {
    let decoder = Decoder::new(FRAME_BYTES_MAX);
    let mut buf = BytesMut::from(data);
    let mut whole = Vec::new();
    while let Ok(Some(frame)) = decoder.decode(&mut buf) {
        assert!(HEADER_LEN + frame.body.len() <= FRAME_BYTES_MAX);
        whole.push(frame);
    }
    // The connection's path, fed in two reads, finds the same frames.
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut rb = ReadBuf::new();
    let mut pieces = Vec::new();
    for part in [&data[..split], &data[split..]] {
        let room = rb.spare(part.len());
        room[..part.len()].copy_from_slice(part);
        rb.advance(part.len());
        while let Ok(Some(frame)) = rb.take_frame(&decoder) {
            pieces.push(frame);
        }
    }
    assert_eq!(whole, pieces);
});
