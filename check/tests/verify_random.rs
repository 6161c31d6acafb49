//! Property: every history generated from a sequential register (each
//! operation taking effect inside its interval, some `info` applied or
//! not) is accepted; the same history with one read's value replaced by a
//! value never written is rejected.

mod verify_support;

use std::time::Duration;

use proptest::prelude::*;
use sampan_check::verify::{CheckOptions, Outcome, check_events, text_report};
use serde_json::json;
use verify_support::{Shape, generate};

fn opts() -> CheckOptions {
    CheckOptions {
        time_limit: Duration::from_secs(60),
        threads: 1,
        ..CheckOptions::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn generated_histories_are_accepted_and_a_corrupt_read_rejected(
        seed in any::<u64>(),
        ops in 5usize..80,
        processes in 1usize..7,
        keys in 1usize..5,
        info_percent in 0u64..30,
        width_max in 1u64..60,
        pick in any::<usize>(),
    ) {
        let shape = Shape { ops, processes, keys, info_percent, width_max, kinds: 3 };
        let generated = generate(&shape, seed);
        let verdict = check_events(&generated.events, &opts()).expect("generated histories are well-formed");
        let place = |e: usize| format!("event {e}");
        prop_assert_eq!(verdict.outcome(), Outcome::Linearizable, "{}\n{:#?}", text_report(&verdict, &place), generated.events);

        if generated.ok_reads.is_empty() {
            return Ok(());
        }
        let mut corrupt = generated.events.clone();
        let read = generated.ok_reads[pick % generated.ok_reads.len()];
        corrupt[read].value = json!("never-written");
        let verdict = check_events(&corrupt, &opts()).expect("still well-formed");
        prop_assert_eq!(verdict.outcome(), Outcome::NotLinearizable, "read at event {} corrupted", read);
    }
}
