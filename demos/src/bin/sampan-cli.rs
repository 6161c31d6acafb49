//! `sampan-cli`: a command-line client of a Sampan KV cluster, built on
//! the native client (`sampan::client`). Human output by default, `--json`
//! for scripts; exit codes are listed in `--help`.
//!
//! Admin commands (add or remove a group or a member, transfer
//! leadership, snapshot now) wait for the servers to serve them.

use bytes::Bytes;
use clap::{Parser, Subcommand};
use sampan::backup::BackupProgress;
use sampan::client::{BlockingClient, Client, ClientConfig, ClientError, KeyTtl, NodeStatus};
use sampan::config::{Durability, GroupConfig};
use sampan::group::{GroupStatus, newest_leader};
use sampan::service::{MembersChange, NodeAddrs};
use sampan_demos::json::string as json_str;
use sampan_kv::{Item, ScanRange};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// Exit code: done.
const EXIT_OK: u8 = 0;
/// Exit code: the key is not there, or a compare-and-set did not match.
const EXIT_NOT_FOUND: u8 = 1;
/// Exit code: the cluster could not be reached, or the request failed.
const EXIT_ERROR: u8 = 3;

const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  not found (get, del, ttl of a missing key) or compare-and-set failed
  2  usage error (bad arguments)
  3  cluster unreachable, or the request failed (the error is on stderr,
     or in an \"error\" field with --json)";

/// A command-line client of a Sampan KV cluster.
#[derive(Debug, Parser)]
#[command(version, after_help = EXIT_CODES)]
struct Args {
    /// Service addresses of some nodes, comma separated (host:port); every
    /// command but `certs` needs them.
    #[arg(long, short, value_delimiter = ',', value_parser = parse_addr)]
    servers: Vec<SocketAddr>,
    /// The KV group to use.
    #[arg(long, short, default_value_t = 1)]
    group: u64,
    /// Print JSON (one object per command) instead of text.
    #[arg(long)]
    json: bool,
    /// The cluster id the nodes were configured with.
    #[arg(long, default_value_t = sampan::client::CLUSTER_ID_DEFAULT)]
    cluster_id: u64,
    /// How long to try, retries included, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    timeout_ms: u64,
    /// The token to prove to the nodes (their `[[server.credential]]`);
    /// else the `SAMPAN_TOKEN` environment variable, which keeps it out of
    /// the process list. None: for nodes with no credentials.
    #[arg(long)]
    token: Option<String>,
    /// The name of the token.
    #[arg(long, default_value = "default")]
    user: String,
    /// Speak TLS to the nodes (their `[server.tls]`), trusting this CA
    /// (PEM).
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    /// A client certificate to present over TLS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The client certificate's key.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

impl Args {
    /// --timeout-ms.
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a value.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Expire the key after this many milliseconds.
        #[arg(long)]
        ttl_ms: Option<u64>,
    },
    /// Read a value (exit 1 if absent).
    Get {
        /// The key.
        key: String,
    },
    /// Remove keys (exit 1 if none was there).
    Del {
        /// The keys.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// List keys in order, one page.
    Scan {
        /// Keys starting with this.
        #[arg(long, conflicts_with_all = ["start", "end"])]
        prefix: Option<String>,
        /// First key (inclusive).
        #[arg(long)]
        start: Option<String>,
        /// Past the last key (exclusive).
        #[arg(long)]
        end: Option<String>,
        /// Continue after this key (the previous page's "next").
        #[arg(long)]
        after: Option<String>,
        /// Keys per page.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Compare-and-set (exit 1 if the current value did not match).
    Cas {
        /// The key.
        key: String,
        /// The value that must be there (omit: the key must be absent).
        #[arg(long)]
        expected: Option<String>,
        /// The value to leave (omit: remove the key).
        #[arg(long)]
        new: Option<String>,
    },
    /// Add to a decimal integer value (absent counts as 0).
    Incr {
        /// The key.
        key: String,
        /// The amount to add.
        #[arg(default_value_t = 1, allow_negative_numbers = true)]
        delta: i64,
    },
    /// Show a key's time to live, or set it (exit 1 if absent).
    Ttl {
        /// The key.
        key: String,
        /// Expire the key after this many milliseconds.
        #[arg(long, conflicts_with = "persist")]
        set_ms: Option<u64>,
        /// Make the key never expire.
        #[arg(long)]
        persist: bool,
    },
    /// Every node's view of the group: role, term, leader, indexes,
    /// members, newest snapshot. With --all: every group any node in
    /// --servers runs, one row per group and node, with how far each
    /// replica's applied index is behind the group's commit and how long
    /// ago each follower last heard from its leader (CONTACT; `asleep`
    /// for a hibernating group, whose idle leader sends nothing).
    Status {
        /// Every group, not only --group.
        #[arg(long)]
        all: bool,
    },
    /// The groups each node in --servers runs.
    Groups,
    /// Write a snapshot now (and purge the log it covers) on every node
    /// in --servers, or on the one at --at.
    Snapshot {
        /// Only the node at this service address.
        #[arg(long, value_parser = parse_addr)]
        at: Option<SocketAddr>,
    },
    /// Start the group (--group) on every node in --servers that is a
    /// member or observer of it.
    AddGroup {
        /// Voting members, by node id: 1,2,3.
        #[arg(long, required = true)]
        members: String,
        /// Observers, by node id.
        #[arg(long, default_value = "")]
        observers: String,
        /// sync (durable on disk) or async (in the page cache).
        #[arg(long, default_value = "sync", value_parser = ["sync", "async"])]
        durability: String,
    },
    /// Remove the group (--group) from every node in --servers: stopped
    /// everywhere first, and only then are its files deleted.
    RemoveGroup,
    /// Add a node to the group: start a joining replica on it, let it
    /// catch up as an observer, then make it a voter (or leave it an
    /// observer).
    AddMember {
        /// The node's id.
        node: u64,
        /// The node's service address.
        #[arg(long, value_parser = parse_addr)]
        at: SocketAddr,
        /// Leave it an observer (never votes).
        #[arg(long)]
        observer: bool,
    },
    /// Remove a node (voter or observer) from the group, by joint
    /// consensus; works while that node is down.
    RemoveMember {
        /// The node's id.
        node: u64,
    },
    /// The nodes each node in --servers knows, with their replication and
    /// service addresses.
    Nodes,
    /// Add a node to the running cluster: it starts with only its own
    /// address in `servers` and no groups; every node of the cluster
    /// (those the first answering node in --servers knows) learns its
    /// addresses and it learns theirs, durably; then it joins every group
    /// (or --groups) as an observer, catches up (by snapshot if the log
    /// was purged), and is made a voter. Fails before any group changes if
    /// a node cannot be told; a retry is safe.
    AddNode {
        /// The new node's id.
        node: u64,
        /// The new node's service address.
        #[arg(long, value_parser = parse_addr)]
        at: SocketAddr,
        /// Only these groups (comma separated); default: every group the
        /// cluster's nodes run.
        #[arg(long)]
        groups: Option<String>,
        /// Leave it an observer (never votes).
        #[arg(long)]
        observer: bool,
    },
    /// Remove a node from the cluster: from every group it is a member of
    /// (by joint consensus; works while it is down), then every other
    /// node forgets its address.
    RemoveNode {
        /// The node's id.
        node: u64,
    },
    /// Copy a snapshot of every group (or --groups) out of the cluster
    /// into a new directory, while it serves: each group's leader writes
    /// a snapshot, which is read over the service port, checked (CRC32C)
    /// and synced; the directory appears under its name only once whole.
    /// Restore it with `sampan-node --restore-from DIR`.
    Backup {
        /// The directory to write (must not exist).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Only these groups (comma separated); default: every group the
        /// nodes in --servers run.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<u64>,
    },
    /// Hand the group's leadership to a voter.
    TransferLeader {
        /// The node's id.
        node: u64,
    },
    /// Make certificates for a cluster in a directory: a CA (kept and
    /// reused if there), one per node, and client ones, for TLS ports
    /// (`[redis] tls_port`; `redis-cli --tls --cacert ca.pem --cert
    /// client-NAME.pem --key client-NAME.key`). Needs no server.
    Certs {
        /// The directory for the files.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Node ids to make certificates for, comma separated.
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<u64>,
        /// Addresses the node certificates are valid for (what clients
        /// dial), comma separated.
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
        ip: Vec<std::net::IpAddr>,
        /// Host names the node certificates are valid for.
        #[arg(long, value_delimiter = ',', default_value = "localhost")]
        dns: Vec<String>,
        /// Client certificates to make, by name, comma separated.
        #[arg(long, value_delimiter = ',')]
        clients: Vec<String>,
        /// Days the certificates stay valid (the CA: twice as long).
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.to_socket_addrs()
        .map_err(|e| format!("'{s}': {e}"))?
        .next()
        .ok_or_else(|| format!("'{s}' resolves to no address"))
}

/// What a command prints and how it exits.
struct Output {
    code: u8,
    text: String,
}

impl Output {
    fn ok(text: String) -> Output {
        Output {
            code: EXIT_OK,
            text,
        }
    }

    fn not_found(text: String) -> Output {
        Output {
            code: EXIT_NOT_FOUND,
            text,
        }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error")).init();
    let args = Args::parse();
    if let Command::Certs {
        out,
        nodes,
        ip,
        dns,
        clients,
        days,
    } = &args.command
    {
        let spec = sampan_demos::certs::CertsSpec {
            out: out.clone(),
            cluster_id: args.cluster_id,
            nodes: nodes.clone(),
            ips: ip.clone(),
            dns: dns.clone(),
            clients: clients.clone(),
            days: *days,
        };
        return match sampan_demos::certs::make(&spec) {
            Ok(files) => {
                let list: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
                let mut stdout = std::io::stdout().lock();
                match stdout.write_all(list.as_bytes()) {
                    Ok(()) => ExitCode::from(EXIT_OK),
                    Err(_) => ExitCode::from(EXIT_ERROR),
                }
            }
            Err(e) => {
                eprintln!("sampan-cli: {e}");
                ExitCode::from(EXIT_ERROR)
            }
        };
    }
    if args.servers.is_empty() {
        eprintln!("sampan-cli: --servers is needed (the nodes' service addresses)");
        return ExitCode::from(2);
    }
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let cfg = ClientConfig::new(args.servers.clone())
        .cluster_id(args.cluster_id)
        .request_timeout(timeout)
        .attempt_timeout(timeout.min(sampan::client::ATTEMPT_TIMEOUT_DEFAULT));
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("SAMPAN_TOKEN").ok());
    let cfg = match token {
        Some(token) => cfg.credential(&args.user, &token),
        None => Ok(cfg),
    };
    let cfg = match &args.tls_ca {
        Some(ca) => {
            let pair = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
            cfg.and_then(|c| c.tls_ca(ca, pair))
        }
        None => cfg,
    };
    let out = cfg.and_then(BlockingClient::connect).and_then(|client| {
        let out = run(&client, &args);
        client.close();
        out
    });
    let out = out.unwrap_or_else(|e| error(&e, args.json));
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(out.text.as_bytes()).is_err() {
        return ExitCode::from(EXIT_ERROR);
    }
    ExitCode::from(out.code)
}

fn error(e: &dyn std::fmt::Display, json: bool) -> Output {
    eprintln!("sampan-cli: {e}");
    let text = if json {
        format!("{{\"error\":{}}}\n", json_str(&e.to_string()))
    } else {
        String::new()
    };
    Output {
        code: EXIT_ERROR,
        text,
    }
}

fn run(c: &BlockingClient, args: &Args) -> Result<Output, ClientError> {
    let (g, json) = (args.group, args.json);
    match &args.command {
        Command::Snapshot { at } => {
            let addrs = at.map_or_else(|| args.servers.clone(), |a| vec![a]);
            snapshot(c, g, addrs, json)
        }
        Command::AddGroup {
            members,
            observers,
            durability,
        } => add_group(c, args, members, observers, durability),
        Command::RemoveGroup => remove_group(c, g, args.servers.clone(), json),
        Command::AddMember { node, at, observer } => {
            add_member(c, g, *node, *at, *observer, args.timeout())?;
            Ok(done(json))
        }
        Command::RemoveMember { node } => {
            let now = membership(c, g, args.timeout())?;
            let (mut voters, mut learners) = (now.voters.clone(), now.learners.clone());
            voters.remove(node);
            learners.remove(node);
            c.run(move |c| async move { change_from(&c, g, now, voters, learners).await })??;
            Ok(done(json))
        }
        Command::TransferLeader { node } => {
            let node = *node;
            c.run(move |c| async move { c.transfer_leader(g, node).await })??;
            Ok(done(json))
        }
        Command::Backup { out, groups } => Ok(backup(c, args, out, groups)),
        Command::Nodes => {
            let listed = on_each(c, args.servers.clone(), |c, a| async move {
                c.list_nodes_at(a).await
            })?;
            Ok(per_node(&listed, json, |nodes| {
                let text: Vec<String> = nodes
                    .iter()
                    .map(|n| format!("{} {} {}", n.node, n.replicate, n.service))
                    .collect();
                let objs: Vec<String> = nodes
                    .iter()
                    .map(|n| {
                        format!(
                            "{{\"node\":{},\"replicate\":{},\"service\":{}}}",
                            n.node,
                            json_str(&n.replicate),
                            json_str(&n.service)
                        )
                    })
                    .collect();
                (
                    format!("knows {}", text.join("; ")),
                    format!("\"known\":[{}]", objs.join(",")),
                )
            }))
        }
        Command::AddNode {
            node,
            at,
            groups,
            observer,
        } => add_node(c, args, *node, *at, groups.as_deref(), *observer),
        Command::RemoveNode { node } => remove_node(c, args, *node),
        Command::Groups => {
            let listed = on_each(c, args.servers.clone(), |c, a| async move {
                c.list_groups_at(a).await
            })?;
            Ok(per_node(&listed, json, |ids| {
                let list = ids.iter().map(u64::to_string).collect::<Vec<_>>();
                (
                    if list.is_empty() {
                        "no groups".into()
                    } else {
                        format!("groups {}", list.join(","))
                    },
                    format!("\"groups\":[{}]", list.join(",")),
                )
            }))
        }
        Command::Status { all: true } => status_all(c, args.servers.clone(), json),
        data => run_data(c, g, json, data),
    }
}

/// Every group any of `addrs` runs, and each node's view of it: one row
/// per group and node. Exit 3 if a node did not answer.
fn status_all(
    c: &BlockingClient,
    addrs: Vec<SocketAddr>,
    json: bool,
) -> Result<Output, ClientError> {
    let listed = on_each(c, addrs, |c, a| async move { c.list_groups_at(a).await })?;
    let mut groups: Vec<u64> = listed
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .flatten()
        .copied()
        .collect();
    groups.sort_unstable();
    groups.dedup();
    let unreachable: Vec<String> = listed
        .iter()
        .filter_map(|(a, r)| r.as_ref().err().map(|e| format!("{a}: {e}")))
        .collect();
    let mut rows = Vec::new();
    for g in groups {
        rows.push((g, c.status(g)?));
    }
    let mut text = String::new();
    if json {
        text.push_str("{\"groups\":[");
    } else {
        let _ = writeln!(
            text,
            "{:>6} {:>5} {:<13} {:>6} {:>6} {:>8} {:>8} {:>6} {:>9}",
            "GROUP", "NODE", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAG", "CONTACT"
        );
    }
    for (i, (g, nodes)) in rows.iter().enumerate() {
        // The group's commit as far as any replica knows it.
        let commit = nodes
            .iter()
            .filter_map(|n| n.status.as_ref().ok())
            .map(|s| s.index_commit)
            .max()
            .unwrap_or(0);
        if json {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(text, "{sep}{{\"group\":{g},\"commit\":{commit},\"nodes\":[");
        }
        let mut first = true;
        for n in nodes {
            let st = match &n.status {
                Ok(st) => st,
                Err(e) => {
                    if !json {
                        let _ = writeln!(text, "{g:>6} {:>5} error: {e}", opt(n.node));
                    }
                    continue;
                }
            };
            let lag = commit.saturating_sub(st.index_applied);
            let role = format!("{:?}", st.role).to_lowercase();
            if json {
                let sep = if first { "" } else { "," };
                first = false;
                let _ = write!(
                    text,
                    "{sep}{{\"node\":{},\"role\":\"{role}\",\"term\":{},\"leader\":{},\
                     \"commit\":{},\"applied\":{},\"lag\":{lag},\"leader_contact_ms\":{},\
                     \"hibernating\":{},\"snapshot_index\":{},{}}}",
                    json_opt(n.node),
                    st.term,
                    json_opt(st.leader),
                    st.index_commit,
                    st.index_applied,
                    json_opt(st.leader_contact_ms),
                    st.hibernating,
                    st.snapshot_index,
                    json_holdings(st),
                );
            } else {
                let _ = writeln!(
                    text,
                    "{g:>6} {:>5} {:<13} {:>6} {:>6} {:>8} {:>8} {:>6} {:>9}",
                    opt(n.node),
                    role,
                    st.term,
                    opt(st.leader),
                    st.index_commit,
                    st.index_applied,
                    lag,
                    // An idle group's leader sends nothing: a long
                    // silence there is sleep, not a fault.
                    match (st.leader_contact_ms, st.hibernating) {
                        (None, _) => "-".to_string(),
                        (Some(_), true) => "asleep".to_string(),
                        (Some(ms), false) => format!("{ms}ms"),
                    }
                );
            }
        }
        if json {
            text.push_str("]}");
        }
    }
    if json {
        text.push_str("]}\n");
    }
    if unreachable.is_empty() {
        return Ok(Output::ok(text));
    }
    eprintln!("sampan-cli: no answer from {}", unreachable.join("; "));
    Ok(Output {
        code: EXIT_ERROR,
        text,
    })
}

/// The commands on keys.
fn run_data(
    c: &BlockingClient,
    g: u64,
    json: bool,
    command: &Command,
) -> Result<Output, ClientError> {
    let key = |k: &String| Bytes::from(k.clone());
    let found_or_not = |found: bool, text: String| {
        if found {
            Output::ok(text)
        } else {
            Output::not_found(text)
        }
    };
    match command {
        Command::Put {
            key: k,
            value,
            ttl_ms,
        } => {
            c.put_ttl(g, key(k), key(value), ttl_ms.map(Duration::from_millis))?;
            Ok(done(json))
        }
        Command::Get { key: k } => Ok(get(c.get_item(g, key(k))?, k, json)),
        Command::Del { keys } => {
            let n = c.batch_remove(g, keys.iter().map(key).collect())?;
            let text = if json {
                format!("{{\"removed\":{n}}}\n")
            } else {
                format!("{n}\n")
            };
            Ok(found_or_not(n > 0, text))
        }
        Command::Scan {
            prefix,
            start,
            end,
            after,
            limit,
        } => {
            let range = match prefix {
                Some(p) => ScanRange::Prefix(key(p)),
                None => ScanRange::Range {
                    start: start.as_ref().map(key).unwrap_or_default(),
                    end: end.as_ref().map(key),
                },
            };
            let page = c.scan(g, range, after.as_ref().map(key), *limit)?;
            Ok(Output::ok(scan(&page.items, page.next.as_deref(), json)))
        }
        Command::Cas {
            key: k,
            expected,
            new,
        } => {
            let done = c.cas(g, key(k), expected.as_ref().map(key), new.as_ref().map(key))?;
            let text = match (json, done) {
                (true, _) => format!("{{\"swapped\":{done}}}\n"),
                (false, true) => "OK\n".into(),
                (false, false) => "cas failed: the current value did not match\n".into(),
            };
            Ok(found_or_not(done, text))
        }
        Command::Incr { key: k, delta } => {
            let v = c.incr(g, key(k), *delta)?;
            Ok(Output::ok(if json {
                format!("{{\"value\":{v}}}\n")
            } else {
                format!("{v}\n")
            }))
        }
        Command::Ttl {
            key: k,
            set_ms,
            persist,
        } => {
            if set_ms.is_some() || *persist {
                let found = c.expire(g, key(k), set_ms.map(Duration::from_millis))?;
                return Ok(set_ttl(found, json));
            }
            Ok(ttl(c.ttl(g, key(k))?, json))
        }
        Command::Status { all: false } => Ok(status(g, &c.status(g)?, json)),
        admin => unreachable!("run handles {admin:?}"),
    }
}

/// Copies every group (or `groups`) out into `out`, a line per group
/// on stderr as it is done.
fn backup(c: &BlockingClient, args: &Args, out: &std::path::Path, groups: &[u64]) -> Output {
    let (servers, groups, dir) = (args.servers.clone(), groups.to_vec(), out.to_path_buf());
    let started = std::time::Instant::now();
    let made = c.run(move |c| async move {
        // A bar per group on a terminal (none when stderr is not one);
        // a line per group either way.
        let mut bar: Option<indicatif::ProgressBar> = None;
        sampan::backup::backup(&c, &servers, &groups, &dir, |p| match p {
            BackupProgress::Started { group, size } => {
                let b = indicatif::ProgressBar::new(size);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                b.set_message(format!("group {group}"));
                bar = Some(b);
            }
            BackupProgress::Copied { copied, .. } => {
                if let Some(b) = &bar {
                    b.set_position(copied);
                }
            }
            BackupProgress::Done(g) => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                eprintln!(
                    "group {}: snapshot at index {} (term {}), {} bytes, from node {}",
                    g.group, g.index, g.term, g.size, g.node
                );
            }
        })
        .await
    });
    let manifest = match made {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => return error(&e, args.json),
        Err(e) => return error(&e, args.json),
    };
    let bytes: u64 = manifest.groups.iter().map(|g| g.size).sum();
    let ms = started.elapsed().as_millis();
    if args.json {
        let groups: Vec<String> = manifest
            .groups
            .iter()
            .map(|g| {
                format!(
                    "{{\"group\":{},\"index\":{},\"term\":{},\"bytes\":{},\"node\":{}}}",
                    g.group, g.index, g.term, g.size, g.node
                )
            })
            .collect();
        return Output::ok(format!(
            "{{\"dir\":{},\"groups\":[{}],\"bytes\":{bytes},\"ms\":{ms}}}\n",
            json_str(&out.display().to_string()),
            groups.join(",")
        ));
    }
    Output::ok(format!(
        "backed up {} group(s), {bytes} bytes, in {ms} ms to {}\n",
        manifest.groups.len(),
        out.display()
    ))
}

/// Asks each of `addrs` for a snapshot of `g` now.
fn snapshot(
    c: &BlockingClient,
    g: u64,
    addrs: Vec<SocketAddr>,
    json: bool,
) -> Result<Output, ClientError> {
    let results = on_each(
        c,
        addrs,
        move |c, a| async move { c.snapshot_at(a, g).await },
    )?;
    Ok(per_node(&results, json, |s| {
        (
            format!(
                "snapshot at index {} (term {}): {} bytes in {} ms",
                s.index, s.term, s.bytes, s.write_ms
            ),
            format!(
                "\"index\":{},\"term\":{},\"bytes\":{},\"write_ms\":{}",
                s.index, s.term, s.bytes, s.write_ms
            ),
        )
    }))
}

/// Starts group `args.group` on every node of `--servers` it names.
fn add_group(
    c: &BlockingClient,
    args: &Args,
    members: &str,
    observers: &str,
    durability: &str,
) -> Result<Output, ClientError> {
    let cfg = GroupConfig {
        group_id: args.group,
        members: members.to_owned(),
        observers: observers.to_owned(),
        durability: if durability == "async" {
            Durability::Async
        } else {
            Durability::Sync
        },
        ..GroupConfig::default()
    };
    let nodes: BTreeSet<u64> = ids(members)?.union(&ids(observers)?).copied().collect();
    let addrs = args.servers.clone();
    let results = on_each(c, addrs, move |c, a| {
        let (nodes, cfg) = (nodes.clone(), cfg.clone());
        async move {
            match c.node_id_at(a).await {
                Ok(id) if !nodes.contains(&id) => Ok(false),
                Ok(_) => c.add_group_at(a, &cfg).await.map(|()| true),
                Err(e) => Err(e),
            }
        }
    })?;
    Ok(per_node(&results, args.json, |added| {
        if *added {
            ("group added".into(), "\"added\":true".into())
        } else {
            ("not a member: skipped".into(), "\"added\":false".into())
        }
    }))
}

/// Stops `g` on every node of `addrs`, then, only if all stopped, deletes
/// its files on each.
fn remove_group(
    c: &BlockingClient,
    g: u64,
    addrs: Vec<SocketAddr>,
    json: bool,
) -> Result<Output, ClientError> {
    let again = addrs.clone();
    let stopped = on_each(c, addrs, move |c, a| async move {
        match c.stop_group_at(a, g).await {
            Err(ClientError::NoSuchGroup { .. }) => Ok(false),
            r => r,
        }
    })?;
    if stopped.iter().any(|(_, r)| r.is_err()) {
        eprintln!(
            "sampan-cli: not every node stopped group {g}: no files were deleted; \
             run remove-group again once they answer"
        );
        let mut out = per_node(&stopped, json, |_| {
            ("stopped".into(), "\"stopped\":true".into())
        });
        out.code = EXIT_ERROR;
        return Ok(out);
    }
    let removed = on_each(c, again, move |c, a| async move {
        c.remove_group_at(a, g).await
    })?;
    Ok(per_node(&removed, json, |_| {
        ("stopped and deleted".into(), "\"removed\":true".into())
    }))
}

/// The answer of each node of `addrs` to `call`, in order.
#[allow(clippy::type_complexity)]
fn on_each<T, F, Fut>(
    c: &BlockingClient,
    addrs: Vec<SocketAddr>,
    call: F,
) -> Result<Vec<(SocketAddr, Result<T, ClientError>)>, ClientError>
where
    F: Fn(Client, SocketAddr) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, ClientError>> + 'static,
    T: Send + 'static,
{
    c.run(move |c| async move {
        let mut out = Vec::new();
        for a in addrs {
            out.push((a, call(c.clone(), a).await));
        }
        out
    })
}

/// A node's service address as another node reported it, resolved here.
fn service_of(n: &NodeAddrs) -> Result<SocketAddr, ClientError> {
    parse_addr(&n.service).map_err(|why| ClientError::Unexpected {
        group: 0,
        call: "nodes",
        reply: format!("node {}: service address {why}", n.node),
    })
}

/// The nodes the first answering node of --servers knows.
fn cluster_nodes(c: &BlockingClient, args: &Args) -> Result<Vec<NodeAddrs>, ClientError> {
    let listed = on_each(c, args.servers.clone(), |c, a| async move {
        c.list_nodes_at(a).await
    })?;
    let mut last = None;
    for (_, r) in listed {
        match r {
            Ok(nodes) => return Ok(nodes),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(ClientError::Unexpected {
        group: 0,
        call: "nodes",
        reply: "no node of --servers answered".into(),
    }))
}

/// Every group the nodes at `addrs` run (those that answer).
fn groups_of(c: &BlockingClient, addrs: Vec<SocketAddr>) -> Result<BTreeSet<u64>, ClientError> {
    let listed = on_each(c, addrs, |c, a| async move { c.list_groups_at(a).await })?;
    Ok(listed
        .into_iter()
        .filter_map(|(_, r)| r.ok())
        .flatten()
        .collect())
}

/// `sampan-cli add-node`: see [`Command::AddNode`].
fn add_node(
    c: &BlockingClient,
    args: &Args,
    node: u64,
    at: SocketAddr,
    groups: Option<&str>,
    observer: bool,
) -> Result<Output, ClientError> {
    let unexpected = |reply: String| ClientError::Unexpected {
        group: 0,
        call: "add-node",
        reply,
    };
    let (id, own) = c.run(move |c| async move {
        Ok::<_, ClientError>((c.node_id_at(at).await?, c.list_nodes_at(at).await?))
    })??;
    if id != node {
        return Err(unexpected(format!("{at} is node {id}, not node {node}")));
    }
    let me = own
        .into_iter()
        .find(|n| n.node == node)
        .ok_or_else(|| unexpected(format!("node {node} at {at} does not list itself")))?;
    let cluster: Vec<NodeAddrs> = cluster_nodes(c, args)?
        .into_iter()
        .filter(|n| n.node != node)
        .collect();
    // Every node learns the new one first: a node that cannot be told
    // would never reach it, so nothing else happens until all have.
    let mut told = Vec::new();
    for n in &cluster {
        let (addr, me) = (service_of(n)?, me.clone());
        let r = c.run(move |c| async move { c.set_nodes_at(addr, &[me]).await })?;
        told.push((n.node, addr, r));
    }
    let missed: Vec<String> = told
        .iter()
        .filter_map(|(n, a, r)| r.as_ref().err().map(|e| format!("node {n} at {a}: {e}")))
        .collect();
    if !missed.is_empty() {
        return Err(unexpected(format!(
            "not every node learned node {node}'s address, so no group was changed \
             (run add-node again once they answer, or remove-node the ones gone): {}",
            missed.join("; ")
        )));
    }
    let book = cluster.clone();
    c.run(move |c| async move { c.set_nodes_at(at, &book).await })??;
    let groups: BTreeSet<u64> = match groups {
        Some(list) => ids(list)?,
        None => groups_of(c, told.iter().map(|(_, a, _)| *a).collect())?,
    };
    let mut text = String::new();
    for g in &groups {
        add_member(c, *g, node, at, observer, args.timeout())?;
        let _ = writeln!(
            text,
            "group {g}: node {node} joined as {}",
            if observer { "an observer" } else { "a voter" }
        );
    }
    if args.json {
        let list: Vec<String> = groups.iter().map(u64::to_string).collect();
        text = format!("{{\"node\":{node},\"groups\":[{}]}}\n", list.join(","));
    } else {
        let _ = writeln!(text, "node {node} added: {} node(s) know it", cluster.len());
    }
    Ok(Output::ok(text))
}

/// `sampan-cli remove-node`: see [`Command::RemoveNode`].
fn remove_node(c: &BlockingClient, args: &Args, node: u64) -> Result<Output, ClientError> {
    let cluster: Vec<NodeAddrs> = cluster_nodes(c, args)?
        .into_iter()
        .filter(|n| n.node != node)
        .collect();
    let addrs = cluster
        .iter()
        .map(service_of)
        .collect::<Result<Vec<_>, _>>()?;
    let mut text = String::new();
    for g in groups_of(c, addrs.clone())? {
        let now = membership(c, g, args.timeout())?;
        if !now.voters.contains(&node) && !now.learners.contains(&node) {
            continue;
        }
        let (mut voters, mut learners) = (now.voters.clone(), now.learners.clone());
        voters.remove(&node);
        learners.remove(&node);
        c.run(move |c| async move { change_from(&c, g, now, voters, learners).await })??;
        let _ = writeln!(text, "group {g}: node {node} removed");
    }
    let forgot = on_each(c, addrs, move |c, a| async move {
        c.forget_node_at(a, node).await
    })?;
    let mut out = per_node(&forgot, args.json, |knew| {
        if *knew {
            (format!("forgot node {node}"), "\"forgot\":true".into())
        } else {
            (
                format!("did not know node {node}"),
                "\"forgot\":false".into(),
            )
        }
    });
    if !args.json {
        out.text = text + &out.text;
    }
    Ok(out)
}

/// Starts a joining replica of `g` on `node` (at `at`), then makes it a
/// voter (or an observer) by a conditional membership change.
fn add_member(
    c: &BlockingClient,
    g: u64,
    node: u64,
    at: SocketAddr,
    observer: bool,
    within: Duration,
) -> Result<(), ClientError> {
    let now = membership(c, g, within)?;
    let (mut voters, mut learners) = (now.voters.clone(), now.learners.clone());
    if observer {
        learners.insert(node);
    } else {
        learners.remove(&node);
        voters.insert(node);
    }
    // The joining replica takes the membership from the leader; its
    // config names the target so the node knows it belongs.
    let cfg = GroupConfig {
        group_id: g,
        members: list(&voters),
        observers: list(&learners),
        join: true,
        ..GroupConfig::default()
    };
    c.run(move |c| async move {
        let id = c.node_id_at(at).await?;
        if id != node {
            return Err(ClientError::Unexpected {
                group: g,
                call: "add-member",
                reply: format!("{at} is node {id}, not node {node}"),
            });
        }
        match c.add_group_at(at, &cfg).await {
            // Already running there (a retry): go on.
            Err(ClientError::Server { source, .. })
                if source.to_string().contains("already running") => {}
            r => r?,
        }
        change_from(&c, g, now, voters, learners).await
    })?
}

fn done(json: bool) -> Output {
    Output::ok(if json {
        "{\"ok\":true}\n".into()
    } else {
        "OK\n".into()
    })
}

/// Node ids from a list like `1,2,3`.
fn ids(list: &str) -> Result<BTreeSet<u64>, ClientError> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u64>().map_err(|_| ClientError::Unexpected {
                group: 0,
                call: "arguments",
                reply: format!("'{p}' is not a node id"),
            })
        })
        .collect()
}

fn list(ids: &BTreeSet<u64>) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// The group's voters and observers as its leader sees them.
/// A group's membership as its leader reported it.
#[derive(Debug, Clone)]
struct Members {
    voters: BTreeSet<u64>,
    learners: BTreeSet<u64>,
    /// Where it was set: (index, term).
    at: (u64, u64),
}

/// Changes `g`'s membership from `now` (as read) to the target, on the
/// condition that the membership in force is still the one set where
/// `now` was when the leader gets the request: a retry of this call, or
/// the request arriving after another admin's change (even one that set
/// the same members again), is then refused rather than undoing that
/// change. Nothing to do if the target is `now`.
async fn change_from(
    c: &Client,
    g: u64,
    now: Members,
    voters: BTreeSet<u64>,
    learners: BTreeSet<u64>,
) -> Result<(), ClientError> {
    if (&voters, &learners) == (&now.voters, &now.learners) {
        return Ok(());
    }
    let change = MembersChange {
        voters,
        learners,
        expected: Some(now.at),
    };
    c.change_members(g, &change).await
}

/// The membership in force: that of the leader of the highest term among
/// the nodes that answer (a deposed leader that has not heard of its
/// successor yet may still answer as leader).
fn membership(c: &BlockingClient, g: u64, within: Duration) -> Result<Members, ClientError> {
    // Right after a restart or a leader's loss the group may be electing:
    // look again until `within` has passed.
    let deadline = std::time::Instant::now() + within;
    loop {
        let nodes = c.status(g)?;
        if let Some(leader) = newest_leader(nodes.iter().filter_map(|n| n.status.as_ref().ok())) {
            return Ok(Members {
                voters: leader.voters.iter().copied().collect(),
                learners: leader.learners.iter().copied().collect(),
                at: (leader.membership_index, leader.membership_term),
            });
        }
        if std::time::Instant::now() >= deadline {
            return Err(ClientError::Unexpected {
                group: g,
                call: "membership",
                reply: "no node of --servers leads the group".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One line (or JSON object) per node: what `ok` says of a success, the
/// error otherwise; exit 3 if any failed.
fn per_node<T>(
    results: &[(SocketAddr, Result<T, ClientError>)],
    json: bool,
    ok: impl Fn(&T) -> (String, String),
) -> Output {
    let mut text = String::new();
    let mut failed = false;
    if json {
        text.push_str("{\"nodes\":[");
    }
    for (i, (addr, r)) in results.iter().enumerate() {
        failed |= r.is_err();
        match (r, json) {
            (Ok(v), false) => {
                let _ = writeln!(text, "{addr}: {}", ok(v).0);
            }
            (Err(e), false) => {
                let _ = writeln!(text, "{addr}: error: {e}");
            }
            (r, true) => {
                let sep = if i == 0 { "" } else { "," };
                let body = match r {
                    Ok(v) => ok(v).1,
                    Err(e) => format!("\"error\":{}", json_str(&e.to_string())),
                };
                let _ = write!(text, "{sep}{{\"addr\":\"{addr}\",{body}}}");
            }
        }
    }
    if json {
        text.push_str("]}\n");
    }
    Output {
        code: if failed { EXIT_ERROR } else { EXIT_OK },
        text,
    }
}

fn get(item: Option<Item>, key: &str, json: bool) -> Output {
    match (item, json) {
        (None, true) => {
            Output::not_found(format!("{{\"found\":false,\"key\":{}}}\n", json_str(key)))
        }
        (None, false) => Output::not_found("(not found)\n".into()),
        (Some(it), true) => Output::ok(format!(
            "{{\"found\":true,\"key\":{},{},\"version\":{},\"expire_at_ms\":{}}}\n",
            json_str(key),
            json_bytes("value", &it.value),
            it.version,
            it.expire_at_ms.map_or("null".into(), |t| t.to_string()),
        )),
        (Some(it), false) => Output::ok(format!("{}\n", String::from_utf8_lossy(&it.value))),
    }
}

fn scan(items: &[(Bytes, Item)], next: Option<&[u8]>, json: bool) -> String {
    let mut s = String::new();
    if json {
        s.push_str("{\"items\":[");
        for (i, (k, it)) in items.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                s,
                "{sep}{{{},{},\"version\":{}}}",
                json_bytes("key", k),
                json_bytes("value", &it.value),
                it.version
            );
        }
        let next = next.map_or("null".into(), |n| json_str(&String::from_utf8_lossy(n)));
        let _ = writeln!(s, "],\"next\":{next}}}");
        return s;
    }
    for (k, it) in items {
        let _ = writeln!(
            s,
            "{}\t{}",
            String::from_utf8_lossy(k),
            String::from_utf8_lossy(&it.value)
        );
    }
    if let Some(n) = next {
        eprintln!("(more: --after {})", String::from_utf8_lossy(n));
    }
    s
}

fn ttl(t: KeyTtl, json: bool) -> Output {
    match (t, json) {
        (KeyTtl::Absent, true) => Output::not_found("{\"found\":false}\n".into()),
        (KeyTtl::Absent, false) => Output::not_found("(not found)\n".into()),
        (KeyTtl::Persistent, true) => Output::ok("{\"found\":true,\"ttl_ms\":null}\n".into()),
        (KeyTtl::Persistent, false) => Output::ok("persistent\n".into()),
        (KeyTtl::Remaining(d), true) => {
            Output::ok(format!("{{\"found\":true,\"ttl_ms\":{}}}\n", d.as_millis()))
        }
        (KeyTtl::Remaining(d), false) => Output::ok(format!("{} ms\n", d.as_millis())),
    }
}

fn set_ttl(found: bool, json: bool) -> Output {
    match (found, json) {
        (f, true) => {
            let text = format!("{{\"found\":{f}}}\n");
            if f {
                Output::ok(text)
            } else {
                Output::not_found(text)
            }
        }
        (true, false) => Output::ok("OK\n".into()),
        (false, false) => Output::not_found("(not found)\n".into()),
    }
}

fn status(group: u64, nodes: &[NodeStatus], json: bool) -> Output {
    let answered = nodes.iter().filter(|n| n.status.is_ok()).count();
    let text = if json {
        status_json(group, nodes)
    } else {
        status_table(group, nodes)
    };
    if answered == 0 {
        eprintln!("sampan-cli: no node answered for group {group}");
        return Output {
            code: EXIT_ERROR,
            text,
        };
    }
    Output::ok(text)
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// `v`, or JSON's `null`.
fn json_opt(v: Option<u64>) -> String {
    v.map_or("null".into(), |v| v.to_string())
}

/// What a replica holds, as JSON fields (both status outputs carry them).
fn json_holdings(st: &GroupStatus) -> String {
    format!(
        "\"log_bytes\":{},\"snapshot_ms\":{},\"keys\":{},\"sessions\":{}",
        st.log_bytes,
        json_opt(st.snapshot_saved.map(|x| x.write_ms)),
        json_opt(st.keys),
        json_opt(st.sessions)
    )
}

fn status_table(group: u64, nodes: &[NodeStatus]) -> String {
    let mut s = format!("group {group}\n");
    let _ = writeln!(
        s,
        "{:<22} {:>5} {:<13} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8}  MEMBERS",
        "ADDRESS", "NODE", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAST", "SNAPSHOT"
    );
    for n in nodes {
        match &n.status {
            Ok(st) => {
                let _ = writeln!(
                    s,
                    "{:<22} {:>5} {:<13} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8}  {}",
                    n.addr.to_string(),
                    opt(n.node),
                    format!("{:?}", st.role).to_lowercase(),
                    st.term,
                    opt(st.leader),
                    st.index_commit,
                    st.index_applied,
                    st.index_last,
                    opt(Some(st.snapshot_index).filter(|i| *i > 0)),
                    members(st)
                );
            }
            Err(e) => {
                let _ = writeln!(
                    s,
                    "{:<22} {:>5} error: {e}",
                    n.addr.to_string(),
                    opt(n.node)
                );
            }
        }
    }
    s
}

/// Voters, then observers after a '+' (`1,2,3+4`); during a joint
/// change, the outgoing voters after: `1,2,4 (joint from 1,2,3)`.
fn members(st: &GroupStatus) -> String {
    let list = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let mut s = list(&st.voters);
    if !st.learners.is_empty() {
        s = format!("{s}+{}", list(&st.learners));
    }
    if !st.voters_outgoing.is_empty() {
        s = format!("{s} (joint from {})", list(&st.voters_outgoing));
    }
    s
}

fn status_json(group: u64, nodes: &[NodeStatus]) -> String {
    let mut s = format!("{{\"group\":{group},\"nodes\":[");
    for (i, n) in nodes.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let head = format!("\"addr\":\"{}\",\"node\":{}", n.addr, json_opt(n.node));
        let _ = match &n.status {
            Ok(st) => write!(
                s,
                "{sep}{{{head},\"role\":\"{}\",\"term\":{},\"leader\":{},\"commit\":{},\
                 \"applied\":{},\"last\":{},\"hibernating\":{},\"voters\":{:?},\"voters_outgoing\":{:?},\
                 \"learners\":{:?},\"snapshot_index\":{},\"snapshot_term\":{},{}}}",
                format!("{:?}", st.role).to_lowercase(),
                st.term,
                json_opt(st.leader),
                st.index_commit,
                st.index_applied,
                st.index_last,
                st.hibernating,
                st.voters,
                st.voters_outgoing,
                st.learners,
                st.snapshot_index,
                st.snapshot_term,
                json_holdings(st)
            ),
            Err(e) => write!(s, "{sep}{{{head},\"error\":{}}}", json_str(&e.to_string())),
        };
    }
    s.push_str("]}\n");
    s
}

/// `"name":"text"` for UTF-8 bytes, `"name_hex":"…"` for any others.
fn json_bytes(name: &str, b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => format!("\"{name}\":{}", json_str(s)),
        Err(_) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("\"{name}_hex\":\"{hex}\"")
        }
    }
}
