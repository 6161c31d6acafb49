//! A direct diagnosis for append keys: when every append adds one unique
//! whitespace-ended token (as the harness writes them), each read is a list
//! of tokens, and some violations show in a single read without any
//! search: a token twice, a token whose append failed or was never
//! invoked, a token appended only after the read returned, or (on a key
//! never deleted) a token missing although its append was acknowledged
//! before the read began.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::check::token_key;
use super::ops::{OpKind, Operation, Status};

/// Most diagnoses reported for one key.
const DIAGNOSES_PER_KEY_MAX: usize = 10;

/// What a read shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosisKind {
    /// A token appears twice.
    DuplicateToken,
    /// A token whose append failed.
    FailedAppend,
    /// A token no append of the key wrote.
    NeverAppended,
    /// A token whose append was invoked after the read returned.
    AppendedAfterRead,
    /// A token missing although its append was acknowledged before the
    /// read was invoked (the key is never deleted).
    LostToken,
}

/// A violation one read shows by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// What it shows.
    pub kind: DiagnosisKind,
    /// The token.
    pub token: String,
    /// The read (an operation id).
    pub read: usize,
    /// The append of the token, if there is one.
    pub append: Option<usize>,
}

impl Diagnosis {
    /// A sentence naming the token, the read's process and place (`place`
    /// turns an event index into words, e.g. "line 12").
    pub fn describe(&self, ops: &[Operation], place: &dyn Fn(usize) -> String) -> String {
        let read = &ops[self.read];
        let at = place(read.event_ret.unwrap_or(read.event_call));
        let append = self.append.map(|a| {
            let a = &ops[a];
            format!(
                " (append by process {} at {})",
                a.process,
                place(a.event_call)
            )
        });
        let what = match self.kind {
            DiagnosisKind::DuplicateToken => "duplicate token",
            DiagnosisKind::FailedAppend => "token of a failed append",
            DiagnosisKind::NeverAppended => "token never appended",
            DiagnosisKind::AppendedAfterRead => "token appended only after the read returned",
            DiagnosisKind::LostToken => {
                "lost token (acknowledged before the read began, missing from it)"
            }
        };
        format!(
            "{what} {} in read by process {} at {at}{}",
            self.token,
            read.process,
            append.unwrap_or_default()
        )
    }
}

/// The diagnoses of one key's operations (empty when the key is not an
/// append key with one unique token per append).
pub(crate) fn diagnose(ops: &[&Operation]) -> Vec<Diagnosis> {
    if !token_key(ops) {
        return Vec::new();
    }
    let mut owner: HashMap<&str, &Operation> = HashMap::new();
    for op in ops {
        if let OpKind::Append(u) = &op.kind {
            let mut parts = u.split_whitespace();
            let (Some(token), None) = (parts.next(), parts.next()) else {
                return Vec::new();
            };
            if owner.insert(token, op).is_some() {
                return Vec::new();
            }
        }
    }
    let deleted = ops
        .iter()
        .any(|op| op.status != Status::Fail && matches!(op.kind, OpKind::Del { .. }));
    let mut acked: Vec<(u64, &Operation)> = ops
        .iter()
        .filter(|op| op.status == Status::Ok && matches!(op.kind, OpKind::Append(_)))
        .filter_map(|op| Some((op.ret?, *op)))
        .collect();
    acked.sort_by_key(|&(ret, op)| (ret, op.id));
    let mut out = Vec::new();
    for read in ops {
        let (OpKind::Get(Some(value)), Some(ret)) = (&read.kind, read.ret) else {
            continue;
        };
        let tokens: Vec<&str> = value
            .as_deref()
            .map(|v| v.split_whitespace().collect())
            .unwrap_or_default();
        let mut seen = HashSet::new();
        let mut acked_before = 0;
        for token in &tokens {
            let append = owner.get(token).copied();
            let kind = match append {
                _ if !seen.insert(*token) => Some(DiagnosisKind::DuplicateToken),
                None => Some(DiagnosisKind::NeverAppended),
                Some(a) if a.status == Status::Fail => Some(DiagnosisKind::FailedAppend),
                Some(a) if a.call > ret => Some(DiagnosisKind::AppendedAfterRead),
                Some(a) => {
                    if a.status == Status::Ok && a.ret.is_some_and(|r| r < read.call) {
                        acked_before += 1;
                    }
                    None
                }
            };
            if let Some(kind) = kind {
                out.push(Diagnosis {
                    kind,
                    token: (*token).to_owned(),
                    read: read.id,
                    append: append.map(|a| a.id),
                });
            }
        }
        let must = acked.partition_point(|&(r, _)| r < read.call);
        if !deleted && acked_before < must {
            let missing = acked[..must].iter().find_map(|&(_, a)| match &a.kind {
                OpKind::Append(u) => u
                    .split_whitespace()
                    .next()
                    .filter(|t| !seen.contains(t))
                    .map(|t| (t, a)),
                _ => None,
            });
            if let Some((token, a)) = missing {
                out.push(Diagnosis {
                    kind: DiagnosisKind::LostToken,
                    token: token.to_owned(),
                    read: read.id,
                    append: Some(a.id),
                });
            }
        }
        if out.len() >= DIAGNOSES_PER_KEY_MAX {
            out.truncate(DIAGNOSES_PER_KEY_MAX);
            break;
        }
    }
    out
}
