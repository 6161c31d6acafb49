//! Redis commands: from a request's arguments to a typed command, with
//! Redis's own error replies for wrong arity, syntax and values.
//!
//! Three kinds come out: connection commands answered on the spot,
//! reads served from the KV state after a linearizable read barrier, and
//! writes that become [`KvCommand`]s proposed through the log.

use bytes::Bytes;
use sampan_kv::{DataCmd, DataQuery, ExpireCond, KvCommand, PutCondition, Ttl, ValueKind};

/// A command the connection answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// `PING [message]`.
    Ping(Option<Bytes>),
    /// `ECHO message`.
    Echo(Bytes),
    /// `HELLO [protover [AUTH username password] [SETNAME name]]`.
    Hello {
        /// The protocol version asked for.
        proto: Option<i64>,
        /// `AUTH username password`.
        auth: Option<(Bytes, Password)>,
        /// `SETNAME name`.
        setname: Option<Bytes>,
    },
    /// `AUTH [username] password`.
    Auth {
        /// The user; `None` is the default user.
        user: Option<Bytes>,
        /// The password.
        password: Password,
    },
    /// An `AUTH` the connection already carried out: answers `+OK`.
    AuthOk,
    /// `SELECT db`: the KV group the connection talks to.
    Select(i64),
    /// `QUIT`.
    Quit,
    /// `COMMAND`, `COMMAND DOCS`, `COMMAND COUNT`...: what redis-cli and
    /// redis-benchmark ask on connect.
    Command(Vec<Bytes>),
    /// `CONFIG GET pattern`.
    ConfigGet(Bytes),
    /// `CLIENT ...`.
    Client(ClientCmd),
    /// `MULTI`: queue what follows until `EXEC`.
    Multi,
    /// `EXEC`: apply the queue as one transaction.
    Exec,
    /// `DISCARD`: drop the queue.
    Discard,
    /// `WATCH key...`: `EXEC` aborts if one of them changes.
    Watch(Vec<Bytes>),
    /// `UNWATCH`.
    Unwatch,
    /// `CLUSTER subcommand ...` (cluster mode).
    Cluster(Vec<Bytes>),
    /// `READONLY`, `READWRITE`, `ASKING`: accepted, change nothing.
    ClusterNoop,
}

/// The `CLIENT` subcommands answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCmd {
    /// `CLIENT ID`.
    Id,
    /// `CLIENT GETNAME`.
    GetName,
    /// `CLIENT SETNAME name` (checked: no spaces or newlines).
    SetName(Bytes),
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`.
    SetInfo {
        /// `true` for `LIB-NAME`, `false` for `LIB-VER`.
        name: bool,
        /// The value.
        value: Bytes,
    },
    /// `CLIENT INFO`: this connection's line.
    Info,
    /// `CLIENT LIST`: every connection's line.
    List,
    /// Subcommands accepted and without effect here (`NO-EVICT`,
    /// `NO-TOUCH`, `REPLY ON`).
    Noop,
}

/// Whether `name` can name a client (Redis refuses spaces, newlines and
/// other characters outside `!`..`~`).
fn client_name_ok(name: &[u8]) -> bool {
    name.iter().all(|b| (b'!'..=b'~').contains(b))
}

/// `CLIENT subcommand [args]`.
fn parse_client(rest: &[Bytes]) -> Result<Request, ParseError> {
    let sub = rest[0].to_ascii_uppercase();
    let args = &rest[1..];
    let cmd = match (sub.as_slice(), args) {
        (b"ID", []) => ClientCmd::Id,
        (b"GETNAME", []) => ClientCmd::GetName,
        (b"SETNAME", [name]) if client_name_ok(name) => ClientCmd::SetName(name.clone()),
        (b"SETNAME", [_]) => {
            return err("ERR Client names cannot contain spaces, newlines or special characters.");
        }
        (b"SETINFO", [attr, value]) => {
            let name = match attr.to_ascii_uppercase().as_slice() {
                b"LIB-NAME" => true,
                b"LIB-VER" => false,
                _ => {
                    return err(format!(
                        "ERR Unrecognized option '{}'",
                        String::from_utf8_lossy(attr)
                    ));
                }
            };
            if !client_name_ok(value) {
                return err(format!(
                    "ERR {} cannot contain spaces, newlines or special characters.",
                    if name { "lib-name" } else { "lib-ver" }
                ));
            }
            ClientCmd::SetInfo {
                name,
                value: value.clone(),
            }
        }
        (b"INFO", []) => ClientCmd::Info,
        (b"LIST", []) => ClientCmd::List,
        (b"NO-EVICT" | b"NO-TOUCH", [_]) => ClientCmd::Noop,
        (b"REPLY", [on]) if on.eq_ignore_ascii_case(b"ON") => ClientCmd::Noop,
        _ => {
            return err(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(&rest[0])
            ));
        }
    };
    Ok(Request::Local(Local::Client(cmd)))
}

/// A password a client sent: `Debug` shows `(hidden)`, so a request
/// printed for a log shows none.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub Bytes);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(hidden)")
    }
}

/// A command that reads the KV state.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// `GET key`.
    Get(Bytes),
    /// `MGET key...`.
    MGet(Vec<Bytes>),
    /// `EXISTS key...` (counts repeats, as Redis does).
    Exists(Vec<Bytes>),
    /// `STRLEN key`.
    StrLen(Bytes),
    /// `TTL key` (seconds) or `PTTL key` (milliseconds).
    Ttl {
        /// The key.
        key: Bytes,
        /// PTTL.
        millis: bool,
    },
    /// `TYPE key`.
    Type(Bytes),
    /// `EXPIRETIME key` (seconds) or `PEXPIRETIME key` (milliseconds).
    ExpireTime {
        /// The key.
        key: Bytes,
        /// PEXPIRETIME.
        millis: bool,
    },
    /// A read of a typed value (`HGET`, `LRANGE`, `ZRANGE`, ...).
    Data(DataQuery),
    /// `HSCAN`/`SSCAN`/`ZSCAN`: the connection resolves `cursor` into the
    /// query's `after`.
    ElemScan {
        /// 0 to start; otherwise a cursor the server handed out.
        cursor: u64,
        /// The scan ([`DataQuery::ElemScan`]).
        query: DataQuery,
    },
    /// `SCAN cursor [MATCH pattern] [COUNT n]`.
    Scan {
        /// 0 to start; otherwise a cursor the server handed out.
        cursor: u64,
        /// Glob the keys must match.
        pattern: Option<Bytes>,
        /// Keys to examine per call (a hint).
        count: usize,
        /// Only keys of this type (`TYPE`); `Some(None)`: a type that
        /// does not exist, so no key.
        kind: Option<Option<ValueKind>>,
    },
    /// `KEYS pattern`.
    Keys(Bytes),
    /// `DBSIZE`.
    DbSize,
    /// `INFO [section]`.
    Info(Option<Bytes>),
}

/// How to turn a write's [`sampan_kv::KvResult`] into the reply Redis gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteReply {
    /// `+OK`, or nil when a `NX`/`XX` condition failed (`SET`).
    OkOrNil,
    /// The old value as a bulk string (`SET ... GET`, `GETDEL`).
    OldValue,
    /// `:1` if written, `:0` if not (`SETNX`).
    WrittenFlag,
    /// Always `+OK` (`MSET`, `SETEX`, `FLUSHDB`).
    Ok,
    /// `:count` (`DEL`, `UNLINK`).
    Count,
    /// `:n` (`INCR`...).
    Int,
    /// `:len` (`APPEND`).
    Len,
    /// `:1`/`:0` (`EXPIRE`, `PERSIST`).
    Flag,
    /// The state machine's own reply (typed commands).
    Reply,
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Answered by the connection.
    Local(Local),
    /// Served from the state.
    Read(Read),
    /// Proposed through the log.
    Write {
        /// What to propose.
        command: KvCommand,
        /// How to render its result.
        reply: WriteReply,
    },
    /// A blocking pop (`BLPOP`, `BLMOVE`, `BZPOPMIN`...): proposed, and
    /// if it finds nothing, proposed again each time one of `keys`
    /// receives elements, until `timeout`.
    Blocking {
        /// The pop (its reply is null when it found nothing).
        command: DataCmd,
        /// The keys whose pushes wake it.
        keys: Vec<Bytes>,
        /// How long to wait; `None` for ever.
        timeout: Option<std::time::Duration>,
        /// Whether a timeout answers the null array (as Redis 7.0 does for
        /// every blocking list and sorted-set pop, `BLMOVE` included)
        /// rather than the null bulk string.
        nil_array: bool,
    },
}

/// The error reply for a request that could not be parsed, Redis's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

pub(crate) fn arity<T>(name: &str) -> Result<T, ParseError> {
    err(format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    ))
}

pub(crate) fn int(arg: &[u8]) -> Result<i64, ParseError> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .map_or_else(|| err("ERR value is not an integer or out of range"), Ok)
}

/// `HELLO [protover [AUTH username password] [SETNAME name]]`.
fn parse_hello(rest: &[Bytes]) -> Result<Request, ParseError> {
    let Some((proto, mut options)) = rest.split_first() else {
        return Ok(Request::Local(Local::Hello {
            proto: None,
            auth: None,
            setname: None,
        }));
    };
    let proto = Some(int(proto)?);
    let mut auth = None;
    let mut setname = None;
    while let Some((option, tail)) = options.split_first() {
        let upper = option.to_ascii_uppercase();
        match (upper.as_slice(), tail) {
            (b"AUTH", [user, password, tail @ ..]) => {
                auth = Some((user.clone(), Password(password.clone())));
                options = tail;
            }
            (b"SETNAME", [name, tail @ ..]) => {
                if !client_name_ok(name) {
                    return err(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    );
                }
                setname = Some(name.clone());
                options = tail;
            }
            _ => {
                return err(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(option)
                ));
            }
        }
    }
    Ok(Request::Local(Local::Hello {
        proto,
        auth,
        setname,
    }))
}

/// Parses a request's arguments (name first).
pub fn parse(args: &[Bytes]) -> Result<Request, ParseError> {
    let Some(name) = args.first() else {
        return err("ERR empty command");
    };
    let upper = name.to_ascii_uppercase();
    let rest = &args[1..];
    let n = rest.len();
    let name_str = String::from_utf8_lossy(name).into_owned();
    let key = |i: usize| rest[i].clone();
    Ok(match upper.as_slice() {
        b"PING" if n <= 1 => Request::Local(Local::Ping(rest.first().cloned())),
        b"ECHO" if n == 1 => Request::Local(Local::Echo(key(0))),
        b"HELLO" => parse_hello(rest)?,
        b"AUTH" if n == 1 => Request::Local(Local::Auth {
            user: None,
            password: Password(key(0)),
        }),
        b"AUTH" if n == 2 => Request::Local(Local::Auth {
            user: Some(key(0)),
            password: Password(key(1)),
        }),
        b"SELECT" if n == 1 => Request::Local(Local::Select(int(&rest[0])?)),
        b"QUIT" => Request::Local(Local::Quit),
        b"COMMAND" => Request::Local(Local::Command(rest.to_vec())),
        b"CONFIG" if n == 2 && rest[0].eq_ignore_ascii_case(b"GET") => {
            Request::Local(Local::ConfigGet(key(1)))
        }
        b"CLIENT" if n >= 1 => parse_client(rest)?,
        b"MULTI" if n == 0 => Request::Local(Local::Multi),
        b"EXEC" if n == 0 => Request::Local(Local::Exec),
        b"DISCARD" if n == 0 => Request::Local(Local::Discard),
        b"WATCH" if n >= 1 => Request::Local(Local::Watch(rest.to_vec())),
        b"UNWATCH" if n == 0 => Request::Local(Local::Unwatch),
        b"CLUSTER" if n >= 1 => Request::Local(Local::Cluster(rest.to_vec())),
        b"READONLY" | b"READWRITE" | b"ASKING" if n == 0 => Request::Local(Local::ClusterNoop),
        b"GET" if n == 1 => Request::Read(Read::Get(key(0))),
        b"MGET" if n >= 1 => Request::Read(Read::MGet(rest.to_vec())),
        b"EXISTS" if n >= 1 => Request::Read(Read::Exists(rest.to_vec())),
        b"STRLEN" if n == 1 => Request::Read(Read::StrLen(key(0))),
        b"TTL" if n == 1 => Request::Read(Read::Ttl {
            key: key(0),
            millis: false,
        }),
        b"PTTL" if n == 1 => Request::Read(Read::Ttl {
            key: key(0),
            millis: true,
        }),
        b"TYPE" if n == 1 => Request::Read(Read::Type(key(0))),
        b"SCAN" if n >= 1 => parse_scan(rest)?,
        b"KEYS" if n == 1 => Request::Read(Read::Keys(key(0))),
        b"DBSIZE" if n == 0 => Request::Read(Read::DbSize),
        b"INFO" if n <= 1 => Request::Read(Read::Info(rest.first().cloned())),
        b"SET" if n >= 2 => parse_set(rest)?,
        b"SETNX" if n == 2 => write(
            put(key(0), key(1), Ttl::Persist, PutCondition::IfAbsent, false),
            WriteReply::WrittenFlag,
        ),
        b"SETEX" | b"PSETEX" if n == 3 => {
            let t = int(&rest[1])?;
            if t <= 0 {
                return err(format!(
                    "ERR invalid expire time in '{}' command",
                    name_str.to_ascii_lowercase()
                ));
            }
            let ms = if upper.as_slice() == b"SETEX" {
                (t as u64).saturating_mul(1000)
            } else {
                t as u64
            };
            write(
                put(
                    key(0),
                    key(2),
                    Ttl::AfterMs(ms),
                    PutCondition::Always,
                    false,
                ),
                WriteReply::Ok,
            )
        }
        b"GETDEL" if n == 1 => write(
            KvCommand::Remove {
                keys: vec![key(0)],
                return_old: true,
            },
            WriteReply::OldValue,
        ),
        b"DEL" | b"UNLINK" if n >= 1 => write(
            KvCommand::Remove {
                keys: rest.to_vec(),
                return_old: false,
            },
            WriteReply::Count,
        ),
        b"MSET" if n >= 2 && n.is_multiple_of(2) => write(
            KvCommand::PutMany {
                pairs: rest
                    .chunks(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect(),
                ttl: Ttl::Persist,
            },
            WriteReply::Ok,
        ),
        b"INCR" if n == 1 => incr(key(0), 1)?,
        b"DECR" if n == 1 => incr(key(0), -1)?,
        b"INCRBY" if n == 2 => incr(key(0), int(&rest[1])?)?,
        b"DECRBY" if n == 2 => incr(
            key(0),
            int(&rest[1])?
                .checked_neg()
                .map_or_else(|| err("ERR decrement would overflow"), Ok)?,
        )?,
        b"APPEND" if n == 2 => write(
            KvCommand::Append {
                key: key(0),
                suffix: key(1),
            },
            WriteReply::Len,
        ),
        b"EXPIRE" | b"PEXPIRE" | b"EXPIREAT" | b"PEXPIREAT" if (2..=3).contains(&n) => {
            let t = int(&rest[1])?;
            let seconds = matches!(upper.as_slice(), b"EXPIRE" | b"EXPIREAT");
            let ms = if seconds { t.saturating_mul(1000) } else { t };
            // A deadline not in the future deletes the key, as Redis does.
            let ttl = if upper.ends_with(b"AT") {
                Ttl::AtMs(ms.max(0) as u64)
            } else {
                Ttl::AfterMs(ms.max(0) as u64)
            };
            let cond = match rest.get(2).map(|c| c.to_ascii_uppercase()) {
                None => ExpireCond::Always,
                Some(c) => match c.as_slice() {
                    b"NX" => ExpireCond::Nx,
                    b"XX" => ExpireCond::Xx,
                    b"GT" => ExpireCond::Gt,
                    b"LT" => ExpireCond::Lt,
                    _ => {
                        return err(format!(
                            "ERR Unsupported option {}",
                            String::from_utf8_lossy(&rest[2])
                        ));
                    }
                },
            };
            write(
                KvCommand::Data(DataCmd::Expire {
                    key: key(0),
                    ttl,
                    cond,
                }),
                WriteReply::Reply,
            )
        }
        b"EXPIRETIME" | b"PEXPIRETIME" if n == 1 => Request::Read(Read::ExpireTime {
            key: key(0),
            millis: upper.as_slice() == b"PEXPIRETIME",
        }),
        b"PERSIST" if n == 1 => write(
            KvCommand::SetTtl {
                key: key(0),
                ttl: Ttl::Persist,
            },
            WriteReply::Flag,
        ),
        b"FLUSHDB" | b"FLUSHALL" if n <= 1 => write(KvCommand::Flush, WriteReply::Ok),
        b"PING" | b"ECHO" | b"SELECT" | b"CONFIG" | b"CLIENT" | b"GET" | b"MGET" | b"EXISTS"
        | b"STRLEN" | b"TTL" | b"PTTL" | b"TYPE" | b"SCAN" | b"KEYS" | b"DBSIZE" | b"INFO"
        | b"SET" | b"SETNX" | b"SETEX" | b"PSETEX" | b"GETDEL" | b"DEL" | b"UNLINK" | b"MSET"
        | b"INCR" | b"DECR" | b"INCRBY" | b"DECRBY" | b"APPEND" | b"EXPIRE" | b"PEXPIRE"
        | b"PERSIST" | b"FLUSHDB" | b"FLUSHALL" | b"AUTH" | b"EXPIREAT" | b"PEXPIREAT"
        | b"EXPIRETIME" | b"PEXPIRETIME" | b"MULTI" | b"EXEC" | b"DISCARD" | b"WATCH"
        | b"UNWATCH" => return arity(&name_str),
        _ => match super::typed::parse(&upper, &name_str, rest) {
            Some(r) => r?,
            None => return err(unknown(&name_str, rest)),
        },
    })
}

/// Redis's reply to an unknown command, quoting the first arguments.
fn unknown(name: &str, rest: &[Bytes]) -> String {
    let mut msg = format!("ERR unknown command '{name}', with args beginning with: ");
    for a in rest.iter().take(8) {
        let text: String = String::from_utf8_lossy(&a[..a.len().min(128)]).into_owned();
        msg.push_str(&format!("'{text}' "));
    }
    msg
}

fn write(command: KvCommand, reply: WriteReply) -> Request {
    Request::Write { command, reply }
}

fn put(key: Bytes, value: Bytes, ttl: Ttl, condition: PutCondition, return_old: bool) -> KvCommand {
    KvCommand::Put {
        key,
        value,
        ttl,
        condition,
        return_old,
    }
}

fn incr(key: Bytes, delta: i64) -> Result<Request, ParseError> {
    Ok(write(KvCommand::Increment { key, delta }, WriteReply::Int))
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`.
fn parse_set(rest: &[Bytes]) -> Result<Request, ParseError> {
    let mut condition = PutCondition::Always;
    let mut ttl = None;
    let mut get = false;
    let mut i = 2;
    while i < rest.len() {
        let opt = rest[i].to_ascii_uppercase();
        let mut expiry = |unit_ms: u64, absolute: bool| -> Result<(), ParseError> {
            let Some(arg) = rest.get(i + 1) else {
                return err("ERR syntax error");
            };
            let v = int(arg)?;
            if v <= 0 {
                return err("ERR invalid expire time in 'set' command");
            }
            let ms = (v as u64).saturating_mul(unit_ms);
            if ttl
                .replace(if absolute {
                    Ttl::AtMs(ms)
                } else {
                    Ttl::AfterMs(ms)
                })
                .is_some()
            {
                return err("ERR syntax error");
            }
            i += 1;
            Ok(())
        };
        match opt.as_slice() {
            b"NX" if condition == PutCondition::Always => condition = PutCondition::IfAbsent,
            b"XX" if condition == PutCondition::Always => condition = PutCondition::IfPresent,
            b"GET" => get = true,
            b"EX" => expiry(1000, false)?,
            b"PX" => expiry(1, false)?,
            b"EXAT" => expiry(1000, true)?,
            b"PXAT" => expiry(1, true)?,
            b"KEEPTTL" if ttl.is_none() => ttl = Some(Ttl::Keep),
            _ => return err("ERR syntax error"),
        }
        i += 1;
    }
    let reply = if get {
        WriteReply::OldValue
    } else {
        WriteReply::OkOrNil
    };
    Ok(write(
        put(
            rest[0].clone(),
            rest[1].clone(),
            ttl.unwrap_or(Ttl::Persist),
            condition,
            get,
        ),
        reply,
    ))
}

/// The options of `SCAN` and its element forms: `cursor [MATCH pattern]
/// [COUNT count]`, and `[TYPE type]` where `types` (SCAN's own).
pub(crate) struct ScanArgs {
    /// 0 to start; otherwise a cursor the server handed out.
    pub cursor: u64,
    /// `MATCH`.
    pub pattern: Option<Bytes>,
    /// `COUNT` (10 if not given).
    pub count: usize,
    /// `TYPE`: `Some(None)` names no type there is.
    pub kind: Option<Option<ValueKind>>,
}

/// Parses `cursor [MATCH p] [COUNT n] [TYPE t]` (`TYPE` only if `types`).
pub(crate) fn scan_args(args: &[Bytes], types: bool) -> Result<ScanArgs, ParseError> {
    let cursor = std::str::from_utf8(&args[0])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or_else(|| err("ERR invalid cursor"), Ok)?;
    let mut out = ScanArgs {
        cursor,
        pattern: None,
        count: 10,
        kind: None,
    };
    let mut i = 1;
    while i < args.len() {
        let Some(arg) = args.get(i + 1) else {
            return err("ERR syntax error");
        };
        match args[i].to_ascii_uppercase().as_slice() {
            b"MATCH" => out.pattern = Some(arg.clone()),
            b"COUNT" => {
                let c = int(arg)?;
                if c < 1 {
                    return err("ERR syntax error");
                }
                out.count = c as usize;
            }
            b"TYPE" if types => out.kind = Some(ValueKind::from_name(arg)),
            _ => return err("ERR syntax error"),
        }
        i += 2;
    }
    Ok(out)
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.
fn parse_scan(rest: &[Bytes]) -> Result<Request, ParseError> {
    let a = scan_args(rest, true)?;
    Ok(Request::Read(Read::Scan {
        cursor: a.cursor,
        pattern: a.pattern,
        count: a.count,
        kind: a.kind,
    }))
}
