//! `MULTI`/`EXEC`/`DISCARD`/`WATCH`/`UNWATCH`: a connection's queued
//! requests become one [`KvCommand::Transaction`], applied at one log
//! index with nothing between its commands, its reads
//! ([`KvCommand::Read`]) seeing the writes before them. `WATCH` reads the
//! keys' versions through the group (a linearizable read); the
//! transaction carries them and applies only if none changed, else `EXEC`
//! answers null, as Redis does. Retries are exactly-once like any write.
//!
//! Inside `MULTI`, reads of keys and values, writes, `PING` and `ECHO` are
//! queued; `SELECT` (a database is its own Raft group, so a transaction
//! cannot span two), `SCAN`/`KEYS`/`HSCAN`..., `INFO`, `AUTH`, `HELLO`,
//! `CLIENT`, `CONFIG` and `COMMAND` are refused and abort the transaction.

use super::{Conn, Ctx, query};
use crate::answer::{key_read_keys, render_key_read};
use crate::command::{Local, ParseError, Read, Request};
use crate::render::{failure_text, render_write};
use crate::resp::Reply;
use bytes::BytesMut;
use sampan::state_machine::now_ms;
use sampan_kv::{KvAnswer, KvCommand, KvQuery, KvResult};

/// Whether a request may be queued after `MULTI`.
fn queueable(req: &Request) -> bool {
    match req {
        Request::Write { .. } | Request::Blocking { .. } => true,
        Request::Read(r) => read_query(r).is_some(),
        Request::Local(Local::Ping(_) | Local::Echo(_)) => true,
        Request::Local(_) => false,
    }
}

/// The query a read becomes inside a transaction.
fn read_query(r: &Read) -> Option<KvQuery> {
    if let Some(keys) = key_read_keys(r) {
        return Some(KvQuery::Get(keys.to_vec()));
    }
    match r {
        Read::Data(q) => Some(KvQuery::Data(q.clone())),
        Read::DbSize => Some(KvQuery::Len),
        _ => None,
    }
}

/// Whether Redis refuses an erroneous request when it is queued (and so
/// aborts the transaction), rather than queueing it and failing it in
/// `EXEC`'s reply.
fn refused_when_queued(msg: &str) -> bool {
    msg.starts_with("ERR unknown command")
        || msg.starts_with("ERR wrong number of arguments")
        || msg.starts_with("NOPERM")
        || msg.starts_with("NOAUTH")
        || msg.starts_with("MOVED")
        || msg.starts_with("CROSSSLOT")
}

/// Handles `req` if it belongs to the transaction machinery (`MULTI`,
/// `EXEC`, `DISCARD`, `WATCH`, `UNWATCH`) or arrives while the connection
/// queues; returns whether it did.
pub(super) async fn intercept(
    ctx: &Ctx,
    conn: &mut Conn,
    req: &Result<Request, ParseError>,
    out: &mut BytesMut,
) -> bool {
    let queuing = conn.multi.is_some();
    let proto = conn.proto;
    match req {
        Ok(Request::Local(Local::Multi)) if queuing => {
            Reply::with_proto(out, proto).error("ERR MULTI calls can not be nested")
        }
        Ok(Request::Local(Local::Multi)) => {
            conn.multi = Some(Vec::new());
            conn.multi_dirty = false;
            Reply::with_proto(out, proto).simple("OK");
        }
        Ok(Request::Local(Local::Exec)) if queuing => exec(ctx, conn, out).await,
        Ok(Request::Local(Local::Exec)) => {
            Reply::with_proto(out, proto).error("ERR EXEC without MULTI")
        }
        Ok(Request::Local(Local::Discard)) if queuing => {
            conn.multi = None;
            conn.watched.clear();
            Reply::with_proto(out, proto).simple("OK");
        }
        Ok(Request::Local(Local::Discard)) => {
            Reply::with_proto(out, proto).error("ERR DISCARD without MULTI")
        }
        Ok(Request::Local(Local::Watch(_))) if queuing => {
            Reply::with_proto(out, proto).error("ERR WATCH inside MULTI is not allowed")
        }
        Ok(Request::Local(Local::Watch(keys))) => watch(ctx, conn, keys, out).await,
        Ok(Request::Local(Local::Unwatch)) => {
            conn.watched.clear();
            Reply::with_proto(out, proto).simple("OK");
        }
        _ if !queuing => return false,
        Ok(Request::Local(Local::Quit)) => return false,
        // Inside MULTI a blocking pop does not block: it pops or answers
        // null at once, as in Redis.
        Ok(Request::Blocking { command, .. }) => {
            if let Some(q) = conn.multi.as_mut() {
                q.push(Ok(Request::Write {
                    command: KvCommand::Data(command.clone()),
                    reply: crate::command::WriteReply::Reply,
                }));
            }
            Reply::with_proto(out, proto).simple("QUEUED");
        }
        Ok(r) if queueable(r) => {
            if let Some(q) = conn.multi.as_mut() {
                q.push(Ok(r.clone()));
            }
            Reply::with_proto(out, proto).simple("QUEUED");
        }
        Ok(_) => {
            conn.multi_dirty = true;
            Reply::with_proto(out, proto).error(
                "ERR command not allowed inside MULTI here (SELECT, SCAN, KEYS, INFO and connection commands run outside it)",
            );
        }
        // Redis refuses at queue time only unknown commands, wrong
        // arities and permissions; a bad argument is queued and reported
        // in EXEC's reply.
        Err(ParseError(msg)) if !refused_when_queued(msg) => {
            if let Some(q) = conn.multi.as_mut() {
                q.push(Err(ParseError(msg.clone())));
            }
            Reply::with_proto(out, proto).simple("QUEUED");
        }
        Err(ParseError(msg)) => {
            conn.multi_dirty = true;
            Reply::with_proto(out, proto).error(msg);
        }
    }
    true
}

/// `WATCH`: the keys' current versions, read through the group.
async fn watch(ctx: &Ctx, conn: &mut Conn, keys: &[bytes::Bytes], out: &mut BytesMut) {
    let group = ctx.group(conn).clone();
    let items = match query(&group, KvQuery::Get(keys.to_vec())).await {
        Ok(KvAnswer::Values { items, .. }) if items.len() == keys.len() => items,
        Ok(other) => {
            return Reply::new(out).error(&format!("ERR unexpected answer {other:?}"));
        }
        Err(e) => return Reply::new(out).error(&e),
    };
    for (k, it) in keys.iter().zip(items) {
        conn.watched.push((k.clone(), it.map(|it| it.version)));
    }
    Reply::with_proto(out, conn.proto).simple("OK");
}

/// `EXEC`: one proposal for the whole queue; the replies in order.
async fn exec(ctx: &Ctx, conn: &mut Conn, out: &mut BytesMut) {
    let queued = conn.multi.take().unwrap_or_default();
    let watch = std::mem::take(&mut conn.watched);
    if std::mem::take(&mut conn.multi_dirty) {
        return Reply::with_proto(out, conn.proto)
            .error("EXECABORT Transaction discarded because of previous errors.");
    }
    let commands: Vec<KvCommand> = queued
        .iter()
        .filter_map(|r| match r {
            Ok(Request::Write { command, .. }) => Some(command.clone()),
            Ok(Request::Read(r)) => read_query(r).map(KvCommand::Read),
            Ok(Request::Local(_) | Request::Blocking { .. }) | Err(_) => None,
        })
        .collect();
    let results = if commands.is_empty() && watch.is_empty() {
        Vec::new()
    } else {
        let group = ctx.group(conn).clone();
        match ctx
            .writer
            .write(&group, KvCommand::Transaction { watch, commands })
            .await
        {
            Ok(KvResult::Batch(results)) => results,
            Ok(KvResult::Aborted) => return Reply::with_proto(out, conn.proto).array(None),
            Ok(KvResult::Failed(f)) => {
                return Reply::with_proto(out, conn.proto).error(&failure_text(&f));
            }
            Ok(other) => {
                return Reply::with_proto(out, conn.proto)
                    .error(&format!("ERR unexpected result {other:?}"));
            }
            Err(e) => return Reply::with_proto(out, conn.proto).error(&e.reply_text()),
        }
    };
    Reply::with_proto(out, conn.proto).array(Some(queued.len()));
    let mut results = results.into_iter();
    let now = now_ms();
    for r in &queued {
        let r = match r {
            Ok(Request::Local(l)) => {
                super::local(ctx, conn, l, out);
                continue;
            }
            Err(ParseError(msg)) => {
                Reply::with_proto(out, conn.proto).error(msg);
                continue;
            }
            Ok(r) => r,
        };
        let mut reply = Reply::with_proto(out, conn.proto);
        let Some(result) = results.next() else {
            reply.error("ERR internal: fewer results than commands");
            continue;
        };
        match (r, result) {
            (Request::Write { reply: shape, .. }, result) => {
                render_write(*shape, &result, &mut reply)
            }
            (Request::Read(read), KvResult::Answer(answer)) => match answer {
                KvAnswer::Reply(x) => reply.reply(&x),
                KvAnswer::Count(n) => reply.integer(n as i64),
                values @ KvAnswer::Values { .. } => {
                    let items = values.into_items(now).unwrap_or_default();
                    render_key_read(read, &items, now, &mut reply);
                }
                other => reply.error(&format!("ERR unexpected answer {other:?}")),
            },
            (_, KvResult::Failed(f)) => reply.error(&failure_text(&f)),
            (_, other) => reply.error(&format!("ERR unexpected result {other:?}")),
        }
    }
}
