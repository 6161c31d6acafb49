//! Shared helpers for the runtime's integration tests.

use sampan_fiber::{IO_MEMORY_MIN_BYTES, Runtime};

/// A runtime sized for tests: minimal io_uring memory, so that many tests can
/// run at once under an 8 MiB `RLIMIT_MEMLOCK`, and the stall detector on.
pub fn runtime(shards: usize) -> Runtime {
    let _ = env_logger::builder().is_test(true).try_init();
    Runtime::builder()
        .name("test")
        .shards(shards)
        .io_memory_bytes(IO_MEMORY_MIN_BYTES)
        .detect_stalls(true)
        .build()
        .expect("runtime starts")
}
