//! Settings of the transport, with their limits named.

use crate::auth::{ClientKeys, Credential, Key};
use crate::error::NetError;
use crate::frame::{FRAME_BYTES_MAX_DEFAULT, HEADER_LEN};
use crate::handshake::{Keys, Role};
use crate::tls::NodeTls;
use std::sync::Arc;
use std::time::Duration;

/// Default bound on bytes queued and not yet written, per connection.
pub const BYTES_IN_FLIGHT_MAX_DEFAULT: usize = 8 << 20;
/// Default time allowed for a TCP connect.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);
/// Default time allowed for the handshake after the TCP connect.
pub const HANDSHAKE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);
/// Default bound on connections a transport's listeners hold at once,
/// beside its links to nodes.
pub const CONNECTIONS_MAX_DEFAULT: usize = 10_000;
/// Default first reconnect delay.
pub const RECONNECT_DELAY_MIN_DEFAULT: Duration = Duration::from_millis(50);
/// Default longest reconnect delay.
pub const RECONNECT_DELAY_MAX_DEFAULT: Duration = Duration::from_secs(3);

/// Settings of a [`crate::Transport`] (and of client connections).
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The cluster this node belongs to; peers of another cluster are refused.
    pub cluster_id: u64,
    /// This node's id (a client id for clients).
    pub node_id: u64,
    /// Largest frame sent or accepted, header included.
    pub frame_bytes_max: usize,
    /// Bytes queued and not yet written per connection before senders wait.
    pub bytes_in_flight_max: usize,
    /// Time allowed for a TCP connect.
    pub connect_timeout: Duration,
    /// Time allowed for the handshake.
    pub handshake_timeout: Duration,
    /// Most connections the listeners hold at once beside established links
    /// to nodes: handshakes in progress on either port, plus client
    /// connections. One more is closed as soon as it is accepted, and
    /// counted ([`crate::Transport::connections_refused`]), so a flood of
    /// connections (idle, or trickling a hello) cannot take a fiber and
    /// buffers each without bound.
    pub connections_max: usize,
    /// First reconnect delay (then doubling, with jitter).
    pub reconnect_delay_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_delay_max: Duration,
    /// The secret every node of the cluster holds: with it, nodes prove it
    /// to each other in the handshake and refuse a peer that cannot. `None`:
    /// nodes are let in on their word (loopback only, by the server's
    /// protected mode).
    pub cluster_secret: Option<Key>,
    /// The client tokens the service port accepts, each with what it
    /// allows. `None`: every client is let in, with every privilege.
    pub client_keys: Option<Arc<ClientKeys>>,
    /// The token this side proves when it dials a service port as a client.
    pub credential: Option<Credential>,
    /// TLS for a node: mutual TLS with every peer, and TLS on the service
    /// port. `None`: plain TCP.
    pub tls: Option<NodeTls>,
    /// TLS for a client dialing service ports (the CA the nodes'
    /// certificates chain to). `None`: plain TCP.
    pub client_tls: Option<Arc<rustls::ClientConfig>>,
}

impl NetConfig {
    /// Defaults for node `node_id` of cluster `cluster_id`.
    pub fn new(cluster_id: u64, node_id: u64) -> NetConfig {
        NetConfig {
            cluster_id,
            node_id,
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            bytes_in_flight_max: BYTES_IN_FLIGHT_MAX_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            handshake_timeout: HANDSHAKE_TIMEOUT_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            reconnect_delay_min: RECONNECT_DELAY_MIN_DEFAULT,
            reconnect_delay_max: RECONNECT_DELAY_MAX_DEFAULT,
            cluster_secret: None,
            client_keys: None,
            credential: None,
            tls: None,
            client_tls: None,
        }
    }

    /// The keys of a handshake as `role`: `dialing` or accepting.
    pub(crate) fn keys(&self, role: Role, dialing: bool) -> Keys {
        match (role, dialing) {
            (Role::Node, _) => self
                .cluster_secret
                .clone()
                .map_or(Keys::Open, Keys::Cluster),
            (Role::Client, true) => self
                .credential
                .clone()
                .map_or(Keys::Open, |c| Keys::Client {
                    name: c.name,
                    key: c.key,
                }),
            (Role::Client, false) => self.client_keys.clone().map_or(Keys::Open, Keys::Clients),
        }
    }

    /// Checks every setting is in range.
    pub fn validate(&self) -> Result<(), NetError> {
        let invalid = |field, reason: &str| {
            Err(NetError::InvalidConfig {
                field,
                reason: reason.into(),
            })
        };
        if self.frame_bytes_max < HEADER_LEN || self.frame_bytes_max > u32::MAX as usize {
            return invalid("frame_bytes_max", "must hold a header and fit in 32 bits");
        }
        if self.bytes_in_flight_max == 0 {
            return invalid("bytes_in_flight_max", "must be above zero");
        }
        if self.connect_timeout.is_zero() || self.handshake_timeout.is_zero() {
            return invalid("connect_timeout/handshake_timeout", "must be above zero");
        }
        if self.connections_max == 0 {
            return invalid("connections_max", "must be above zero");
        }
        if self.reconnect_delay_min.is_zero() || self.reconnect_delay_max < self.reconnect_delay_min
        {
            return invalid("reconnect_delay_min/max", "need 0 < min <= max");
        }
        Ok(())
    }
}
