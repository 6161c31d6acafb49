//! Three nodes on three hosts: each `sampan-node` runs in a network
//! namespace of its own with its own IP address on a bridge, listens on
//! `0.0.0.0`, and finds the others by host name (each namespace's
//! `/etc/hosts`, which `ip netns exec` puts in place), as containers and
//! Kubernetes pods do. Nothing goes over loopback.
//!
//! The attack: a node is killed and comes back at a *new* address under
//! its old name, as a rescheduled pod does. The other nodes must look the
//! name up again to reach it; if they kept the old address it would
//! never catch up, and the test fails waiting for it.
//!
//! Needs root and `ip` (Debian package `iproute2`); without them the test
//! fails and says so. Every wait is bounded polling for a condition.

mod redis_common;
use redis_common::WAIT;
use sampan::client::{BlockingClient, ClientConfig};
use sampan::config::{Secret, ServiceCredential};
use sampan::raft::Role;
use sampan_demos::config::NodeConfig;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const NODES: u64 = 3;
const REPLICATE_PORT: u16 = 4001;
const SERVICE_PORT: u16 = 5001;
const USER: &str = "ops";
const TOKEN: &str = "hosts-test-admin-token";
/// Keys written before the move and while the moved node is down.
const KEYS: u64 = 100;

/// Runs `ip ARGS`, failing the test with its error output.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `ip`: {e}: install the Debian package iproute2 (scripts/test does)")
    });
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The test's hosts: namespaces `snt<k>-n<i>` joined by bridge
/// `snt<k>br` (address `10.201.<k>.254`, the test's own), node `i` at
/// `10.201.<k>.<i>` until it moves. Removed when dropped.
struct Hosts {
    k: u8,
    dir: tempfile::TempDir,
    /// Each node's current last address byte.
    octet: Vec<u8>,
    nodes: Vec<Option<Child>>,
}

impl Hosts {
    fn create() -> Hosts {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "this test makes network namespaces: run it as root (CI does)"
        );
        ip(&["-V"]);
        let k = (1..=250u8)
            .find(|k| {
                !Path::new(&format!("/sys/class/net/snt{k}br")).exists()
                    && !Path::new(&format!("/run/netns/snt{k}-n1")).exists()
            })
            .expect("a free subnet 10.201.k.0/24");
        let hosts = Hosts {
            k,
            dir: tempfile::tempdir().expect("tempdir"),
            octet: (1..=NODES as u8).collect(),
            nodes: (0..NODES).map(|_| None).collect(),
        };
        let br = format!("snt{k}br");
        ip(&["link", "add", &br, "type", "bridge"]);
        ip(&["addr", "add", &format!("10.201.{k}.254/24"), "dev", &br]);
        ip(&["link", "set", &br, "up"]);
        for n in 1..=NODES {
            let ns = hosts.namespace(n);
            let (outer, inner) = (format!("snt{k}h{n}"), format!("snt{k}p{n}"));
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &outer, "master", &br, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", hosts.ip(n)),
                "dev",
                &inner,
            ]);
            ip(&["-n", &ns, "link", "set", &inner, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        hosts.write_hosts_files();
        hosts
    }

    fn namespace(&self, n: u64) -> String {
        format!("snt{}-n{n}", self.k)
    }

    fn ip(&self, n: u64) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, self.k, self.octet[n as usize - 1])
    }

    fn name(n: u64) -> String {
        format!("node{n}.sampan.test")
    }

    fn service(&self, n: u64) -> SocketAddr {
        SocketAddr::new(self.ip(n).into(), SERVICE_PORT)
    }

    /// Every namespace's `/etc/hosts`: each node's name at its current
    /// address. Written in place (same inode), so a namespace's running
    /// processes see the change.
    fn write_hosts_files(&self) {
        let mut text = String::from("127.0.0.1 localhost\n");
        for n in 1..=NODES {
            text.push_str(&format!("{} {}\n", self.ip(n), Hosts::name(n)));
        }
        for n in 1..=NODES {
            let dir = PathBuf::from(format!("/etc/netns/{}", self.namespace(n)));
            std::fs::create_dir_all(&dir).expect("/etc/netns dir");
            std::fs::write(dir.join("hosts"), &text).expect("hosts file");
        }
    }

    fn config(&self, n: u64) -> PathBuf {
        let mut cfg = NodeConfig::local_demo(n, self.dir.path().join(format!("node-{n}")));
        cfg.server.servers = (1..=NODES)
            .map(|i| format!("{i},{}:{REPLICATE_PORT},{SERVICE_PORT}", Hosts::name(i)))
            .collect::<Vec<_>>()
            .join(";");
        cfg.server.bind = Some("0.0.0.0".parse().expect("ip"));
        cfg.server.replicate_port = REPLICATE_PORT;
        cfg.server.service_port = SERVICE_PORT;
        // Off loopback, protected mode wants both ports authenticated.
        cfg.server.cluster_secret = Some(Secret("hosts-test-cluster-secret".into()));
        cfg.server.credentials = vec![ServiceCredential {
            name: USER.into(),
            token: Secret(TOKEN.into()),
            admin: true,
        }];
        cfg.redis.port = 0;
        for g in &mut cfg.groups {
            g.members = "1,2,3".into();
        }
        let file = self.dir.path().join(format!("node-{n}.toml"));
        std::fs::write(&file, toml::to_string(&cfg).expect("toml")).expect("config");
        file
    }

    fn spawn(&mut self, n: u64) {
        let config = self.config(n);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node-{n}.log")))
            .expect("log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.namespace(n)])
            .arg(env!("CARGO_BIN_EXE_sampan-node"))
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        // SAFETY: prctl is async-signal-safe and touches nothing else: a
        // node dies with the test process even if it crashes.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.nodes[n as usize - 1] = Some(cmd.spawn().expect("ip netns exec sampan-node"));
    }

    fn kill(&mut self, n: u64) {
        if let Some(mut child) = self.nodes[n as usize - 1].take() {
            child.kill().expect("kill");
            child.wait().expect("wait");
        }
    }

    /// Gives node `n`'s namespace a new address and every `/etc/hosts`
    /// the new one for its name.
    fn move_node(&mut self, n: u64, octet: u8) {
        let (ns, dev) = (self.namespace(n), format!("snt{}p{n}", self.k));
        let old = format!("{}/24", self.ip(n));
        ip(&["-n", &ns, "addr", "del", &old, "dev", &dev]);
        self.octet[n as usize - 1] = octet;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", self.ip(n)),
            "dev",
            &dev,
        ]);
        self.write_hosts_files();
    }

    fn client(&self) -> BlockingClient {
        let servers = (1..=NODES).map(|n| self.service(n)).collect();
        let cfg = ClientConfig::new(servers)
            .request_timeout(Duration::from_secs(30))
            .credential(USER, TOKEN)
            .expect("credential");
        BlockingClient::connect(cfg).expect("client")
    }

    /// Polls `f` until it holds, failing the test after [`WAIT`] with
    /// the end of every node's log.
    fn wait(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + WAIT;
        while !f() {
            if std::time::Instant::now() > deadline {
                let tails: Vec<String> = (1..=NODES)
                    .map(|n| {
                        let log = self.log(n);
                        let lines: Vec<&str> = log.lines().collect();
                        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                        format!("--- node {n}:\n{tail}")
                    })
                    .collect();
                panic!("timed out waiting for {what}\n{}", tails.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self, n: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{n}.log"))).unwrap_or_default()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for n in 1..=NODES {
            self.kill(n);
        }
        for n in 1..=NODES {
            let ns = self.namespace(n);
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
            let _ = Command::new("ip")
                .args(["link", "del", &format!("snt{}h{n}", self.k)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("snt{}br", self.k)])
            .output();
    }
}

/// Node `n`'s view of group 1: (role, applied index), if it answers.
fn view(client: &BlockingClient, n: u64) -> Option<(Role, u64)> {
    client
        .status(1)
        .ok()?
        .into_iter()
        .find(|s| s.node == Some(n))
        .and_then(|s| s.status.ok())
        .map(|st| (st.role, st.index_applied))
}

#[test]
fn nodes_on_separate_hosts_find_a_node_that_comes_back_at_a_new_address() {
    let mut hosts = Hosts::create();
    for n in 1..=NODES {
        hosts.spawn(n);
    }
    let client = hosts.client();
    for i in 0..KEYS {
        client
            .put(1, format!("before-{i}"), format!("v{i}"))
            .expect("write before the move");
    }
    // Node 3 is "rescheduled": killed, and back later at a new address
    // under its old name. Writes go on with nodes 1 and 2.
    hosts.kill(3);
    hosts.move_node(3, 33);
    for i in 0..KEYS {
        client
            .put(1, format!("while-{i}"), format!("v{i}"))
            .expect("write while node 3 is away");
    }
    let commit = {
        let mut commit = 0;
        hosts.wait("a leader on node 1 or 2", || {
            commit = (1..=2)
                .filter_map(|n| view(&client, n))
                .filter(|(role, _)| *role == Role::Leader)
                .map(|(_, applied)| applied)
                .max()
                .unwrap_or(0);
            commit > 0
        });
        commit
    };
    hosts.spawn(3);
    // Nodes 1 and 2 dial node 3 (the lower id dials): only by looking its
    // name up again do they reach it at 10.201.k.33.
    let client = hosts.client();
    hosts.wait("node 3, at its new address, to catch up", || {
        view(&client, 3).is_some_and(|(_, applied)| applied >= commit)
    });
    // Node 3 leads and serves every write, the ones it missed included.
    hosts.wait("node 3 to take the lead", || {
        let _ = client.run(|c| async move { c.transfer_leader(1, 3).await });
        view(&client, 3).is_some_and(|(role, _)| role == Role::Leader)
    });
    for prefix in ["before", "while"] {
        for i in 0..KEYS {
            let got = client
                .get(1, format!("{prefix}-{i}"))
                .expect("read through node 3");
            assert_eq!(
                got.as_deref(),
                Some(format!("v{i}").as_bytes()),
                "{prefix}-{i} through node 3"
            );
        }
    }
    // Nothing listened on, or dialled, loopback: the nodes' logs name
    // their peers by host name.
    let log1 = hosts.log(1);
    assert!(!log1.contains("127.0.0.1"), "node 1 used loopback:\n{log1}");
}
