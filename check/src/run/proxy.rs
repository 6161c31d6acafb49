//! A fault-injecting proxy on each replication link: this kernel has no
//! `netem` qdisc, so delay, reordering and duplication of node-to-node
//! traffic come from here.
//!
//! Node `i` reaches node `j > i` (the lower id dials) through a proxy that
//! listens on `127.0.0.1:<PROXY_PORT_BASE + j>` inside node `i`'s network
//! namespace and dials node `j` from that namespace too, so the packets on
//! the wire still go from `i`'s address to `j`'s and the iptables faults
//! cut them as before. The proxy reads whole frames (the transport's
//! 36-byte header carries the body length at offset 24) and sends each
//! when it is due: at once while the link is healthy; after a delay with
//! jitter (so frames overtake each other: reordering), and sometimes twice,
//! while a fault is on. Bytes that do not parse as frames pass through
//! unchanged.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::HarnessError;
use crate::rng::Rng;

/// Proxies listen on this port plus the id of the node they lead to.
pub const PROXY_PORT_BASE: u16 = 7100;

/// The transport's frame header length and where its body length sits.
const HEADER_LEN: usize = 36;
const BODY_LEN_AT: usize = 24;
/// The transport's magic ("SMPN", little endian).
const MAGIC: [u8; 4] = 0x534D_504Eu32.to_le_bytes();

/// The faults every proxy applies now, and what they did.
#[derive(Debug, Default)]
pub struct LinkFaults {
    /// Base delay of each frame, ms (0: none).
    pub delay_ms: AtomicU64,
    /// Up to this much more, at random per frame, ms.
    pub jitter_ms: AtomicU64,
    /// Per mille of frames sent twice.
    pub duplicate_per_mille: AtomicU64,
    /// Frames that were delayed.
    pub delayed: AtomicU64,
    /// Frames sent before a frame read earlier on the same link.
    pub reordered: AtomicU64,
    /// Frames sent twice.
    pub duplicated: AtomicU64,
    /// Set to stop every proxy.
    pub stop: AtomicBool,
}

impl LinkFaults {
    /// Turns the faults off.
    pub fn clear(&self) {
        self.delay_ms.store(0, Ordering::Relaxed);
        self.jitter_ms.store(0, Ordering::Relaxed);
        self.duplicate_per_mille.store(0, Ordering::Relaxed);
    }

    /// (delayed, reordered, duplicated) so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.delayed.load(Ordering::Relaxed),
            self.reordered.load(Ordering::Relaxed),
            self.duplicated.load(Ordering::Relaxed),
        )
    }
}

/// Enters network namespace `ns` on the calling thread.
fn enter_namespace(ns: &str) -> std::io::Result<()> {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))?;
    // SAFETY: the descriptor is an open namespace file; setns only changes
    // this thread's network namespace.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Starts a proxy in namespace `ns` from `127.0.0.1:port` to `upstream`.
pub fn start(
    ns: String,
    port: u16,
    upstream: SocketAddr,
    faults: Arc<LinkFaults>,
    seed: u64,
) -> Result<(), HarnessError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let listener = enter_namespace(&ns)
            .and_then(|()| TcpListener::bind(("127.0.0.1", port)))
            .and_then(|l| l.set_nonblocking(true).map(|()| l));
        let listener = match listener {
            Ok(l) => {
                let _ = tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        let mut n = 0u64;
        while !faults.stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((down, _)) => {
                    // Dialled from this thread, so from `ns`.
                    let Ok(up) = TcpStream::connect_timeout(&upstream, Duration::from_secs(1))
                    else {
                        continue;
                    };
                    n += 1;
                    let _ = down.set_nonblocking(false);
                    // Frames go on at once, as the nodes' own sockets send
                    // them (no Nagle delay added by the proxy).
                    let _ = down.set_nodelay(true);
                    let _ = up.set_nodelay(true);
                    for (from, to, salt) in [(&down, &up, 1u64), (&up, &down, 2u64)] {
                        let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                            continue;
                        };
                        let f = faults.clone();
                        let seed = seed ^ (n << 8) ^ salt;
                        std::thread::spawn(move || pump(from, to, f, seed));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    rx.recv()
        .map_err(|_| HarnessError::Setup("a proxy thread died at start".into()))?
        .map_err(|e| HarnessError::Setup(format!("proxy on port {port}: {e}")))
}

/// Moves frames from `from` to `to` until either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream, faults: Arc<LinkFaults>, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    // (due, sequence) -> bytes, earliest first.
    let mut queue: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>> = BinaryHeap::new();
    let (mut read_seq, mut sent_seq) = (0u64, 0u64);
    let mut raw = false;
    'outer: loop {
        if faults.stop.load(Ordering::Relaxed) {
            break;
        }
        // Wake for the next frame due, or now and then to see `stop`.
        let wait = queue
            .peek()
            .map(|Reverse((due, _, _))| due.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(50))
            .clamp(Duration::from_millis(1), Duration::from_millis(50));
        let _ = from.set_read_timeout(Some(wait));
        match from.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        // Whole frames out of the buffer.
        loop {
            let take = if raw {
                buf.len()
            } else if buf.len() >= 4 && buf[..4] != MAGIC {
                raw = true;
                buf.len()
            } else if buf.len() >= HEADER_LEN {
                let mut len = [0u8; 4];
                len.copy_from_slice(&buf[BODY_LEN_AT..BODY_LEN_AT + 4]);
                let total = HEADER_LEN + u32::from_le_bytes(len) as usize;
                if buf.len() >= total { total } else { 0 }
            } else {
                0
            };
            if take == 0 {
                break;
            }
            let frame: Vec<u8> = buf.drain(..take).collect();
            let delay = faults.delay_ms.load(Ordering::Relaxed);
            let jitter = faults.jitter_ms.load(Ordering::Relaxed);
            let now = Instant::now();
            let due = if delay + jitter == 0 {
                now
            } else {
                faults.delayed.fetch_add(1, Ordering::Relaxed);
                now + Duration::from_millis(delay + rng.below(jitter + 1))
            };
            read_seq += 1;
            let dup = faults.duplicate_per_mille.load(Ordering::Relaxed);
            if dup > 0 && rng.below(1000) < dup {
                faults.duplicated.fetch_add(1, Ordering::Relaxed);
                let later = due + Duration::from_millis(rng.below(jitter + 1));
                queue.push(Reverse((later, read_seq, frame.clone())));
            }
            queue.push(Reverse((due, read_seq, frame)));
        }
        // Everything due, in order of due time.
        let now = Instant::now();
        while queue.peek().is_some_and(|Reverse((due, _, _))| *due <= now) {
            let Some(Reverse((_, seq, bytes))) = queue.pop() else {
                break;
            };
            if seq < sent_seq {
                faults.reordered.fetch_add(1, Ordering::Relaxed);
            }
            sent_seq = sent_seq.max(seq);
            if to.write_all(&bytes).is_err() {
                break 'outer;
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
