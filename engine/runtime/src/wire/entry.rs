//! Log entries as storage records: the record's `kind` byte says what the
//! entry is, and a membership change carries its change encoded in the
//! payload.

use super::error::WireError;
use crate::codec::Reader;
use crate::raft::{ConfChange, Entry, EntryKind, NodeId};
use bytes::{BufMut, Bytes, BytesMut};
use sampan_storage::format::{RecordRun, RunBuilder};
use std::collections::BTreeSet;

const KIND_NORMAL: u8 = 1;
const KIND_NOOP: u8 = 2;
const KIND_CONF_CHANGE: u8 = 3;

const CC_SET: u8 = 1;
const CC_ENTER_JOINT: u8 = 2;
const CC_LEAVE_JOINT: u8 = 3;

/// The record kind byte of an entry.
pub fn record_kind(kind: &EntryKind) -> u8 {
    match kind {
        EntryKind::Normal => KIND_NORMAL,
        EntryKind::NoOp => KIND_NOOP,
        EntryKind::ConfChange(_) => KIND_CONF_CHANGE,
    }
}

/// Encodes consecutive entries as a run of records: done once, when a
/// leader accepts proposals; from then on the records travel as they are.
pub fn run_from_entries(entries: &[Entry]) -> RecordRun {
    let Some(first) = entries.first() else {
        return RecordRun::empty(0);
    };
    let bytes = entries
        .iter()
        .map(|e| sampan_storage::format::record_len(e.payload.len()))
        .sum();
    let mut b = RunBuilder::with_capacity(first.index, bytes);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(
            e.index,
            first.index + i as u64,
            "entries must be consecutive"
        );
        match &e.kind {
            EntryKind::ConfChange(cc) => b.push(e.term, KIND_CONF_CHANGE, &encode_conf_change(cc)),
            kind => b.push(e.term, record_kind(kind), &e.payload),
        };
    }
    b.finish()
}

/// The entries of a validated run; payloads are slices of the run's bytes.
pub fn entries_from_run(run: &RecordRun) -> Result<Vec<Entry>, WireError> {
    let mut out = Vec::with_capacity(run.len().min(4096) as usize);
    for rec in run.iter() {
        let payload = rec.payload();
        let kind = match rec.header.kind {
            KIND_NORMAL => EntryKind::Normal,
            KIND_NOOP => EntryKind::NoOp,
            KIND_CONF_CHANGE => {
                EntryKind::ConfChange(Box::new(decode_conf_change(payload.clone())?))
            }
            tag => {
                return Err(WireError::UnknownTag {
                    what: "entry kind",
                    tag,
                });
            }
        };
        let payload = if matches!(kind, EntryKind::Normal) {
            payload
        } else {
            Bytes::new()
        };
        out.push(Entry {
            term: rec.header.term,
            index: rec.header.index,
            kind,
            payload,
        });
    }
    if out.len() as u64 != run.len() {
        return Err(WireError::Invalid {
            what: "record run",
            detail: "records do not parse".into(),
        });
    }
    Ok(out)
}

pub(crate) fn put_ids(out: &mut BytesMut, ids: &BTreeSet<NodeId>) {
    out.put_u32_le(ids.len() as u32);
    for id in ids {
        out.put_u64_le(id.0);
    }
}

pub(crate) fn read_ids(r: &mut Reader, what: &'static str) -> Result<BTreeSet<NodeId>, WireError> {
    let n = r.count(what, 8)?;
    Ok((0..n)
        .map(|_| r.u64(what).map(NodeId))
        .collect::<Result<_, _>>()?)
}

fn encode_conf_change(cc: &ConfChange) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    match cc {
        ConfChange::Set { voters, learners } => {
            out.put_u8(CC_SET);
            put_ids(&mut out, voters);
            put_ids(&mut out, learners);
        }
        ConfChange::EnterJoint { voters, learners } => {
            out.put_u8(CC_ENTER_JOINT);
            put_ids(&mut out, voters);
            put_ids(&mut out, learners);
        }
        ConfChange::LeaveJoint => out.put_u8(CC_LEAVE_JOINT),
    }
    out.freeze()
}

fn decode_conf_change(payload: Bytes) -> Result<ConfChange, WireError> {
    let mut r = Reader::new(payload);
    let cc = match r.u8("conf change tag")? {
        CC_SET => ConfChange::Set {
            voters: read_ids(&mut r, "voters")?,
            learners: read_ids(&mut r, "learners")?,
        },
        CC_ENTER_JOINT => ConfChange::EnterJoint {
            voters: read_ids(&mut r, "voters")?,
            learners: read_ids(&mut r, "learners")?,
        },
        CC_LEAVE_JOINT => ConfChange::LeaveJoint,
        tag => {
            return Err(WireError::UnknownTag {
                what: "conf change",
                tag,
            });
        }
    };
    r.finish("conf change")?;
    Ok(cc)
}
