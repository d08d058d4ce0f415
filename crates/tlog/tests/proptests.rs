//! Property tests: for random trees of up to a few thousand leaves, every generated proof
//! verifies and equals the RFC's recursive definition, the incremental appender agrees with
//! `MTH`, and flipping any single bit of a proof, a root or a leaf makes verification fail.

use custodian_tlog::{
    Appender, Error, Hash, MemoryStore, consistency_proof, inclusion_proof, leaf_hash, reference,
    root, verify_consistency, verify_inclusion,
};
use proptest::prelude::*;

fn leaves(size: u64, seed: u64) -> Vec<Hash> {
    (0..size)
        .map(|i| leaf_hash(&(seed ^ i).to_le_bytes()))
        .collect()
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut h = *h;
    h[(bit / 8) % 32] ^= 1 << (bit % 8);
    h
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn proofs_verify_and_equal_the_rfc_definitions(
        size in 1u64..3000,
        seed in any::<u64>(),
        picks in prop::collection::vec((any::<u64>(), any::<u64>()), 1..10),
    ) {
        let d = leaves(size, seed);
        let store = MemoryStore::from_leaf_hashes(d.iter().copied()).unwrap();
        let head = root(&store, size).unwrap();
        prop_assert_eq!(head, reference::mth(&d));
        for (a, b) in picks {
            let index = a % size;
            let proof = inclusion_proof(&store, index, size).unwrap();
            prop_assert_eq!(&proof, &reference::path(index, &d));
            prop_assert!(verify_inclusion(&d[index as usize], index, size, &proof, &head).is_ok());

            let from = 1 + b % size;
            let old = root(&store, from).unwrap();
            let proof = consistency_proof(&store, from, size).unwrap();
            prop_assert_eq!(&proof, &reference::proof(from, &d));
            prop_assert!(verify_consistency(from, size, &proof, &old, &head).is_ok());
        }
    }

    #[test]
    fn appender_root_equals_mth_and_emits_every_full_subtree_once(
        size in 0u64..3000,
        seed in any::<u64>(),
        checkpoints in prop::collection::vec(any::<u64>(), 1..5),
    ) {
        let d = leaves(size, seed);
        let mut app = Appender::new();
        let mut emitted = 0u64;
        let stops: Vec<u64> = checkpoints.iter().map(|c| c % (size + 1)).collect();
        for (i, leaf) in d.iter().enumerate() {
            if stops.contains(&(i as u64)) {
                prop_assert_eq!(app.root(), reference::mth(&d[..i]));
            }
            app.push(*leaf, |_| emitted += 1).unwrap();
        }
        prop_assert_eq!(app.root(), reference::mth(&d));
        // A tree of n leaves has 2n - popcount(n) full subtrees.
        prop_assert_eq!(emitted, 2 * size - u64::from(size.count_ones()));
    }

    #[test]
    fn any_flipped_bit_fails_verification(
        size in 2u64..3000,
        seed in any::<u64>(),
        a in any::<u64>(),
        b in any::<u64>(),
        which in any::<usize>(),
        bit in 0usize..256,
    ) {
        let d = leaves(size, seed);
        let store = MemoryStore::from_leaf_hashes(d.iter().copied()).unwrap();
        let head = root(&store, size).unwrap();

        let index = a % size;
        let leaf = d[index as usize];
        let proof = inclusion_proof(&store, index, size).unwrap();
        prop_assert!(!proof.is_empty());
        let mut bad = proof.clone();
        let i = which % bad.len();
        bad[i] = flip(&bad[i], bit);
        prop_assert!(matches!(verify_inclusion(&leaf, index, size, &bad, &head), Err(Error::RootMismatch)));
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &flip(&head, bit)).is_err());
        prop_assert!(verify_inclusion(&flip(&leaf, bit), index, size, &proof, &head).is_err());

        let from = 1 + b % (size - 1); // 1..size-1, so the proof is not empty
        let old = root(&store, from).unwrap();
        let proof = consistency_proof(&store, from, size).unwrap();
        prop_assert!(!proof.is_empty());
        let mut bad = proof.clone();
        let i = which % bad.len();
        bad[i] = flip(&bad[i], bit);
        prop_assert!(verify_consistency(from, size, &bad, &old, &head).is_err());
        prop_assert!(verify_consistency(from, size, &proof, &flip(&old, bit), &head).is_err());
        prop_assert!(verify_consistency(from, size, &proof, &old, &flip(&head, bit)).is_err());
        // Wrong length, either way.
        prop_assert!(verify_consistency(from, size, &proof[1..], &old, &head).is_err());
        let longer = [proof.as_slice(), &[head]].concat();
        prop_assert!(verify_consistency(from, size, &longer, &old, &head).is_err());
    }

    /// Arbitrary sizes, indices and proofs: verification answers, never panics.
    #[test]
    fn verification_of_garbage_never_panics(
        index in any::<u64>(),
        size in any::<u64>(),
        from in any::<u64>(),
        proof in prop::collection::vec(any::<[u8; 32]>(), 0..70),
        root_a in any::<[u8; 32]>(),
        root_b in any::<[u8; 32]>(),
    ) {
        let _ = verify_inclusion(&root_a, index, size, &proof, &root_b);
        let _ = verify_consistency(from, size, &proof, &root_a, &root_b);
        let _ = verify_consistency(from.min(size), size, &proof, &root_a, &root_b);
        prop_assert!(verify_inclusion(&root_a, size, size, &proof, &root_b).is_err());
    }
}
