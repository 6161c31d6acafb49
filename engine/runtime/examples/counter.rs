//! Embedding Sampan: a replicated counter as a custom state machine, served
//! by a one-node `RaftServer` (list more `servers` for a real cluster).
use bytes::Bytes;
use sampan::config::{GroupConfig, ServerConfig};
use sampan::server::{RaftServer, machines};
use sampan::state_machine::{Small, SmallState, StateMachineError};

/// Adds each command (a little-endian i64) to the total; answers the total.
#[derive(Default)]
struct Counter(i64);

fn le(b: &[u8]) -> Result<i64, StateMachineError> {
    let bad = |_| StateMachineError::BadQuery("expected 8 bytes".into());
    Ok(i64::from_le_bytes(b.try_into().map_err(bad)?))
}

impl SmallState for Counter {
    fn apply(&mut self, command: &Bytes) -> Bytes {
        self.0 = self.0.wrapping_add(le(command).unwrap_or(0));
        self.save()
    }
    fn read(&self, _query: &Bytes) -> Result<Bytes, StateMachineError> {
        Ok(self.save())
    }
    fn save(&self) -> Bytes {
        Bytes::copy_from_slice(&self.0.to_le_bytes())
    }
    fn load(bytes: Bytes) -> Result<Self, StateMachineError> {
        le(&bytes).map(Counter)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = std::env::temp_dir().join(format!("sampan-counter-{}", std::process::id()));
    let cfg: ServerConfig = toml::from_str(&format!(
        "node_id = 1\nservers = \"1,127.0.0.1:24301\"\nreplicate_port = 24301\n\
         service_port = 24302\nshards = 1\ndata_dir = {data:?}\n"
    ))?;
    let group: GroupConfig = toml::from_str("group_id = 7\nmembers = \"1\"")?;
    let factory = machines(|_| Box::new(Small::new(Counter::default())));
    let server = RaftServer::start(cfg, &[group], factory)?;
    let counter = server.group(7);
    for delta in [5i64, -2, 40] {
        counter.propose_blocking(Bytes::copy_from_slice(&delta.to_le_bytes()))?;
    }
    let total = le(&counter.read_blocking(Bytes::new())?)?;
    assert_eq!(total, 43);
    log::info!("counter = {total}");
    server.shutdown()?;
    Ok(std::fs::remove_dir_all(data)?)
}

#[test]
fn the_example_runs() {
    main().expect("the counter example runs");
}
