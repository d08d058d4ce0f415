//! A witness of one log: it rebuilds the tree from the log's entries as they are published and
//! holds every signed checkpoint against it. A checkpoint whose root differs from the root of
//! the witnessed entries at its size, or two checkpoints of one size with different roots, is
//! a fork: the log was rewritten, and the witness says so with both roots. Pure: the caller
//! feeds entries and checkpoints in the order they were published.

use std::collections::BTreeMap;

use crate::compact::Appender;
use crate::hash::{Hash, leaf_hash};
use crate::{Checkpoint, Error, Verifier, open};

/// What a witness found wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WitnessError {
    /// The log's signed history and what was published disagree.
    #[error(
        "FORK at tree size {size}: the signed checkpoint's root is {signed}, the witnessed root is {witnessed}"
    )]
    Fork {
        size: u64,
        signed: String,
        witnessed: String,
    },
    /// An entry arrived out of order: not the next index.
    #[error("entry {index} arrived where entry {expected} was due")]
    Gap { index: u64, expected: u64 },
    /// A checkpoint for entries the witness has not seen.
    #[error("checkpoint of size {size} is ahead of the {seen} entries published before it")]
    Ahead { size: u64, seen: u64 },
    /// A checkpoint that does not verify with the deployment's key.
    #[error("checkpoint does not verify: {0}")]
    Signature(String),
    /// The tree cannot take the entry (it is full).
    #[error("{0}")]
    Tree(String),
}

/// One log's witness.
pub struct Witness {
    verifier: Verifier,
    tree: Appender,
    /// The root at every size a checkpoint was held against, to judge later ones.
    roots: BTreeMap<u64, Hash>,
    last: Option<Checkpoint>,
}

fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

impl Witness {
    pub fn new(verifier: Verifier) -> Witness {
        Witness {
            verifier,
            tree: Appender::new(),
            roots: BTreeMap::new(),
            last: None,
        }
    }

    /// Entries seen so far.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The last checkpoint held against the entries.
    pub fn last_checkpoint(&self) -> Option<&Checkpoint> {
        self.last.as_ref()
    }

    /// Feeds entry `index`. A repeat of an index already seen is ignored (the stream may
    /// deliver one twice); anything else out of order is a gap.
    pub fn entry(&mut self, index: u64, entry: &[u8]) -> Result<(), WitnessError> {
        self.leaf(index, leaf_hash(entry))
    }

    /// Feeds entry `index` by its leaf hash alone: an entry whose body audit retention
    /// destroyed before it was mirrored.
    pub fn leaf(&mut self, index: u64, leaf: Hash) -> Result<(), WitnessError> {
        let expected = self.tree.size();
        if index < expected {
            return Ok(());
        }
        if index > expected {
            return Err(WitnessError::Gap { index, expected });
        }
        self.tree
            .push(leaf, |_| {})
            .map_err(|e: Error| WitnessError::Tree(e.to_string()))
    }

    /// Holds a signed checkpoint against the entries seen; returns it once it agrees.
    pub fn checkpoint(&mut self, note: &str) -> Result<Checkpoint, WitnessError> {
        let checkpoint =
            open(note, &self.verifier).map_err(|e| WitnessError::Signature(e.to_string()))?;
        let fork = |witnessed: &Hash| WitnessError::Fork {
            size: checkpoint.size,
            signed: hex(&checkpoint.root),
            witnessed: hex(witnessed),
        };
        let size = checkpoint.size;
        if size > self.tree.size() {
            return Err(WitnessError::Ahead {
                size,
                seen: self.tree.size(),
            });
        }
        let witnessed = if size == self.tree.size() {
            self.tree.root()
        } else {
            match self.roots.get(&size) {
                Some(root) => *root,
                // An older size the witness has no root for: nothing to hold it against.
                None => return Ok(checkpoint),
            }
        };
        if witnessed != checkpoint.root {
            return Err(fork(&witnessed));
        }
        self.roots.insert(size, witnessed);
        if self.last.as_ref().is_none_or(|l| l.size <= size) {
            self.last = Some(checkpoint.clone());
        }
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CheckpointSigner;

    fn signer() -> CheckpointSigner {
        CheckpointSigner::from_seed("witness-test", &[5; 32]).unwrap()
    }

    fn tree(entries: &[&[u8]]) -> Hash {
        let mut a = Appender::new();
        for e in entries {
            a.push(leaf_hash(e), |_| {}).unwrap();
        }
        a.root()
    }

    fn note(signer: &CheckpointSigner, size: u64, root: Hash) -> String {
        signer
            .sign(&Checkpoint::new("custodian/test/acme", size, root))
            .unwrap()
    }

    #[test]
    fn a_growing_log_is_witnessed_and_a_rewritten_one_is_a_fork() {
        let s = signer();
        let mut w = Witness::new(Verifier::parse(&s.verifier_key()).unwrap());
        w.entry(0, b"a").unwrap();
        w.entry(1, b"b").unwrap();
        w.entry(1, b"b").unwrap(); // a repeat is ignored
        assert_eq!(
            w.checkpoint(&note(&s, 2, tree(&[b"a", b"b"])))
                .unwrap()
                .size,
            2
        );
        w.entry(2, b"c").unwrap();
        assert_eq!(
            w.checkpoint(&note(&s, 3, tree(&[b"a", b"b", b"c"])))
                .unwrap()
                .size,
            3
        );
        assert_eq!(w.last_checkpoint().unwrap().size, 3);
        // The same size signed again over another history.
        let forged = tree(&[b"a", b"B"]);
        match w.checkpoint(&note(&s, 2, forged)) {
            Err(WitnessError::Fork {
                size,
                signed,
                witnessed,
            }) => {
                assert_eq!(size, 2);
                assert_eq!(signed, hex(&forged));
                assert_eq!(witnessed, hex(&tree(&[b"a", b"b"])));
            }
            other => panic!("{other:?}"),
        }
        // A checkpoint over entries that were not the ones published.
        w.entry(3, b"d").unwrap();
        assert!(matches!(
            w.checkpoint(&note(&s, 4, tree(&[b"a", b"b", b"c", b"X"]))),
            Err(WitnessError::Fork { size: 4, .. })
        ));
    }

    #[test]
    fn gaps_unsigned_and_premature_checkpoints_are_refused() {
        let s = signer();
        let mut w = Witness::new(Verifier::parse(&s.verifier_key()).unwrap());
        assert_eq!(
            w.entry(1, b"b"),
            Err(WitnessError::Gap {
                index: 1,
                expected: 0
            })
        );
        w.entry(0, b"a").unwrap();
        assert_eq!(
            w.checkpoint(&note(&s, 2, tree(&[b"a", b"b"]))).unwrap_err(),
            WitnessError::Ahead { size: 2, seen: 1 }
        );
        let stranger = CheckpointSigner::from_seed("witness-test", &[6; 32]).unwrap();
        assert!(matches!(
            w.checkpoint(&note(&stranger, 1, tree(&[b"a"]))),
            Err(WitnessError::Signature(_))
        ));
    }
}
