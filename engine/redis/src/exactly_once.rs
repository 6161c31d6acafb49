//! Exactly-once writes for the Redis port, and honest outcomes.
//!
//! Every write that enters through the port (a connection's command, a
//! pipeline's `Batch`, the batcher's merged `PutMany`) is proposed under an
//! exactly-once session of its shard's pool ([`Writer`]): a session id and
//! a sequence number that stay the same across every retry, so the KV state
//! machine applies it once and answers a repeat with the first result.
//!
//! Why a pool per shard and not a session per connection: each write gets
//! its own (session, sequence) pair either way, which is all exactly-once
//! needs; but a session per connection would leave one remembered session
//! in the state machine (and in every snapshot) per connection ever opened,
//! until it idles out — `redis-benchmark -c 50` would leave 50 per run.
//! The pool opens a new session only when every open one has its window of
//! writes in flight.
//!
//! **Outcomes.** A write whose outcome the node cannot know (its leader
//! stepped down before it committed, a forward got no answer, the time ran
//! out) is retried under its session until the outcome is known or the
//! request timeout passes. If it stays unknown the client gets an error
//! whose first word is `UNCERTAIN`: the write may or may not have applied
//! (once at most). Any other error reply means it did not and will not
//! apply.

use sampan::server::GroupRef;
use sampan::service::ServerError;
use sampan_client::session::Sessions;
use sampan_kv::{KvCommand, KvFailure, KvRequest, KvResult};
use std::time::{Duration, Instant};

/// Writes in flight per session: the state machine remembers this many
/// results per session (`KvConfig::session_results_max`, 1,024 by default).
const SESSION_WINDOW: u64 = 1024;
/// Sessions per group per shard.
const SESSIONS_PER_GROUP_MAX: usize = 64;
/// A session unused this long starts afresh, as the client's do (the state
/// machine forgets an idle session after `KvConfig::session_idle_ms`, 10
/// minutes by default, which must stay above it).
const SESSION_RENEW_IDLE: Duration = sampan_client::SESSION_RENEW_IDLE_DEFAULT;
/// Pause between tries of a write whose outcome is not known yet.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Why a write has no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// It did not and will not apply; the text is the error reply.
    Failed(String),
    /// It may or may not have applied (once at most).
    Uncertain(String),
}

impl WriteError {
    /// The error reply, as the client sees it (`ERR ...`, `UNCERTAIN ...`).
    pub fn reply_text(&self) -> String {
        match self {
            WriteError::Failed(t) => t.clone(),
            WriteError::Uncertain(why) => {
                format!("UNCERTAIN the write may or may not have been applied: {why}")
            }
        }
    }
}

/// The shard's exactly-once writer. Shard-local.
#[derive(Debug)]
pub struct Writer {
    sessions: Sessions,
    request_timeout: Duration,
}

impl Writer {
    /// A writer whose writes give up after `request_timeout`.
    pub fn new(request_timeout: Duration) -> Writer {
        Writer {
            sessions: Sessions::with_limits(
                SESSION_WINDOW,
                SESSIONS_PER_GROUP_MAX,
                SESSION_RENEW_IDLE,
            ),
            request_timeout,
        }
    }

    /// Applies `command` to `group` once, whatever is retried on the way;
    /// the state machine's result ([`KvResult::Failed`] included).
    pub async fn write(
        &self,
        group: &GroupRef,
        command: KvCommand,
    ) -> Result<KvResult, WriteError> {
        let deadline = Instant::now() + self.request_timeout;
        let Ok(lease) = sampan_fiber::within(deadline, self.sessions.lease(group.id())).await
        else {
            return Err(WriteError::Failed(format!(
                "ERR group {}: too many writes in flight",
                group.id()
            )));
        };
        let payload = KvRequest {
            time_ms: 0,
            client_id: lease.client_id,
            seq: lease.seq,
            acked_below: lease.acked_below,
            command,
        }
        .to_bytes();
        let mut unknown: Option<ServerError> = None;
        loop {
            let last = match group.propose(payload.clone()).await {
                Ok(reply) => return result(group.id(), reply, &lease),
                Err(e) => e,
            };
            // This node is stopping: its clients reconnect elsewhere, and
            // retrying here would only hold their connections open.
            let here_stopping =
                matches!(last, ServerError::ShuttingDown { node } if node == group.node());
            let again = (!last.is_definite() || last.is_retryable()) && !here_stopping;
            if !last.is_definite() {
                unknown = Some(last.clone());
            }
            if !again || Instant::now() + RETRY_PAUSE >= deadline {
                return Err(match unknown {
                    Some(u) => WriteError::Uncertain(u.to_string()),
                    None => WriteError::Failed(super::render::error_text(&last)),
                });
            }
            sampan_fiber::group_log!(
                debug,
                group.id(),
                "group {}: write retried under its session: {last}",
                group.id()
            );
            sampan_fiber::sleep(RETRY_PAUSE).await;
        }
    }
}

/// The state machine's answer to a write: its result, or — if the session
/// no longer remembers it — an unknown outcome.
fn result(
    group: u64,
    reply: bytes::Bytes,
    lease: &sampan_client::session::Lease,
) -> Result<KvResult, WriteError> {
    match KvResult::decode(reply) {
        Ok(KvResult::Failed(KvFailure::StaleSequence { .. })) => {
            // This copy was refused because the session had moved past it:
            // an earlier copy may have applied, and its answer is gone.
            lease.renew_session();
            Err(WriteError::Uncertain(format!(
                "group {group}: the session no longer remembers this write's answer"
            )))
        }
        Ok(r) => Ok(r),
        Err(e) => Err(WriteError::Uncertain(format!(
            "group {group}: its result does not decode: {e}"
        ))),
    }
}
