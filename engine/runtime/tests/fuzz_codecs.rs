//! Fuzzing the engine's hand-written decoders, run by CI for a bounded
//! number of cases: the KV command, result, query and answer codecs, the
//! service protocol (requests, replies, and the members, snapshot-saved,
//! group-config and status payloads) and, on random input only, the Raft
//! wire bodies. Every value a strategy makes must decode back to itself;
//! with a byte after it, to an error (where the format has no open tail);
//! and every mutation of an encoding — flips, cuts, inserts, and a forged
//! `u32` length or count (2^32 − 1, 2^31, 2^16) written over each offset —
//! must decode to a value or an error, never a panic, holding at most a
//! fixed multiple of the input's size in memory: a length prefix never
//! sizes an allocation by itself.
//!
//! CI: 4,000 cases per property, under 2 s in the test profile.
//! Long runs: `SAMPAN_FUZZ_CASES=200000 cargo test --workspace --test
//! fuzz_codecs`.
#![allow(clippy::unwrap_used)]

mod fuzz_support;

use bytes::Bytes;
use fuzz_support::{Counting, cases, peak_bytes};
use proptest::prelude::*;
use proptest::sample::Index;
use sampan::config::{Durability, GroupConfig};
use sampan::group::{GroupError, GroupStatus, SnapshotSaved, StorageFault};
use sampan::raft::Role;
use sampan::service::{
    MembersChange, NodeAddrs, Op, Route, ServerError, ServiceRequest, SnapshotPiece, SnapshotRead,
    decode_group_config, decode_group_ids, decode_members, decode_nodes, decode_reply,
    decode_saved, decode_status, encode_group_config, encode_group_ids, encode_members,
    encode_nodes, encode_reply, encode_saved, encode_status,
};
use sampan::wire::{self, ChunkAnswer, ChunkStatus, HeartbeatBatch, SnapshotChunk};
use sampan_kv::{
    Item, KvAnswer, KvCommand, KvFailure, KvQuery, KvRequest, KvResult, PutCondition, ScanRange,
    Ttl,
};
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

#[global_allocator]
static ALLOC: Counting = Counting;

/// Memory a decode may hold per input byte, plus a constant. The largest
/// honest ratio: a batch of one-byte commands (`Flush`), each an enum of
/// about 90 bytes in a vector that may double. Anything sized by a forged
/// count instead of the bytes present would exceed it by far.
const ALLOC_PER_INPUT_BYTE: usize = 256;
const ALLOC_SLACK_BYTES: usize = 4096;

/// A decoder seen as "bytes in, ok or not out".
type Decode = fn(Bytes) -> bool;

/// Every decoder, by name: random bytes go to each.
const DECODERS: &[(&str, Decode)] = &[
    ("KvRequest", |b| KvRequest::decode(b).is_ok()),
    ("KvResult", |b| KvResult::decode(b).is_ok()),
    ("KvQuery", |b| KvQuery::decode(b).is_ok()),
    ("KvAnswer", |b| KvAnswer::decode(b).is_ok()),
    ("ServiceRequest", |b| ServiceRequest::decode(b).is_ok()),
    ("reply", |b| decode_reply(b).is_ok()),
    ("members", |b| decode_members(b).is_ok()),
    ("saved", |b| decode_saved(b).is_ok()),
    ("group config", |b| decode_group_config(b).is_ok()),
    ("status", |b| decode_status(b).is_ok()),
    ("raft message", |b| wire::decode_message(b, 1 << 20).is_ok()),
    ("heartbeats", |b| HeartbeatBatch::decode(b).is_ok()),
    ("snapshot chunk", |b| SnapshotChunk::decode(b).is_ok()),
    ("chunk answer", |b| ChunkAnswer::decode(b).is_ok()),
    ("snapshot meta", |b| wire::decode_snapshot_meta(b).is_ok()),
    ("group ids", |b| decode_group_ids(b).is_ok()),
    ("nodes", |b| decode_nodes(b).is_ok()),
    ("snapshot read", |b| SnapshotRead::decode(b).is_ok()),
    ("snapshot piece", |b| SnapshotPiece::decode(b).is_ok()),
];

/// Decodes `bytes`, checking what the decode held in memory.
fn total(name: &str, decode: Decode, bytes: &[u8]) -> bool {
    let (ok, peak) = peak_bytes(|| decode(Bytes::copy_from_slice(bytes)));
    assert!(
        peak <= ALLOC_PER_INPUT_BYTE * bytes.len() + ALLOC_SLACK_BYTES,
        "{name}: decoding {} bytes held {peak} bytes: {bytes:02x?}",
        bytes.len()
    );
    ok
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<Index>(), 1usize..12).prop_map(|(i, n)| Mutation::Remove(i, n)),
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

/// The checks every codec gets: round trip, a trailing byte refused
/// (unless the format ends in an open payload), mutations and forged
/// lengths decoded totally.
fn check_codec<T: PartialEq + Debug, E: Debug>(
    name: &str,
    value: &T,
    encoded: Bytes,
    decode: fn(Bytes) -> Result<T, E>,
    as_decode: Decode,
    open_tail: bool,
    mutations: &[Mutation],
) -> Result<(), TestCaseError> {
    let back = decode(encoded.clone());
    prop_assert_eq!(
        back.as_ref().ok(),
        Some(value),
        "{} round trip: {:?}",
        name,
        back
    );
    if !open_tail {
        let mut longer = encoded.to_vec();
        longer.push(0);
        prop_assert!(
            decode(Bytes::from(longer)).is_err(),
            "{name}: a trailing byte was accepted"
        );
    }
    total(name, as_decode, &mutate(encoded.to_vec(), mutations));
    for forged in [u32::MAX, 1 << 31, 1 << 16] {
        for at in 0..encoded.len().saturating_sub(3) {
            let mut b = encoded.to_vec();
            b[at..at + 4].copy_from_slice(&forged.to_le_bytes());
            total(name, as_decode, &b);
        }
    }
    Ok(())
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn ttl() -> impl Strategy<Value = Ttl> {
    prop_oneof![
        Just(Ttl::Persist),
        any::<u64>().prop_map(Ttl::AfterMs),
        any::<u64>().prop_map(Ttl::AtMs),
        Just(Ttl::Keep),
    ]
}

fn simple_command() -> impl Strategy<Value = KvCommand> {
    let condition = prop_oneof![
        Just(PutCondition::Always),
        Just(PutCondition::IfAbsent),
        Just(PutCondition::IfPresent),
    ];
    prop_oneof![
        (bytes(20), bytes(40), ttl(), condition, any::<bool>()).prop_map(
            |(key, value, ttl, condition, return_old)| KvCommand::Put {
                key,
                value,
                ttl,
                condition,
                return_old,
            }
        ),
        (prop::collection::vec((bytes(10), bytes(20)), 0..5), ttl())
            .prop_map(|(pairs, ttl)| KvCommand::PutMany { pairs, ttl }),
        (prop::collection::vec(bytes(10), 0..5), any::<bool>())
            .prop_map(|(keys, return_old)| KvCommand::Remove { keys, return_old }),
        (
            bytes(10),
            prop::option::of(bytes(20)),
            prop::option::of(bytes(20))
        )
            .prop_map(|(key, expected, new)| KvCommand::CompareAndSet {
                key,
                expected,
                new
            }),
        (bytes(10), any::<i64>()).prop_map(|(key, delta)| KvCommand::Increment { key, delta }),
        (bytes(10), bytes(20)).prop_map(|(key, suffix)| KvCommand::Append { key, suffix }),
        (bytes(10), ttl()).prop_map(|(key, ttl)| KvCommand::SetTtl { key, ttl }),
        (bytes(10), any::<u64>()).prop_map(|(key, version)| KvCommand::Expire { key, version }),
        Just(KvCommand::Flush),
    ]
}

fn command() -> impl Strategy<Value = KvCommand> {
    prop_oneof![
        3 => simple_command(),
        1 => prop::collection::vec(simple_command(), 0..5).prop_map(KvCommand::Batch),
    ]
}

fn failure() -> impl Strategy<Value = KvFailure> {
    prop_oneof![
        Just(KvFailure::NotAnInteger),
        Just(KvFailure::Overflow),
        any::<u64>().prop_map(|oldest_kept| KvFailure::StaleSequence { oldest_kept }),
        ".{0,20}".prop_map(KvFailure::Invalid),
    ]
}

fn simple_result() -> impl Strategy<Value = KvResult> {
    prop_oneof![
        (any::<bool>(), prop::option::of(bytes(20)))
            .prop_map(|(written, old)| KvResult::Put { written, old }),
        (any::<u64>(), prop::option::of(bytes(20)))
            .prop_map(|(count, old)| KvResult::Count { count, old }),
        any::<bool>().prop_map(KvResult::Flag),
        any::<i64>().prop_map(KvResult::Int),
        any::<u64>().prop_map(KvResult::Len),
        failure().prop_map(KvResult::Failed),
    ]
}

fn result() -> impl Strategy<Value = KvResult> {
    prop_oneof![
        3 => simple_result(),
        1 => prop::collection::vec(simple_result(), 0..5).prop_map(KvResult::Batch),
    ]
}

fn query() -> impl Strategy<Value = KvQuery> {
    let range = prop_oneof![
        bytes(10).prop_map(ScanRange::Prefix),
        (bytes(10), prop::option::of(bytes(10)))
            .prop_map(|(start, end)| ScanRange::Range { start, end }),
    ];
    prop_oneof![
        prop::collection::vec(bytes(10), 0..6).prop_map(KvQuery::Get),
        (range, prop::option::of(bytes(10)), any::<u32>()).prop_map(|(range, after, limit)| {
            KvQuery::Scan {
                range,
                after,
                limit,
            }
        }),
        Just(KvQuery::Len),
    ]
}

/// An item. Its deadline travels as `ms + 1` (0: none), so `u64::MAX`
/// cannot be told from `u64::MAX - 1`; a deadline 584 million years out is
/// left out rather than given its own encoding.
fn item() -> impl Strategy<Value = Item> {
    (bytes(20), any::<u64>(), prop::option::of(0..u64::MAX))
        .prop_map(|(value, version, expire_at_ms)| Item::string(value, version, expire_at_ms))
}

fn answer() -> impl Strategy<Value = KvAnswer> {
    prop_oneof![
        (
            prop::collection::vec(prop::option::of(item()), 0..6),
            any::<u64>()
        )
            .prop_map(|(items, at_ms)| KvAnswer::Values { items, at_ms }),
        (
            prop::collection::vec((bytes(10), item()), 0..5),
            prop::option::of(bytes(10))
        )
            .prop_map(|(items, next)| KvAnswer::Page { items, next }),
        any::<u64>().prop_map(KvAnswer::Count),
    ]
}

fn request() -> impl Strategy<Value = KvRequest> {
    (any::<[u64; 4]>(), command()).prop_map(|([time_ms, client_id, seq, acked_below], command)| {
        KvRequest {
            time_ms,
            client_id,
            seq,
            acked_below,
            command,
        }
    })
}

/// A node id the reply can carry: 0 travels as "none".
fn id() -> impl Strategy<Value = Option<u64>> {
    prop::option::of(1..=u64::MAX)
}

/// An address. IPv6 flow labels are not part of an address's text, so
/// they cannot survive the trip and are left at 0.
fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        any::<std::net::SocketAddrV4>().prop_map(SocketAddr::V4),
        (any::<[u16; 8]>(), any::<u16>(), any::<u32>()).prop_map(|(s, port, scope)| {
            let ip = Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
            SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope))
        }),
    ]
}

fn group_error() -> impl Strategy<Value = GroupError> {
    let g = any::<u64>;
    let why = || ".{0,20}";
    prop_oneof![
        (g(), id()).prop_map(|(group, leader)| GroupError::NotLeader { group, leader }),
        (g(), g()).prop_map(|(group, index)| GroupError::Lost { group, index }),
        g().prop_map(|group| GroupError::Stopped { group }),
        g().prop_map(|group| GroupError::Busy { group }),
        (g(), 0..4u8, why()).prop_map(|(group, tag, reason)| GroupError::Storage {
            group,
            fault: StorageFault::from_tag(tag),
            reason
        }),
        (g(), why()).prop_map(|(group, reason)| GroupError::Refused { group, reason }),
        (g(), why()).prop_map(|(group, reason)| GroupError::Read { group, reason }),
        (g(), why()).prop_map(|(group, reason)| GroupError::Halted { group, reason }),
        (g(), g(), why()).prop_map(|(group, index, reason)| GroupError::Uncertain {
            group,
            index,
            reason
        }),
    ]
}

fn reply() -> impl Strategy<Value = Result<Bytes, ServerError>> {
    let g = any::<u64>;
    let why = || ".{0,20}";
    let error = prop_oneof![
        (g(), g(), id(), prop::option::of(addr())).prop_map(|(group, node, leader, addr)| {
            ServerError::NotLeader {
                group,
                node,
                leader,
                addr,
            }
        }),
        (g(), g()).prop_map(|(group, node)| ServerError::NoSuchGroup { group, node }),
        group_error().prop_map(ServerError::Group),
        (g(), g(), why()).prop_map(|(group, node, reason)| ServerError::Unreachable {
            group,
            node,
            reason
        }),
        g().prop_map(|node| ServerError::ShuttingDown { node }),
        why().prop_map(|reason| ServerError::BadMessage { reason }),
        (g(), why()).prop_map(|(node, reason)| ServerError::Denied { node, reason }),
        (g(), g(), why()).prop_map(|(group, node, reason)| ServerError::Uncertain {
            group,
            node,
            reason
        }),
    ];
    prop_oneof![bytes(30).prop_map(Ok), error.prop_map(Err)]
}

fn service_request() -> impl Strategy<Value = ServiceRequest> {
    let op = prop::sample::select(vec![
        Op::Propose,
        Op::Read,
        Op::Status,
        Op::SnapshotNow,
        Op::ChangeMembers,
        Op::TransferLeader,
        Op::AddGroup,
        Op::RemoveGroup,
        Op::StopGroup,
        Op::ListGroups,
        Op::ListNodes,
        Op::SetNodes,
        Op::ForgetNode,
        Op::ReadSnapshot,
    ]);
    let route = prop::sample::select(vec![Route::Redirect, Route::Forward, Route::Local]);
    (op, route, bytes(30)).prop_map(|(op, route, payload)| ServiceRequest { op, route, payload })
}

fn group_config() -> impl Strategy<Value = GroupConfig> {
    (
        any::<u64>(),
        ".{0,12}",
        ".{0,12}",
        any::<bool>(),
        any::<[u64; 5]>(),
        any::<bool>(),
    )
        .prop_map(
            |(group_id, members, observers, sync, n, join)| GroupConfig {
                group_id,
                members,
                observers,
                durability: if sync {
                    Durability::Sync
                } else {
                    Durability::Async
                },
                log_retention_ms: n[0],
                snapshot_interval_ms: n[1],
                snapshot_log_bytes: n[2],
                snapshot_chunk_bytes: n[3],
                snapshot_write_bytes_per_sec: n[4],
                join,
            },
        )
}

fn status() -> impl Strategy<Value = GroupStatus> {
    let role = prop::sample::select(vec![
        Role::Follower,
        Role::PreCandidate,
        Role::Candidate,
        Role::Leader,
    ]);
    let ids = || prop::collection::vec(any::<u64>(), 0..5);
    let sets = (ids(), ids(), ids());
    (any::<[u64; 8]>(), role, id(), any::<bool>(), sets).prop_map(
        |(n, role, leader, hibernating, (voters, learners, voters_outgoing))| GroupStatus {
            group: n[0],
            role,
            term: n[1],
            leader,
            index_commit: n[2],
            index_last: n[3],
            index_applied: n[4],
            hibernating,
            node: n[5],
            voters,
            learners,
            snapshot_index: n[6],
            snapshot_term: n[7],
            membership_index: n[6] ^ n[7],
            membership_term: n[0],
            matched: voters_outgoing.iter().map(|v| (*v, v ^ n[2])).collect(),
            voters_outgoing,
            leader_contact_ms: leader.map(|_| n[3] >> 1),
            log_bytes: n[4] >> 3,
            snapshot_saved: hibernating.then_some(SnapshotSaved {
                index: n[6],
                term: n[7],
                bytes: n[5],
                write_ms: n[1] >> 2,
                applied_meanwhile: n[2] >> 2,
            }),
            keys: leader.map(|_| n[0] >> 4),
            sessions: (!hibernating).then_some(n[1] >> 5),
        },
    )
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..4)
}

fn join(pieces: Vec<Bytes>) -> Bytes {
    Bytes::from(pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(4000), ..ProptestConfig::default() })]

    #[test]
    fn kv_requests(value in request(), m in mutations()) {
        check_codec("KvRequest", &value, value.to_bytes(), KvRequest::decode, DECODERS[0].1, false, &m)?;
    }

    #[test]
    fn kv_results(value in result(), m in mutations()) {
        let mut out = bytes::BytesMut::new();
        value.encode(&mut out);
        check_codec("KvResult", &value, out.freeze(), KvResult::decode, DECODERS[1].1, false, &m)?;
    }

    #[test]
    fn kv_queries(value in query(), m in mutations()) {
        check_codec("KvQuery", &value, value.to_bytes(), KvQuery::decode, DECODERS[2].1, false, &m)?;
    }

    #[test]
    fn kv_answers(value in answer(), m in mutations()) {
        check_codec("KvAnswer", &value, value.to_bytes(), KvAnswer::decode, DECODERS[3].1, false, &m)?;
    }

    #[test]
    fn service_requests(value in service_request(), m in mutations()) {
        // The payload runs to the end of the body: no trailing bytes to refuse.
        check_codec("ServiceRequest", &value, join(value.encode()), ServiceRequest::decode, DECODERS[4].1, true, &m)?;
    }

    #[test]
    fn service_replies(value in reply(), m in mutations()) {
        let open_tail = value.is_ok();
        check_codec("reply", &value, join(encode_reply(&value)), decode_reply, DECODERS[5].1, open_tail, &m)?;
    }

    #[test]
    fn service_payloads(
        members in (prop::collection::btree_set(any::<u64>(), 0..6), prop::collection::btree_set(any::<u64>(), 0..4)),
        saved in any::<[u64; 5]>(),
        config in group_config(),
        status in status(),
        m in mutations(),
    ) {
        let (voters, learners): (BTreeSet<u64>, BTreeSet<u64>) = members;
        let expected = (!learners.is_empty()).then(|| (saved[0], saved[1]));
        let value = MembersChange { voters, learners, expected };
        check_codec("members", &value, encode_members(&value), decode_members, DECODERS[6].1, false, &m)?;
        let saved = SnapshotSaved {
            index: saved[0],
            term: saved[1],
            bytes: saved[2],
            write_ms: saved[3],
            applied_meanwhile: saved[4],
        };
        check_codec("saved", &saved, encode_saved(&saved), decode_saved, DECODERS[7].1, false, &m)?;
        check_codec("group config", &config, encode_group_config(&config), decode_group_config, DECODERS[8].1, false, &m)?;
        check_codec("status", &status, encode_status(&status), decode_status, DECODERS[9].1, false, &m)?;
        let ids: Vec<u64> = value.voters.iter().copied().collect();
        check_codec("group ids", &ids, encode_group_ids(&ids), decode_group_ids, DECODERS[15].1, false, &m)?;
        let nodes: Vec<NodeAddrs> = ids
            .iter()
            .map(|&node| NodeAddrs {
                node,
                replicate: format!("node{node}.sampan.test:4001"),
                service: format!("10.0.0.{}:5001", node % 250),
            })
            .collect();
        check_codec("nodes", &nodes, encode_nodes(&nodes), decode_nodes, DECODERS[16].1, false, &m)?;
        let read = SnapshotRead {
            at: saved.index.is_multiple_of(2).then_some((saved.index, saved.term)),
            offset: saved.bytes,
            bytes_max: saved.write_ms as u32,
        };
        check_codec("snapshot read", &read, read.encode(), SnapshotRead::decode, DECODERS[17].1, false, &m)?;
        let data = Bytes::from(format!("{:?}", value.voters));
        let piece = SnapshotPiece {
            index: saved.index,
            term: saved.term,
            size: saved.bytes.max(data.len() as u64),
            data_crc: saved.write_ms as u32,
            meta: Bytes::from(format!("{:?}", value.learners)),
            group_config: encode_group_config(&config),
            offset: 0,
            data,
        };
        check_codec("snapshot piece", &piece, piece.encode(), SnapshotPiece::decode, DECODERS[18].1, false, &m)?;
    }

    #[test]
    fn chunk_answers(status in prop::sample::select(vec![ChunkStatus::Continue, ChunkStatus::Done, ChunkStatus::Refused]),
                     term in any::<u64>(), next_offset in any::<u64>(), m in mutations()) {
        let value = ChunkAnswer { status, term, next_offset };
        check_codec("chunk answer", &value, value.encode(), ChunkAnswer::decode, DECODERS[13].1, false, &m)?;
    }

    /// Random bytes, most of them starting with a version byte a decoder
    /// accepts so they get past it, into every decoder.
    #[test]
    fn random_bytes_into_every_decoder(
        version in prop_oneof![3 => 1u8..=2, 1 => any::<u8>()],
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut b = vec![version];
        b.extend_from_slice(&body);
        for (name, decode) in DECODERS {
            total(name, *decode, &b);
        }
    }
}

/// The example of the issue: a 2^32 − 1 length (or count) with a ten-byte
/// body fails at once in every decoder, at every place a length can be.
#[test]
fn a_forged_length_with_a_short_body_fails_fast() {
    for (name, decode) in DECODERS {
        for version in 1u8..=2 {
            for at in 1..8 {
                let mut b = vec![version; 14];
                b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
                total(name, *decode, &b);
            }
        }
    }
}
