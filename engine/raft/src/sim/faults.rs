//! The runtime faults of the simulator: what a group runtime can do to a
//! core besides the network — lose ticks or hand them over late and all at
//! once, stall the whole process for longer than an election timeout, run
//! its clock fast or slow within the configured drift bound, report a
//! write durable late (after later truncations), and crash with only part
//! of a write batch on disk — plus one network fault the two-sided
//! partitions cannot make (a single link down) — and how often each fired.

use std::fmt;

use crate::rng::SplitMix64;

/// Which runtime faults one run injects; rates are per mille per chance.
#[derive(Debug, Clone, Default)]
pub(crate) struct FaultPlan {
    /// A tick never reaches the core.
    pub(crate) tick_lost_pm: u64,
    /// A tick is held back and handed over with a later one, all at once.
    pub(crate) tick_late_pm: u64,
    /// Per node and nominal tick: the process stalls for longer than an
    /// election timeout, then gets everything that arrived at once.
    pub(crate) pause_pm: u64,
    /// Node clocks (and tick rates) reach the configured drift bound.
    pub(crate) drift: bool,
    /// A durability report reaches the core late (reports stay in order).
    pub(crate) report_late_pm: u64,
    /// A crash keeps a random prefix of the writes not yet synced.
    pub(crate) crash_partial: bool,
    /// Per nominal tick: one link (a leader's, if any) goes down while
    /// both ends reach everyone else.
    pub(crate) link_cut_pm: u64,
}

impl FaultPlan {
    /// A random mix: each fault is on in about half the runs.
    pub(crate) fn random(rng: &mut SplitMix64) -> Self {
        let mut rate = |max: u64| {
            if rng.chance(500) {
                1 + rng.below(max)
            } else {
                0
            }
        };
        let (tick_lost_pm, tick_late_pm) = (rate(60), rate(150));
        let (pause_pm, report_late_pm) = (rate(8), rate(300));
        let link_cut_pm = rate(30);
        Self {
            link_cut_pm,
            tick_lost_pm,
            tick_late_pm,
            pause_pm,
            report_late_pm,
            drift: rng.chance(500),
            crash_partial: rng.chance(500),
        }
    }
}

/// The faults counted.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    /// A lone voter with learners won an election.
    LoneVoterElection,
    /// A tick was lost.
    TickLost,
    /// A tick was held back, to be handed over with later ones.
    TickLate,
    /// A process stalled for longer than an election timeout.
    Pause,
    /// A node's clock runs at (nearly) the drift bound.
    ClockAtDriftBound,
    /// A durability report was delayed.
    ReportLate,
    /// A delayed report reached the core after it had truncated or
    /// restored its log since the write.
    ReportAcrossTruncation,
    /// A crash kept part of the unsynced writes.
    CrashPartial,
    /// One link went down.
    LinkCut,
}

const FAULTS: usize = 9;

impl Fault {
    const ALL: [Fault; FAULTS] = [
        Fault::LoneVoterElection,
        Fault::TickLost,
        Fault::TickLate,
        Fault::Pause,
        Fault::ClockAtDriftBound,
        Fault::ReportLate,
        Fault::ReportAcrossTruncation,
        Fault::CrashPartial,
        Fault::LinkCut,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::LoneVoterElection => "lone_voter_elections",
            Fault::TickLost => "ticks_lost",
            Fault::TickLate => "ticks_late",
            Fault::Pause => "pauses",
            Fault::ClockAtDriftBound => "clocks_at_drift_bound",
            Fault::ReportLate => "reports_late",
            Fault::ReportAcrossTruncation => "reports_across_truncation",
            Fault::CrashPartial => "crashes_partial",
            Fault::LinkCut => "link_cuts",
        }
    }
}

/// How many times each fault fired, and in how many runs it was on.
#[derive(Default, Clone, Copy)]
pub(crate) struct FaultCounts {
    fired: [u64; FAULTS],
    runs: [u64; FAULTS],
}

impl FaultCounts {
    /// `fault` fired once.
    pub(crate) fn fire(&mut self, fault: Fault) {
        self.fired[fault as usize] += 1;
    }

    /// This run injects `fault`.
    pub(crate) fn configure(&mut self, fault: Fault) {
        self.runs[fault as usize] = 1;
    }

    /// Adds another run's counts.
    pub(crate) fn add(&mut self, o: &FaultCounts) {
        for k in 0..FAULTS {
            self.fired[k] += o.fired[k];
            self.runs[k] += o.runs[k];
        }
    }

    /// The faults some run was configured for that never fired: the
    /// simulator no longer reaches them.
    pub(crate) fn never_fired(&self) -> Vec<&'static str> {
        Fault::ALL
            .iter()
            .filter(|&&f| self.runs[f as usize] > 0 && self.fired[f as usize] == 0)
            .map(|f| f.name())
            .collect()
    }
}

impl fmt::Debug for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for fault in Fault::ALL {
            let k = fault as usize;
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(
                f,
                "{}: {} ({} runs)",
                fault.name(),
                self.fired[k],
                self.runs[k]
            )?;
        }
        Ok(())
    }
}
