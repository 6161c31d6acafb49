//! TCP on the shard (glommio's networking), behind names of ours so that the
//! transport never calls glommio itself.
//!
//! Shard-local like everything else here: a [`TcpStream`] lives on the shard
//! that made it. [`TcpStream::into_split`] gives a [`ReadHalf`] and a
//! [`WriteHalf`] so that one fiber reads while another writes; both halves
//! share the socket through an `Rc<RefCell<..>>` that is borrowed only inside
//! a single `poll`, never across an `.await`, so the two cannot conflict.
//!
//! Writes of several buffers go out in one `sendmsg` ([`WriteHalf::write_vectored`]):
//! glommio 0.9 has no vectored write of its own (its `poll_write_vectored`
//! falls back to the first buffer), so we call `sendmsg(MSG_DONTWAIT)` on the
//! socket first and, only when the kernel's send buffer is full, fall back to
//! glommio's write of the first buffer, which waits for writability through
//! io_uring.

use futures_lite::io::{AsyncRead, AsyncWrite};
use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Most buffers one vectored write passes to the kernel (Linux `IOV_MAX`).
pub const IOV_MAX: usize = 1024;

/// A TCP listener on the current shard. The socket has `SO_REUSEPORT` set
/// (glommio does so), so a restarted node can bind its port again at once.
#[derive(Debug)]
pub struct TcpListener {
    inner: glommio::net::TcpListener,
}

impl TcpListener {
    /// Binds to `addr` (port 0 picks a free port) and starts listening.
    /// Must run on a shard.
    pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        let inner = glommio::net::TcpListener::bind(addr).map_err(io::Error::from)?;
        Ok(TcpListener { inner })
    }

    /// Waits for the next connection; returns it with the peer's address.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let accepted = self.inner.shared_accept().await.map_err(io::Error::from)?;
        let peer = accepted.peer_addr().map_err(io::Error::from)?;
        Ok((TcpStream::new(accepted.bind_to_executor()), peer))
    }

    /// The address the listener is bound to (with the real port when bound
    /// to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr().map_err(io::Error::from)
    }
}

/// A connected TCP stream on the current shard.
#[derive(Debug)]
pub struct TcpStream {
    inner: Rc<RefCell<glommio::net::TcpStream>>,
}

impl TcpStream {
    fn new(inner: glommio::net::TcpStream) -> TcpStream {
        TcpStream {
            inner: Rc::new(RefCell::new(inner)),
        }
    }

    /// Connects to `addr`, giving up after `timeout` (an error of kind
    /// `TimedOut`). A zero `timeout` is refused (`InvalidInput`).
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let inner = glommio::net::TcpStream::connect_timeout(addr, timeout)
            .await
            .map_err(io::Error::from)?;
        Ok(TcpStream::new(inner))
    }

    /// Turns Nagle's algorithm off (`true`) or on. A transport that coalesces
    /// its own writes wants it off: each write is a whole batch already.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.inner.borrow().set_nodelay(on).map_err(io::Error::from)
    }

    /// Whether the peer closed its side (an orderly FIN seen, nothing
    /// unread before it) or the connection failed, checked without
    /// blocking and without taking any byte: a `recv` with `MSG_PEEK |
    /// MSG_DONTWAIT`. Unread data (or nothing yet) answers `false`.
    pub fn peer_closed(&self) -> bool {
        let fd = self.inner.borrow().as_raw_fd();
        let mut byte = 0u8;
        // SAFETY: `fd` is this stream's open socket and `byte` is a live
        // one-byte buffer for the duration of the call.
        let rc = unsafe {
            libc::recv(
                fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        match rc {
            0 => true,
            n if n > 0 => false,
            _ => {
                let e = io::Error::last_os_error();
                !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                )
            }
        }
    }

    /// Turns TCP keepalive on, probing after `idle` of silence, then every
    /// `idle / 3` (at least a second), and closing after 3 unanswered
    /// probes: a peer that vanished without a FIN (a half-open connection)
    /// is found and the connection fails, as with Redis's `tcp-keepalive`.
    /// `None` turns it off.
    pub fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()> {
        let fd = self.inner.borrow().as_raw_fd();
        let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
            // SAFETY: `fd` is this stream's open socket, and the option
            // value is a c_int that lives across the call.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    level,
                    name,
                    (&value as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        let Some(idle) = idle else {
            return set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 0);
        };
        let secs =
            |d: Duration| libc::c_int::try_from(d.as_secs().max(1)).unwrap_or(libc::c_int::MAX);
        set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs(idle))?;
        set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs(idle / 3))?;
        set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3)?;
        set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.borrow().nodelay().map_err(io::Error::from)
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.borrow().peer_addr().map_err(io::Error::from)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.borrow().local_addr().map_err(io::Error::from)
    }

    /// A handle that can shut the socket down from anywhere on the shard
    /// (to wake a reader or writer fiber that owns a half).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            inner: self.inner.clone(),
        }
    }

    /// Splits the stream into a read half and a write half, for a reader
    /// fiber and a writer fiber. The socket closes when both are dropped.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        (
            ReadHalf {
                inner: self.inner.clone(),
            },
            WriteHalf { inner: self.inner },
        )
    }

    /// Reads into `buf`; see [`ReadHalf::read`].
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        read(&self.inner, buf).await
    }

    /// Writes all of `buf`; see [`WriteHalf::write_all`].
    pub async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        write_all(&self.inner, buf).await
    }

    /// Shuts down one or both directions; see [`WriteHalf::shutdown`].
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        shutdown(&self.inner, how)
    }
}

/// Shuts a socket down without owning either half of it. The socket stays
/// open (its file descriptor) until the stream's halves and every handle
/// are dropped.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    inner: Rc<RefCell<glommio::net::TcpStream>>,
}

impl ShutdownHandle {
    /// Shuts down one or both directions of the socket, which wakes a read
    /// or write waiting on it (a read then returns `Ok(0)`).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        shutdown(&self.inner, how)
    }
}

/// The reading side of a split [`TcpStream`].
#[derive(Debug)]
pub struct ReadHalf {
    inner: Rc<RefCell<glommio::net::TcpStream>>,
}

impl ReadHalf {
    /// Reads what is available into `buf` (waiting until something is);
    /// `Ok(0)` means the peer closed its side or the socket was shut down.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        read(&self.inner, buf).await
    }

    /// Shuts down one or both directions of the socket, which wakes a read
    /// or write waiting on it (a read then returns `Ok(0)`).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        shutdown(&self.inner, how)
    }
}

/// The writing side of a split [`TcpStream`].
#[derive(Debug)]
pub struct WriteHalf {
    inner: Rc<RefCell<glommio::net::TcpStream>>,
}

impl WriteHalf {
    /// Writes as much of `bufs`, in order, as the socket takes in one
    /// `sendmsg` (at most [`IOV_MAX`] buffers are passed); waits for room
    /// when the send buffer is full. Returns the bytes written (0 only if
    /// `bufs` holds no bytes).
    pub async fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        poll_fn(|cx| poll_write_vectored(&self.inner, cx, bufs)).await
    }

    /// Writes every byte of `bufs`, in as few `sendmsg` calls as the kernel
    /// allows. `bufs` is advanced as bytes go out (it is left empty).
    pub async fn write_all_vectored(&self, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        IoSlice::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            let n = self.write_vectored(bufs).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut bufs, n);
        }
        Ok(())
    }

    /// Writes all of `buf`.
    pub async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        write_all(&self.inner, buf).await
    }

    /// Shuts down one or both directions of the socket, which wakes a read
    /// or write waiting on it.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        shutdown(&self.inner, how)
    }
}

async fn read(inner: &RefCell<glommio::net::TcpStream>, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| Pin::new(&mut *inner.borrow_mut()).poll_read(cx, buf)).await
}

async fn write_all(inner: &RefCell<glommio::net::TcpStream>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *inner.borrow_mut()).poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

fn shutdown(inner: &RefCell<glommio::net::TcpStream>, how: Shutdown) -> io::Result<()> {
    let fd = inner.borrow().as_raw_fd();
    let how = match how {
        Shutdown::Read => libc::SHUT_RD,
        Shutdown::Write => libc::SHUT_WR,
        Shutdown::Both => libc::SHUT_RDWR,
    };
    // SAFETY: `fd` is the open socket owned by `inner`, alive for this call.
    let rc = unsafe { libc::shutdown(fd, how) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    // Already disconnected: the goal (no more traffic) holds.
    if err.raw_os_error() == Some(libc::ENOTCONN) {
        return Ok(());
    }
    Err(err)
}

fn poll_write_vectored(
    inner: &RefCell<glommio::net::TcpStream>,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    let bufs = &bufs[..bufs.len().min(IOV_MAX)];
    let Some(first) = bufs.iter().find(|b| !b.is_empty()) else {
        return Poll::Ready(Ok(0));
    };
    let mut stream = inner.borrow_mut();
    match sendmsg_nowait(stream.as_raw_fd(), bufs) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            // The send buffer is full: glommio's write waits for room through
            // io_uring and then writes (part of) the first buffer.
            Pin::new(&mut *stream).poll_write(cx, first)
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
        other => Poll::Ready(other),
    }
}

/// One non-blocking `sendmsg` of `bufs` (no `SIGPIPE` on a closed peer).
fn sendmsg_nowait(fd: i32, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no address, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with `struct iovec` on Unix.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len() as _;
    // SAFETY: `msg` points at `bufs`, valid for reads for this call; the
    // kernel does not write through `msg_iov` for sendmsg.
    let rc = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IO_MEMORY_MIN_BYTES, Runtime, TaskClass, spawn};

    fn runtime() -> Runtime {
        Runtime::builder()
            .shards(1)
            .io_memory_bytes(IO_MEMORY_MIN_BYTES)
            .build()
            .expect("runtime starts")
    }

    fn localhost() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[test]
    fn vectored_write_reaches_the_peer_in_order_even_past_the_send_buffer() {
        let rt = runtime();
        let got = rt
            .shard(0)
            .expect("shard 0")
            .run_blocking(TaskClass::Latency, || async {
                let listener = TcpListener::bind(localhost()).expect("bind");
                let addr = listener.local_addr().expect("addr");
                // 4 MiB in 3 pieces, more than a loopback send buffer holds,
                // so the writer has to wait for the reader at least once.
                let pieces: Vec<Vec<u8>> = (0..3u8)
                    .map(|i| vec![i + 1; if i == 1 { 4 << 20 } else { 7 }])
                    .collect();
                let total: usize = pieces.iter().map(Vec::len).sum();
                let writer = spawn(TaskClass::Latency, "writer", async move {
                    let s = TcpStream::connect(addr, Duration::from_secs(5))
                        .await
                        .expect("connect");
                    s.set_nodelay(true).expect("nodelay");
                    assert!(s.nodelay().expect("nodelay"));
                    let (_r, w) = s.into_split();
                    let mut slices: Vec<IoSlice<'_>> =
                        pieces.iter().map(|p| IoSlice::new(p)).collect();
                    w.write_all_vectored(&mut slices).await.expect("write");
                    w.shutdown(Shutdown::Write).expect("shutdown");
                })
                .expect("spawn");
                let (s, _peer) = listener.accept().await.expect("accept");
                let mut got = Vec::with_capacity(total);
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = s.read(&mut buf).await.expect("read");
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                writer.join().await.expect("writer ok");
                got
            })
            .expect("ran");
        assert_eq!(got.len(), 7 + (4 << 20) + 7);
        assert!(got[..7].iter().all(|&b| b == 1));
        assert!(got[7..7 + (4 << 20)].iter().all(|&b| b == 2));
        assert!(got[7 + (4 << 20)..].iter().all(|&b| b == 3));
        rt.shutdown(Duration::from_secs(1)).expect("shutdown");
    }

    #[test]
    fn shutdown_wakes_a_pending_read_and_connect_to_a_closed_port_fails() {
        let rt = runtime();
        rt.shard(0)
            .expect("shard 0")
            .run_blocking(TaskClass::Latency, || async {
                let listener = TcpListener::bind(localhost()).expect("bind");
                let addr = listener.local_addr().expect("addr");
                let client = TcpStream::connect(addr, Duration::from_secs(5))
                    .await
                    .expect("connect");
                let (_server, peer) = listener.accept().await.expect("accept");
                assert_eq!(peer, client.local_addr().expect("local"));
                assert_eq!(client.peer_addr().expect("peer"), addr);
                let (r, w) = client.into_split();
                let reader = spawn(TaskClass::Latency, "reader", async move {
                    let mut buf = [0u8; 16];
                    r.read(&mut buf).await
                })
                .expect("spawn");
                crate::yield_now().await;
                w.shutdown(Shutdown::Both).expect("shutdown");
                let n = reader.join().await.expect("joined").expect("read ok");
                assert_eq!(n, 0, "a shut-down socket reads end of stream");
                drop(listener);
                let refused = TcpStream::connect(addr, Duration::from_secs(5)).await;
                assert!(refused.is_err(), "nobody listens any more");
            })
            .expect("ran");
        rt.shutdown(Duration::from_secs(1)).expect("shutdown");
    }
}
