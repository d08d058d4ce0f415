//! custodian's envelope encryption and key hierarchy.
//!
//! A root key (from a [`RootKeyProvider`]) wraps each tenant's versioned KEK and its
//! subject-index key; the KEK wraps bucket DEKs and subject keys; each record is sealed with
//! AES-256-GCM under a key derived by HKDF from its bucket DEK, its subjects' keys and its id, so
//! no two records share a key. The associated data binds tenant, record id, data type, class,
//! bucket and subjects: a ciphertext moved to another row, tenant or type fails to open.
//!
//! All key bytes live in zeroizing buffers or inside aws-lc-rs key objects, and no type here
//! prints key material in `Debug`.

#![forbid(unsafe_code)]

mod envelope;
mod root;

pub use envelope::{DataKey, DataKeyId, IndexKey, Kek, RecordAad, RecordKeys};
pub use root::{DevRootKey, RootKeyProvider};

use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Wrong key, wrong associated data or tampered ciphertext: AES-GCM cannot tell which.
    #[error("decryption failed: the ciphertext does not match its key or context")]
    Decrypt,
    #[error("the ciphertext is malformed ({0})")]
    Malformed(&'static str),
    #[error("the system random number generator failed")]
    Random,
    #[error("root key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
}

/// 32 fresh random bytes for a new key.
pub fn random_key() -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| CryptoError::Random)?;
    Ok(bytes)
}

/// Random bytes for non-secret uses such as token ids (secrets use [`random_key`]).
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CryptoError::Random)?;
    Ok(bytes)
}

/// SHA-256, for hashing API token secrets and idempotent request bodies.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// 64 hex digits to 32 bytes.
pub(crate) fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}
