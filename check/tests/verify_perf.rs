//! Size: linearizable histories of 100k operations over 10 keys and 12
//! processes are decided linearizable (with 1% `info` operations on
//! registers too). How long it takes is `check/benches/verify.rs`'s
//! business, with the case where `info` operations exhaust the budget.

mod verify_support;

use std::time::{Duration, Instant};

use sampan_check::verify::{CheckOptions, Outcome, Verdict, check_events, text_report};
use verify_support::hundred_thousand;

fn run(info_percent: u64, kinds: usize, time_limit: Duration) -> Verdict {
    let started = Instant::now();
    let generated = hundred_thousand(info_percent, kinds);
    let generated_in = started.elapsed();
    let opts = CheckOptions {
        time_limit,
        ..CheckOptions::default()
    };
    let verdict = check_events(&generated.events, &opts).expect("well-formed");
    let place = |e: usize| format!("event {e}");
    eprintln!(
        "{} events, {}% info, {kinds} key kind(s): generated in {:.2}s, verified in {:.2}s\n{}",
        generated.events.len(),
        info_percent,
        generated_in.as_secs_f64(),
        verdict.elapsed.as_secs_f64(),
        text_report(&verdict, &place)
    );
    verdict
}

#[test]
fn hundred_thousand_ops_on_registers_appends_and_counters_without_info() {
    assert_eq!(
        run(0, 3, Duration::from_secs(300)).outcome(),
        Outcome::Linearizable
    );
}

#[test]
fn hundred_thousand_ops_on_registers_with_one_percent_info() {
    assert_eq!(
        run(1, 1, Duration::from_secs(300)).outcome(),
        Outcome::Linearizable
    );
}
