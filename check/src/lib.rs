//! sampan-check: tells a user whether a Sampan cluster (or any key-value
//! store that speaks the Redis protocol) kept its promises under faults.
//!
//! - [`run`] (`sampan-check run`) starts real `sampan-node` processes, each
//!   in its own network namespace, drives them with many concurrent
//!   clients (the Redis port through redis-rs, and the native client)
//!   while a nemesis applies faults on a seeded schedule, and writes the
//!   history of every operation.
//! - [`verify`] (`sampan-check verify HISTORY.jsonl`) decides whether a
//!   history is linearizable, key by key, and draws the violation when it
//!   is not.
//! - [`history`] is the history format both share; other tools may write
//!   it too.
//!
//! **For:** testing a cluster end to end, in CI and in long runs. **Not
//! for:** production traffic or benchmarking (the harness's clients are
//! threads that record every operation).

pub mod history;
pub mod rng;
pub mod run;
pub mod verify;
