//! A small pipelined RESP2 client over a blocking TCP socket: commands
//! are framed by hand into a write buffer, replies parsed with
//! `redis-protocol` from a read buffer. One connection belongs to one
//! thread.

use bytes::{BufMut, Bytes, BytesMut};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Longest a blocking read waits for a reply before the connection is
/// called dead.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A reply, reduced to what the benchmark looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`, an integer, a bulk string or an array: some answer.
    Value(Option<Bytes>),
    /// A nil bulk string or array.
    Nil,
    /// `-ERR ...`.
    Error(String),
}

impl From<BytesFrame> for Reply {
    fn from(f: BytesFrame) -> Reply {
        match f {
            BytesFrame::Error(e) => Reply::Error(e.to_string()),
            BytesFrame::Null => Reply::Nil,
            BytesFrame::BulkString(b) | BytesFrame::SimpleString(b) => Reply::Value(Some(b)),
            BytesFrame::Integer(_) | BytesFrame::Array(_) => Reply::Value(None),
        }
    }
}

/// Appends one command (a RESP array of bulk strings) to `buf`.
pub fn encode(buf: &mut BytesMut, args: &[&[u8]]) {
    buf.put_u8(b'*');
    put_decimal(buf, args.len() as u64);
    for a in args {
        buf.put_u8(b'$');
        put_decimal(buf, a.len() as u64);
        buf.put_slice(a);
        buf.put_slice(b"\r\n");
    }
}

/// Appends `n` in decimal and CRLF.
fn put_decimal(buf: &mut BytesMut, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.put_slice(&digits[i..]);
    buf.put_slice(b"\r\n");
}

/// One connection to a Redis port.
pub struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    scratch: Box<[u8]>,
    /// Commands waiting to be written ([`Conn::flush`]).
    pub wbuf: BytesMut,
}

impl Conn {
    /// Connects to `addr`, authenticates with `password` if given and
    /// selects database `db`.
    pub fn connect(addr: SocketAddr, password: Option<&str>, db: u64) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        let mut c = Conn {
            stream,
            rbuf: BytesMut::with_capacity(64 << 10),
            scratch: vec![0; 64 << 10].into_boxed_slice(),
            wbuf: BytesMut::with_capacity(64 << 10),
        };
        if let Some(p) = password {
            c.expect_ok(&[b"AUTH", p.as_bytes()], "AUTH")?;
        }
        if db != 0 {
            let db = db.to_string();
            c.expect_ok(&[b"SELECT", db.as_bytes()], "SELECT")?;
        }
        Ok(c)
    }

    fn expect_ok(&mut self, args: &[&[u8]], what: &str) -> io::Result<()> {
        match self.call(args)? {
            Reply::Error(e) => Err(io::Error::other(format!("{what} refused: {e}"))),
            _ => Ok(()),
        }
    }

    /// Sends one command and waits for its reply.
    pub fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        encode(&mut self.wbuf, args);
        self.flush()?;
        loop {
            if let Some(r) = self.parse()? {
                return Ok(r);
            }
            self.fill()?;
        }
    }

    /// Writes every buffered command.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf)?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// One reply from the bytes already read, if a whole one is there.
    pub fn parse(&mut self) -> io::Result<Option<Reply>> {
        if self.rbuf.is_empty() {
            return Ok(None);
        }
        match decode_bytes_mut(&mut self.rbuf) {
            Ok(Some((frame, _, _))) => Ok(Some(frame.into())),
            Ok(None) => Ok(None),
            Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        }
    }

    /// Reads what the socket has (blocking until something arrives, up to
    /// [`READ_TIMEOUT`]).
    pub fn fill(&mut self) -> io::Result<()> {
        let n = match self.stream.read(&mut self.scratch) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed by the server",
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no reply in time"));
            }
            Err(e) => return Err(e),
        };
        self.rbuf.extend_from_slice(&self.scratch[..n]);
        Ok(())
    }

    /// The socket's descriptor, for `ppoll`.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.stream.as_raw_fd()
    }

    /// `INFO section`'s text.
    pub fn info(&mut self, section: &str) -> io::Result<String> {
        match self.call(&[b"INFO", section.as_bytes()])? {
            Reply::Value(Some(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Reply::Error(e) => Err(io::Error::other(format!("INFO {section}: {e}"))),
            other => Err(io::Error::other(format!("INFO {section}: {other:?}"))),
        }
    }
}

/// The value of `field` in an `INFO` text (`field:value` lines).
pub fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_command_as_a_resp_array() {
        let mut b = BytesMut::new();
        encode(&mut b, &[b"SET", b"k", b"0123456789"]);
        assert_eq!(
            &b[..],
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123456789\r\n"
        );
    }

    #[test]
    fn reads_info_fields() {
        let info = "# Replication\r\nrole:master\r\nleader:2\r\n";
        assert_eq!(info_field(info, "role"), Some("master"));
        assert_eq!(info_field(info, "leader"), Some("2"));
        assert_eq!(info_field(info, "term"), None);
    }
}
