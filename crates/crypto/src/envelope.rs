//! The key hierarchy below the root and record sealing.
//!
//! A tenant's KEK (versioned, wrapped by the root key) wraps its data keys: one bucket DEK per
//! data type × expiry bucket, and one subject key per data subject. A record is sealed with
//! AES-256-GCM under `HKDF(bucket DEK ‖ subject keys, record id)`, so destroying its bucket's
//! DEK or any of its subjects' keys makes it unreadable everywhere, backups included. Rotating
//! the KEK rewraps data keys and never touches record ciphertext.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use aws_lc_rs::hmac;
use custodian_core::ids::{Class, DataTypeName, RecordId, TenantId};
use zeroize::Zeroizing;

use crate::CryptoError;

/// Version byte at the start of every sealed payload and wrapped key, so formats can evolve.
const RECORD_FORMAT: u8 = 2;
const WRAP_FORMAT: u8 = 1;
const TAG_LEN: usize = 16;
const RECORD_KEY_SALT: &[u8] = b"custodian/record-key/v2";

/// Which data key: a bucket's DEK or a subject's key. Its text form is the key store's id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataKeyId {
    /// Records of one data type whose retention ends in the same bucket (see the retention
    /// maths in core); destroying it destroys them all at once.
    Bucket {
        data_type: DataTypeName,
        bucket: String,
    },
    /// Every record about one subject, by the subject's keyed pseudonym.
    Subject([u8; 32]),
}

impl DataKeyId {
    /// `b/<type>/<bucket>` or `s/<pseudonym hex>`: unambiguous, since type names hold no `/`.
    pub fn encode(&self) -> String {
        match self {
            DataKeyId::Bucket { data_type, bucket } => format!("b/{}/{bucket}", data_type.as_str()),
            DataKeyId::Subject(p) => {
                let mut s = String::with_capacity(2 + 64);
                s.push_str("s/");
                for b in p {
                    s.push_str(&format!("{b:02x}"));
                }
                s
            }
        }
    }

    pub fn decode(s: &str) -> Option<DataKeyId> {
        if let Some(hex) = s.strip_prefix("s/") {
            return crate::decode_hex32(hex).map(DataKeyId::Subject);
        }
        let (data_type, bucket) = s.strip_prefix("b/")?.split_once('/')?;
        Some(DataKeyId::Bucket {
            data_type: DataTypeName::new(data_type).ok()?,
            bucket: bucket.to_owned(),
        })
    }
}

/// A data key (bucket DEK or subject key), unwrapped.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    pub fn generate() -> Result<DataKey, CryptoError> {
        Ok(DataKey(crate::random_key()?))
    }

    #[cfg(feature = "testing")]
    pub(crate) fn into_bytes(self) -> Zeroizing<[u8; 32]> {
        self.0
    }

    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> DataKey {
        DataKey(Zeroizing::new(bytes))
    }
}

/// One version of a tenant's key-encryption key.
pub struct Kek {
    tenant: TenantId,
    version: u32,
    key: LessSafeKey,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("tenant", &self.tenant)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// An AES-256-GCM key object from 32 bytes (aws-lc-rs wipes it when it drops).
pub(crate) fn aes_256_gcm(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32 bytes is an AES-256 key"))
}

impl Kek {
    pub fn new(tenant: TenantId, version: u32, key: &Zeroizing<[u8; 32]>) -> Kek {
        Kek {
            tenant,
            version,
            key: aes_256_gcm(key),
        }
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// The wrapping is bound to tenant, KEK version and key id: a wrapped key copied to
    /// another row, tenant or version fails to unwrap.
    fn context(&self, id: &DataKeyId) -> Vec<u8> {
        let mut aad = b"custodian/data-key/v1".to_vec();
        push_str(&mut aad, self.tenant.as_str());
        aad.extend_from_slice(&self.version.to_be_bytes());
        push_str(&mut aad, &id.encode());
        aad
    }

    pub fn wrap(&self, id: &DataKeyId, key: &DataKey) -> Result<Vec<u8>, CryptoError> {
        seal_with(&self.key, WRAP_FORMAT, &self.context(id), key.0.as_ref())
    }

    pub fn unwrap(&self, id: &DataKeyId, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        let plain = open_with(&self.key, WRAP_FORMAT, &self.context(id), wrapped)?;
        let bytes: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Malformed("a wrapped data key must hold 32 bytes"))?;
        Ok(DataKey(Zeroizing::new(bytes)))
    }
}

/// A tenant's subject-index key: HMAC pseudonyms of subject ids, for the index, the audit log
/// and subject-key ids. It never rotates, so pseudonyms stay stable for the tenant's life. It
/// is also the HKDF key the tenant's de-identification keys are expanded from (one per
/// transform), so field pseudonyms and tokens are stable within the tenant, unlinkable across
/// tenants, and gone with the tenant's keys.
pub struct IndexKey {
    mac: hmac::Key,
    prk: aws_lc_rs::hkdf::Prk,
}

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IndexKey(..)")
    }
}

impl IndexKey {
    pub fn new(key: &Zeroizing<[u8; 32]>) -> IndexKey {
        IndexKey {
            mac: hmac::Key::new(hmac::HMAC_SHA256, key.as_ref()),
            prk: aws_lc_rs::hkdf::Prk::new_less_safe(aws_lc_rs::hkdf::HKDF_SHA256, key.as_ref()),
        }
    }

    /// A `len`-byte key for one purpose (HKDF-Expand, RFC 5869, with `purpose` as info).
    pub fn derive(&self, purpose: &str, len: usize) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        struct Len(usize);
        impl aws_lc_rs::hkdf::KeyType for Len {
            fn len(&self) -> usize {
                self.0
            }
        }
        let mut out = Zeroizing::new(vec![0u8; len]);
        let info = [b"custodian/derived/v1/".as_slice(), purpose.as_bytes()];
        self.prk
            .expand(&info, Len(len))
            .and_then(|okm| okm.fill(&mut out))
            .map_err(|_| CryptoError::Malformed("derived key length out of range"))?;
        Ok(out)
    }

    /// Stable within the tenant, unlinkable across tenants.
    pub fn pseudonym(&self, subject: &str) -> [u8; 32] {
        let tag = hmac::sign(&self.mac, subject.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

/// The context a record's ciphertext is bound to.
pub struct RecordAad<'a> {
    pub tenant: &'a TenantId,
    pub record: RecordId,
    pub data_type: &'a DataTypeName,
    pub class: Class,
    /// The record's expiry bucket (names its DEK).
    pub bucket: &'a str,
    /// The pseudonyms of its subjects, sorted (name their keys).
    pub subjects: &'a [[u8; 32]],
}

impl RecordAad<'_> {
    /// Length-prefixed so that no two contexts encode to the same bytes.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + 32 * self.subjects.len());
        out.extend_from_slice(b"custodian/record/v2");
        push_str(&mut out, self.tenant.as_str());
        push_str(&mut out, self.data_type.as_str());
        push_str(&mut out, self.bucket);
        out.extend_from_slice(&self.record.to_bytes());
        out.push(self.class as u8);
        out.extend_from_slice(&(self.subjects.len() as u32).to_be_bytes());
        for s in self.subjects {
            out.extend_from_slice(s);
        }
        out
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The data keys a record is sealed under: its bucket's DEK and its subjects' keys, in the
/// order of `RecordAad::subjects`.
pub struct RecordKeys<'a> {
    pub bucket: &'a DataKey,
    pub subjects: &'a [&'a DataKey],
}

impl RecordKeys<'_> {
    fn record_key(&self, record: RecordId) -> LessSafeKey {
        let mut ikm = Zeroizing::new(Vec::with_capacity(32 * (1 + self.subjects.len())));
        ikm.extend_from_slice(self.bucket.0.as_ref());
        for s in self.subjects {
            ikm.extend_from_slice(s.0.as_ref());
        }
        let record_bytes = record.to_bytes();
        let info = [record_bytes.as_slice()];
        let prk = Salt::new(HKDF_SHA256, RECORD_KEY_SALT).extract(&ikm);
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .expect("HKDF-SHA256 can always produce an AES-256 key");
        LessSafeKey::new(UnboundKey::from(okm))
    }

    pub fn seal(&self, aad: &RecordAad<'_>, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if aad.subjects.len() != self.subjects.len() {
            return Err(CryptoError::Malformed(
                "one subject key is needed per subject",
            ));
        }
        seal_with(
            &self.record_key(aad.record),
            RECORD_FORMAT,
            &aad.encode(),
            plaintext,
        )
    }

    /// Decrypts a sealed payload; fails unless keys, context and bytes are all intact.
    pub fn open(
        &self,
        aad: &RecordAad<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if aad.subjects.len() != self.subjects.len() {
            return Err(CryptoError::Decrypt);
        }
        open_with(
            &self.record_key(aad.record),
            RECORD_FORMAT,
            &aad.encode(),
            sealed,
        )
    }
}

/// `format ‖ nonce ‖ AES-256-GCM(plaintext) ‖ tag`, with a fresh random nonce.
pub(crate) fn seal_with(
    key: &LessSafeKey,
    format: u8,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let nonce = crate::random_bytes::<NONCE_LEN>()?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
    out.push(format);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[1 + NONCE_LEN..],
        )
        .map_err(|_| CryptoError::Decrypt)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

pub(crate) fn open_with(
    key: &LessSafeKey,
    format: u8,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let Some((&found, rest)) = sealed.split_first() else {
        return Err(CryptoError::Malformed("empty ciphertext"));
    };
    if found != format {
        return Err(CryptoError::Malformed("unknown format version"));
    }
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Malformed("too short"));
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce =
        Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Malformed("bad nonce"))?;
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let plain_len = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| CryptoError::Decrypt)?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        tenant: TenantId,
        data_type: DataTypeName,
        record: RecordId,
        subjects: Vec<[u8; 32]>,
    }

    fn fixture() -> Fixture {
        Fixture {
            tenant: TenantId::new("acme").unwrap(),
            data_type: DataTypeName::new("auth_log").unwrap(),
            record: RecordId::from_ulid(ulid::Ulid::from_parts(1, 7)),
            subjects: vec![[1; 32], [2; 32]],
        }
    }

    impl Fixture {
        fn aad(&self) -> RecordAad<'_> {
            RecordAad {
                tenant: &self.tenant,
                record: self.record,
                data_type: &self.data_type,
                class: Class::Confidential,
                bucket: "2027-01-01",
                subjects: &self.subjects,
            }
        }
    }

    #[test]
    fn round_trips_and_hides_the_plaintext() {
        let f = fixture();
        let (dek, s1, s2) = (
            DataKey::generate().unwrap(),
            DataKey::generate().unwrap(),
            DataKey::generate().unwrap(),
        );
        let keys = RecordKeys {
            bucket: &dek,
            subjects: &[&s1, &s2],
        };
        let sealed = keys.seal(&f.aad(), b"secret marker").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(sealed.len(), 1 + 12 + 13 + 16);
        assert_eq!(&*keys.open(&f.aad(), &sealed).unwrap(), b"secret marker");
    }

    #[test]
    fn any_change_of_context_key_or_bytes_fails() {
        let mut f = fixture();
        let (dek, s1, s2) = (
            DataKey::from_bytes([7; 32]),
            DataKey::from_bytes([8; 32]),
            DataKey::from_bytes([9; 32]),
        );
        let keys = RecordKeys {
            bucket: &dek,
            subjects: &[&s1, &s2],
        };
        let sealed = keys.seal(&f.aad(), b"payload").unwrap();
        let mut aad = f.aad();
        let other_tenant = TenantId::new("globex").unwrap();
        aad.tenant = &other_tenant;
        assert!(keys.open(&aad, &sealed).is_err());
        let other_type = DataTypeName::new("app_log").unwrap();
        let mut aad = f.aad();
        aad.data_type = &other_type;
        assert!(keys.open(&aad, &sealed).is_err());
        let mut aad = f.aad();
        aad.record = RecordId::from_ulid(ulid::Ulid::from_parts(1, 8));
        assert!(keys.open(&aad, &sealed).is_err());
        let mut aad = f.aad();
        aad.class = Class::Restricted;
        assert!(keys.open(&aad, &sealed).is_err());
        let mut aad = f.aad();
        aad.bucket = "2027-01-02";
        assert!(keys.open(&aad, &sealed).is_err());
        // A destroyed subject key cannot be replaced by another.
        let stranger = DataKey::from_bytes([10; 32]);
        let wrong = RecordKeys {
            bucket: &dek,
            subjects: &[&s1, &stranger],
        };
        assert!(wrong.open(&f.aad(), &sealed).is_err());
        let swapped = RecordKeys {
            bucket: &dek,
            subjects: &[&s2, &s1],
        };
        assert!(swapped.open(&f.aad(), &sealed).is_err());
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            assert!(keys.open(&f.aad(), &tampered).is_err(), "byte {i}");
        }
        assert!(keys.open(&f.aad(), &sealed[..20]).is_err());
        assert!(keys.open(&f.aad(), &[]).is_err());
        f.subjects.pop();
        assert!(keys.open(&f.aad(), &sealed).is_err());
    }

    #[test]
    fn aad_encoding_is_unambiguous() {
        let r = RecordId::from_ulid(ulid::Ulid::from_parts(1, 7));
        let (ab, a) = (TenantId::new("ab").unwrap(), TenantId::new("a").unwrap());
        let (c, bc) = (
            DataTypeName::new("c").unwrap(),
            DataTypeName::new("bc").unwrap(),
        );
        let one = RecordAad {
            tenant: &ab,
            record: r,
            data_type: &c,
            class: Class::Public,
            bucket: "x",
            subjects: &[],
        };
        let two = RecordAad {
            tenant: &a,
            data_type: &bc,
            ..one
        };
        assert_ne!(one.encode(), two.encode());
    }

    #[test]
    fn wrapped_data_keys_are_bound_to_tenant_version_and_id() {
        let tenant = TenantId::new("acme").unwrap();
        let kek = Kek::new(tenant.clone(), 1, &Zeroizing::new([5; 32]));
        let id = DataKeyId::Subject([3; 32]);
        let dek = DataKey::generate().unwrap();
        let wrapped = kek.wrap(&id, &dek).unwrap();
        assert_eq!(*kek.unwrap(&id, &wrapped).unwrap().0, *dek.0);
        let other_id = DataKeyId::Subject([4; 32]);
        assert!(kek.unwrap(&other_id, &wrapped).is_err());
        let v2 = Kek::new(tenant, 2, &Zeroizing::new([5; 32]));
        assert!(v2.unwrap(&id, &wrapped).is_err());
        let globex = Kek::new(
            TenantId::new("globex").unwrap(),
            1,
            &Zeroizing::new([5; 32]),
        );
        assert!(globex.unwrap(&id, &wrapped).is_err());
        assert!(kek.unwrap(&id, &wrapped[..wrapped.len() - 1]).is_err());
    }

    #[test]
    fn key_ids_round_trip_through_text() {
        for id in [
            DataKeyId::Subject([0xab; 32]),
            DataKeyId::Bucket {
                data_type: DataTypeName::new("auth_log").unwrap(),
                bucket: "2027-03-01".into(),
            },
        ] {
            assert_eq!(DataKeyId::decode(&id.encode()), Some(id));
        }
        assert_eq!(DataKeyId::decode("s/zz"), None);
        assert_eq!(DataKeyId::decode("x/1"), None);
    }

    #[test]
    fn pseudonyms_are_stable_per_tenant_and_differ_across_tenants() {
        let one = IndexKey::new(&Zeroizing::new([1; 32]));
        let two = IndexKey::new(&Zeroizing::new([2; 32]));
        assert_eq!(one.pseudonym("alice"), one.pseudonym("alice"));
        assert_ne!(one.pseudonym("alice"), two.pseudonym("alice"));
        assert_ne!(one.pseudonym("alice"), one.pseudonym("bob"));
    }

    #[test]
    fn derived_keys_are_per_purpose_per_tenant_and_stable() {
        let one = IndexKey::new(&Zeroizing::new([1; 32]));
        let two = IndexKey::new(&Zeroizing::new([2; 32]));
        let tok = one.derive("tokenize", 64).unwrap();
        assert_eq!(tok.len(), 64);
        assert_eq!(tok, one.derive("tokenize", 64).unwrap());
        assert_ne!(tok, two.derive("tokenize", 64).unwrap());
        assert_ne!(one.derive("fpe", 32).unwrap()[..], tok[..32]);
        // Nothing of the derived keys is the index key or its pseudonyms.
        assert_ne!(one.derive("x", 32).unwrap()[..], [1; 32]);
        assert_ne!(one.derive("alice", 32).unwrap()[..], one.pseudonym("alice"));
        assert!(one.derive("huge", 255 * 32 + 1).is_err());
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let tenant = TenantId::new("acme").unwrap();
        assert_eq!(
            format!("{:?}", Kek::new(tenant, 1, &Zeroizing::new([0xAB; 32]))),
            "Kek { tenant: TenantId(\"acme\"), version: 1, .. }"
        );
        assert_eq!(
            format!("{:?}", DataKey::from_bytes([0xAB; 32])),
            "DataKey(..)"
        );
        assert_eq!(
            format!("{:?}", IndexKey::new(&Zeroizing::new([0xAB; 32]))),
            "IndexKey(..)"
        );
    }
}
