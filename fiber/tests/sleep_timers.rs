//! The reactor's timers. Sampan's glommio keeps its preemption timer and
//! the timer that ends a sleep armed across turns instead of re-arming
//! both on every turn (`third_party/README.md`). These tests attack the
//! two ways that can go wrong: a shard parked with a kept timer for a far
//! deadline must still wake for a nearer one asked later, and an idle
//! shard must not keep waking itself to re-arm timers.

mod common;

use common::runtime;
use sampan_fiber::{TaskClass, sleep};
use std::time::{Duration, Instant};

/// The far timer the shard parks for.
const FAR: Duration = Duration::from_secs(60);

/// A shard asleep until a timer a minute away wakes for a 5 ms timer
/// asked after it parked. A sleep timer kept for the far deadline would
/// hold every round back by the whole minute.
#[test]
fn a_parked_shard_wakes_for_a_timer_nearer_than_the_one_it_sleeps_for() {
    let rt = runtime(1);
    let shard = rt.shard(0).expect("shard");
    shard
        .run_blocking(TaskClass::Latency, || async {
            sampan_fiber::spawn_detached(TaskClass::Latency, "far", sleep(FAR)).expect("spawn");
        })
        .expect("run");
    let mut waits = Vec::new();
    for round in 0..20 {
        // Gives the shard time to park, armed for the far timer, so the
        // next request wakes it from that sleep.
        std::thread::sleep(Duration::from_millis(20));
        let asked = Instant::now();
        shard
            .run_blocking(TaskClass::Latency, || async {
                sleep(Duration::from_millis(5)).await;
            })
            .expect("run");
        let waited = asked.elapsed();
        assert!(
            waited < FAR / 2,
            "round {round}: a 5 ms sleep on a shard parked for a {FAR:?} timer took {waited:?}"
        );
        waits.push(waited);
    }
    eprintln!("5 ms sleeps on a parked shard took {waits:?}");
}

/// The context switches of thread `tid` of this process so far.
fn switches(tid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
        .expect("the shard thread's /proc status");
    status
        .lines()
        .filter(|l| {
            l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary_ctxt_switches")
        })
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// After a burst of short timers (which arm, keep and re-arm both kinds of
/// timer), an idle shard goes quiet: a preemption timer left armed while
/// parked, re-armed at every wake, would wake it about once per preemption
/// slice (1 ms) for ever, about a thousand times a second.
#[test]
fn an_idle_shard_stops_waking_itself() {
    let rt = runtime(1);
    let shard = rt.shard(0).expect("shard");
    let tid = shard
        .run_blocking(TaskClass::Latency, || async {
            for _ in 0..500 {
                sleep(Duration::from_micros(200)).await;
            }
            let me = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
            me.file_name()
                .expect("a thread id")
                .to_string_lossy()
                .into_owned()
        })
        .expect("run");
    // Lets a kept timer from the burst fire (at most a slice and the
    // early margin of a sleep timer), then counts for a second.
    std::thread::sleep(Duration::from_millis(100));
    let before = switches(&tid);
    std::thread::sleep(Duration::from_secs(1));
    let woke = switches(&tid) - before;
    eprintln!("an idle shard switched {woke} times in 1 s");
    assert!(
        woke < 100,
        "an idle shard switched {woke} times in 1 s: it keeps waking itself"
    );
}
