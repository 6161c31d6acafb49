//! Unit tests of the core against the rules of the Raft paper's Figure 2
//! (including the "figure 8" commit rule), and of the failure modes other
//! engines shipped. A tiny synchronous harness delivers messages in order
//! and makes every write durable at once unless a test says otherwise.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::sim::storage::{LogData, SharedLog};
use super::*;

const GROUP: GroupId = GroupId(1);

fn ids(list: &[u64]) -> BTreeSet<NodeId> {
    list.iter().map(|&i| NodeId(i)).collect()
}

fn config(id: u64) -> Config {
    let mut cfg = Config::new(NodeId(id), GROUP);
    cfg.lease_read = false;
    cfg.hibernate = false;
    cfg.seed = 42;
    cfg
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term,
        index,
        kind: EntryKind::Normal,
        payload: Bytes::from(vec![index as u8]),
    }
}

fn bootstrap(voters: &[u64]) -> Entry {
    let kind = EntryKind::ConfChange(Box::new(ConfChange::Set {
        voters: ids(voters),
        learners: BTreeSet::new(),
    }));
    Entry {
        term: 1,
        index: 1,
        kind,
        payload: Bytes::new(),
    }
}

/// A core over a log of `terms` after the bootstrap entry (index 2 onward).
fn core_with_log(cfg: Config, voters: &[u64], terms: &[u64], hs: HardState) -> Raft<SharedLog> {
    let mut entries = vec![bootstrap(voters)];
    for (k, &t) in terms.iter().enumerate() {
        entries.push(entry(k as u64 + 2, t));
    }
    let log = SharedLog::new(LogData {
        snapshot: SnapshotMeta::default(),
        entries,
    });
    Raft::new(cfg, log, hs, 0).expect("valid core")
}

fn msg(from: u64, to: u64, term: u64, body: Body) -> Message {
    Message {
        group: GROUP,
        from: NodeId(from),
        to: NodeId(to),
        term,
        body,
    }
}

fn all_messages(rd: &Ready) -> Vec<Message> {
    rd.messages
        .iter()
        .chain(rd.messages_persisted.iter())
        .cloned()
        .collect()
}

/// One peer of the harness.
struct Peer {
    raft: Raft<SharedLog>,
    log: SharedLog,
    applied: Vec<Entry>,
    reads: Vec<ReadState>,
    durable: bool,
}

/// A synchronous in-memory cluster.
struct Net {
    peers: BTreeMap<u64, Peer>,
    queue: VecDeque<Message>,
    cut: BTreeSet<(u64, u64)>,
    down: BTreeSet<u64>,
}

impl Net {
    fn new(voters: &[u64], tweak: impl Fn(&mut Config)) -> Self {
        let mut peers = BTreeMap::new();
        for &id in voters {
            let mut cfg = config(id);
            tweak(&mut cfg);
            let log = SharedLog::new(LogData {
                snapshot: SnapshotMeta::default(),
                entries: vec![bootstrap(voters)],
            });
            let hs = HardState {
                term: 1,
                vote: None,
                index_commit: 1,
            };
            let raft = Raft::new(cfg, log.clone(), hs, 1).expect("valid core");
            peers.insert(
                id,
                Peer {
                    raft,
                    log,
                    applied: Vec::new(),
                    reads: Vec::new(),
                    durable: true,
                },
            );
        }
        Self {
            peers,
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            down: BTreeSet::new(),
        }
    }

    /// Adds an empty node (not a member yet).
    fn add_spare(&mut self, id: u64, tweak: impl Fn(&mut Config)) {
        let mut cfg = config(id);
        tweak(&mut cfg);
        let log = SharedLog::default();
        let raft = Raft::new(cfg, log.clone(), HardState::default(), 0).expect("valid core");
        self.peers.insert(
            id,
            Peer {
                raft,
                log,
                applied: Vec::new(),
                reads: Vec::new(),
                durable: true,
            },
        );
    }

    fn raft(&mut self, id: u64) -> &mut Raft<SharedLog> {
        &mut self.peers.get_mut(&id).expect("peer").raft
    }

    fn drain(&mut self, id: u64) {
        let peer = self.peers.get_mut(&id).expect("peer");
        while peer.raft.has_ready() {
            let rd = peer.raft.ready().expect("ready");
            if let Some(meta) = &rd.snapshot {
                peer.log.0.borrow_mut().install(meta.clone());
            }
            if !rd.entries.is_empty() {
                peer.log.0.borrow_mut().truncate_append(&rd.entries);
            }
            self.queue.extend(rd.messages.iter().cloned());
            if peer.durable {
                if let Some(meta) = &rd.snapshot {
                    peer.raft.on_snapshot_installed(meta.index);
                }
                let log = peer.log.0.borrow();
                let (last, term) = (log.last_index(), log.term(log.last_index()).unwrap_or(0));
                drop(log);
                peer.raft.on_entries_durable(last, term, rd.log_epoch);
                self.queue.extend(rd.messages_persisted.iter().cloned());
            }
            for e in &rd.entries_committed {
                peer.raft.on_applied(e.index);
            }
            peer.applied.extend(rd.entries_committed);
            peer.reads.extend(rd.reads);
        }
    }

    fn step(&mut self, m: Message) {
        let to = m.to.0;
        if self.down.contains(&to)
            || self.cut.contains(&(m.from.0, to))
            || !self.peers.contains_key(&to)
        {
            return;
        }
        self.raft(to).step(m).expect("step");
        self.drain(to);
    }

    /// Delivers messages until none is left.
    fn run(&mut self) {
        for _ in 0..100_000 {
            let Some(m) = self.queue.pop_front() else {
                return;
            };
            self.step(m);
        }
        panic!("messages never settle");
    }

    fn tick(&mut self, id: u64, n: u32) {
        for _ in 0..n {
            if self.down.contains(&id) {
                return;
            }
            self.raft(id).tick();
            self.drain(id);
            self.run();
        }
    }

    fn tick_all(&mut self, n: u32) {
        let all: Vec<u64> = self.peers.keys().copied().collect();
        for _ in 0..n {
            for &id in &all {
                self.tick(id, 1);
            }
        }
    }

    /// Ticks `id` until it campaigns, then delivers everything.
    fn elect(&mut self, id: u64) {
        for _ in 0..100 {
            self.raft(id).tick();
            self.drain(id);
            if self.raft(id).role() != Role::Follower {
                break;
            }
        }
        self.run();
        assert_eq!(self.raft(id).role(), Role::Leader, "n{id} was not elected");
    }

    fn propose(&mut self, id: u64, data: &'static [u8]) -> u64 {
        let index = self
            .raft(id)
            .propose(Bytes::from_static(data))
            .expect("propose");
        self.drain(id);
        self.run();
        index
    }

    fn isolate(&mut self, id: u64) {
        let all: Vec<u64> = self.peers.keys().copied().collect();
        for other in all {
            self.cut.insert((id, other));
            self.cut.insert((other, id));
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }
}

// ---- AppendEntries receiver (Figure 2) ----

#[test]
fn append_from_an_older_term_is_refused_and_tells_the_term() {
    let hs = HardState {
        term: 5,
        vote: None,
        index_commit: 1,
    };
    let mut r = core_with_log(config(2), &[1, 2, 3], &[], hs);
    let append = Append {
        index_prev: 1,
        term_prev: 1,
        entries: vec![entry(2, 3)],
        index_commit: 1,
    };
    r.step(msg(1, 2, 3, Body::Append(append))).expect("step");
    assert_eq!(r.index_last(), 1, "nothing appended");
    let out = all_messages(&r.ready().expect("ready"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].term, 5, "the stale leader learns the newer term");
}

#[test]
fn append_with_mismatched_prev_is_rejected_with_a_term_hint() {
    let hs = HardState {
        term: 4,
        vote: None,
        index_commit: 1,
    };
    // Log terms by index: 1:1 2:1 3:2 4:2 5:2
    let mut r = core_with_log(config(2), &[1, 2, 3], &[1, 2, 2, 2], hs);
    let append = Append {
        index_prev: 5,
        term_prev: 3,
        entries: vec![entry(6, 4)],
        index_commit: 1,
    };
    r.step(msg(1, 2, 4, Body::Append(append))).expect("step");
    let out = all_messages(&r.ready().expect("ready"));
    let Body::AppendResponse(resp) = out[0].body else {
        panic!("expected a response")
    };
    assert!(resp.reject);
    assert_eq!(resp.index, 5);
    assert_eq!(
        (resp.index_hint, resp.term_hint),
        (5, 2),
        "largest index whose term <= 3"
    );
    assert_eq!(r.index_last(), 5, "nothing appended");
}

#[test]
fn append_deletes_a_conflicting_suffix_and_appends_new_entries() {
    let hs = HardState {
        term: 3,
        vote: None,
        index_commit: 2,
    };
    let mut r = core_with_log(config(2), &[1, 2, 3], &[1, 2, 2], hs);
    let entries = vec![entry(3, 3), entry(4, 3), entry(5, 3)];
    let append = Append {
        index_prev: 2,
        term_prev: 1,
        entries,
        index_commit: 2,
    };
    r.step(msg(1, 2, 3, Body::Append(append))).expect("step");
    assert_eq!(r.index_last(), 5);
    assert_eq!(r.term_at(3), Some(3));
    let rd = r.ready().expect("ready");
    assert_eq!(
        rd.entries.first().map(|e| e.index),
        Some(3),
        "the runtime truncates from 3"
    );
}

#[test]
fn append_of_entries_already_held_deletes_nothing() {
    // openraft#511: a delayed AppendEntries must not cut a longer log.
    let hs = HardState {
        term: 2,
        vote: None,
        index_commit: 1,
    };
    let mut r = core_with_log(config(2), &[1, 2, 3], &[2, 2, 2, 2], hs);
    let append = Append {
        index_prev: 2,
        term_prev: 2,
        entries: vec![entry(3, 2)],
        index_commit: 1,
    };
    r.step(msg(1, 2, 2, Body::Append(append))).expect("step");
    assert_eq!(r.index_last(), 5, "entries 4 and 5 are kept");
    let rd = r.ready().expect("ready");
    assert!(rd.entries.is_empty());
    let ok = all_messages(&rd)
        .iter()
        .any(|m| matches!(m.body, Body::AppendResponse(a) if !a.reject && a.index == 3));
    assert!(ok, "acknowledges only what the message covered");
}

#[test]
fn append_commits_up_to_the_last_new_entry_only() {
    let hs = HardState {
        term: 2,
        vote: None,
        index_commit: 1,
    };
    let mut r = core_with_log(config(2), &[1, 2, 3], &[1, 1, 1, 1, 1], hs);
    // The follower holds stale entries 3..6; the leader's message covers 2..3 only.
    let entries = vec![entry(2, 2), entry(3, 2)];
    let append = Append {
        index_prev: 1,
        term_prev: 1,
        entries,
        index_commit: 9,
    };
    r.step(msg(1, 2, 2, Body::Append(append))).expect("step");
    assert_eq!(r.index_commit(), 3, "min(leader commit, last new entry)");
    assert_eq!(r.index_last(), 3);
}

#[test]
fn malformed_append_is_dropped() {
    let hs = HardState {
        term: 2,
        vote: None,
        index_commit: 1,
    };
    let mut r = core_with_log(config(2), &[1, 2, 3], &[], hs);
    let gap = Append {
        index_prev: 1,
        term_prev: 1,
        entries: vec![entry(3, 2)],
        index_commit: 1,
    };
    r.step(msg(1, 2, 2, Body::Append(gap))).expect("step");
    let future = Append {
        index_prev: 1,
        term_prev: 1,
        entries: vec![entry(2, 9)],
        index_commit: 1,
    };
    r.step(msg(1, 2, 2, Body::Append(future))).expect("step");
    assert_eq!(r.index_last(), 1);
}

// ---- RequestVote receiver (Figure 2) ----

fn vote(pre: bool, index_last: u64, term_last: u64) -> Body {
    Body::Vote(Vote {
        pre,
        index_last,
        term_last,
        transfer: false,
    })
}

fn granted(rd: &Ready) -> Vec<(u64, bool)> {
    all_messages(rd)
        .iter()
        .filter_map(|m| match m.body {
            Body::VoteResponse(v) => Some((m.to.0, !v.reject)),
            _ => None,
        })
        .collect()
}

#[test]
fn vote_from_an_older_term_is_refused() {
    let hs = HardState {
        term: 5,
        vote: None,
        index_commit: 1,
    };
    let mut r = core_with_log(config(1), &[1, 2, 3], &[], hs);
    r.step(msg(2, 1, 4, vote(false, 10, 4))).expect("step");
    assert!(granted(&r.ready().expect("ready")).iter().all(|&(_, g)| !g));
    assert_eq!(r.term(), 5);
}

#[test]
fn one_vote_per_term_and_only_for_an_up_to_date_log() {
    let hs = HardState {
        term: 2,
        vote: None,
        index_commit: 1,
    };
    let mut r = core_with_log(config(1), &[1, 2, 3, 4, 5], &[2, 2], hs);
    // openraft#1220: stale logs lose: lower last term, or same term but shorter.
    r.step(msg(2, 1, 3, vote(false, 9, 1))).expect("step");
    r.step(msg(3, 1, 3, vote(false, 2, 2))).expect("step");
    r.step(msg(4, 1, 3, vote(false, 3, 2))).expect("step");
    r.step(msg(5, 1, 3, vote(false, 3, 2))).expect("step");
    let got = granted(&r.ready().expect("ready"));
    assert_eq!(got, vec![(2, false), (3, false), (4, true), (5, false)]);
    assert_eq!(r.hard_state().vote, Some(NodeId(4)));
    r.step(msg(4, 1, 3, vote(false, 3, 2))).expect("step");
    assert_eq!(
        granted(&r.ready().expect("ready")),
        vec![(4, true)],
        "a repeated request is granted again"
    );
}

#[test]
fn vote_grant_waits_for_the_hard_state() {
    let hs = HardState {
        term: 2,
        vote: None,
        index_commit: 1,
    };
    let mut r = core_with_log(config(1), &[1, 2, 3], &[], hs);
    r.step(msg(2, 1, 3, vote(false, 1, 1))).expect("step");
    let rd = r.ready().expect("ready");
    assert_eq!(
        rd.hard_state.as_ref().map(|h| (h.term, h.vote)),
        Some((3, Some(NodeId(2))))
    );
    assert!(
        rd.messages.is_empty(),
        "the grant is sent only once the vote is durable"
    );
    assert_eq!(rd.messages_persisted.len(), 1);
}

// ---- Rules for servers (Figure 2) ----

#[test]
fn a_higher_term_turns_a_leader_into_a_follower() {
    let mut net = Net::new(&[1, 2, 3], |_| {});
    net.elect(1);
    let term = net.raft(1).term();
    let hb = Heartbeat {
        index_commit: 0,
        id_read: 0,
        lease_ms: 0,
    };
    net.raft(1)
        .step(msg(
            2,
            1,
            term + 3,
            Body::HeartbeatResponse(HeartbeatResponse {
                id_read: hb.id_read,
                lease_ms: 0,
            }),
        ))
        .expect("step");
    assert_eq!(net.raft(1).role(), Role::Follower);
    assert_eq!(net.raft(1).term(), term + 3);
}

#[test]
fn a_second_leader_in_the_same_term_halts_the_replica_in_every_build() {
    let mut net = Net::new(&[1, 2, 3], |_| {});
    net.elect(1);
    let term = net.raft(1).term();
    let index_commit = net.raft(1).index_commit();
    // Node 2 speaks as leader of node 1's own term: two leaders in one
    // term, which only a broken election (or storage) can produce.
    let hb = Heartbeat {
        index_commit: 0,
        id_read: 0,
        lease_ms: 0,
    };
    let err = net
        .raft(1)
        .step(msg(2, 1, term, Body::Heartbeat(hb)))
        .expect_err("halts");
    assert!(
        matches!(&err, RaftError::Invariant { what, .. } if what.contains("two leaders")),
        "{err}"
    );
    // Halted for good: no more input is taken, no Ready is produced but
    // the error, and nothing commits.
    assert!(net.raft(1).propose(Bytes::from_static(b"x")).is_err());
    assert!(net.raft(1).has_ready());
    assert!(matches!(
        net.raft(1).ready(),
        Err(RaftError::Invariant { .. })
    ));
    net.raft(1).tick();
    assert_eq!(net.raft(1).index_commit(), index_commit);
}

#[test]
fn election_timeout_starts_a_campaign_and_a_majority_elects() {
    let mut net = Net::new(&[1, 2, 3], |c| c.pre_vote = false);
    let term = net.raft(1).term();
    for _ in 0..19 {
        net.raft(1).tick();
    }
    assert_eq!(
        net.raft(1).role(),
        Role::Candidate,
        "timeout is below 2 * ticks_election"
    );
    assert_eq!(net.raft(1).term(), term + 1);
    net.drain(1);
    net.run();
    assert_eq!(net.raft(1).role(), Role::Leader);
    // The new leader commits a no-op of its term first.
    let index = net.raft(1).index_commit();
    assert_eq!(net.raft(1).term_at(index), Some(term + 1));
    assert!(
        net.peers[&2]
            .applied
            .iter()
            .any(|e| e.kind == EntryKind::NoOp)
    );
}

#[test]
fn a_candidate_steps_down_on_append_from_the_new_leader() {
    let mut net = Net::new(&[1, 2, 3], |c| c.pre_vote = false);
    net.elect(1);
    net.isolate(2);
    for _ in 0..30 {
        net.raft(2).tick();
    }
    assert_eq!(net.raft(2).role(), Role::Candidate);
    let term = net.raft(2).term();
    // The leader at a lower term is told to step down; a new leader wins.
    net.heal();
    net.tick_all(40);
    let leaders: Vec<u64> = [1, 2, 3]
        .into_iter()
        .filter(|&i| net.raft(i).role() == Role::Leader)
        .collect();
    assert_eq!(leaders.len(), 1);
    assert!(net.raft(2).term() >= term);
    assert_eq!(net.raft(2).leader(), Some(NodeId(leaders[0])));
}

#[test]
fn leader_replicates_and_commits_what_a_majority_holds() {
    let mut net = Net::new(&[1, 2, 3], |_| {});
    net.elect(1);
    net.isolate(3);
    let index = net.propose(1, b"x");
    assert_eq!(
        net.raft(1).index_commit(),
        index,
        "leader + n2 are a majority"
    );
    assert!(net.peers[&2].applied.iter().any(|e| e.index == index));
    net.heal();
    net.tick(1, 2);
    assert!(
        net.peers[&3].applied.iter().any(|e| e.index == index),
        "n3 catches up"
    );
}

#[test]
fn leader_counts_its_own_durable_index_like_a_follower() {
    let mut net = Net::new(&[1, 2, 3], |_| {});
    net.elect(1);
    net.isolate(3);
    net.peers.get_mut(&1).expect("peer").durable = false;
    let index = net.propose(1, b"x");
    assert_eq!(
        net.raft(1).index_commit(),
        index - 1,
        "n2 alone is not a majority"
    );
    let term = net.raft(1).term();
    let epoch = net.raft(1).ready().expect("ready").log_epoch;
    net.raft(1).on_entries_durable(index, term, epoch);
    net.drain(1);
    assert_eq!(
        net.raft(1).index_commit(),
        index,
        "the leader's own fsync completes the quorum"
    );
}

#[test]
fn figure_8_entries_of_older_terms_commit_only_with_the_current_term() {
    // S1 led term 2 and replicated index 2 to S2 only; S5 led term 3 and
    // wrote index 2 of term 3 locally. S1 leads again in term 4 and
    // replicates index 2 (term 2) to S3: it is on a majority, but must not
    // commit by counting, or S5 could still be elected and overwrite it.
    let hs = HardState {
        term: 4,
        vote: Some(NodeId(1)),
        index_commit: 1,
    };
    let mut cfg = config(1);
    cfg.pre_vote = false;
    let mut r = core_with_log(cfg, &[1, 2, 3, 4, 5], &[2], hs);
    let log = r.log_view().clone();
    while r.role() != Role::Candidate {
        r.tick();
    }
    for id in [2, 3] {
        r.step(msg(
            id,
            1,
            5,
            Body::VoteResponse(VoteResponse {
                pre: false,
                reject: false,
            }),
        ))
        .expect("step");
    }
    assert_eq!(r.role(), Role::Leader);
    let term = r.term();
    let rd = r.ready().expect("ready");
    log.0.borrow_mut().truncate_append(&rd.entries);
    let noop = rd.entries.last().map(|e| e.index).expect("no-op");
    r.on_entries_durable(noop, term, rd.log_epoch);
    for id in [2, 3] {
        let ack = AppendResponse {
            reject: false,
            index: 2,
            index_hint: 0,
            term_hint: 0,
        };
        r.step(msg(id, 1, term, Body::AppendResponse(ack)))
            .expect("step");
    }
    assert_eq!(
        r.index_commit(),
        1,
        "index 2 of an older term is not committed by counting"
    );
    let ack = AppendResponse {
        reject: false,
        index: noop,
        index_hint: 0,
        term_hint: 0,
    };
    r.step(msg(2, 1, term, Body::AppendResponse(ack)))
        .expect("step");
    assert_eq!(r.index_commit(), 1, "a quorum of 5 needs 3 holders");
    r.step(msg(3, 1, term, Body::AppendResponse(ack)))
        .expect("step");
    assert_eq!(
        r.index_commit(),
        noop,
        "the current-term entry commits, index 2 with it"
    );
}

#[test]
fn rejection_backs_off_by_whole_terms() {
    let mut net = Net::new(&[1, 2, 3], |_| {});
    net.elect(1);
    net.isolate(3);
    for data in [&b"a"[..], b"b", b"c", b"d", b"e", b"f"] {
        net.propose(1, data);
    }
    net.heal();
    net.tick(1, 2);
    assert_eq!(net.raft(3).index_last(), net.raft(1).index_last());
    assert_eq!(net.raft(3).index_commit(), net.raft(1).index_commit());
}

#[test]
fn pipelining_is_bounded_by_the_inflight_window() {
    let mut net = Net::new(&[1, 2], |c| c.msgs_inflight_max = 2);
    net.elect(1);
    // Hold every message, so nothing is acknowledged.
    let mut sent = 0;
    for _ in 0..5 {
        net.raft(1)
            .propose(Bytes::from_static(b"p"))
            .expect("propose");
        let rd = net.raft(1).ready().expect("ready");
        sent += rd
            .messages
            .iter()
            .filter(|m| matches!(&m.body, Body::Append(a) if !a.entries.is_empty()))
            .count();
    }
    assert_eq!(
        sent, 2,
        "two AppendEntries in flight, then the window is full"
    );
}

// ---- Snapshots ----

#[test]
fn a_follower_behind_the_purged_log_gets_a_snapshot() {
    let mut net = Net::new(&[1, 2, 3], |_| {});
    net.elect(1);
    net.isolate(3);
    for data in [&b"a"[..], b"b", b"c", b"d"] {
        net.propose(1, data);
    }
    // Leader purges its log up to the applied index.
    let peer = net.peers.get_mut(&1).expect("peer");
    let applied = peer.applied.last().map(|e| e.index).expect("applied");
    let meta = SnapshotMeta {
        index: applied,
        term: peer.raft.term(),
        membership: peer.raft.membership().clone(),
    };
    peer.log.0.borrow_mut().compact(meta);
    net.heal();
    net.tick(1, 2);
    let sent = net.raft(1).index_commit();
    assert_eq!(net.raft(3).index_commit(), sent);
    assert_eq!(
        net.peers[&3].log.0.borrow().snapshot.index,
        applied,
        "n3 installed the snapshot"
    );
    net.raft(1).report_snapshot(NodeId(3), true);
    let index = net.propose(1, b"after");
    assert_eq!(
        net.raft(3).index_commit(),
        index,
        "replication resumes after the snapshot"
    );
}

// ---- Reads ----

#[test]
fn read_index_waits_for_a_heartbeat_quorum() {
    let mut net = Net::new(&[1, 2, 3], |_| {});
    net.elect(1);
    net.isolate(2);
    net.isolate(3);
    net.raft(1)
        .read_index(Bytes::from_static(b"r"))
        .expect("read");
    net.drain(1);
    net.run();
    assert!(net.peers[&1].reads.is_empty(), "no quorum, no read");
    net.heal();
    net.raft(1)
        .read_index(Bytes::from_static(b"s"))
        .expect("read");
    net.drain(1);
    net.run();
    let reads = &net.peers[&1].reads;
    assert_eq!(reads.len(), 2, "both reads confirmed by one round");
    assert!(
        reads
            .iter()
            .all(|r| r.index == net.peers[&1].raft.index_commit())
    );
}

#[test]
fn lease_reads_are_served_locally_and_end_before_another_leader_can_win() {
    let (tick_ms, drift_ms) = (100, 300);
    let mut net = Net::new(&[1, 2, 3], |c| {
        c.lease_read = true;
        c.tick_ms = tick_ms;
        c.clock_drift_ms = Some(drift_ms);
    });
    let (l, mut now) = elect_on_a_clock(&mut net, tick_ms);
    now += tick_ms;
    clock_all(&mut net, now);
    net.tick(l, 1);
    now += tick_ms;
    clock_all(&mut net, now);
    net.tick(l, 1);
    let sent = now;
    assert!(
        net.raft(l).lease_valid(),
        "a heartbeat quorum grants the lease"
    );
    net.raft(l)
        .read_index(Bytes::from_static(b"r"))
        .expect("read");
    net.drain(l);
    assert_eq!(net.peers[&l].reads.len(), 1, "served without a round trip");
    net.isolate(l);
    // (ticks_election - 1) ticks of real time, less the drift bound.
    let lease = 9 * tick_ms - drift_ms;
    net.raft(l).set_now_ms(sent + lease - 1);
    assert!(net.raft(l).lease_valid(), "still within the lease");
    net.raft(l).set_now_ms(sent + lease);
    assert!(
        !net.raft(l).lease_valid(),
        "the lease ends (ticks_election - 1) ticks less the drift after the acked send"
    );
    // The others refuse to elect anyone until ticks_election after the last heartbeat.
    let others: Vec<u64> = (1..=3).filter(|&i| i != l).collect();
    for _ in 0..5 {
        now += tick_ms;
        for &o in &others {
            net.raft(o).set_now_ms(now);
            net.tick(o, 1);
        }
    }
    assert!(others.iter().all(|&o| net.raft(o).role() != Role::Leader));
    for _ in 0..40 {
        now += tick_ms;
        for &o in &others {
            net.raft(o).set_now_ms(now);
            net.tick(o, 1);
        }
    }
    assert!(
        others.iter().any(|&o| net.raft(o).role() == Role::Leader),
        "then they elect"
    );
}

// ---- Leader transfer ----

#[test]
fn transfer_catches_the_target_up_then_hands_over() {
    let mut net = Net::new(&[1, 2, 3], |_| {});
    net.elect(1);
    net.isolate(3);
    net.propose(1, b"x");
    net.heal();
    net.raft(1).transfer_leader(NodeId(3)).expect("transfer");
    assert!(matches!(
        net.raft(1).propose(Bytes::from_static(b"y")),
        Err(RaftError::TransferInProgress { .. })
    ));
    net.drain(1);
    net.run();
    assert_eq!(net.raft(3).role(), Role::Leader);
    assert_eq!(net.raft(1).role(), Role::Follower);
}

#[test]
fn transfer_hands_over_only_once_the_leaders_log_is_committed() {
    let mut net = Net::new(&[1, 2, 3, 4, 5], |_| {});
    net.elect(1);
    net.down.extend([4, 5]);
    // The leader's own write is not durable yet: 2 and 3 hold the entry,
    // but 3 of 5 durable copies are needed.
    net.peers.get_mut(&1).expect("peer").durable = false;
    let index = net.propose(1, b"x");
    assert!(net.raft(1).index_commit() < index);
    net.raft(1).transfer_leader(NodeId(3)).expect("transfer");
    net.drain(1);
    net.run();
    assert_eq!(net.raft(3).index_last(), index, "the target is caught up");
    assert_eq!(
        (net.raft(1).role(), net.raft(3).role()),
        (Role::Leader, Role::Follower),
        "no handover while the proposal's outcome is open"
    );
    // Its next heartbeat's round finds the write durable (the net syncs
    // as it drains a ready): the entry commits, then the handover.
    net.peers.get_mut(&1).expect("peer").durable = true;
    net.tick(1, 2);
    assert_eq!(net.raft(3).role(), Role::Leader);
    assert!(net.raft(1).index_commit() >= index);
}

// ---- Membership ----

#[test]
fn joint_consensus_enters_and_leaves_automatically_and_keeps_learners() {
    let mut net = Net::new(&[1, 2, 3], |_| {});
    net.add_spare(4, |_| {});
    net.add_spare(5, |_| {});
    net.elect(1);
    // Replace voter 3 by 4; 5 becomes a learner; 3 is demoted to learner.
    net.raft(1)
        .change_membership(ids(&[1, 2, 4]), ids(&[3, 5]))
        .expect("change");
    net.drain(1);
    net.run();
    net.tick_all(4);
    for id in 1..=5 {
        let m = net.raft(id).membership().clone();
        assert!(!m.is_joint(), "n{id} left the joint configuration");
        assert_eq!(m.voters(), &ids(&[1, 2, 4]), "n{id}");
        assert_eq!(
            m.learners(),
            ids(&[3, 5]),
            "n{id}: learner flags kept (etcd#21694)"
        );
    }
    let index = net.propose(1, b"z");
    assert_eq!(
        net.raft(5).index_commit(),
        index,
        "learners receive the log"
    );
}

#[test]
fn a_new_leader_finishes_a_joint_change() {
    let mut net = Net::new(&[1, 2, 3], |_| {});
    net.add_spare(4, |_| {});
    net.elect(1);
    net.raft(1)
        .change_membership(ids(&[1, 2, 3, 4]), BTreeSet::new())
        .expect("change");
    net.drain(1);
    net.run();
    net.tick_all(3);
    // Crash the leader right after the joint entry commits, before it leaves.
    assert!(net.raft(2).membership().voters().contains(&NodeId(4)));
    net.down.insert(1);
    for _ in 0..60 {
        for id in 2..=4 {
            net.tick(id, 1);
        }
    }
    let leader = (2..=4)
        .find(|&i| net.raft(i).role() == Role::Leader)
        .expect("a new leader");
    assert!(
        !net.raft(leader).membership().is_joint(),
        "never stuck in joint"
    );
}

#[test]
fn a_change_waiting_for_learners_can_be_cancelled() {
    let mut net = Net::new(&[1, 2, 3], |_| {});
    net.add_spare(4, |_| {});
    net.elect(1);
    net.isolate(4);
    net.raft(1)
        .change_membership(ids(&[1, 2, 4]), BTreeSet::new())
        .expect("change");
    net.drain(1);
    net.run();
    assert!(matches!(
        net.raft(1).change_membership(ids(&[1, 2]), BTreeSet::new()),
        Err(RaftError::ConfChangePending { .. })
    ));
    net.raft(1)
        .cancel_membership_change()
        .expect("cancel while the learner catches up");
    net.heal();
    net.tick_all(4);
    let m = net.raft(1).membership().clone();
    assert_eq!(m.voters(), &ids(&[1, 2, 3]), "voters untouched");
    assert!(m.is_learner(NodeId(4)));
    net.raft(1)
        .change_membership(ids(&[1, 2]), BTreeSet::new())
        .expect("a new change is accepted");
}

/// Seen under faults: an admin tool's "add node 1" arrived again after
/// its "add node 2" had finished, and, as a plain target, removed node 2.
/// A conditional change names where the membership it was computed from
/// was set: late, it is refused and changes nothing, even when the
/// members are the same again (removed and added back); retried after it
/// was made, it succeeds without a change.
#[test]
fn a_conditional_change_that_comes_late_is_refused_and_a_retry_of_a_done_one_succeeds() {
    let mut net = Net::new(&[1, 2, 3], |_| {});
    net.elect(1);
    let settle = |net: &mut Net| {
        net.drain(1);
        net.run();
        net.tick_all(10);
    };
    let founding = net.raft(1).membership_at();
    net.raft(1)
        .change_membership_if(Some(founding), ids(&[1, 2]), BTreeSet::new())
        .expect("remove node 3");
    settle(&mut net);
    assert_eq!(net.raft(1).membership().voters(), &ids(&[1, 2]));
    assert_ne!(net.raft(1).membership_at(), founding);
    // A retry of the change just made: nothing to do, accepted.
    net.raft(1)
        .change_membership_if(Some(founding), ids(&[1, 2]), BTreeSet::new())
        .expect("a retry of a change that was made succeeds");
    settle(&mut net);
    // Node 3 back: the same members as at the start, at a new position.
    let removed = net.raft(1).membership_at();
    net.raft(1)
        .change_membership_if(Some(removed), ids(&[1, 2, 3]), BTreeSet::new())
        .expect("add node 3 back");
    settle(&mut net);
    assert_eq!(net.raft(1).membership().voters(), &ids(&[1, 2, 3]));
    // The first removal, arriving again now: refused, whatever it names.
    for stale in [founding, removed] {
        let late = net
            .raft(1)
            .change_membership_if(Some(stale), ids(&[1, 2]), BTreeSet::new());
        assert!(
            matches!(late, Err(RaftError::MembershipChanged { .. })),
            "{late:?}"
        );
    }
    settle(&mut net);
    assert_eq!(
        net.raft(1).membership().voters(),
        &ids(&[1, 2, 3]),
        "a refused change changes nothing"
    );
}

#[test]
fn membership_is_rebuilt_from_the_log_on_restart() {
    let mut net = Net::new(&[1, 2, 3], |_| {});
    net.add_spare(4, |_| {});
    net.elect(1);
    net.raft(1)
        .change_membership(ids(&[1, 2, 3]), ids(&[4]))
        .expect("change");
    net.drain(1);
    net.run();
    let peer = &net.peers[&2];
    let restarted =
        Raft::new(config(2), peer.log.clone(), peer.raft.hard_state(), 0).expect("restart");
    assert!(restarted.membership().is_learner(NodeId(4)));
}

// ---- Pre-vote and check-quorum (etcd#9586) ----

#[test]
fn a_node_with_a_runaway_term_rejoins_under_pre_vote_and_check_quorum() {
    let mut net = Net::new(&[1, 2, 3], |_| {});
    net.elect(1);
    // n3's term ran ahead (say, it campaigned before pre-vote was enabled).
    let hs = HardState {
        term: net.raft(3).term() + 5,
        ..net.raft(3).hard_state()
    };
    let log = net.peers[&3].log.clone();
    let raft = Raft::new(config(3), log, hs, 0).expect("restart");
    net.peers.get_mut(&3).expect("peer").raft = raft;
    net.tick_all(60);
    let leaders: Vec<u64> = (1..=3)
        .filter(|&i| net.raft(i).role() == Role::Leader)
        .collect();
    assert_eq!(leaders.len(), 1, "the group has a leader again");
    let term = net.raft(leaders[0]).term();
    assert!(
        (1..=3).all(|i| net.raft(i).term() == term),
        "everyone caught up to one term"
    );
    let index = net.propose(leaders[0], b"alive");
    assert!((1..=3).all(|i| net.raft(i).index_commit() == index));
}

#[test]
fn pre_vote_and_check_quorum_do_not_deadlock_on_a_stale_higher_term() {
    // etcd#9586: n1 has the log, n3 has the higher term, n2 is down. n1's
    // pre-votes at its lower term must be answered with n3's term, or n1
    // never learns it and neither can ever win.
    let mut net = Net::new(&[1, 2, 3], |_| {});
    net.elect(1);
    net.isolate(3);
    net.propose(1, b"n3 misses this");
    let hs = HardState {
        term: net.raft(3).term() + 5,
        ..net.raft(3).hard_state()
    };
    let log = net.peers[&3].log.clone();
    net.peers.get_mut(&3).expect("peer").raft = Raft::new(config(3), log, hs, 0).expect("restart");
    // n2 dies; check-quorum makes n1 step down before n3 is back.
    net.down.insert(2);
    net.tick(1, 25);
    assert_ne!(net.raft(1).role(), Role::Leader);
    net.heal();
    for _ in 0..80 {
        net.tick(1, 1);
        net.tick(3, 1);
    }
    assert_eq!(
        net.raft(1).role(),
        Role::Leader,
        "n1 (the longer log) leads again"
    );
    assert_eq!(net.raft(3).leader(), Some(NodeId(1)));
}

#[test]
fn a_stale_pre_candidate_gets_a_rejection_with_the_newer_term() {
    let hs = HardState {
        term: 7,
        vote: None,
        index_commit: 1,
    };
    let mut r = core_with_log(config(1), &[1, 2, 3], &[], hs);
    r.step(msg(2, 1, 3, vote(true, 1, 1))).expect("step");
    let out = all_messages(&r.ready().expect("ready"));
    assert!(matches!(out[0].body, Body::VoteResponse(v) if v.pre && v.reject));
    assert_eq!(out[0].term, 7);
}

// ---- Hibernation ----

#[test]
fn idle_groups_hibernate_and_wake_on_proposals() {
    let mut net = Net::new(&[1, 2, 3], |c| c.hibernate = true);
    net.elect(1);
    net.tick_all(30);
    assert!(
        (1..=3).all(|i| net.raft(i).is_hibernating()),
        "everyone sleeps"
    );
    let queued = net.queue.len();
    net.tick_all(30);
    assert_eq!(net.queue.len(), queued, "no heartbeats while asleep");
    let index = net.propose(1, b"wake");
    assert!((1..=3).all(|i| !net.raft(i).is_hibernating()));
    assert!((1..=3).all(|i| net.raft(i).index_commit() == index));
}

#[test]
fn a_hibernated_group_whose_leader_dies_elects_a_new_one() {
    let mut net = Net::new(&[1, 2, 3], |c| c.hibernate = true);
    net.elect(1);
    net.tick_all(30);
    assert!((1..=3).all(|i| net.raft(i).is_hibernating()));
    net.down.insert(1);
    net.tick(2, 50);
    net.tick(3, 50);
    assert!(
        (2..=3).all(|i| net.raft(i).role() != Role::Leader),
        "asleep: nobody notices alone"
    );
    // The runtime's node-pair liveness check reports n1 gone.
    for id in [2, 3] {
        net.raft(id).on_node_unreachable(NodeId(1));
    }
    for _ in 0..40 {
        net.tick(2, 1);
        net.tick(3, 1);
    }
    assert!(
        (2..=3).any(|i| net.raft(i).role() == Role::Leader),
        "a new leader was elected"
    );
}

// ---- Misc ----

#[test]
fn proposals_to_a_follower_name_the_leader() {
    let mut net = Net::new(&[1, 2, 3], |_| {});
    net.elect(1);
    match net.raft(2).propose(Bytes::from_static(b"x")) {
        Err(RaftError::NotLeader { hint, group }) => {
            assert_eq!(hint, Some(NodeId(1)));
            assert_eq!(group, GROUP);
        }
        other => panic!("expected NotLeader, got {other:?}"),
    }
}

#[test]
fn messages_for_another_group_are_refused() {
    let mut net = Net::new(&[1, 2, 3], |_| {});
    let mut m = msg(2, 1, 1, vote(true, 1, 1));
    m.group = GroupId(99);
    assert!(matches!(
        net.raft(1).step(m),
        Err(RaftError::WrongGroup { .. })
    ));
}

#[test]
fn invalid_configs_are_refused() {
    let mut cfg = config(1);
    cfg.ticks_election = 2;
    cfg.ticks_heartbeat = 2;
    assert!(cfg.validate().is_err());
    let mut cfg = config(1);
    cfg.lease_read = true;
    cfg.check_quorum = false;
    assert!(cfg.validate().is_err());
}

// ---- Storage faults and persist-before-send ----

/// A log whose `term()` fails once `broken` is set, as a disk that went
/// bad under a running replica does.
#[derive(Debug, Clone)]
struct FlakyLog {
    inner: SharedLog,
    broken: std::rc::Rc<std::cell::Cell<bool>>,
}

impl LogView for FlakyLog {
    fn snapshot_meta(&self) -> SnapshotMeta {
        self.inner.snapshot_meta()
    }

    fn first_index(&self) -> u64 {
        self.inner.first_index()
    }

    fn last_index(&self) -> u64 {
        self.inner.last_index()
    }

    fn term(&self, index: u64) -> Result<u64, LogError> {
        if self.broken.get() {
            return Err(LogError::Storage {
                reason: format!("read of index {index} failed"),
            });
        }
        self.inner.term(index)
    }

    fn entries(&self, lo: u64, hi: u64, bytes_max: u64) -> Result<Vec<Entry>, LogError> {
        self.inner.entries(lo, hi, bytes_max)
    }
}

/// A core of `voters` over a flaky log of `terms` after the bootstrap entry.
fn flaky_core(voters: &[u64], terms: &[u64], term: u64) -> (Raft<FlakyLog>, FlakyLog) {
    let mut entries = vec![bootstrap(voters)];
    for (k, &t) in terms.iter().enumerate() {
        entries.push(entry(k as u64 + 2, t));
    }
    let log = FlakyLog {
        inner: SharedLog::new(LogData {
            snapshot: SnapshotMeta::default(),
            entries,
        }),
        broken: std::rc::Rc::default(),
    };
    let hs = HardState {
        term,
        vote: None,
        index_commit: 1,
    };
    let raft = Raft::new(config(1), log.clone(), hs, 1).expect("valid core");
    (raft, log)
}

#[test]
fn a_voter_that_cannot_read_its_last_term_grants_nothing_and_stops() {
    let (mut r, log) = flaky_core(&[1, 2, 3], &[5, 5], 5);
    log.broken.set(true);
    // The candidate's log ends in term 1: behind ours (term 5), unless a
    // missing term is taken for 0.
    let stepped = r.step(msg(2, 1, 6, vote(false, 3, 1)));
    let rd = r.ready();
    if let Ok(rd) = &rd {
        assert!(
            granted(rd).iter().all(|&(_, g)| !g),
            "a vote granted on a term read as 0"
        );
    }
    assert!(
        stepped.is_err() || rd.is_err(),
        "the storage error must stop the replica"
    );
}

#[test]
fn a_candidate_that_cannot_read_its_last_term_stops_instead_of_campaigning() {
    let (mut r, log) = flaky_core(&[1, 2, 3], &[5, 5], 5);
    log.broken.set(true);
    let mut failed = false;
    for _ in 0..100 {
        r.tick();
        match r.ready() {
            Err(_) => {
                failed = true;
                break;
            }
            Ok(rd) => assert!(
                all_messages(&rd)
                    .iter()
                    .all(|m| !matches!(m.body, Body::Vote(v) if v.term_last == 0)),
                "a vote request claims last term 0"
            ),
        }
    }
    assert!(failed, "the storage error must stop the replica");
}

#[test]
fn a_follower_that_cannot_read_its_log_stops_instead_of_hinting_term_0() {
    let (mut r, log) = flaky_core(&[1, 2, 3], &[2, 2], 2);
    log.broken.set(true);
    let append = Append {
        index_prev: 3,
        term_prev: 2,
        entries: vec![entry(4, 3)],
        index_commit: 1,
    };
    let stepped = r.step(msg(2, 1, 3, Body::Append(append)));
    let rd = r.ready();
    assert!(
        stepped.is_err() || rd.is_err(),
        "the storage error must stop the replica"
    );
}

#[test]
fn a_log_shorter_than_its_commit_index_is_refused() {
    let hs = HardState {
        term: 2,
        vote: None,
        index_commit: 9,
    };
    let mut entries = vec![bootstrap(&[1, 2, 3])];
    entries.extend((2..=5).map(|i| entry(i, 2)));
    let log = SharedLog::new(LogData {
        snapshot: SnapshotMeta::default(),
        entries,
    });
    let err = Raft::new(config(1), log, hs, 0).expect_err("committed entries are missing");
    let text = err.to_string();
    assert!(
        text.contains('9') && text.contains('5'),
        "names the commit and last index: {text}"
    );
    assert_eq!(
        err,
        RaftError::Log {
            group: GROUP,
            source: LogError::CommitPastLog {
                index_commit: 9,
                index_last: 5,
                index_snapshot: 0,
            },
        }
    );
}

/// A lone voter with a learner (`n2`), at term 1.
fn lone_voter_with_learner() -> Raft<SharedLog> {
    let kind = EntryKind::ConfChange(Box::new(ConfChange::Set {
        voters: ids(&[1]),
        learners: ids(&[2]),
    }));
    let boot = Entry {
        term: 1,
        index: 1,
        kind,
        payload: Bytes::new(),
    };
    let log = SharedLog::new(LogData {
        snapshot: SnapshotMeta::default(),
        entries: vec![boot],
    });
    let hs = HardState {
        term: 1,
        vote: None,
        index_commit: 1,
    };
    Raft::new(config(1), log, hs, 1).expect("valid core")
}

fn appends(messages: &[Message]) -> usize {
    messages
        .iter()
        .filter(|m| matches!(m.body, Body::Append(_)))
        .count()
}

#[test]
fn a_lone_voter_sends_no_append_before_its_new_term_is_durable() {
    let mut r = lone_voter_with_learner();
    let mut first = None;
    for _ in 0..100 {
        r.tick();
        if r.role() == Role::Leader {
            first = Some(r.ready().expect("ready"));
            break;
        }
    }
    let rd = first.expect("the lone voter wins at once");
    assert!(
        rd.hard_state.as_ref().is_some_and(|h| h.term == 2),
        "the new term is still to be written"
    );
    assert_eq!(
        appends(&rd.messages),
        0,
        "an append of term 2 left before term 2 was durable"
    );
    assert!(
        appends(&rd.messages_persisted) > 0,
        "the learner gets it after the write"
    );
    // Once the no-op (and so the hard state before it) is durable, appends
    // go out at once again.
    let noop = rd.entries.last().expect("the no-op").clone();
    r.log_view().0.borrow_mut().truncate_append(&rd.entries);
    r.on_entries_durable(noop.index, noop.term, rd.log_epoch);
    let _ = r.ready().expect("ready");
    r.tick();
    r.tick();
    let rd = r.ready().expect("ready");
    assert!(
        rd.messages
            .iter()
            .any(|m| matches!(m.body, Body::Heartbeat(_))),
        "messages go out at once when the term is durable"
    );
}

/// Sets every peer's clock to `ms`.
fn clock_all(net: &mut Net, ms: u64) {
    for peer in net.peers.values_mut() {
        peer.raft.set_now_ms(ms);
    }
}

/// Ticks nodes 1–3 of `net`, their clocks advancing `tick_ms` a tick from
/// 1,000 ms, until one leads; returns it and the clock then.
fn elect_on_a_clock(net: &mut Net, tick_ms: u64) -> (u64, u64) {
    let mut now = 1_000;
    for _ in 0..100 {
        now += tick_ms;
        clock_all(net, now);
        net.tick_all(1);
        if let Some(l) = (1..=3).find(|&i| net.raft(i).role() == Role::Leader) {
            return (l, now);
        }
    }
    panic!("no leader within 100 ticks");
}

#[test]
fn a_leader_whose_ticks_stop_loses_its_lease_when_its_clock_runs_past_it() {
    let tick_ms = 100;
    let mut net = Net::new(&[1, 2, 3], |c| {
        c.lease_read = true;
        c.tick_ms = tick_ms;
    });
    let (l, mut now) = elect_on_a_clock(&mut net, tick_ms);
    for _ in 0..2 {
        now += tick_ms;
        clock_all(&mut net, now);
        net.tick(l, 1);
    }
    assert!(
        net.raft(l).lease_valid(),
        "a heartbeat quorum grants the lease"
    );
    // The runtime stalls: no tick reaches the leader for an election
    // timeout, while real time (its monotonic clock) moves on.
    net.raft(l).set_now_ms(now + 10 * tick_ms);
    assert!(!net.raft(l).lease_valid(), "the lease outlived real time");
    net.raft(l)
        .read_index(Bytes::from_static(b"r"))
        .expect("read");
    let rd = net.raft(l).ready().expect("ready");
    assert!(rd.reads.is_empty(), "a read served from an expired lease");
    assert!(
        rd.messages
            .iter()
            .any(|m| matches!(m.body, Body::Heartbeat(_))),
        "the read waits for a heartbeat round"
    );
}

#[test]
fn a_hard_state_never_commits_past_the_durable_log() {
    let hs = HardState {
        term: 2,
        vote: None,
        index_commit: 1,
    };
    let mut r = core_with_log(config(1), &[1, 2, 3], &[], hs);
    let append = Append {
        index_prev: 1,
        term_prev: 1,
        entries: vec![entry(2, 2), entry(3, 2)],
        index_commit: 3,
    };
    r.step(msg(2, 1, 2, Body::Append(append))).expect("step");
    let rd = r.ready().expect("ready");
    assert_eq!(r.index_commit(), 3, "the follower learns the commit");
    assert!(
        rd.hard_state.is_none_or(|h| h.index_commit <= 1),
        "a status file written before entries 2..=3 must not claim them"
    );
    r.log_view().0.borrow_mut().truncate_append(&rd.entries);
    r.on_entries_durable(3, 2, rd.log_epoch);
    let rd = r.ready().expect("ready");
    assert_eq!(rd.hard_state.map(|h| h.index_commit), Some(3));
}

#[test]
fn bunched_ticks_right_after_a_heartbeat_do_not_end_a_followers_lease_promise() {
    let tick_ms = 100;
    let mut net = Net::new(&[1, 2, 3], |c| {
        c.lease_read = true;
        c.tick_ms = tick_ms;
    });
    let (l, mut now) = elect_on_a_clock(&mut net, tick_ms);
    now += tick_ms;
    clock_all(&mut net, now);
    net.tick(l, 2);
    assert!(
        net.raft(l).lease_valid(),
        "the follower's ack grants the lease"
    );
    let f = (1..=3).find(|&i| i != l).expect("a follower");
    let c = (1..=3).find(|&i| i != l && i != f).expect("a third node");
    // A stall ends: the ticks that fell due during it reach the follower
    // just after the heartbeat it acknowledged, with no real time between.
    for _ in 0..30 {
        net.raft(f).tick();
    }
    assert_eq!(
        net.raft(f).role(),
        Role::Follower,
        "campaigned (voting for itself) right after acknowledging the leader"
    );
    let term = net.raft(f).term();
    let last = net.raft(f).index_last();
    net.raft(f)
        .step(msg(c, f, term + 1, vote(false, last + 5, term)))
        .expect("step");
    let rd = net.raft(f).ready().expect("ready");
    assert!(
        granted(&rd).iter().all(|&(_, g)| !g),
        "voted for another while the leader's lease, counted from its ack, runs"
    );
}

#[test]
fn a_hard_state_commits_a_received_snapshot_only_once_it_is_installed() {
    let hs = HardState {
        term: 2,
        vote: None,
        index_commit: 1,
    };
    let mut r = core_with_log(config(1), &[1, 2, 3], &[], hs);
    let meta = SnapshotMeta {
        index: 10,
        term: 2,
        membership: r.membership().clone(),
    };
    r.step(msg(2, 1, 2, Body::Snapshot(Box::new(meta))))
        .expect("step");
    let rd = r.ready().expect("ready");
    assert!(rd.snapshot.is_some(), "the snapshot is to be installed");
    assert!(
        rd.hard_state.is_none_or(|h| h.index_commit <= 1),
        "a status file written before the snapshot must not claim index 10"
    );
    let meta = rd.snapshot.expect("snapshot");
    r.log_view().0.borrow_mut().install(meta);
    r.on_snapshot_installed(10);
    let rd = r.ready().expect("ready");
    assert_eq!(rd.hard_state.map(|h| h.index_commit), Some(10));
}
