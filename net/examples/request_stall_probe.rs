//! Probe for executor stalls: runs request/response round trips between two
//! one-shard runtimes over loopback and reports any that take longer than
//! 50 ms (none should: each takes tens of microseconds).
//!
//! Found while benchmarking: with the 1 ms preemption timer and the CPU
//! contended (other processes busy on both cores), glommio 0.9.0 sometimes
//! parks an executor that still has runnable work until some timer fires
//! (the maintained fork fixed this in glommio/glommio#53, "do not park the
//! executor while a task queue is still runnable"). A request then finishes
//! only when a timer wakes that executor, or fails by its timeout when the
//! stalled side has no timer at all. A no-op timer every 10 ms on each shard
//! bounded every stall to that period in our runs. Run it with
//! `yes > /dev/null` on each core to see it:
//!
//! ```text
//! cargo run --release -p sampan-net --example request_stall_probe -- 65536 10000 1
//! ```
//!
//! Arguments: body bytes, requests, preemption timer in ms.

#![allow(clippy::print_stdout)] // a probe prints its findings

use sampan_fiber::{IO_MEMORY_MIN_BYTES, Runtime, TaskClass, spawn, stopping};
use sampan_net::{Body, NetConfig, Router, Transport};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const KIND: u16 = 16;
const SLOW: Duration = Duration::from_millis(50);

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn runtime(name: &str, preempt: Duration) -> Runtime {
    Runtime::builder()
        .name(name)
        .shards(1)
        .preempt_timer(preempt)
        .io_memory_bytes(IO_MEMORY_MIN_BYTES)
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

fn serve(rt: &Runtime) -> SocketAddr {
    let shard = rt.shard(0).unwrap_or_else(|e| panic!("{e}"));
    let started = shard.run_blocking(TaskClass::Latency, || async {
        let router = Router::new();
        router.register(KIND, |inc| {
            if let Some(r) = inc.responder {
                let _ = r.respond(Body::empty());
            }
        })?;
        let node2 = Transport::new(NetConfig::new(1, 2), router)?;
        let addr = node2.listen(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        spawn(TaskClass::Latency, "probe-server", async move {
            stopping().await;
            node2.close();
        })?;
        Ok::<_, sampan_net::NetError>(addr)
    });
    started
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn main() {
    let body_len = arg(1, 65536) as usize;
    let n = arg(2, 20_000);
    let preempt = Duration::from_millis(arg(3, 1).max(1));
    let server = runtime("probe-2", preempt);
    let addr = serve(&server);
    let client = runtime("probe-1", preempt);
    let shard = client.shard(0).unwrap_or_else(|e| panic!("{e}"));
    let report = shard.run_blocking(TaskClass::Latency, move || async move {
        let node1 = Transport::new(NetConfig::new(1, 1), Router::new())?;
        node1.add_peer(2, addr)?;
        sampan_fiber::timeout(Duration::from_secs(10), node1.wait_connected(2)).await??;
        let body = Body::from(vec![1u8; body_len]);
        let start = Instant::now();
        let mut slow = Vec::new();
        for i in 0..n {
            let t0 = Instant::now();
            node1
                .request(2, KIND, 0, body.clone(), Duration::from_secs(5))
                .await?;
            if t0.elapsed() > SLOW {
                slow.push((i, t0.elapsed()));
            }
        }
        node1.close();
        Ok::<_, sampan_net::NetError>((start.elapsed(), slow))
    });
    let (wall, slow) = report
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    println!("{n} requests of {body_len} B in {wall:?}, preempt timer {preempt:?}");
    for (i, took) in &slow {
        println!("  request {i} took {took:?}");
    }
    for rt in [client, server] {
        if let Err(e) = rt.shutdown(Duration::from_secs(1)) {
            eprintln!("shutdown: {e}");
        }
    }
}
