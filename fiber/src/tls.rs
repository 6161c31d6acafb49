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
//! Not here: which certificates to trust, and who the peer is; the caller
//! builds the rustls config and reads [`TlsStream::peer_certificates`].

use crate::net::TcpStream;
use rustls::pki_types::CertificateDer;
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::Shutdown;

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
        let mut conn = self.conn.borrow_mut();
        let mut rx = self.rx.borrow_mut();
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

    /// Sends what rustls has queued (alerts, key updates).
    async fn flush_pending(&self) -> io::Result<()> {
        let mut tx = std::mem::take(&mut *self.tx.borrow_mut());
        tx.clear();
        {
            let mut conn = self.conn.borrow_mut();
            while conn.wants_write() {
                conn.write_tls(&mut tx)?;
            }
        }
        let sent = if tx.is_empty() {
            Ok(())
        } else {
            self.sock.write_all(&tx).await
        };
        *self.tx.borrow_mut() = tx;
        sent
    }

    /// Encrypts and sends all of `data` (in records of up to 16 KiB).
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        loop {
            let mut tx = std::mem::take(&mut *self.tx.borrow_mut());
            tx.clear();
            {
                let mut conn = self.conn.borrow_mut();
                if !data.is_empty() {
                    let n = conn.writer().write(data)?;
                    data = &data[n..];
                }
                while conn.wants_write() {
                    conn.write_tls(&mut tx)?;
                }
            }
            let done = tx.is_empty();
            let sent = if done {
                Ok(())
            } else {
                self.sock.write_all(&tx).await
            };
            *self.tx.borrow_mut() = tx;
            sent?;
            if done && data.is_empty() {
                return Ok(());
            }
        }
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
}
