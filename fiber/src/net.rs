//! TCP on the shard (glommio's networking), behind names of ours so that the
//! transport never calls glommio itself.
//!
//! Being filled in by the net work.
