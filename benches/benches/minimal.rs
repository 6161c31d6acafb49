//! The engine alone, in OpenRaft's `benchmarks/minimal` shape: three
//! replicas of one group in one process, an in-memory log, a state machine
//! that holds nothing, and a network that is a function call (a message is
//! handed to the receiving replica's inbox as a value, never encoded).
//! Clients propose empty commands in a closed loop; what is measured is the
//! cost of the engine itself (its Raft loop, persist and apply fibers, log
//! code and group commit), with no disk and no sockets.
//!
//! `cargo bench -p sampan-benches --bench minimal [-- --clients 1,64,256
//! --secs 5 --members 3]`. Everything runs on one shard (one thread): the
//! three replicas and the clients. The log ([`MemLog`]) keeps the records
//! the engine hands it (encoded, with their CRCs, as they would go to
//! disk) in memory and calls them durable at once, as OpenRaft's in-memory
//! log store does; the status file and snapshot store are the storage
//! crate's own on its in-memory file system.
//! `benches/scripts/vs_openraft.sh` runs OpenRaft's benchmark beside it.

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use sampan::group::{GroupHandle, GroupParts, Outbox, SnapshotPolicy, start};
use sampan::raft::{Config, GroupId, Message, NodeId, Role};
use sampan::state_machine::{Small, SmallState, StateMachineError};
use sampan_benches::{Latencies, Row, closed_loop, table};
use sampan_fiber::{FiberGroup, IO_MEMORY_MIN_BYTES, Runtime, TaskClass};
use sampan_storage::sim::MemFs;
use sampan_storage::{RaftLog, RecordRun, SnapshotStore, StatusFile};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

type StorageResult<T> = sampan_storage::Result<T>;

/// The benchmark's allocator is the node binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Client counts run by default (OpenRaft's table has 1 to 4,096).
const CLIENTS_DEFAULT: &[usize] = &[1, 64, 256, 1024, 4096];
/// One Raft tick.
const TICK: Duration = Duration::from_millis(10);
/// Warm-up before each measured window.
const WARM: Duration = Duration::from_secs(1);

/// A state machine that holds nothing and answers every command with an
/// empty reply (OpenRaft's minimal store does the same).
#[derive(Debug, Default)]
struct Nothing;

impl SmallState for Nothing {
    fn apply(&mut self, _command: &Bytes) -> Bytes {
        Bytes::new()
    }

    fn read(&self, _query: &Bytes) -> Result<Bytes, StateMachineError> {
        Ok(Bytes::new())
    }

    fn save(&self) -> Bytes {
        Bytes::new()
    }

    fn load(_bytes: Bytes) -> Result<Self, StateMachineError> {
        Ok(Nothing)
    }
}

/// The network: each message goes to the receiving replica's inbox by a
/// function call.
#[derive(Default)]
struct Calls {
    replicas: RefCell<HashMap<u64, GroupHandle>>,
}

struct CallOutbox(Rc<Calls>);

impl Outbox for CallOutbox {
    fn send(&self, msg: Message, records: Option<RecordRun>) {
        let to = msg.to.0;
        let replica = self.0.replicas.borrow().get(&to).cloned();
        if let Some(r) = replica {
            r.deliver(msg, records);
        }
    }
}

struct Args {
    clients: Vec<usize>,
    secs: f64,
    members: u64,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1).cloned())
    };
    let clients = value("--clients").map_or_else(
        || CLIENTS_DEFAULT.to_vec(),
        |v| {
            v.split(',')
                .map(|c| {
                    c.trim()
                        .parse()
                        .unwrap_or_else(|e| panic!("--clients {v}: {e}"))
                })
                .collect()
        },
    );
    let secs = value("--secs").map_or(5.0, |v| {
        v.parse().unwrap_or_else(|e| panic!("--secs {v}: {e}"))
    });
    let members = value("--members").map_or(3, |v| {
        v.parse().unwrap_or_else(|e| panic!("--members {v}: {e}"))
    });
    assert!(
        (1..=5).contains(&members),
        "--members {members}: 1 to 5 replicas"
    );
    Args {
        clients,
        secs,
        members,
    }
}

fn main() {
    let args = args();
    let rt = Runtime::builder()
        .shards(1)
        .io_memory_bytes(IO_MEMORY_MIN_BYTES)
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let bar = ProgressBar::new(args.clients.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (members, secs) = (args.members, args.secs);
    let mut rows = Vec::new();
    for &clients in &args.clients {
        bar.set_message(format!("{clients} client(s)"));
        let (ops, wall, lat) = rt
            .shard(0)
            .unwrap_or_else(|e| panic!("{e}"))
            .run_blocking(TaskClass::Latency, move || async move {
                run(members, clients, secs).await
            })
            .unwrap_or_else(|e| panic!("{e}"));
        rows.push(Row::new(
            &format!("{members} replicas, {clients} client(s)"),
            ops,
            wall,
            Some(&lat),
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", table(&rows));
}

/// Starts a fresh cluster, runs `clients` proposers for `secs` after the
/// warm-up, stops the cluster.
async fn run(members: u64, clients: usize, secs: f64) -> (u64, Duration, Latencies) {
    let fibers = FiberGroup::new("minimal").unwrap_or_else(|e| panic!("{e}"));
    let net = Rc::new(Calls::default());
    let fs = MemFs::new();
    let voters: BTreeSet<NodeId> = (1..=members).map(NodeId).collect();
    for node in 1..=members {
        let h = replica(&fs, node, &voters, &net, &fibers).await;
        net.replicas.borrow_mut().insert(node, h);
    }
    let leader = leader(&net).await;
    let secs = Duration::from_secs_f64(secs);
    let run = closed_loop(clients, WARM, secs, move |_, _| {
        let leader = leader.clone();
        async move {
            leader
                .propose(Bytes::new())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await;
    fibers.cancel();
    fibers.join().await;
    run
}

/// One replica on the in-memory file system.
async fn replica(
    fs: &MemFs,
    node: u64,
    voters: &BTreeSet<NodeId>,
    net: &Rc<Calls>,
    fibers: &FiberGroup,
) -> GroupHandle {
    let dir = PathBuf::from(format!("/node-{node}"));
    let log = MemLog::default();
    let status = StatusFile::open(fs, &dir.join("status"), 1)
        .await
        .unwrap_or_else(|e| panic!("status: {e}"));
    let snapshots = SnapshotStore::open(fs.clone(), &dir.join("snapshot"), 1, 2)
        .await
        .unwrap_or_else(|e| panic!("snapshots: {e}"));
    // A node's defaults: 10 ms ticks, a 1 s election timeout, heartbeats
    // every 100 ms (OpenRaft's bench: elections after 200-2,000 ms).
    let mut cfg = Config::new(NodeId(node), GroupId(1));
    cfg.seed = node;
    cfg.tick_ms = TICK.as_millis() as u64;
    cfg.ticks_election = 100;
    cfg.ticks_heartbeat = 10;
    let parts = GroupParts {
        cfg,
        log,
        status,
        sm: Box::new(Small::new(Nothing)),
        snapshots,
        // Snapshots keep the in-memory log short, as OpenRaft's purge does.
        policy: SnapshotPolicy {
            log_bytes: 16 << 20,
            ..SnapshotPolicy::default()
        },
        outbox: Rc::new(CallOutbox(net.clone())),
        bootstrap: Some((voters.clone(), BTreeSet::new())),
        tick: Some(TICK),
        woken: None,
    };
    start(parts, fibers)
        .await
        .unwrap_or_else(|e| panic!("replica {node}: {e}"))
}

/// Waits (bounded) for a leader and returns its handle.
async fn leader(net: &Rc<Calls>) -> GroupHandle {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let replicas: Vec<GroupHandle> = net.replicas.borrow().values().cloned().collect();
        for h in replicas {
            if h.status().await.is_ok_and(|s| s.role == Role::Leader) {
                return h;
            }
        }
        assert!(Instant::now() < deadline, "no leader within 30 s");
        sampan_fiber::sleep(Duration::from_millis(10)).await;
    }
}

/// A Raft log in memory: the runs of records appended, as they came, and
/// each entry's term. Durable once appended.
#[derive(Clone, Default)]
struct MemLog(Rc<RefCell<Mem>>);

#[derive(Default)]
struct Mem {
    /// Index of `terms[0]` (from 1).
    first: u64,
    /// Term of the entry before `first`.
    prev_term: u64,
    runs: VecDeque<RecordRun>,
    terms: VecDeque<u64>,
    bytes: u64,
    purge_mark: Option<u64>,
}

impl Mem {
    fn first(&self) -> u64 {
        self.first.max(1)
    }

    fn last(&self) -> u64 {
        self.first() + self.terms.len() as u64 - 1
    }

    fn term(&self, index: u64) -> Option<u64> {
        if index + 1 == self.first() {
            return Some(self.prev_term);
        }
        let i = index.checked_sub(self.first())?;
        self.terms.get(usize::try_from(i).ok()?).copied()
    }

    fn recount(&mut self) {
        self.bytes = self.runs.iter().map(|r| r.bytes().len() as u64).sum();
    }

    /// Keeps the entries from `first_kept` on (the log restarts there when
    /// it lies past the end).
    fn purge(&mut self, first_kept: u64) {
        if first_kept <= self.first() {
            return;
        }
        if first_kept > self.last() {
            let prev = self.term(first_kept - 1).unwrap_or(self.prev_term);
            self.reset(first_kept - 1, prev);
            return;
        }
        self.prev_term = self.term(first_kept - 1).unwrap_or(self.prev_term);
        while self
            .runs
            .front()
            .is_some_and(|r| r.last_index() < first_kept)
        {
            self.runs.pop_front();
        }
        if let Some(r) = self.runs.front_mut() {
            r.skip_before(first_kept);
        }
        let drop = (first_kept - self.first()) as usize;
        self.terms.drain(..drop);
        self.first = first_kept;
        self.recount();
    }

    fn reset(&mut self, last_index: u64, last_term: u64) {
        self.runs.clear();
        self.terms.clear();
        self.first = last_index + 1;
        self.prev_term = last_term;
        self.bytes = 0;
    }
}

impl RaftLog for MemLog {
    fn first_index(&self) -> u64 {
        self.0.borrow().first()
    }

    fn last_index(&self) -> u64 {
        self.0.borrow().last()
    }

    fn last_term(&self) -> u64 {
        let m = self.0.borrow();
        m.terms.back().copied().unwrap_or(m.prev_term)
    }

    fn durable_index(&self) -> u64 {
        self.last_index()
    }

    fn bytes(&self) -> u64 {
        self.0.borrow().bytes
    }

    fn term(&self, index: u64) -> StorageResult<Option<u64>> {
        Ok(self.0.borrow().term(index))
    }

    fn read(&self, from: u64, bytes_max: usize) -> StorageResult<RecordRun> {
        let m = self.0.borrow();
        if from < m.first() || from > m.last() {
            return Ok(RecordRun::empty(from));
        }
        let at = m.runs.partition_point(|r| r.first_index() <= from) - 1;
        let mut run = m.runs[at].clone();
        run.skip_before(from);
        let (mut n, mut size) = (0u64, 0usize);
        for rec in run.iter() {
            if n > 0 && size + rec.bytes.len() > bytes_max {
                break;
            }
            size += rec.bytes.len();
            n += 1;
        }
        run.truncate_after(from + n - 1);
        Ok(run)
    }

    fn find_match(&self, term: u64, index: u64) -> StorageResult<Option<(u64, u64)>> {
        let m = self.0.borrow();
        let (mut lo, mut hi) = (m.first() - 1, index.min(m.last()));
        if hi < lo || m.term(lo).is_none_or(|t| t > term) {
            return Ok(None);
        }
        // Terms never go down: the last index whose term is <= `term`.
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if m.term(mid).is_some_and(|t| t <= term) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(m.term(lo).map(|t| (lo, t)))
    }

    async fn append(&self, run: &RecordRun) -> StorageResult<u64> {
        let mut m = self.0.borrow_mut();
        assert_eq!(run.first_index(), m.last() + 1, "appends are contiguous");
        if m.first == 0 {
            m.first = run.first_index();
        }
        m.terms.extend(run.iter().map(|r| r.header.term));
        m.bytes += run.bytes().len() as u64;
        m.runs.push_back(run.clone());
        Ok(m.last())
    }

    async fn sync(&self, _index: u64) -> StorageResult<u64> {
        Ok(self.last_index())
    }

    async fn truncate_tail(&self, last_kept: u64) -> StorageResult<()> {
        let mut m = self.0.borrow_mut();
        if last_kept >= m.last() {
            return Ok(());
        }
        while m.runs.back().is_some_and(|r| r.first_index() > last_kept) {
            m.runs.pop_back();
        }
        if let Some(r) = m.runs.back_mut() {
            r.truncate_after(last_kept);
        }
        let keep = (last_kept + 1).saturating_sub(m.first()) as usize;
        m.terms.truncate(keep);
        m.recount();
        Ok(())
    }

    async fn purge_head(&self, first_kept: u64) -> StorageResult<()> {
        self.0.borrow_mut().purge(first_kept);
        Ok(())
    }

    fn mark_purge(&self, first_kept: u64, _not_before: Instant) {
        self.0.borrow_mut().purge_mark = Some(first_kept);
    }

    async fn maintain(&self, _now: Instant) -> StorageResult<()> {
        let mark = self.0.borrow_mut().purge_mark.take();
        if let Some(first_kept) = mark {
            self.0.borrow_mut().purge(first_kept);
        }
        Ok(())
    }

    async fn install_snapshot(&self, last_index: u64, last_term: u64) -> StorageResult<()> {
        self.0.borrow_mut().reset(last_index, last_term);
        Ok(())
    }

    async fn close(self) -> StorageResult<()> {
        Ok(())
    }
}
