//! Sealing of audit entry bodies, so retention can destroy them by destroying a key.
//!
//! Each audit log seals its entries of one calendar month under a *period key* (AES-256-GCM).
//! A period key is wrapped to the deployment's audit public key with HPKE (RFC 9180,
//! X25519 / HKDF-SHA256 / AES-256-GCM), so appending needs no secret at all: a sealed server,
//! or one whose root key was never entered yet, still writes entries nobody can read without
//! the root key. Reading unwraps the period key with the audit private key, which is derived
//! from a secret wrapped by the root key. Destroying every wrapped period key of a month makes
//! that month's bodies noise wherever they were copied, while their leaf hashes (kept apart)
//! still prove the tree.

use std::fmt;

use aws_lc_rs::aead::LessSafeKey;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::envelope::{aes_256_gcm, open_with, seal_with};

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::AesGcm256;

/// RFC 9180 `info`: binds every wrapping to this use.
const WRAP_INFO: &[u8] = b"custodian/audit-period-key/v1";
const ENTRY_CONTEXT: &[u8] = b"custodian/audit-entry/v1";
/// A sealed body starts with this byte; a body in clear is canonical JSON and starts with `{`.
const SEALED_MARK: u8 = b'S';
const BODY_FORMAT_V1: u8 = 1;
const ENCAPPED_LEN: usize = 32;

/// The public half: what every appender needs to wrap new period keys.
#[derive(Clone)]
pub struct AuditPublicKey(<Kem as hpke::Kem>::PublicKey);

impl AuditPublicKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<AuditPublicKey, CryptoError> {
        <Kem as hpke::Kem>::PublicKey::from_bytes(bytes)
            .map(AuditPublicKey)
            .map_err(|_| CryptoError::Malformed("not an X25519 public key"))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes().to_vec()
    }
}

impl PartialEq for AuditPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}

impl fmt::Debug for AuditPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditPublicKey")
    }
}

/// The private half, derived from a root-wrapped secret: what reading bodies needs.
pub struct AuditReaderKey {
    private: <Kem as hpke::Kem>::PrivateKey,
    public: AuditPublicKey,
}

impl fmt::Debug for AuditReaderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditReaderKey(..)")
    }
}

impl AuditReaderKey {
    /// The key pair a 32-byte secret determines (RFC 9180 DeriveKeyPair).
    pub fn derive(secret: &Zeroizing<[u8; 32]>) -> AuditReaderKey {
        let (private, public) = Kem::derive_keypair(secret.as_ref());
        AuditReaderKey {
            private,
            public: AuditPublicKey(public),
        }
    }

    pub fn public(&self) -> &AuditPublicKey {
        &self.public
    }
}

/// A period key: seals the bodies of one log's entries for one month.
pub struct PeriodKey(LessSafeKey);

impl fmt::Debug for PeriodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeriodKey(..)")
    }
}

impl PeriodKey {
    /// A fresh key and its wrapping to `public`, bound to its log, period and id: a wrapped
    /// key moved to another row fails to unwrap.
    pub fn generate(
        public: &AuditPublicKey,
        slot: &PeriodSlot<'_>,
    ) -> Result<(PeriodKey, Vec<u8>), CryptoError> {
        let key = crate::random_key()?;
        let (encapped, sealed) = hpke::single_shot_seal::<Aead, Kdf, Kem>(
            &OpModeS::Base,
            &public.0,
            WRAP_INFO,
            key.as_ref(),
            &slot.context(),
        )
        .map_err(|_| CryptoError::Random)?;
        let mut wrapped = encapped.to_bytes().to_vec();
        wrapped.extend_from_slice(&sealed);
        Ok((PeriodKey(aes_256_gcm(&key)), wrapped))
    }

    pub fn unwrap(
        reader: &AuditReaderKey,
        slot: &PeriodSlot<'_>,
        wrapped: &[u8],
    ) -> Result<PeriodKey, CryptoError> {
        let key = unwrap_bytes(reader, slot, wrapped)?;
        Ok(PeriodKey(aes_256_gcm(&key)))
    }

    /// Seals an entry's canonical bytes. The body names `key_id` so a reader knows which key
    /// opens it; `context` (log and leaf hash) binds it to its place in the log.
    pub fn seal(
        &self,
        key_id: &str,
        context: &[u8],
        canonical: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let id_len =
            u8::try_from(key_id.len()).map_err(|_| CryptoError::Malformed("key id too long"))?;
        let mut body = vec![SEALED_MARK, id_len];
        body.extend_from_slice(key_id.as_bytes());
        body.extend_from_slice(&seal_with(
            &self.0,
            BODY_FORMAT_V1,
            &entry_aad(key_id, context),
            canonical,
        )?);
        Ok(body)
    }

    /// Opens a body [`PeriodKey::seal`] made.
    pub fn open(&self, body: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let SealedBody::Sealed { key_id, sealed } = SealedBody::parse(body)? else {
            return Err(CryptoError::Malformed("the body is not sealed"));
        };
        Ok(open_with(&self.0, BODY_FORMAT_V1, &entry_aad(key_id, context), sealed)?.to_vec())
    }
}

/// Where a period key belongs: the log (its key), the period (`YYYY-MM`) and the key's id.
#[derive(Clone, Copy, Debug)]
pub struct PeriodSlot<'a> {
    pub log: &'a str,
    pub period: &'a str,
    pub id: &'a str,
}

impl PeriodSlot<'_> {
    /// The HPKE associated data of the wrapping.
    fn context(&self) -> Vec<u8> {
        format!("{}\n{}\n{}", self.log, self.period, self.id).into_bytes()
    }
}

pub(crate) fn unwrap_bytes(
    reader: &AuditReaderKey,
    slot: &PeriodSlot<'_>,
    wrapped: &[u8],
) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    if wrapped.len() < ENCAPPED_LEN {
        return Err(CryptoError::Malformed("wrapped period key too short"));
    }
    let (encapped, sealed) = wrapped.split_at(ENCAPPED_LEN);
    let encapped = <Kem as hpke::Kem>::EncappedKey::from_bytes(encapped)
        .map_err(|_| CryptoError::Malformed("bad encapsulated key"))?;
    let bytes = Zeroizing::new(
        hpke::single_shot_open::<Aead, Kdf, Kem>(
            &OpModeR::Base,
            &reader.private,
            &encapped,
            WRAP_INFO,
            sealed,
            &slot.context(),
        )
        .map_err(|_| CryptoError::Decrypt)?,
    );
    if bytes.len() != 32 {
        return Err(CryptoError::Malformed("period key is not 32 bytes"));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&bytes);
    Ok(key)
}

fn entry_aad(key_id: &str, context: &[u8]) -> Vec<u8> {
    let mut aad = ENTRY_CONTEXT.to_vec();
    aad.push(key_id.len() as u8);
    aad.extend_from_slice(key_id.as_bytes());
    aad.extend_from_slice(context);
    aad
}

/// What a stored body is: sealed under a named period key, or in clear.
#[derive(Debug, PartialEq, Eq)]
pub enum SealedBody<'a> {
    Sealed { key_id: &'a str, sealed: &'a [u8] },
    Clear(&'a [u8]),
}

impl<'a> SealedBody<'a> {
    pub fn parse(body: &'a [u8]) -> Result<SealedBody<'a>, CryptoError> {
        match body {
            [SEALED_MARK, len, rest @ ..] => {
                let len = usize::from(*len);
                if rest.len() < len {
                    return Err(CryptoError::Malformed("truncated audit body"));
                }
                let (id, sealed) = rest.split_at(len);
                let key_id = std::str::from_utf8(id)
                    .map_err(|_| CryptoError::Malformed("audit body key id is not UTF-8"))?;
                Ok(SealedBody::Sealed { key_id, sealed })
            }
            [b'{', ..] => Ok(SealedBody::Clear(body)),
            _ => Err(CryptoError::Malformed("unknown audit body format")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(fill: u8) -> AuditReaderKey {
        AuditReaderKey::derive(&Zeroizing::new([fill; 32]))
    }

    const SLOT: PeriodSlot<'static> = PeriodSlot {
        log: "acme",
        period: "2026-11",
        id: "k1",
    };

    #[test]
    fn a_period_key_wrapped_to_the_public_key_opens_with_the_reader_key() {
        let reader = reader(7);
        let public = AuditPublicKey::from_bytes(&reader.public().to_bytes()).unwrap();
        let (key, wrapped) = PeriodKey::generate(&public, &SLOT).unwrap();
        let body = key.seal("k1", b"leaf", b"{\"a\":1}").unwrap();
        assert!(!body.windows(7).any(|w| w == b"{\"a\":1}"));
        assert_eq!(
            SealedBody::parse(&body).unwrap(),
            SealedBody::Sealed {
                key_id: "k1",
                sealed: &body[4..]
            }
        );

        let again = PeriodKey::unwrap(&reader, &SLOT, &wrapped).unwrap();
        assert_eq!(again.open(&body, b"leaf").unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn wrong_reader_context_or_place_fails() {
        let reader = reader(7);
        let (key, wrapped) = PeriodKey::generate(reader.public(), &SLOT).unwrap();
        assert!(matches!(
            PeriodKey::unwrap(&self::reader(8), &SLOT, &wrapped),
            Err(CryptoError::Decrypt)
        ));
        for moved in [
            PeriodSlot {
                log: "globex",
                ..SLOT
            },
            PeriodSlot {
                period: "2026-12",
                ..SLOT
            },
            PeriodSlot { id: "k2", ..SLOT },
        ] {
            assert!(matches!(
                PeriodKey::unwrap(&reader, &moved, &wrapped),
                Err(CryptoError::Decrypt)
            ));
        }
        assert!(PeriodKey::unwrap(&reader, &SLOT, &wrapped[..20]).is_err());

        let body = key.seal("k", b"leaf-1", b"{}").unwrap();
        assert!(matches!(
            key.open(&body, b"leaf-2"),
            Err(CryptoError::Decrypt)
        ));
        let mut renamed = body.clone();
        renamed[2] = b'j';
        assert!(key.open(&renamed, b"leaf-1").is_err());
        let mut flipped = body.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(key.open(&flipped, b"leaf-1").is_err());
    }

    #[test]
    fn bodies_parse_as_sealed_clear_or_malformed() {
        assert_eq!(
            SealedBody::parse(b"{\"x\":1}").unwrap(),
            SealedBody::Clear(b"{\"x\":1}")
        );
        assert!(SealedBody::parse(b"").is_err());
        assert!(SealedBody::parse(b"S").is_err());
        assert!(SealedBody::parse(b"S\x05ab").is_err());
        assert!(SealedBody::parse(b"S\x02\xff\xfe").is_err());
        assert!(SealedBody::parse(b"\x00\x01").is_err());
    }

    #[test]
    fn the_same_secret_derives_the_same_key_pair() {
        assert_eq!(reader(3).public(), reader(3).public());
        assert_ne!(reader(3).public(), reader(4).public());
        assert!(AuditPublicKey::from_bytes(&[1; 5]).is_err());
    }
}
