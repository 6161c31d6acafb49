//! `sampan-check`: run a cluster under faults and record a history
//! (`run`), or decide whether a history is linearizable (`verify`).

use clap::{Parser, Subcommand};

/// Fault harness and linearizability checker for Sampan.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a cluster, drive it with clients under a nemesis, record the
    /// history, verify it.
    Run(Box<sampan_check::run::RunArgs>),
    /// Decide whether a history is linearizable (exit 0 yes, 1 no, 2 bad
    /// input or undecided).
    Verify(sampan_check::verify::VerifyArgs),
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let code = match Cli::parse().command {
        Command::Run(args) => sampan_check::run::cli(*args),
        Command::Verify(args) => sampan_check::verify::cli(args),
    };
    std::process::exit(code);
}
