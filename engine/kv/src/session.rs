//! Exactly-once for retried writes: per client session, the results of the
//! most recent requests, so that a retry after a timeout gets the first
//! answer instead of applying twice.
//!
//! A client numbers its requests 1, 2, 3... in a session and tells, with each
//! one, the lowest number whose answer it has not received (`acked_below`);
//! results below that are forgotten. Sessions idle longer than the configured
//! time are dropped, judged by the leader's timestamps in the log, so every
//! replica drops them at the same index. Kept in snapshots; freezing them is
//! O(1): the sessions are a persistent map, and each session's results a
//! window behind an `Arc` (copied once by the first write after a freeze).

use imbl::OrdMap;
use sampan_proto::kv::{KvFailure, KvResult};
use std::collections::VecDeque;
use std::sync::Arc;

/// One client's remembered results.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Session {
    /// Results by sequence number, at most the configured number.
    pub(crate) results: Results,
    /// The lowest sequence number whose result may still be remembered;
    /// anything below is answered with [`KvFailure::StaleSequence`].
    pub(crate) oldest_kept: u64,
    /// Leader time of the session's last request.
    pub(crate) last_active_ms: u64,
}

/// A session's remembered results in sequence order.
///
/// A client's requests almost always apply in the order it numbered them,
/// so remembering one is a push at the back and forgetting the
/// acknowledged ones pops at the front; one that applies out of order is
/// put in its place. (An ordered map paid a walk down its tree and copies
/// of its nodes for each: with the clone of the result, 16% of a
/// follower's CPU under puts.) The window sits behind an `Arc`, so
/// freezing the store for a snapshot copies none of it; the first write
/// to a session after a freeze copies that session's window once.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Results(Arc<VecDeque<(u64, KvResult)>>);

impl Results {
    /// The result remembered for `seq`.
    pub fn get(&self, seq: u64) -> Option<&KvResult> {
        let i = self.0.binary_search_by_key(&seq, |(s, _)| *s).ok()?;
        Some(&self.0[i].1)
    }

    /// Remembers `result` for `seq`, replacing one remembered before.
    pub(crate) fn insert(&mut self, seq: u64, result: KvResult) {
        let window = Arc::make_mut(&mut self.0);
        match window.back() {
            Some(&(last, _)) if last >= seq => {
                match window.binary_search_by_key(&seq, |(s, _)| *s) {
                    Ok(i) => window[i].1 = result,
                    Err(i) => window.insert(i, (seq, result)),
                }
            }
            _ => window.push_back((seq, result)),
        }
    }

    /// Forgets the oldest result; returns its sequence number.
    pub(crate) fn pop_first(&mut self) -> Option<u64> {
        self.0.front()?;
        Arc::make_mut(&mut self.0).pop_front().map(|(seq, _)| seq)
    }

    /// Forgets every result numbered below `seq`.
    pub(crate) fn forget_below(&mut self, seq: u64) {
        if self.0.front().is_some_and(|&(first, _)| first < seq) {
            let window = Arc::make_mut(&mut self.0);
            while window.front().is_some_and(|&(first, _)| first < seq) {
                window.pop_front();
            }
        }
    }

    /// How many results are remembered.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The results, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &KvResult)> {
        self.0.iter().map(|(seq, r)| (*seq, r))
    }
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
            s.results.forget_below(acked_below);
        }
        if seq < s.oldest_kept {
            return Admission::Answer(KvResult::Failed(KvFailure::StaleSequence {
                oldest_kept: s.oldest_kept,
            }));
        }
        match s.results.get(seq) {
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
            let Some(oldest) = s.results.pop_first() else {
                break;
            };
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

    /// What the window must behave as: an ordered map from sequence
    /// numbers to results.
    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        PopFirst,
        ForgetBelow(u64),
        Freeze,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (0u64..64).prop_map(Op::Insert),
            1 => Just(Op::PopFirst),
            1 => (0u64..64).prop_map(Op::ForgetBelow),
            1 => Just(Op::Freeze),
        ]
    }

    proptest::proptest! {
        /// In any order of inserts (mostly rising, as clients number
        /// them, but any), pops and forgets, the window answers as an
        /// ordered map does; and a copy taken at any point (a snapshot's
        /// freeze) never changes afterwards.
        #[test]
        fn the_window_behaves_as_an_ordered_map(ops in proptest::collection::vec(op(), 0..200)) {
            let mut window = Results::default();
            let mut model = std::collections::BTreeMap::new();
            let mut frozen: Vec<(Results, Vec<(u64, KvResult)>)> = Vec::new();
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Insert(seq) => {
                        let r = KvResult::Int(n as i64);
                        window.insert(seq, r.clone());
                        model.insert(seq, r);
                    }
                    Op::PopFirst => {
                        let want = model.pop_first().map(|(seq, _)| seq);
                        proptest::prop_assert_eq!(window.pop_first(), want);
                    }
                    Op::ForgetBelow(seq) => {
                        window.forget_below(seq);
                        model.retain(|s, _| *s >= seq);
                    }
                    Op::Freeze => {
                        let seen = window.iter().map(|(s, r)| (s, r.clone())).collect();
                        frozen.push((window.clone(), seen));
                    }
                }
                let seen: Vec<(u64, KvResult)> =
                    window.iter().map(|(s, r)| (s, r.clone())).collect();
                let want: Vec<(u64, KvResult)> =
                    model.iter().map(|(s, r)| (*s, r.clone())).collect();
                proptest::prop_assert_eq!(&seen, &want);
                proptest::prop_assert_eq!(window.len(), model.len());
                for seq in 0..64 {
                    proptest::prop_assert_eq!(window.get(seq), model.get(&seq));
                }
            }
            for (copy, seen) in frozen {
                let now: Vec<(u64, KvResult)> = copy.iter().map(|(s, r)| (s, r.clone())).collect();
                proptest::prop_assert_eq!(now, seen);
            }
        }
    }
}
