//! The shortest failing window of a key that is not linearizable: a
//! contiguous stretch of time whose operations are, by themselves, already
//! impossible.
//!
//! 1. **End.** A prefix of the history up to time `T` keeps the operations
//!    invoked by `T`; those that return later become optional (their
//!    outcome is not known yet). A prefix of a linearizable history is
//!    linearizable, and failing is monotone in `T`, so a binary search over
//!    the return times finds the first `T` at which it fails: the return
//!    of the operation that made the history impossible.
//! 2. **Start.** For a cut `S`, the window's *mandatory* operations are
//!    those returning at or after `S`; let `C` be the earliest call among
//!    them. Operations that returned before `C` precede every mandatory one
//!    in any linearization, so they are folded into an *unknown* starting
//!    state; operations returning between `C` and `S`, and `info` ones, may
//!    have come before the window or inside it, so they are optional. (If
//!    nothing is folded, the start is the known initial state, absent.) A
//!    linearization of the whole prefix gives one of the window (the state
//!    just before its first mandatory operation is the unknown start), so
//!    a window that fails proves the history non-linearizable: no false
//!    positives. A later cut relaxes the window, so a second binary search
//!    finds the latest cut that still fails.
//! 3. A last search of the window records the longest partial
//!    linearization and the operations it could not order.
//!
//! Each step runs within the key's deadline; when time runs out, the
//! smallest window proven so far is reported and marked not minimal.

use std::time::Instant;

use super::check::KeyOps;
use super::model::Arena;
use super::search::Found;

/// A failing window of one key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Window {
    /// The operations in it (ids), in call order.
    pub ops: Vec<usize>,
    /// Those that must be linearized (the others are optional: `info`, or
    /// returned before the cut and may belong before the window).
    pub mandatory: Vec<usize>,
    /// The earliest call among the mandatory operations.
    pub start: u64,
    /// The return at which the history became impossible.
    pub end: u64,
    /// Whether the window starts from the initial (absent) state rather
    /// than an unknown one.
    pub starts_known: bool,
    /// The longest partial linearization the search found (ids, in order).
    pub longest: Vec<usize>,
    /// The operations it could not order: the first return still pending
    /// at that point and the operations called before it.
    pub stuck: Vec<usize>,
    /// Whether both binary searches finished (else the window is only as
    /// small as time allowed).
    pub minimal: bool,
}

/// The window at cut `s` of `prefix` (see the module docs): the ops, and
/// whether the start is known.
fn cut(prefix: &KeyOps, s: u64) -> (KeyOps, bool) {
    let first_call = prefix
        .ops
        .iter()
        .filter(|op| op.ret.is_some_and(|r| r >= s))
        .map(|op| op.call)
        .min()
        .unwrap_or(u64::MAX);
    let mut folded = false;
    let window = prefix.derive(|op| match op.ret {
        Some(r) if r >= s => Some(Some(r)),
        Some(r) if r >= first_call => Some(None),
        Some(_) => {
            folded = true;
            None
        }
        None => Some(None),
    });
    (window, !folded)
}

/// Whether the window at cut `s` fails; `None` when time ran out.
fn window_fails(prefix: &KeyOps, s: u64, deadline: Instant) -> Option<bool> {
    let (window, known) = cut(prefix, s);
    let init = if known { Arena::ABSENT } else { Arena::UNKNOWN };
    match window.decide(init, deadline, false) {
        Found::Linearizable(_) => Some(false),
        Found::NotLinearizable { .. } => Some(true),
        Found::GaveUp => None,
    }
}

/// The prefix of `ops` at time `t`.
fn prefix(ops: &KeyOps, t: u64) -> KeyOps {
    ops.derive(|op| {
        if op.call > t {
            return None;
        }
        Some(op.ret.filter(|&r| r <= t))
    })
}

/// The smallest index in `0..=last` for which `fails` holds, knowing it
/// holds at `last` and is monotone; `false` in the flag when time ran out.
fn first_failing(last: usize, mut fails: impl FnMut(usize) -> Option<bool>) -> (usize, bool) {
    let (mut lo, mut hi) = (0, last);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match fails(mid) {
            Some(true) => hi = mid,
            Some(false) => lo = mid + 1,
            None => return (hi, false),
        }
    }
    (hi, true)
}

/// Finds a small failing window of `ops`, a key whose search failed.
pub(crate) fn find(ops: &KeyOps, deadline: Instant) -> Option<Window> {
    let mut returns: Vec<u64> = ops.ops.iter().filter_map(|op| op.ret).collect();
    returns.sort_unstable();
    returns.dedup();
    let last = returns.len().checked_sub(1)?;
    let fails_at = |i: usize| match prefix(ops, returns[i]).decide(Arena::ABSENT, deadline, false) {
        Found::Linearizable(_) => Some(false),
        Found::NotLinearizable { .. } => Some(true),
        Found::GaveUp => None,
    };
    let (end_index, end_minimal) = first_failing(last, fails_at);
    let end = returns[end_index];
    let before = prefix(ops, end);

    // Cuts from the latest (smallest window) to the earliest; the earliest
    // is the whole prefix, known to fail.
    let mut cuts: Vec<u64> = before.ops.iter().filter_map(|op| op.ret).collect();
    cuts.sort_unstable_by(|a, b| b.cmp(a));
    cuts.dedup();
    cuts.push(0);
    let (cut_index, cut_minimal) = first_failing(cuts.len() - 1, |i| {
        if i + 1 == cuts.len() {
            Some(true)
        } else {
            window_fails(&before, cuts[i], deadline)
        }
    });
    let (window, known) = cut(&before, cuts[cut_index]);
    let init = if known { Arena::ABSENT } else { Arena::UNKNOWN };
    let (longest, stuck) = match window.decide(init, deadline, true) {
        Found::NotLinearizable { longest, stuck } => (longest, stuck),
        Found::Linearizable(_) => {
            log::error!("a window proven to fail was linearizable on a second search");
            (Vec::new(), Vec::new())
        }
        Found::GaveUp => (Vec::new(), Vec::new()),
    };
    let mandatory: Vec<usize> = window
        .ops
        .iter()
        .zip(&window.ids)
        .filter(|(op, _)| op.ret.is_some())
        .map(|(_, &id)| id)
        .collect();
    let start = window
        .ops
        .iter()
        .filter(|op| op.ret.is_some())
        .map(|op| op.call)
        .min()
        .unwrap_or(end);
    Some(Window {
        ops: window.ids.clone(),
        mandatory,
        start,
        end,
        starts_known: known,
        longest,
        stuck,
        minimal: end_minimal && cut_minimal,
    })
}
