//! The native client (`BlockingClient`) against three real `sampan-node`
//! processes started from config files on loopback: writes through any
//! node, a SIGKILLed leader (no acknowledged write lost, increments applied
//! exactly once across the client's retries), TTL expiry across a leader
//! change, two groups side by side, and a wrong config file.
//!
//! Every wait is bounded polling for a condition ([`wait_until`], at most
//! [`WAIT`]); nothing sleeps and hopes.

mod redis_common;
use bytes::Bytes;
use redis_common::*;
use sampan::client::{BlockingClient, ClientConfig, ClientError};
use sampan::group::GroupStatus;
use sampan::raft::Role;
use sampan_fiber::TaskClass;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Long enough to outlast an election (1–2 s timeout in the demo config)
/// and the retries around it, so a client call never gives up in a test.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Writers in flight at once in the failover test, each on its own fiber of
/// the client's shard, all pipelined on the client's connections.
const WRITERS: usize = 32;

/// Writes acknowledged before the kill, and again after it.
const ACKED_BEFORE_KILL_MIN: u64 = 2_000;
const ACKED_AFTER_KILL_MIN: u64 = 2_000;

fn client(servers: Vec<SocketAddr>) -> BlockingClient {
    BlockingClient::connect(ClientConfig::new(servers).request_timeout(REQUEST_TIMEOUT))
        .expect("client")
}

/// Every node's status of `group` as its own replica reports it.
fn statuses(c: &TestCluster, client: &BlockingClient, group: u64) -> Vec<(u64, GroupStatus)> {
    let running = c.running();
    client
        .status(group)
        .expect("status")
        .into_iter()
        .filter_map(|s| Some((s.node?, s.status.ok()?)))
        .filter(|(n, _)| running.contains(n))
        .collect()
}

/// Waits until every running node has applied everything the leader of
/// `group` has committed and agrees on the index; returns that index.
fn wait_applied_everywhere(c: &TestCluster, client: &BlockingClient, group: u64) -> u64 {
    let mut index = 0;
    wait_until("every node to apply the leader's commit index", || {
        let s = statuses(c, client, group);
        let Some((_, lead)) = s.iter().find(|(_, st)| st.role == Role::Leader) else {
            return false;
        };
        index = lead.index_commit;
        s.len() == c.running().len()
            && lead.index_last == lead.index_commit
            && s.iter().all(|(_, st)| st.index_applied == index)
    });
    index
}

#[test]
fn the_client_writes_through_any_node_and_two_groups_serve_independently() {
    let c = TestCluster::start(3);
    c.wait_leader(1);
    c.wait_leader(2);
    // A client that knows one node only, for each node: it finds the leader
    // from there (redirects); what it wrote reads back through the others.
    for n in 1..=3u64 {
        let one = client(vec![c.service(n)]);
        one.put(1, format!("via-{n}"), format!("g1-{n}"))
            .expect("put, group 1");
        one.put(2, format!("via-{n}"), format!("g2-{n}"))
            .expect("put, group 2");
        assert_eq!(one.incr(1, "counter", 1).expect("incr 1"), n as i64);
        assert_eq!(one.incr(2, "counter", 10).expect("incr 2"), 10 * n as i64);
    }
    for n in 1..=3u64 {
        let other = client(vec![c.service(n % 3 + 1)]);
        for m in 1..=3u64 {
            let key = format!("via-{m}");
            let g1 = other.get(1, key.clone()).expect("get 1");
            let g2 = other.get(2, key).expect("get 2");
            assert_eq!(g1.as_deref(), Some(format!("g1-{m}").as_bytes()));
            assert_eq!(g2.as_deref(), Some(format!("g2-{m}").as_bytes()));
        }
    }
    // The groups share nothing: a remove in one leaves the other alone,
    // and each has its own versions (log indexes).
    let any = client(c.services());
    assert!(any.remove(1, "via-1").expect("remove"));
    assert_eq!(any.get(1, "via-1").expect("get"), None);
    assert_eq!(
        any.get(2, "via-1").expect("get").as_deref(),
        Some(&b"g2-1"[..])
    );
    assert_eq!(any.incr(1, "counter", 0).expect("incr"), 3);
    assert_eq!(any.incr(2, "counter", 0).expect("incr"), 30);
    assert!(matches!(
        any.get(3, "via-1"),
        Err(ClientError::NoSuchGroup { group: 3, .. })
    ));
}

/// What the writers of the failover test acknowledged.
#[derive(Default)]
struct Acked {
    /// `(writer, i)` of every acknowledged put of key `w{writer}-{i}`.
    puts: Vec<(usize, u64)>,
    /// Per writer, the results of its increments of `ctr-{writer}`, in order.
    incrs: Vec<Vec<i64>>,
    /// Calls that failed (the client should carry on without any).
    errors: Vec<String>,
}

/// The value writer `w` puts at key `w{w}-{i}`: its own, so a read shows
/// which write it got.
fn value(w: usize, i: u64) -> Bytes {
    Bytes::from(format!("value of w{w}-{i}, {}", "x".repeat(40)))
}

/// Runs [`WRITERS`] fibers on the client's shard, each putting its keys and
/// incrementing its counter by 1 in a loop, until `done`.
fn write_until(client: &BlockingClient, done: Arc<AtomicBool>, acked: Arc<Mutex<Acked>>) {
    acked.lock().expect("lock").incrs = vec![Vec::new(); WRITERS];
    client
        .run(move |cl| async move {
            let mut fibers = Vec::new();
            for w in 0..WRITERS {
                let (cl, done, acked) = (cl.clone(), done.clone(), acked.clone());
                let f = sampan_fiber::spawn(TaskClass::Latency, "writer", async move {
                    let mut i = 0u64;
                    while !done.load(Ordering::SeqCst) {
                        let put = cl.put(1, format!("w{w}-{i}"), value(w, i)).await;
                        let incr = cl.incr(1, format!("ctr-{w}"), 1).await;
                        let mut a = acked.lock().expect("lock");
                        match put {
                            Ok(()) => a.puts.push((w, i)),
                            Err(e) => a.errors.push(format!("put w{w}-{i}: {e}")),
                        }
                        match incr {
                            Ok(v) => a.incrs[w].push(v),
                            Err(e) => a.errors.push(format!("incr ctr-{w}: {e}")),
                        }
                        i += 1;
                    }
                })
                .expect("spawn a writer");
                fibers.push(f);
            }
            for f in fibers {
                f.join().await.expect("writer fiber");
            }
        })
        .expect("run the writers");
}

#[test]
fn killing_the_leader_keeps_every_acknowledged_write_applied_once() {
    let mut c = TestCluster::start(3);
    let leader = c.wait_leader(1);
    let client = Arc::new(client(c.services()));
    let done = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Acked::default()));
    let writer = {
        let (client, done, acked) = (client.clone(), done.clone(), acked.clone());
        std::thread::spawn(move || write_until(&client, done, acked))
    };
    let puts = || acked.lock().expect("lock").puts.len() as u64;
    wait_until("writes acknowledged before the kill", || {
        puts() >= ACKED_BEFORE_KILL_MIN
    });
    let retries_before = client.stats().expect("stats").retries;
    c.kill(leader);
    let at_kill = puts();
    wait_until("writes acknowledged after the kill", || {
        puts() >= at_kill + ACKED_AFTER_KILL_MIN
    });
    done.store(true, Ordering::SeqCst);
    writer.join().expect("writer thread");
    let stats = client.stats().expect("stats");
    let new_leader = wait_new_leader(&c, 1, leader);
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));
    assert!(
        acked.errors.is_empty(),
        "the client gave up across the failover: {:?}",
        &acked.errors[..acked.errors.len().min(5)]
    );
    // Requests in flight at the kill were retried on the new leader.
    assert!(
        stats.retries > retries_before,
        "no retry across the kill: {stats:?}"
    );

    // Every acknowledged put reads back, through each surviving node.
    for n in c.running() {
        let via = client_at(&c, n);
        for chunk in acked.puts.chunks(500) {
            let keys: Vec<Bytes> = chunk
                .iter()
                .map(|(w, i)| Bytes::from(format!("w{w}-{i}")))
                .collect();
            let items = via.batch_get(1, keys).expect("batch_get");
            for ((w, i), item) in chunk.iter().zip(items) {
                let item = item.unwrap_or_else(|| panic!("w{w}-{i} acknowledged, then lost"));
                assert_eq!(item.value, value(*w, *i), "w{w}-{i} via node {n}");
            }
        }
    }
    // Exactly once: each writer's increments answered 1, 2, 3, ... with no
    // gap (a retry applied twice) and no repeat, and the counter holds the
    // last answer.
    let final_client = client_at(&c, new_leader);
    for (w, results) in acked.incrs.iter().enumerate() {
        let expect: Vec<i64> = (1..=results.len() as i64).collect();
        assert_eq!(results, &expect, "ctr-{w}: increments not exactly once");
        let stored = final_client.get(1, format!("ctr-{w}")).expect("get");
        let want = results.len().to_string();
        assert_eq!(stored.as_deref(), Some(want.as_bytes()), "ctr-{w}");
    }

    // The killed node comes back and catches up with everything.
    c.spawn(leader);
    wait_applied_everywhere(&c, &client, 1);
}

/// Waits until the running nodes agree on a leader of `group` other than
/// `old` (which they may still name for a while after it died).
fn wait_new_leader(c: &TestCluster, group: u64, old: u64) -> u64 {
    let mut leader = 0;
    wait_until("a new leader", || {
        leader = c.wait_leader(group);
        leader != old
    });
    leader
}

fn client_at(c: &TestCluster, n: u64) -> BlockingClient {
    client(vec![c.service(n)])
}

/// Keys written with this TTL stay pending across the leader change: it
/// outlasts the election with room to spare, so the new leader is settled
/// while they are still live (the test checks that it is so).
const TTL_PENDING: Duration = Duration::from_secs(8);
/// Keys written with this TTL come due around the election itself.
const TTL_SHORT: Duration = Duration::from_millis(1_500);
const TTL_KEYS: usize = 20;

#[test]
fn ttl_keys_expire_on_every_node_across_a_leader_change() {
    let mut c = TestCluster::start(3);
    let leader = c.wait_leader(1);
    let client = client(c.services());
    client.put(1, "keep", "v").expect("put keep");
    for i in 0..TTL_KEYS {
        let ttl = if i % 2 == 0 { TTL_PENDING } else { TTL_SHORT };
        client
            .put_ttl(1, format!("ttl-{i}"), "v", Some(ttl))
            .expect("put_ttl");
    }
    // Leadership changes while every expiry is still pending.
    c.kill(leader);
    let new_leader = wait_new_leader(&c, 1, leader);
    let settled = wait_applied_everywhere(&c, &client, 1);
    assert!(
        client.get(1, "ttl-0").expect("get").is_some(),
        "the long TTL passed before the new leader settled: the machine is \
         too slow for this test's TTL_PENDING"
    );

    // The new leader expires them all, through the log: no client writes,
    // yet the commit index moves, and every node applies the removals.
    for i in 0..TTL_KEYS {
        wait_until("a TTL key to expire under the new leader", || {
            client.get(1, format!("ttl-{i}")).expect("get").is_none()
        });
    }
    let mut expired_at = 0;
    wait_until(
        "the expiries to be committed and applied everywhere",
        || {
            expired_at = wait_applied_everywhere(&c, &client, 1);
            expired_at > settled
        },
    );

    // The old leader restarts and catches up; then it (or the third node)
    // takes over, and its own state has no TTL key either.
    c.spawn(leader);
    wait_until("the restarted node to apply the expiries", || {
        wait_applied_everywhere(&c, &client, 1) >= expired_at
    });
    c.kill(new_leader);
    wait_new_leader(&c, 1, new_leader);
    for n in c.running() {
        let via = client_at(&c, n);
        assert_eq!(via.get(1, "keep").expect("get").as_deref(), Some(&b"v"[..]));
        for i in 0..TTL_KEYS {
            assert_eq!(via.get(1, format!("ttl-{i}")).expect("get"), None);
        }
    }
}

/// Starts `sampan-node` on a config file with `text`; returns whether it
/// failed, the file, and its stderr.
fn start_with(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("wrong-node.toml");
    std::fs::write(&file, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_sampan-node"))
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run sampan-node");
    (
        !out.status.success(),
        file.display().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_wrong_config_file_names_the_file_and_the_field() {
    // Start from a config the cluster tests run with, then break one field.
    let c = TestCluster::start(1);
    let good = std::fs::read_to_string(c.config_file(1)).expect("read config");
    drop(c);
    let edit = |from: &str, to: &str| {
        assert!(good.contains(from), "{from:?} not in:\n{good}");
        good.replacen(from, to, 1)
    };
    // Each case: the broken text and what stderr must name.
    let cases = [
        (
            edit("members = \"1\"", "members = \"1,7\""),
            &["group[0]", "members"][..],
        ),
        (
            edit("durability = \"sync\"", "durability = \"maybe\""),
            &["durability"][..],
        ),
        (
            edit("heartbeat_interval_ms = 100", "heartbeat_interval_ms = 1"),
            &["server.heartbeat_interval_ms"][..],
        ),
        (
            edit("segment_bytes = 67108864", "segment_bytes = 100"),
            &["server.log.segment_bytes"][..],
        ),
        (
            edit("[server]\n", "[server]\nnode_idd = 3\n"),
            &["node_idd"][..],
        ),
    ];
    for (text, fields) in cases {
        let (failed, file, stderr) = start_with(&text);
        assert!(failed, "{fields:?}: sampan-node started anyway");
        assert!(
            stderr.contains(&file),
            "{fields:?}: file not named: {stderr}"
        );
        for field in fields {
            assert!(stderr.contains(field), "{field}: not named: {stderr}");
        }
    }
}

/// SIGKILLs every node, then starts them all again from the same files.
fn kill_all_and_restart(c: &mut TestCluster) {
    for i in 1..=3 {
        c.kill(i);
    }
    for i in 1..=3 {
        c.spawn(i);
    }
}

/// Waits until `group` has a leader that every node agrees on.
fn wait_group_leader(c: &TestCluster, client: &BlockingClient, group: u64) {
    wait_until(&format!("group {group} to elect a leader"), || {
        let s = client.status(group).unwrap_or_default();
        s.iter()
            .filter_map(|r| r.status.as_ref().ok())
            .any(|st| st.role == Role::Leader)
            && statuses(c, client, group).len() == c.running().len()
    });
}

/// Groups added and removed at runtime (by `sampan-cli`) stay so across a
/// SIGKILL of every node: the added group comes back with its data, and a
/// group of the config files that was removed is not started again (and
/// its files stay deleted) until it is added again at runtime.
#[test]
fn groups_added_and_removed_at_runtime_survive_killing_every_node() {
    let mut c = TestCluster::start(3);
    c.wait_leader(1);
    c.wait_leader(2);
    sampan_cli(&c, &["--group", "7", "add-group", "--members", "1,2,3"]);
    sampan_cli(&c, &["--group", "2", "remove-group"]);
    let any = client(c.services());
    wait_group_leader(&c, &any, 7);
    for i in 0..50 {
        any.put(7, format!("k{i}"), format!("v{i}"))
            .expect("put, group 7");
    }
    any.put(1, "k", "in group 1").expect("put, group 1");
    drop(any);

    kill_all_and_restart(&mut c);
    let any = client(c.services());
    wait_group_leader(&c, &any, 7);
    wait_applied_everywhere(&c, &any, 7);
    for n in 1..=3u64 {
        let one = client_at(&c, n);
        for i in 0..50 {
            let got = one.get(7, format!("k{i}")).expect("get, group 7");
            assert_eq!(got.as_deref(), Some(format!("v{i}").as_bytes()), "node {n}");
        }
        assert!(
            matches!(
                one.get(2, "k"),
                Err(ClientError::NoSuchGroup { group: 2, .. })
            ),
            "node {n} runs group 2 again"
        );
        let dir = c.dir.path().join(format!("node-{n}")).join("group-2");
        assert!(!dir.exists(), "{} is back", dir.display());
        assert!(
            c.log(n)
                .contains("group 2 is in the config file but was removed at runtime"),
            "node {n}: {}",
            c.log(n)
        );
    }
    assert_eq!(
        any.get(1, "k").expect("get, group 1").as_deref(),
        Some(&b"in group 1"[..])
    );

    // Added again at runtime, group 2 runs again, also after a restart.
    sampan_cli(&c, &["--group", "2", "add-group", "--members", "1,2,3"]);
    wait_group_leader(&c, &any, 2);
    any.put(2, "again", "yes").expect("put, group 2");
    drop(any);
    kill_all_and_restart(&mut c);
    let any = client(c.services());
    wait_group_leader(&c, &any, 2);
    assert_eq!(
        any.get(2, "again").expect("get, group 2").as_deref(),
        Some(&b"yes"[..])
    );
    assert_eq!(
        any.get(7, "k0").expect("get, group 7").as_deref(),
        Some(&b"v0"[..])
    );
}

/// A node started with only its own address and no group joins a running
/// cluster by `sampan-cli add-node`: every node learns its address and it
/// learns theirs, it joins both groups as an observer, catches group 1 up
/// by snapshot (its log was purged), and becomes a voter that leads and
/// serves every write. Its membership and the addresses survive a SIGKILL
/// of all four nodes. `remove-node` takes it out of every group and makes
/// the others forget it, also across a restart.
#[test]
fn a_node_started_alone_joins_by_add_node_and_stays_across_restarts() {
    let mut c = TestCluster::start(3);
    c.wait_leader(1);
    c.wait_leader(2);
    let any = client(c.services());
    for i in 0..200 {
        any.put(1, format!("k{i}"), format!("v{i}"))
            .expect("put, group 1");
    }
    for i in 0..50 {
        any.put(2, format!("k{i}"), format!("v{i}"))
            .expect("put, group 2");
    }
    // Snapshot group 1 everywhere and purge its log: the new node can
    // catch up only by installing a snapshot.
    sampan_cli(&c, &["--group", "1", "snapshot"]);
    drop(any);

    let four = c.start_lone_node();
    let at = c.service(four).to_string();
    wait_until("node 4 to listen", || {
        std::net::TcpStream::connect(c.service(four)).is_ok()
    });
    let out = sampan_cli(&c, &["--timeout-ms", "60000", "add-node", "4", "--at", &at]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("group 1: node 4 joined as a voter"), "{text}");
    assert!(text.contains("group 2: node 4 joined as a voter"), "{text}");
    let nodes = String::from_utf8_lossy(&sampan_cli(&c, &["nodes"]).stdout).into_owned();
    let repl4 = format!("4 127.0.0.1:{}", c.repl_ports[3]);
    assert_eq!(
        nodes.matches(&repl4).count(),
        4,
        "every node knows node 4: {nodes}"
    );

    let any = client(c.services());
    let joined = |c: &TestCluster, any: &BlockingClient, group: u64| {
        let s = statuses(c, any, group);
        let lead = s
            .iter()
            .find(|(_, st)| st.role == Role::Leader)
            .map(|(_, st)| st.clone());
        let four = s.iter().find(|(n, _)| *n == 4).map(|(_, st)| st.clone());
        match (lead, four) {
            (Some(lead), Some(four)) => {
                lead.voters.contains(&4) && four.index_applied >= lead.index_commit
            }
            _ => false,
        }
    };
    wait_until("node 4 to be a caught-up voter of group 1", || {
        joined(&c, &any, 1)
    });
    wait_until("node 4 to be a caught-up voter of group 2", || {
        joined(&c, &any, 2)
    });
    let installed = statuses(&c, &any, 1)
        .into_iter()
        .find(|(n, _)| *n == 4)
        .map(|(_, st)| st.snapshot_index)
        .unwrap_or(0);
    assert!(installed > 0, "node 4 caught group 1 up without a snapshot");
    wait_until("node 4 to lead group 1", || {
        let _ = any.run(|c| async move { c.transfer_leader(1, 4).await });
        statuses(&c, &any, 1)
            .iter()
            .any(|(n, st)| *n == 4 && st.role == Role::Leader)
    });
    for i in 0..200 {
        let got = any.get(1, format!("k{i}")).expect("get through node 4");
        assert_eq!(got.as_deref(), Some(format!("v{i}").as_bytes()));
    }
    drop(any);

    // Every node SIGKILLed and restarted: the others dial node 4 from
    // their node catalogs (their config files still list only 1 to 3).
    for i in 1..=4 {
        c.kill(i);
    }
    for i in 1..=4 {
        c.spawn(i);
    }
    let any = client(c.services());
    wait_group_leader(&c, &any, 1);
    for i in 0..50 {
        any.put(1, format!("after-{i}"), "x")
            .expect("put after the restart");
    }
    wait_until("node 4 to catch up after the restart", || {
        joined(&c, &any, 1)
    });
    drop(any);

    let out = sampan_cli(&c, &["--timeout-ms", "60000", "remove-node", "4"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("group 1: node 4 removed"), "{text}");
    assert_eq!(text.matches("forgot node 4").count(), 3, "{text}");
    let any = client(c.services()[..3].to_vec());
    for g in [1, 2] {
        wait_until("node 4 out of every group", || {
            statuses(&c, &any, g)
                .iter()
                .filter(|(n, _)| *n != 4)
                .all(|(_, st)| !st.voters.contains(&4) && !st.learners.contains(&4))
        });
    }
    drop(any);
    c.kill(1);
    c.spawn(1);
    let mut nodes = String::new();
    wait_until("node 1 to answer again", || {
        let out = Command::new(env!("CARGO_BIN_EXE_sampan-cli"))
            .args(["--servers", &c.service(1).to_string(), "nodes"])
            .output()
            .expect("run sampan-cli");
        nodes = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success()
    });
    assert!(
        !nodes.contains(&repl4),
        "node 1 knows node 4 again after a restart: {nodes}"
    );
}

/// `SAMPAN_LOG_FORMAT=json`: every line a node writes from start to a
/// SIGTERM stop is one JSON object with a time, a level, a target and a
/// message (what a log shipper parses without rules of its own).
#[test]
fn json_logs_are_one_object_per_line_from_start_to_stop() {
    use std::io::BufRead;
    let mut c = TestCluster::start(1);
    c.kill(1);
    let config = c.config_file(1);
    let mut child = Command::new(env!("CARGO_BIN_EXE_sampan-node"))
        .arg("--config")
        .arg(&config)
        .env("SAMPAN_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sampan-node");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while !lines.iter().any(|l: &String| l.contains("redis port")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(e) => panic!("the node did not start ({e}):\n{}", lines.join("\n")),
        }
    }
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().expect("wait");
    reader.join().expect("reader");
    lines.extend(rx.try_iter());
    assert!(status.success(), "{status}: {}", lines.join("\n"));
    assert!(
        lines.iter().any(|l| l.contains("handed over")),
        "{}",
        lines.join("\n")
    );
    let mut role_lines = 0;
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        for key in ["ts", "level", "target", "msg"] {
            assert!(v[key].is_string(), "no {key}: {l}");
        }
        // A line about a group names it and its term, as fields.
        let msg = v["msg"].as_str().unwrap_or_default();
        if let Some(group) = group_named(msg) {
            assert_eq!(v["group"].as_u64(), Some(group), "no group field: {l}");
            assert!(v["term"].is_u64(), "no term field: {l}");
        }
        // "group 1: Follower in term 1 (leader None)": the field is that term.
        if let Some((_, rest)) = msg
            .strip_prefix("group 1: ")
            .and_then(|m| m.split_once(" in term "))
        {
            let said: Option<u64> = rest.split(' ').next().and_then(|t| t.parse().ok());
            assert_eq!(v["term"].as_u64(), said, "{l}");
            role_lines += 1;
        }
    }
    assert!(
        role_lines > 0,
        "no line gives group 1's role and term: {}",
        lines.join("\n")
    );
}

/// The group a log message is about (`group 3: ...`, `... group 3 ...`).
fn group_named(msg: &str) -> Option<u64> {
    msg.match_indices("group ").find_map(|(at, _)| {
        let digits: String = msg[at + 6..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}

/// The last node of a cluster stopped (one follower dead, the other
/// stopped first): the leader finds no voter to take over, loses its
/// quorum meanwhile, and ends its handover then (it says so) instead of
/// waiting out the handover's bound and reporting groups it no longer
/// leads as still led. (Before the fix the wait for a transfer answer
/// never ended once the leader had stepped down with no leader known.)
#[test]
fn stopping_every_node_at_once_ends_the_handover_when_the_quorum_is_gone() {
    let mut c = TestCluster::start(3);
    let leader = c.wait_leader(1);
    c.wait_leader(2);
    let followers: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();
    c.kill(followers[0]);
    c.signal_stop(followers[1]);
    let status = c.wait_exit(followers[1]);
    assert!(status.success(), "node {}: {status}", followers[1]);
    c.stop_cleanly(leader);
    let log = c.log(leader);
    assert!(log.contains("lost the lead of"), "node {leader}:\n{log}");
    assert!(!log.contains("still leading"), "node {leader}:\n{log}");
}

/// Runs `sampan-node` with `args` to its exit; returns its status and
/// what it wrote.
fn sampan_node(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sampan-node"))
        .args(args)
        .output()
        .expect("run sampan-node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Restores node `i`'s data directory from `backup` (its old one moved
/// away first), with `extra` arguments; returns what it printed.
fn restore_node(c: &TestCluster, i: u64, backup: &std::path::Path, extra: &[&str]) -> String {
    let data = scratch(c).join(format!("node-{i}"));
    if data.exists() {
        let mut moved = scratch(c).join(format!("node-{i}.moved"));
        let mut n = 0;
        while moved.exists() {
            n += 1;
            moved = scratch(c).join(format!("node-{i}.moved{n}"));
        }
        std::fs::rename(&data, &moved).expect("move the data directory away");
    }
    let config = c.config_file(i);
    let mut args = vec![
        "--config".as_ref(),
        config.as_os_str(),
        "--restore-from".as_ref(),
        backup.as_os_str(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let (ok, text) = sampan_node(&args);
    assert!(ok, "restore of node {i} failed: {text}");
    text
}

/// The numbered keys `prefix0`, `prefix1`, ... present in `group`, checked
/// to be a gapless run from 0 (a snapshot holds a prefix of a writer's
/// sequential writes); returns how many.
fn gapless_run(any: &BlockingClient, group: u64, prefix: &str, upto: u64) -> u64 {
    let present: Vec<bool> = (0..upto)
        .map(|i| {
            any.get(group, format!("{prefix}{i}"))
                .expect("get")
                .is_some()
        })
        .collect();
    let run = present.iter().take_while(|p| **p).count();
    assert!(
        present[run..].iter().all(|p| !p),
        "{prefix}: keys past the first missing one ({run}) are present: the backup is not one point in time"
    );
    run as u64
}

#[test]
fn a_backup_taken_under_load_restores_a_new_cluster_to_that_point() {
    let mut c = TestCluster::start(3);
    c.wait_leader(1);
    c.wait_leader(2);
    // Group 3 exists only by command: its restore must record it.
    sampan_cli(&c, &["--group", "3", "add-group", "--members", "1,2,3"]);
    let any = client(c.services());
    for i in 0..300 {
        any.put(1, format!("k{i}"), format!("v{i}")).expect("put 1");
    }
    for i in 0..50 {
        any.put(2, format!("k{i}"), format!("w{i}")).expect("put 2");
        any.put(3, format!("k{i}"), format!("x{i}")).expect("put 3");
    }
    // A writer goes on while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, servers) = (stop.clone(), c.services());
        std::thread::spawn(move || {
            let w = client(servers);
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                w.put(1, format!("during{n}"), "d")
                    .expect("put during the backup");
                n += 1;
            }
            n
        })
    };
    wait_until("the writer to start", || {
        any.get(1, "during10").expect("get").is_some()
    });
    let backup = scratch(&c).join("backup");
    // Given only a follower of group 1: the backup finds the leader
    // through that node's address book.
    let follower = (1..=3)
        .find(|n| *n != c.wait_leader(1))
        .expect("a follower");
    let out = Command::new(env!("CARGO_BIN_EXE_sampan-cli"))
        .arg("--servers")
        .arg(c.service(follower).to_string())
        .args(["--timeout-ms", "30000", "backup", "--out"])
        .arg(&backup)
        .output()
        .expect("run sampan-cli");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("backed up 3 group(s)"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().expect("writer");
    for i in 0..20 {
        any.put(1, format!("after{i}"), "a").expect("put after");
    }
    // A backup never overwrites.
    let again = Command::new(env!("CARGO_BIN_EXE_sampan-cli"))
        .arg("--servers")
        .arg(c.service(1).to_string())
        .args(["backup", "--out", backup.to_str().expect("utf-8")])
        .output()
        .expect("run sampan-cli");
    assert_eq!(again.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    drop(any);
    for i in 1..=3 {
        c.kill(i);
    }

    // Refused: a data directory that holds a node's files.
    let config = c.config_file(1);
    let (ok, text) = sampan_node(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--restore-from".as_ref(),
        backup.as_os_str(),
    ]);
    assert!(!ok && text.contains("is not empty"), "{text}");
    // Refused: a damaged backup (one byte of group 1's data flipped);
    // nothing is started from it.
    let damaged = scratch(&c).join("damaged");
    copy_dir(&backup, &damaged);
    let snap = std::fs::read_dir(damaged.join("group-1"))
        .expect("group-1")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("snap-"))
        })
        .expect("a snapshot directory");
    let mut data = std::fs::read(snap.join("data")).expect("data");
    let mid = data.len() / 2;
    data[mid] ^= 0x40;
    std::fs::write(snap.join("data"), data).expect("write");
    std::fs::rename(scratch(&c).join("node-1"), scratch(&c).join("node-1.old")).expect("move");
    let (ok, text) = sampan_node(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--restore-from".as_ref(),
        damaged.as_os_str(),
    ]);
    assert!(!ok && text.contains("CRC"), "{text}");

    // Every node restored from the backup into an empty directory.
    for i in 1..=3 {
        let text = restore_node(&c, i, &backup, &[]);
        assert!(text.contains("restored 3 group(s)"), "{text}");
        assert!(text.contains("group 3: restored"), "{text}");
        assert!(
            text.contains("recorded in the node's group catalog"),
            "{text}"
        );
    }
    for i in 1..=3 {
        c.spawn(i);
    }
    for g in 1..=3 {
        c.wait_leader(g);
    }
    let any = client(c.services());
    for i in 0..300 {
        assert_eq!(
            any.get(1, format!("k{i}")).expect("get").as_deref(),
            Some(format!("v{i}").as_bytes())
        );
    }
    for i in 0..50 {
        assert_eq!(
            any.get(2, format!("k{i}")).expect("get").as_deref(),
            Some(format!("w{i}").as_bytes())
        );
        assert_eq!(
            any.get(3, format!("k{i}")).expect("get").as_deref(),
            Some(format!("x{i}").as_bytes())
        );
    }
    let during = gapless_run(&any, 1, "during", written + 1);
    assert!(
        during > 10,
        "the backup holds {during} of the writes made while it ran"
    );
    for i in 0..20 {
        assert_eq!(any.get(1, format!("after{i}")).expect("get"), None);
    }
    any.put(3, "new", "n")
        .expect("a write to the restored cluster");
    drop(any);

    // The restored cluster's files are its own: it restarts from them.
    kill_all_and_restart(&mut c);
    c.wait_leader(3);
    let any = client(c.services());
    assert_eq!(any.get(3, "new").expect("get").as_deref(), Some(&b"n"[..]));
    assert_eq!(
        any.get(1, "k299").expect("get").as_deref(),
        Some(&b"v299"[..])
    );
    drop(any);

    // One node alone, restored with itself as every group's only voter.
    for i in 1..=3 {
        c.kill(i);
    }
    let text = restore_node(&c, 1, &backup, &["--members", "1"]);
    assert!(text.contains("voters {1}"), "{text}");
    c.spawn(1);
    for g in 1..=3 {
        c.wait_leader(g);
    }
    let one = client(vec![c.service(1)]);
    assert_eq!(
        one.get(2, "k49").expect("get").as_deref(),
        Some(&b"w49"[..])
    );
    assert_eq!(gapless_run(&one, 1, "during", written + 1), during);
    one.put(1, "alone", "1")
        .expect("a lone node commits by itself");
}

/// Copies a directory tree.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// Groups a node starts with in the start-window test: enough that they
/// take a while to start, after the service port listens.
const MANY_GROUPS: u64 = 600;

/// A client that reaches a node while it is still starting its groups is
/// told to try again, not that the group does not exist: its write to the
/// last group to start goes through. (The service port listens before the
/// groups start; it used to answer "no such group" then, which a client
/// takes as final.)
#[test]
fn a_request_during_the_start_waits_for_its_group_instead_of_no_such_group() {
    let c = TestCluster::start_with(1, |cfg| {
        let template = cfg.groups[0].clone();
        cfg.groups = (1..=MANY_GROUPS)
            .map(|g| sampan::config::GroupConfig {
                group_id: g,
                members: "1".into(),
                ..template.clone()
            })
            .collect();
    });
    let any = client(c.services());
    wait_until("the service port to listen", || {
        std::net::TcpStream::connect(c.service(1)).is_ok()
    });
    any.put(MANY_GROUPS, "k", "v")
        .expect("a write to the last group, sent while the node starts");
    assert_eq!(
        any.get(MANY_GROUPS, "k").expect("get").as_deref(),
        Some(&b"v"[..])
    );
    let log = c.log(1);
    assert!(
        log.contains(&format!("{MANY_GROUPS} group(s)")),
        "the node started its groups: {log}"
    );
}
