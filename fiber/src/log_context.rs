//! What a log line about a group says besides its text: the group and the
//! term its replica on this shard is in, as key-values (`group=3 term=7`,
//! fields of their own in structured log formats). A group's fibers all
//! run on one shard, so the term is kept per shard thread: the Raft loop
//! sets it when the term changes, and any crate's line about the group
//! ([`group_log!`](crate::group_log)) reads it. Term 0: not known yet
//! (the group's files are being opened).

use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    static TERMS: RefCell<HashMap<u64, u64>> = RefCell::new(HashMap::new());
}

/// Records that `group`'s replica on this shard is in `term`.
pub fn set_term(group: u64, term: u64) {
    TERMS.with(|t| {
        t.borrow_mut().insert(group, term);
    });
}

/// Forgets `group` (its replica on this shard stopped).
pub fn forget(group: u64) {
    TERMS.with(|t| {
        t.borrow_mut().remove(&group);
    });
}

/// The term of `group`'s replica on this shard; 0 if not known.
pub fn term(group: u64) -> u64 {
    TERMS.with(|t| t.borrow().get(&group).copied().unwrap_or(0))
}

/// Logs a line about a group at `level` (`info`, `warn`, ...), with the
/// group and its replica's term on this shard as key-values:
/// `group_log!(warn, group, "group {group}: log purge failed: {e}")`.
#[macro_export]
macro_rules! group_log {
    ($level:ident, $group:expr, $($arg:tt)+) => {{
        let group: u64 = $group;
        $crate::__log::$level!(
            group = group,
            term = $crate::log_context::term(group);
            $($arg)+
        )
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_per_group_and_forgotten() {
        set_term(7, 3);
        set_term(8, 5);
        assert_eq!((term(7), term(8), term(9)), (3, 5, 0));
        forget(7);
        assert_eq!(term(7), 0);
    }
}
