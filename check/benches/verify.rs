//! How long `sampan-check verify` takes on generated linearizable
//! histories of 100,000 operations (10 keys, 12 processes), with and
//! without `info` operations, printed as a Markdown table:
//!
//! ```sh
//! cargo bench -p sampan-check --bench verify
//! ```
//!
//! `info` operations make the search exponential in the worst case; the
//! last row shows where the 30-second budget runs out (the answer is then
//! "undecided", never "not linearizable").

#[path = "../tests/verify_support/mod.rs"]
mod verify_support;

use std::time::{Duration, Instant};

use sampan_check::verify::{CheckOptions, Outcome, check_events};
use verify_support::hundred_thousand;

#[allow(clippy::print_stdout)]
fn main() {
    println!("| history (100k ops, 10 keys, 12 processes) | verified in | outcome |");
    println!("|---|---:|---|");
    for (info_percent, kinds, limit, what) in [
        (0, 3, 300, "registers, appends, counters; no info"),
        (1, 1, 300, "registers; 1% info"),
        (
            1,
            3,
            30,
            "registers, appends, counters; 1% info; 30 s budget",
        ),
    ] {
        let generated = hundred_thousand(info_percent, kinds);
        let opts = CheckOptions {
            time_limit: Duration::from_secs(limit),
            ..CheckOptions::default()
        };
        let started = Instant::now();
        let outcome = match check_events(&generated.events, &opts) {
            Ok(v) => match v.outcome() {
                Outcome::Linearizable => "linearizable".to_string(),
                Outcome::NotLinearizable => "NOT linearizable (a checker bug)".to_string(),
                Outcome::Undecided => "undecided (out of time)".to_string(),
            },
            Err(e) => format!("bad input: {e}"),
        };
        println!(
            "| {what} | {:.2} s | {outcome} |",
            started.elapsed().as_secs_f64()
        );
    }
}
