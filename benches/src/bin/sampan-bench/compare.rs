//! `sampan-bench compare A.json B.json ...`: one row per figure, one
//! column per run, and each run's ratio to the first.

use crate::args::CompareArgs;
use crate::error::Result;
use crate::report::{self, RunResult, fmt_count, fmt_us};
use std::fmt::Write as _;

/// One row: its name, how to read a run's value, how to show it.
struct Metric {
    name: &'static str,
    value: fn(&RunResult) -> Option<f64>,
    show: fn(f64) -> String,
}

const METRICS: &[Metric] = &[
    Metric {
        name: "ops/s",
        value: |r| Some(r.totals.ops_per_sec),
        show: fmt_count,
    },
    Metric {
        name: "p50",
        value: |r| Some(r.latency_us.p50),
        show: fmt_us,
    },
    Metric {
        name: "p99",
        value: |r| Some(r.latency_us.p99),
        show: fmt_us,
    },
    Metric {
        name: "p99.9",
        value: |r| Some(r.latency_us.p999),
        show: fmt_us,
    },
    Metric {
        name: "max",
        value: |r| Some(r.latency_us.max),
        show: fmt_us,
    },
    Metric {
        name: "errors",
        value: |r| Some(r.totals.errors as f64),
        show: fmt_count,
    },
    Metric {
        name: "server CPU s / 1k ops",
        value: report::server_cpu_per_1k,
        show: |v| format!("{v:.4}"),
    },
    Metric {
        name: "server write_bytes / op",
        value: report::server_disk_per_op,
        show: |v| format!("{v:.0}"),
    },
    Metric {
        name: "device bytes / op (machine-wide)",
        value: |r| r.device.as_ref().and_then(|d| d.write_bytes_per_op),
        show: |v| format!("{v:.0}"),
    },
    Metric {
        name: "client CPU s / 1k ops",
        value: |r| r.client.cpu_secs_per_1k_ops,
        show: |v| format!("{v:.4}"),
    },
];

/// Reads the files and prints the table.
pub fn run(args: &CompareArgs) -> Result<()> {
    let runs: Vec<RunResult> = args
        .files
        .iter()
        .map(|f| report::load(f))
        .collect::<Result<_>>()?;
    print!("{}", table(&runs));
    Ok(())
}

/// The comparison as Markdown.
pub fn table(runs: &[RunResult]) -> String {
    let mut s = String::new();
    let mut head = String::from("| metric |");
    let mut rule = String::from("|---|");
    for (i, r) in runs.iter().enumerate() {
        let _ = write!(head, " {} |", r.label);
        rule.push_str("---:|");
        if i > 0 {
            let _ = write!(head, " ratio |");
            rule.push_str("---:|");
        }
    }
    let _ = writeln!(s, "{head}\n{rule}");
    for m in METRICS {
        let base = runs.first().and_then(|r| (m.value)(r));
        let mut line = format!("| {} |", m.name);
        for (i, r) in runs.iter().enumerate() {
            let v = (m.value)(r);
            let _ = write!(line, " {} |", v.map_or_else(|| "-".into(), m.show));
            if i > 0 {
                let ratio = match (v, base) {
                    (Some(v), Some(b)) if b > 0.0 => format!("{:.2}", v / b),
                    _ => "-".into(),
                };
                let _ = write!(line, " {ratio} |");
            }
        }
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(
        s,
        "\nratio: each run's value over the first's ({}); for ops/s higher is better, for the others lower.",
        runs.first().map_or("", |r| r.label.as_str())
    );
    for r in runs {
        let _ = writeln!(
            s,
            "- {}: {} {}, {} x {}{}, {:.1} s, commit {}, {}",
            r.label,
            r.options.workload.name(),
            r.target.kind.name(),
            r.options.clients,
            r.options.pipeline,
            r.options
                .rate
                .map_or_else(String::new, |x| format!(", open loop {x} ops/s")),
            r.totals.duration_secs,
            r.git_commit.as_deref().unwrap_or("?"),
            r.machine.line()
        );
    }
    s
}
