//! Server and group configuration, with Dongting's names where they fit,
//! validated once at start: a wrong value is an error that names the field.
//!
//! Durations are in milliseconds; the Raft core's ticks are derived from
//! them (`tick_ms`), so a user never reasons in ticks.

use sampan_net::tls::NodeTls;
use sampan_net::{ClientKeys, Credential, Key, NetError, PeerAddr, Privilege};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use sampan_proto::config::{ConfigError, Durability, GroupConfig, Secret};

/// The reason of a net config error, without the net layer's field name.
fn net_reason(e: NetError) -> String {
    match e {
        NetError::InvalidConfig { reason, .. } => reason,
        other => other.to_string(),
    }
}

fn invalid<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::new(field, reason))
}

/// One node's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// This node's id (> 0), one of `servers`.
    pub node_id: u64,
    /// Every node of the cluster and its replication address:
    /// `"1,127.0.0.1:4001;2,127.0.0.1:4002;3,127.0.0.1:4003"`. A host may
    /// be a name (`"1,sampan-0.sampan:4001,5001;..."`), looked up again at
    /// every connect, so a node that comes back at a new IP address under
    /// the same name (a container, a Kubernetes pod) is found.
    pub servers: String,
    /// The IP address this node's listeners (replication, service, Redis)
    /// bind, such as `"0.0.0.0"`. Unset: this node's own address in
    /// `servers`, which must then be an IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<IpAddr>,
    /// Nodes refuse peers from another cluster: the handshake checks this.
    #[serde(default = "defaults::cluster_id")]
    pub cluster_id: u64,
    /// Port of the replication listener (node to node).
    pub replicate_port: u16,
    /// Port of the client service listener.
    pub service_port: u16,
    /// Election timeout (the actual one is random in [this, 2 × this)).
    #[serde(default = "defaults::election_timeout_ms")]
    pub election_timeout_ms: u64,
    /// Leader heartbeat interval.
    #[serde(default = "defaults::heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
    /// Length of one Raft tick: the shard's ticker period.
    #[serde(default = "defaults::tick_ms")]
    pub tick_ms: u64,
    /// Shards (executor threads); 0 means one per CPU the process may use.
    #[serde(default)]
    pub shards: usize,
    /// Where each group keeps `group-<id>/`.
    pub data_dir: PathBuf,
    /// How long a forwarded request may wait for the leader's answer, and
    /// how long a request waits for a leader to be elected.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// The log's files.
    #[serde(default)]
    pub log: LogSettings,
    /// The secret every node of the cluster holds (at least 16 bytes):
    /// nodes prove it to each other in the handshake (HMAC
    /// challenge-response; it never crosses the wire) and refuse a peer
    /// that cannot. Unset: nodes are let in on their word, allowed only on
    /// loopback unless `protected_mode` is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_secret: Option<Secret>,
    /// Tokens the service port accepts (`[[server.credential]]`): every
    /// client proves one; only an `admin` one may add, remove or stop
    /// groups, change membership, move leadership or take snapshots. None:
    /// every client may do everything, allowed only on loopback unless
    /// `protected_mode` is off.
    #[serde(default, rename = "credential", skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<ServiceCredential>,
    /// Refuse to start on an address other than loopback without a
    /// `cluster_secret` (or `tls`) and service credentials (as Redis's
    /// protected mode refuses remote clients without a password).
    #[serde(default = "defaults::yes")]
    pub protected_mode: bool,
    /// Most connections the node's listeners hold at once beside its links
    /// to other nodes (clients of the service port, and handshakes in
    /// progress on either port), shared evenly by the shards. One more is
    /// closed as soon as it is accepted, as Redis's `maxclients` does.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Spread leaders over the nodes: every few seconds a node that leads
    /// at least two groups more than one of their voters hands one over
    /// ([`crate::server::RaftServer::balance_leaders_once`]).
    #[serde(default)]
    pub balance_leaders: bool,
    /// TLS on the replication port (mutual: every node presents its
    /// certificate, which must name it) and on the service port
    /// (`[server.tls]`). Unset: plain TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
}

/// A node's certificate, key and the cluster's CA (PEM files, as
/// `sampan-cli certs` writes them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The node's certificate (it must name the node:
    /// `node-<id>.c<cluster>.sampan.internal`).
    pub cert_file: PathBuf,
    /// The node's private key.
    pub key_file: PathBuf,
    /// The CA every node's and client's certificate chains to.
    pub ca_file: PathBuf,
}

/// A token the service port accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCredential {
    /// The name a client gives with it (1 to 64 bytes).
    pub name: String,
    /// The token (not empty).
    pub token: Secret,
    /// Whether it may run the operations that change the cluster.
    #[serde(default)]
    pub admin: bool,
}

/// Settings of every group's log on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// A segment file is sealed at this size and a new one started.
    #[serde(default = "defaults::segment_bytes")]
    pub segment_bytes: u64,
    /// Segment files grow (preallocated, never sparse) this much at a time,
    /// so thousands of idle groups do not each hold a whole segment.
    #[serde(default = "defaults::grow_step_bytes")]
    pub grow_step_bytes: u64,
    /// Where groups keep their entries: `"shared"`, one write-ahead log
    /// per shard for all its groups (one `fdatasync` per round for all of
    /// them; in `<data_dir>/wal/shard-<n>`), or `"per_group"`, each group
    /// its own segment files (in `<data_dir>/group-<id>/log`). A node's
    /// data is made in one layout and opens only in it; with `"shared"`
    /// the node's shard count must stay the same too. See
    /// `docs/shared-log.md`.
    #[serde(default)]
    pub layout: LogLayout,
}

/// Where a node's groups keep their entries (see [`LogSettings::layout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLayout {
    /// One write-ahead log per shard, shared by its groups.
    #[default]
    Shared,
    /// Each group its own segment files.
    PerGroup,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            segment_bytes: defaults::segment_bytes(),
            grow_step_bytes: defaults::grow_step_bytes(),
            layout: LogLayout::default(),
        }
    }
}

mod defaults {
    pub fn yes() -> bool {
        true
    }
    pub fn max_connections() -> usize {
        10_000
    }
    pub fn cluster_id() -> u64 {
        1
    }
    pub fn election_timeout_ms() -> u64 {
        1_000
    }
    pub fn heartbeat_interval_ms() -> u64 {
        100
    }
    pub fn tick_ms() -> u64 {
        50
    }
    pub fn request_timeout_ms() -> u64 {
        10_000
    }
    pub fn segment_bytes() -> u64 {
        64 << 20
    }
    pub fn grow_step_bytes() -> u64 {
        4 << 20
    }
}

/// The third field of a `servers` entry.
#[derive(Debug, Clone)]
enum ServiceField {
    /// A port on the replication host.
    Port(u16),
    /// A whole address.
    Addr(PeerAddr),
}

impl ServerConfig {
    /// Parses `servers` into (node id, replication address) pairs.
    pub fn parse_servers(&self) -> Result<Vec<(u64, PeerAddr)>, ConfigError> {
        Ok(self
            .parse_server_entries()?
            .into_iter()
            .map(|(id, addr, _)| (id, addr))
            .collect())
    }

    /// Every node's service address, for redirecting clients: the third
    /// field of its `servers` entry when given — a port on the replication
    /// host (`"1,127.0.0.1:4001,5001"`) or a whole address, for a node
    /// whose replication link goes through a proxy or a NAT
    /// (`"1,127.0.0.1:7101,10.0.0.1:5001"`) — else its replication host
    /// with the port at the same offset from its replication port as this
    /// node's.
    pub fn service_addrs(&self) -> Result<Vec<(u64, PeerAddr)>, ConfigError> {
        let offset = i32::from(self.service_port) - i32::from(self.replicate_port);
        let mut out = Vec::new();
        for (id, addr, service) in self.parse_server_entries()? {
            let port = match service {
                Some(ServiceField::Addr(a)) => {
                    out.push((id, a));
                    continue;
                }
                Some(ServiceField::Port(p)) => p,
                None => match u16::try_from(i32::from(addr.port()) + offset) {
                    Ok(p) if p > 0 => p,
                    _ => {
                        return invalid(
                            "servers",
                            format!(
                                "node {id}: give its service port as 'id,host:port,service_port'"
                            ),
                        );
                    }
                },
            };
            out.push((id, addr.with_port(port)));
        }
        Ok(out)
    }

    /// The IP address this node's listeners bind: `bind`, else this
    /// node's own address in `servers`.
    pub fn listen_ip(&self) -> Result<IpAddr, ConfigError> {
        if let Some(ip) = self.bind {
            return Ok(ip);
        }
        let own = self
            .parse_servers()?
            .into_iter()
            .find(|(id, _)| *id == self.node_id)
            .map(|(_, a)| a);
        match own {
            Some(a) => a.ip().ok_or_else(|| {
                ConfigError::new(
                    "bind",
                    format!(
                        "this node's address in `servers` is the host name {a}: \
                         give the IP address to listen on, such as bind = \"0.0.0.0\""
                    ),
                )
            }),
            None => invalid("node_id", format!("{} is not in `servers`", self.node_id)),
        }
    }

    fn parse_server_entries(
        &self,
    ) -> Result<Vec<(u64, PeerAddr, Option<ServiceField>)>, ConfigError> {
        let mut out: Vec<(u64, PeerAddr, Option<ServiceField>)> = Vec::new();
        for (i, part) in self.servers.split(';').map(str::trim).enumerate() {
            if part.is_empty() {
                continue;
            }
            let field = || format!("servers[{i}]");
            let Some((id, rest)) = part.split_once(',') else {
                return invalid(field(), format!("'{part}' is not 'id,host:port'"));
            };
            let (addr, service) = match rest.split_once(',') {
                Some((addr, port)) => {
                    match (port.trim().parse::<u16>(), port.parse::<PeerAddr>()) {
                        (Ok(p), _) if p > 0 => (addr, Some(ServiceField::Port(p))),
                        (_, Ok(a)) => (addr, Some(ServiceField::Addr(a))),
                        (_, Err(e)) => {
                            return invalid(
                                field(),
                                format!("service '{port}' is neither a port nor host:port: {e}"),
                            );
                        }
                    }
                }
                None => (rest, None),
            };
            let id: u64 = match id.trim().parse() {
                Ok(id) if id > 0 => id,
                _ => return invalid(field(), format!("node id '{id}' is not a number > 0")),
            };
            let addr: PeerAddr = match addr.parse() {
                Ok(a) => a,
                Err(e) => return invalid(field(), format!("address {e}")),
            };
            if out.iter().any(|(o, a, _)| *o == id || *a == addr) {
                return invalid(
                    field(),
                    format!("node {id} or address {addr} appears twice"),
                );
            }
            out.push((id, addr, service));
        }
        if out.is_empty() {
            return invalid("servers", "no server listed");
        }
        Ok(out)
    }

    /// Checks every field and their relations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let servers = self.parse_servers()?;
        if self.node_id == 0 {
            return invalid("node_id", "must be > 0");
        }
        if !servers.iter().any(|(id, _)| *id == self.node_id) {
            return invalid("node_id", format!("{} is not in `servers`", self.node_id));
        }
        if self.replicate_port == 0 || self.service_port == 0 {
            let field = if self.replicate_port == 0 {
                "replicate_port"
            } else {
                "service_port"
            };
            return invalid(field, "must be a port number > 0");
        }
        if self.replicate_port == self.service_port {
            return invalid("service_port", "must differ from replicate_port");
        }
        if self.tick_ms == 0 || self.tick_ms > 1_000 {
            return invalid("tick_ms", "must be in 1..=1000");
        }
        if self.heartbeat_interval_ms < self.tick_ms {
            return invalid("heartbeat_interval_ms", "must be at least tick_ms");
        }
        if self.election_timeout_ms < 3 * self.heartbeat_interval_ms {
            return invalid(
                "election_timeout_ms",
                "must be at least 3 × heartbeat_interval_ms, or followers time out between heartbeats",
            );
        }
        if self.shards > 1024 {
            return invalid("shards", "at most 1024");
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty");
        }
        if self.request_timeout_ms < self.election_timeout_ms {
            return invalid(
                "request_timeout_ms",
                "must be at least election_timeout_ms, or requests fail during every election",
            );
        }
        if !(4096..=(1 << 30)).contains(&self.log.segment_bytes) {
            return invalid("log.segment_bytes", "must be in 4096..=1073741824");
        }
        if self.log.grow_step_bytes < 4096 || self.log.grow_step_bytes > self.log.segment_bytes {
            return invalid("log.grow_step_bytes", "must be in 4096..=log.segment_bytes");
        }
        self.service_addrs()?;
        self.listen_ip()?;
        self.net_keys()?;
        self.node_tls()?;
        self.check_protected_mode()?;
        Ok(())
    }

    /// The keys of the transport: the cluster secret, and the service
    /// port's tokens with what each allows.
    pub fn net_keys(&self) -> Result<(Option<Key>, Option<Arc<ClientKeys>>), ConfigError> {
        let secret = match &self.cluster_secret {
            Some(s) => Some(
                Key::cluster_secret(s.0.as_bytes())
                    .map_err(|e| ConfigError::new("cluster_secret", net_reason(e)))?,
            ),
            None => None,
        };
        if self.credentials.is_empty() {
            return Ok((secret, None));
        }
        let mut keys = ClientKeys::new();
        for (i, c) in self.credentials.iter().enumerate() {
            let field = || format!("credential[{i}]");
            let credential = Credential::new(c.name.clone(), c.token.0.as_bytes())
                .map_err(|e| ConfigError::new(field(), net_reason(e)))?;
            let privilege = if c.admin {
                Privilege::Admin
            } else {
                Privilege::Client
            };
            keys.add(credential, privilege)
                .map_err(|e| ConfigError::new(field(), net_reason(e)))?;
        }
        Ok((secret, Some(Arc::new(keys))))
    }

    /// The transport's TLS configs, from `tls`'s files.
    pub fn node_tls(&self) -> Result<Option<NodeTls>, ConfigError> {
        let Some(t) = &self.tls else { return Ok(None) };
        NodeTls::from_files(&t.cert_file, &t.key_file, &t.ca_file)
            .map(Some)
            .map_err(|e| ConfigError::new("tls", e))
    }

    /// Protected mode: off loopback, both ports must authenticate.
    fn check_protected_mode(&self) -> Result<(), ConfigError> {
        if !self.protected_mode {
            return Ok(());
        }
        let ip = self.listen_ip()?;
        if ip.is_loopback() {
            return Ok(());
        }
        let missing = if self.cluster_secret.is_none() && self.tls.is_none() {
            Some((
                "cluster_secret",
                "any host that reaches the replication port could join the cluster",
            ))
        } else if self.credentials.is_empty() {
            Some((
                "credential",
                "any host that reaches the service port could remove groups",
            ))
        } else {
            None
        };
        match missing {
            Some((field, risk)) => invalid(
                field,
                format!(
                    "protected mode: this node listens on {ip}, not loopback, and no {field} is set: \
                     {risk}. Set a `cluster_secret` (or `[server.tls]`) and at least one \
                     `[[server.credential]]`, or `protected_mode = false` to run unauthenticated"
                ),
            ),
            None => Ok(()),
        }
    }

    /// The election timeout in ticks.
    pub fn ticks_election(&self) -> u32 {
        u32::try_from(self.election_timeout_ms / self.tick_ms.max(1)).unwrap_or(u32::MAX)
    }

    /// The heartbeat interval in ticks.
    pub fn ticks_heartbeat(&self) -> u32 {
        u32::try_from(self.heartbeat_interval_ms / self.tick_ms.max(1)).unwrap_or(u32::MAX)
    }
}

/// The configs of a `nodes`-node cluster on 127.0.0.1, on ports free when
/// called: each node gets `shards` consecutive replication ports and a
/// service port, none shared, and its data under `root/node-N`. Timeouts
/// are short (election 300 ms, heartbeat 30 ms, tick 10 ms) and the
/// cluster id is the client's default: for tests, demos and benchmarks on
/// one machine. Panics if the OS has no free port.
pub fn loopback_cluster(root: &std::path::Path, nodes: usize, shards: usize) -> Vec<ServerConfig> {
    let shards = shards.max(1);
    let mut taken = std::collections::HashSet::new();
    let mut pick = |n: u16| -> u16 {
        loop {
            let hint = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or_else(|e| panic!("no free port: {e}"));
            let free = (0..n).all(|i| {
                hint.checked_add(i).is_some_and(|p| {
                    !taken.contains(&p) && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
                })
            });
            if free {
                taken.extend((0..n).map(|i| hint + i));
                return hint;
            }
        }
    };
    let ports: Vec<(u16, u16)> = (0..nodes).map(|_| (pick(shards as u16), pick(1))).collect();
    let servers: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(n, (r, s))| format!("{},127.0.0.1:{r},{s}", n + 1))
        .collect();
    ports
        .iter()
        .enumerate()
        .map(|(n, (r, s))| ServerConfig {
            node_id: n as u64 + 1,
            servers: servers.join(";"),
            bind: None,
            cluster_id: crate::client::CLUSTER_ID_DEFAULT,
            replicate_port: *r,
            service_port: *s,
            election_timeout_ms: 300,
            heartbeat_interval_ms: 30,
            tick_ms: 10,
            shards,
            data_dir: root.join(format!("node-{}", n + 1)),
            request_timeout_ms: 10_000,
            log: LogSettings::default(),
            cluster_secret: None,
            credentials: Vec::new(),
            protected_mode: true,
            max_connections: defaults::max_connections(),
            balance_leaders: false,
            tls: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ServerConfig {
        ServerConfig {
            node_id: 2,
            servers: "1,127.0.0.1:4001; 2,127.0.0.1:4002;3,127.0.0.1:4003".into(),
            bind: None,
            cluster_id: 1,
            replicate_port: 4002,
            service_port: 5002,
            election_timeout_ms: 1_000,
            heartbeat_interval_ms: 100,
            tick_ms: 50,
            shards: 0,
            data_dir: "/tmp/sampan".into(),
            request_timeout_ms: 10_000,
            log: LogSettings::default(),
            cluster_secret: None,
            credentials: Vec::new(),
            protected_mode: true,
            max_connections: defaults::max_connections(),
            balance_leaders: false,
            tls: None,
        }
    }

    #[test]
    fn host_names_in_servers_need_a_bind_address_for_this_node() {
        let mut s = server();
        s.servers = "1,sampan-0.sampan:4001,5001;2,sampan-1.sampan:4002,5002;\
                     3,10.0.0.3:4003,sampan-2.sampan:5003"
            .into();
        let err = s.validate().expect_err("a host name needs `bind`");
        assert_eq!(err.field, "bind");
        assert!(
            err.reason.contains("sampan-1.sampan:4002"),
            "{}",
            err.reason
        );
        s.bind = Some("127.0.0.1".parse().expect("ip"));
        s.validate().expect("valid with bind");
        assert_eq!(s.listen_ip().expect("ip").to_string(), "127.0.0.1");
        let service = s.service_addrs().expect("service addresses");
        assert_eq!(service[0].1.to_string(), "sampan-0.sampan:5001");
        assert_eq!(service[2].1.to_string(), "sampan-2.sampan:5003");
        // Off loopback, protected mode asks for the secrets.
        s.bind = Some("0.0.0.0".parse().expect("ip"));
        let err = s.validate().expect_err("protected mode");
        assert_eq!(err.field, "cluster_secret");
        for bad in [
            "1,sampan 0:4001;2,x:4002",
            "1,x:4001;2,x:4001",
            "1,x:;2,y:4002",
        ] {
            s.servers = bad.into();
            assert!(s.validate().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn a_good_config_validates_and_converts_to_ticks() {
        let s = server();
        s.validate().expect("valid");
        assert_eq!(s.parse_servers().expect("servers").len(), 3);
        assert_eq!((s.ticks_election(), s.ticks_heartbeat()), (20, 2));
        let service = s.service_addrs().expect("service addresses");
        assert_eq!(service[0].1, "127.0.0.1:5001".parse().expect("addr"));
        let mut explicit = s.clone();
        explicit.servers = "1,127.0.0.1:4001,7001;2,127.0.0.1:4002;3,127.0.0.1:4003".into();
        let service = explicit.service_addrs().expect("service addresses");
        assert_eq!(service[0].1, "127.0.0.1:7001".parse().expect("addr"));
        assert_eq!(service[2].1, "127.0.0.1:5003".parse().expect("addr"));
        // Behind a proxy: the replication address is the proxy's, the
        // service address is the node's own.
        explicit.servers =
            "1,127.0.0.1:7101,10.0.0.1:5001;2,127.0.0.1:4002;3,127.0.0.1:4003".into();
        explicit.validate().expect("valid");
        let service = explicit.service_addrs().expect("service addresses");
        assert_eq!(service[0].1, "10.0.0.1:5001".parse().expect("addr"));
        explicit.servers = "1,127.0.0.1:4001,nowhere;2,127.0.0.1:4002".into();
        assert!(
            explicit.validate().is_err(),
            "a service field that is neither is refused"
        );
        let g = GroupConfig {
            group_id: 1,
            members: "1,2".into(),
            observers: "3".into(),
            durability: Durability::Async,
            log_retention_ms: 0,
            ..GroupConfig::default()
        };
        g.validate(&s.parse_servers().expect("servers"))
            .expect("valid group");
    }

    #[test]
    fn each_wrong_value_names_its_field() {
        type Mutation = fn(&mut ServerConfig);
        let cases: [(Mutation, &str); 10] = [
            (|s| s.node_id = 9, "node_id"),
            (|s| s.servers = "1,nowhere".into(), "servers[0]"),
            (
                |s| s.servers = "1,127.0.0.1:1;1,127.0.0.1:2".into(),
                "servers[1]",
            ),
            (|s| s.service_port = s.replicate_port, "service_port"),
            (|s| s.election_timeout_ms = 200, "election_timeout_ms"),
            (|s| s.tick_ms = 0, "tick_ms"),
            (|s| s.request_timeout_ms = 10, "request_timeout_ms"),
            (|s| s.log.segment_bytes = 10, "log.segment_bytes"),
            (|s| s.servers = "1,127.0.0.1:1,x".into(), "servers[0]"),
            (|s| s.max_connections = 0, "max_connections"),
        ];
        for (mutate, field) in cases {
            let mut s = server();
            mutate(&mut s);
            let e = s.validate().expect_err(field);
            assert_eq!(e.field, field, "{e}");
        }
        let servers = server().parse_servers().expect("servers");
        let g = |members: &str, observers: &str| GroupConfig {
            group_id: 7,
            members: members.into(),
            observers: observers.into(),
            durability: Durability::Sync,
            log_retention_ms: 0,
            ..GroupConfig::default()
        };
        for (group, field) in [
            (g("", ""), "group 7.members"),
            (g("1,x", ""), "group 7.members"),
            (g("1,2", "2"), "group 7.observers"),
            (g("1,9", ""), "group 7.members"),
        ] {
            assert_eq!(group.validate(&servers).expect_err(field).field, field);
        }
    }
}
