//! Nothing doubled, nothing lost, no stale read: three real `sampan-node`
//! processes, clients on every Redis port and on the native client, each
//! appending unique tokens to a few keys and reading them back, while a
//! nemesis kills (SIGKILL) and pauses (SIGSTOP longer than the election
//! timeout) the leader and the followers in turn, and cuts node 3 off the
//! others (iptables on loopback: needs root and the iptables package).
//!
//! APPEND makes every write visible in the value: a token applied twice
//! shows twice, a lost one is missing, and since values only grow, every
//! read must be a prefix of the final value and must hold every token
//! acknowledged before the read began. An outcome a client could not know
//! (a connection cut, an `UNCERTAIN` reply) may be present or absent; any
//! other error reply means "not applied", so that token must never show.
//!
//! The run is seeded (`SAMPAN_EO_SEED` replays one); its length is
//! `SAMPAN_EO_SECS` (default 20 s of faults).

mod redis_common;
use bytes::Bytes;
use redis_common::*;
use sampan::client::{BlockingClient, ClientConfig};
use sampan_kv::{KvCommand, KvResult};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Keys the clients share: few, so that they contend.
const KEYS: usize = 4;
/// Redis-port clients per node.
const REDIS_CLIENTS_PER_NODE: u64 = 2;
/// Native-client (service port) clients.
const NATIVE_CLIENTS: u64 = 2;
/// Appends that must be acknowledged after the faults heal.
const ACKED_AFTER_HEAL_MIN: u64 = 100;
/// A reply may take this long before the client gives up on it (the
/// nodes' request timeout is 10 s).
const REPLY_WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Acknowledged: applied once.
    Acked,
    /// The reply said it failed: never applied.
    Failed,
    /// Unknown to the client: applied at most once.
    Uncertain,
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        key: usize,
        token: String,
        end: Instant,
        outcome: Outcome,
        detail: String,
    },
    /// A read, kept as the length and hash of the value it saw.
    Read {
        key: usize,
        start: Instant,
        len: usize,
        hash: u64,
        client: String,
    },
}

fn key_name(k: usize) -> String {
    format!("eo:{k}")
}

/// A small deterministic generator (xorshift64*), one per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    std::env::var("SAMPAN_EO_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        })
}

/// Shared between the clients, the nemesis and the checker.
struct Run {
    stop: AtomicBool,
    healed: AtomicBool,
    acked_after_heal: AtomicU64,
    ops: Mutex<Vec<Op>>,
}

impl Run {
    fn record(&self, op: Op) {
        if let Op::Append {
            outcome: Outcome::Acked,
            ..
        } = &op
            && self.healed.load(Ordering::SeqCst)
        {
            self.acked_after_heal.fetch_add(1, Ordering::SeqCst);
        }
        self.ops.lock().expect("ops").push(op);
    }

    /// Records an append of `token` to `key` that has just ended.
    fn record_append(&self, key: usize, token: String, outcome: Outcome, detail: String) {
        self.record(Op::Append {
            key,
            token,
            end: Instant::now(),
            outcome,
            detail,
        });
    }

    /// Records a read of `key` begun at `start` that saw `value`.
    fn record_read(&self, key: usize, start: Instant, value: &[u8], client: &str) {
        self.record(Op::Read {
            key,
            start,
            len: value.len(),
            hash: hash(value),
            client: client.to_string(),
        });
    }
}

/// A Redis-port client: starts on `first` node's port, moves to the next
/// node whenever its connection fails.
fn redis_client(run: Arc<Run>, ports: Vec<u16>, first: usize, name: String, seed: u64) {
    let mut rng = Rng(seed);
    let mut at = first;
    let mut conn: Option<Resp> = None;
    let mut n = 0u64;
    while !run.stop.load(Ordering::SeqCst) {
        let Some(c) = conn.as_mut() else {
            conn = Resp::connect_with(ports[at], REPLY_WAIT).ok();
            if conn.is_none() {
                at = (at + 1) % ports.len();
                std::thread::sleep(Duration::from_millis(50));
            }
            continue;
        };
        let key = rng.below(KEYS as u64) as usize;
        let start = Instant::now();
        if rng.below(4) == 0 {
            match c.call(&["GET", &key_name(key)]) {
                Ok(Value::Bulk(v)) => run.record_read(key, start, &v.unwrap_or_default(), &name),
                Ok(_) => {}
                Err(_) => {
                    conn = None;
                    at = (at + 1) % ports.len();
                }
            }
            continue;
        }
        n += 1;
        let token = format!("{name}.{n};");
        let (outcome, detail) = match c.call(&["APPEND", &key_name(key), &token]) {
            Ok(Value::Int(_)) => (Outcome::Acked, String::new()),
            Ok(Value::Error(e)) if e.starts_with("UNCERTAIN") => (Outcome::Uncertain, e),
            Ok(other) => (Outcome::Failed, other.to_string()),
            Err(e) => {
                conn = None;
                at = (at + 1) % ports.len();
                (Outcome::Uncertain, e.to_string())
            }
        };
        run.record_append(key, token, outcome, detail);
    }
}

/// A native client over every node's service port; its retries carry an
/// exactly-once session.
fn native_client(run: Arc<Run>, client: BlockingClient, name: String, seed: u64) {
    let mut rng = Rng(seed);
    let mut n = 0u64;
    while !run.stop.load(Ordering::SeqCst) {
        let key = rng.below(KEYS as u64) as usize;
        let start = Instant::now();
        if rng.below(4) == 0 {
            if let Ok(v) = client.get(1, key_name(key)) {
                run.record_read(key, start, &v.unwrap_or_default(), &name);
            }
            continue;
        }
        n += 1;
        let token = format!("{name}.{n};");
        let command = KvCommand::Append {
            key: Bytes::from(key_name(key)),
            suffix: Bytes::from(token.clone()),
        };
        let (outcome, detail) = match client.execute(1, command) {
            Ok(KvResult::Failed(f)) => (Outcome::Failed, format!("{f:?}")),
            Ok(_) => (Outcome::Acked, String::new()),
            Err(e) if e.is_definite() => (Outcome::Failed, e.to_string()),
            Err(e) => (Outcome::Uncertain, e.to_string()),
        };
        run.record_append(key, token, outcome, detail);
    }
}

/// A loopback partition of node 3 (iptables DROP of every packet to or from
/// its replication port: node 3 dials nobody, so that is all of its links),
/// removed when dropped, even if the test fails.
struct Partition {
    port: u16,
}

fn iptables(args: &[String]) -> bool {
    std::process::Command::new("iptables")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

fn partition_rules(op: &str, port: u16) -> [Vec<String>; 2] {
    ["--dport", "--sport"].map(|dir| {
        [
            op,
            "INPUT",
            "-i",
            "lo",
            "-p",
            "tcp",
            dir,
            &port.to_string(),
            "-j",
            "DROP",
        ]
        .map(str::to_string)
        .to_vec()
    })
}

impl Partition {
    fn cut(port: u16) -> Partition {
        for rule in partition_rules("-I", port) {
            assert!(
                iptables(&rule),
                "iptables {rule:?} failed: the test needs root and the Debian package \
                 iptables (.ci/run installs it)"
            );
        }
        Partition { port }
    }

    /// Packets the rules dropped so far (a partition that drops nothing is
    /// a bug of the harness, not a fault).
    fn dropped(&self) -> u64 {
        let out = std::process::Command::new("iptables")
            .args(["-L", "INPUT", "-v", "-n", "-x"])
            .output()
            .expect("iptables -L");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&format!("pt:{}", self.port)) && l.contains("DROP"))
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        for rule in partition_rules("-D", self.port) {
            iptables(&rule);
        }
    }
}

/// The node that says it leads group 1, if one does.
fn leader_now(c: &TestCluster) -> Option<u64> {
    c.running().into_iter().find(|n| {
        group_role(c.port(*n), 1).is_some_and(|(role, leader)| role == "leader" && leader == *n)
    })
}

/// Kills, pauses and partitions, the leader and a follower in turn, each
/// healed before the next; returns how many of each fired.
fn nemesis(c: &mut TestCluster, run: &Run, rng: &mut Rng, secs: u64) -> [u32; 5] {
    let mut fired = [0u32; 5];
    let end = Instant::now() + Duration::from_secs(secs);
    let mut kind = 0usize;
    // Runs its time, and on until every kind of fault has fired once.
    while Instant::now() < end || fired.contains(&0) {
        std::thread::sleep(Duration::from_millis(1_000 + rng.below(1_500)));
        let leader = leader_now(c);
        let target = match (kind % 2, leader) {
            (0, Some(l)) => l,
            _ => {
                let others: Vec<u64> = (1..=3).filter(|n| Some(*n) != leader).collect();
                others[rng.below(others.len() as u64) as usize]
            }
        };
        let hold = Duration::from_millis(1_500 + rng.below(1_500));
        if kind % 5 == 4 {
            eprintln!("nemesis: partition node 3 (leader {leader:?}) for {hold:?}");
            let cut = Partition::cut(c.repl_ports[2]);
            std::thread::sleep(hold);
            let dropped = cut.dropped();
            assert!(dropped > 0, "the partition of node 3 dropped no packet");
            eprintln!("nemesis: healed node 3's partition ({dropped} packets dropped)");
            fired[4] += 1;
        } else if (kind / 2).is_multiple_of(2) {
            eprintln!("nemesis: SIGKILL node {target} (leader {leader:?}) for {hold:?}");
            c.kill(target);
            std::thread::sleep(hold);
            c.spawn(target);
            fired[kind % 2] += 1;
        } else {
            eprintln!("nemesis: SIGSTOP node {target} (leader {leader:?}) for {hold:?}");
            c.pause(target);
            std::thread::sleep(hold);
            c.resume(target);
            fired[2 + kind % 2] += 1;
        }
        kind += 1;
    }
    run.healed.store(true, Ordering::SeqCst);
    fired
}

/// The final value of every key, read from the leader once all is healed.
fn final_values(c: &TestCluster) -> Vec<Vec<u8>> {
    let mut values = Vec::new();
    for k in 0..KEYS {
        let mut got = None;
        wait_until("a final read of every key", || {
            let Some(l) = leader_now(c) else { return false };
            let Ok(mut conn) = Resp::connect(c.port(l)) else {
                return false;
            };
            match conn.call(&["GET", &key_name(k)]) {
                Ok(Value::Bulk(v)) => {
                    got = Some(v.unwrap_or_default());
                    true
                }
                _ => false,
            }
        });
        values.push(got.expect("read"));
    }
    values
}

/// One key's final value, indexed: each token's position, the hash of each
/// prefix that ends on a token boundary, and how many tokens it holds.
struct Final {
    position: HashMap<String, usize>,
    /// Byte length of a token-aligned prefix -> (its hash, its tokens).
    prefixes: HashMap<usize, (u64, usize)>,
}

/// A polynomial hash, extended a byte at a time (so every prefix of a value
/// is hashed in one pass).
fn hash_step(h: u64, b: u8) -> u64 {
    h.wrapping_mul(0x100_0000_01b3)
        .wrapping_add(u64::from(b) + 1)
}

fn hash(value: &[u8]) -> u64 {
    value.iter().fold(0, |h, b| hash_step(h, *b))
}

/// Indexes a final value; doubled tokens go to `bad`.
fn index_final(k: usize, value: &[u8], bad: &mut Vec<String>) -> Final {
    let mut f = Final {
        position: HashMap::new(),
        prefixes: HashMap::from([(0, (0, 0))]),
    };
    let (mut h, mut start, mut count) = (0u64, 0usize, 0usize);
    for (i, b) in value.iter().enumerate() {
        h = hash_step(h, *b);
        if *b == b';' {
            let token = String::from_utf8_lossy(&value[start..=i]).into_owned();
            if f.position.insert(token.clone(), count).is_some() {
                bad.push(format!("key {k}: token {token} applied twice"));
            }
            count += 1;
            start = i + 1;
            f.prefixes.insert(i + 1, (h, count));
        }
    }
    f
}

/// Every violation found in the history, as lines to print.
fn check(ops: &[Op], finals: &[Vec<u8>]) -> Vec<String> {
    let mut bad = Vec::new();
    let index: Vec<Final> = finals
        .iter()
        .enumerate()
        .map(|(k, v)| index_final(k, v, &mut bad))
        .collect();
    let mut sent: HashMap<&str, (Outcome, usize, &str)> = HashMap::new();
    for op in ops {
        if let Op::Append {
            token,
            outcome,
            key,
            detail,
            ..
        } = op
        {
            sent.insert(token.as_str(), (*outcome, *key, detail.as_str()));
        }
    }
    for (k, f) in index.iter().enumerate() {
        let mut in_order: Vec<(&String, usize)> = f.position.iter().map(|(t, p)| (t, *p)).collect();
        in_order.sort_by_key(|(_, p)| *p);
        let mut last_of: HashMap<&str, u64> = HashMap::new();
        for (t, _) in in_order {
            match sent.get(t.as_str()) {
                None => bad.push(format!("key {k}: token {t} was never sent")),
                Some((_, key, _)) if *key != k => {
                    bad.push(format!("key {k}: token {t} was sent to key {key}"));
                }
                Some((Outcome::Failed, _, detail)) => bad.push(format!(
                    "key {k}: token {t} applied though its reply said it failed: {detail}"
                )),
                _ => {}
            }
            // A client's appends are sequential: its acknowledged tokens keep
            // their order. (One whose outcome it never learned may apply at
            // any time after it was sent, as in Jepsen's histories.)
            if !matches!(sent.get(t.as_str()), Some((Outcome::Acked, _, _))) {
                continue;
            }
            let (client, n) = t
                .trim_end_matches(';')
                .rsplit_once('.')
                .unwrap_or(("?", "0"));
            let n: u64 = n.parse().unwrap_or(0);
            if let Some(prev) = last_of.insert(client, n)
                && prev > n
            {
                bad.push(format!(
                    "key {k}: {client}'s token {n} after its token {prev}"
                ));
            }
        }
    }
    // Acknowledged appends of each key by the time they were acknowledged,
    // with the highest final position among them so far.
    let mut acked: Vec<Vec<(Instant, usize)>> = vec![Vec::new(); finals.len()];
    for op in ops {
        if let Op::Append {
            key,
            token,
            end,
            outcome: Outcome::Acked,
            ..
        } = op
        {
            match index[*key].position.get(token) {
                Some(p) => acked[*key].push((*end, *p)),
                None => bad.push(format!("key {key}: acknowledged token {token} is lost")),
            }
        }
    }
    for a in &mut acked {
        a.sort_by_key(|(end, _)| *end);
        for i in 1..a.len() {
            a[i].1 = a[i].1.max(a[i - 1].1);
        }
    }
    for op in ops {
        let Op::Read {
            key,
            start,
            len,
            hash,
            client,
            ..
        } = op
        else {
            continue;
        };
        let Some(&(_, count)) = index[*key].prefixes.get(len).filter(|(h, _)| h == hash) else {
            bad.push(format!(
                "key {key}: {client} read {len} bytes that are not a prefix of the final value"
            ));
            continue;
        };
        // Every append acknowledged before the read began must show in it.
        let before = acked[*key].partition_point(|(end, _)| end < start);
        if let Some(&(end, highest)) = before.checked_sub(1).map(|i| &acked[*key][i])
            && highest >= count
        {
            bad.push(format!(
                "key {key}: stale read by {client}: it holds {count} tokens, but the token at \
                 position {highest} was acknowledged by {:?} before the read began",
                start.duration_since(end)
            ));
        }
    }
    bad
}

#[test]
fn kill_and_pause_neither_double_nor_lose_a_write_nor_serve_a_stale_read() {
    let seed = seed();
    let secs: u64 = std::env::var("SAMPAN_EO_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    eprintln!("exactly-once run: seed {seed} (SAMPAN_EO_SEED={seed} replays the schedule)");
    let mut rng = Rng(seed);
    let mut c = TestCluster::start(3);
    c.wait_leader(1);
    let run = Arc::new(Run {
        stop: AtomicBool::new(false),
        healed: AtomicBool::new(false),
        acked_after_heal: AtomicU64::new(0),
        ops: Mutex::new(Vec::new()),
    });
    let ports: Vec<u16> = (1..=3).map(|n| c.port(n)).collect();
    let mut clients = Vec::new();
    for node in 0..3usize {
        for j in 0..REDIS_CLIENTS_PER_NODE {
            let (run, ports) = (run.clone(), ports.clone());
            let name = format!("r{node}{j}");
            let s = rng.next() | 1;
            clients.push(std::thread::spawn(move || {
                redis_client(run, ports, node, name, s)
            }));
        }
    }
    for j in 0..NATIVE_CLIENTS {
        let cfg = ClientConfig::new(c.services()).request_timeout(REPLY_WAIT);
        let client = BlockingClient::connect(cfg).expect("native client");
        let (run, name, s) = (run.clone(), format!("n{j}"), rng.next() | 1);
        clients.push(std::thread::spawn(move || {
            native_client(run, client, name, s)
        }));
    }
    let fired = nemesis(&mut c, &run, &mut rng, secs);
    eprintln!(
        "faults: {} leader kills, {} follower kills, {} leader pauses, {} follower pauses, \
         {} partitions of node 3",
        fired[0], fired[1], fired[2], fired[3], fired[4]
    );
    assert!(
        fired.iter().all(|n| *n > 0),
        "every kind of fault must fire: {fired:?}"
    );
    c.wait_leader(1);
    wait_until("appends to be acknowledged after the faults heal", || {
        run.acked_after_heal.load(Ordering::SeqCst) >= ACKED_AFTER_HEAL_MIN
    });
    run.stop.store(true, Ordering::SeqCst);
    for t in clients {
        t.join().expect("client thread");
    }
    let finals = final_values(&c);
    let ops = run.ops.lock().expect("ops").clone();
    let count = |o: Outcome| {
        ops.iter()
            .filter(|op| matches!(op, Op::Append { outcome, .. } if *outcome == o))
            .count()
    };
    let reads = ops
        .iter()
        .filter(|op| matches!(op, Op::Read { .. }))
        .count();
    eprintln!(
        "history: {} appends acknowledged, {} failed, {} uncertain; {reads} reads",
        count(Outcome::Acked),
        count(Outcome::Failed),
        count(Outcome::Uncertain)
    );
    let bad = check(&ops, &finals);
    assert!(
        bad.is_empty(),
        "seed {seed}: {} violations:\n{}",
        bad.len(),
        bad.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}
