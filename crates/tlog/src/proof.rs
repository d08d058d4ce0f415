//! Tree heads, inclusion proofs and consistency proofs: generation from stored full-subtree
//! nodes, and verification by the RFC 9162 algorithms.
//!
//! Generation follows the RFC's recursive definitions (`PATH`, §2.1.3.1, and `SUBPROOF`,
//! §2.1.4.1) but only walks the sizes: each proof element is `MTH` of a leaf span, and every such
//! span is either one full subtree or, at most once per proof, the ragged right edge
//! `[x, size)`, which is the right fold of its O(log n) full subtrees. So a proof costs one
//! [`HashReader::read_nodes`] call for at most about `2·log2(size)` stored nodes, whatever the
//! size of the log, and never touches the leaves' entries.
//!
//! Verification is RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency), step for step,
//! preceded by a check that the proof has exactly the number of hashes its sizes call for, so a
//! short or padded proof fails with [`Error::ProofLength`] before any hashing.

use crate::Error;
use crate::compact::{fold_right, peak_ids};
use crate::hash::{Hash, empty_root, node_hash};
use crate::store::HashReader;

/// The leaves `[start, end)` whose `MTH` is one proof element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: u64,
    end: u64,
}

/// The largest power of two strictly less than `n` (RFC 9162's `k`), for `n` of at least 2.
/// Callers never pass less; for 0 and 1 it answers 1 rather than overflow.
pub(crate) fn split(n: u64) -> u64 {
    1u64 << (63 - n.saturating_sub(1).leading_zeros().min(63))
}

/// Visits the spans of `PATH(index, D[0:size])`, root end first (the proof lists them in the
/// reverse order). The caller guarantees `index < size`.
fn walk_inclusion(index: u64, size: u64, mut visit: impl FnMut(Span)) {
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            // PATH(m, D[0:k]) : MTH(D[k:n])
            visit(Span {
                start: lo + k,
                end: hi,
            });
            hi = lo + k;
        } else {
            // PATH(m - k, D[k:n]) : MTH(D[0:k])
            visit(Span {
                start: lo,
                end: lo + k,
            });
            lo += k;
        }
    }
}

/// Visits the spans of `SUBPROOF(from, D[0:to], true)`, root end first. The caller guarantees
/// `0 < from < to`.
fn walk_consistency(from: u64, to: u64, mut visit: impl FnMut(Span)) {
    // Invariant: lo < from <= hi, so the loop ends at the latest when hi - lo == 1.
    let (mut lo, mut hi) = (0u64, to);
    let mut known = true; // the `b` flag: is MTH(D[lo:from]) the old root the verifier holds?
    loop {
        if from == hi {
            if !known {
                visit(Span { start: lo, end: hi });
            }
            return;
        }
        let k = split(hi - lo);
        if from <= lo + k {
            // SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            visit(Span {
                start: lo + k,
                end: hi,
            });
            hi = lo + k;
        } else {
            // SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            visit(Span {
                start: lo,
                end: lo + k,
            });
            lo += k;
            known = false;
        }
    }
}

fn check_inclusion_args(index: u64, size: u64) -> Result<(), Error> {
    if index >= size {
        return Err(Error::IndexOutOfRange { index, size });
    }
    Ok(())
}

fn check_consistency_args(from: u64, to: u64) -> Result<(), Error> {
    // RFC 9162 defines consistency proofs for 0 < from < to; equal sizes are handled by the
    // callers, and a proof from the empty tree would prove nothing.
    if from == 0 || from > to {
        return Err(Error::InvalidRange { from, to });
    }
    Ok(())
}

/// Reads every node the spans need in one call and folds each span to its `MTH`.
fn hash_spans<R: HashReader + ?Sized>(reader: &R, spans: &[Span]) -> Result<Vec<Hash>, Error> {
    let mut ids = Vec::new();
    let mut bounds = Vec::with_capacity(spans.len());
    for span in spans {
        let first = ids.len();
        ids.extend(peak_ids(span.start, span.end));
        bounds.push(first..ids.len());
    }
    let hashes = reader.read_nodes(&ids)?;
    if hashes.len() != ids.len() {
        return Err(Error::Store(
            format!(
                "asked for {} node hashes, the reader returned {}",
                ids.len(),
                hashes.len()
            )
            .into(),
        ));
    }
    bounds
        .into_iter()
        .map(|range| {
            hashes
                .get(range)
                .and_then(fold_right)
                .ok_or_else(|| Error::Store("a proof span covers no stored node".into()))
        })
        .collect()
}

/// The tree head `MTH(D[0:size])`, from the `popcount(size)` full subtrees that tile the tree.
pub fn root<R: HashReader + ?Sized>(reader: &R, size: u64) -> Result<Hash, Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    let mut roots = hash_spans(
        reader,
        &[Span {
            start: 0,
            end: size,
        }],
    )?;
    roots.pop().ok_or(Error::MissingNode { level: 0, index: 0 })
}

/// The inclusion proof `PATH(index, D[0:size])` (RFC 9162 §2.1.3.1), leaf end first.
///
/// The store may hold more leaves than `size`: full subtrees never change, so proofs for past
/// tree heads come out the same as they did then.
pub fn inclusion_proof<R: HashReader + ?Sized>(
    reader: &R,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, Error> {
    check_inclusion_args(index, size)?;
    let mut spans = Vec::new();
    walk_inclusion(index, size, |s| spans.push(s));
    spans.reverse();
    hash_spans(reader, &spans)
}

/// The consistency proof `PROOF(from, D[0:to])` (RFC 9162 §2.1.4.1), from the leaves up.
/// Equal sizes have the empty proof; `from` must be at least 1 and at most `to`.
pub fn consistency_proof<R: HashReader + ?Sized>(
    reader: &R,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, Error> {
    check_consistency_args(from, to)?;
    if from == to {
        return Ok(Vec::new());
    }
    let mut spans = Vec::new();
    walk_consistency(from, to, |s| spans.push(s));
    spans.reverse();
    hash_spans(reader, &spans)
}

/// The root that an inclusion proof leads to from `leaf_hash` (RFC 9162 §2.1.3.2, steps 1–5
/// without the final comparison).
pub fn root_from_inclusion_proof(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, Error> {
    check_inclusion_args(index, size)?;
    let mut expected = 0usize;
    walk_inclusion(index, size, |_| expected += 1);
    if proof.len() != expected {
        return Err(Error::ProofLength {
            expected,
            got: proof.len(),
        });
    }

    // RFC 9162 §2.1.3.2. `fn` is a keyword, hence `f`.
    let mut f = index;
    let mut s = size - 1;
    let mut r = *leaf_hash;
    for p in proof {
        if s == 0 {
            return Err(Error::RootMismatch);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(Error::RootMismatch);
    }
    Ok(r)
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of `size` leaves with root `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), Error> {
    if root_from_inclusion_proof(leaf_hash, index, size, proof)? != *root {
        return Err(Error::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `to` leaves with root `to_root` extends the tree of `from` leaves
/// with root `from_root` (RFC 9162 §2.1.4.2).
///
/// Equal sizes verify with the empty proof when the roots are equal. A `from` of 0, or larger
/// than `to`, is [`Error::InvalidRange`].
pub fn verify_consistency(
    from: u64,
    to: u64,
    proof: &[Hash],
    from_root: &Hash,
    to_root: &Hash,
) -> Result<(), Error> {
    if from == to && from != 0 {
        if !proof.is_empty() {
            return Err(Error::ProofLength {
                expected: 0,
                got: proof.len(),
            });
        }
        if from_root != to_root {
            return Err(Error::RootMismatch);
        }
        return Ok(());
    }
    check_consistency_args(from, to)?;
    let mut expected = 0usize;
    walk_consistency(from, to, |_| expected += 1);
    if proof.len() != expected {
        return Err(Error::ProofLength {
            expected,
            got: proof.len(),
        });
    }

    // RFC 9162 §2.1.4.2.
    // 1. An empty path fails (the length check above already guarantees one).
    // 2. If `first` is an exact power of 2, prepend first_hash to the path.
    let prefix = from.is_power_of_two().then_some(from_root);
    let mut path = prefix.into_iter().chain(proof.iter());
    let Some(seed) = path.next() else {
        return Err(Error::RootMismatch);
    };
    // 3. fn = first - 1, sn = second - 1.
    let mut f = from - 1;
    let mut s = to - 1;
    // 4. Shift both right while LSB(fn) is set.
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    // 5. fr and sr both start as the first path value.
    let mut fr = *seed;
    let mut sr = *seed;
    // 6. Each subsequent value c.
    for c in path {
        if s == 0 {
            return Err(Error::RootMismatch);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    // 7. Both roots reproduced and the second tree fully climbed.
    if s != 0 || fr != *from_root || sr != *to_root {
        return Err(Error::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use crate::reference;
    use crate::store::MemoryStore;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect()
    }

    #[test]
    fn split_is_the_largest_power_of_two_below() {
        for (n, k) in [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 4),
            (7, 4),
            (8, 4),
            (9, 8),
            (63, 32),
        ] {
            assert_eq!(split(n), k, "split({n})");
        }
        assert_eq!(split(u64::MAX), 1 << 63);
        assert_eq!(split(28937), 16384);
        assert_eq!(split(1), 1);
        assert_eq!(split(0), 1);
    }

    #[test]
    fn every_proof_up_to_64_leaves_matches_the_rfc_definitions() {
        let all = leaves(64);
        let store = MemoryStore::from_leaf_hashes(all.iter().copied()).unwrap();
        for n in 1..=64u64 {
            let d = &all[..n as usize];
            let head = root(&store, n).unwrap();
            assert_eq!(head, reference::mth(d));
            for m in 0..n {
                let proof = inclusion_proof(&store, m, n).unwrap();
                assert_eq!(proof, reference::path(m, d), "PATH({m}, {n})");
                verify_inclusion(&all[m as usize], m, n, &proof, &head).unwrap();
            }
            for m in 1..=n {
                let proof = consistency_proof(&store, m, n).unwrap();
                assert_eq!(proof, reference::proof(m, d), "PROOF({m}, {n})");
                let old = reference::mth(&all[..m as usize]);
                verify_consistency(m, n, &proof, &old, &head).unwrap();
            }
        }
    }

    #[test]
    fn arguments_out_of_range_are_errors() {
        let store = MemoryStore::from_leaf_hashes(leaves(8)).unwrap();
        let h = [0u8; 32];
        assert!(matches!(
            inclusion_proof(&store, 0, 0),
            Err(Error::IndexOutOfRange { index: 0, size: 0 })
        ));
        assert!(matches!(
            inclusion_proof(&store, 8, 8),
            Err(Error::IndexOutOfRange { .. })
        ));
        assert!(matches!(
            consistency_proof(&store, 0, 8),
            Err(Error::InvalidRange { from: 0, to: 8 })
        ));
        assert!(matches!(
            consistency_proof(&store, 5, 4),
            Err(Error::InvalidRange { .. })
        ));
        assert!(matches!(
            inclusion_proof(&store, 3, 9),
            Err(Error::MissingNode { .. })
        ));
        assert!(matches!(
            verify_inclusion(&h, 0, 0, &[], &h),
            Err(Error::IndexOutOfRange { .. })
        ));
        assert!(matches!(
            verify_inclusion(&h, u64::MAX, u64::MAX, &[], &h),
            Err(Error::IndexOutOfRange { .. })
        ));
        assert!(matches!(
            verify_consistency(0, 5, &[], &h, &h),
            Err(Error::InvalidRange { .. })
        ));
        assert!(matches!(
            verify_consistency(6, 5, &[h], &h, &h),
            Err(Error::InvalidRange { .. })
        ));
        assert!(matches!(
            verify_consistency(3, 5, &[], &h, &h),
            Err(Error::ProofLength {
                expected: 4,
                got: 0
            })
        ));
        verify_consistency(5, 5, &[], &h, &h).unwrap();
        assert!(matches!(
            verify_consistency(5, 5, &[h], &h, &h),
            Err(Error::ProofLength { .. })
        ));
    }

    #[test]
    fn huge_sizes_do_not_overflow() {
        let h = [3u8; 32];
        // No store this size exists; the walk and the verifier must still be well-defined.
        let mut n = 0;
        walk_inclusion(u64::MAX - 1, u64::MAX, |_| n += 1);
        assert_eq!(n, 63);
        let mut n = 0;
        walk_consistency(u64::MAX - 1, u64::MAX, |_| n += 1);
        assert!(n > 0);
        let proof = vec![h; 63];
        assert!(matches!(
            verify_inclusion(&h, u64::MAX - 1, u64::MAX, &proof, &h),
            Err(Error::RootMismatch)
        ));
        assert!(verify_consistency(1 << 63, u64::MAX, &proof, &h, &h).is_err());
    }
}
