//! Administration through the service port: snapshots, membership
//! changes, leader transfer, adding, stopping and removing a node's
//! replica of a group, and the nodes a node knows (their addresses). What `sampan-cli` uses for its admin commands.

use super::{Client, ClientError};
use bytes::Bytes;
use sampan_net::Body;
use sampan_proto::config::GroupConfig;
use sampan_proto::group::SnapshotSaved;
use sampan_proto::service::{self, Op, Route, ServiceRequest};
use std::collections::BTreeSet;
use std::net::SocketAddr;

impl Client {
    /// Sends one request to the node at `addr` (one try, no redirect) and
    /// returns the reply's body.
    pub async fn request_at(
        &self,
        addr: SocketAddr,
        group: u64,
        op: Op,
        route: Route,
        payload: Bytes,
    ) -> Result<Bytes, ClientError> {
        let limit = match op {
            // These wait for the cluster (a catch-up, a snapshot write).
            Op::ChangeMembers | Op::TransferLeader | Op::SnapshotNow | Op::AddGroup => {
                self.inner.cfg.request_timeout
            }
            _ => self.inner.cfg.attempt_timeout,
        };
        let timeout = |last: String| ClientError::Timeout {
            group,
            after: limit,
            attempts: 1,
            last,
        };
        let conn = self.connect_within(addr, group, limit).await?;
        let req = ServiceRequest { op, route, payload };
        let frame = conn
            .request(
                service::kind::CLIENT,
                group,
                Body::from(req.encode()),
                limit,
            )
            .await
            .map_err(|e| {
                self.inner.pool.discard(addr, &conn, "request failed");
                timeout(e.to_string())
            })?;
        service::decode_reply(frame.body)
            .map_err(|source| ClientError::BadReply {
                group,
                addr,
                source,
            })?
            .map_err(|source| match source {
                service::ServerError::NoSuchGroup { .. } => {
                    ClientError::NoSuchGroup { group, nodes: 1 }
                }
                source => ClientError::Server { group, source },
            })
    }

    /// The id of the node at `addr` (from the connection's handshake).
    pub async fn node_id_at(&self, addr: SocketAddr) -> Result<u64, ClientError> {
        if let Some(id) = self.node_at(addr) {
            return Ok(id);
        }
        let conn = self
            .connect_within(addr, 0, self.inner.cfg.attempt_timeout)
            .await?;
        Ok(conn.peer_node())
    }

    /// A pooled connection to `addr`, or the error a request for `group`
    /// gets when none comes within `limit`.
    async fn connect_within(
        &self,
        addr: SocketAddr,
        group: u64,
        limit: std::time::Duration,
    ) -> Result<sampan_net::Connection, ClientError> {
        let timeout = |last: String| ClientError::Timeout {
            group,
            after: limit,
            attempts: 1,
            last,
        };
        match sampan_fiber::timeout(limit, self.inner.pool.get(addr)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(super::pool::ConnectError::Failed(why))) => Err(timeout(why)),
            Ok(Err(super::pool::ConnectError::Fatal(source))) => Err(ClientError::Net {
                group,
                addr,
                source,
            }),
            Err(_) => Err(timeout(format!("no connection to {addr}"))),
        }
    }

    /// Writes a snapshot of `group` on the node at `addr` now and purges
    /// the log it covers there; resolves once it is durable.
    pub async fn snapshot_at(
        &self,
        addr: SocketAddr,
        group: u64,
    ) -> Result<SnapshotSaved, ClientError> {
        let body = self
            .request_at(addr, group, Op::SnapshotNow, Route::Redirect, Bytes::new())
            .await?;
        service::decode_saved(body).map_err(|source| ClientError::BadReply {
            group,
            addr,
            source,
        })
    }

    /// A piece of the stored snapshot of `group` on the node at `addr`
    /// (its newest, or the one `read.at` names): what a backup copies out.
    pub async fn read_snapshot_at(
        &self,
        addr: SocketAddr,
        group: u64,
        read: service::SnapshotRead,
    ) -> Result<service::SnapshotPiece, ClientError> {
        let body = self
            .request_at(
                addr,
                group,
                Op::ReadSnapshot,
                Route::Redirect,
                read.encode(),
            )
            .await?;
        service::SnapshotPiece::decode(body).map_err(|source| ClientError::BadReply {
            group,
            addr,
            source,
        })
    }

    /// Changes `group`'s membership to `voters` and `learners` (on its
    /// leader, found as for any request). New nodes must run a joining
    /// replica first ([`Client::add_group_at`] with `join`). Resolves once
    /// the new membership is in force and committed.
    pub async fn change_membership(
        &self,
        group: u64,
        voters: &BTreeSet<u64>,
        learners: &BTreeSet<u64>,
    ) -> Result<(), ClientError> {
        self.change_members(
            group,
            &service::MembersChange {
                voters: voters.clone(),
                learners: learners.clone(),
                expected: None,
            },
        )
        .await
    }

    /// Changes `group`'s membership as `change` says: with
    /// [`service::MembersChange::expected`] set, the leader refuses
    /// (nothing changed) unless the membership in force is still the one
    /// the target was computed from or already the target, so that this
    /// call's retries, or a request that arrives late, never undo a change
    /// made since. What `sampan-cli add-member` and `remove-member` use.
    pub async fn change_members(
        &self,
        group: u64,
        change: &service::MembersChange,
    ) -> Result<(), ClientError> {
        let payload = service::encode_members(change);
        self.call(group, Op::ChangeMembers, payload)
            .await
            .map(|_| ())
    }

    /// Hands `group`'s leadership to voter `to`; resolves once `to` leads.
    pub async fn transfer_leader(&self, group: u64, to: u64) -> Result<(), ClientError> {
        let payload = Bytes::copy_from_slice(&to.to_le_bytes());
        self.call(group, Op::TransferLeader, payload)
            .await
            .map(|_| ())
    }

    /// Starts the node at `addr`'s replica of the group `cfg` describes (a
    /// node that is neither member nor observer refuses).
    pub async fn add_group_at(
        &self,
        addr: SocketAddr,
        cfg: &GroupConfig,
    ) -> Result<(), ClientError> {
        let payload = service::encode_group_config(cfg);
        self.request_at(addr, cfg.group_id, Op::AddGroup, Route::Redirect, payload)
            .await
            .map(|_| ())
    }

    /// The groups the node at `addr` runs, in order.
    pub async fn list_groups_at(&self, addr: SocketAddr) -> Result<Vec<u64>, ClientError> {
        let body = self
            .request_at(addr, 0, Op::ListGroups, Route::Redirect, Bytes::new())
            .await?;
        service::decode_group_ids(body).map_err(|source| ClientError::BadReply {
            group: 0,
            addr,
            source,
        })
    }

    /// The nodes the node at `addr` knows, with their addresses (itself
    /// included).
    pub async fn list_nodes_at(
        &self,
        addr: SocketAddr,
    ) -> Result<Vec<service::NodeAddrs>, ClientError> {
        let body = self
            .request_at(addr, 0, Op::ListNodes, Route::Redirect, Bytes::new())
            .await?;
        service::decode_nodes(body).map_err(|source| ClientError::BadReply {
            group: 0,
            addr,
            source,
        })
    }

    /// Tells the node at `addr` these nodes' addresses: it records them
    /// durably and connects to them (its own entry is ignored).
    pub async fn set_nodes_at(
        &self,
        addr: SocketAddr,
        nodes: &[service::NodeAddrs],
    ) -> Result<(), ClientError> {
        let payload = service::encode_nodes(nodes);
        self.request_at(addr, 0, Op::SetNodes, Route::Redirect, payload)
            .await
            .map(|_| ())
    }

    /// Tells the node at `addr` to forget node `node` (refused while a
    /// group there still has it as a member); returns whether it knew it.
    pub async fn forget_node_at(&self, addr: SocketAddr, node: u64) -> Result<bool, ClientError> {
        let payload = Bytes::copy_from_slice(&node.to_le_bytes());
        let body = self
            .request_at(addr, 0, Op::ForgetNode, Route::Redirect, payload)
            .await?;
        Ok(body.first() == Some(&1))
    }

    /// Stops the node at `addr`'s replica of `group`, keeping its files;
    /// returns whether it ran.
    pub async fn stop_group_at(&self, addr: SocketAddr, group: u64) -> Result<bool, ClientError> {
        let body = self
            .request_at(addr, group, Op::StopGroup, Route::Redirect, Bytes::new())
            .await?;
        Ok(body.first() == Some(&1))
    }

    /// Stops the node at `addr`'s replica of `group` and deletes its files;
    /// returns whether it ran. Stop the group on every node first
    /// ([`Client::stop_group_at`]) so that none still needs another's log.
    pub async fn remove_group_at(&self, addr: SocketAddr, group: u64) -> Result<bool, ClientError> {
        let body = self
            .request_at(addr, group, Op::RemoveGroup, Route::Redirect, Bytes::new())
            .await?;
        Ok(body.first() == Some(&1))
    }
}
