//! TLS over a [`TcpStream`], for a connection served by one fiber (the
//! Redis port's): rustls driven by hand, so no async TLS adapter (and no
//! second crypto provider) is needed.
//!
//! [`TlsStream::read`] may be cancelled (raced against an idle timeout)
//! without losing bytes: ciphertext read from the socket is handed to
//! rustls before the next await, and rustls is fed only while it holds no
//! plaintext. A cancelled [`TlsStream::write_all`] may have sent part of a
//! record: close the connection then (it cannot be resumed).
//!
//! A stream may also be split ([`TlsStream::into_split`]) for a reader
//! fiber and a writer fiber: they share the rustls connection, only the
//! writer writes to the socket, and the reader wakes it (a signal the
//! caller gives) when reading left TLS output to send (an alert, a key
//! update's answer). No borrow is held across an await.
//!
//! Not here: which certificates to trust, and who the peer is; the caller
//! builds the rustls config and reads [`TlsStream::peer_certificates`].

use crate::Signal;
use crate::net::{ReadHalf, TcpStream, WriteHalf};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::cell::RefCell;
use std::io::IoSlice;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::rc::Rc;

/// The crypto every TLS config of Sampan uses: rustls's ring provider.
/// rustls 0.23.48 marks it deprecated to steer users to aws-lc-rs for
/// post-quantum key exchange; ring builds with a C compiler alone (aws-lc
/// is eight times its C) and its classical key exchange is what Redis
/// clients offer. Revisit when post-quantum key exchange matters here.
#[allow(deprecated)]
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// Bytes read from the socket at a time.
const RX_BYTES: usize = 16 << 10;

/// Unconsumed ciphertext read from the socket.
#[derive(Default)]
struct Rx {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// A TCP stream under TLS, after its handshake. Shard-local.
pub struct TlsStream {
    sock: TcpStream,
    conn: RefCell<rustls::Connection>,
    rx: RefCell<Rx>,
    tx: RefCell<Vec<u8>>,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("protocol", &self.conn.borrow().protocol_version())
            .finish()
    }
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsStream {
    /// Runs the TLS handshake of `conn` (a server or client connection)
    /// over `sock`. Bound it with a timeout: a peer that stops mid-way
    /// holds it otherwise. A refused handshake sends rustls's alert (best
    /// effort) and fails with `InvalidData`.
    pub async fn handshake(
        sock: TcpStream,
        conn: impl Into<rustls::Connection>,
    ) -> io::Result<TlsStream> {
        let mut conn = conn.into();
        let mut buf = vec![0u8; RX_BYTES];
        let mut tx = Vec::new();
        let mut leftover = Rx::default();
        loop {
            while conn.wants_write() {
                tx.clear();
                conn.write_tls(&mut tx)?;
                sock.write_all(&tx).await?;
            }
            if !conn.is_handshaking() {
                break;
            }
            let n = sock.read(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed during the TLS handshake",
                ));
            }
            let mut data = &buf[..n];
            while !data.is_empty() && conn.is_handshaking() {
                conn.read_tls(&mut data)?;
                if let Err(e) = conn.process_new_packets() {
                    tx.clear();
                    let _ = conn.write_tls(&mut tx);
                    let _ = sock.write_all(&tx).await;
                    return Err(invalid(e));
                }
            }
            if !data.is_empty() {
                // Application data sent right after the handshake.
                leftover.buf = data.to_vec();
                leftover.end = leftover.buf.len();
            }
        }
        Ok(TlsStream {
            sock,
            conn: RefCell::new(conn),
            rx: RefCell::new(leftover),
            tx: RefCell::new(tx),
        })
    }

    /// The peer's certificate chain (end entity first), if it sent one.
    pub fn peer_certificates(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.conn
            .borrow()
            .peer_certificates()
            .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
    }

    /// Reads plaintext into `buf`; `Ok(0)` at the end of the stream (the
    /// peer's `close_notify`, or a FIN without one).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(n) = self.step(buf)? {
                return Ok(n);
            }
            // rustls wants bytes, and `rx` is empty: this await is the only
            // one, and cancelling it loses nothing.
            self.flush_pending().await?;
            let mut rx = std::mem::take(&mut *self.rx.borrow_mut());
            rx.buf.resize(RX_BYTES, 0);
            let got = self.sock.read(&mut rx.buf).await;
            rx.start = 0;
            rx.end = *got.as_ref().unwrap_or(&0);
            *self.rx.borrow_mut() = rx;
            if got? == 0 {
                self.conn.borrow_mut().read_tls(&mut io::empty())?;
            }
        }
    }

    /// Plaintext now (`Some`, 0 at the end), or `None`: rustls needs more
    /// bytes from the socket.
    fn step(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        step(&mut self.conn.borrow_mut(), &mut self.rx.borrow_mut(), buf)
    }

    /// Sends what rustls has queued (alerts, key updates).
    async fn flush_pending(&self) -> io::Result<()> {
        seal_all(&self.conn, &self.tx, &self.sock, &mut []).await
    }

    /// Encrypts and sends all of `data` (in records of up to 16 KiB).
    pub async fn write_all(&self, data: &[u8]) -> io::Result<()> {
        seal_all(&self.conn, &self.tx, &self.sock, &mut [IoSlice::new(data)]).await
    }

    /// Sends `close_notify` (best effort) and shuts the socket down.
    pub async fn close(&self) -> io::Result<()> {
        self.conn.borrow_mut().send_close_notify();
        let _ = self.flush_pending().await;
        self.sock.shutdown(Shutdown::Both)
    }

    /// The TCP stream under it (for its addresses and options).
    pub fn tcp(&self) -> &TcpStream {
        &self.sock
    }

    /// Splits the stream for a reader fiber and a writer fiber; the reader
    /// notifies `out_ready` when it leaves TLS output for the writer to
    /// send.
    pub fn into_split(self, out_ready: Signal) -> (TlsReadHalf, TlsWriteHalf) {
        let core = Rc::new(Core {
            conn: self.conn,
            out_ready,
        });
        let (read, write) = self.sock.into_split();
        (
            TlsReadHalf {
                sock: read,
                core: core.clone(),
                rx: self.rx,
            },
            TlsWriteHalf {
                sock: write,
                core,
                tx: self.tx,
            },
        )
    }
}

/// A socket (whole or its write half) ciphertext is sent on.
trait SendAll {
    async fn send_all(&self, bytes: &[u8]) -> io::Result<()>;
}

impl SendAll for TcpStream {
    async fn send_all(&self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes).await
    }
}

impl SendAll for WriteHalf {
    async fn send_all(&self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes).await
    }
}

/// Encrypts every byte of `bufs` (advanced as rustls takes them) and
/// sends the records, with any TLS output already queued, on `sock`;
/// `tx` is the reused ciphertext buffer. No borrow is held across the
/// send.
async fn seal_all(
    conn: &RefCell<rustls::Connection>,
    tx: &RefCell<Vec<u8>>,
    sock: &impl SendAll,
    mut bufs: &mut [IoSlice<'_>],
) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    loop {
        let mut out = std::mem::take(&mut *tx.borrow_mut());
        out.clear();
        {
            let mut conn = conn.borrow_mut();
            if !bufs.is_empty() {
                let n = conn.writer().write_vectored(bufs)?;
                IoSlice::advance_slices(&mut bufs, n);
            }
            while conn.wants_write() {
                conn.write_tls(&mut out)?;
            }
        }
        let done = out.is_empty();
        let sent = if done {
            Ok(())
        } else {
            sock.send_all(&out).await
        };
        *tx.borrow_mut() = out;
        sent?;
        if done && bufs.is_empty() {
            return Ok(());
        }
    }
}

/// The CA certificates in `ca_file` (PEM), as a root store; the error
/// names the file.
pub fn read_roots(ca_file: &Path) -> Result<rustls::RootCertStore, String> {
    let named = |e: &dyn std::fmt::Display| format!("{}: {e}", ca_file.display());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| named(&e))? {
        roots
            .add(cert.map_err(|e| named(&e))?)
            .map_err(|e| named(&e))?;
    }
    if roots.is_empty() {
        return Err(named(&"no certificate in the file"));
    }
    Ok(roots)
}

/// A certificate chain and its private key (PEM files); the error names
/// the file at fault.
pub fn read_chain_and_key(
    cert_file: &Path,
    key_file: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let named = |file: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", file.display());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| named(cert_file, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| named(cert_file, &e))?;
    if chain.is_empty() {
        return Err(named(cert_file, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| named(key_file, &e))?;
    Ok((chain, key))
}

/// What the two halves of a split stream share.
struct Core {
    conn: RefCell<rustls::Connection>,
    out_ready: Signal,
}

/// The reading half of a split [`TlsStream`].
pub struct TlsReadHalf {
    sock: ReadHalf,
    core: Rc<Core>,
    rx: RefCell<Rx>,
}

impl std::fmt::Debug for TlsReadHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsReadHalf")
    }
}

/// Plaintext from `conn` fed from `rx` (see [`TlsStream::read`]'s step).
fn step(conn: &mut rustls::Connection, rx: &mut Rx, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match conn.reader().read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // A FIN without close_notify: framing above catches a cut.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Some(0)),
            Err(e) => return Err(e),
        }
        if rx.start == rx.end {
            return Ok(None);
        }
        let mut pending = &rx.buf[rx.start..rx.end];
        rx.start += conn.read_tls(&mut pending)?;
        conn.process_new_packets().map_err(invalid)?;
    }
}

impl TlsReadHalf {
    /// Reads plaintext into `buf`; `Ok(0)` at the end of the stream.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let stepped = {
                let mut conn = self.core.conn.borrow_mut();
                let got = step(&mut conn, &mut self.rx.borrow_mut(), buf);
                if conn.wants_write() {
                    self.core.out_ready.notify_all();
                }
                got?
            };
            if let Some(n) = stepped {
                return Ok(n);
            }
            let mut space = std::mem::take(&mut self.rx.borrow_mut().buf);
            space.resize(RX_BYTES, 0);
            let got = self.sock.read(&mut space).await;
            let n = *got.as_ref().unwrap_or(&0);
            *self.rx.borrow_mut() = Rx {
                buf: space,
                start: 0,
                end: n,
            };
            if got? == 0 {
                self.core.conn.borrow_mut().read_tls(&mut io::empty())?;
            }
        }
    }
}

/// The writing half of a split [`TlsStream`].
pub struct TlsWriteHalf {
    sock: WriteHalf,
    core: Rc<Core>,
    tx: RefCell<Vec<u8>>,
}

impl std::fmt::Debug for TlsWriteHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsWriteHalf")
    }
}

impl TlsWriteHalf {
    /// Encrypts every byte of `bufs` (rustls packs them into records of up
    /// to 16 KiB) and sends the records, with any TLS output the reader
    /// left; `bufs` is left empty.
    pub async fn write_all_vectored(&self, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        seal_all(&self.core.conn, &self.tx, &self.sock, bufs).await
    }

    /// Whether TLS output waits to be sent (the reader left some).
    pub fn wants_write(&self) -> bool {
        self.core.conn.borrow().wants_write()
    }
}
