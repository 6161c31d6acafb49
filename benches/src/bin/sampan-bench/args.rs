//! The command line: `sampan-bench run [options]` and
//! `sampan-bench compare FILES...`, and the checks on their values.

use crate::error::{BenchError, Result};
use clap::{Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Largest value `--value-size` accepts: the largest value a Sampan KV
/// group stores.
pub const VALUE_SIZE_MAX: usize = 8 << 20;
/// Largest `--keys`: the key lists are held in memory.
pub const KEYS_MAX: u64 = 100_000_000;
/// Most databases (`--groups`): Redis's default `databases`.
pub const GROUPS_MAX: u64 = 16;

/// Measures Sampan (and, over the Redis protocol, redis-server) the same
/// way: throughput, latency percentiles, CPU and disk per operation.
#[derive(Debug, Parser)]
#[command(name = "sampan-bench", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs one benchmark: writes FILE.json and FILE.svg and prints a table.
    Run(Box<RunArgs>),
    /// Compares result files: a Markdown table, each file against the first.
    Compare(CompareArgs),
    /// Draws a result file's chart again (FILE.svg, or --out).
    Plot(PlotArgs),
}

/// `sampan-bench plot`'s arguments.
#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// A result file of `sampan-bench run`.
    pub file: PathBuf,
    /// The SVG to write (default: the result file with `.svg`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `sampan-bench compare`'s arguments.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Result files of `sampan-bench run` (the first is the baseline).
    #[arg(required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
}

/// The commands a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// `SET key value`.
    Set,
    /// `GET key`, after every key was written once.
    Get,
    /// `GET` with probability `--read-ratio`, else `SET` (keys preloaded).
    Mixed,
    /// `APPEND key value`.
    Append,
    /// `INCR key`.
    Incr,
    /// `HSET key f value`.
    Hset,
    /// `HGET key f`, after every key was written once.
    Hget,
    /// `LPUSH key value` and `RPOP key`, alternating.
    List,
    /// `ZADD key score member` (a member among 1,000 per key).
    Zadd,
}

impl Workload {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Set => "set",
            Workload::Get => "get",
            Workload::Mixed => "mixed",
            Workload::Append => "append",
            Workload::Incr => "incr",
            Workload::Hset => "hset",
            Workload::Hget => "hget",
            Workload::List => "list",
            Workload::Zadd => "zadd",
        }
    }
}

/// How keys are drawn from the key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// Zipfian with `--zipf-theta`: a few keys take most requests.
    Zipf,
}

/// How requests travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// RESP2 over TCP to the Redis port.
    Redis,
    /// Sampan's native client to the service port (put/get only).
    Native,
}

/// When a Sampan group acknowledges a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityArg {
    /// After fdatasync on a quorum.
    Sync,
    /// After the page cache on a quorum.
    Async,
}

/// Which node a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Route {
    /// The leader of the connection's database (found with `INFO
    /// replication`: `role:master`).
    Leader,
    /// The addresses in turn (followers forward to the leader).
    RoundRobin,
}

/// `sampan-bench run`'s arguments; they are saved in the result file.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct RunArgs {
    /// The commands to send.
    #[arg(long, value_enum, default_value_t = Workload::Set)]
    pub workload: Workload,
    /// Share of reads in the `mixed` workload (0..=1).
    #[arg(long, default_value_t = 0.9)]
    pub read_ratio: f64,
    /// Bytes per value written.
    #[arg(long, short = 'd', default_value_t = 100)]
    pub value_size: usize,
    /// Distinct keys.
    #[arg(long, short = 'r', default_value_t = 100_000)]
    pub keys: u64,
    /// How keys are drawn.
    #[arg(long, value_enum, default_value_t = Distribution::Uniform)]
    pub distribution: Distribution,
    /// Skew of `--distribution zipf` (0 < theta < 1; YCSB uses 0.99).
    #[arg(long, default_value_t = 0.99)]
    pub zipf_theta: f64,
    /// Connections (Redis protocol).
    #[arg(long, short = 'c', default_value_t = 50)]
    pub clients: usize,
    /// Threads driving the connections (default: one per CPU, at most 8
    /// and at most `--clients`).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Requests in flight per connection (Redis protocol).
    #[arg(long, short = 'P', default_value_t = 1)]
    pub pipeline: usize,
    /// Redis protocol, or Sampan's native client (set, get, mixed only).
    #[arg(long, value_enum, default_value_t = Protocol::Redis)]
    pub protocol: Protocol,
    /// Requests in flight with `--protocol native` (fibers of one client).
    #[arg(long, default_value_t = 2_000)]
    pub in_flight: usize,
    /// Open loop: send this many requests per second in all, on a fixed
    /// schedule, and time each from when it was due (default: closed loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 30)]
    pub duration_secs: u64,
    /// Measure this many requests instead of `--duration-secs`.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Seconds of load before measuring (not recorded).
    #[arg(long, default_value_t = 3)]
    pub warmup_secs: u64,
    /// Start 3 local `sampan-node` processes (the default without `--addr`).
    #[arg(long, conflicts_with = "addr")]
    pub start_cluster: bool,
    /// Drive existing servers instead: Redis ports (or service ports with
    /// `--protocol native`), comma-separated host:port.
    #[arg(long, value_delimiter = ',')]
    pub addr: Vec<String>,
    /// The `sampan-node` binary (default: next to this executable).
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// Durability of the local cluster's groups.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Sync)]
    pub durability: DurabilityArg,
    /// KV groups; Redis database n is group n+1, keys spread by hash.
    #[arg(long, default_value_t = 1)]
    pub groups: u64,
    /// Data directory of the local cluster (default: a temporary one,
    /// removed after).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Password (`AUTH`) of `--addr` servers; not saved in the result.
    #[arg(long)]
    #[serde(skip)]
    pub password: Option<String>,
    /// Process ids of `--addr` servers, for their CPU and disk figures.
    #[arg(long, value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Also count what the block device under this directory wrote
    /// (machine-wide; default: the local cluster's data directory).
    #[arg(long)]
    pub disk_of: Option<PathBuf>,
    /// Which node each connection talks to.
    #[arg(long, value_enum, default_value_t = Route::Leader)]
    pub route: Route,
    /// Cluster id of `--addr` nodes with `--protocol native`.
    #[arg(long, default_value_t = 1)]
    pub cluster_id: u64,
    /// Result file (default `bench-<workload>-<timestamp>.json`); the
    /// chart goes next to it, as `.svg`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Name of this run in `compare` (default: the file name).
    #[arg(long)]
    pub label: Option<String>,
    /// Seed of the key and value choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// No progress bar (for logs).
    #[arg(long)]
    pub quiet: bool,
}

impl RunArgs {
    /// Threads driving the connections.
    pub fn load_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(1, usize::from);
            cpus.clamp(1, 8).min(self.clients)
        })
    }

    /// Whether this run starts its own cluster.
    pub fn local_cluster(&self) -> bool {
        self.addr.is_empty()
    }

    /// Checks every value and how they fit together.
    pub fn validate(&self) -> Result<()> {
        fn u(flag: &'static str, reason: impl Into<String>) -> BenchError {
            BenchError::usage(flag, reason)
        }
        if !(0.0..=1.0).contains(&self.read_ratio) {
            return Err(u(
                "--read-ratio",
                format!("{} is not within 0..=1", self.read_ratio),
            ));
        }
        if self.value_size == 0 || self.value_size > VALUE_SIZE_MAX {
            return Err(u(
                "--value-size",
                format!("{} is not within 1..={VALUE_SIZE_MAX}", self.value_size),
            ));
        }
        if self.keys == 0 || self.keys > KEYS_MAX {
            return Err(u(
                "--keys",
                format!("{} is not within 1..={KEYS_MAX}", self.keys),
            ));
        }
        if !(self.zipf_theta > 0.0 && self.zipf_theta < 1.0) {
            return Err(u(
                "--zipf-theta",
                format!("{} is not within 0 < theta < 1", self.zipf_theta),
            ));
        }
        if self.clients == 0 || self.clients > 10_000 {
            return Err(u(
                "--clients",
                format!("{} is not within 1..=10000", self.clients),
            ));
        }
        if self.pipeline == 0 || self.pipeline > 100_000 {
            return Err(u(
                "--pipeline",
                format!("{} is not within 1..=100000", self.pipeline),
            ));
        }
        if let Some(t) = self.threads
            && (t == 0 || t > self.clients)
        {
            return Err(u(
                "--threads",
                format!("{t} is not within 1..=--clients ({})", self.clients),
            ));
        }
        if self.in_flight == 0 || self.in_flight > 100_000 {
            return Err(u(
                "--in-flight",
                format!("{} is not within 1..=100000", self.in_flight),
            ));
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0 && rate <= 1e8)
        {
            return Err(u(
                "--rate",
                format!("{rate} is not within 0 < rate <= 1e8 ops/s"),
            ));
        }
        match self.requests {
            Some(0) => return Err(u("--requests", "must be at least 1")),
            None if self.duration_secs == 0 => {
                return Err(u("--duration-secs", "must be at least 1"));
            }
            _ => {}
        }
        if self.duration_secs > 86_400 || self.warmup_secs > 86_400 {
            return Err(u(
                "--duration-secs",
                "at most a day (86400), warm-up included",
            ));
        }
        if self.groups == 0 || self.groups > GROUPS_MAX {
            return Err(u(
                "--groups",
                format!("{} is not within 1..={GROUPS_MAX}", self.groups),
            ));
        }
        if self.protocol == Protocol::Redis && (self.clients as u64) < self.groups {
            return Err(u(
                "--clients",
                format!(
                    "{} connections cannot cover {} groups: each connection drives one database",
                    self.clients, self.groups
                ),
            ));
        }
        if self.protocol == Protocol::Native
            && !matches!(
                self.workload,
                Workload::Set | Workload::Get | Workload::Mixed
            )
        {
            return Err(u(
                "--protocol",
                format!(
                    "native does put and get only (workloads set, get, mixed), not {}",
                    self.workload.name()
                ),
            ));
        }
        if self.local_cluster() {
            if !self.pids.is_empty() {
                return Err(u(
                    "--pids",
                    "only with --addr (a local cluster's pids are known)",
                ));
            }
            if self.password.is_some() {
                return Err(u("--password", "only with --addr"));
            }
        } else {
            if self.node_bin.is_some() {
                return Err(u("--node-bin", "only for a local cluster (without --addr)"));
            }
            if self.data_dir.is_some() {
                return Err(u("--data-dir", "only for a local cluster (without --addr)"));
            }
            self.addrs()?;
        }
        if let Some(out) = &self.out {
            let dir = match out.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => std::path::Path::new("."),
            };
            if !dir.is_dir() {
                return Err(u(
                    "--out",
                    format!("{}: no directory {}", out.display(), dir.display()),
                ));
            }
        }
        if let Some(d) = &self.disk_of
            && !d.is_dir()
        {
            return Err(u(
                "--disk-of",
                format!("{} is not a directory", d.display()),
            ));
        }
        Ok(())
    }

    /// The `--addr` values, resolved.
    pub fn addrs(&self) -> Result<Vec<SocketAddr>> {
        let mut out = Vec::new();
        for a in &self.addr {
            let resolved = a
                .to_socket_addrs()
                .map_err(|e| BenchError::usage("--addr", format!("{a}: {e}")))?
                .next()
                .ok_or_else(|| BenchError::usage("--addr", format!("{a}: no address")))?;
            out.push(resolved);
        }
        if out.is_empty() {
            return Err(BenchError::usage("--addr", "no address given"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> RunArgs {
        let argv = std::iter::once("sampan-bench").chain(line.split_whitespace());
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Run(a) => *a,
            Command::Compare(_) | Command::Plot(_) => panic!("not run"),
        }
    }

    #[test]
    fn bad_values_name_their_flag() {
        let cases = [
            ("run --read-ratio 1.5", "--read-ratio"),
            ("run --value-size 0", "--value-size"),
            ("run --keys 0", "--keys"),
            ("run --zipf-theta 1", "--zipf-theta"),
            ("run --clients 0", "--clients"),
            ("run --pipeline 0", "--pipeline"),
            ("run --clients 4 --threads 5", "--threads"),
            ("run --rate 0", "--rate"),
            ("run --requests 0", "--requests"),
            ("run --duration-secs 0", "--duration-secs"),
            ("run --groups 17", "--groups"),
            ("run --groups 4 --clients 2", "--clients"),
            ("run --protocol native --workload zadd", "--protocol"),
            ("run --pids 1,2", "--pids"),
            ("run --addr 127.0.0.1:1 --data-dir /x", "--data-dir"),
            ("run --addr nonsense", "--addr"),
            ("run --out /no/such/dir/x.json", "--out"),
        ];
        for (line, flag) in cases {
            let e = parse(line).validate().expect_err(line).to_string();
            assert!(e.starts_with(flag), "{line}: {e}");
        }
        parse("run").validate().expect("defaults are valid");
    }

    #[test]
    fn start_cluster_and_addr_conflict() {
        let argv = [
            "sampan-bench",
            "run",
            "--start-cluster",
            "--addr",
            "127.0.0.1:6379",
        ];
        assert!(Cli::try_parse_from(argv).is_err());
    }
}
