//! Root-key providers: what wraps and unwraps tenant keys. A [`SoftwareRootKey`] holds the key in
//! memory: loaded from a file beside the data (`dev`, development only) or reconstructed from
//! Shamir shares at unseal (`shamir`). The PKCS#11 provider keeps it inside an HSM. All sit
//! behind [`RootKeyProvider`], and a root check (a known value wrapped at initialisation) tells
//! a wrong root key from damaged data.

use std::fmt;
use std::io::Write;
use std::path::Path;

use aws_lc_rs::aead::LessSafeKey;
use custodian_core::ids::TenantId;
use zeroize::Zeroizing;

use crate::{CryptoError, IndexKey, Kek};

const WRAP_FORMAT_V1: u8 = 1;
const DEV_KEY_HEADER: &str = "# custodian DEVELOPMENT root key: NOT FOR PRODUCTION. Anyone who reads this file can decrypt every record.\n";

/// Wraps and unwraps secrets under the deployment's root of trust. Every wrapped secret is
/// bound to a context (what it is, for whom), so a wrapped key moved elsewhere fails to unwrap.
pub trait RootKeyProvider: Send + Sync + fmt::Debug {
    /// A short name for logs and status (`dev`, `shamir`, `pkcs11`).
    fn name(&self) -> &'static str;
    fn wrap(&self, context: &[u8], secret: &[u8; 32]) -> Result<Vec<u8>, CryptoError>;
    fn unwrap(&self, context: &[u8], wrapped: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError>;
}

impl dyn RootKeyProvider + '_ {
    /// Creates a tenant KEK version and returns it with its wrapped form for storage.
    pub fn new_kek(&self, tenant: &TenantId, version: u32) -> Result<(Kek, Vec<u8>), CryptoError> {
        let key = crate::random_key()?;
        let wrapped = self.wrap(&kek_aad(tenant, version), &key)?;
        Ok((Kek::new(tenant.clone(), version, &key), wrapped))
    }

    pub fn unwrap_kek(
        &self,
        tenant: &TenantId,
        version: u32,
        wrapped: &[u8],
    ) -> Result<Kek, CryptoError> {
        let key = self.unwrap(&kek_aad(tenant, version), wrapped)?;
        Ok(Kek::new(tenant.clone(), version, &key))
    }

    /// Creates a tenant's subject-index key and its wrapped form.
    pub fn new_index_key(&self, tenant: &TenantId) -> Result<(IndexKey, Vec<u8>), CryptoError> {
        let key = crate::random_key()?;
        let wrapped = self.wrap(&index_aad(tenant), &key)?;
        Ok((IndexKey::new(&key), wrapped))
    }

    pub fn unwrap_index_key(
        &self,
        tenant: &TenantId,
        wrapped: &[u8],
    ) -> Result<IndexKey, CryptoError> {
        Ok(IndexKey::new(&self.unwrap(&index_aad(tenant), wrapped)?))
    }

    /// Creates a named deployment secret (e.g. the audit signing seed) and its wrapped form.
    pub fn new_secret(&self, name: &str) -> Result<(Zeroizing<[u8; 32]>, Vec<u8>), CryptoError> {
        let secret = crate::random_key()?;
        let wrapped = self.wrap(&secret_aad(name), &secret)?;
        Ok((secret, wrapped))
    }

    pub fn unwrap_secret(
        &self,
        name: &str,
        wrapped: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        self.unwrap(&secret_aad(name), wrapped)
    }

    /// A value that only this root key can open, stored when the deployment is initialised.
    pub fn new_root_check(&self) -> Result<Vec<u8>, CryptoError> {
        self.wrap(ROOT_CHECK_AAD, &ROOT_CHECK_VALUE)
    }

    /// Proves this provider holds the deployment's root key; `WrongRootKey` otherwise.
    pub fn verify_root_check(&self, check: &[u8]) -> Result<(), CryptoError> {
        match self.unwrap(ROOT_CHECK_AAD, check) {
            Ok(v) if *v == ROOT_CHECK_VALUE => Ok(()),
            Ok(_) | Err(CryptoError::Decrypt) => Err(CryptoError::WrongRootKey),
            Err(e) => Err(e),
        }
    }
}

const ROOT_CHECK_AAD: &[u8] = b"custodian/root-check/v1";
const ROOT_CHECK_VALUE: [u8; 32] = *b"custodian root key check value.\n";

fn secret_aad(name: &str) -> Vec<u8> {
    let mut aad = b"custodian/secret/v1".to_vec();
    aad.extend_from_slice(name.as_bytes());
    aad
}

pub(crate) fn kek_aad(tenant: &TenantId, version: u32) -> Vec<u8> {
    let mut aad = b"custodian/kek/v1".to_vec();
    aad.extend_from_slice(&(tenant.as_str().len() as u32).to_be_bytes());
    aad.extend_from_slice(tenant.as_str().as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

pub(crate) fn index_aad(tenant: &TenantId) -> Vec<u8> {
    let mut aad = b"custodian/index-key/v1".to_vec();
    aad.extend_from_slice(tenant.as_str().as_bytes());
    aad
}

/// A root key held in process memory (inside an aws-lc-rs key object, which wipes it on drop):
/// the development key file's, or the one Shamir shares reconstruct.
pub struct SoftwareRootKey {
    name: &'static str,
    key: LessSafeKey,
}

impl fmt::Debug for SoftwareRootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SoftwareRootKey({}, ..)", self.name)
    }
}

impl SoftwareRootKey {
    /// Loads the development key file at `path`, creating it (mode 0600) with a fresh key if it
    /// is absent. Returns whether it was created. For development only.
    pub fn load_or_create_dev(path: &Path) -> Result<(SoftwareRootKey, bool), CryptoError> {
        let err = |reason: String| CryptoError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let hex = text
                    .lines()
                    .find(|l| !l.starts_with('#') && !l.trim().is_empty())
                    .ok_or_else(|| err("no key line found".into()))?;
                let bytes = Zeroizing::new(
                    crate::decode_hex32(hex.trim())
                        .ok_or_else(|| err("the key is not 64 hex digits".into()))?,
                );
                Ok((SoftwareRootKey::new("dev", &bytes), false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = crate::random_key()?;
                let mut text = Zeroizing::new(String::from(DEV_KEY_HEADER));
                for b in key.iter() {
                    text.push_str(&format!("{b:02x}"));
                }
                text.push('\n');
                write_private_file(path, text.as_bytes()).map_err(|e| err(e.to_string()))?;
                Ok((SoftwareRootKey::new("dev", &key), true))
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// A root key from its bytes; `name` is the provider it came from (`dev`, `shamir`).
    pub fn new(name: &'static str, bytes: &[u8; 32]) -> SoftwareRootKey {
        SoftwareRootKey {
            name,
            key: crate::envelope::aes_256_gcm(bytes),
        }
    }
}

impl RootKeyProvider for SoftwareRootKey {
    fn name(&self) -> &'static str {
        self.name
    }

    fn wrap(&self, context: &[u8], secret: &[u8; 32]) -> Result<Vec<u8>, CryptoError> {
        crate::envelope::seal_with(&self.key, WRAP_FORMAT_V1, context, secret)
    }

    fn unwrap(&self, context: &[u8], wrapped: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let plain = crate::envelope::open_with(&self.key, WRAP_FORMAT_V1, context, wrapped)?;
        key32(&plain)
    }
}

/// A 32-byte key from an unwrapped buffer.
pub(crate) fn key32(plain: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let key: [u8; 32] = plain
        .try_into()
        .map_err(|_| CryptoError::Malformed("wrapped key has the wrong length"))?;
    Ok(Zeroizing::new(key))
}

fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataKey, DataKeyId};

    #[test]
    fn dev_key_file_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        let (first, created) = SoftwareRootKey::load_or_create_dev(&path).unwrap();
        assert!(created);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# custodian DEVELOPMENT root key"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (second, created) = SoftwareRootKey::load_or_create_dev(&path).unwrap();
        assert!(!created);

        let tenant = TenantId::new("acme").unwrap();
        let first: &dyn RootKeyProvider = &first;
        let second: &dyn RootKeyProvider = &second;
        let (kek, wrapped) = first.new_kek(&tenant, 3).unwrap();
        let again = second.unwrap_kek(&tenant, 3, &wrapped).unwrap();
        let id = DataKeyId::Subject([1; 32]);
        let dek = DataKey::generate().unwrap();
        let wrapped_dek = kek.wrap(&id, &dek).unwrap();
        again.unwrap(&id, &wrapped_dek).unwrap();

        // Bound to tenant and version.
        let other = TenantId::new("globex").unwrap();
        assert!(second.unwrap_kek(&other, 3, &wrapped).is_err());
        assert!(second.unwrap_kek(&tenant, 4, &wrapped).is_err());
        // Another root key cannot unwrap it.
        let stranger: &dyn RootKeyProvider = &SoftwareRootKey::new("dev", &[9; 32]);
        assert!(stranger.unwrap_kek(&tenant, 3, &wrapped).is_err());
        // The root check tells the right key from a wrong one.
        let check = first.new_root_check().unwrap();
        second.verify_root_check(&check).unwrap();
        assert!(matches!(
            stranger.verify_root_check(&check),
            Err(CryptoError::WrongRootKey)
        ));
        // Index keys are bound to their tenant and are not KEKs.
        let (index, wrapped_index) = first.new_index_key(&tenant).unwrap();
        let reloaded = second.unwrap_index_key(&tenant, &wrapped_index).unwrap();
        assert_eq!(index.pseudonym("alice"), reloaded.pseudonym("alice"));
        assert!(second.unwrap_index_key(&other, &wrapped_index).is_err());
        assert!(second.unwrap_kek(&tenant, 3, &wrapped_index).is_err());
        // Named secrets are bound to their name.
        let (secret, wrapped) = first.new_secret("audit-signing").unwrap();
        assert_eq!(
            *second.unwrap_secret("audit-signing", &wrapped).unwrap(),
            *secret
        );
        assert!(second.unwrap_secret("other", &wrapped).is_err());
    }

    #[test]
    fn a_damaged_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        std::fs::write(&path, "# header\nnot-hex\n").unwrap();
        let err = SoftwareRootKey::load_or_create_dev(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not 64 hex digits"), "{err}");
    }
}
