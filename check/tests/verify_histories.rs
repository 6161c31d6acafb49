//! Hand-made histories (in `testdata/`) that the checker must accept or
//! reject, and bad input it must refuse.

use std::path::PathBuf;
use std::time::Duration;

use sampan_check::history::{self, Event, EventType, Function};
use sampan_check::verify::{
    CheckOptions, DiagnosisKind, HistoryInputError, KeyResult, Outcome, Verdict, check_events,
    text_report, violation_html,
};
use serde_json::{Value, json};

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn opts() -> CheckOptions {
    CheckOptions {
        time_limit: Duration::from_secs(60),
        ..CheckOptions::default()
    }
}

fn check_file(name: &str) -> Verdict {
    let events = history::read(&testdata(name)).expect("testdata parses");
    check_events(&events, &opts()).expect("testdata is well-formed")
}

/// The violation of the only failing key, with the report printed for
/// whoever reads a failing test's output.
fn violation(verdict: &Verdict) -> &sampan_check::verify::Violation {
    let place = |e: usize| format!("event {e}");
    eprintln!("{}", text_report(verdict, &place));
    let html = violation_html(verdict, &place);
    assert!(html.contains("<svg"), "the page draws the window");
    let failing: Vec<_> = verdict
        .keys
        .iter()
        .filter_map(|k| match &k.result {
            KeyResult::NotLinearizable(v) => Some(&**v),
            _ => None,
        })
        .collect();
    assert_eq!(failing.len(), 1, "exactly one key fails");
    failing[0]
}

#[test]
fn concurrent_history_with_info_ops_is_accepted() {
    let verdict = check_file("linearizable.jsonl");
    assert_eq!(verdict.outcome(), Outcome::Linearizable, "{verdict:#?}");
    assert_eq!(verdict.keys.len(), 3);
}

#[test]
fn stale_read_is_rejected_with_a_window_ending_at_the_read() {
    let verdict = check_file("stale_read.jsonl");
    assert_eq!(verdict.outcome(), Outcome::NotLinearizable);
    let w = violation(&verdict).window.as_ref().expect("a window");
    assert_eq!(w.end, 60, "the read's return makes it impossible");
    // put 2 then the read: the put of 1 folds into the unknown start.
    assert_eq!(w.mandatory, vec![1, 2]);
    assert!(!w.starts_known);
    assert!(w.minimal);
    assert_eq!(w.longest, vec![1]);
    assert_eq!(w.stuck, vec![2]);
}

#[test]
fn lost_write_is_rejected() {
    let verdict = check_file("lost_write.jsonl");
    assert_eq!(verdict.outcome(), Outcome::NotLinearizable);
    let w = violation(&verdict).window.as_ref().expect("a window");
    assert_eq!(w.end, 80, "the last read of the old value");
}

#[test]
fn duplicate_append_token_is_diagnosed() {
    let verdict = check_file("duplicate_token.jsonl");
    assert_eq!(verdict.outcome(), Outcome::NotLinearizable);
    let v = violation(&verdict);
    assert_eq!(v.diagnoses.len(), 1);
    assert_eq!(v.diagnoses[0].kind, DiagnosisKind::DuplicateToken);
    assert_eq!(v.diagnoses[0].token, "t1.1");
    let place = |e: usize| format!("line {}", e + 1);
    let said = v.diagnoses[0].describe(&verdict.operations, &place);
    assert_eq!(
        said,
        "duplicate token t1.1 in read by process 3 at line 6 (append by process 1 at line 1)"
    );
}

#[test]
fn impossible_cas_is_rejected() {
    let verdict = check_file("impossible_cas.jsonl");
    assert_eq!(verdict.outcome(), Outcome::NotLinearizable);
    violation(&verdict);
}

#[test]
fn incr_that_skips_or_repeats_is_rejected() {
    for name in ["incr_skip.jsonl", "incr_duplicate.jsonl"] {
        let verdict = check_file(name);
        assert_eq!(verdict.outcome(), Outcome::NotLinearizable, "{name}");
        violation(&verdict);
    }
}

#[test]
fn info_write_may_show_later_or_never() {
    for name in ["info_write_shows.jsonl", "info_write_never_shows.jsonl"] {
        assert_eq!(check_file(name).outcome(), Outcome::Linearizable, "{name}");
    }
}

fn ev(process: u64, kind: EventType, f: Function, value: Value, time: u64) -> Event {
    Event {
        process,
        kind,
        f,
        key: "k".into(),
        value,
        time,
        node: None,
        error: None,
    }
}

#[test]
fn token_diagnoses_name_failed_unknown_future_and_lost_tokens() {
    use EventType::*;
    use Function::*;
    let events = vec![
        ev(1, Invoke, Append, json!("t1 "), 10),
        ev(1, Fail, Append, json!("t1 "), 20),
        ev(2, Invoke, Append, json!("t2 "), 30),
        ev(2, Ok, Append, json!("t2 "), 40),
        ev(3, Invoke, Get, Value::Null, 50),
        ev(3, Ok, Get, json!("t1 t9 t4 "), 60),
        ev(4, Invoke, Append, json!("t4 "), 70),
        ev(4, Ok, Append, json!("t4 "), 80),
    ];
    let verdict = check_events(&events, &opts()).expect("well-formed");
    assert_eq!(verdict.outcome(), Outcome::NotLinearizable);
    let kinds: Vec<DiagnosisKind> = violation(&verdict)
        .diagnoses
        .iter()
        .map(|d| d.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            DiagnosisKind::FailedAppend,
            DiagnosisKind::NeverAppended,
            DiagnosisKind::AppendedAfterRead,
            DiagnosisKind::LostToken
        ]
    );
}

#[test]
fn a_failed_read_and_a_failed_write_are_left_out() {
    use EventType::*;
    use Function::*;
    let events = vec![
        ev(1, Invoke, Put, json!("a"), 10),
        ev(1, Fail, Put, json!("a"), 20),
        ev(2, Invoke, Get, Value::Null, 30),
        ev(2, Fail, Get, Value::Null, 40),
        ev(2, Invoke, Get, Value::Null, 50),
        ev(2, Ok, Get, Value::Null, 60),
    ];
    assert_eq!(
        check_events(&events, &opts())
            .expect("well-formed")
            .outcome(),
        Outcome::Linearizable
    );
}

#[test]
fn bad_input_is_refused_naming_the_event() {
    let twice = history::read(&testdata("bad_invoke_twice.jsonl")).expect("parses");
    match check_events(&twice, &opts()) {
        Err(
            e @ HistoryInputError::InvokeWhileOpen {
                event: 1,
                process: 1,
                ..
            },
        ) => {
            assert!(e.to_string().contains("process 1"), "{e}");
        }
        other => panic!("expected InvokeWhileOpen, got {other:?}"),
    }
    let after_info = history::read(&testdata("bad_invoke_after_info.jsonl")).expect("parses");
    assert!(matches!(
        check_events(&after_info, &opts()),
        Err(HistoryInputError::InvokeAfterInfo {
            event: 2,
            process: 1,
            ..
        })
    ));
    for name in ["bad_unknown_f.jsonl", "bad_garbage.jsonl"] {
        match history::read(&testdata(name)) {
            Err(history::HistoryError::Parse { line, .. }) => {
                assert!(line >= 2, "{name}: line {line}")
            }
            other => panic!("{name}: expected a parse error, got {other:?}"),
        }
    }
}

#[test]
fn a_key_out_of_time_is_undecided() {
    use EventType::*;
    use Function::*;
    // Enough steps for the search to read the clock at least once.
    let mut events = Vec::new();
    for i in 0..10_000u64 {
        events.push(ev(1, Invoke, Put, json!(i.to_string()), 4 * i));
        events.push(ev(1, Ok, Put, json!(i.to_string()), 4 * i + 1));
        events.push(ev(2, Invoke, Get, Value::Null, 4 * i + 2));
        events.push(ev(2, Ok, Get, json!(i.to_string()), 4 * i + 3));
    }
    let out_of_time = CheckOptions {
        time_limit: Duration::ZERO,
        ..opts()
    };
    let verdict = check_events(&events, &out_of_time).expect("well-formed");
    assert_eq!(verdict.outcome(), Outcome::Undecided);
    assert_eq!(
        check_events(&events, &opts())
            .expect("well-formed")
            .outcome(),
        Outcome::Linearizable
    );
}
