//! Reversible tokens: deterministic AES-SIV (RFC 5297) encryption of the value.
//!
//! SIV needs no nonce, so the same value under the same key and context always gives the same
//! token (tokenised columns still join and deduplicate), and it stays safe when used that way:
//! an equal token reveals only that the values are equal. The context is authenticated
//! associated data; a token made for one context (say, a tenant and field) does not detokenize
//! in another. The 16-byte synthetic IV doubles as the authentication tag, so a tampered token
//! or a wrong key is an error, never a wrong plaintext.

use aes_siv::KeyInit;
use aes_siv::siv::{Aes128Siv, Aes256Siv};
use base64::Engine as _;

use super::SecretKey;
use crate::DetectError;

/// Every token starts with this.
pub const TOKEN_PREFIX: &str = "tok_";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The SIV tag length that every token carries.
const TAG_LEN: usize = 16;

/// The longest value accepted, so a token stays a field value rather than a document.
const MAX_PLAINTEXT: usize = 64 * 1024;

enum Siv {
    Aes128(Box<Aes128Siv>),
    Aes256(Box<Aes256Siv>),
}

fn cipher(key: &SecretKey, transform: &'static str) -> Result<Siv, DetectError> {
    let wrong = DetectError::KeyLength {
        transform,
        expected: "32 bytes (AES-128-SIV) or 64 bytes (AES-256-SIV)",
        got: key.len(),
    };
    match key.len() {
        32 => Aes128Siv::new_from_slice(key.bytes())
            .map(|c| Siv::Aes128(Box::new(c)))
            .map_err(|_| wrong),
        64 => Aes256Siv::new_from_slice(key.bytes())
            .map(|c| Siv::Aes256(Box::new(c)))
            .map_err(|_| wrong),
        _ => Err(wrong),
    }
}

/// Encrypts `value` into `tok_` + base64url(SIV tag ‖ ciphertext). `context` is bound to the
/// token (empty is allowed) and must be given again to [`detokenize`].
pub fn tokenize(key: &SecretKey, context: &[u8], value: &str) -> Result<String, DetectError> {
    if value.len() > MAX_PLAINTEXT {
        return Err(DetectError::InvalidInput(
            "value too long to tokenize (over 64 KiB)",
        ));
    }
    let headers = [context];
    let sealed = match cipher(key, "tokenize")? {
        Siv::Aes128(mut c) => c.encrypt(headers, value.as_bytes()),
        Siv::Aes256(mut c) => c.encrypt(headers, value.as_bytes()),
    }
    .map_err(|_| DetectError::Cipher("AES-SIV encryption failed"))?;
    let mut out = String::with_capacity(TOKEN_PREFIX.len() + sealed.len().div_ceil(3) * 4);
    out.push_str(TOKEN_PREFIX);
    B64.encode_string(&sealed, &mut out);
    Ok(out)
}

/// Recovers the value of a token made by [`tokenize`] with the same key and context.
pub fn detokenize(key: &SecretKey, context: &[u8], token: &str) -> Result<String, DetectError> {
    let body = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(DetectError::MalformedToken("missing the tok_ prefix"))?;
    if body.len() > (MAX_PLAINTEXT + TAG_LEN).div_ceil(3) * 4 {
        return Err(DetectError::MalformedToken("too long"));
    }
    let sealed = B64
        .decode(body)
        .map_err(|_| DetectError::MalformedToken("not base64url"))?;
    if sealed.len() < TAG_LEN {
        return Err(DetectError::MalformedToken("too short"));
    }
    let headers = [context];
    let plain = match cipher(key, "detokenize")? {
        Siv::Aes128(mut c) => c.decrypt(headers, &sealed),
        Siv::Aes256(mut c) => c.decrypt(headers, &sealed),
    }
    .map_err(|_| DetectError::TokenRejected)?;
    String::from_utf8(plain).map_err(|_| DetectError::MalformedToken("plaintext is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or(0))
            .collect()
    }

    /// RFC 5297 appendix A.1 (deterministic AES-SIV with one header): the crate underneath
    /// tokens computes what the standard says.
    #[test]
    fn rfc5297_a1() {
        let key = hex("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        let ad = hex("101112131415161718191a1b1c1d1e1f2021222324252627");
        let pt = hex("112233445566778899aabbccddee");
        let mut c = Aes128Siv::new_from_slice(&key).expect("32-byte key");
        let ct = c.encrypt([&ad], &pt).expect("encrypt");
        assert_eq!(
            ct,
            hex("85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c")
        );
    }
}
