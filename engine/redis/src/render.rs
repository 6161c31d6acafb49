//! Replies: a write's [`KvResult`] or a read of the [`KvStore`], rendered
//! with the types and texts Redis uses.

use super::answer::{key_read_keys, render_key_read};
use super::command::{Read, WriteReply};
use super::glob::glob_match;
use super::resp::Reply;
use bytes::Bytes;
use sampan::service::ServerError;
use sampan_kv::{KvFailure, KvResult, KvStore, ScanRange};
use std::collections::BTreeMap;

/// Renders the result of an applied write.
pub fn render_write(shape: WriteReply, result: &KvResult, out: &mut Reply<'_>) {
    match (shape, result) {
        (_, KvResult::Failed(f)) => out.error(&failure_text(f)),
        (WriteReply::OkOrNil, KvResult::Put { written: true, .. }) | (WriteReply::Ok, _) => {
            out.simple("OK")
        }
        (WriteReply::OkOrNil, _) => out.bulk(None),
        (WriteReply::OldValue, KvResult::Put { old, .. } | KvResult::Count { old, .. }) => {
            out.bulk(old.as_deref())
        }
        (WriteReply::WrittenFlag, KvResult::Put { written, .. }) => {
            out.integer(i64::from(*written))
        }
        (WriteReply::Count, KvResult::Count { count, .. }) => out.integer(*count as i64),
        (WriteReply::Int, KvResult::Int(n)) => out.integer(*n),
        (WriteReply::Len, KvResult::Len(n)) => out.integer(*n as i64),
        (WriteReply::Flag, KvResult::Flag(b)) => out.integer(i64::from(*b)),
        (WriteReply::Reply, KvResult::Reply(r)) => out.reply(r),
        (shape, other) => out.error(&format!("ERR internal: {shape:?} cannot render {other:?}")),
    }
}

/// Redis's text for a failed write.
pub fn failure_text(f: &KvFailure) -> String {
    match f {
        KvFailure::NotAnInteger => "ERR value is not an integer or out of range".into(),
        KvFailure::Overflow => "ERR increment or decrement would overflow".into(),
        KvFailure::StaleSequence { oldest_kept } => {
            format!("ERR request too old to retry safely (oldest kept {oldest_kept})")
        }
        KvFailure::Invalid(why) => format!("ERR {why}"),
        KvFailure::WrongType => sampan_kv::WRONGTYPE.into(),
    }
}

/// Cursors a connection handed out for `SCAN`: Redis clients expect a
/// number, so each cursor maps to the key the next page starts after.
#[derive(Debug, Default)]
pub struct ScanCursors {
    next_id: u64,
    after: BTreeMap<u64, Bytes>,
}

/// Cursors kept per connection; the oldest are forgotten past this.
const SCAN_CURSORS_MAX: usize = 1024;

impl ScanCursors {
    /// A new cursor for a page that starts after `after`.
    pub(crate) fn issue(&mut self, after: Bytes) -> u64 {
        self.next_id += 1;
        self.after.insert(self.next_id, after);
        while self.after.len() > SCAN_CURSORS_MAX {
            self.after.pop_first();
        }
        self.next_id
    }

    /// The key a cursor continues after (`None`: unknown or already used).
    pub(crate) fn take(&mut self, cursor: u64) -> Option<Bytes> {
        self.after.remove(&cursor)
    }
}

/// The error reply for a request the server could not serve.
pub fn error_text(e: &ServerError) -> String {
    match e {
        ServerError::NoSuchGroup { group, node } => {
            format!(
                "ERR node {node} has no group {group} (database {})",
                group - 1
            )
        }
        other => format!("ERR {other}"),
    }
}

/// Renders a read (all but `INFO`, which the server renders) of `store` at
/// wall-clock `now_ms`: what the server answers, computed from a local
/// store (the port's unit tests).
pub fn render_read(
    read: &Read,
    store: &KvStore,
    now_ms: u64,
    cursors: &mut ScanCursors,
    out: &mut Reply<'_>,
) {
    if let Some(keys) = key_read_keys(read) {
        let items: Vec<_> = keys.iter().map(|k| store.get(k, now_ms)).collect();
        return render_key_read(read, &items, now_ms, out);
    }
    match read {
        Read::DbSize => out.integer(store.len() as i64),
        Read::Keys(pattern) => {
            let all = ScanRange::Range {
                start: Bytes::new(),
                end: None,
            };
            let page = store.scan(&all, None, usize::MAX, now_ms);
            let keys: Vec<_> = page
                .items
                .iter()
                .filter(|(k, _)| glob_match(pattern, k))
                .collect();
            out.array(Some(keys.len()));
            for (k, _) in keys {
                out.bulk(Some(k));
            }
        }
        Read::Scan {
            cursor,
            pattern,
            count,
            ..
        } => scan(
            store,
            now_ms,
            cursors,
            *cursor,
            pattern.as_ref(),
            *count,
            out,
        ),
        Read::Data(q) => out.reply(&store.answer_data(q, now_ms)),
        other => out.error(&format!(
            "ERR internal: {other:?} is rendered by the server"
        )),
    }
}

#[allow(clippy::too_many_arguments)]
fn scan(
    store: &KvStore,
    now_ms: u64,
    cursors: &mut ScanCursors,
    cursor: u64,
    pattern: Option<&Bytes>,
    count: usize,
    out: &mut Reply<'_>,
) {
    let after = match cursor {
        0 => None,
        c => match cursors.after.remove(&c) {
            Some(k) => Some(k),
            None => return out.error("ERR invalid cursor"),
        },
    };
    let all = ScanRange::Range {
        start: Bytes::new(),
        end: None,
    };
    let page = store.scan(&all, after.as_ref(), count, now_ms);
    let next = page.next.map_or(0, |k| cursors.issue(k));
    let keys: Vec<_> = page
        .items
        .iter()
        .filter(|(k, _)| pattern.is_none_or(|p| glob_match(p, k)))
        .collect();
    out.array(Some(2));
    out.bulk(Some(next.to_string().as_bytes()));
    out.array(Some(keys.len()));
    for (k, _) in keys {
        out.bulk(Some(k));
    }
}
