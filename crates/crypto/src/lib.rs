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

mod audit_body;
mod envelope;
mod pkcs11;
mod root;
pub mod shamir;

pub use audit_body::{AuditPublicKey, AuditReaderKey, PeriodKey, PeriodSlot, SealedBody};
pub use envelope::{DataKey, DataKeyId, IndexKey, Kek, RecordAad, RecordKeys};
pub use pkcs11::{Pkcs11Config, Pkcs11RootKey};
pub use root::{RootKeyProvider, SoftwareRootKey};

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
    /// The root key does not open the deployment's root check: wrong key file, wrong shares,
    /// wrong HSM key.
    #[error("this is not the deployment's root key")]
    WrongRootKey,
    #[error("invalid key share: {0}")]
    Share(String),
    #[error("HSM: {0}")]
    Hsm(String),
}

/// 32 fresh random bytes for a new key.
pub fn random_key() -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| CryptoError::Random)?;
    Ok(bytes)
}

/// Random bytes for public values: record and token ids, nonces. They are drawn from the
/// CSPRNG a page at a time per thread, because each call into it costs far more than the
/// bytes do (it was a tenth of the cost of sealing a record). Every byte is handed out once.
/// Secrets use [`random_key`], which never passes through this buffer. The process never
/// forks without exec, so no two processes share a buffer.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    use std::cell::RefCell;
    const PAGE: usize = 4096;
    const { assert!(N <= PAGE) };
    thread_local! {
        static POOL: RefCell<(Box<[u8; PAGE]>, usize)> = RefCell::new((Box::new([0; PAGE]), PAGE));
    }
    POOL.with_borrow_mut(|(page, used)| {
        if *used + N > PAGE {
            aws_lc_rs::rand::fill(page.as_mut()).map_err(|_| CryptoError::Random)?;
            *used = 0;
        }
        let mut bytes = [0u8; N];
        bytes.copy_from_slice(&page[*used..*used + N]);
        *used += N;
        Ok(bytes)
    })
}

const BLOB_FORMAT_V1: u8 = 1;

/// Seals a blob (a key-store backup) with AES-256-GCM under a one-off key.
pub fn seal_blob(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    envelope::seal_with(&envelope::aes_256_gcm(key), BLOB_FORMAT_V1, aad, plaintext)
}

pub fn open_blob(
    key: &[u8; 32],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    envelope::open_with(&envelope::aes_256_gcm(key), BLOB_FORMAT_V1, aad, sealed)
}

/// SHA-256, for hashing API token secrets and idempotent request bodies.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// 64 hex digits to 32 bytes.
pub fn decode_hex32(s: &str) -> Option<[u8; 32]> {
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

/// Helpers for tests of this and other crates that need a real HSM (SoftHSM2).
pub mod testing {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Where Debian's `softhsm2` package puts the module; `CUSTODIAN_TEST_PKCS11_MODULE`
    /// overrides it.
    const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
    pub const TOKEN_LABEL: &str = "custodian-test";
    pub const USER_PIN: &str = "2468-test-pin";

    /// A SoftHSM2 token initialised in its own directory. Point `SOFTHSM2_CONF` at `conf`
    /// in the process that loads `module`.
    pub struct SoftHsm {
        pub module: String,
        pub conf: PathBuf,
    }

    impl SoftHsm {
        /// Initialises a fresh token under `dir`. When SoftHSM2 is missing: under `CI=true`
        /// this panics (run `scripts/install-test-deps`); locally it prints a loud notice and
        /// returns `None`.
        pub fn init(dir: &Path) -> Option<SoftHsm> {
            let module = std::env::var("CUSTODIAN_TEST_PKCS11_MODULE")
                .unwrap_or_else(|_| DEFAULT_MODULE.to_owned());
            let util = Command::new("softhsm2-util").arg("--version").output();
            if !Path::new(&module).exists() || util.is_err() {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!(
                        "SoftHSM2 is missing ({module}) and CI=true: run scripts/install-test-deps"
                    );
                }
                eprintln!(
                    "\n*** SKIPPING PKCS#11 test: SoftHSM2 not installed (run scripts/install-test-deps) ***\n"
                );
                return None;
            }
            let tokens = dir.join("tokens");
            std::fs::create_dir_all(&tokens).expect("token directory");
            let conf = dir.join("softhsm2.conf");
            std::fs::write(
                &conf,
                format!(
                    "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                    tokens.display()
                ),
            )
            .expect("softhsm2.conf");
            let out = Command::new("softhsm2-util")
                .env("SOFTHSM2_CONF", &conf)
                .args(["--init-token", "--free", "--label", TOKEN_LABEL])
                .args(["--pin", USER_PIN, "--so-pin", "1357-test-so-pin"])
                .output()
                .expect("run softhsm2-util");
            assert!(
                out.status.success(),
                "softhsm2-util --init-token failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(SoftHsm { module, conf })
        }
    }

    /// Key bytes unwrapped from a key store's rows, for tests that search logs and files for
    /// leaked key material. Built only with the `testing` feature: the product itself never
    /// takes key bytes out of their key objects.
    #[cfg(feature = "testing")]
    pub mod exposed {
        use custodian_core::ids::TenantId;
        use zeroize::Zeroizing;

        use crate::root::{index_aad, kek_aad};
        use crate::{CryptoError, DataKeyId, Kek, RootKeyProvider};

        pub fn kek(
            root: &dyn RootKeyProvider,
            tenant: &TenantId,
            version: u32,
            wrapped: &[u8],
        ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
            root.unwrap(&kek_aad(tenant, version), wrapped)
        }

        pub fn index_key(
            root: &dyn RootKeyProvider,
            tenant: &TenantId,
            wrapped: &[u8],
        ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
            root.unwrap(&index_aad(tenant), wrapped)
        }

        /// An audit period key, unwrapped with the audit key pair derived from `secret`.
        pub fn audit_period_key(
            secret: &Zeroizing<[u8; 32]>,
            slot: &crate::PeriodSlot<'_>,
            wrapped: &[u8],
        ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
            crate::audit_body::unwrap_bytes(&crate::AuditReaderKey::derive(secret), slot, wrapped)
        }

        /// A bucket DEK or subject key, unwrapped by the KEK version whose bytes are `kek`.
        pub fn data_key(
            kek: &Zeroizing<[u8; 32]>,
            tenant: &TenantId,
            version: u32,
            id: &DataKeyId,
            wrapped: &[u8],
        ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
            Ok(Kek::new(tenant.clone(), version, kek)
                .unwrap(id, wrapped)?
                .into_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    #[test]
    fn pooled_random_bytes_never_repeat_across_refills_and_threads() {
        // 16-byte draws over many pages, from two threads: a repeated byte range would show
        // as a duplicate (a chance collision of 128-bit values is negligible).
        let draw = || {
            (0..5_000)
                .map(|_| super::random_bytes::<16>().unwrap())
                .collect::<Vec<_>>()
        };
        let other = std::thread::spawn(draw);
        let mut all: Vec<[u8; 16]> = draw();
        all.extend(other.join().unwrap());
        let distinct: HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), all.len());
        // Odd sizes straddle page ends without losing or repeating bytes.
        let odd: HashSet<[u8; 13]> = (0..1_000)
            .map(|_| super::random_bytes::<13>().unwrap())
            .collect();
        assert_eq!(odd.len(), 1_000);
    }
}
