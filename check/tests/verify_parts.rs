//! A history checked in parts (split by key on disk, as `verify` does
//! with histories too big for memory) gets the verdict it gets whole: the
//! same outcome and keys, and for a violation the same report, naming the
//! same lines; a format rule broken across keys (so across parts) is
//! still caught, at its line.

mod verify_support;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use sampan_check::history::{Event, Writer};
use sampan_check::verify::{
    CheckFileError, CheckOptions, FileVerdict, HistoryInputError, KeyResult, Outcome, check_file,
    text_report,
};
use serde_json::json;
use verify_support::{Shape, generate};

fn opts() -> CheckOptions {
    CheckOptions {
        time_limit: Duration::from_secs(120),
        threads: 2,
        ..CheckOptions::default()
    }
}

/// Writes `events` to `path` as a history; returns its size in bytes.
fn write(path: &Path, events: &[Event]) -> u64 {
    let mut w = Writer::new(std::io::BufWriter::new(
        std::fs::File::create(path).expect("create history"),
    ));
    for e in events {
        w.write(e).expect("write event");
    }
    w.finish().expect("flush").flush().expect("flush");
    std::fs::metadata(path).expect("size").len()
}

/// The history checked whole and in parts of `part_bytes`.
fn both(path: &Path, part_bytes: u64) -> (FileVerdict, FileVerdict) {
    let whole = check_file(path, &opts(), u64::MAX).expect("checked whole");
    let parts = check_file(path, &opts(), part_bytes).expect("checked in parts");
    assert_eq!(whole.parts, 1);
    assert!(parts.parts > 4, "{} parts", parts.parts);
    (whole, parts)
}

/// The report from the first violation on (the table before it holds
/// timings).
fn violations(v: &FileVerdict) -> String {
    let report = text_report(&v.verdict, &|e| v.place(e));
    match report.find("\nkey \"") {
        Some(at) => report[at..].to_owned(),
        None => String::new(),
    }
}

fn summary(v: &FileVerdict) -> Vec<(String, usize, usize, usize, &'static str)> {
    v.verdict
        .keys
        .iter()
        .map(|k| {
            let result = match k.result {
                KeyResult::Linearizable => "linearizable",
                KeyResult::NotLinearizable(_) => "not",
                KeyResult::Undecided => "undecided",
            };
            (k.key.clone(), k.op_count, k.info_ops, k.failed_ops, result)
        })
        .collect()
}

#[test]
fn a_history_checked_in_parts_gets_the_verdict_it_gets_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shape = Shape {
        ops: 20_000,
        processes: 8,
        keys: 24,
        info_percent: 1,
        width_max: 40,
        kinds: 3,
    };
    let generated = generate(&shape, 20_261_205);
    let path = dir.path().join("history.jsonl");
    let size = write(&path, &generated.events);

    let (whole, parts) = both(&path, size / 8);
    assert_eq!(whole.verdict.outcome(), Outcome::Linearizable);
    assert_eq!(parts.verdict.outcome(), Outcome::Linearizable);
    assert_eq!(summary(&whole), summary(&parts));
    assert!(
        parts.verdict.operations.is_empty(),
        "a key that passed keeps no operations"
    );

    // One read corrupted: the same key fails, with the same report.
    let mut corrupt = generated.events.clone();
    let read = generated.ok_reads[generated.ok_reads.len() * 3 / 4];
    corrupt[read].value = json!("never-written");
    write(&path, &corrupt);
    let (whole, parts) = both(&path, size / 8);
    assert_eq!(whole.verdict.outcome(), Outcome::NotLinearizable);
    assert_eq!(parts.verdict.outcome(), Outcome::NotLinearizable);
    assert_eq!(summary(&whole), summary(&parts));
    let said = violations(&parts);
    assert!(said.contains("\"never-written\""), "{said}");
    // The lines it names are the file's (a part's would differ).
    assert_eq!(violations(&whole), said);
}

#[test]
fn a_rule_broken_across_parts_is_caught_at_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shape = Shape {
        ops: 4_000,
        processes: 4,
        keys: 12,
        info_percent: 0,
        width_max: 10,
        kinds: 3,
    };
    let mut events = generate(&shape, 7).events;
    // A process that gave up on one key (info) and goes on with another,
    // under the same id; its keys may well be in different parts.
    let last = events.last().map_or(0, |e| e.time);
    let info = |kind, key: &str, time| Event {
        process: 999,
        kind,
        f: sampan_check::history::Function::Get,
        key: key.into(),
        value: serde_json::Value::Null,
        time,
        node: None,
        error: None,
    };
    use sampan_check::history::EventType::{Info, Invoke};
    events.push(info(Invoke, "k0", last + 1));
    events.push(info(Info, "k0", last + 2));
    events.push(info(Invoke, "k1", last + 3));
    let path = dir.path().join("history.jsonl");
    let size = write(&path, &events);
    match check_file(&path, &opts(), size / 8) {
        Err(CheckFileError::Input {
            line,
            source: HistoryInputError::InvokeAfterInfo { .. },
            ..
        }) => assert_eq!(line, events.len()),
        other => panic!("expected the invoke after info at its line, got {other:?}"),
    }
}

/// A harness killed mid-write leaves its last line cut short: the
/// history up to it is checked, whole or in parts, with a warning; the
/// same bytes followed by a newline are a line that is not an event, an
/// error.
#[test]
fn a_last_line_cut_short_is_left_out_and_a_bad_whole_line_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shape = Shape {
        ops: 3_000,
        processes: 4,
        keys: 6,
        info_percent: 0,
        width_max: 10,
        kinds: 3,
    };
    let events = generate(&shape, 11).events;
    let path = dir.path().join("history.jsonl");
    let size = write(&path, &events);
    let cut = r#"{"process":1,"type":"invoke","f":"get","ke"#;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    f.write_all(cut.as_bytes()).expect("append");
    drop(f);
    let (whole, parts) = both(&path, size / 8);
    assert_eq!(whole.verdict.outcome(), Outcome::Linearizable);
    assert_eq!(summary(&whole), summary(&parts));
    let ops: usize = whole.verdict.keys.iter().map(|k| k.op_count).sum();
    assert_eq!(ops * 2, events.len(), "every event but the cut line");

    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    f.write_all(b"\n").expect("append");
    drop(f);
    for part_bytes in [u64::MAX, size / 8] {
        match check_file(&path, &opts(), part_bytes) {
            Err(CheckFileError::History(e)) => {
                assert!(
                    e.to_string()
                        .contains(&format!("line {}", events.len() + 1)),
                    "{e}"
                );
            }
            other => panic!("a whole line that is not an event is refused, got {other:?}"),
        }
    }
}
