//! The incremental appender (a compact range over `[0, size)`) and the streaming log check.
//!
//! A tree of `size` leaves is summarised by its *peaks*: the roots of the perfect subtrees that
//! the binary representation of `size` splits it into, largest (leftmost) first — at most 64
//! hashes. Appending a leaf pushes it as a new peak and merges equal-sized peaks, and every merge
//! completes exactly one new full-subtree node. [`Appender`] reports those nodes so the store can
//! persist them in the same transaction as the entries; the root is the right fold of the peaks.
//!
//! [`verify_log`] runs the same machinery without reporting nodes, so the offline audit can
//! recompute a root from millions of entries in O(log n) memory.

use crate::Error;
use crate::hash::{Hash, empty_root, leaf_hash, node_hash};
use crate::store::{HashReader, Node, NodeId};

/// The compact range `[0, size)` of the log, and the node source for a store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Appender {
    size: u64,
    /// Peak hashes, largest subtree first; one per set bit of `size`.
    peaks: Vec<Hash>,
}

impl Appender {
    /// The appender of an empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores an appender from a size and its peaks (largest subtree first), e.g. cached next
    /// to the latest checkpoint.
    pub fn from_peaks(size: u64, peaks: Vec<Hash>) -> Result<Self, Error> {
        let expected = size.count_ones() as usize;
        if peaks.len() != expected {
            return Err(Error::CompactRange {
                size,
                expected,
                got: peaks.len(),
            });
        }
        Ok(Appender { size, peaks })
    }

    /// Restores an appender for a log of `size` leaves by reading its peaks from the store:
    /// `popcount(size)` nodes, one read.
    pub fn resume<R: HashReader + ?Sized>(reader: &R, size: u64) -> Result<Self, Error> {
        let ids = peak_ids(0, size);
        let peaks = reader.read_nodes(&ids)?;
        Self::from_peaks(size, peaks)
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The peaks, largest subtree first.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// The tree head `MTH(D[0:size])`.
    pub fn root(&self) -> Hash {
        fold_right(&self.peaks).unwrap_or_else(empty_root)
    }

    /// Appends one leaf hash and hands `sink` every node it completes, bottom-up: the leaf itself
    /// at level 0, then each parent that became full. These are exactly the nodes a store must
    /// add for `size + 1` leaves.
    pub fn push(&mut self, leaf: Hash, mut sink: impl FnMut(Node)) -> Result<(), Error> {
        let index = self.size;
        let new_size = index.checked_add(1).ok_or(Error::TreeFull)?;
        sink(Node {
            id: NodeId::new(0, index),
            hash: leaf,
        });
        let mut hash = leaf;
        let mut level: u8 = 0;
        let mut at = index;
        // Each trailing 1 bit of the old size is a peak of the same size as the subtree we are
        // carrying: merge them into their parent, which is now complete.
        while at & 1 == 1 {
            let Some(left) = self.peaks.pop() else {
                // Unreachable while peaks.len() == popcount(size), which every constructor
                // enforces; reported rather than assumed.
                return Err(Error::CompactRange {
                    size: self.size,
                    expected: self.size.count_ones() as usize,
                    got: self.peaks.len(),
                });
            };
            hash = node_hash(&left, &hash);
            level += 1;
            at >>= 1;
            sink(Node {
                id: NodeId::new(level, at),
                hash,
            });
        }
        self.peaks.push(hash);
        self.size = new_size;
        Ok(())
    }

    /// Appends leaf hashes and returns every node completed, in write order.
    pub fn append<I>(&mut self, leaves: I) -> Result<Vec<Node>, Error>
    where
        I: IntoIterator<Item = Hash>,
    {
        let mut nodes = Vec::new();
        for leaf in leaves {
            self.push(leaf, |n| nodes.push(n))?;
        }
        Ok(nodes)
    }
}

/// Recomputes the root of the log from its entries, streaming, and checks it and the size.
///
/// Memory stays O(log n) whatever the number of entries; it stops as soon as there is one
/// entry more than `size`. For entries that come from a fallible source (a file being decoded),
/// drive an [`Appender`] directly with [`leaf_hash`] and a no-op sink.
pub fn verify_log<I>(entries: I, expected_root: &Hash, size: u64) -> Result<(), Error>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut range = Appender::new();
    for entry in entries {
        if range.size() == size {
            return Err(Error::EntryCount {
                expected: size,
                got: size.saturating_add(1),
            });
        }
        range.push(leaf_hash(entry.as_ref()), |_| {})?;
    }
    if range.size() != size {
        return Err(Error::EntryCount {
            expected: size,
            got: range.size(),
        });
    }
    if range.root() != *expected_root {
        return Err(Error::RootMismatch);
    }
    Ok(())
}

/// The full-subtree nodes that tile `[start, end)`, largest first.
///
/// `start` must be a multiple of a power of two at least `end - start` (true of `0` and of every
/// range the proof algorithms produce); then each set bit `b` of the length, from the top, is one
/// aligned node of level `b`.
pub(crate) fn peak_ids(start: u64, end: u64) -> Vec<NodeId> {
    let len = end.saturating_sub(start);
    let mut ids = Vec::with_capacity(len.count_ones() as usize);
    let mut at = start;
    for level in (0..64u8).rev() {
        let width = 1u64 << level;
        if len & width != 0 {
            ids.push(NodeId::new(level, at >> level));
            at = at.wrapping_add(width);
        }
    }
    ids
}

/// `MTH` of a range from its peaks: `HASH(p0, HASH(p1, … HASH(p[n-2], p[n-1])))`.
pub(crate) fn fold_right(peaks: &[Hash]) -> Option<Hash> {
    let (last, rest) = peaks.split_last()?;
    Some(rest.iter().rev().fold(*last, |acc, p| node_hash(p, &acc)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn appender_root_matches_reference_for_small_sizes() {
        let all = leaves(70);
        let mut app = Appender::new();
        assert_eq!(app.root(), empty_root());
        for (i, leaf) in all.iter().enumerate() {
            app.push(*leaf, |_| {}).unwrap();
            assert_eq!(app.root(), reference::mth(&all[..=i]), "size {}", i + 1);
            assert_eq!(app.peaks().len(), (i + 1).count_ones() as usize);
        }
    }

    #[test]
    fn appender_emits_each_full_subtree_once() {
        let mut app = Appender::new();
        let nodes = app.append(leaves(8)).unwrap();
        let ids: Vec<(u8, u64)> = nodes.iter().map(|n| (n.id.level, n.id.index)).collect();
        assert_eq!(
            ids,
            vec![
                (0, 0),
                (0, 1),
                (1, 0),
                (0, 2),
                (0, 3),
                (1, 1),
                (2, 0),
                (0, 4),
                (0, 5),
                (1, 2),
                (0, 6),
                (0, 7),
                (1, 3),
                (2, 1),
                (3, 0)
            ]
        );
        assert_eq!(nodes.last().map(|n| n.hash), Some(app.root()));
    }

    #[test]
    fn resume_from_store_continues_identically() {
        let all = leaves(300);
        let store = crate::MemoryStore::from_leaf_hashes(all[..211].iter().copied()).unwrap();
        let mut resumed = Appender::resume(&store, 211).unwrap();
        let mut fresh = Appender::new();
        fresh.append(all[..211].iter().copied()).unwrap();
        assert_eq!(resumed, fresh);
        resumed.append(all[211..].iter().copied()).unwrap();
        assert_eq!(resumed.root(), reference::mth(&all));
    }

    #[test]
    fn from_peaks_checks_the_count() {
        assert!(matches!(
            Appender::from_peaks(3, vec![[0u8; 32]]),
            Err(Error::CompactRange {
                size: 3,
                expected: 2,
                got: 1
            })
        ));
    }

    #[test]
    fn a_full_tree_refuses_to_grow() {
        let mut app = Appender::from_peaks(u64::MAX, vec![[1u8; 32]; 64]).unwrap();
        assert!(matches!(app.push([0u8; 32], |_| {}), Err(Error::TreeFull)));
    }

    #[test]
    fn verify_log_streams_and_checks() {
        let entries: Vec<Vec<u8>> = (0..100_000u32)
            .map(|i| format!("entry {i}").into_bytes())
            .collect();
        let mut app = Appender::new();
        for e in &entries {
            app.push(leaf_hash(e), |_| {}).unwrap();
        }
        let root = app.root();
        verify_log(&entries, &root, 100_000).unwrap();

        // Wrong root, one entry changed, one missing, one extra.
        let mut other = root;
        other[31] ^= 1;
        assert!(matches!(
            verify_log(&entries, &other, 100_000),
            Err(Error::RootMismatch)
        ));
        let mut tampered = entries.clone();
        tampered[4242][0] ^= 0x20;
        assert!(matches!(
            verify_log(&tampered, &root, 100_000),
            Err(Error::RootMismatch)
        ));
        assert!(matches!(
            verify_log(&entries[1..], &root, 100_000),
            Err(Error::EntryCount {
                expected: 100_000,
                got: 99_999
            })
        ));
        assert!(matches!(
            verify_log(&entries, &root, 99_999),
            Err(Error::EntryCount {
                expected: 99_999,
                got: 100_000
            })
        ));
        verify_log(std::iter::empty::<&[u8]>(), &empty_root(), 0).unwrap();
    }

    #[test]
    fn peak_ids_tile_the_range() {
        assert_eq!(
            peak_ids(0, 7),
            vec![NodeId::new(2, 0), NodeId::new(1, 2), NodeId::new(0, 6)]
        );
        assert_eq!(peak_ids(24, 31).len(), 3);
        assert!(peak_ids(5, 5).is_empty());
        assert_eq!(peak_ids(0, u64::MAX).len(), 64);
    }
}
