//! Behaviour of the KV state machine: commands, TTL, sessions, scans,
//! codecs and snapshots.

use super::*;
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn req(time_ms: u64, command: KvCommand) -> KvRequest {
    KvRequest {
        time_ms,
        client_id: 0,
        seq: 0,
        acked_below: 0,
        command,
    }
}

fn put(key: &str, value: &str) -> KvCommand {
    KvCommand::Put {
        key: b(key),
        value: b(value),
        ttl: Ttl::Persist,
        condition: PutCondition::Always,
        return_old: false,
    }
}

/// Applies commands at consecutive indexes from `first`.
fn apply_all(store: &mut KvStore, first: u64, time_ms: u64, cmds: Vec<KvCommand>) -> Vec<KvResult> {
    cmds.into_iter()
        .enumerate()
        .map(|(i, c)| store.apply(first + i as u64, &req(time_ms, c)))
        .collect()
}

#[test]
fn put_get_versions_and_conditions() {
    let mut s = KvStore::new(KvConfig::default());
    apply_all(
        &mut s,
        1,
        0,
        vec![put("a", "1"), put("b", "2"), put("a", "3")],
    );
    let a = s.get(b"a", 0).expect("a exists");
    assert_eq!((a.value.clone(), a.version), (b("3"), 3));
    let nx = KvCommand::Put {
        key: b("a"),
        value: b("x"),
        ttl: Ttl::Persist,
        condition: PutCondition::IfAbsent,
        return_old: true,
    };
    assert_eq!(
        s.apply(4, &req(0, nx)),
        KvResult::Put {
            written: false,
            old: Some(b("3"))
        }
    );
    let xx = KvCommand::Put {
        key: b("zz"),
        value: b("x"),
        ttl: Ttl::Persist,
        condition: PutCondition::IfPresent,
        return_old: false,
    };
    assert_eq!(
        s.apply(5, &req(0, xx)),
        KvResult::Put {
            written: false,
            old: None
        }
    );
    assert!(s.get(b"zz", 0).is_none());
    let del = KvCommand::Remove {
        keys: vec![b("a"), b("nope"), b("b")],
        return_old: true,
    };
    assert_eq!(
        s.apply(6, &req(0, del)),
        KvResult::Count {
            count: 2,
            old: Some(b("3"))
        }
    );
    assert!(s.is_empty());
}

#[test]
fn a_batch_applies_in_order_at_one_index_and_answers_each_command() {
    let mut s = KvStore::new(KvConfig::default());
    let incr = |d| KvCommand::Increment {
        key: b("n"),
        delta: d,
    };
    let batch = KvCommand::Batch(vec![
        incr(1),
        incr(2),
        put("t", "text"),
        KvCommand::Increment {
            key: b("t"),
            delta: 1,
        },
        KvCommand::Remove {
            keys: vec![b("n")],
            return_old: true,
        },
    ]);
    let r = apply_all(&mut s, 7, 0, vec![batch]);
    assert_eq!(
        r,
        vec![KvResult::Batch(vec![
            KvResult::Int(1),
            KvResult::Int(3),
            KvResult::Put {
                written: true,
                old: None
            },
            KvResult::Failed(KvFailure::NotAnInteger),
            KvResult::Count {
                count: 1,
                old: Some(b("3"))
            },
        ])]
    );
    assert_eq!(
        s.get(b"t", 0).map(|it| it.version),
        Some(7),
        "written at the batch's index"
    );
    // A batch in a batch, or an oversized member, fails whole.
    let nested = KvCommand::Batch(vec![KvCommand::Batch(vec![])]);
    assert!(req(0, nested.clone()).validate().is_err());
    let big = KvCommand::Batch(vec![
        put("a", "b"),
        KvCommand::put(b("k"), vec![0u8; VALUE_MAX_BYTES + 1]),
    ]);
    assert!(matches!(
        apply_all(&mut s, 8, 0, vec![big]).as_slice(),
        [KvResult::Failed(KvFailure::Invalid(_))]
    ));
    assert!(
        s.get(b"a", 0).is_none(),
        "nothing of a refused batch applied"
    );
    let mut out = bytes::BytesMut::new();
    req(0, nested).encode(&mut out);
    assert!(
        KvRequest::decode(out.freeze()).is_err(),
        "a nested batch does not decode"
    );
}

#[test]
fn increment_append_and_compare_and_set() {
    let mut s = KvStore::new(KvConfig::default());
    let incr = |d| KvCommand::Increment {
        key: b("n"),
        delta: d,
    };
    let r = apply_all(
        &mut s,
        1,
        0,
        vec![
            incr(5),
            incr(-7),
            put("t", "text"),
            KvCommand::Increment {
                key: b("t"),
                delta: 1,
            },
        ],
    );
    assert_eq!(
        r[..3],
        [
            KvResult::Int(5),
            KvResult::Int(-2),
            KvResult::Put {
                written: true,
                old: None
            }
        ]
    );
    assert_eq!(r[3], KvResult::Failed(KvFailure::NotAnInteger));
    assert_eq!(
        s.apply(5, &req(0, put("m", &i64::MAX.to_string()))),
        KvResult::Put {
            written: true,
            old: None
        }
    );
    assert_eq!(
        s.apply(
            6,
            &req(
                0,
                KvCommand::Increment {
                    key: b("m"),
                    delta: 1
                }
            )
        ),
        KvResult::Failed(KvFailure::Overflow)
    );
    assert_eq!(
        s.apply(
            7,
            &req(
                0,
                KvCommand::Append {
                    key: b("t"),
                    suffix: b("!!")
                }
            )
        ),
        KvResult::Len(6)
    );
    let cas = |exp: Option<&str>, new: Option<&str>| KvCommand::CompareAndSet {
        key: b("t"),
        expected: exp.map(b),
        new: new.map(b),
    };
    assert_eq!(
        s.apply(8, &req(0, cas(Some("nope"), Some("x")))),
        KvResult::Flag(false)
    );
    assert_eq!(
        s.apply(9, &req(0, cas(Some("text!!"), Some("x")))),
        KvResult::Flag(true)
    );
    assert_eq!(
        s.apply(10, &req(0, cas(Some("x"), None))),
        KvResult::Flag(true)
    );
    assert!(s.get(b"t", 0).is_none());
    assert_eq!(
        s.apply(11, &req(0, cas(None, Some("fresh")))),
        KvResult::Flag(true)
    );
}

#[test]
fn ttl_reads_hide_expired_keys_and_expiry_applies_only_to_its_version() {
    let mut s = KvStore::new(KvConfig::default());
    let with_ttl = |v: &str, ttl| KvCommand::Put {
        key: b("k"),
        value: b(v),
        ttl,
        condition: PutCondition::Always,
        return_old: false,
    };
    s.apply(1, &req(1_000, with_ttl("v1", Ttl::AfterMs(500))));
    assert!(s.get(b"k", 1_499).is_some());
    assert!(
        s.get(b"k", 1_500).is_none(),
        "expired reads as absent before removal"
    );
    assert_eq!(s.len(), 1, "still stored until the leader's expiry applies");
    assert_eq!(s.next_expiry_ms(), Some(1_500));
    let due = s.due_expirations(1_600, 10);
    assert_eq!(due, vec![(b("k"), 1)]);
    // A newer write lands before the expiry command: the expiry must not remove it.
    s.apply(2, &req(1_550, with_ttl("v2", Ttl::Keep)));
    assert_eq!(s.get(b"k", 1_550).map(|i| i.value.clone()), Some(b("v2")));
    assert_eq!(
        s.get(b"k", 1_550).and_then(|i| i.expire_at_ms),
        None,
        "KEEPTTL of an expired key keeps nothing"
    );
    assert_eq!(
        s.apply(
            3,
            &req(
                1_600,
                KvCommand::Expire {
                    key: b("k"),
                    version: 1
                }
            )
        ),
        KvResult::Flag(false)
    );
    assert!(s.get(b"k", 1_600).is_some());
    // SetTtl then the leader's expiry at the right version removes it.
    assert_eq!(
        s.apply(
            4,
            &req(
                2_000,
                KvCommand::SetTtl {
                    key: b("k"),
                    ttl: Ttl::AfterMs(10)
                }
            )
        ),
        KvResult::Flag(true)
    );
    assert_eq!(s.due_expirations(2_010, 10), vec![(b("k"), 4)]);
    assert_eq!(
        s.apply(
            5,
            &req(
                2_010,
                KvCommand::Expire {
                    key: b("k"),
                    version: 4
                }
            )
        ),
        KvResult::Flag(true)
    );
    assert!(s.is_empty());
    assert_eq!(s.next_expiry_ms(), None);
    // Applying the same expiry again (a retry, or a second leader's) does nothing.
    assert_eq!(
        s.apply(
            6,
            &req(
                2_020,
                KvCommand::Expire {
                    key: b("k"),
                    version: 4
                }
            )
        ),
        KvResult::Flag(false)
    );
}

#[test]
fn retried_request_in_a_session_applies_once() {
    let mut s = KvStore::new(KvConfig::default());
    let incr = |seq, acked| KvRequest {
        time_ms: 10,
        client_id: 42,
        seq,
        acked_below: acked,
        command: KvCommand::Increment {
            key: b("c"),
            delta: 1,
        },
    };
    assert_eq!(s.apply(1, &incr(1, 1)), KvResult::Int(1));
    assert_eq!(
        s.apply(2, &incr(1, 1)),
        KvResult::Int(1),
        "retry answered from the session"
    );
    assert_eq!(s.apply(3, &incr(2, 1)), KvResult::Int(2));
    assert_eq!(s.apply(4, &incr(2, 2)), KvResult::Int(2));
    assert_eq!(s.get(b"c", 0).map(|i| i.value.clone()), Some(b("2")));
    assert!(matches!(
        s.apply(5, &incr(1, 2)),
        KvResult::Failed(KvFailure::StaleSequence { oldest_kept: 2 })
    ));
}

#[test]
fn idle_sessions_expire_by_leader_time_at_the_same_index() {
    let cfg = KvConfig {
        session_idle_ms: 100,
        session_sweep_every: 4,
        ..KvConfig::default()
    };
    let mut s = KvStore::new(cfg);
    let r = KvRequest {
        time_ms: 0,
        client_id: 9,
        seq: 1,
        acked_below: 1,
        command: put("a", "1"),
    };
    s.apply(1, &r);
    assert_eq!(s.sessions().len(), 1);
    for i in 2..4 {
        s.apply(i, &req(1_000, put("x", "y")));
    }
    assert_eq!(s.sessions().len(), 1, "not swept before index 4");
    s.apply(4, &req(1_000, put("x", "y")));
    assert_eq!(s.sessions().len(), 0);
}

#[test]
fn scan_pages_cover_each_live_key_once() {
    let mut s = KvStore::new(KvConfig::default());
    let mut cmds: Vec<_> = (0..50).map(|i| put(&format!("user:{i:03}"), "v")).collect();
    cmds.push(put("other", "v"));
    cmds.push(KvCommand::Put {
        key: b("user:0205"),
        value: b("v"),
        ttl: Ttl::AtMs(5),
        condition: PutCondition::Always,
        return_old: false,
    });
    apply_all(&mut s, 1, 0, cmds);
    let range = ScanRange::Prefix(b("user:"));
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.scan(&range, after.as_ref(), 7, 10);
        assert!(page.items.len() <= 7);
        seen.extend(page.items.into_iter().map(|(k, _)| k));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let want: Vec<_> = (0..50).map(|i| b(&format!("user:{i:03}"))).collect();
    assert_eq!(seen, want, "in order, expired skipped, nothing twice");
    let bounded = s.scan(
        &ScanRange::Range {
            start: b("user:010"),
            end: Some(b("user:013")),
        },
        None,
        100,
        10,
    );
    assert_eq!(bounded.items.len(), 3);
    assert_eq!(bounded.next, None);
}

#[test]
fn snapshot_reflects_the_freeze_point_while_applies_go_on() {
    // Both ways of reading the frozen view: entries copied out of the map
    // first (the default), and straight from the frozen map.
    for flatten_max in [usize::MAX, 0] {
        snapshot_at_the_freeze_point(KvConfig {
            snapshot_flatten_keys_max: flatten_max,
            ..KvConfig::default()
        });
    }
}

fn snapshot_at_the_freeze_point(cfg: KvConfig) {
    let mut s = KvStore::new(cfg);
    apply_all(
        &mut s,
        1,
        0,
        (0..1_000)
            .map(|i| put(&format!("k{i:04}"), &format!("v{i}")))
            .collect(),
    );
    s.apply(
        1_001,
        &KvRequest {
            time_ms: 0,
            client_id: 3,
            seq: 1,
            acked_below: 1,
            command: put("s", "1"),
        },
    );
    let want: BTreeMap<Bytes, Item> = s
        .map
        .iter()
        .map(|(k, v)| (k.to_bytes(), v.item()))
        .collect();
    let want_sessions = s.sessions().clone();
    let mut frozen = s.freeze();
    // Applies continue, and change keys the snapshot holds.
    apply_all(
        &mut s,
        1_002,
        0,
        (0..300)
            .map(|i| put(&format!("k{i:04}"), "changed"))
            .collect(),
    );
    let mut restore = KvRestore::new(KvConfig::default());
    let mut chunks = 0;
    while let Some(chunk) = frozen.next_chunk(2_000) {
        restore.push_chunk(chunk).expect("valid chunk");
        chunks += 1;
    }
    assert!(chunks > 5, "streamed in several chunks, got {chunks}");
    let restored = restore.finish().expect("complete");
    assert_eq!(restored.index_applied(), 1_001);
    let got: BTreeMap<Bytes, Item> = restored
        .map
        .iter()
        .map(|(k, v)| (k.to_bytes(), v.item()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(restored.sessions(), &want_sessions);
}

#[test]
fn damaged_or_incomplete_snapshots_are_refused() {
    let mut s = KvStore::new(KvConfig::default());
    apply_all(
        &mut s,
        1,
        0,
        (0..100).map(|i| put(&format!("k{i}"), "v")).collect(),
    );
    let mut frozen = s.freeze();
    let mut chunks = Vec::new();
    while let Some(c) = frozen.next_chunk(300) {
        chunks.push(c);
    }
    assert!(chunks.len() >= 3);
    // A flipped bit in a body.
    let mut bad = BytesMut::from(&chunks[1][..]);
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    let mut r = KvRestore::new(KvConfig::default());
    r.push_chunk(chunks[0].clone()).expect("first chunk");
    assert!(matches!(
        r.push_chunk(bad.freeze()),
        Err(DecodeError::Crc { .. })
    ));
    // Out of order.
    let mut r = KvRestore::new(KvConfig::default());
    assert!(matches!(
        r.push_chunk(chunks[1].clone()),
        Err(DecodeError::Invalid { .. })
    ));
    // Missing the last chunk.
    let mut r = KvRestore::new(KvConfig::default());
    for c in &chunks[..chunks.len() - 1] {
        r.push_chunk(c.clone()).expect("valid");
    }
    assert!(r.finish().is_err());
}

fn arb_bytes() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

fn arb_ttl() -> impl Strategy<Value = Ttl> {
    prop_oneof![
        Just(Ttl::Persist),
        any::<u64>().prop_map(Ttl::AfterMs),
        any::<u64>().prop_map(Ttl::AtMs),
        Just(Ttl::Keep)
    ]
}

fn arb_command() -> impl Strategy<Value = KvCommand> {
    prop_oneof![
        4 => arb_single_command(),
        1 => proptest::collection::vec(arb_single_command(), 0..4).prop_map(KvCommand::Batch),
    ]
}

fn arb_single_command() -> impl Strategy<Value = KvCommand> {
    prop_oneof![
        (arb_bytes(), arb_bytes(), arb_ttl(), 0..3u8, any::<bool>()).prop_map(
            |(key, value, ttl, c, return_old)| KvCommand::Put {
                key,
                value,
                ttl,
                condition: [
                    PutCondition::Always,
                    PutCondition::IfAbsent,
                    PutCondition::IfPresent
                ][c as usize],
                return_old
            }
        ),
        (
            proptest::collection::vec((arb_bytes(), arb_bytes()), 0..4),
            arb_ttl()
        )
            .prop_map(|(pairs, ttl)| KvCommand::PutMany { pairs, ttl }),
        (proptest::collection::vec(arb_bytes(), 0..4), any::<bool>())
            .prop_map(|(keys, return_old)| KvCommand::Remove { keys, return_old }),
        (
            arb_bytes(),
            proptest::option::of(arb_bytes()),
            proptest::option::of(arb_bytes())
        )
            .prop_map(|(key, expected, new)| KvCommand::CompareAndSet {
                key,
                expected,
                new
            }),
        (arb_bytes(), any::<i64>()).prop_map(|(key, delta)| KvCommand::Increment { key, delta }),
        (arb_bytes(), arb_bytes()).prop_map(|(key, suffix)| KvCommand::Append { key, suffix }),
        (arb_bytes(), arb_ttl()).prop_map(|(key, ttl)| KvCommand::SetTtl { key, ttl }),
        (arb_bytes(), any::<u64>()).prop_map(|(key, version)| KvCommand::Expire { key, version }),
        Just(KvCommand::Flush),
    ]
}

fn arb_request() -> impl Strategy<Value = KvRequest> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        arb_command(),
    )
        .prop_map(
            |(time_ms, client_id, seq, acked_below, command)| KvRequest {
                time_ms,
                client_id,
                seq,
                acked_below,
                command,
            },
        )
}

fn arb_single_result() -> impl Strategy<Value = KvResult> {
    prop_oneof![
        (any::<bool>(), proptest::option::of(arb_bytes()))
            .prop_map(|(written, old)| KvResult::Put { written, old }),
        (any::<u64>(), proptest::option::of(arb_bytes()))
            .prop_map(|(count, old)| KvResult::Count { count, old }),
        any::<bool>().prop_map(KvResult::Flag),
        any::<i64>().prop_map(KvResult::Int),
        any::<u64>().prop_map(KvResult::Len),
        Just(KvResult::Failed(KvFailure::NotAnInteger)),
        Just(KvResult::Failed(KvFailure::Overflow)),
        any::<u64>()
            .prop_map(|oldest_kept| KvResult::Failed(KvFailure::StaleSequence { oldest_kept })),
        "[a-z ]{0,20}".prop_map(|s| KvResult::Failed(KvFailure::Invalid(s))),
    ]
}

fn arb_result() -> impl Strategy<Value = KvResult> {
    prop_oneof![
        4 => arb_single_result(),
        1 => proptest::collection::vec(arb_single_result(), 0..4).prop_map(KvResult::Batch),
    ]
}

proptest! {
    #[test]
    fn requests_round_trip(r in arb_request()) {
        let bytes = r.to_bytes();
        prop_assert_eq!(KvRequest::decode(bytes.clone()), Ok(r));
        // Every strict prefix is refused, never misread.
        for cut in 0..bytes.len() {
            prop_assert!(KvRequest::decode(bytes.slice(..cut)).is_err());
        }
    }

    #[test]
    fn results_round_trip(r in arb_result()) {
        let mut out = BytesMut::new();
        r.encode(&mut out);
        prop_assert_eq!(KvResult::decode(out.freeze()), Ok(r));
    }

    #[test]
    fn decoders_are_total_on_garbage(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let data = Bytes::from(data);
        let _ = KvRequest::decode(data.clone());
        let _ = KvResult::decode(data.clone());
        let _ = KvRestore::new(KvConfig::default()).push_chunk(data);
    }

    /// Random puts, removes and increments against a plain map model, with a
    /// snapshot restore in the middle: the store and the model agree.
    #[test]
    fn store_matches_a_model(ops in proptest::collection::vec((0..3u8, 0..8u8, any::<i8>()), 1..200), snap_at in 0..200usize) {
        let mut s = KvStore::new(KvConfig::default());
        let mut model: BTreeMap<Bytes, Bytes> = BTreeMap::new();
        for (i, (op, k, d)) in ops.into_iter().enumerate() {
            let key = b(&format!("key{k}"));
            let cmd = match op {
                0 => KvCommand::Put { key: key.clone(), value: Bytes::from(d.to_string()), ttl: Ttl::Persist, condition: PutCondition::Always, return_old: false },
                1 => KvCommand::Remove { keys: vec![key.clone()], return_old: false },
                _ => KvCommand::Increment { key: key.clone(), delta: d as i64 },
            };
            let result = s.apply(i as u64 + 1, &req(0, cmd));
            match op {
                0 => { model.insert(key, Bytes::from(d.to_string())); }
                1 => { model.remove(&key); }
                _ => {
                    let cur: i64 = model.get(&key).map_or(0, |v| std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).unwrap_or(0));
                    prop_assert_eq!(result, KvResult::Int(cur + d as i64));
                    model.insert(key, Bytes::from((cur + d as i64).to_string()));
                }
            }
            if i == snap_at {
                let mut f = s.freeze();
                let mut r = KvRestore::new(KvConfig::default());
                while let Some(c) = f.next_chunk(64) {
                    r.push_chunk(c).expect("own chunk");
                }
                s = r.finish().expect("complete");
            }
        }
        let got: BTreeMap<Bytes, Bytes> = s.map.iter().map(|(k, v)| (k.to_bytes(), v.item().value)).collect();
        prop_assert_eq!(got, model);
    }
}

fn arb_item() -> impl Strategy<Value = Item> {
    (
        arb_bytes(),
        any::<u64>(),
        proptest::option::of(0..u64::MAX - 1),
    )
        .prop_map(|(value, version, expire_at_ms)| Item::string(value, version, expire_at_ms))
}

proptest! {
    #[test]
    fn queries_and_answers_round_trip(
        keys in proptest::collection::vec(arb_bytes(), 0..5),
        prefix in arb_bytes(),
        after in proptest::option::of(arb_bytes()),
        limit in any::<u32>(),
        values in proptest::collection::vec(proptest::option::of(arb_item()), 0..5),
        items in proptest::collection::vec((arb_bytes(), arb_item()), 0..5),
        next in proptest::option::of(arb_bytes()),
    ) {
        for q in [KvQuery::Get(keys), KvQuery::Scan { range: ScanRange::Prefix(prefix.clone()), after, limit }, KvQuery::Scan { range: ScanRange::Range { start: prefix, end: None }, after: None, limit }] {
            prop_assert_eq!(KvQuery::decode(q.to_bytes()), Ok(q));
        }
        let values = KvAnswer::Values {
            items: values,
            at_ms: 7,
        };
        for a in [values, KvAnswer::Page { items, next }] {
            let bytes = a.to_bytes();
            prop_assert_eq!(KvAnswer::decode(bytes.clone()), Ok(a));
            for cut in 0..bytes.len() {
                prop_assert!(KvAnswer::decode(bytes.slice(..cut)).is_err());
            }
        }
    }

    #[test]
    fn query_decoders_are_total(data in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = KvQuery::decode(Bytes::from(data.clone()));
        let _ = KvAnswer::decode(Bytes::from(data));
    }
}

/// A TTL is the leader's decision: an answer carries the clock it was
/// judged at, and the receiver moves deadlines onto its own clock, so a
/// node whose clock is off by minutes still shows what the leader left.
#[test]
fn answers_carry_the_leaders_clock_and_ttls_follow_it() {
    let mut s = KvStore::new(KvConfig::default());
    s.apply(
        1,
        &req(
            1_000,
            KvCommand::Put {
                key: b("t"),
                value: b("v"),
                ttl: Ttl::AfterMs(4_000),
                condition: PutCondition::Always,
                return_old: false,
            },
        ),
    );
    let answer = s.answer(&KvQuery::Get(vec![b("t")]), 2_000);
    let answer = KvAnswer::decode(answer.to_bytes()).expect("decodes");
    // The receiver's clock is 10 minutes ahead of the leader's.
    let receiver_now = 2_000 + 600_000;
    let items = answer.into_items(receiver_now).expect("values");
    let item = items[0].as_ref().expect("present at the leader");
    assert_eq!(item.expire_at_ms, Some(receiver_now + 3_000));
    // Expired at the leader: absent, whatever the receiver's clock says.
    let gone = s.answer(&KvQuery::Get(vec![b("t")]), 5_000);
    assert_eq!(gone.into_items(0), Some(vec![None]));
}
