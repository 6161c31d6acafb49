//! Who may use the Redis port: Redis's `requirepass` and a subset of its
//! ACL users (`on|off`, passwords, `nopass`, `+@all`, `+@read`,
//! `-@write`), plus one rule of ours, `db=0,2`: the databases (groups) a
//! user may reach.
//!
//! Answers are Redis's own, so clients and tools react as they do to
//! Redis: `-NOAUTH Authentication required.` before authenticating,
//! `-WRONGPASS invalid username-password pair or user is disabled.` on a
//! bad pair, `-NOPERM ...` for a command or database a user may not use.
//!
//! Passwords are kept as SHA-256 digests (as Redis keeps them; a rule may
//! give one as `#<64 hex digits>` so the config holds no clear password),
//! and a password given to `AUTH` is hashed and compared in constant time.
//! No error, log line or reply ever holds a password: a rule that does not
//! parse is named by its user and the position of the bad token.
//!
//! **For:** deciding, per connection, whether a request may run. **Not
//! for:** transport security (TLS) or the service port's clients.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The user a connection is when it has not authenticated (Redis's).
pub const DEFAULT_USER: &str = "default";

/// `-NOAUTH`, Redis's text.
pub const NOAUTH: &str = "NOAUTH Authentication required.";

/// `-WRONGPASS`, Redis's text.
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// What `HELLO` answers before authentication without `AUTH` (Redis's).
pub const HELLO_NOAUTH: &str = "NOAUTH HELLO must be called with the client already \
     authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to \
     authenticate the client and select the RESP protocol version at the same time";

/// What `AUTH <password>` answers when the default user has no password
/// (Redis's text).
pub const AUTH_WITHOUT_PASSWORD: &str = "ERR AUTH <password> called without any password \
     configured for the default user. Are you sure your configuration is correct?";

/// Which commands a user may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Commands {
    /// None but the connection commands (`-@all`).
    None,
    /// Reads only (`+@read`, or `+@all -@write`).
    Read,
    /// Every command (`+@all`).
    All,
}

/// Why a user may not run a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The command (a write, for a read-only user).
    Command,
    /// The database.
    Database(u64),
}

/// One user of the Redis port.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    name: String,
    enabled: bool,
    nopass: bool,
    passwords: Vec<[u8; 32]>,
    commands: Commands,
    /// `None`: every database.
    databases: Option<BTreeSet<u64>>,
}

impl std::fmt::Debug for User {
    // Never the password digests.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .field("nopass", &self.nopass)
            .field("passwords", &self.passwords.len())
            .field("commands", &self.commands)
            .field("databases", &self.databases)
            .finish()
    }
}

/// Why an ACL rule was refused. Never holds a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// A rule is empty or names no user.
    #[error("an ACL rule must start with a user name")]
    NoName,
    /// A token of a user's rule is not understood.
    #[error("user '{user}': token {position} of its rule is not understood{hint}")]
    Token {
        /// The user.
        user: String,
        /// 1-based position of the token after the name.
        position: usize,
        /// What we accept instead, when there is something to say.
        hint: String,
    },
    /// The same user is defined twice.
    #[error("user '{0}' is defined twice")]
    Duplicate(String),
}

fn digest(password: &[u8]) -> [u8; 32] {
    Sha256::digest(password).into()
}

/// Compares two digests without an early exit.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex_digest(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl User {
    /// A user with no rules applied: off, no password, no commands
    /// (Redis's `ACL SETUSER name` starting point).
    fn new(name: &str) -> User {
        User {
            name: name.to_string(),
            enabled: false,
            nopass: false,
            passwords: Vec::new(),
            commands: Commands::None,
            databases: None,
        }
    }

    /// Parses a rule in Redis's `ACL SETUSER` form, the name first:
    /// `alice on >secret +@read db=0,1`.
    pub fn parse(rule: &str) -> Result<User, AclError> {
        let mut tokens = rule.split_whitespace();
        let name = tokens.next().ok_or(AclError::NoName)?;
        let mut user = User::new(name);
        for (i, token) in tokens.enumerate() {
            user.apply(token).map_err(|hint| AclError::Token {
                user: name.to_string(),
                position: i + 1,
                hint,
            })?;
        }
        Ok(user)
    }

    /// Applies one token; a hint on failure (never the token itself: it
    /// may be a mistyped password).
    fn apply(&mut self, token: &str) -> Result<(), String> {
        match token {
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            "resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            "+@all" | "allcommands" => self.commands = Commands::All,
            "-@all" | "nocommands" => self.commands = Commands::None,
            "+@read" => self.commands = self.commands.max(Commands::Read),
            "-@write" => self.commands = self.commands.min(Commands::Read),
            // Keys and channels: every key is all we have.
            "~*" | "allkeys" | "%RW~*" | "&*" | "allchannels" | "resetchannels" => {}
            _ => {
                if let Some(pass) = token.strip_prefix('>') {
                    self.passwords.push(digest(pass.as_bytes()));
                    self.nopass = false;
                } else if let Some(hex) = token.strip_prefix('#') {
                    let d = hex_digest(hex).ok_or_else(|| {
                        ": '#' takes a SHA-256 digest as 64 hex digits".to_string()
                    })?;
                    self.passwords.push(d);
                    self.nopass = false;
                } else if let Some(list) = token.strip_prefix("db=") {
                    let dbs = list
                        .split(',')
                        .map(|d| d.trim().parse::<u64>())
                        .collect::<Result<BTreeSet<u64>, _>>()
                        .map_err(|_| ": 'db=' takes database numbers, like db=0,2".to_string())?;
                    self.databases = Some(dbs);
                } else {
                    return Err(": accepted are on, off, >password, #sha256hex, nopass, \
                         resetpass, +@all, +@read, -@write, -@all, ~*, allkeys, \
                         and db=N,M (Sampan's: the databases the user may use)"
                        .to_string());
                }
            }
        }
        Ok(())
    }

    /// The user's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which commands the user may run.
    pub fn commands(&self) -> Commands {
        self.commands
    }

    /// Whether `password` opens this user.
    fn opens(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let d = digest(password);
        // Check every digest: the time does not say which one matched.
        self.passwords.iter().fold(false, |ok, p| same(p, &d) | ok)
    }

    /// Whether the user may run a command that writes (`write`) or only
    /// reads, on database `db`. Nothing is allocated when it may (every
    /// request asks).
    pub fn may(&self, write: bool, db: u64) -> Result<(), Denied> {
        let allowed = match self.commands {
            Commands::All => true,
            Commands::Read => !write,
            Commands::None => false,
        };
        if !allowed {
            return Err(Denied::Command);
        }
        self.may_use_db(db)
    }

    /// Whether the user may use database `db`.
    pub fn may_use_db(&self, db: u64) -> Result<(), Denied> {
        match &self.databases {
            Some(dbs) if !dbs.contains(&db) => Err(Denied::Database(db)),
            _ => Ok(()),
        }
    }

    /// Redis's `-NOPERM` text for `denied`, the request being `command`
    /// (lower case, as Redis names it).
    pub fn refusal(&self, denied: Denied, command: &str) -> String {
        match denied {
            Denied::Command => format!(
                "NOPERM User {} has no permissions to run the '{command}' command",
                self.name
            ),
            Denied::Database(db) => format!(
                "NOPERM User {} has no permissions to access database {db}",
                self.name
            ),
        }
    }
}

/// The users of a Redis port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    users: BTreeMap<String, Arc<User>>,
}

impl Default for Acl {
    /// No authentication: the default user is on, has no password and may
    /// run everything (Redis without `requirepass`).
    fn default() -> Self {
        let mut user = User::new(DEFAULT_USER);
        user.enabled = true;
        user.nopass = true;
        user.commands = Commands::All;
        Acl {
            users: BTreeMap::from([(DEFAULT_USER.to_string(), Arc::new(user))]),
        }
    }
}

impl Acl {
    /// The users of a config: `requirepass` (the default user's password,
    /// as Redis's), then one rule per user (a rule for `default` replaces
    /// it).
    pub fn from_config(requirepass: Option<&str>, rules: &[String]) -> Result<Acl, AclError> {
        let mut acl = Acl::default();
        if let Some(pass) = requirepass.filter(|p| !p.is_empty()) {
            let mut user = (*acl.users[DEFAULT_USER]).clone();
            user.nopass = false;
            user.passwords = vec![digest(pass.as_bytes())];
            acl.users.insert(DEFAULT_USER.into(), Arc::new(user));
        }
        let mut seen = BTreeSet::new();
        for rule in rules {
            let user = User::parse(rule)?;
            if !seen.insert(user.name.clone()) {
                return Err(AclError::Duplicate(user.name));
            }
            acl.users.insert(user.name.clone(), Arc::new(user));
        }
        Ok(acl)
    }

    /// Whether a connection must authenticate before it may run commands
    /// (the default user is off or has a password).
    pub fn requires_auth(&self) -> bool {
        self.on_connect().is_none()
    }

    /// Who a new connection is: the default user when it needs no
    /// password, else nobody until `AUTH`.
    pub fn on_connect(&self) -> Option<Arc<User>> {
        self.users
            .get(DEFAULT_USER)
            .filter(|u| u.enabled && u.nopass)
            .cloned()
    }

    /// `AUTH [user] password`: the user it opens, or the error reply.
    /// `user` absent means the default user, as in Redis.
    pub fn authenticate(&self, user: Option<&[u8]>, password: &[u8]) -> Result<Arc<User>, String> {
        let name = user.map_or(DEFAULT_USER.as_bytes(), |u| u);
        let found = std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.users.get(n));
        if user.is_none() && found.is_some_and(|u| u.nopass) {
            return Err(AUTH_WITHOUT_PASSWORD.to_string());
        }
        match found {
            Some(u) if u.opens(password) => Ok(u.clone()),
            _ => Err(WRONGPASS.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn without_configuration_everyone_is_the_default_user() {
        let acl = Acl::default();
        assert!(!acl.requires_auth());
        assert_eq!(
            acl.on_connect().map(|u| u.name.clone()),
            Some("default".into())
        );
        assert_eq!(
            acl.authenticate(None, b"x").map(|_| ()),
            Err(AUTH_WITHOUT_PASSWORD.to_string())
        );
    }

    #[test]
    fn requirepass_is_the_default_users_password() {
        let acl = Acl::from_config(Some("s3cret"), &[]).expect("valid");
        assert!(acl.requires_auth());
        assert!(acl.on_connect().is_none());
        assert!(acl.authenticate(None, b"s3cret").is_ok());
        assert!(acl.authenticate(Some(b"default"), b"s3cret").is_ok());
        assert_eq!(
            acl.authenticate(None, b"wrong").map(|_| ()),
            Err(WRONGPASS.to_string())
        );
    }

    #[test]
    fn users_rules_decide_commands_and_databases() {
        let acl = Acl::from_config(
            Some("p"),
            &rules(&[
                "reader on >r1 >r2 +@read db=1,2",
                // SHA-256 of "secret".
                "writer on #2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b +@all ~*",
                "gone off >x +@all",
                "narrowed on nopass +@all -@write",
            ]),
        )
        .expect("valid");
        let reader = acl
            .authenticate(Some(b"reader"), b"r2")
            .expect("second password works");
        assert_eq!(reader.may(false, 1), Ok(()));
        assert_eq!(reader.may(true, 1), Err(Denied::Command));
        assert_eq!(
            reader.refusal(Denied::Command, "set"),
            "NOPERM User reader has no permissions to run the 'set' command"
        );
        assert_eq!(reader.may(false, 0), Err(Denied::Database(0)));
        assert_eq!(
            reader.refusal(Denied::Database(0), "get"),
            "NOPERM User reader has no permissions to access database 0"
        );
        let writer = acl
            .authenticate(Some(b"writer"), b"secret")
            .expect("hashed password");
        assert_eq!(writer.may(true, 7), Ok(()));
        assert!(acl.authenticate(Some(b"gone"), b"x").is_err(), "off");
        assert!(acl.authenticate(Some(b"nobody"), b"x").is_err());
        let narrowed = acl
            .authenticate(Some(b"narrowed"), b"anything")
            .expect("nopass");
        assert_eq!(narrowed.commands(), Commands::Read);
    }

    #[test]
    fn bad_rules_are_refused_without_echoing_the_token() {
        let e = User::parse("alice on >hunter2 +@bogus").expect_err("bad token");
        let text = e.to_string();
        assert!(text.contains("alice") && text.contains("token 3"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("bogus"),
            "{text}"
        );
        assert_eq!(User::parse("   "), Err(AclError::NoName));
        assert!(User::parse("bob #abc").is_err());
        assert!(User::parse("bob db=x").is_err());
        assert_eq!(
            Acl::from_config(None, &rules(&["a on", "a off"])),
            Err(AclError::Duplicate("a".into()))
        );
        // Debug output counts the passwords and shows none of their bytes.
        let u = User::parse("carol on >pw +@all").expect("valid");
        let shown = format!("{u:?}");
        assert!(shown.contains("passwords: 1"), "{shown}");
        assert!(!shown.contains('['), "no byte array: {shown}");
    }
}
