//! The status file (Raft's hard state): term, vote, commit index and the
//! membership config, kept in two CRC'd copies (see [`crate::dualfile`]).
//! It holds no open descriptor between saves: each save opens, writes,
//! syncs and closes the file. A group that never saved a state has no
//! file: the first save creates it holding that state (one write, one
//! sync, then the directory's), so a new group's start pays for one file
//! creation, not a creation and then a save.

use crate::dualfile::{DualFile, SLOT_PAYLOAD_MAX};
use crate::error::{Result, StorageError};
use crate::io::Vfs;
use std::path::{Path, PathBuf};

const MAGIC: u32 = 0x5453_5053; // "SPST"

/// What Raft must find again after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HardState {
    /// Current term.
    pub term: u64,
    /// Who this node voted for in `term` (`None`: nobody).
    pub vote: Option<u64>,
    /// Highest index known committed.
    pub commit_index: u64,
    /// The membership config, encoded by the engine.
    pub config: Vec<u8>,
}

impl HardState {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(32 + self.config.len());
        b.extend_from_slice(&self.term.to_le_bytes());
        b.push(u8::from(self.vote.is_some()));
        b.extend_from_slice(&self.vote.unwrap_or(0).to_le_bytes());
        b.extend_from_slice(&self.commit_index.to_le_bytes());
        b.extend_from_slice(&(self.config.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.config);
        b
    }

    fn decode(b: &[u8]) -> Option<HardState> {
        let u64_at = |o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
        let term = u64_at(0)?;
        let has_vote = *b.get(8)?;
        let vote = u64_at(9)?;
        let commit_index = u64_at(17)?;
        let len = u32::from_le_bytes(b.get(25..29)?.try_into().ok()?) as usize;
        let config = b.get(29..29usize.checked_add(len)?)?.to_vec();
        if has_vote > 1 || b.len() != 29 + len {
            return None;
        }
        Some(HardState {
            term,
            vote: (has_vote == 1).then_some(vote),
            commit_index,
            config,
        })
    }
}

/// The status file of a group (no descriptor held between saves).
#[derive(Debug)]
pub struct StatusFile<V: Vfs> {
    file: Backing<V>,
    state: HardState,
    group: u64,
}

/// The file, or where it will be made by the first save.
#[derive(Debug)]
enum Backing<V: Vfs> {
    File(DualFile<V>),
    NotYet { vfs: V, path: PathBuf },
}

/// Largest config (bytes) the status file holds.
pub const CONFIG_BYTES_MAX: usize = SLOT_PAYLOAD_MAX - 29;

impl<V: Vfs> StatusFile<V> {
    /// Opens the status file at `path`; a missing one holds the default
    /// state and is made by the first [`StatusFile::save`] (its directory
    /// must exist by then). A torn copy falls back to the other; two bad
    /// copies fail with [`StorageError::Corrupt`].
    pub async fn open(vfs: &V, path: &Path, group: u64) -> Result<StatusFile<V>> {
        let (file, payload) = match DualFile::open_existing(vfs, path, MAGIC, group).await? {
            Some((file, payload)) => (Backing::File(file), payload),
            None => (
                Backing::NotYet {
                    vfs: vfs.clone(),
                    path: path.to_path_buf(),
                },
                None,
            ),
        };
        let state = match payload {
            None => HardState::default(),
            Some(p) => HardState::decode(&p).ok_or_else(|| {
                StorageError::corrupt(group, path, 0, "status payload does not decode")
            })?,
        };
        sampan_fiber::group_log!(
            info,
            group,
            "group {group}: status loaded: term {}, commit {}",
            state.term,
            state.commit_index
        );
        Ok(StatusFile { file, state, group })
    }

    /// The last state saved.
    pub fn state(&self) -> &HardState {
        &self.state
    }

    /// Saves `state` durably (returns once synced).
    pub async fn save(&mut self, state: &HardState) -> Result<()> {
        if state.config.len() > CONFIG_BYTES_MAX {
            return Err(StorageError::invalid(
                self.group,
                format!(
                    "config of {} bytes exceeds {CONFIG_BYTES_MAX}",
                    state.config.len()
                ),
            ));
        }
        let bytes = state.encode();
        match &mut self.file {
            Backing::File(file) => file.write(&bytes).await?,
            Backing::NotYet { vfs, path } => {
                let (mut file, saved) =
                    DualFile::open_with(vfs, path, MAGIC, self.group, Some(&bytes)).await?;
                // Made by someone else meanwhile: ours is the newer state.
                if saved.as_deref() != Some(&bytes[..]) {
                    file.write(&bytes).await?;
                }
                self.file = Backing::File(file);
            }
        }
        self.state = state.clone();
        Ok(())
    }
}
