//! Who may connect: the keys a handshake proves knowledge of, and what a
//! connection may do once it has.
//!
//! Both ports authenticate with the same challenge-response: each side sends
//! a fresh random nonce, then each proves it holds the key by an HMAC-SHA256
//! over the whole exchange (both hellos and both nonces) with a label for its
//! side. The key never crosses the wire, a recorded exchange cannot be
//! replayed (the other side's nonce is new each time), and a proof made for
//! one side is no proof for the other. The acceptor proves first, so a
//! dialer never sends a proof to a node that could not show it holds the
//! key too.
//!
//! - **Nodes** (the replication port) share one cluster secret
//!   ([`crate::NetConfig::cluster_secret`]). Every holder of it is trusted as
//!   a node of the cluster; binding each node id to its own identity needs
//!   certificates (mutual TLS).
//! - **Clients** (the service port) hold a named token
//!   ([`crate::NetConfig::credential`]); the node knows every token by name
//!   with its [`Privilege`] ([`ClientKeys`]). A node with no client keys
//!   lets every client in as [`Privilege::Admin`] (a loopback demo).
//!
//! Not here: encryption. The exchange authenticates the two ends; what
//! follows is in the clear, so a network that can be watched needs TLS.

use crate::error::NetError;
use hmac::{KeyInit, Mac};
use std::collections::HashMap;
use std::sync::Arc;

/// Bytes of each side's nonce.
pub const NONCE_LEN: usize = 32;
/// Bytes of a proof (an HMAC-SHA256).
pub const PROOF_LEN: usize = 32;
/// Longest credential name, in bytes.
pub const NAME_BYTES_MAX: usize = 64;
/// Shortest cluster secret, in bytes: a secret that can be guessed is no
/// secret. (Client tokens are the operator's choice, like Redis passwords.)
pub const CLUSTER_SECRET_BYTES_MIN: usize = 16;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Key material: a cluster secret or a client token. `Debug` shows
/// `(hidden)`, so a config printed for a log shows no key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Arc<[u8]>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(hidden)")
    }
}

impl Key {
    /// A key of `bytes` (not empty).
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<Key, NetError> {
        let bytes = bytes.as_ref();
        if bytes.is_empty() {
            return Err(NetError::InvalidConfig {
                field: "key",
                reason: "a key cannot be empty".into(),
            });
        }
        Ok(Key(bytes.into()))
    }

    /// A cluster secret of `bytes`: at least [`CLUSTER_SECRET_BYTES_MIN`].
    pub fn cluster_secret(bytes: impl AsRef<[u8]>) -> Result<Key, NetError> {
        let bytes = bytes.as_ref();
        if bytes.len() < CLUSTER_SECRET_BYTES_MIN {
            return Err(NetError::InvalidConfig {
                field: "cluster_secret",
                reason: format!(
                    "{} bytes; a cluster secret needs at least {CLUSTER_SECRET_BYTES_MIN}",
                    bytes.len()
                ),
            });
        }
        Key::new(bytes)
    }

    /// A fresh random key of 32 bytes (a stand-in for an unknown name, so
    /// the exchange fails the same way as for a wrong key).
    fn random() -> Key {
        Key(nonce().to_vec().into())
    }

    fn proof(&self, label: &[u8], transcript: &[&[u8]]) -> [u8; PROOF_LEN] {
        self.mac(label, transcript).finalize().into_bytes().into()
    }

    /// Whether `proof` is this key's proof for `label` over `transcript`,
    /// compared in constant time.
    fn verify(&self, label: &[u8], transcript: &[&[u8]], proof: &[u8]) -> bool {
        self.mac(label, transcript).verify_slice(proof).is_ok()
    }

    fn mac(&self, label: &[u8], transcript: &[&[u8]]) -> HmacSha256 {
        // HMAC takes a key of any length: this cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(label);
        for part in transcript {
            mac.update(part);
        }
        mac
    }
}

/// What a connection may do, decided by the credential it proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Privilege {
    /// Reads, writes and status.
    Client,
    /// Also the operations that change the cluster: groups, membership,
    /// leadership, snapshots.
    Admin,
    /// A node of the cluster (the replication port).
    Node,
}

impl Privilege {
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Privilege::Client => 1,
            Privilege::Admin => 2,
            Privilege::Node => 3,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Privilege> {
        match b {
            1 => Some(Privilege::Client),
            2 => Some(Privilege::Admin),
            3 => Some(Privilege::Node),
            _ => None,
        }
    }
}

/// What a client proves it holds: a token under a name.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The name the node knows the token by.
    pub name: String,
    /// The token.
    pub key: Key,
}

impl Credential {
    /// A credential; the name is at most [`NAME_BYTES_MAX`] bytes.
    pub fn new(name: impl Into<String>, token: impl AsRef<[u8]>) -> Result<Credential, NetError> {
        let name = name.into();
        check_name(&name)?;
        Ok(Credential {
            name,
            key: Key::new(token)?,
        })
    }
}

fn check_name(name: &str) -> Result<(), NetError> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(NetError::InvalidConfig {
            field: "credential name",
            reason: format!("must be 1 to {NAME_BYTES_MAX} bytes"),
        });
    }
    Ok(())
}

/// The client tokens a node accepts on its service port, by name, each
/// with what it allows.
#[derive(Debug, Clone, Default)]
pub struct ClientKeys {
    by_name: HashMap<String, (Key, Privilege)>,
}

impl ClientKeys {
    /// No tokens yet.
    pub fn new() -> ClientKeys {
        ClientKeys::default()
    }

    /// Adds a token; a name given twice is refused.
    pub fn add(&mut self, credential: Credential, privilege: Privilege) -> Result<(), NetError> {
        check_name(&credential.name)?;
        if privilege == Privilege::Node {
            return Err(NetError::InvalidConfig {
                field: "credential privilege",
                reason: "a client token cannot grant a node's privilege".into(),
            });
        }
        if self.by_name.contains_key(&credential.name) {
            return Err(NetError::InvalidConfig {
                field: "credential name",
                reason: format!("{:?} is given twice", credential.name),
            });
        }
        self.by_name
            .insert(credential.name, (credential.key, privilege));
        Ok(())
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The key of `name` and what it allows; for an unknown name, a random
    /// key (so the exchange fails as for a wrong token, telling a prober
    /// nothing) and `false`.
    pub(crate) fn lookup(&self, name: &str) -> (Key, Privilege, bool) {
        match self.by_name.get(name) {
            Some((key, privilege)) => (key.clone(), *privilege, true),
            None => (Key::random(), Privilege::Client, false),
        }
    }
}

/// A fresh random nonce from the operating system.
pub(crate) fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    if let Err(e) = getrandom::fill(&mut n) {
        // The OS has no randomness to give: nothing safe can be done.
        panic!("the operating system gave no random bytes: {e}");
    }
    n
}

/// Labels of the two proofs: a proof for one side is none for the other.
pub(crate) const ACCEPTOR_LABEL: &[u8] = b"sampan handshake v2: acceptor";
pub(crate) const DIALER_LABEL: &[u8] = b"sampan handshake v2: dialer";

/// The proof of `label`'s side over `transcript` with `key`.
pub(crate) fn prove(key: &Key, label: &[u8], transcript: &[&[u8]]) -> [u8; PROOF_LEN] {
    key.proof(label, transcript)
}

/// Whether `proof` is `label`'s side's proof over `transcript` with `key`.
pub(crate) fn verify(key: &Key, label: &[u8], transcript: &[&[u8]], proof: &[u8]) -> bool {
    key.verify(label, transcript, proof)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_verifies_only_with_its_key_label_and_transcript() {
        let key = Key::new(b"one secret").expect("key");
        let other = Key::new(b"another secret").expect("key");
        let t: [&[u8]; 2] = [b"hello", b"nonce"];
        let p = prove(&key, ACCEPTOR_LABEL, &t);
        assert!(verify(&key, ACCEPTOR_LABEL, &t, &p));
        assert!(!verify(&other, ACCEPTOR_LABEL, &t, &p));
        assert!(!verify(&key, DIALER_LABEL, &t, &p));
        assert!(!verify(&key, ACCEPTOR_LABEL, &[b"hello", b"nonce!"], &p));
        assert!(!verify(&key, ACCEPTOR_LABEL, &t, &p[..31]));
    }

    #[test]
    fn keys_and_names_are_checked_and_never_printed() {
        assert!(Key::new(b"").is_err());
        assert!(Key::cluster_secret(b"short").is_err());
        let k = Key::cluster_secret(b"sixteen bytes ok").expect("16 bytes");
        assert_eq!(format!("{k:?}"), "Key(hidden)");
        assert!(Credential::new("", b"t").is_err());
        assert!(Credential::new("x".repeat(65), b"t").is_err());
        let mut keys = ClientKeys::new();
        let c = Credential::new("app", b"token").expect("credential");
        keys.add(c.clone(), Privilege::Client).expect("first");
        assert!(keys.add(c.clone(), Privilege::Admin).is_err());
        assert!(!format!("{keys:?}").contains("token"));
        let (_, privilege, known) = keys.lookup("app");
        assert_eq!((privilege, known), (Privilege::Client, true));
        assert!(!keys.lookup("nobody").2);
        assert_ne!(nonce(), nonce());
    }
}
