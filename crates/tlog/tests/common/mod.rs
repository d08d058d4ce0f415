//! Helpers shared by the integration tests: fixture loading, hex, and a node reader that
//! records what the proof code asks storage for.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::path::PathBuf;

use custodian_tlog::{Error, Hash, HashReader, MemoryStore, NodeId};

pub fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hash(hex_str: &str) -> Hash {
    custodian_tlog::hash_from_slice(&unhex(hex_str)).expect("32-byte hash")
}

/// A reader over a [`MemoryStore`] that records every node id requested, counts calls, and
/// refuses (as a test failure) any node that is not a full subtree of `size`.
pub struct Recording<'a> {
    pub inner: &'a MemoryStore,
    pub size: u64,
    pub reads: RefCell<Vec<NodeId>>,
    pub calls: Cell<usize>,
}

impl<'a> Recording<'a> {
    pub fn new(inner: &'a MemoryStore, size: u64) -> Self {
        Recording {
            inner,
            size,
            reads: RefCell::new(Vec::new()),
            calls: Cell::new(0),
        }
    }

    pub fn take(&self) -> (usize, Vec<NodeId>) {
        let calls = self.calls.replace(0);
        (calls, std::mem::take(&mut *self.reads.borrow_mut()))
    }
}

impl HashReader for Recording<'_> {
    fn read_nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Error> {
        self.calls.set(self.calls.get() + 1);
        for id in ids {
            assert!(
                id.is_complete_in(self.size),
                "read node {id:?}, which is not a full subtree of a tree of size {}",
                self.size
            );
        }
        self.reads.borrow_mut().extend_from_slice(ids);
        self.inner.read_nodes(ids)
    }
}
