//! Node.js clients against a real 3-node cluster, as an application uses
//! them: node-redis over RESP2 and RESP3 (it opens with `HELLO 3`) and
//! ioredis, with sets, gets, missing keys as `null`, MGET, SET NX,
//! counters, TTLs, concurrent commands (pipelined on the connection), an
//! ioredis pipeline, hashes, lists, sets, sorted sets, MULTI/EXEC, WATCH,
//! BLPOP and WRONGTYPE, through every node. The clients come from npm:
//! `scripts/test` installs them in `target/node-clients`.

mod redis_common;

use redis_common::*;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn node_redis_and_ioredis_work_through_any_node() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let modules = root.join("target/node-clients/node_modules");
    assert!(
        modules.join("redis").is_dir() && modules.join("ioredis").is_dir(),
        "node-redis and ioredis are missing: run `npm install --prefix target/node-clients \
         redis@5.9.0 ioredis@5.9.2` (scripts/test does; Node.js from the nodejs package)"
    );
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
