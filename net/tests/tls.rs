//! Mutual TLS between nodes and TLS on the service port, attacked: a node
//! whose certificate names another node, a node from another CA, a dialer
//! that reaches a node other than the one it meant, plain text against a
//! TLS port and TLS against a plain one. Each is refused; the nodes that
//! hold the right certificates keep working.

mod common;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose as Eku, IsCa, Issuer, KeyPair,
    SanType,
};
use sampan_fiber::timeout;
use sampan_net::tls::{NodeTls, client_config, node_name};
use sampan_net::{NetConfig, NetError, Privilege, Role, Router, Transport};
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// A CA in `dir` and a certificate for each of `nodes` (named as node
/// `names[i]`, valid for 127.0.0.1).
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path, names: &[u64]) -> Pki {
        std::fs::create_dir_all(dir).expect("dir");
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("key");
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write");
        let issuer = Issuer::new(ca, ca_key);
        for &n in names {
            let mut p = CertificateParams::new(vec![node_name(CLUSTER, n)]).expect("params");
            p.subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
            p.extended_key_usages = vec![Eku::ServerAuth, Eku::ClientAuth];
            let key = KeyPair::generate().expect("key");
            let cert = p.signed_by(&key, &issuer).expect("signed");
            std::fs::write(dir.join(format!("node-{n}.pem")), cert.pem()).expect("write");
            std::fs::write(dir.join(format!("node-{n}.key")), key.serialize_pem()).expect("write");
        }
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    fn tls(&self, cert_of: u64) -> NodeTls {
        NodeTls::from_files(
            &self.dir.join(format!("node-{cert_of}.pem")),
            &self.dir.join(format!("node-{cert_of}.key")),
            &self.dir.join("ca.pem"),
        )
        .expect("node TLS")
    }
}

/// Node `id` holding the certificate of node `cert_of` from `pki`.
fn node(id: u64, pki: &Pki, cert_of: u64) -> NetConfig {
    let mut c = NetConfig::new(CLUSTER, id);
    c.tls = Some(pki.tls(cert_of));
    c
}

fn echo_router() -> Router {
    let r = Router::new();
    r.register(KIND_ECHO, |inc| {
        let who = match inc.from.privilege {
            Privilege::Node => b"node".to_vec(),
            _ => b"client".to_vec(),
        };
        if let Some(resp) = inc.responder {
            resp.respond(who).expect("queued");
        }
    })
    .expect("register");
    r
}

#[test]
fn nodes_speak_mutual_tls_and_a_certificate_must_name_its_node() {
    on_shard(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let ours = Pki::new(&dir.path().join("ours"), &[1, 2, 3]);
        let theirs = Pki::new(&dir.path().join("theirs"), &[1]);
        let node2 = Transport::new(node(2, &ours, 2), echo_router()).expect("2");
        let addr2 = node2.listen(local()).expect("listen");
        let node1 = Transport::new(node(1, &ours, 1), Router::new()).expect("1");
        node1.add_peer(2, addr2).expect("peer");
        node2.add_peer(1, local()).expect("peer");
        timeout(WAIT, node1.wait_connected(2))
            .await
            .expect("in time")
            .expect("up");
        let reply = node1
            .request(2, KIND_ECHO, 0, vec![0u8; 100_000], WAIT)
            .await
            .expect("answered over TLS");
        assert_eq!(&reply.body[..], b"node");

        let refused = async |config: NetConfig, meant: u64| {
            let before = node2.auth_failures();
            let e = sampan_net::connect(addr2, &config, Role::Node, Some(meant), Router::new())
                .await
                .expect_err("refused");
            (e, before)
        };
        // Node 3's certificate, claiming to be node 1.
        let (e, before) = refused(node(1, &ours, 3), 2).await;
        assert!(matches!(e, NetError::Auth { .. }), "{e}");
        eventually("node 2 counted the impostor", || {
            node2.auth_failures() > before
        })
        .await;
        let closes = node2.recent_closes();
        assert!(
            closes
                .iter()
                .any(|(_, r)| format!("{r:?}").contains("is not node 1's")),
            "{closes:?}"
        );
        // A certificate from another CA.
        let (e, _) = refused(node(1, &theirs, 1), 2).await;
        assert!(matches!(e, NetError::Auth { .. }), "{e}");
        // A dialer that meant node 3 reaches node 2: node 2's certificate
        // does not name node 3.
        let (e, _) = refused(node(1, &ours, 1), 3).await;
        assert!(
            matches!(&e, NetError::Auth { reason, .. } if reason.contains("TLS")),
            "{e}"
        );
        // Plain text against the TLS port.
        let (e, _) = refused(NetConfig::new(CLUSTER, 1), 2).await;
        assert!(!matches!(e, NetError::Connect { .. }), "{e}");
        // TLS against a plain port.
        let plain = Transport::new(NetConfig::new(CLUSTER, 5), Router::new()).expect("5");
        let plain_addr = plain.listen(local()).expect("listen");
        let e = sampan_net::connect(
            plain_addr,
            &node(1, &ours, 1),
            Role::Node,
            Some(5),
            Router::new(),
        )
        .await
        .expect_err("refused");
        assert!(!matches!(e, NetError::Connect { .. }), "{e}");

        // Node 1 was never disturbed.
        let reply = node1
            .request(2, KIND_ECHO, 0, &b"again"[..], WAIT)
            .await
            .expect("still answered");
        assert_eq!(&reply.body[..], b"node");
        for t in [node1, node2, plain] {
            t.close();
        }
    });
}

#[test]
fn clients_reach_the_service_port_over_tls_and_check_the_node() {
    on_shard(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let ours = Pki::new(&dir.path().join("ours"), &[2]);
        let theirs = Pki::new(&dir.path().join("theirs"), &[2]);
        let node2 = Transport::new(node(2, &ours, 2), Router::new()).expect("2");
        let service = node2
            .listen_service(local(), echo_router())
            .expect("listen");
        let client = |pki: &Pki| {
            let mut c = NetConfig::new(CLUSTER, 900);
            c.client_tls = Some(client_config(&pki.dir.join("ca.pem"), None).expect("client tls"));
            c
        };
        let conn = sampan_net::connect(service, &client(&ours), Role::Client, None, Router::new())
            .await
            .expect("connected over TLS");
        let reply = conn
            .request(KIND_ECHO, 0, &b""[..], WAIT)
            .await
            .expect("answer");
        assert_eq!(&reply.body[..], b"client");
        conn.close("done");
        // A client that trusts another CA refuses the node.
        let e = sampan_net::connect(service, &client(&theirs), Role::Client, None, Router::new())
            .await
            .expect_err("refused");
        assert!(matches!(e, NetError::Auth { .. }), "{e}");
        // A plain client gets nothing from the TLS port.
        let e = sampan_net::connect(
            service,
            &NetConfig::new(CLUSTER, 901),
            Role::Client,
            None,
            Router::new(),
        )
        .await
        .expect_err("refused");
        assert!(!matches!(e, NetError::Connect { .. }), "{e}");
        node2.close();
    });
}
