//! The nemesis: faults applied to the running cluster on a seeded
//! schedule, each healed before the next, each counted with the evidence
//! that it really happened (packets dropped, bytes that filled a disk, a
//! snapshot or membership change still running when its node died).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::HarnessError;
use super::cluster::{Cluster, GROUPS, newest_leader};
use crate::rng::Rng;

/// The kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL a group's leader, restart it later.
    KillLeader,
    /// SIGKILL a follower, restart it later.
    KillFollower,
    /// Ask a node for a snapshot and SIGKILL it while it writes one.
    KillSnapshot,
    /// Start removing a member and SIGKILL the leader meanwhile.
    KillMembership,
    /// SIGSTOP a leader for longer than the election timeout, then SIGCONT.
    Pause,
    /// Cut the network into two sides (iptables in the namespaces).
    Partition,
    /// Drop a share of the packets between nodes.
    Loss,
    /// Delay, reorder and duplicate frames between nodes (the proxies).
    Delay,
    /// Hand a group's leadership to another voter.
    Transfer,
    /// Remove a member, then add it back.
    Membership,
    /// Fill a node's data directory (a tmpfs) until it is full.
    DiskFull,
    /// Restart every node in turn, each stopped by SIGTERM (it hands its
    /// leaderships over, then exits) and started again once it is gone.
    RollingRestart,
    /// A user's shell command (`--fault-apply`, healed by `--fault-heal`).
    Command,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 12] = [
        FaultKind::KillLeader,
        FaultKind::KillFollower,
        FaultKind::KillSnapshot,
        FaultKind::KillMembership,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Loss,
        FaultKind::Delay,
        FaultKind::Transfer,
        FaultKind::Membership,
        FaultKind::DiskFull,
        FaultKind::RollingRestart,
    ];

    /// The kind's name on the command line and in the summary.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillLeader => "kill-leader",
            FaultKind::KillFollower => "kill-follower",
            FaultKind::KillSnapshot => "kill-snapshot",
            FaultKind::KillMembership => "kill-membership",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Loss => "loss",
            FaultKind::Delay => "delay",
            FaultKind::Transfer => "transfer",
            FaultKind::Membership => "membership",
            FaultKind::DiskFull => "disk-full",
            FaultKind::RollingRestart => "rolling-restart",
            FaultKind::Command => "command",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultKind, String> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault '{s}'; the kinds are {}", names.join(", "))
            })
    }
}

/// Runs `command` with `sh -c`; its output, or why it failed.
fn shell(command: &str) -> Result<String, HarnessError> {
    super::net::sh("sh", &["-c", command])
}

/// One fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// Its kind.
    pub kind: FaultKind,
    /// What it was done to, in words.
    pub target: String,
    /// When it began and was healed, on the history's clock (ns).
    pub start: u64,
    /// When it was healed.
    pub end: u64,
    /// The evidence it took effect: packets dropped, bytes written, ...
    pub evidence: String,
    /// Whether the evidence shows it took effect.
    pub effective: bool,
    /// Packets its iptables rules dropped (partitions, loss).
    pub packets_dropped: u64,
}

/// Totals of one kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindTotals {
    /// Faults applied.
    pub applied: u64,
    /// Those whose evidence shows they took effect.
    pub effective: u64,
    /// Packets dropped (partitions, loss).
    pub packets_dropped: u64,
}

/// What the progress display reads while the nemesis works.
#[derive(Default)]
pub struct NemesisStatus {
    /// Faults applied so far.
    pub faults: AtomicU64,
    /// The fault now applied, if any.
    pub current: Mutex<String>,
}

/// The nemesis's state.
pub struct Nemesis {
    rng: Rng,
    kinds: Vec<FaultKind>,
    cycle: Vec<FaultKind>,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    status: Arc<NemesisStatus>,
    /// Every fault, in order.
    pub records: Vec<FaultRecord>,
    /// Node processes that exited without being killed by the nemesis.
    pub crashes: Vec<String>,
    /// Members removed and not yet added back: (group, node).
    removed: Vec<(u64, u64)>,
    /// Operations the clients completed `ok` so far (what a rolling
    /// restart checks service with).
    served: Option<Arc<dyn Fn() -> u64 + Send + Sync>>,
}

impl Nemesis {
    /// A nemesis choosing among `kinds` with `seed`; `clock` is the
    /// history's.
    pub fn new(
        kinds: Vec<FaultKind>,
        seed: u64,
        clock: Arc<dyn Fn() -> u64 + Send + Sync>,
        status: Arc<NemesisStatus>,
    ) -> Nemesis {
        Nemesis {
            rng: Rng::new(seed),
            kinds,
            cycle: Vec::new(),
            clock,
            status,
            records: Vec::new(),
            crashes: Vec::new(),
            removed: Vec::new(),
            served: None,
        }
    }

    /// Tells the nemesis how many operations the clients completed `ok`
    /// so far: a rolling restart then requires some while each node is
    /// down.
    pub fn count_served(&mut self, served: Arc<dyn Fn() -> u64 + Send + Sync>) {
        self.served = Some(served);
    }

    /// Applies faults, one at a time with quiet gaps, until `until`. Kinds
    /// come in seeded rounds in which each appears once, so a short run
    /// still has every kind.
    pub fn run_until(&mut self, cluster: &mut Cluster, until: Instant) -> Result<(), HarnessError> {
        let election = cluster.election_timeout();
        while Instant::now() + election * 3 < until {
            if self.cycle.is_empty() {
                self.cycle = self.kinds.clone();
                self.rng.shuffle(&mut self.cycle);
            }
            let Some(kind) = self.cycle.pop() else {
                return Ok(());
            };
            self.apply(cluster, kind)?;
            self.check_crashes(cluster)?;
            let quiet = self.rng.between(
                election.as_millis() as u64 / 2,
                2 * election.as_millis() as u64,
            );
            std::thread::sleep(Duration::from_millis(quiet));
        }
        Ok(())
    }

    /// How long a fault holds: 1.5 to 3 election timeouts.
    fn hold(&mut self, cluster: &Cluster) -> Duration {
        let e = cluster.election_timeout().as_millis() as u64;
        Duration::from_millis(self.rng.between(e * 3 / 2, e * 3))
    }

    fn pick_group(&mut self) -> u64 {
        GROUPS[self.rng.below(GROUPS.len() as u64) as usize].0
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            Some(items[self.rng.below(items.len() as u64) as usize])
        }
    }

    fn leader_or_any(&mut self, cluster: &Cluster, group: u64) -> u64 {
        match cluster.leader(group) {
            Some(l) => l,
            None => {
                let ids = cluster.ids();
                self.pick(&ids).unwrap_or(1)
            }
        }
    }

    /// A voter of `group` other than its leader: one that holds the
    /// leader's committed log when some do (a transfer to it can succeed),
    /// else any other voter, else any other node.
    fn follower(&mut self, cluster: &Cluster, group: u64) -> u64 {
        let status = cluster.status(group).unwrap_or_default();
        let leader = newest_leader(&status);
        let leader_id = leader.map(|l| l.node);
        let voters: Vec<u64> = leader
            .map(|l| l.voters.iter().copied().filter(|&n| n != l.node).collect())
            .unwrap_or_default();
        let caught_up: Vec<u64> = status
            .iter()
            .filter(|s| voters.contains(&s.node))
            .filter(|s| leader.is_some_and(|l| s.index_last >= l.index_commit))
            .map(|s| s.node)
            .collect();
        let others: Vec<u64> = cluster
            .ids()
            .into_iter()
            .filter(|n| Some(*n) != leader_id)
            .collect();
        let choice = [caught_up, voters, others]
            .into_iter()
            .find(|c| !c.is_empty());
        self.pick(&choice.unwrap_or_default()).unwrap_or(1)
    }

    fn apply(&mut self, cluster: &mut Cluster, kind: FaultKind) -> Result<(), HarnessError> {
        let start = (self.clock)();
        self.status.faults.fetch_add(1, Ordering::Relaxed);
        let hold = self.hold(cluster);
        let group = self.pick_group();
        let set_current = |s: &NemesisStatus, text: String| {
            if let Ok(mut c) = s.current.lock() {
                *c = text;
            }
        };
        set_current(&self.status, kind.name().to_string());
        let mut dropped = 0;
        let (target, evidence, effective) = match kind {
            FaultKind::KillLeader | FaultKind::KillFollower => {
                let n = if kind == FaultKind::KillLeader {
                    self.leader_or_any(cluster, group)
                } else {
                    self.follower(cluster, group)
                };
                let was_up = cluster.is_up(n);
                cluster.kill(n)?;
                std::thread::sleep(hold);
                cluster.spawn(n)?;
                (
                    format!("node {n} (group {group})"),
                    format!("SIGKILL, down {} ms", hold.as_millis()),
                    was_up,
                )
            }
            FaultKind::KillSnapshot => {
                let n = self.pick(&cluster.ids()).unwrap_or(1);
                let at = cluster.service(n).to_string();
                let cli = cluster.cli_command(group, &["snapshot", "--at", &at]);
                let job = std::thread::spawn(move || {
                    let mut cli = cli;
                    cli.output()
                });
                std::thread::sleep(Duration::from_millis(self.rng.between(0, 20)));
                let running = !job.is_finished();
                cluster.kill(n)?;
                let _ = job.join();
                // A snapshot being written lives in a `.tmp` directory
                // until it is complete: one left behind is a snapshot the
                // kill cut in half (recovery must ignore it).
                let snapshots = cluster
                    .data_dir(n)
                    .join(format!("group-{group}"))
                    .join("snapshot");
                let torn = std::fs::read_dir(&snapshots)
                    .map(|d| {
                        d.flatten()
                            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
                            .count()
                    })
                    .unwrap_or(0);
                std::thread::sleep(hold);
                cluster.spawn(n)?;
                (
                    format!("node {n} (group {group})"),
                    match (running, torn) {
                        (true, 0) => "killed while its snapshot request ran".into(),
                        (true, t) => {
                            format!("killed mid-snapshot: {t} half-written snapshot(s) left")
                        }
                        (false, _) => "snapshot had finished before the kill".into(),
                    },
                    running,
                )
            }
            FaultKind::KillMembership => {
                let f = self.follower(cluster, group);
                let l = self.leader_or_any(cluster, group);
                let cli = cluster.cli_command(group, &["remove-member", &f.to_string()]);
                let job = std::thread::spawn(move || {
                    let mut cli = cli;
                    cli.output()
                });
                std::thread::sleep(Duration::from_millis(self.rng.between(0, 30)));
                let running = !job.is_finished();
                cluster.kill(l)?;
                let _ = job.join();
                self.removed.push((group, f));
                std::thread::sleep(hold);
                cluster.spawn(l)?;
                // Whole again before the next fault: faults aimed at a
                // node that is not a member would not take effect.
                self.restore_members_now(cluster, group)?;
                (
                    format!("remove node {f}, kill leader {l} (group {group})"),
                    if running {
                        "leader killed while the change ran".into()
                    } else {
                        "the change had finished before the kill".into()
                    },
                    running,
                )
            }
            FaultKind::Pause => {
                let n = self.leader_or_any(cluster, group);
                let was_up = cluster.is_up(n);
                cluster.signal_pause(n, true)?;
                std::thread::sleep(hold);
                cluster.signal_pause(n, false)?;
                (
                    format!("node {n} (group {group})"),
                    format!("SIGSTOP for {} ms", hold.as_millis()),
                    was_up,
                )
            }
            FaultKind::Partition => {
                let mut ids = cluster.ids();
                self.rng.shuffle(&mut ids);
                // Sometimes the leader alone, else a random minority.
                let minority = if self.rng.below(2) == 0 {
                    vec![self.leader_or_any(cluster, group)]
                } else {
                    let k = 1 + self.rng.below(((ids.len() - 1) / 2) as u64) as usize;
                    ids[..k].to_vec()
                };
                let majority: Vec<u64> = cluster
                    .ids()
                    .into_iter()
                    .filter(|n| !minority.contains(n))
                    .collect();
                cluster.net.partition(&minority, &majority)?;
                std::thread::sleep(hold);
                dropped = cluster.net.heal()?;
                (
                    format!("{minority:?} | {majority:?}"),
                    format!("{dropped} packets dropped"),
                    dropped > 0,
                )
            }
            FaultKind::Loss => {
                let p = self.rng.between(10, 40) as f64 / 100.0;
                cluster.net.lossy(p)?;
                std::thread::sleep(hold * 2);
                dropped = cluster.net.heal()?;
                (
                    format!("all links, p = {p:.2}"),
                    format!("{dropped} packets dropped"),
                    dropped > 0,
                )
            }
            FaultKind::Delay => {
                let links = cluster.links.clone();
                let before = links.counts();
                let delay = self.rng.between(5, 100);
                let jitter = self.rng.between(20, 150);
                let dup = self.rng.between(10, 50);
                links.delay_ms.store(delay, Ordering::Relaxed);
                links.jitter_ms.store(jitter, Ordering::Relaxed);
                links.duplicate_per_mille.store(dup, Ordering::Relaxed);
                std::thread::sleep(hold * 2);
                links.clear();
                let after = links.counts();
                let (d, r, u) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
                (
                    format!("all links: {delay} ms + up to {jitter} ms, {dup} per mille twice"),
                    format!("{d} frames delayed, {r} reordered, {u} duplicated"),
                    d > 0 && r > 0 && u > 0,
                )
            }
            FaultKind::RollingRestart => {
                let (notes, clean) = self.rolling_restart(cluster)?;
                ("every node in turn".into(), notes, clean)
            }
            FaultKind::Transfer => {
                let l = cluster.leader(group);
                let to = self.follower(cluster, group);
                let r = cluster.cli(group, &["transfer-leader", &to.to_string()]);
                std::thread::sleep(hold / 2);
                let now = cluster.leader(group);
                (
                    format!("group {group}: {l:?} -> {to}"),
                    match &r {
                        Ok(_) => format!("done; leader now {now:?}"),
                        Err(e) => format!("refused: {e}"),
                    },
                    r.is_ok(),
                )
            }
            FaultKind::Membership => {
                let f = self.follower(cluster, group);
                let r = cluster.cli(group, &["remove-member", &f.to_string()]);
                self.removed.push((group, f));
                std::thread::sleep(hold);
                self.restore_members_now(cluster, group)?;
                (
                    format!("group {group}: node {f} out and back"),
                    match &r {
                        Ok(_) => "removed, then added back".to_string(),
                        Err(e) => format!("removal refused: {e}"),
                    },
                    r.is_ok(),
                )
            }
            FaultKind::DiskFull => {
                let n = self.pick(&cluster.ids()).unwrap_or(1);
                let bytes = cluster.fill_disk(n)?;
                std::thread::sleep(hold);
                cluster.free_disk(n)?;
                (
                    format!("node {n}"),
                    format!("disk full after {bytes} bytes of filler"),
                    true,
                )
            }
            FaultKind::Command => {
                return Err(HarnessError::Setup(
                    "command faults run with --redis, --fault-apply and --fault-heal".into(),
                ));
            }
        };
        log::info!("fault {kind}: {target}: {evidence}");
        if !effective {
            log::warn!("fault {kind} on {target} did not take effect: {evidence}");
        }
        set_current(&self.status, String::new());
        self.records.push(FaultRecord {
            kind,
            target,
            start,
            end: (self.clock)(),
            evidence,
            effective,
            packets_dropped: dropped,
        });
        Ok(())
    }

    /// Runs the user's fault commands (apply, hold, heal) in seeded
    /// rounds until `until`; a command that fails stops the run.
    pub fn run_commands(
        &mut self,
        commands: &[(String, String)],
        until: Instant,
    ) -> Result<(), HarnessError> {
        let hold = Duration::from_secs(2);
        while Instant::now() + hold * 2 < until {
            let i = self.rng.below(commands.len() as u64) as usize;
            let (apply, heal) = &commands[i];
            let start = (self.clock)();
            self.status.faults.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut c) = self.status.current.lock() {
                *c = format!("command {i}");
            }
            let applied = shell(apply)?;
            std::thread::sleep(Duration::from_millis(self.rng.between(1000, 3000)));
            let healed = shell(heal)?;
            if let Ok(mut c) = self.status.current.lock() {
                c.clear();
            }
            self.records.push(FaultRecord {
                kind: FaultKind::Command,
                target: apply.clone(),
                start,
                end: (self.clock)(),
                evidence: format!(
                    "apply said: {} / heal said: {}",
                    applied.trim(),
                    healed.trim()
                ),
                effective: true,
                packets_dropped: 0,
            });
            std::thread::sleep(Duration::from_millis(self.rng.between(500, 2000)));
        }
        Ok(())
    }

    /// Runs every heal command once more (the end of a run).
    pub fn heal_commands(&mut self, commands: &[(String, String)]) -> Result<(), HarnessError> {
        for (_, heal) in commands {
            shell(heal)?;
        }
        Ok(())
    }

    /// Adds back every member a fault removed.
    pub fn restore_members(&mut self, cluster: &Cluster) -> Result<(), HarnessError> {
        let mut left = Vec::new();
        for (group, node) in std::mem::take(&mut self.removed) {
            let status = cluster.status(group)?;
            // Back only once the incoming configuration has it (during a
            // joint change a removed node may still be an outgoing voter;
            // adding it then is refused as a pending change, and retried).
            let voters = newest_leader(&status).map_or(&[][..], |s| &s.voters[..]);
            if voters.contains(&node) {
                continue;
            }
            let at = cluster.service(node).to_string();
            if let Err(e) = cluster.cli(group, &["add-member", &node.to_string(), "--at", &at]) {
                log::warn!("group {group}: adding node {node} back failed, will retry: {e}");
                left.push((group, node));
            }
        }
        self.removed = left;
        Ok(())
    }

    /// Adds back the removed members of every group, trying for up to ten
    /// election timeouts (`group` may first need a leader; a change may
    /// be refused while another is pending); what is left is added back
    /// when the run heals.
    fn restore_members_now(&mut self, cluster: &Cluster, group: u64) -> Result<(), HarnessError> {
        let until = Instant::now() + cluster.election_timeout() * 10;
        while cluster.leader(group).is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.restore_members(cluster)?;
        while self.members_missing() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(300));
            self.restore_members(cluster)?;
        }
        Ok(())
    }

    /// Stops each node with SIGTERM, waits for it to exit, starts it again
    /// and waits until every group has a leader and its replicas answer,
    /// then the next. Returns what each node did, and whether every one
    /// exited by itself with success, having handed over every leadership
    /// it held (its log says so), and the clients completed operations
    /// while it was down (when the nemesis counts them).
    fn rolling_restart(&mut self, cluster: &mut Cluster) -> Result<(String, bool), HarnessError> {
        let (mut notes, mut clean) = (Vec::new(), true);
        let bound = Duration::from_secs(30);
        for n in cluster.ids() {
            let led: Vec<u64> = GROUPS
                .iter()
                .map(|(g, _)| *g)
                .filter(|g| cluster.leader(*g) == Some(n))
                .collect();
            let logged = cluster.log_text(n).len();
            let served_before = self.served.as_ref().map(|f| f());
            let t = Instant::now();
            let status = cluster.terminate(n, bound)?;
            let took = t.elapsed().as_millis();
            let log = cluster.log_text(n);
            let said = log.get(logged..).unwrap_or_default();
            let handed = said.contains("handed over the leadership of")
                && !said.contains("still leading")
                && !said.contains("lost the lead");
            let exited = status.is_some_and(|s| s.success());
            clean &= exited && handed;
            notes.push(format!(
                "node {n} (leading groups {led:?}): {} in {took} ms, {}",
                match status {
                    Some(s) => format!("exited ({s})"),
                    None => format!("still running after {} s: killed", bound.as_secs()),
                },
                if handed {
                    "leadership handed over"
                } else {
                    "leadership NOT handed over"
                }
            ));
            cluster.spawn(n)?;
            let until = Instant::now() + bound;
            let back = |c: &Cluster| {
                GROUPS.iter().all(|(g, _)| {
                    c.leader(*g).is_some() && c.status(*g).is_ok_and(|s| s.len() == c.ids().len())
                })
            };
            while !back(cluster) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            if let (Some(before), Some(f)) = (served_before, &self.served) {
                let during = f().saturating_sub(before);
                clean &= during > 0;
                notes.push(format!(
                    "{during} operation(s) ok while node {n} stopped and came back"
                ));
            }
        }
        Ok((notes.join("; "), clean))
    }

    /// Whether members remain to be added back.
    pub fn members_missing(&self) -> bool {
        !self.removed.is_empty()
    }

    /// Restarts nodes whose process exited on its own, recording it.
    fn check_crashes(&mut self, cluster: &mut Cluster) -> Result<(), HarnessError> {
        for (id, status) in cluster.reap_exited() {
            let tail = cluster.log_tail(id, 5);
            log::error!("node {id} exited on its own ({status}); log tail:\n{tail}");
            self.crashes
                .push(format!("node {id}: {status}; log tail: {tail}"));
            cluster.spawn(id)?;
        }
        Ok(())
    }

    /// Totals by kind.
    pub fn totals(&self) -> BTreeMap<FaultKind, KindTotals> {
        let mut out: BTreeMap<FaultKind, KindTotals> = BTreeMap::new();
        for r in &self.records {
            let t = out.entry(r.kind).or_default();
            t.applied += 1;
            t.effective += u64::from(r.effective);
            t.packets_dropped += r.packets_dropped;
        }
        out
    }
}
