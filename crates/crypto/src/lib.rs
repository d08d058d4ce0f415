//! custodian's envelope encryption.
//!
//! A root key (from a [`RootKeyProvider`]) wraps one data key per tenant and version; each record
//! is sealed with AES-256-GCM under a key derived by HKDF from the tenant key and the record id,
//! so no two records share a key and nonce reuse across records is impossible. The associated
//! data binds tenant, record id, data type, class and key version: a ciphertext moved to another
//! row, tenant or type fails to open.
//!
//! All key bytes live in zeroizing buffers or inside aws-lc-rs key objects, and no type here
//! prints key material in `Debug`.

#![forbid(unsafe_code)]

mod envelope;
mod root;

pub use envelope::{RecordAad, TenantKey};
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
