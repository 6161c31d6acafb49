//! The runtime end to end: submitting work from threads and shards, groups,
//! panics, shutdown.

mod common;

use common::runtime;
use sampan_fiber::{
    FiberError, FiberGroup, GroupState, Signal, TaskClass, shard_id, sleep, stopping,
};
use std::time::Duration;

#[test]
fn submit_from_plain_threads_gets_answers() {
    let rt = runtime(2);
    let handle = rt.handle();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let handle = handle.clone();
            std::thread::spawn(move || {
                (0..50u64)
                    .map(|i| {
                        let shard = handle.shard(((t + i) % 2) as usize).expect("shard");
                        shard
                            .run_blocking(TaskClass::Latency, move || async move {
                                (shard_id().expect("on a shard"), t * 1000 + i)
                            })
                            .expect("answer")
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (t, th) in threads.into_iter().enumerate() {
        let answers = th.join().expect("thread");
        for (i, (on, v)) in answers.into_iter().enumerate() {
            assert_eq!(on, (t + i) % 2, "ran on the shard asked for");
            assert_eq!(v, (t * 1000 + i) as u64);
        }
    }
    let report = rt.shutdown(Duration::from_secs(1)).expect("clean stop");
    assert_eq!(report.fibers_cancelled(), 0);
}

#[test]
fn cross_shard_calls_from_a_fiber() {
    let rt = runtime(3);
    let handle = rt.handle();
    let seen = rt
        .shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || async move {
            let mut seen = Vec::new();
            for target in [1usize, 2, 1, 0] {
                let on = handle
                    .shard(target)
                    .expect("shard")
                    .run(TaskClass::Latency, || async { shard_id() })
                    .await
                    .expect("answer");
                seen.push(on);
            }
            seen
        })
        .expect("answer");
    assert_eq!(seen, vec![Some(1), Some(2), Some(1), Some(0)]);
}

#[test]
fn many_shards_pass_a_token_around_a_ring() {
    let rt = runtime(6);
    let handle = rt.handle();
    // Each hop runs on the next shard and adds its id: 10 laps of 6 shards.
    fn hop(
        handle: sampan_fiber::RuntimeHandle,
        left: usize,
        acc: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = usize>>> {
        Box::pin(async move {
            let me = shard_id().expect("on a shard");
            if left == 0 {
                return acc;
            }
            let next = handle.shard((me + 1) % handle.shards()).expect("shard");
            let h = handle.clone();
            next.run(TaskClass::Latency, move || hop(h, left - 1, acc + me))
                .await
                .expect("hop")
        })
    }
    let h = handle.clone();
    let total = handle
        .shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || hop(h, 60, 0))
        .expect("ring");
    assert_eq!(total, 10 * (1 + 2 + 3 + 4 + 5));
}

#[test]
fn a_panicking_fiber_fails_only_its_group() {
    let rt = runtime(1);
    let shard = rt.shard(0).expect("shard");
    let (state_a, sibling, b) = shard
        .run_blocking(TaskClass::Latency, || async {
            let a = FiberGroup::new("group-a").expect("group");
            let b = FiberGroup::new("group-b").expect("group");
            let never = Signal::new();
            let w = never.wait();
            let sibling = a
                .spawn(TaskClass::Latency, "waits", w)
                .expect("spawn");
            let boom = a
                .spawn(TaskClass::Latency, "boom", async {
                    sleep(Duration::from_millis(1)).await;
                    panic!("deliberate test panic");
                })
                .expect("spawn");
            let survivor = b
                .spawn(TaskClass::Latency, "works", async {
                    sleep(Duration::from_millis(5)).await;
                    42
                })
                .expect("spawn");
            let boom = boom.join().await;
            assert!(
                matches!(&boom, Err(FiberError::Panicked { message, .. }) if message.contains("deliberate")),
                "{boom:?}"
            );
            a.join().await;
            let sibling = sibling.join().await;
            drop(never);
            let again = a.spawn(TaskClass::Latency, "late", async {});
            assert!(matches!(again, Err(FiberError::GroupClosed { .. })));
            (a.state(), sibling, survivor.join().await)
        })
        .expect("shard survives");
    assert!(matches!(state_a, GroupState::Failed { ref fiber, .. } if fiber == "boom"));
    assert!(
        matches!(sibling, Err(FiberError::Cancelled { .. })),
        "{sibling:?}"
    );
    assert_eq!(b.expect("other group unharmed"), 42);
    // The shard still answers, and a panic in a free fiber hurts nobody else.
    let after = shard
        .run_blocking(TaskClass::Latency, || async { panic!("free fiber panic") })
        .expect_err("the panic is reported");
    assert!(matches!(after, FiberError::Panicked { .. }));
    let ok = shard.run_blocking(TaskClass::Latency, || async { 7 });
    assert_eq!(ok.expect("still serving"), 7);
}

#[test]
fn detached_fibers_run_are_cancelled_with_their_group_and_a_panic_fails_it() {
    let rt = runtime(1);
    let shard = rt.shard(0).expect("shard");
    let (ran, state) = shard
        .run_blocking(TaskClass::Latency, || async {
            let g = FiberGroup::new("detached").expect("group");
            let ran = std::rc::Rc::new(std::cell::Cell::new(0));
            for _ in 0..3 {
                let ran = ran.clone();
                g.spawn_detached(TaskClass::Latency, "counts", async move {
                    ran.set(ran.get() + 1);
                })
                .expect("spawn");
            }
            g.spawn_detached(TaskClass::Latency, "sleeper", async {
                sleep(Duration::from_secs(3600)).await;
            })
            .expect("spawn");
            sleep(Duration::from_millis(1)).await;
            assert_eq!(g.fiber_count(), 1, "the three that ended left the registry");
            g.spawn_detached(TaskClass::Latency, "boom", async {
                panic!("deliberate detached panic");
            })
            .expect("spawn");
            g.join().await;
            (ran.get(), g.state())
        })
        .expect("shard survives");
    assert_eq!(ran, 3);
    assert!(
        matches!(&state, GroupState::Failed { fiber, message } if fiber == "boom" && message.contains("deliberate")),
        "{state:?}"
    );
}

#[test]
fn cancel_and_join_a_group() {
    let rt = runtime(1);
    let results = rt
        .shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, || async {
            let g = FiberGroup::new("doomed").expect("group");
            let handles: Vec<_> = (0..5)
                .map(|i| {
                    g.spawn(TaskClass::Throughput, "sleeper", async move {
                        sleep(Duration::from_secs(3600)).await;
                        i
                    })
                    .expect("spawn")
                })
                .collect();
            sleep(Duration::from_millis(1)).await;
            assert_eq!(g.fiber_count(), 5);
            g.cancel();
            g.join().await;
            assert_eq!(g.fiber_count(), 0);
            assert!(matches!(g.state(), GroupState::Cancelled(_)));
            let mut out = Vec::new();
            for h in handles {
                out.push(h.join().await);
            }
            out
        })
        .expect("answer");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(FiberError::Cancelled { .. })))
    );
}

#[test]
fn shutdown_cancels_fibers_still_waiting_and_refuses_new_work() {
    let rt = runtime(2);
    let handle = rt.handle();
    for shard in 0..2 {
        handle
            .shard(shard)
            .expect("shard")
            .run_blocking(TaskClass::Latency, || async {
                let g = FiberGroup::new("stuck").expect("group");
                for _ in 0..3 {
                    let s = Signal::new();
                    let w = s.wait();
                    g.spawn(TaskClass::Latency, "waiter", async move {
                        w.await;
                        drop(s);
                    })
                    .expect("spawn");
                }
                // One fiber that stops by itself when asked.
                g.spawn(TaskClass::Background, "polite", stopping())
                    .expect("spawn");
            })
            .expect("setup");
    }
    let report = rt.shutdown(Duration::from_millis(50)).expect("stops");
    assert_eq!(report.shards.len(), 2);
    for s in &report.shards {
        assert_eq!(
            s.fibers_cancelled, 3,
            "the polite fiber left on its own: {s:?}"
        );
    }
    let late = handle
        .shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, || async {});
    assert!(
        matches!(late, Err(FiberError::ShuttingDown { shard: 0 })),
        "{late:?}"
    );
}

#[test]
fn blocking_call_on_a_shard_is_refused_not_deadlocked() {
    let rt = runtime(1);
    let handle = rt.handle();
    let err = rt
        .shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || async move {
            handle
                .shard(0)
                .expect("shard")
                .run_blocking(TaskClass::Latency, || async {})
        })
        .expect("outer call answers");
    assert!(matches!(err, Err(FiberError::BlockingOnShard { shard: 0 })));
}

#[test]
fn bad_settings_are_refused_with_the_field_named() {
    let err = sampan_fiber::Runtime::builder()
        .shards(0)
        .build()
        .expect_err("0 shards");
    assert!(err.to_string().contains("shards"), "{err}");
    let err = sampan_fiber::Runtime::builder()
        .shards(1)
        .io_memory_bytes(4096)
        .build()
        .expect_err("tiny io memory");
    assert!(err.to_string().contains("io_memory_bytes"), "{err}");
    let no_shard = rt_free_spawn();
    assert!(matches!(no_shard, Err(FiberError::NotOnShard)));
}

fn rt_free_spawn() -> Result<(), FiberError> {
    FiberGroup::new("off-runtime").map(|_| ())
}

/// A drain wakes the fibers watching `draining` (client-serving ones)
/// without starting a stop (what a node's groups watch), and `busy` counts
/// the requests still being served.
#[test]
fn a_drain_wakes_draining_fibers_only_and_busy_counts_requests() {
    let rt = runtime(1);
    let shard = rt.shard(0).expect("shard");
    let seen = shard
        .run_blocking(TaskClass::Latency, || async {
            let serving = sampan_fiber::Busy::begin();
            let before = (sampan_fiber::busy(), sampan_fiber::drain_requested());
            let client = sampan_fiber::spawn(TaskClass::Latency, "client", async {
                sampan_fiber::draining().await;
            })
            .expect("spawn");
            sampan_fiber::begin_drain();
            client
                .join()
                .await
                .expect("the client fiber ends on the drain");
            drop(serving);
            (
                before,
                sampan_fiber::drain_requested(),
                // What a node's groups watch has not begun.
                sampan_fiber::shutdown_requested(),
                sampan_fiber::busy(),
            )
        })
        .expect("answer");
    assert_eq!(seen, ((1, false), true, false, 0));
}
