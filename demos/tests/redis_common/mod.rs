//! Shared by the Redis tests: a cluster of real `sampan-node` processes on
//! free loopback ports, `redis-cli` calls, and a tiny RESP client.
#![allow(dead_code)]

use sampan_demos::config::NodeConfig;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a condition may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// Fails the test unless `redis-cli` is installed, naming the package
/// (a test that skips for a missing tool proves nothing).
pub fn require_redis_cli() {
    let ok = Command::new("redis-cli")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "redis-cli is not installed: install the Debian package redis-tools \
         (apt-get install redis-tools; .ci/run does)"
    );
}

/// Ports this test process handed out already.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Free TCP ports on loopback (bound once, then released), none of them
/// handed out before in this process: the tests of one binary run at
/// once, and two clusters given the same port would answer each other's
/// clients (a node of one then reads as a replica missing the other's
/// writes).
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    // All held bound until the end, so a retry gets a port not yet seen.
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let port = l.local_addr().expect("addr").port();
        if handed.insert(port) {
            ports.push(port);
        }
        held.push(l);
    }
    ports
}

/// A node's `INFO section` text (`None` if it does not answer).
fn info_text(port: u16, section: &str) -> Option<String> {
    let mut c = Resp::connect_with(port, Duration::from_secs(2)).ok()?;
    let Value::Bulk(Some(text)) = c.call(&["INFO", section]).ok()? else {
        return None;
    };
    Some(String::from_utf8_lossy(&text).into_owned())
}

/// The pid of the process answering on `port` (its `INFO server`).
fn served_by(port: u16) -> Option<u32> {
    info_text(port, "server")?
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))?
        .trim()
        .parse()
        .ok()
}

/// A cluster of `sampan-node` processes, killed when dropped.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub redis_ports: Vec<u16>,
    /// Each node's replication port (node-to-node traffic), node `i` at
    /// `i - 1`. A node dials only the nodes of higher id, so every
    /// connection of the highest node is to its own port.
    pub repl_ports: Vec<u16>,
    /// Each node's service port (the native client's), node `i` at `i - 1`.
    pub service_ports: Vec<u16>,
    nodes: Vec<Option<Child>>,
}

impl TestCluster {
    /// `n` nodes (1 or 3) hosting groups 1 and 2, on free ports.
    pub fn start(n: u64) -> TestCluster {
        TestCluster::start_with(n, |_| {})
    }

    /// Like [`TestCluster::start`], with each node's config changed by
    /// `tweak` before it is written.
    pub fn start_with(n: u64, tweak: impl Fn(&mut NodeConfig)) -> TestCluster {
        TestCluster::start_with_ports(n, |cfg, _| tweak(cfg))
    }

    /// Like [`TestCluster::start_with`], `tweak` also told every node's
    /// Redis port (node `i` at `i - 1`).
    pub fn start_with_ports(n: u64, tweak: impl Fn(&mut NodeConfig, &[u16])) -> TestCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = free_ports(3 * n as usize);
        let (repl, rest) = ports.split_at(n as usize);
        let (service, redis) = rest.split_at(n as usize);
        let servers: Vec<String> = (0..n as usize)
            .map(|i| format!("{},127.0.0.1:{},{}", i + 1, repl[i], service[i]))
            .collect();
        let members: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        for i in 1..=n {
            let k = i as usize - 1;
            let mut cfg = NodeConfig::local_demo(i, dir.path().join(format!("node-{i}")));
            cfg.server.servers = servers.join(";");
            cfg.server.replicate_port = repl[k];
            cfg.server.service_port = service[k];
            cfg.redis.port = redis[k];
            for g in &mut cfg.groups {
                g.members = members.join(",");
            }
            tweak(&mut cfg, redis);
            let text = toml::to_string(&cfg).expect("config to toml");
            std::fs::write(dir.path().join(format!("node-{i}.toml")), text).expect("write");
        }
        let mut c = TestCluster {
            dir,
            redis_ports: redis.to_vec(),
            repl_ports: repl.to_vec(),
            service_ports: service.to_vec(),
            nodes: (0..n).map(|_| None).collect(),
        };
        for i in 1..=n {
            c.spawn(i);
        }
        c
    }

    /// Starts one more node, the next id, knowing only itself (its
    /// `servers` lists only its own entry) and running no group: what
    /// `sampan-cli add-node` turns into a member. Returns its id.
    pub fn start_lone_node(&mut self) -> u64 {
        let i = self.nodes.len() as u64 + 1;
        let ports = free_ports(3);
        let (repl, service, redis) = (ports[0], ports[1], ports[2]);
        let mut cfg = NodeConfig::local_demo(i, self.dir.path().join(format!("node-{i}")));
        cfg.server.servers = format!("{i},127.0.0.1:{repl},{service}");
        cfg.server.replicate_port = repl;
        cfg.server.service_port = service;
        cfg.redis.port = redis;
        cfg.groups.clear();
        let text = toml::to_string(&cfg).expect("config to toml");
        std::fs::write(self.config_file(i), text).expect("write");
        self.repl_ports.push(repl);
        self.service_ports.push(service);
        self.redis_ports.push(redis);
        self.nodes.push(None);
        self.spawn(i);
        i
    }

    /// Starts node `i` (again).
    pub fn spawn(&mut self, i: u64) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node-{i}.log")))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_sampan-node"))
            .arg("--config")
            .arg(self.dir.path().join(format!("node-{i}.toml")))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start sampan-node");
        self.nodes[i as usize - 1] = Some(child);
    }

    /// Sends node `i` SIGTERM (without waiting).
    pub fn signal_stop(&self, i: u64) {
        let pid = self.pid(i).expect("node runs");
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    }

    /// Waits for node `i` to exit by itself (failing the test after
    /// [`WAIT`]); returns how it exited.
    pub fn wait_exit(&mut self, i: u64) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        let child = self.nodes[i as usize - 1].as_mut().expect("node runs");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.nodes[i as usize - 1] = None;
                return status;
            }
            assert!(Instant::now() < deadline, "node {i} did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERMs node `i` and waits for it to exit by itself, failing the
    /// test (with the node's log) unless it exits with status 0.
    pub fn stop_cleanly(&mut self, i: u64) {
        self.signal_stop(i);
        let status = self.wait_exit(i);
        assert!(status.success(), "node {i}: {status}\n{}", self.log(i));
    }

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: u64) {
        if let Some(mut c) = self.nodes[i as usize - 1].take() {
            c.kill().expect("kill");
            c.wait().expect("wait");
        }
    }

    /// SIGSTOPs node `i` (a process pause: it keeps its sockets, answers
    /// nothing) if it runs; [`TestCluster::resume`] continues it.
    pub fn pause(&self, i: u64) {
        self.signal(i, libc::SIGSTOP);
        // kill(2) returns once the signal is sent, not once every thread
        // has stopped: a request sent right after could still be answered
        // (legitimately) by the process it was meant to find paused.
        if let Some(pid) = self.pid(i) {
            wait_until("the paused node's threads to stop", || {
                std::fs::read_dir(format!("/proc/{pid}/task"))
                    .map(|tasks| {
                        tasks.flatten().all(|t| {
                            std::fs::read_to_string(t.path().join("stat")).is_ok_and(|st| {
                                // The state follows the command name's ')'.
                                st.rsplit_once(')')
                                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
                            })
                        })
                    })
                    .unwrap_or(false)
            });
        }
    }

    /// SIGCONTs node `i`.
    pub fn resume(&self, i: u64) {
        self.signal(i, libc::SIGCONT);
    }

    fn signal(&self, i: u64, signal: libc::c_int) {
        if let Some(c) = &self.nodes[i as usize - 1] {
            let pid = libc::pid_t::try_from(c.id()).expect("pid fits pid_t");
            // SAFETY: kill(2) with a pid this test spawned and still owns
            // (not yet waited for), so it cannot name another process.
            let rc = unsafe { libc::kill(pid, signal) };
            assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
        }
    }

    /// The process id of node `i`, if it runs.
    pub fn pid(&self, i: u64) -> Option<u32> {
        self.nodes[i as usize - 1].as_ref().map(Child::id)
    }

    /// Fails the test if node `i`'s Redis port is answered by another
    /// process than node `i` (the port was taken before the node bound it).
    fn check_own_port(&self, i: u64) {
        let port = self.port(i);
        if let (Some(served), Some(pid)) = (served_by(port), self.pid(i)) {
            assert_eq!(
                served, pid,
                "node {i}'s Redis port {port} is answered by process {served}, not by node {i} \
                 (pid {pid}): another process took the port first"
            );
        }
    }

    /// The Redis port of node `i`.
    pub fn port(&self, i: u64) -> u16 {
        self.redis_ports[i as usize - 1]
    }

    /// The service address of node `i` (for the native client).
    pub fn service(&self, i: u64) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.service_ports[i as usize - 1]))
    }

    /// The service address of every node, node 1 first.
    pub fn services(&self) -> Vec<SocketAddr> {
        (1..=self.nodes.len() as u64)
            .map(|i| self.service(i))
            .collect()
    }

    /// The config file node `i` was started from.
    pub fn config_file(&self, i: u64) -> PathBuf {
        self.dir.path().join(format!("node-{i}.toml"))
    }

    /// The nodes running.
    pub fn running(&self) -> Vec<u64> {
        (1..=self.nodes.len() as u64)
            .filter(|i| self.nodes[*i as usize - 1].is_some())
            .collect()
    }

    /// A node's log, for failure messages.
    pub fn log(&self, i: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{i}.log"))).unwrap_or_default()
    }

    /// Waits until every running node names the same leader of `group`
    /// and that leader says it leads; returns it.
    pub fn wait_leader(&self, group: u64) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(l) = self.leader(group) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no leader of group {group}; node 1 log:\n{}",
                self.log(1)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn leader(&self, group: u64) -> Option<u64> {
        let mut named = None;
        for i in self.running() {
            let (role, leader) = group_role(self.port(i), group)?;
            self.check_own_port(i);
            if leader == 0 || named.is_some_and(|l| l != leader) {
                return None;
            }
            if leader == i && role != "leader" {
                return None;
            }
            named = Some(leader);
        }
        named
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for c in self.nodes.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `(role, leader)` of `group` from a node's `INFO groups`.
pub fn group_role(port: u16, group: u64) -> Option<(String, u64)> {
    let info = group_info(port, group)?;
    Some((info.get("role")?.clone(), info.get("leader")?.parse().ok()?))
}

/// The fields of `group`'s line in a node's `INFO groups` (`role`,
/// `leader`, `term`, `hibernating`, ...).
pub fn group_info(port: u16, group: u64) -> Option<std::collections::HashMap<String, String>> {
    let text = info_text(port, "groups")?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("group{group}:")))?
        .to_string();
    Some(
        line.split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// Runs `redis-cli -p port args...`; returns stdout, trimmed.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// Polls `f` until it returns `true`, failing the test after [`WAIT`].
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub use sampan_demos::resp::{RespClient as Resp, Value};

/// The directory of a test's scratch files.
pub fn scratch(c: &TestCluster) -> PathBuf {
    c.dir.path().to_path_buf()
}

/// Runs the `sampan-cli` binary against the running nodes' service ports;
/// fails the test unless it succeeds.
pub fn sampan_cli(c: &TestCluster, args: &[&str]) -> std::process::Output {
    let servers: Vec<String> = c
        .running()
        .into_iter()
        .map(|n| c.service(n).to_string())
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_sampan-cli"))
        .arg("--servers")
        .arg(servers.join(","))
        .args(args)
        .output()
        .expect("run sampan-cli");
    assert!(
        out.status.success(),
        "sampan-cli {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Each value of `"field":` in JSON text, as text up to the next , or }.
pub fn json_field<'a>(json: &'a str, field: &str) -> Vec<&'a str> {
    json.match_indices(&format!("\"{field}\":"))
        .map(|(at, m)| {
            let rest = &json[at + m.len()..];
            let end = rest.find([',', '}']).unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}
