//! RFC 9162 §2.1's recursive definitions, transcribed literally, over in-memory leaf hashes.
//!
//! These are O(n) per call and exist to be obviously right, not fast: the tests hold the
//! storage-backed generators in [`crate::proof`] and the [`crate::Appender`] to them. Each takes
//! the leaf hashes `HASH(0x00 ‖ d[i])` rather than the entries, which changes nothing in the
//! definitions (`MTH({d0})` is the leaf hash) and lets callers reuse hashed leaves.

use crate::hash::{Hash, empty_root, node_hash};
use crate::proof::split;

/// `MTH(D[n])` (RFC 9162 §2.1.1).
pub fn mth(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [leaf] => *leaf,
        _ => {
            let k = split(leaves.len() as u64) as usize;
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// `PATH(m, D[n])` (RFC 9162 §2.1.3.1); empty when `m` is out of range.
pub fn path(m: u64, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len() as u64;
    if n <= 1 || m >= n {
        return Vec::new();
    }
    let k = split(n);
    let ku = k as usize;
    let mut out;
    if m < k {
        out = path(m, &leaves[..ku]);
        out.push(mth(&leaves[ku..]));
    } else {
        out = path(m - k, &leaves[ku..]);
        out.push(mth(&leaves[..ku]));
    }
    out
}

/// `PROOF(m, D[n]) = SUBPROOF(m, D[n], true)` (RFC 9162 §2.1.4.1); empty when `m` is 0 or
/// larger than `n`.
pub fn proof(m: u64, leaves: &[Hash]) -> Vec<Hash> {
    if m == 0 || m > leaves.len() as u64 {
        return Vec::new();
    }
    subproof(m, leaves, true)
}

fn subproof(m: u64, leaves: &[Hash], b: bool) -> Vec<Hash> {
    let n = leaves.len() as u64;
    if m == n {
        return if b { Vec::new() } else { vec![mth(leaves)] };
    }
    let k = split(n);
    let ku = k as usize;
    let mut out;
    if m <= k {
        out = subproof(m, &leaves[..ku], b);
        out.push(mth(&leaves[ku..]));
    } else {
        out = subproof(m - k, &leaves[ku..], false);
        out.push(mth(&leaves[..ku]));
    }
    out
}
