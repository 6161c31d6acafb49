//! The harness's clients: threads that each run one operation at a time
//! against the cluster — over the Redis port with redis-rs, or with the
//! native client — and record every invoke and completion.
//!
//! Keys come in three families per group, so that every model meets
//! concurrency: `r*` registers (get, put, del, and cas over the native
//! client: Redis has no compare-and-set), `a*` append-only lists of unique
//! tokens (append, get; `a<k>.<period>`, a new list every `--append-period-secs`, 10 s, so that
//! reads stay short) and `c*` counters (incr, get). Values are unique:
//! `p<process>.<n>` for puts, `t<process>.<n> ` (with its space) for
//! appends.
//!
//! Half the keys of each family are typed values, checked by the same
//! models: `h*` registers are one field of a hash (HGET/HSET/HDEL), `l*`
//! appends are a list's elements (RPUSH; a read is LRANGE's elements
//! joined), `z*` counters are a sorted-set member's score (ZINCRBY,
//! ZSCORE). Both client kinds use them (the native client through
//! `KvCommand::Data` and `KvQuery::Data`), so the typed commands go
//! through every fault the nemesis makes, snapshots included.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sampan::client::{BlockingClient, ClientConfig, ClientError};
use sampan_kv::{
    DataCmd, DataQuery, KvAnswer, KvCommand, KvQuery, KvResult, PutCondition, Reply, Ttl,
};
use serde_json::{Value, json};

use crate::history::{Event, EventType, Function};
use crate::rng::Rng;

/// What every client shares: the clock, the history's channel, counters.
pub struct Recorder {
    start: Instant,
    events: Sender<Event>,
    next_process: AtomicU64,
    /// Operations that completed `ok`.
    pub ok: AtomicU64,
    /// Operations that completed `fail`.
    pub fail: AtomicU64,
    /// Operations that completed `info`.
    pub info: AtomicU64,
}

impl Recorder {
    /// A recorder whose events go to `events`, times counted from
    /// `start`.
    pub fn new(events: Sender<Event>, start: Instant) -> Recorder {
        Recorder {
            start,
            events,
            next_process: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            fail: AtomicU64::new(0),
            info: AtomicU64::new(0),
        }
    }

    /// Operations completed so far, whatever their outcome.
    pub fn completed(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
            + self.fail.load(Ordering::Relaxed)
            + self.info.load(Ordering::Relaxed)
    }

    /// A fresh process id.
    pub fn process(&self) -> u64 {
        self.next_process.fetch_add(1, Ordering::Relaxed)
    }

    /// Nanoseconds since the run began (the history's clock).
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn record(&self, op: &Op, kind: EventType, value: Value, node: &str, error: Option<String>) {
        let counter = match kind {
            EventType::Invoke => None,
            EventType::Ok => Some(&self.ok),
            EventType::Fail => Some(&self.fail),
            EventType::Info => Some(&self.info),
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        // The writer outlives the clients; a send fails only once it is
        // gone, at the very end.
        let _ = self.events.send(Event {
            process: op.process,
            kind,
            f: op.f,
            key: op.key.clone(),
            value,
            time: self.now(),
            node: Some(node.to_owned()).filter(|n| !n.is_empty()),
            error,
        });
    }

    /// Runs `op` with `exec` and records its invoke and completion;
    /// returns the completion's type.
    pub fn perform(&self, op: &Op, node: &str, exec: impl FnOnce(&Op) -> Outcome) -> Outcome {
        self.record(op, EventType::Invoke, op.input.clone(), node, None);
        let out = exec(op);
        match &out {
            Outcome::Ok(v) => self.record(op, EventType::Ok, v.clone(), node, None),
            Outcome::Fail(e) => {
                self.record(op, EventType::Fail, op.input.clone(), node, Some(e.clone()))
            }
            Outcome::Info(e) => {
                self.record(op, EventType::Info, op.input.clone(), node, Some(e.clone()))
            }
        }
        out
    }
}

/// How an operation ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// It happened; what it returned.
    Ok(Value),
    /// It certainly did not happen.
    Fail(String),
    /// It may or may not have happened.
    Info(String),
}

/// One operation a client is about to run.
#[derive(Debug, Clone)]
pub struct Op {
    /// The process running it.
    pub process: u64,
    /// Its function.
    pub f: Function,
    /// The key, as the history names it: `g<group>/<key>`.
    pub key: String,
    /// The group.
    pub group: u64,
    /// The key as stored.
    pub raw_key: String,
    /// The invoke's value.
    pub input: Value,
}

/// The workload's shape.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Groups the clients use.
    pub groups: Vec<u64>,
    /// Keys per family per group.
    pub keys: u32,
    /// The run's start: append keys are named by the period they belong
    /// to (`a<k>.<period>`), so that a list stays short (a read returns
    /// the whole list: without this the history grows with the square of
    /// the appends).
    pub start: Instant,
    /// How long an append key takes appends before the next one does.
    pub append_period: Duration,
    /// How long a register or counter key is used before the next one is
    /// (`r<k>.<period>`, `c<k>.<period>`): each `info` write stays a
    /// possibility the checker must place for the rest of its key's
    /// history, so a key used for an hour piles up enough of them to make
    /// the search exponential (Jepsen bounds the operations per key for
    /// the same reason).
    pub key_period: Duration,
}

impl Workload {
    /// The append period now.
    pub fn period(&self) -> u64 {
        (self.start.elapsed().as_millis() / self.append_period.as_millis().max(1)) as u64
    }

    /// The register and counter period now.
    pub fn key_period_now(&self) -> u64 {
        (self.start.elapsed().as_millis() / self.key_period.as_millis().max(1)) as u64
    }
}

/// Picks the next operation for `process`; `cas` only when the client can
/// run it.
fn next_op(w: &Workload, rng: &mut Rng, process: u64, n: u64, cas: bool) -> Op {
    let group = w.groups[rng.below(w.groups.len() as u64) as usize];
    let family = rng.below(3);
    let k = rng.below(u64::from(w.keys));
    let roll = rng.below(100);
    let (prefix, f, input) = match family {
        0 => {
            let f = match roll {
                0..40 => Function::Get,
                40..70 => Function::Put,
                70..80 => Function::Del,
                _ if cas => Function::Cas,
                _ => Function::Put,
            };
            let input = match f {
                Function::Put => json!(format!("p{process}.{n}")),
                // The expected value is one the client may have seen: a
                // recent put of its own or none.
                Function::Cas => {
                    let expected = if rng.below(4) == 0 {
                        Value::Null
                    } else {
                        json!(format!("p{process}.{}", n.saturating_sub(1 + rng.below(3))))
                    };
                    json!([expected, format!("p{process}.{n}")])
                }
                _ => Value::Null,
            };
            ("r", f, input)
        }
        1 => {
            if roll < 30 {
                ("a", Function::Get, Value::Null)
            } else {
                ("a", Function::Append, json!(format!("t{process}.{n} ")))
            }
        }
        _ => {
            if roll < 30 {
                ("c", Function::Get, Value::Null)
            } else {
                ("c", Function::Incr, json!(1 + rng.below(5)))
            }
        }
    };
    // Half the keys hold typed values (see the module doc).
    let typed = rng.below(2) == 0;
    let (prefix, f) = match (prefix, typed, f) {
        ("r", true, Function::Cas) => ("h", Function::Put),
        ("r", true, f) => ("h", f),
        ("a", true, f) => ("l", f),
        ("c", true, f) => ("z", f),
        (p, _, f) => (p, f),
    };
    let input = match (prefix, f) {
        ("h", Function::Put) => json!(format!("p{process}.{n}")),
        _ => input,
    };
    let raw_key = if prefix == "a" || prefix == "l" {
        format!("{prefix}{k}.{}", w.period())
    } else {
        format!("{prefix}{k}.{}", w.key_period_now())
    };
    Op {
        process,
        f,
        key: format!("g{group}/{raw_key}"),
        group,
        raw_key,
        input,
    }
}

/// Runs operations until `stop`: over the Redis port when `redis` lists
/// addresses (one connection, to a node picked at random, replaced after
/// an error), else with a native client of `services`.
pub fn run_client(
    rec: Arc<Recorder>,
    workload: Workload,
    seed: u64,
    target: Target,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng::new(seed);
    let mut process = rec.process();
    let mut n = 0u64;
    match target {
        Target::Redis(addrs, password) => {
            let mut conn: Option<(redis::Connection, String)> = None;
            while !stop.load(Ordering::Relaxed) {
                if conn.is_none() {
                    let addr = addrs[rng.below(addrs.len() as u64) as usize];
                    match redis_connect(addr, password.as_deref()) {
                        Ok(c) => conn = Some((c, addr.to_string())),
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        }
                    }
                }
                let Some((c, node)) = conn.as_mut() else {
                    continue;
                };
                n += 1;
                let op = next_op(&workload, &mut rng, process, n, false);
                let out = rec.perform(&op, node, |op| redis_exec(c, op));
                if let Outcome::Info(_) = out {
                    // The connection's state is unknown: start afresh, as
                    // a new process (the old one may still act).
                    conn = None;
                    process = rec.process();
                }
            }
        }
        Target::Native(services) => {
            let client = match services.connect(Duration::from_secs(10)) {
                Ok(c) => c,
                Err(e) => {
                    log::error!("native client cannot start: {e}");
                    return;
                }
            };
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let op = next_op(&workload, &mut rng, process, n, true);
                let out = rec.perform(&op, "", |op| native_exec(&client, op));
                if let Outcome::Info(_) = out {
                    process = rec.process();
                }
            }
            client.close();
        }
    }
}

/// Where a client sends its operations.
#[derive(Debug, Clone)]
pub enum Target {
    /// Redis ports (one is picked per connection) and their password.
    Redis(Vec<SocketAddr>, Option<String>),
    /// Service addresses and the token for the native client.
    Native(Services),
}

/// Where the native clients go: service addresses, and the token they
/// prove there (as the admin "default" credential) if the nodes have one.
#[derive(Debug, Clone, Default)]
pub struct Services {
    /// Service addresses (none: no native clients).
    pub addrs: Vec<SocketAddr>,
    /// The token of the nodes' `default` credential.
    pub token: Option<String>,
}

impl Services {
    /// A native client of these services, with `timeout` per operation.
    pub fn connect(&self, timeout: Duration) -> Result<BlockingClient, ClientError> {
        let cfg = ClientConfig {
            request_timeout: timeout,
            ..ClientConfig::new(self.addrs.clone())
        };
        let cfg = match &self.token {
            Some(t) => cfg.credential(SERVICE_USER, t)?,
            None => cfg,
        };
        BlockingClient::connect(cfg)
    }
}

/// The name of the credential the harness's native clients prove.
pub const SERVICE_USER: &str = "default";

/// How long a Redis connection waits for a reply: past the nodes'
/// `request_timeout_ms`, so that the node's own answer comes first.
const REDIS_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A Redis connection to `addr` with the harness's timeouts, which
/// authenticates with `password` when there is one.
pub fn redis_connect(
    addr: SocketAddr,
    password: Option<&str>,
) -> redis::RedisResult<redis::Connection> {
    let mut info = redis::IntoConnectionInfo::into_connection_info(format!("redis://{addr}/"))?;
    if let Some(p) = password {
        let settings = info.redis_settings().clone().set_password(p);
        info = info.set_redis_settings(settings);
    }
    let client = redis::Client::open(info)?;
    let conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(REDIS_REPLY_TIMEOUT))?;
    conn.set_write_timeout(Some(REDIS_REPLY_TIMEOUT))?;
    Ok(conn)
}

/// Runs `op` on a Redis connection; `SELECT` picks the group's database on
/// every operation (the harness does not track the connection's).
pub fn redis_exec(c: &mut redis::Connection, op: &Op) -> Outcome {
    let db = op.group - 1;
    let mut pipe = redis::pipe();
    pipe.cmd("SELECT").arg(db).ignore();
    let key = op.raw_key.as_str();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    if let Some(kind) = TypedKind::of(key) {
        return redis_typed(c, pipe, op, kind);
    }
    match op.f {
        Function::Get => pipe.cmd("GET").arg(key),
        Function::Put => pipe.cmd("SET").arg(key).arg(text(&op.input)),
        Function::Append => pipe.cmd("APPEND").arg(key).arg(text(&op.input)),
        Function::Incr => pipe
            .cmd("INCRBY")
            .arg(key)
            .arg(op.input.as_i64().unwrap_or(1)),
        Function::Del => pipe.cmd("DEL").arg(key),
        Function::Cas => return Outcome::Fail("cas is not a Redis command".into()),
    };
    let reply: redis::RedisResult<(redis::Value,)> = pipe.query(c);
    match reply {
        Ok((v,)) => match (op.f, v) {
            (Function::Get, redis::Value::Nil) => Outcome::Ok(Value::Null),
            (Function::Get, redis::Value::BulkString(b)) => {
                Outcome::Ok(json!(String::from_utf8_lossy(&b)))
            }
            (Function::Put | Function::Append, _) => Outcome::Ok(op.input.clone()),
            (Function::Incr, redis::Value::Int(i)) => Outcome::Ok(json!(i)),
            (Function::Del, redis::Value::Int(i)) => Outcome::Ok(json!(i)),
            (_, other) => Outcome::Info(format!("unexpected reply {other:?}")),
        },
        Err(e) => redis_error(op, &e),
    }
}

/// The typed representations of the families (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TypedKind {
    /// A hash's field `f`, as a register.
    HashField,
    /// A list's elements, as an append-only value.
    List,
    /// A sorted-set member's score, as a counter.
    Score,
}

impl TypedKind {
    fn of(raw_key: &str) -> Option<TypedKind> {
        match raw_key.as_bytes().first() {
            Some(b'h') => Some(TypedKind::HashField),
            Some(b'l') => Some(TypedKind::List),
            Some(b'z') => Some(TypedKind::Score),
            _ => None,
        }
    }
}

/// The field and member the typed families use.
const FIELD: &str = "f";

/// A list's elements as the append model reads them: joined, or absent.
fn joined(items: &[Vec<u8>]) -> Value {
    if items.is_empty() {
        return Value::Null;
    }
    let mut s = String::new();
    for i in items {
        s.push_str(&String::from_utf8_lossy(i));
    }
    json!(s)
}

/// A score as the counter model reads it (scores here are whole).
fn score_value(text: &str) -> Value {
    text.parse::<f64>()
        .map_or_else(|_| json!(text), |v| json!(v as i64))
}

/// `op` on a typed key over the Redis port.
fn redis_typed(
    c: &mut redis::Connection,
    mut pipe: redis::Pipeline,
    op: &Op,
    kind: TypedKind,
) -> Outcome {
    let key = op.raw_key.as_str();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let delta = op.input.as_i64().unwrap_or(1);
    match (kind, op.f) {
        (TypedKind::HashField, Function::Get) => pipe.cmd("HGET").arg(key).arg(FIELD),
        (TypedKind::HashField, Function::Put) => {
            pipe.cmd("HSET").arg(key).arg(FIELD).arg(text(&op.input))
        }
        (TypedKind::HashField, Function::Del) => pipe.cmd("HDEL").arg(key).arg(FIELD),
        (TypedKind::List, Function::Get) => pipe.cmd("LRANGE").arg(key).arg(0).arg(-1),
        (TypedKind::List, Function::Append) => pipe.cmd("RPUSH").arg(key).arg(text(&op.input)),
        (TypedKind::Score, Function::Get) => pipe.cmd("ZSCORE").arg(key).arg(FIELD),
        (TypedKind::Score, Function::Incr) => pipe.cmd("ZINCRBY").arg(key).arg(delta).arg(FIELD),
        (_, f) => return Outcome::Fail(format!("{f:?} is not run on {kind:?} keys")),
    };
    let reply: redis::RedisResult<(redis::Value,)> = pipe.query(c);
    match reply {
        Ok((v,)) => match (kind, op.f, v) {
            (_, Function::Get, redis::Value::Nil) => Outcome::Ok(Value::Null),
            (TypedKind::HashField, Function::Get, redis::Value::BulkString(b)) => {
                Outcome::Ok(json!(String::from_utf8_lossy(&b)))
            }
            (TypedKind::List, Function::Get, redis::Value::Array(items)) => {
                let items: Vec<Vec<u8>> = items
                    .into_iter()
                    .filter_map(|i| match i {
                        redis::Value::BulkString(b) => Some(b),
                        _ => None,
                    })
                    .collect();
                Outcome::Ok(joined(&items))
            }
            (TypedKind::Score, Function::Get | Function::Incr, redis::Value::BulkString(b)) => {
                Outcome::Ok(score_value(&String::from_utf8_lossy(&b)))
            }
            (TypedKind::Score, Function::Get | Function::Incr, redis::Value::Double(d)) => {
                Outcome::Ok(json!(d as i64))
            }
            (TypedKind::HashField, Function::Del, redis::Value::Int(i)) => Outcome::Ok(json!(i)),
            (_, Function::Put | Function::Append, _) => Outcome::Ok(op.input.clone()),
            (_, _, other) => Outcome::Info(format!("unexpected reply {other:?}")),
        },
        Err(e) => redis_error(op, &e),
    }
}

/// `op` on a typed key with the native client.
fn native_typed(client: &BlockingClient, op: &Op, kind: TypedKind) -> Outcome {
    let key = Bytes::from(op.raw_key.clone());
    let field = Bytes::from_static(FIELD.as_bytes());
    let text = |v: &Value| Bytes::from(v.as_str().unwrap_or_default().to_owned());
    let read = |q: DataQuery| match client.query(op.group, KvQuery::Data(q)) {
        Ok(KvAnswer::Reply(r)) => Ok(r),
        Ok(other) => Err(Outcome::Info(format!("unexpected answer {other:?}"))),
        Err(e) => Err(Outcome::Fail(e.to_string())),
    };
    let cmd = match (kind, op.f) {
        (TypedKind::HashField, Function::Get) => {
            return match read(DataQuery::HGet { key, field }) {
                Ok(Reply::Bulk(b)) => Outcome::Ok(json!(String::from_utf8_lossy(&b))),
                Ok(Reply::Nil) => Outcome::Ok(Value::Null),
                Ok(other) => Outcome::Fail(format!("{other:?}")),
                Err(o) => o,
            };
        }
        (TypedKind::List, Function::Get) => {
            return match read(DataQuery::LRange {
                key,
                start: 0,
                stop: -1,
            }) {
                Ok(Reply::Array(items)) => {
                    let items: Vec<Vec<u8>> = items
                        .into_iter()
                        .filter_map(|i| match i {
                            Reply::Bulk(b) => Some(b.to_vec()),
                            _ => None,
                        })
                        .collect();
                    Outcome::Ok(joined(&items))
                }
                Ok(other) => Outcome::Fail(format!("{other:?}")),
                Err(o) => o,
            };
        }
        (TypedKind::Score, Function::Get) => {
            return match read(DataQuery::ZScore { key, member: field }) {
                Ok(Reply::Double(d)) => Outcome::Ok(json!(d as i64)),
                Ok(Reply::Nil) => Outcome::Ok(Value::Null),
                Ok(other) => Outcome::Fail(format!("{other:?}")),
                Err(o) => o,
            };
        }
        (TypedKind::HashField, Function::Put) => DataCmd::HSet {
            key,
            pairs: vec![(field, text(&op.input))],
            nx: false,
            ok: false,
        },
        (TypedKind::HashField, Function::Del) => DataCmd::HDel {
            key,
            fields: vec![field],
        },
        (TypedKind::List, Function::Append) => DataCmd::Push {
            key,
            left: false,
            values: vec![text(&op.input)],
            existing: false,
        },
        (TypedKind::Score, Function::Incr) => DataCmd::ZIncrBy {
            key,
            delta: op.input.as_i64().unwrap_or(1) as f64,
            member: field,
        },
        (_, f) => return Outcome::Fail(format!("{f:?} is not run on {kind:?} keys")),
    };
    match client.execute(op.group, KvCommand::Data(cmd)) {
        Ok(KvResult::Reply(Reply::Error(e))) => Outcome::Fail(e),
        Ok(KvResult::Reply(Reply::Double(d))) => Outcome::Ok(json!(d as i64)),
        Ok(KvResult::Reply(Reply::Int(i))) if op.f == Function::Del => Outcome::Ok(json!(i)),
        Ok(KvResult::Reply(_)) => Outcome::Ok(op.input.clone()),
        Ok(KvResult::Failed(f)) => Outcome::Fail(format!("{f:?}")),
        Ok(other) => Outcome::Info(format!("unexpected result {other:?}")),
        Err(e) => native_error(&e),
    }
}

/// Sorts a Redis error into "did not happen" and "may have happened".
fn redis_error(op: &Op, e: &redis::RedisError) -> Outcome {
    let text = e.to_string();
    let server_said = e.kind() != redis::ErrorKind::Io && !e.is_timeout() && !e.is_io_error();
    if op.f == Function::Get {
        // A read that failed changed nothing, whatever the reason.
        Outcome::Fail(text)
    } else if server_said && !text.contains("UNCERTAIN") {
        Outcome::Fail(text)
    } else {
        Outcome::Info(text)
    }
}

/// Runs `op` with the native client.
pub fn native_exec(client: &BlockingClient, op: &Op) -> Outcome {
    if let Some(kind) = TypedKind::of(&op.raw_key) {
        return native_typed(client, op, kind);
    }
    let key = Bytes::from(op.raw_key.clone());
    let text = |v: &Value| v.as_str().map(|s| Bytes::from(s.to_owned()));
    let cmd = match op.f {
        Function::Get => {
            return match client.get(op.group, key) {
                Ok(v) => Outcome::Ok(v.map_or(Value::Null, |b| json!(String::from_utf8_lossy(&b)))),
                Err(e) => Outcome::Fail(e.to_string()),
            };
        }
        Function::Put => KvCommand::Put {
            key,
            value: text(&op.input).unwrap_or_default(),
            ttl: Ttl::Persist,
            condition: PutCondition::Always,
            return_old: false,
        },
        Function::Append => KvCommand::Append {
            key,
            suffix: text(&op.input).unwrap_or_default(),
        },
        Function::Incr => KvCommand::Increment {
            key,
            delta: op.input.as_i64().unwrap_or(1),
        },
        Function::Del => KvCommand::Remove {
            keys: vec![key],
            return_old: false,
        },
        Function::Cas => KvCommand::CompareAndSet {
            key,
            expected: text(&op.input[0]),
            new: text(&op.input[1]),
        },
    };
    match client.execute(op.group, cmd) {
        Ok(KvResult::Put { .. }) | Ok(KvResult::Len(_)) => Outcome::Ok(op.input.clone()),
        Ok(KvResult::Int(i)) => Outcome::Ok(json!(i)),
        Ok(KvResult::Count { count, .. }) => Outcome::Ok(json!(count)),
        Ok(KvResult::Flag(true)) => Outcome::Ok(op.input.clone()),
        Ok(KvResult::Flag(false)) => Outcome::Fail("cas: no match".into()),
        Ok(KvResult::Failed(f)) => Outcome::Fail(format!("{f:?}")),
        Ok(other) => Outcome::Info(format!("unexpected result {other:?}")),
        Err(e) => native_error(&e),
    }
}

fn native_error(e: &ClientError) -> Outcome {
    if e.is_definite() {
        Outcome::Fail(e.to_string())
    } else {
        Outcome::Info(e.to_string())
    }
}
