//! Typed values beyond plain strings — hashes, lists, sets and sorted sets
//! — and the string and key commands that are more than a put: what a
//! command on them asks ([`DataCmd`] through the log, [`DataQuery`] as a
//! read) and the reply tree it gets back ([`Reply`]).
//!
//! These travel inside the hand-framed, versioned [`KvCommand`] /
//! [`KvResult`] / [`KvQuery`] / [`KvAnswer`] envelopes as postcard bytes:
//! they are not on the hot path (plain `SET`/`GET` keep their hand
//! codecs), and a serde enum keeps forty operations from needing forty
//! hand-written codecs. The semantics are Redis's; the state machine in
//! `sampan-kv` applies them.
//!
//! [`KvCommand`]: super::KvCommand
//! [`KvResult`]: super::KvResult
//! [`KvQuery`]: super::KvQuery
//! [`KvAnswer`]: super::KvAnswer

use super::command::{KEY_MAX_BYTES, KvFailure, Ttl, VALUE_MAX_BYTES};
use crate::codec::DecodeError;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The type of the value at a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ValueKind {
    /// Bytes (Redis's string).
    #[default]
    String,
    /// Field → value.
    Hash,
    /// A sequence, pushed and popped at both ends.
    List,
    /// Distinct members.
    Set,
    /// Distinct members ordered by a score.
    ZSet,
}

impl ValueKind {
    /// Redis's name for the type (`TYPE`'s reply).
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::String => "string",
            ValueKind::Hash => "hash",
            ValueKind::List => "list",
            ValueKind::Set => "set",
            ValueKind::ZSet => "zset",
        }
    }

    /// The kind Redis calls `name` (as `SCAN ... TYPE name` takes it).
    pub fn from_name(name: &[u8]) -> Option<ValueKind> {
        Some(match name.to_ascii_lowercase().as_slice() {
            b"string" => ValueKind::String,
            b"hash" => ValueKind::Hash,
            b"list" => ValueKind::List,
            b"set" => ValueKind::Set,
            b"zset" => ValueKind::ZSet,
            _ => return None,
        })
    }

    /// The wire byte.
    pub fn to_u8(self) -> u8 {
        match self {
            ValueKind::String => 0,
            ValueKind::Hash => 1,
            ValueKind::List => 2,
            ValueKind::Set => 3,
            ValueKind::ZSet => 4,
        }
    }

    /// The kind a wire byte names.
    pub fn from_u8(b: u8) -> Option<ValueKind> {
        Some(match b {
            0 => ValueKind::String,
            1 => ValueKind::Hash,
            2 => ValueKind::List,
            3 => ValueKind::Set,
            4 => ValueKind::ZSet,
            _ => return None,
        })
    }
}

/// Redis's reply to a command on a key of another type.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// A reply, shaped as Redis's: rendered as RESP2 or RESP3 by the port
/// (a [`Reply::Map`] is a flat array in RESP2, a [`Reply::Double`] a bulk
/// string).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// The null bulk string (RESP3 null).
    Nil,
    /// The null array (RESP3 null), as `BLPOP`'s timeout or `EXEC`'s abort.
    NilArray,
    /// `+OK`.
    Ok,
    /// A simple string.
    Status(String),
    /// An integer.
    Int(i64),
    /// A bulk string.
    Bulk(Bytes),
    /// A double (a bulk string in RESP2).
    Double(f64),
    /// An array.
    Array(Vec<Reply>),
    /// A map (a flat array of pairs in RESP2).
    Map(Vec<(Reply, Reply)>),
    /// A set (an array in RESP2).
    Set(Vec<Reply>),
    /// Pairs (member and score, field and value): a flat array in RESP2,
    /// an array of two-element arrays in RESP3 (`ZRANGE ... WITHSCORES`).
    Pairs(Vec<(Reply, Reply)>),
    /// An error reply, with Redis's text (`WRONGTYPE ...`, `ERR ...`).
    Error(String),
}

impl Reply {
    /// A bulk string copied from `b`.
    pub fn bulk(b: &[u8]) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(b))
    }

    /// The `WRONGTYPE` error.
    pub fn wrong_type() -> Reply {
        Reply::Error(WRONGTYPE.to_string())
    }

    /// An `ERR ...` error.
    pub fn err(text: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {text}"))
    }

    /// Whether the reply is an error.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}

/// One end of a score range: `1.5`, `(1.5` (exclusive), `-inf`, `+inf`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreBound {
    /// The score (±infinity for the open ends).
    pub value: f64,
    /// Whether the bound itself is left out.
    pub exclusive: bool,
}

/// One end of a lexicographic range: `-`, `+`, `[a` or `(a`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LexBound {
    /// Below every member (`-`).
    Min,
    /// Above every member (`+`).
    Max,
    /// From or to this member, included (`[a`).
    Inclusive(Bytes),
    /// From or to this member, left out (`(a`).
    Exclusive(Bytes),
}

/// Which members of a sorted set a range takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ZRangeBy {
    /// By rank: `start..=stop`, negative counting from the end (in the
    /// order asked: from the highest score when reversed).
    Rank {
        /// First rank.
        start: i64,
        /// Last rank (inclusive).
        stop: i64,
    },
    /// By score, `min <= score <= max` (bounds may exclude).
    Score {
        /// The lower bound.
        min: ScoreBound,
        /// The upper bound.
        max: ScoreBound,
    },
    /// By member, for members of equal score.
    Lex {
        /// The lower bound.
        min: LexBound,
        /// The upper bound.
        max: LexBound,
    },
}

/// A `ZRANGE` in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZRangeSpec {
    /// Which members.
    pub by: ZRangeBy,
    /// From the highest score down.
    pub rev: bool,
    /// `LIMIT offset count` (score and lex ranges; a negative count is
    /// no limit).
    pub limit: Option<(i64, i64)>,
    /// Return scores too.
    pub with_scores: bool,
}

/// `ZADD`'s options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ZAddFlags {
    /// Only add new members.
    pub nx: bool,
    /// Only update existing members.
    pub xx: bool,
    /// Only update when the new score is greater.
    pub gt: bool,
    /// Only update when the new score is less.
    pub lt: bool,
    /// Count changed members, not only added ones.
    pub ch: bool,
    /// Act as `ZINCRBY` (one pair; replies with the new score).
    pub incr: bool,
}

/// The set operations of `SINTER`, `SUNION`, `SDIFF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetOp {
    /// Members in every set.
    Inter,
    /// Members in any set.
    Union,
    /// Members of the first set in none of the others.
    Diff,
}

/// `EXPIRE`'s conditions (Redis 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ExpireCond {
    /// Always.
    #[default]
    Always,
    /// Only if the key has no expiry.
    Nx,
    /// Only if the key has an expiry.
    Xx,
    /// Only if the new expiry is later (no expiry counts as infinite).
    Gt,
    /// Only if the new expiry is earlier.
    Lt,
}

/// A write to a typed value, or a string or key command that is more than
/// a put. Applied by the state machine; the reply is a [`Reply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DataCmd {
    /// `SETRANGE key offset value`.
    SetRange {
        /// The key.
        key: Bytes,
        /// Where to write.
        offset: u64,
        /// What to write.
        value: Bytes,
    },
    /// `INCRBYFLOAT key delta`.
    IncrByFloat {
        /// The key.
        key: Bytes,
        /// The amount.
        delta: f64,
    },
    /// `MSETNX key value ...`: all or none.
    MSetNx {
        /// Keys and values.
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// `GETEX key EX|PX|EXAT|PXAT|PERSIST`.
    GetEx {
        /// The key.
        key: Bytes,
        /// The new expiry (`Persist` clears it).
        ttl: Ttl,
    },
    /// `EXPIRE`/`PEXPIRE`/`EXPIREAT`/`PEXPIREAT key t [NX|XX|GT|LT]`.
    Expire {
        /// The key.
        key: Bytes,
        /// The deadline (`AfterMs` or `AtMs`).
        ttl: Ttl,
        /// When to set it.
        cond: ExpireCond,
    },
    /// `RENAME from to` / `RENAMENX`.
    Rename {
        /// The key renamed.
        from: Bytes,
        /// Its new name.
        to: Bytes,
        /// Only if `to` does not exist.
        nx: bool,
    },
    /// `COPY from to [REPLACE]`.
    Copy {
        /// The source.
        from: Bytes,
        /// The destination.
        to: Bytes,
        /// Overwrite an existing destination.
        replace: bool,
    },
    /// `HSET key field value ...` (`nx`: `HSETNX`, one pair; `ok`:
    /// `HMSET`, replies `+OK`).
    HSet {
        /// The key.
        key: Bytes,
        /// Fields and values.
        pairs: Vec<(Bytes, Bytes)>,
        /// Only set absent fields.
        nx: bool,
        /// Reply `+OK` (`HMSET`).
        ok: bool,
    },
    /// `HDEL key field ...`.
    HDel {
        /// The key.
        key: Bytes,
        /// The fields.
        fields: Vec<Bytes>,
    },
    /// `HINCRBY key field delta`.
    HIncrBy {
        /// The key.
        key: Bytes,
        /// The field.
        field: Bytes,
        /// The amount.
        delta: i64,
    },
    /// `HINCRBYFLOAT key field delta`.
    HIncrByFloat {
        /// The key.
        key: Bytes,
        /// The field.
        field: Bytes,
        /// The amount.
        delta: f64,
    },
    /// `LPUSH`/`RPUSH`/`LPUSHX`/`RPUSHX`.
    Push {
        /// The key.
        key: Bytes,
        /// At the head.
        left: bool,
        /// Pushed in order.
        values: Vec<Bytes>,
        /// Only onto an existing list (`*PUSHX`).
        existing: bool,
    },
    /// `LPOP`/`RPOP key [count]`.
    Pop {
        /// The key.
        key: Bytes,
        /// From the head.
        left: bool,
        /// How many (`None`: one, replied as a bulk string).
        count: Option<u64>,
    },
    /// `BLPOP`/`BRPOP`'s pop: one element from the first of `keys` that
    /// holds a list; the reply is `[key, element]`, or null if none does.
    PopFirst {
        /// The keys, in order.
        keys: Vec<Bytes>,
        /// From the head.
        left: bool,
    },
    /// `BZPOPMIN`/`BZPOPMAX`'s pop: `[key, member, score]` from the first
    /// of `keys` that holds a sorted set, or null.
    ZPopFirst {
        /// The keys, in order.
        keys: Vec<Bytes>,
        /// The highest score.
        max: bool,
    },
    /// `LSET key index value`.
    LSet {
        /// The key.
        key: Bytes,
        /// The index (negative from the end).
        index: i64,
        /// The new element.
        value: Bytes,
    },
    /// `LINSERT key BEFORE|AFTER pivot value`.
    LInsert {
        /// The key.
        key: Bytes,
        /// Before the pivot.
        before: bool,
        /// The element to insert next to.
        pivot: Bytes,
        /// The new element.
        value: Bytes,
    },
    /// `LREM key count value`.
    LRem {
        /// The key.
        key: Bytes,
        /// How many (negative: from the tail; 0: all).
        count: i64,
        /// The element removed.
        value: Bytes,
    },
    /// `LTRIM key start stop`.
    LTrim {
        /// The key.
        key: Bytes,
        /// First index kept.
        start: i64,
        /// Last index kept.
        stop: i64,
    },
    /// `LMOVE from to LEFT|RIGHT LEFT|RIGHT` (and `RPOPLPUSH`).
    LMove {
        /// The source list.
        from: Bytes,
        /// The destination list.
        to: Bytes,
        /// Pop from the source's head.
        from_left: bool,
        /// Push at the destination's head.
        to_left: bool,
    },
    /// `SADD key member ...`.
    SAdd {
        /// The key.
        key: Bytes,
        /// The members.
        members: Vec<Bytes>,
    },
    /// `SREM key member ...`.
    SRem {
        /// The key.
        key: Bytes,
        /// The members.
        members: Vec<Bytes>,
    },
    /// `SPOP key [count]`: the members taken follow from `seed`, which the
    /// proposer picked, so every replica takes the same ones.
    SPop {
        /// The key.
        key: Bytes,
        /// How many (`None`: one, replied as a bulk string).
        count: Option<u64>,
        /// The randomness, fixed in the command.
        seed: u64,
    },
    /// `SMOVE from to member`.
    SMove {
        /// The source set.
        from: Bytes,
        /// The destination set.
        to: Bytes,
        /// The member.
        member: Bytes,
    },
    /// `SINTERSTORE`/`SUNIONSTORE`/`SDIFFSTORE dest key ...`.
    SStore {
        /// The operation.
        op: SetOp,
        /// Where the result goes (replaced).
        dest: Bytes,
        /// The sets.
        keys: Vec<Bytes>,
    },
    /// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member ...`.
    ZAdd {
        /// The key.
        key: Bytes,
        /// The options.
        flags: ZAddFlags,
        /// Scores and members.
        pairs: Vec<(f64, Bytes)>,
    },
    /// `ZREM key member ...`.
    ZRem {
        /// The key.
        key: Bytes,
        /// The members.
        members: Vec<Bytes>,
    },
    /// `ZINCRBY key delta member`.
    ZIncrBy {
        /// The key.
        key: Bytes,
        /// The amount.
        delta: f64,
        /// The member.
        member: Bytes,
    },
    /// `ZPOPMIN`/`ZPOPMAX key [count]`.
    ZPop {
        /// The key.
        key: Bytes,
        /// Highest scores first.
        max: bool,
        /// How many (`None`: one).
        count: Option<u64>,
    },
    /// `ZREMRANGEBYRANK`/`ZREMRANGEBYSCORE`/`ZREMRANGEBYLEX`.
    ZRemRange {
        /// The key.
        key: Bytes,
        /// Which members.
        by: ZRangeBy,
    },
}

/// A read of typed values (and the string and key reads that are more than
/// a get). Answered with a [`Reply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DataQuery {
    /// `GETRANGE key start end`.
    GetRange {
        /// The key.
        key: Bytes,
        /// First byte (negative from the end).
        start: i64,
        /// Last byte (inclusive).
        end: i64,
    },
    /// `HGET key field`.
    HGet {
        /// The key.
        key: Bytes,
        /// The field.
        field: Bytes,
    },
    /// `HMGET key field ...`.
    HMGet {
        /// The key.
        key: Bytes,
        /// The fields.
        fields: Vec<Bytes>,
    },
    /// `HEXISTS key field`.
    HExists {
        /// The key.
        key: Bytes,
        /// The field.
        field: Bytes,
    },
    /// `HSTRLEN key field`.
    HStrLen {
        /// The key.
        key: Bytes,
        /// The field.
        field: Bytes,
    },
    /// `HLEN`, `LLEN`, `SCARD`, `ZCARD key`: the size of a value of `kind`.
    Len {
        /// The key.
        key: Bytes,
        /// The type the command works on.
        kind: ValueKind,
    },
    /// `HKEYS`, `HVALS`, `HGETALL key`.
    HGetAll {
        /// The key.
        key: Bytes,
        /// Fields wanted.
        fields: bool,
        /// Values wanted.
        values: bool,
    },
    /// `HRANDFIELD key [count [WITHVALUES]]`.
    HRandField {
        /// The key.
        key: Bytes,
        /// How many (`None`: one, as a bulk string; negative: may repeat).
        count: Option<i64>,
        /// Values too.
        with_values: bool,
        /// The randomness.
        seed: u64,
    },
    /// `LRANGE key start stop`.
    LRange {
        /// The key.
        key: Bytes,
        /// First index.
        start: i64,
        /// Last index (inclusive).
        stop: i64,
    },
    /// `LINDEX key index`.
    LIndex {
        /// The key.
        key: Bytes,
        /// The index.
        index: i64,
    },
    /// `LPOS key element [RANK r] [COUNT n] [MAXLEN m]`.
    LPos {
        /// The key.
        key: Bytes,
        /// The element looked for.
        element: Bytes,
        /// Which match first (negative: from the tail).
        rank: i64,
        /// How many (`None`: one, as an integer; 0: all).
        count: Option<u64>,
        /// Elements examined at most (0: all).
        maxlen: u64,
    },
    /// `SISMEMBER key member`.
    SIsMember {
        /// The key.
        key: Bytes,
        /// The member.
        member: Bytes,
    },
    /// `SMISMEMBER key member ...`.
    SMIsMember {
        /// The key.
        key: Bytes,
        /// The members.
        members: Vec<Bytes>,
    },
    /// `SMEMBERS key`.
    SMembers {
        /// The key.
        key: Bytes,
    },
    /// `SRANDMEMBER key [count]`.
    SRandMember {
        /// The key.
        key: Bytes,
        /// How many (`None`: one, as a bulk string; negative: may repeat).
        count: Option<i64>,
        /// The randomness.
        seed: u64,
    },
    /// `SINTER`, `SUNION`, `SDIFF key ...`.
    SCombine {
        /// The operation.
        op: SetOp,
        /// The sets.
        keys: Vec<Bytes>,
    },
    /// `ZSCORE key member`.
    ZScore {
        /// The key.
        key: Bytes,
        /// The member.
        member: Bytes,
    },
    /// `ZMSCORE key member ...`.
    ZMScore {
        /// The key.
        key: Bytes,
        /// The members.
        members: Vec<Bytes>,
    },
    /// `ZCOUNT key min max` (`lex`: `ZLEXCOUNT`).
    ZCount {
        /// The key.
        key: Bytes,
        /// The range (score or lex).
        by: ZRangeBy,
    },
    /// `ZRANK`/`ZREVRANK key member`.
    ZRank {
        /// The key.
        key: Bytes,
        /// The member.
        member: Bytes,
        /// Rank from the highest score.
        rev: bool,
    },
    /// `ZRANGE` and its older forms.
    ZRange {
        /// The key.
        key: Bytes,
        /// The range.
        spec: ZRangeSpec,
    },
    /// `HSCAN`, `SSCAN`, `ZSCAN key cursor [MATCH p] [COUNT n]`: a page of
    /// a value's elements after `after`; the reply is `[next, elements]`
    /// with `next` nil at the end.
    ElemScan {
        /// The key.
        key: Bytes,
        /// The type the command works on.
        kind: ValueKind,
        /// Continue after this element (field or member).
        after: Option<Bytes>,
        /// Elements to examine.
        count: u32,
        /// Glob the elements must match.
        pattern: Option<Bytes>,
    },
    /// `OBJECT ENCODING key`.
    Encoding {
        /// The key.
        key: Bytes,
    },
    /// `RANDOMKEY`.
    RandomKey {
        /// The randomness.
        seed: u64,
    },
    /// A command whose argument is bad, where Redis looks at the key's
    /// type first: `WRONGTYPE` if `key` holds another type than `kind`,
    /// else `error`.
    Refuse {
        /// The key.
        key: Bytes,
        /// The type the command works on.
        kind: ValueKind,
        /// The error otherwise.
        error: String,
    },
}

impl DataCmd {
    /// The keys the command writes or reads, in order.
    pub fn keys(&self) -> Vec<&Bytes> {
        use DataCmd::*;
        match self {
            SetRange { key, .. }
            | IncrByFloat { key, .. }
            | GetEx { key, .. }
            | Expire { key, .. }
            | HSet { key, .. }
            | HDel { key, .. }
            | HIncrBy { key, .. }
            | HIncrByFloat { key, .. }
            | Push { key, .. }
            | Pop { key, .. }
            | LSet { key, .. }
            | LInsert { key, .. }
            | LRem { key, .. }
            | LTrim { key, .. }
            | SAdd { key, .. }
            | SRem { key, .. }
            | SPop { key, .. }
            | ZAdd { key, .. }
            | ZRem { key, .. }
            | ZIncrBy { key, .. }
            | ZPop { key, .. }
            | ZRemRange { key, .. } => vec![key],
            MSetNx { pairs } => pairs.iter().map(|(k, _)| k).collect(),
            Rename { from, to, .. }
            | Copy { from, to, .. }
            | LMove { from, to, .. }
            | SMove { from, to, .. } => vec![from, to],
            SStore { dest, keys, .. } => std::iter::once(dest).chain(keys).collect(),
            PopFirst { keys, .. } | ZPopFirst { keys, .. } => keys.iter().collect(),
        }
    }

    /// The elements (values, fields, members) the command carries.
    fn elements(&self) -> Vec<&Bytes> {
        use DataCmd::*;
        match self {
            SetRange { value, .. } | LSet { value, .. } | LRem { value, .. } => vec![value],
            MSetNx { pairs } => pairs.iter().map(|(_, v)| v).collect(),
            HSet { pairs, .. } => pairs.iter().flat_map(|(f, v)| [f, v]).collect(),
            HDel { fields, .. } => fields.iter().collect(),
            HIncrBy { field, .. } | HIncrByFloat { field, .. } => vec![field],
            Push { values, .. } => values.iter().collect(),
            LInsert { pivot, value, .. } => vec![pivot, value],
            SAdd { members, .. } | SRem { members, .. } | ZRem { members, .. } => {
                members.iter().collect()
            }
            SMove { member, .. } | ZIncrBy { member, .. } => vec![member],
            ZAdd { pairs, .. } => pairs.iter().map(|(_, m)| m).collect(),
            _ => Vec::new(),
        }
    }

    /// Checks sizes and numbers before the command is proposed; the same
    /// check runs at apply, so a forged entry fails the same way
    /// everywhere.
    pub fn validate(&self) -> Result<(), KvFailure> {
        if self.keys().iter().any(|k| k.len() > KEY_MAX_BYTES) {
            return Err(KvFailure::Invalid(format!("key over {KEY_MAX_BYTES} B")));
        }
        if self.elements().iter().any(|e| e.len() > VALUE_MAX_BYTES) {
            return Err(KvFailure::Invalid(format!(
                "string exceeds maximum allowed size ({VALUE_MAX_BYTES} B)"
            )));
        }
        let nan = match self {
            DataCmd::IncrByFloat { delta, .. }
            | DataCmd::HIncrByFloat { delta, .. }
            | DataCmd::ZIncrBy { delta, .. } => delta.is_nan(),
            DataCmd::ZAdd { pairs, .. } => pairs.iter().any(|(s, _)| s.is_nan()),
            _ => false,
        };
        if nan {
            return Err(KvFailure::Invalid("value is not a valid float".into()));
        }
        match self {
            DataCmd::SetRange { offset, value, .. }
                if offset.saturating_add(value.len() as u64) > VALUE_MAX_BYTES as u64 =>
            {
                Err(KvFailure::Invalid(format!(
                    "string exceeds maximum allowed size ({VALUE_MAX_BYTES} B)"
                )))
            }
            DataCmd::MSetNx { pairs } if pairs.is_empty() => {
                Err(KvFailure::Invalid("MSETNX needs a pair".into()))
            }
            _ => Ok(()),
        }
    }
}

impl DataCmd {
    /// The keys the command may add elements to (lists and sorted sets):
    /// what a blocked pop on them waits for.
    pub fn fed_keys(&self) -> Vec<&Bytes> {
        match self {
            DataCmd::Push { key, .. }
            | DataCmd::ZAdd { key, .. }
            | DataCmd::ZIncrBy { key, .. } => {
                vec![key]
            }
            DataCmd::LMove { to, .. } | DataCmd::Rename { to, .. } | DataCmd::Copy { to, .. } => {
                vec![to]
            }
            DataCmd::LInsert { key, .. } => vec![key],
            _ => Vec::new(),
        }
    }
}

/// Encodes a typed command, query or reply as postcard bytes.
pub fn to_postcard<T: Serialize>(what: &T) -> Vec<u8> {
    // Encoding into a Vec cannot fail: every field of these types is
    // postcard-encodable and the buffer grows as needed.
    postcard::to_allocvec(what).unwrap_or_default()
}

/// Decodes postcard bytes written by [`to_postcard`].
pub fn from_postcard<'a, T: Deserialize<'a>>(
    what: &'static str,
    bytes: &'a [u8],
) -> Result<T, DecodeError> {
    postcard::from_bytes(bytes).map_err(|e| DecodeError::Invalid {
        what,
        detail: e.to_string(),
    })
}

/// Formats a float as Redis 7.0 replies with a score (`%.17g`): `1.5`,
/// `0.10000000000000001`, `inf`, `-inf`, `1e+20`.
pub fn format_score(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v.is_nan() {
        return "nan".into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // %.17g: 17 significant digits; scientific when exp < -4 or >= 17.
    let sci = format!("{v:.16e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..17).contains(&exp) {
        let m = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (16 - exp).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}")).to_string()
    }
}

/// Formats a float as Redis replies to `INCRBYFLOAT`/`HINCRBYFLOAT`
/// (`%.17Lg` of a long double, trailing zeros trimmed): the shortest
/// decimal that reads back as the same double, without an exponent.
pub fn format_float(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let s = format!("{v}");
    if s == "-0" { "0".into() } else { s }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Parses a score or float argument as Redis does (`strtod`: decimal or
/// exponent, `inf`, `+inf`, `-inf`; no NaN, no spaces).
pub fn parse_float(arg: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(arg).ok()?;
    if s.is_empty() || s.trim() != s {
        return None;
    }
    let v = match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        lower if lower.contains("inf") || lower.contains("nan") => return None,
        _ => s.parse::<f64>().ok()?,
    };
    (!v.is_nan()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_format_as_redis_7_0() {
        assert_eq!(format_score(1.5), "1.5");
        assert_eq!(format_score(3.0), "3");
        assert_eq!(format_score(0.1), "0.10000000000000001");
        assert_eq!(format_score(-2.25), "-2.25");
        assert_eq!(format_score(1e20), "1e+20");
        assert_eq!(format_score(1.5e-7), "1.4999999999999999e-07");
        assert_eq!(format_score(123456789.0), "123456789");
        assert_eq!(format_score(f64::INFINITY), "inf");
        assert_eq!(format_float(10.5), "10.5");
        assert_eq!(format_float(3.0), "3");
    }

    #[test]
    fn floats_parse_as_strtod() {
        assert_eq!(parse_float(b"1.5"), Some(1.5));
        assert_eq!(parse_float(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float(b"1e3"), Some(1000.0));
        assert_eq!(parse_float(b"nan"), None);
        assert_eq!(parse_float(b" 1"), None);
        assert_eq!(parse_float(b"abc"), None);
    }

    #[test]
    fn commands_round_trip_through_postcard() {
        let cmd = DataCmd::ZAdd {
            key: Bytes::from("z"),
            flags: ZAddFlags {
                ch: true,
                ..ZAddFlags::default()
            },
            pairs: vec![(1.5, Bytes::from("a")), (f64::INFINITY, Bytes::from("b"))],
        };
        let back: DataCmd = from_postcard("cmd", &to_postcard(&cmd)).expect("decodes");
        assert_eq!(back, cmd);
        assert!(from_postcard::<DataCmd>("cmd", b"\xff\xff\xff").is_err());
    }
}
