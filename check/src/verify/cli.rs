//! The command line of `sampan-check verify`: reads the history, checks
//! it, prints the verdict and writes the violation page.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CheckOptions, Outcome, check_file, json_report, text_report, violation_html};

/// The command line of `sampan-check verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The history (one JSON event a line).
    pub history: PathBuf,
    /// Give up after this many seconds (undecided keys: exit status 2).
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub time_limit: u64,
    /// Give up on one key after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub key_time_limit: Option<u64>,
    /// Where to draw a violation (default: HISTORY.violation.html beside
    /// the history).
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,
    /// Print the verdict as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Keys checked at once (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Check a history bigger than this in parts of about this size,
    /// split by key on disk beside it (memory use is a few times a part).
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    pub part_mib: u64,
}

/// Runs `sampan-check verify`; returns the exit status: 0 linearizable, 1
/// not, 2 bad input or undecided.
pub fn cli(args: VerifyArgs) -> i32 {
    let mut opts = CheckOptions {
        time_limit: Duration::from_secs(args.time_limit),
        key_time_limit: args.key_time_limit.map(Duration::from_secs),
        ..CheckOptions::default()
    };
    if let Some(threads) = args.threads {
        opts.threads = threads;
    }
    let checked = match check_file(&args.history, &opts, args.part_mib.max(1) << 20) {
        Ok(checked) => checked,
        Err(e) => {
            log::error!("{e}");
            return 2;
        }
    };
    let place = |event: usize| checked.place(event);
    let verdict = &checked.verdict;
    let outcome = verdict.outcome();
    if outcome == Outcome::NotLinearizable {
        let path = args
            .html
            .clone()
            .unwrap_or_else(|| default_html(&args.history));
        match std::fs::write(&path, violation_html(verdict, &place)) {
            Ok(()) => log::info!("violation drawn in {}", path.display()),
            Err(e) => log::error!("cannot write {}: {e}", path.display()),
        }
    }
    let report = if args.json {
        json_report(verdict, &place).to_string()
    } else {
        text_report(verdict, &place)
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{report}") {
        log::error!("cannot print the verdict: {e}");
    }
    outcome.exit_code()
}

/// `h.jsonl` → `h.violation.html`, beside it.
fn default_html(history: &Path) -> PathBuf {
    let stem = history
        .file_stem()
        .map_or_else(|| "history".into(), |s| s.to_string_lossy().into_owned());
    history.with_file_name(format!("{stem}.violation.html"))
}
