//! Authentication in the handshake, attacked: nodes with a wrong or no
//! cluster secret, clients with a wrong, unknown or missing token, a
//! client that proves a plain token asking to be an admin, and nonces that
//! make a recorded exchange worthless. Each refusal is counted, and the
//! peers that hold the right keys keep working meanwhile.

mod common;

use common::*;
use sampan_fiber::timeout;
use sampan_net::auth::NONCE_LEN;
use sampan_net::frame::HEADER_LEN;
use sampan_net::handshake::{HELLO_LEN, MODE_PROOF};
use sampan_net::{
    ClientKeys, Credential, Key, NetConfig, NetError, Privilege, Role, Router, Transport,
};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const SECRET: &[u8] = b"the cluster secret, 32 bytes....";

/// Answers each request with the privilege byte its sender proved.
fn privilege_router() -> Router {
    let r = Router::new();
    r.register(KIND_ECHO, |inc| {
        let p = match inc.from.privilege {
            Privilege::Client => b"client".to_vec(),
            Privilege::Admin => b"admin".to_vec(),
            Privilege::Node => b"node".to_vec(),
        };
        if let Some(resp) = inc.responder {
            resp.respond(p).expect("answer queued");
        }
    })
    .expect("register");
    r
}

fn node_config(node: u64, secret: Option<&[u8]>) -> NetConfig {
    let mut c = NetConfig::new(CLUSTER, node);
    c.cluster_secret = secret.map(|s| Key::cluster_secret(s).expect("secret"));
    c.reconnect_delay_min = Duration::from_millis(10);
    c.reconnect_delay_max = Duration::from_millis(50);
    c
}

#[test]
fn nodes_with_the_secret_connect_and_others_are_refused_and_counted() {
    on_shard(|| async {
        let node2 = Transport::new(node_config(2, Some(SECRET)), privilege_router()).expect("2");
        let addr2 = node2.listen(local()).expect("listen");
        let node1 = Transport::new(node_config(1, Some(SECRET)), Router::new()).expect("1");
        node1.add_peer(2, addr2).expect("peer");
        node2.add_peer(1, local()).expect("peer");
        timeout(WAIT, node1.wait_connected(2))
            .await
            .expect("in time")
            .expect("up");
        let reply = node1
            .request(2, KIND_ECHO, 0, &b""[..], WAIT)
            .await
            .expect("answered");
        assert_eq!(&reply.body[..], b"node");

        // A node with another secret claiming node 1's id, dialing: refused
        // both ways, counted on both sides, and it keeps retrying without
        // getting in (nor displacing the real node 1).
        let intruder = Transport::new(
            node_config(1, Some(b"another secret, also long enough")),
            Router::new(),
        )
        .expect("intruder");
        intruder.add_peer(2, addr2).expect("peer");
        eventually("node 2 refused the intruder twice", || {
            node2.auth_failures() >= 2
        })
        .await;
        assert!(intruder.auth_failures() >= 1, "the intruder counted too");
        assert!(intruder.connection(2).is_none(), "it never got in");

        // A node with no secret at all, and an open node that a node with
        // the secret dials: both refused.
        let open = NetConfig::new(CLUSTER, 4);
        let e = sampan_net::connect(addr2, &open, Role::Node, Some(2), Router::new())
            .await
            .expect_err("no secret");
        assert!(matches!(e, NetError::Auth { .. }), "{e}");
        let open_node = Transport::new(NetConfig::new(CLUSTER, 5), Router::new()).expect("5");
        let open_addr = open_node.listen(local()).expect("listen");
        let e = sampan_net::connect(
            open_addr,
            &node_config(1, Some(SECRET)),
            Role::Node,
            Some(5),
            Router::new(),
        )
        .await
        .expect_err("an open node is refused by one with a secret");
        assert!(
            matches!(&e, NetError::Auth { reason, .. } if reason.contains("asks for no key")),
            "{e}"
        );

        // A raw dialer claiming node 1's id with no proof: the acceptor
        // proves itself, then waits for a proof that never comes right.
        let before = node2.auth_failures();
        let s = raw_connect(addr2, &hello(CLUSTER, 1, Role::Node)).await;
        let answer = read_exact(&s, OPEN_ANSWER_LEN + 32).await;
        assert_eq!(answer[HEADER_LEN + HELLO_LEN + NONCE_LEN], MODE_PROOF);
        s.write_all(&frame(sampan_net::FrameType::Request, 0, 0, &[0u8; 32]))
            .await
            .expect("send a made-up proof");
        read_to_end(&s).await;
        eventually("the made-up proof was counted", || {
            node2.auth_failures() > before
        })
        .await;

        // Meanwhile node 1 was never disturbed.
        let reply = node1
            .request(2, KIND_ECHO, 0, &b""[..], WAIT)
            .await
            .expect("still answered");
        assert_eq!(&reply.body[..], b"node");
        for t in [node1, node2, intruder, open_node] {
            t.close();
        }
    });
}

#[test]
fn client_tokens_grant_what_they_say_and_nothing_else() {
    on_shard(|| async {
        let mut keys = ClientKeys::new();
        let app = Credential::new("app", b"app token").expect("app");
        let ops = Credential::new("ops", b"ops token").expect("ops");
        keys.add(app.clone(), Privilege::Client).expect("add");
        keys.add(ops.clone(), Privilege::Admin).expect("add");
        let mut config = node_config(2, Some(SECRET));
        config.client_keys = Some(Arc::new(keys));
        let node = Transport::new(config, Router::new()).expect("node");
        let service = node
            .listen_service(local(), privilege_router())
            .expect("listen");

        let client = |credential: Option<Credential>| {
            let mut c = NetConfig::new(CLUSTER, 900);
            c.credential = credential;
            c
        };
        let privilege_of = async |credential: Option<Credential>| {
            let conn = sampan_net::connect(
                service,
                &client(credential),
                Role::Client,
                None,
                Router::new(),
            )
            .await?;
            let reply = conn.request(KIND_ECHO, 0, &b""[..], WAIT).await?;
            conn.close("done");
            Ok::<_, NetError>(String::from_utf8_lossy(&reply.body).into_owned())
        };
        assert_eq!(
            privilege_of(Some(app.clone())).await.expect("app"),
            "client"
        );
        assert_eq!(privilege_of(Some(ops.clone())).await.expect("ops"), "admin");

        let cases = [
            (None, "none is configured"),
            (
                Some(Credential::new("app", b"wrong").expect("c")),
                "did not prove",
            ),
            (
                Some(Credential::new("nobody", b"app token").expect("c")),
                "did not prove",
            ),
        ];
        for (i, (credential, why)) in cases.into_iter().enumerate() {
            let before = node.auth_failures();
            let e = privilege_of(credential).await.expect_err("refused");
            assert!(
                matches!(&e, NetError::Auth { reason, .. } if reason.contains(why)),
                "case {i}: {e}"
            );
            eventually("the node counted it", || node.auth_failures() > before).await;
        }

        // Each answer carries a fresh nonce: a recorded proof is for an
        // exchange that will not happen again.
        let mut nonces = Vec::new();
        for _ in 0..2 {
            let s = raw_connect(service, &hello(CLUSTER, 901, Role::Client)).await;
            let answer = read_exact(&s, OPEN_ANSWER_LEN + 32).await;
            let at = HEADER_LEN + HELLO_LEN;
            nonces.push(answer[at..at + NONCE_LEN].to_vec());
        }
        assert_ne!(nonces[0], nonces[1]);

        // An open service port lets a client in as an admin; a client that
        // holds a token refuses it (it cannot prove it is the node meant).
        let open = Transport::new(NetConfig::new(CLUSTER, 3), Router::new()).expect("open");
        let open_service = open
            .listen_service(local(), privilege_router())
            .expect("listen");
        let conn = sampan_net::connect(
            open_service,
            &client(None),
            Role::Client,
            None,
            Router::new(),
        )
        .await
        .expect("open port");
        let reply = conn
            .request(KIND_ECHO, 0, &b""[..], WAIT)
            .await
            .expect("answer");
        assert_eq!(&reply.body[..], b"admin");
        let e = sampan_net::connect(
            open_service,
            &client(Some(app)),
            Role::Client,
            None,
            Router::new(),
        )
        .await
        .expect_err("refused");
        assert!(matches!(e, NetError::Auth { .. }), "{e}");
        node.close();
        open.close();
    });
}
