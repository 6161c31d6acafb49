//! `sampan-check verify`: the linearizability checker (being built; see
//! issue #16).

/// The command line of `sampan-check verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The history (one JSON event a line).
    pub history: std::path::PathBuf,
}

/// Runs `sampan-check verify`; returns the exit status.
pub fn cli(args: VerifyArgs) -> i32 {
    log::error!(
        "verify {}: the checker is not built yet",
        args.history.display()
    );
    2
}
