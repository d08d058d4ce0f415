//! Proof generation latency at 10,000,000 entries (target p99 < 1 ms), over the in-memory node
//! store: the cost of the maths and of the O(log n) node reads, without a database round trip.
//! `cargo bench -p custodian-tlog --bench proofs`.

use std::time::{Duration, Instant};

use custodian_tlog::{MemoryStore, consistency_proof, inclusion_proof, leaf_hash};

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() as f64 - 1.0) * p) as usize]
}

fn main() {
    const N: u64 = 10_000_000;
    const PROOFS: u64 = 10_000;
    let started = Instant::now();
    let store = MemoryStore::from_leaf_hashes((0..N).map(|i| leaf_hash(&i.to_be_bytes())))
        .expect("an in-memory tree of 10M leaves");
    println!("built a {N}-leaf tree in {:.1?}", started.elapsed());
    // A fixed, well-spread sequence of indexes (no RNG dependency).
    let index = |k: u64| k.wrapping_mul(0x9E37_79B9_7F4A_7C15) % N;
    for (name, f) in [
        (
            "inclusion",
            Box::new(|k: u64| inclusion_proof(&store, index(k), N).map(|p| p.len()))
                as Box<dyn Fn(u64) -> Result<usize, custodian_tlog::Error>>,
        ),
        (
            "consistency",
            Box::new(|k: u64| consistency_proof(&store, 1 + index(k), N).map(|p| p.len())),
        ),
    ] {
        let mut samples = Vec::with_capacity(PROOFS as usize);
        for k in 0..PROOFS {
            let t = Instant::now();
            let len = f(k).expect("proof");
            samples.push(t.elapsed());
            std::hint::black_box(len);
        }
        let p50 = percentile(&mut samples, 0.50);
        let p99 = percentile(&mut samples, 0.99);
        println!(
            "{name} proofs at {N} entries: p50 {p50:.1?}, p99 {p99:.1?} over {PROOFS} proofs (target p99 < 1 ms)"
        );
    }
}
