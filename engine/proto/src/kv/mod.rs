//! The KV group's messages: the commands a client proposes (puts, deletes,
//! batches, with their sessions for exactly-once), the reads it sends and
//! the answers it gets, with their versioned codecs. The state machine
//! that applies them is the runtime's `kv` module; a client needs only
//! these.

mod command;
mod data;
mod items;
mod query;

pub use command::{
    BATCH_COMMANDS_MAX, COMMAND_VERSION, KEY_MAX_BYTES, KvCommand, KvFailure, KvRequest, KvResult,
    PutCondition, Ttl, VALUE_MAX_BYTES,
};
pub use data::{
    DataCmd, DataQuery, ExpireCond, LexBound, Reply, ScoreBound, SetOp, ValueKind, WRONGTYPE,
    ZAddFlags, ZRangeBy, ZRangeSpec, format_float, format_score, from_postcard, parse_float,
    to_postcard,
};
pub use items::{Item, ScanPage, ScanRange};
pub use query::{KvAnswer, KvQuery, QUERY_KEYS_MAX, QUERY_VERSION};
