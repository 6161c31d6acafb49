//! A connection's byte stream: plain TCP, or TCP under TLS. The handshake
//! speaks over a whole [`Link`]; a running connection splits it for its
//! reader and writer fibers.

use rustls::pki_types::CertificateDer;
use sampan_fiber::Signal;
use sampan_fiber::net::{ReadHalf, ShutdownHandle, TcpStream, WriteHalf};
use sampan_fiber::tls::{TlsReadHalf, TlsStream, TlsWriteHalf};
use std::io::{self, IoSlice};

/// A connection's stream.
pub(crate) enum Link {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Link {
    pub(crate) async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.read(buf).await,
            Link::Tls(s) => s.read(buf).await,
        }
    }

    pub(crate) async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.write_all(buf).await,
            Link::Tls(s) => s.write_all(buf).await,
        }
    }

    /// The peer's certificate chain, under TLS.
    pub(crate) fn peer_certificates(&self) -> Option<Vec<CertificateDer<'static>>> {
        match self {
            Link::Plain(_) => None,
            Link::Tls(s) => s.peer_certificates(),
        }
    }

    pub(crate) fn shutdown_handle(&self) -> ShutdownHandle {
        match self {
            Link::Plain(s) => s.shutdown_handle(),
            Link::Tls(s) => s.tcp().shutdown_handle(),
        }
    }

    /// Splits the stream; under TLS, the reader notifies `out_ready` when
    /// it leaves TLS output for the writer.
    pub(crate) fn into_split(self, out_ready: Signal) -> (LinkRead, LinkWrite) {
        match self {
            Link::Plain(s) => {
                let (r, w) = s.into_split();
                (LinkRead::Plain(r), LinkWrite::Plain(w))
            }
            Link::Tls(s) => {
                let (r, w) = s.into_split(out_ready);
                (LinkRead::Tls(r), LinkWrite::Tls(w))
            }
        }
    }
}

/// The reading half of a [`Link`].
pub(crate) enum LinkRead {
    Plain(ReadHalf),
    Tls(TlsReadHalf),
}

impl LinkRead {
    pub(crate) async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            LinkRead::Plain(s) => s.read(buf).await,
            LinkRead::Tls(s) => s.read(buf).await,
        }
    }
}

/// The writing half of a [`Link`].
pub(crate) enum LinkWrite {
    Plain(WriteHalf),
    Tls(TlsWriteHalf),
}

impl LinkWrite {
    pub(crate) async fn write_all_vectored(&self, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        match self {
            LinkWrite::Plain(s) => s.write_all_vectored(bufs).await,
            LinkWrite::Tls(s) => s.write_all_vectored(bufs).await,
        }
    }

    /// Whether TLS output the reader left waits to be sent.
    pub(crate) fn wants_write(&self) -> bool {
        match self {
            LinkWrite::Plain(_) => false,
            LinkWrite::Tls(s) => s.wants_write(),
        }
    }
}
