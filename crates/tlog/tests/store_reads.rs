//! Proofs and roots come from O(log n) stored full-subtree nodes, in one read, for a log of a
//! million entries: counted through a recording reader that also fails the test if any node
//! asked for is not a full subtree of the tree size in question.

mod common;

use common::Recording;
use custodian_tlog::{
    MemoryStore, consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency,
    verify_inclusion,
};

/// 2^20 - 1 leaves: every level has a ragged edge, the worst case for reads.
const STORED: u64 = (1 << 20) - 1;

fn ceil_log2(n: u64) -> u32 {
    64 - (n - 1).leading_zeros()
}

#[test]
fn a_million_leaf_log_answers_from_log_n_nodes() {
    let leaf = |i: u64| leaf_hash(&i.to_be_bytes());
    let store = MemoryStore::from_leaf_hashes((0..STORED).map(leaf)).unwrap();

    // Cheap deterministic spread of indices (splitmix64), plus the edges.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };

    for size in [1_000_000u64, STORED] {
        let bound = 2 * ceil_log2(size) as usize + 2;
        let reader = Recording::new(&store, size);

        let head = root(&reader, size).unwrap();
        let (calls, read) = reader.take();
        assert_eq!((calls, read.len()), (1, size.count_ones() as usize));

        let mut worst = 0;
        let mut indices: Vec<u64> = (0..500).map(|_| next() % size).collect();
        indices.extend([0, 1, size / 2, size - 2, size - 1]);
        for index in indices {
            let proof = inclusion_proof(&reader, index, size).unwrap();
            let (calls, read) = reader.take();
            assert_eq!(calls, 1, "one batched read per proof");
            assert!(
                read.len() <= bound,
                "PATH({index}, {size}) read {}",
                read.len()
            );
            worst = worst.max(read.len());
            verify_inclusion(&leaf(index), index, size, &proof, &head).unwrap();
        }
        println!("size {size}: inclusion proofs read at most {worst} nodes (bound {bound})");

        let mut worst = 0;
        let mut froms: Vec<u64> = (0..300).map(|_| 1 + next() % size).collect();
        froms.extend([1, 2, 3, size / 2, size - 1, size]);
        for from in froms {
            let proof = consistency_proof(&reader, from, size).unwrap();
            let (calls, read) = reader.take();
            assert!(calls <= 1);
            assert!(
                read.len() <= bound,
                "PROOF({from}, {size}) read {}",
                read.len()
            );
            worst = worst.max(read.len());
            let old = root(&store, from).unwrap();
            verify_consistency(from, size, &proof, &old, &head).unwrap();
        }
        println!("size {size}: consistency proofs read at most {worst} nodes (bound {bound})");
    }
}
