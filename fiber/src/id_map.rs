//! Hashing for maps keyed by ids this process makes.

/// A hasher for maps keyed by sequential ids (request ids, group ids,
/// fiber ids): one multiplication (Fibonacci hashing) instead of SipHash,
/// which a busy client's request table spent 5% of its CPU in. Not for
/// keys an attacker picks: the ids these maps hold are made here or
/// configured.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64((self.0 << 8) | u64::from(b));
        }
    }

    fn write_u64(&mut self, id: u64) {
        // The high bits pick the bucket group and the control byte: a
        // multiplication spreads sequential ids over both.
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A map keyed by sequential ids, hashed with [`IdHasher`].
pub type IdMap<V> = std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread_over_the_hash_bits_a_table_uses() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let h = BuildHasherDefault::<IdHasher>::default();
        let ids = 1..=256u64;
        // hashbrown picks the control byte from the top 7 bits and the
        // bucket from the low ones: both must differ between neighbours.
        let top: std::collections::BTreeSet<u64> =
            ids.clone().map(|i| h.hash_one(i) >> 57).collect();
        let low: std::collections::BTreeSet<u64> = ids.map(|i| h.hash_one(i) & 255).collect();
        assert!(top.len() > 100, "control bytes: {} distinct", top.len());
        assert!(low.len() > 150, "buckets: {} distinct", low.len());
    }
}
