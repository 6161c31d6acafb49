//! A leader that goes silent while its group hibernates: three real node
//! processes, an idle group (hibernating: no ticks, no heartbeats), then
//! its leader is paused (SIGSTOP). Its connections stay up, so nothing but
//! the node-level keepalive can notice the silence: the followers must
//! wake, elect a new leader and take writes, and the old leader must step
//! down when it comes back.

mod redis_common;
use redis_common::*;

/// Whether every running node reports group `group` hibernating.
fn all_hibernating(c: &TestCluster, group: u64) -> bool {
    c.running().into_iter().all(|n| {
        group_info(c.port(n), group)
            .is_some_and(|i| i.get("hibernating").map(String::as_str) == Some("1"))
    })
}

/// The leader both `nodes` name, if they agree and it says it leads.
fn agreed_leader(c: &TestCluster, nodes: &[u64], group: u64) -> Option<u64> {
    let named: Vec<u64> = nodes
        .iter()
        .map(|n| group_role(c.port(*n), group).map(|(_, l)| l))
        .collect::<Option<_>>()?;
    let l = *named.first()?;
    let leads = nodes.contains(&l)
        && group_role(c.port(l), group).is_some_and(|(role, _)| role == "leader");
    (l != 0 && leads && named.iter().all(|x| *x == l)).then_some(l)
}

#[test]
fn a_paused_leader_of_a_hibernating_group_is_replaced() {
    let c = TestCluster::start(3);
    let leader = c.wait_leader(1);
    assert_eq!(
        Resp::connect(c.port(leader))
            .expect("connect")
            .call(&["SET", "k", "before"])
            .expect("set"),
        Value::Simple("OK".into())
    );
    wait_until("group 1 to hibernate on every node", || {
        all_hibernating(&c, 1)
    });
    c.pause(leader);
    let others: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();
    let mut new_leader = None;
    wait_until("the other two nodes to elect a new leader", || {
        new_leader = agreed_leader(&c, &others, 1);
        new_leader.is_some()
    });
    let new_leader = new_leader.expect("new leader");
    let follower = others
        .iter()
        .copied()
        .find(|n| *n != new_leader)
        .expect("a follower");
    // A write through the other follower is forwarded to the new leader.
    let mut conn = Resp::connect(c.port(follower)).expect("connect");
    assert_eq!(
        conn.call(&["SET", "k", "after"]).expect("set"),
        Value::Simple("OK".into())
    );
    c.resume(leader);
    wait_until("the old leader to follow the new one", || {
        group_role(c.port(leader), 1).is_some_and(|(role, l)| role != "leader" && l == new_leader)
    });
    assert_eq!(
        conn.call(&["GET", "k"]).expect("get"),
        Value::Bulk(Some(b"after".to_vec()))
    );
}
