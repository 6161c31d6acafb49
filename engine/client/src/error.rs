//! The client's errors: each names the group, and the node or address
//! when one is at fault.

use sampan_fiber::FiberError;
use sampan_net::NetError;
use sampan_proto::codec::DecodeError;
use sampan_proto::kv::KvFailure;
use sampan_proto::service::ServerError;
use std::net::SocketAddr;
use std::time::Duration;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A setting is out of range.
    #[error("invalid client config: {field}: {reason}")]
    Config {
        /// The setting at fault.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// No answer within the request timeout, retries included. A write may
    /// or may not have applied (once at most, thanks to its session).
    #[error("{}no answer within {after:?} after {attempts} tries (last: {last})", about(*group))]
    Timeout {
        /// The group.
        group: u64,
        /// The request timeout that passed.
        after: Duration,
        /// Tries made.
        attempts: u32,
        /// What went wrong on the last try.
        last: String,
    },
    /// A write whose outcome stayed unknown until the request timeout:
    /// some try reached a node and no answer came back (a leader lost
    /// mid-request, a connection cut). It applied at most once (its session
    /// sees to that), maybe not at all; read the state to know.
    #[error(
        "group {group}: outcome unknown after {after:?}: the write may or may not have applied (last: {last})"
    )]
    Uncertain {
        /// The group.
        group: u64,
        /// The request timeout that passed.
        after: Duration,
        /// What went wrong on the last try.
        last: String,
    },
    /// Every node asked says it has no replica of the group.
    #[error("group {group}: no node has it ({nodes} asked)")]
    NoSuchGroup {
        /// The group.
        group: u64,
        /// Nodes that said so.
        nodes: usize,
    },
    /// A node answered with an error that retrying does not cure (storage
    /// failure, refused, malformed request).
    #[error("{}{source}", about(*group))]
    Server {
        /// The group.
        group: u64,
        /// The node's answer.
        source: ServerError,
    },
    /// The transport failed in a way retrying does not cure (a request
    /// over the frame size limit, say).
    #[error("{}{addr}: {source}", about(*group))]
    Net {
        /// The group.
        group: u64,
        /// The node's address.
        addr: SocketAddr,
        /// The transport's error.
        source: NetError,
    },
    /// A node's reply did not decode.
    #[error("{}bad reply from {addr}: {source}", about(*group))]
    BadReply {
        /// The group.
        group: u64,
        /// The node's address.
        addr: SocketAddr,
        /// What was wrong.
        source: DecodeError,
    },
    /// The reply decoded but is not the kind the call expects (a server of
    /// another kind of state machine, say).
    #[error("group {group}: unexpected reply to {call}: {reply}")]
    Unexpected {
        /// The group.
        group: u64,
        /// The call made.
        call: &'static str,
        /// What came back.
        reply: String,
    },
    /// The command applied and failed the same way on every replica (an
    /// increment of a value that is not an integer, a key over its limit).
    #[error("group {group}: command failed: {failure:?}")]
    Command {
        /// The group.
        group: u64,
        /// Why.
        failure: KvFailure,
    },
    /// The servers no longer remember the session's answer to this write
    /// (the session idled out, or its window was passed): whether the
    /// write applied is unknown. Later writes use a fresh session.
    #[error("group {group}: session {session} lost the answer to write {seq}")]
    SessionLost {
        /// The group.
        group: u64,
        /// The session (client) id.
        session: u64,
        /// The write's sequence number.
        seq: u64,
    },
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
    /// The blocking client's runtime failed, or an async call was made
    /// outside a shard.
    #[error(transparent)]
    Runtime(#[from] FiberError),
}

impl ClientError {
    /// Whether the error means the call surely did not and will not apply
    /// (a refusal, a bad argument, a failed command). `false`: a write may
    /// have applied (at most once, under its session) or may still; the
    /// state tells, not the error.
    pub fn is_definite(&self) -> bool {
        match self {
            ClientError::Config { .. }
            | ClientError::NoSuchGroup { .. }
            | ClientError::Command { .. } => true,
            ClientError::Server { source, .. } => source.is_definite(),
            // Refused by the transport before anything was sent (a frame
            // over the limit); a cut connection comes back as a timeout.
            ClientError::Net { .. } => true,
            ClientError::Timeout { .. }
            | ClientError::Uncertain { .. }
            | ClientError::BadReply { .. }
            | ClientError::Unexpected { .. }
            | ClientError::SessionLost { .. }
            | ClientError::Closed
            | ClientError::Runtime(_) => false,
        }
    }

    /// Whether the error says the cluster could not be reached or did not
    /// answer in time (rather than refusing the request).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            ClientError::Timeout { .. }
                | ClientError::Uncertain { .. }
                | ClientError::Closed
                | ClientError::Runtime(_)
        )
    }
}

/// What an error is about: `group N: `, or nothing for a call about the
/// node itself (group 0: its groups, its nodes).
fn about(group: u64) -> String {
    if group == 0 {
        String::new()
    } else {
        format!("group {group}: ")
    }
}
