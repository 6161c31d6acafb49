//! The pure Raft core: being built (issue "Raft core").
