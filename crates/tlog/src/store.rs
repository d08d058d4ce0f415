//! Node addressing and the read interface a storage layer offers the proof code.
//!
//! A stored node is a *full* subtree: the node at level `k`, index `i` is the root of the
//! perfect subtree over leaves `[i·2^k, (i+1)·2^k)`, and it exists once the log has at least
//! `(i+1)·2^k` leaves. Level 0 holds the leaf hashes. Full subtrees never change after they are
//! complete, so a store that keeps them append-only can answer proofs for every past tree size
//! too. This is the layout of Trillian's and Tessera's internal nodes (tiles are just a way of
//! grouping them).
//!
//! [`HashReader`] is the one thing the proof code needs from storage; it asks for all the nodes
//! of one root or proof in a single call, so a database can answer with one query.
//! [`MemoryStore`] is the in-memory implementation the tests (and small tools) use.

use crate::Error;
use crate::hash::Hash;

/// The address of a full subtree: `level` 0 is a leaf, level `k` covers `2^k` leaves starting
/// at leaf `index << level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    pub const fn new(level: u8, index: u64) -> Self {
        NodeId { level, index }
    }

    /// Whether this node is a full subtree of a tree with `size` leaves, i.e. whether a store
    /// that holds the first `size` leaves has it.
    pub fn is_complete_in(&self, size: u64) -> bool {
        if self.level >= 64 {
            return false;
        }
        // (index + 1) << level <= size; in u128 the product cannot overflow (< 2^128).
        let end = (u128::from(self.index) + 1) << self.level;
        end <= u128::from(size)
    }
}

/// A full-subtree node and its hash: what an [`crate::Appender`] hands the store to persist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: NodeId,
    pub hash: Hash,
}

/// Read access to stored full-subtree hashes.
///
/// Implementations return the hashes of `ids` in the same order, or an error; a node that is
/// not stored is an error ([`Error::MissingNode`]), never a made-up hash. Storage failures map to
/// [`Error::Store`] with the underlying error as its source.
pub trait HashReader {
    fn read_nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Error>;
}

impl<T: HashReader + ?Sized> HashReader for &T {
    fn read_nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Error> {
        (**self).read_nodes(ids)
    }
}

/// An append-only, in-memory node store: one vector of hashes per level.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    levels: Vec<Vec<Hash>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding the tree over `leaf_hashes`, built through an [`crate::Appender`].
    pub fn from_leaf_hashes<I>(leaf_hashes: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = Hash>,
    {
        let mut store = MemoryStore::new();
        let mut appender = crate::Appender::new();
        let mut nodes = Vec::new();
        for leaf in leaf_hashes {
            nodes.clear();
            appender.push(leaf, |n| nodes.push(n))?;
            store.write(&nodes)?;
        }
        Ok(store)
    }

    /// Number of leaves stored.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The stored hash of one node, if present.
    pub fn get(&self, id: NodeId) -> Option<&Hash> {
        let level = self.levels.get(usize::from(id.level))?;
        level.get(usize::try_from(id.index).ok()?)
    }

    /// Writes nodes in append order. Rewriting an existing node with the same hash is a no-op
    /// (so a retried batch is harmless); a different hash or a gap is an error, because either
    /// would mean the log's history changed.
    pub fn write(&mut self, nodes: &[Node]) -> Result<(), Error> {
        for node in nodes {
            let level = usize::from(node.id.level);
            if self.levels.len() <= level {
                self.levels.resize_with(level + 1, Vec::new);
            }
            let column = &mut self.levels[level];
            let len = column.len() as u64;
            if node.id.index < len {
                let existing = usize::try_from(node.id.index)
                    .ok()
                    .and_then(|i| column.get(i));
                if existing != Some(&node.hash) {
                    return Err(Error::NodeWrite {
                        level: node.id.level,
                        index: node.id.index,
                        reason: "a different hash is already stored there",
                    });
                }
            } else if node.id.index == len {
                column.push(node.hash);
            } else {
                return Err(Error::NodeWrite {
                    level: node.id.level,
                    index: node.id.index,
                    reason: "the nodes before it on its level are missing",
                });
            }
        }
        Ok(())
    }
}

impl HashReader for MemoryStore {
    fn read_nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Error> {
        ids.iter()
            .map(|&id| {
                self.get(id).copied().ok_or(Error::MissingNode {
                    level: id.level,
                    index: id.index,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    #[test]
    fn completeness() {
        assert!(NodeId::new(0, 0).is_complete_in(1));
        assert!(!NodeId::new(0, 1).is_complete_in(1));
        assert!(NodeId::new(2, 1).is_complete_in(8));
        assert!(!NodeId::new(2, 1).is_complete_in(7));
        assert!(!NodeId::new(63, 1).is_complete_in(u64::MAX));
        assert!(!NodeId::new(0, u64::MAX).is_complete_in(u64::MAX));
        assert!(!NodeId::new(64, 0).is_complete_in(u64::MAX));
        assert!(NodeId::new(62, 2).is_complete_in(u64::MAX));
    }

    #[test]
    fn writes_are_append_only() {
        let mut store = MemoryStore::new();
        let a = Node {
            id: NodeId::new(0, 0),
            hash: leaf_hash(b"a"),
        };
        store.write(&[a]).unwrap();
        store.write(&[a]).unwrap();
        let changed = Node {
            hash: leaf_hash(b"b"),
            ..a
        };
        assert!(matches!(
            store.write(&[changed]),
            Err(Error::NodeWrite { .. })
        ));
        let gap = Node {
            id: NodeId::new(0, 2),
            ..a
        };
        assert!(matches!(store.write(&[gap]), Err(Error::NodeWrite { .. })));
        assert!(matches!(
            store.read_nodes(&[NodeId::new(0, 1)]),
            Err(Error::MissingNode { level: 0, index: 1 })
        ));
        assert!(matches!(
            store.read_nodes(&[NodeId::new(40, u64::MAX)]),
            Err(Error::MissingNode { .. })
        ));
    }
}

/// The node ids a computation asks for, recorded instead of answered: the first half of running
/// a computation against asynchronous storage. Every computation in this crate reads its nodes
/// in one batch, so running it once with a [`Recorder`], fetching what it asked for, and running
/// it again over a [`Prefetched`] store costs one round trip.
#[derive(Debug, Default)]
pub struct Recorder {
    asked: std::cell::RefCell<Vec<NodeId>>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The ids asked for so far.
    pub fn into_ids(self) -> Vec<NodeId> {
        self.asked.into_inner()
    }
}

impl HashReader for Recorder {
    fn read_nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Error> {
        self.asked.borrow_mut().extend_from_slice(ids);
        match ids.first() {
            Some(id) => Err(Error::MissingNode {
                level: id.level,
                index: id.index,
            }),
            None => Ok(Vec::new()),
        }
    }
}

/// Nodes fetched ahead of a computation (see [`Recorder`]).
#[derive(Debug, Default)]
pub struct Prefetched {
    nodes: std::collections::HashMap<NodeId, Hash>,
}

impl Prefetched {
    pub fn new(nodes: impl IntoIterator<Item = (NodeId, Hash)>) -> Self {
        Prefetched {
            nodes: nodes.into_iter().collect(),
        }
    }
}

impl HashReader for Prefetched {
    fn read_nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Error> {
        ids.iter()
            .map(|id| {
                self.nodes.get(id).copied().ok_or(Error::MissingNode {
                    level: id.level,
                    index: id.index,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod prefetch_tests {
    use super::*;
    use crate::proof::inclusion_proof;

    #[test]
    fn record_then_prefetch_reproduces_a_proof() {
        let leaves: Vec<Hash> = (0u32..1000)
            .map(|i| crate::leaf_hash(&i.to_be_bytes()))
            .collect();
        let store = MemoryStore::from_leaf_hashes(leaves).unwrap();
        let recorder = Recorder::new();
        assert!(inclusion_proof(&recorder, 123, 1000).is_err());
        let ids = recorder.into_ids();
        assert!(!ids.is_empty());
        let hashes = store.read_nodes(&ids).unwrap();
        let prefetched = Prefetched::new(ids.into_iter().zip(hashes));
        assert_eq!(
            inclusion_proof(&prefetched, 123, 1000).unwrap(),
            inclusion_proof(&store, 123, 1000).unwrap()
        );
    }
}
