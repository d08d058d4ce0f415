//! C2SP tlog checkpoints (<https://c2sp.org/tlog-checkpoint>): the signed tree heads of the log.
//!
//! A checkpoint is a signed note whose text is the log's origin line, the tree size in decimal
//! (no leading zeros), the base64 root hash, then optional non-empty extension lines. Parsing is
//! strict: anything else is [`Error::MalformedCheckpoint`], so two different byte strings never
//! open to the same checkpoint.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::Error;
use crate::hash::{HASH_LEN, Hash};
use crate::note::{NoteSigner, Verifier};

/// A log's tree head: what a checkpoint note says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `custodian.example/audit/<tenant>`.
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// `MTH(D[0:size])`.
    pub root: Hash,
    /// Optional extension lines, each non-empty (the specification discourages them).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Self {
        Checkpoint {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text: `<origin>\n<size>\n<base64 root>\n` and one line per extension.
    pub fn to_body(&self) -> Result<String, Error> {
        check_line(&self.origin, "the origin must be a non-empty line")?;
        for ext in &self.extensions {
            check_line(ext, "an extension must be a non-empty line")?;
        }
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for ext in &self.extensions {
            body.push_str(ext);
            body.push('\n');
        }
        Ok(body)
    }

    /// Parses a note text as a checkpoint (the signature must already have been checked; see
    /// [`open`]).
    pub fn parse_body(text: &str) -> Result<Self, Error> {
        let Some(text) = text.strip_suffix('\n') else {
            return Err(Error::MalformedCheckpoint(
                "the text must end with a newline",
            ));
        };
        let mut lines = text.split('\n');
        let origin = lines.next().unwrap_or_default();
        let size = lines
            .next()
            .ok_or(Error::MalformedCheckpoint("missing tree size line"))?;
        let root = lines
            .next()
            .ok_or(Error::MalformedCheckpoint("missing root hash line"))?;
        check_line(origin, "the origin must be a non-empty line")?;
        let size = parse_size(size)?;
        let root = STANDARD
            .decode(root)
            .map_err(|_| Error::MalformedCheckpoint("the root hash is not standard base64"))?;
        let root = <[u8; HASH_LEN]>::try_from(root.as_slice())
            .map_err(|_| Error::MalformedCheckpoint("the root hash is not 32 bytes"))?;
        let extensions = lines
            .map(|ext| {
                check_line(ext, "an extension must be a non-empty line")?;
                Ok(ext.to_owned())
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

fn check_line(line: &str, what: &'static str) -> Result<(), Error> {
    if line.is_empty() || line.chars().any(|c| c < '\u{20}') {
        return Err(Error::MalformedCheckpoint(what));
    }
    Ok(())
}

/// ASCII decimal, no sign, no leading zero except for `0` itself, at most `u64::MAX`.
fn parse_size(s: &str) -> Result<u64, Error> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::MalformedCheckpoint(
            "the tree size is not a decimal number",
        ));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(Error::MalformedCheckpoint(
            "the tree size has a leading zero",
        ));
    }
    s.parse()
        .map_err(|_| Error::MalformedCheckpoint("the tree size does not fit 64 bits"))
}

/// Signs checkpoints with the log's Ed25519 key.
#[derive(Debug)]
pub struct CheckpointSigner {
    signer: NoteSigner,
}

impl CheckpointSigner {
    /// A signer named `name` (by convention the log's origin) from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, Error> {
        Ok(CheckpointSigner {
            signer: NoteSigner::from_seed(name, seed)?,
        })
    }

    /// A signer from a Go-tooling private key string (`PRIVATE+KEY+<name>+<id>+<key>`).
    pub fn from_signer_key(skey: &str) -> Result<Self, Error> {
        Ok(CheckpointSigner {
            signer: NoteSigner::from_signer_key(skey)?,
        })
    }

    /// The signed note for `checkpoint`.
    pub fn sign(&self, checkpoint: &Checkpoint) -> Result<String, Error> {
        self.signer.sign_text(&checkpoint.to_body()?)
    }

    /// The verifier key string to publish.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// The verifier for this signer's key.
    pub fn verifier(&self) -> &Verifier {
        self.signer.verifier()
    }

    /// The underlying note signer, for texts that are not checkpoints.
    pub fn note_signer(&self) -> &NoteSigner {
        &self.signer
    }
}

/// Opens a signed checkpoint note: checks the note grammar and `verifier`'s signature, then
/// parses the text strictly as a checkpoint.
///
/// The origin is returned, not checked: the caller compares it with the log it expects.
pub fn open(note: &str, verifier: &Verifier) -> Result<Checkpoint, Error> {
    Checkpoint::parse_body(verifier.open_text(note)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_canonical_decimal() {
        assert_eq!(parse_size("0").ok(), Some(0));
        assert_eq!(parse_size("10").ok(), Some(10));
        assert_eq!(parse_size("18446744073709551615").ok(), Some(u64::MAX));
        for bad in [
            "",
            "00",
            "01",
            "+1",
            "-1",
            "1 ",
            "0x10",
            "١",
            "18446744073709551616",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn body_round_trip() {
        let mut cp = Checkpoint::new("example.com/log", 9944, [0xab; 32]);
        cp.extensions.push("extra".into());
        let body = cp.to_body().unwrap();
        assert_eq!(
            body,
            "example.com/log\n9944\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\nextra\n"
        );
        assert_eq!(Checkpoint::parse_body(&body).unwrap(), cp);
    }
}
