//! Ctrl-C (or SIGTERM) stops a run cleanly: the load stops, the local
//! cluster's nodes are stopped and its temporary data removed. A second
//! Ctrl-C kills the benchmark at once (the nodes still get SIGTERM, as
//! their parent died).

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    // SAFETY: signal() is async-signal-safe; the next one is fatal.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}

/// Catches SIGINT and SIGTERM.
pub fn install() {
    let handler = on_signal as extern "C" fn(libc::c_int);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic and resets itself,
        // both async-signal-safe.
        unsafe { libc::signal(sig, handler as libc::sighandler_t) };
    }
}

/// Whether a stop signal came.
pub fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}
