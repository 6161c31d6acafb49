//! Latency and CPU of one durable append, by method: 2 KiB written into
//! pre-zeroed space then made durable, 5,000 times, on one shard.
//!
//! `cargo run --release -p sampan-fiber --example fs_sync_latency`
#![allow(clippy::print_stdout)] // a probe prints its result

use sampan_fiber::{Runtime, TaskClass, fs::File};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const N: u64 = 5_000;
const LEN: usize = 2048;

fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    t / 100.0
}

fn report(name: &str, mut lat: Vec<Duration>, cpu: f64) {
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize];
    println!(
        "{name:<28} p50 {:>7.1?} p90 {:>7.1?} p99 {:>7.1?}  cpu/op {:>5.1} µs",
        p(0.5),
        p(0.9),
        p(0.99),
        cpu * 1e6 / lat.len() as f64
    );
}

fn main() {
    let dir = std::env::temp_dir().join(format!("fs-sync-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let rt = Runtime::builder().shards(1).build().expect("runtime");
    let p = dir.join("f");
    std::fs::write(&p, vec![0u8; (N as usize + 10) * LEN]).expect("zeros");
    let std_file = std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open");
    std_file.sync_all().expect("sync");
    rt.shard(0)
        .expect("shard")
        .run_blocking(TaskClass::Latency, move || async move {
            let f = File::open(&p, false).await.expect("open");
            for round in 0..2 {
                let (c0, mut lat) = (cpu_secs(), Vec::new());
                for i in 0..N {
                    let t = Instant::now();
                    f.write_all_at(vec![7u8; LEN], i * LEN as u64)
                        .await
                        .expect("write");
                    f.fdatasync().await.expect("sync");
                    lat.push(t.elapsed());
                }
                report(
                    &format!("io_uring write+fdatasync {round}"),
                    lat,
                    cpu_secs() - c0,
                );
                let (c0, mut lat) = (cpu_secs(), Vec::new());
                for i in 0..N {
                    let t = Instant::now();
                    f.write_all_at_durable(vec![7u8; LEN], i * LEN as u64)
                        .await
                        .expect("write");
                    lat.push(t.elapsed());
                }
                report(
                    &format!("io_uring write DSYNC {round}"),
                    lat,
                    cpu_secs() - c0,
                );
                let (c0, mut lat) = (cpu_secs(), Vec::new());
                let fd = std_file.as_raw_fd();
                let buf = vec![8u8; LEN];
                for i in 0..N {
                    let t = Instant::now();
                    // SAFETY: a valid descriptor and buffer; a probe.
                    let n = unsafe {
                        libc::pwrite(fd, buf.as_ptr().cast(), LEN, (i * LEN as u64) as i64)
                    };
                    assert_eq!(n, LEN as isize);
                    // SAFETY: as above.
                    assert_eq!(unsafe { libc::fdatasync(fd) }, 0);
                    lat.push(t.elapsed());
                }
                report(
                    &format!("blocking pwrite+fdatasync {round}"),
                    lat,
                    cpu_secs() - c0,
                );
                let (c0, mut lat) = (cpu_secs(), Vec::new());
                let iov = libc::iovec {
                    iov_base: buf.as_ptr() as *mut _,
                    iov_len: LEN,
                };
                for i in 0..N {
                    let t = Instant::now();
                    // SAFETY: as above.
                    let n = unsafe {
                        libc::pwritev2(fd, &iov, 1, (i * LEN as u64) as i64, libc::RWF_DSYNC)
                    };
                    assert_eq!(n, LEN as isize);
                    lat.push(t.elapsed());
                }
                report(
                    &format!("blocking pwritev2 DSYNC {round}"),
                    lat,
                    cpu_secs() - c0,
                );
                let (c0, mut lat, mut again) = (cpu_secs(), Vec::new(), 0);
                for i in 0..N {
                    let t = Instant::now();
                    // SAFETY: as above.
                    let n = unsafe {
                        libc::pwritev2(fd, &iov, 1, (i * LEN as u64) as i64, libc::RWF_NOWAIT)
                    };
                    if n != LEN as isize {
                        again += 1;
                        f.write_all_at(vec![7u8; LEN], i * LEN as u64)
                            .await
                            .expect("write");
                    }
                    f.fdatasync().await.expect("sync");
                    lat.push(t.elapsed());
                }
                report(
                    &format!("NOWAIT pwrite+uring sync {round}"),
                    lat,
                    cpu_secs() - c0,
                );
                println!("  (NOWAIT refused {again} of {N})");
            }
        })
        .expect("ran");
    rt.shutdown(Duration::from_secs(1)).expect("stop");
    let _ = std::fs::remove_dir_all(&dir);
}
