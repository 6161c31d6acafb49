//! `sampan-node --config node.toml`: one node of a Sampan KV cluster.
//! `sampan-node --print-config` prints a commented config to start from.
//! On Ctrl-C or SIGTERM it stops taking client requests, hands the
//! leadership of the groups it leads to other voters (at most
//! [`HANDOVER_MAX`]), waits for the requests it took to be answered (at
//! most [`DRAIN_MAX`]), then stops its groups and exits.
//!
//! `sampan-node --config node.toml --restore-from DIR` writes the node's
//! (empty) data directory from a backup (`sampan-cli backup`) and exits;
//! the node then starts as usual.

use clap::Parser;
use sampan::server::{RaftServer, machines};
use sampan_demos::config::{DEFAULT_CONFIG, NodeConfig};
use sampan_demos::signals::{block_stop_signals, wait_for_stop_signal};
use sampan_kv::KvMachine;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// The allocator: see the workspace's Cargo.toml and `benches/RESULTS.md`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One node of a Sampan replicated KV store.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The node's config file (TOML); see --print-config.
    #[arg(long, short, required_unless_present = "print_config")]
    config: Option<PathBuf>,
    /// Print a commented example config and exit.
    #[arg(long)]
    print_config: bool,
    /// Write this node's data directory (it must be empty; the node not
    /// running) from the backup in this directory (`sampan-cli backup`),
    /// then exit. Restore every node of the new cluster from the same
    /// backup, then start them.
    #[arg(long, requires = "config")]
    restore_from: Option<PathBuf>,
    /// With --restore-from: the voters every restored group gets (comma
    /// separated ids), instead of the members it had; give the same list
    /// to every node restored.
    #[arg(long, requires = "restore_from", value_delimiter = ',')]
    members: Vec<u64>,
}

fn main() -> ExitCode {
    let format = sampan_demos::logging::init("info");
    let args = Args::parse();
    if args.print_config {
        let mut out = std::io::stdout().lock();
        return match out.write_all(DEFAULT_CONFIG.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let Some(file) = args.config else {
        return ExitCode::from(2);
    };
    let done = match &args.restore_from {
        Some(backup) => restore(&file, backup, &args.members),
        None => run(&file),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            // Said twice for a person at a terminal; a structured log
            // stays one record per line.
            if format == sampan_demos::logging::LogFormat::Text {
                eprintln!("sampan-node: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Writes the node's data directory from the backup at `backup`.
fn restore(
    file: &std::path::Path,
    backup: &std::path::Path,
    members: &[u64],
) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = NodeConfig::load(file)?;
    let members: std::collections::BTreeSet<u64> = members.iter().copied().collect();
    let report = sampan::backup::restore(
        &cfg.server,
        &cfg.groups,
        backup,
        (!members.is_empty()).then_some(&members),
    )?;
    let node = cfg.server.node_id;
    for g in &report.groups {
        log::info!(
            group = g.group, term = g.term;
            "node {node}: group {}: restored at index {} (term {}), {} bytes, voters {:?}, learners {:?}{}",
            g.group,
            g.index,
            g.term,
            g.size,
            g.voters,
            g.learners,
            if g.cataloged {
                " (not in the config: recorded in the node's group catalog)"
            } else {
                ""
            }
        );
    }
    for g in &report.skipped {
        log::info!(group = *g; "node {node}: group {g}: not restored (this node is not a member of it)");
    }
    for g in &report.not_in_backup {
        log::warn!(group = *g; "node {node}: group {g}: in the config but not in the backup: it starts empty");
    }
    log::info!(
        "node {node}: restored {} group(s) into {} from {}",
        report.groups.len(),
        cfg.server.data_dir.display(),
        backup.display()
    );
    Ok(())
}

fn run(file: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = NodeConfig::load(file)?;
    block_stop_signals()?;
    let node = cfg.server.node_id;
    let kv = cfg.kv.kv_config();
    // Pushes applied here wake the Redis ports' blocked pops.
    let events = sampan_kv::KeyEvents::new();
    let machine_events = events.clone();
    let factory = machines(move |group: &sampan::config::GroupConfig| {
        Box::new(KvMachine::new(kv.clone()).with_events(machine_events.clone(), group.group_id))
            as Box<dyn sampan::state_machine::StateMachine>
    });
    let server = RaftServer::start(cfg.server.clone(), &cfg.groups, factory)?;
    log::info!(
        "node {node}: serving groups {:?}; service port {}",
        server.group_ids()?,
        cfg.server.service_port
    );
    // The Redis ports listen where the node's other ports do.
    let ip = cfg.server.listen_ip()?;
    // The Redis ports' counters, for `/metrics`.
    let mut redis_collectors = Vec::new();
    if cfg.redis.port != 0 {
        let addr = std::net::SocketAddr::new(ip, cfg.redis.port);
        let cluster = cfg.redis.cluster(cfg.server.cluster_id, node)?;
        let settings = sampan_redis::server::ListenerSettings {
            key_events: Some(events.clone()),
            // In cluster mode the slots are spread over every group.
            databases: if cluster.is_some() {
                cfg.groups.len() as u64
            } else {
                sampan_redis::server::ListenerSettings::default().databases
            },
            cluster,
            ..cfg.redis.listener()?
        };
        let redis = sampan_redis::server::listen(&server, addr, settings)?;
        log::info!("node {node}: redis port {}", redis.local_addr());
        redis_collectors.push(redis.collector());
    }
    if cfg.redis.tls_port != 0 {
        let addr = std::net::SocketAddr::new(ip, cfg.redis.tls_port);
        let settings = sampan_redis::server::ListenerSettings {
            tls: Some(cfg.redis.tls()?),
            key_events: Some(events.clone()),
            ..cfg.redis.listener()?
        };
        let redis = sampan_redis::server::listen(&server, addr, settings)?;
        log::info!("node {node}: redis TLS port {}", redis.local_addr());
        redis_collectors.push(redis.collector());
    }
    let _metrics = match cfg.metrics.address()? {
        Some(addr) => Some(start_metrics(&server, addr, redis_collectors)?),
        None => None,
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let sig = std::thread::scope(|scope| {
        if cfg.server.balance_leaders {
            scope.spawn(|| balance_leaders(&server, node, &stop));
        }
        let sig = wait_for_stop_signal();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        sig
    })?;
    log::info!("node {node}: signal {sig}: draining, handing over leadership, then stopping");
    // Clients first: new requests go to other nodes (which forward them
    // here while this node still leads), idle Redis connections close.
    if let Err(e) = server.begin_drain() {
        log::warn!("node {node}: draining: {e}");
    }
    match server.hand_over_leadership(HANDOVER_MAX) {
        Ok(h) if h.kept.is_empty() && h.stepped_down.is_empty() => log::info!(
            "node {node}: handed over the leadership of {} group(s)",
            h.handed.len()
        ),
        Ok(h) if h.kept.is_empty() => log::warn!(
            "node {node}: handed over the leadership of {} group(s); lost the lead of {:?} \
             without a handover (no quorum: are the other nodes stopping too?)",
            h.handed.len(),
            h.stepped_down
        ),
        Ok(h) => log::warn!(
            "node {node}: handed over the leadership of {} group(s); still leading {:?} \
             (no other voter took it within {HANDOVER_MAX:?}): they elect a leader once this node is gone",
            h.handed.len(),
            h.kept
        ),
        Err(e) => log::warn!("node {node}: handing over leadership: {e}"),
    }
    match server.wait_drained(DRAIN_MAX) {
        Ok(0) => log::info!("node {node}: every request in flight answered"),
        Ok(left) => log::warn!(
            "node {node}: {left} request(s) still in flight after {DRAIN_MAX:?}: their clients \
             get no answer and retry elsewhere (a write's outcome is then unknown to them)"
        ),
        Err(e) => log::warn!("node {node}: waiting for requests in flight: {e}"),
    }
    let report = server.shutdown()?;
    log::info!(
        "node {node}: stopped ({} fiber(s) cancelled)",
        report.fibers_cancelled()
    );
    Ok(())
}

/// Serves `/metrics` (the server's groups and shards, and the Redis
/// ports' counters) and `/health` at `addr`, from a thread of its own.
fn start_metrics<F: sampan::server::RaftFactory>(
    server: &sampan::server::RaftServer<F>,
    addr: std::net::SocketAddr,
    redis: Vec<sampan_redis::server::RedisCollector>,
) -> Result<sampan::metrics::MetricsEndpoint, Box<dyn std::error::Error>> {
    let mut registry = sampan::metrics::Registry::default();
    registry.register_collector(Box::new(sampan::metrics::ServerCollector::new(
        server.observer(),
    )));
    // One collector for all the Redis ports: each family once.
    if let Some(ports) = redis.into_iter().reduce(|a, b| a.with(b)) {
        registry.register_collector(Box::new(ports));
        registry.register_collector(Box::new(sampan_redis::stats::CommandsCollector::new(
            server.runtime(),
            server.shards(),
        )));
    }
    let observer = server.observer();
    let health: sampan::metrics::HealthCheck = std::sync::Arc::new(move || {
        observer
            .snapshot()
            .map_err(|e| vec![e.to_string()])
            .and_then(|s| s.readiness())
    });
    let endpoint = sampan::metrics::MetricsEndpoint::start(addr, registry, health)
        .map_err(|e| format!("metrics endpoint on {addr}: {e}"))?;
    Ok(endpoint)
}

/// Every [`BALANCE_EVERY`], moves one leadership if this node leads too
/// many groups (see `RaftServer::balance_leaders_once`), until `stop`.
fn balance_leaders<F: sampan::server::RaftFactory>(
    server: &sampan::server::RaftServer<F>,
    node: u64,
    stop: &std::sync::atomic::AtomicBool,
) {
    let mut next = std::time::Instant::now() + BALANCE_EVERY;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if std::time::Instant::now() < next {
            continue;
        }
        next = std::time::Instant::now() + BALANCE_EVERY;
        match server.balance_leaders_once() {
            Ok(Some((group, to))) => {
                log::info!("node {node}: handed group {group}'s leadership to node {to} (balance)")
            }
            Ok(None) => {}
            Err(e) => log::warn!("node {node}: leader balancing: {e}"),
        }
    }
}

/// How long a stopping node tries to hand its groups' leadership to other
/// voters before it stops anyway (then they elect, after an election
/// timeout). With the runtime's own 5 s bound for stopping fibers, a node
/// exits well within Kubernetes' default 30 s grace period.
const HANDOVER_MAX: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a stopping node waits, after its handover, for the requests it
/// took before draining to be answered.
const DRAIN_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// How often a node checks whether it leads too many groups.
const BALANCE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
