//! Exactly-once for retried writes: per client session, the results of the
//! most recent requests, so that a retry after a timeout gets the first
//! answer instead of applying twice.
//!
//! A client numbers its requests 1, 2, 3... in a session and tells, with each
//! one, the lowest number whose answer it has not received (`acked_below`);
//! results below that are forgotten. Sessions idle longer than the configured
//! time are dropped, judged by the leader's timestamps in the log, so every
//! replica drops them at the same index. Kept in snapshots; persistent maps
//! make freezing them O(1).

use imbl::OrdMap;
use sampan_proto::kv::{KvFailure, KvResult};

/// One client's remembered results.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Session {
    /// Results by sequence number, at most the configured number.
    pub(crate) results: OrdMap<u64, KvResult>,
    /// The lowest sequence number whose result may still be remembered;
    /// anything below is answered with [`KvFailure::StaleSequence`].
    pub(crate) oldest_kept: u64,
    /// Leader time of the session's last request.
    pub(crate) last_active_ms: u64,
}

/// What to do with a request, decided before applying it.
#[derive(Debug, PartialEq)]
pub(crate) enum Admission {
    /// New: apply it, then [`Sessions::record`] the result.
    Apply,
    /// Seen before: answer with this, apply nothing.
    Answer(KvResult),
}

/// The table of sessions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sessions {
    pub(crate) by_client: OrdMap<u64, Session>,
}

impl Sessions {
    /// Decides whether request `seq` of `client` applies, forgetting results
    /// the client acknowledged.
    pub(crate) fn admit(
        &mut self,
        client: u64,
        seq: u64,
        acked_below: u64,
        time_ms: u64,
    ) -> Admission {
        if !self.by_client.contains_key(&client) && acked_below > 1 {
            // The client acknowledged earlier answers, so it had a session that
            // was dropped while idle: this may be a retry of a request that
            // applied, and its answer is gone.
            return Admission::Answer(KvResult::Failed(KvFailure::StaleSequence {
                oldest_kept: acked_below,
            }));
        }
        let s = self.by_client.entry(client).or_default();
        s.last_active_ms = s.last_active_ms.max(time_ms);
        if acked_below > s.oldest_kept {
            s.oldest_kept = acked_below;
            // Remove from the low end one by one: imbl's split_lookup
            // rebuilds the whole map, which made every write pay for the
            // session's up to 1,024 remembered results (puts at 2,000 in
            // flight fell from ~60k/s to ~2k/s).
            while let Some(&(seq, _)) = s.results.get_min() {
                if seq >= acked_below {
                    break;
                }
                s.results.remove(&seq);
            }
        }
        if seq < s.oldest_kept {
            return Admission::Answer(KvResult::Failed(KvFailure::StaleSequence {
                oldest_kept: s.oldest_kept,
            }));
        }
        match s.results.get(&seq) {
            Some(r) => Admission::Answer(r.clone()),
            None => Admission::Apply,
        }
    }

    /// Remembers the result of an applied request, forgetting the oldest
    /// when the session holds more than `max_results`.
    pub(crate) fn record(&mut self, client: u64, seq: u64, result: &KvResult, max_results: usize) {
        let Some(s) = self.by_client.get_mut(&client) else {
            return;
        };
        s.results.insert(seq, result.clone());
        while s.results.len() > max_results {
            let Some(&(oldest, _)) = s.results.get_min() else {
                break;
            };
            s.results.remove(&oldest);
            s.oldest_kept = s.oldest_kept.max(oldest + 1);
        }
    }

    /// Drops sessions idle for more than `idle_ms` at leader time `now_ms`;
    /// returns how many.
    pub(crate) fn expire_idle(&mut self, now_ms: u64, idle_ms: u64) -> usize {
        let stale: Vec<u64> = self
            .by_client
            .iter()
            .filter(|(_, s)| now_ms.saturating_sub(s.last_active_ms) > idle_ms)
            .map(|(c, _)| *c)
            .collect();
        for c in &stale {
            self.by_client.remove(c);
        }
        stale.len()
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_gets_the_first_answer_and_acked_results_are_forgotten() {
        let mut s = Sessions::default();
        assert_eq!(s.admit(7, 1, 1, 100), Admission::Apply);
        s.record(7, 1, &KvResult::Int(1), 16);
        assert_eq!(s.admit(7, 1, 1, 101), Admission::Answer(KvResult::Int(1)));
        assert_eq!(s.admit(7, 2, 2, 102), Admission::Apply);
        s.record(7, 2, &KvResult::Int(2), 16);
        assert_eq!(
            s.admit(7, 1, 2, 103),
            Admission::Answer(KvResult::Failed(KvFailure::StaleSequence {
                oldest_kept: 2
            }))
        );
        assert_eq!(s.admit(7, 2, 2, 104), Admission::Answer(KvResult::Int(2)));
    }

    #[test]
    fn window_is_bounded_and_idle_sessions_expire() {
        let mut s = Sessions::default();
        for seq in 1..=10 {
            assert_eq!(s.admit(1, seq, 1, seq), Admission::Apply);
            s.record(1, seq, &KvResult::Flag(true), 4);
        }
        assert!(matches!(
            s.admit(1, 6, 1, 11),
            Admission::Answer(KvResult::Failed(_))
        ));
        assert_eq!(
            s.admit(1, 7, 1, 11),
            Admission::Answer(KvResult::Flag(true))
        );
        assert_eq!(s.expire_idle(1_000, 100), 1);
        assert!(s.is_empty());
        // The client comes back with acknowledged history: refused, not re-applied.
        assert!(matches!(
            s.admit(1, 11, 11, 1_001),
            Admission::Answer(KvResult::Failed(_))
        ));
    }
}
