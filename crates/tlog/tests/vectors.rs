//! The published RFC 6962 test vectors of transparency-dev/merkle (the same classic 8-leaf
//! vectors as certificate-transparency-go and Trillian), checked bit for bit against this
//! crate's hashing, roots, proof generation from stored nodes, and proof verification.
//!
//! Every vector lives verbatim in `tests/fixtures/`, with a header naming its repository, path
//! and commit; this file only parses them.

mod common;

use aws_lc_rs::digest::{self, SHA256};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Recording, fixture, hash, hex, unhex};
use custodian_tlog::{
    Appender, Error, Hash, MemoryStore, NodeId, consistency_proof, empty_root, hash_from_slice,
    inclusion_proof, leaf_hash, node_hash, node_hash_bytes, reference, root,
    root_from_inclusion_proof, verify_consistency, verify_inclusion,
};

// ---------------------------------------------------------------------------------------------
// proof/verify_test.go: leaves, roots for sizes 1..8, inclusion and consistency proofs.

struct GoVectors {
    leaves: Vec<Vec<u8>>,
    roots: Vec<Hash>,
    /// (1-based leaf number, tree size, proof), as in the Go file.
    inclusion: Vec<(u64, u64, Vec<Hash>)>,
    /// (size1, size2, proof).
    consistency: Vec<(u64, u64, Vec<Hash>)>,
}

/// Parses the verbatim `var ( ... )` block of proof/verify_test.go.
fn go_vectors() -> GoVectors {
    let text = fixture("merkle-proof-verify_test.go.txt");
    let mut v = GoVectors {
        leaves: Vec::new(),
        roots: Vec::new(),
        inclusion: Vec::new(),
        consistency: Vec::new(),
    };
    let mut section = "";
    let mut current: Option<(u64, u64, Vec<Hash>)> = None;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("//") {
            continue;
        }
        for name in ["inclusionProofs", "consistencyProofs", "roots", "leaves"] {
            if t.starts_with(name) {
                section = name;
            }
        }
        if t.starts_with('{') && (section == "inclusionProofs" || section == "consistencyProofs") {
            let mut parts = t.trim_start_matches('{').splitn(3, ',');
            let a: u64 = parts.next().unwrap().trim().parse().unwrap();
            let b: u64 = parts.next().unwrap().trim().parse().unwrap();
            let entry = (a, b, Vec::new());
            if parts.next().unwrap().trim().starts_with("nil") {
                push_vector(&mut v, section, entry);
            } else {
                current = Some(entry);
            }
        } else if let Some(rest) = t.strip_prefix("dh(\"") {
            let bytes = unhex(&rest[..rest.find('"').unwrap()]);
            match (&mut current, section) {
                (Some(entry), _) => entry.2.push(hash_from_slice(&bytes).unwrap()),
                (None, "roots") => v.roots.push(hash_from_slice(&bytes).unwrap()),
                (None, "leaves") => v.leaves.push(bytes),
                _ => panic!("unexpected line {t}"),
            }
        } else if t.starts_with("}},") {
            let entry = current.take().expect("closing a vector");
            push_vector(&mut v, section, entry);
        }
    }
    assert_eq!(v.leaves.len(), 8);
    assert_eq!(v.roots.len(), 8);
    assert_eq!(v.inclusion.len(), 6);
    assert_eq!(v.consistency.len(), 5);
    v
}

fn push_vector(v: &mut GoVectors, section: &str, entry: (u64, u64, Vec<Hash>)) {
    match section {
        "inclusionProofs" => v.inclusion.push(entry),
        _ => v.consistency.push(entry),
    }
}

fn store_of(leaves: &[Vec<u8>]) -> MemoryStore {
    MemoryStore::from_leaf_hashes(leaves.iter().map(|l| leaf_hash(l))).unwrap()
}

#[test]
fn classic_roots_for_every_size() {
    let v = go_vectors();
    // The bit-exact root the brief quotes, as a guard on the parsing itself.
    assert_eq!(
        hex(&v.roots[7]),
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    );
    let store = store_of(&v.leaves);
    let mut appender = Appender::new();
    for (i, leaf) in v.leaves.iter().enumerate() {
        appender.push(leaf_hash(leaf), |_| {}).unwrap();
        let size = i as u64 + 1;
        let want = v.roots[i];
        assert_eq!(appender.root(), want, "appender root, size {size}");
        assert_eq!(
            root(&store, size).unwrap(),
            want,
            "stored root, size {size}"
        );
        let hashes: Vec<Hash> = v.leaves[..=i].iter().map(|l| leaf_hash(l)).collect();
        assert_eq!(reference::mth(&hashes), want, "reference MTH, size {size}");
    }
}

#[test]
fn classic_inclusion_proofs() {
    let v = go_vectors();
    let store = store_of(&v.leaves);
    let mut checked = 0;
    for (leaf, size, proof) in &v.inclusion {
        if *leaf == 0 {
            // {0, 0, nil}: the Go test's deliberately invalid path (leaf 0 of an empty tree).
            assert!(matches!(
                inclusion_proof(&store, 0, *size),
                Err(Error::IndexOutOfRange { .. })
            ));
            assert!(verify_inclusion(&empty_root(), 0, *size, proof, &empty_root()).is_err());
            continue;
        }
        let index = leaf - 1;
        let root_hash = v.roots[*size as usize - 1];
        let leaf_h = leaf_hash(&v.leaves[index as usize]);

        let generated = inclusion_proof(&store, index, *size).unwrap();
        assert_eq!(&generated, proof, "generated PATH({index}, {size})");
        assert_eq!(
            root_from_inclusion_proof(&leaf_h, index, *size, proof).unwrap(),
            root_hash
        );
        verify_inclusion(&leaf_h, index, *size, proof, &root_hash).unwrap();
        for (what, probe) in inclusion_probes(index, *size, proof, root_hash, leaf_h) {
            assert!(
                verify_inclusion(
                    &probe.leaf,
                    probe.index,
                    probe.size,
                    &probe.proof,
                    &probe.root
                )
                .is_err(),
                "PATH({index}, {size}) verified with {what}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 5);
}

#[test]
fn classic_consistency_proofs() {
    let v = go_vectors();
    let store = store_of(&v.leaves);
    for (size1, size2, proof) in &v.consistency {
        let root1 = v.roots[*size1 as usize - 1];
        let root2 = v.roots[*size2 as usize - 1];
        let generated = consistency_proof(&store, *size1, *size2).unwrap();
        assert_eq!(&generated, proof, "generated PROOF({size1}, {size2})");
        verify_consistency(*size1, *size2, proof, &root1, &root2).unwrap();
        if proof.is_empty() {
            continue;
        }
        for (what, p) in consistency_probes(*size1, *size2, proof, root1, root2) {
            assert!(
                verify_consistency(p.size1, p.size2, &p.proof, &p.root1, &p.root2).is_err(),
                "PROOF({size1}, {size2}) verified with {what}"
            );
        }
    }
}

struct InclusionProbe {
    index: u64,
    size: u64,
    leaf: Hash,
    root: Hash,
    proof: Vec<Hash>,
}

/// The corruptions of the Go test's `corruptInclusionProof` that a typed 32-byte hash can
/// express, plus every single-bit flip of every proof element (the Go test flips one bit).
fn inclusion_probes(
    index: u64,
    size: u64,
    proof: &[Hash],
    root: Hash,
    leaf: Hash,
) -> Vec<(String, InclusionProbe)> {
    let some = hash("abacaba000000000000000000000000000000000000000000060061e00123456");
    let base = || InclusionProbe {
        index,
        size,
        leaf,
        root,
        proof: proof.to_vec(),
    };
    let mut probes = vec![
        (
            "index - 1",
            InclusionProbe {
                index: index.wrapping_sub(1),
                ..base()
            },
        ),
        (
            "index + 1",
            InclusionProbe {
                index: index + 1,
                ..base()
            },
        ),
        (
            "index ^ 2",
            InclusionProbe {
                index: index ^ 2,
                ..base()
            },
        ),
        (
            "size * 2",
            InclusionProbe {
                size: size * 2,
                ..base()
            },
        ),
        (
            "size / 2",
            InclusionProbe {
                size: size / 2,
                ..base()
            },
        ),
        (
            "wrong leaf",
            InclusionProbe {
                leaf: leaf_hash(b"WrongLeaf"),
                ..base()
            },
        ),
        (
            "empty root",
            InclusionProbe {
                root: empty_root(),
                ..base()
            },
        ),
        (
            "random root",
            InclusionProbe {
                root: some,
                ..base()
            },
        ),
        (
            "trailing root",
            InclusionProbe {
                proof: [proof, &[root]].concat(),
                ..base()
            },
        ),
        (
            "preceding root",
            InclusionProbe {
                proof: [&[root], proof].concat(),
                ..base()
            },
        ),
    ]
    .into_iter()
    .map(|(w, p)| (w.to_owned(), p))
    .collect::<Vec<_>>();
    if let Some((_, rest)) = proof.split_last() {
        probes.push((
            "removed component".into(),
            InclusionProbe {
                proof: rest.to_vec(),
                ..base()
            },
        ));
    }
    if proof.len() > 1 {
        let inserted = [&proof[..1], &[some], &proof[1..]].concat();
        probes.push((
            "inserted component".into(),
            InclusionProbe {
                proof: inserted,
                ..base()
            },
        ));
    }
    for i in 0..proof.len() {
        for bit in 0..256 {
            let mut p = proof.to_vec();
            p[i][bit / 8] ^= 1 << (bit % 8);
            probes.push((
                format!("proof[{i}] bit {bit} flipped"),
                InclusionProbe { proof: p, ..base() },
            ));
        }
    }
    probes
}

struct ConsistencyProbe {
    size1: u64,
    size2: u64,
    root1: Hash,
    root2: Hash,
    proof: Vec<Hash>,
}

/// The Go test's `corruptConsistencyProof`, as far as typed hashes allow, plus every bit flip.
fn consistency_probes(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: Hash,
    root2: Hash,
) -> Vec<(String, ConsistencyProbe)> {
    let base = || ConsistencyProbe {
        size1,
        size2,
        root1,
        root2,
        proof: proof.to_vec(),
    };
    let wrong = leaf_hash(b"WrongRoot");
    let mut probes = vec![
        (
            "size1 - 1",
            ConsistencyProbe {
                size1: size1 - 1,
                ..base()
            },
        ),
        (
            "size1 + 1",
            ConsistencyProbe {
                size1: size1 + 1,
                ..base()
            },
        ),
        (
            "size1 ^ 2",
            ConsistencyProbe {
                size1: size1 ^ 2,
                ..base()
            },
        ),
        (
            "size2 * 2",
            ConsistencyProbe {
                size2: size2 * 2,
                ..base()
            },
        ),
        (
            "size2 / 2",
            ConsistencyProbe {
                size2: size2 / 2,
                ..base()
            },
        ),
        (
            "wrong root1",
            ConsistencyProbe {
                root1: wrong,
                ..base()
            },
        ),
        (
            "wrong root2",
            ConsistencyProbe {
                root2: wrong,
                ..base()
            },
        ),
        (
            "swapped roots",
            ConsistencyProbe {
                root1: root2,
                root2: root1,
                ..base()
            },
        ),
        (
            "empty proof",
            ConsistencyProbe {
                proof: Vec::new(),
                ..base()
            },
        ),
        (
            "trailing root1",
            ConsistencyProbe {
                proof: [proof, &[root1]].concat(),
                ..base()
            },
        ),
        (
            "trailing root2",
            ConsistencyProbe {
                proof: [proof, &[root2]].concat(),
                ..base()
            },
        ),
        (
            "preceding root1",
            ConsistencyProbe {
                proof: [&[root1], proof].concat(),
                ..base()
            },
        ),
        (
            "preceding root2",
            ConsistencyProbe {
                proof: [&[root2], proof].concat(),
                ..base()
            },
        ),
        (
            "preceding proof[0]",
            ConsistencyProbe {
                proof: [&proof[..1], proof].concat(),
                ..base()
            },
        ),
        (
            "truncated proof",
            ConsistencyProbe {
                proof: proof[..proof.len() - 1].to_vec(),
                ..base()
            },
        ),
    ]
    .into_iter()
    .map(|(w, p)| (w.to_owned(), p))
    .collect::<Vec<_>>();
    for i in 0..proof.len() {
        for bit in 0..256 {
            let mut p = proof.to_vec();
            p[i][bit / 8] ^= 1 << (bit % 8);
            probes.push((
                format!("proof[{i}] bit {bit} flipped"),
                ConsistencyProbe { proof: p, ..base() },
            ));
        }
    }
    probes
}

// ---------------------------------------------------------------------------------------------
// testonly/constants.go: every full-subtree node, every root, every compact range of size 0..8.

/// The `hd("...")` arguments of one Go function body in the constants fixture.
fn hd_values(text: &str, func: &str) -> Vec<Vec<Vec<u8>>> {
    let start = text.find(&format!("func {func}()")).expect("function");
    let body = &text[start..];
    let body = &body[..body.find("\n}\n").expect("function end")];
    // Groups are separated by "}, {" in NodeHashes; other functions have one group.
    body.split("}, {")
        .map(|group| {
            group
                .split("hd(\"")
                .skip(1)
                .map(|s| unhex(&s[..s.find('"').unwrap()]))
                .collect()
        })
        .collect()
}

#[test]
fn constants_node_hashes_roots_and_compact_ranges() {
    let text = fixture("merkle-testonly-constants.go.txt");
    let inputs = hd_values(&text, "LeafInputs").remove(0);
    let levels = hd_values(&text, "NodeHashes");
    let roots = hd_values(&text, "RootHashes").remove(0);
    assert_eq!(inputs.len(), 8);
    assert_eq!(
        levels.iter().map(Vec::len).collect::<Vec<_>>(),
        [8, 4, 2, 1]
    );
    assert_eq!(roots.len(), 8, "sizes 1..8; size 0 is EmptyRootHash()");

    let store = store_of(&inputs);
    for (level, hashes) in levels.iter().enumerate() {
        for (index, want) in hashes.iter().enumerate() {
            let id = NodeId::new(level as u8, index as u64);
            assert_eq!(
                store.get(id).map(|h| h.to_vec()).as_ref(),
                Some(want),
                "node {id:?}"
            );
        }
    }
    // EmptyRootHash() and RootHashes()[1..].
    let empty = hd_values(&text, "EmptyRootHash").remove(0).remove(0);
    assert_eq!(root(&store, 0).unwrap().to_vec(), empty);
    assert_eq!(empty_root().to_vec(), empty);
    for (i, want) in roots.iter().enumerate() {
        assert_eq!(
            &root(&store, i as u64 + 1).unwrap().to_vec(),
            want,
            "root of size {}",
            i + 1
        );
    }

    // CompactTrees(): the peaks of every size, written as nh[level][index].
    let start = text.find("func CompactTrees()").unwrap();
    let body = &text[start..];
    let body = &body[..body.find("\n}\n").unwrap()];
    let mut sizes = 0;
    let mut appender = Appender::new();
    for line in body
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("nil,") || l.starts_with("{nh"))
    {
        let want: Vec<Vec<u8>> = line
            .split("nh[")
            .skip(1)
            .map(|s| {
                let level: usize = s[..s.find(']').unwrap()].parse().unwrap();
                let rest = &s[s.find("][").unwrap() + 2..];
                let index: usize = rest[..rest.find(']').unwrap()].parse().unwrap();
                levels[level][index].clone()
            })
            .collect();
        let got: Vec<Vec<u8>> = appender.peaks().iter().map(|h| h.to_vec()).collect();
        assert_eq!(got, want, "compact range of size {}", appender.size());
        if let Some(input) = inputs.get(appender.size() as usize) {
            appender.push(leaf_hash(input), |_| {}).unwrap();
        }
        sizes += 1;
    }
    assert_eq!(sizes, 9);
}

// ---------------------------------------------------------------------------------------------
// rfc6962/rfc6962_test.go: the hasher's four vectors.

#[test]
fn rfc6962_hasher_vectors() {
    let text = fixture("merkle-rfc6962_test.go.txt");
    let wants: Vec<&str> = text
        .split("want: \"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    assert_eq!(wants.len(), 4);
    assert_eq!(hex(&empty_root()), wants[0], "RFC6962 Empty");
    assert_eq!(hex(&leaf_hash(b"")), wants[1], "RFC6962 Empty Leaf");
    assert_eq!(hex(&leaf_hash(b"L123456")), wants[2], "RFC6962 Leaf");
    assert_eq!(
        hex(&node_hash_bytes(b"N123", b"N456")),
        wants[3],
        "RFC6962 Node"
    );
}

// ---------------------------------------------------------------------------------------------
// proof/proof_test.go: which stored nodes a proof is built from.

struct NodeCase {
    a: u64,
    b: u64,
    want_err: bool,
    ids: Vec<NodeId>,
}

/// Parses the `{size: .., index: .., want: ...}` / `{size1: .., size2: ..}` case lists.
fn node_cases(section: &str) -> Vec<NodeCase> {
    let (first, second) = if section.contains("size1:") {
        ("size1: ", "size2: ")
    } else {
        ("size: ", "index: ")
    };
    section
        .split("\t\t{size")
        .skip(1)
        .map(|case| {
            let case = format!("{{size{case}");
            let num = |key: &str| -> u64 {
                let at = &case[case.find(key).unwrap() + key.len()..];
                at[..at.find(|c: char| !c.is_ascii_digit()).unwrap()]
                    .parse()
                    .unwrap()
            };
            let ids = case
                .split("id(")
                .skip(1)
                .map(|s| {
                    let inner = &s[..s.find(')').unwrap()];
                    let (l, i) = inner.split_once(", ").unwrap();
                    NodeId::new(l.parse().unwrap(), i.parse().unwrap())
                })
                .collect();
            NodeCase {
                a: num(first),
                b: num(second),
                want_err: case.contains("wantErr: true"),
                ids,
            }
        })
        .collect()
}

#[test]
fn proofs_read_exactly_the_reference_nodes() {
    let text = fixture("merkle-proof-proof_test.go.txt");
    let (incl, cons) = text
        .split_once("// --- TestConsistency ---")
        .expect("two sections");
    let store =
        MemoryStore::from_leaf_hashes((0..128u64).map(|i| leaf_hash(&i.to_be_bytes()))).unwrap();

    let cases = node_cases(incl);
    assert_eq!(cases.len(), 25);
    for c in &cases {
        let (size, index) = (c.a, c.b);
        let reader = Recording::new(&store, size);
        let got = inclusion_proof(&reader, index, size);
        if c.want_err {
            assert!(got.is_err(), "Inclusion({index}, {size}) accepted");
            continue;
        }
        let proof = got.unwrap();
        let (calls, mut read) = reader.take();
        let mut want = c.ids.clone();
        read.sort();
        want.sort();
        assert_eq!(read, want, "nodes read for Inclusion({index}, {size})");
        assert!(calls <= 1, "one batched read, got {calls}");
        let hashes: Vec<Hash> = (0..size).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        assert_eq!(proof, reference::path(index, &hashes));
    }

    let cases = node_cases(cons);
    assert_eq!(cases.len(), 27);
    for c in &cases {
        let (size1, size2) = (c.a, c.b);
        let reader = Recording::new(&store, size2);
        let got = consistency_proof(&reader, size1, size2);
        if c.want_err {
            assert!(got.is_err(), "Consistency({size1}, {size2}) accepted");
            continue;
        }
        let proof = got.unwrap();
        let (_, mut read) = reader.take();
        let mut want = c.ids.clone();
        read.sort();
        want.sort();
        assert_eq!(read, want, "nodes read for Consistency({size1}, {size2})");
        let hashes: Vec<Hash> = (0..size2).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        assert_eq!(proof, reference::proof(size1, &hashes));
    }
}

// ---------------------------------------------------------------------------------------------
// testonly/vectors_test.go: the draft-ietf-plants-merkle-tree-certs subtree vectors.

fn is_subtree_valid(start: u64, end: u64) -> bool {
    start < end && (start == 0 || start.is_multiple_of((end - start).next_power_of_two()))
}

#[test]
fn subtree_hash_and_inclusion_vectors() {
    let text = fixture("merkle-testonly-vectors_test.go.txt");
    let wants: Vec<&str> = text
        .split("const want = \"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    assert_eq!(wants.len(), 2);
    let max: u64 = 130;
    let d: Vec<Hash> = (0..max).map(|i| leaf_hash(&[i as u8])).collect();

    let mut hashes = digest::Context::new(&SHA256);
    let mut proofs = digest::Context::new(&SHA256);
    let mut proof_count = 0;
    for end in 1..=max {
        for start in 0..end {
            if !is_subtree_valid(start, end) {
                continue;
            }
            // The subtree [start, end) is a tree of its own over D[start:end]; build it the way
            // the log would and ask the storage-backed functions.
            let sub = &d[start as usize..end as usize];
            let store = MemoryStore::from_leaf_hashes(sub.iter().copied()).unwrap();
            let len = end - start;
            let head = root(&store, len).unwrap();
            hashes.update(format!("[{start}, {end}) {}\n", hex(&head)).as_bytes());
            for index in start..end {
                let proof = inclusion_proof(&store, index - start, len).unwrap();
                let mut line = format!("{index} [{start}, {end})");
                for h in &proof {
                    line.push(' ');
                    line.push_str(&hex(h));
                }
                line.push('\n');
                proofs.update(line.as_bytes());
                proof_count += 1;
            }
        }
    }
    assert_eq!(
        hex(hashes.finish().as_ref()),
        wants[0],
        "subtree hash vector"
    );
    assert_eq!(
        hex(proofs.finish().as_ref()),
        wants[1],
        "subtree inclusion proof vector"
    );
    assert_eq!(proof_count, 12_807);
}

// ---------------------------------------------------------------------------------------------
// testdata/: the 201 JSON probes, each with its wantErr.

struct Case {
    path: String,
    json: serde_json::Value,
}

fn testdata() -> Vec<Case> {
    let text = fixture("transparency-dev-merkle-testdata.txt");
    let mut cases = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("=== ") {
            if let Some((path, body)) = current.take() {
                cases.push(Case {
                    json: serde_json::from_str(&body).unwrap(),
                    path,
                });
            }
            let path = header.split(" @ ").next().unwrap().to_owned();
            current = Some((path, String::new()));
        } else if let Some((_, body)) = &mut current {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((path, body)) = current {
        cases.push(Case {
            json: serde_json::from_str(&body).unwrap(),
            path,
        });
    }
    cases
}

/// Why a probe was rejected before any verification: the JSON carries a value that is not a
/// 32-byte SHA-256 hash (upstream probes "WrongLeaf", "", "don't care 1", ...).
const NOT_A_HASH: &str = "not a 32-byte hash";

fn b64_hash(v: &serde_json::Value) -> Result<Hash, String> {
    let s = v.as_str().ok_or("hash is not a string")?;
    let bytes = STANDARD.decode(s).map_err(|e| e.to_string())?;
    hash_from_slice(&bytes).map_err(|_| NOT_A_HASH.to_owned())
}

fn b64_proof(v: &serde_json::Value) -> Result<Vec<Hash>, String> {
    match v {
        serde_json::Value::Null => Ok(Vec::new()),
        serde_json::Value::Array(items) => items.iter().map(b64_hash).collect(),
        _ => Err("proof is not a list".into()),
    }
}

fn run_case(j: &serde_json::Value) -> Result<(), String> {
    if j.get("size1").is_some() {
        let size1 = j["size1"].as_u64().unwrap();
        let size2 = j["size2"].as_u64().unwrap();
        let root1 = b64_hash(&j["root1"])?;
        let root2 = b64_hash(&j["root2"])?;
        let proof = b64_proof(&j["proof"])?;
        verify_consistency(size1, size2, &proof, &root1, &root2).map_err(|e| e.to_string())
    } else {
        let index = j
            .get("leafIdx")
            .or_else(|| j.get("leafIndex"))
            .unwrap()
            .as_u64()
            .unwrap();
        let size = j["treeSize"].as_u64().unwrap();
        let root = b64_hash(&j["root"])?;
        let leaf = b64_hash(&j["leafHash"])?;
        let proof = b64_proof(&j["proof"])?;
        verify_inclusion(&leaf, index, size, &proof, &root).map_err(|e| e.to_string())
    }
}

/// Upstream "valid" probes this crate deliberately rejects: equal tree sizes with equal "roots"
/// that are 12-byte strings ("don't care 1"), which upstream never inspects. Here a root is a
/// SHA-256 hash or it is not a root; the same cases with real hashes are checked below.
const DEVIATIONS: [&str; 6] = [
    "sizes are equal and proof is empty where both sizes are one",
    "sizes are equal and proof is empty where both sizes are zero",
    "sizes are equal and proof is not empty where both sizes are one",
    "sizes are equal and proof is not empty where both sizes are zero",
    "sizes are equal (one) and proof is empty",
    "sizes are equal (zero) and proof is empty",
];

#[test]
fn testdata_probes_all_agree() {
    let cases = testdata();
    assert_eq!(cases.len(), 201);
    let (mut accepted, mut rejected, mut deviations) = (0, 0, 0);
    for case in &cases {
        let want_err = case.json["wantErr"].as_bool().unwrap();
        let desc = case.json["desc"].as_str().unwrap();
        let got = run_case(&case.json);
        match (want_err, &got) {
            (true, Err(_)) => rejected += 1,
            (false, Ok(())) => accepted += 1,
            (false, Err(e)) if DEVIATIONS.contains(&desc) && e == NOT_A_HASH => deviations += 1,
            _ => panic!("{}: wantErr {want_err}, got {got:?}", case.path),
        }
    }
    assert_eq!((accepted, rejected, deviations), (11, 184, 6));

    // The deviating cases with genuine hashes: equal non-zero sizes and equal roots verify with
    // the empty proof; size 0 is rejected outright (a proof from the empty tree proves nothing).
    let h = leaf_hash(b"x");
    verify_consistency(1, 1, &[], &h, &h).unwrap();
    assert!(matches!(
        verify_consistency(0, 0, &[], &empty_root(), &empty_root()),
        Err(Error::InvalidRange { .. })
    ));
    assert!(verify_consistency(1, 1, &[h], &h, &h).is_err());
    assert!(verify_consistency(1, 1, &[], &h, &node_hash(&h, &h)).is_err());
}
