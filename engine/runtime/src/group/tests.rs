//! The group runtime on real files: replicas of one group on one shard,
//! wired by an in-process network that goes through the wire codecs, so
//! every message is encoded and decoded as it would be between nodes.

use super::*;
use crate::raft::{Config, GroupId, NodeId};
use crate::state_machine::{Small, SmallState, StateMachineError};
use crate::wire::{decode_message, encode_message};
use sampan_fiber::{FiberGroup, IO_MEMORY_MIN_BYTES, Runtime, TaskClass, sleep};
use sampan_storage::{DiskFs, LogConfig, LogWriter, RaftLog, SegmentLog, StatusFile};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// Routes messages between the replicas of one process; a node in `down`
/// neither sends nor receives.
#[derive(Default)]
struct Net {
    handles: RefCell<HashMap<u64, GroupHandle>>,
    down: RefCell<HashSet<u64>>,
    delivered: std::cell::Cell<u64>,
    /// AppendEntries with entries sent with the log's own records, and
    /// sent without them (encoded again).
    appends_as_records: std::cell::Cell<u64>,
    appends_encoded: std::cell::Cell<u64>,
}

struct NetOutbox(Rc<Net>);

impl Outbox for NetOutbox {
    fn send(&self, msg: Message, records: Option<RecordRun>) {
        let net = &self.0;
        if net.down.borrow().contains(&msg.from.0) || net.down.borrow().contains(&msg.to.0) {
            return;
        }
        if let crate::raft::Body::Append(a) = &msg.body
            && !a.entries.is_empty()
        {
            let count = match records {
                Some(_) => &net.appends_as_records,
                None => &net.appends_encoded,
            };
            count.set(count.get() + 1);
        }
        let pieces = encode_message(&msg, records.as_ref()).expect("encodes");
        let body: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        let decoded = decode_message(Bytes::from(body), 1 << 20).expect("decodes");
        assert_eq!(decoded.message, msg, "the wire keeps every field");
        if let Some(h) = net.handles.borrow().get(&msg.to.0) {
            h.deliver(decoded.message, decoded.records);
            net.delivered.set(net.delivered.get() + 1);
        }
    }
}

/// Small segments, so tests roll them.
fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        grow_step_bytes: 256 << 10,
        ..LogConfig::default()
    }
}

/// Runs `body` on a shard with a fresh one-voter group 1 in `name`'s
/// fibers, once it leads: the handle, the network, the fibers and the
/// replica's directory.
fn with_a_lone_voter<F, Fut>(name: &'static str, body: F)
where
    F: FnOnce(GroupHandle, Rc<Net>, FiberGroup, PathBuf) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let rt = runtime();
    let (_root, dirs) = dirs(1);
    let d = dirs[0].clone();
    rt.shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || async move {
            let net = Rc::new(Net::default());
            let fibers = FiberGroup::new(name).expect("fibers");
            let h = replica(&d, 1, &[1], &net, &fibers).await;
            leader_among(&net, &[1]).await;
            body(h, net, fibers, d).await;
        })
        .expect("test body");
}

async fn replica(
    dir: &Path,
    node: u64,
    voters: &[u64],
    net: &Rc<Net>,
    fibers: &FiberGroup,
) -> GroupHandle {
    try_replica(dir, node, voters, net, fibers)
        .await
        .expect("group starts")
}

async fn try_replica(
    dir: &Path,
    node: u64,
    voters: &[u64],
    net: &Rc<Net>,
    fibers: &FiberGroup,
) -> Result<GroupHandle, GroupError> {
    let vfs = DiskFs;
    let log = SegmentLog::open(vfs, &dir.join("log"), 1, log_config(), LogWriter::new())
        .await
        .expect("log opens");
    let status = StatusFile::open(&vfs, &dir.join("status"), 1)
        .await
        .expect("status opens");
    let mut cfg = Config::new(NodeId(node), GroupId(1));
    cfg.seed = node;
    cfg.tick_ms = 5;
    let voters: BTreeSet<NodeId> = voters.iter().copied().map(NodeId).collect();
    let parts = GroupParts {
        cfg,
        log,
        status,
        sm: Box::new(Small::new(Registers::default())),
        snapshots: sampan_storage::SnapshotStore::open(vfs, &dir.join("snapshot"), 1, 2)
            .await
            .expect("snapshot store opens"),
        policy: SnapshotPolicy::default(),
        outbox: Rc::new(NetOutbox(net.clone())),
        bootstrap: Some((voters, BTreeSet::new())),
        tick: Some(Duration::from_millis(5)),
        woken: None,
    };
    let h = start(parts, fibers).await?;
    net.handles.borrow_mut().insert(node, h.clone());
    Ok(h)
}

/// The state machine of these tests: registers by key. A command is
/// `key=value` and answers the old value (empty if none) after a `was:`;
/// a query is a key and answers its value, or nothing after a `-`.
#[derive(Debug, Default)]
struct Registers(BTreeMap<String, String>);

impl SmallState for Registers {
    fn apply(&mut self, command: &Bytes) -> Bytes {
        let text = String::from_utf8_lossy(command);
        let (k, v) = text.split_once('=').unwrap_or((&text, ""));
        let old = self.0.insert(k.to_string(), v.to_string());
        Bytes::from(format!("was:{}", old.unwrap_or_default()))
    }

    fn read(&self, query: &Bytes) -> Result<Bytes, StateMachineError> {
        let key = String::from_utf8_lossy(query);
        Ok(match self.0.get(key.as_ref()) {
            Some(v) => Bytes::from(format!("+{v}")),
            None => Bytes::from_static(b"-"),
        })
    }

    fn save(&self) -> Bytes {
        let lines: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        Bytes::from(lines.concat())
    }

    fn load(bytes: Bytes) -> Result<Self, StateMachineError> {
        let text =
            String::from_utf8(bytes.to_vec()).map_err(|e| StateMachineError::BadSnapshot {
                index: 0,
                reason: e.to_string(),
            })?;
        let pairs = text.lines().filter_map(|l| l.split_once('='));
        Ok(Registers(
            pairs.map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ))
    }
}

fn put(key: &str, value: &str) -> Bytes {
    Bytes::from(format!("{key}={value}"))
}

async fn get(h: &GroupHandle, key: &str) -> Result<Option<Bytes>, GroupError> {
    let answer = h.read(Bytes::copy_from_slice(key.as_bytes())).await?;
    Ok(answer.strip_prefix(b"+").map(Bytes::copy_from_slice))
}

/// Waits (bounded) until one of `nodes` leads; returns it.
async fn leader_among(net: &Rc<Net>, nodes: &[u64]) -> u64 {
    for _ in 0..2_000 {
        for n in nodes {
            let h = net.handles.borrow().get(n).cloned();
            if let Some(h) = h
                && let Ok(s) = h.status().await
                && s.role == crate::raft::Role::Leader
            {
                return *n;
            }
        }
        sleep(Duration::from_millis(5)).await;
    }
    panic!("no leader among {nodes:?} within 10 s");
}

fn runtime() -> Runtime {
    Runtime::builder()
        .shards(1)
        .io_memory_bytes(IO_MEMORY_MIN_BYTES)
        .build()
        .expect("runtime")
}

fn dirs(n: u64) -> (tempfile::TempDir, Vec<PathBuf>) {
    let root = tempfile::tempdir().expect("tempdir");
    let dirs = (1..=n)
        .map(|i| root.path().join(format!("node-{i}")))
        .collect();
    (root, dirs)
}

#[test]
fn a_single_voter_commits_and_recovers_its_log_after_restart() {
    with_a_lone_voter("g1-first", |h, net, fibers, d| async move {
        for i in 0..200 {
            let r = h
                .propose(put(&format!("k{i}"), &format!("v{i}")))
                .await
                .expect("committed");
            assert_eq!(r, Bytes::from_static(b"was:"), "a new key");
        }
        assert_eq!(
            get(&h, "k42").await.expect("read"),
            Some(Bytes::from("v42"))
        );
        fibers.cancel();
        fibers.join().await;
        // A new process: the log and status file bring the state back.
        let fibers = FiberGroup::new("g1-second").expect("fibers");
        let h = replica(&d, 1, &[1], &net, &fibers).await;
        leader_among(&net, &[1]).await;
        assert_eq!(
            get(&h, "k199").await.expect("read"),
            Some(Bytes::from("v199"))
        );
        let s = h.status().await.expect("status");
        assert!(
            s.index_applied >= 201,
            "bootstrap + 200 puts replayed: {s:?}"
        );
        fibers.cancel();
        fibers.join().await;
    });
}

/// `propose_then` answers every proposal exactly once with what `propose`
/// would: the result once applied, and `Stopped` for the ones its group
/// stopped with (queued, pending, or sent after it stopped).
#[test]
fn a_proposal_with_a_callback_hears_its_outcome_exactly_once() {
    with_a_lone_voter("g1-callbacks", |h, _net, fibers, _d| async move {
        let (tx, rx) = sampan_fiber::channel(1000);
        for i in 0..100 {
            let tx = tx.clone();
            h.propose_then(put(&format!("k{i}"), "v"), move |r| {
                tx.try_send((i, r)).expect("room");
            });
        }
        for _ in 0..100 {
            let (i, r) = rx.recv().await.expect("an answer");
            assert_eq!(r, Ok(Bytes::from_static(b"was:")), "proposal {i}");
        }
        assert_eq!(get(&h, "k99").await.expect("read"), Some(Bytes::from("v")));
        // Stop the group with proposals queued behind it.
        for i in 100..300 {
            let tx = tx.clone();
            h.propose_then(put(&format!("k{i}"), "v"), move |r| {
                tx.try_send((i, r)).expect("room");
            });
        }
        fibers.cancel();
        fibers.join().await;
        let tx2 = tx.clone();
        h.propose_then(put("late", "v"), move |r| {
            tx2.try_send((300, r)).expect("room");
        });
        drop(tx);
        let mut heard = BTreeMap::new();
        while let Some((i, r)) = rx.recv().await {
            assert!(
                heard.insert(i, r.clone()).is_none(),
                "proposal {i} answered twice"
            );
            match r {
                Ok(_) | Err(GroupError::Stopped { .. } | GroupError::Uncertain { .. }) => {}
                other => panic!("proposal {i}: {other:?}"),
            }
        }
        assert_eq!(heard.len(), 201, "every proposal answered");
        assert!(
            matches!(heard[&300], Err(GroupError::Stopped { .. })),
            "a proposal to a stopped group: {:?}",
            heard[&300]
        );
    });
}

#[test]
fn three_replicas_elect_replicate_and_survive_the_leaders_crash() {
    let rt = runtime();
    let (_root, dirs) = dirs(3);
    rt.shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || async move {
            let net = Rc::new(Net::default());
            let mut groups = HashMap::new();
            for (i, d) in dirs.iter().enumerate() {
                let node = i as u64 + 1;
                let fibers = FiberGroup::new(format!("g1-n{node}")).expect("fibers");
                replica(d, node, &[1, 2, 3], &net, &fibers).await;
                groups.insert(node, fibers);
            }
            let leader = leader_among(&net, &[1, 2, 3]).await;
            let h = net.handles.borrow()[&leader].clone();
            for i in 0..100 {
                h.propose(put(&format!("k{i}"), "before"))
                    .await
                    .expect("committed");
            }
            // Followers refuse proposals and name the leader.
            let follower = [1, 2, 3]
                .into_iter()
                .find(|n| *n != leader)
                .expect("a follower");
            let fh = net.handles.borrow()[&follower].clone();
            match fh.propose(put("x", "y")).await {
                Err(GroupError::NotLeader { leader: hint, .. }) => assert_eq!(hint, Some(leader)),
                other => panic!("a follower accepted a proposal: {other:?}"),
            }
            // Crash the leader: its fibers stop, its messages stop.
            net.down.borrow_mut().insert(leader);
            groups[&leader].cancel();
            groups[&leader].join().await;
            net.handles.borrow_mut().remove(&leader);
            let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != leader).collect();
            let new_leader = leader_among(&net, &rest).await;
            let h = net.handles.borrow()[&new_leader].clone();
            for i in 0..100 {
                assert_eq!(
                    get(&h, &format!("k{i}")).await.expect("read"),
                    Some(Bytes::from("before")),
                    "acknowledged write k{i} lost"
                );
            }
            h.propose(put("after", "crash"))
                .await
                .expect("the survivors still commit");
            // The old leader comes back from its files and catches up.
            net.down.borrow_mut().remove(&leader);
            let fibers = FiberGroup::new("g1-back").expect("fibers");
            let back = replica(
                &dirs[leader as usize - 1],
                leader,
                &[1, 2, 3],
                &net,
                &fibers,
            )
            .await;
            let mut caught_up = false;
            for _ in 0..2_000 {
                if back.status().await.expect("status").index_applied
                    >= h.status().await.expect("status").index_commit
                {
                    caught_up = true;
                    break;
                }
                sleep(Duration::from_millis(5)).await;
            }
            assert!(caught_up, "the restarted node caught up");
            assert!(net.delivered.get() > 0);
            let (as_records, encoded) = (net.appends_as_records.get(), net.appends_encoded.get());
            eprintln!("appends sent as the log's records: {as_records}, encoded again: {encoded}");
            assert!(as_records > 0, "the leader sends its log's own bytes");
            fibers.cancel();
            for g in groups.values() {
                g.cancel();
            }
        })
        .expect("test body");
}

#[test]
fn a_replica_whose_log_ends_before_its_commit_index_does_not_start() {
    with_a_lone_voter("g1-first", |h, net, fibers, d| async move {
        // Writes until the status file holds a commit index past the
        // bootstrap entry (it saves it at most once a second), bounded.
        let mut saved = 0;
        for i in 0..100 {
            h.propose(put(&format!("k{i}"), "v"))
                .await
                .expect("committed");
            saved = StatusFile::open(&DiskFs, &d.join("status"), 1)
                .await
                .expect("status reads")
                .state()
                .commit_index;
            if saved >= 3 {
                break;
            }
            sleep(Duration::from_millis(100)).await;
        }
        assert!(saved >= 3, "the commit index was saved within 10 s");
        fibers.cancel();
        fibers.join().await;
        // The log loses its tail (a bad disk, a wrong restore).
        let log_dir = d.join("log");
        let log = SegmentLog::open(DiskFs, &log_dir, 1, log_config(), LogWriter::new())
            .await
            .expect("log opens");
        log.truncate_tail(1).await.expect("truncated");
        log.close().await.expect("closed");
        let fibers = FiberGroup::new("g1-second").expect("fibers");
        let Err(err) = try_replica(&d, 1, &[1], &net, &fibers).await else {
            panic!("a replica missing committed entries started");
        };
        let text = err.to_string();
        assert!(
            matches!(
                err,
                GroupError::Storage {
                    group: 1,
                    fault: StorageFault::Corrupt,
                    ..
                }
            ),
            "missing committed entries are damaged data, not an i/o error: {text}"
        );
        assert!(
            text.contains("group 1") && text.contains(&log_dir.display().to_string()),
            "names the group and the log directory: {text}"
        );
        assert!(text.contains("committed entries are missing"), "{text}");
    });
}

/// A replica whose group failed (its storage broke) answers reads with the
/// failure; it used to leave them waiting forever, as its core is no longer
/// driven.
#[test]
fn a_failed_replica_answers_reads_with_its_failure() {
    with_a_lone_voter("g1-failed", |h, _net, fibers, _d| async move {
        h.propose(put("k", "v")).await.expect("committed");
        let broken = GroupError::Storage {
            group: 1,
            fault: StorageFault::Io,
            reason: "disk gone (injected)".into(),
        };
        assert!(
            h.inbox.send(Event::Failed(broken.clone())).await.is_ok(),
            "inbox open"
        );
        // Once the loop has taken the failure in (a read asked before may
        // still be served from the lease: the state it reads is sound).
        let noticed = sampan_fiber::timeout(Duration::from_secs(5), async {
            while h.failure().is_none() {
                sampan_fiber::yield_now().await;
            }
        })
        .await;
        assert!(noticed.is_ok(), "the loop takes the failure in");
        let read = sampan_fiber::timeout(Duration::from_secs(5), get(&h, "k")).await;
        assert_eq!(read.expect("answered, not left waiting"), Err(broken));
        // A write after the failure never reaches the log: the refusal is
        // definite (sampan-check found thousands of these reported as
        // "outcome unknown" during a full disk, which made histories
        // undecidable).
        let err = h.propose(put("k", "w")).await.expect_err("refused");
        assert!(err.is_definite(), "{err}");
        assert!(
            err.to_string().contains("disk gone"),
            "names the failure: {err}"
        );
        fibers.cancel();
        fibers.join().await;
    });
}

/// The read gate serves from the lease only while real time is inside it:
/// a shard that stalls past the lease (here, a blocking sleep on the shard
/// thread, during which no tick and no message runs) finds it closed, and
/// the read takes the full path, which answers once the loop runs again.
#[test]
fn the_read_gate_closes_when_a_stalled_shard_outlives_the_lease() {
    with_a_lone_voter("g1-gate", |h, _net, fibers, _d| async move {
        h.propose(put("k", "v")).await.expect("committed");
        let query = Bytes::from_static(b"k");
        // A loop turn after the commit publishes the lease.
        let open = sampan_fiber::timeout(Duration::from_secs(5), async {
            while h.read_now(&query).is_none() {
                sampan_fiber::yield_now().await;
            }
        })
        .await;
        assert!(open.is_ok(), "a lone voter's leader serves from its lease");
        let mut cfg = Config::new(NodeId(1), GroupId(1));
        cfg.tick_ms = 5;
        std::thread::sleep(Duration::from_millis(cfg.lease_ms() + 50));
        assert!(
            h.read_now(&query).is_none(),
            "the gate served a read past its lease's end"
        );
        assert_eq!(
            get(&h, "k").await.expect("read"),
            Some(Bytes::from_static(b"v"))
        );
        fibers.cancel();
        fibers.join().await;
    });
}
