//! The model of one key: a register holding `Option<String>` (absent or a
//! value) that every function of the history acts on.
//!
//! States live in an [`Arena`] and are named by a [`StateId`], so the
//! search copies and compares four bytes rather than strings. An appended
//! value is a node pointing at its parent state (a long list of appends
//! costs one node per append, not a copy of the whole value). Leaves are
//! hash-consed, so two equal written values are one id; an appended state
//! and an equal written one may have two ids, which only costs the search
//! some memoisation, never a wrong answer.
//!
//! A window of the history (see [`super::window`]) starts from a state that
//! is not known: [`Arena::UNKNOWN`] stands for any state, and a read from it
//! learns the state.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use super::ops::{OpKind, parse_integer};

/// A state in an [`Arena`].
pub(crate) type StateId = u32;

#[derive(Debug)]
enum Node {
    Absent,
    /// Any state (the start of a window).
    Unknown,
    /// A value, its integer meaning if it has one, and its [`hash`].
    Leaf {
        text: Arc<str>,
        integer: Option<i128>,
        hash: u64,
    },
    /// `parent` followed by `suffix`; `len` is the length of the known part.
    /// Unless the chain starts from [`Node::Unknown`], `hash` is the
    /// [`hash`] of the whole value, so a read is compared in O(1) and not
    /// by walking a chain as long as the appends so far.
    Append {
        parent: StateId,
        suffix: Arc<str>,
        len: usize,
        hash: u64,
        unknown_root: bool,
    },
}

/// The Mersenne prime 2^61 - 1: the polynomial hash's modulus.
const HASH_MOD: u64 = (1 << 61) - 1;
/// The polynomial hash's base.
const HASH_BASE: u64 = 0x1f3d_5b79_a3c2_e5d1 % HASH_MOD;

fn mul_mod(a: u64, b: u64) -> u64 {
    ((u128::from(a) * u128::from(b)) % u128::from(HASH_MOD)) as u64
}

fn pow_mod(mut base: u64, mut exp: usize) -> u64 {
    let mut out = 1;
    while exp > 0 {
        if exp & 1 == 1 {
            out = mul_mod(out, base);
        }
        base = mul_mod(base, base);
        exp >>= 1;
    }
    out
}

/// A polynomial hash of `text` that composes:
/// `hash(a + b) = hash(a) * BASE^len(b) + hash(b)`, so an append's hash
/// follows from its parent's without reading the parent's text.
fn hash(text: &str) -> u64 {
    text.bytes().fold(0, |h, b| {
        (mul_mod(h, HASH_BASE) + u64::from(b) + 1) % HASH_MOD
    })
}

/// The states one search has met.
#[derive(Debug)]
pub(crate) struct Arena {
    nodes: Vec<Node>,
    leaves: HashMap<Arc<str>, StateId>,
    appends: HashMap<(StateId, Arc<str>), StateId>,
    /// Hashes of the values reads and cas compare with, by the address
    /// and length of their text (which the operations hold for the whole
    /// search).
    compared: RefCell<HashMap<(usize, usize), u64>>,
}

impl Arena {
    /// The absent state (the key holds no value).
    pub(crate) const ABSENT: StateId = 0;
    /// Any state.
    pub(crate) const UNKNOWN: StateId = 1;

    /// An arena holding only [`Self::ABSENT`] and [`Self::UNKNOWN`].
    pub(crate) fn new() -> Self {
        Arena {
            nodes: vec![Node::Absent, Node::Unknown],
            leaves: HashMap::new(),
            appends: HashMap::new(),
            compared: RefCell::new(HashMap::new()),
        }
    }

    /// The state holding `text`.
    pub(crate) fn leaf(&mut self, text: &Arc<str>) -> StateId {
        if let Some(&id) = self.leaves.get(text) {
            return id;
        }
        let id = self.push(Node::Leaf {
            text: text.clone(),
            integer: parse_integer(text),
            hash: hash(text),
        });
        self.leaves.insert(text.clone(), id);
        id
    }

    /// The state holding `value` (`None`: absent).
    pub(crate) fn value(&mut self, value: &Option<Arc<str>>) -> StateId {
        match value {
            None => Self::ABSENT,
            Some(text) => self.leaf(text),
        }
    }

    fn push(&mut self, node: Node) -> StateId {
        let id = StateId::try_from(self.nodes.len()).unwrap_or(StateId::MAX);
        assert!(id < StateId::MAX, "more than 2^32 states in one search");
        self.nodes.push(node);
        id
    }

    fn append(&mut self, parent: StateId, suffix: &Arc<str>) -> StateId {
        match &self.nodes[parent as usize] {
            Node::Absent => return self.leaf(suffix),
            Node::Leaf { text, .. } if text.is_empty() => return self.leaf(suffix),
            _ => {}
        }
        let key = (parent, suffix.clone());
        if let Some(&id) = self.appends.get(&key) {
            return id;
        }
        let len = self.known_len(parent) + suffix.len();
        let (parent_hash, unknown_root) = match &self.nodes[parent as usize] {
            Node::Leaf { hash, .. } => (*hash, false),
            Node::Append {
                hash, unknown_root, ..
            } => (*hash, *unknown_root),
            Node::Absent => (0, false),
            Node::Unknown => (0, true),
        };
        let id = self.push(Node::Append {
            parent,
            suffix: suffix.clone(),
            len,
            hash: (mul_mod(parent_hash, pow_mod(HASH_BASE, suffix.len())) + hash(suffix))
                % HASH_MOD,
            unknown_root,
        });
        self.appends.insert(key, id);
        id
    }

    /// The length of the known part of the state.
    pub(crate) fn known_len(&self, id: StateId) -> usize {
        match &self.nodes[id as usize] {
            Node::Absent | Node::Unknown => 0,
            Node::Leaf { text, .. } => text.len(),
            Node::Append { len, .. } => *len,
        }
    }

    /// Whether the chain under `id` starts from [`Self::UNKNOWN`].
    pub(crate) fn rooted_unknown(&self, id: StateId) -> bool {
        match &self.nodes[id as usize] {
            Node::Unknown => true,
            Node::Append { unknown_root, .. } => *unknown_root,
            Node::Absent | Node::Leaf { .. } => false,
        }
    }

    /// The hash of a compared value, computed once per value.
    fn compared_hash(&self, text: &str) -> u64 {
        let key = (text.as_ptr() as usize, text.len());
        if let Some(&h) = self.compared.borrow().get(&key) {
            return h;
        }
        let h = hash(text);
        self.compared.borrow_mut().insert(key, h);
        h
    }

    /// Whether state `id` may be `value` (`None`: absent).
    pub(crate) fn matches(&self, id: StateId, value: Option<&str>) -> bool {
        let Some(mut rest) = value else {
            return matches!(self.nodes[id as usize], Node::Absent | Node::Unknown);
        };
        if self.known_len(id) > rest.len() {
            return false;
        }
        if let Node::Append {
            hash,
            unknown_root: false,
            len,
            ..
        } = &self.nodes[id as usize]
        {
            // Known all the way down: equal length and hash first, the
            // bytes only when those agree.
            if *len != rest.len() || *hash != self.compared_hash(rest) {
                return false;
            }
        }
        let mut node = id;
        loop {
            match &self.nodes[node as usize] {
                Node::Absent => return false,
                Node::Unknown => return true,
                Node::Leaf { text, .. } => return rest == &**text,
                Node::Append { parent, suffix, .. } => {
                    let Some(head) = rest.strip_suffix(&**suffix) else {
                        return false;
                    };
                    if matches!(self.nodes[*parent as usize], Node::Absent) {
                        return head.is_empty();
                    }
                    rest = head;
                    node = *parent;
                }
            }
        }
    }

    /// The integer the state holds: `Ok(None)` when not known (unknown
    /// state), `Err(())` when it is not an integer.
    fn integer(&self, id: StateId) -> Result<Option<i128>, ()> {
        match &self.nodes[id as usize] {
            Node::Absent => Ok(Some(0)),
            Node::Unknown => Ok(None),
            Node::Leaf { integer, .. } => integer.map(Some).ok_or(()),
            Node::Append { .. } if self.rooted_unknown(id) => Ok(None),
            Node::Append { .. } => parse_integer(&self.text(id).unwrap_or_default())
                .map(Some)
                .ok_or(()),
        }
    }

    /// The state written out (`None`: absent); `?` stands for the unknown
    /// start of a window.
    pub(crate) fn text(&self, id: StateId) -> Option<String> {
        let mut parts = Vec::new();
        let mut node = id;
        loop {
            match &self.nodes[node as usize] {
                Node::Absent if parts.is_empty() => return None,
                Node::Absent => break,
                Node::Unknown => {
                    parts.push("?");
                    break;
                }
                Node::Leaf { text, .. } => {
                    parts.push(text);
                    break;
                }
                Node::Append { parent, suffix, .. } => {
                    parts.push(suffix);
                    node = *parent;
                }
            }
        }
        parts.reverse();
        Some(parts.concat())
    }

    /// The state after `op` from `state`, or `None` if `op` cannot happen
    /// in `state`.
    pub(crate) fn step(&mut self, state: StateId, op: &OpKind) -> Option<StateId> {
        match op {
            OpKind::Get(None) => Some(state),
            OpKind::Get(Some(read)) => {
                if !self.matches(state, read.as_deref()) {
                    return None;
                }
                if state == Self::UNKNOWN || self.rooted_unknown(state) {
                    return Some(self.value(read));
                }
                Some(state)
            }
            OpKind::Put(value) => Some(self.leaf(value)),
            OpKind::Append(suffix) => Some(self.append(state, suffix)),
            OpKind::Cas { expected, new } => {
                if self.matches(state, expected.as_deref()) {
                    Some(self.value(new))
                } else {
                    None
                }
            }
            OpKind::Incr { amount, result } => {
                let now = match self.integer(state).ok()? {
                    Some(old) => old.checked_add(i128::from(*amount))?,
                    None => match result {
                        Some(r) => *r,
                        None => return Some(Self::UNKNOWN),
                    },
                };
                if i64::try_from(now).is_err() || result.is_some_and(|r| r != now) {
                    return None;
                }
                Some(self.leaf(&Arc::from(now.to_string())))
            }
            OpKind::Del { count } => {
                let absent = matches!(self.nodes[state as usize], Node::Absent);
                let unknown = state == Self::UNKNOWN;
                match count {
                    Some(true) if absent => None,
                    Some(false) if !absent && !unknown => None,
                    _ => Some(Self::ABSENT),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    #[test]
    fn appends_build_a_value_that_reads_compare_to() {
        let mut a = Arena::new();
        let one = a
            .step(Arena::ABSENT, &OpKind::Append(s("t1 ")))
            .expect("append");
        let two = a.step(one, &OpKind::Append(s("t2 "))).expect("append");
        assert!(a.matches(two, Some("t1 t2 ")));
        assert!(!a.matches(two, Some("t2 t1 ")));
        assert!(!a.matches(two, Some("t1 t2 t3 ")));
        assert!(!a.matches(two, None));
        assert_eq!(a.text(two).as_deref(), Some("t1 t2 "));
        assert_eq!(
            a.step(one, &OpKind::Append(s("t2 "))),
            Some(two),
            "hash-consed"
        );
    }

    #[test]
    fn unknown_start_is_learnt_by_a_read() {
        let mut a = Arena::new();
        let x = a
            .step(Arena::UNKNOWN, &OpKind::Append(s("x")))
            .expect("append");
        assert!(a.matches(x, Some("abcx")));
        assert!(!a.matches(x, Some("abc")));
        let known = a.step(x, &OpKind::Get(Some(Some(s("abx"))))).expect("read");
        assert_eq!(a.text(known).as_deref(), Some("abx"));
        assert_eq!(a.step(known, &OpKind::Get(Some(Some(s("abcx"))))), None);
    }

    #[test]
    fn incr_cas_and_del_follow_redis() {
        let mut a = Arena::new();
        let one = a
            .step(
                Arena::ABSENT,
                &OpKind::Incr {
                    amount: 1,
                    result: Some(1),
                },
            )
            .expect("incr");
        assert_eq!(
            a.step(
                one,
                &OpKind::Incr {
                    amount: 2,
                    result: Some(4)
                }
            ),
            None
        );
        let three = a
            .step(
                one,
                &OpKind::Incr {
                    amount: 2,
                    result: None,
                },
            )
            .expect("incr");
        assert!(a.matches(three, Some("3")));
        let word = a.leaf(&s("w"));
        assert_eq!(
            a.step(
                word,
                &OpKind::Incr {
                    amount: 1,
                    result: None
                }
            ),
            None
        );
        let cas = OpKind::Cas {
            expected: Some(s("3")),
            new: None,
        };
        assert_eq!(a.step(three, &cas), Some(Arena::ABSENT));
        assert_eq!(a.step(one, &cas), None);
        assert_eq!(
            a.step(Arena::ABSENT, &OpKind::Del { count: Some(true) }),
            None
        );
        assert_eq!(a.step(one, &OpKind::Del { count: Some(false) }), None);
        assert_eq!(
            a.step(one, &OpKind::Del { count: Some(true) }),
            Some(Arena::ABSENT)
        );
    }
}
