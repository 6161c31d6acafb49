//! The cluster under test: `sampan-node` processes, one per network
//! namespace, each with its data directory on a tmpfs of its own (so that
//! a full disk can be made by filling it), their config files and logs.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sampan::client::BlockingClient;
use sampan::group::GroupStatus;

pub use sampan::group::newest_leader;

use super::HarnessError;
use super::clients::{SERVICE_USER, Services};
use super::net::{Network, sh, unmount_under};
use super::proxy::{self, LinkFaults, PROXY_PORT_BASE};

/// Port of every node's replication listener (each node has its own
/// address, so all use the same ports).
pub const REPLICATE_PORT: u16 = 4001;
/// Port of every node's service listener.
pub const SERVICE_PORT: u16 = 5001;
/// Port of every node's Redis listener.
pub const REDIS_PORT: u16 = 6379;
/// The groups every run hosts: group 1 with `sync` durability, group 2
/// with `async` (Redis database 0 and 1).
pub const GROUPS: [(u64, &str); 2] = [(1, "sync"), (2, "async")];

/// Settings of the cluster the harness starts.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Nodes (3 or 5).
    pub nodes: u64,
    /// The `sampan-node` binary.
    pub node_bin: PathBuf,
    /// The `sampan-cli` binary (membership changes, snapshots).
    pub cli_bin: PathBuf,
    /// Where data directories, configs and logs go.
    pub root: PathBuf,
    /// Size of each node's tmpfs data directory, in MiB.
    pub disk_mib: u64,
    /// The nodes' password: their Redis port's `requirepass` and the token
    /// of their service port's admin credential (`default`); their cluster
    /// secret is derived from it. The nodes listen beyond loopback, where
    /// protected mode wants all three, and every connection then
    /// authenticates under the faults too.
    pub redis_password: String,
    /// The nodes' election timeout.
    pub election_timeout_ms: u64,
}

/// One running (or stopped) node.
struct Node {
    id: u64,
    child: Option<Child>,
    paused: bool,
}

/// The cluster: its nodes, their network and an admin client.
pub struct Cluster {
    spec: ClusterSpec,
    /// The nodes' network.
    pub net: Network,
    nodes: Vec<Node>,
    admin: Option<BlockingClient>,
    /// The faults the replication links' proxies apply.
    pub links: Arc<LinkFaults>,
}

impl Cluster {
    /// Makes the network and the data directories and starts every node.
    pub fn start(spec: ClusterSpec) -> Result<Cluster, HarnessError> {
        for bin in [&spec.node_bin, &spec.cli_bin] {
            if !bin.is_file() {
                return Err(HarnessError::Setup(format!(
                    "{} not found: build it with `cargo build --release -p sampan-demos` or pass --node-bin/--cli-bin",
                    bin.display()
                )));
            }
        }
        std::fs::create_dir_all(&spec.root).map_err(|e| HarnessError::io(&spec.root, e))?;
        let ids: Vec<u64> = (1..=spec.nodes).collect();
        let net = Network::create(&ids, &spec.root)?;
        let mut cluster = Cluster {
            nodes: ids
                .iter()
                .map(|&id| Node {
                    id,
                    child: None,
                    paused: false,
                })
                .collect(),
            spec,
            net,
            admin: None,
            links: Arc::new(LinkFaults::default()),
        };
        // A proxy on every replication link, in the dialling node's
        // namespace (the lower id dials).
        for &i in &ids {
            for &j in ids.iter().filter(|&&j| j > i) {
                proxy::start(
                    cluster.net.namespace(i),
                    PROXY_PORT_BASE + j as u16,
                    SocketAddr::new(cluster.net.ip(j).into(), REPLICATE_PORT),
                    cluster.links.clone(),
                    i * 1000 + j,
                )?;
            }
        }
        for id in ids {
            cluster.prepare(id)?;
            cluster.spawn(id)?;
        }
        let admin = cluster
            .native()
            .connect(Duration::from_secs(5))
            .map_err(|e| HarnessError::Setup(format!("admin client: {e}")))?;
        cluster.admin = Some(admin);
        Ok(cluster)
    }

    /// The node ids.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Node `id`'s directory (config, log; `data/` is its tmpfs).
    pub fn dir(&self, id: u64) -> PathBuf {
        self.spec.root.join(format!("node-{id}"))
    }

    /// Node `id`'s data directory (a tmpfs).
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir(id).join("data")
    }

    /// Every node's service address.
    pub fn services(&self) -> Vec<SocketAddr> {
        self.ids().into_iter().map(|n| self.service(n)).collect()
    }

    /// The service addresses with the token the nodes accept.
    pub fn native(&self) -> Services {
        Services {
            addrs: self.services(),
            token: Some(self.spec.redis_password.clone()),
        }
    }

    /// Node `id`'s service address.
    pub fn service(&self, id: u64) -> SocketAddr {
        SocketAddr::new(self.net.ip(id).into(), SERVICE_PORT)
    }

    /// Node `id`'s Redis address.
    pub fn redis(&self, id: u64) -> SocketAddr {
        SocketAddr::new(self.net.ip(id).into(), REDIS_PORT)
    }

    /// The election timeout the nodes run with.
    pub fn election_timeout(&self) -> Duration {
        Duration::from_millis(self.spec.election_timeout_ms)
    }

    fn prepare(&self, id: u64) -> Result<(), HarnessError> {
        let data = self.data_dir(id);
        std::fs::create_dir_all(&data).map_err(|e| HarnessError::io(&data, e))?;
        let size = format!("size={}m", self.spec.disk_mib);
        sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &size,
                "tmpfs",
                &data.display().to_string(),
            ],
        )?;
        let servers: Vec<String> = self
            .ids()
            .into_iter()
            .map(|n| {
                let ip = self.net.ip(n);
                if n > id {
                    // Through the link's proxy; clients are redirected to
                    // the node's own service address.
                    format!(
                        "{n},127.0.0.1:{},{ip}:{SERVICE_PORT}",
                        PROXY_PORT_BASE + n as u16
                    )
                } else {
                    format!("{n},{ip}:{REPLICATE_PORT},{SERVICE_PORT}")
                }
            })
            .collect();
        let members: Vec<String> = self.ids().iter().map(u64::to_string).collect();
        let mut text = format!(
            "[server]\nnode_id = {id}\nservers = \"{}\"\ncluster_id = 1\nreplicate_port = {REPLICATE_PORT}\nservice_port = {SERVICE_PORT}\ndata_dir = \"{}\"\nshards = 1\nelection_timeout_ms = {}\nheartbeat_interval_ms = {}\ntick_ms = 50\nrequest_timeout_ms = 5000\ncluster_secret = \"{}-cluster-secret\"\n\n[[server.credential]]\nname = \"{SERVICE_USER}\"\ntoken = \"{}\"\nadmin = true\n\n[server.log]\nsegment_bytes = 4194304\ngrow_step_bytes = 1048576\n\n[redis]\nport = {REDIS_PORT}\nrequirepass = \"{}\"\n",
            servers.join(";"),
            data.display(),
            self.spec.election_timeout_ms,
            (self.spec.election_timeout_ms / 10).max(20),
            self.spec.redis_password,
            self.spec.redis_password,
            self.spec.redis_password,
        );
        for (group, durability) in GROUPS {
            // Small snapshot thresholds, so that runs take, send and
            // install snapshots while the faults happen.
            text.push_str(&format!(
                "\n[[group]]\ngroup_id = {group}\nmembers = \"{}\"\ndurability = \"{durability}\"\nsnapshot_interval_ms = 5000\nsnapshot_log_bytes = 262144\nlog_retention_ms = 0\nsnapshot_chunk_bytes = 65536\n",
                members.join(",")
            ));
        }
        let file = self.dir(id).join("node.toml");
        std::fs::write(&file, text).map_err(|e| HarnessError::io(&file, e))
    }

    /// Starts node `id` (again) in its namespace.
    pub fn spawn(&mut self, id: u64) -> Result<(), HarnessError> {
        let dir = self.dir(id);
        let log_file = dir.join("node.log");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_file)
            .map_err(|e| HarnessError::io(&log_file, e))?;
        let _ = writeln!(log, "=== sampan-check: starting node {id}");
        let err = log
            .try_clone()
            .map_err(|e| HarnessError::io(&log_file, e))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.net.namespace(id)])
            .arg(&self.spec.node_bin)
            .arg("--config")
            .arg(dir.join("node.toml"))
            .env(
                "RUST_LOG",
                std::env::var("SAMPAN_NODE_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        // SAFETY: prctl is async-signal-safe; the closure touches nothing
        // else. A node dies with the harness, even after a crash of it.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| HarnessError::Command {
            command: format!("ip netns exec ... {}", self.spec.node_bin.display()),
            detail: e.to_string(),
        })?;
        let node = self.node_mut(id);
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        let i = self.nodes.iter().position(|n| n.id == id).unwrap_or(0);
        &mut self.nodes[i]
    }

    fn node(&self, id: u64) -> &Node {
        let i = self.nodes.iter().position(|n| n.id == id).unwrap_or(0);
        &self.nodes[i]
    }

    /// Whether node `id`'s process runs (paused or not).
    pub fn is_up(&self, id: u64) -> bool {
        self.node(id).child.is_some()
    }

    /// Kills node `id` with SIGKILL and reaps it.
    pub fn kill(&mut self, id: u64) -> Result<(), HarnessError> {
        if let Some(mut child) = self.node_mut(id).child.take() {
            // A paused process dies of SIGKILL too.
            child.kill().map_err(|e| HarnessError::io("kill", e))?;
            child.wait().map_err(|e| HarnessError::io("wait", e))?;
        }
        self.node_mut(id).paused = false;
        Ok(())
    }

    /// Sends SIGTERM to node `id` and waits up to `within` for it to exit
    /// by itself; returns how it exited, or `None` if it was still running
    /// then (it is SIGKILLed).
    pub fn terminate(
        &mut self,
        id: u64,
        within: Duration,
    ) -> Result<Option<std::process::ExitStatus>, HarnessError> {
        let Some(mut child) = self.node_mut(id).child.take() else {
            return Ok(None);
        };
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        if unsafe { libc::kill(child.id() as i32, libc::SIGTERM) } != 0 {
            return Err(HarnessError::io("kill", std::io::Error::last_os_error()));
        }
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| HarnessError::io("wait", e))? {
                return Ok(Some(status));
            }
            if std::time::Instant::now() >= deadline {
                child.kill().map_err(|e| HarnessError::io("kill", e))?;
                child.wait().map_err(|e| HarnessError::io("wait", e))?;
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGSTOP (`pause`) or SIGCONT to node `id`.
    pub fn signal_pause(&mut self, id: u64, pause: bool) -> Result<(), HarnessError> {
        let node = self.node_mut(id);
        let Some(child) = &node.child else {
            return Ok(());
        };
        let sig = if pause { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        if unsafe { libc::kill(child.id() as i32, sig) } != 0 {
            return Err(HarnessError::io("kill", std::io::Error::last_os_error()));
        }
        node.paused = pause;
        Ok(())
    }

    /// Fills node `id`'s data directory until the disk is full; returns
    /// the bytes written (the filler stays until [`Cluster::free_disk`]).
    pub fn fill_disk(&self, id: u64) -> Result<u64, HarnessError> {
        let file = self.data_dir(id).join("sampan-check-filler");
        let mut f = std::fs::File::create(&file).map_err(|e| HarnessError::io(&file, e))?;
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(HarnessError::io(&file, e)),
            }
        }
        // The last partial pages: keep writing small pieces until refused.
        while let Ok(n) = f.write(&chunk[..4096]) {
            if n == 0 {
                break;
            }
            written += n as u64;
        }
        Ok(written)
    }

    /// Removes the filler [`Cluster::fill_disk`] wrote.
    pub fn free_disk(&self, id: u64) -> Result<(), HarnessError> {
        let file = self.data_dir(id).join("sampan-check-filler");
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(HarnessError::io(&file, e)),
            _ => Ok(()),
        }
    }

    fn admin(&self) -> Result<&BlockingClient, HarnessError> {
        self.admin
            .as_ref()
            .ok_or_else(|| HarnessError::Setup("the admin client is not connected".into()))
    }

    /// Every reachable node's status of `group`.
    pub fn status(&self, group: u64) -> Result<Vec<GroupStatus>, HarnessError> {
        let all = self
            .admin()?
            .status(group)
            .map_err(|e| HarnessError::Cluster(format!("status of group {group}: {e}")))?;
        Ok(all.into_iter().filter_map(|n| n.status.ok()).collect())
    }

    /// The leader of `group` with the highest term, if a node says it is.
    pub fn leader(&self, group: u64) -> Option<u64> {
        newest_leader(&self.status(group).ok()?).map(|s| s.node)
    }

    /// Runs `sampan-cli` against the cluster; returns its output.
    pub fn cli(&self, group: u64, args: &[&str]) -> Result<String, HarnessError> {
        let out = self
            .cli_command(group, args)
            .output()
            .map_err(|e| HarnessError::io(&self.spec.cli_bin, e))?;
        if !out.status.success() {
            return Err(HarnessError::Command {
                command: format!("sampan-cli --group {group} {}", args.join(" ")),
                detail: format!(
                    "{}: {}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout).trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The `sampan-cli` command line for `args` against the cluster, to
    /// run in the background.
    pub fn cli_command(&self, group: u64, args: &[&str]) -> Command {
        let servers: Vec<String> = self.services().iter().map(|a| a.to_string()).collect();
        let mut cmd = Command::new(&self.spec.cli_bin);
        cmd.arg("--servers")
            .arg(servers.join(","))
            .arg("--group")
            .arg(group.to_string())
            .arg("--timeout-ms")
            .arg("10000")
            .arg("--user")
            .arg(SERVICE_USER)
            .env("SAMPAN_TOKEN", &self.spec.redis_password)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Nodes whose process exited without the harness killing it, with
    /// how it ended; they count as down afterwards.
    pub fn reap_exited(&mut self) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        for node in &mut self.nodes {
            let Some(child) = node.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                out.push((node.id, status.to_string()));
                node.child = None;
                node.paused = false;
            }
        }
        out
    }

    /// Stops every node (SIGCONT first for paused ones, then SIGKILL) and
    /// removes the mounts; the network goes with the [`Network`].
    pub fn stop(&mut self) {
        for id in self.ids() {
            let _ = self.signal_pause(id, false);
            let _ = self.kill(id);
        }
        if let Some(admin) = self.admin.take() {
            admin.close();
        }
        self.links
            .stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        unmount_under(&self.spec.root);
    }

    /// Node `id`'s whole log so far.
    pub fn log_text(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir(id).join("node.log")).unwrap_or_default()
    }

    /// The tail of node `id`'s log.
    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir(id).join("node.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
