//! A peer's address as configured: an IP address, or a host name that is
//! looked up again at every connect attempt.
//!
//! A host name is what containers and Kubernetes pods keep across
//! restarts (`sampan-1.sampan.default.svc.cluster.local`); their IP
//! addresses change. So a dialer resolves the name each time it connects,
//! on a helper thread ([`sampan_fiber::blocking`]), never on a shard.

use crate::error::NetError;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;

/// Longest host name DNS allows (RFC 1035: 253 characters in text form).
pub const HOST_NAME_MAX: usize = 253;

/// Where a peer is reached: an IP address and port, or a host name and
/// port resolved at each connect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    /// A fixed address.
    Ip(SocketAddr),
    /// A host name, resolved at each connect.
    Host {
        /// The name (letters, digits, '-', '.', '_').
        name: String,
        /// The port.
        port: u16,
    },
}

impl PeerAddr {
    /// The port.
    pub fn port(&self) -> u16 {
        match self {
            PeerAddr::Ip(a) => a.port(),
            PeerAddr::Host { port, .. } => *port,
        }
    }

    /// The same host with another port.
    pub fn with_port(&self, port: u16) -> PeerAddr {
        match self {
            PeerAddr::Ip(a) => PeerAddr::Ip(SocketAddr::new(a.ip(), port)),
            PeerAddr::Host { name, .. } => PeerAddr::Host {
                name: name.clone(),
                port,
            },
        }
    }

    /// The IP address when it is a fixed one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            PeerAddr::Ip(a) => Some(a.ip()),
            PeerAddr::Host { .. } => None,
        }
    }

    /// The fixed address, if it is one.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            PeerAddr::Ip(a) => Some(*a),
            PeerAddr::Host { .. } => None,
        }
    }

    /// The address to connect to now, looking a host name up on the
    /// calling thread. Off a shard only: a lookup can block for seconds.
    pub fn resolve_blocking(&self) -> Result<SocketAddr, NetError> {
        match self {
            PeerAddr::Ip(a) => Ok(*a),
            PeerAddr::Host { name, port } => lookup(name, *port),
        }
    }

    /// The address to connect to now; a host name is looked up on a
    /// helper thread while the shard goes on.
    pub async fn resolve(&self) -> Result<SocketAddr, NetError> {
        match self {
            PeerAddr::Ip(a) => Ok(*a),
            PeerAddr::Host { name, port } => {
                let (name, port) = (name.clone(), *port);
                sampan_fiber::blocking(move || lookup(&name, port)).await
            }
        }
    }
}

/// The first address `name` resolves to, IPv4 first (a dual-stack name
/// whose IPv6 address is unreachable would otherwise stall every dial).
fn lookup(name: &str, port: u16) -> Result<SocketAddr, NetError> {
    let unresolved = |reason: String| NetError::Resolve {
        host: format!("{name}:{port}"),
        reason,
    };
    let addrs: Vec<SocketAddr> = (name, port)
        .to_socket_addrs()
        .map_err(|e| unresolved(e.to_string()))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| unresolved("the name has no address".into()))
}

impl From<SocketAddr> for PeerAddr {
    fn from(a: SocketAddr) -> PeerAddr {
        PeerAddr::Ip(a)
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Ip(a) => write!(f, "{a}"),
            PeerAddr::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

impl FromStr for PeerAddr {
    type Err = String;

    /// `1.2.3.4:5`, `[::1]:5` or `host.name:5`.
    fn from_str(s: &str) -> Result<PeerAddr, String> {
        let s = s.trim();
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(PeerAddr::Ip(a));
        }
        let Some((name, port)) = s.rsplit_once(':') else {
            return Err(format!("'{s}' is not host:port"));
        };
        let port: u16 = match port.parse() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("'{s}': port '{port}' is not a number in 1..=65535")),
        };
        check_host_name(name).map_err(|why| format!("'{s}': host name {why}"))?;
        Ok(PeerAddr::Host {
            name: name.to_string(),
            port,
        })
    }
}

/// A DNS name: labels of letters, digits, '-' and '_' (seen in service
/// records), 1..=63 bytes each, joined by dots.
fn check_host_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > HOST_NAME_MAX {
        return Err("must be 1..=253 characters");
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("has an empty label or one over 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("may hold only letters, digits, '-', '_' and '.'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("has a label that starts or ends with '-'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ips_and_host_names_and_refuses_the_rest() {
        let ip: PeerAddr = "10.0.0.1:4001".parse().expect("ip");
        assert_eq!(ip, PeerAddr::Ip("10.0.0.1:4001".parse().expect("addr")));
        let v6: PeerAddr = "[::1]:4001".parse().expect("ipv6");
        assert_eq!(v6.port(), 4001);
        let host: PeerAddr = "sampan-1.sampan.default.svc.cluster.local:4001"
            .parse()
            .expect("host");
        assert_eq!(
            host.to_string(),
            "sampan-1.sampan.default.svc.cluster.local:4001"
        );
        assert_eq!(host.with_port(5001).port(), 5001);
        assert_eq!(host.ip(), None);
        for bad in [
            "node1",
            "node1:",
            "node1:0",
            "node1:70000",
            ":4001",
            "no de:4001",
            "a..b:4001",
            "-a:4001",
            "a/b:4001",
            "[::1:4001",
        ] {
            assert!(bad.parse::<PeerAddr>().is_err(), "{bad} was accepted");
        }
        let long = format!("{}:1", "a.".repeat(127));
        assert!(long.parse::<PeerAddr>().is_err());
    }

    #[test]
    fn a_host_name_resolves_and_an_unknown_one_is_a_resolve_error() {
        let local: PeerAddr = "localhost:4001".parse().expect("host");
        let a = local.resolve_blocking().expect("localhost resolves");
        assert!(a.ip().is_loopback());
        assert_eq!(a.port(), 4001);
        // `.invalid` never resolves (RFC 2606).
        let nowhere: PeerAddr = "sampan-test.invalid:4001".parse().expect("host");
        match nowhere.resolve_blocking() {
            Err(NetError::Resolve { host, .. }) => {
                assert_eq!(host, "sampan-test.invalid:4001")
            }
            other => panic!("expected a resolve error, got {other:?}"),
        }
    }
}
