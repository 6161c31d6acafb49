//! A tiny blocking RESP client: what `sampan-cluster`'s demo steps and
//! the Redis-port tests use to talk to a node. It reads RESP2 and RESP3's
//! null, map, set, double, boolean and verbatim string (after `HELLO 3`). **Not for:** applications; use a
//! real Redis client library.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$n` bulk string; `None` for the nil bulk.
    Bulk(Option<Vec<u8>>),
    /// `*n` array; `None` for the nil array.
    Array(Option<Vec<Value>>),
    /// `%n` map (RESP3), its pairs in order.
    Map(Vec<(Value, Value)>),
    /// `~n` set (RESP3), its members in the order sent.
    Set(Vec<Value>),
    /// `,1.5` double (RESP3), as the text sent.
    Double(String),
    /// `#t` / `#f` boolean (RESP3).
    Bool(bool),
}

impl std::fmt::Display for Value {
    /// As redis-cli shows it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Simple(s) => write!(f, "{s}"),
            Value::Error(e) => write!(f, "(error) {e}"),
            Value::Int(i) => write!(f, "(integer) {i}"),
            Value::Bulk(None) | Value::Array(None) => write!(f, "(nil)"),
            Value::Bulk(Some(b)) => {
                let text = String::from_utf8_lossy(b);
                if text.contains('\n') {
                    write!(f, "\n    {}", text.trim_end().replace("\r\n", "\n    "))
                } else {
                    write!(f, "\"{text}\"")
                }
            }
            Value::Array(Some(items)) => {
                let parts: Vec<String> = items.iter().map(Value::to_string).collect();
                write!(f, "[{}]", parts.join(", "))
            }
            Value::Map(pairs) => {
                let parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                write!(f, "{{{}}}", parts.join(", "))
            }
            Value::Set(items) => {
                let parts: Vec<String> = items.iter().map(Value::to_string).collect();
                write!(f, "set({})", parts.join(", "))
            }
            Value::Double(d) => write!(f, "(double) {d}"),
            Value::Bool(b) => write!(f, "({b})"),
        }
    }
}

/// A tiny blocking RESP client to a node on 127.0.0.1.
#[derive(Debug)]
pub struct RespClient {
    reader: BufReader<TcpStream>,
}

impl RespClient {
    /// Connects to `port`; a reply may take up to 20 s.
    pub fn connect(port: u16) -> std::io::Result<RespClient> {
        RespClient::connect_with(port, Duration::from_secs(20))
    }

    /// Connects to `port`; a reply may take up to `read_timeout`.
    pub fn connect_with(port: u16, read_timeout: Duration) -> std::io::Result<RespClient> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(read_timeout))?;
        Ok(RespClient {
            reader: BufReader::new(stream),
        })
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Sends a command and reads its reply.
    pub fn call(&mut self, args: &[&str]) -> std::io::Result<Value> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        self.send_raw(&req)?;
        self.read_value()
    }

    /// Reads until the server closes the connection; returns what came.
    pub fn read_to_end(&mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.reader.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Reads one reply.
    pub fn read_value(&mut self) -> std::io::Result<Value> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(bad("connection closed"));
        }
        let line = line.trim_end();
        let (kind, rest) = line.split_at_checked(1).ok_or_else(|| bad("empty line"))?;
        let len = || rest.parse::<i64>().map_err(|_| bad("bad length"));
        Ok(match kind {
            "+" => Value::Simple(rest.to_string()),
            "-" => Value::Error(rest.to_string()),
            ":" => Value::Int(len()?),
            "$" => match len()? {
                n if n < 0 => Value::Bulk(None),
                n => {
                    let mut buf = vec![0; n as usize + 2];
                    self.reader.read_exact(&mut buf)?;
                    buf.truncate(n as usize);
                    Value::Bulk(Some(buf))
                }
            },
            "*" => match len()? {
                n if n < 0 => Value::Array(None),
                n => Value::Array(Some(
                    (0..n)
                        .map(|_| self.read_value())
                        .collect::<Result<_, _>>()?,
                )),
            },
            // RESP3's null (what a nil bulk is after `HELLO 3`).
            "_" => Value::Bulk(None),
            "%" => match len()? {
                n if n < 0 => return Err(bad("negative map length")),
                n => Value::Map(
                    (0..n)
                        .map(|_| Ok((self.read_value()?, self.read_value()?)))
                        .collect::<std::io::Result<_>>()?,
                ),
            },
            "~" => match len()? {
                n if n < 0 => return Err(bad("negative set length")),
                n => Value::Set(
                    (0..n)
                        .map(|_| self.read_value())
                        .collect::<Result<_, _>>()?,
                ),
            },
            "," => Value::Double(rest.to_string()),
            "#" => Value::Bool(rest == "t"),
            // A verbatim string: `=len`, then `txt:` and the text.
            "=" => match len()? {
                n if n < 4 => return Err(bad("short verbatim string")),
                n => {
                    let mut buf = vec![0; n as usize + 2];
                    self.reader.read_exact(&mut buf)?;
                    buf.truncate(n as usize);
                    Value::Bulk(Some(buf.split_off(4)))
                }
            },
            _ => return Err(bad("unknown reply type")),
        })
    }
}
