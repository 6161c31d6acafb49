//! `sampan-check run`: the fault harness (being built; see issue #16).

/// The command line of `sampan-check run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

/// Runs `sampan-check run`; returns the exit status.
pub fn cli(_args: RunArgs) -> i32 {
    log::error!("run: the harness is not built yet");
    2
}
