//! Parsing the commands on typed values (hashes, lists, sets, sorted sets)
//! and the string and key commands beyond `SET`/`GET`, into the state
//! machine's [`DataCmd`] (writes) and [`DataQuery`] (reads), with Redis's
//! arity, syntax and value errors.

use super::command::{ParseError, Read, Request, WriteReply, arity, err, int, scan_args};
use bytes::Bytes;
use sampan_kv::{
    DataCmd, DataQuery, KvCommand, LexBound, ScoreBound, SetOp, Ttl, ValueKind, ZAddFlags,
    ZRangeBy, ZRangeSpec, parse_float,
};
use std::hash::{BuildHasher, Hasher};

fn write(d: DataCmd) -> Request {
    Request::Write {
        command: KvCommand::Data(d),
        reply: WriteReply::Reply,
    }
}

fn read(q: DataQuery) -> Request {
    Request::Read(Read::Data(q))
}

/// A fresh random seed for the commands that choose at random: fixed
/// into the command, so every replica that applies it chooses alike.
fn seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5A3B_A11E);
    h.finish()
}

fn float(arg: &[u8]) -> Result<f64, ParseError> {
    parse_float(arg).map_or_else(|| err("ERR value is not a valid float"), Ok)
}

/// `HRANDFIELD`/`SRANDMEMBER`'s count: a negative one (repeats allowed)
/// is bounded, so one command cannot build a reply of any size.
fn random_count(arg: &[u8]) -> Result<i64, ParseError> {
    let n = int(arg)?;
    if n < -(sampan_kv::RANDOM_REPEATS_MAX as i64) {
        return err(format!(
            "ERR value is out of range: at most {} elements with repeats",
            sampan_kv::RANDOM_REPEATS_MAX
        ));
    }
    Ok(n)
}

fn count_arg(arg: &[u8]) -> Result<u64, ParseError> {
    let n = int(arg)?;
    if n < 0 {
        return err("ERR value is out of range, must be positive");
    }
    Ok(n as u64)
}

fn score_bound(arg: &[u8]) -> Result<ScoreBound, ParseError> {
    let (exclusive, body) = match arg.first() {
        Some(b'(') => (true, &arg[1..]),
        _ => (false, arg),
    };
    match parse_float(body) {
        Some(value) => Ok(ScoreBound { value, exclusive }),
        None => err("ERR min or max is not a float"),
    }
}

fn lex_bound(arg: &Bytes) -> Result<LexBound, ParseError> {
    match arg.first() {
        Some(b'-') if arg.len() == 1 => Ok(LexBound::Min),
        Some(b'+') if arg.len() == 1 => Ok(LexBound::Max),
        Some(b'[') => Ok(LexBound::Inclusive(arg.slice(1..))),
        Some(b'(') => Ok(LexBound::Exclusive(arg.slice(1..))),
        _ => err("ERR min or max not valid string range item"),
    }
}

fn pairs(args: &[Bytes]) -> Vec<(Bytes, Bytes)> {
    args.chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect()
}

fn side(arg: &[u8]) -> Result<bool, ParseError> {
    match arg.to_ascii_uppercase().as_slice() {
        b"LEFT" => Ok(true),
        b"RIGHT" => Ok(false),
        _ => err("ERR syntax error"),
    }
}

/// `HSCAN`/`SSCAN`/`ZSCAN key cursor [MATCH p] [COUNT n]`: the cursor is
/// resolved by the server (it maps numbers to positions).
fn elem_scan(kind: ValueKind, rest: &[Bytes]) -> Result<Request, ParseError> {
    let a = scan_args(&rest[1..], false)?;
    Ok(Request::Read(Read::ElemScan {
        cursor: a.cursor,
        query: DataQuery::ElemScan {
            key: rest[0].clone(),
            kind,
            after: None,
            count: a.count.min(u32::MAX as usize) as u32,
            pattern: a.pattern,
        },
    }))
}

/// `ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT o c] [WITHSCORES]`
/// and the older forms (`legacy`: `ZRANGEBYSCORE`, `ZREVRANGE`, ...).
fn zrange(rest: &[Bytes], by: Option<&[u8]>, rev: bool) -> Result<Request, ParseError> {
    let mut by_score = by == Some(&b"SCORE"[..]);
    let mut by_lex = by == Some(&b"LEX"[..]);
    let mut rev = rev;
    let mut limit = None;
    let mut with_scores = false;
    let mut i = 3;
    while i < rest.len() {
        match rest[i].to_ascii_uppercase().as_slice() {
            b"BYSCORE" if by.is_none() => by_score = true,
            b"BYLEX" if by.is_none() => by_lex = true,
            b"REV" if by.is_none() && !rev => rev = true,
            b"WITHSCORES" => with_scores = true,
            b"LIMIT" if i + 2 < rest.len() => {
                limit = Some((int(&rest[i + 1])?, int(&rest[i + 2])?));
                i += 2;
            }
            _ => return err("ERR syntax error"),
        }
        i += 1;
    }
    if by_score && by_lex {
        return err("ERR syntax error");
    }
    if limit.is_some() && !by_score && !by_lex {
        return err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
    }
    if with_scores && by_lex {
        return err("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
    }
    // With REV, score and lex ranges are given from max to min.
    let (lo, hi) = if rev && (by_score || by_lex) {
        (&rest[2], &rest[1])
    } else {
        (&rest[1], &rest[2])
    };
    let by = if by_score {
        ZRangeBy::Score {
            min: score_bound(lo)?,
            max: score_bound(hi)?,
        }
    } else if by_lex {
        ZRangeBy::Lex {
            min: lex_bound(lo)?,
            max: lex_bound(hi)?,
        }
    } else {
        ZRangeBy::Rank {
            start: int(lo)?,
            stop: int(hi)?,
        }
    };
    Ok(read(DataQuery::ZRange {
        key: rest[0].clone(),
        spec: ZRangeSpec {
            by,
            rev,
            limit,
            with_scores,
        },
    }))
}

fn zadd(rest: &[Bytes]) -> Result<Request, ParseError> {
    let mut flags = ZAddFlags::default();
    let mut i = 1;
    while i < rest.len() {
        match rest[i].to_ascii_uppercase().as_slice() {
            b"NX" => flags.nx = true,
            b"XX" => flags.xx = true,
            b"GT" => flags.gt = true,
            b"LT" => flags.lt = true,
            b"CH" => flags.ch = true,
            b"INCR" => flags.incr = true,
            _ => break,
        }
        i += 1;
    }
    let args = &rest[i..];
    if args.is_empty() || !args.len().is_multiple_of(2) {
        return err("ERR syntax error");
    }
    if flags.nx && flags.xx {
        return err("ERR XX and NX options at the same time are not compatible");
    }
    if (flags.gt && flags.lt) || (flags.nx && (flags.gt || flags.lt)) {
        return err("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if flags.incr && args.len() > 2 {
        return err("ERR INCR option supports a single increment-element pair");
    }
    let mut scored = Vec::with_capacity(args.len() / 2);
    for p in args.chunks(2) {
        scored.push((float(&p[0])?, p[1].clone()));
    }
    Ok(write(DataCmd::ZAdd {
        key: rest[0].clone(),
        flags,
        pairs: scored,
    }))
}

fn set_op(name: &[u8]) -> SetOp {
    if name.starts_with(b"SINTER") {
        SetOp::Inter
    } else if name.starts_with(b"SUNION") {
        SetOp::Union
    } else {
        SetOp::Diff
    }
}

/// `GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]`.
fn getex(rest: &[Bytes]) -> Result<Request, ParseError> {
    let key = rest[0].clone();
    let opts = &rest[1..];
    let ttl = match opts {
        [] => return Ok(Request::Read(Read::Get(key))),
        [p] if p.eq_ignore_ascii_case(b"PERSIST") => Ttl::Persist,
        [opt, v] => {
            let n = int(v)?;
            if n <= 0 {
                return err("ERR invalid expire time in 'getex' command");
            }
            let n = n as u64;
            match opt.to_ascii_uppercase().as_slice() {
                b"EX" => Ttl::AfterMs(n.saturating_mul(1000)),
                b"PX" => Ttl::AfterMs(n),
                b"EXAT" => Ttl::AtMs(n.saturating_mul(1000)),
                b"PXAT" => Ttl::AtMs(n),
                _ => return err("ERR syntax error"),
            }
        }
        _ => return err("ERR syntax error"),
    };
    Ok(write(DataCmd::GetEx { key, ttl }))
}

/// A blocking command's timeout: seconds, fractions allowed, 0 for ever.
fn timeout(arg: &[u8]) -> Result<Option<std::time::Duration>, ParseError> {
    match parse_float(arg) {
        Some(t) if t < 0.0 => err("ERR timeout is negative"),
        Some(0.0) => Ok(None),
        Some(t) if t.is_finite() && t < 1e12 => Ok(Some(std::time::Duration::from_secs_f64(t))),
        _ => err("ERR timeout is not a float or out of range"),
    }
}

fn blocking(
    command: DataCmd,
    keys: Vec<Bytes>,
    t: &[u8],
    nil_array: bool,
) -> Result<Request, ParseError> {
    Ok(Request::Blocking {
        command,
        keys,
        timeout: timeout(t)?,
        nil_array,
    })
}

/// Parses a typed command by its upper-cased name; `None` if the name is
/// not one of them.
pub fn parse(upper: &[u8], name: &str, rest: &[Bytes]) -> Option<Result<Request, ParseError>> {
    let n = rest.len();
    let key = || rest[0].clone();
    let r = match upper {
        // Strings and keys.
        b"GETSET" if n == 2 => Ok(Request::Write {
            command: KvCommand::Put {
                key: key(),
                value: rest[1].clone(),
                ttl: Ttl::Persist,
                condition: sampan_kv::PutCondition::Always,
                return_old: true,
            },
            reply: WriteReply::OldValue,
        }),
        b"GETEX" if n >= 1 => getex(rest),
        b"SETRANGE" if n == 3 => match int(&rest[1]) {
            Ok(o) if o < 0 => err("ERR offset is out of range"),
            Ok(o) => Ok(write(DataCmd::SetRange {
                key: key(),
                offset: o as u64,
                value: rest[2].clone(),
            })),
            Err(e) => Err(e),
        },
        b"GETRANGE" | b"SUBSTR" if n == 3 => (|| {
            Ok(read(DataQuery::GetRange {
                key: key(),
                start: int(&rest[1])?,
                end: int(&rest[2])?,
            }))
        })(),
        b"INCRBYFLOAT" if n == 2 => Ok(match parse_float(&rest[1]) {
            Some(delta) => write(DataCmd::IncrByFloat { key: key(), delta }),
            // Redis checks the key's type before the increment.
            None => read(DataQuery::Refuse {
                key: key(),
                kind: ValueKind::String,
                error: "ERR value is not a valid float".into(),
            }),
        }),
        b"MSETNX" if n >= 2 && n.is_multiple_of(2) => {
            Ok(write(DataCmd::MSetNx { pairs: pairs(rest) }))
        }
        b"RENAME" | b"RENAMENX" if n == 2 => Ok(write(DataCmd::Rename {
            from: key(),
            to: rest[1].clone(),
            nx: upper == b"RENAMENX",
        })),
        b"COPY" if n >= 2 => (|| {
            let mut replace = false;
            let mut i = 2;
            while i < n {
                match rest[i].to_ascii_uppercase().as_slice() {
                    b"REPLACE" => replace = true,
                    b"DB" if i + 1 < n => {
                        int(&rest[i + 1])?;
                        return err(
                            "ERR COPY to another database is not supported: each database is its own Raft group",
                        );
                    }
                    _ => return err("ERR syntax error"),
                }
                i += 1;
            }
            Ok(write(DataCmd::Copy {
                from: key(),
                to: rest[1].clone(),
                replace,
            }))
        })(),
        b"OBJECT" if n == 2 && rest[0].eq_ignore_ascii_case(b"ENCODING") => {
            Ok(read(DataQuery::Encoding {
                key: rest[1].clone(),
            }))
        }
        b"RANDOMKEY" if n == 0 => Ok(read(DataQuery::RandomKey { seed: seed() })),
        // Hashes.
        b"HSET" | b"HMSET" if n >= 3 && n % 2 == 1 => Ok(write(DataCmd::HSet {
            key: key(),
            pairs: pairs(&rest[1..]),
            nx: false,
            ok: upper == b"HMSET",
        })),
        b"HSETNX" if n == 3 => Ok(write(DataCmd::HSet {
            key: key(),
            pairs: pairs(&rest[1..]),
            nx: true,
            ok: false,
        })),
        b"HDEL" if n >= 2 => Ok(write(DataCmd::HDel {
            key: key(),
            fields: rest[1..].to_vec(),
        })),
        b"HINCRBY" if n == 3 => int(&rest[2]).map(|delta| {
            write(DataCmd::HIncrBy {
                key: key(),
                field: rest[1].clone(),
                delta,
            })
        }),
        b"HINCRBYFLOAT" if n == 3 => float(&rest[2]).map(|delta| {
            write(DataCmd::HIncrByFloat {
                key: key(),
                field: rest[1].clone(),
                delta,
            })
        }),
        b"HGET" if n == 2 => Ok(read(DataQuery::HGet {
            key: key(),
            field: rest[1].clone(),
        })),
        b"HMGET" if n >= 2 => Ok(read(DataQuery::HMGet {
            key: key(),
            fields: rest[1..].to_vec(),
        })),
        b"HEXISTS" if n == 2 => Ok(read(DataQuery::HExists {
            key: key(),
            field: rest[1].clone(),
        })),
        b"HSTRLEN" if n == 2 => Ok(read(DataQuery::HStrLen {
            key: key(),
            field: rest[1].clone(),
        })),
        b"HLEN" | b"LLEN" | b"SCARD" | b"ZCARD" if n == 1 => Ok(read(DataQuery::Len {
            key: key(),
            kind: match upper {
                b"HLEN" => ValueKind::Hash,
                b"LLEN" => ValueKind::List,
                b"SCARD" => ValueKind::Set,
                _ => ValueKind::ZSet,
            },
        })),
        b"HKEYS" | b"HVALS" | b"HGETALL" if n == 1 => Ok(read(DataQuery::HGetAll {
            key: key(),
            fields: upper != b"HVALS",
            values: upper != b"HKEYS",
        })),
        b"HRANDFIELD" if (1..=3).contains(&n) => (|| {
            let count = rest.get(1).map(|c| random_count(c)).transpose()?;
            let with_values = match rest.get(2) {
                None => false,
                Some(w) if w.eq_ignore_ascii_case(b"WITHVALUES") => true,
                Some(_) => return err("ERR syntax error"),
            };
            Ok(read(DataQuery::HRandField {
                key: key(),
                count,
                with_values,
                seed: seed(),
            }))
        })(),
        b"HSCAN" if n >= 2 => elem_scan(ValueKind::Hash, rest),
        // Lists.
        b"LPUSH" | b"RPUSH" | b"LPUSHX" | b"RPUSHX" if n >= 2 => Ok(write(DataCmd::Push {
            key: key(),
            left: upper[0] == b'L',
            values: rest[1..].to_vec(),
            existing: upper.ends_with(b"X"),
        })),
        b"LPOP" | b"RPOP" if (1..=2).contains(&n) => (|| {
            Ok(write(DataCmd::Pop {
                key: key(),
                left: upper[0] == b'L',
                count: rest.get(1).map(|c| count_arg(c)).transpose()?,
            }))
        })(),
        b"LLEN" => arity(name),
        b"LRANGE" if n == 3 => (|| {
            Ok(read(DataQuery::LRange {
                key: key(),
                start: int(&rest[1])?,
                stop: int(&rest[2])?,
            }))
        })(),
        b"LINDEX" if n == 2 => {
            int(&rest[1]).map(|index| read(DataQuery::LIndex { key: key(), index }))
        }
        b"LSET" if n == 3 => int(&rest[1]).map(|index| {
            write(DataCmd::LSet {
                key: key(),
                index,
                value: rest[2].clone(),
            })
        }),
        b"LINSERT" if n == 4 => {
            let before = match rest[1].to_ascii_uppercase().as_slice() {
                b"BEFORE" => Ok(true),
                b"AFTER" => Ok(false),
                _ => err("ERR syntax error"),
            };
            before.map(|before| {
                write(DataCmd::LInsert {
                    key: key(),
                    before,
                    pivot: rest[2].clone(),
                    value: rest[3].clone(),
                })
            })
        }
        b"LREM" if n == 3 => int(&rest[1]).map(|count| {
            write(DataCmd::LRem {
                key: key(),
                count,
                value: rest[2].clone(),
            })
        }),
        b"LTRIM" if n == 3 => (|| {
            Ok(write(DataCmd::LTrim {
                key: key(),
                start: int(&rest[1])?,
                stop: int(&rest[2])?,
            }))
        })(),
        b"LPOS" if n >= 2 => (|| {
            let (mut rank, mut count, mut maxlen) = (1i64, None, 0u64);
            let mut i = 2;
            while i < n {
                let Some(v) = rest.get(i + 1) else {
                    return err("ERR syntax error");
                };
                match rest[i].to_ascii_uppercase().as_slice() {
                    b"RANK" => {
                        rank = int(v)?;
                        if rank == 0 || rank == i64::MIN {
                            return err(
                                "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                            );
                        }
                    }
                    b"COUNT" => {
                        count = Some(int(v).and_then(|c| {
                            if c < 0 {
                                err("ERR COUNT can't be negative")
                            } else {
                                Ok(c as u64)
                            }
                        })?)
                    }
                    b"MAXLEN" => {
                        let m = int(v)?;
                        if m < 0 {
                            return err("ERR MAXLEN can't be negative");
                        }
                        maxlen = m as u64;
                    }
                    _ => return err("ERR syntax error"),
                }
                i += 2;
            }
            Ok(read(DataQuery::LPos {
                key: key(),
                element: rest[1].clone(),
                rank,
                count,
                maxlen,
            }))
        })(),
        b"LMOVE" if n == 4 => (|| {
            Ok(write(DataCmd::LMove {
                from: key(),
                to: rest[1].clone(),
                from_left: side(&rest[2])?,
                to_left: side(&rest[3])?,
            }))
        })(),
        b"RPOPLPUSH" if n == 2 => Ok(write(DataCmd::LMove {
            from: key(),
            to: rest[1].clone(),
            from_left: false,
            to_left: true,
        })),
        b"BLPOP" | b"BRPOP" if n >= 2 => {
            let keys = rest[..n - 1].to_vec();
            let cmd = DataCmd::PopFirst {
                keys: keys.clone(),
                left: upper == b"BLPOP",
            };
            blocking(cmd, keys, &rest[n - 1], true)
        }
        b"BZPOPMIN" | b"BZPOPMAX" if n >= 2 => {
            let keys = rest[..n - 1].to_vec();
            let cmd = DataCmd::ZPopFirst {
                keys: keys.clone(),
                max: upper == b"BZPOPMAX",
            };
            blocking(cmd, keys, &rest[n - 1], true)
        }
        b"BLMOVE" if n == 5 => (|| {
            let cmd = DataCmd::LMove {
                from: key(),
                to: rest[1].clone(),
                from_left: side(&rest[2])?,
                to_left: side(&rest[3])?,
            };
            blocking(cmd, vec![key()], &rest[4], true)
        })(),
        b"BRPOPLPUSH" if n == 3 => {
            let cmd = DataCmd::LMove {
                from: key(),
                to: rest[1].clone(),
                from_left: false,
                to_left: true,
            };
            blocking(cmd, vec![key()], &rest[2], true)
        }
        // Sets.
        b"SADD" | b"SREM" if n >= 2 => {
            let (key, members) = (key(), rest[1..].to_vec());
            Ok(write(if upper == b"SADD" {
                DataCmd::SAdd { key, members }
            } else {
                DataCmd::SRem { key, members }
            }))
        }
        b"SPOP" if (1..=2).contains(&n) => (|| {
            Ok(write(DataCmd::SPop {
                key: key(),
                count: rest.get(1).map(|c| count_arg(c)).transpose()?,
                seed: seed(),
            }))
        })(),
        b"SMOVE" if n == 3 => Ok(write(DataCmd::SMove {
            from: key(),
            to: rest[1].clone(),
            member: rest[2].clone(),
        })),
        b"SISMEMBER" if n == 2 => Ok(read(DataQuery::SIsMember {
            key: key(),
            member: rest[1].clone(),
        })),
        b"SMISMEMBER" if n >= 2 => Ok(read(DataQuery::SMIsMember {
            key: key(),
            members: rest[1..].to_vec(),
        })),
        b"SMEMBERS" if n == 1 => Ok(read(DataQuery::SMembers { key: key() })),
        b"SRANDMEMBER" if (1..=2).contains(&n) => (|| {
            Ok(read(DataQuery::SRandMember {
                key: key(),
                count: rest.get(1).map(|c| random_count(c)).transpose()?,
                seed: seed(),
            }))
        })(),
        b"SINTER" | b"SUNION" | b"SDIFF" if n >= 1 => Ok(read(DataQuery::SCombine {
            op: set_op(upper),
            keys: rest.to_vec(),
        })),
        b"SINTERSTORE" | b"SUNIONSTORE" | b"SDIFFSTORE" if n >= 2 => Ok(write(DataCmd::SStore {
            op: set_op(upper),
            dest: key(),
            keys: rest[1..].to_vec(),
        })),
        b"SSCAN" if n >= 2 => elem_scan(ValueKind::Set, rest),
        // Sorted sets.
        b"ZADD" if n >= 3 => zadd(rest),
        b"ZINCRBY" if n == 3 => float(&rest[1]).map(|delta| {
            write(DataCmd::ZIncrBy {
                key: key(),
                delta,
                member: rest[2].clone(),
            })
        }),
        b"ZREM" if n >= 2 => Ok(write(DataCmd::ZRem {
            key: key(),
            members: rest[1..].to_vec(),
        })),
        b"ZSCORE" if n == 2 => Ok(read(DataQuery::ZScore {
            key: key(),
            member: rest[1].clone(),
        })),
        b"ZMSCORE" if n >= 2 => Ok(read(DataQuery::ZMScore {
            key: key(),
            members: rest[1..].to_vec(),
        })),
        b"ZCOUNT" if n == 3 => (|| {
            Ok(read(DataQuery::ZCount {
                key: key(),
                by: ZRangeBy::Score {
                    min: score_bound(&rest[1])?,
                    max: score_bound(&rest[2])?,
                },
            }))
        })(),
        b"ZLEXCOUNT" if n == 3 => (|| {
            Ok(read(DataQuery::ZCount {
                key: key(),
                by: ZRangeBy::Lex {
                    min: lex_bound(&rest[1])?,
                    max: lex_bound(&rest[2])?,
                },
            }))
        })(),
        b"ZRANK" | b"ZREVRANK" if n == 2 => Ok(read(DataQuery::ZRank {
            key: key(),
            member: rest[1].clone(),
            rev: upper == b"ZREVRANK",
        })),
        b"ZRANGE" if n >= 3 => zrange(rest, None, false),
        b"ZREVRANGE" if (3..=4).contains(&n) => zrange(rest, Some(b"RANK"), true),
        b"ZRANGEBYSCORE" if n >= 3 => zrange(rest, Some(b"SCORE"), false),
        b"ZREVRANGEBYSCORE" if n >= 3 => zrange(rest, Some(b"SCORE"), true),
        b"ZRANGEBYLEX" if n >= 3 => zrange(rest, Some(b"LEX"), false),
        b"ZREVRANGEBYLEX" if n >= 3 => zrange(rest, Some(b"LEX"), true),
        b"ZPOPMIN" | b"ZPOPMAX" if (1..=2).contains(&n) => (|| {
            Ok(write(DataCmd::ZPop {
                key: key(),
                max: upper == b"ZPOPMAX",
                count: rest.get(1).map(|c| count_arg(c)).transpose()?,
            }))
        })(),
        b"ZREMRANGEBYRANK" if n == 3 => (|| {
            Ok(write(DataCmd::ZRemRange {
                key: key(),
                by: ZRangeBy::Rank {
                    start: int(&rest[1])?,
                    stop: int(&rest[2])?,
                },
            }))
        })(),
        b"ZREMRANGEBYSCORE" if n == 3 => (|| {
            Ok(write(DataCmd::ZRemRange {
                key: key(),
                by: ZRangeBy::Score {
                    min: score_bound(&rest[1])?,
                    max: score_bound(&rest[2])?,
                },
            }))
        })(),
        b"ZREMRANGEBYLEX" if n == 3 => (|| {
            Ok(write(DataCmd::ZRemRange {
                key: key(),
                by: ZRangeBy::Lex {
                    min: lex_bound(&rest[1])?,
                    max: lex_bound(&rest[2])?,
                },
            }))
        })(),
        b"ZSCAN" if n >= 2 => elem_scan(ValueKind::ZSet, rest),
        _ if NAMES.contains(&upper) => arity(name),
        _ => return None,
    };
    Some(r)
}

/// Every command this module parses (for the arity error when the
/// argument count matches none of its forms).
pub const NAMES: &[&[u8]] = &[
    b"GETSET",
    b"GETEX",
    b"SETRANGE",
    b"GETRANGE",
    b"SUBSTR",
    b"INCRBYFLOAT",
    b"MSETNX",
    b"RENAME",
    b"RENAMENX",
    b"COPY",
    b"OBJECT",
    b"RANDOMKEY",
    b"HSET",
    b"HMSET",
    b"HSETNX",
    b"HDEL",
    b"HINCRBY",
    b"HINCRBYFLOAT",
    b"HGET",
    b"HMGET",
    b"HEXISTS",
    b"HSTRLEN",
    b"HLEN",
    b"HKEYS",
    b"HVALS",
    b"HGETALL",
    b"HRANDFIELD",
    b"HSCAN",
    b"LPUSH",
    b"RPUSH",
    b"LPUSHX",
    b"RPUSHX",
    b"LPOP",
    b"RPOP",
    b"LLEN",
    b"LRANGE",
    b"LINDEX",
    b"LSET",
    b"LINSERT",
    b"LREM",
    b"LTRIM",
    b"LPOS",
    b"LMOVE",
    b"RPOPLPUSH",
    b"BLPOP",
    b"BRPOP",
    b"BLMOVE",
    b"BRPOPLPUSH",
    b"BZPOPMIN",
    b"BZPOPMAX",
    b"SADD",
    b"SREM",
    b"SPOP",
    b"SMOVE",
    b"SISMEMBER",
    b"SMISMEMBER",
    b"SMEMBERS",
    b"SCARD",
    b"SRANDMEMBER",
    b"SINTER",
    b"SUNION",
    b"SDIFF",
    b"SINTERSTORE",
    b"SUNIONSTORE",
    b"SDIFFSTORE",
    b"SSCAN",
    b"ZADD",
    b"ZINCRBY",
    b"ZREM",
    b"ZSCORE",
    b"ZMSCORE",
    b"ZCARD",
    b"ZCOUNT",
    b"ZLEXCOUNT",
    b"ZRANK",
    b"ZREVRANK",
    b"ZRANGE",
    b"ZREVRANGE",
    b"ZRANGEBYSCORE",
    b"ZREVRANGEBYSCORE",
    b"ZRANGEBYLEX",
    b"ZREVRANGEBYLEX",
    b"ZPOPMIN",
    b"ZPOPMAX",
    b"ZREMRANGEBYRANK",
    b"ZREMRANGEBYSCORE",
    b"ZREMRANGEBYLEX",
    b"ZSCAN",
];
