//! `sampan-bench`: one program that measures Sampan, and over the Redis
//! protocol redis-server, the same way.
//!
//! `sampan-bench run [options]` runs one benchmark (by default against 3
//! local `sampan-node` processes it starts and stops), writes a JSON
//! result and an SVG chart, and prints a table: ops/s, latency
//! percentiles, errors, and each server process's CPU and disk writes per
//! operation. `sampan-bench compare A.json B.json ...` puts results side
//! by side; `sampan-bench plot FILE.json` draws a result's chart again.
//! See `benches/README.md`.

// A benchmark prints its table on stdout and its progress on stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod compare;
mod driver;
mod error;
mod interrupt;
mod native;
mod plot;
mod procstat;
mod record;
mod report;
mod resp;
mod run;
mod target;
mod workload;

use args::{Cli, Command};
use clap::Parser;
use error::BenchError;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    interrupt::install();
    let outcome = match cli.command {
        Command::Run(a) => run::run(*a),
        Command::Compare(c) => compare::run(&c),
        Command::Plot(p) => report::load(&p.file).and_then(|r| {
            let svg = p.out.unwrap_or_else(|| p.file.with_extension("svg"));
            plot::draw(&r, &svg)?;
            println!("chart: {}", svg.display());
            Ok(())
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sampan-bench: {e}");
            match e {
                BenchError::Usage { .. } => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
