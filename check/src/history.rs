//! The history format: one JSON object a line, one event each.
//!
//! ```json
//! {"process": 3, "type": "invoke", "f": "append", "key": "k1", "value": "t3.17", "time": 1200345}
//! {"process": 3, "type": "ok",     "f": "append", "key": "k1", "value": "t3.17", "time": 1900012}
//! ```
//!
//! - `process`: the client that acted (a non-negative integer). A process
//!   has at most one operation open. After an `info` it never invokes
//!   again: a client that goes on takes a new process id.
//! - `type`: `"invoke"` when the operation is sent; then one of `"ok"`
//!   (it happened, and `value` is what it returned), `"fail"` (it
//!   certainly did not happen) or `"info"` (it may or may not have
//!   happened, at any time after its invoke). An operation with no
//!   completion by the end of the history counts as `info`.
//! - `f`: `"get"`, `"put"`, `"append"`, `"cas"`, `"incr"` or `"del"`.
//! - `key`: the key, a string. Keys are independent objects: the checker
//!   decides each key on its own.
//! - `value`, by `f` (values are strings, as Redis stores them, or `null`
//!   for "no value"):
//!   - `get`: `null` on the invoke; on `ok`, the value read (`null`:
//!     absent).
//!   - `put`: the value written, on the invoke and the `ok`.
//!   - `append`: the suffix appended, on the invoke and the `ok`. The
//!     harness appends unique tokens, each ending in a space, so a value
//!     is a list of tokens and a duplicate or lost one shows at once.
//!   - `cas`: `[expected, new]` on the invoke and the `ok` (`expected`
//!     `null`: the key must be absent; `new` `null`: remove it). `ok`
//!     means it matched and was applied; a cas that did not match is a
//!     `fail`.
//!   - `incr`: the amount on the invoke (an integer; `null` means 1); on
//!     `ok`, the new value (an integer, or its decimal string).
//!   - `del`: `null` on the invoke; on `ok`, optionally the number of keys
//!     removed (0 or 1), or `null` when not known.
//! - `time`: nanoseconds on a monotonic clock shared by all processes of
//!   the history. Only the order of times matters.
//!
//! Other fields (`node`, `error`, ...) may be present and are ignored by
//! the checker; the harness writes `error` with the reply of a `fail` or
//! `info`.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What an event says about its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The operation was sent.
    Invoke,
    /// It happened; the event's value is what it returned.
    Ok,
    /// It certainly did not happen.
    Fail,
    /// It may or may not have happened.
    Info,
}

/// The operation's function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Function {
    /// Read the key.
    Get,
    /// Write the key.
    Put,
    /// Append to the key's value.
    Append,
    /// Compare-and-set.
    Cas,
    /// Add to the key's decimal integer.
    Incr,
    /// Remove the key.
    Del,
}

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The client that acted.
    pub process: u64,
    /// What the event says.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The operation's function.
    pub f: Function,
    /// The key.
    pub key: String,
    /// The argument or result (see the module docs).
    #[serde(default)]
    pub value: serde_json::Value,
    /// Nanoseconds on the history's monotonic clock.
    pub time: u64,
    /// The node the client talked to, if known (ignored by the checker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The reply of a `fail` or `info` (ignored by the checker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a history file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file cannot be read.
    #[error("cannot read history {file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not an event.
    #[error("history {file}, line {line}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Reads every event of a history file, in file order. Blank lines are
/// skipped.
pub fn read(file: &Path) -> Result<Vec<Event>, HistoryError> {
    read_numbered(file).map(|(events, _)| events)
}

/// [`read`], with each event's line number (from 1), so that messages can
/// name lines.
pub fn read_numbered(file: &Path) -> Result<(Vec<Event>, Vec<usize>), HistoryError> {
    let name = file.display().to_string();
    let reader = std::fs::File::open(file).map_err(|source| HistoryError::Io {
        file: name.clone(),
        source,
    })?;
    parse_numbered(std::io::BufReader::new(reader), &name)
}

/// Reads every event from `input`, naming `file` in errors.
pub fn parse(input: impl BufRead, file: &str) -> Result<Vec<Event>, HistoryError> {
    parse_numbered(input, file).map(|(events, _)| events)
}

/// [`parse`], with each event's line number (from 1).
pub fn parse_numbered(
    input: impl BufRead,
    file: &str,
) -> Result<(Vec<Event>, Vec<usize>), HistoryError> {
    let mut events = Vec::new();
    let mut lines = Vec::new();
    read_each(input, file, |line, _, event| {
        events.push(event);
        lines.push(line);
        Ok::<(), HistoryError>(())
    })?;
    Ok((events, lines))
}

/// Reads `input` an event a line, calling `each(line number, text,
/// event)`; blank lines are skipped. A last line cut short (no newline,
/// and not an event: the writer was killed mid-line) is left out with a
/// warning, as a log's torn tail is; any other line that is not an event
/// is an error.
pub fn read_each<E: From<HistoryError>>(
    mut input: impl BufRead,
    file: &str,
    mut each: impl FnMut(usize, &str, Event) -> Result<(), E>,
) -> Result<(), E> {
    let mut text = String::new();
    let mut number = 0;
    loop {
        text.clear();
        let read = input
            .read_line(&mut text)
            .map_err(|source| HistoryError::Io {
                file: file.to_owned(),
                source,
            })?;
        if read == 0 {
            return Ok(());
        }
        number += 1;
        let whole = text.ends_with('\n');
        let line = text.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(event) => each(number, line, event)?,
            Err(e) if !whole => {
                log::warn!(
                    "history {file}, line {number}: cut short ({e}): left out, as the tail of a writer that stopped mid-line"
                );
                return Ok(());
            }
            Err(e) => {
                return Err(HistoryError::Parse {
                    file: file.to_owned(),
                    line: number,
                    message: e.to_string(),
                }
                .into());
            }
        }
    }
}

/// Writes events one a line.
pub struct Writer<W: Write> {
    out: W,
}

impl<W: Write> Writer<W> {
    /// A writer onto `out` (wrap a file in a `BufWriter`).
    pub fn new(out: W) -> Self {
        Writer { out }
    }

    /// Writes one event.
    pub fn write(&mut self, event: &Event) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, event)?;
        self.out.write_all(b"\n")
    }

    /// Flushes and returns the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_round_trips_and_unknown_fields_are_ignored() {
        let line = r#"{"process":3,"type":"ok","f":"cas","key":"k1","value":["a",null],"time":12,"extra":1}"#;
        let events = parse(line.as_bytes(), "h").expect("parses");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventType::Ok);
        assert_eq!(events[0].f, Function::Cas);
        assert_eq!(events[0].value, serde_json::json!(["a", null]));
        let mut w = Writer::new(Vec::new());
        w.write(&events[0]).expect("writes");
        let again = parse(&w.finish().expect("flush")[..], "h").expect("parses");
        assert_eq!(again, events);
    }

    #[test]
    fn a_bad_line_is_named() {
        let text = "{\"process\":1,\"type\":\"invoke\",\"f\":\"get\",\"key\":\"a\",\"time\":1}\nnot json\n";
        match parse(text.as_bytes(), "h.jsonl") {
            Err(HistoryError::Parse { line: 2, .. }) => {}
            other => panic!("expected a parse error on line 2, got {other:?}"),
        }
    }
}
