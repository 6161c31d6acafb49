//! A sorted set: members with scores, ordered by (score, member), with
//! rank queries in O(log n).
//!
//! The order lives in a treap (a binary search tree balanced by random
//! priorities) whose nodes count their subtrees, kept in one arena `Vec`
//! with `u32` links: rank, select by rank, insert and remove are all
//! O(log n) expected, and a set is one allocation plus a member index,
//! where Redis's skip list allocates per node. A `HashMap` from member to
//! score answers `ZSCORE` in O(1). The shape of the tree depends on the
//! priorities, which come from a generator seeded at random per tree (so
//! no client can choose scores that unbalance it); no reply depends on the
//! shape, only on the order, so replicas agree though their shapes differ.
//!
//! The store holds a sorted set behind an `Arc`: a snapshot shares it, and
//! the first write after a freeze copies it (one `memcpy` of the arena and
//! a rebuild of nothing: links are indexes).

use bytes::Bytes;
use std::cmp::Ordering;
use std::collections::HashMap;

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Node {
    score: f64,
    member: Bytes,
    priority: u64,
    left: u32,
    right: u32,
    size: u32,
}

/// Members with scores, in (score, member) order: small sets packed in one
/// buffer (as Redis keeps them in one listpack), larger ones in an arena
/// treap (rank in O(log n)).
#[derive(Debug, Clone)]
pub struct ZSet(Repr);

#[derive(Debug, Clone)]
enum Repr {
    /// `score f64 | len u8 | member` entries sorted by (score, member),
    /// and their count. Read in place; unpacked only to change it.
    Small(Vec<u8>, usize),
    /// The treap and the member index (boxed: most sets are small, and
    /// the tree's header would triple a small one's footprint).
    Large(Box<Tree>),
}

/// A set stays small up to this many members...
pub const SMALL_MEMBERS_MAX: usize = 128;
/// ...each of at most this many bytes (Redis 7.0's listpack limits).
pub const SMALL_MEMBER_BYTES_MAX: usize = 64;

impl Default for ZSet {
    fn default() -> Self {
        ZSet::new()
    }
}

/// The packed entries of `buf`, in order, borrowed (no allocation).
fn entries(buf: &[u8]) -> impl Iterator<Item = (f64, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at + 9 > buf.len() {
            return None;
        }
        let mut s = [0u8; 8];
        s.copy_from_slice(&buf[at..at + 8]);
        let len = buf[at + 8] as usize;
        let member = &buf[at + 9..at + 9 + len];
        at += 9 + len;
        Some((f64::from_le_bytes(s), member))
    })
}

/// The packed entries of `buf`, copied out.
fn unpack(buf: &[u8], n: usize) -> Vec<(f64, Bytes)> {
    let mut out = Vec::with_capacity(n);
    out.extend(entries(buf).map(|(s, m)| (s, Bytes::copy_from_slice(m))));
    out
}

fn pack(entries: &[(f64, Bytes)]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(entries.iter().map(|(_, m)| 9 + m.len()).sum());
    for (s, m) in entries {
        buf.extend_from_slice(&s.to_le_bytes());
        buf.push(m.len() as u8);
        buf.extend_from_slice(m);
    }
    buf
}

impl ZSet {
    /// An empty set.
    pub fn new() -> ZSet {
        ZSet(Repr::Small(Vec::new(), 0))
    }

    /// Members held.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Small(_, n) => *n,
            Repr::Large(t) => t.len(),
        }
    }

    /// Whether no member is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the set is in its compact form (`OBJECT ENCODING` says
    /// `listpack`).
    pub fn is_compact(&self) -> bool {
        matches!(self.0, Repr::Small(..))
    }

    /// The small form's entries, unpacked.
    fn small(&self) -> Option<Vec<(f64, Bytes)>> {
        match &self.0 {
            Repr::Small(buf, n) => Some(unpack(buf, *n)),
            Repr::Large(_) => None,
        }
    }

    /// The score of `member`.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        match &self.0 {
            Repr::Small(buf, _) => entries(buf).find(|(_, m)| *m == member).map(|(s, _)| s),
            Repr::Large(t) => t.score(member),
        }
    }

    /// Sets `member`'s score, adding it if new; returns the old score.
    pub fn insert(&mut self, member: Bytes, score: f64) -> Option<f64> {
        let Some(mut v) = self.small() else {
            let Repr::Large(t) = &mut self.0 else {
                return None;
            };
            return t.insert(member, score);
        };
        let old = v
            .iter()
            .position(|(_, m)| *m == member)
            .map(|i| v.remove(i).0);
        if old.is_none() && (v.len() >= SMALL_MEMBERS_MAX || member.len() > SMALL_MEMBER_BYTES_MAX)
        {
            // Past the compact form's limits: to the tree, for good.
            let mut t = Tree::new();
            for (s, m) in v {
                t.insert(m, s);
            }
            t.insert(member, score);
            self.0 = Repr::Large(Box::new(t));
            return None;
        }
        let at = v.partition_point(|(s, m)| cmp_entry(*s, m, score, &member) == Ordering::Less);
        v.insert(at, (score, member));
        self.0 = Repr::Small(pack(&v), v.len());
        old
    }

    /// Removes `member`; returns its score.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let Some(mut v) = self.small() else {
            let Repr::Large(t) = &mut self.0 else {
                return None;
            };
            return t.remove(member);
        };
        let i = v.iter().position(|(_, m)| &m[..] == member)?;
        let (score, _) = v.remove(i);
        self.0 = Repr::Small(pack(&v), v.len());
        Some(score)
    }

    /// The 0-based rank of `member` in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        match &self.0 {
            Repr::Small(buf, _) => entries(buf).position(|(_, m)| m == member),
            Repr::Large(t) => t.rank(member),
        }
    }

    /// How many entries satisfy `below`, which must hold for a prefix of
    /// the order (every entry before one it holds for).
    pub fn count_below(&self, below: impl Fn(f64, &[u8]) -> bool) -> usize {
        match &self.0 {
            // Sorted, and `below` holds for a prefix: count until it fails.
            Repr::Small(buf, _) => entries(buf).take_while(|(s, m)| below(*s, m)).count(),
            Repr::Large(t) => t.count_below(below),
        }
    }

    /// The entry at 0-based `rank` in ascending order.
    pub fn at(&self, rank: usize) -> Option<(f64, Bytes)> {
        match &self.0 {
            Repr::Small(buf, _) => entries(buf)
                .nth(rank)
                .map(|(s, m)| (s, Bytes::copy_from_slice(m))),
            Repr::Large(t) => t.at(rank).map(|(s, m)| (s, m.clone())),
        }
    }

    /// Entries with ranks in `start..end` (ascending), in order.
    pub fn range(&self, start: usize, end: usize) -> Vec<(f64, Bytes)> {
        match &self.0 {
            Repr::Small(buf, _) => entries(buf)
                .skip(start)
                .take(end.saturating_sub(start))
                .map(|(s, m)| (s, Bytes::copy_from_slice(m)))
                .collect(),
            Repr::Large(t) => t.range(start, end),
        }
    }

    /// Every entry, ascending.
    pub fn iter_all(&self) -> Vec<(f64, Bytes)> {
        self.range(0, self.len())
    }

    /// The longest member's length.
    pub fn longest_member(&self) -> usize {
        match &self.0 {
            Repr::Small(buf, _) => entries(buf).map(|(_, m)| m.len()).max().unwrap_or(0),
            Repr::Large(t) => t.scores.keys().map(Bytes::len).max().unwrap_or(0),
        }
    }
}

/// The large form: an arena treap ordered by (score, member), with subtree
/// sizes, and a member → score index.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tree {
    scores: HashMap<Bytes, f64>,
    nodes: Vec<Node>,
    free: Vec<u32>,
    root: u32,
    rng: u64,
}

/// Compares (score, member) pairs as Redis orders a sorted set.
pub fn cmp_entry(a_score: f64, a_member: &[u8], b_score: f64, b_member: &[u8]) -> Ordering {
    a_score
        .partial_cmp(&b_score)
        .unwrap_or(Ordering::Equal)
        .then_with(|| a_member.cmp(b_member))
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Tree {
        Tree {
            root: NIL,
            // A random start per tree: an attacker who knew the priorities
            // could choose scores that make the treap a chain (and its
            // recursion as deep as the set is large). No reply depends on
            // the tree's shape, so replicas need not agree on it.
            rng: {
                use std::hash::{BuildHasher, Hasher};
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u64(0x9E37_79B9_7F4A_7C15);
                h.finish() | 1
            },
            ..Tree::default()
        }
    }

    /// Members held.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// The score of `member`.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    fn size(&self, n: u32) -> u32 {
        if n == NIL {
            0
        } else {
            self.nodes[n as usize].size
        }
    }

    fn fix(&mut self, n: u32) {
        let (l, r) = {
            let node = &self.nodes[n as usize];
            (node.left, node.right)
        };
        let size = 1 + self.size(l) + self.size(r);
        self.nodes[n as usize].size = size;
    }

    fn next_priority(&mut self) -> u64 {
        // xorshift64*: cheap; its start is random per tree.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Splits `t` into (entries before `pivot`, the rest); with
    /// `inclusive`, the pivot itself goes left.
    fn split(&mut self, t: u32, score: f64, member: &[u8], inclusive: bool) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        let node = &self.nodes[t as usize];
        let ord = cmp_entry(node.score, &node.member, score, member);
        let goes_left = ord == Ordering::Less || (inclusive && ord == Ordering::Equal);
        if goes_left {
            let right = node.right;
            let (a, b) = self.split(right, score, member, inclusive);
            self.nodes[t as usize].right = a;
            self.fix(t);
            (t, b)
        } else {
            let left = node.left;
            let (a, b) = self.split(left, score, member, inclusive);
            self.nodes[t as usize].left = b;
            self.fix(t);
            (a, t)
        }
    }

    /// Joins two trees whose entries are all ordered `a` before `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].priority > self.nodes[b as usize].priority {
            let r = self.nodes[a as usize].right;
            let m = self.merge(r, b);
            self.nodes[a as usize].right = m;
            self.fix(a);
            a
        } else {
            let l = self.nodes[b as usize].left;
            let m = self.merge(a, l);
            self.nodes[b as usize].left = m;
            self.fix(b);
            b
        }
    }

    /// Sets `member`'s score, adding it if new; returns the old score.
    pub fn insert(&mut self, member: Bytes, score: f64) -> Option<f64> {
        let old = self.remove(&member);
        let priority = self.next_priority();
        let node = Node {
            score,
            member: member.clone(),
            priority,
            left: NIL,
            right: NIL,
            size: 1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        let (a, b) = self.split(self.root, score, &member, false);
        let left = self.merge(a, id);
        self.root = self.merge(left, b);
        self.scores.insert(member, score);
        old
    }

    /// Removes `member`; returns its score.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let score = self.scores.remove(member)?;
        let (a, rest) = self.split(self.root, score, member, false);
        let (mid, b) = self.split(rest, score, member, true);
        if mid != NIL {
            self.nodes[mid as usize].member = Bytes::new();
            self.free.push(mid);
        }
        self.root = self.merge(a, b);
        if self.scores.is_empty() {
            // Nothing left: give the arena back.
            self.nodes.clear();
            self.free.clear();
            self.root = NIL;
        }
        Some(score)
    }

    /// The 0-based rank of `member` in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = self.score(member)?;
        Some(self.count_below(|s, m| cmp_entry(s, m, score, member) == Ordering::Less))
    }

    /// How many entries satisfy `below`, which must hold for a prefix of
    /// the order (every entry before one it holds for).
    pub fn count_below(&self, below: impl Fn(f64, &[u8]) -> bool) -> usize {
        let mut n = self.root;
        let mut count = 0usize;
        while n != NIL {
            let node = &self.nodes[n as usize];
            if below(node.score, &node.member) {
                count += self.size(node.left) as usize + 1;
                n = node.right;
            } else {
                n = node.left;
            }
        }
        count
    }

    /// The entry at 0-based `rank` in ascending order.
    pub fn at(&self, rank: usize) -> Option<(f64, &Bytes)> {
        let mut n = self.root;
        let mut k = rank;
        while n != NIL {
            let node = &self.nodes[n as usize];
            let left = self.size(node.left) as usize;
            match k.cmp(&left) {
                Ordering::Less => n = node.left,
                Ordering::Equal => return Some((node.score, &node.member)),
                Ordering::Greater => {
                    k -= left + 1;
                    n = node.right;
                }
            }
        }
        None
    }

    /// Entries with ranks in `start..end` (ascending), in order.
    pub fn range(&self, start: usize, end: usize) -> Vec<(f64, Bytes)> {
        let end = end.min(self.len());
        let mut out = Vec::with_capacity(end.saturating_sub(start));
        if start >= end {
            return out;
        }
        // In-order walk from `start`: descend to it, keeping the path.
        let mut stack: Vec<u32> = Vec::new();
        let mut n = self.root;
        let mut k = start;
        while n != NIL {
            let node = &self.nodes[n as usize];
            let left = self.size(node.left) as usize;
            if k < left {
                stack.push(n);
                n = node.left;
            } else if k == left {
                stack.push(n);
                break;
            } else {
                k -= left + 1;
                n = node.right;
            }
        }
        while out.len() < end - start {
            let Some(n) = stack.pop() else { break };
            let node = &self.nodes[n as usize];
            out.push((node.score, node.member.clone()));
            let mut c = node.right;
            while c != NIL {
                stack.push(c);
                c = self.nodes[c as usize].left;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    impl Tree {
        /// The longest root-to-leaf path.
        fn depth(&self) -> usize {
            let mut deepest = 0;
            let mut stack = vec![(self.root, 1usize)];
            while let Some((n, d)) = stack.pop() {
                if n == NIL {
                    continue;
                }
                deepest = deepest.max(d);
                let node = &self.nodes[n as usize];
                stack.push((node.left, d + 1));
                stack.push((node.right, d + 1));
            }
            deepest
        }
    }

    /// Scores given in order (the shape a client controls) still make a
    /// balanced tree: its depth stays near 3 ln n (about 37 for 200,000),
    /// where a chain would be 200,000 deep and overflow the recursion.
    #[test]
    fn members_in_score_order_keep_the_tree_shallow() {
        let mut z = ZSet::new();
        for i in 0..200_000u32 {
            z.insert(Bytes::from(format!("m{i}")), f64::from(i));
        }
        let Repr::Large(t) = &z.0 else {
            panic!("200,000 members are a tree")
        };
        assert!(t.depth() < 200, "depth {}", t.depth());
        assert_eq!(z.rank(b"m199999"), Some(199_999));
    }

    proptest! {
        /// Against a model (a sorted Vec), after random inserts, score
        /// updates and removals: the order, ranks and selects agree.
        #[test]
        fn agrees_with_a_sorted_model(
            ops in proptest::collection::vec((0u16..300, -5i32..5, any::<bool>()), 0..900),
        ) {
            let mut z = ZSet::new();
            let mut model: BTreeMap<Vec<u8>, f64> = BTreeMap::new();
            for (m, s, add) in ops {
                let member = format!("m{m}").into_bytes();
                if add {
                    let score = f64::from(s) / 2.0;
                    prop_assert_eq!(z.insert(Bytes::from(member.clone()), score), model.insert(member, score));
                } else {
                    prop_assert_eq!(z.remove(&member), model.remove(&member));
                }
            }
            let mut sorted: Vec<(f64, Vec<u8>)> = model.iter().map(|(m, s)| (*s, m.clone())).collect();
            sorted.sort_by(|a, b| cmp_entry(a.0, &a.1, b.0, &b.1));
            prop_assert_eq!(z.len(), sorted.len());
            // Past 128 members it is the tree, and stays so.
            if sorted.len() > SMALL_MEMBERS_MAX {
                prop_assert!(!z.is_compact());
            }
            let all: Vec<(f64, Vec<u8>)> = z.iter_all().into_iter().map(|(s, m)| (s, m.to_vec())).collect();
            prop_assert_eq!(&all, &sorted);
            for (i, (s, m)) in sorted.iter().enumerate() {
                prop_assert_eq!(z.rank(m), Some(i));
                prop_assert_eq!(z.at(i).map(|(s, m)| (s, m.to_vec())), Some((*s, m.clone())));
                let tail: Vec<(f64, Vec<u8>)> = z.range(i, sorted.len()).into_iter().map(|(s, m)| (s, m.to_vec())).collect();
                prop_assert_eq!(&tail[..], &sorted[i..]);
            }
        }
    }
}
