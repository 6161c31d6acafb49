//! The listener in-process: a one-node server, a raw TCP client, exact
//! reply bytes for a pipeline, and many connections writing at once.

use super::server::{ListenerSettings, listen};
use sampan::config::{GroupConfig, ServerConfig};
use sampan::server::RaftServer;
use sampan_kv::kv_factory;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn one_node(dir: &std::path::Path) -> RaftServer<impl sampan::server::RaftFactory> {
    let (repl, service) = (free_port(), free_port());
    let cfg: ServerConfig = toml::from_str(&format!(
        "node_id = 1\nservers = \"1,127.0.0.1:{repl},{service}\"\nreplicate_port = {repl}\n\
         service_port = {service}\ndata_dir = \"{}\"\nshards = 1\n",
        dir.display()
    ))
    .expect("config");
    let groups: Vec<GroupConfig> = [1, 2]
        .iter()
        .map(|g| toml::from_str(&format!("group_id = {g}\nmembers = \"1\"")).expect("group"))
        .collect();
    let server = RaftServer::start(cfg, &groups, kv_factory()).expect("start");
    for g in [1, 2] {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while server
            .group(g)
            .status_blocking()
            .map_or(true, |s| s.leader != Some(1))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "group {g} elects no leader"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    server
}

fn cmd(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Sends `input`, then reads until the server closes (the input ends with
/// QUIT).
fn exchange(addr: SocketAddr, input: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(input).expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_pipeline_is_answered_in_order_with_redis_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = one_node(dir.path());
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let l = listen(&server, addr, ListenerSettings::default()).expect("listen");
    let mut input = Vec::new();
    for c in [
        &["SET", "a", "1"][..],
        &["SET", "b", "2"],
        &["GET", "a"],
        &["INCR", "n"],
        &["SET", "a", "3"],
        &["MGET", "a", "b", "c"],
        &["EXISTS", "a", "c"],
        &["SELECT", "1"],
        &["GET", "a"],
        &["SELECT", "16"],
        &["DBSIZE"],
        &["SELECT", "0"],
        &["DBSIZE"],
        &["GET"],
        &["QUIT"],
        &["GET", "a"],
    ] {
        input.extend(cmd(c));
    }
    let want = "+OK\r\n+OK\r\n$1\r\n1\r\n:1\r\n+OK\r\n*3\r\n$1\r\n3\r\n$1\r\n2\r\n$-1\r\n:1\r\n\
                +OK\r\n$-1\r\n-ERR DB index is out of range\r\n:0\r\n+OK\r\n:3\r\n\
                -ERR wrong number of arguments for 'get' command\r\n+OK\r\n";
    assert_eq!(exchange(l.local_addr(), &input), want);
    server.shutdown().expect("shutdown");
}

#[test]
fn many_connections_writing_at_once_all_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = one_node(dir.path());
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let l = listen(&server, addr, ListenerSettings::default()).expect("listen");
    let at = l.local_addr();
    let clients: Vec<_> = (0..16)
        .map(|c| {
            std::thread::spawn(move || {
                let mut input = Vec::new();
                for i in 0..50 {
                    input.extend(cmd(&["SET", &format!("c{c}:{i}"), &i.to_string()]));
                    input.extend(cmd(&["GET", &format!("c{c}:{i}")]));
                }
                input.extend(cmd(&["QUIT"]));
                let mut want = String::new();
                for i in 0..50 {
                    let v = i.to_string();
                    want.push_str(&format!("+OK\r\n${}\r\n{v}\r\n", v.len()));
                }
                want.push_str("+OK\r\n");
                assert_eq!(exchange(at, &input), want, "client {c}");
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    assert_eq!(
        exchange(at, &[cmd(&["DBSIZE"]), cmd(&["QUIT"])].concat()),
        ":800\r\n+OK\r\n"
    );
    server.shutdown().expect("shutdown");
}

#[test]
fn protected_mode_refuses_to_listen_beyond_loopback_without_a_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = one_node(dir.path());
    let anywhere = SocketAddr::from(([0, 0, 0, 0], 0));
    let refused = listen(&server, anywhere, ListenerSettings::default()).expect_err("refused");
    let text = refused.to_string();
    assert!(
        text.contains("protected mode") && text.contains("requirepass"),
        "says why and what to do: {text}"
    );
    let with_password = ListenerSettings {
        acl: crate::acl::Acl::from_config(Some("pw"), &[]).expect("acl"),
        ..ListenerSettings::default()
    };
    listen(&server, anywhere, with_password).expect("a password lets it listen");
    let unprotected = ListenerSettings {
        protected_mode: false,
        ..ListenerSettings::default()
    };
    listen(&server, anywhere, unprotected).expect("protected mode off lets it listen");
    // Loopback needs neither.
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    listen(&server, loopback, ListenerSettings::default()).expect("loopback");
}

/// Reads until the server closes the connection or `within` passes;
/// whether it closed, and what it sent.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> (bool, String) {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut out = Vec::new();
    let closed = s.read_to_end(&mut out).is_ok();
    (closed, String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn maxclients_refuses_one_more_with_redis_words_and_frees_the_slot_on_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = one_node(dir.path());
    let settings = ListenerSettings {
        maxclients: 2,
        ..ListenerSettings::default()
    };
    let l = listen(&server, SocketAddr::from(([127, 0, 0, 1], 0)), settings).expect("listen");
    let ping = |s: &mut TcpStream| {
        s.write_all(&cmd(&["PING"])).expect("write");
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).expect("PONG");
        assert_eq!(&buf, b"+PONG\r\n");
    };
    let mut a = TcpStream::connect(l.local_addr()).expect("a");
    let mut b = TcpStream::connect(l.local_addr()).expect("b");
    ping(&mut a);
    ping(&mut b);
    let mut c = TcpStream::connect(l.local_addr()).expect("c connects, then is refused");
    let (closed, said) = read_until_closed(&mut c, Duration::from_secs(20));
    assert!(closed, "the third connection is closed");
    assert_eq!(said, "-ERR max number of clients reached\r\n");
    ping(&mut a);
    drop(b);
    // The slot frees once the server sees b close.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut d = TcpStream::connect(l.local_addr()).expect("d");
        d.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        d.write_all(&cmd(&["PING"])).expect("write");
        let mut buf = [0u8; 7];
        if d.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "b's slot never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_idle_client_is_closed_after_the_timeout_and_a_busy_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = one_node(dir.path());
    let settings = ListenerSettings {
        idle_timeout: Some(Duration::from_secs(1)),
        ..ListenerSettings::default()
    };
    let l = listen(&server, SocketAddr::from(([127, 0, 0, 1], 0)), settings).expect("listen");
    let mut idle = TcpStream::connect(l.local_addr()).expect("idle");
    let mut busy = TcpStream::connect(l.local_addr()).expect("busy");
    busy.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    // The busy one speaks every 200 ms, well inside the timeout, for 3 s.
    for _ in 0..15 {
        busy.write_all(&cmd(&["PING"])).expect("busy writes");
        let mut buf = [0u8; 7];
        busy.read_exact(&mut buf).expect("busy is still served");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (closed, said) = read_until_closed(&mut idle, Duration::from_secs(20));
    assert!(
        closed && said.is_empty(),
        "the idle one was closed silently: {said:?}"
    );
}
