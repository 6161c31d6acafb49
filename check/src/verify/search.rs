//! The Wing–Gong/Lowe search for a linearization of one key's operations,
//! with the memoisation of Porcupine (`checker.go`): the history is a list
//! of call and return entries sorted by time; the search linearizes any
//! operation whose call comes before the first return still in the list,
//! lifts it out of the list, and backtracks when it meets a return; a
//! cache of (set of linearized operations, state) pairs already explored
//! cuts repeated work.
//!
//! Operations whose outcome is unknown (`info`, never completed, or the
//! "optional" operations of a window) are **optional**: their return is at
//! +infinity, so they never block another, and the search succeeds as soon
//! as every *completed* operation is linearized. An optional operation left
//! out never happened. Three rules keep them from making the search
//! exponential, each sound (it only skips linearizations that another,
//! still explored, one can stand for):
//!
//! - Completed operations are tried before optional ones, and the cache
//!   keeps the optional operations apart: a configuration is skipped when
//!   one with the same completed set and state, and a *subset* of its
//!   optional operations, was explored (whatever the larger set can still
//!   do, the smaller one can too: the missing ones may still come later).
//! - An optional blind write (a put, a del without a count) is never
//!   directly followed by another blind write: the second erases the first,
//!   which could as well have been left out.
//! - Optional operations that do the same thing (two info dels, two info
//!   incrs by 1) are taken in call order: while an earlier twin is not
//!   linearized, a later one is not tried (once both are called they can
//!   swap places in any linearization).
//! - The caller (see [`super::check`]) drops, before the search, optional
//!   writes that nothing in the history could observe.
//!
//! On a key of appends, reads and dels, a value only grows between dels,
//! so a state is a prefix of every read still to come that no del can
//! precede: an append is refused when its suffix does not stand at its
//! place in the earliest-returning read not yet linearized (unless a del
//! not yet linearized was called before that read returned). This cuts the orders of concurrent appends (each a
//! different state, which memoisation cannot merge) down to the one the
//! next read shows.

use std::collections::HashMap;
use std::time::Instant;

use super::model::{Arena, StateId};
use super::ops::OpKind;

/// One operation as the search sees it.
#[derive(Debug, Clone)]
pub(crate) struct SearchOp {
    /// The call time.
    pub(crate) call: u64,
    /// The return time; `None`: optional (may be left out, never blocks).
    pub(crate) ret: Option<u64>,
    /// What it does.
    pub(crate) kind: OpKind,
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// A linearization (indices into the operations, in order).
    Linearizable(Vec<usize>),
    /// None exists. `longest` is the longest partial linearization met (if
    /// asked for), `stuck` the completed operations whose return blocked
    /// it (operations the search could not order before that return).
    NotLinearizable {
        /// The longest partial linearization.
        longest: Vec<usize>,
        /// The first return that blocked it: that operation and those not
        /// yet linearized that were called before it returned.
        stuck: Vec<usize>,
    },
    /// The deadline passed first.
    GaveUp,
}

/// How often (in search steps) the deadline is read.
const STEPS_PER_CLOCK_READ: u32 = 4096;

const NIL: u32 = u32::MAX;

/// A doubly linked list over entries with a sentinel, for lift/unlift.
struct Links {
    next: Vec<u32>,
    prev: Vec<u32>,
}

impl Links {
    /// Links `0..n` in order; the sentinel is `n`.
    fn new(n: usize) -> Self {
        let sentinel = n as u32;
        let mut next: Vec<u32> = (1..=n as u32).collect();
        next.push(if n == 0 { NIL } else { 0 });
        if let Some(last) = n.checked_sub(1) {
            next[last] = NIL;
        }
        let mut prev: Vec<u32> = (0..n as u32)
            .map(|i| if i == 0 { sentinel } else { i - 1 })
            .collect();
        prev.push(NIL);
        Links { next, prev }
    }

    fn head(&self) -> u32 {
        self.next[self.next.len() - 1]
    }

    fn unlink(&mut self, e: u32) {
        let (p, n) = (self.prev[e as usize], self.next[e as usize]);
        self.next[p as usize] = n;
        if n != NIL {
            self.prev[n as usize] = p;
        }
    }

    /// Undoes [`Self::unlink`]; unlinks must be undone in reverse order.
    fn relink(&mut self, e: u32) {
        let (p, n) = (self.prev[e as usize], self.next[e as usize]);
        self.next[p as usize] = e;
        if n != NIL {
            self.prev[n as usize] = e;
        }
    }
}

/// A set over `0..n` with a Zobrist hash kept up to date.
struct TrackedSet {
    words: Vec<u64>,
    hash: u64,
    /// The first index not in the set.
    low: u32,
    count: u32,
}

impl TrackedSet {
    fn new(n: usize) -> Self {
        TrackedSet {
            words: vec![0; n.div_ceil(64)],
            hash: 0,
            low: 0,
            count: 0,
        }
    }

    fn contains(&self, i: u32) -> bool {
        self.words[(i / 64) as usize] >> (i % 64) & 1 == 1
    }

    fn insert(&mut self, i: u32) {
        self.words[(i / 64) as usize] |= 1 << (i % 64);
        self.hash ^= zobrist(i);
        self.count += 1;
        while (self.low as usize) < self.words.len() * 64 && self.contains(self.low) {
            self.low += 1;
        }
    }

    fn remove(&mut self, i: u32) {
        self.words[(i / 64) as usize] &= !(1 << (i % 64));
        self.hash ^= zobrist(i);
        self.count -= 1;
        self.low = self.low.min(i);
    }

    /// The members above `low`, into `out` (the set is `0..low` and those).
    fn sparse_into(&self, out: &mut Vec<u32>) {
        out.clear();
        let want = (self.count - self.low) as usize;
        let mut i = self.low;
        while out.len() < want {
            let word = self.words[(i / 64) as usize] >> (i % 64);
            if word == 0 {
                i = (i / 64 + 1) * 64;
                continue;
            }
            i += word.trailing_zeros();
            out.push(i);
            i += 1;
        }
    }
}

/// A fixed pseudo-random value per index (splitmix64).
fn zobrist(i: u32) -> u64 {
    let mut z = u64::from(i).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An explored configuration.
struct Explored {
    low: u32,
    sparse: Box<[u32]>,
    state: StateId,
    after_blind: bool,
    optional: Box<[u64]>,
}

/// A linearized operation on the search stack, with what undoes it.
struct Frame {
    op: usize,
    state_before: StateId,
    after_blind_before: bool,
    /// The first return's time when it was chosen (for optional ops).
    frontier: u64,
}

/// Where the search looks for the next operation to try.
#[derive(Clone, Copy)]
enum Cursor {
    /// At an entry of the completed list.
    Completed(u32),
    /// At an optional operation, with the first return's time.
    Optional(u32, u64),
}

/// The search over one set of operations.
struct Search<'a> {
    ops: &'a [SearchOp],
    arena: &'a mut Arena,
    /// Entries of completed ops: (time, is_return, op).
    entries: Vec<(u64, bool, usize)>,
    links: Links,
    /// Optional ops, by call time.
    optional: Vec<usize>,
    optional_links: Links,
    /// Per op: its call entry (completed) or its place in `optional`.
    place: Vec<u32>,
    /// Per completed op: its return entry.
    place_ret: Vec<u32>,
    /// Per op: its index among completed or among optional ops.
    rank: Vec<u32>,
    completed: TrackedSet,
    chosen_optional: TrackedSet,
    cache: HashMap<u64, Vec<Explored>>,
    sparse: Vec<u32>,
    /// Whether every op is an append, a read or a del (see the module
    /// docs).
    appends_only: bool,
    /// The optional dels, by call time.
    optional_dels: Vec<usize>,
    /// Per optional op: the previous optional op (by call) doing the same.
    twin_before: Vec<Option<usize>>,
}

/// Searches for a linearization of `ops` from `init` (see the module
/// docs). `longest` asks for the longest partial linearization when there
/// is none.
pub(crate) fn search(
    ops: &[SearchOp],
    arena: &mut Arena,
    init: StateId,
    deadline: Instant,
    longest: bool,
) -> Found {
    let mut s = Search::new(ops, arena);
    s.run(init, deadline, longest)
}

impl<'a> Search<'a> {
    fn new(ops: &'a [SearchOp], arena: &'a mut Arena) -> Self {
        let mut entries = Vec::new();
        let mut optional = Vec::new();
        let mut rank = vec![0; ops.len()];
        let mut n_completed = 0u32;
        for (i, op) in ops.iter().enumerate() {
            match op.ret {
                Some(ret) => {
                    entries.push((op.call, false, i));
                    entries.push((ret.max(op.call), true, i));
                    rank[i] = n_completed;
                    n_completed += 1;
                }
                None => {
                    rank[i] = optional.len() as u32;
                    optional.push(i);
                }
            }
        }
        // Calls before returns at equal times: such ops count as concurrent.
        entries.sort_unstable_by_key(|&(time, is_return, op)| (time, is_return, op));
        optional.sort_by_key(|&i| (ops[i].call, i));
        let mut place = vec![0; ops.len()];
        let mut place_ret = vec![NIL; ops.len()];
        for (e, &(_, is_return, op)) in entries.iter().enumerate() {
            if is_return {
                place_ret[op] = e as u32;
            } else {
                place[op] = e as u32;
            }
        }
        for (p, &op) in optional.iter().enumerate() {
            place[op] = p as u32;
        }
        // Completed ops are ranked in call order for a tight `low` mark.
        let mut by_call: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].ret.is_some()).collect();
        by_call.sort_by_key(|&i| (ops[i].call, i));
        for (r, &i) in by_call.iter().enumerate() {
            rank[i] = r as u32;
        }
        let mut twin_before = vec![None; ops.len()];
        let mut last_of_kind: HashMap<&OpKind, usize> = HashMap::new();
        for &i in &optional {
            twin_before[i] = last_of_kind.insert(&ops[i].kind, i);
        }
        let optional_dels = optional
            .iter()
            .copied()
            .filter(|&i| matches!(ops[i].kind, OpKind::Del { .. }))
            .collect();
        Search {
            ops,
            arena,
            links: Links::new(entries.len()),
            optional_links: Links::new(optional.len()),
            completed: TrackedSet::new(n_completed as usize),
            chosen_optional: TrackedSet::new(optional.len()),
            entries,
            optional,
            place,
            place_ret,
            rank,
            cache: HashMap::new(),
            sparse: Vec::new(),
            appends_only: ops.iter().all(|op| {
                matches!(
                    op.kind,
                    OpKind::Append(_) | OpKind::Get(_) | OpKind::Del { .. }
                )
            }),
            optional_dels,
            twin_before,
        }
    }

    fn run(&mut self, init: StateId, deadline: Instant, want_longest: bool) -> Found {
        let mut stack: Vec<Frame> = Vec::new();
        let mut state = init;
        let mut after_blind = false;
        let mut best: Vec<usize> = Vec::new();
        let mut stuck: Vec<usize> = Vec::new();
        let mut cursor = Cursor::Completed(self.links.head());
        let mut steps = 0u32;
        loop {
            steps += 1;
            if steps.is_multiple_of(STEPS_PER_CLOCK_READ) && Instant::now() >= deadline {
                return Found::GaveUp;
            }
            let head = self.links.head();
            if head == NIL {
                return Found::Linearizable(stack.iter().map(|f| f.op).collect());
            }
            let (op, frontier) = match cursor {
                Cursor::Completed(e) => {
                    // The list ends with a return, so the walk never runs off it.
                    let (time, is_return, op) = match self.entries.get(e as usize) {
                        Some(&entry) => entry,
                        None => (u64::MAX, true, usize::MAX),
                    };
                    if is_return {
                        cursor = Cursor::Optional(self.optional_links.head(), time);
                        continue;
                    }
                    cursor = Cursor::Completed(self.links.next[e as usize]);
                    (op, 0)
                }
                Cursor::Optional(p, frontier) => {
                    if p != NIL && self.ops[self.optional[p as usize]].call <= frontier {
                        cursor = Cursor::Optional(self.optional_links.next[p as usize], frontier);
                        (self.optional[p as usize], frontier)
                    } else {
                        // Dead end: every candidate was tried.
                        if want_longest && stack.len() > best.len() {
                            best = stack.iter().map(|f| f.op).collect();
                            stuck = self.blocked(frontier);
                        }
                        let Some(frame) = stack.pop() else {
                            return Found::NotLinearizable {
                                longest: best,
                                stuck,
                            };
                        };
                        self.undo(frame.op);
                        state = frame.state_before;
                        after_blind = frame.after_blind_before;
                        cursor = self.after(frame.op, frame.frontier);
                        continue;
                    }
                }
            };
            let kind = &self.ops[op].kind;
            let optional = self.ops[op].ret.is_none();
            if after_blind && kind.is_blind_write() {
                continue;
            }
            if let Some(twin) = self.twin_before[op]
                && !self.chosen_optional.contains(self.rank[twin])
            {
                continue;
            }
            let Some(next) = self.arena.step(state, kind) else {
                continue;
            };
            if !self.fits_next_read(next, kind) {
                continue;
            }
            let next_after_blind = optional && kind.is_blind_write();
            self.mark(op);
            if !self.remember(next, next_after_blind) {
                self.unmark(op);
                continue;
            }
            self.lift(op);
            stack.push(Frame {
                op,
                state_before: state,
                after_blind_before: after_blind,
                frontier,
            });
            state = next;
            after_blind = next_after_blind;
            cursor = Cursor::Completed(self.links.head());
        }
    }

    /// On a key of appends and reads, whether the state `next` reached by
    /// `kind` can still be a prefix of the earliest-returning read not yet
    /// linearized (checked at the appended suffix: the state below it was
    /// checked when it was made).
    fn fits_next_read(&self, next: StateId, kind: &OpKind) -> bool {
        let OpKind::Append(suffix) = kind else {
            return true;
        };
        if !self.appends_only || self.arena.rooted_unknown(next) {
            return true;
        }
        let mut e = self.links.head();
        while e != NIL {
            let (time, is_return, op) = self.entries[e as usize];
            let kind = &self.ops[op].kind;
            if !is_return && matches!(kind, OpKind::Del { .. }) {
                return true;
            }
            if is_return && let OpKind::Get(Some(read)) = kind {
                let del_first = self.optional_dels.iter().any(|&d| {
                    self.ops[d].call <= time && !self.chosen_optional.contains(self.rank[d])
                });
                if del_first {
                    return true;
                }
                let Some(read) = read else { return false };
                let end = self.arena.known_len(next);
                let start = end - suffix.len().min(end);
                return read.get(start..end).is_some_and(|at| at == &**suffix);
            }
            e = self.links.next[e as usize];
        }
        true
    }

    /// Where to go on after undoing `op`: the candidate after it.
    fn after(&self, op: usize, frontier: u64) -> Cursor {
        let place = self.place[op];
        if self.ops[op].ret.is_some() {
            Cursor::Completed(self.links.next[place as usize])
        } else {
            Cursor::Optional(self.optional_links.next[place as usize], frontier)
        }
    }

    /// The first return still in the list, and the completed ops called
    /// before it that are not linearized.
    fn blocked(&self, frontier: u64) -> Vec<usize> {
        let mut out = Vec::new();
        let mut e = self.links.head();
        while e != NIL {
            let (time, is_return, op) = self.entries[e as usize];
            if time > frontier {
                break;
            }
            if !is_return || time == frontier {
                out.push(op);
            }
            e = self.links.next[e as usize];
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    fn mark(&mut self, op: usize) {
        if self.ops[op].ret.is_some() {
            self.completed.insert(self.rank[op]);
        } else {
            self.chosen_optional.insert(self.rank[op]);
        }
    }

    fn unmark(&mut self, op: usize) {
        if self.ops[op].ret.is_some() {
            self.completed.remove(self.rank[op]);
        } else {
            self.chosen_optional.remove(self.rank[op]);
        }
    }

    fn lift(&mut self, op: usize) {
        let place = self.place[op];
        if self.ops[op].ret.is_some() {
            self.links.unlink(place);
            self.links.unlink(self.return_entry(op));
        } else {
            self.optional_links.unlink(place);
        }
    }

    fn undo(&mut self, op: usize) {
        self.unmark(op);
        let place = self.place[op];
        if self.ops[op].ret.is_some() {
            self.links.relink(self.return_entry(op));
            self.links.relink(place);
        } else {
            self.optional_links.relink(place);
        }
    }

    fn return_entry(&self, op: usize) -> u32 {
        self.place_ret[op]
    }

    /// Records the configuration just reached; `false` if it (or one that
    /// can do at least as much) was explored already.
    fn remember(&mut self, state: StateId, after_blind: bool) -> bool {
        let key = self.completed.hash ^ zobrist(state).rotate_left(17);
        self.completed.sparse_into(&mut self.sparse);
        let low = self.completed.low;
        let optional = &self.chosen_optional.words;
        let bucket = self.cache.entry(key).or_default();
        let covered = bucket.iter().any(|seen| {
            seen.state == state
                && seen.low == low
                && *seen.sparse == *self.sparse
                && (!seen.after_blind || after_blind)
                && seen.optional.iter().zip(optional).all(|(a, b)| a & !b == 0)
        });
        if covered {
            return false;
        }
        bucket.push(Explored {
            low,
            sparse: self.sparse.clone().into_boxed_slice(),
            state,
            after_blind,
            optional: optional.clone().into_boxed_slice(),
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn op(call: u64, ret: Option<u64>, kind: OpKind) -> SearchOp {
        SearchOp { call, ret, kind }
    }
    fn put(v: &str) -> OpKind {
        OpKind::Put(Arc::from(v))
    }
    fn get(v: Option<&str>) -> OpKind {
        OpKind::Get(Some(v.map(Arc::from)))
    }
    fn run(ops: &[SearchOp]) -> Found {
        let mut arena = Arena::new();
        search(
            ops,
            &mut arena,
            Arena::ABSENT,
            Instant::now() + Duration::from_secs(10),
            true,
        )
    }

    #[test]
    fn concurrent_ops_may_take_either_order() {
        let ops = [
            op(0, Some(10), put("a")),
            op(1, Some(9), put("b")),
            op(11, Some(12), get(Some("a"))),
        ];
        assert_eq!(run(&ops), Found::Linearizable(vec![1, 0, 2]));
    }

    #[test]
    fn a_stale_read_is_refused_and_the_stuck_op_named() {
        let ops = [
            op(0, Some(1), put("a")),
            op(2, Some(3), put("b")),
            op(4, Some(5), get(Some("a"))),
        ];
        match run(&ops) {
            Found::NotLinearizable { longest, stuck } => {
                assert_eq!(longest, vec![0, 1]);
                assert_eq!(stuck, vec![2]);
            }
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn an_optional_write_may_happen_late_or_never() {
        let late = [
            op(0, None, put("x")),
            op(1, Some(2), get(None)),
            op(3, Some(4), get(Some("x"))),
        ];
        assert!(matches!(run(&late), Found::Linearizable(_)));
        let never = [
            op(0, None, put("x")),
            op(1, Some(2), get(None)),
            op(3, Some(4), get(None)),
        ];
        assert!(matches!(run(&never), Found::Linearizable(_)));
        let before_call = [op(0, Some(1), get(Some("x"))), op(2, None, put("x"))];
        assert!(matches!(run(&before_call), Found::NotLinearizable { .. }));
    }

    #[test]
    fn equal_times_count_as_concurrent() {
        let ops = [op(0, Some(5), get(Some("a"))), op(5, Some(6), put("a"))];
        assert!(matches!(run(&ops), Found::Linearizable(_)));
    }
}
