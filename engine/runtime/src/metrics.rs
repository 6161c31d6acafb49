//! What a node shows its operators over HTTP: Prometheus metrics at
//! `/metrics` and readiness at `/health`.
//!
//! **For:** a [`RaftServer`](crate::server::RaftServer)'s state, read at
//! scrape time ([`Observer::snapshot`]: one job per shard, run between the
//! shard's other work, that reads each group's status and the shard's
//! counters), encoded with `prometheus-client` (OpenMetrics text), and a
//! small endpoint ([`MetricsEndpoint`]) on a thread of its own, so a scrape
//! never blocks a shard. An embedder adds collectors of its own (the Redis
//! port's, say) to the same [`Registry`].
//!
//! **Not for:** pushing metrics anywhere, or anything but `GET`.
//!
//! The endpoint answers one request per connection, one connection at a
//! time: a request must arrive whole within [`REQUEST_TIMEOUT`] and in
//! [`REQUEST_BYTES_MAX`] bytes, or it is answered 408 / 431 and closed; a
//! method other than GET gets 405, another path 404.

use crate::group::GroupStatus;
use crate::raft::Role;
use crate::stats::StatsSnapshot;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
pub use prometheus_client::registry::Registry;
use sampan_net::ConnStats;
use sampan_storage::latency::LatencySnapshot;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use crate::server::Observer;

/// How long a request may take to arrive.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head the endpoint reads.
pub const REQUEST_BYTES_MAX: usize = 8 << 10;

/// A node's state at one moment, as [`Observer::snapshot`] reads it.
#[derive(Debug, Clone, Default)]
pub struct NodeSnapshot {
    /// The node's id.
    pub node: u64,
    /// Each group's status on this node, by group id.
    pub groups: Vec<GroupStatus>,
    /// Each shard's counters.
    pub shards: Vec<ShardCounters>,
    /// Shards that did not answer in time (their groups are missing).
    pub shards_silent: usize,
}

/// One shard's counters since the node started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardCounters {
    /// The shard.
    pub shard: usize,
    /// Heartbeats (and their answers) its groups sent.
    pub heartbeats: u64,
    /// Frames that carried them (one per peer node per tick).
    pub heartbeat_frames: u64,
    /// Sync rounds of its logs.
    pub sync_rounds: u64,
    /// File syncs those rounds issued.
    pub syncs: u64,
    /// How long its sync rounds took.
    pub sync_latency: LatencySnapshot,
    /// Appends written durable in one operation (no sync round).
    pub durable_writes: u64,
    /// Messages not sent (peer unreachable or its queue full).
    pub messages_dropped: u64,
    /// Proposals, reads, elections, leader changes, round trips.
    pub stats: StatsSnapshot,
    /// Each connected peer's link: (peer, its counters).
    pub links: Vec<(u64, ConnStats)>,
    /// Handshakes that failed to authenticate (both ports).
    pub auth_failures: u64,
    /// Connections closed at once for the connection limit.
    pub connections_refused: u64,
}

impl NodeSnapshot {
    /// Whether the node is ready to serve: every group it hosts has a
    /// leader, and has applied what it knows committed. The reasons it is
    /// not, otherwise.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        if self.shards_silent > 0 {
            why.push(format!("{} shard(s) did not answer", self.shards_silent));
        }
        for s in &self.groups {
            if s.leader.is_none() {
                why.push(format!("group {}: no leader", s.group));
            } else if s.index_applied < s.index_commit {
                why.push(format!(
                    "group {}: applied {} of {} committed",
                    s.group, s.index_applied, s.index_commit
                ));
            }
        }
        if why.is_empty() { Ok(()) } else { Err(why) }
    }
}

fn role_code(r: Role) -> i64 {
    match r {
        Role::Follower => 0,
        Role::PreCandidate => 1,
        Role::Candidate => 2,
        Role::Leader => 3,
    }
}

/// A [`Collector`] of a server's groups and shards, read at each scrape.
#[derive(Debug, Clone)]
pub struct ServerCollector {
    observer: Observer,
}

impl ServerCollector {
    /// Collects what `observer` sees.
    pub fn new(observer: Observer) -> ServerCollector {
        ServerCollector { observer }
    }
}

/// Encodes one gauge family: `name{group="g"} value` for each group.
fn group_gauge(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    groups: &[GroupStatus],
    value: impl Fn(&GroupStatus) -> i64,
) -> Result<(), std::fmt::Error> {
    group_gauge_some(enc, name, help, groups, |s| Some(value(s)))
}

/// [`group_gauge`] for a value some groups lack: they get no line.
fn group_gauge_some<N: EncodeGaugeValue + std::fmt::Debug>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    groups: &[GroupStatus],
    value: impl Fn(&GroupStatus) -> Option<N>,
) -> Result<(), std::fmt::Error> {
    let mut family =
        enc.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
    for s in groups {
        if let Some(v) = value(s) {
            let labels = [("group", s.group)];
            ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// Encodes one counter family: `name_total{shard="i"} value` per shard.
fn shard_counter(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    shards: &[ShardCounters],
    value: impl Fn(&ShardCounters) -> u64,
) -> Result<(), std::fmt::Error> {
    let mut family =
        enc.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for s in shards {
        let labels = [("shard", s.shard as u64)];
        ConstCounter::new(value(s)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A latency histogram as read at the scrape, encoded in seconds.
struct ConstHistogram<'a>(&'a LatencySnapshot);

impl EncodeMetric for ConstHistogram<'_> {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.0;
        encoder.encode_histogram::<NoLabelSet>(s.sum_seconds(), s.count(), &s.buckets(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Encodes one histogram family: one histogram per shard.
fn shard_histogram(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    shards: &[ShardCounters],
    value: impl Fn(&ShardCounters) -> &LatencySnapshot,
) -> Result<(), std::fmt::Error> {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for s in shards {
        let labels = [("shard", s.shard as u64)];
        ConstHistogram(value(s)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Encodes one counter family split by outcome: `name_total{shard,result}`.
fn shard_outcomes(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    shards: &[ShardCounters],
    value: impl Fn(&ShardCounters) -> (u64, u64),
) -> Result<(), std::fmt::Error> {
    let mut family =
        enc.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for s in shards {
        let (ok, failed) = value(s);
        let shard = s.shard.to_string();
        for (result, v) in [("ok", ok), ("error", failed)] {
            let labels = [("shard", shard.as_str()), ("result", result)];
            ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// Encodes one gauge family of durations per shard and peer node, in
/// seconds.
fn peer_seconds(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    shards: &[ShardCounters],
    value: impl Fn(&ShardCounters) -> &std::collections::BTreeMap<u64, Duration>,
) -> Result<(), std::fmt::Error> {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for s in shards {
        for (peer, d) in value(s) {
            let labels = [("shard", s.shard as u64), ("peer", *peer)];
            ConstGauge::new(d.as_secs_f64()).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// Encodes one counter family per shard and peer link.
fn link_counter(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    shards: &[ShardCounters],
    value: impl Fn(&ConnStats) -> u64,
) -> Result<(), std::fmt::Error> {
    let mut family =
        enc.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for s in shards {
        for (peer, c) in &s.links {
            let labels = [("shard", s.shard as u64), ("peer", *peer)];
            ConstCounter::new(value(c)).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// The hot-path families: proposals, reads, sync rounds, elections, peer
/// links, refused connections.
fn encode_traffic(
    enc: &mut DescriptorEncoder<'_>,
    sh: &[ShardCounters],
) -> Result<(), std::fmt::Error> {
    shard_outcomes(
        enc,
        "sampan_proposals",
        "Proposals served by this node's replicas (as leader), by outcome.",
        sh,
        |s| (s.stats.proposals_ok, s.stats.proposals_failed),
    )?;
    shard_histogram(
        enc,
        "sampan_proposal_seconds",
        "Time from a proposal reaching its group to its result applied here.",
        sh,
        |s| &s.stats.proposal_latency,
    )?;
    shard_outcomes(
        enc,
        "sampan_reads",
        "Linearizable reads served by this node's replicas, by outcome.",
        sh,
        |s| (s.stats.reads_ok, s.stats.reads_failed),
    )?;
    shard_histogram(
        enc,
        "sampan_read_seconds",
        "Time to answer a linearizable read (lease reads: microseconds).",
        sh,
        |s| &s.stats.read_latency,
    )?;
    shard_histogram(
        enc,
        "sampan_sync_round_seconds",
        "Time of one sync round (the fdatasyncs of a group commit).",
        sh,
        |s| &s.sync_latency,
    )?;
    shard_counter(
        enc,
        "sampan_elections",
        "Elections this node's replicas started (became candidates).",
        sh,
        |s| s.stats.elections,
    )?;
    shard_counter(
        enc,
        "sampan_leader_changes",
        "Times a replica here saw a new leader.",
        sh,
        |s| s.stats.leader_changes,
    )?;
    peer_seconds(
        enc,
        "sampan_peer_rtt_seconds",
        "The last keepalive round trip to each peer node.",
        sh,
        |s| &s.stats.peer_rtt,
    )?;
    peer_seconds(
        enc,
        "sampan_peer_silent_seconds",
        "Time since each peer node last answered a keepalive (its last contact).",
        sh,
        |s| &s.stats.peer_silent,
    )?;
    link_counter(
        enc,
        "sampan_peer_sent_bytes",
        "Bytes written to each peer node on the current connection.",
        sh,
        |c| c.bytes_sent,
    )?;
    link_counter(
        enc,
        "sampan_peer_received_bytes",
        "Bytes read from each peer node on the current connection.",
        sh,
        |c| c.bytes_received,
    )?;
    shard_counter(
        enc,
        "sampan_auth_failures",
        "Handshakes (nodes or service clients) that failed to authenticate.",
        sh,
        |s| s.auth_failures,
    )?;
    shard_counter(
        enc,
        "sampan_connections_refused",
        "Connections closed at once for the connection limit (max_connections).",
        sh,
        |s| s.connections_refused,
    )
}

impl Collector for ServerCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snap = self.observer.snapshot().unwrap_or_default();
        let g = &snap.groups;
        let gauge = |enc: &mut DescriptorEncoder<'_>, name, help, v: i64| {
            ConstGauge::new(v).encode(enc.encode_descriptor(
                name,
                help,
                None,
                ConstGauge::new(0i64).metric_type(),
            )?)
        };
        gauge(
            &mut enc,
            "sampan_groups",
            "Groups this node hosts.",
            g.len() as i64,
        )?;
        gauge(
            &mut enc,
            "sampan_groups_led",
            "Groups this node leads.",
            g.iter().filter(|s| s.role == Role::Leader).count() as i64,
        )?;
        gauge(
            &mut enc,
            "sampan_groups_hibernating",
            "Groups asleep (idle: no ticks, no heartbeats).",
            g.iter().filter(|s| s.hibernating).count() as i64,
        )?;
        gauge(
            &mut enc,
            "sampan_groups_leaderless",
            "Groups that know of no leader now.",
            g.iter().filter(|s| s.leader.is_none()).count() as i64,
        )?;
        gauge(
            &mut enc,
            "sampan_shards_silent",
            "Shards that did not answer this scrape in time.",
            snap.shards_silent as i64,
        )?;
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        group_gauge(
            &mut enc,
            "sampan_group_role",
            "This replica's role: 0 follower, 1 pre-candidate, 2 candidate, 3 leader.",
            g,
            |s| role_code(s.role),
        )?;
        group_gauge(&mut enc, "sampan_group_term", "Current term.", g, |s| {
            as_i64(s.term)
        })?;
        group_gauge(
            &mut enc,
            "sampan_group_leader",
            "The leader's node id (0: none known).",
            g,
            |s| as_i64(s.leader.unwrap_or(0)),
        )?;
        group_gauge(
            &mut enc,
            "sampan_group_commit_index",
            "Highest index known committed.",
            g,
            |s| as_i64(s.index_commit),
        )?;
        group_gauge(
            &mut enc,
            "sampan_group_applied_index",
            "Last index applied to the state machine.",
            g,
            |s| as_i64(s.index_applied),
        )?;
        group_gauge(
            &mut enc,
            "sampan_group_last_index",
            "Last index in the log.",
            g,
            |s| as_i64(s.index_last),
        )?;
        group_gauge(
            &mut enc,
            "sampan_group_snapshot_index",
            "Last index of the newest snapshot here (0: none).",
            g,
            |s| as_i64(s.snapshot_index),
        )?;
        group_gauge(
            &mut enc,
            "sampan_group_log_bytes",
            "Bytes of log the group keeps on disk here (its segment files, or its live \
             entries in the shard's shared log).",
            g,
            |s| as_i64(s.log_bytes),
        )?;
        group_gauge_some(
            &mut enc,
            "sampan_group_snapshot_seconds",
            "How long writing the last snapshot taken here took (groups that took none \
             since the node started have no line).",
            g,
            |s| s.snapshot_saved.map(|x| x.write_ms as f64 / 1000.0),
        )?;
        group_gauge_some(
            &mut enc,
            "sampan_group_snapshot_bytes",
            "Size of the last snapshot taken here.",
            g,
            |s| s.snapshot_saved.map(|x| as_i64(x.bytes)),
        )?;
        group_gauge_some(
            &mut enc,
            "sampan_group_keys",
            "Keys the state machine holds (expired ones not yet removed count).",
            g,
            |s| s.keys.map(as_i64),
        )?;
        group_gauge_some(
            &mut enc,
            "sampan_group_sessions",
            "Exactly-once client sessions the state machine remembers.",
            g,
            |s| s.sessions.map(as_i64),
        )?;
        group_gauge(
            &mut enc,
            "sampan_group_apply_lag",
            "Entries committed but not applied yet here.",
            g,
            |s| as_i64(s.index_commit.saturating_sub(s.index_applied)),
        )?;
        group_gauge(
            &mut enc,
            "sampan_group_hibernating",
            "1 while the group sleeps (idle).",
            g,
            |s| i64::from(s.hibernating),
        )?;
        group_gauge(&mut enc, "sampan_group_voters", "Voting members.", g, |s| {
            s.voters.len() as i64
        })?;
        // On a leader: how far behind each follower is.
        let mut lag = enc.encode_descriptor(
            "sampan_follower_lag",
            "On a leader: entries a follower or observer lacks, by group and node.",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for s in g.iter().filter(|s| s.role == Role::Leader) {
            for (peer, matched) in &s.matched {
                let labels = [("group", s.group), ("node", *peer)];
                ConstGauge::new(as_i64(s.index_last.saturating_sub(*matched)))
                    .encode(lag.encode_family(&labels)?)?;
            }
        }
        let sh = &snap.shards;
        shard_counter(
            &mut enc,
            "sampan_heartbeats",
            "Heartbeats (and answers) the shard's groups sent.",
            sh,
            |s| s.heartbeats,
        )?;
        shard_counter(
            &mut enc,
            "sampan_heartbeat_frames",
            "Frames that carried them (one per peer node per tick).",
            sh,
            |s| s.heartbeat_frames,
        )?;
        shard_counter(
            &mut enc,
            "sampan_sync_rounds",
            "Sync rounds of the shard's logs (group commit).",
            sh,
            |s| s.sync_rounds,
        )?;
        shard_counter(
            &mut enc,
            "sampan_fsyncs",
            "File syncs the shard's logs issued.",
            sh,
            |s| s.syncs,
        )?;
        shard_counter(
            &mut enc,
            "sampan_durable_writes",
            "Appends written durable in one operation, with no sync round.",
            sh,
            |s| s.durable_writes,
        )?;
        shard_counter(
            &mut enc,
            "sampan_messages_dropped",
            "Raft messages not sent (peer unreachable or its queue full); Raft resends.",
            sh,
            |s| s.messages_dropped,
        )?;
        encode_traffic(&mut enc, sh)
    }
}

/// What `/health` answers: `Ok` for 200, the reasons for 503.
pub type HealthCheck = Arc<dyn Fn() -> Result<(), Vec<String>> + Send + Sync>;

/// The `/metrics` and `/health` endpoint, on a thread of its own. Stops
/// when dropped.
pub struct MetricsEndpoint {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsEndpoint")
            .field("addr", &self.addr)
            .finish()
    }
}

impl MetricsEndpoint {
    /// Listens on `addr` and serves `registry` at `/metrics` and `health`
    /// at `/health`.
    pub fn start(
        addr: SocketAddr,
        registry: Registry,
        health: HealthCheck,
    ) -> std::io::Result<MetricsEndpoint> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sampan-metrics".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    match conn {
                        Ok(stream) => {
                            if let Err(e) = answer(stream, &registry, &health) {
                                log::debug!("metrics endpoint: {e}");
                            }
                        }
                        Err(e) => {
                            log::warn!("metrics endpoint {addr}: accept: {e}");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })?;
        log::info!("metrics at http://{addr}/metrics, readiness at http://{addr}/health");
        Ok(MetricsEndpoint {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request head; answers it; closes.
fn answer(mut stream: TcpStream, registry: &Registry, health: &HealthCheck) -> std::io::Result<()> {
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if head.len() > REQUEST_BYTES_MAX {
            break false;
        }
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return reply(&mut stream, 408, "text/plain", "request timeout\n");
            }
            Err(e) => return Err(e),
        }
    };
    if !complete {
        return reply(&mut stream, 431, "text/plain", "request header too large\n");
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let version_ok = parts.next().is_some_and(|v| v.starts_with("HTTP/1."));
    if !version_ok || path.is_empty() {
        return reply(&mut stream, 400, "text/plain", "bad request\n");
    }
    if method != "GET" {
        return reply(&mut stream, 405, "text/plain", "only GET\n");
    }
    match path.split('?').next().unwrap_or("") {
        "/metrics" => {
            let mut body = String::new();
            if prometheus_client::encoding::text::encode(&mut body, registry).is_err() {
                return reply(&mut stream, 500, "text/plain", "encoding failed\n");
            }
            reply(
                &mut stream,
                200,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                &body,
            )
        }
        "/health" => match health() {
            Ok(()) => reply(&mut stream, 200, "text/plain", "ready\n"),
            Err(why) => reply(
                &mut stream,
                503,
                "text/plain",
                &format!("not ready\n{}\n", why.join("\n")),
            ),
        },
        _ => reply(
            &mut stream,
            404,
            "text/plain",
            "not found: try /metrics or /health\n",
        ),
    }
}

fn reply(stream: &mut TcpStream, code: u16, kind: &str, body: &str) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()?;
    // Closing with unread input would reset the connection, and the client
    // could lose the answer (a refused oversized request): read what is
    // left, within bounds, first.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let mut left = DRAIN_BYTES_MAX;
    while left > 0 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
    Ok(())
}

/// Most unread request bytes read and dropped before a connection closes.
const DRAIN_BYTES_MAX: usize = 1 << 20;
