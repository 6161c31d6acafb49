//! `sampan-cluster [--data-dir DIR] [--no-demo]`: a local 3-node Sampan
//! cluster in one command.
//!
//! Starts three `sampan-node` processes (the binary next to this one) with
//! the demo configs ([`NodeConfig::local_demo`]: node N on replication port
//! 400N, service port 500N, Redis port 638N, groups 1 and 2), waits for the
//! groups to elect leaders, prints the addresses and commands to try, runs a
//! short visible workload over the Redis protocol (writes, reads, a TTL key
//! expiring, two groups, the leader killed and the data intact, the node
//! restarted and caught up), then stays up until Ctrl-C or SIGTERM and stops
//! its nodes with SIGTERM.

// The demo's output is its point: it talks to the user on stdout.
#![allow(clippy::print_stdout)]

use clap::Parser;
use sampan::config::ServiceCredential;
use sampan_demos::config::{NodeConfig, Secret};
use sampan_demos::resp::{RespClient, Value};
use sampan_demos::signals::{block_stop_signals, wait_for_stop_signal};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Nodes in the demo cluster.
const NODES: u64 = 3;
/// How long the cluster may take to elect leaders.
const ELECTION_WAIT: Duration = Duration::from_secs(30);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(15);
/// Pause between polls of a node's state.
const POLL: Duration = Duration::from_millis(100);

/// A local 3-node Sampan cluster, with a short demo.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where the nodes keep their data, configs and logs (default: a fresh
    /// directory under the system's temp dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Skip the demo workload: start the cluster and wait.
    #[arg(long)]
    no_demo: bool,
    /// Set this password on every node's Redis port (Redis's
    /// `requirepass`); clients then connect with `redis-cli -a PASS`.
    #[arg(long)]
    requirepass: Option<String>,
    /// Speak TLS: nodes to each other (mutual, each certificate naming its
    /// node), on the service ports, and on Redis TLS ports 6391-6393, with
    /// a CA and certificates made for this run (in `<data dir>/certs`;
    /// client `demo`'s certificate for redis-cli --tls).
    #[arg(long)]
    tls: bool,
    /// Run the Redis ports as one Redis Cluster: three groups (sync), the
    /// 16,384 hash slots spread over them, each key's requests `MOVED` to
    /// its group's leader (`redis-cli -c`, `redis-benchmark --cluster`,
    /// cluster clients). Implies `--no-demo`.
    #[arg(long)]
    redis_cluster: bool,
}

/// The `--requirepass` of this run, if any (the demo's own connections
/// authenticate with it).
static PASSWORD: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Whether this run serves TLS too (`--tls`).
static TLS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Whether the Redis ports run as one Redis Cluster (`--redis-cluster`).
static REDIS_CLUSTER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Groups in Redis Cluster mode: one per node, so leaders can spread.
const CLUSTER_GROUPS: u64 = 3;

fn redis_cluster() -> bool {
    REDIS_CLUSTER.get().copied().unwrap_or(false)
}

/// The groups the cluster runs.
fn groups() -> Vec<u64> {
    if redis_cluster() {
        (1..=CLUSTER_GROUPS).collect()
    } else {
        vec![1, 2]
    }
}

/// Node `n`'s Redis TLS port.
fn tls_port(n: u64) -> u16 {
    6390 + n as u16
}

fn password() -> Option<&'static str> {
    PASSWORD.get().and_then(|p| p.as_deref())
}

/// What `redis-cli` needs to be told of the password, for the hints.
fn auth_hint() -> &'static str {
    if password().is_some() {
        " -a <password>"
    } else {
        ""
    }
}

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sampan-cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Error> {
    let _ = PASSWORD.set(args.requirepass.clone().filter(|p| !p.is_empty()));
    let _ = TLS.set(args.tls);
    let _ = REDIS_CLUSTER.set(args.redis_cluster);
    block_stop_signals()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let sig = wait_for_stop_signal();
            stop.store(true, Ordering::SeqCst);
            let _ = stop_tx.send(sig.unwrap_or(libc::SIGTERM));
        });
    }
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => fresh_dir()?,
    };
    std::fs::create_dir_all(&data_dir)?;
    let mut cluster = Cluster::start(&data_dir)?;
    let outcome = (|| {
        cluster.wait_for_leaders(&stop)?;
        print_welcome(&data_dir);
        if !args.no_demo && !args.redis_cluster {
            demo(&mut cluster, &stop)?;
        }
        Ok::<(), Error>(())
    })();
    match &outcome {
        Err(e) if !stop.load(Ordering::SeqCst) => eprintln!("sampan-cluster: {e}"),
        _ if !stop.load(Ordering::SeqCst) => {
            println!("\nThe cluster is up; Ctrl-C (or SIGTERM) stops it.");
            let _ = stop_rx.recv();
        }
        _ => {}
    }
    println!("Stopping the nodes...");
    cluster.stop_all();
    println!("Stopped. The data stays in {}.", data_dir.display());
    outcome.or_else(|e| {
        if stop.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(e)
        }
    })
}

fn fresh_dir() -> Result<PathBuf, Error> {
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    Ok(std::env::temp_dir().join(format!("sampan-cluster-{}-{stamp}", std::process::id())))
}

/// The three node processes.
struct Cluster {
    exe: PathBuf,
    dir: PathBuf,
    nodes: Vec<Option<Child>>,
}

impl Cluster {
    /// Writes the three configs and starts the nodes.
    fn start(dir: &Path) -> Result<Cluster, Error> {
        let bin_dir = std::env::current_exe()?
            .parent()
            .ok_or("the executable has no directory")?
            .to_path_buf();
        build_node_under_cargo(&bin_dir)?;
        let exe = bin_dir.join("sampan-node");
        if !exe.exists() {
            return Err(format!(
                "{} not found: build it too (cargo build --release -p sampan-demos)",
                exe.display()
            )
            .into());
        }
        let mut cluster = Cluster {
            exe,
            dir: dir.to_path_buf(),
            nodes: Vec::new(),
        };
        // The nodes prove this to each other, so nothing else on the
        // machine can join the cluster as a node.
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| format!("no random bytes for the secret: {e}"))?;
        let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let certs = dir.join("certs");
        if TLS.get().copied().unwrap_or(false) {
            sampan_demos::certs::make(&sampan_demos::certs::CertsSpec {
                out: certs.clone(),
                cluster_id: 1,
                nodes: (1..=NODES).collect(),
                ips: vec![[127, 0, 0, 1].into()],
                dns: vec!["localhost".into()],
                clients: vec!["demo".into()],
                days: 30,
            })?;
        }
        for n in 1..=NODES {
            let mut cfg = NodeConfig::local_demo(n, dir.join(format!("node-{n}")));
            if redis_cluster() {
                let first = cfg.groups[0].clone();
                cfg.groups = (1..=CLUSTER_GROUPS)
                    .map(|g| sampan::config::GroupConfig {
                        group_id: g,
                        ..first.clone()
                    })
                    .collect();
                cfg.redis.cluster_enabled = true;
                cfg.server.balance_leaders = true;
                cfg.redis.cluster_nodes = (1..=NODES)
                    .map(|m| format!("{m},127.0.0.1:{}", redis_port(m)))
                    .collect::<Vec<_>>()
                    .join(";");
            }
            cfg.server.cluster_secret = Some(Secret(secret.clone()));
            cfg.metrics.address = Some(format!("127.0.0.1:{}", metrics_port(n)));
            if TLS.get().copied().unwrap_or(false) {
                cfg.redis.tls_port = tls_port(n);
                cfg.redis.tls_cert_file = Some(certs.join(format!("node-{n}.pem")));
                cfg.redis.tls_key_file = Some(certs.join(format!("node-{n}.key")));
                cfg.redis.tls_ca_cert_file = Some(certs.join("ca.pem"));
                cfg.server.tls = Some(sampan::config::TlsFiles {
                    cert_file: certs.join(format!("node-{n}.pem")),
                    key_file: certs.join(format!("node-{n}.key")),
                    ca_file: certs.join("ca.pem"),
                });
            }
            if let Some(p) = password() {
                cfg.redis.requirepass = Some(Secret(p.into()));
                cfg.server.credentials = vec![ServiceCredential {
                    name: "default".into(),
                    token: Secret(p.into()),
                    admin: true,
                }];
            }
            std::fs::write(config_path(dir, n), toml::to_string(&cfg)?)?;
            cluster.nodes.push(None);
            cluster.spawn(n)?;
        }
        Ok(cluster)
    }

    /// Starts node `n` (again), its output appended to `node-N.log`.
    fn spawn(&mut self, n: u64) -> Result<(), Error> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node-{n}.log")))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--config")
            .arg(config_path(&self.dir, n))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Ctrl-C reaches this process only; it stops the nodes in turn.
        sampan_demos::signals::stop_with_parent(&mut cmd);
        let child = cmd.spawn()?;
        self.nodes[n as usize - 1] = Some(child);
        Ok(())
    }

    fn kill(&mut self, n: u64) -> Result<(), Error> {
        if let Some(mut child) = self.nodes[n as usize - 1].take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM to every node, then waits for each (SIGKILL after
    /// [`STOP_WAIT`]).
    fn stop_all(&mut self) {
        for child in self.nodes.iter().flatten() {
            // SAFETY: kill with a pid we started and still own.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_WAIT;
        for (i, slot) in self.nodes.iter_mut().enumerate() {
            let Some(child) = slot.as_mut() else { continue };
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        println!("  node {} stopped ({status})", i + 1);
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                    _ => {
                        println!("  node {} did not stop in time: killed", i + 1);
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
            *slot = None;
        }
    }

    /// Waits until every group has a leader that all running nodes agree on.
    fn wait_for_leaders(&mut self, stop: &AtomicBool) -> Result<(), Error> {
        let deadline = Instant::now() + ELECTION_WAIT;
        loop {
            self.check_alive()?;
            if stop.load(Ordering::SeqCst) {
                return Err("stopped".into());
            }
            let leaders: Vec<Option<u64>> = groups().iter().map(|g| self.leader(*g)).collect();
            if leaders.iter().all(Option::is_some) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no leader after {ELECTION_WAIT:?}; see the logs in {}",
                    self.dir.display()
                )
                .into());
            }
            std::thread::sleep(POLL);
        }
    }

    fn check_alive(&mut self) -> Result<(), Error> {
        for (i, slot) in self.nodes.iter_mut().enumerate() {
            if let Some(child) = slot
                && let Some(status) = child.try_wait()?
            {
                *slot = None;
                return Err(format!(
                    "node {} exited ({status}); see {}",
                    i + 1,
                    self.dir.join(format!("node-{}.log", i + 1)).display()
                )
                .into());
            }
        }
        Ok(())
    }

    fn running(&self) -> impl Iterator<Item = u64> + '_ {
        (1..=NODES).filter(|n| self.nodes[*n as usize - 1].is_some())
    }

    /// The leader of `group` if it leads by its own account and every other
    /// running node names it.
    fn leader(&self, group: u64) -> Option<u64> {
        let mut named = None;
        for n in self.running() {
            let info = group_info(n, group)?;
            let leader = info.leader.filter(|l| *l != 0)?;
            if named.is_some_and(|l| l != leader) {
                return None;
            }
            named = Some(leader);
        }
        let leader = named?;
        (group_info(leader, group)?.role == "leader").then_some(leader)
    }
}

/// Under `cargo run` (Cargo sets `CARGO`), `--bin sampan-cluster` builds
/// only this binary: build `sampan-node` too, with the same profile, so the
/// README's one command works on a fresh clone and never runs a stale node.
fn build_node_under_cargo(bin_dir: &Path) -> Result<(), Error> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "sampan-demos",
        "--bin",
        "sampan-node",
    ]);
    match bin_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
        None => return Ok(()),
    }
    let status = cmd.status()?;
    if !status.success() {
        return Err(format!("building sampan-node failed ({status})").into());
    }
    Ok(())
}

/// Node `n`'s metrics port: 9100 + n.
fn metrics_port(n: u64) -> u16 {
    9100 + n as u16
}

fn config_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("node-{n}.toml"))
}

fn redis_port(n: u64) -> u16 {
    6380 + n as u16
}

/// One group's line of a node's `INFO groups`.
struct GroupLine {
    role: String,
    leader: Option<u64>,
    commit: u64,
    applied: u64,
}

fn group_info(node: u64, group: u64) -> Option<GroupLine> {
    let mut c = connect_redis(node).ok()?;
    let Value::Bulk(Some(text)) = c.call(&["INFO", "groups"]).ok()? else {
        return None;
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    let prefix = format!("group{group}:");
    let line = text.lines().find_map(|l| l.strip_prefix(&prefix))?;
    let field = |name: &str| {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    Some(GroupLine {
        role: field("role")?,
        leader: field("leader")?.parse().ok(),
        commit: field("commit")?.parse().ok()?,
        applied: field("applied")?.parse().ok()?,
    })
}

fn print_welcome(dir: &Path) {
    println!(
        "Sampan: a 3-node cluster is up (data, configs and logs in {}).\n",
        dir.display()
    );
    println!("  node  replication  service  redis  metrics and readiness");
    for n in 1..=NODES {
        println!(
            "  {n}     127.0.0.1:{}   {}     {}   http://127.0.0.1:{m}/metrics  http://127.0.0.1:{m}/health",
            4000 + n,
            5000 + n,
            redis_port(n),
            m = metrics_port(n)
        );
    }
    if redis_cluster() {
        println!(
            "\nGroups 1-{CLUSTER_GROUPS} (sync durability) run on all three nodes, and the Redis"
        );
        println!("ports answer as one Redis Cluster: the 16384 slots are spread over the groups,");
        println!("and a key whose group another node leads is MOVED to that node.\n");
        println!("Try:");
        println!("  redis-cli -c -p 6381{} SET greeting hello", auth_hint());
        println!("  redis-cli -c -p 6383{} GET greeting", auth_hint());
        println!("  redis-cli -p 6382{} CLUSTER SLOTS", auth_hint());
        println!(
            "  redis-benchmark --cluster -p 6381{} -t set,get -n 100000 -c 50",
            auth_hint()
        );
        return;
    }
    println!("\nGroups 1 (sync durability) and 2 (async) run on all three nodes;");
    println!("Redis database 0 is group 1, database 1 is group 2.\n");
    println!("Try:");
    println!("  redis-cli -p 6381{} SET greeting hello", auth_hint());
    println!(
        "  redis-cli -p 6383{} GET greeting          # any node serves any request",
        auth_hint()
    );
    println!(
        "  redis-cli -p 6382{} SET session:1 x EX 5  # gone from every node after 5 s",
        auth_hint()
    );
    println!(
        "  redis-cli -p 6381{} -n 1 INCR visits      # database 1 = group 2",
        auth_hint()
    );
    println!("  redis-cli -p 6381{} INFO replication", auth_hint());
    let token = if password().is_some() {
        "SAMPAN_TOKEN=<password> "
    } else {
        ""
    };
    if TLS.get().copied().unwrap_or(false) {
        let certs = dir.join("certs");
        println!(
            "  {token}sampan-cli -s 127.0.0.1:5001 --tls-ca {}/ca.pem status   # the native client, over TLS",
            certs.display()
        );
        println!(
            "  redis-cli --tls --cacert {0}/ca.pem --cert {0}/client-demo.pem --key {0}/client-demo.key -p {1}{2} PING",
            certs.display(),
            tls_port(1),
            auth_hint()
        );
    } else {
        println!("  {token}sampan-cli -s 127.0.0.1:5001 status   # the native client");
    }
    println!(
        "  redis-benchmark -p 6381{} -t set,get -n 100000 -c 50 -P 16",
        auth_hint()
    );
}

/// Prints a step of the demo.
fn step(title: &str) {
    println!("\n== {title}");
}

/// Runs a command on node `n` and prints it with the reply.
fn show(n: u64, db: u64, args: &[&str]) -> Result<Value, Error> {
    let mut c = connect_redis(n)?;
    if db != 0 {
        c.call(&["SELECT", &db.to_string()])?;
    }
    let v = c.call(args)?;
    let db_note = if db != 0 {
        format!(" -n {db}")
    } else {
        String::new()
    };
    let shown: Vec<String> = args
        .iter()
        .map(|a| {
            if a.contains(' ') {
                format!("\"{a}\"")
            } else {
                a.to_string()
            }
        })
        .collect();
    let command = format!(
        "redis-cli -p {}{}{db_note} {}",
        redis_port(n),
        auth_hint(),
        shown.join(" ")
    );
    println!("  {command:<50} -> {v}");
    Ok(v)
}

fn demo(cluster: &mut Cluster, stop: &AtomicBool) -> Result<(), Error> {
    let check = |stop: &AtomicBool| -> Result<(), Error> {
        if stop.load(Ordering::SeqCst) {
            Err("stopped".into())
        } else {
            Ok(())
        }
    };
    let leader = cluster.leader(1).ok_or("group 1 has no leader")?;
    let follower = cluster
        .running()
        .find(|n| *n != leader)
        .ok_or("no follower")?;

    step(&format!(
        "Writes and reads: node {leader} leads group 1; node {follower} forwards to it"
    ));
    show(follower, 0, &["SET", "greeting", "hello"])?;
    for n in 1..=NODES {
        show(n, 0, &["GET", "greeting"])?;
    }
    for n in 1..=NODES {
        show(n, 0, &["INCR", "visits"])?;
    }
    show(leader, 0, &["MSET", "fruit:1", "apple", "fruit:2", "pear"])?;
    show(follower, 0, &["MGET", "fruit:1", "fruit:2", "fruit:3"])?;
    check(stop)?;

    step("A key with a TTL: the leader proposes its expiry through the log");
    show(
        follower,
        0,
        &["SET", "flash", "now you see me", "PX", "1500"],
    )?;
    show(leader, 0, &["PTTL", "flash"])?;
    let before = show(leader, 0, &["DBSIZE"])?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        check(stop)?;
        let sizes: Result<Vec<Value>, Error> = (1..=NODES)
            .map(|n| Ok(connect_redis(n)?.call(&["DBSIZE"])?))
            .collect();
        let gone = sizes?
            .iter()
            .all(|v| matches!((v, &before), (Value::Int(a), Value::Int(b)) if a < b));
        if gone || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(POLL);
    }
    for n in 1..=NODES {
        show(n, 0, &["GET", "flash"])?;
    }
    show(leader, 0, &["DBSIZE"])?;
    check(stop)?;

    step("Two groups: database 1 is group 2, with its own leader and keys");
    show(leader, 1, &["SET", "greeting", "hello from group 2"])?;
    show(follower, 1, &["GET", "greeting"])?;
    show(follower, 0, &["GET", "greeting"])?;
    check(stop)?;

    failover(cluster, stop, leader)
}

fn failover(cluster: &mut Cluster, stop: &AtomicBool, leader: u64) -> Result<(), Error> {
    step(&format!(
        "Failover: 100 writes, then node {leader} (the leader) is killed with SIGKILL"
    ));
    let survivor = cluster
        .running()
        .find(|n| *n != leader)
        .ok_or("no survivor")?;
    let mut c = connect_redis(survivor)?;
    for i in 0..100 {
        let v = c.call(&["SET", &format!("order:{i:03}"), &format!("item {i}")])?;
        if !matches!(v, Value::Simple(_)) {
            return Err(format!("SET order:{i:03}: {v}").into());
        }
    }
    println!("  100 writes acknowledged");
    cluster.kill(leader)?;
    println!("  node {leader} killed");
    let t0 = Instant::now();
    let new_leader = loop {
        if stop.load(Ordering::SeqCst) {
            return Err("stopped".into());
        }
        if let Some(l) = cluster.leader(1) {
            break l;
        }
        if t0.elapsed() > ELECTION_WAIT {
            return Err("no new leader elected".into());
        }
        std::thread::sleep(POLL);
    };
    println!(
        "  node {new_leader} leads group 1 after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let mut c = connect_redis(new_leader)?;
    let keys: Vec<String> = (0..100).map(|i| format!("order:{i:03}")).collect();
    let mut args = vec!["MGET"];
    args.extend(keys.iter().map(String::as_str));
    let Value::Array(Some(values)) = c.call(&args)? else {
        return Err("MGET gave no array".into());
    };
    let intact = values
        .iter()
        .enumerate()
        .filter(|(i, v)| matches!(v, Value::Bulk(Some(b)) if *b == format!("item {i}").as_bytes()))
        .count();
    println!("  {intact}/100 acknowledged writes read back from node {new_leader}");
    show(new_leader, 0, &["GET", "greeting"])?;
    show(new_leader, 0, &["SET", "after-failover", "yes"])?;

    step(&format!("Node {leader} restarts and catches up"));
    cluster.spawn(leader)?;
    let t0 = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err("stopped".into());
        }
        let target = group_info(new_leader, 1).map(|g| g.commit);
        let mine = group_info(leader, 1);
        if let (Some(target), Some(mine)) = (target, &mine)
            && mine.applied >= target
        {
            println!(
                "  node {leader} is back as {} and applied up to index {} (the leader's commit index {target}) after {:.1} s",
                mine.role,
                mine.applied,
                t0.elapsed().as_secs_f64()
            );
            break;
        }
        if t0.elapsed() > ELECTION_WAIT {
            return Err(format!("node {leader} did not catch up").into());
        }
        std::thread::sleep(POLL);
    }
    show(leader, 0, &["GET", "after-failover"])?;
    show(leader, 0, &["INFO", "replication"]).map(|_| ())
}

/// A Redis connection to node `node`, for the demo's steps.
fn connect_redis(node: u64) -> std::io::Result<RespClient> {
    let mut c = RespClient::connect_with(redis_port(node), Duration::from_secs(15))?;
    if let Some(p) = password() {
        match c.call(&["AUTH", p])? {
            Value::Simple(_) => {}
            other => return Err(std::io::Error::other(format!("AUTH refused: {other}"))),
        }
    }
    Ok(c)
}
