//! Snapshot under load: a single-node KV group holding 1 M keys (16-byte
//! keys, 100-byte values) under a steady closed loop of single-key puts;
//! `snapshot_now` is asked while the load runs. Compares apply throughput
//! and latency during the snapshot (asked -> durable) with the steady state
//! just before it, for the KV store's copy-on-write freeze and for a naive
//! blocking freeze (the whole state copied into chunks on the apply fiber,
//! as SOFAJRaft does), and reports the snapshot's size and write time.
//!
//! With `--mixed`, a tenth each of the keys are hashes, lists, sets and
//! sorted sets of 10 elements (the rest strings), and the writers change
//! each kind in place (HSET, LSET, SADD, ZINCRBY, or a put): a collection
//! written while a snapshot holds it is copied once.
//!
//! `cargo bench -p sampan-benches --bench snapshot [-- --quick] [--mixed]
//! [--only copyonwrite|copyonwriteunlimited|naive|writesonly]`. One
//! process, one shard: the group, its apply and snapshot fibers and the
//! load fibers share one thread, so what the snapshot costs the shard shows
//! in the puts' rate. `async` durability, so the disk's fsync does not hide
//! the state machine.

/// The node binary's allocator (`demos/src/bin/sampan-node.rs`): the
/// shard's applies and the snapshot's encoder thread allocate and free
/// the same tree's nodes, as they do in a node.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use sampan::config::{Durability, GroupConfig, ServerConfig};
use sampan::group::SnapshotSaved;
use sampan::raft::Role;
use sampan::server::{GroupRef, RaftFactory, RaftServer, machines};
use sampan::state_machine::{
    Committed, FrozenState, RoleChange, SnapshotInfo, Stamp, StateMachine, StateMachineError,
};
use sampan_benches::Latencies;
use sampan_fiber::TaskClass;
use sampan_kv::kv_factory;
use sampan_kv::{DataCmd, KvCommand, KvConfig, KvMachine, KvRequest, Ttl, ZAddFlags};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Keys loaded before the load starts (`--quick`: [`KEYS_QUICK`]).
const KEYS_FULL: u64 = 1_000_000;
const KEYS_QUICK: u64 = 200_000;
const VALUE_BYTES: usize = 100;
/// Keys per `PutMany` while loading.
const LOAD_BATCH: u64 = 1_000;
/// Concurrent single-key puts of the closed loop (both variants).
const WRITERS: usize = 256;
const GROUP: u64 = 1;
/// Chunk size the naive freeze copies into (the default snapshot chunk).
const NAIVE_CHUNK_BYTES: usize = 256 << 10;
/// Completions kept per run, an upper bound to preallocate.
const SAMPLES_MAX: usize = 8_000_000;

/// `--mixed`: keys of every type (see the crate doc).
static MIXED: AtomicBool = AtomicBool::new(false);

/// Elements per collection with `--mixed`.
const MIXED_ELEMENTS: u64 = 10;

/// What key `i` holds with `--mixed`: 0..=5 a string, 6 a hash, 7 a list,
/// 8 a set, 9 a sorted set.
fn mixed_kind(i: u64) -> u64 {
    if MIXED.load(Ordering::Relaxed) {
        i % 10
    } else {
        0
    }
}

/// The command that creates key `i` of a collection kind.
fn create(i: u64) -> KvCommand {
    let key = key(i);
    let elems: Vec<Bytes> = (0..MIXED_ELEMENTS)
        .map(|e| Bytes::from(format!("member-{e:02}")))
        .collect();
    KvCommand::Data(match mixed_kind(i) {
        6 => DataCmd::HSet {
            key,
            pairs: elems.iter().map(|e| (e.clone(), value(i))).collect(),
            nx: false,
            ok: false,
        },
        7 => DataCmd::Push {
            key,
            left: false,
            values: elems,
            existing: false,
        },
        8 => DataCmd::SAdd {
            key,
            members: elems,
        },
        _ => DataCmd::ZAdd {
            key,
            flags: ZAddFlags::default(),
            pairs: elems
                .into_iter()
                .enumerate()
                .map(|(j, e)| (j as f64, e))
                .collect(),
        },
    })
}

/// The writers' change to key `i` (random `r`): a put, or an in-place
/// change of its collection.
fn change(i: u64, r: u64) -> KvCommand {
    let key = key(i);
    let e = Bytes::from(format!("member-{:02}", r % MIXED_ELEMENTS));
    match mixed_kind(i) {
        6 => KvCommand::Data(DataCmd::HSet {
            key,
            pairs: vec![(e, value(r))],
            nx: false,
            ok: false,
        }),
        7 => KvCommand::Data(DataCmd::LSet {
            key,
            index: (r % MIXED_ELEMENTS) as i64,
            value: value(r),
        }),
        8 => KvCommand::Data(DataCmd::SAdd {
            key,
            members: vec![e],
        }),
        9 => KvCommand::Data(DataCmd::ZIncrBy {
            key,
            delta: 1.0,
            member: e,
        }),
        _ => KvCommand::put(key, value(r)),
    }
}

thread_local! {
    /// How long the last [`Naive::freeze`] on this thread (the group's
    /// shard) held the apply fiber.
    static NAIVE_FREEZE_LAST: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// How a variant freezes its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// The KV store's `imbl` map, cloned in O(1).
    CopyOnWrite,
    /// The same with no limit on the snapshot's write rate.
    CopyOnWriteUnlimited,
    /// [`Naive`]: every chunk made on the apply fiber at freeze time.
    Naive,
    /// Reference: the snapshot's bytes written as filler, no state read.
    WritesOnly,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::CopyOnWrite => "copy-on-write (writes at most 100 MiB/s, the default)",
            Variant::CopyOnWriteUnlimited => "copy-on-write, no write limit",
            Variant::Naive => "naive (full copy on apply fiber)",
            Variant::WritesOnly => "reference: the bytes only (filler)",
        }
    }
}

/// The timeline of one run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    keys: u64,
    /// Load before the first steady window (not reported).
    warm: Duration,
    /// The steady window before each snapshot.
    steady: Duration,
    /// Load after each snapshot is durable, before the next steady window.
    settle: Duration,
    /// Snapshots per run.
    rounds: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    MIXED.store(args.iter().any(|a| a == "--mixed"), Ordering::Relaxed);
    let secs = Duration::from_secs_f64;
    let plan = if quick {
        Plan {
            keys: KEYS_QUICK,
            warm: secs(0.5),
            steady: secs(1.0),
            settle: secs(0.5),
            rounds: 1,
        }
    } else {
        Plan {
            keys: KEYS_FULL,
            warm: secs(2.0),
            steady: secs(3.0),
            settle: secs(1.0),
            rounds: 5,
        }
    };
    let base = std::env::var_os("SAMPAN_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let root = base.join(format!("sampan-snapshot-bench-{}", std::process::id()));
    // `--only copyonwrite` runs one variant (for profiling).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let mut rows = Vec::new();
    for variant in [
        Variant::CopyOnWrite,
        Variant::CopyOnWriteUnlimited,
        Variant::Naive,
        Variant::WritesOnly,
    ] {
        if only
            .as_ref()
            .is_some_and(|o| *o != format!("{variant:?}").to_lowercase())
        {
            continue;
        }
        let dir = root.join(format!("{variant:?}").to_lowercase());
        let rounds = match variant {
            Variant::CopyOnWrite => run_variant(&dir, plan, kv_factory(), LIMIT_DEFAULT),
            Variant::CopyOnWriteUnlimited => run_variant(&dir, plan, kv_factory(), 0),
            Variant::Naive => run_variant(
                &dir,
                plan,
                machines(|_: &GroupConfig| -> Box<dyn StateMachine> {
                    Box::new(Naive(KvMachine::new(KvConfig::default()), Freeze::Copy))
                }),
                LIMIT_DEFAULT,
            ),
            Variant::WritesOnly => run_variant(
                &dir,
                plan,
                machines(|_: &GroupConfig| -> Box<dyn StateMachine> {
                    Box::new(Naive(KvMachine::new(KvConfig::default()), Freeze::Filler))
                }),
                LIMIT_DEFAULT,
            ),
        };
        let _ = std::fs::remove_dir_all(&dir);
        rows.extend(report(variant, &rounds));
    }
    let _ = std::fs::remove_dir_all(&root);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", table(plan, &rows));
}

/// Starts a fresh single-node server in `dir`, loads the keys, runs the
/// load with `plan.rounds` snapshots and shuts the server down.
fn run_variant<F: RaftFactory>(dir: &Path, plan: Plan, factory: F, limit: u64) -> Vec<Round> {
    let server = start(dir, factory, limit);
    let g = server.group(GROUP);
    wait_for_leader(&g);
    load_keys(&g, plan.keys);
    let handle = server.runtime();
    let shard = handle.shard(0).unwrap_or_else(|e| panic!("{e}"));
    let run = shard
        .run_blocking(
            TaskClass::Latency,
            move || async move { drive(g, plan).await },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    server.shutdown().unwrap_or_else(|e| panic!("{e}"));
    run
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("a free port: {e}"))
}

/// A one-node server with group [`GROUP`]: `async` durability, snapshots
/// only when asked.
/// The group's `snapshot_write_bytes_per_sec` unless a variant says.
const LIMIT_DEFAULT: u64 = 100 << 20;

/// `limit`: the snapshot's write rate, bytes per second (0: none).
fn start<F: RaftFactory>(dir: &Path, factory: F, limit: u64) -> RaftServer<F> {
    let (replicate, service) = (free_port(), free_port());
    let cfg = ServerConfig {
        node_id: 1,
        servers: format!("1,127.0.0.1:{replicate},{service}"),
        bind: None,
        cluster_id: 78,
        replicate_port: replicate,
        service_port: service,
        election_timeout_ms: 1_000,
        heartbeat_interval_ms: 100,
        tick_ms: 10,
        shards: 1,
        data_dir: dir.to_path_buf(),
        request_timeout_ms: 10_000,
        log: Default::default(),
        cluster_secret: None,
        credentials: Vec::new(),
        protected_mode: true,
        max_connections: 10_000,
        balance_leaders: false,
        tls: None,
    };
    let group = GroupConfig {
        group_id: GROUP,
        members: "1".into(),
        durability: Durability::Async,
        snapshot_interval_ms: 0,
        snapshot_log_bytes: 0,
        snapshot_write_bytes_per_sec: limit,
        ..GroupConfig::default()
    };
    let rt = sampan_fiber::Runtime::builder().io_memory_bytes(sampan_fiber::IO_MEMORY_MIN_BYTES);
    RaftServer::start_with(cfg, &[group], factory, rt).unwrap_or_else(|e| panic!("{e}"))
}

fn wait_for_leader(g: &GroupRef) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !g.status_blocking().is_ok_and(|s| s.role == Role::Leader) {
        assert!(Instant::now() < deadline, "no leader of group {GROUP}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Key `i`: `key-` and 12 digits, 16 bytes.
fn key(i: u64) -> Bytes {
    Bytes::from(format!("key-{i:012}"))
}

/// A 100-byte value that says which write made it.
fn value(seed: u64) -> Bytes {
    let mut v = vec![b'v'; VALUE_BYTES];
    v[..8].copy_from_slice(&seed.to_le_bytes());
    Bytes::from(v)
}

/// Loads keys `0..keys` with `PutMany` batches of [`LOAD_BATCH`].
fn load_keys(g: &GroupRef, keys: u64) {
    let bar = ProgressBar::new(keys);
    bar.set_style(
        ProgressStyle::with_template("loading {bar:30} {pos}/{len} keys {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for from in (0..keys).step_by(LOAD_BATCH as usize) {
        let range = from..keys.min(from + LOAD_BATCH);
        let n = range.end - range.start;
        let pairs = range
            .clone()
            .filter(|i| mixed_kind(*i) < 6)
            .map(|i| (key(i), value(i)))
            .collect::<Vec<_>>();
        let mut cmds = vec![KvCommand::PutMany {
            pairs,
            ttl: Ttl::Persist,
        }];
        cmds.extend(range.filter(|i| mixed_kind(*i) >= 6).map(create));
        let cmd = if cmds.len() == 1 {
            cmds.remove(0)
        } else {
            KvCommand::Batch(cmds)
        };
        g.propose_blocking(KvRequest::without_session(cmd).to_bytes())
            .unwrap_or_else(|e| panic!("load: {e}"));
        bar.inc(n);
    }
    bar.finish_and_clear();
}

/// One put's completion: when it was answered and how long it took.
#[derive(Debug, Clone, Copy)]
struct Sample {
    done: Instant,
    latency: Duration,
}

/// One snapshot taken under load, with the completions around it.
#[derive(Debug, Clone)]
struct Round {
    /// The steady window's start (it ends at `asked`).
    steady_from: Instant,
    asked: Instant,
    durable: Instant,
    saved: SnapshotSaved,
    /// How long the freeze held the apply fiber (naive only: measured in
    /// [`Naive::freeze`]).
    freeze: Option<Duration>,
    steady: Vec<Sample>,
    during: Vec<Sample>,
}

/// A small deterministic generator (splitmix64) for the writers' keys.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One writer of the closed loop: puts random keys of `0..keys`, one at a
/// time, until `stop`, recording each completion into `samples`.
async fn writer(
    g: GroupRef,
    keys: u64,
    seed: u64,
    samples: Rc<RefCell<Vec<Sample>>>,
    stop: Rc<Cell<bool>>,
) {
    let mut rng = seed;
    while !stop.get() {
        let r = splitmix(&mut rng);
        let cmd = KvRequest::without_session(change(r % keys, r));
        let t = Instant::now();
        g.propose(cmd.to_bytes())
            .await
            .unwrap_or_else(|e| panic!("put: {e}"));
        let done = Instant::now();
        let mut s = samples.borrow_mut();
        if s.len() < SAMPLES_MAX {
            s.push(Sample {
                done,
                latency: done - t,
            });
        }
    }
}

/// Runs the closed loop of [`WRITERS`] puts on the group's shard and asks
/// for `plan.rounds` snapshots while it runs.
async fn drive(g: GroupRef, plan: Plan) -> Vec<Round> {
    let samples = Rc::new(RefCell::new(Vec::with_capacity(SAMPLES_MAX)));
    let stop = Rc::new(Cell::new(false));
    let mut writers = Vec::with_capacity(WRITERS);
    for w in 0..WRITERS {
        let put_loop = writer(
            g.clone(),
            plan.keys,
            w as u64,
            samples.clone(),
            stop.clone(),
        );
        let fiber = sampan_fiber::spawn(TaskClass::Latency, "writer", put_loop)
            .unwrap_or_else(|e| panic!("{e}"));
        writers.push(fiber);
    }
    sampan_fiber::sleep(plan.warm).await;
    let mut marks = Vec::with_capacity(plan.rounds);
    for _ in 0..plan.rounds {
        sampan_fiber::sleep(plan.steady).await;
        let asked = Instant::now();
        let saved = g
            .snapshot_now()
            .await
            .unwrap_or_else(|e| panic!("snapshot: {e}"));
        let durable = Instant::now();
        let freeze = NAIVE_FREEZE_LAST.take();
        eprintln!(
            "snapshot: {saved:?}, freeze {freeze:?}, {:?} as the caller saw it",
            durable - asked
        );
        marks.push((asked - plan.steady, asked, durable, saved, freeze));
        sampan_fiber::sleep(plan.settle).await;
    }
    stop.set(true);
    for w in writers {
        let _ = w.join().await;
    }
    let samples = samples.take();
    let within = |from: Instant, to: Instant| -> Vec<Sample> {
        samples
            .iter()
            .filter(|s| s.done >= from && s.done < to)
            .copied()
            .collect()
    };
    marks
        .into_iter()
        .map(|(steady_from, asked, durable, saved, freeze)| Round {
            steady_from,
            asked,
            durable,
            saved,
            freeze,
            steady: within(steady_from, asked),
            during: within(asked, durable),
        })
        .collect()
}

/// Throughput and latency of the puts completed in one window.
#[derive(Debug, Clone, Copy)]
struct Window {
    ops_per_sec: f64,
    p99: Duration,
    max: Duration,
}

impl Window {
    fn of(samples: &[&Sample], wall: Duration) -> Window {
        let mut lat = Latencies::new();
        for s in samples {
            lat.record(s.latency);
        }
        Window {
            ops_per_sec: samples.len() as f64 / wall.as_secs_f64().max(1e-9),
            p99: lat.quantile(0.99),
            max: lat.quantile(1.0),
        }
    }
}

/// One row of the table: a round, or all rounds of a variant together.
#[derive(Debug, Clone)]
struct Line {
    name: String,
    steady: Window,
    /// Asked -> the snapshot written (freeze + `write_ms`).
    write: Window,
    /// Written -> `snapshot_now` returned (the log purge, the reply).
    purge: Window,
    /// Asked -> returned: all of it.
    during: Window,
    bytes: u64,
    /// The freeze's hold on the apply fiber; `None`: O(1), not measured.
    freeze: Option<Duration>,
    write_ms: u64,
    applied_meanwhile: u64,
    caller: Duration,
}

impl Round {
    /// When the snapshot was written (asked + freeze + `write_ms`, the
    /// write starting right after the freeze), at most `durable`.
    fn written(&self) -> Instant {
        let write = Duration::from_millis(self.saved.write_ms);
        (self.asked + self.freeze.unwrap_or_default() + write).min(self.durable)
    }
}

/// A row per round, then (with more than one) a row for all of them:
/// windows pooled, snapshot figures averaged.
fn report(variant: Variant, rounds: &[Round]) -> Vec<Line> {
    let mut lines: Vec<Line> = rounds
        .iter()
        .enumerate()
        .map(|(i, r)| line(format!("{}, snapshot {}", variant.name(), i + 1), &[r]))
        .collect();
    if rounds.len() > 1 {
        let all: Vec<&Round> = rounds.iter().collect();
        lines.push(line(
            format!("**{}, all {}**", variant.name(), rounds.len()),
            &all,
        ));
    }
    lines
}

/// The row of `rounds` pooled.
fn line(name: String, rounds: &[&Round]) -> Line {
    let n = rounds.len().max(1) as u32;
    let pool = |pick: &dyn Fn(&Round) -> (Instant, Instant)| -> Window {
        let mut samples = Vec::new();
        let mut wall = Duration::ZERO;
        for r in rounds {
            let (from, to) = pick(r);
            wall += to.saturating_duration_since(from);
            samples.extend(
                r.steady
                    .iter()
                    .chain(&r.during)
                    .filter(|s| s.done >= from && s.done < to),
            );
        }
        Window::of(&samples, wall)
    };
    let sum = |f: &dyn Fn(&Round) -> u64| rounds.iter().map(|r| f(r)).sum::<u64>() / u64::from(n);
    Line {
        name,
        steady: pool(&|r| (r.steady_from, r.asked)),
        write: pool(&|r| (r.asked, r.written())),
        purge: pool(&|r| (r.written(), r.durable)),
        during: pool(&|r| (r.asked, r.durable)),
        bytes: sum(&|r| r.saved.bytes),
        freeze: rounds
            .iter()
            .map(|r| r.freeze)
            .sum::<Option<Duration>>()
            .map(|d| d / n),
        write_ms: sum(&|r| r.saved.write_ms),
        applied_meanwhile: sum(&|r| r.saved.applied_meanwhile),
        caller: rounds.iter().map(|r| r.durable - r.asked).sum::<Duration>() / n,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// `ops/s (% of steady)` and `p99 (x steady)` of window `w`.
fn against(w: Window, steady: Window) -> (String, String) {
    let rate = 100.0 * w.ops_per_sec / steady.ops_per_sec.max(1e-9);
    let p99 = w.p99.as_secs_f64() / steady.p99.as_secs_f64().max(1e-12);
    (
        format!("{:.0} ({rate:.0}%)", w.ops_per_sec),
        format!("{} ({p99:.2}x)", ms(w.p99)),
    )
}

/// The Markdown table of `lines` (what `benches/RESULTS.md` holds).
fn table(plan: Plan, lines: &[Line]) -> String {
    let mut out = format!(
        "{} keys{}, {WRITERS} writers, steady = the {:.0} s before each snapshot; \
         ops/s (% of steady), p99 (x steady p99)\n\n",
        plan.keys,
        if MIXED.load(Ordering::Relaxed) {
            " (mixed: 60% strings, 10% each hashes, lists, sets, sorted sets of 10)"
        } else {
            ""
        },
        plan.steady.as_secs_f64()
    );
    out.push_str(
        "| variant | steady ops/s | steady p99 | asked -> written: ops/s | p99 \
         | written -> returned: ops/s | p99 | asked -> returned: ops/s | p99 | max \
         | size | freeze | write_ms | applied meanwhile | asked -> returned |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for l in lines {
        let (write_rate, write_p99) = against(l.write, l.steady);
        let (purge_rate, purge_p99) = against(l.purge, l.steady);
        let (all_rate, all_p99) = against(l.during, l.steady);
        out.push_str(&format!(
            "| {} | {:.0} | {} | {write_rate} | {write_p99} | {purge_rate} | {purge_p99} \
             | {all_rate} | {all_p99} | {} | {:.1} MiB | {} | {} | {} | {} |\n",
            l.name,
            l.steady.ops_per_sec,
            ms(l.steady.p99),
            ms(l.during.max),
            l.bytes as f64 / (1u64 << 20) as f64,
            l.freeze.map_or_else(|| "O(1)".to_string(), ms),
            l.write_ms,
            l.applied_meanwhile,
            ms(l.caller),
        ));
    }
    out
}

/// The naive blocking snapshot: a [`KvMachine`] whose freeze copies the
/// whole state into chunks right there, on the apply fiber.
struct Naive(KvMachine, Freeze);

/// What [`Naive::freeze`] hands the snapshot fiber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freeze {
    /// The state, copied into chunks.
    Copy,
    /// As many bytes of filler, made in O(1) (the reference row).
    Filler,
}

/// The chunks [`Naive::freeze`] made.
struct NaiveFrozen {
    index: u64,
    chunks: VecDeque<Bytes>,
}

impl FrozenState for NaiveFrozen {
    fn index(&self) -> u64 {
        self.index
    }

    fn next_chunk(&mut self, _bytes_max: usize) -> Option<Bytes> {
        self.chunks.pop_front()
    }
}

impl StateMachine for Naive {
    fn apply(&mut self, batch: &[Committed<'_>], results: &mut Vec<Bytes>) {
        self.0.apply(batch, results);
    }

    fn read(&self, query: &Bytes, now_ms: u64) -> Result<Bytes, StateMachineError> {
        self.0.read(query, now_ms)
    }

    fn on_role_change(&mut self, change: &RoleChange) {
        self.0.on_role_change(change);
    }

    fn stamp(&self) -> Option<Stamp> {
        self.0.stamp()
    }

    fn due_commands(&mut self, now_ms: u64, out: &mut Vec<Bytes>) -> Option<u64> {
        self.0.due_commands(now_ms, out)
    }

    fn freeze(&mut self) -> Box<dyn FrozenState> {
        if self.1 == Freeze::Filler {
            // About as many bytes as the state's snapshot (a record is
            // 141 bytes here), none read from it: what writing a snapshot
            // costs the shard with no freeze at all.
            let filler = Bytes::from(vec![0u8; NAIVE_CHUNK_BYTES]);
            let bytes = self.0.store().len() * (1 + 4 + 16 + 4 + VALUE_BYTES + 16);
            return Box::new(NaiveFrozen {
                index: self.0.store().index_applied(),
                chunks: (0..bytes.div_ceil(NAIVE_CHUNK_BYTES))
                    .map(|_| filler.clone())
                    .collect(),
            });
        }
        let started = Instant::now();
        let mut view = self.0.freeze();
        let mut chunks = VecDeque::new();
        while let Some(c) = view.next_chunk(NAIVE_CHUNK_BYTES) {
            chunks.push_back(c);
        }
        NAIVE_FREEZE_LAST.set(Some(started.elapsed()));
        Box::new(NaiveFrozen {
            index: view.index(),
            chunks,
        })
    }

    fn restore_begin(&mut self, info: SnapshotInfo) -> Result<(), StateMachineError> {
        self.0.restore_begin(info)
    }

    fn restore_chunk(&mut self, chunk: Bytes) -> Result<(), StateMachineError> {
        self.0.restore_chunk(chunk)
    }

    fn restore_finish(&mut self) -> Result<(), StateMachineError> {
        self.0.restore_finish()
    }

    fn restore_abort(&mut self) {
        self.0.restore_abort();
    }
}
