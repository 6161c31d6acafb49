//! Deciding one key: from its operations to the search's, the pruning of
//! optional writes that nothing could observe, and the search itself.

use std::time::Instant;

use super::model::{Arena, StateId};
use super::ops::{OpKind, Operation, Status};
use super::search::{Found, SearchOp, search};

/// A bound on the bytes scanned to prove an optional append unobserved;
/// beyond it the append is simply kept (correct, only slower to search).
const SUBSTRING_SCAN_BYTES_MAX: usize = 1 << 30;

/// One key's operations for the search, each with its operation id.
#[derive(Debug, Clone)]
pub(crate) struct KeyOps {
    /// The operations.
    pub(crate) ops: Vec<SearchOp>,
    /// `ids[i]`: the id of `ops[i]`.
    pub(crate) ids: Vec<usize>,
    /// Whether every write of the key (in the whole history) is an append
    /// of whitespace-ended tokens or a del, so a value splits into the
    /// appends that made it.
    pub(crate) token_key: bool,
}

impl KeyOps {
    /// The operations of one key that the search considers: `fail`ed ones
    /// did not happen, and a read whose result is not known constrains
    /// nothing.
    pub(crate) fn new(ops: &[&Operation]) -> Self {
        let mut out = KeyOps {
            ops: Vec::new(),
            ids: Vec::new(),
            token_key: token_key(ops),
        };
        for op in ops {
            if op.status == Status::Fail || op.kind == OpKind::Get(None) {
                continue;
            }
            out.ops.push(SearchOp {
                call: op.call,
                ret: op.ret,
                kind: op.kind.clone(),
            });
            out.ids.push(op.id);
        }
        out
    }

    /// A subset: `ret_of(op)` is `None` to leave `op` out, or `Some(ret)`
    /// to keep it with that return (`Some(None)`: optional; an optional
    /// read is left out, as it constrains nothing).
    pub(crate) fn derive(
        &self,
        mut ret_of: impl FnMut(&SearchOp) -> Option<Option<u64>>,
    ) -> KeyOps {
        let mut out = KeyOps {
            ops: Vec::new(),
            ids: Vec::new(),
            token_key: self.token_key,
        };
        for (op, &id) in self.ops.iter().zip(&self.ids) {
            let Some(ret) = ret_of(op) else { continue };
            if ret.is_none() && matches!(op.kind, OpKind::Get(_)) {
                continue;
            }
            out.ops.push(SearchOp {
                call: op.call,
                ret,
                kind: op.kind.clone(),
            });
            out.ids.push(id);
        }
        out
    }

    /// Searches for a linearization from `init`; the found orders are in
    /// operation ids.
    ///
    /// An optional del that never happened blinds the search's append
    /// rule (see `search.rs`) for the rest of the history, so when there
    /// are optional dels the search first runs without them: a
    /// linearization found so is one of the whole (they may be left out).
    /// Only when that fails does the full search run.
    pub(crate) fn decide(&self, init: StateId, deadline: Instant, longest: bool) -> Found {
        let kept = self.without_unobservable();
        let is_optional_del = |&i: &usize| {
            self.ops[i].ret.is_none() && matches!(self.ops[i].kind, OpKind::Del { .. })
        };
        if kept.iter().any(is_optional_del) {
            let fewer: Vec<usize> = kept
                .iter()
                .copied()
                .filter(|i| !is_optional_del(i))
                .collect();
            if let found @ Found::Linearizable(_) =
                self.search_subset(&fewer, init, deadline, false)
            {
                return found;
            }
        }
        self.search_subset(&kept, init, deadline, longest)
    }

    /// Searches the ops at indices `kept`.
    fn search_subset(
        &self,
        kept: &[usize],
        init: StateId,
        deadline: Instant,
        longest: bool,
    ) -> Found {
        let mut arena = Arena::new();
        let ops: Vec<SearchOp> = kept.iter().map(|&i| self.ops[i].clone()).collect();
        let to_ids = |order: Vec<usize>| order.into_iter().map(|i| self.ids[kept[i]]).collect();
        match search(&ops, &mut arena, init, deadline, longest) {
            Found::Linearizable(order) => Found::Linearizable(to_ids(order)),
            Found::NotLinearizable { longest, stuck } => Found::NotLinearizable {
                longest: to_ids(longest),
                stuck: to_ids(stuck),
            },
            Found::GaveUp => Found::GaveUp,
        }
    }

    /// The indices of the ops worth searching: all but the optional
    /// writes whose value no read or cas could have seen.
    ///
    /// Leaving out such a write is sound: in a linearization that has it,
    /// every state from it up to the next write that does not build on it
    /// (a put, a del) contains its value, yet no read or cas names such a
    /// value, so none lies there; nor an incr or a del that says it
    /// removed the key (the rule is off when the key has those), nor a del
    /// that says it removed nothing (the key is present). Removing the
    /// write leaves every other operation's result as it was.
    fn without_unobservable(&self) -> Vec<usize> {
        let all: Vec<usize> = (0..self.ops.len()).collect();
        let watches_presence = self.ops.iter().any(|op| {
            matches!(
                op.kind,
                OpKind::Incr { .. } | OpKind::Del { count: Some(true) }
            )
        });
        if watches_presence {
            return all;
        }
        let mut seen: Vec<&str> = Vec::new();
        for op in &self.ops {
            match &op.kind {
                OpKind::Get(Some(Some(v))) => seen.push(v),
                OpKind::Cas {
                    expected: Some(v), ..
                } => seen.push(v),
                _ => {}
            }
        }
        seen.sort_unstable();
        seen.dedup();
        let tokens: std::collections::HashSet<&str> = if self.token_key {
            seen.iter().flat_map(|v| v.split_whitespace()).collect()
        } else {
            Default::default()
        };
        let seen_bytes: usize = seen.iter().map(|v| v.len()).sum();
        let optional_appends = self
            .ops
            .iter()
            .filter(|op| op.ret.is_none() && matches!(op.kind, OpKind::Append(_)))
            .count();
        let scan_appends = seen_bytes.saturating_mul(optional_appends) <= SUBSTRING_SCAN_BYTES_MAX;
        let prefix_seen = |v: &str| {
            let at = seen.partition_point(|s| *s < v);
            seen.get(at).is_some_and(|s| s.starts_with(v))
        };
        all.into_iter()
            .filter(|&i| {
                let op = &self.ops[i];
                if op.ret.is_some() {
                    return true;
                }
                match &op.kind {
                    OpKind::Put(v) | OpKind::Cas { new: Some(v), .. } => prefix_seen(v),
                    OpKind::Append(u) if self.token_key => {
                        let mut parts = u.split_whitespace().peekable();
                        parts.peek().is_none() || parts.all(|t| tokens.contains(t))
                    }
                    OpKind::Append(u) if scan_appends => seen.iter().any(|s| s.contains(&**u)),
                    _ => true,
                }
            })
            .collect()
    }
}

/// Whether every write of the key is an append of whitespace-ended text
/// or a del (`fail`ed operations aside: they did not happen).
pub(crate) fn token_key(ops: &[&Operation]) -> bool {
    ops.iter()
        .filter(|op| op.status != Status::Fail)
        .all(|op| match &op.kind {
            OpKind::Get(_) | OpKind::Del { .. } => true,
            OpKind::Append(u) => u.ends_with(char::is_whitespace),
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn key(ops: Vec<SearchOp>, token_key: bool) -> KeyOps {
        let ids = (0..ops.len()).collect();
        KeyOps {
            ops,
            ids,
            token_key,
        }
    }

    #[test]
    fn unobserved_optional_writes_are_left_out_and_observed_ones_kept() {
        let ops = vec![
            SearchOp {
                call: 0,
                ret: None,
                kind: OpKind::Put(Arc::from("never")),
            },
            SearchOp {
                call: 0,
                ret: None,
                kind: OpKind::Put(Arc::from("ab")),
            },
            SearchOp {
                call: 0,
                ret: None,
                kind: OpKind::Append(Arc::from("c")),
            },
            SearchOp {
                call: 0,
                ret: None,
                kind: OpKind::Append(Arc::from("zz")),
            },
            SearchOp {
                call: 1,
                ret: Some(2),
                kind: OpKind::Get(Some(Some(Arc::from("abc")))),
            },
        ];
        assert_eq!(key(ops, false).without_unobservable(), vec![1, 2, 4]);
    }

    #[test]
    fn tokens_decide_for_append_keys() {
        let ops = vec![
            SearchOp {
                call: 0,
                ret: None,
                kind: OpKind::Append(Arc::from("t1 ")),
            },
            SearchOp {
                call: 0,
                ret: None,
                kind: OpKind::Append(Arc::from("t2 ")),
            },
            SearchOp {
                call: 1,
                ret: Some(2),
                kind: OpKind::Get(Some(Some(Arc::from("t2 ")))),
            },
        ];
        let k = key(ops, true);
        assert_eq!(k.without_unobservable(), vec![1, 2]);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(matches!(
            k.decide(Arena::ABSENT, deadline, false),
            Found::Linearizable(_)
        ));
    }
}
