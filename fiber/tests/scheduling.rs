//! Scheduling: a busy fiber must not hold back timers, messages from other
//! threads, or another group's latency-sensitive fibers. Each test makes the
//! busy side run until the other side has been served (bounded by a cap), so
//! it fails if the runtime does not preempt, and prints the delays it saw.

mod common;

use common::runtime;
use sampan_fiber::{FiberGroup, TaskClass, sleep, yield_if_needed};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a busy fiber spins at most before giving up (then the test fails).
const BUSY_CAP: Duration = Duration::from_secs(5);

/// The most a 1-2 ms wait may be held up by a busy fiber. With the runtime's
/// 1 ms preemption timer it measured ~3 ms here; with glommio's default
/// (100 ms) it measured 200-300 ms, so this bound tells the two apart while
/// leaving room for a loaded 2-core CI machine that deschedules the thread.
const DELAY_MAX: Duration = Duration::from_millis(100);

/// The busy tests spin a core each; run them one at a time so that they do
/// not measure each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Spins in slices of CPU work, yielding only when the preemption timer says
/// so, until `until` is set or the cap passes. Returns whether it was stopped
/// by `until` (true) or hit the cap (false).
async fn busy_until(until: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < BUSY_CAP {
        if until() {
            return true;
        }
        for i in 0..10_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
        yield_if_needed().await;
    }
    false
}

#[test]
fn busy_fiber_does_not_hold_back_a_timer_or_a_cross_thread_message() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime(1);
    let shard = rt.shard(0).expect("shard");
    let message_served = Arc::new(AtomicBool::new(false));
    let served = message_served.clone();
    let started = Arc::new(AtomicBool::new(false));
    let started2 = started.clone();
    let outcome = std::thread::spawn({
        let shard = shard.clone();
        move || {
            shard.run_blocking(TaskClass::Latency, move || async move {
                let timer_fired = Rc::new(Cell::new(None::<Duration>));
                let fired = timer_fired.clone();
                let timer = sampan_fiber::spawn(TaskClass::Latency, "timer", async move {
                    let asked = Instant::now();
                    sleep(Duration::from_millis(2)).await;
                    fired.set(Some(asked.elapsed()));
                })
                .expect("spawn");
                started2.store(true, Ordering::Release);
                let stopped_by_others =
                    busy_until(|| timer_fired.get().is_some() && served.load(Ordering::Acquire))
                        .await;
                timer.join().await.expect("timer fiber");
                (stopped_by_others, timer_fired.get())
            })
        }
    });
    while !started.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    let sent = Instant::now();
    shard
        .run_blocking(TaskClass::Latency, || async {})
        .expect("message served");
    let message_rtt = sent.elapsed();
    message_served.store(true, Ordering::Release);
    let (stopped_by_others, timer) = outcome.join().expect("thread").expect("fiber");
    let timer = timer.expect("timer fired");
    eprintln!("2 ms timer fired after {timer:?}; cross-thread round trip {message_rtt:?}");
    assert!(
        stopped_by_others,
        "the busy fiber ran to its cap: the timer or the message waited for it"
    );
    assert!(timer < DELAY_MAX, "timer held back {timer:?}");
    assert!(message_rtt < DELAY_MAX, "message held back {message_rtt:?}");
}

#[test]
fn flooding_the_throughput_queue_does_not_starve_another_groups_latency_fiber() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime(1);
    let (completed, worst) = rt
        .shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, || async {
            let done = Rc::new(Cell::new(false));
            let flood = FiberGroup::new("flooding-group").expect("group");
            let floods: Vec<_> = (0..4)
                .map(|_| {
                    let done = done.clone();
                    flood
                        .spawn(TaskClass::Throughput, "apply", async move {
                            busy_until(|| done.get()).await
                        })
                        .expect("spawn")
                })
                .collect();
            let quiet = FiberGroup::new("quiet-group").expect("group");
            let ticks = quiet
                .spawn(TaskClass::Latency, "raft-loop", async move {
                    let mut worst = Duration::ZERO;
                    for _ in 0..20 {
                        let asked = Instant::now();
                        sleep(Duration::from_millis(1)).await;
                        worst = worst.max(asked.elapsed());
                    }
                    worst
                })
                .expect("spawn");
            let worst = ticks.join().await.expect("latency fiber");
            done.set(true);
            let mut all_stopped_by_flag = true;
            for f in floods {
                all_stopped_by_flag &= f.join().await.expect("flood fiber");
            }
            (all_stopped_by_flag, worst)
        })
        .expect("answer");
    eprintln!("worst 1 ms sleep under a 4-fiber flood: {worst:?}");
    assert!(
        completed,
        "the flood hit its cap before the latency fiber finished 20 ticks"
    );
    assert!(worst < DELAY_MAX, "latency fiber held back {worst:?}");
}

#[test]
fn ticker_reports_missed_periods_and_timeout_fires() {
    let rt = runtime(1);
    let (first, after_busy, timed_out) = rt
        .shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, || async {
            let mut t = sampan_fiber::Ticker::new(Duration::from_millis(2)).expect("ticker");
            let first = t.tick().await;
            // Block the shard thread for 5 periods on purpose.
            std::thread::sleep(Duration::from_millis(10));
            let after_busy = t.tick().await;
            let timed_out =
                sampan_fiber::timeout(Duration::from_millis(1), sleep(Duration::from_secs(60)))
                    .await;
            (first, after_busy, timed_out)
        })
        .expect("answer");
    // A loaded machine may make the first tick late too; what matters is
    // that 10 ms of blocking (5 periods) is reported as several periods at
    // once, not replayed as a burst of single ticks.
    assert!(first >= 1);
    assert!(
        after_busy >= 3,
        "missed periods are counted, got {after_busy}"
    );
    assert!(matches!(
        timed_out,
        Err(sampan_fiber::FiberError::Timeout(_))
    ));
}

/// glommio 0.9.0 parked with runnable tasks when its preemption timer had
/// already fired as a scheduling round began (third_party/README.md). With a
/// 1 ns timer that is every round: without the patch this hangs.
#[test]
fn a_tiny_preempt_timer_never_parks_with_runnable_work() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = sampan_fiber::Runtime::builder()
        .shards(1)
        .io_memory_bytes(sampan_fiber::IO_MEMORY_MIN_BYTES)
        .preempt_timer(Duration::from_nanos(1))
        .build()
        .expect("runtime");
    let shard = rt.shard(0).expect("shard");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        for i in 0..1_000u32 {
            let got = shard
                .run_blocking(TaskClass::Latency, move || async move {
                    let inner =
                        sampan_fiber::spawn(TaskClass::Throughput, "inner", async move { i + 1 })
                            .expect("spawn");
                    inner.join().await.expect("inner fiber")
                })
                .expect("answer");
            assert_eq!(got, i + 1);
        }
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("1,000 round trips with runnable work never stall for a minute");
    worker.join().expect("worker");
}
