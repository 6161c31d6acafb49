//! Snapshots on a real 3-node loopback cluster: taken under continuous
//! writes without stopping applies, installed on a node that fell behind
//! the purged log (also with its connection cut mid-transfer), restored at
//! restart, and refused when corrupt.

mod common;

use bytes::Bytes;
use common::{configs, dump_local, get, group, leader, leader_last, put_many, wait_for};
use sampan::config::{GroupConfig, ServerConfig};
use sampan::server::{RaftFactory, RaftServer};
use sampan_kv::kv_factory;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

type Server = RaftServer<sampan_kv::KvFactory>;

fn pairs(prefix: &str, from: u64, n: u64, value_len: usize) -> Vec<(Bytes, Bytes)> {
    (from..from + n)
        .map(|i| {
            let k = Bytes::from(format!("{prefix}{i:08}"));
            let v = Bytes::from(vec![b'a' + (i % 26) as u8; value_len]);
            (k, v)
        })
        .collect()
}

/// Loads `n` keys of `value_len` bytes in batches of 1,000.
fn load(g: &sampan::server::GroupRef, prefix: &str, n: u64, value_len: usize) {
    for from in (0..n).step_by(1_000) {
        put_many(g, pairs(prefix, from, 1_000.min(n - from), value_len));
    }
}

fn start_all(cfgs: &[ServerConfig], groups: &[GroupConfig]) -> Vec<Option<Server>> {
    cfgs.iter()
        .map(|c| {
            let rt =
                sampan_fiber::Runtime::builder().io_memory_bytes(sampan_fiber::IO_MEMORY_MIN_BYTES);
            Some(Server::start_with(c.clone(), groups, kv_factory(), rt).expect("starts"))
        })
        .collect()
}

/// Stops a follower of group 1; returns (leader, follower).
fn stop_a_follower<F: RaftFactory>(servers: &mut [Option<RaftServer<F>>]) -> (usize, usize) {
    let l = leader(servers, 1);
    let follower = (0..servers.len()).find(|i| *i != l).expect("a follower");
    servers[follower]
        .take()
        .expect("follower")
        .shutdown()
        .expect("shutdown");
    (l, follower)
}

/// Waits until every running node has applied what the leader has.
fn wait_converged(servers: &[Option<Server>], g: u64) {
    let target = leader_last(servers, g);
    for s in servers.iter().flatten() {
        wait_for("every node applies the leader's log", || {
            s.group(g)
                .status_blocking()
                .is_ok_and(|st| st.index_applied >= target)
        });
    }
}

/// Every running node holds the same keys and values.
fn assert_same_state(servers: &[Option<Server>], g: u64) -> usize {
    wait_converged(servers, g);
    let states: Vec<_> = servers
        .iter()
        .flatten()
        .map(|s| dump_local(&s.group(g)))
        .collect();
    for (i, st) in states.iter().enumerate().skip(1) {
        assert!(
            st == &states[0],
            "node {} differs: {} keys against {}",
            i + 1,
            st.len(),
            states[0].len()
        );
    }
    states[0].len()
}

fn snapshot_group(id: u64) -> GroupConfig {
    GroupConfig {
        // Only explicit snapshots in these tests.
        snapshot_interval_ms: 0,
        snapshot_log_bytes: 0,
        ..group(id)
    }
}

#[test]
fn a_snapshot_under_continuous_writes_never_stops_applies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfgs = configs(dir.path(), 1);
    let servers = start_all(&cfgs, &[snapshot_group(1)]);
    let l = leader(&servers, 1);
    let g = servers[l].as_ref().expect("leader").group(1);
    // 200,000 keys of 100 bytes: a snapshot of ~25 MB takes a while to write.
    load(&g, "k", 200_000, 100);
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (g, stop, written) = (g.clone(), stop.clone(), written.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                put_many(&g, pairs("w", i, 10, 100));
                i += 10;
                written.store(i, Ordering::SeqCst);
            }
        })
    };
    wait_for("the writer runs", || written.load(Ordering::SeqCst) > 100);
    let terms = |servers: &[Option<Server>]| -> Vec<(u64, Option<u64>)> {
        servers
            .iter()
            .flatten()
            .map(|s| {
                let st = s.group(1).status_blocking().expect("status");
                (st.term, st.leader)
            })
            .collect()
    };
    let before = terms(&servers);
    // Every node writes one: the leader and both followers.
    let saved = g.snapshot_now_blocking().expect("snapshot");
    for (i, s) in servers.iter().flatten().enumerate() {
        if i != l {
            s.group(1)
                .snapshot_now_blocking()
                .expect("follower snapshot");
        }
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer");
    eprintln!("snapshot: {saved:?}");
    // Writing a large snapshot never held up heartbeats: no election.
    assert_eq!(terms(&servers), before, "(term, leader) on every node");
    assert!(saved.index > 200, "{saved:?}");
    assert!(saved.bytes > 20 << 20, "{saved:?}");
    assert!(
        saved.applied_meanwhile > 0,
        "applies went on while the snapshot was written: {saved:?}"
    );
    let keys = assert_same_state(&servers, 1);
    assert_eq!(keys as u64, 200_000 + written.load(Ordering::SeqCst));
    for s in servers.into_iter().flatten() {
        s.shutdown().expect("shutdown");
    }
}

/// The directories of a node's snapshots of `group`, oldest first.
fn snapshot_dirs(node_dir: &Path, group: u64) -> Vec<PathBuf> {
    let dir = node_dir.join(format!("group-{group}")).join("snapshot");
    let mut all: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    all.sort();
    all
}

#[test]
fn a_node_behind_the_purged_log_gets_the_snapshot_then_the_log() {
    init_log();
    for cut in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfgs = configs(dir.path(), 1);
        // Small chunks: the transfer takes thousands of round trips, so
        // the cut lands in the middle of it.
        let mut servers = start_all(&cfgs, &[chunked()]);
        let (l, follower) = stop_a_follower(&mut servers);
        let g = servers[l].as_ref().expect("leader").group(1);
        load(&g, "k", 50_000, 100);
        let saved = g.snapshot_now_blocking().expect("snapshot");
        let st = g.status_blocking().expect("status");
        assert_eq!(st.snapshot_index, saved.index);
        // The leader's log no longer holds what the stopped node needs.
        load(&g, "after", 1_000, 10);
        servers[follower] = Some(
            Server::start_with(
                cfgs[follower].clone(),
                &[chunked()],
                kv_factory(),
                sampan_fiber::Runtime::builder().io_memory_bytes(sampan_fiber::IO_MEMORY_MIN_BYTES),
            )
            .expect("restarts"),
        );
        if cut {
            // Cut the leader's connection once part of the snapshot landed.
            let node_dir = cfgs[follower].data_dir.clone();
            wait_for("the transfer starts", || {
                snapshot_dirs(&node_dir, 1).iter().any(|d| {
                    d.extension().is_some_and(|e| e == "tmp")
                        && std::fs::metadata(d.join("data")).is_ok_and(|m| m.len() > 0)
                })
            });
            let leader_server = servers[l].as_ref().expect("leader");
            leader_server
                .disconnect(cfgs[follower].node_id)
                .expect("disconnect");
        }
        let back = servers[follower].as_ref().expect("restarted").group(1);
        wait_for("the snapshot is installed", || {
            back.status_blocking()
                .is_ok_and(|s| s.snapshot_index >= saved.index)
        });
        load(&g, "later", 1_000, 10);
        let keys = assert_same_state(&servers, 1);
        assert_eq!(keys, 52_000, "cut: {cut}");
        assert_eq!(
            get(&g, "later00000999").as_deref(),
            Some(&[b'a' + (999 % 26) as u8; 10][..])
        );
        for s in servers.into_iter().flatten() {
            s.shutdown().expect("shutdown");
        }
    }
}

/// Log lines show with `RUST_LOG=info cargo test ... -- --nocapture`.
fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

fn chunked() -> GroupConfig {
    GroupConfig {
        snapshot_chunk_bytes: 4096,
        ..snapshot_group(1)
    }
}

#[test]
fn a_restart_loads_the_snapshot_and_replays_the_log_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfgs = configs(dir.path(), 1);
    let groups = [snapshot_group(1), snapshot_group(2)];
    let servers = start_all(&cfgs, &groups);
    let l = leader(&servers, 1);
    let g = servers[l].as_ref().expect("leader").group(1);
    load(&g, "k", 5_000, 50);
    let saved = snapshot_all(&servers, 1);
    load(&g, "after", 500, 50);
    shutdown_all(servers);
    restart_from_snapshots(&cfgs, &groups, &saved, 5_500);

    // Corrupt node 1's newest snapshot: its group 1 refuses to start and
    // the error names the file; its group 2 still serves.
    let newest = snapshot_dirs(&cfgs[0].data_dir, 1)
        .pop()
        .expect("a snapshot");
    let data = newest.join("data");
    let mut bytes = std::fs::read(&data).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, &bytes).expect("write");
    let rt = sampan_fiber::Runtime::builder().io_memory_bytes(sampan_fiber::IO_MEMORY_MIN_BYTES);
    let node1 = Server::start_with(cfgs[0].clone(), &[groups[1].clone()], kv_factory(), rt)
        .expect("node 1 starts with group 2");
    let err = node1
        .add_group(&groups[0])
        .expect_err("a corrupt snapshot is refused");
    let msg = err.to_string();
    assert!(
        msg.contains(&newest.display().to_string()),
        "the error names the snapshot: {msg}"
    );
    assert_eq!(node1.group_ids().expect("groups"), vec![2]);
    node1.shutdown().expect("shutdown");
}

/// Found by `sampan-check run`: a snapshot taken when the last applied
/// entry was a new leader's empty entry was labelled with that entry's
/// index while the KV store's contents said one less, and no node could
/// install it (a follower catching up stayed stuck; a restart failed).
#[test]
fn a_snapshot_taken_right_after_an_election_installs_at_restart() {
    init_log();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfgs = configs(dir.path(), 1);
    let groups = [snapshot_group(1)];
    let servers = start_all(&cfgs, &groups);
    let l = leader(&servers, 1);
    load(&servers[l].as_ref().expect("leader").group(1), "k", 100, 10);
    wait_converged(&servers, 1);
    shutdown_all(servers);
    // A new election: the last entry is now the new leader's empty one.
    let servers = start_all(&cfgs, &groups);
    let l = leader(&servers, 1);
    wait_converged(&servers, 1);
    let last = leader_last(&servers, 1);
    let saved = snapshot_all(&servers, 1);
    assert!(
        saved.iter().all(|snap| snap.index == last),
        "each snapshot is labelled with the empty entry's index {last}: {saved:?} (leader {l})"
    );
    shutdown_all(servers);
    restart_from_snapshots(&cfgs, &groups, &saved, 100);
}

/// Every running node writes a snapshot of group `g` now.
fn snapshot_all(servers: &[Option<Server>], g: u64) -> Vec<sampan::group::SnapshotSaved> {
    servers
        .iter()
        .flatten()
        .map(|s| s.group(g).snapshot_now_blocking().expect("snapshot"))
        .collect()
}

fn shutdown_all(servers: Vec<Option<Server>>) {
    for s in servers.into_iter().flatten() {
        s.shutdown().expect("shutdown");
    }
}

/// Starts every node again: each must restart group 1 from the snapshot
/// it `saved`, and all must hold the same `keys` keys.
fn restart_from_snapshots(
    cfgs: &[ServerConfig],
    groups: &[GroupConfig],
    saved: &[sampan::group::SnapshotSaved],
    keys: usize,
) {
    let servers = start_all(cfgs, groups);
    for (s, snap) in servers.iter().flatten().zip(saved) {
        let st = s.group(1).status_blocking().expect("status");
        assert_eq!(st.snapshot_index, snap.index, "restarted from its snapshot");
    }
    assert_eq!(assert_same_state(&servers, 1), keys);
    shutdown_all(servers);
}

/// A factory whose groups keep snapshots in memory (the storage crate's
/// simulated file system), not in the data directory: the snapshot store
/// is an extension point like the log and the state machine.
struct MemSnapshots;

impl RaftFactory for MemSnapshots {
    type Log = sampan_storage::SegmentLog<sampan_storage::DiskFs>;
    type Snapshots = sampan_storage::SnapshotStore<sampan_storage::sim::MemFs>;

    fn state_machine(&self, g: &GroupConfig) -> Box<dyn sampan::state_machine::StateMachine> {
        kv_factory().state_machine(g)
    }

    async fn open_log(
        &self,
        ctx: sampan::server::LogContext,
    ) -> Result<Self::Log, sampan_storage::StorageError> {
        sampan::server::open_segment_log(ctx).await
    }

    async fn open_snapshots(
        &self,
        ctx: sampan::server::LogContext,
    ) -> Result<Self::Snapshots, sampan_storage::StorageError> {
        let fs = sampan_storage::sim::MemFs::new();
        sampan_storage::SnapshotStore::open(fs, &ctx.snapshot_dir, ctx.group.group_id, 2).await
    }
}

#[test]
fn an_embedders_snapshot_store_serves_snapshots_and_installs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfgs = configs(dir.path(), 1);
    let start = |c: &ServerConfig| {
        let rt =
            sampan_fiber::Runtime::builder().io_memory_bytes(sampan_fiber::IO_MEMORY_MIN_BYTES);
        Some(
            RaftServer::start_with(c.clone(), &[snapshot_group(1)], MemSnapshots, rt)
                .expect("starts"),
        )
    };
    let mut servers: Vec<Option<RaftServer<MemSnapshots>>> = cfgs.iter().map(start).collect();
    let (l, follower) = stop_a_follower(&mut servers);
    let g = servers[l].as_ref().expect("leader").group(1);
    load(&g, "k", 5_000, 20);
    let saved = g.snapshot_now_blocking().expect("snapshot");
    load(&g, "after", 100, 20);
    // Nothing on disk: the snapshot lives in the embedder's store.
    assert!(snapshot_dirs(&cfgs[l].data_dir, 1).is_empty());
    servers[follower] = start(&cfgs[follower]);
    let back = servers[follower].as_ref().expect("restarted").group(1);
    wait_for("the snapshot is installed", || {
        back.status_blocking()
            .is_ok_and(|s| s.snapshot_index >= saved.index)
    });
    let state = {
        let l = leader(&servers, 1);
        let last = servers[l]
            .as_ref()
            .expect("leader")
            .group(1)
            .status_blocking()
            .expect("status")
            .index_last;
        wait_for("the follower applies everything", || {
            back.status_blocking()
                .is_ok_and(|s| s.index_applied >= last)
        });
        dump_local(&back)
    };
    assert_eq!(state.len(), 5_100);
    for s in servers.into_iter().flatten() {
        s.shutdown().expect("shutdown");
    }
}

#[test]
fn snapshots_are_taken_by_time_and_by_log_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfgs = configs(dir.path(), 1);
    let by_time = GroupConfig {
        snapshot_interval_ms: 200,
        snapshot_log_bytes: 0,
        ..group(1)
    };
    let by_size = GroupConfig {
        snapshot_interval_ms: 0,
        snapshot_log_bytes: 256 << 10,
        ..group(2)
    };
    let servers = start_all(&cfgs, &[by_time, by_size]);
    for g in [1, 2] {
        let l = leader(&servers, g);
        let gr = servers[l].as_ref().expect("leader").group(g);
        // ~1 MiB of entries: four times the size trigger.
        load(&gr, "k", 10_000, 100);
        let last = gr.status_blocking().expect("status").index_last;
        for s in servers.iter().flatten() {
            wait_for("every node snapshots on its own", || {
                s.group(g)
                    .status_blocking()
                    .is_ok_and(|st| st.snapshot_index > 0 && st.index_applied >= last)
            });
        }
    }
    // Group 2 snapshotted while the load ran, and nothing was written to
    // it after: the time trigger never fires there (interval 0).
    let leader1 = servers[leader(&servers, 1)].as_ref().expect("leader");
    let s1 = leader1.group(1).status_blocking().expect("status");
    wait_for("group 1 snapshots its last entry by time", || {
        leader1
            .group(1)
            .status_blocking()
            .is_ok_and(|st| st.snapshot_index == s1.index_last)
    });
    assert_eq!(assert_same_state(&servers, 1), 10_000);
    assert_eq!(assert_same_state(&servers, 2), 10_000);
    for s in servers.into_iter().flatten() {
        s.shutdown().expect("shutdown");
    }
}

/// The log segment files of group 1 (the only group) on the node whose
/// data is in `dir`: its own (layout `per_group`) or the shard's shared
/// log's (layout `shared`).
fn segments(dir: &Path) -> usize {
    let count = |d: PathBuf, ext: &str| {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == ext))
                    .count()
            })
            .unwrap_or(0)
    };
    count(dir.join("group-1").join("log"), "seg") + count(dir.join("wal").join("shard-0"), "wal")
}

#[test]
fn the_log_a_snapshot_covers_is_purged_after_the_retention_delay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfgs = configs(dir.path(), 1);
    for c in &mut cfgs {
        // Small segments: a purge shows as deleted files.
        c.log.segment_bytes = 64 << 10;
        c.log.grow_step_bytes = 16 << 10;
    }
    let gc = GroupConfig {
        log_retention_ms: 3_000,
        ..snapshot_group(1)
    };
    let servers = start_all(&cfgs, &[gc]);
    let l = leader(&servers, 1);
    let g = servers[l].as_ref().expect("leader").group(1);
    load(&g, "k", 10_000, 100);
    let node_dir = &cfgs[l].data_dir;
    let before = segments(node_dir);
    // Ten batches of about 110 KB, each past a 64 KiB segment: about ten
    // segments, give or take where the leader's first entries fell (it
    // was exactly 10 in one run, and `> 10` failed).
    assert!(before >= 8, "{before} segments");
    g.snapshot_now_blocking().expect("snapshot");
    // Marked, not purged: the log stays for the retention delay (3 s)...
    // (a segment may be added meanwhile: the log prepares its next one
    // ahead, in the background; a purge only removes).
    let after = segments(node_dir);
    assert!(
        after >= before,
        "purged before the delay: {before} -> {after} segments"
    );
    // ...then goes, down to the segment the snapshot ends in.
    wait_for("the covered log is purged", || segments(node_dir) <= 2);
    load(&g, "after", 100, 10);
    assert_eq!(assert_same_state(&servers, 1), 10_100);
    for s in servers.into_iter().flatten() {
        s.shutdown().expect("shutdown");
    }
}
