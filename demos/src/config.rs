//! The node's config file (TOML): the server's settings, the Redis port and
//! the groups it hosts. Loaded and validated at start; an error names the
//! file and the field. `sampan-node --print-config` prints
//! [`DEFAULT_CONFIG`], a commented example.

pub use sampan::config::Secret;
use sampan::config::{ConfigError, GroupConfig, ServerConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything a node reads from its config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's server settings (`[server]`).
    pub server: ServerConfig,
    /// The Redis protocol listener (`[redis]`).
    #[serde(default)]
    pub redis: RedisSettings,
    /// The KV state machine's settings (`[kv]`).
    #[serde(default)]
    pub kv: KvSettings,
    /// The operators' HTTP endpoint (`[metrics]`).
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// The KV groups this node hosts (`[[group]]`).
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupConfig>,
}

/// Where a node serves Prometheus metrics (`/metrics`) and readiness
/// (`/health`) over HTTP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// `host:port` to listen on; absent or empty: no endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl MetricsSettings {
    /// The address to listen on, if any.
    pub fn address(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        match self.address.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(a) => a.parse().map(Some).map_err(|e| ConfigError {
                field: "metrics.address".into(),
                reason: format!("{a:?} is not a host:port address: {e}"),
            }),
        }
    }
}

/// The KV state machine's settings: how long an exactly-once session is
/// remembered. Every node of a cluster must use the same values (they
/// shape the replicated state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvSettings {
    /// A session idle this long is forgotten, judged by the leader's
    /// timestamps in the log, so every replica forgets it at the same
    /// index. A write retried after that is answered "outcome unknown".
    #[serde(default = "session_idle_ms")]
    pub session_idle_ms: u64,
    /// Answers remembered per session: at least the writes a session has
    /// in flight (the Redis port and the client keep 1,024).
    #[serde(default = "session_results_max")]
    pub session_results_max: usize,
}

fn session_idle_ms() -> u64 {
    sampan_kv::KvConfig::default().session_idle_ms
}

fn session_results_max() -> usize {
    sampan_kv::KvConfig::default().session_results_max
}

impl Default for KvSettings {
    fn default() -> Self {
        KvSettings {
            session_idle_ms: session_idle_ms(),
            session_results_max: session_results_max(),
        }
    }
}

impl KvSettings {
    /// The state machine config these give.
    pub fn kv_config(&self) -> sampan_kv::KvConfig {
        sampan_kv::KvConfig {
            session_idle_ms: self.session_idle_ms,
            session_results_max: self.session_results_max,
            ..sampan_kv::KvConfig::default()
        }
    }
}

/// The Redis listener's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// Port of the Redis listener; absent or 0: no Redis listener.
    #[serde(default)]
    pub port: u16,
    /// Merge single writes and key reads of all connections on a shard into
    /// shared proposals and reads.
    #[serde(default = "yes")]
    pub batching: bool,
    /// Merged proposals (and reads) in flight per group per shard.
    #[serde(default = "in_flight_max")]
    pub in_flight_max: usize,
    /// Largest bulk string a client may send (Redis's
    /// `proto-max-bulk-len`); refused before any allocation.
    #[serde(default = "proto_max_bulk_len")]
    pub proto_max_bulk_len: usize,
    /// Largest whole request (all its arguments), like Redis's
    /// `client-query-buffer-limit`; refused as soon as its length lines
    /// pass it, before the bytes arrive.
    #[serde(default = "request_max_bytes")]
    pub request_max_bytes: usize,
    /// The default user's password (Redis's `requirepass`): clients send
    /// `AUTH password` (`redis-cli -a`) before anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirepass: Option<Secret>,
    /// Users, one rule each in Redis's `ACL SETUSER` form, name first:
    /// `"alice on >secret +@read db=0"` (see `sampan_redis::acl`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<Secret>,
    /// Refuse to listen beyond loopback with no password (Redis's
    /// protected mode, as a refusal to start).
    #[serde(default = "yes")]
    pub protected_mode: bool,
    /// Most connections at once (Redis's `maxclients`); one more gets
    /// `-ERR max number of clients reached` and is closed.
    #[serde(default = "maxclients")]
    pub maxclients: usize,
    /// Seconds a connection may stay idle before it is closed (Redis's
    /// `timeout`); 0: never.
    #[serde(default)]
    pub timeout: u64,
    /// Bytes of replies a client may have pending before it is closed
    /// (Redis's `client-output-buffer-limit` hard limit).
    #[serde(default = "output_buffer_limit")]
    pub output_buffer_limit: usize,
    /// Seconds a client may leave its pending replies unread before it is
    /// closed.
    #[serde(default = "output_stall_timeout")]
    pub output_stall_timeout: u64,
    /// Seconds of silence before TCP keepalive probes a connection, to
    /// find peers that vanished (Redis's `tcp-keepalive`); 0: off.
    #[serde(default = "tcp_keepalive")]
    pub tcp_keepalive: u64,
    /// Seconds a request whose first bytes came may take to arrive whole;
    /// past it the connection is closed (a slowloris holds nothing for
    /// ever).
    #[serde(default = "partial_request_timeout")]
    pub partial_request_timeout: u64,
    /// Port of a second Redis listener that speaks TLS (Redis's
    /// `tls-port`); 0: none.
    #[serde(default)]
    pub tls_port: u16,
    /// The node's certificate chain, PEM (Redis's `tls-cert-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// The node's private key, PEM (Redis's `tls-key-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
    /// The CA that signs client certificates, PEM (Redis's
    /// `tls-ca-cert-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_cert_file: Option<PathBuf>,
    /// Whether clients must present a certificate: `yes`, `optional` or
    /// `no` (Redis's `tls-auth-clients`, default `yes`).
    #[serde(default = "tls_auth_clients")]
    pub tls_auth_clients: String,
    /// Answer as a Redis Cluster (Redis's `cluster-enabled`): the 16,384
    /// hash slots are spread over the groups (1..=N, all of them), and a
    /// key whose group another node leads gets `-MOVED` to that node's
    /// Redis port; `SELECT` other than 0 is refused.
    #[serde(default)]
    pub cluster_enabled: bool,
    /// In cluster mode, every node's Redis address as clients reach it:
    /// `"1,127.0.0.1:6381;2,127.0.0.1:6382;3,127.0.0.1:6383"`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_nodes: String,
}

fn partial_request_timeout() -> u64 {
    60
}

fn tls_auth_clients() -> String {
    "yes".into()
}

fn output_buffer_limit() -> usize {
    sampan_redis::server::ListenerSettings::default().output_buffer_limit
}

fn output_stall_timeout() -> u64 {
    sampan_redis::server::ListenerSettings::default()
        .output_stall_timeout
        .as_secs()
}

fn tcp_keepalive() -> u64 {
    300
}

fn maxclients() -> usize {
    10_000
}

fn request_max_bytes() -> usize {
    sampan_redis::resp::REQUEST_MAX_BYTES_DEFAULT
}

fn yes() -> bool {
    true
}

fn in_flight_max() -> usize {
    4
}

fn proto_max_bulk_len() -> usize {
    sampan_kv::VALUE_MAX_BYTES
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            port: 0,
            batching: yes(),
            in_flight_max: in_flight_max(),
            proto_max_bulk_len: proto_max_bulk_len(),
            request_max_bytes: request_max_bytes(),
            requirepass: None,
            users: Vec::new(),
            protected_mode: yes(),
            maxclients: maxclients(),
            timeout: 0,
            output_buffer_limit: output_buffer_limit(),
            output_stall_timeout: output_stall_timeout(),
            tcp_keepalive: tcp_keepalive(),
            partial_request_timeout: partial_request_timeout(),
            tls_port: 0,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_cert_file: None,
            tls_auth_clients: tls_auth_clients(),
            cluster_enabled: false,
            cluster_nodes: String::new(),
        }
    }
}

impl RedisSettings {
    /// The TLS config of the `tls_port`, from the files named.
    pub fn tls(&self) -> Result<sampan_redis::tls::TlsConfig, ConfigError> {
        let field = |f: &str, reason: String| ConfigError {
            field: format!("redis.{f}"),
            reason,
        };
        let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) else {
            return Err(field(
                "tls_cert_file",
                "tls_port needs tls_cert_file and tls_key_file".into(),
            ));
        };
        let auth = self
            .tls_auth_clients
            .parse()
            .map_err(|e| field("tls_auth_clients", e))?;
        sampan_redis::tls::server_config(cert, key, self.tls_ca_cert_file.as_deref(), auth)
            .map_err(|e| field("tls_cert_file", e))
    }

    /// The users these settings give.
    pub fn acl(&self) -> Result<sampan_redis::acl::Acl, ConfigError> {
        let rules: Vec<String> = self.users.iter().map(|s| s.0.clone()).collect();
        let requirepass = self.requirepass.as_ref().map(|s| s.0.as_str());
        sampan_redis::acl::Acl::from_config(requirepass, &rules).map_err(|e| ConfigError {
            field: "redis.users".into(),
            reason: e.to_string(),
        })
    }

    /// The cluster-mode settings these give (`None` when it is off), for
    /// cluster `cluster_id` and node `node`.
    pub fn cluster(
        &self,
        cluster_id: u64,
        node: u64,
    ) -> Result<Option<sampan_redis::cluster::ClusterSettings>, ConfigError> {
        if !self.cluster_enabled {
            return Ok(None);
        }
        let bad = |reason: String| ConfigError {
            field: "redis.cluster_nodes".into(),
            reason,
        };
        let mut nodes = Vec::new();
        for (i, part) in self.cluster_nodes.split(';').enumerate() {
            let part = part.trim();
            let (id, addr) = part
                .split_once(',')
                .ok_or_else(|| bad(format!("entry {i} is not `id,host:port`")))?;
            let id: u64 = id
                .trim()
                .parse()
                .map_err(|_| bad(format!("entry {i}: `{id}` is not a node id")))?;
            let addr: std::net::SocketAddr = addr
                .trim()
                .parse()
                .map_err(|_| bad(format!("entry {i}: `{addr}` is not an ip:port")))?;
            if nodes.iter().any(|(n, _)| *n == id) {
                return Err(bad(format!("node {id} is listed twice")));
            }
            nodes.push((id, addr));
        }
        if !nodes.iter().any(|(n, _)| *n == node) {
            return Err(bad(format!("this node ({node}) is not listed")));
        }
        Ok(Some(sampan_redis::cluster::ClusterSettings {
            cluster_id,
            nodes,
        }))
    }

    /// The listener settings these give.
    pub fn listener(&self) -> Result<sampan_redis::server::ListenerSettings, ConfigError> {
        let mut s = sampan_redis::server::ListenerSettings {
            batching: self.batching,
            in_flight_max: self.in_flight_max,
            acl: self.acl()?,
            protected_mode: self.protected_mode,
            maxclients: self.maxclients,
            idle_timeout: (self.timeout > 0).then(|| std::time::Duration::from_secs(self.timeout)),
            output_buffer_limit: self.output_buffer_limit,
            output_stall_timeout: std::time::Duration::from_secs(self.output_stall_timeout),
            tcp_keepalive: (self.tcp_keepalive > 0)
                .then(|| std::time::Duration::from_secs(self.tcp_keepalive)),
            partial_request_timeout: std::time::Duration::from_secs(
                self.partial_request_timeout.max(1),
            ),
            ..Default::default()
        };
        s.limits.bulk_max_bytes = self.proto_max_bulk_len;
        s.limits.request_max_bytes = self.request_max_bytes;
        Ok(s)
    }
}

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    /// The file cannot be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a node config.
    #[error("{file}: {message}")]
    Parse {
        /// The file.
        file: PathBuf,
        /// The parser's message (names the key and the line).
        message: String,
    },
    /// A value is wrong.
    #[error("{file}: {source}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The field and why.
        source: ConfigError,
    },
}

impl NodeConfig {
    /// Reads, parses and validates `file`.
    pub fn load(file: &Path) -> Result<NodeConfig, NodeConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| NodeConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        NodeConfig::parse(&text, file)
    }

    /// Parses and validates `text`, naming `file` in errors.
    pub fn parse(text: &str, file: &Path) -> Result<NodeConfig, NodeConfigError> {
        let cfg: NodeConfig = toml::from_str(text).map_err(|e| NodeConfigError::Parse {
            file: file.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate().map_err(|source| NodeConfigError::Invalid {
            file: file.to_path_buf(),
            source,
        })?;
        Ok(cfg)
    }

    /// Checks the server, the Redis port and every group.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let prefix = |field: &str, e: ConfigError| ConfigError {
            field: format!("{field}.{}", e.field),
            reason: e.reason,
        };
        self.server.validate().map_err(|e| prefix("server", e))?;
        self.metrics.address()?;
        let servers = self.server.parse_servers()?;
        let port = self.redis.port;
        if port != 0 && (port == self.server.service_port || port == self.server.replicate_port) {
            return Err(ConfigError {
                field: "redis.port".into(),
                reason: format!("{port} is already the service or replication port"),
            });
        }
        // Clients and the Redis port start a new session after this much
        // idleness; the state machine must remember a session longer, or a
        // write after a pause in between would be refused as stale.
        let renew_ms = sampan::client::SESSION_RENEW_IDLE_DEFAULT.as_millis() as u64;
        if self.kv.session_idle_ms < 2 * renew_ms {
            return Err(ConfigError {
                field: "kv.session_idle_ms".into(),
                reason: format!(
                    "{} ms is too short: clients keep using an idle session for up to \
                     {renew_ms} ms, so it must be at least {}",
                    self.kv.session_idle_ms,
                    2 * renew_ms
                ),
            });
        }
        if self.kv.session_results_max < 1024 {
            return Err(ConfigError {
                field: "kv.session_results_max".into(),
                reason: format!(
                    "{} is below the 1024 writes a session keeps in flight",
                    self.kv.session_results_max
                ),
            });
        }
        self.redis.acl()?;
        if self.redis.tls_port != 0 {
            self.redis.tls()?;
        }
        self.redis
            .cluster(self.server.cluster_id, self.server.node_id)?;
        if self.redis.cluster_enabled {
            let ids: Vec<u64> = self.groups.iter().map(|g| g.group_id).collect();
            if ids.is_empty() || (1..=ids.len() as u64).any(|g| !ids.contains(&g)) {
                return Err(ConfigError {
                    field: "redis.cluster_enabled".into(),
                    reason: "cluster mode spreads the slots over groups 1..=N: \
                             every group id from 1 to the number of groups must be configured"
                        .into(),
                });
            }
        }
        if self.redis.maxclients == 0 {
            return Err(ConfigError {
                field: "redis.maxclients".into(),
                reason: "must be at least 1".into(),
            });
        }
        if self.redis.output_buffer_limit < sampan_kv::VALUE_MAX_BYTES + 64 {
            return Err(ConfigError {
                field: "redis.output_buffer_limit".into(),
                reason: format!(
                    "must hold at least one largest value's reply ({} bytes)",
                    sampan_kv::VALUE_MAX_BYTES + 64
                ),
            });
        }
        if self.redis.output_stall_timeout == 0 {
            return Err(ConfigError {
                field: "redis.output_stall_timeout".into(),
                reason: "must be at least 1 second".into(),
            });
        }
        if self.redis.in_flight_max == 0 {
            return Err(ConfigError {
                field: "redis.in_flight_max".into(),
                reason: "must be at least 1".into(),
            });
        }
        if self.redis.proto_max_bulk_len > sampan_kv::VALUE_MAX_BYTES {
            return Err(ConfigError {
                field: "redis.proto_max_bulk_len".into(),
                reason: format!(
                    "at most {} (the largest value a KV group stores)",
                    sampan_kv::VALUE_MAX_BYTES
                ),
            });
        }
        if self.redis.proto_max_bulk_len < 1024 {
            return Err(ConfigError {
                field: "redis.proto_max_bulk_len".into(),
                reason: "must be at least 1024".into(),
            });
        }
        if self.redis.request_max_bytes < self.redis.proto_max_bulk_len {
            return Err(ConfigError {
                field: "redis.request_max_bytes".into(),
                reason: format!(
                    "must be at least proto_max_bulk_len ({}): a request holds a bulk string",
                    self.redis.proto_max_bulk_len
                ),
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, g) in self.groups.iter().enumerate() {
            g.validate(&servers).map_err(|e| ConfigError {
                // The group's own errors say `group 7.members`; in the file
                // it is the i-th [[group]] table.
                field: match e.field.split_once('.') {
                    Some((_, f)) => format!("group[{i}].{f}"),
                    None => format!("group[{i}].{}", e.field),
                },
                reason: e.reason,
            })?;
            if !seen.insert(g.group_id) {
                return Err(ConfigError {
                    field: format!("group[{i}].group_id"),
                    reason: format!("group {} is listed twice", g.group_id),
                });
            }
        }
        Ok(())
    }

    /// The config of node `n` (1–3) of the local demo cluster: replication
    /// port 400N, service port 500N, Redis port 638N, groups 1 and 2 on all
    /// three nodes.
    pub fn local_demo(n: u64, data_dir: PathBuf) -> NodeConfig {
        let text = DEFAULT_CONFIG
            .replace("node_id = 1", &format!("node_id = {n}"))
            .replace(
                "replicate_port = 4001",
                &format!("replicate_port = {}", 4000 + n),
            )
            .replace(
                "service_port = 5001",
                &format!("service_port = {}", 5000 + n),
            )
            .replace("port = 6381", &format!("port = {}", 6380 + n));
        let mut cfg: NodeConfig = match toml::from_str(&text) {
            Ok(cfg) => cfg,
            Err(e) => unreachable!("the default config parses: {e}"),
        };
        cfg.server.data_dir = data_dir;
        cfg
    }
}

/// A commented config, the one `sampan-node --print-config` prints: node 1
/// of the local 3-node demo cluster.
pub const DEFAULT_CONFIG: &str = r#"# sampan-node configuration (TOML). Durations are in milliseconds.

[server]
# This node's id: one of the ids in `servers`.
node_id = 1
# Every node: "id,host:replication_port[,service_port]", separated by ';'.
# The service field may be a whole "host:port" (a peer reached through a
# proxy or NAT: its replication address is the proxy's).
# Without a service port, a node's is assumed to sit at the same offset
# from its replication port as this node's. A host may be a DNS name
# ("1,sampan-0.sampan:4001,5001"), looked up again at every connect, so a
# node that comes back at a new address under its name is found.
# A node that joins a running cluster (`sampan-cli add-node`) starts with
# only its own entry here and no [[group]]; it learns the others then.
servers = "1,127.0.0.1:4001,5001;2,127.0.0.1:4002,5002;3,127.0.0.1:4003,5003"
# The IP address the listeners (replication, service, Redis) bind, such as
# "0.0.0.0" in a container. Unset: this node's address in `servers`, which
# must then be an IP address.
# bind = "0.0.0.0"
# Nodes refuse peers from another cluster.
cluster_id = 1
# Node-to-node traffic. Shard i listens on replicate_port + i.
replicate_port = 4001
# Clients (sampan-cli, the native client) connect here.
service_port = 5001
# Where each group keeps its log, status and snapshots.
data_dir = "/tmp/sampan/node-1"
# Executor threads; 0 = one per CPU. Every node must use the same number.
shards = 1
# A follower that hears nothing for this long (randomised up to 2x) starts
# an election.
election_timeout_ms = 1000
heartbeat_interval_ms = 100
# One Raft tick: every group's clock advances by this much.
tick_ms = 50
# How long a request may wait for a leader (elections) or a forwarded answer.
request_timeout_ms = 10000
# Nodes prove this secret to each other when they connect (HMAC
# challenge-response; it never crosses the wire). At least 16 bytes, the
# same on every node: `openssl rand -hex 32` makes one.
# cluster_secret = "..."
# Refuse to start on an address other than loopback unless a
# cluster_secret and a [[server.credential]] are set.
protected_mode = true
# Most connections the listeners hold at once beside the links to other
# nodes (service-port clients, and handshakes in progress); one more is
# closed as soon as it is accepted. Shared evenly by the shards.
max_connections = 10000
# Spread leaders over the nodes: a node leading at least two groups more
# than one of their voters hands one over (checked every 5 s).
balance_leaders = false

# Tokens the service port accepts (sampan-cli --user NAME, with the token
# in SAMPAN_TOKEN). With none, any client may do anything (loopback only).
# Only an admin token may add or remove groups and members, move
# leadership or take snapshots.
# [[server.credential]]
# name = "ops"
# token = "..."
# admin = true

# TLS on the replication port (mutual: every node presents its
# certificate, which must name it, node-<id>.c<cluster_id>.sampan.internal)
# and on the service port (sampan-cli --tls-ca). `sampan-cli certs` makes
# the files. Unset: plain TCP.
# [server.tls]
# cert_file = "node-1.pem"
# key_file = "node-1.key"
# ca_file = "ca.pem"

[server.log]
# Where groups keep their entries: "shared" (one write-ahead log per
# shard, in data_dir/wal/shard-N: one fdatasync per round for all its
# groups) or "per_group" (each group its own files). Data made in one
# layout opens only in it; with "shared" keep the shard count too.
layout = "shared"
# A segment file is sealed at this size.
segment_bytes = 67108864
# Per-group segment files grow, preallocated, this much at a time.
grow_step_bytes = 4194304

[redis]
# The Redis protocol listener (redis-cli -p 6381); 0 turns it off.
port = 6381
# Merge single writes and key reads of all connections into shared
# proposals and reads, with at most this many in flight per group.
batching = true
in_flight_max = 4
# Largest bulk string a client may send (Redis's proto-max-bulk-len).
# At most the KV store's largest value (8 MiB): a larger one could never
# be stored, so it is refused before it is read.
proto_max_bulk_len = 8388608
# Largest whole request, all arguments together (Redis's
# client-query-buffer-limit); refused as soon as its lengths pass it.
request_max_bytes = 67108864
# The default user's password (Redis's requirepass): clients then send
# AUTH first (redis-cli -a PASS). Never logged or shown by CONFIG GET.
# requirepass = "change-me"
# Users in Redis's ACL SETUSER form, name first; +@read is read-only,
# db=0,1 (ours) limits a user to those databases.
# users = ["reader on >pass1 +@read", "app on >pass2 +@all db=0"]
# With no password, refuse to listen on anything but loopback (Redis's
# protected mode). Turn off only where the network keeps strangers out.
protected_mode = true
# Most client connections at once (Redis's maxclients); one more is told
# "max number of clients reached" and closed.
maxclients = 10000
# Close a client idle this many seconds (Redis's timeout); 0: never.
timeout = 0
# A client with more than this many bytes of replies pending is closed
# (Redis's client-output-buffer-limit), as is one that leaves its replies
# unread for output_stall_timeout seconds.
output_buffer_limit = 67108864
output_stall_timeout = 60
# Probe a silent connection after this many seconds and close it if the
# client is gone (Redis's tcp-keepalive); 0: off.
tcp_keepalive = 300
# A request must arrive whole within this many seconds of its first byte,
# or the client is closed (a client trickling bytes holds nothing for ever).
partial_request_timeout = 60
# A second Redis listener that speaks TLS (Redis's tls-port; 0: none), for
# `redis-cli --tls --cacert ca.pem --cert client.pem --key client.key`.
# `sampan-cli certs` makes a CA and the certificates. tls_auth_clients:
# yes (clients present a certificate the CA signed), optional, or no.
tls_port = 0
# tls_cert_file = "node-1.pem"
# tls_key_file = "node-1.key"
# tls_ca_cert_file = "ca.pem"
tls_auth_clients = "yes"
# Answer as a Redis Cluster (redis-cli -c, redis-benchmark --cluster,
# redis-py's RedisCluster): the 16384 slots spread over groups 1..=N, a key
# whose group another node leads is MOVED to that node's Redis port.
# cluster_nodes lists every node's Redis address as clients reach it.
cluster_enabled = false
# cluster_nodes = "1,127.0.0.1:6381;2,127.0.0.1:6382;3,127.0.0.1:6383"

[metrics]
# Prometheus metrics at http://ADDRESS/metrics and readiness at /health
# (200 once every group here has a leader and has applied what it knows
# committed, else 503 with the reasons). Unset: no endpoint.
# address = "127.0.0.1:9101"

[kv]
# Exactly-once sessions: a session idle this long (leader time, decided in
# the log) is forgotten; a write retried after that gets "UNCERTAIN".
# At least 600000 (twice the 5 minutes clients keep an idle session).
# Every node must use the same values.
session_idle_ms = 600000
# Answers remembered per session (at least 1024).
session_results_max = 1024

# One [[group]] per KV group this node hosts; every member lists the same.
[[group]]
group_id = 1
# Voting members and observers (learners), by node id.
members = "1,2,3"
observers = ""
# "sync": acknowledged after fdatasync on a quorum; "async": after the
# page cache (survives process crashes, not a power cut of a majority).
durability = "sync"
# Snapshots: taken this often if anything was applied since the last
# (0: not by time), and once this many bytes of entries were applied
# (0: not by size); `sampan-cli snapshot` takes one now. The log a
# snapshot covers is purged after log_retention_ms (0: at once).
snapshot_interval_ms = 3600000
snapshot_log_bytes = 268435456
log_retention_ms = 0
# Bytes per snapshot chunk, on disk and to a follower that needs it.
snapshot_chunk_bytes = 262144
# A snapshot is written at most this fast (bytes/s), so that it leaves the
# disk and the page cache to the log and the applies; 0: no limit.
snapshot_write_bytes_per_sec = 104857600
# true on a node added to a running group (`sampan-cli add-member` does it
# for you): it starts empty and takes the membership from the leader.
join = false

[[group]]
group_id = 2
members = "1,2,3"
durability = "async"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_default_parses_and_validates() {
        let cfg = NodeConfig::parse(DEFAULT_CONFIG, Path::new("default.toml")).expect("valid");
        assert_eq!(cfg.server.node_id, 1);
        assert_eq!(cfg.redis.port, 6381);
        assert_eq!(cfg.groups.len(), 2);
        for n in 1..=3 {
            let c = NodeConfig::local_demo(n, PathBuf::from(format!("/tmp/x/{n}")));
            c.validate().expect("demo node valid");
            assert_eq!(c.server.service_port, 5000 + n as u16);
            assert_eq!(c.redis.port, 6380 + n as u16);
        }
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let file = Path::new("node.toml");
        let cases = [
            (
                DEFAULT_CONFIG.replace("node_id = 1", "node_id = 9"),
                "server.node_id",
            ),
            (
                DEFAULT_CONFIG.replace(
                    "members = \"1,2,3\"\nobservers",
                    "members = \"1,2,7\"\nobservers",
                ),
                "group[0].members",
            ),
            (
                DEFAULT_CONFIG.replace("port = 6381", "port = 5001"),
                "redis.port",
            ),
            (
                DEFAULT_CONFIG.replace("tick_ms = 50", "tick_ms = 0"),
                "server.tick_ms",
            ),
            (
                DEFAULT_CONFIG.replace("group_id = 2", "group_id = 1"),
                "group[1].group_id",
            ),
            (
                DEFAULT_CONFIG.replace("session_idle_ms = 600000", "session_idle_ms = 60000"),
                "kv.session_idle_ms",
            ),
            (
                DEFAULT_CONFIG.replace("session_results_max = 1024", "session_results_max = 8"),
                "kv.session_results_max",
            ),
        ];
        for (text, field) in cases {
            let e = NodeConfig::parse(&text, file).expect_err(field).to_string();
            assert!(e.starts_with("node.toml: "), "{e}");
            assert!(e.contains(field), "{field}: {e}");
        }
        let e = NodeConfig::parse("[server]\nnode_idd = 1\n", file).expect_err("typo");
        let e = e.to_string();
        assert!(e.contains("node.toml") && e.contains("node_idd"), "{e}");
    }
}
