//! The harness's network: each node in its own network namespace, joined
//! to the harness (the root namespace) by a veth pair on a bridge, and the
//! faults cut into it with iptables inside the nodes' namespaces, where
//! their packet counters say how much each fault really dropped.
//!
//! Everything made is listed in a registry file
//! (`/run/sampan-check/<pid>`); a later run removes what a crashed run
//! left behind (namespaces, bridge, processes, mounts).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::HarnessError;

/// Where runs list what they made.
const REGISTRY: &str = "/run/sampan-check";

/// The iptables chain of our rules in every node namespace (hooked from
/// INPUT and OUTPUT).
const CHAIN: &str = "SAMPAN";

/// Runs a command; its failure (or absence) is a [`HarnessError::Command`].
pub(crate) fn sh(program: &str, args: &[&str]) -> Result<String, HarnessError> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        let hint = match program {
            "ip" => " (install the package `iproute2`)",
            "iptables" => " (install the package `iptables`)",
            "mount" | "umount" => " (install the package `mount`)",
            _ => "",
        };
        HarnessError::Command {
            command: format!("{program} {}", args.join(" ")),
            detail: format!("cannot run: {e}{hint}"),
        }
    })?;
    if !out.status.success() {
        return Err(HarnessError::Command {
            command: format!("{program} {}", args.join(" ")),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command whose failure only matters as a log line (cleanup).
fn sh_quiet(program: &str, args: &[&str]) {
    if let Err(e) = sh(program, args) {
        log::debug!("cleanup: {e}");
    }
}

/// The namespaces, bridge and addresses of one run.
#[derive(Debug)]
pub struct Network {
    /// The run's number: names and the subnet `10.200.<id>.0/24` carry it.
    pub id: u32,
    nodes: Vec<u64>,
    registry: PathBuf,
}

impl Network {
    /// Removes what crashed runs left, then makes a namespace per node
    /// (ids `nodes`), each with address `10.200.<id>.<node>`, and the
    /// bridge the harness reaches them by (`10.200.<id>.254`). Needs root.
    pub fn create(nodes: &[u64], data_root: &Path) -> Result<Network, HarnessError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(HarnessError::Setup(
                "sampan-check run needs root: it makes network namespaces, iptables rules and tmpfs mounts".into(),
            ));
        }
        sh("ip", &["-V"])?;
        sh("iptables", &["--version"])?;
        std::fs::create_dir_all(REGISTRY).map_err(|e| HarnessError::io(REGISTRY, e))?;
        clean_stale_runs();
        let id = (1..=250)
            .find(|id| {
                !Path::new(&format!("/sys/class/net/sck{id}br")).exists()
                    && !taken_ids().contains(id)
            })
            .ok_or_else(|| HarnessError::Setup("no free run id (250 runs alive?)".into()))?;
        let registry = Path::new(REGISTRY).join(std::process::id().to_string());
        std::fs::write(
            &registry,
            format!("id {id}\nroot {}\n", data_root.display()),
        )
        .map_err(|e| HarnessError::io(&registry, e))?;
        let net = Network {
            id,
            nodes: nodes.to_vec(),
            registry,
        };
        net.build()?;
        Ok(net)
    }

    fn build(&self) -> Result<(), HarnessError> {
        let id = self.id;
        let br = format!("sck{id}br");
        sh("ip", &["link", "add", &br, "type", "bridge"])?;
        sh(
            "ip",
            &["addr", "add", &format!("10.200.{id}.254/24"), "dev", &br],
        )?;
        sh("ip", &["link", "set", &br, "up"])?;
        for &n in &self.nodes {
            let ns = self.namespace(n);
            let (host, peer) = (format!("sck{id}h{n}"), format!("sck{id}p{n}"));
            sh("ip", &["netns", "add", &ns])?;
            sh(
                "ip",
                &["link", "add", &host, "type", "veth", "peer", "name", &peer],
            )?;
            sh("ip", &["link", "set", &peer, "netns", &ns])?;
            sh("ip", &["link", "set", &host, "master", &br, "up"])?;
            let addr = format!("{}/24", self.ip(n));
            sh("ip", &["-n", &ns, "addr", "add", &addr, "dev", &peer])?;
            sh("ip", &["-n", &ns, "link", "set", &peer, "up"])?;
            sh("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            self.ipt(n, &["-N", CHAIN])?;
            self.ipt(n, &["-I", "INPUT", "-j", CHAIN])?;
            self.ipt(n, &["-I", "OUTPUT", "-j", CHAIN])?;
        }
        Ok(())
    }

    /// Node `n`'s namespace.
    pub fn namespace(&self, n: u64) -> String {
        format!("sck{}-n{n}", self.id)
    }

    /// Node `n`'s address.
    pub fn ip(&self, n: u64) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::new(10, 200, self.id as u8, n as u8)
    }

    fn ipt(&self, n: u64, args: &[&str]) -> Result<String, HarnessError> {
        let ns = self.namespace(n);
        let mut all = vec!["netns", "exec", &ns, "iptables", "-w"];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    /// Cuts every link between a node of `a` and a node of `b`, in both
    /// directions, at both ends.
    pub fn partition(&self, a: &[u64], b: &[u64]) -> Result<(), HarnessError> {
        for (side, other) in [(a, b), (b, a)] {
            for &n in side {
                for &m in other {
                    let peer = self.ip(m).to_string();
                    self.ipt(n, &["-A", CHAIN, "-s", &peer, "-j", "DROP"])?;
                    self.ipt(n, &["-A", CHAIN, "-d", &peer, "-j", "DROP"])?;
                }
            }
        }
        Ok(())
    }

    /// Drops each packet between nodes with probability `p`, at the
    /// receiving end (so each loss is counted once).
    pub fn lossy(&self, p: f64) -> Result<(), HarnessError> {
        let subnet = format!("10.200.{}.0/24", self.id);
        let harness = format!("10.200.{}.254", self.id);
        let prob = format!("{p:.3}");
        for &n in &self.nodes {
            // Traffic from the harness (the clients) is not dropped: the
            // fault is between nodes.
            self.ipt(n, &["-A", CHAIN, "-s", &harness, "-j", "RETURN"])?;
            self.ipt(
                n,
                &[
                    "-A",
                    CHAIN,
                    "-s",
                    &subnet,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &prob,
                    "-j",
                    "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// Removes every rule; returns the packets they dropped.
    pub fn heal(&self) -> Result<u64, HarnessError> {
        let mut dropped = 0;
        for &n in &self.nodes {
            let listing = self.ipt(n, &["-L", CHAIN, "-v", "-x", "-n"])?;
            dropped += dropped_packets(&listing);
            self.ipt(n, &["-F", CHAIN])?;
        }
        Ok(dropped)
    }

    /// Removes the namespaces and the bridge (killing what still runs in
    /// them) and the registry entry.
    pub fn destroy(&self) {
        remove_run(self.id);
        let _ = std::fs::remove_file(&self.registry);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// Sums the packet counters of the DROP rules in an `iptables -L -v -x -n`
/// listing.
fn dropped_packets(listing: &str) -> u64 {
    listing
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("DROP"))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The run ids the registry lists.
fn taken_ids() -> Vec<u32> {
    registry_entries()
        .into_iter()
        .map(|(_, id, _)| id)
        .collect()
}

/// (pid, run id, data root) of every registry file.
fn registry_entries() -> Vec<(u32, u32, Option<PathBuf>)> {
    let Ok(dir) = std::fs::read_dir(REGISTRY) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let mut id = None;
        let mut root = None;
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("id", v)) => id = v.parse().ok(),
                Some(("root", v)) => root = Some(PathBuf::from(v)),
                _ => {}
            }
        }
        if let Some(id) = id {
            out.push((pid, id, root));
        }
    }
    out
}

/// Removes what this process's run made (after a signal: the threads
/// that own it will not get to drop it).
pub(crate) fn remove_own_run() {
    let me = std::process::id();
    for (pid, id, root) in registry_entries() {
        if pid == me {
            remove_run(id);
            if let Some(root) = root {
                unmount_under(&root);
            }
            let _ = std::fs::remove_file(Path::new(REGISTRY).join(pid.to_string()));
        }
    }
}

/// Removes what runs whose harness process is gone left behind.
fn clean_stale_runs() {
    for (pid, id, root) in registry_entries() {
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        log::warn!("removing what a crashed sampan-check run (pid {pid}, id {id}) left behind");
        remove_run(id);
        if let Some(root) = root {
            unmount_under(&root);
        }
        let _ = std::fs::remove_file(Path::new(REGISTRY).join(pid.to_string()));
    }
}

/// Kills the processes in run `id`'s namespaces and removes them and its
/// bridge.
fn remove_run(id: u32) {
    let prefix = format!("sck{id}-n");
    let listing = sh("ip", &["netns", "list"]).unwrap_or_default();
    for ns in listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|ns| ns.starts_with(&prefix))
    {
        let pids = sh("ip", &["netns", "pids", ns]).unwrap_or_default();
        for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        sh_quiet("ip", &["netns", "del", ns]);
    }
    // The host ends of the veth pairs go with their peers, but not at
    // once: remove them by name too.
    let links = sh("ip", &["-o", "link", "show"]).unwrap_or_default();
    let host_end = format!("sck{id}h");
    for link in links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name))
        .filter(|name| name.starts_with(&host_end))
    {
        sh_quiet("ip", &["link", "del", link]);
    }
    sh_quiet("ip", &["link", "del", &format!("sck{id}br")]);
}

/// Unmounts every mount point below `root` (the nodes' tmpfs data
/// directories).
pub(crate) fn unmount_under(root: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let root = root.display().to_string();
    for point in mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with(&root))
    {
        sh_quiet("umount", &["-l", point]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_counters_are_summed_from_a_listing() {
        let listing = "Chain SAMPAN (2 references)\n    pkts      bytes target     prot opt in     out     source               destination\n      12      840 DROP       all  --  *      *       10.200.1.2           0.0.0.0/0\n       3      180 DROP       all  --  *      *       0.0.0.0/0            10.200.1.2\n     500    30000 RETURN     all  --  *      *       10.200.1.254         0.0.0.0/0\n";
        assert_eq!(dropped_packets(listing), 15);
    }
}
