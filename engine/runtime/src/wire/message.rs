//! One Raft message of one group as a frame body.
//!
//! Layout, version 1 (little-endian): `version u8 | tag u8 | group u64 |
//! from u64 | to u64 | term u64 | fields of the kind`. An AppendEntries
//! body has `index_prev u64 | term_prev u64 | index_commit u64 | count u32`
//! and ends with its `count` records, exactly as the leader's log holds
//! them, as a separate piece.

use super::WIRE_VERSION;
use super::entry::{entries_from_run, put_ids, read_ids, run_from_entries};
use super::error::WireError;
use crate::codec::Reader;
use crate::raft::{
    Append, AppendResponse, Body, GroupId, Heartbeat, HeartbeatResponse, Hibernate,
    HibernateResponse, Membership, Message, NodeId, SnapshotMeta, Vote, VoteResponse,
};
use bytes::{BufMut, Bytes, BytesMut};
use sampan_storage::format::{RecordRun, parse_run};

mod tag {
    pub const APPEND: u8 = 1;
    pub const APPEND_RESPONSE: u8 = 2;
    pub const HEARTBEAT: u8 = 3;
    pub const HEARTBEAT_RESPONSE: u8 = 4;
    pub const VOTE: u8 = 5;
    pub const VOTE_RESPONSE: u8 = 6;
    pub const SNAPSHOT: u8 = 7;
    pub const TIMEOUT_NOW: u8 = 8;
    pub const HIBERNATE: u8 = 9;
    pub const HIBERNATE_RESPONSE: u8 = 10;
}

/// A decoded message, and for AppendEntries the validated records it
/// carried (the same bytes, to append to the log as they are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The message; an Append's entries have payloads sliced from `records`.
    pub message: Message,
    /// The records of an Append.
    pub records: Option<RecordRun>,
}

fn tag_of(body: &Body) -> u8 {
    match body {
        Body::Append(_) => tag::APPEND,
        Body::AppendResponse(_) => tag::APPEND_RESPONSE,
        Body::Heartbeat(_) => tag::HEARTBEAT,
        Body::HeartbeatResponse(_) => tag::HEARTBEAT_RESPONSE,
        Body::Vote(_) => tag::VOTE,
        Body::VoteResponse(_) => tag::VOTE_RESPONSE,
        Body::Snapshot(_) => tag::SNAPSHOT,
        Body::TimeoutNow => tag::TIMEOUT_NOW,
        Body::Hibernate(_) => tag::HIBERNATE,
        Body::HibernateResponse(_) => tag::HIBERNATE_RESPONSE,
    }
}

/// Encodes `msg` as body pieces. For an Append, `records` must be the log's
/// records of exactly its entries; with `None` they are encoded from the
/// entries (the slow path, for callers that have no log bytes at hand).
pub fn encode_message(msg: &Message, records: Option<&RecordRun>) -> Result<Vec<Bytes>, WireError> {
    let mut out = BytesMut::with_capacity(96);
    out.put_u8(WIRE_VERSION);
    out.put_u8(tag_of(&msg.body));
    out.put_u64_le(msg.group.0);
    out.put_u64_le(msg.from.0);
    out.put_u64_le(msg.to.0);
    out.put_u64_le(msg.term);
    let mut tail = None;
    match &msg.body {
        Body::Append(a) => {
            out.put_u64_le(a.index_prev);
            out.put_u64_le(a.term_prev);
            out.put_u64_le(a.index_commit);
            out.put_u32_le(a.entries.len() as u32);
            let run = match records {
                Some(run) => {
                    check_run_matches(a, run)?;
                    run.clone()
                }
                None => run_from_entries(&a.entries),
            };
            tail = Some(run.bytes().clone());
        }
        Body::AppendResponse(r) => {
            out.put_u8(u8::from(r.reject));
            out.put_u64_le(r.index);
            out.put_u64_le(r.index_hint);
            out.put_u64_le(r.term_hint);
        }
        Body::Heartbeat(h) => put_heartbeat(&mut out, h),
        Body::HeartbeatResponse(h) => put_heartbeat_response(&mut out, h),
        Body::Vote(v) => {
            out.put_u8(u8::from(v.pre));
            out.put_u64_le(v.index_last);
            out.put_u64_le(v.term_last);
            out.put_u8(u8::from(v.transfer));
        }
        Body::VoteResponse(v) => {
            out.put_u8(u8::from(v.pre));
            out.put_u8(u8::from(v.reject));
        }
        Body::Snapshot(meta) => put_snapshot_meta(&mut out, meta),
        Body::TimeoutNow => {}
        Body::Hibernate(h) => {
            out.put_u64_le(h.index_last);
            out.put_u64_le(h.term_last);
            out.put_u64_le(h.sent_ms);
        }
        Body::HibernateResponse(h) => out.put_u8(u8::from(h.ok)),
    }
    let mut pieces = vec![out.freeze()];
    pieces.extend(tail.filter(|t| !t.is_empty()));
    Ok(pieces)
}

fn check_run_matches(a: &Append, run: &RecordRun) -> Result<(), WireError> {
    let fits = run.len() == a.entries.len() as u64
        && (run.is_empty()
            || (run.first_index() == a.index_prev + 1
                && run.last_term() == a.entries[a.entries.len() - 1].term));
    if fits {
        Ok(())
    } else {
        Err(WireError::Invalid {
            what: "append records",
            detail: format!(
                "{} record(s) from {} do not match {} entries after {}",
                run.len(),
                run.first_index(),
                a.entries.len(),
                a.index_prev
            ),
        })
    }
}

pub(crate) fn put_heartbeat(out: &mut BytesMut, h: &Heartbeat) {
    out.put_u64_le(h.index_commit);
    out.put_u64_le(h.id_read);
    out.put_u64_le(h.lease_ms);
}

pub(crate) fn read_heartbeat(r: &mut Reader) -> Result<Heartbeat, WireError> {
    Ok(Heartbeat {
        index_commit: r.u64("commit")?,
        id_read: r.u64("read id")?,
        lease_ms: r.u64("lease ms")?,
    })
}

pub(crate) fn put_heartbeat_response(out: &mut BytesMut, h: &HeartbeatResponse) {
    out.put_u64_le(h.id_read);
    out.put_u64_le(h.lease_ms);
}

pub(crate) fn read_heartbeat_response(r: &mut Reader) -> Result<HeartbeatResponse, WireError> {
    Ok(HeartbeatResponse {
        id_read: r.u64("read id")?,
        lease_ms: r.u64("lease ms")?,
    })
}

pub(super) fn put_snapshot_meta(out: &mut BytesMut, meta: &SnapshotMeta) {
    out.put_u64_le(meta.index);
    out.put_u64_le(meta.term);
    let (voters, outgoing, learners, learners_next) = meta.membership.to_parts();
    put_ids(out, &voters);
    put_ids(out, &outgoing);
    put_ids(out, &learners);
    put_ids(out, &learners_next);
}

pub(super) fn read_snapshot_meta(r: &mut Reader) -> Result<SnapshotMeta, WireError> {
    let index = r.u64("snapshot index")?;
    let term = r.u64("snapshot term")?;
    let voters = read_ids(r, "voters")?;
    let outgoing = read_ids(r, "outgoing voters")?;
    let learners = read_ids(r, "learners")?;
    let learners_next = read_ids(r, "next learners")?;
    let membership =
        Membership::from_parts(voters, outgoing, learners, learners_next).map_err(|e| {
            WireError::Invalid {
                what: "snapshot membership",
                detail: e.to_string(),
            }
        })?;
    Ok(SnapshotMeta {
        index,
        term,
        membership,
    })
}

/// Decodes a message body; an Append's records are validated (CRCs,
/// consecutive indexes from `index_prev + 1`, payloads at most
/// `payload_max` bytes).
pub fn decode_message(body: Bytes, payload_max: u32) -> Result<Decoded, WireError> {
    let mut r = Reader::new(body);
    let version = r.u8("version")?;
    if version != WIRE_VERSION {
        return Err(WireError::Version(version));
    }
    let t = r.u8("tag")?;
    let group = GroupId(r.u64("group")?);
    let from = NodeId(r.u64("from")?);
    let to = NodeId(r.u64("to")?);
    let term = r.u64("term")?;
    let mut records = None;
    let body = match t {
        tag::APPEND => {
            let index_prev = r.u64("index_prev")?;
            let term_prev = r.u64("term_prev")?;
            let index_commit = r.u64("index_commit")?;
            let count = r.u32("entry count")?;
            let first = index_prev.checked_add(1).ok_or(WireError::Invalid {
                what: "index_prev",
                detail: "at the end of the index space".into(),
            })?;
            let run = parse_run(r.rest(), Some(first), payload_max)?;
            if run.len() != u64::from(count) {
                return Err(WireError::Invalid {
                    what: "append records",
                    detail: format!("{} record(s), header says {count}", run.len()),
                });
            }
            let entries = entries_from_run(&run)?;
            records = Some(run);
            Body::Append(Append {
                index_prev,
                term_prev,
                entries,
                index_commit,
            })
        }
        tag::APPEND_RESPONSE => Body::AppendResponse(AppendResponse {
            reject: r.bool("reject")?,
            index: r.u64("index")?,
            index_hint: r.u64("index_hint")?,
            term_hint: r.u64("term_hint")?,
        }),
        tag::HEARTBEAT => Body::Heartbeat(read_heartbeat(&mut r)?),
        tag::HEARTBEAT_RESPONSE => Body::HeartbeatResponse(read_heartbeat_response(&mut r)?),
        tag::VOTE => Body::Vote(Vote {
            pre: r.bool("pre")?,
            index_last: r.u64("index_last")?,
            term_last: r.u64("term_last")?,
            transfer: r.bool("transfer")?,
        }),
        tag::VOTE_RESPONSE => Body::VoteResponse(VoteResponse {
            pre: r.bool("pre")?,
            reject: r.bool("reject")?,
        }),
        tag::SNAPSHOT => Body::Snapshot(Box::new(read_snapshot_meta(&mut r)?)),
        tag::TIMEOUT_NOW => Body::TimeoutNow,
        tag::HIBERNATE => Body::Hibernate(Hibernate {
            index_last: r.u64("index_last")?,
            term_last: r.u64("term_last")?,
            sent_ms: r.u64("hibernate sent ms")?,
        }),
        tag::HIBERNATE_RESPONSE => Body::HibernateResponse(HibernateResponse { ok: r.bool("ok")? }),
        tag => {
            return Err(WireError::UnknownTag {
                what: "message",
                tag,
            });
        }
    };
    r.finish("message")?;
    Ok(Decoded {
        message: Message {
            group,
            from,
            to,
            term,
            body,
        },
        records,
    })
}
