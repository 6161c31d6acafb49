//! `sampan-check run`: starts a cluster of real `sampan-node` processes,
//! each in its own network namespace with its data on a tmpfs of its own,
//! drives it with concurrent clients (redis-rs over the Redis port, and
//! the native client) while a nemesis applies faults on a seeded
//! schedule, heals them, waits for the cluster to converge, and then
//! checks:
//!
//! - the history is linearizable (`sampan-check verify`, run on it);
//! - every acknowledged append is in the final value, once, and no failed
//!   or never-sent token is;
//! - every node's replica of each group holds the same keys and values
//!   (a digest of a local scan on each node);
//! - every fault took effect (a partition that dropped no packet is a
//!   harness bug, and fails the run);
//! - no node exited on its own.
//!
//! It writes `history.jsonl`, `faults.jsonl` and `summary.json` to its
//! output directory, the nodes' logs beside them, and prints a summary.
//! Exit status: 0 all held, 1 a violation, 2 the harness could not run.

mod clients;
mod cluster;
mod final_checks;
mod nemesis;
mod net;
mod proxy;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use self::clients::{Recorder, Services, Target, Workload};
use self::cluster::{Cluster, ClusterSpec, GROUPS};
pub use self::nemesis::FaultKind;
use self::nemesis::{Nemesis, NemesisStatus};
use crate::history;

/// Why the harness could not do its work (not a finding about the
/// cluster).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The machine is not set up for a run.
    #[error("cannot set up the run: {0}")]
    Setup(String),
    /// A command the harness runs failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// How it failed.
        detail: String,
    },
    /// A file could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The cluster did not do what the harness waited for.
    #[error("the cluster {0}")]
    Cluster(String),
}

impl HarnessError {
    pub(crate) fn io(path: impl AsRef<Path>, source: std::io::Error) -> HarnessError {
        HarnessError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// The command line of `sampan-check run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Nodes in the cluster (3 or 5).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=5))]
    pub nodes: u64,
    /// Seconds of faults and load (the run then heals, converges and checks).
    #[arg(long, default_value_t = 60)]
    pub duration_secs: u64,
    /// Clients over the Redis port (redis-rs).
    #[arg(long, default_value_t = 4)]
    pub redis_clients: u32,
    /// Clients with the native client.
    #[arg(long, default_value_t = 2)]
    pub native_clients: u32,
    /// Stop the load once this many operations completed (runs without
    /// faults only; --duration-secs still bounds the run).
    #[arg(long)]
    pub ops: Option<u64>,
    /// Keys per family (registers, appends, counters) per group.
    #[arg(long, default_value_t = 3)]
    pub keys: u32,
    /// Seconds an append list lasts before the next one starts (a read
    /// returns the whole list: shorter keeps a long run's history smaller).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub append_period_secs: u64,
    /// Seconds a register or counter key is used before the next one is
    /// (bounds the unknown-outcome writes the checker must place per key).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub key_period_secs: u64,
    /// The schedule's seed (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Fault kinds to use, comma separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub faults: Vec<FaultKind>,
    /// No faults at all (a baseline run).
    #[arg(long)]
    pub no_faults: bool,
    /// Test a running system instead of starting a cluster: its Redis
    /// ports, comma separated (any Redis-protocol server works: a plain
    /// redis-server too).
    #[arg(long, value_delimiter = ',')]
    pub redis: Vec<std::net::SocketAddr>,
    /// With --redis: the servers' password, sent with AUTH on every
    /// connection (Redis's `requirepass`).
    #[arg(long)]
    pub redis_password: Option<String>,
    /// With --redis: the running cluster's service addresses, for the
    /// native clients (none: Redis clients only).
    #[arg(long, value_delimiter = ',')]
    pub services: Vec<std::net::SocketAddr>,
    /// With --services: the token of the nodes' `default` service
    /// credential, if they have one.
    #[arg(long)]
    pub service_token: Option<String>,
    /// With --redis: a shell command that applies a fault; pairs up, in
    /// order, with a --fault-heal (repeat both for several faults).
    #[arg(long)]
    pub fault_apply: Vec<String>,
    /// With --redis: the shell command that heals the matching
    /// --fault-apply.
    #[arg(long)]
    pub fault_heal: Vec<String>,
    /// Output directory (default: ./sampan-check-SEED).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The `sampan-node` binary (default: beside this one).
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// The `sampan-cli` binary (default: beside this one).
    #[arg(long)]
    pub cli_bin: Option<PathBuf>,
    /// Size of each node's tmpfs data directory, MiB.
    #[arg(long, default_value_t = 128)]
    pub disk_mib: u64,
    /// The nodes' election timeout, ms.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout_ms: u64,
    /// Time limit of the linearizability check, seconds.
    #[arg(long, default_value_t = 300)]
    pub verify_time_limit: u64,
    /// No progress bar (logs only).
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `sampan-check run`; returns the exit status. Ctrl-C or SIGTERM
/// removes the run's namespaces, mounts and processes before exiting.
pub fn cli(args: RunArgs) -> i32 {
    if let Err(e) = sampan_demos::signals::block_stop_signals() {
        eprintln!("sampan-check run: cannot block signals: {e}");
        return 2;
    }
    std::thread::spawn(|| {
        if let Ok(sig) = sampan_demos::signals::wait_for_stop_signal() {
            log::warn!("signal {sig}: removing the run's namespaces, mounts and nodes");
            net::remove_own_run();
            std::process::exit(128 + sig);
        }
    });
    match run(&args) {
        Ok(report) => {
            print_report(&report);
            if report.passed() { 0 } else { 1 }
        }
        Err(e) => {
            log::error!("{e}");
            eprintln!("sampan-check run: {e}");
            2
        }
    }
}

/// What a run found.
#[derive(Debug, serde::Serialize)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// The output directory.
    pub out: PathBuf,
    /// Operations by outcome.
    pub ok: u64,
    /// Operations that failed (did not happen).
    pub fail: u64,
    /// Operations with unknown outcome.
    pub info: u64,
    /// Faults by kind.
    pub faults: std::collections::BTreeMap<FaultKind, nemesis::KindTotals>,
    /// Enabled kinds that never took effect.
    pub kinds_without_effect: Vec<FaultKind>,
    /// Nodes that exited on their own.
    pub crashes: Vec<String>,
    /// Problems the final checks found (lost or doubled tokens, replicas
    /// that differ).
    pub final_problems: Vec<String>,
    /// Per group, the digest of every node's replica.
    pub digests: Vec<String>,
    /// The checker's exit status (0 linearizable, 1 not, 2 undecided).
    pub verify_status: i32,
    /// The checker's output.
    pub verify_output: String,
    /// Seconds the run took.
    pub seconds: f64,
}

impl RunReport {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.verify_status == 0
            && self.final_problems.is_empty()
            && self.crashes.is_empty()
            && self.kinds_without_effect.is_empty()
    }
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Runs the whole thing: cluster, clients, nemesis, convergence, checks.
pub fn run(args: &RunArgs) -> Result<RunReport, HarnessError> {
    let began = Instant::now();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("sampan-check-{seed}")));
    std::fs::create_dir_all(&out).map_err(|e| HarnessError::io(&out, e))?;
    let out = out.canonicalize().map_err(|e| HarnessError::io(&out, e))?;
    log::info!("sampan-check run: seed {seed}, output in {}", out.display());
    let kinds: Vec<FaultKind> = if args.no_faults {
        Vec::new()
    } else if !args.redis.is_empty() {
        if args.fault_apply.is_empty() {
            Vec::new()
        } else {
            vec![FaultKind::Command]
        }
    } else if args.faults.is_empty() {
        FaultKind::ALL.to_vec()
    } else {
        args.faults.clone()
    };

    let external = !args.redis.is_empty();
    if args.fault_apply.len() != args.fault_heal.len() {
        return Err(HarnessError::Setup(format!(
            "{} --fault-apply but {} --fault-heal: they pair up",
            args.fault_apply.len(),
            args.fault_heal.len()
        )));
    }
    if !external && (!args.services.is_empty() || !args.fault_apply.is_empty()) {
        return Err(HarnessError::Setup(
            "--services and --fault-apply/--fault-heal need --redis (a running system)".into(),
        ));
    }
    // The password of the nodes' Redis ports when the run starts them.
    let redis_password = format!("check-{seed:016x}");
    let mut cluster = if external {
        None
    } else {
        let cluster = Cluster::start(ClusterSpec {
            nodes: args.nodes,
            node_bin: args
                .node_bin
                .clone()
                .unwrap_or_else(|| sibling("sampan-node")),
            cli_bin: args
                .cli_bin
                .clone()
                .unwrap_or_else(|| sibling("sampan-cli")),
            root: out.join("cluster"),
            disk_mib: args.disk_mib,
            election_timeout_ms: args.election_timeout_ms,
            redis_password: redis_password.clone(),
        })?;
        wait_for_leaders(&cluster, Duration::from_secs(30))?;
        Some(cluster)
    };
    let (redis_addrs, services, redis_password) = match &cluster {
        Some(c) => (
            c.ids().into_iter().map(|n| c.redis(n)).collect(),
            c.native(),
            Some(redis_password),
        ),
        None => (
            args.redis.clone(),
            Services {
                addrs: args.services.clone(),
                token: args.service_token.clone(),
            },
            args.redis_password.clone(),
        ),
    };
    let native_clients = if services.addrs.is_empty() {
        0
    } else {
        args.native_clients
    };

    // The history's writer.
    let (tx, rx) = mpsc::channel::<history::Event>();
    let history_file = out.join("history.jsonl");
    let file =
        std::fs::File::create(&history_file).map_err(|e| HarnessError::io(&history_file, e))?;
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut w = history::Writer::new(std::io::BufWriter::new(file));
        for event in rx {
            w.write(&event)?;
        }
        w.finish()?;
        Ok(())
    });
    let start = Instant::now();
    let recorder = Arc::new(Recorder::new(tx, start));

    // The clients.
    let stop = Arc::new(AtomicBool::new(false));
    let workload = Workload {
        groups: GROUPS.iter().map(|g| g.0).collect(),
        keys: args.keys.max(1),
        start,
        append_period: Duration::from_secs(args.append_period_secs),
        key_period: Duration::from_secs(args.key_period_secs),
    };
    let mut threads = Vec::new();
    for i in 0..args.redis_clients + native_clients {
        let target = if i < args.redis_clients {
            Target::Redis(redis_addrs.clone(), redis_password.clone())
        } else {
            Target::Native(services.clone())
        };
        let (rec, w, stop) = (recorder.clone(), workload.clone(), stop.clone());
        let client_seed = seed ^ (u64::from(i) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        threads.push(std::thread::spawn(move || {
            clients::run_client(rec, w, client_seed, target, stop)
        }));
    }

    // Progress.
    let status = Arc::new(NemesisStatus::default());
    let progress = (!args.quiet).then(|| {
        spawn_progress(
            recorder.clone(),
            status.clone(),
            stop.clone(),
            Duration::from_secs(args.duration_secs),
        )
    });

    // The nemesis.
    let mut nemesis = Nemesis::new(
        kinds.clone(),
        seed,
        Arc::new(move || start.elapsed().as_nanos() as u64),
        status,
    );
    // Weak: the history writer ends once the last recorder is dropped.
    let counted = Arc::downgrade(&recorder);
    nemesis.count_served(Arc::new(move || {
        counted
            .upgrade()
            .map_or(0, |r| r.ok.load(std::sync::atomic::Ordering::Relaxed))
    }));
    let until = Instant::now() + Duration::from_secs(args.duration_secs);
    let commands: Vec<(String, String)> = args
        .fault_apply
        .iter()
        .cloned()
        .zip(args.fault_heal.iter().cloned())
        .collect();
    let faulted = match &mut cluster {
        Some(c) if !kinds.is_empty() => nemesis.run_until(c, until),
        None if !commands.is_empty() => nemesis.run_commands(&commands, until),
        _ => {
            let target = args.ops.unwrap_or(u64::MAX);
            while Instant::now() < until && recorder.completed() < target {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        }
    };
    // Heal whatever is left, then wait for convergence with the clients
    // still running, so that they see the cluster come back.
    let converged = faulted.and_then(|()| match &mut cluster {
        Some(c) => heal_all(c, &mut nemesis)
            .and_then(|()| final_checks::wait_converged(c, Duration::from_secs(60))),
        None => nemesis.heal_commands(&commands),
    });
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    if let Some(p) = progress {
        let _ = p.join();
    }
    // A last linearizable read of every key, in the history.
    let finals = converged.and_then(|()| {
        final_checks::final_reads(
            &redis_addrs,
            redis_password.as_deref(),
            &services,
            &recorder,
            &workload,
        )
    });
    let digests = finals.and_then(|reads| match &cluster {
        Some(c) => final_checks::replica_digests(c, &workload).map(|d| (reads, d)),
        None => Ok((reads, Vec::new())),
    });
    let (ok, fail, info) = (
        recorder.ok.load(Ordering::Relaxed),
        recorder.fail.load(Ordering::Relaxed),
        recorder.info.load(Ordering::Relaxed),
    );
    drop(recorder);
    writer
        .join()
        .map_err(|_| HarnessError::Setup("the history writer panicked".into()))?
        .map_err(|e| HarnessError::io(&history_file, e))?;

    let faults_file = out.join("faults.jsonl");
    let mut f =
        std::fs::File::create(&faults_file).map_err(|e| HarnessError::io(&faults_file, e))?;
    for r in &nemesis.records {
        let line = serde_json::to_string(r).unwrap_or_default();
        writeln!(f, "{line}").map_err(|e| HarnessError::io(&faults_file, e))?;
    }
    if let Some(c) = &mut cluster {
        c.stop();
    }
    let (reads, digests) = digests?;

    let mut final_problems = final_checks::token_problems(&history_file, &reads)?;
    let mut digest_lines = Vec::new();
    for (group, per_node) in &digests {
        let line: Vec<String> = per_node
            .iter()
            .map(|(n, d)| format!("node {n}: {d:016x}"))
            .collect();
        digest_lines.push(format!("group {group}: {}", line.join(", ")));
        if per_node.windows(2).any(|w| w[0].1 != w[1].1) {
            final_problems.push(format!(
                "group {group}: replicas differ: {}",
                line.join(", ")
            ));
        }
    }
    let totals = nemesis.totals();
    let kinds_without_effect = kinds
        .iter()
        .copied()
        .filter(|k| totals.get(k).is_none_or(|t| t.effective == 0))
        .collect();
    let (verify_status, verify_output) = verify(&history_file, &out, args.verify_time_limit)?;
    let report = RunReport {
        seed,
        out: out.clone(),
        ok,
        fail,
        info,
        faults: totals,
        kinds_without_effect,
        crashes: nemesis.crashes.clone(),
        final_problems,
        digests: digest_lines,
        verify_status,
        verify_output,
        seconds: began.elapsed().as_secs_f64(),
    };
    let summary = out.join("summary.json");
    std::fs::write(
        &summary,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    )
    .map_err(|e| HarnessError::io(&summary, e))?;
    Ok(report)
}

/// Waits until every group has a leader.
fn wait_for_leaders(cluster: &Cluster, within: Duration) -> Result<(), HarnessError> {
    let deadline = Instant::now() + within;
    for (group, _) in GROUPS {
        while cluster.leader(group).is_none() {
            if Instant::now() > deadline {
                return Err(HarnessError::Cluster(format!(
                    "elected no leader of group {group} within {within:?}; node 1's log ends:\n{}",
                    cluster.log_tail(1, 20)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Restarts and resumes every node, removes every rule and filler, adds
/// back removed members.
fn heal_all(cluster: &mut Cluster, nemesis: &mut Nemesis) -> Result<(), HarnessError> {
    cluster.net.heal()?;
    for id in cluster.ids() {
        cluster.free_disk(id)?;
        cluster.signal_pause(id, false)?;
        if !cluster.is_up(id) {
            cluster.spawn(id)?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while nemesis.members_missing() {
        nemesis.restore_members(cluster)?;
        if Instant::now() > deadline {
            return Err(HarnessError::Cluster(
                "could not add back the removed members within 60 s".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// Runs `sampan-check verify` on the history; returns its status and output.
fn verify(history_file: &Path, out: &Path, time_limit: u64) -> Result<(i32, String), HarnessError> {
    let exe = std::env::current_exe().map_err(|e| HarnessError::io("current_exe", e))?;
    let html = out.join("violation.html");
    let output = std::process::Command::new(&exe)
        .arg("verify")
        .arg(history_file)
        .arg("--time-limit")
        .arg(time_limit.to_string())
        .arg("--html")
        .arg(&html)
        .output()
        .map_err(|e| HarnessError::io(&exe, e))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.code().unwrap_or(2), text))
}

fn spawn_progress(
    rec: Arc<Recorder>,
    status: Arc<NemesisStatus>,
    stop: Arc<AtomicBool>,
    duration: Duration,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let bar = indicatif::ProgressBar::new(duration.as_secs());
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let started = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let (ok, fail, info) = (
                rec.ok.load(Ordering::Relaxed),
                rec.fail.load(Ordering::Relaxed),
                rec.info.load(Ordering::Relaxed),
            );
            let current = status.current.lock().map(|c| c.clone()).unwrap_or_default();
            bar.set_position(started.elapsed().as_secs().min(duration.as_secs()));
            bar.set_message(format!(
                "ops ok {ok} fail {fail} info {info} | faults {} {}",
                status.faults.load(Ordering::Relaxed),
                if current.is_empty() {
                    String::new()
                } else {
                    format!("[{current}]")
                }
            ));
            std::thread::sleep(Duration::from_millis(200));
        }
        bar.finish();
    })
}

#[allow(clippy::print_stdout)]
fn print_report(r: &RunReport) {
    println!(
        "\nsampan-check run: seed {}, {:.0} s, output {}",
        r.seed,
        r.seconds,
        r.out.display()
    );
    println!("operations: {} ok, {} fail, {} info", r.ok, r.fail, r.info);
    println!(
        "{:<16} {:>8} {:>10} {:>16}",
        "fault", "applied", "effective", "packets dropped"
    );
    for (kind, t) in &r.faults {
        println!(
            "{:<16} {:>8} {:>10} {:>16}",
            kind.name(),
            t.applied,
            t.effective,
            t.packets_dropped
        );
    }
    for k in &r.kinds_without_effect {
        println!("FAULT NEVER TOOK EFFECT: {k}");
    }
    for c in &r.crashes {
        println!("NODE EXITED ON ITS OWN: {c}");
    }
    for d in &r.digests {
        println!("digest {d}");
    }
    for p in &r.final_problems {
        println!("FINAL CHECK: {p}");
    }
    println!(
        "linearizability (exit {}):\n{}",
        r.verify_status,
        r.verify_output.trim_end()
    );
    println!("{}", if r.passed() { "PASS" } else { "FAIL" });
}
