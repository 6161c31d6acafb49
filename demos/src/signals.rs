//! Waiting for Ctrl-C or SIGTERM without a handler: the signals are blocked
//! in every thread (call [`block_stop_signals`] before starting any) and
//! one thread takes them with `sigwait`.

/// Blocks SIGINT and SIGTERM in the calling thread and in every thread it
/// starts afterwards, so that only [`wait_for_stop_signal`] receives them.
pub fn block_stop_signals() -> std::io::Result<()> {
    let set = stop_set();
    // SAFETY: `set` is an initialised signal set; a null old-set is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits until SIGINT or SIGTERM arrives; returns its number.
pub fn wait_for_stop_signal() -> std::io::Result<i32> {
    let set = stop_set();
    let mut sig: libc::c_int = 0;
    // SAFETY: both pointers are valid for the call.
    let rc = unsafe { libc::sigwait(&set, &mut sig) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(sig)
}

fn stop_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set; sigaddset takes valid
    // signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Makes `cmd`'s process a child that Ctrl-C does not reach (its own
/// process group: the parent stops it in turn) and that gets SIGTERM if the
/// parent dies without stopping it. For node processes a launcher starts.
pub fn stop_with_parent(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe, as a pre-exec hook must be.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}
