//! The typed values on the store: snapshots of every type (split across
//! chunks), copy-on-write under a frozen view, seeded randomness that
//! replicas agree on, expiry of collections. Redis's semantics are checked
//! against a real `redis-server` in `demos/tests/redis_differential.rs`.

use super::snapshot::elements;
use super::*;
use bytes::Bytes;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn data(store: &mut KvStore, index: u64, time_ms: u64, cmd: DataCmd) -> Reply {
    let req = KvRequest {
        time_ms,
        client_id: 0,
        seq: 0,
        acked_below: 0,
        command: KvCommand::Data(cmd),
    };
    match store.apply(index, &req) {
        KvResult::Reply(r) => r,
        other => panic!("a reply expected, got {other:?}"),
    }
}

/// Every key with its kind, version, deadline and elements, in key order.
fn dump(store: &KvStore) -> Vec<String> {
    store
        .map
        .iter()
        .map(|(k, e)| {
            format!(
                "{k:?} {:?} v{} {:?} {:?} {:?}",
                e.value.kind(),
                e.version,
                e.expire_at_ms,
                e.str(),
                elements(&e.value)
            )
        })
        .collect()
}

/// A store with every type: `n` elements per collection.
fn mixed(n: usize) -> KvStore {
    let mut s = KvStore::new(KvConfig::default());
    let mut i = 0u64;
    let mut next = || {
        i += 1;
        i
    };
    let members: Vec<Bytes> = (0..n).map(|j| b(&format!("m{j:05}"))).collect();
    data(
        &mut s,
        next(),
        0,
        DataCmd::HSet {
            key: b("h"),
            pairs: members.iter().map(|m| (m.clone(), b("v"))).collect(),
            nx: false,
            ok: false,
        },
    );
    data(
        &mut s,
        next(),
        0,
        DataCmd::Push {
            key: b("l"),
            left: false,
            values: members.clone(),
            existing: false,
        },
    );
    data(
        &mut s,
        next(),
        0,
        DataCmd::SAdd {
            key: b("s"),
            members: members.clone(),
        },
    );
    data(
        &mut s,
        next(),
        0,
        DataCmd::ZAdd {
            key: b("z"),
            flags: ZAddFlags::default(),
            pairs: members
                .iter()
                .enumerate()
                .map(|(j, m)| (j as f64 / 3.0, m.clone()))
                .collect(),
        },
    );
    s.apply(
        next(),
        &KvRequest::without_session(KvCommand::put("str", "text")),
    );
    data(
        &mut s,
        next(),
        1_000,
        DataCmd::Expire {
            key: b("z"),
            ttl: Ttl::AfterMs(60_000),
            cond: ExpireCond::Always,
        },
    );
    s
}

fn restore(frozen: &mut KvFrozen, chunk: usize) -> KvStore {
    let mut r = KvRestore::new(KvConfig::default());
    let mut chunks = 0;
    while let Some(c) = frozen.next_chunk(chunk) {
        r.push_chunk(c).expect("chunk accepted");
        chunks += 1;
    }
    assert!(chunks >= 1);
    r.finish().expect("complete")
}

#[test]
fn every_type_survives_a_snapshot_in_small_chunks() {
    let s = mixed(3_000);
    let want = dump(&s);
    // 4 KiB chunks: each collection (about 30 KiB) spans several.
    let mut frozen = s.freeze();
    let mut count = 0;
    let mut probe = s.freeze();
    while probe.next_chunk(4096).is_some() {
        count += 1;
    }
    assert!(count > 20, "collections split across chunks: {count}");
    let restored = restore(&mut frozen, 4096);
    assert_eq!(dump(&restored), want);
    assert_eq!(restored.index_applied(), s.index_applied());
    // The expiry index is rebuilt for collections too.
    assert_eq!(restored.next_expiry_ms(), Some(61_000));
    // And the restored sorted set still answers by rank.
    let q = DataQuery::ZRank {
        key: b("z"),
        member: b("m02999"),
        rev: false,
    };
    assert_eq!(restored.answer_data(&q, 0), Reply::Int(2_999));
}

#[test]
fn a_frozen_view_keeps_its_collections_while_they_change() {
    let mut s = mixed(50);
    let want = dump(&s);
    let mut frozen = s.freeze();
    // Change every collection after the freeze.
    let at = s.index_applied();
    data(
        &mut s,
        at + 1,
        0,
        DataCmd::HDel {
            key: b("h"),
            fields: vec![b("m00001")],
        },
    );
    data(
        &mut s,
        at + 2,
        0,
        DataCmd::Pop {
            key: b("l"),
            left: true,
            count: Some(10),
        },
    );
    data(
        &mut s,
        at + 3,
        0,
        DataCmd::SRem {
            key: b("s"),
            members: vec![b("m00002")],
        },
    );
    data(
        &mut s,
        at + 4,
        0,
        DataCmd::ZIncrBy {
            key: b("z"),
            delta: 100.0,
            member: b("m00003"),
        },
    );
    assert_ne!(dump(&s), want);
    assert_eq!(dump(&restore(&mut frozen, 512)), want);
}

#[test]
fn a_snapshot_that_ends_inside_a_collection_is_refused() {
    let s = mixed(2_000);
    let mut frozen = s.freeze();
    let chunks: Vec<Bytes> = std::iter::from_fn(|| frozen.next_chunk(4096)).collect();
    // A chunk in the middle of the hash, relabelled as the last one (the
    // flag is outside the CRC, which covers the body).
    let mut r = KvRestore::new(KvConfig::default());
    r.push_chunk(chunks[0].clone()).expect("first");
    let mut cut = chunks[1].to_vec();
    cut[1] = 1;
    r.push_chunk(Bytes::from(cut)).expect("a well-formed chunk");
    let e = r.finish().expect_err("ends inside a collection");
    assert!(e.to_string().contains("ends inside collection"), "{e}");
}

#[test]
fn spop_with_one_seed_takes_the_same_members_on_every_replica() {
    let mut a = mixed(100);
    let mut b2 = mixed(100);
    let pop = DataCmd::SPop {
        key: b("s"),
        count: Some(7),
        seed: 42,
    };
    let at = a.index_applied() + 1;
    let ra = data(&mut a, at, 0, pop.clone());
    let rb = data(&mut b2, at, 0, pop);
    assert_eq!(ra, rb);
    let Reply::Set(members) = ra else {
        panic!("a set")
    };
    assert_eq!(members.len(), 7);
    assert_eq!(dump(&a), dump(&b2));
    // Another seed takes others (with 100 members, the same 7 are a
    // one-in-16-billion chance).
    let mut c = mixed(100);
    let rc = data(
        &mut c,
        at,
        0,
        DataCmd::SPop {
            key: b("s"),
            count: Some(7),
            seed: 43,
        },
    );
    assert_ne!(Reply::Set(members), rc);
}

#[test]
fn collections_expire_and_wrong_types_are_refused() {
    let mut s = mixed(10);
    // `z` expires at 61 s: hidden from reads, then removed by its version.
    let len = DataQuery::Len {
        key: b("z"),
        kind: ValueKind::ZSet,
    };
    assert_eq!(s.answer_data(&len, 60_999), Reply::Int(10));
    assert_eq!(s.answer_data(&len, 61_000), Reply::Int(0));
    let due = s.due_expirations(61_000, 10);
    assert_eq!(due.len(), 1);
    let (key, version) = due[0].clone();
    let at = s.index_applied() + 1;
    s.apply(
        at,
        &KvRequest {
            time_ms: 61_000,
            ..KvRequest::without_session(KvCommand::Expire { key, version })
        },
    );
    assert!(s.get(b"z", 0).is_none());
    // A string command on a hash, a hash command on a string.
    let at = s.index_applied() + 1;
    let r = s.apply(
        at,
        &KvRequest::without_session(KvCommand::Increment {
            key: b("h"),
            delta: 1,
        }),
    );
    assert_eq!(r, KvResult::Failed(KvFailure::WrongType));
    let q = DataQuery::HGet {
        key: b("str"),
        field: b("f"),
    };
    assert_eq!(s.answer_data(&q, 0), Reply::wrong_type());
    // An emptied collection takes its key with it.
    let at = s.index_applied() + 1;
    data(
        &mut s,
        at,
        0,
        DataCmd::Pop {
            key: b("l"),
            left: false,
            count: Some(100),
        },
    );
    assert!(s.get(b"l", 0).is_none());
}

#[test]
fn randomkey_answers_live_keys_only() {
    let mut s = mixed(3);
    // `z` expires at 61 s; the others do not.
    let keys: Vec<Reply> = (0..50)
        .map(|seed| s.answer_data(&DataQuery::RandomKey { seed }, 61_000))
        .collect();
    assert!(
        keys.iter()
            .all(|k| matches!(k, Reply::Bulk(b) if &b[..] != b"z"))
    );
    assert!(keys.iter().any(|k| *k == Reply::Bulk(b("h"))));
    let empty = KvStore::new(KvConfig::default());
    assert_eq!(
        empty.answer_data(&DataQuery::RandomKey { seed: 1 }, 0),
        Reply::Nil
    );
    // Everything expired: no key to give.
    let at = s.index_applied() + 1;
    for (i, k) in ["h", "l", "s", "str"].iter().enumerate() {
        data(
            &mut s,
            at + i as u64,
            0,
            DataCmd::Expire {
                key: b(k),
                ttl: Ttl::AtMs(5),
                cond: ExpireCond::Always,
            },
        );
    }
    assert_eq!(
        s.answer_data(&DataQuery::RandomKey { seed: 7 }, 61_000),
        Reply::Nil
    );
}
