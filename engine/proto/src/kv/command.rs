//! KV commands (what goes through the log) and their results, with their
//! hand-written codecs.
//!
//! A command is stamped by the leader with its wall-clock time when it is
//! proposed (`time_ms`); every replica computes TTL deadlines and session
//! idleness from that stamp, never from its own clock, so they all reach the
//! same state at the same index.
//!
//! Layout (little-endian), version 1:
//! `version u8 | op u8 | time_ms u64 | client_id u64 | seq u64 |
//! acked_below u64 | op body`. Byte strings are `u32` length + bytes.

use super::data::{DataCmd, Reply, from_postcard, to_postcard};
use super::query::{KvAnswer, KvQuery};
use crate::codec::{DecodeError, Reader, put_bytes, put_opt_bytes};
use bytes::{BufMut, Bytes, BytesMut};

/// Format version of encoded commands and results.
pub const COMMAND_VERSION: u8 = 1;

/// The largest key accepted, in bytes.
pub const KEY_MAX_BYTES: usize = 64 << 10;

/// The largest value accepted, in bytes: well under the largest command
/// a group takes (the runtime's `PROPOSAL_BYTES_MAX`), so one value
/// always fits in one log entry.
pub const VALUE_MAX_BYTES: usize = 8 << 20;

/// Conditions on a put, as Redis's `NX` / `XX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutCondition {
    /// Write whatever is there.
    Always,
    /// Write only if the key is absent (`NX`).
    IfAbsent,
    /// Write only if the key is present (`XX`).
    IfPresent,
}

/// What a put does with the key's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Ttl {
    /// No expiry: the key lives until removed.
    Persist,
    /// Expire this many milliseconds after the command's `time_ms`.
    AfterMs(u64),
    /// Expire at this wall-clock time (ms since the Unix epoch).
    AtMs(u64),
    /// Keep the TTL the key has (`KEEPTTL`).
    Keep,
}

/// A state-changing KV operation. Reads are not commands: they are served
/// from the state after a ReadIndex or under the leader's lease.
#[derive(Debug, Clone, PartialEq)]
pub enum KvCommand {
    /// Write one key.
    Put {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
        /// Expiry of the new value.
        ttl: Ttl,
        /// When to write.
        condition: PutCondition,
        /// Return the previous value (`SET ... GET`).
        return_old: bool,
    },
    /// Write many keys at once, all with the same TTL.
    PutMany {
        /// Keys and values.
        pairs: Vec<(Bytes, Bytes)>,
        /// Expiry of the new values.
        ttl: Ttl,
    },
    /// Remove keys; the result counts the ones that existed.
    Remove {
        /// The keys.
        keys: Vec<Bytes>,
        /// Return the previous value of the first key (`GETDEL`).
        return_old: bool,
    },
    /// Compare-and-set: if the current value equals `expected` (`None`:
    /// absent), replace it with `new` (`None`: remove).
    CompareAndSet {
        /// The key.
        key: Bytes,
        /// The value that must be there.
        expected: Option<Bytes>,
        /// The value to leave.
        new: Option<Bytes>,
    },
    /// Add `delta` to the decimal integer stored at `key` (absent = 0).
    Increment {
        /// The key.
        key: Bytes,
        /// The amount to add.
        delta: i64,
    },
    /// Append bytes to the value at `key` (absent = empty).
    Append {
        /// The key.
        key: Bytes,
        /// The bytes to add.
        suffix: Bytes,
    },
    /// Set or clear a key's expiry (`EXPIRE`, `PERSIST`).
    SetTtl {
        /// The key.
        key: Bytes,
        /// New expiry; `Ttl::Keep` is refused.
        ttl: Ttl,
    },
    /// The leader's decision that `key`, as written at `version`, has
    /// expired. Applied only if the key still has that version, so a late or
    /// repeated expiry never removes a newer write.
    Expire {
        /// The key.
        key: Bytes,
        /// The version (write index) that expired.
        version: u64,
    },
    /// Remove every key.
    Flush,
    /// Several commands applied in order at one log index, each seeing the
    /// ones before it (a Redis pipeline of mixed writes in one proposal).
    /// The result is [`KvResult::Batch`], one result per command; a batch
    /// does not nest.
    Batch(Vec<KvCommand>),
    /// A command on a typed value (hash, list, set, sorted set) or a
    /// string or key command that is more than a put; its result is
    /// [`KvResult::Reply`].
    Data(DataCmd),
    /// A read applied in log order: inside a [`KvCommand::Transaction`] a
    /// read sees the writes before it and none after. The result is
    /// [`KvResult::Answer`].
    Read(KvQuery),
    /// Redis's `MULTI`/`EXEC`: the commands apply in order at one index,
    /// nothing between them, unless a watched key changed since it was
    /// watched (`WATCH`), when none applies and the result is
    /// [`KvResult::Aborted`]. Otherwise [`KvResult::Batch`], one result per
    /// command. A transaction holds no batch or transaction.
    Transaction {
        /// Keys and the version each had when watched (`None`: absent).
        watch: Vec<(Bytes, Option<u64>)>,
        /// The commands.
        commands: Vec<KvCommand>,
    },
}

/// The exactly-once envelope of a command: who sent it, its place in the
/// sender's sequence, and the leader's clock when proposed.
#[derive(Debug, Clone, PartialEq)]
pub struct KvRequest {
    /// Leader wall-clock time when proposed, ms since the Unix epoch.
    pub time_ms: u64,
    /// Client session id; 0 means no session (no retry protection).
    pub client_id: u64,
    /// The request's sequence number in its session (from 1).
    pub seq: u64,
    /// Every result below this sequence number has reached the client and
    /// may be forgotten.
    pub acked_below: u64,
    /// The operation.
    pub command: KvCommand,
}

/// Why a command did not apply. These are results, not engine errors: the
/// command is in the log and every replica reaches the same failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvFailure {
    /// The value is not a decimal 64-bit integer (`INCR` on text).
    NotAnInteger,
    /// The increment overflows 64 bits.
    Overflow,
    /// The sequence number is below what the session still remembers: the
    /// result is gone, so the retry cannot be answered safely.
    StaleSequence {
        /// The oldest sequence number still remembered.
        oldest_kept: u64,
    },
    /// The command is malformed (a key or value over its limit, a TTL that
    /// makes no sense).
    Invalid(String),
    /// The key holds a value of another type (Redis's `WRONGTYPE`).
    WrongType,
}

/// The result of applying one command.
#[derive(Debug, Clone, PartialEq)]
pub enum KvResult {
    /// `Put`: whether it wrote, and the previous value if asked for.
    Put {
        /// Whether the condition held and the value was written.
        written: bool,
        /// The value before (when `return_old`).
        old: Option<Bytes>,
    },
    /// How many keys a `PutMany`, `Remove` or `Flush` touched, and for
    /// `Remove` with `return_old` the first key's old value.
    Count {
        /// Keys written or removed.
        count: u64,
        /// The old value of the first key, if asked for.
        old: Option<Bytes>,
    },
    /// `CompareAndSet`, `SetTtl`, `Expire`: whether it took effect.
    Flag(bool),
    /// `Increment`: the new value.
    Int(i64),
    /// `Append`: the new length.
    Len(u64),
    /// The command failed; nothing changed.
    Failed(KvFailure),
    /// `Batch`: each command's result, in order.
    Batch(Vec<KvResult>),
    /// `Data`: the reply, shaped as Redis's.
    Reply(Reply),
    /// `Read`: the answer.
    Answer(KvAnswer),
    /// `Transaction`: a watched key changed; nothing applied.
    Aborted,
}

mod op {
    pub const PUT: u8 = 1;
    pub const PUT_MANY: u8 = 2;
    pub const REMOVE: u8 = 3;
    pub const CAS: u8 = 4;
    pub const INCREMENT: u8 = 5;
    pub const APPEND: u8 = 6;
    pub const SET_TTL: u8 = 7;
    pub const EXPIRE: u8 = 8;
    pub const FLUSH: u8 = 9;
    pub const BATCH: u8 = 10;
    pub const DATA: u8 = 11;
    pub const READ: u8 = 12;
    pub const TRANSACTION: u8 = 13;
}

/// Most commands in one [`KvCommand::Batch`].
pub const BATCH_COMMANDS_MAX: usize = 4096;

fn put_ttl(out: &mut BytesMut, ttl: Ttl) {
    let (tag, v) = match ttl {
        Ttl::Persist => (0, 0),
        Ttl::AfterMs(ms) => (1, ms),
        Ttl::AtMs(ms) => (2, ms),
        Ttl::Keep => (3, 0),
    };
    out.put_u8(tag);
    out.put_u64_le(v);
}

fn read_ttl(r: &mut Reader) -> Result<Ttl, DecodeError> {
    let offset = r.offset();
    let tag = r.u8("ttl")?;
    let v = r.u64("ttl")?;
    Ok(match tag {
        0 => Ttl::Persist,
        1 => Ttl::AfterMs(v),
        2 => Ttl::AtMs(v),
        3 => Ttl::Keep,
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "ttl",
                tag,
                offset,
            });
        }
    })
}

impl KvCommand {
    /// A plain put: no TTL, no condition, no old value returned.
    pub fn put(key: impl Into<Bytes>, value: impl Into<Bytes>) -> KvCommand {
        KvCommand::Put {
            key: key.into(),
            value: value.into(),
            ttl: Ttl::Persist,
            condition: PutCondition::Always,
            return_old: false,
        }
    }
}

impl KvRequest {
    /// A request outside any client session (no retry protection), with
    /// leader time 0: for tools, tests and commands without a TTL.
    pub fn without_session(command: KvCommand) -> KvRequest {
        KvRequest {
            time_ms: 0,
            client_id: 0,
            seq: 0,
            acked_below: 0,
            command,
        }
    }

    /// Checks sizes before a command is proposed; the same limits are
    /// enforced at apply, so a forged entry fails the same way everywhere.
    pub fn validate(&self) -> Result<(), KvFailure> {
        self.command.validate()
    }
}

impl KvCommand {
    /// Checks sizes (see [`KvRequest::validate`]).
    pub fn validate(&self) -> Result<(), KvFailure> {
        let key_ok = |k: &Bytes| k.len() <= KEY_MAX_BYTES;
        let val_ok = |v: &Bytes| v.len() <= VALUE_MAX_BYTES;
        let ok = match self {
            KvCommand::Put { key, value, .. } => key_ok(key) && val_ok(value),
            KvCommand::PutMany { pairs, .. } => pairs.iter().all(|(k, v)| key_ok(k) && val_ok(v)),
            KvCommand::Remove { keys, .. } => keys.iter().all(key_ok),
            KvCommand::CompareAndSet { key, expected, new } => {
                key_ok(key) && expected.iter().chain(new).all(val_ok)
            }
            KvCommand::Append { key, suffix } => key_ok(key) && val_ok(suffix),
            KvCommand::SetTtl { ttl: Ttl::Keep, .. } => false,
            KvCommand::Increment { key, .. }
            | KvCommand::SetTtl { key, .. }
            | KvCommand::Expire { key, .. } => key_ok(key),
            KvCommand::Flush => true,
            KvCommand::Data(d) => {
                return d.validate();
            }
            KvCommand::Read(_) => true,
            KvCommand::Transaction { watch, commands } => {
                if commands.len() > BATCH_COMMANDS_MAX
                    || commands
                        .iter()
                        .any(|c| matches!(c, KvCommand::Batch(_) | KvCommand::Transaction { .. }))
                {
                    return Err(KvFailure::Invalid(format!(
                        "a transaction holds at most {BATCH_COMMANDS_MAX} commands and no batch"
                    )));
                }
                if !watch.iter().all(|(k, _)| key_ok(k)) {
                    return Err(KvFailure::Invalid(format!("key over {KEY_MAX_BYTES} B")));
                }
                return commands.iter().try_for_each(KvCommand::validate);
            }
            KvCommand::Batch(cmds) => {
                if cmds.len() > BATCH_COMMANDS_MAX
                    || cmds.iter().any(|c| matches!(c, KvCommand::Batch(_)))
                {
                    return Err(KvFailure::Invalid(format!(
                        "a batch holds at most {BATCH_COMMANDS_MAX} commands and no batch"
                    )));
                }
                return cmds.iter().try_for_each(KvCommand::validate);
            }
        };
        if ok {
            Ok(())
        } else {
            Err(KvFailure::Invalid(format!(
                "key over {KEY_MAX_BYTES} B, value over {VALUE_MAX_BYTES} B, or TTL 'keep' outside a put"
            )))
        }
    }
}

impl KvRequest {
    /// Sets the `time_ms` of an encoded request to the leader's clock (the
    /// engine's `StateMachine::stamp` for the KV
    /// store), so every replica computes TTL deadlines and session expiry
    /// from the same time. Bytes that are not a request pass unchanged
    /// (they fail at apply, the same way everywhere).
    pub fn stamp_time(encoded: Bytes, now_ms: u64) -> Bytes {
        if encoded.len() < 10 || encoded[0] != COMMAND_VERSION {
            return encoded;
        }
        let mut b = BytesMut::from(&encoded[..]);
        b[2..10].copy_from_slice(&now_ms.to_le_bytes());
        b.freeze()
    }

    /// Appends the encoded request to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(COMMAND_VERSION);
        out.put_u8(self.command.op());
        out.put_u64_le(self.time_ms);
        out.put_u64_le(self.client_id);
        out.put_u64_le(self.seq);
        out.put_u64_le(self.acked_below);
        self.command.encode_body(out);
    }

    /// The encoded request as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        self.encode(&mut out);
        out.freeze()
    }
}

impl KvCommand {
    fn op(&self) -> u8 {
        match self {
            KvCommand::Put { .. } => op::PUT,
            KvCommand::PutMany { .. } => op::PUT_MANY,
            KvCommand::Remove { .. } => op::REMOVE,
            KvCommand::CompareAndSet { .. } => op::CAS,
            KvCommand::Increment { .. } => op::INCREMENT,
            KvCommand::Append { .. } => op::APPEND,
            KvCommand::SetTtl { .. } => op::SET_TTL,
            KvCommand::Expire { .. } => op::EXPIRE,
            KvCommand::Flush => op::FLUSH,
            KvCommand::Batch(_) => op::BATCH,
            KvCommand::Data(_) => op::DATA,
            KvCommand::Read(_) => op::READ,
            KvCommand::Transaction { .. } => op::TRANSACTION,
        }
    }

    fn encode_body(&self, out: &mut BytesMut) {
        match self {
            KvCommand::Put {
                key,
                value,
                ttl,
                condition,
                return_old,
            } => {
                put_bytes(out, key);
                put_bytes(out, value);
                put_ttl(out, *ttl);
                out.put_u8(match condition {
                    PutCondition::Always => 0,
                    PutCondition::IfAbsent => 1,
                    PutCondition::IfPresent => 2,
                });
                out.put_u8(u8::from(*return_old));
            }
            KvCommand::PutMany { pairs, ttl } => {
                put_ttl(out, *ttl);
                out.put_u32_le(pairs.len() as u32);
                for (k, v) in pairs {
                    put_bytes(out, k);
                    put_bytes(out, v);
                }
            }
            KvCommand::Remove { keys, return_old } => {
                out.put_u8(u8::from(*return_old));
                out.put_u32_le(keys.len() as u32);
                for k in keys {
                    put_bytes(out, k);
                }
            }
            KvCommand::CompareAndSet { key, expected, new } => {
                put_bytes(out, key);
                put_opt_bytes(out, expected.as_deref());
                put_opt_bytes(out, new.as_deref());
            }
            KvCommand::Increment { key, delta } => {
                put_bytes(out, key);
                out.put_i64_le(*delta);
            }
            KvCommand::Append { key, suffix } => {
                put_bytes(out, key);
                put_bytes(out, suffix);
            }
            KvCommand::SetTtl { key, ttl } => {
                put_bytes(out, key);
                put_ttl(out, *ttl);
            }
            KvCommand::Expire { key, version } => {
                put_bytes(out, key);
                out.put_u64_le(*version);
            }
            KvCommand::Flush => {}
            KvCommand::Data(d) => put_bytes(out, &to_postcard(d)),
            KvCommand::Read(q) => put_bytes(out, &q.to_bytes()),
            KvCommand::Transaction { watch, commands } => {
                out.put_u32_le(watch.len() as u32);
                for (k, v) in watch {
                    put_bytes(out, k);
                    out.put_u64_le(v.map_or(0, |v| v.saturating_add(1)));
                }
                out.put_u32_le(commands.len() as u32);
                for c in commands {
                    out.put_u8(c.op());
                    c.encode_body(out);
                }
            }
            KvCommand::Batch(cmds) => {
                out.put_u32_le(cmds.len() as u32);
                for c in cmds {
                    out.put_u8(c.op());
                    c.encode_body(out);
                }
            }
        }
    }
}

impl KvRequest {
    /// Decodes a request; the byte strings of the result are slices of
    /// `buf` (no copy). Total: any input gives a request or an error.
    pub fn decode(buf: Bytes) -> Result<KvRequest, DecodeError> {
        let mut r = Reader::new(buf);
        let version = r.u8("command version")?;
        if version != COMMAND_VERSION {
            return Err(DecodeError::Version {
                what: "command",
                version,
            });
        }
        let op_offset = r.offset();
        let op = r.u8("command op")?;
        let time_ms = r.u64("time_ms")?;
        let client_id = r.u64("client_id")?;
        let seq = r.u64("seq")?;
        let acked_below = r.u64("acked_below")?;
        let command = decode_body(&mut r, op, op_offset, true)?;
        r.finish("command")?;
        Ok(KvRequest {
            time_ms,
            client_id,
            seq,
            acked_below,
            command,
        })
    }
}

fn decode_body(
    r: &mut Reader,
    op: u8,
    op_offset: usize,
    batch_allowed: bool,
) -> Result<KvCommand, DecodeError> {
    Ok(match op {
        op::BATCH if batch_allowed => {
            // Each command takes at least its op byte.
            let n = r.count("batch count", 1)?;
            let mut cmds = Vec::with_capacity(n.min(BATCH_COMMANDS_MAX));
            for _ in 0..n {
                let offset = r.offset();
                let op = r.u8("command op")?;
                cmds.push(decode_body(r, op, offset, false)?);
            }
            KvCommand::Batch(cmds)
        }
        op::PUT => {
            let key = r.bytes("key")?;
            let value = r.bytes("value")?;
            let ttl = read_ttl(r)?;
            let offset = r.offset();
            let condition = match r.u8("put condition")? {
                0 => PutCondition::Always,
                1 => PutCondition::IfAbsent,
                2 => PutCondition::IfPresent,
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "put condition",
                        tag,
                        offset,
                    });
                }
            };
            let return_old = r.bool("return_old")?;
            KvCommand::Put {
                key,
                value,
                ttl,
                condition,
                return_old,
            }
        }
        op::PUT_MANY => {
            let ttl = read_ttl(r)?;
            let n = r.count("pair count", 8)?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                pairs.push((r.bytes("key")?, r.bytes("value")?));
            }
            KvCommand::PutMany { pairs, ttl }
        }
        op::REMOVE => {
            let return_old = r.bool("return_old")?;
            let n = r.count("key count", 4)?;
            let mut keys = Vec::with_capacity(n);
            for _ in 0..n {
                keys.push(r.bytes("key")?);
            }
            KvCommand::Remove { keys, return_old }
        }
        op::CAS => KvCommand::CompareAndSet {
            key: r.bytes("key")?,
            expected: r.opt_bytes("expected")?,
            new: r.opt_bytes("new")?,
        },
        op::INCREMENT => KvCommand::Increment {
            key: r.bytes("key")?,
            delta: r.i64("delta")?,
        },
        op::APPEND => KvCommand::Append {
            key: r.bytes("key")?,
            suffix: r.bytes("suffix")?,
        },
        op::SET_TTL => KvCommand::SetTtl {
            key: r.bytes("key")?,
            ttl: read_ttl(r)?,
        },
        op::EXPIRE => KvCommand::Expire {
            key: r.bytes("key")?,
            version: r.u64("version")?,
        },
        op::FLUSH => KvCommand::Flush,
        op::DATA => KvCommand::Data(from_postcard("data command", &r.bytes("data command")?)?),
        op::READ => KvCommand::Read(KvQuery::decode(r.bytes("read")?)?),
        op::TRANSACTION if batch_allowed => {
            let n = r.count("watch count", 12)?;
            let mut watch = Vec::with_capacity(n);
            for _ in 0..n {
                watch.push((
                    r.bytes("watched key")?,
                    r.u64("watched version")?.checked_sub(1),
                ));
            }
            let n = r.count("transaction count", 1)?;
            let mut commands = Vec::with_capacity(n.min(BATCH_COMMANDS_MAX));
            for _ in 0..n {
                let offset = r.offset();
                let op = r.u8("command op")?;
                commands.push(decode_body(r, op, offset, false)?);
            }
            KvCommand::Transaction { watch, commands }
        }
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "command op",
                tag,
                offset: op_offset,
            });
        }
    })
}

mod res {
    pub const PUT: u8 = 1;
    pub const COUNT: u8 = 2;
    pub const FLAG: u8 = 3;
    pub const INT: u8 = 4;
    pub const LEN: u8 = 5;
    pub const NOT_INTEGER: u8 = 10;
    pub const OVERFLOW: u8 = 11;
    pub const STALE: u8 = 12;
    pub const INVALID: u8 = 13;
    pub const BATCH: u8 = 14;
    pub const REPLY: u8 = 15;
    pub const WRONG_TYPE: u8 = 16;
    pub const ANSWER: u8 = 17;
    pub const ABORTED: u8 = 18;
}

impl KvResult {
    /// Appends the encoded result to `out` (no version byte: results travel
    /// inside versioned frames and snapshot records).
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            KvResult::Put { written, old } => {
                out.put_u8(res::PUT);
                out.put_u8(u8::from(*written));
                put_opt_bytes(out, old.as_deref());
            }
            KvResult::Count { count, old } => {
                out.put_u8(res::COUNT);
                out.put_u64_le(*count);
                put_opt_bytes(out, old.as_deref());
            }
            KvResult::Flag(b) => {
                out.put_u8(res::FLAG);
                out.put_u8(u8::from(*b));
            }
            KvResult::Int(i) => {
                out.put_u8(res::INT);
                out.put_i64_le(*i);
            }
            KvResult::Len(n) => {
                out.put_u8(res::LEN);
                out.put_u64_le(*n);
            }
            KvResult::Batch(results) => {
                out.put_u8(res::BATCH);
                out.put_u32_le(results.len() as u32);
                for r in results {
                    r.encode(out);
                }
            }
            KvResult::Reply(reply) => {
                out.put_u8(res::REPLY);
                put_bytes(out, &to_postcard(reply));
            }
            KvResult::Answer(a) => {
                out.put_u8(res::ANSWER);
                put_bytes(out, &a.to_bytes());
            }
            KvResult::Aborted => out.put_u8(res::ABORTED),
            KvResult::Failed(f) => match f {
                KvFailure::NotAnInteger => out.put_u8(res::NOT_INTEGER),
                KvFailure::Overflow => out.put_u8(res::OVERFLOW),
                KvFailure::WrongType => out.put_u8(res::WRONG_TYPE),
                KvFailure::StaleSequence { oldest_kept } => {
                    out.put_u8(res::STALE);
                    out.put_u64_le(*oldest_kept);
                }
                KvFailure::Invalid(why) => {
                    out.put_u8(res::INVALID);
                    put_bytes(out, why.as_bytes());
                }
            },
        }
    }

    /// Decodes one result from the reader.
    pub fn read(r: &mut Reader) -> Result<KvResult, DecodeError> {
        Self::read_nested(r, true)
    }

    fn read_nested(r: &mut Reader, batch_allowed: bool) -> Result<KvResult, DecodeError> {
        let offset = r.offset();
        Ok(match r.u8("result tag")? {
            res::BATCH if batch_allowed => {
                let n = r.count("batch results", 1)?;
                let mut out = Vec::with_capacity(n.min(BATCH_COMMANDS_MAX));
                for _ in 0..n {
                    out.push(Self::read_nested(r, false)?);
                }
                KvResult::Batch(out)
            }
            res::PUT => KvResult::Put {
                written: r.bool("written")?,
                old: r.opt_bytes("old")?,
            },
            res::COUNT => KvResult::Count {
                count: r.u64("count")?,
                old: r.opt_bytes("old")?,
            },
            res::FLAG => KvResult::Flag(r.bool("flag")?),
            res::INT => KvResult::Int(r.i64("int")?),
            res::LEN => KvResult::Len(r.u64("len")?),
            res::NOT_INTEGER => KvResult::Failed(KvFailure::NotAnInteger),
            res::OVERFLOW => KvResult::Failed(KvFailure::Overflow),
            res::WRONG_TYPE => KvResult::Failed(KvFailure::WrongType),
            res::REPLY => KvResult::Reply(from_postcard("reply", &r.bytes("reply")?)?),
            res::ANSWER => KvResult::Answer(KvAnswer::decode(r.bytes("answer")?)?),
            res::ABORTED => KvResult::Aborted,
            res::STALE => KvResult::Failed(KvFailure::StaleSequence {
                oldest_kept: r.u64("oldest")?,
            }),
            res::INVALID => {
                let why = r.bytes("reason")?;
                KvResult::Failed(KvFailure::Invalid(
                    String::from_utf8_lossy(&why).into_owned(),
                ))
            }
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "result",
                    tag,
                    offset,
                });
            }
        })
    }

    /// Decodes a result that fills `buf` exactly.
    pub fn decode(buf: Bytes) -> Result<KvResult, DecodeError> {
        let mut r = Reader::new(buf);
        let v = KvResult::read(&mut r)?;
        r.finish("result")?;
        Ok(v)
    }
}
