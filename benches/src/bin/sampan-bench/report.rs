//! The result of a run: the JSON file (everything needed to compare or
//! redraw it later) and the table printed at the end.

use crate::args::RunArgs;
use crate::error::{BenchError, Result};
use crate::procstat::{DeviceSpent, Spent};
use crate::record::{Outcome, Series};
use crate::target::Kind;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// Version of the result file's layout.
pub const FORMAT: u32 = 1;

/// The machine a run ran on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// `model name` of /proc/cpuinfo.
    pub cpu_model: String,
    /// CPUs this process may use.
    pub nproc: usize,
    /// `uname -r`.
    pub kernel: String,
}

impl Machine {
    /// This machine.
    pub fn here() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, m)| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            cpu_model,
            nproc: std::thread::available_parallelism().map_or(0, usize::from),
            kernel,
        }
    }

    /// One line: `4 x Intel(R) ..., Linux 6.8.0`.
    pub fn line(&self) -> String {
        format!("{} x {}, Linux {}", self.nproc, self.cpu_model, self.kernel)
    }
}

/// The source tree's commit: `git rev-parse --short HEAD`, with `-dirty`
/// when tracked files differ from it.
/// Asked in the executable's directory (the tree it was built from), else
/// in the current one.
pub fn git_commit() -> Option<String> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    exe_dir
        .as_deref()
        .and_then(git_commit_in)
        .or_else(|| git_commit_in(Path::new(".")))
}

fn git_commit_in(dir: &Path) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--short", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dirty = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .is_some_and(|o| o.status.success() && !o.stdout.is_empty());
    if dirty {
        commit.push_str("-dirty");
    }
    Some(commit)
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// 99.99th percentile.
    pub p9999: f64,
    /// Largest.
    pub max: f64,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

impl Percentiles {
    /// The percentiles of `h` (nanoseconds).
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            mean: h.mean() / 1_000.0,
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            p9999: us(h.value_at_quantile(0.9999)),
            max: us(h.max()),
        }
    }
}

/// One second of the measured window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecondPoint {
    /// Seconds since the window began.
    pub second: u64,
    /// Requests due (or sent) in that second and answered without error.
    pub ops: u64,
    /// Those that failed.
    pub errors: u64,
    /// Their median latency, µs.
    pub p50_us: f64,
    /// Their 99th percentile, µs.
    pub p99_us: f64,
}

/// One point of the latency distribution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CdfPoint {
    /// Percentile, 0..=100.
    pub percentile: f64,
    /// Latency at it, µs.
    pub latency_us: f64,
}

/// Counts over the measured window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Totals {
    /// Requests answered without error.
    pub ops: u64,
    /// Requests that failed (error reply, lost connection).
    pub errors: u64,
    /// Reads that found no value.
    pub misses: u64,
    /// Open loop: requests due but never sent (server too far behind).
    pub unsent: u64,
    /// Replies read inside the window, per second, whenever their
    /// requests were due: the rate the server achieved (below `ops_per_sec`
    /// when an open loop outran it).
    #[serde(default)]
    pub answered_per_sec: f64,
    /// Length of the window, seconds.
    pub duration_secs: f64,
    /// `ops / duration_secs`.
    pub ops_per_sec: f64,
}

/// What a run drove.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetInfo {
    /// Local Sampan cluster, Sampan nodes, or another Redis server.
    pub kind: Kind,
    /// Where each database's requests went.
    pub addresses: Vec<String>,
}

/// A result file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// [`FORMAT`].
    pub format: u32,
    /// The run's name in `compare`.
    pub label: String,
    /// The command line (with any password hidden).
    pub command_line: String,
    /// The source tree's commit, if in a git checkout.
    pub git_commit: Option<String>,
    /// The machine.
    pub machine: Machine,
    /// When the run started (UTC, RFC 3339).
    pub started_at: String,
    /// Every option.
    pub options: RunArgs,
    /// What was driven.
    pub target: TargetInfo,
    /// `closed-loop` or `open-loop`.
    pub load: String,
    /// Counts.
    pub totals: Totals,
    /// Latency percentiles, µs.
    pub latency_us: Percentiles,
    /// Per-second series.
    pub series: Vec<SecondPoint>,
    /// The latency distribution (percentile, µs), 0 to 100.
    pub cdf: Vec<CdfPoint>,
    /// The server processes' CPU and disk.
    pub processes: Vec<Spent>,
    /// The benchmark's own CPU.
    pub client: Spent,
    /// What the block device under the data directory wrote (every
    /// process of the machine), if known.
    pub device: Option<DeviceSpent>,
    /// The first few error messages.
    pub error_samples: Vec<String>,
}

/// The percentiles the CDF is drawn at: 0..99.99 evenly on the
/// `-log10(1 - p)` axis (0, 90, 99, 99.9, 99.99 one step apart), then 100.
pub fn cdf_percentiles() -> Vec<f64> {
    let mut ps: Vec<f64> = (0..=200)
        .map(|i| 100.0 * (1.0 - 10f64.powf(-f64::from(i) * 0.02)))
        .collect();
    ps.push(100.0);
    ps
}

/// The CDF points of `h`.
pub fn cdf(h: &Histogram<u64>) -> Vec<CdfPoint> {
    if h.is_empty() {
        return Vec::new();
    }
    cdf_percentiles()
        .into_iter()
        .map(|p| CdfPoint {
            percentile: p,
            latency_us: us(h.value_at_percentile(p)),
        })
        .collect()
}

/// The per-second points of `series`.
pub fn seconds(series: &Series, window_secs: f64) -> Vec<SecondPoint> {
    let full = window_secs.floor() as usize;
    series
        .seconds
        .iter()
        .enumerate()
        // A last, partial second (a run of --requests) is left out of
        // the series: its rate would read low.
        .filter(|(i, _)| *i < full.max(1))
        .map(|(i, s)| match s {
            Some(s) => SecondPoint {
                second: i as u64,
                ops: s.ops,
                errors: s.errors,
                p50_us: if s.hist.is_empty() {
                    0.0
                } else {
                    us(s.hist.value_at_quantile(0.5))
                },
                p99_us: if s.hist.is_empty() {
                    0.0
                } else {
                    us(s.hist.value_at_quantile(0.99))
                },
            },
            None => SecondPoint {
                second: i as u64,
                ops: 0,
                errors: 0,
                p50_us: 0.0,
                p99_us: 0.0,
            },
        })
        .collect()
}

/// Totals of an outcome over a window of `secs`.
pub fn totals(o: &Outcome, secs: f64) -> Totals {
    let ops = o.hist.len();
    Totals {
        ops,
        errors: o.errors,
        misses: o.misses,
        unsent: o.unsent,
        answered_per_sec: o.answered_in_window as f64 / secs.max(1e-9),
        duration_secs: secs,
        ops_per_sec: ops as f64 / secs.max(1e-9),
    }
}

/// A latency in µs, readably: `87 µs`, `1.23 ms`, `2.51 s`.
pub fn fmt_us(v: f64) -> String {
    if v < 1_000.0 {
        format!("{v:.0} µs")
    } else if v < 1_000_000.0 {
        format!("{:.2} ms", v / 1_000.0)
    } else {
        format!("{:.2} s", v / 1_000_000.0)
    }
}

/// A count with thousands separators.
pub fn fmt_count(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

/// The table printed at the end of a run (Markdown).
pub fn table(r: &RunResult) -> String {
    let mut s = String::new();
    let o = &r.options;
    let load = match o.rate {
        Some(rate) => format!("open loop at {} ops/s", fmt_count(rate)),
        None => "closed loop".into(),
    };
    let shape = match o.protocol {
        crate::args::Protocol::Redis => {
            format!(
                "{} connections x {} in flight ({} threads)",
                o.clients,
                o.pipeline,
                o.threads.unwrap_or(o.clients)
            )
        }
        crate::args::Protocol::Native => format!("native client, {} in flight", o.in_flight),
    };
    let _ = writeln!(
        s,
        "{}: {} ({} B values, {} keys, {}), {shape}, {load}, {:.1} s measured",
        r.label,
        o.workload.name(),
        o.value_size,
        fmt_count(o.keys as f64),
        match o.distribution {
            crate::args::Distribution::Uniform => "uniform".to_string(),
            crate::args::Distribution::Zipf => format!("zipf {}", o.zipf_theta),
        },
        r.totals.duration_secs
    );
    let _ = writeln!(
        s,
        "target: {}: {}",
        r.target.kind.name(),
        r.target.addresses.join("; ")
    );
    let _ = writeln!(s);
    let l = &r.latency_us;
    let _ = writeln!(s, "| ops/s | p50 | p90 | p99 | p99.9 | max | errors |");
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        s,
        "| {} | {} | {} | {} | {} | {} | {} |",
        fmt_count(r.totals.ops_per_sec),
        fmt_us(l.p50),
        fmt_us(l.p90),
        fmt_us(l.p99),
        fmt_us(l.p999),
        fmt_us(l.max),
        r.totals.errors
    );
    let mut notes = Vec::new();
    if r.totals.misses > 0 {
        notes.push(format!("{} reads found no value", r.totals.misses));
    }
    if r.totals.unsent > 0 {
        notes.push(format!(
            "{} requests due in the window were never sent: the server fell behind the \
             rate, answering {} ops/s (by reply time)",
            r.totals.unsent,
            fmt_count(r.totals.answered_per_sec)
        ));
    }
    for e in &r.error_samples {
        notes.push(format!("error: {e}"));
    }
    if !notes.is_empty() {
        let _ = writeln!(s);
        for n in notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| process | pid | CPU s | CPU s / 1k ops | write_bytes | write_bytes / op |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for p in r.processes.iter().chain(std::iter::once(&r.client)) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            p.name,
            p.pid,
            opt(p.cpu_secs, |v| format!("{v:.2}")),
            opt(p.cpu_secs_per_1k_ops, |v| format!("{v:.4}")),
            opt(p.write_bytes.map(|b| b as f64), fmt_count),
            opt(p.write_bytes_per_op, |v| format!("{v:.0}")),
        );
    }
    if let Some(d) = &r.device {
        let _ = writeln!(
            s,
            "| device {}, machine-wide (under {}) | - | - | - | {} | {} |",
            d.name,
            d.path.display(),
            opt(d.write_bytes.map(|b| b as f64), fmt_count),
            opt(d.write_bytes_per_op, |v| format!("{v:.0}")),
        );
    }
    let _ = writeln!(
        s,
        "\nwrite_bytes: page cache the process dirtied (/proc/PID/io); a page written \
         again after an fsync counts again, whole. The device row is what reached the disk."
    );
    if let Some(total) = server_cpu_per_1k(r) {
        let _ = writeln!(s, "servers' CPU: {total:.4} s per 1,000 ops");
    }
    s
}

/// The servers' CPU seconds per 1,000 ops, summed (None without any).
pub fn server_cpu_per_1k(r: &RunResult) -> Option<f64> {
    let v: Vec<f64> = r
        .processes
        .iter()
        .filter_map(|p| p.cpu_secs_per_1k_ops)
        .collect();
    (!v.is_empty()).then(|| v.iter().sum())
}

/// The servers' `write_bytes` per op, summed (None without any).
pub fn server_disk_per_op(r: &RunResult) -> Option<f64> {
    let v: Vec<f64> = r
        .processes
        .iter()
        .filter_map(|p| p.write_bytes_per_op)
        .collect();
    (!v.is_empty()).then(|| v.iter().sum())
}

/// Writes `r` to `file`.
pub fn save(r: &RunResult, file: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(r).map_err(|e| BenchError::File {
        file: file.to_path_buf(),
        reason: e.to_string(),
    })?;
    std::fs::write(file, text + "\n").map_err(|e| BenchError::File {
        file: file.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Reads a result file.
pub fn load(file: &Path) -> Result<RunResult> {
    let err = |reason: String| BenchError::File {
        file: file.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(file).map_err(|e| err(e.to_string()))?;
    let r: RunResult =
        serde_json::from_str(&text).map_err(|e| err(format!("not a sampan-bench result: {e}")))?;
    if r.format != FORMAT {
        return Err(err(format!(
            "result format {} (this program reads {FORMAT})",
            r.format
        )));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_counts_and_latencies() {
        assert_eq!(fmt_count(1_234_567.4), "1,234,567");
        assert_eq!(fmt_count(999.0), "999");
        assert_eq!(fmt_us(87.2), "87 µs");
        assert_eq!(fmt_us(1_234.0), "1.23 ms");
        assert_eq!(fmt_us(2_510_000.0), "2.51 s");
    }

    #[test]
    fn cdf_steps_are_log_spaced_to_four_nines() {
        let p = cdf_percentiles();
        assert_eq!(p[0], 0.0);
        assert!((p[50] - 90.0).abs() < 1e-9);
        assert!((p[100] - 99.0).abs() < 1e-9);
        assert!((p[200] - 99.99).abs() < 1e-9);
        assert_eq!(p.last(), Some(&100.0));
    }
}
