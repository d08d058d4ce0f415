//! Record sealing: per-record keys derived from a tenant key, AES-256-GCM with bound context.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Prk, Salt};
use aws_lc_rs::hmac;
use custodian_core::ids::{Class, DataTypeName, RecordId, TenantId};
use zeroize::Zeroizing;

use crate::CryptoError;

/// Version byte at the start of every sealed payload, so the format can evolve.
const FORMAT_V1: u8 = 1;
const TAG_LEN: usize = 16;
const RECORD_KEY_SALT: &[u8] = b"custodian/record-key/v1";
const SUBJECT_INDEX_INFO: &[u8] = b"custodian/subject-index/v1";

/// A tenant's data key (one version), ready to derive record keys.
pub struct TenantKey {
    version: u32,
    record_prk: Prk,
    subject_index: hmac::Key,
}

impl fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantKey")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// The context a record's ciphertext is bound to.
pub struct RecordAad<'a> {
    pub tenant: &'a TenantId,
    pub record: RecordId,
    pub data_type: &'a DataTypeName,
    pub class: Class,
}

impl RecordAad<'_> {
    /// Length-prefixed so that no two contexts encode to the same bytes.
    fn encode(&self, key_version: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"custodian/record/v1");
        for part in [self.tenant.as_str(), self.data_type.as_str()] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out.extend_from_slice(&self.record.to_bytes());
        out.push(self.class as u8);
        out.extend_from_slice(&key_version.to_be_bytes());
        out
    }
}

impl TenantKey {
    pub fn new(version: u32, key: &Zeroizing<[u8; 32]>) -> TenantKey {
        let record_prk = Salt::new(HKDF_SHA256, RECORD_KEY_SALT).extract(key.as_ref());
        let mut index_key = Zeroizing::new([0u8; 32]);
        let index_prk = Salt::new(HKDF_SHA256, SUBJECT_INDEX_INFO).extract(key.as_ref());
        index_prk
            .expand(&[SUBJECT_INDEX_INFO], HKDF_SHA256)
            .and_then(|okm| okm.fill(index_key.as_mut()))
            .expect("HKDF-SHA256 can always produce 32 bytes");
        TenantKey {
            version,
            record_prk,
            subject_index: hmac::Key::new(hmac::HMAC_SHA256, index_key.as_ref()),
        }
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    fn record_key(&self, record: RecordId) -> LessSafeKey {
        let record_bytes = record.to_bytes();
        let info = [record_bytes.as_slice()];
        let okm = self
            .record_prk
            .expand(&info, &AES_256_GCM)
            .expect("HKDF-SHA256 can always produce an AES-256 key");
        LessSafeKey::new(UnboundKey::from(okm))
    }

    /// Encrypts `plaintext` for the record described by `aad`.
    pub fn seal(&self, aad: &RecordAad<'_>, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = self.record_key(aad.record);
        let nonce_bytes = crate::random_bytes::<NONCE_LEN>()?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(plaintext);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(aad.encode(self.version)),
                &mut out[1 + NONCE_LEN..],
            )
            .map_err(|_| CryptoError::Decrypt)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts a sealed payload; fails unless key, context and bytes are all intact.
    pub fn open(
        &self,
        aad: &RecordAad<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let Some((&FORMAT_V1, rest)) = sealed.split_first() else {
            return Err(CryptoError::Malformed("unknown format version"));
        };
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed("too short"));
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| CryptoError::Malformed("bad nonce"))?;
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        let plain_len = self
            .record_key(aad.record)
            .open_in_place(nonce, Aad::from(aad.encode(self.version)), &mut buf)
            .map_err(|_| CryptoError::Decrypt)?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }

    /// The tenant-keyed pseudonym of a subject id, used in the subject index so subject ids
    /// never rest in clear. Stable for the tenant, unlinkable across tenants.
    pub fn subject_pseudonym(&self, subject: &str) -> [u8; 32] {
        let tag = hmac::sign(&self.subject_index, subject.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> TenantKey {
        TenantKey::new(1, &Zeroizing::new([byte; 32]))
    }

    fn ctx<'a>(tenant: &'a TenantId, ty: &'a DataTypeName, record: RecordId) -> RecordAad<'a> {
        RecordAad {
            tenant,
            record,
            data_type: ty,
            class: Class::Confidential,
        }
    }

    fn ids() -> (TenantId, DataTypeName, RecordId) {
        (
            TenantId::new("acme").unwrap(),
            DataTypeName::new("auth_log").unwrap(),
            RecordId::from_ulid(ulid::Ulid::from_parts(1, 7)),
        )
    }

    #[test]
    fn round_trips_and_hides_the_plaintext() {
        let (t, d, r) = ids();
        let k = key(1);
        let sealed = k.seal(&ctx(&t, &d, r), b"secret marker").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(sealed.len(), 1 + 12 + 13 + 16);
        assert_eq!(
            &*k.open(&ctx(&t, &d, r), &sealed).unwrap(),
            b"secret marker"
        );
    }

    #[test]
    fn any_change_of_context_key_or_bytes_fails() {
        let (t, d, r) = ids();
        let k = key(1);
        let sealed = k.seal(&ctx(&t, &d, r), b"payload").unwrap();
        let other_tenant = TenantId::new("globex").unwrap();
        let other_type = DataTypeName::new("app_log").unwrap();
        let other_record = RecordId::from_ulid(ulid::Ulid::from_parts(1, 8));
        assert!(k.open(&ctx(&other_tenant, &d, r), &sealed).is_err());
        assert!(k.open(&ctx(&t, &other_type, r), &sealed).is_err());
        assert!(k.open(&ctx(&t, &d, other_record), &sealed).is_err());
        let mut restricted = ctx(&t, &d, r);
        restricted.class = Class::Restricted;
        assert!(k.open(&restricted, &sealed).is_err());
        assert!(key(2).open(&ctx(&t, &d, r), &sealed).is_err());
        assert!(
            TenantKey::new(2, &Zeroizing::new([1; 32]))
                .open(&ctx(&t, &d, r), &sealed)
                .is_err()
        );
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            assert!(k.open(&ctx(&t, &d, r), &tampered).is_err(), "byte {i}");
        }
        assert!(k.open(&ctx(&t, &d, r), &sealed[..20]).is_err());
        assert!(k.open(&ctx(&t, &d, r), &[]).is_err());
    }

    #[test]
    fn aad_encoding_is_unambiguous() {
        let r = RecordId::from_ulid(ulid::Ulid::from_parts(1, 7));
        let a = RecordAad {
            tenant: &TenantId::new("ab").unwrap(),
            record: r,
            data_type: &DataTypeName::new("c").unwrap(),
            class: Class::Public,
        };
        let b = RecordAad {
            tenant: &TenantId::new("a").unwrap(),
            record: r,
            data_type: &DataTypeName::new("bc").unwrap(),
            class: Class::Public,
        };
        assert_ne!(a.encode(1), b.encode(1));
    }

    #[test]
    fn pseudonyms_are_stable_per_tenant_and_differ_across_tenants() {
        assert_eq!(
            key(1).subject_pseudonym("alice"),
            key(1).subject_pseudonym("alice")
        );
        assert_ne!(
            key(1).subject_pseudonym("alice"),
            key(2).subject_pseudonym("alice")
        );
        assert_ne!(
            key(1).subject_pseudonym("alice"),
            key(1).subject_pseudonym("bob")
        );
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let shown = format!("{:?}", key(0xAB));
        assert_eq!(shown, "TenantKey { version: 1, .. }");
    }
}
