//! The typed KV calls of [`Client`]: each builds a [`KvCommand`] (under
//! the exactly-once session) or a [`KvQuery`], and turns the answer into a
//! plain value.

use super::{Client, ClientError};
use bytes::Bytes;
use sampan_proto::group::GroupStatus;
use sampan_proto::kv::{
    Item, KvAnswer, KvCommand, KvFailure, KvQuery, KvRequest, KvResult, PutCondition, ScanPage,
    ScanRange, Ttl,
};
use sampan_proto::now_ms;
use sampan_proto::service::{self, Op, Route};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A key's time to live, as [`Client::ttl`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTtl {
    /// No such key (or it expired).
    Absent,
    /// The key never expires.
    Persistent,
    /// The key expires after about this long (by this machine's clock
    /// against the leader's deadline).
    Remaining(Duration),
}

/// One node's view of a group, as [`Client::status`] reports it.
#[derive(Debug)]
pub struct NodeStatus {
    /// The node's service address.
    pub addr: SocketAddr,
    /// The node's id, from its handshake, when it was reached.
    pub node: Option<u64>,
    /// Its replica's status, or why it could not be had.
    pub status: Result<GroupStatus, ClientError>,
}

fn unexpected<T>(
    group: u64,
    call: &'static str,
    reply: impl std::fmt::Debug,
) -> Result<T, ClientError> {
    Err(ClientError::Unexpected {
        group,
        call,
        reply: format!("{reply:?}"),
    })
}

fn ttl_of(ttl: Option<Duration>) -> Ttl {
    match ttl {
        Some(d) => Ttl::AfterMs(d.as_millis().max(1) as u64),
        None => Ttl::Persist,
    }
}

impl Client {
    /// Applies `command` to `group` under the client's exactly-once session
    /// and returns its result as the state machine gave it
    /// ([`KvResult::Failed`] included). Retries are safe: the write applies
    /// once whatever the number of tries.
    pub async fn execute(&self, group: u64, command: KvCommand) -> Result<KvResult, ClientError> {
        let after = self.inner.cfg.request_timeout;
        let now = Instant::now();
        let deadline = now + after;
        // No timer unless the lease has to wait for room.
        let lease = sampan_fiber::within(deadline, self.inner.sessions.lease(group))
            .await
            .map_err(|_| ClientError::Timeout {
                group,
                after,
                attempts: 0,
                last: "every session's window is full".into(),
            })?;
        let req = KvRequest {
            time_ms: 0,
            client_id: lease.client_id,
            seq: lease.seq,
            acked_below: lease.acked_below,
            command,
        };
        if let Err(failure) = req.validate() {
            return Err(ClientError::Command { group, failure });
        }
        let reply = self
            .call_from(group, Op::Propose, req.to_bytes(), now, deadline)
            .await?;
        let result = KvResult::decode(reply).map_err(|source| ClientError::Unexpected {
            group,
            call: "execute",
            reply: source.to_string(),
        })?;
        if let KvResult::Failed(KvFailure::StaleSequence { .. }) = result {
            lease.renew_session();
            return Err(ClientError::SessionLost {
                group,
                session: lease.client_id,
                seq: lease.seq,
            });
        }
        Ok(result)
    }

    /// [`Client::execute`], with a failed command as an error.
    async fn execute_ok(&self, group: u64, command: KvCommand) -> Result<KvResult, ClientError> {
        match self.execute(group, command).await? {
            KvResult::Failed(failure) => Err(ClientError::Command { group, failure }),
            ok => Ok(ok),
        }
    }

    /// A linearizable read of `group`'s state.
    pub async fn query(&self, group: u64, query: KvQuery) -> Result<KvAnswer, ClientError> {
        let reply = self.call(group, Op::Read, query.to_bytes()).await?;
        KvAnswer::decode(reply).map_err(|source| ClientError::Unexpected {
            group,
            call: "query",
            reply: source.to_string(),
        })
    }

    /// Writes `value` at `key`, with no expiry.
    pub async fn put(
        &self,
        group: u64,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        self.put_ttl(group, key, value, None).await
    }

    /// Writes `value` at `key`, expiring after `ttl` (None: never).
    pub async fn put_ttl(
        &self,
        group: u64,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<(), ClientError> {
        let cmd = KvCommand::Put {
            key: key.into(),
            value: value.into(),
            ttl: ttl_of(ttl),
            condition: PutCondition::Always,
            return_old: false,
        };
        match self.execute_ok(group, cmd).await? {
            KvResult::Put { .. } => Ok(()),
            other => unexpected(group, "put", other),
        }
    }

    /// The value at `key`, if any.
    pub async fn get(
        &self,
        group: u64,
        key: impl Into<Bytes>,
    ) -> Result<Option<Bytes>, ClientError> {
        Ok(self.get_item(group, key).await?.map(|it| it.value))
    }

    /// The value at `key` with its version and expiry, if any.
    pub async fn get_item(
        &self,
        group: u64,
        key: impl Into<Bytes>,
    ) -> Result<Option<Item>, ClientError> {
        let mut items = self.batch_get(group, vec![key.into()]).await?;
        match items.pop() {
            Some(it) if items.is_empty() => Ok(it),
            _ => unexpected(group, "get", "not one value"),
        }
    }

    /// Removes `key`; whether it was there.
    pub async fn remove(&self, group: u64, key: impl Into<Bytes>) -> Result<bool, ClientError> {
        Ok(self.batch_remove(group, vec![key.into()]).await? > 0)
    }

    /// Writes every pair at once (one log entry), all with the same expiry;
    /// returns how many were written.
    pub async fn batch_put(
        &self,
        group: u64,
        pairs: Vec<(Bytes, Bytes)>,
        ttl: Option<Duration>,
    ) -> Result<u64, ClientError> {
        let cmd = KvCommand::PutMany {
            pairs,
            ttl: ttl_of(ttl),
        };
        match self.execute_ok(group, cmd).await? {
            KvResult::Count { count, .. } => Ok(count),
            other => unexpected(group, "batch put", other),
        }
    }

    /// The items at `keys`, in order (None where absent), their deadlines
    /// on this machine's clock: what is left of a TTL is what the leader
    /// judged, whatever the skew between the two clocks.
    pub async fn batch_get(
        &self,
        group: u64,
        keys: Vec<Bytes>,
    ) -> Result<Vec<Option<Item>>, ClientError> {
        let n = keys.len();
        match self.query(group, KvQuery::Get(keys)).await? {
            a @ KvAnswer::Values { .. } => match a.into_items(now_ms()) {
                Some(v) if v.len() == n => Ok(v),
                other => unexpected(group, "get", other),
            },
            other => unexpected(group, "get", other),
        }
    }

    /// Removes `keys` at once; returns how many were there.
    pub async fn batch_remove(&self, group: u64, keys: Vec<Bytes>) -> Result<u64, ClientError> {
        let cmd = KvCommand::Remove {
            keys,
            return_old: false,
        };
        match self.execute_ok(group, cmd).await? {
            KvResult::Count { count, .. } => Ok(count),
            other => unexpected(group, "remove", other),
        }
    }

    /// Compare-and-set: if the value at `key` is `expected` (None: absent),
    /// makes it `new` (None: removes it). Returns whether it did.
    pub async fn cas(
        &self,
        group: u64,
        key: impl Into<Bytes>,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    ) -> Result<bool, ClientError> {
        let cmd = KvCommand::CompareAndSet {
            key: key.into(),
            expected,
            new,
        };
        match self.execute_ok(group, cmd).await? {
            KvResult::Flag(done) => Ok(done),
            other => unexpected(group, "cas", other),
        }
    }

    /// Adds `delta` to the decimal integer at `key` (absent: 0); returns the
    /// new value. A retried increment adds once.
    pub async fn incr(
        &self,
        group: u64,
        key: impl Into<Bytes>,
        delta: i64,
    ) -> Result<i64, ClientError> {
        let cmd = KvCommand::Increment {
            key: key.into(),
            delta,
        };
        match self.execute_ok(group, cmd).await? {
            KvResult::Int(v) => Ok(v),
            other => unexpected(group, "incr", other),
        }
    }

    /// One page of the live keys in `range` after `after`, at most `limit`;
    /// pass the page's `next` as `after` for the next page.
    pub async fn scan(
        &self,
        group: u64,
        range: ScanRange,
        after: Option<Bytes>,
        limit: u32,
    ) -> Result<ScanPage, ClientError> {
        let q = KvQuery::Scan {
            range,
            after,
            limit,
        };
        match self.query(group, q).await? {
            KvAnswer::Page { items, next } => Ok(ScanPage { items, next }),
            other => unexpected(group, "scan", other),
        }
    }

    /// The time to live of `key`.
    pub async fn ttl(&self, group: u64, key: impl Into<Bytes>) -> Result<KeyTtl, ClientError> {
        Ok(match self.get_item(group, key).await? {
            None => KeyTtl::Absent,
            Some(Item {
                expire_at_ms: None, ..
            }) => KeyTtl::Persistent,
            Some(Item {
                expire_at_ms: Some(at),
                ..
            }) => KeyTtl::Remaining(Duration::from_millis(at.saturating_sub(now_ms()))),
        })
    }

    /// Sets `key` to expire after `ttl` (None: never). Returns whether the
    /// key was there.
    pub async fn expire(
        &self,
        group: u64,
        key: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<bool, ClientError> {
        let cmd = KvCommand::SetTtl {
            key: key.into(),
            ttl: ttl_of(ttl),
        };
        match self.execute_ok(group, cmd).await? {
            KvResult::Flag(done) => Ok(done),
            other => unexpected(group, "expire", other),
        }
    }

    /// Every known node's view of `group` (role, term, leader, indexes),
    /// asked concurrently, one try each.
    pub async fn status(&self, group: u64) -> Vec<NodeStatus> {
        let mut addrs = self.inner.cfg.servers.clone();
        if let Some(l) = self.leader_of(group)
            && !addrs.contains(&l)
        {
            addrs.push(l);
        }
        let asks: Vec<_> = addrs
            .iter()
            .map(|a| Box::pin(self.status_at(*a, group)))
            .collect();
        let mut out = Vec::with_capacity(asks.len());
        // Started together, so the slowest node bounds the wait.
        let results = join_all(asks).await;
        for (addr, status) in addrs.into_iter().zip(results) {
            out.push(NodeStatus {
                addr,
                node: self.node_at(addr),
                status,
            });
        }
        out
    }

    /// The status of `group`'s replica on the node at `addr` (one try).
    pub async fn status_at(
        &self,
        addr: SocketAddr,
        group: u64,
    ) -> Result<GroupStatus, ClientError> {
        let body = self
            .request_at(addr, group, Op::Status, Route::Redirect, Bytes::new())
            .await?;
        service::decode_status(body).map_err(|source| ClientError::BadReply {
            group,
            addr,
            source,
        })
    }
}

/// Polls every future until all are done; results in order.
async fn join_all<F: Future + Unpin>(mut futs: Vec<F>) -> Vec<F::Output> {
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futs.iter_mut().zip(out.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            match std::pin::Pin::new(f).poll(cx) {
                std::task::Poll::Ready(v) => *slot = Some(v),
                std::task::Poll::Pending => pending = true,
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
