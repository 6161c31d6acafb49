//! Locked-memory budgeting for io_uring.
//!
//! glommio registers each executor's I/O buffers with io_uring, and the kernel
//! charges registered (pinned) pages against `RLIMIT_MEMLOCK`. The limit is
//! often small (8 MiB here), so before any executor starts we compare what the
//! shards need with the limit, raise the soft limit when the hard limit
//! allows, shrink the per-shard I/O memory when it does not, and refuse to
//! start with an error that names the limit when even the minimum won't fit.

use crate::error::FiberError;

/// The least I/O memory one executor works with (glommio needs about this for
/// its rings and a few registered buffers).
pub const IO_MEMORY_MIN_BYTES: usize = 512 << 10;

/// Per-shard I/O memory when the caller does not choose.
pub const IO_MEMORY_DEFAULT_BYTES: usize = 2 << 20;

/// Locked memory charged per executor beyond its I/O memory (ring buffers).
const RING_OVERHEAD_BYTES: usize = 128 << 10;

/// The current `RLIMIT_MEMLOCK` as (soft, hard) in bytes; `u64::MAX` means
/// unlimited.
pub fn memlock_limits() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and reads nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((to_bytes(lim.rlim_cur), to_bytes(lim.rlim_max)))
}

fn to_bytes(v: libc::rlim_t) -> u64 {
    if v == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        v
    }
}

fn set_memlock(soft: u64, hard: u64) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Decides each shard's I/O memory so that `shards` executors fit the
/// locked-memory limit, raising the soft (and, with privilege, the hard) limit
/// when that is enough. Returns the per-shard I/O memory in bytes.
pub fn plan_io_memory(shards: usize, wanted_bytes: usize) -> Result<usize, FiberError> {
    let (soft, hard) = memlock_limits().map_err(|e| FiberError::InvalidConfig {
        field: "RLIMIT_MEMLOCK",
        reason: format!("getrlimit failed: {e}"),
    })?;
    plan_with(shards, wanted_bytes, (soft, hard), &mut |s, h| {
        set_memlock(s, h).is_ok()
    })
}

/// The decision of [`plan_io_memory`], over given limits and a setter that
/// says whether the kernel accepted new limits: kept apart so tests can play
/// an unprivileged process.
fn plan_with(
    shards: usize,
    wanted_bytes: usize,
    (soft, hard): (u64, u64),
    set_limits: &mut dyn FnMut(u64, u64) -> bool,
) -> Result<usize, FiberError> {
    assert!(shards > 0, "at least one shard");
    let need = |per: usize| (shards * (per + RING_OVERHEAD_BYTES)) as u64;
    let wanted_total = need(wanted_bytes);
    if soft >= wanted_total {
        return Ok(wanted_bytes);
    }
    if hard >= wanted_total && set_limits(wanted_total, hard) {
        log::info!("raised RLIMIT_MEMLOCK soft limit from {soft} to {wanted_total} bytes");
        return Ok(wanted_bytes);
    }
    // Raising the hard limit works with CAP_SYS_RESOURCE (e.g. as root).
    if set_limits(wanted_total, wanted_total.max(hard)) {
        log::info!("raised RLIMIT_MEMLOCK from {soft}/{hard} to {wanted_total} bytes");
        return Ok(wanted_bytes);
    }
    // Use all the hard limit allows and shrink each shard's share to fit.
    let usable = if soft < hard && set_limits(hard, hard) {
        hard
    } else {
        soft
    };
    let per = (usable / shards as u64).saturating_sub(RING_OVERHEAD_BYTES as u64);
    if per >= IO_MEMORY_MIN_BYTES as u64 {
        let per = usize::try_from(per)
            .unwrap_or(wanted_bytes)
            .min(wanted_bytes);
        log::warn!(
            "RLIMIT_MEMLOCK ({usable} bytes) is below the {wanted_total} bytes wanted for \
             {shards} shard(s); io_uring memory cut to {per} bytes per shard"
        );
        return Ok(per);
    }
    let needed_bytes = need(IO_MEMORY_MIN_BYTES);
    Err(FiberError::MemlockTooLow {
        soft_bytes: soft,
        hard_bytes: hard,
        shards,
        needed_bytes,
        needed_kib: needed_bytes.div_ceil(1024),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_fits_the_limit_it_leaves() {
        let per = plan_io_memory(2, IO_MEMORY_MIN_BYTES).expect("two minimal shards fit");
        let (soft, _) = memlock_limits().expect("getrlimit");
        assert!(per >= IO_MEMORY_MIN_BYTES);
        assert!(soft >= (2 * (per + RING_OVERHEAD_BYTES)) as u64);
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn raises_the_soft_limit_up_to_the_hard_one() {
        let mut asked = Vec::new();
        let per = plan_with(2, 2 << 20, (MIB, 64 * MIB), &mut |s, h| {
            asked.push((s, h));
            true
        })
        .expect("fits under the hard limit");
        assert_eq!(per, 2 << 20);
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].1, 64 * MIB, "hard limit left alone");
    }

    #[test]
    fn unprivileged_shrinks_io_memory_to_fit() {
        let per = plan_with(4, 4 << 20, (8 * MIB, 8 * MIB), &mut |_, _| false)
            .expect("8 MiB holds four minimal shards");
        assert!(per >= IO_MEMORY_MIN_BYTES);
        assert!(4 * (per + RING_OVERHEAD_BYTES) as u64 <= 8 * MIB);
    }

    #[test]
    fn unprivileged_and_too_low_is_an_error_naming_the_limit() {
        let err = plan_with(8, 4 << 20, (MIB, MIB), &mut |_, _| false)
            .expect_err("1 MiB cannot hold 8 shards");
        match &err {
            FiberError::MemlockTooLow {
                shards,
                needed_bytes,
                ..
            } => {
                assert_eq!(*shards, 8);
                assert!(*needed_bytes > MIB);
            }
            other => panic!("wrong error: {other}"),
        }
        assert!(err.to_string().contains("ulimit -l"), "{err}");
    }

    #[test]
    fn error_names_the_limit_and_the_fix() {
        let err = FiberError::MemlockTooLow {
            soft_bytes: 65536,
            hard_bytes: 65536,
            shards: 4,
            needed_bytes: 2_621_440,
            needed_kib: 2560,
        };
        let text = err.to_string();
        assert!(text.contains("RLIMIT_MEMLOCK"), "{text}");
        assert!(text.contains("ulimit -l 2560"), "{text}");
    }
}
