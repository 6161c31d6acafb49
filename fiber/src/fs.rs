//! File I/O on the shard, through io_uring (glommio's DMA and buffered
//! files), behind names of ours so that storage never calls glommio itself.
//!
//! Being filled in by the storage work.
