//! TLS for the Redis port, configured as Redis's `tls-*` settings are: a
//! certificate and key for the node, a CA whose client certificates are
//! accepted, and whether clients must present one (`tls-auth-clients`).

use rustls::server::WebPkiClientVerifier;
use std::path::Path;
use std::sync::Arc;

/// Whether clients must present a certificate signed by the CA (Redis's
/// `tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client presents one (Redis's default, `yes`).
    Required,
    /// A client may present one; one that does is checked.
    Optional,
    /// Clients present none (`no`).
    None,
}

impl std::str::FromStr for ClientAuth {
    type Err = String;

    fn from_str(s: &str) -> Result<ClientAuth, String> {
        match s {
            "yes" => Ok(ClientAuth::Required),
            "optional" => Ok(ClientAuth::Optional),
            "no" => Ok(ClientAuth::None),
            other => Err(format!("{other:?}: expected yes, optional or no")),
        }
    }
}

/// A TLS server config, compared by identity (for [`crate::server::ListenerSettings`]).
#[derive(Clone)]
pub struct TlsConfig(pub Arc<rustls::ServerConfig>);

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig")
    }
}

impl PartialEq for TlsConfig {
    fn eq(&self, other: &TlsConfig) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TlsConfig {}

/// Reads the node's certificate chain and key and the CA (PEM files) and
/// builds the server config: TLS 1.2 and 1.3, as Redis offers. The error
/// names the file at fault.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    ca_file: Option<&Path>,
    auth: ClientAuth,
) -> Result<TlsConfig, String> {
    let provider = sampan_fiber::tls::crypto_provider();
    let named = |file: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", file.display());
    let (chain, key) = sampan_fiber::tls::read_chain_and_key(cert_file, key_file)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match (auth, ca_file) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(
                "client certificates are checked (tls_auth_clients) and no CA file is set".into(),
            );
        }
        (auth, Some(ca)) => {
            let roots = sampan_fiber::tls::read_roots(ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| named(ca, &e))?)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("{} with {}: {e}", cert_file.display(), key_file.display()))?;
    config.send_tls13_tickets = 0;
    Ok(TlsConfig(Arc::new(config)))
}
