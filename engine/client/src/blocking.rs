//! [`BlockingClient`]: the client for plain threads. It owns a one-shard
//! runtime of its own; the [`Client`] lives on that shard, and each call
//! crosses into it through the shard's mailbox
//! ([`ShardHandle::run_blocking`]). Calls from many threads at once are
//! pipelined on the same connections.

use super::{Client, ClientConfig, ClientError, ClientStats, KeyTtl, NodeStatus};
use bytes::Bytes;
use sampan_fiber::{IO_MEMORY_MIN_BYTES, Runtime, ShardHandle, TaskClass};
use sampan_proto::kv::{Item, KvAnswer, KvCommand, KvQuery, KvResult, ScanPage, ScanRange};
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long closing waits for the runtime's fibers to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

thread_local! {
    /// The clients living on this shard thread, by blocking client id.
    static CLIENTS: RefCell<HashMap<u64, Client>> = RefCell::new(HashMap::new());
}

static IDS: AtomicU64 = AtomicU64::new(1);

fn local(id: u64) -> Result<Client, ClientError> {
    CLIENTS.with(|c| c.borrow().get(&id).cloned().ok_or(ClientError::Closed))
}

/// The blocking client: `Send + Sync`; every call blocks the calling
/// thread (never call it on a shard: use [`Client`] there). See the module
/// docs of [`crate`].
pub struct BlockingClient {
    id: u64,
    shard: ShardHandle,
    runtime: Mutex<Option<Runtime>>,
}

impl std::fmt::Debug for BlockingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingClient")
            .field("id", &self.id)
            .finish()
    }
}

impl BlockingClient {
    /// Starts the client's runtime (one shard, the smallest io memory) and
    /// a [`Client`] with `cfg` on it. Connects lazily, on the first call.
    pub fn connect(cfg: ClientConfig) -> Result<BlockingClient, ClientError> {
        cfg.validate()?;
        let runtime = Runtime::builder()
            .name("sampan-client")
            .shards(1)
            .io_memory_bytes(IO_MEMORY_MIN_BYTES)
            .build()?;
        let shard = runtime.shard(0)?;
        let id = IDS.fetch_add(1, Ordering::Relaxed);
        let started = shard.run_blocking(TaskClass::Latency, move || async move {
            let client = Client::new(cfg)?;
            CLIENTS.with(|c| c.borrow_mut().insert(id, client));
            Ok::<(), ClientError>(())
        });
        if let Err(e) = started.map_err(ClientError::from).and_then(|r| r) {
            let _ = runtime.shutdown(SHUTDOWN_GRACE);
            return Err(e);
        }
        Ok(BlockingClient {
            id,
            shard,
            runtime: Mutex::new(Some(runtime)),
        })
    }

    /// Runs `f` with the async [`Client`] on the client's shard and waits
    /// for its result: for many requests at once from one thread (spawn
    /// fibers in `f`, or join futures), or calls not wrapped here.
    pub fn run<F, Fut, T>(&self, f: F) -> Result<T, ClientError>
    where
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let id = self.id;
        self.shard
            .run_blocking(TaskClass::Latency, move || async move {
                match local(id) {
                    Ok(c) => Ok(f(c).await),
                    Err(e) => Err(e),
                }
            })?
    }

    /// [`BlockingClient::run`] for a call that may fail.
    fn call<F, Fut, T>(&self, f: F) -> Result<T, ClientError>
    where
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ClientError>> + 'static,
        T: Send + 'static,
    {
        self.run(f)?
    }

    /// See [`Client::execute`].
    pub fn execute(&self, group: u64, command: KvCommand) -> Result<KvResult, ClientError> {
        self.call(move |c| async move { c.execute(group, command).await })
    }

    /// See [`Client::query`].
    pub fn query(&self, group: u64, query: KvQuery) -> Result<KvAnswer, ClientError> {
        self.call(move |c| async move { c.query(group, query).await })
    }

    /// See [`Client::put`].
    pub fn put(
        &self,
        group: u64,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        self.put_ttl(group, key, value, None)
    }

    /// See [`Client::put_ttl`].
    pub fn put_ttl(
        &self,
        group: u64,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<(), ClientError> {
        let (k, v) = (key.into(), value.into());
        self.call(move |c| async move { c.put_ttl(group, k, v, ttl).await })
    }

    /// See [`Client::get`].
    pub fn get(&self, group: u64, key: impl Into<Bytes>) -> Result<Option<Bytes>, ClientError> {
        let k = key.into();
        self.call(move |c| async move { c.get(group, k).await })
    }

    /// See [`Client::get_item`].
    pub fn get_item(&self, group: u64, key: impl Into<Bytes>) -> Result<Option<Item>, ClientError> {
        let k = key.into();
        self.call(move |c| async move { c.get_item(group, k).await })
    }

    /// See [`Client::remove`].
    pub fn remove(&self, group: u64, key: impl Into<Bytes>) -> Result<bool, ClientError> {
        let k = key.into();
        self.call(move |c| async move { c.remove(group, k).await })
    }

    /// See [`Client::batch_put`].
    pub fn batch_put(
        &self,
        group: u64,
        pairs: Vec<(Bytes, Bytes)>,
        ttl: Option<Duration>,
    ) -> Result<u64, ClientError> {
        self.call(move |c| async move { c.batch_put(group, pairs, ttl).await })
    }

    /// See [`Client::batch_get`].
    pub fn batch_get(
        &self,
        group: u64,
        keys: Vec<Bytes>,
    ) -> Result<Vec<Option<Item>>, ClientError> {
        self.call(move |c| async move { c.batch_get(group, keys).await })
    }

    /// See [`Client::batch_remove`].
    pub fn batch_remove(&self, group: u64, keys: Vec<Bytes>) -> Result<u64, ClientError> {
        self.call(move |c| async move { c.batch_remove(group, keys).await })
    }

    /// See [`Client::cas`].
    pub fn cas(
        &self,
        group: u64,
        key: impl Into<Bytes>,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    ) -> Result<bool, ClientError> {
        let k = key.into();
        self.call(move |c| async move { c.cas(group, k, expected, new).await })
    }

    /// See [`Client::incr`].
    pub fn incr(&self, group: u64, key: impl Into<Bytes>, delta: i64) -> Result<i64, ClientError> {
        let k = key.into();
        self.call(move |c| async move { c.incr(group, k, delta).await })
    }

    /// See [`Client::scan`].
    pub fn scan(
        &self,
        group: u64,
        range: ScanRange,
        after: Option<Bytes>,
        limit: u32,
    ) -> Result<ScanPage, ClientError> {
        self.call(move |c| async move { c.scan(group, range, after, limit).await })
    }

    /// See [`Client::ttl`].
    pub fn ttl(&self, group: u64, key: impl Into<Bytes>) -> Result<KeyTtl, ClientError> {
        let k = key.into();
        self.call(move |c| async move { c.ttl(group, k).await })
    }

    /// See [`Client::expire`].
    pub fn expire(
        &self,
        group: u64,
        key: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<bool, ClientError> {
        let k = key.into();
        self.call(move |c| async move { c.expire(group, k, ttl).await })
    }

    /// See [`Client::status`].
    pub fn status(&self, group: u64) -> Result<Vec<NodeStatus>, ClientError> {
        self.run(move |c| async move { c.status(group).await })
    }

    /// See [`Client::leader_of`].
    pub fn leader_addr(&self, group: u64) -> Option<std::net::SocketAddr> {
        self.run(move |c| async move { c.leader_of(group) })
            .ok()
            .flatten()
    }

    /// See [`Client::stats`].
    pub fn stats(&self) -> Result<ClientStats, ClientError> {
        self.run(|c| async move { c.stats() })
    }

    /// Closes the connections and stops the runtime (dropping the client
    /// does the same).
    pub fn close(self) {
        drop(self);
    }

    fn stop(&self) {
        let id = self.id;
        let _ = self
            .shard
            .run_blocking(TaskClass::Latency, move || async move {
                if let Some(c) = CLIENTS.with(|c| c.borrow_mut().remove(&id)) {
                    c.close();
                }
            });
        let runtime = self.runtime.lock().ok().and_then(|mut r| r.take());
        if let Some(rt) = runtime
            && let Err(e) = rt.shutdown(SHUTDOWN_GRACE)
        {
            log::warn!("client runtime did not stop cleanly: {e}");
        }
    }
}

impl Drop for BlockingClient {
    fn drop(&mut self) {
        self.stop();
    }
}
