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
];

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
