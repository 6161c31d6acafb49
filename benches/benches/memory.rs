//! Memory per key, by type: Sampan's KV state (counted by a global
//! allocator that tallies live bytes) beside redis-server's `used_memory`
//! (its allocator's count), for the same keys loaded the same way.
//!
//! `cargo bench -p sampan-benches --bench memory [-- N]` (N keys per type,
//! default 100,000). redis-server must be on the PATH for its column
//! (`apt-get install redis-server`); without it the column says so.

use bytes::Bytes;
use sampan_kv::{DataCmd, KvCommand, KvConfig, KvRequest, KvStore, ZAddFlags};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting live bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator with the same
// layout; the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Elements per collection.
const ELEMENTS: usize = 10;

/// The commands that load `n` keys of `kind`, as Redis arguments.
fn commands(kind: &str, n: usize) -> Vec<Vec<String>> {
    (0..n)
        .map(|i| {
            let key = format!("{kind}:{i:08}");
            let mut c = match kind {
                "string" => vec!["SET".into(), key, format!("{:0100}", i)],
                "hash" => vec!["HSET".into(), key],
                "list" => vec!["RPUSH".into(), key],
                "set" => vec!["SADD".into(), key],
                _ => vec!["ZADD".into(), key],
            };
            for e in 0..if kind == "string" { 0 } else { ELEMENTS } {
                match kind {
                    "hash" => c.extend([format!("field{e}"), format!("value{e:06}")]),
                    "zset" => c.extend([format!("{}", e as f64 * 1.5), format!("member{e}")]),
                    _ => c.push(format!("member{e}")),
                }
            }
            c
        })
        .collect()
}

fn to_command(args: &[String]) -> KvCommand {
    let b = |s: &String| Bytes::from(s.clone());
    let key = b(&args[1]);
    let rest: Vec<Bytes> = args[2..].iter().map(b).collect();
    match args[0].as_str() {
        "SET" => KvCommand::put(key, rest[0].clone()),
        "HSET" => KvCommand::Data(DataCmd::HSet {
            key,
            pairs: rest
                .chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect(),
            nx: false,
            ok: false,
        }),
        "RPUSH" => KvCommand::Data(DataCmd::Push {
            key,
            left: false,
            values: rest,
            existing: false,
        }),
        "SADD" => KvCommand::Data(DataCmd::SAdd { key, members: rest }),
        _ => KvCommand::Data(DataCmd::ZAdd {
            key,
            flags: ZAddFlags::default(),
            pairs: args[2..]
                .chunks(2)
                .map(|p| (p[0].parse().unwrap_or(0.0), Bytes::from(p[1].clone())))
                .collect(),
        }),
    }
}

/// Bytes per key the store holds after loading `cmds`. Each request is
/// built, applied and dropped in turn, as a node drops a log entry's
/// decoded command after applying it.
fn sampan(cmds: &[Vec<String>]) -> f64 {
    let before = LIVE.load(Ordering::Relaxed);
    let mut store = KvStore::new(KvConfig::default());
    for (i, c) in cmds.iter().enumerate() {
        let r = KvRequest::without_session(to_command(c));
        store.apply(i as u64 + 1, &r);
    }
    let after = LIVE.load(Ordering::Relaxed);
    let per_key = (after - before) as f64 / cmds.len() as f64;
    drop(store);
    per_key
}

/// A redis-server of our own for the measurement.
struct Redis {
    child: std::process::Child,
    conn: BufReader<TcpStream>,
}

impl Redis {
    fn start() -> Option<Redis> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
            l.local_addr().ok()?.port()
        };
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let stream = loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                break s;
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        Some(Redis {
            child,
            conn: BufReader::new(stream),
        })
    }

    fn send(&mut self, args: &[String]) {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        let _ = self.conn.get_mut().write_all(req.as_bytes());
    }

    /// Reads one reply, returning a bulk string's text.
    fn reply(&mut self) -> String {
        let mut line = String::new();
        let _ = self.conn.read_line(&mut line);
        if let Some(n) = line
            .strip_prefix('$')
            .and_then(|n| n.trim().parse::<usize>().ok())
        {
            let mut buf = vec![0u8; n + 2];
            let _ = std::io::Read::read_exact(&mut self.conn, &mut buf);
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        line
    }

    fn used_memory(&mut self) -> usize {
        self.send(&["INFO".into(), "memory".into()]);
        let info = self.reply();
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Bytes per key after loading `cmds` into an empty server.
    fn per_key(&mut self, cmds: &[Vec<String>]) -> f64 {
        self.send(&["FLUSHALL".into()]);
        self.reply();
        let before = self.used_memory();
        for chunk in cmds.chunks(1000) {
            for c in chunk {
                self.send(c);
            }
            for _ in chunk {
                self.reply();
            }
        }
        let after = self.used_memory();
        (after.saturating_sub(before)) as f64 / cmds.len() as f64
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let mut redis = Redis::start();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\n| {n} keys of each type ({ELEMENTS} elements of 6-13 B per collection; strings of 100 B) | Sampan B/key | redis-server B/key | Sampan / Redis |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for kind in ["string", "hash", "list", "set", "zset"] {
        let cmds = commands(kind, n);
        let ours = sampan(&cmds);
        let theirs = redis.as_mut().map(|r| r.per_key(&cmds));
        let _ = match theirs {
            Some(t) => writeln!(out, "| {kind} | {ours:.0} | {t:.0} | {:.2} |", ours / t),
            None => writeln!(
                out,
                "| {kind} | {ours:.0} | (redis-server not found: apt-get install redis-server) | |"
            ),
        };
    }
}
