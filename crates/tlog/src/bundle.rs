//! Audit bundles: a log exported with its signed checkpoint, verifiable offline.
//!
//! ```text
//! custodian-audit-bundle v1
//! <checkpoint: a signed note, ending with its signature lines>
//! entries
//! <index> <base64 entry> <base64 stored leaf hash>
//! <index> - <base64 stored leaf hash>
//! ...
//! ```
//!
//! An entry written as `-` had its body destroyed by audit retention: only its leaf hash is
//! left, which still places it in the signed tree but says nothing of what it held. The
//! verifier counts such entries, so a report shows how much of a log is hashes only.
//!
//! Verification recomputes every leaf hash and compares it with the one the server stored (an
//! entry edited after it was logged is named by index), rebuilds the tree, checks that its root
//! and size are the signed checkpoint's, and, given a previously trusted checkpoint, that the
//! log still extends it (otherwise it reports a fork with both roots).

use std::io::BufRead;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::checkpoint::{Checkpoint, open};
use crate::compact::Appender;
use crate::hash::{Hash, hash_from_slice, leaf_hash};
use crate::note::Verifier;

const MAGIC: &str = "custodian-audit-bundle v1";
const ENTRIES: &str = "entries";
/// The entry field of an entry whose body audit retention destroyed.
pub const DESTROYED: &str = "-";

/// Why a bundle failed verification; each names what an auditor must look at.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("line {line}: {what}")]
    Malformed { line: usize, what: String },
    #[error("the checkpoint does not verify with this key: {0}")]
    Signature(String),
    #[error(
        "entry {index} does not match the leaf hash stored for it: it was changed after it was logged"
    )]
    EditedEntry { index: u64 },
    #[error("entry {expected} is missing (found entry {found} in its place)")]
    MissingEntry { expected: u64, found: u64 },
    #[error("the bundle ends after {got} entries; the checkpoint covers {expected}")]
    Truncated { expected: u64, got: u64 },
    #[error(
        "the entries do not reproduce the signed root: checkpoint {} at size {size}, entries give {}",
        STANDARD.encode(signed), STANDARD.encode(computed)
    )]
    RootMismatch {
        size: u64,
        signed: Hash,
        computed: Hash,
    },
    #[error(
        "FORK: the trusted checkpoint has root {} at size {size}, but this log has root {} there",
        STANDARD.encode(trusted), STANDARD.encode(found)
    )]
    Fork {
        size: u64,
        trusted: Hash,
        found: Hash,
    },
    #[error("the trusted checkpoint (size {trusted}) is newer than this bundle (size {bundle})")]
    PreviousAhead { trusted: u64, bundle: u64 },
    #[error("the checkpoints are of different logs: {trusted} and {bundle}")]
    OtherLog { trusted: String, bundle: String },
    #[error("reading the bundle failed: {0}")]
    Io(String),
}

/// What a successful verification established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub checkpoint: Checkpoint,
    /// Entries whose bodies were destroyed by retention: verified by their leaf hash alone.
    pub destroyed: u64,
}

/// Writes a bundle's header and checkpoint; entry lines follow via [`entry_line`].
pub fn header(signed_checkpoint: &str) -> String {
    format!("{MAGIC}\n{signed_checkpoint}{ENTRIES}\n")
}

/// One entry line of a bundle; `None` for an entry whose body was destroyed.
pub fn entry_line(index: u64, entry: Option<&[u8]>, stored_leaf: &Hash) -> String {
    format!(
        "{index} {} {}\n",
        entry.map_or_else(|| DESTROYED.to_owned(), |e| STANDARD.encode(e)),
        STANDARD.encode(stored_leaf)
    )
}

/// Verifies a bundle read from `input`. `previous` is a signed checkpoint trusted earlier;
/// `on_entry` is called after each entry (for progress).
pub fn verify(
    input: impl BufRead,
    verifier: &Verifier,
    previous: Option<&str>,
    mut on_entry: impl FnMut(u64),
) -> Result<Verified, BundleError> {
    let mut lines = input.lines().enumerate();
    let mut next_line = |what: &str| -> Result<(usize, String), BundleError> {
        match lines.next() {
            Some((i, Ok(text))) => Ok((i + 1, text)),
            Some((_, Err(e))) => Err(BundleError::Io(e.to_string())),
            None => Err(BundleError::Malformed {
                line: 0,
                what: format!("the bundle ends before {what}"),
            }),
        }
    };
    let (_, magic) = next_line("its header")?;
    if magic != MAGIC {
        return Err(BundleError::Malformed {
            line: 1,
            what: format!("not a custodian audit bundle (expected {MAGIC:?})"),
        });
    }
    let mut note = String::new();
    loop {
        let (_, text) = next_line("the entries")?;
        if text == ENTRIES {
            break;
        }
        note.push_str(&text);
        note.push('\n');
    }
    let checkpoint = open(&note, verifier).map_err(|e| BundleError::Signature(e.to_string()))?;
    let trusted = previous
        .map(|p| {
            open(p, verifier)
                .map_err(|e| BundleError::Signature(format!("previous checkpoint: {e}")))
        })
        .transpose()?;
    if let Some(t) = &trusted {
        if t.origin != checkpoint.origin {
            return Err(BundleError::OtherLog {
                trusted: t.origin.clone(),
                bundle: checkpoint.origin.clone(),
            });
        }
        if t.size > checkpoint.size {
            return Err(BundleError::PreviousAhead {
                trusted: t.size,
                bundle: checkpoint.size,
            });
        }
    }
    let check_fork = |appender: &Appender| -> Result<(), BundleError> {
        match &trusted {
            Some(t) if t.size == appender.size() && t.root != appender.root() => {
                Err(BundleError::Fork {
                    size: t.size,
                    trusted: t.root,
                    found: appender.root(),
                })
            }
            _ => Ok(()),
        }
    };
    let mut appender = Appender::new();
    let mut destroyed = 0;
    check_fork(&appender)?;
    while appender.size() < checkpoint.size {
        let expected = appender.size();
        let (line, text) = match lines.next() {
            Some((i, Ok(text))) => (i + 1, text),
            Some((_, Err(e))) => return Err(BundleError::Io(e.to_string())),
            None => {
                return Err(BundleError::Truncated {
                    expected: checkpoint.size,
                    got: expected,
                });
            }
        };
        let bad = |what: &str| BundleError::Malformed {
            line,
            what: what.to_owned(),
        };
        let mut parts = text.split(' ');
        let (Some(index), Some(entry), Some(leaf), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(
                "an entry line is `<index> <base64 entry> <base64 leaf hash>`",
            ));
        };
        let index: u64 = index
            .parse()
            .map_err(|_| bad("the index is not a number"))?;
        if index != expected {
            return Err(BundleError::MissingEntry {
                expected,
                found: index,
            });
        }
        let stored = STANDARD
            .decode(leaf)
            .ok()
            .and_then(|l| hash_from_slice(&l).ok())
            .ok_or_else(|| bad("the leaf hash is not a base64 SHA-256 hash"))?;
        if entry == DESTROYED {
            destroyed += 1;
        } else {
            let entry = STANDARD
                .decode(entry)
                .map_err(|_| bad("the entry is not base64"))?;
            if leaf_hash(&entry) != stored {
                return Err(BundleError::EditedEntry { index });
            }
        }
        appender
            .push(stored, |_| {})
            .map_err(|e| bad(&e.to_string()))?;
        check_fork(&appender)?;
        on_entry(index);
    }
    if appender.root() != checkpoint.root {
        return Err(BundleError::RootMismatch {
            size: checkpoint.size,
            signed: checkpoint.root,
            computed: appender.root(),
        });
    }
    Ok(Verified {
        checkpoint,
        destroyed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::CheckpointSigner;

    fn signer() -> CheckpointSigner {
        CheckpointSigner::from_seed("custodian-test", &[3; 32]).unwrap()
    }

    fn bundle(entries: &[Vec<u8>], size: u64) -> (String, String) {
        let s = signer();
        let mut app = Appender::new();
        for e in &entries[..size as usize] {
            app.push(leaf_hash(e), |_| {}).unwrap();
        }
        let note = s
            .sign(&Checkpoint::new("custodian/test/acme", size, app.root()))
            .unwrap();
        let mut text = header(&note);
        for (i, e) in entries[..size as usize].iter().enumerate() {
            text.push_str(&entry_line(i as u64, Some(e), &leaf_hash(e)));
        }
        (text, note)
    }

    fn entries(n: u32, tag: &str) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("{tag} {i}").into_bytes()).collect()
    }

    fn check(text: &str, previous: Option<&str>) -> Result<Verified, BundleError> {
        verify(text.as_bytes(), signer().verifier(), previous, |_| {})
    }

    #[test]
    fn a_faithful_bundle_verifies_and_extends_its_past() {
        let e = entries(20, "e");
        let (text, _) = bundle(&e, 20);
        let (_, old_note) = bundle(&e, 7);
        let mut seen = 0;
        let v = verify(
            text.as_bytes(),
            signer().verifier(),
            Some(&old_note),
            |_| seen += 1,
        )
        .unwrap();
        assert_eq!(v.checkpoint.size, 20);
        assert_eq!(seen, 20);
        let (empty, _) = bundle(&e, 0);
        assert_eq!(check(&empty, None).unwrap().checkpoint.size, 0);
    }

    #[test]
    fn destroyed_bodies_verify_by_their_leaf_hash_and_are_counted() {
        let e = entries(10, "e");
        let (text, _) = bundle(&e, 10);
        let mut shredded = text.clone();
        for i in 0..4 {
            shredded = shredded.replace(
                &entry_line(i, Some(&e[i as usize]), &leaf_hash(&e[i as usize])),
                &entry_line(i, None, &leaf_hash(&e[i as usize])),
            );
        }
        assert!(shredded.contains("\n0 - "));
        let v = check(&shredded, None).unwrap();
        assert_eq!((v.checkpoint.size, v.destroyed), (10, 4));
        assert_eq!(check(&text, None).unwrap().destroyed, 0);
        // A destroyed entry still has to carry the leaf the tree was built from.
        let forged = shredded.replace(
            &entry_line(2, None, &leaf_hash(&e[2])),
            &entry_line(2, None, &leaf_hash(b"something else")),
        );
        assert!(matches!(
            check(&forged, None),
            Err(BundleError::RootMismatch { size: 10, .. })
        ));
    }

    #[test]
    fn an_edited_entry_is_named() {
        let e = entries(10, "e");
        let (text, _) = bundle(&e, 10);
        let edited = text.replace(
            &entry_line(4, Some(&e[4]), &leaf_hash(&e[4])),
            &entry_line(4, Some(b"e 4 (edited)"), &leaf_hash(&e[4])),
        );
        assert_eq!(
            check(&edited, None),
            Err(BundleError::EditedEntry { index: 4 })
        );
        // Editing the stored leaf hash too cannot reproduce the signed root.
        let both = text.replace(
            &entry_line(4, Some(&e[4]), &leaf_hash(&e[4])),
            &entry_line(4, Some(b"x"), &leaf_hash(b"x")),
        );
        assert!(matches!(
            check(&both, None),
            Err(BundleError::RootMismatch { size: 10, .. })
        ));
    }

    #[test]
    fn truncation_gaps_and_garbage_are_reported() {
        let e = entries(10, "e");
        let (text, _) = bundle(&e, 10);
        let cut: String = text
            .lines()
            .take(text.lines().count() - 3)
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            check(&cut, None),
            Err(BundleError::Truncated {
                expected: 10,
                got: 7
            })
        );
        let gap = text.replace(&entry_line(3, Some(&e[3]), &leaf_hash(&e[3])), "");
        assert_eq!(
            check(&gap, None),
            Err(BundleError::MissingEntry {
                expected: 3,
                found: 4
            })
        );
        assert!(matches!(
            check("hello\n", None),
            Err(BundleError::Malformed { line: 1, .. })
        ));
        let junk = text.replace(
            &entry_line(2, Some(&e[2]), &leaf_hash(&e[2])),
            "2 !!! ???\n",
        );
        assert!(matches!(
            check(&junk, None),
            Err(BundleError::Malformed { .. })
        ));
    }

    #[test]
    fn a_wrong_key_or_forged_checkpoint_fails() {
        let e = entries(5, "e");
        let (text, _) = bundle(&e, 5);
        let other = CheckpointSigner::from_seed("custodian-test", &[4; 32]).unwrap();
        assert!(matches!(
            verify(text.as_bytes(), other.verifier(), None, |_| {}),
            Err(BundleError::Signature(_))
        ));
        let forged = text.replacen("\n5\n", "\n4\n", 1);
        assert!(matches!(
            check(&forged, None),
            Err(BundleError::Signature(_))
        ));
    }

    #[test]
    fn a_fork_from_the_trusted_checkpoint_is_reported_with_both_roots() {
        let honest = entries(12, "e");
        let (_, trusted) = bundle(&honest, 8);
        let mut rewritten = honest.clone();
        rewritten[5] = b"history rewritten".to_vec();
        let (text, _) = bundle(&rewritten, 12);
        match check(&text, Some(&trusted)) {
            Err(BundleError::Fork {
                size,
                trusted,
                found,
            }) => {
                assert_eq!(size, 8);
                assert_ne!(trusted, found);
                let msg = BundleError::Fork {
                    size,
                    trusted,
                    found,
                }
                .to_string();
                assert!(msg.starts_with("FORK: the trusted checkpoint has root"));
            }
            other => panic!("expected a fork, got {other:?}"),
        }
        let (newer, _) = bundle(&honest, 4);
        let (_, ahead) = bundle(&honest, 9);
        assert_eq!(
            check(&newer, Some(&ahead)),
            Err(BundleError::PreviousAhead {
                trusted: 9,
                bundle: 4
            })
        );
    }
}
