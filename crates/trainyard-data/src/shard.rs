//! `ShardedByS3Key`: which objects each host receives.
//!
//! SageMaker does not document its assignment function, so trainyard's is fixed by
//! `doc/contract/data.md` §2: round-robin over the ordered list, host `algo-k` (0-based index `k-1`)
//! taking every item whose position is congruent to its index. Every host computes its share
//! from the same list independently, so no coordination is needed.

/// The items host `index` (0-based) of `count` hosts receives.
pub fn shard<T>(items: Vec<T>, index: usize, count: usize) -> Vec<T> {
    assert!(
        count > 0 && index < count,
        "host index {index} out of range for {count} hosts"
    );
    items
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % count == index)
        .map(|(_, x)| x)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_robin_by_position() {
        assert_eq!(shard((0..7).collect(), 0, 3), [0, 3, 6]);
        assert_eq!(shard((0..7).collect(), 2, 3), [2, 5]);
        assert!(shard(vec![1], 1, 2).is_empty());
    }

    proptest! {
        #[test]
        fn shares_partition_the_list(n in 0usize..500, hosts in 1usize..9) {
            let mut seen = vec![0u32; n];
            let mut sizes = Vec::new();
            for h in 0..hosts {
                let s = shard((0..n).collect::<Vec<_>>(), h, hosts);
                sizes.push(s.len());
                for i in s { seen[i] += 1; }
            }
            prop_assert!(seen.iter().all(|&c| c == 1), "every object exactly once");
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            prop_assert!(max - min <= 1, "shares differ by at most one object");
        }
    }
}
