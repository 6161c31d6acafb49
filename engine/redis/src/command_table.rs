//! The commands the Redis port answers, as `COMMAND` describes them:
//! Redis 7's arity, flags, key positions and ACL categories, so clients
//! that read the table (cluster-aware ones look up key positions) see the
//! truth. A command missing here is not implemented.

use crate::resp::Reply;

/// One command's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis's arity: the argument count with the name, negative for "at
    /// least".
    pub arity: i64,
    /// Flags (`write`, `readonly`, `fast`, ...).
    pub flags: &'static [&'static str],
    /// Position of the first key (0: none).
    pub first_key: i64,
    /// Position of the last key (-1: the last argument).
    pub last_key: i64,
    /// Step between keys.
    pub step: i64,
    /// ACL categories.
    pub categories: &'static [&'static str],
}

const fn c(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    categories: &'static [&'static str],
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        categories,
    }
}

const NONE: (i64, i64, i64) = (0, 0, 0);
const ONE: (i64, i64, i64) = (1, 1, 1);
const ALL: (i64, i64, i64) = (1, -1, 1);
const R: &[&str] = &["readonly", "fast"];
const W: &[&str] = &["write", "denyoom"];
const WF: &[&str] = &["write", "denyoom", "fast"];
const CONN: &[&str] = &["noscript", "loading", "stale", "fast", "no_auth"];

/// Every command the port answers, by name.
pub const COMMANDS: &[CommandSpec] = &[
    c("get", 2, R, ONE, &["@read", "@string", "@fast"]),
    c("set", -3, W, ONE, &["@write", "@string", "@slow"]),
    c(
        "getdel",
        2,
        &["write", "fast"],
        ONE,
        &["@write", "@string", "@fast"],
    ),
    c("setnx", 3, WF, ONE, &["@write", "@string", "@fast"]),
    c("setex", 4, W, ONE, &["@write", "@string", "@slow"]),
    c("psetex", 4, W, ONE, &["@write", "@string", "@slow"]),
    c(
        "del",
        -2,
        &["write"],
        ALL,
        &["@keyspace", "@write", "@slow"],
    ),
    c(
        "unlink",
        -2,
        &["write", "fast"],
        ALL,
        &["@keyspace", "@write", "@fast"],
    ),
    c("exists", -2, R, ALL, &["@keyspace", "@read", "@fast"]),
    c("mset", -3, W, (1, -1, 2), &["@write", "@string", "@slow"]),
    c("mget", -2, R, ALL, &["@read", "@string", "@fast"]),
    c("incr", 2, WF, ONE, &["@write", "@string", "@fast"]),
    c("decr", 2, WF, ONE, &["@write", "@string", "@fast"]),
    c("incrby", 3, WF, ONE, &["@write", "@string", "@fast"]),
    c("decrby", 3, WF, ONE, &["@write", "@string", "@fast"]),
    c("append", 3, W, ONE, &["@write", "@string", "@fast"]),
    c("strlen", 2, R, ONE, &["@read", "@string", "@fast"]),
    c(
        "expire",
        -3,
        &["write", "fast"],
        ONE,
        &["@keyspace", "@write", "@fast"],
    ),
    c(
        "pexpire",
        -3,
        &["write", "fast"],
        ONE,
        &["@keyspace", "@write", "@fast"],
    ),
    c("ttl", 2, R, ONE, &["@keyspace", "@read", "@fast"]),
    c("pttl", 2, R, ONE, &["@keyspace", "@read", "@fast"]),
    c(
        "persist",
        2,
        &["write", "fast"],
        ONE,
        &["@keyspace", "@write", "@fast"],
    ),
    c("type", 2, R, ONE, &["@keyspace", "@read", "@fast"]),
    c(
        "scan",
        -2,
        &["readonly"],
        NONE,
        &["@keyspace", "@read", "@slow"],
    ),
    c(
        "keys",
        2,
        &["readonly"],
        NONE,
        &["@keyspace", "@read", "@slow", "@dangerous"],
    ),
    c("dbsize", 1, R, NONE, &["@keyspace", "@read", "@fast"]),
    c(
        "flushdb",
        -1,
        &["write"],
        NONE,
        &["@keyspace", "@write", "@slow", "@dangerous"],
    ),
    c(
        "info",
        -1,
        &["loading", "stale"],
        NONE,
        &["@slow", "@dangerous"],
    ),
    c("ping", -1, &["fast"], NONE, &["@fast", "@connection"]),
    c("echo", 2, &["fast"], NONE, &["@fast", "@connection"]),
    c("auth", -2, CONN, NONE, &["@fast", "@connection"]),
    c("hello", -1, CONN, NONE, &["@fast", "@connection"]),
    c(
        "select",
        2,
        &["loading", "stale", "fast"],
        NONE,
        &["@fast", "@connection"],
    ),
    c("quit", -1, CONN, NONE, &["@fast", "@connection"]),
    c(
        "command",
        -1,
        &["loading", "stale"],
        NONE,
        &["@slow", "@connection"],
    ),
    c("config", -2, &[], NONE, &["@slow"]),
    c("client", -2, &[], NONE, &["@slow"]),
    c("cluster", -2, &[], NONE, &["@slow"]),
    c(
        "readonly",
        1,
        &["loading", "stale", "fast"],
        NONE,
        &["@fast", "@connection"],
    ),
    c(
        "readwrite",
        1,
        &["loading", "stale", "fast"],
        NONE,
        &["@fast", "@connection"],
    ),
    c("asking", 1, &["fast"], NONE, &["@fast", "@connection"]),
    // Blocking pops.
    c(
        "blpop",
        -3,
        &["write", "noscript", "blocking"],
        (1, -2, 1),
        &["@write", "@list", "@slow", "@blocking"],
    ),
    c(
        "brpop",
        -3,
        &["write", "noscript", "blocking"],
        (1, -2, 1),
        &["@write", "@list", "@slow", "@blocking"],
    ),
    c(
        "blmove",
        6,
        &["write", "denyoom", "noscript", "blocking"],
        (1, 2, 1),
        &["@write", "@list", "@slow", "@blocking"],
    ),
    c(
        "brpoplpush",
        4,
        &["write", "denyoom", "noscript", "blocking"],
        (1, 2, 1),
        &["@write", "@list", "@slow", "@blocking"],
    ),
    c(
        "bzpopmin",
        -3,
        &["write", "noscript", "blocking", "fast"],
        (1, -2, 1),
        &["@write", "@sortedset", "@fast", "@blocking"],
    ),
    c(
        "bzpopmax",
        -3,
        &["write", "noscript", "blocking", "fast"],
        (1, -2, 1),
        &["@write", "@sortedset", "@fast", "@blocking"],
    ),
    // Transactions.
    c(
        "multi",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        (0, 0, 0),
        &["@fast", "@transaction"],
    ),
    c(
        "exec",
        1,
        &["noscript", "loading", "stale", "skip_slowlog"],
        (0, 0, 0),
        &["@slow", "@transaction"],
    ),
    c(
        "discard",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        (0, 0, 0),
        &["@fast", "@transaction"],
    ),
    c(
        "watch",
        -2,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        (1, -1, 1),
        &["@fast", "@transaction"],
    ),
    c(
        "unwatch",
        1,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        (0, 0, 0),
        &["@fast", "@transaction"],
    ),
    // Typed values and the string and key commands beyond the first set,
    // as redis-server 7.0.15's COMMAND INFO gives them.
    c(
        "getset",
        3,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@string", "@fast"],
    ),
    c(
        "getex",
        -2,
        &["write", "fast"],
        (1, 1, 1),
        &["@write", "@string", "@fast"],
    ),
    c(
        "setrange",
        4,
        &["write", "denyoom"],
        (1, 1, 1),
        &["@write", "@string", "@slow"],
    ),
    c(
        "getrange",
        4,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@string", "@slow"],
    ),
    c(
        "substr",
        4,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@string", "@slow"],
    ),
    c(
        "incrbyfloat",
        3,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@string", "@fast"],
    ),
    c(
        "msetnx",
        -3,
        &["write", "denyoom"],
        (1, -1, 2),
        &["@write", "@string", "@slow"],
    ),
    c(
        "rename",
        3,
        &["write"],
        (1, 2, 1),
        &["@keyspace", "@write", "@slow"],
    ),
    c(
        "renamenx",
        3,
        &["write", "fast"],
        (1, 2, 1),
        &["@keyspace", "@write", "@fast"],
    ),
    c(
        "copy",
        -3,
        &["write", "denyoom"],
        (1, 2, 1),
        &["@keyspace", "@write", "@slow"],
    ),
    c("object", -2, &[], (0, 0, 0), &["@slow"]),
    c(
        "randomkey",
        1,
        &["readonly"],
        (0, 0, 0),
        &["@keyspace", "@read", "@slow"],
    ),
    c(
        "hset",
        -4,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@hash", "@fast"],
    ),
    c(
        "hmset",
        -4,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@hash", "@fast"],
    ),
    c(
        "hsetnx",
        4,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@hash", "@fast"],
    ),
    c(
        "hdel",
        -3,
        &["write", "fast"],
        (1, 1, 1),
        &["@write", "@hash", "@fast"],
    ),
    c(
        "hincrby",
        4,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@hash", "@fast"],
    ),
    c(
        "hincrbyfloat",
        4,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@hash", "@fast"],
    ),
    c(
        "hget",
        3,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@read", "@hash", "@fast"],
    ),
    c(
        "hmget",
        -3,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@read", "@hash", "@fast"],
    ),
    c(
        "hexists",
        3,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@read", "@hash", "@fast"],
    ),
    c(
        "hstrlen",
        3,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@read", "@hash", "@fast"],
    ),
    c(
        "hlen",
        2,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@read", "@hash", "@fast"],
    ),
    c(
        "hkeys",
        2,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@hash", "@slow"],
    ),
    c(
        "hvals",
        2,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@hash", "@slow"],
    ),
    c(
        "hgetall",
        2,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@hash", "@slow"],
    ),
    c(
        "hrandfield",
        -2,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@hash", "@slow"],
    ),
    c(
        "hscan",
        -3,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@hash", "@slow"],
    ),
    c(
        "lpush",
        -3,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@list", "@fast"],
    ),
    c(
        "rpush",
        -3,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@list", "@fast"],
    ),
    c(
        "lpushx",
        -3,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@list", "@fast"],
    ),
    c(
        "rpushx",
        -3,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@list", "@fast"],
    ),
    c(
        "lpop",
        -2,
        &["write", "fast"],
        (1, 1, 1),
        &["@write", "@list", "@fast"],
    ),
    c(
        "rpop",
        -2,
        &["write", "fast"],
        (1, 1, 1),
        &["@write", "@list", "@fast"],
    ),
    c(
        "llen",
        2,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@read", "@list", "@fast"],
    ),
    c(
        "lrange",
        4,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@list", "@slow"],
    ),
    c(
        "lindex",
        3,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@list", "@slow"],
    ),
    c(
        "lset",
        4,
        &["write", "denyoom"],
        (1, 1, 1),
        &["@write", "@list", "@slow"],
    ),
    c(
        "linsert",
        5,
        &["write", "denyoom"],
        (1, 1, 1),
        &["@write", "@list", "@slow"],
    ),
    c(
        "lrem",
        4,
        &["write"],
        (1, 1, 1),
        &["@write", "@list", "@slow"],
    ),
    c(
        "ltrim",
        4,
        &["write"],
        (1, 1, 1),
        &["@write", "@list", "@slow"],
    ),
    c(
        "lpos",
        -3,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@list", "@slow"],
    ),
    c(
        "lmove",
        5,
        &["write", "denyoom"],
        (1, 2, 1),
        &["@write", "@list", "@slow"],
    ),
    c(
        "rpoplpush",
        3,
        &["write", "denyoom"],
        (1, 2, 1),
        &["@write", "@list", "@slow"],
    ),
    c(
        "sadd",
        -3,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@set", "@fast"],
    ),
    c(
        "srem",
        -3,
        &["write", "fast"],
        (1, 1, 1),
        &["@write", "@set", "@fast"],
    ),
    c(
        "spop",
        -2,
        &["write", "fast"],
        (1, 1, 1),
        &["@write", "@set", "@fast"],
    ),
    c(
        "smove",
        4,
        &["write", "fast"],
        (1, 2, 1),
        &["@write", "@set", "@fast"],
    ),
    c(
        "sismember",
        3,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@read", "@set", "@fast"],
    ),
    c(
        "smismember",
        -3,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@read", "@set", "@fast"],
    ),
    c(
        "smembers",
        2,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@set", "@slow"],
    ),
    c(
        "scard",
        2,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@read", "@set", "@fast"],
    ),
    c(
        "srandmember",
        -2,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@set", "@slow"],
    ),
    c(
        "sinter",
        -2,
        &["readonly"],
        (1, -1, 1),
        &["@read", "@set", "@slow"],
    ),
    c(
        "sunion",
        -2,
        &["readonly"],
        (1, -1, 1),
        &["@read", "@set", "@slow"],
    ),
    c(
        "sdiff",
        -2,
        &["readonly"],
        (1, -1, 1),
        &["@read", "@set", "@slow"],
    ),
    c(
        "sinterstore",
        -3,
        &["write", "denyoom"],
        (1, -1, 1),
        &["@write", "@set", "@slow"],
    ),
    c(
        "sunionstore",
        -3,
        &["write", "denyoom"],
        (1, -1, 1),
        &["@write", "@set", "@slow"],
    ),
    c(
        "sdiffstore",
        -3,
        &["write", "denyoom"],
        (1, -1, 1),
        &["@write", "@set", "@slow"],
    ),
    c(
        "sscan",
        -3,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@set", "@slow"],
    ),
    c(
        "zadd",
        -4,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@sortedset", "@fast"],
    ),
    c(
        "zincrby",
        4,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["@write", "@sortedset", "@fast"],
    ),
    c(
        "zrem",
        -3,
        &["write", "fast"],
        (1, 1, 1),
        &["@write", "@sortedset", "@fast"],
    ),
    c(
        "zscore",
        3,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@read", "@sortedset", "@fast"],
    ),
    c(
        "zmscore",
        -3,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@read", "@sortedset", "@fast"],
    ),
    c(
        "zcard",
        2,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@read", "@sortedset", "@fast"],
    ),
    c(
        "zcount",
        4,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@read", "@sortedset", "@fast"],
    ),
    c(
        "zlexcount",
        4,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@read", "@sortedset", "@fast"],
    ),
    c(
        "zrank",
        3,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@read", "@sortedset", "@fast"],
    ),
    c(
        "zrevrank",
        3,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@read", "@sortedset", "@fast"],
    ),
    c(
        "zrange",
        -4,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@sortedset", "@slow"],
    ),
    c(
        "zrevrange",
        -4,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@sortedset", "@slow"],
    ),
    c(
        "zrangebyscore",
        -4,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@sortedset", "@slow"],
    ),
    c(
        "zrevrangebyscore",
        -4,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@sortedset", "@slow"],
    ),
    c(
        "zrangebylex",
        -4,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@sortedset", "@slow"],
    ),
    c(
        "zrevrangebylex",
        -4,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@sortedset", "@slow"],
    ),
    c(
        "zpopmin",
        -2,
        &["write", "fast"],
        (1, 1, 1),
        &["@write", "@sortedset", "@fast"],
    ),
    c(
        "zpopmax",
        -2,
        &["write", "fast"],
        (1, 1, 1),
        &["@write", "@sortedset", "@fast"],
    ),
    c(
        "zremrangebyrank",
        4,
        &["write"],
        (1, 1, 1),
        &["@write", "@sortedset", "@slow"],
    ),
    c(
        "zremrangebyscore",
        4,
        &["write"],
        (1, 1, 1),
        &["@write", "@sortedset", "@slow"],
    ),
    c(
        "zremrangebylex",
        4,
        &["write"],
        (1, 1, 1),
        &["@write", "@sortedset", "@slow"],
    ),
    c(
        "zscan",
        -3,
        &["readonly"],
        (1, 1, 1),
        &["@read", "@sortedset", "@slow"],
    ),
    c(
        "expireat",
        -3,
        &["write", "fast"],
        (1, 1, 1),
        &["@keyspace", "@write", "@fast"],
    ),
    c(
        "pexpireat",
        -3,
        &["write", "fast"],
        (1, 1, 1),
        &["@keyspace", "@write", "@fast"],
    ),
    c(
        "expiretime",
        2,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@keyspace", "@read", "@fast"],
    ),
    c(
        "pexpiretime",
        2,
        &["readonly", "fast"],
        (1, 1, 1),
        &["@keyspace", "@read", "@fast"],
    ),
];

/// Redis's documentation group of a command (`COMMAND DOCS`'s `group`),
/// from its ACL categories.
pub fn group(spec: &CommandSpec) -> &'static str {
    // Where Redis's group is not its categories' (checked against
    // redis-server 7.0.15 by the differential test).
    match spec.name {
        "dbsize" | "flushdb" | "command" => return "server",
        "client" => return "connection",
        "cluster" | "readonly" | "readwrite" | "asking" => return "cluster",
        "object" => return "generic",
        _ => {}
    }
    let has = |c: &str| spec.categories.contains(&c);
    if has("@string") {
        "string"
    } else if has("@hash") {
        "hash"
    } else if has("@list") {
        "list"
    } else if has("@sortedset") {
        "sorted-set"
    } else if has("@set") {
        "set"
    } else if has("@transaction") {
        "transactions"
    } else if has("@connection") {
        "connection"
    } else if has("@keyspace") {
        "generic"
    } else {
        "server"
    }
}

/// The entry of `name` (any case).
pub fn spec(name: &[u8]) -> Option<&'static CommandSpec> {
    COMMANDS
        .iter()
        .find(|c| c.name.as_bytes().eq_ignore_ascii_case(name))
}

/// Writes `spec` as Redis 7's `COMMAND` entry: name, arity, flags, first
/// key, last key, step, ACL categories, tips, key specs, subcommands.
pub fn render(spec: &CommandSpec, reply: &mut Reply<'_>) {
    reply.array(Some(10));
    reply.bulk(Some(spec.name.as_bytes()));
    reply.integer(spec.arity);
    reply.array(Some(spec.flags.len()));
    for f in spec.flags {
        reply.simple(f);
    }
    reply.integer(spec.first_key);
    reply.integer(spec.last_key);
    reply.integer(spec.step);
    reply.array(Some(spec.categories.len()));
    for cat in spec.categories {
        reply.simple(cat);
    }
    for _ in 0..3 {
        reply.array(Some(0));
    }
}
