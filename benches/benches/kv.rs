//! The KV state machine's building blocks: the map behind it (persistent
//! `imbl::OrdMap` against `std::collections::BTreeMap`), what a snapshot
//! freeze costs each way, apply throughput of the real store, and the
//! Redis request parser against the `redis-protocol` crate.
//!
//! Run: `cargo bench -p sampan-benches --bench kv` (`-- --quick` for a short
//! run). Prints Markdown tables.

#![allow(clippy::print_stdout)] // a benchmark prints its table

use bytes::{Bytes, BytesMut};
use sampan_kv::{KvCommand, KvConfig, KvRequest, KvStore, PutCondition, Ttl};
use sampan_redis::resp::{RespLimits, parse_request};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn key(i: u64) -> Bytes {
    // Spread keys like hashed ids so inserts land all over the tree.
    Bytes::from(format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}

fn per_op(d: Duration, ops: u64) -> String {
    format!("{:.0}", d.as_nanos() as f64 / ops.max(1) as f64)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

fn maps(n: u64) {
    let value = Bytes::from(vec![7u8; 100]);
    let keys: Vec<Bytes> = (0..n).map(key).collect();
    let m = (n / 5).max(1);
    let (mut bt, bt_insert) = timed(|| {
        keys.iter()
            .map(|k| (k.clone(), value.clone()))
            .collect::<BTreeMap<_, _>>()
    });
    let (mut im, im_insert) = timed(|| {
        keys.iter()
            .map(|k| (k.clone(), value.clone()))
            .collect::<imbl::OrdMap<_, _>>()
    });
    let (bt_copy, bt_freeze) = timed(|| bt.clone());
    let (im_frozen, im_freeze) = timed(|| im.clone());
    let ((), im_cow) = timed(|| {
        keys.iter()
            .take(m as usize)
            .for_each(|k| drop(im.insert(k.clone(), value.clone())))
    });
    drop(im_frozen);
    let ((), im_over) = timed(|| {
        keys.iter()
            .take(m as usize)
            .for_each(|k| drop(im.insert(k.clone(), value.clone())))
    });
    let ((), bt_over) = timed(|| {
        keys.iter()
            .take(m as usize)
            .for_each(|k| drop(bt.insert(k.clone(), value.clone())))
    });
    let (hits, im_get) = timed(|| {
        keys.iter()
            .take(m as usize)
            .filter(|k| im.contains_key(*k))
            .count()
    });
    let (hits2, bt_get) = timed(|| {
        keys.iter()
            .take(m as usize)
            .filter(|k| bt.contains_key(*k))
            .count()
    });
    assert_eq!(hits + hits2, 2 * m as usize);
    drop(black_box(bt_copy));
    println!("\n| map, {n} keys of 16 B, 100 B values | std BTreeMap | imbl OrdMap |");
    println!("|---|---:|---:|");
    println!(
        "| insert, ns/op | {} | {} |",
        per_op(bt_insert, n),
        per_op(im_insert, n)
    );
    println!(
        "| overwrite, ns/op | {} | {} |",
        per_op(bt_over, m),
        per_op(im_over, m)
    );
    println!(
        "| overwrite while a frozen view is alive, ns/op | - | {} |",
        per_op(im_cow, m)
    );
    println!(
        "| get, ns/op | {} | {} |",
        per_op(bt_get, m),
        per_op(im_get, m)
    );
    println!("| freeze (clone the map) | {bt_freeze:?} | {im_freeze:?} |");
}

fn store(n: u64) {
    let requests: Vec<KvRequest> = (0..n)
        .map(|i| KvRequest {
            time_ms: 0,
            client_id: 0,
            seq: 0,
            acked_below: 0,
            command: KvCommand::Put {
                key: key(i),
                value: Bytes::from(vec![1u8; 100]),
                ttl: Ttl::Persist,
                condition: PutCondition::Always,
                return_old: false,
            },
        })
        .collect();
    let encoded: Vec<Bytes> = requests.iter().map(KvRequest::to_bytes).collect();
    let mut s = KvStore::new(KvConfig::default());
    let ((), apply) = timed(|| {
        for (i, b) in encoded.iter().enumerate() {
            let req = KvRequest::decode(b.clone()).unwrap_or_else(|e| panic!("{e}"));
            black_box(s.apply(i as u64 + 1, &req));
        }
    });
    let (mut frozen, freeze) = timed(|| s.freeze());
    let ((bytes, chunks), stream) = timed(|| {
        let (mut bytes, mut chunks) = (0usize, 0usize);
        while let Some(c) = frozen.next_chunk(1 << 20) {
            bytes += c.len();
            chunks += 1;
        }
        (bytes, chunks)
    });
    println!("\n| KvStore, {n} puts (16 B keys, 100 B values) | figure |");
    println!("|---|---:|");
    println!("| decode + apply, ns/put | {} |", per_op(apply, n));
    println!(
        "| apply throughput, puts/s | {:.0} |",
        n as f64 / apply.as_secs_f64()
    );
    println!("| freeze | {freeze:?} |");
    println!(
        "| stream the frozen view to 1 MiB chunks | {stream:?} ({chunks} chunks, {:.1} MiB) |",
        bytes as f64 / (1 << 20) as f64
    );
    store_batches(n);
}

/// Pairs per `PutMany` command in [`store_batches`].
const BATCH_PAIRS: u64 = 100;

/// Apply throughput of put batches: `n` keys in `PutMany` commands of
/// [`BATCH_PAIRS`] pairs each (what a pipeline of SETs or the batcher
/// proposes), then the freeze of the full store.
fn store_batches(n: u64) {
    let encoded: Vec<Bytes> = (0..n.div_ceil(BATCH_PAIRS))
        .map(|b| {
            let pairs = (b * BATCH_PAIRS..((b + 1) * BATCH_PAIRS).min(n))
                .map(|i| (key(i), Bytes::from(vec![1u8; 100])))
                .collect();
            KvRequest::without_session(KvCommand::PutMany {
                pairs,
                ttl: Ttl::Persist,
            })
            .to_bytes()
        })
        .collect();
    let mut s = KvStore::new(KvConfig::default());
    let ((), apply) = timed(|| {
        for (i, b) in encoded.iter().enumerate() {
            let req = KvRequest::decode(b.clone()).unwrap_or_else(|e| panic!("{e}"));
            black_box(s.apply(i as u64 + 1, &req));
        }
    });
    let (frozen, freeze) = timed(|| s.freeze());
    drop(black_box(frozen));
    println!("\n| KvStore, {n} keys as PutMany of {BATCH_PAIRS} pairs | figure |");
    println!("|---|---:|");
    println!("| decode + apply, ns/key | {} |", per_op(apply, n));
    println!(
        "| apply throughput, keys/s | {:.0} |",
        n as f64 / apply.as_secs_f64()
    );
    println!(
        "| apply throughput, batches/s | {:.0} |",
        encoded.len() as f64 / apply.as_secs_f64()
    );
    println!("| freeze at {n} keys | {freeze:?} |");
}

fn resp(n: u64) {
    let mut wire = Vec::new();
    let val = "x".repeat(100);
    for i in 0..n {
        let k = format!("key:{i:012}");
        wire.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{val}\r\n",
                k.len(),
                val.len()
            )
            .as_bytes(),
        );
    }
    let limits = RespLimits::default();
    let (ours_args, ours) = timed(|| {
        let mut buf = BytesMut::from(&wire[..]);
        let mut args = 0;
        while let Ok(Some(a)) = parse_request(&mut buf, &limits) {
            args += a.len();
        }
        args
    });
    let (theirs_args, theirs) = timed(|| {
        let mut buf = BytesMut::from(&wire[..]);
        let mut args = 0;
        while let Ok(Some((frame, _, _))) =
            redis_protocol::resp2::decode::decode_bytes_mut(&mut buf)
        {
            if let redis_protocol::resp2::types::BytesFrame::Array(a) = frame {
                args += a.len();
            }
        }
        args
    });
    assert_eq!(ours_args, theirs_args);
    println!("\n| RESP2 parse, {n} pipelined SETs with 100 B values | ns/command |");
    println!("|---|---:|");
    println!(
        "| sampan_redis::resp (hand-written, zero-copy) | {} |",
        per_op(ours, n)
    );
    println!(
        "| redis-protocol 6.0.0 decode_bytes_mut | {} |",
        per_op(theirs, n)
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n: u64 = if quick { 100_000 } else { 1_000_000 };
    maps(n);
    store(n);
    resp(n / 5);
}
