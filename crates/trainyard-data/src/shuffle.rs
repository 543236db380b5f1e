//! `ShuffleConfig`: the order in which a channel's objects (or manifest entries, or augmented
//! manifest lines) are delivered in one epoch.
//!
//! SageMaker does not document its shuffle, so no bit-compatibility is possible; what matters is
//! that every host computes the *same* permutation from the seed alone (sharding after the
//! shuffle must partition the list, `doc/contract/data.md` §2), that a run is reproducible, and that Pipe
//! mode gets a fresh permutation each epoch. The algorithm is therefore pinned exactly by
//! `doc/contract/data.md` §5 and by a test holding a precomputed permutation:
//!
//! * generator for epoch `e`: `ChaCha8Rng::seed_from_u64(seed as u64 ^ (e as u64).wrapping_mul(0x9E3779B97F4A7C15))`
//!   (rand_chacha 0.3, whose `seed_from_u64` is the rand_core 0.6 one);
//! * Fisher–Yates from the end: for `i` from `len-1` down to `1`, draw `j` uniformly in `0..=i`
//!   with rand 0.8's `gen_range(0..i+1)` on `u32` (on `usize` past `u32::MAX` items) and swap
//!   items `i` and `j`. This is exactly rand 0.8's `SliceRandom::shuffle`, which a test checks,
//!   but it is spelled out here so that a change of that crate cannot move the permutation.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The odd constant (2^64 / golden ratio) that spreads epoch numbers over the seed space.
const EPOCH_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// The random generator that drives the permutation of `epoch` for `ShuffleConfig.Seed` `seed`.
pub fn epoch_rng(seed: i64, epoch: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed as u64 ^ epoch.wrapping_mul(EPOCH_MIX))
}

/// Shuffles `items` (in §0 order on entry) into the delivery order of `epoch`.
pub fn shuffle_epoch<T>(items: &mut [T], seed: i64, epoch: u64) {
    let mut rng = epoch_rng(seed, epoch);
    for i in (1..items.len()).rev() {
        let bound = i + 1;
        let j = if bound <= u32::MAX as usize {
            rng.gen_range(0..bound as u32) as usize
        } else {
            rng.gen_range(0..bound)
        };
        items.swap(i, j);
    }
}

/// The delivery order of `epoch` as positions into the §0-ordered list of `len` items.
pub fn permutation(len: usize, seed: i64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    shuffle_epoch(&mut order, seed, epoch);
    order
}

#[cfg(test)]
mod tests {
    use super::{epoch_rng, permutation};
    use proptest::prelude::*;
    use rand::seq::SliceRandom;
    use rand::{Rng as _, SeedableRng as _};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn the_permutation_is_pinned() {
        // Computed once with this implementation; if this fails, every job's data order moved.
        assert_eq!(
            permutation(10, 42, 0),
            [0, 3, 5, 7, 9, 4, 8, 1, 6, 2],
            "seed 42 epoch 0"
        );
        assert_eq!(
            permutation(10, 42, 1),
            [9, 4, 3, 2, 1, 8, 6, 0, 7, 5],
            "seed 42 epoch 1"
        );
        assert_eq!(
            permutation(6, -7, 3),
            [2, 1, 3, 5, 4, 0],
            "negative seed, epoch 3"
        );
    }

    #[test]
    fn same_seed_and_epoch_give_the_same_order() {
        assert_eq!(permutation(1000, 7, 5), permutation(1000, 7, 5));
    }

    #[test]
    fn epochs_and_seeds_differ() {
        let e0 = permutation(100, 7, 0);
        assert_ne!(e0, permutation(100, 7, 1));
        assert_ne!(e0, permutation(100, 8, 0));
    }

    #[test]
    fn epoch_zero_uses_the_seed_unchanged() {
        let mut a = epoch_rng(123, 0);
        let mut b = ChaCha8Rng::seed_from_u64(123);
        assert_eq!(a.r#gen::<u64>(), b.r#gen::<u64>());
    }

    #[test]
    fn trivial_lists_are_untouched() {
        assert!(permutation(0, 1, 0).is_empty());
        assert_eq!(permutation(1, 1, 9), [0]);
    }

    proptest! {
        #[test]
        fn matches_rand_08_slice_shuffle(len in 0usize..300, seed: i64, epoch in 0u64..1000) {
            let mut theirs: Vec<usize> = (0..len).collect();
            theirs.shuffle(&mut epoch_rng(seed, epoch));
            prop_assert_eq!(permutation(len, seed, epoch), theirs);
        }

        #[test]
        fn is_a_permutation(len in 0usize..500, seed: i64, epoch: u64) {
            let mut p = permutation(len, seed, epoch);
            p.sort_unstable();
            prop_assert_eq!(p, (0..len).collect::<Vec<_>>());
        }
    }
}
