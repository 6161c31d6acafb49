//! The [`RaftFactory`](sampan::server::RaftFactory) of a KV server: every
//! group is a [`KvMachine`] on the runtime's default log and snapshot
//! store.

use crate::{KvConfig, KvMachine};
use sampan::config::GroupConfig;
use sampan::server::Machines;
use sampan::state_machine::StateMachine;

/// The factory type of a KV server with default settings.
pub type KvFactory = Machines<fn(&GroupConfig) -> Box<dyn StateMachine>>;

fn kv_machine(_group: &GroupConfig) -> Box<dyn StateMachine> {
    Box::new(KvMachine::new(KvConfig::default()))
}

/// The factory of a KV server: every group is a [`KvMachine`] with
/// [`KvConfig::default`] (for other settings, pass
/// `sampan::server::machines(move |_| Box::new(KvMachine::new(cfg.clone())))`).
pub fn kv_factory() -> KvFactory {
    sampan::server::machines(kv_machine)
}
