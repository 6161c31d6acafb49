//! Replies to reads the group answered ([`KvAnswer`](sampan_kv::KvAnswer)s, after a ReadIndex on
//! the leader), and the text of `INFO`.
//!
//! [`super::render`] renders reads of a local [`sampan_kv::KvStore`]; the
//! listener cannot hold the store of a group that may lead on another node,
//! so it asks the group a [`sampan_kv::KvQuery`] and renders the answer here,
//! with the same types and texts.

use super::command::Read;
use super::resp::Reply;
use sampan::group::GroupStatus;
use sampan::raft::Role;
use sampan_kv::{Item, WRONGTYPE};
use std::fmt::Write as _;

/// Whether a read is answered from the values of its keys alone (one
/// `KvQuery::Get`), so that consecutive ones can share a query.
pub fn key_read_keys(read: &Read) -> Option<&[bytes::Bytes]> {
    match read {
        Read::Get(k)
        | Read::StrLen(k)
        | Read::Type(k)
        | Read::Ttl { key: k, .. }
        | Read::ExpireTime { key: k, .. } => Some(std::slice::from_ref(k)),
        Read::MGet(keys) | Read::Exists(keys) => Some(keys),
        _ => None,
    }
}

/// Renders a key read from the items of its keys (in the order
/// [`key_read_keys`] gave them), at wall-clock `now_ms`.
pub fn render_key_read(read: &Read, items: &[Option<Item>], now_ms: u64, out: &mut Reply<'_>) {
    let item = |i: usize| items.get(i).and_then(Option::as_ref);
    // A string's bytes; `Err` for a value of another type.
    let value = |i: usize| match item(i) {
        None => Ok(None),
        Some(it) => it.as_str().map(|b| Some(&b[..])).ok_or(()),
    };
    match read {
        Read::Get(_) => match value(0) {
            Ok(v) => out.bulk(v),
            Err(()) => out.error(WRONGTYPE),
        },
        Read::MGet(keys) => {
            out.array(Some(keys.len()));
            for i in 0..keys.len() {
                // MGET answers nil for a key of another type.
                out.bulk(value(i).unwrap_or(None));
            }
        }
        Read::Exists(_) => out.integer(items.iter().filter(|it| it.is_some()).count() as i64),
        Read::StrLen(_) => match value(0) {
            Ok(v) => out.integer(v.map_or(0, <[u8]>::len) as i64),
            Err(()) => out.error(WRONGTYPE),
        },
        Read::Type(_) => out.simple(item(0).map_or("none", |it| it.kind.name())),
        Read::Ttl { millis, .. } => out.integer(ttl(item(0), now_ms, *millis)),
        Read::ExpireTime { millis, .. } => out.integer(match item(0) {
            None => -2,
            Some(it) => it
                .expire_at_ms
                .map_or(-1, |t| if *millis { t as i64 } else { (t / 1000) as i64 }),
        }),
        other => out.error(&format!("ERR internal: {other:?} is not a key read")),
    }
}

/// Redis's `TTL`/`PTTL` value: -2 absent, -1 no expiry, else what is left
/// (seconds rounded as Redis rounds them).
fn ttl(item: Option<&Item>, now_ms: u64, millis: bool) -> i64 {
    match item {
        None => -2,
        Some(it) => match it.expire_at_ms {
            None => -1,
            Some(t) => {
                let left = t.saturating_sub(now_ms) as i64;
                if millis { left } else { (left + 500) / 1000 }
            }
        },
    }
}

/// The process's resident memory, from `/proc/self/statm` (a read of the
/// kernel's counters, no disk): what `used_memory` reports, as Sampan has
/// no allocator of its own to ask. 0 where there is no `/proc`.
fn resident_bytes() -> u64 {
    let page = 4096u64;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|t| t.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

/// Bytes as Redis's `*_human` fields show them (`1.50M`).
fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        n if n >= 1 << 30 => format!("{:.2}G", b / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.2}M", b / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.2}K", b / 1024.0),
        n => format!("{n}B"),
    }
}

/// What `INFO` reports about one group on this node.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    /// The Redis database that selects the group.
    pub db: u64,
    /// The replica's status.
    pub status: GroupStatus,
    /// Keys in this replica (as applied here: a follower may be behind),
    /// if it answered.
    pub keys: Option<u64>,
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::PreCandidate => "precandidate",
        Role::Candidate => "candidate",
    }
}

/// The listener's connection counters `INFO` shows, in Redis's names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCounts {
    /// Connections open now.
    pub connected_clients: u64,
    /// The `maxclients` setting.
    pub maxclients: usize,
    /// Connections refused for `maxclients`.
    pub rejected_connections: u64,
    /// Connections waiting in a blocking pop.
    pub blocked_clients: u64,
    /// Connections closed for the output buffer limit or a stalled reader.
    pub output_buffer_limit_disconnections: u64,
}

/// The text of `INFO [section]`: `server`, `clients`, `stats` (connection
/// counters), `memory` (the process's resident memory), `persistence`,
/// `replication` (the selected group: role, leader, term, commit and
/// applied index; on the leader each follower's matched index and lag), `keyspace` (keys per database
/// in this node's replicas, as Redis shows a replica's) and `groups`
/// (every group this node hosts).
/// `section` `None`, `all`, `default` or `everything` gives them all.
pub fn info_text(
    node: u64,
    port: u16,
    section: Option<&[u8]>,
    selected: Option<&GroupInfo>,
    groups: &[GroupInfo],
    clients: &ClientCounts,
) -> String {
    let section = section.map(|s| String::from_utf8_lossy(s).to_ascii_lowercase());
    let want = |name: &str| match section.as_deref() {
        None | Some("all" | "default" | "everything") => true,
        Some(s) => s == name,
    };
    let mut s = String::new();
    if want("server") {
        let _ = write!(
            s,
            "# Server\r\nredis_version:7.0.0\r\nsampan_version:{}\r\nredis_mode:standalone\r\n\
             os:{}\r\nprocess_id:{}\r\ntcp_port:{port}\r\nnode_id:{node}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::process::id(),
        );
    }
    if want("clients") {
        let _ = write!(
            s,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\n\r\n",
            clients.connected_clients, clients.maxclients, clients.blocked_clients,
        );
    }
    if want("stats") {
        let _ = write!(
            s,
            "# Stats\r\nrejected_connections:{}\r\nclient_output_buffer_limit_disconnections:{}\r\n\r\n",
            clients.rejected_connections, clients.output_buffer_limit_disconnections,
        );
    }
    if want("replication") {
        s.push_str("# Replication\r\n");
        match selected {
            Some(g) => {
                let st = &g.status;
                let _ = write!(
                    s,
                    "role:{}\r\nraft_role:{}\r\ngroup:{}\r\nleader:{}\r\nterm:{}\r\n\
                     commit_index:{}\r\napplied_index:{}\r\n",
                    if st.role == Role::Leader {
                        "master"
                    } else {
                        "slave"
                    },
                    role_name(st.role),
                    st.group,
                    st.leader
                        .map_or_else(|| "none".to_string(), |l| l.to_string()),
                    st.term,
                    st.index_commit,
                    st.index_applied,
                );
                if st.role == Role::Leader {
                    // Redis's lines for its replicas, in Raft's terms: the
                    // offset is the follower's matched log index, the lag
                    // how many entries it is behind.
                    let _ = write!(
                        s,
                        "connected_slaves:{}\r\nmaster_repl_offset:{}\r\n",
                        st.matched.len(),
                        st.index_last
                    );
                    for (i, (node, matched)) in st.matched.iter().enumerate() {
                        let _ = write!(
                            s,
                            "slave{i}:node={node},state=online,offset={matched},lag_entries={}\r\n",
                            st.index_last.saturating_sub(*matched)
                        );
                    }
                } else {
                    let _ = write!(
                        s,
                        "master_node:{}\r\nmaster_link_status:{}\r\nslave_repl_offset:{}\r\n",
                        st.leader.map_or(0, |l| l),
                        if st.leader.is_some() { "up" } else { "down" },
                        st.index_applied
                    );
                }
            }
            None => s.push_str("role:none\r\n"),
        }
        s.push_str("\r\n");
    }
    if want("memory") {
        let rss = resident_bytes();
        let _ = write!(
            s,
            "# Memory\r\nused_memory:{rss}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\n             maxmemory:0\r\nmaxmemory_policy:noeviction\r\n\r\n",
            human(rss)
        );
    }
    if want("persistence") {
        // Every write is in the Raft log (fsynced per the group's
        // durability) before it is acknowledged; nothing loads at start
        // after the node answers.
        s.push_str("# Persistence\r\nloading:0\r\naof_enabled:1\r\n\r\n");
    }
    if want("keyspace") {
        s.push_str("# Keyspace\r\n");
        for g in groups {
            if let Some(keys) = g.keys.filter(|k| *k > 0) {
                let _ = write!(s, "db{}:keys={keys}\r\n", g.db);
            }
        }
        s.push_str("\r\n");
    }
    if want("groups") {
        s.push_str("# Groups\r\n");
        for g in groups {
            let st = &g.status;
            let _ = write!(
                s,
                "group{}:db={},role={},leader={},term={},commit={},applied={},hibernating={}\r\n",
                st.group,
                g.db,
                role_name(st.role),
                st.leader.map_or(0, |l| l),
                st.term,
                st.index_commit,
                st.index_applied,
                u8::from(st.hibernating),
            );
        }
        s.push_str("\r\n");
    }
    s
}
