//! From events to operations: pairs each process's invoke with its next
//! completion, checks the history's format, and types each operation's
//! arguments and results for the model.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::history::{Event, EventType, Function};

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It happened and returned its output.
    Ok,
    /// It certainly did not happen (the checker leaves it out).
    Fail,
    /// It may or may not have happened, at any time after its call
    /// (also an operation that never completed).
    Info,
}

/// One operation: an invoke and its completion.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Its index in [`super::Verdict::operations`].
    pub id: usize,
    /// The client that acted.
    pub process: u64,
    /// The function.
    pub f: Function,
    /// The key.
    pub key: String,
    /// The invoke's value, as written in the history.
    pub input: Value,
    /// The completion's value, as written (`None` when it never completed).
    pub output: Option<Value>,
    /// How it ended.
    pub status: Status,
    /// The invoke's time.
    pub call: u64,
    /// The completion's time; `None` for an `info` or missing completion
    /// (its effect may come at any time after the call).
    pub ret: Option<u64>,
    /// The invoke's index in the event list.
    pub event_call: usize,
    /// The completion's index in the event list, if any.
    pub event_ret: Option<usize>,
    /// What the model checks (derived from `f`, `input` and `output`).
    pub(crate) kind: OpKind,
}

/// The typed meaning of an operation for the register model. Results that
/// are not known (an `info`) are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum OpKind {
    /// Read; `Some(v)` is what an `ok` returned (`v` `None`: absent).
    Get(Option<Option<Arc<str>>>),
    /// Write a value.
    Put(Arc<str>),
    /// Append a suffix.
    Append(Arc<str>),
    /// If the value is `expected`, replace it with `new`.
    Cas {
        /// The value required (`None`: absent).
        expected: Option<Arc<str>>,
        /// The value written (`None`: remove).
        new: Option<Arc<str>>,
    },
    /// Add `amount`; `result` is the new value an `ok` returned.
    Incr {
        /// The amount added.
        amount: i64,
        /// The value returned, if known.
        result: Option<i128>,
    },
    /// Remove; `count` is whether the `ok` said it removed the key.
    Del {
        /// `Some(true)`: removed one key; `Some(false)`: none; `None`: not said.
        count: Option<bool>,
    },
}

impl OpKind {
    /// Whether the operation writes without looking at the value: two in a
    /// row leave the state of the second.
    pub(crate) fn is_blind_write(&self) -> bool {
        matches!(self, OpKind::Put(_) | OpKind::Del { count: None })
    }
}

/// A history that breaks the format's rules. `event` is the index (from 0)
/// of the offending event in the event list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryInputError {
    /// A process invoked while it had an operation open.
    #[error(
        "event {event}: process {process} invokes while its operation invoked at event {open} is still open"
    )]
    InvokeWhileOpen {
        /// The offending event.
        event: usize,
        /// The process.
        process: u64,
        /// The open operation's invoke.
        open: usize,
    },
    /// A process invoked again after an `info`.
    #[error(
        "event {event}: process {process} invokes after its info at event {info} (a client that goes on takes a new process id)"
    )]
    InvokeAfterInfo {
        /// The offending event.
        event: usize,
        /// The process.
        process: u64,
        /// The info.
        info: usize,
    },
    /// A completion for a process with no open operation.
    #[error("event {event}: process {process} completes an operation it never invoked")]
    CompletionWithoutInvoke {
        /// The offending event.
        event: usize,
        /// The process.
        process: u64,
    },
    /// A completion whose `f` or `key` differs from its invoke's.
    #[error(
        "event {event}: process {process} completes {got} but invoked {invoked} at event {open}"
    )]
    CompletionMismatch {
        /// The offending event.
        event: usize,
        /// The process.
        process: u64,
        /// The invoke.
        open: usize,
        /// The invoke's f and key.
        invoked: String,
        /// The completion's f and key.
        got: String,
    },
    /// A process's times went backwards.
    #[error("event {event}: process {process}'s time goes back from {before} to {time}")]
    TimeWentBack {
        /// The offending event.
        event: usize,
        /// The process.
        process: u64,
        /// Its previous event's time.
        before: u64,
        /// This event's time.
        time: u64,
    },
    /// A value that does not fit the function.
    #[error("event {event}: process {process}: {f:?} cannot have the value {value}: {expected}")]
    BadValue {
        /// The offending event.
        event: usize,
        /// The process.
        process: u64,
        /// The function.
        f: Function,
        /// The value, as JSON.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
}

impl HistoryInputError {
    /// The index of the offending event.
    pub fn event(&self) -> usize {
        match self {
            HistoryInputError::InvokeWhileOpen { event, .. }
            | HistoryInputError::InvokeAfterInfo { event, .. }
            | HistoryInputError::CompletionWithoutInvoke { event, .. }
            | HistoryInputError::CompletionMismatch { event, .. }
            | HistoryInputError::TimeWentBack { event, .. }
            | HistoryInputError::BadValue { event, .. } => *event,
        }
    }
}

/// Per process: what it last did.
#[derive(Default)]
struct ProcessState {
    /// The open operation's invoke: its event, function and key.
    open: Option<(usize, Function, String)>,
    info: Option<usize>,
    time: Option<u64>,
}

/// The format's per-process rules, checked one event at a time: times
/// never go back, one operation open at a time, a completion matches its
/// invoke, nothing after an `info`. [`build`] checks them, and so does a
/// check in parts ([`super::check_file`]), which sees every event once
/// but builds operations key by key.
#[derive(Default)]
pub(crate) struct ProcessRules {
    processes: HashMap<u64, ProcessState>,
}

impl ProcessRules {
    /// Checks the event at `index`; for a completion, returns its
    /// invoke's index.
    pub(crate) fn observe(
        &mut self,
        index: usize,
        event: &Event,
    ) -> Result<Option<usize>, HistoryInputError> {
        let process = event.process;
        let state = self.processes.entry(process).or_default();
        if let Some(before) = state.time
            && event.time < before
        {
            return Err(HistoryInputError::TimeWentBack {
                event: index,
                process,
                before,
                time: event.time,
            });
        }
        state.time = Some(event.time);
        if event.kind == EventType::Invoke {
            if let Some((open, ..)) = state.open {
                return Err(HistoryInputError::InvokeWhileOpen {
                    event: index,
                    process,
                    open,
                });
            }
            if let Some(info) = state.info {
                return Err(HistoryInputError::InvokeAfterInfo {
                    event: index,
                    process,
                    info,
                });
            }
            state.open = Some((index, event.f, event.key.clone()));
            return Ok(None);
        }
        let Some((open, f, key)) = state.open.take() else {
            return Err(HistoryInputError::CompletionWithoutInvoke {
                event: index,
                process,
            });
        };
        if f != event.f || key != event.key {
            return Err(HistoryInputError::CompletionMismatch {
                event: index,
                process,
                open,
                invoked: format!("{f:?} {key:?}"),
                got: format!("{:?} {:?}", event.f, event.key),
            });
        }
        if event.kind == EventType::Info {
            state.info = Some(index);
        }
        Ok(Some(open))
    }
}

/// Pairs invokes with completions, in invoke order. Every operation is
/// returned, `fail`ed ones included (with [`Status::Fail`]).
pub(crate) fn build(events: &[Event]) -> Result<Vec<Operation>, HistoryInputError> {
    let mut ops: Vec<Operation> = Vec::new();
    let mut rules = ProcessRules::default();
    // Invoke event -> operation.
    let mut open_ops: HashMap<usize, usize> = HashMap::new();
    for (index, event) in events.iter().enumerate() {
        let Some(invoke) = rules.observe(index, event)? else {
            open_ops.insert(index, ops.len());
            ops.push(Operation {
                id: ops.len(),
                process: event.process,
                f: event.f,
                key: event.key.clone(),
                input: event.value.clone(),
                output: None,
                status: Status::Info,
                call: event.time,
                ret: None,
                event_call: index,
                event_ret: None,
                kind: OpKind::Del { count: None },
            });
            continue;
        };
        let Some(open) = open_ops.remove(&invoke) else {
            continue;
        };
        let op = &mut ops[open];
        op.output = Some(event.value.clone());
        op.event_ret = Some(index);
        match event.kind {
            EventType::Ok => {
                op.status = Status::Ok;
                op.ret = Some(event.time);
            }
            EventType::Fail => {
                op.status = Status::Fail;
                op.ret = Some(event.time);
            }
            _ => {}
        }
    }
    for op in &mut ops {
        op.kind = kind_of(op, &events[op.event_ret.unwrap_or(op.event_call)])?;
    }
    Ok(ops)
}

/// Types an operation's values. `last` is its completion (or its invoke
/// when it has none), named in errors.
fn kind_of(op: &Operation, last: &Event) -> Result<OpKind, HistoryInputError> {
    let index = op.event_ret.unwrap_or(op.event_call);
    let bad = |value: &Value, expected: &'static str| HistoryInputError::BadValue {
        event: index,
        process: op.process,
        f: op.f,
        value: value.to_string(),
        expected,
    };
    let ok_output = if op.status == Status::Ok {
        Some(&last.value)
    } else {
        None
    };
    Ok(match op.f {
        Function::Get => match ok_output {
            Some(v) => OpKind::Get(Some(
                text_or_null(v).ok_or_else(|| bad(v, "a string or null"))?,
            )),
            None => OpKind::Get(None),
        },
        Function::Put => match text_or_null(&op.input) {
            Some(Some(v)) => OpKind::Put(v),
            _ => return Err(bad(&op.input, "a string")),
        },
        Function::Append => match text_or_null(&op.input) {
            Some(Some(v)) => OpKind::Append(v),
            _ => return Err(bad(&op.input, "a string")),
        },
        Function::Cas => {
            let pair = op.input.as_array().filter(|a| a.len() == 2);
            let parts = pair.and_then(|a| Some((text_or_null(&a[0])?, text_or_null(&a[1])?)));
            match parts {
                Some((expected, new)) => OpKind::Cas { expected, new },
                None => return Err(bad(&op.input, "[expected, new], each a string or null")),
            }
        }
        Function::Incr => {
            let amount = match &op.input {
                Value::Null => 1,
                v => v
                    .as_i64()
                    .ok_or_else(|| bad(v, "an integer amount or null"))?,
            };
            let result = match ok_output {
                Some(v) => {
                    Some(integer(v).ok_or_else(|| bad(v, "an integer or its decimal string"))?)
                }
                None => None,
            };
            OpKind::Incr { amount, result }
        }
        Function::Del => {
            let count = match ok_output {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_u64() {
                    Some(0) => Some(false),
                    Some(1) => Some(true),
                    _ => return Err(bad(v, "0, 1 or null")),
                },
            };
            OpKind::Del { count }
        }
    })
}

/// A string value (`Some(Some)`), `null` (`Some(None)`), or not a value
/// (`None`). An integer is taken as its decimal string, as Redis stores it.
fn text_or_null(v: &Value) -> Option<Option<Arc<str>>> {
    match v {
        Value::Null => Some(None),
        Value::String(s) => Some(Some(Arc::from(s.as_str()))),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(Some(Arc::from(n.to_string()))),
        _ => None,
    }
}

/// An integer, or the decimal string of one.
fn integer(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        Value::String(s) => parse_integer(s),
        _ => None,
    }
}

/// Parses a decimal integer as Redis accepts it for INCR (no spaces, no
/// `+`, fits in 64 bits).
pub(crate) fn parse_integer(s: &str) -> Option<i128> {
    if s.is_empty() || s.starts_with('+') || s.trim() != s {
        return None;
    }
    s.parse::<i64>().ok().map(i128::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(process: u64, kind: EventType, f: Function, key: &str, value: Value, time: u64) -> Event {
        Event {
            process,
            kind,
            f,
            key: key.into(),
            value,
            time,
            node: None,
            error: None,
        }
    }

    #[test]
    fn invoke_and_completion_pair_and_missing_completion_is_info() {
        let events = vec![
            ev(1, EventType::Invoke, Function::Put, "a", json!("x"), 1),
            ev(2, EventType::Invoke, Function::Get, "a", Value::Null, 2),
            ev(1, EventType::Ok, Function::Put, "a", json!("x"), 3),
            ev(2, EventType::Ok, Function::Get, "a", json!("x"), 4),
            ev(1, EventType::Invoke, Function::Incr, "b", Value::Null, 5),
        ];
        let ops = build(&events).expect("valid");
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[1].kind, OpKind::Get(Some(Some(Arc::from("x")))));
        assert_eq!(ops[2].status, Status::Info);
        assert_eq!(ops[2].ret, None);
        assert_eq!(
            ops[2].kind,
            OpKind::Incr {
                amount: 1,
                result: None
            }
        );
    }

    #[test]
    fn format_violations_are_named() {
        let twice = vec![
            ev(1, EventType::Invoke, Function::Get, "a", Value::Null, 1),
            ev(1, EventType::Invoke, Function::Get, "a", Value::Null, 2),
        ];
        assert!(matches!(
            build(&twice),
            Err(HistoryInputError::InvokeWhileOpen { event: 1, .. })
        ));
        let after_info = vec![
            ev(1, EventType::Invoke, Function::Get, "a", Value::Null, 1),
            ev(1, EventType::Info, Function::Get, "a", Value::Null, 2),
            ev(1, EventType::Invoke, Function::Get, "a", Value::Null, 3),
        ];
        assert!(matches!(
            build(&after_info),
            Err(HistoryInputError::InvokeAfterInfo { event: 2, .. })
        ));
        let mismatch = vec![
            ev(1, EventType::Invoke, Function::Get, "a", Value::Null, 1),
            ev(1, EventType::Ok, Function::Get, "b", Value::Null, 2),
        ];
        assert!(matches!(
            build(&mismatch),
            Err(HistoryInputError::CompletionMismatch { event: 1, .. })
        ));
        let back = vec![
            ev(1, EventType::Invoke, Function::Get, "a", Value::Null, 5),
            ev(1, EventType::Ok, Function::Get, "a", Value::Null, 4),
        ];
        assert!(matches!(
            build(&back),
            Err(HistoryInputError::TimeWentBack { event: 1, .. })
        ));
        let bad_cas = vec![ev(
            1,
            EventType::Invoke,
            Function::Cas,
            "a",
            json!(["x"]),
            1,
        )];
        assert!(matches!(
            build(&bad_cas),
            Err(HistoryInputError::BadValue { event: 0, .. })
        ));
    }
}
