//! The Merkle tree's hash functions, exactly as RFC 6962 §2.1 and RFC 9162 §2.1.1 define them.
//!
//! Leaves and interior nodes are hashed under different one-byte prefixes (0x00 and 0x01) so
//! that no interior node can be passed off as a leaf (second-preimage resistance); the empty
//! tree's hash is the hash of the empty string. Every hash is SHA-256, 32 bytes.

use aws_lc_rs::digest::{self, SHA256};

use crate::Error;

/// Length in bytes of every hash in the tree.
pub const HASH_LEN: usize = 32;

/// A SHA-256 hash: a leaf hash, an interior node hash or a root.
pub type Hash = [u8; HASH_LEN];

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// The root of the empty tree, `SHA-256("")` (RFC 9162 §2.1.1: `MTH({}) = HASH()`).
pub fn empty_root() -> Hash {
    to_hash(&digest::digest(&SHA256, b""))
}

/// The leaf hash of one entry: `SHA-256(0x00 ‖ entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&SHA256);
    ctx.update(&[LEAF_PREFIX]);
    ctx.update(entry);
    to_hash(&ctx.finish())
}

/// The hash of an interior node: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // One contiguous 65-byte buffer hashes in a single call; this is the hot path of every
    // append, proof and whole-log verification.
    let mut buf = [0u8; 1 + 2 * HASH_LEN];
    buf[0] = NODE_PREFIX;
    buf[1..=HASH_LEN].copy_from_slice(left);
    buf[1 + HASH_LEN..].copy_from_slice(right);
    to_hash(&digest::digest(&SHA256, &buf))
}

/// `HASH(0x01 ‖ left ‖ right)` over arbitrary byte strings: the RFC's node hash as defined,
/// before the tree restricts its inputs to 32-byte hashes. [`node_hash`] is the same function on
/// hashes, without the streaming overhead.
pub fn node_hash_bytes(left: &[u8], right: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&SHA256);
    ctx.update(&[NODE_PREFIX]);
    ctx.update(left);
    ctx.update(right);
    to_hash(&ctx.finish())
}

/// A hash from untrusted bytes (a proof element off the wire, a stored root): exactly 32 bytes.
pub fn hash_from_slice(bytes: &[u8]) -> Result<Hash, Error> {
    Hash::try_from(bytes).map_err(|_| Error::HashLength(bytes.len()))
}

fn to_hash(d: &digest::Digest) -> Hash {
    // A SHA-256 digest is always 32 bytes, so this never takes the fallback; it exists only so
    // that no code path in the crate can panic.
    Hash::try_from(d.as_ref()).unwrap_or([0u8; HASH_LEN])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(h: &[u8]) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn prefixes_separate_leaves_from_nodes() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        let mut concat = a.to_vec();
        concat.extend_from_slice(&b);
        assert_ne!(node_hash(&a, &b), leaf_hash(&concat));
        assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
        assert_eq!(node_hash(&a, &b), node_hash_bytes(&a, &b));
    }

    #[test]
    fn empty_tree_is_not_the_empty_leaf() {
        assert_eq!(
            hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn hash_from_slice_wants_32_bytes() {
        assert!(matches!(
            hash_from_slice(&[0u8; 31]),
            Err(Error::HashLength(31))
        ));
        assert!(matches!(hash_from_slice(&[]), Err(Error::HashLength(0))));
        assert_eq!(hash_from_slice(&[7u8; 32]).ok(), Some([7u8; 32]));
    }
}
