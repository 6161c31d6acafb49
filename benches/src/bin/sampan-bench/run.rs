//! `sampan-bench run`: opens the target, preloads keys if the workload
//! reads them, runs the load, samples the server processes at both ends of
//! the measured window, and writes the result, its chart and the table.

use crate::args::{Protocol, RunArgs};
use crate::driver::{self, Endpoint, Lane, Plan};
use crate::error::{BenchError, Result};
use crate::procstat::{self, Sample, Watched};
use crate::record::{Outcome, Recorder, Second, Series, Window};
use crate::report::{self, Machine, RunResult, TargetInfo};
use crate::target::Target;
use crate::workload::{Generator, KeySpace};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Time between the last connection made and the first request, so every
/// thread is ready when the run begins.
const START_DELAY: Duration = Duration::from_millis(50);

/// Runs the benchmark `args` describes.
pub fn run(mut args: RunArgs) -> Result<()> {
    args.validate()?;
    args.threads = Some(args.load_threads());
    let started_at = now_utc();
    let out = match &args.out {
        Some(p) => p.clone(),
        None => PathBuf::from(format!(
            "bench-{}-{}.json",
            args.workload.name(),
            started_at.1
        )),
    };
    let svg = out.with_extension("svg");
    let quiet = args.quiet;
    let log = move |m: &str| {
        if !quiet {
            eprintln!("sampan-bench: {m}");
        }
    };
    let mut target = Target::open(&args, &log)?;
    if let Some(c) = &target.cluster
        && on_tmpfs(&c.dir)
    {
        log(&format!(
            "warning: {} is on tmpfs: no bytes reach a disk, fsync costs nothing \
             (give --data-dir on a real disk)",
            c.dir.display()
        ));
    }
    let result = measure(&args, &target, &log);
    if let Some(mut c) = target.cluster.take() {
        for p in c.stop() {
            eprintln!("sampan-bench: {p}");
        }
    }
    let Measured {
        outcome,
        series,
        secs,
        spent,
        client,
        device,
    } = result?;
    let label = args.label.clone().unwrap_or_else(|| {
        out.file_stem()
            .map_or_else(|| "run".into(), |s| s.to_string_lossy().into_owned())
    });
    let r = RunResult {
        format: report::FORMAT,
        label,
        command_line: command_line(),
        git_commit: report::git_commit(),
        machine: Machine::here(),
        started_at: started_at.0,
        options: args.clone(),
        target: TargetInfo {
            kind: target.kind,
            addresses: target.describe(args.protocol == Protocol::Native),
        },
        load: if args.rate.is_some() {
            "open-loop"
        } else {
            "closed-loop"
        }
        .into(),
        totals: report::totals(&outcome, secs),
        latency_us: report::Percentiles::of(&outcome.hist),
        series: report::seconds(&series, secs),
        cdf: report::cdf(&outcome.hist),
        processes: spent,
        client,
        device,
        error_samples: outcome.error_samples.clone(),
    };
    report::save(&r, &out)?;
    crate::plot::draw(&r, &svg)?;
    println!("{}", report::table(&r));
    println!("result: {}\nchart:  {}", out.display(), svg.display());
    Ok(())
}

/// What a run measured, before it is reported.
struct Measured {
    outcome: Outcome,
    series: Series,
    /// The window's length, seconds.
    secs: f64,
    /// The server processes' spending.
    spent: Vec<procstat::Spent>,
    /// The benchmark's own.
    client: procstat::Spent,
    /// The data directory's device.
    device: Option<procstat::DeviceSpent>,
}

/// Preloads, runs the load and samples the processes.
fn measure(args: &RunArgs, target: &Target, log: &dyn Fn(&str)) -> Result<Measured> {
    let keys = Arc::new(KeySpace::new(
        args.keys,
        args.groups,
        args.distribution,
        args.zipf_theta,
        args.seed,
    ));
    for line in target.describe(args.protocol == Protocol::Native) {
        log(&line);
    }
    let native = if args.protocol == Protocol::Native {
        Some(crate::native::connect(target)?)
    } else {
        None
    };
    if Generator::needs_preload(args.workload) {
        let bar = bar(args.quiet, args.keys, "preloading keys");
        match &native {
            Some(client) => crate::native::preload(client, args, &keys, &bar)?,
            None => {
                let endpoints: Vec<Endpoint> = (0..args.groups)
                    .map(|db| Endpoint {
                        addr: target.db_addrs[db as usize][0],
                        db,
                        password: target.password.clone(),
                    })
                    .collect();
                let make =
                    |db| Generator::new(args.workload, 0.0, args.value_size, db, args.seed, 0);
                driver::preload(&endpoints, &keys, &make, &bar)?;
            }
        }
        bar.finish_and_clear();
        log(&format!(
            "preloaded {} keys",
            report::fmt_count(args.keys as f64)
        ));
    }

    let (tx, rx) = channel::<Second>();
    let budget = args.requests.map(|n| Arc::new(AtomicI64::new(n as i64)));
    let answered = Arc::new(AtomicU64::new(0));
    let mut handles: Vec<JoinHandle<Result<Outcome>>> = Vec::new();
    let window;
    match native {
        None => {
            let mut conns = Vec::with_capacity(args.clients);
            for i in 0..args.clients {
                let db = i as u64 % args.groups;
                let addrs = &target.db_addrs[db as usize];
                let endpoint = Endpoint {
                    addr: addrs[(i / args.groups as usize) % addrs.len()],
                    db,
                    password: target.password.clone(),
                };
                let conn = endpoint.connect().map_err(|e| {
                    BenchError::server(endpoint.addr, format!("connection {i}: {e}"))
                })?;
                conns.push((endpoint, conn));
            }
            let t0 = Instant::now() + START_DELAY;
            window = window_of(args, t0, &answered);
            let threads = args.load_threads();
            let mut per_thread: Vec<Vec<Lane>> = (0..threads).map(|_| Vec::new()).collect();
            let conns_n = args.clients as f64;
            for (i, (endpoint, conn)) in conns.into_iter().enumerate() {
                // Open loop: this connection's share of the rate, its phase
                // staggered so the requests are evenly spaced in all.
                let pace = args.rate.map(|r| {
                    (
                        t0 + Duration::from_secs_f64(i as f64 / r),
                        Duration::from_secs_f64(conns_n / r),
                    )
                });
                let generator = Generator::new(
                    args.workload,
                    args.read_ratio,
                    args.value_size,
                    endpoint.db,
                    args.seed,
                    i as u64,
                );
                per_thread[i % threads].push(Lane::new(endpoint, conn, generator, pace));
            }
            let plan = Plan {
                pipeline: args.pipeline,
                budget: budget.clone(),
            };
            for (t, lanes) in per_thread.into_iter().enumerate() {
                let rec = Recorder::new(window.clone(), tx.clone());
                let (keys, plan) = (keys.clone(), plan.clone());
                let h = std::thread::Builder::new()
                    .name(format!("load-{t}"))
                    .spawn(move || {
                        // Wait for the common start.
                        std::thread::sleep(t0.saturating_duration_since(Instant::now()));
                        Ok(driver::drive(lanes, keys, plan, rec))
                    })
                    .map_err(BenchError::io("starting a load thread"))?;
                handles.push(h);
            }
        }
        Some(client) => {
            let t0 = Instant::now();
            window = window_of(args, t0, &answered);
            let rec = Recorder::new(window.clone(), tx.clone());
            let (args2, keys2, window2, budget2) =
                (args.clone(), keys.clone(), window.clone(), budget.clone());
            let h = std::thread::Builder::new()
                .name("native".into())
                .spawn(move || {
                    let out = crate::native::drive(&client, &args2, keys2, window2, budget2, rec);
                    client.close();
                    out
                })
                .map_err(BenchError::io("starting the native client's thread"))?;
            handles.push(h);
        }
    }
    drop(tx);
    collect(args, target, &window, handles, rx)
}

/// The measured window of a run starting at `t0`.
fn window_of(args: &RunArgs, t0: Instant, answered: &Arc<AtomicU64>) -> Window {
    let start = t0 + Duration::from_secs(args.warmup_secs);
    Window {
        start,
        end: args
            .requests
            .is_none()
            .then(|| start + Duration::from_secs(args.duration_secs)),
        answered: answered.clone(),
    }
}

/// Follows the run from the main thread: merges the seconds, moves the
/// progress bar, samples the processes when the window opens and closes,
/// and gathers the threads' outcomes.
fn collect(
    args: &RunArgs,
    target: &Target,
    window: &Window,
    handles: Vec<JoinHandle<Result<Outcome>>>,
    rx: Receiver<Second>,
) -> Result<Measured> {
    let me = Watched {
        name: "sampan-bench (client)".into(),
        pid: std::process::id(),
    };
    let mut watched = target.processes.clone();
    watched.push(me);
    let disk = args
        .disk_of
        .clone()
        .or_else(|| target.cluster.as_ref().map(|c| c.dir.clone()));
    let device = disk.as_deref().and_then(procstat::device_of);
    let sample_all = |w: &[Watched]| -> (Vec<Sample>, Option<u64>) {
        (
            w.iter().map(|p| procstat::sample(p.pid)).collect(),
            device.as_ref().and_then(procstat::Device::written),
        )
    };
    let total = args
        .requests
        .unwrap_or(args.warmup_secs + args.duration_secs);
    let bar = bar(args.quiet, total, "running");
    let mut series = Series::default();
    type Samples = (Vec<Sample>, Option<u64>);
    let mut at_start: Option<(Instant, Samples, u64)> = None;
    let mut at_end: Option<(Instant, Samples)> = None;
    let mut last = (Instant::now(), 0u64);
    let mut rate = 0.0;
    loop {
        let now = Instant::now();
        let next_edge = if at_start.is_none() {
            Some(window.start)
        } else if at_end.is_none() {
            window.end
        } else {
            None
        };
        let wait = next_edge
            .map_or(Duration::from_millis(200), |e| {
                e.saturating_duration_since(now)
            })
            .min(Duration::from_millis(200));
        series.collect(&rx, wait);
        let now = Instant::now();
        if at_start.is_none() && now >= window.start {
            at_start = Some((
                now,
                sample_all(&watched),
                window.answered.load(Ordering::Relaxed),
            ));
        }
        if at_end.is_none() && window.end.is_some_and(|e| now >= e) {
            at_end = Some((now, sample_all(&watched)));
        }
        let answered = window.answered.load(Ordering::Relaxed);
        if now.duration_since(last.0) >= Duration::from_secs(1) {
            rate = (answered - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            last = (now, answered);
        }
        let phase = if now < window.start {
            "warm-up"
        } else {
            "measuring"
        };
        match (args.requests, &at_start) {
            (Some(_), Some((_, _, base))) => bar.set_position(answered.saturating_sub(*base)),
            (Some(_), None) => {}
            (None, _) => bar.set_position(
                now.saturating_duration_since(window.start - Duration::from_secs(args.warmup_secs))
                    .as_secs(),
            ),
        }
        bar.set_message(format!("{phase}: {} ops/s", report::fmt_count(rate)));
        if handles.iter().all(JoinHandle::is_finished) {
            break;
        }
    }
    let finished = Instant::now();
    bar.finish_and_clear();
    if crate::interrupt::stopped() {
        for h in handles {
            let _ = h.join();
        }
        return Err(BenchError::Interrupted);
    }
    let mut outcome = Outcome::new();
    for h in handles {
        let o = h
            .join()
            .map_err(|_| BenchError::Cluster("a load thread panicked".into()))??;
        outcome.merge(o);
    }
    while let Ok(s) = rx.recv() {
        series.add(s);
    }
    let (t_start, s_start, _) = at_start.unwrap_or_else(|| (window.start, sample_all(&watched), 0));
    let (t_end, s_end) = at_end.unwrap_or_else(|| (finished, sample_all(&watched)));
    // The window's length: its planned span for a timed run (the samples
    // may be a few ms late), else from its start to the last reply.
    let secs = match window.end {
        Some(e) => (e - window.start).as_secs_f64(),
        None => (t_end - t_start).as_secs_f64(),
    };
    let ops = outcome.hist.len();
    let mut spent: Vec<procstat::Spent> = watched
        .iter()
        .zip(s_start.0.iter().zip(s_end.0.iter()))
        .map(|(w, (a, b))| procstat::spent(w, *a, *b, ops))
        .collect();
    let client = spent
        .pop()
        .ok_or_else(|| BenchError::Cluster("no client sample".into()))?;
    let device = device.map(|d| procstat::device_spent(&d, s_start.1, s_end.1, ops));
    Ok(Measured {
        outcome,
        series,
        secs,
        spent,
        client,
        device,
    })
}

/// A progress bar on stderr (hidden with `--quiet`).
fn bar(quiet: bool, len: u64, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_prefix(what.to_string());
    bar
}

/// The command line, with a password hidden.
fn command_line() -> String {
    let mut out = Vec::new();
    let mut hide = false;
    for a in std::env::args() {
        if hide {
            out.push("***".to_string());
            hide = false;
            continue;
        }
        if a == "--password" {
            hide = true;
        }
        if a.starts_with("--password=") {
            out.push("--password=***".into());
            continue;
        }
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$\\;&|<>*?".contains(c)) {
            out.push(format!("'{}'", a.replace('\'', "'\\''")));
        } else {
            out.push(a);
        }
    }
    out.join(" ")
}

/// Now in UTC: RFC 3339, and `YYYYMMDD-HHMMSS` for file names.
fn now_utc() -> (String, String) {
    let t = time::OffsetDateTime::now_utc();
    let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
    let (h, mi, s) = (t.hour(), t.minute(), t.second());
    (
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
        format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}"),
    )
}

/// Whether `p` sits on tmpfs, where no bytes reach a disk.
pub fn on_tmpfs(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statfs is a valid value to be overwritten.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statfs to fill, both live.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type == libc::TMPFS_MAGIC
}
