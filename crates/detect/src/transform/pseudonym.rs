//! Keyed pseudonyms: HMAC-SHA-256 of the value, truncated and encoded as a short token.
//!
//! The same value under the same key always gives the same pseudonym, so pseudonymised records
//! still join on it; without the key nobody can confirm a guess, which a plain hash would
//! allow. 128 bits of the MAC are kept: collisions stay negligible for any realistic number of
//! values, and the token stays short enough for a log line.

use aws_lc_rs::hmac;

use super::SecretKey;
use crate::DetectError;

/// Every pseudonym starts with this, so a pseudonymised field is recognisable as one.
pub const PSEUDONYM_PREFIX: &str = "pse_";

/// Domain separation: a key shared with another HMAC use (such as date shifting) gives
/// unrelated outputs here.
const DOMAIN: &[u8] = b"custodian-detect/pseudonym/v1\0";

/// The shortest key accepted by the HMAC-based transforms.
pub(crate) const MIN_HMAC_KEY: usize = 16;

/// HMAC-SHA-256 of `DOMAIN || message` under `key`, refusing keys shorter than 16 bytes.
pub(crate) fn hmac_sha256(
    key: &SecretKey,
    transform: &'static str,
    domain: &[u8],
    message: &[u8],
) -> Result<hmac::Tag, DetectError> {
    if key.len() < MIN_HMAC_KEY {
        return Err(DetectError::KeyLength {
            transform,
            expected: "at least 16 bytes",
            got: key.len(),
        });
    }
    let k = hmac::Key::new(hmac::HMAC_SHA256, key.bytes());
    let mut ctx = hmac::Context::with_key(&k);
    ctx.update(domain);
    ctx.update(message);
    Ok(ctx.sign())
}

/// A stable pseudonym for `value` under `key`: `pse_` followed by 26 lower-case base32
/// characters (128 bits of HMAC-SHA-256).
pub fn pseudonymize(key: &SecretKey, value: &str) -> Result<String, DetectError> {
    let tag = hmac_sha256(key, "pseudonymize", DOMAIN, value.as_bytes())?;
    let mut out = String::with_capacity(PSEUDONYM_PREFIX.len() + 26);
    out.push_str(PSEUDONYM_PREFIX);
    base32_lower(&tag.as_ref()[..16], &mut out);
    Ok(out)
}

/// RFC 4648 base32 in lower case, without padding.
fn base32_lower(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut acc = 0u32;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            let mut out = String::new();
            base32_lower(input.as_bytes(), &mut out);
            assert_eq!(out, want);
        }
    }

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        // The primitive underneath pseudonyms and date shifts, checked against RFC 4231.
        let k = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let tag = hmac::sign(&k, b"what do ya want for nothing?");
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
