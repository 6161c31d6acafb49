//! sampan-storage: the Raft log, the status file and the snapshot store.
//!
//! **For:** keeping each group's log in segment files with index files,
//! durably and with a CRC on every record; the hard-state (`status`) file;
//! snapshot files. **Not for:** Raft logic or networking; it knows the
//! record format, not what the records mean.
//!
//! Being built (issue "Storage"); this crate is empty until then.
