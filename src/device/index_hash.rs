//! The hash of the receiver-index table, which every datagram consults.

/// Hashes a receiver index with one multiply. The indices are random u32s
/// this device chose ([`super::Shared::alloc_index`]); a sender only picks which
/// index to look up, never which are stored, so SipHash's resistance to
/// chosen keys buys nothing here and costs every datagram its rounds.
#[derive(Default, Clone, Copy)]
pub struct IndexHasher(u64);

impl std::hash::Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(b as u32 ^ (self.0 as u32).rotate_left(8));
        }
    }
    fn write_u32(&mut self, i: u32) {
        // Fibonacci hashing: spreads the index over all 64 bits (the table
        // takes its bucket from the low bits and its tag from the top ones).
        self.0 = (i as u64 ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::IndexHasher;
    use std::collections::HashSet;
    use std::hash::{BuildHasher, BuildHasherDefault};

    fn hash(i: u32) -> u64 {
        BuildHasherDefault::<IndexHasher>::default().hash_one(i)
    }

    /// hashbrown takes a bucket from the low bits and a 7-bit tag from the
    /// top ones: consecutive and random indices must spread over both (an
    /// identity hash would give every key the same tag).
    #[test]
    fn indices_spread_over_low_and_top_bits() {
        for keys in [
            (0..4096).collect::<Vec<u32>>(),
            (0..4096u32).map(|i| i.wrapping_mul(0x9E37_79B1)).collect(),
        ] {
            let buckets: HashSet<u64> = keys.iter().map(|&k| hash(k) & 1023).collect();
            let tags: HashSet<u64> = keys.iter().map(|&k| hash(k) >> 57).collect();
            assert!(
                buckets.len() > 900,
                "{} of 1024 buckets used",
                buckets.len()
            );
            assert_eq!(tags.len(), 128, "{} of 128 tags used", tags.len());
        }
        assert_ne!(hash(1), hash(2));
    }
}
