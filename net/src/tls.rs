//! TLS on the transport's ports: mutual TLS between nodes (each node's
//! certificate names it, `node-<id>.c<cluster>.sampan.internal`, and is
//! checked against the id its hello claims), and TLS on the service port
//! (clients check the node's certificate against the address they dial,
//! and prove who they are with a token; a client certificate is optional).
//! The files are PEM, as `sampan-cli certs` writes them.

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use sampan_fiber::tls::{crypto_provider, read_chain_and_key as chain_and_key, read_roots};
use std::path::Path;
use std::sync::Arc;

/// The DNS name that binds node `id` of cluster `cluster_id` to its
/// certificate.
pub fn node_name(cluster_id: u64, id: u64) -> String {
    format!("node-{id}.c{cluster_id}.sampan.internal")
}

/// A node's TLS configs, built once from its certificate, key and the
/// cluster's CA.
#[derive(Clone)]
pub struct NodeTls {
    /// Accepting nodes: our certificate; theirs must chain to the CA.
    pub peer_server: Arc<rustls::ServerConfig>,
    /// Dialing nodes: our certificate; the peer's must chain to the CA and
    /// name the node dialed.
    pub peer_client: Arc<rustls::ClientConfig>,
    /// Accepting clients on the service port: our certificate; a client
    /// certificate, if sent, must chain to the CA.
    pub service_server: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeTls")
    }
}

fn named(file: &Path, e: &dyn std::fmt::Display) -> String {
    format!("{}: {e}", file.display())
}

fn roots(ca_file: &Path) -> Result<Arc<rustls::RootCertStore>, String> {
    read_roots(ca_file).map(Arc::new)
}

impl NodeTls {
    /// Reads the node's certificate and key and the CA, and builds the
    /// configs (TLS 1.3 only; no session tickets). The error names the
    /// file at fault.
    pub fn from_files(
        cert_file: &Path,
        key_file: &Path,
        ca_file: &Path,
    ) -> Result<NodeTls, String> {
        let provider = crypto_provider();
        let roots = roots(ca_file)?;
        let (chain, key) = chain_and_key(cert_file, key_file)?;
        let versions = [&rustls::version::TLS13];
        let server = |optional: bool| -> Result<Arc<rustls::ServerConfig>, String> {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
            let verifier = if optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)
                .map_err(|e| e.to_string())?
                .with_client_cert_verifier(verifier.build().map_err(|e| named(ca_file, &e))?)
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(|e| named(cert_file, &e))?;
            config.send_tls13_tickets = 0;
            Ok(Arc::new(config))
        };
        let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| named(cert_file, &e))?;
        client.resumption = rustls::client::Resumption::disabled();
        Ok(NodeTls {
            peer_server: server(false)?,
            peer_client: Arc::new(client),
            service_server: server(true)?,
        })
    }
}

/// A client's TLS config for the service port: the CA to check nodes
/// against, and optionally a client certificate.
pub fn client_config(
    ca_file: &Path,
    cert_and_key: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = crypto_provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(ca_file)?);
    let mut config = match cert_and_key {
        Some((cert, key)) => {
            let (chain, key) = chain_and_key(cert, key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| named(cert, &e))?
        }
        None => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// Checks that `certs` (a peer's chain, already verified against the CA
/// by rustls) name node `claimed` of `cluster_id`.
pub(crate) fn check_peer_node(
    certs: Option<Vec<CertificateDer<'static>>>,
    cluster_id: u64,
    claimed: u64,
) -> Result<(), String> {
    let certs = certs.ok_or("no certificate")?;
    let leaf = certs.first().ok_or("an empty certificate chain")?;
    let cert = webpki::EndEntityCert::try_from(leaf).map_err(|e| e.to_string())?;
    let name = ServerName::try_from(node_name(cluster_id, claimed)).map_err(|e| e.to_string())?;
    cert.verify_is_valid_for_subject_name(&name)
        .map_err(|_| format!("its certificate is not node {claimed}'s"))
}

/// The name a dialer checks the acceptor's certificate against.
pub(crate) fn server_name(name: String) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name).map_err(|e| e.to_string())
}
