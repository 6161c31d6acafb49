//! Redis commands by name and error replies by code, as Redis's own
//! `INFO commandstats` and `INFO errorstats` count them: per node, kept
//! per shard thread in plain cells (no atomics, no locks on the request
//! path) and summed over the shards at each scrape by a
//! [`CommandsCollector`].
//!
//! Names are those of the command table (`unknown` for any other, so a
//! client sending made-up names cannot grow the table); error codes are
//! the first word of the replies this crate writes (`ERR`, `WRONGTYPE`,
//! `NOAUTH`, `MOVED`...), a bounded set.

use crate::command_table::COMMANDS;
use sampan_fiber::{RuntimeHandle, TaskClass};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

/// The longest command name of the table is shorter than this.
const NAME_BYTES_MAX: usize = 32;
/// The longest error code counted as itself (else `ERR`).
const CODE_BYTES_MAX: usize = 24;

/// The command table's names, by lower-case bytes.
static NAMES: LazyLock<HashMap<&'static [u8], &'static str>> = LazyLock::new(|| {
    COMMANDS
        .iter()
        .map(|c| (c.name.as_bytes(), c.name))
        .collect()
});

#[derive(Default)]
struct Counts {
    calls: HashMap<&'static str, u64>,
    errors: HashMap<String, u64>,
}

thread_local! {
    static COUNTS: RefCell<Counts> = RefCell::new(Counts::default());
}

/// Counts a call of the command named `name` (any case).
pub(crate) fn call(name: &[u8]) {
    let mut lower = [0u8; NAME_BYTES_MAX];
    let known = (name.len() <= NAME_BYTES_MAX)
        .then(|| {
            let l = &mut lower[..name.len()];
            l.copy_from_slice(name);
            l.make_ascii_lowercase();
            NAMES.get(&*l).copied()
        })
        .flatten()
        .unwrap_or("unknown");
    COUNTS.with(|c| *c.borrow_mut().calls.entry(known).or_default() += 1);
}

/// Counts an error reply `msg` by its code.
pub(crate) fn error(msg: &str) {
    let word = msg.split(' ').next().unwrap_or("");
    let code = if !word.is_empty()
        && word.len() <= CODE_BYTES_MAX
        && word.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
    {
        word
    } else {
        "ERR"
    };
    COUNTS.with(|c| {
        let mut c = c.borrow_mut();
        match c.errors.get_mut(code) {
            Some(n) => *n += 1,
            None => {
                c.errors.insert(code.to_string(), 1);
            }
        }
    });
}

/// This thread's counts: (calls by command, errors by code).
fn snapshot() -> (BTreeMap<&'static str, u64>, BTreeMap<String, u64>) {
    COUNTS.with(|c| {
        let c = c.borrow();
        (
            c.calls.iter().map(|(k, v)| (*k, *v)).collect(),
            c.errors.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        )
    })
}

/// The node's Redis command and error counts for `/metrics`
/// (`sampan_redis_commands_total{command}`,
/// `sampan_redis_errors_total{code}`): register one per node, whatever
/// the number of Redis ports (their counts are the node's together).
#[derive(Debug, Clone)]
pub struct CommandsCollector {
    runtime: RuntimeHandle,
    shards: usize,
}

impl CommandsCollector {
    /// Sums the counts of the `shards` shards of `runtime` at each scrape.
    pub fn new(runtime: RuntimeHandle, shards: usize) -> CommandsCollector {
        CommandsCollector { runtime, shards }
    }

    /// The counts of every shard now, summed. Blocking: call it from a
    /// plain thread.
    pub fn counts(&self) -> (BTreeMap<&'static str, u64>, BTreeMap<String, u64>) {
        let mut calls = BTreeMap::new();
        let mut errors = BTreeMap::new();
        for shard in 0..self.shards {
            let part = self
                .runtime
                .shard(shard)
                .and_then(|s| s.run_blocking(TaskClass::Latency, || async { snapshot() }));
            if let Ok((c, e)) = part {
                for (k, v) in c {
                    *calls.entry(k).or_insert(0) += v;
                }
                for (k, v) in e {
                    *errors.entry(k).or_insert(0) += v;
                }
            }
        }
        (calls, errors)
    }
}

impl prometheus_client::collector::Collector for CommandsCollector {
    fn encode(
        &self,
        mut enc: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        let (calls, errors) = self.counts();
        let mut f = enc.encode_descriptor(
            "sampan_redis_commands",
            "Redis commands received, by name (unknown: not a command).",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (name, n) in calls {
            ConstCounter::new(n).encode(f.encode_family(&[("command", name)])?)?;
        }
        let mut f = enc.encode_descriptor(
            "sampan_redis_errors",
            "Redis error replies, by code (ERR, WRONGTYPE, NOAUTH, MOVED...).",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (code, n) in errors {
            ConstCounter::new(n).encode(f.encode_family(&[("code", code.as_str())])?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_are_counted_within_a_bounded_set() {
        call(b"GET");
        call(b"get");
        call(b"SeT");
        call(b"no-such-command");
        call(&[b'x'; 100]);
        error("WRONGTYPE Operation against a key holding the wrong kind of value");
        error("ERR syntax error");
        error("lower case is not a code");
        let (calls, errors) = snapshot();
        assert_eq!(calls.get("get"), Some(&2));
        assert_eq!(calls.get("set"), Some(&1));
        assert_eq!(calls.get("unknown"), Some(&2));
        assert_eq!(errors.get("WRONGTYPE"), Some(&1));
        assert_eq!(errors.get("ERR"), Some(&2));
        assert_eq!(errors.len(), 2);
    }
}
