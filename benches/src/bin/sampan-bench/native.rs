//! The native-client load (`--protocol native`): one `BlockingClient`
//! (one shard) runs `--in-flight` fibers, each with one request at a time
//! (put or get) against the service ports; database `d`'s keys go to
//! group `d + 1`. Open loop as with the Redis protocol: each fiber's
//! requests are due on a fixed schedule and timed from when they were due.

use crate::args::RunArgs;
use crate::error::{BenchError, Result};
use crate::record::{Outcome, Recorder, Window};
use crate::target::Target;
use crate::workload::{Generator, KeySpace, key_name};
use bytes::Bytes;
use indicatif::ProgressBar;
use sampan::client::{BlockingClient, ClientConfig};
use sampan_fiber::TaskClass;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// Keys per `batch_put` while preloading.
const PRELOAD_BATCH: usize = 500;

/// The native client of `target`'s service ports.
pub fn connect(target: &Target) -> Result<BlockingClient> {
    let mut cfg = ClientConfig::new(target.service_addrs.clone()).cluster_id(target.cluster_id);
    if let Some(p) = &target.password {
        cfg = cfg
            .credential("default", p)
            .map_err(|e| BenchError::usage("--password", e.to_string()))?;
    }
    BlockingClient::connect(cfg).map_err(|e| BenchError::Native(e.to_string()))
}

/// The key of id `id`, as the Redis-protocol workloads name it.
fn key(args: &RunArgs, id: u64) -> Bytes {
    let mut k = Vec::with_capacity(24);
    key_name(args.workload, id, &mut k);
    Bytes::from(k)
}

/// Writes every key once (batches of [`PRELOAD_BATCH`]).
pub fn preload(
    client: &BlockingClient,
    args: &RunArgs,
    keys: &KeySpace,
    bar: &ProgressBar,
) -> Result<()> {
    let value = crate::workload::value(args.value_size, args.seed);
    for db in 0..args.groups {
        for chunk in keys.ids(db).chunks(PRELOAD_BATCH) {
            if crate::interrupt::stopped() {
                return Err(BenchError::Interrupted);
            }
            let pairs = chunk
                .iter()
                .map(|id| (key(args, *id), value.clone()))
                .collect();
            client
                .batch_put(db + 1, pairs, None)
                .map_err(|e| BenchError::Native(format!("preload of group {}: {e}", db + 1)))?;
            bar.inc(chunk.len() as u64);
        }
    }
    Ok(())
}

/// Runs the load on the client's shard until the window ends (or the
/// budget is spent); what it measured.
pub fn drive(
    client: &BlockingClient,
    args: &RunArgs,
    keys: Arc<KeySpace>,
    window: Window,
    budget: Option<Arc<AtomicI64>>,
    rec: Recorder,
) -> Result<Outcome> {
    let in_flight = args.in_flight;
    let groups = args.groups;
    let rate = args.rate;
    let args = args.clone();
    client
        .run(move |c| async move {
            let rec = Rc::new(RefCell::new(rec));
            let t0 = Instant::now();
            let mut fibers = Vec::with_capacity(in_flight);
            for f in 0..in_flight {
                let (c, rec, keys, window, budget) = (
                    c.clone(),
                    rec.clone(),
                    keys.clone(),
                    window.clone(),
                    budget.clone(),
                );
                let db = f as u64 % groups;
                let mut generator = Generator::new(
                    args.workload,
                    args.read_ratio,
                    args.value_size,
                    db,
                    args.seed,
                    f as u64,
                );
                let args = args.clone();
                // Open loop: this fiber's share of the rate, phases spread.
                let pace = rate.map(|r| {
                    let interval = Duration::from_secs_f64(in_flight as f64 / r);
                    (interval, t0 + Duration::from_secs_f64(f as f64 / r))
                });
                let spawned = sampan_fiber::spawn(TaskClass::Latency, "bench", async move {
                    let mut due = pace.map(|(_, first)| first);
                    loop {
                        let from = match (due.as_mut(), pace) {
                            (Some(d), Some((interval, _))) => {
                                let now = Instant::now();
                                if *d > now {
                                    sampan_fiber::sleep(*d - now).await;
                                }
                                let from = *d;
                                *d += interval;
                                from
                            }
                            _ => Instant::now(),
                        };
                        if crate::interrupt::stopped() {
                            break;
                        }
                        if let Some(end) = window.end {
                            if from >= end {
                                break;
                            }
                            if let Some((interval, _)) = pace
                                && Instant::now() >= end
                            {
                                // Behind schedule when the window closed:
                                // what was due is counted, not sent.
                                let from = from.max(window.start);
                                let n = (end - from).as_secs_f64() / interval.as_secs_f64();
                                rec.borrow_mut().unsent(n.ceil() as u64);
                                break;
                            }
                        }
                        if let Some(b) = &budget
                            && from >= window.start
                            && b.fetch_sub(1, Ordering::Relaxed) <= 0
                        {
                            break;
                        }
                        let (id, read) = generator.next_native(&keys);
                        let k = key(&args, id);
                        let result = if read {
                            c.get(db + 1, k).await.map(|v| v.is_none())
                        } else {
                            c.put(db + 1, k, generator.value().clone())
                                .await
                                .map(|()| false)
                        };
                        let now = Instant::now();
                        match result {
                            Ok(miss) => rec.borrow_mut().ok(from, now, miss),
                            Err(e) => rec.borrow_mut().error(from, || e.to_string()),
                        }
                    }
                });
                match spawned {
                    Ok(h) => fibers.push(h),
                    Err(e) => return Err(BenchError::Native(format!("spawning a fiber: {e}"))),
                }
            }
            for f in fibers {
                let _ = f.join().await;
            }
            match Rc::try_unwrap(rec) {
                Ok(r) => Ok(r.into_inner().finish()),
                Err(_) => Err(BenchError::Native(
                    "a fiber still holds the recorder".into(),
                )),
            }
        })
        .map_err(|e| BenchError::Native(e.to_string()))?
}
