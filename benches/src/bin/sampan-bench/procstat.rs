//! What a process has spent: CPU time from `/proc/PID/stat` (user +
//! system) and bytes it caused to be written to storage from
//! `/proc/PID/io` (`write_bytes`), sampled at both ends of the measured
//! window; and the sectors the block device under a directory wrote
//! (`/sys/dev/block/M:m/stat`), machine-wide.
//!
//! `write_bytes` counts pages as they are dirtied: a page written again
//! after an fsync wrote it back counts again, whole (and with large folios,
//! a whole folio), so a log that appends and fsyncs small records shows far
//! more than reaches the disk. The device's counter is what reached it,
//! from every process of the machine.

use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A process measured: its name in the table and its pid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Watched {
    /// `node-1`, `redis-server 4242`, `sampan-bench` ...
    pub name: String,
    /// The process id.
    pub pid: u32,
}

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// User + system CPU seconds so far.
    pub cpu_secs: Option<f64>,
    /// Bytes written to storage so far.
    pub write_bytes: Option<u64>,
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a constant of the system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Reads `pid`'s counters (None for those that cannot be read: the process
/// is gone, or not ours).
pub fn sample(pid: u32) -> Sample {
    Sample {
        cpu_secs: std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| cpu_ticks(&s))
            .map(|t| t as f64 / clock_ticks()),
        write_bytes: std::fs::read_to_string(format!("/proc/{pid}/io"))
            .ok()
            .and_then(|s| write_bytes(&s)),
    }
}

/// utime + stime from a `/proc/PID/stat` line (fields 14 and 15, counted
/// after the command name, which may hold spaces and parentheses).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state); utime is field 14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn write_bytes(io: &str) -> Option<u64> {
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A process's spending over the window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spent {
    /// The process.
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// CPU seconds (user + system) in the window.
    pub cpu_secs: Option<f64>,
    /// CPU seconds per 1,000 measured operations.
    pub cpu_secs_per_1k_ops: Option<f64>,
    /// Bytes written to storage in the window.
    pub write_bytes: Option<u64>,
    /// Bytes written to storage per measured operation.
    pub write_bytes_per_op: Option<f64>,
}

/// What `w` spent between `a` and `b`, over `ops` operations.
pub fn spent(w: &Watched, a: Sample, b: Sample, ops: u64) -> Spent {
    let ops_f = ops.max(1) as f64;
    let cpu = a.cpu_secs.zip(b.cpu_secs).map(|(a, b)| (b - a).max(0.0));
    let wb = a
        .write_bytes
        .zip(b.write_bytes)
        .map(|(a, b)| b.saturating_sub(a));
    Spent {
        name: w.name.clone(),
        pid: w.pid,
        cpu_secs: cpu,
        cpu_secs_per_1k_ops: cpu.map(|c| c * 1_000.0 / ops_f),
        write_bytes: wb,
        write_bytes_per_op: wb.map(|w| w as f64 / ops_f),
    }
}

/// The block device holding a directory.
#[derive(Debug, Clone)]
pub struct Device {
    /// Its kernel name (`vda`, `nvme0n1p2`).
    pub name: String,
    /// The directory asked about.
    pub path: PathBuf,
    stat: PathBuf,
}

/// The block device under `path` (None on a filesystem without one:
/// tmpfs, overlay).
pub fn device_of(path: &Path) -> Option<Device> {
    let dev = std::fs::metadata(path).ok()?.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let dir = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let stat = dir.join("stat");
    if !stat.exists() {
        return None;
    }
    let name = std::fs::read_to_string(dir.join("uevent"))
        .ok()
        .and_then(|u| {
            u.lines()
                .find_map(|l| l.strip_prefix("DEVNAME="))
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("{major}:{minor}"));
    Some(Device {
        name,
        path: path.to_path_buf(),
        stat,
    })
}

impl Device {
    /// Bytes written to the device since boot (sectors of 512 bytes).
    pub fn written(&self) -> Option<u64> {
        let text = std::fs::read_to_string(&self.stat).ok()?;
        let sectors: u64 = text.split_whitespace().nth(6)?.parse().ok()?;
        Some(sectors * 512)
    }
}

/// What a device wrote over the window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceSpent {
    /// The device's name.
    pub name: String,
    /// The directory it was found from.
    pub path: PathBuf,
    /// Bytes written in the window, by every process of the machine.
    pub write_bytes: Option<u64>,
    /// Per measured operation.
    pub write_bytes_per_op: Option<f64>,
}

/// What `d` wrote between readings `a` and `b`, over `ops` operations.
pub fn device_spent(d: &Device, a: Option<u64>, b: Option<u64>, ops: u64) -> DeviceSpent {
    let wb = a.zip(b).map(|(a, b)| b.saturating_sub(a));
    DeviceSpent {
        name: d.name.clone(),
        path: d.path.clone(),
        write_bytes: wb,
        write_bytes_per_op: wb.map(|w| w as f64 / ops.max(1) as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_from_a_stat_line_with_spaces_in_the_name() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 1 1";
        assert_eq!(cpu_ticks(line), Some(300));
        assert_eq!(write_bytes("rchar: 1\nwrite_bytes: 4096\n"), Some(4096));
    }

    #[test]
    fn this_process_can_be_read() {
        let s = sample(std::process::id());
        assert!(s.cpu_secs.is_some());
    }
}
