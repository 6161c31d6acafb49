//! The verdict in words (a summary per key, and for a violation the
//! window's operations as a table) and as JSON.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use serde_json::{Value, json};

use super::{KeyResult, Operation, Status, Verdict, Window};

/// The longest value shown in a table cell before it is cut.
const CELL_CHARS_MAX: usize = 40;

/// The operations of a window worth showing: the mandatory ones, the
/// optional ones called inside the window, and any the longest partial
/// linearization used (older `info` operations that it did not use are
/// left out: they may apply, but the search did without them).
pub(crate) fn shown_ops(window: &Window, ops: &[Operation]) -> Vec<usize> {
    let used: HashSet<usize> = window
        .mandatory
        .iter()
        .chain(&window.longest)
        .copied()
        .collect();
    window
        .ops
        .iter()
        .copied()
        .filter(|id| used.contains(id) || ops[*id].call >= window.start)
        .collect()
}

/// Per operation of the longest partial linearization, its place (from 1).
pub(crate) fn places(window: &Window) -> HashMap<usize, usize> {
    window
        .longest
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i + 1))
        .collect()
}

/// A value for a cell: JSON, cut to [`CELL_CHARS_MAX`] characters.
pub(crate) fn cell(value: &Value) -> String {
    let text = match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if text.chars().count() <= CELL_CHARS_MAX {
        return text;
    }
    let cut: String = text.chars().take(CELL_CHARS_MAX - 1).collect();
    format!("{cut}…")
}

/// What an operation returned, for a cell.
pub(crate) fn outcome_cell(op: &Operation) -> String {
    match (op.status, &op.output) {
        (Status::Ok, Some(v)) => cell(v),
        (Status::Ok, None) => "ok".into(),
        (Status::Fail, _) => "fail".into(),
        (Status::Info, Some(_)) => "info (unknown)".into(),
        (Status::Info, None) => "never completed".into(),
    }
}

/// The time after `start`, in a unit that fits (times are nanoseconds).
pub(crate) fn relative(time: u64, start: u64) -> String {
    let ns = i128::from(time) - i128::from(start);
    match ns.abs() {
        0..10_000 => format!("{ns:+}ns"),
        10_000..10_000_000 => format!("{:+.1}µs", ns as f64 / 1e3),
        _ => format!("{:+.3}ms", ns as f64 / 1e6),
    }
}

/// The verdict in words. `place` turns an event index into words (e.g.
/// "line 12").
pub fn text_report(verdict: &Verdict, place: &dyn Fn(usize) -> String) -> String {
    let mut out = String::new();
    let ops: usize = verdict.keys.iter().map(|k| k.op_count).sum();
    let info: usize = verdict.keys.iter().map(|k| k.info_ops).sum();
    let failed: usize = verdict.keys.iter().map(|k| k.failed_ops).sum();
    let _ = writeln!(
        out,
        "{:?}: {} keys, {ops} operations ({info} info, {failed} failed), checked in {:.3}s",
        verdict.outcome(),
        verdict.keys.len(),
        verdict.elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "{:<24} {:>8} {:>6} {:>6} {:>9}  result",
        "key", "ops", "info", "failed", "seconds"
    );
    for key in &verdict.keys {
        let result = match &key.result {
            KeyResult::Linearizable => "linearizable",
            KeyResult::NotLinearizable(_) => "NOT LINEARIZABLE",
            KeyResult::Undecided => "undecided (out of time)",
        };
        let _ = writeln!(
            out,
            "{:<24} {:>8} {:>6} {:>6} {:>9.3}  {result}",
            key.key,
            key.op_count,
            key.info_ops,
            key.failed_ops,
            key.elapsed.as_secs_f64()
        );
    }
    for key in &verdict.keys {
        let KeyResult::NotLinearizable(violation) = &key.result else {
            continue;
        };
        let _ = writeln!(out, "\nkey {:?} is not linearizable", key.key);
        for d in &violation.diagnoses {
            let _ = writeln!(out, "  {}", d.describe(&verdict.operations, place));
        }
        match &violation.window {
            Some(w) => window_table(&mut out, verdict, w, place),
            None => {
                let _ = writeln!(out, "  (no window: the search ran out of time)");
            }
        }
    }
    out
}

/// The window as a table.
fn window_table(out: &mut String, verdict: &Verdict, w: &Window, place: &dyn Fn(usize) -> String) {
    let shown = shown_ops(w, &verdict.operations);
    let _ = writeln!(
        out,
        "  shortest failing window: {} operations ({} shown), {} to {} after the first call, from {} state{}",
        w.ops.len(),
        shown.len(),
        relative(w.start, w.start),
        relative(w.end, w.start),
        if w.starts_known {
            "the initial (absent)"
        } else {
            "an unknown"
        },
        if w.minimal {
            ""
        } else {
            " (not minimal: out of time)"
        }
    );
    let _ = writeln!(
        out,
        "  {:>5} {:>8} {:<6} {:<24} {:<24} {:>13} {:>13}  where",
        "order", "process", "f", "in", "out", "call", "return"
    );
    let places = places(w);
    let mandatory: HashSet<usize> = w.mandatory.iter().copied().collect();
    for &id in &shown {
        let op = &verdict.operations[id];
        let order = match places.get(&id) {
            Some(p) => p.to_string(),
            None if w.stuck.contains(&id) => "STUCK".into(),
            None => "-".into(),
        };
        let ret = op.ret.map_or_else(|| "?".into(), |r| relative(r, w.start));
        let optional = if mandatory.contains(&id) {
            ""
        } else {
            " (optional)"
        };
        let _ = writeln!(
            out,
            "  {order:>5} {:>8} {:<6} {:<24} {:<24} {:>13} {:>13}  {}{optional}",
            op.process,
            format!("{:?}", op.f).to_lowercase(),
            cell(&op.input),
            outcome_cell(op),
            relative(op.call, w.start),
            ret,
            place(op.event_call),
        );
    }
    let _ = writeln!(
        out,
        "  order: place in the longest partial linearization found; STUCK: could not be placed before the first pending return"
    );
}

/// The verdict as JSON: `{"outcome", "elapsed_s", "keys": [{"key", "ops",
/// "info_ops", "failed_ops", "elapsed_s", "result", "diagnoses",
/// "window"}]}`.
pub fn json_report(verdict: &Verdict, place: &dyn Fn(usize) -> String) -> Value {
    let keys: Vec<Value> = verdict
        .keys
        .iter()
        .map(|key| {
            let (result, diagnoses, window) = match &key.result {
                KeyResult::Linearizable => ("linearizable", Vec::new(), Value::Null),
                KeyResult::Undecided => ("undecided", Vec::new(), Value::Null),
                KeyResult::NotLinearizable(v) => (
                    "not_linearizable",
                    v.diagnoses
                        .iter()
                        .map(|d| json!(d.describe(&verdict.operations, place)))
                        .collect(),
                    serde_json::to_value(&v.window).unwrap_or(Value::Null),
                ),
            };
            json!({
                "key": key.key,
                "ops": key.op_count,
                "info_ops": key.info_ops,
                "failed_ops": key.failed_ops,
                "elapsed_s": key.elapsed.as_secs_f64(),
                "result": result,
                "diagnoses": diagnoses,
                "window": window,
            })
        })
        .collect();
    json!({
        "outcome": verdict.outcome(),
        "elapsed_s": verdict.elapsed.as_secs_f64(),
        "keys": keys,
    })
}
