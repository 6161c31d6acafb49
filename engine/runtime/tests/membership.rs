//! Membership and group management on a real loopback cluster: an observer
//! catches up and is promoted, leadership moves to a chosen node, a member
//! is removed and its files deleted, a failed node is replaced, and groups
//! come and go at runtime while another group serves writes.

mod common;

use bytes::Bytes;
use common::{configs_n, dump_local, group, leader, leader_last, put_many, wait_for};
use sampan::config::{GroupConfig, ServerConfig};
use sampan::raft::Role;
use sampan::server::RaftServer;
use sampan_kv::{KvFactory, kv_factory};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

type Server = RaftServer<KvFactory>;

fn start(cfg: &ServerConfig, groups: &[GroupConfig]) -> Server {
    let rt = sampan_fiber::Runtime::builder().io_memory_bytes(sampan_fiber::IO_MEMORY_MIN_BYTES);
    Server::start_with(cfg.clone(), groups, kv_factory(), rt).expect("starts")
}

fn ids(list: &[u64]) -> BTreeSet<u64> {
    list.iter().copied().collect()
}

fn batch(prefix: &str, n: u64) -> Vec<(Bytes, Bytes)> {
    (0..n)
        .map(|i| {
            (
                Bytes::from(format!("{prefix}{i:05}")),
                Bytes::from(format!("v{i}")),
            )
        })
        .collect()
}

/// The state of `group` on each given node, once each applied all the
/// leader has; all equal, and returned.
fn same_state(servers: &[Option<Server>], nodes: &[usize], g: u64) -> Vec<(Bytes, Bytes)> {
    let last = leader_last(servers, g);
    let mut states = Vec::new();
    for &n in nodes {
        let s = servers[n].as_ref().expect("running");
        wait_for("the node applies the leader's log", || {
            s.group(g)
                .status_blocking()
                .is_ok_and(|st| st.index_applied >= last)
        });
        states.push(dump_local(&s.group(g)));
    }
    for (i, st) in states.iter().enumerate() {
        assert!(st == &states[0], "node {} differs", nodes[i] + 1);
    }
    states.swap_remove(0)
}

#[test]
fn an_observer_is_promoted_leadership_moves_and_a_failed_node_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfgs = configs_n(dir.path(), 1, 5);
    let g1 = group(1);
    let mut servers: Vec<Option<Server>> = cfgs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Some(start(
                c,
                if i < 3 {
                    std::slice::from_ref(&g1)
                } else {
                    &[]
                },
            ))
        })
        .collect();
    let admin = |servers: &[Option<Server>]| servers[0].as_ref().expect("node 1").group(1);
    put_many(&admin(&servers), batch("a", 500));

    // A node outside `servers` is refused at once (it could never join).
    let err = admin(&servers)
        .change_membership_blocking(&ids(&[1, 2, 3, 9]), &ids(&[]))
        .expect_err("node 9 is unknown");
    assert!(
        err.to_string()
            .contains("node 9 is not a node this one knows"),
        "{err}"
    );

    // Node 4 joins as an observer: it catches up, never votes.
    let joining = GroupConfig {
        join: true,
        ..group(1)
    };
    servers[3]
        .as_ref()
        .expect("node 4")
        .add_group(&joining)
        .expect("joins");
    admin(&servers)
        .change_membership_blocking(&ids(&[1, 2, 3]), &ids(&[4]))
        .expect("observer added");
    let node4 = servers[3].as_ref().expect("node 4").group(1);
    wait_for("node 4 learns it observes", || {
        node4
            .status_blocking()
            .is_ok_and(|st| (st.voters, st.learners) == (vec![1, 2, 3], vec![4]))
    });
    assert_eq!(same_state(&servers, &[0, 1, 2, 3], 1).len(), 500);

    // Promoted to voter (joint consensus), then made leader.
    admin(&servers)
        .change_membership_blocking(&ids(&[1, 2, 3, 4]), &ids(&[]))
        .expect("promoted");
    admin(&servers)
        .transfer_leader_blocking(4)
        .expect("transfer");
    assert_eq!(leader(&servers, 1), 3, "node 4 leads");
    let st = servers[3]
        .as_ref()
        .expect("node 4")
        .group(1)
        .status_blocking()
        .expect("status");
    assert_eq!(
        (st.role, st.voters.clone()),
        (Role::Leader, vec![1, 2, 3, 4])
    );

    // The leader itself can be removed: it hands over and steps down.
    admin(&servers)
        .change_membership_blocking(&ids(&[1, 2, 3]), &ids(&[]))
        .expect("the leader (node 4) removed");
    let l = leader(&servers, 1);
    assert_ne!(l, 3, "node 4 no longer leads");
    admin(&servers)
        .change_membership_blocking(&ids(&[1, 2, 3, 4]), &ids(&[]))
        .expect("node 4 back");

    // Node 3 leaves; once it is out, its replica and files go.
    admin(&servers)
        .change_membership_blocking(&ids(&[1, 2, 4]), &ids(&[]))
        .expect("node 3 removed");
    let node3 = servers[2].as_ref().expect("node 3");
    assert!(node3.remove_group(1).expect("removed"));
    assert!(!cfgs[2].data_dir.join("group-1").exists(), "files deleted");
    servers[2]
        .take()
        .expect("node 3")
        .shutdown()
        .expect("shutdown");

    // Node 2 fails; node 5 replaces it while it is down.
    servers[1]
        .take()
        .expect("node 2")
        .shutdown()
        .expect("shutdown");
    servers[4]
        .as_ref()
        .expect("node 5")
        .add_group(&joining)
        .expect("joins");
    // Node 2 may have led: ask the node that leads now, not one that may
    // still forward to node 2.
    let l = leader(&servers, 1);
    servers[l]
        .as_ref()
        .expect("leader")
        .group(1)
        .change_membership_blocking(&ids(&[1, 4, 5]), &ids(&[]))
        .expect("node 2 replaced by node 5");
    put_many(&admin(&servers), batch("b", 500));
    let state = same_state(&servers, &[0, 3, 4], 1);
    assert_eq!(state.len(), 1_000);
    let node5 = servers[4].as_ref().expect("node 5").group(1);
    wait_for("node 5 votes", || {
        node5
            .status_blocking()
            .is_ok_and(|st| (st.voters, st.learners) == (vec![1, 4, 5], vec![]))
    });
    for s in servers.into_iter().flatten() {
        s.shutdown().expect("shutdown");
    }
}

#[test]
fn groups_come_and_go_at_runtime_while_another_serves_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfgs = configs_n(dir.path(), 2, 3);
    let servers: Vec<Option<Server>> = cfgs.iter().map(|c| Some(start(c, &[group(1)]))).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let g = servers[0].as_ref().expect("node 1").group(1);
        let (stop, written) = (stop.clone(), written.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                put_many(&g, batch(&format!("w{i}-"), 10));
                i += 1;
                written.store(i, Ordering::SeqCst);
            }
        })
    };
    for round in 0..3u64 {
        let g7 = group(7 + round);
        for s in servers.iter().flatten() {
            s.add_group(&g7).expect("group added");
        }
        let g = servers[1].as_ref().expect("node 2").group(g7.group_id);
        put_many(&g, batch("x", 50));
        // Adding it again is refused before its files are touched.
        let again = servers[0].as_ref().expect("node 1").add_group(&g7);
        assert!(
            again.is_err_and(|e| e.to_string().contains("already running")),
            "a second add of a running group"
        );
        put_many(&g, batch("y", 50));
        assert_eq!(same_state(&servers, &[0, 1, 2], g7.group_id).len(), 100);
        // Stopped everywhere first, then the files go everywhere.
        for s in servers.iter().flatten() {
            assert!(s.stop_group(g7.group_id).expect("stopped"));
        }
        for (s, c) in servers.iter().flatten().zip(&cfgs) {
            s.remove_group(g7.group_id).expect("removed");
            assert!(!c.data_dir.join(format!("group-{}", g7.group_id)).exists());
            assert_eq!(s.group_ids().expect("groups"), vec![1]);
        }
    }
    let before = written.load(Ordering::SeqCst);
    wait_for("group 1 keeps taking writes", || {
        written.load(Ordering::SeqCst) > before + 10
    });
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("the writer never failed");
    let rounds = written.load(Ordering::SeqCst);
    assert_eq!(
        same_state(&servers, &[0, 1, 2], 1).len() as u64,
        rounds * 10
    );
    for s in servers.into_iter().flatten() {
        s.shutdown().expect("shutdown");
    }
}
