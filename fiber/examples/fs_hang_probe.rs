//! A probe for the shard hang the storage work saw (fiber/src/fs.rs, "Known
//! hang"): 60,000 buffered 4 KiB writes with an `fdatasync` every 50, on
//! one shard, with no timer armed. Before glommio was patched
//! (third_party/README.md) it hung in 4 of 5 release runs on a loaded
//! machine; since, 39 runs under load (`yes > /dev/null` on each core) in a
//! row finished (6 s each). Run it under load to check again:
//!
//! `cargo run --release -p sampan-fiber --example fs_hang_probe`
#![allow(clippy::print_stdout)] // a probe prints its result

use sampan_fiber::{Runtime, TaskClass, fs::File};
use std::time::{Duration, Instant};

fn main() {
    let dir = std::env::temp_dir().join(format!("fs-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let rt = Runtime::builder().shards(1).build().expect("runtime");
    let p = dir.join("f");
    let t = Instant::now();
    let n = rt
        .shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || async move {
            let f = File::open(&p, true).await.expect("open");
            for i in 0..60_000u64 {
                f.write_all_at(vec![7u8; 4096], (i % 4096) * 4096)
                    .await
                    .expect("write");
                if i % 50 == 0 {
                    f.fdatasync().await.expect("sync");
                }
            }
            60_000
        })
        .expect("ran");
    println!("{n} writes in {:?}", t.elapsed());
    rt.shutdown(Duration::from_secs(1)).expect("stop");
    let _ = std::fs::remove_dir_all(&dir);
}
