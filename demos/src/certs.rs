//! Certificates for a cluster, as `sampan-cli certs` makes them: a CA of
//! its own (it signs end certificates only), a certificate per node that
//! names the node (`node-<id>.c<cluster>.sampan.internal`, a URI
//! `sampan://cluster/<cluster>/node/<id>`, and the addresses clients dial)
//! for both server and client use, and client certificates (client use
//! only) for `redis-cli --tls --cert`. ECDSA P-256 keys in PKCS#8 PEM,
//! written with mode 0600.
//!
//! A CA already in the directory (`ca.pem`, `ca.key`) is reused, so
//! certificates for nodes added later chain to the same CA.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose as Eku, IsCa, Issuer,
    KeyPair, KeyUsagePurpose as Ku, SanType,
};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What to make.
#[derive(Debug, Clone)]
pub struct CertsSpec {
    /// Where the files go (created if missing).
    pub out: PathBuf,
    /// The cluster's id (in the node names).
    pub cluster_id: u64,
    /// Node ids to make certificates for.
    pub nodes: Vec<u64>,
    /// Addresses each node's certificate is valid for (what clients dial).
    pub ips: Vec<IpAddr>,
    /// Host names each node's certificate is valid for.
    pub dns: Vec<String>,
    /// Client certificates to make, by name.
    pub clients: Vec<String>,
    /// Days the certificates are valid.
    pub days: u32,
}

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// A file could not be read or written.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// rcgen refused (a bad name, a CA that does not parse).
    #[error("{what}: {source}")]
    Cert {
        /// What was being made.
        what: String,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// A name that cannot be used.
    #[error("{0}")]
    Name(String),
}

/// The DNS name that binds node `id` of cluster `cluster_id` to its
/// certificate.
pub fn node_dns_name(cluster_id: u64, id: u64) -> String {
    format!("node-{id}.c{cluster_id}.sampan.internal")
}

fn cert_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> CertsError {
    let what = what.into();
    move |source| CertsError::Cert { what, source }
}

fn write(file: &Path, text: &str, private: bool) -> Result<(), CertsError> {
    let io = |source| CertsError::Io {
        file: file.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(file)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}

fn read(file: &Path) -> Result<String, CertsError> {
    std::fs::read_to_string(file).map_err(|source| CertsError::Io {
        file: file.to_path_buf(),
        source,
    })
}

fn validity(p: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // A day of slack for clocks that are behind.
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(i64::from(days.max(1)));
}

fn ia5(s: String) -> Result<rcgen::string::Ia5String, CertsError> {
    rcgen::string::Ia5String::try_from(s.clone())
        .map_err(|_| CertsError::Name(format!("{s:?} is not an ASCII name")))
}

/// Makes (or reuses) the CA and the certificates of `spec`; returns the
/// files written.
pub fn make(spec: &CertsSpec) -> Result<Vec<PathBuf>, CertsError> {
    std::fs::create_dir_all(&spec.out).map_err(|source| CertsError::Io {
        file: spec.out.clone(),
        source,
    })?;
    let mut written = Vec::new();
    let (ca_pem, ca_key) = (spec.out.join("ca.pem"), spec.out.join("ca.key"));
    if !ca_pem.exists() || !ca_key.exists() {
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(
            DnType::CommonName,
            format!("Sampan cluster {} CA", spec.cluster_id),
        );
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign, Ku::DigitalSignature];
        validity(&mut p, spec.days.saturating_mul(2));
        let key = KeyPair::generate().map_err(cert_err("the CA's key"))?;
        let cert = p.self_signed(&key).map_err(cert_err("the CA"))?;
        write(&ca_pem, &cert.pem(), false)?;
        write(&ca_key, &key.serialize_pem(), true)?;
        written.extend([ca_pem.clone(), ca_key.clone()]);
    }
    let ca_signing = KeyPair::from_pem(&read(&ca_key)?).map_err(cert_err("ca.key"))?;
    let issuer =
        Issuer::from_ca_cert_pem(&read(&ca_pem)?, ca_signing).map_err(cert_err("ca.pem"))?;

    let leaf = |name: &str, sans: Vec<SanType>, ekus: Vec<Eku>, file: &str| {
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, name);
        p.subject_alt_names = sans;
        p.key_usages = vec![Ku::DigitalSignature];
        p.extended_key_usages = ekus;
        p.use_authority_key_identifier_extension = true;
        validity(&mut p, spec.days);
        let key = KeyPair::generate().map_err(cert_err(format!("{file}'s key")))?;
        let cert = p.signed_by(&key, &issuer).map_err(cert_err(file))?;
        let (pem, key_file) = (
            spec.out.join(format!("{file}.pem")),
            spec.out.join(format!("{file}.key")),
        );
        write(&pem, &cert.pem(), false)?;
        write(&key_file, &key.serialize_pem(), true)?;
        Ok::<_, CertsError>([pem, key_file])
    };
    for &id in &spec.nodes {
        let mut sans = vec![
            SanType::DnsName(ia5(node_dns_name(spec.cluster_id, id))?),
            SanType::URI(ia5(format!(
                "sampan://cluster/{}/node/{id}",
                spec.cluster_id
            ))?),
        ];
        for d in &spec.dns {
            sans.push(SanType::DnsName(ia5(d.clone())?));
        }
        sans.extend(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let files = leaf(
            &format!("sampan node {id}"),
            sans,
            vec![Eku::ServerAuth, Eku::ClientAuth],
            &format!("node-{id}"),
        )?;
        written.extend(files);
    }
    for name in &spec.clients {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok || name.starts_with("node-") {
            return Err(CertsError::Name(format!(
                "client name {name:?}: letters, digits, '-' and '_', not starting with \"node-\""
            )));
        }
        let files = leaf(
            &format!("sampan client {name}"),
            Vec::new(),
            vec![Eku::ClientAuth],
            &format!("client-{name}"),
        )?;
        written.extend(files);
    }
    Ok(written)
}
