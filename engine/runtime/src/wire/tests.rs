//! Round trips of every message, and garbage fed to every decoder.

use super::*;
use crate::raft::{
    Append, AppendResponse, Body, ConfChange, Entry, EntryKind, GroupId, Heartbeat,
    HeartbeatResponse, Hibernate, HibernateResponse, Membership, Message, NodeId, SnapshotMeta,
    Vote, VoteResponse,
};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use std::collections::BTreeSet;

const PAYLOAD_MAX: u32 = 1 << 20;

fn ids() -> impl Strategy<Value = BTreeSet<NodeId>> {
    proptest::collection::btree_set((1..9u64).prop_map(NodeId), 0..4)
}

fn entry_kind() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        4 => Just(EntryKind::Normal),
        1 => Just(EntryKind::NoOp),
        1 => (ids(), ids()).prop_map(|(voters, learners)| EntryKind::ConfChange(Box::new(ConfChange::EnterJoint { voters, learners }))),
        1 => Just(EntryKind::ConfChange(Box::new(ConfChange::LeaveJoint))),
    ]
}

fn append() -> impl Strategy<Value = Append> {
    (
        0..1_000u64,
        1..5u64,
        proptest::collection::vec(
            (entry_kind(), proptest::collection::vec(any::<u8>(), 0..64)),
            0..6,
        ),
        any::<u64>(),
    )
        .prop_map(|(index_prev, term, raw, index_commit)| {
            let entries = raw
                .into_iter()
                .enumerate()
                .map(|(i, (kind, payload))| {
                    let payload = if kind == EntryKind::Normal {
                        Bytes::from(payload)
                    } else {
                        Bytes::new()
                    };
                    Entry {
                        term: term + 1,
                        index: index_prev + 1 + i as u64,
                        kind,
                        payload,
                    }
                })
                .collect();
            Append {
                index_prev,
                term_prev: term,
                entries,
                index_commit,
            }
        })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        append().prop_map(Body::Append),
        (any::<bool>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(reject, index, index_hint, term_hint)| Body::AppendResponse(AppendResponse {
                reject,
                index,
                index_hint,
                term_hint
            })
        ),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(index_commit, id_read, lease_ms)| {
            Body::Heartbeat(Heartbeat {
                index_commit,
                id_read,
                lease_ms,
            })
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(id_read, lease_ms)| Body::HeartbeatResponse(
            HeartbeatResponse { id_read, lease_ms }
        )),
        (any::<bool>(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
            |(pre, index_last, term_last, transfer)| Body::Vote(Vote {
                pre,
                index_last,
                term_last,
                transfer
            })
        ),
        (any::<bool>(), any::<bool>())
            .prop_map(|(pre, reject)| Body::VoteResponse(VoteResponse { pre, reject })),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::btree_set((1..9u64).prop_map(NodeId), 1..4)
        )
            .prop_map(|(index, term, voters)| {
                let membership = Membership::new(voters, BTreeSet::new()).expect("voters only");
                Body::Snapshot(Box::new(SnapshotMeta {
                    index,
                    term,
                    membership,
                }))
            }),
        Just(Body::TimeoutNow),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(index_last, term_last, tick)| {
            Body::Hibernate(Hibernate {
                index_last,
                term_last,
                sent_ms: tick,
            })
        }),
        any::<bool>().prop_map(|ok| Body::HibernateResponse(HibernateResponse { ok })),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        body(),
    )
        .prop_map(|(g, from, to, term, body)| Message {
            group: GroupId(g),
            from: NodeId(from),
            to: NodeId(to),
            term,
            body,
        })
}

fn join(pieces: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    for p in pieces {
        out.extend_from_slice(p);
    }
    out.freeze()
}

proptest! {
    #[test]
    fn every_message_round_trips(msg in message()) {
        let pieces = encode_message(&msg, None).expect("encodes");
        let body = join(&pieces);
        let decoded = decode_message(body.clone(), PAYLOAD_MAX).expect("decodes");
        prop_assert_eq!(&decoded.message, &msg);
        if let Body::Append(a) = &msg.body {
            let run = decoded.records.expect("records");
            prop_assert_eq!(run.len(), a.entries.len() as u64);
            // The follower's run re-encodes to the very same bytes.
            let again = encode_message(&msg, Some(&run)).expect("encodes from the run");
            prop_assert_eq!(join(&again), body.clone());
        }
        for cut in 0..body.len() {
            prop_assert!(decode_message(body.slice(..cut), PAYLOAD_MAX).is_err(), "prefix of {} bytes decoded", cut);
        }
    }

    #[test]
    fn heartbeat_batches_round_trip(beats in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()), 0..20),
                                    responses in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()), 0..20)) {
        let mut batch = HeartbeatBatch::new(NodeId(1), NodeId(2));
        batch.beats = beats.into_iter().map(|(g, t, c, r, l)| (GroupId(g), t, Heartbeat { index_commit: c, id_read: r, lease_ms: l })).collect();
        batch.responses = responses.into_iter().map(|(g, t, r, l)| (GroupId(g), t, HeartbeatResponse { id_read: r, lease_ms: l })).collect();
        let bytes = batch.encode();
        prop_assert_eq!(HeartbeatBatch::decode(bytes.clone()).expect("decodes"), batch.clone());
        for cut in 0..bytes.len() {
            prop_assert!(HeartbeatBatch::decode(bytes.slice(..cut)).is_err());
        }
        let n = batch.beats.len() + batch.responses.len();
        let msgs: Vec<Message> = batch.into_messages().collect();
        prop_assert_eq!(msgs.len(), n);
        let mut again = HeartbeatBatch::new(NodeId(1), NodeId(2));
        for m in msgs {
            prop_assert!(again.push(&m));
        }
    }

    #[test]
    fn decoders_are_total_on_garbage(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let data = Bytes::from(data);
        let _ = decode_message(data.clone(), PAYLOAD_MAX);
        let _ = HeartbeatBatch::decode(data);
    }

    /// Valid messages with bytes flipped: decoding may fail but never panics,
    /// and a flipped record byte is always caught by its CRC.
    #[test]
    fn flipped_bytes_are_caught_or_harmless(msg in message(), at in any::<prop::sample::Index>(), bit in 0..8u8) {
        let body = join(&encode_message(&msg, None).expect("encodes"));
        let mut bad = BytesMut::from(&body[..]);
        let i = at.index(bad.len());
        bad[i] ^= 1 << bit;
        let header_len = 62;
        let result = decode_message(bad.freeze(), PAYLOAD_MAX);
        if matches!(msg.body, Body::Append(_)) && i >= header_len {
            prop_assert!(result.is_err(), "a damaged record at {} decoded", i);
        }
    }
}

#[test]
fn records_that_do_not_match_the_entries_are_refused() {
    let entries: Vec<Entry> = (1..=3)
        .map(|i| Entry {
            term: 2,
            index: i,
            kind: EntryKind::Normal,
            payload: Bytes::from_static(b"x"),
        })
        .collect();
    let run = run_from_entries(&entries);
    let msg = Message {
        group: GroupId(1),
        from: NodeId(1),
        to: NodeId(2),
        term: 2,
        body: Body::Append(Append {
            index_prev: 1,
            term_prev: 2,
            entries: entries[1..].to_vec(),
            index_commit: 0,
        }),
    };
    assert!(matches!(
        encode_message(&msg, Some(&run)),
        Err(WireError::Invalid { .. })
    ));
}

fn snapshot_meta() -> impl Strategy<Value = SnapshotMeta> {
    (0..1_000u64, 0..10u64, ids()).prop_map(|(index, term, voters)| SnapshotMeta {
        index,
        term,
        membership: Membership::new(voters, BTreeSet::new()).unwrap_or_default(),
    })
}

proptest! {
    #[test]
    fn snapshot_chunks_and_answers_round_trip(
        meta in snapshot_meta(),
        term in 0..100u64,
        offset in 0..(1u64 << 40),
        last: bool,
        data in proptest::collection::vec(any::<u8>(), 0..512),
        status in 0..3u8,
    ) {
        let chunk = SnapshotChunk {
            term,
            leader: 3,
            meta: meta.clone(),
            offset,
            last,
            data_crc: 77,
            data: Bytes::from(data),
        };
        let body = join(&chunk.encode());
        prop_assert_eq!(SnapshotChunk::decode(body.clone()), Ok(chunk));
        // Any truncation fails.
        for cut in 0..body.len() {
            prop_assert!(SnapshotChunk::decode(body.slice(..cut)).is_err());
        }
        let status = [ChunkStatus::Continue, ChunkStatus::Done, ChunkStatus::Refused][status as usize];
        let answer = ChunkAnswer { status, term, next_offset: offset };
        prop_assert_eq!(ChunkAnswer::decode(answer.encode()), Ok(answer));
        prop_assert_eq!(decode_snapshot_meta(Bytes::from(encode_snapshot_meta(&meta))), Ok(meta));
    }

    #[test]
    fn snapshot_decoders_take_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let b = Bytes::from(bytes);
        let _ = SnapshotChunk::decode(b.clone());
        let _ = ChunkAnswer::decode(b.clone());
        let _ = decode_snapshot_meta(b);
    }
}

#[test]
fn a_flipped_data_byte_fails_the_chunk_crc() {
    let chunk = SnapshotChunk {
        term: 2,
        leader: 1,
        meta: SnapshotMeta::default(),
        offset: 0,
        last: true,
        data_crc: 0,
        data: Bytes::from_static(b"the state at index 9"),
    };
    let mut body = BytesMut::from(&join(&chunk.encode())[..]);
    let at = body.len() - 3;
    body[at] ^= 1;
    assert!(matches!(
        SnapshotChunk::decode(body.freeze()),
        Err(WireError::Invalid {
            what: "snapshot chunk",
            ..
        })
    ));
}
