//! `sampan-check verify`: decides whether a history (see [`crate::history`])
//! is linearizable, key by key, and shows the smallest failing window when
//! it is not.
//!
//! **For:** histories of a key-value register service (get, put, append,
//! cas, incr, del), as the harness writes them, up to a few hundred
//! thousand operations. **Not for:** transactions across keys (each key is
//! an independent object, which is what makes the check tractable: a
//! history is linearizable iff each key's is).
//!
//! # How
//!
//! - Events become operations ([`Operation`]): each invoke pairs with its
//!   process's next completion. A `fail`ed operation did not happen and is
//!   left out; one with no completion, or an `info`, may have happened at
//!   any time after its call, or never ([`Status::Info`]). Broken format
//!   rules are a [`HistoryInputError`].
//! - Each key is searched on its own (in parallel, one thread per core):
//!   the Wing–Gong/Lowe search with Porcupine's memoisation, where an
//!   `info` operation's return is at +infinity and the search may leave it
//!   out (see `search.rs` for the rules that keep many of them tractable).
//!   The model is a register holding `Option<String>`.
//! - On an append key (one unique whitespace-ended token per append), a
//!   read that shows a duplicate, failed, lost or unknown token is named at
//!   once ([`Diagnosis`]).
//! - A key that is not linearizable gets its smallest failing [`Window`]
//!   (see `window.rs` for why a window never accuses a correct history),
//!   printed as a table and drawn by [`violation_html`].
//!
//! # Limits
//!
//! The search is exponential in the worst case, and `info` operations are
//! what drive it there. 100k operations on 10 keys take a fraction of a
//! second without them, and tens of seconds with 1% of them on registers;
//! on counters (info incrs) and append lists with info dels, 1% can still
//! exhaust the budget. A key out of budget is *undecided* (exit 2), never
//! reported as a violation.
//!
//! # Example
//!
//! ```
//! use sampan_check::history::{Event, EventType, Function};
//! use sampan_check::verify::{CheckOptions, Outcome, check_events};
//!
//! let ev = |process, kind, f, value: serde_json::Value, time| Event {
//!     process, kind, f, key: "k".into(), value, time, node: None, error: None,
//! };
//! let events = vec![
//!     ev(1, EventType::Invoke, Function::Put, "a".into(), 1),
//!     ev(1, EventType::Ok, Function::Put, "a".into(), 2),
//!     ev(2, EventType::Invoke, Function::Get, serde_json::Value::Null, 3),
//!     ev(2, EventType::Ok, Function::Get, serde_json::Value::Null, 4),
//! ];
//! let verdict = check_events(&events, &CheckOptions::default()).expect("well-formed");
//! assert_eq!(verdict.outcome(), Outcome::NotLinearizable); // the read missed the put
//! ```

mod check;
mod cli;
mod html;
mod model;
mod ops;
mod parts;
mod report;
mod search;
mod tokens;
mod window;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use cli::{VerifyArgs, cli};
pub use html::violation_html;
pub use ops::{HistoryInputError, Operation, Status};
pub use parts::{CheckFileError, FileVerdict, check_file};
pub use report::{json_report, text_report};
pub use tokens::{Diagnosis, DiagnosisKind};
pub use window::Window;

use crate::history::Event;
use check::KeyOps;
use model::Arena;
use search::Found;

/// How hard to try.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The whole check's budget; keys not decided by then are undecided.
    pub time_limit: Duration,
    /// One key's budget (its search and its window), if smaller.
    pub key_time_limit: Option<Duration>,
    /// Keys searched at once.
    pub threads: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            time_limit: Duration::from_secs(300),
            key_time_limit: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// The answer for a whole history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every key is linearizable (exit status 0).
    Linearizable,
    /// Some key is not (exit status 1).
    NotLinearizable,
    /// No key is known to fail, but some could not be decided in time
    /// (exit status 2).
    Undecided,
}

impl Outcome {
    /// The exit status of `sampan-check verify` for this outcome.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Linearizable => 0,
            Outcome::NotLinearizable => 1,
            Outcome::Undecided => 2,
        }
    }
}

/// What is wrong with a key.
#[derive(Debug, Clone)]
pub struct Violation {
    /// What single reads show (append keys only).
    pub diagnoses: Vec<Diagnosis>,
    /// The smallest failing window, if the search found one in time.
    pub window: Option<Window>,
}

impl Violation {
    /// Applies `renumber` to every operation id it holds.
    fn renumber(&mut self, renumber: &dyn Fn(&mut usize)) {
        for d in &mut self.diagnoses {
            renumber(&mut d.read);
            d.append.iter_mut().for_each(renumber);
        }
        if let Some(w) = &mut self.window {
            for ids in [&mut w.ops, &mut w.mandatory, &mut w.longest, &mut w.stuck] {
                ids.iter_mut().for_each(renumber);
            }
        }
    }
}

/// The answer for one key.
#[derive(Debug, Clone)]
pub enum KeyResult {
    /// Linearizable.
    Linearizable,
    /// Not linearizable.
    NotLinearizable(Box<Violation>),
    /// Not decided within its budget.
    Undecided,
}

/// One key's verdict.
#[derive(Debug, Clone)]
pub struct KeyVerdict {
    /// The key.
    pub key: String,
    /// Its operations (ids into [`Verdict::operations`]), in call order.
    /// Empty for a key that did not fail in a history checked in parts
    /// ([`check_file`]), whose operations are not kept.
    pub ops: Vec<usize>,
    /// How many operations it has.
    pub op_count: usize,
    /// How many ended `info` (or never).
    pub info_ops: usize,
    /// How many `fail`ed.
    pub failed_ops: usize,
    /// The time spent on it.
    pub elapsed: Duration,
    /// The answer.
    pub result: KeyResult,
}

/// The answer for a history.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Every operation of the history, in invoke order; for a history
    /// checked in parts ([`check_file`]), only those of the keys that are
    /// not linearizable.
    pub operations: Vec<Operation>,
    /// One verdict per key, by key.
    pub keys: Vec<KeyVerdict>,
    /// The time the check took.
    pub elapsed: Duration,
}

impl Verdict {
    /// Not linearizable if any key is not; else undecided if any key is;
    /// else linearizable.
    pub fn outcome(&self) -> Outcome {
        let mut outcome = Outcome::Linearizable;
        for key in &self.keys {
            match key.result {
                KeyResult::NotLinearizable(_) => return Outcome::NotLinearizable,
                KeyResult::Undecided => outcome = Outcome::Undecided,
                KeyResult::Linearizable => {}
            }
        }
        outcome
    }
}

/// Checks a history given as events (in the order written). Errors when
/// the events break the format's rules; otherwise every key is decided
/// within `opts`' budgets.
pub fn check_events(events: &[Event], opts: &CheckOptions) -> Result<Verdict, HistoryInputError> {
    let started = Instant::now();
    let operations = ops::build(events)?;
    let mut by_key: HashMap<&str, Vec<&Operation>> = HashMap::new();
    for op in &operations {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut keys: Vec<(&str, Vec<&Operation>)> = by_key.into_iter().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    // The largest keys first, so that they do not start last.
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(keys[i].1.len()));
    let deadline = started + opts.time_limit;
    let results: Mutex<Vec<Option<KeyVerdict>>> = Mutex::new(vec![None; keys.len()]);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..opts.threads.clamp(1, keys.len().max(1)) {
            scope.spawn(|| {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let (key, ops) = &keys[i];
                    let verdict = check_key(key, ops, deadline, opts);
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(verdict);
                }
            });
        }
    });
    let keys = results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect();
    Ok(Verdict {
        operations,
        keys,
        elapsed: started.elapsed(),
    })
}

/// Decides one key.
fn check_key(key: &str, ops: &[&Operation], deadline: Instant, opts: &CheckOptions) -> KeyVerdict {
    let started = Instant::now();
    let deadline = match opts.key_time_limit {
        Some(limit) => deadline.min(started + limit),
        None => deadline,
    };
    let diagnoses = tokens::diagnose(ops);
    let key_ops = KeyOps::new(ops);
    let result = match key_ops.decide(Arena::ABSENT, deadline, false) {
        Found::Linearizable(_) if diagnoses.is_empty() => KeyResult::Linearizable,
        Found::Linearizable(_) => {
            log::error!(
                "key {key}: reads show a violation but the search found a linearization (a checker bug)"
            );
            KeyResult::NotLinearizable(Box::new(Violation {
                diagnoses,
                window: None,
            }))
        }
        Found::NotLinearizable { .. } => {
            let window = window::find(&key_ops, deadline);
            KeyResult::NotLinearizable(Box::new(Violation { diagnoses, window }))
        }
        Found::GaveUp if diagnoses.is_empty() => KeyResult::Undecided,
        Found::GaveUp => KeyResult::NotLinearizable(Box::new(Violation {
            diagnoses,
            window: None,
        })),
    };
    let verdict = KeyVerdict {
        key: key.to_owned(),
        ops: ops.iter().map(|op| op.id).collect(),
        op_count: ops.len(),
        info_ops: ops.iter().filter(|op| op.status == Status::Info).count(),
        failed_ops: ops.iter().filter(|op| op.status == Status::Fail).count(),
        elapsed: started.elapsed(),
        result,
    };
    log::debug!(
        "key {key}: {} ops decided in {:?}",
        verdict.ops.len(),
        verdict.elapsed
    );
    verdict
}
