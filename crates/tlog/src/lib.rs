//! custodian's tamper-evident audit log, as pure maths: no storage, no network, no clock.
//!
//! The log is an RFC 6962 / RFC 9162 Merkle tree over audit entries. This crate owns:
//!
//! - [`hash`]: the tree's hash functions (leaf `SHA-256(0x00 ‖ entry)`, node
//!   `SHA-256(0x01 ‖ left ‖ right)`, empty tree `SHA-256("")`);
//! - [`store`]: the node addressing (`level`, `index`) that a storage layer persists, the
//!   [`HashReader`] trait it implements, and an in-memory [`MemoryStore`];
//! - [`compact`]: the incremental [`Appender`] that turns new leaf hashes into the full-subtree
//!   nodes to write alongside them, and [`verify_log`], the streaming whole-log check;
//! - [`proof`]: roots, inclusion proofs and consistency proofs generated from O(log n) stored
//!   nodes, and their verification by the RFC 9162 §2.1.3.2 and §2.1.4.2 algorithms;
//! - [`mod@reference`]: the RFC's recursive definitions, literally, for cross-checking;
//! - [`note`] and [`checkpoint`]: C2SP signed notes and the tlog checkpoints signed with them.
//!
//! Nothing here panics on any input: every malformed proof, size, note or key is an [`Error`].

#![forbid(unsafe_code)]

pub mod bundle;
pub mod checkpoint;
pub mod compact;
pub mod hash;
pub mod note;
pub mod proof;
pub mod reference;
pub mod store;
pub mod witness;

pub use checkpoint::{Checkpoint, CheckpointSigner, open};
pub use compact::{Appender, verify_log};
pub use hash::{
    HASH_LEN, Hash, empty_root, hash_from_slice, leaf_hash, node_hash, node_hash_bytes,
};
pub use note::{NoteSigner, Verifier};
pub use proof::{
    consistency_proof, inclusion_proof, root, root_from_inclusion_proof, verify_consistency,
    verify_inclusion,
};
pub use store::{HashReader, MemoryStore, Node, NodeId, Prefetched, Recorder};
pub use witness::{Witness, WitnessError};

/// Everything that can go wrong in this crate.
///
/// Verification failures are deliberately coarse ([`Error::RootMismatch`]): a verifier learns
/// that a proof is wrong, not which hash an attacker would have to change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A leaf index at or beyond the tree size (this includes every index into an empty tree).
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// A consistency proof between sizes that have none: `from` is 0 or larger than `to`.
    #[error("no consistency proof exists from tree size {from} to {to}")]
    InvalidRange { from: u64, to: u64 },
    /// A proof whose number of hashes is not the one its sizes dictate.
    #[error("the proof has {got} hashes where these tree sizes require {expected}")]
    ProofLength { expected: usize, got: usize },
    /// A well-formed proof that does not lead to the expected root hash(es).
    #[error("the proof does not reproduce the expected root hash")]
    RootMismatch,
    /// A byte string offered as a hash that is not 32 bytes long.
    #[error("a SHA-256 hash is 32 bytes, got {0}")]
    HashLength(usize),
    /// Appending would make the tree larger than 2^64 - 1 leaves.
    #[error("the tree cannot grow beyond 2^64 - 1 leaves")]
    TreeFull,
    /// A compact range whose number of peaks does not match its size.
    #[error("a compact range of size {size} has {expected} peaks, got {got}")]
    CompactRange {
        size: u64,
        expected: usize,
        got: usize,
    },
    /// A node the computation needs is not in the store.
    #[error("node store has no node at level {level}, index {index}")]
    MissingNode { level: u8, index: u64 },
    /// A node written out of order, or over a different hash, in an append-only store.
    #[error("node store cannot write level {level}, index {index}: {reason}")]
    NodeWrite {
        level: u8,
        index: u64,
        reason: &'static str,
    },
    /// The storage behind a [`HashReader`] failed; the source says how.
    #[error("node store failed")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// [`verify_log`] saw a different number of entries than the size it was told.
    #[error("the log has {got} entries where {expected} were expected")]
    EntryCount { expected: u64, got: u64 },
    /// A signed note that does not follow the C2SP signed-note grammar.
    #[error("malformed signed note: {0}")]
    MalformedNote(&'static str),
    /// A note body that is not a C2SP tlog checkpoint.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
    /// A verifier or signer key string that does not parse, or whose key id does not match.
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    /// A signature line for the verifier's key whose signature does not verify.
    #[error("invalid signature by key {name}+{key_id:08x}")]
    BadSignature { name: String, key_id: u32 },
    /// A note that carries no signature by the verifier's key.
    #[error("the note has no signature by key {name}+{key_id:08x}")]
    NoSignature { name: String, key_id: u32 },
    /// The Ed25519 implementation refused the seed or failed to sign.
    #[error("Ed25519 key operation failed")]
    Crypto,
}
