//! Node.js clients against a real 3-node cluster, as an application uses
//! them: node-redis over RESP2 and RESP3 (it opens with `HELLO 3`) and
//! ioredis, with sets, gets, missing keys as `null`, MGET, SET NX,
//! counters, TTLs, concurrent commands (pipelined on the connection), an
//! ioredis pipeline, hashes, lists, sets, sorted sets, MULTI/EXEC, WATCH,
//! BLPOP and WRONGTYPE, through every node; and data of every type and
//! transactions written before a leader kill, read back after it. The clients come from npm:
//! `scripts/test` installs them in `target/node-clients`.

mod redis_common;

use redis_common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root and the installed Node.js clients.
fn modules() -> (PathBuf, PathBuf) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let modules = root.join("target/node-clients/node_modules");
    assert!(
        modules.join("redis").is_dir() && modules.join("ioredis").is_dir(),
        "node-redis and ioredis are missing: run `npm install --prefix target/node-clients \
         redis@5.9.0 ioredis@5.9.2` (scripts/test does; Node.js from the nodejs package)"
    );
    (root, modules)
}

fn node(script: &Path, args: &[&str]) {
    let out = Command::new("node")
        .arg(script)
        .args(args)
        .output()
        .expect("node runs (Debian: nodejs)");
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn node_clients_data_survives_a_leader_kill() {
    let (root, modules) = modules();
    let script = root.join("demos/tests/node_failover.js");
    let modules = modules.to_string_lossy().into_owned();
    let mut c = TestCluster::start(3);
    let leader = c.wait_leader(1);
    let other = (1..=3).find(|n| *n != leader).expect("a follower");
    node(&script, &[&c.port(leader).to_string(), &modules, "before"]);
    c.kill(leader);
    c.wait_leader(1);
    node(&script, &[&c.port(other).to_string(), &modules, "after"]);
}

#[test]
fn node_redis_and_ioredis_work_through_any_node() {
    let (root, modules) = modules();
    let script = root.join("demos/tests/node_clients.js");
    let c = TestCluster::start(3);
    c.wait_leader(1);
    for node in 1..=3 {
        let out = Command::new("node")
            .arg(&script)
            .arg(c.port(node).to_string())
            .arg(&modules)
            .output()
            .expect("node runs (Debian: nodejs)");
        assert!(
            out.status.success(),
            "node {node}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
