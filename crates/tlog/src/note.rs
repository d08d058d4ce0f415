//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys: key ids, verifier key
//! strings, signing, and strict opening.
//!
//! A signed note is a UTF-8 text ending in a newline, a blank line, then one line per signature:
//! `— <key name> <base64(key id ‖ signature)>`, the em dash U+2014 followed by a space. The key
//! id is the first four bytes (big-endian) of `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)`, so it
//! commits to the key's name as well as its bytes. The formats are bit-compatible with
//! `golang.org/x/mod/sumdb/note`, which the tests check against its published examples.
//!
//! Opening is strict about the grammar (every malformed line is an error, as in the Go
//! implementation) and about the one key it is given: every signature line carrying that key's
//! name and id must verify, and at least one must be present. Signature lines of other keys
//! (witness cosignatures, a rotated key) are skipped, as the specification requires.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest::{self, SHA256};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::Error;

/// The signature-algorithm byte of an Ed25519 note key.
const ALG_ED25519: u8 = 0x01;
const ED25519_PUBLIC_KEY_LEN: usize = 32;
const ED25519_SIGNATURE_LEN: usize = 64;
/// Start of every signature line: U+2014 EM DASH, then a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// The Go implementation's bound; a note with more signature lines is rejected rather than
/// parsed at unbounded cost.
const MAX_SIGNATURES: usize = 100;

/// The key id of an Ed25519 key under `name`: the first four bytes, big-endian, of
/// `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public_key)`.
pub fn key_id(name: &str, public_key: &[u8; ED25519_PUBLIC_KEY_LEN]) -> u32 {
    let mut ctx = digest::Context::new(&SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[ALG_ED25519]);
    ctx.update(public_key);
    let sum = ctx.finish();
    match sum.as_ref() {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        // A SHA-256 digest always has 32 bytes.
        _ => 0,
    }
}

/// Whether `name` can name a key: non-empty, with neither Unicode white space nor `+` (which
/// separates the fields of a key string). Validity of UTF-8 is given by `&str`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// A key id written as exactly eight hex digits.
fn parse_key_id(hex: &str) -> Option<u32> {
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// Notes are UTF-8 (guaranteed by `&str`) with no ASCII control character but the newline.
fn has_forbidden_control(text: &str) -> bool {
    text.chars().any(|c| c < '\u{20}' && c != '\n')
}

/// The public half of a note key: checks signatures by one named Ed25519 key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    public_key: [u8; ED25519_PUBLIC_KEY_LEN],
}

impl Verifier {
    /// A verifier for the Ed25519 `public_key` under `name`.
    pub fn new(name: &str, public_key: &[u8; ED25519_PUBLIC_KEY_LEN]) -> Result<Self, Error> {
        if !is_valid_key_name(name) {
            return Err(Error::MalformedKey(
                "a key name must be non-empty, without spaces or '+'",
            ));
        }
        Ok(Verifier {
            name: name.to_owned(),
            key_id: key_id(name, public_key),
            public_key: *public_key,
        })
    }

    /// Parses a verifier key string `<name>+<8 hex key id>+<base64(0x01 ‖ public key)>`, and
    /// checks that the key id is the one the name and key produce.
    pub fn parse(vkey: &str) -> Result<Self, Error> {
        let (name, rest) = vkey
            .split_once('+')
            .ok_or(Error::MalformedKey("expected <name>+<key id>+<key>"))?;
        // The key itself is base64, whose alphabet contains '+': split only twice.
        let (hex, key64) = rest
            .split_once('+')
            .ok_or(Error::MalformedKey("expected <name>+<key id>+<key>"))?;
        if !is_valid_key_name(name) {
            return Err(Error::MalformedKey("invalid key name"));
        }
        let id = parse_key_id(hex).ok_or(Error::MalformedKey("the key id is not 8 hex digits"))?;
        let key = STANDARD
            .decode(key64)
            .map_err(|_| Error::MalformedKey("the key is not standard base64"))?;
        let (alg, public_key) = key
            .split_first()
            .ok_or(Error::MalformedKey("the key is empty"))?;
        if *alg != ALG_ED25519 {
            return Err(Error::MalformedKey(
                "unknown key algorithm (only Ed25519, 0x01)",
            ));
        }
        let public_key = <[u8; ED25519_PUBLIC_KEY_LEN]>::try_from(public_key)
            .map_err(|_| Error::MalformedKey("an Ed25519 public key is 32 bytes"))?;
        let verifier = Verifier::new(name, &public_key)?;
        if verifier.key_id != id {
            return Err(Error::MalformedKey(
                "the key id does not match the key name and key",
            ));
        }
        Ok(verifier)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn public_key(&self) -> &[u8; ED25519_PUBLIC_KEY_LEN] {
        &self.public_key
    }

    /// The verifier key string, the form [`Verifier::parse`] reads.
    pub fn verifier_key(&self) -> String {
        let mut key = Vec::with_capacity(1 + ED25519_PUBLIC_KEY_LEN);
        key.push(ALG_ED25519);
        key.extend_from_slice(&self.public_key);
        format!("{}+{:08x}+{}", self.name, self.key_id, STANDARD.encode(key))
    }

    /// Opens a signed note: checks its grammar and this key's signature(s), and returns the
    /// signed text (including its final newline, excluding the blank separator line).
    pub fn open_text<'a>(&self, note: &'a str) -> Result<&'a str, Error> {
        if has_forbidden_control(note) {
            return Err(Error::MalformedNote("control character in note"));
        }
        // The signature block is after the last blank line: signature lines never contain
        // "\n\n", while the text may.
        let split = note
            .rfind("\n\n")
            .ok_or(Error::MalformedNote("no blank line before the signatures"))?;
        let text = &note[..split + 1];
        let block = &note[split + 2..];
        let Some(block) = block.strip_suffix('\n') else {
            return Err(Error::MalformedNote(
                "the signature block is empty or does not end in a newline",
            ));
        };
        if block.is_empty() {
            return Err(Error::MalformedNote("the signature block is empty"));
        }

        let mut verified = false;
        for (count, line) in block.split('\n').enumerate() {
            if count >= MAX_SIGNATURES {
                return Err(Error::MalformedNote("more than 100 signatures"));
            }
            let line = line.strip_prefix(SIG_PREFIX).ok_or(Error::MalformedNote(
                "a signature line must start with \"— \"",
            ))?;
            let (name, sig64) = line.split_once(' ').ok_or(Error::MalformedNote(
                "a signature line needs a name and a signature",
            ))?;
            if !is_valid_key_name(name) || sig64.is_empty() {
                return Err(Error::MalformedNote("malformed signature line"));
            }
            let sig = STANDARD
                .decode(sig64)
                .map_err(|_| Error::MalformedNote("a signature is not standard base64"))?;
            let (id, signature) = match sig.as_slice() {
                [a, b, c, d, signature @ ..] if !signature.is_empty() => {
                    (u32::from_be_bytes([*a, *b, *c, *d]), signature)
                }
                _ => return Err(Error::MalformedNote("a signature is shorter than 5 bytes")),
            };
            if name != self.name || id != self.key_id {
                continue;
            }
            // Every line claiming to be ours must verify: a bad one means the note was tampered
            // with or the key is misused, and either way the note is not to be trusted.
            let ok = signature.len() == ED25519_SIGNATURE_LEN
                && UnparsedPublicKey::new(&ED25519, &self.public_key)
                    .verify(text.as_bytes(), signature)
                    .is_ok();
            if !ok {
                return Err(Error::BadSignature {
                    name: self.name.clone(),
                    key_id: self.key_id,
                });
            }
            verified = true;
        }
        if !verified {
            return Err(Error::NoSignature {
                name: self.name.clone(),
                key_id: self.key_id,
            });
        }
        Ok(text)
    }
}

impl FromStr for Verifier {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Verifier::parse(s)
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.verifier_key())
    }
}

/// The private half of a note key: signs texts under one named Ed25519 key.
pub struct NoteSigner {
    name: String,
    key_pair: Ed25519KeyPair,
    verifier: Verifier,
}

impl fmt::Debug for NoteSigner {
    // Never the key material: only what the verifier key string shows anyway.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.verifier.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A signer for `name` from a 32-byte Ed25519 seed (the RFC 8032 private key). The seed is
    /// not retained; aws-lc-rs holds the expanded key.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, Error> {
        if !is_valid_key_name(name) {
            return Err(Error::MalformedKey(
                "a key name must be non-empty, without spaces or '+'",
            ));
        }
        let key_pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| Error::Crypto)?;
        let public_key = <[u8; ED25519_PUBLIC_KEY_LEN]>::try_from(key_pair.public_key().as_ref())
            .map_err(|_| Error::Crypto)?;
        let verifier = Verifier::new(name, &public_key)?;
        Ok(NoteSigner {
            name: name.to_owned(),
            key_pair,
            verifier,
        })
    }

    /// A signer from the Go tooling's private key string
    /// `PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 ‖ seed)>`, checking the key id.
    pub fn from_signer_key(skey: &str) -> Result<Self, Error> {
        let rest = skey
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(Error::MalformedKey("a signer key starts with PRIVATE+KEY+"))?;
        let (name, rest) = rest.split_once('+').ok_or(Error::MalformedKey(
            "expected PRIVATE+KEY+<name>+<key id>+<key>",
        ))?;
        let (hex, key64) = rest.split_once('+').ok_or(Error::MalformedKey(
            "expected PRIVATE+KEY+<name>+<key id>+<key>",
        ))?;
        let id = parse_key_id(hex).ok_or(Error::MalformedKey("the key id is not 8 hex digits"))?;
        let key = Zeroizing::new(
            STANDARD
                .decode(key64)
                .map_err(|_| Error::MalformedKey("the key is not standard base64"))?,
        );
        let (alg, seed) = key
            .split_first()
            .ok_or(Error::MalformedKey("the key is empty"))?;
        if *alg != ALG_ED25519 {
            return Err(Error::MalformedKey(
                "unknown key algorithm (only Ed25519, 0x01)",
            ));
        }
        let seed = Zeroizing::new(
            <[u8; 32]>::try_from(seed)
                .map_err(|_| Error::MalformedKey("an Ed25519 seed is 32 bytes"))?,
        );
        let signer = NoteSigner::from_seed(name, &seed)?;
        if signer.verifier.key_id != id {
            return Err(Error::MalformedKey(
                "the key id does not match the key name and key",
            ));
        }
        Ok(signer)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.verifier.key_id
    }

    /// The verifier for this signer's key.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The verifier key string to publish: `<name>+<key id>+<base64(0x01 ‖ public key)>`.
    pub fn verifier_key(&self) -> String {
        self.verifier.verifier_key()
    }

    /// The signature line for `text`, with its trailing newline.
    fn signature_line(&self, text: &str) -> Result<String, Error> {
        let signature = self
            .key_pair
            .try_sign(text.as_bytes())
            .map_err(|_| Error::Crypto)?;
        let mut sig = Vec::with_capacity(4 + ED25519_SIGNATURE_LEN);
        sig.extend_from_slice(&self.verifier.key_id.to_be_bytes());
        sig.extend_from_slice(signature.as_ref());
        Ok(format!(
            "{SIG_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(sig)
        ))
    }

    /// Signs `text` (which must end in a newline and hold no control character but newlines)
    /// and returns the signed note: the text, a blank line, and this key's signature line.
    pub fn sign_text(&self, text: &str) -> Result<String, Error> {
        if !text.ends_with('\n') {
            return Err(Error::MalformedNote("the text must end with a newline"));
        }
        if has_forbidden_control(text) {
            return Err(Error::MalformedNote("control character in note text"));
        }
        let line = self.signature_line(text)?;
        let mut note = String::with_capacity(text.len() + 1 + line.len());
        note.push_str(text);
        note.push('\n');
        note.push_str(&line);
        Ok(note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names() {
        assert!(is_valid_key_name("sum.golang.org"));
        assert!(is_valid_key_name("Señor-7"));
        for bad in [
            "",
            "a b",
            "a+b",
            "tab\t",
            "nbsp\u{a0}",
            "line\u{2028}",
            "ideo\u{3000}",
        ] {
            assert!(!is_valid_key_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn key_ids_are_eight_hex_digits() {
        assert_eq!(parse_key_id("c74f20a3"), Some(0xc74f20a3));
        assert_eq!(parse_key_id("C74F20A3"), Some(0xc74f20a3));
        for bad in [
            "c74f20a",
            "c74f20a30",
            "+74f20a3",
            "c74f20ag",
            " 74f20a3",
            "",
        ] {
            assert_eq!(parse_key_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn verifier_from_parts_matches_parse() {
        let signer = NoteSigner::from_seed("n", &[3; 32]).unwrap();
        let v = Verifier::new("n", signer.verifier().public_key()).unwrap();
        assert_eq!(&v, signer.verifier());
        assert_eq!(Verifier::parse(&v.verifier_key()).unwrap(), v);
        assert!(Verifier::new("has space", v.public_key()).is_err());
    }

    #[test]
    fn empty_signature_block_is_malformed() {
        let signer = NoteSigner::from_seed("n", &[3; 32]).unwrap();
        let v = signer.verifier();
        for note in ["", "\n", "\n\n", "text\n\n", "text\n\n\n", "text\n\n— n \n"] {
            assert!(
                matches!(v.open_text(note), Err(Error::MalformedNote(_))),
                "{note:?}"
            );
        }
    }
}
