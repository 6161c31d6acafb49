//! What a run drives: three local `sampan-node` processes it starts and
//! stops itself, or servers already running (`--addr`), Sampan nodes or
//! redis-servers; and which address each database's requests go to.

use crate::args::{DurabilityArg, Route, RunArgs};
use crate::error::{BenchError, Result};
use crate::procstat::Watched;
use crate::resp::{Conn, info_field};
use sampan::config::{Durability, GroupConfig};
use sampan_demos::config::{NodeConfig, Secret};
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Nodes in a local cluster.
const NODES: u64 = 3;
/// How long a local cluster may take to elect every group's leader.
const ELECTION_WAIT: Duration = Duration::from_secs(30);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(15);
/// Cluster id of a local cluster.
const LOCAL_CLUSTER_ID: u64 = 7_001;

/// What kind of server a run drove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Three `sampan-node` processes this run started.
    SampanLocal,
    /// Sampan nodes already running.
    Sampan,
    /// Something else that speaks Redis (redis-server).
    Redis,
}

impl Kind {
    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::SampanLocal => "sampan-local",
            Kind::Sampan => "sampan",
            Kind::Redis => "redis",
        }
    }
}

/// The servers of a run.
pub struct Target {
    /// What they are.
    pub kind: Kind,
    /// Redis-port address of each database's requests (index = database).
    pub db_addrs: Vec<Vec<SocketAddr>>,
    /// Service addresses, for the native client.
    pub service_addrs: Vec<SocketAddr>,
    /// The cluster id, for the native client.
    pub cluster_id: u64,
    /// The server processes measured.
    pub processes: Vec<Watched>,
    /// Each database's leader node (Sampan), for the report.
    pub leaders: Vec<Option<u64>>,
    /// `AUTH` password.
    pub password: Option<String>,
    /// The local cluster, stopped when this is dropped.
    pub cluster: Option<LocalCluster>,
}

impl Target {
    /// Starts or finds the servers `args` names.
    pub fn open(args: &RunArgs, log: &dyn Fn(&str)) -> Result<Target> {
        if args.local_cluster() {
            let cluster = LocalCluster::start(args)?;
            log(&format!(
                "started 3 sampan-node processes (pids {}), data in {}",
                cluster
                    .pids()
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                cluster.dir.display()
            ));
            let mut t = Target {
                kind: Kind::SampanLocal,
                db_addrs: Vec::new(),
                service_addrs: cluster.service.clone(),
                cluster_id: LOCAL_CLUSTER_ID,
                processes: cluster
                    .pids()
                    .into_iter()
                    .enumerate()
                    .map(|(i, pid)| Watched {
                        name: format!("node-{}", i + 1),
                        pid,
                    })
                    .collect(),
                leaders: Vec::new(),
                password: None,
                cluster: None,
            };
            let redis = cluster.redis.clone();
            t.cluster = Some(cluster);
            t.wait_for_leaders(&redis, args)?;
            Ok(t)
        } else {
            let addrs = args.addrs()?;
            let mut t = Target {
                kind: Kind::Redis,
                db_addrs: Vec::new(),
                service_addrs: addrs.clone(),
                cluster_id: args.cluster_id,
                processes: args
                    .pids
                    .iter()
                    .map(|pid| Watched {
                        name: process_name(*pid),
                        pid: *pid,
                    })
                    .collect(),
                leaders: Vec::new(),
                password: args.password.clone(),
                cluster: None,
            };
            if args.protocol == crate::args::Protocol::Redis {
                t.kind = t.probe_kind(&addrs)?;
                t.route(&addrs, args)?;
            } else {
                t.kind = Kind::Sampan;
            }
            Ok(t)
        }
    }

    /// Whether the servers at `addrs` are Sampan nodes (their `INFO
    /// server` has `sampan_version`) or another Redis server.
    fn probe_kind(&self, addrs: &[SocketAddr]) -> Result<Kind> {
        let mut c = Conn::connect(addrs[0], self.password.as_deref(), 0)
            .map_err(|e| BenchError::server(addrs[0], e.to_string()))?;
        let info = c
            .info("server")
            .map_err(|e| BenchError::server(addrs[0], e.to_string()))?;
        Ok(if info_field(&info, "sampan_version").is_some() {
            Kind::Sampan
        } else {
            Kind::Redis
        })
    }

    /// Which address each database's connections use.
    fn route(&mut self, addrs: &[SocketAddr], args: &RunArgs) -> Result<()> {
        self.db_addrs.clear();
        self.leaders.clear();
        for db in 0..args.groups {
            if args.route == Route::RoundRobin {
                self.db_addrs.push(addrs.to_vec());
                self.leaders.push(None);
                continue;
            }
            let (addr, leader) = self.find_leader(addrs, db)?.ok_or_else(|| {
                BenchError::usage(
                    "--addr",
                    format!(
                        "no address says role:master for database {db} \
                             (INFO replication); --route round-robin sends to them all"
                    ),
                )
            })?;
            self.db_addrs.push(vec![addr]);
            self.leaders.push(leader);
        }
        Ok(())
    }

    /// The address whose `INFO replication` says `role:master` for
    /// database `db`, and its `leader` field (the node id, on Sampan).
    fn find_leader(
        &self,
        addrs: &[SocketAddr],
        db: u64,
    ) -> Result<Option<(SocketAddr, Option<u64>)>> {
        for &a in addrs {
            let mut c = Conn::connect(a, self.password.as_deref(), db)
                .map_err(|e| BenchError::server(a, e.to_string()))?;
            let info = c
                .info("replication")
                .map_err(|e| BenchError::server(a, e.to_string()))?;
            if info_field(&info, "role") == Some("master") {
                let leader = info_field(&info, "leader").and_then(|l| l.parse().ok());
                return Ok(Some((a, leader)));
            }
        }
        Ok(None)
    }

    /// Waits until every group of the local cluster has a leader, and
    /// routes to them.
    fn wait_for_leaders(&mut self, redis: &[SocketAddr], args: &RunArgs) -> Result<()> {
        let deadline = Instant::now() + ELECTION_WAIT;
        loop {
            if let Some(c) = &mut self.cluster {
                c.check_alive()?;
            }
            if crate::interrupt::stopped() {
                return Err(BenchError::Interrupted);
            }
            let routed = (|| {
                let mut all = Vec::new();
                for db in 0..args.groups {
                    match self.find_leader(redis, db) {
                        Ok(Some(found)) => all.push(found),
                        _ => return None,
                    }
                }
                Some(all)
            })();
            if let Some(all) = routed {
                self.leaders = all.iter().map(|(_, l)| *l).collect();
                self.db_addrs = if args.route == Route::RoundRobin {
                    vec![redis.to_vec(); args.groups as usize]
                } else {
                    all.iter().map(|(a, _)| vec![*a]).collect()
                };
                return Ok(());
            }
            if Instant::now() > deadline {
                let logs = self
                    .cluster
                    .as_ref()
                    .map(LocalCluster::log_tails)
                    .unwrap_or_default();
                return Err(BenchError::Cluster(format!(
                    "no leader for every group after {ELECTION_WAIT:?}\n{logs}"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The addresses, for the report.
    /// With `native`, the service ports the native client was given (it
    /// finds each group's leader itself).
    pub fn describe(&self, native: bool) -> Vec<String> {
        if native {
            let addrs: Vec<String> = self
                .service_addrs
                .iter()
                .map(SocketAddr::to_string)
                .collect();
            let mut out = vec![format!("native client, service ports {}", addrs.join(","))];
            for (db, l) in self.leaders.iter().enumerate() {
                if let Some(l) = l {
                    out.push(format!("group {}: leader node {l}", db + 1));
                }
            }
            return out;
        }
        self.db_addrs
            .iter()
            .enumerate()
            .map(|(db, a)| {
                let addrs: Vec<String> = a.iter().map(SocketAddr::to_string).collect();
                match self.leaders.get(db).copied().flatten() {
                    Some(l) => format!("db {db}: {} (leader node {l})", addrs.join(",")),
                    None => format!("db {db}: {}", addrs.join(",")),
                }
            })
            .collect()
    }
}

/// `comm` of a process, with its pid (`redis-server 4242`).
fn process_name(pid: u32) -> String {
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(c) => format!("{} {pid}", c.trim()),
        Err(_) => format!("pid {pid}"),
    }
}

/// Three `sampan-node` processes on loopback with free ports.
pub struct LocalCluster {
    nodes: Vec<Child>,
    /// Where the configs, logs and data are.
    pub dir: PathBuf,
    remove_dir: bool,
    /// Each node's Redis port.
    pub redis: Vec<SocketAddr>,
    /// Each node's service port.
    pub service: Vec<SocketAddr>,
}

/// `n` distinct free ports on loopback (held together while chosen, so
/// none repeats).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()
        .map_err(BenchError::io("finding free ports"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<_>>()
        .map_err(BenchError::io("finding free ports"))
}

/// 32 random bytes from the system, in hex, for the cluster secret.
fn random_secret() -> Result<String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(BenchError::io("reading /dev/urandom"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The `sampan-node` to run: `--node-bin`, or the one next to this
/// executable.
fn node_binary(args: &RunArgs) -> Result<PathBuf> {
    if let Some(p) = &args.node_bin {
        if p.is_file() {
            return Ok(p.clone());
        }
        return Err(BenchError::usage(
            "--node-bin",
            format!("{} is not a file", p.display()),
        ));
    }
    let exe = std::env::current_exe().map_err(BenchError::io("finding this executable"))?;
    let bin = exe.with_file_name("sampan-node");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(BenchError::Cluster(format!(
            "{} not found: build it with `cargo build --release -p sampan-demos`, \
             or name one with --node-bin",
            bin.display()
        )))
    }
}

impl LocalCluster {
    /// Writes three node configs (each node's replication, service and
    /// Redis port free on loopback; groups 1..=`--groups`, all on every
    /// node, with `--durability`) and starts the nodes.
    pub fn start(args: &RunArgs) -> Result<LocalCluster> {
        let exe = node_binary(args)?;
        let (dir, remove_dir) = match &args.data_dir {
            Some(d) => (d.clone(), false),
            None => (
                std::env::temp_dir().join(format!(
                    "sampan-bench-{}-{}",
                    std::process::id(),
                    unix_nanos()
                )),
                true,
            ),
        };
        std::fs::create_dir_all(&dir)
            .map_err(BenchError::io(format!("creating {}", dir.display())))?;
        let mut cluster = LocalCluster {
            nodes: Vec::new(),
            dir: dir.clone(),
            remove_dir,
            redis: Vec::new(),
            service: Vec::new(),
        };
        let ports = free_ports(3 * NODES as usize)?;
        let port = |n: u64, kind: usize| ports[(n as usize - 1) * 3 + kind];
        let servers: Vec<String> = (1..=NODES)
            .map(|n| format!("{n},127.0.0.1:{},{}", port(n, 0), port(n, 1)))
            .collect();
        let secret = random_secret()?;
        let durability = match args.durability {
            DurabilityArg::Sync => Durability::Sync,
            DurabilityArg::Async => Durability::Async,
        };
        if (1..=NODES).any(|n| dir.join(format!("node-{n}")).exists()) {
            return Err(BenchError::usage(
                "--data-dir",
                format!(
                    "{} already holds a node's data: give an empty directory",
                    dir.display()
                ),
            ));
        }
        for n in 1..=NODES {
            let mut cfg = NodeConfig::local_demo(n, dir.join(format!("node-{n}")));
            cfg.server.servers = servers.join(";");
            cfg.server.cluster_id = LOCAL_CLUSTER_ID;
            cfg.server.replicate_port = port(n, 0);
            cfg.server.service_port = port(n, 1);
            cfg.server.cluster_secret = Some(Secret(secret.clone()));
            cfg.redis.port = port(n, 2);
            cfg.groups = (1..=args.groups)
                .map(|g| GroupConfig {
                    group_id: g,
                    members: "1,2,3".into(),
                    durability,
                    ..GroupConfig::default()
                })
                .collect();
            cfg.validate()
                .map_err(|e| BenchError::Cluster(format!("node {n}'s config: {e}")))?;
            let text = toml::to_string(&cfg)
                .map_err(|e| BenchError::Cluster(format!("node {n}'s config: {e}")))?;
            let file = dir.join(format!("node-{n}.toml"));
            std::fs::write(&file, text)
                .map_err(BenchError::io(format!("writing {}", file.display())))?;
            cluster.spawn(&exe, n, &file)?;
            cluster
                .redis
                .push(SocketAddr::from(([127, 0, 0, 1], port(n, 2))));
            cluster
                .service
                .push(SocketAddr::from(([127, 0, 0, 1], port(n, 1))));
        }
        Ok(cluster)
    }

    fn spawn(&mut self, exe: &Path, n: u64, config: &Path) -> Result<()> {
        let log_file = self.dir.join(format!("node-{n}.log"));
        let log = std::fs::File::create(&log_file)
            .map_err(BenchError::io(format!("creating {}", log_file.display())))?;
        let log2 = log
            .try_clone()
            .map_err(BenchError::io(format!("opening {}", log_file.display())))?;
        let mut cmd = Command::new(exe);
        cmd.arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // Ctrl-C reaches the benchmark only; it stops the nodes.
        sampan_demos::signals::stop_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(BenchError::io(format!("starting {}", exe.display())))?;
        self.nodes.push(child);
        Ok(())
    }

    /// The nodes' process ids (node `i + 1` at index `i`).
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(Child::id).collect()
    }

    /// An error if a node has exited.
    fn check_alive(&mut self) -> Result<()> {
        for (i, child) in self.nodes.iter_mut().enumerate() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(BenchError::Cluster(format!(
                    "node {} exited ({status})\n{}",
                    i + 1,
                    tail(&self.dir.join(format!("node-{}.log", i + 1)), 10)
                )));
            }
        }
        Ok(())
    }

    /// The last lines of every node's log.
    fn log_tails(&self) -> String {
        (1..=NODES)
            .map(|n| {
                let f = self.dir.join(format!("node-{n}.log"));
                format!("--- {}:\n{}", f.display(), tail(&f, 5))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGTERM to every node, then waits (SIGKILL after [`STOP_WAIT`]);
    /// removes a temporary data directory. Returns what did not go well.
    pub fn stop(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for child in &self.nodes {
            // SAFETY: kill with the pid of a child we started and have
            // not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_WAIT;
        for (i, child) in self.nodes.iter_mut().enumerate() {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() {
                            problems.push(format!("node {} stopped with {status}", i + 1));
                        }
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        problems.push(format!(
                            "node {} did not stop in {STOP_WAIT:?}: killed",
                            i + 1
                        ));
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        self.nodes.clear();
        if self.remove_dir && problems.is_empty() {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                problems.push(format!("removing {}: {e}", self.dir.display()));
            }
        } else if self.remove_dir {
            problems.push(format!("logs kept in {}", self.dir.display()));
        }
        problems
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if !self.nodes.is_empty() {
            let _ = self.stop();
        }
    }
}

/// The last `n` lines of a file.
fn tail(file: &Path, n: usize) -> String {
    match std::fs::read_to_string(file) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("({e})"),
    }
}

/// Nanoseconds since 1970, for a fresh directory's name.
fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
