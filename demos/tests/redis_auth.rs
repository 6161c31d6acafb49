//! Who may use the Redis port, on a real `sampan-node`: `requirepass` and
//! ACL users answered exactly as Redis answers (`-NOAUTH`, `-WRONGPASS`,
//! `-NOPERM`); `redis-cli -a`, `redis-benchmark -a` and redis-py with a
//! password work; no password shows in `INFO`, `CONFIG GET`, an error or
//! the node's log.

mod redis_common;

use redis_common::*;
use sampan_demos::config::Secret;
use std::process::Command;
use std::time::Duration;

const MAIN: &str = "main-pw-7f3a";
const READER: &str = "read-pw-91c2";
const DB1: &str = "db1-pw-55e0";
const WRONG: &str = "wrong-pw-0d4e";

fn authed_node() -> TestCluster {
    let c = TestCluster::start_with(1, |cfg| {
        cfg.redis.requirepass = Some(Secret(MAIN.into()));
        cfg.redis.users = vec![
            Secret(format!("reader on >{READER} +@read")),
            Secret(format!("onlydb1 on >{DB1} +@all db=1")),
            Secret(format!("retired off >{MAIN} +@all")),
        ];
    });
    wait_until("the node takes an authenticated write", || {
        let Ok(mut r) = Resp::connect_with(c.port(1), Duration::from_secs(2)) else {
            return false;
        };
        r.call(&["AUTH", MAIN]).is_ok_and(|v| v == ok())
            && r.call(&["SET", "ready", "1"]).is_ok_and(|v| v == ok())
    });
    c
}

fn ok() -> Value {
    Value::Simple("OK".into())
}

fn err(text: &str) -> Value {
    Value::Error(text.into())
}

fn call(r: &mut Resp, args: &[&str]) -> Value {
    r.call(args).expect("the node answers")
}

#[test]
fn passwords_and_users_get_the_answers_redis_gives() {
    let c = authed_node();
    let mut r = Resp::connect_with(c.port(1), Duration::from_secs(10)).expect("connect");
    let noauth = err("NOAUTH Authentication required.");
    let wrongpass = err("WRONGPASS invalid username-password pair or user is disabled.");
    // Before authenticating: nothing runs, reads and pings included.
    assert_eq!(call(&mut r, &["GET", "ready"]), noauth);
    assert_eq!(call(&mut r, &["SET", "k", "v"]), noauth);
    assert_eq!(call(&mut r, &["PING"]), noauth);
    assert!(
        matches!(call(&mut r, &["HELLO", "3"]), Value::Error(e) if e.starts_with("NOAUTH HELLO must be called")),
    );
    // Wrong passwords, unknown and disabled users.
    assert_eq!(call(&mut r, &["AUTH", WRONG]), wrongpass);
    assert_eq!(call(&mut r, &["AUTH", "nobody", MAIN]), wrongpass);
    assert_eq!(call(&mut r, &["AUTH", "retired", MAIN]), wrongpass);
    assert_eq!(
        call(&mut r, &["HELLO", "3", "AUTH", "default", WRONG]),
        wrongpass
    );
    assert_eq!(call(&mut r, &["GET", "ready"]), noauth, "still nobody");
    // The read-only user reads, and is refused a write.
    assert_eq!(call(&mut r, &["AUTH", "reader", READER]), ok());
    assert_eq!(
        call(&mut r, &["GET", "ready"]),
        Value::Bulk(Some(b"1".to_vec()))
    );
    assert_eq!(
        call(&mut r, &["SET", "k", "v"]),
        err("NOPERM User reader has no permissions to run the 'set' command")
    );
    assert_eq!(
        call(&mut r, &["CONFIG", "GET", "*"]),
        err("NOPERM User reader has no permissions to run the 'config|get' command")
    );
    // A user limited to database 1: refused database 0, served in 1.
    assert_eq!(call(&mut r, &["AUTH", "onlydb1", DB1]), ok());
    assert_eq!(
        call(&mut r, &["GET", "ready"]),
        err("NOPERM User onlydb1 has no permissions to access database 0")
    );
    assert_eq!(call(&mut r, &["SELECT", "1"]), ok());
    assert_eq!(call(&mut r, &["SET", "in1", "x"]), ok());
    assert_eq!(
        call(&mut r, &["SELECT", "0"]),
        err("NOPERM User onlydb1 has no permissions to access database 0")
    );
    assert_eq!(
        call(&mut r, &["GET", "in1"]),
        Value::Bulk(Some(b"x".to_vec())),
        "still db 1"
    );
    // HELLO with AUTH authenticates and answers the server's properties.
    let mut h = Resp::connect_with(c.port(1), Duration::from_secs(10)).expect("connect");
    assert!(matches!(
        call(
            &mut h,
            &["HELLO", "3", "AUTH", "default", MAIN, "SETNAME", "app"]
        ),
        Value::Map(_)
    ));
    assert_eq!(call(&mut h, &["SET", "via-hello", "1"]), ok());
    // A pipeline that starts with its AUTH (as redis-benchmark -a sends
    // one) runs the rest as that user; a wrong AUTH mid-pipeline does not
    // log the connection out, as in Redis.
    let mut p = Resp::connect_with(c.port(1), Duration::from_secs(10)).expect("connect");
    let mut bytes = Vec::new();
    for args in [
        &["GET", "ready"][..],
        &["AUTH", MAIN],
        &["INCR", "n"],
        &["AUTH", WRONG],
        &["INCR", "n"],
    ] {
        bytes.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            bytes.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
    }
    p.send_raw(&bytes).expect("send");
    let answers: Vec<Value> = (0..5).map(|_| p.read_value().expect("answer")).collect();
    assert_eq!(
        answers,
        vec![noauth, ok(), Value::Int(1), wrongpass, Value::Int(2)]
    );
}

#[test]
fn no_secret_shows_in_config_info_errors_or_the_log() {
    let c = authed_node();
    let mut r = Resp::connect_with(c.port(1), Duration::from_secs(10)).expect("connect");
    let _ = call(&mut r, &["AUTH", "reader", WRONG]);
    let _ = call(&mut r, &["AUTH", WRONG]);
    assert_eq!(call(&mut r, &["AUTH", MAIN]), ok());
    let config = call(&mut r, &["CONFIG", "GET", "*"]).to_string();
    let info = call(&mut r, &["INFO"]).to_string();
    // A bad AUTH's arity error and an unknown command quote no password.
    let arity = call(&mut r, &["AUTH", "a", "b", WRONG]).to_string();
    let log = c.log(1);
    for (what, text) in [
        ("CONFIG GET *", &config),
        ("INFO", &info),
        ("AUTH's arity error", &arity),
        ("the node's log", &log),
    ] {
        for secret in [MAIN, READER, DB1, WRONG] {
            assert!(!text.contains(secret), "{what} shows a password:\n{text}");
        }
    }
    assert!(
        arity.contains("wrong number of arguments for 'auth'"),
        "{arity}"
    );
}

#[test]
fn redis_cli_benchmark_and_redis_py_work_with_a_password() {
    require_redis_cli();
    let c = authed_node();
    let port = c.port(1).to_string();
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["--no-auth-warning", "-p", &port])
            .args(args)
            .output()
            .expect("run redis-cli");
        // redis-cli says "AUTH failed: ..." on stderr, replies on stdout.
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        )
        .trim()
        .to_string()
    };
    assert_eq!(cli(&["-a", MAIN, "SET", "tool", "cli"]), "OK");
    assert_eq!(cli(&["-a", MAIN, "GET", "tool"]), "cli");
    assert!(cli(&["GET", "tool"]).contains("NOAUTH"), "no password");
    assert!(cli(&["-a", WRONG, "GET", "tool"]).contains("WRONGPASS"));
    assert_eq!(
        cli(&["--user", "reader", "--pass", READER, "GET", "tool"]),
        "cli"
    );

    let bench = Command::new("redis-benchmark")
        .args([
            "-p", &port, "-a", MAIN, "-t", "set,get", "-n", "2000", "-c", "4", "-q",
        ])
        .output()
        .expect(
            "redis-benchmark is in redis-tools (apt-get install redis-tools; scripts/test does)",
        );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&bench.stdout),
        String::from_utf8_lossy(&bench.stderr)
    );
    assert!(bench.status.success(), "redis-benchmark -a failed:\n{text}");
    for bad in ["NOAUTH", "WRONGPASS", "Error"] {
        assert!(!text.contains(bad), "redis-benchmark -a saw {bad}:\n{text}");
    }
    assert!(text.contains("SET:") && text.contains("GET:"), "{text}");

    let py = format!(
        "import redis\n\
         r = redis.Redis(port={port}, password='{MAIN}')\n\
         r.set('py', 'ok')\n\
         assert r.get('py') == b'ok'\n\
         try:\n    redis.Redis(port={port}, password='{WRONG}').get('py')\n    raise SystemExit('a wrong password was accepted')\n\
         except redis.exceptions.AuthenticationError:\n    pass\n\
         print('redis-py ok')\n"
    );
    let out = Command::new("python3")
        .args(["-c", &py])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "redis-py with a password (pip install redis; scripts/test does): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
