//! The client's settings, with their limits named.

use super::error::ClientError;
use sampan_net::{Credential, rustls};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Default time allowed for one operation, retries included.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Default time allowed for one try of an operation on one node.
pub const ATTEMPT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);
/// Default first pause between tries (then doubling, with jitter).
pub const RETRY_DELAY_MIN_DEFAULT: Duration = Duration::from_millis(10);
/// Default longest pause between tries.
pub const RETRY_DELAY_MAX_DEFAULT: Duration = Duration::from_millis(500);
/// Default bound on a session's window: the span of sequence numbers from
/// the oldest unanswered write to the newest. It must not pass what the
/// servers remember per session (`KvConfig::session_results_max`, 1024 by
/// default), or the answer to a retry could be forgotten.
pub const SESSION_WINDOW_DEFAULT: u64 = 1024;
/// Default number of sessions per group: writes in flight to one group are
/// at most this times the window.
pub const SESSIONS_PER_GROUP_DEFAULT: usize = 4;
/// Default idle time after which a session is replaced by a fresh one,
/// well before the servers drop it (`KvConfig::session_idle_ms`, 10 min).
pub const SESSION_RENEW_IDLE_DEFAULT: Duration = Duration::from_secs(5 * 60);
/// Cluster id of a server config that does not set one.
pub const CLUSTER_ID_DEFAULT: u64 = 1;

/// Settings of a [`super::Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Service addresses of some nodes (any of them; the leaders are found).
    pub servers: Vec<SocketAddr>,
    /// The cluster's id: a node of another cluster refuses the handshake.
    pub cluster_id: u64,
    /// Time allowed for one operation, every retry included.
    pub request_timeout: Duration,
    /// Time allowed for one try on one node before it is retried.
    pub attempt_timeout: Duration,
    /// First pause between tries.
    pub retry_delay_min: Duration,
    /// Longest pause between tries.
    pub retry_delay_max: Duration,
    /// Largest span of sequence numbers in flight in one session; see
    /// [`SESSION_WINDOW_DEFAULT`].
    pub session_window: u64,
    /// Sessions one group may use at once.
    pub sessions_per_group_max: usize,
    /// A session idle this long starts afresh under a new id.
    pub session_renew_idle: Duration,
    /// The token (under its name) the client proves to each node, for
    /// nodes whose service port has credentials (`[[server.credential]]`).
    pub credential: Option<Credential>,
    /// TLS to nodes whose service port has it (`[server.tls]`): the node's
    /// certificate is checked against the CA and the address dialed.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl ClientConfig {
    /// Defaults for a client of the nodes at `servers` in cluster
    /// [`CLUSTER_ID_DEFAULT`].
    pub fn new(servers: Vec<SocketAddr>) -> ClientConfig {
        ClientConfig {
            servers,
            cluster_id: CLUSTER_ID_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            attempt_timeout: ATTEMPT_TIMEOUT_DEFAULT,
            retry_delay_min: RETRY_DELAY_MIN_DEFAULT,
            retry_delay_max: RETRY_DELAY_MAX_DEFAULT,
            session_window: SESSION_WINDOW_DEFAULT,
            sessions_per_group_max: SESSIONS_PER_GROUP_DEFAULT,
            session_renew_idle: SESSION_RENEW_IDLE_DEFAULT,
            credential: None,
            tls: None,
        }
    }

    /// The same settings speaking TLS, trusting the CA in `ca_file` (PEM),
    /// with a client certificate and key if given.
    pub fn tls_ca(
        mut self,
        ca_file: &Path,
        cert_and_key: Option<(&Path, &Path)>,
    ) -> Result<ClientConfig, ClientError> {
        let tls = sampan_net::tls::client_config(ca_file, cert_and_key).map_err(|reason| {
            ClientError::Config {
                field: "tls",
                reason,
            }
        })?;
        self.tls = Some(tls);
        Ok(self)
    }

    /// The same settings proving `token` under `name` to every node.
    pub fn credential(mut self, name: &str, token: &str) -> Result<ClientConfig, ClientError> {
        let credential = Credential::new(name, token).map_err(|e| ClientError::Config {
            field: "credential",
            reason: e.to_string(),
        })?;
        self.credential = Some(credential);
        Ok(self)
    }

    /// The same settings for cluster `cluster_id`.
    pub fn cluster_id(mut self, cluster_id: u64) -> ClientConfig {
        self.cluster_id = cluster_id;
        self
    }

    /// The same settings with `timeout` for a whole operation.
    pub fn request_timeout(mut self, timeout: Duration) -> ClientConfig {
        self.request_timeout = timeout;
        self
    }

    /// The same settings with `timeout` for one try.
    pub fn attempt_timeout(mut self, timeout: Duration) -> ClientConfig {
        self.attempt_timeout = timeout;
        self
    }

    /// Checks every setting is in range.
    pub fn validate(&self) -> Result<(), ClientError> {
        let invalid = |field: &'static str, reason: &str| {
            Err(ClientError::Config {
                field,
                reason: reason.into(),
            })
        };
        if self.servers.is_empty() {
            return invalid("servers", "name at least one node's service address");
        }
        if self.request_timeout.is_zero() || self.attempt_timeout.is_zero() {
            return invalid("request_timeout/attempt_timeout", "must be above zero");
        }
        if self.retry_delay_min.is_zero() || self.retry_delay_max < self.retry_delay_min {
            return invalid("retry_delay_min/max", "need 0 < min <= max");
        }
        if self.session_window == 0 {
            return invalid("session_window", "must be above zero");
        }
        if self.sessions_per_group_max == 0 {
            return invalid("sessions_per_group_max", "must be above zero");
        }
        Ok(())
    }
}
