//! Transport benchmarks over loopback: frames/s and MB/s for small (100 B)
//! and large (64 KiB) bodies, one-way and request/response.
//!
//! Two runtimes of one shard each (two threads, not pinned): node 2 serves
//! on one, node 1 drives the load from the other over one connection.
//!
//! Run: `cargo bench -p sampan-benches --bench net` (add `-- --quick` for a
//! short run). Prints a Markdown table; MB/s counts body bytes (10^6).
//!
//! `-- --tick-ms N` runs a no-op timer every N ms on each shard: a
//! workaround for glommio 0.9.0 parking an executor that still has runnable
//! work until a timer fires (see `net/examples/request_stall_probe.rs`).
//! The request rows show the slowest request ("max") so such stalls show.

#![allow(clippy::print_stdout)] // a benchmark prints its table

use sampan_benches::{Latencies, Row, table};
use sampan_fiber::{IO_MEMORY_MIN_BYTES, Runtime, TaskClass, spawn, stopping};
use sampan_net::{Body, NetConfig, Router, Transport};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

const CLUSTER: u64 = 1;
const KIND_ONE_WAY: u16 = 16;
const KIND_ECHO: u16 = 17;
const KIND_SINK: u16 = 18;
const WAIT: Duration = Duration::from_secs(30);

fn runtime(name: &str, tick: Option<Duration>) -> Runtime {
    let rt = Runtime::builder()
        .name(name)
        .shards(1)
        .io_memory_bytes(IO_MEMORY_MIN_BYTES)
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    if let Some(period) = tick {
        let shard = rt.shard(0).unwrap_or_else(|e| panic!("{e}"));
        let started = shard.post(TaskClass::Latency, move || async move {
            let tick = async {
                loop {
                    sampan_fiber::sleep(period).await;
                }
            };
            futures_lite::future::or(tick, stopping()).await;
        });
        started.unwrap_or_else(|e| panic!("{e}"));
    }
    rt
}

/// Starts node 2 on `rt`: counts one-way frames, echoes KIND_ECHO, answers
/// KIND_SINK with an empty body. Lives until the runtime stops.
fn serve(rt: &Runtime) -> SocketAddr {
    rt.shard(0)
        .unwrap_or_else(|e| panic!("{e}"))
        .run_blocking(TaskClass::Latency, || async {
            let received = Rc::new(Cell::new(0u64));
            let router = Router::new();
            let count = received.clone();
            let ok = |r: Result<(), sampan_net::NetError>| r.unwrap_or_else(|e| panic!("{e}"));
            ok(router.register(KIND_ONE_WAY, move |_| count.set(count.get() + 1)));
            ok(router.register(KIND_ECHO, |inc| {
                if let Some(r) = inc.responder {
                    let _ = r.respond(inc.frame.body);
                }
            }));
            ok(router.register(KIND_SINK, |inc| {
                if let Some(r) = inc.responder {
                    let _ = r.respond(Body::empty());
                }
            }));
            let node2 = Transport::new(NetConfig::new(CLUSTER, 2), router)
                .unwrap_or_else(|e| panic!("{e}"));
            let addr = node2
                .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
                .unwrap_or_else(|e| panic!("{e}"));
            let keep = node2.clone();
            spawn(TaskClass::Latency, "bench-node-2", async move {
                stopping().await;
                keep.close();
            })
            .unwrap_or_else(|e| panic!("{e}"));
            addr
        })
        .unwrap_or_else(|e| panic!("{e}"))
}

fn mb_per_s(frames: u64, body: usize, wall: Duration) -> f64 {
    frames as f64 * body as f64 / wall.as_secs_f64().max(1e-9) / 1e6
}

/// One-way frames, sent as fast as the send budget allows; a request at
/// the end (same connection, so after every frame) closes the clock.
async fn one_way(node1: &Transport, n: u64, body_len: usize) -> Row {
    let body = Body::from(vec![7u8; body_len]);
    let start = Instant::now();
    for _ in 0..n {
        node1
            .send(2, KIND_ONE_WAY, 1, body.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    node1
        .request(2, KIND_SINK, 1, Body::empty(), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let wall = start.elapsed();
    let name = format!(
        "one-way, {} body ({:.0} MB/s)",
        size(body_len),
        mb_per_s(n, body_len, wall)
    );
    Row::new(&name, n, wall, None)
}

/// Requests with `window` of them in flight at once (one fiber each);
/// latency per request. `echo` answers with the body, else empty.
async fn requests(node1: &Transport, n: u64, body_len: usize, window: u64, echo: bool) -> Row {
    let body = Body::from(vec![7u8; body_len]);
    let kind = if echo { KIND_ECHO } else { KIND_SINK };
    let lat = Rc::new(RefCell::new(Latencies::new()));
    let start = Instant::now();
    let mut fibers = Vec::new();
    for _ in 0..window {
        let (t, body, lat) = (node1.clone(), body.clone(), lat.clone());
        let per = n / window;
        let fiber = spawn(TaskClass::Latency, "bench-requester", async move {
            for _ in 0..per {
                let t0 = Instant::now();
                t.request(2, kind, 1, body.clone(), WAIT)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                lat.borrow_mut().record(t0.elapsed());
            }
        });
        fibers.push(fiber.unwrap_or_else(|e| panic!("{e}")));
    }
    for f in fibers {
        f.join().await.unwrap_or_else(|e| panic!("{e}"));
    }
    let wall = start.elapsed();
    let all = lat.borrow();
    let done = n / window * window;
    let answer = if echo { "echoed" } else { "empty answer" };
    let name = format!(
        "request/response, {} body, {answer}, {window} in flight ({:.0} MB/s, max {:.1?})",
        size(body_len),
        mb_per_s(done, body_len, wall),
        all.quantile(1.0)
    );
    Row::new(&name, done, wall, Some(&all))
}

fn size(bytes: usize) -> String {
    if bytes >= 1024 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale: u64 = if quick { 1 } else { 10 };
    let tick = std::env::args()
        .skip_while(|a| a != "--tick-ms")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis);
    let server = runtime("bench-node-2", tick);
    let addr = serve(&server);
    let client = runtime("bench-node-1", tick);
    let rows = client
        .shard(0)
        .unwrap_or_else(|e| panic!("{e}"))
        .run_blocking(TaskClass::Latency, move || async move {
            let node1 = Transport::new(NetConfig::new(CLUSTER, 1), Router::new())
                .unwrap_or_else(|e| panic!("{e}"));
            node1.add_peer(2, addr).unwrap_or_else(|e| panic!("{e}"));
            sampan_fiber::timeout(WAIT, node1.wait_connected(2))
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("{e}"));
            // Warm-up (connection buffers, caches, TCP window): not reported.
            requests(&node1, 5_000, 100, 1, true).await;
            one_way(&node1, 20_000, 100).await;
            let mut rows = Vec::new();
            rows.push(one_way(&node1, 200_000 * scale, 100).await);
            eprintln!("done: one-way 100 B");
            rows.push(one_way(&node1, 2_000 * scale, 64 << 10).await);
            eprintln!("done: one-way 64 KiB");
            rows.push(requests(&node1, 10_000 * scale, 100, 1, true).await);
            rows.push(requests(&node1, 64_000 * scale, 100, 64, true).await);
            eprintln!("done: request/response 100 B");
            rows.push(requests(&node1, 1_000 * scale, 64 << 10, 1, false).await);
            rows.push(requests(&node1, 2_000 * scale, 64 << 10, 16, false).await);
            eprintln!("done: request/response 64 KiB");
            node1.close();
            rows
        })
        .unwrap_or_else(|e| panic!("{e}"));
    for rt in [client, server] {
        if let Err(e) = rt.shutdown(Duration::from_secs(1)) {
            eprintln!("shutdown: {e}");
        }
    }
    print!("{}", table(&rows));
}
