//! The `SnapshotManager` trait: what the engine needs from a group's
//! snapshot store, whoever implements it (Dongting's `SnapshotManager` is
//! the model). [`crate::SnapshotStore`] (a directory per snapshot on a
//! [`crate::Vfs`]) is the default; an embedder may keep snapshots
//! elsewhere (an object store, a shared volume).
//!
//! The contract the engine relies on:
//! - A snapshot is written as a stream of byte chunks whose total size
//!   need not be known up front, and becomes visible (in `list`) only when
//!   [`SnapshotSink::finish`] returns, whole and durable; a sink dropped or
//!   aborted before leaves nothing a later `list` shows.
//! - `config` is opaque bytes the engine stores with the snapshot (its
//!   index, term and membership) and gets back from `list`.
//! - A [`SnapshotSource`] reads the bytes back in order and fails with
//!   [`crate::StorageError::Corrupt`] (naming where) if they do not match
//!   what was written; it stays readable while newer snapshots are written
//!   and older ones pruned.
//! - Every call is shard-local and never blocks the shard thread.

use crate::error::Result;
use crate::snapshot::SnapshotMeta;
use bytes::Bytes;

/// A group's snapshot store. See the module docs for the contract.
#[allow(async_fn_in_trait)] // shard-local: the futures need not be `Send`
pub trait SnapshotManager: Clone + 'static {
    /// A snapshot being written.
    type Sink: SnapshotSink;
    /// A finished snapshot being read.
    type Source: SnapshotSource;

    /// Every finished snapshot, oldest first.
    async fn list(&self) -> Result<Vec<SnapshotMeta>>;

    /// Starts writing a snapshot up to (`last_index`, `last_term`) that
    /// carries `config`.
    async fn create(&self, last_index: u64, last_term: u64, config: Vec<u8>) -> Result<Self::Sink>;

    /// Opens a finished snapshot for reading.
    async fn open(&self, meta: &SnapshotMeta) -> Result<Self::Source>;

    /// Where the snapshot `meta` describes lives (a path, a URL): what
    /// errors and logs name.
    fn location(&self, meta: &SnapshotMeta) -> String;

    /// The newest finished snapshot.
    async fn latest(&self) -> Result<Option<SnapshotMeta>> {
        Ok(self.list().await?.pop())
    }
}

/// A snapshot being written.
#[allow(async_fn_in_trait)]
pub trait SnapshotSink {
    /// Appends bytes (handed over: no copy needed).
    async fn write_chunk(&mut self, chunk: Vec<u8>) -> Result<()>;
    /// Bytes written so far.
    fn size(&self) -> u64;
    /// CRC32C of the bytes written so far.
    fn crc(&self) -> u32;
    /// Makes the snapshot durable and visible; returns its description.
    async fn finish(self) -> Result<SnapshotMeta>;
    /// Drops the unfinished snapshot.
    async fn abort(self);
    /// Where a helper thread may write the whole data with plain syscalls
    /// (then [`SnapshotSink::adopt`] it), if the sink allows it. The
    /// default: nowhere; chunks go through [`SnapshotSink::write_chunk`].
    fn os_data_path(&self) -> Option<std::path::PathBuf> {
        None
    }
    /// Takes `size` bytes with CRC32C `crc` written at
    /// [`SnapshotSink::os_data_path`] by another writer.
    fn adopt(&mut self, size: u64, crc: u32) -> Result<()> {
        let _ = (size, crc);
        Err(crate::StorageError::invalid(
            0,
            "this snapshot sink takes no data written outside it",
        ))
    }
}

/// A finished snapshot being read, in order.
#[allow(async_fn_in_trait)]
pub trait SnapshotSource {
    /// The snapshot's description.
    fn meta(&self) -> &SnapshotMeta;
    /// Where the next chunk starts.
    fn offset(&self) -> u64;
    /// The next chunk of at most `bytes_max` bytes with its offset; `None`
    /// at the end. Fails with `Corrupt` if the bytes do not match.
    async fn next_chunk(&mut self, bytes_max: usize) -> Result<Option<(u64, Bytes)>>;
    /// Moves to `offset` (a resumed transfer), still checking the bytes.
    async fn skip_to(&mut self, offset: u64) -> Result<()>;
}

impl<V: crate::Vfs> SnapshotManager for crate::SnapshotStore<V> {
    type Sink = crate::SnapshotWriter<V>;
    type Source = crate::SnapshotReader<V>;

    async fn list(&self) -> Result<Vec<SnapshotMeta>> {
        crate::SnapshotStore::list(self).await
    }

    async fn create(&self, last_index: u64, last_term: u64, config: Vec<u8>) -> Result<Self::Sink> {
        crate::SnapshotStore::create(self, last_index, last_term, config).await
    }

    async fn open(&self, meta: &SnapshotMeta) -> Result<Self::Source> {
        self.reader(meta).await
    }

    fn location(&self, meta: &SnapshotMeta) -> String {
        self.path_of(meta).display().to_string()
    }
}

impl<V: crate::Vfs> SnapshotSink for crate::SnapshotWriter<V> {
    async fn write_chunk(&mut self, chunk: Vec<u8>) -> Result<()> {
        crate::SnapshotWriter::write_owned(self, chunk).await
    }

    fn size(&self) -> u64 {
        crate::SnapshotWriter::size(self)
    }

    fn crc(&self) -> u32 {
        crate::SnapshotWriter::crc(self)
    }

    async fn finish(self) -> Result<SnapshotMeta> {
        crate::SnapshotWriter::finish(self).await
    }

    async fn abort(self) {
        crate::SnapshotWriter::abort(self).await
    }

    fn os_data_path(&self) -> Option<std::path::PathBuf> {
        crate::SnapshotWriter::os_data_path(self)
    }

    fn adopt(&mut self, size: u64, crc: u32) -> Result<()> {
        crate::SnapshotWriter::adopt(self, size, crc)
    }
}

impl<V: crate::Vfs> SnapshotSource for crate::SnapshotReader<V> {
    fn meta(&self) -> &SnapshotMeta {
        crate::SnapshotReader::meta(self)
    }

    fn offset(&self) -> u64 {
        crate::SnapshotReader::offset(self)
    }

    async fn next_chunk(&mut self, bytes_max: usize) -> Result<Option<(u64, Bytes)>> {
        crate::SnapshotReader::next_chunk(self, bytes_max)
    }

    async fn skip_to(&mut self, offset: u64) -> Result<()> {
        crate::SnapshotReader::skip_to(self, offset)
    }
}
