//! Format-preserving encryption of digit strings with FF1 (NIST SP 800-38G), radix 10.
//!
//! The digits of a value are encrypted as one numeral string and written back where they were,
//! so `4111-1111-1111-1111` stays a dash-grouped sixteen-digit number and systems that validate
//! the format keep working. Anything that is not an ASCII digit stays in place untouched. The
//! `fpe` crate implementing FF1 is not audited; the NIST sample vectors in this crate's tests
//! pin its output.

use aes::{Aes128, Aes192, Aes256};
use fpe::ff1::{FF1, FlexibleNumeralString, NumeralStringError};

use super::SecretKey;
use crate::DetectError;

/// FF1 requires radix^minlen ≥ 1,000,000 (SP 800-38G): six digits for radix 10.
pub const FPE_MIN_DIGITS: usize = 6;

/// The most digits accepted: FF1's cost grows with the square of the length, and no field that
/// needs format preservation is longer.
pub const FPE_MAX_DIGITS: usize = 1024;

/// The longest tweak accepted.
const MAX_TWEAK: usize = 256;

enum Cipher {
    Aes128(FF1<Aes128>),
    Aes192(FF1<Aes192>),
    Aes256(FF1<Aes256>),
}

fn cipher(key: &SecretKey, transform: &'static str) -> Result<Cipher, DetectError> {
    // `FF1::new` panics on a key of the wrong size, so the size is checked here first.
    let radix = |_| DetectError::Cipher("FF1 rejected radix 10");
    match key.len() {
        16 => FF1::new(key.bytes(), 10).map(Cipher::Aes128).map_err(radix),
        24 => FF1::new(key.bytes(), 10).map(Cipher::Aes192).map_err(radix),
        32 => FF1::new(key.bytes(), 10).map(Cipher::Aes256).map_err(radix),
        got => Err(DetectError::KeyLength {
            transform,
            expected: "16, 24 or 32 bytes (AES-128/192/256)",
            got,
        }),
    }
}

/// Encrypts the digits of `value` under `key` and `tweak`, keeping every other character (and
/// the number of digits) where it is. Needs at least [`FPE_MIN_DIGITS`] digits.
pub fn fpe(key: &SecretKey, tweak: &[u8], value: &str) -> Result<String, DetectError> {
    run(key, tweak, value, Direction::Encrypt)
}

/// Reverses [`fpe`](fn@fpe) with the same key and tweak.
pub fn fpe_decrypt(key: &SecretKey, tweak: &[u8], value: &str) -> Result<String, DetectError> {
    run(key, tweak, value, Direction::Decrypt)
}

#[derive(Clone, Copy)]
enum Direction {
    Encrypt,
    Decrypt,
}

fn run(key: &SecretKey, tweak: &[u8], value: &str, dir: Direction) -> Result<String, DetectError> {
    let transform = match dir {
        Direction::Encrypt => "fpe",
        Direction::Decrypt => "fpe_decrypt",
    };
    let digits: Vec<u16> = value
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u16::from(b - b'0'))
        .collect();
    if digits.len() < FPE_MIN_DIGITS {
        return Err(DetectError::TooFewDigits {
            got: digits.len(),
            min: FPE_MIN_DIGITS,
        });
    }
    if digits.len() > FPE_MAX_DIGITS {
        return Err(DetectError::TooManyDigits {
            got: digits.len(),
            max: FPE_MAX_DIGITS,
        });
    }
    if tweak.len() > MAX_TWEAK {
        return Err(DetectError::InvalidInput("FF1 tweak longer than 256 bytes"));
    }
    let ns = FlexibleNumeralString::from(digits);
    let out = match (cipher(key, transform)?, dir) {
        (Cipher::Aes128(c), Direction::Encrypt) => c.encrypt(tweak, &ns),
        (Cipher::Aes128(c), Direction::Decrypt) => c.decrypt(tweak, &ns),
        (Cipher::Aes192(c), Direction::Encrypt) => c.encrypt(tweak, &ns),
        (Cipher::Aes192(c), Direction::Decrypt) => c.decrypt(tweak, &ns),
        (Cipher::Aes256(c), Direction::Encrypt) => c.encrypt(tweak, &ns),
        (Cipher::Aes256(c), Direction::Decrypt) => c.decrypt(tweak, &ns),
    }
    .map_err(|e| match e {
        NumeralStringError::TooShort { ns_len, min_len } => DetectError::TooFewDigits {
            got: ns_len,
            min: min_len,
        },
        NumeralStringError::TooLong { ns_len, max_len } => DetectError::TooManyDigits {
            got: ns_len,
            max: max_len,
        },
        NumeralStringError::InvalidForRadix(_) => DetectError::Cipher("FF1 numeral out of radix"),
    })?;
    let out: Vec<u16> = out.into();
    let mut numerals = out.into_iter();
    let mut result = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_ascii_digit() {
            let d = numerals
                .next()
                .and_then(|n| char::from_digit(u32::from(n), 10))
                .ok_or(DetectError::Cipher(
                    "FF1 returned an unexpected numeral string",
                ))?;
            result.push(d);
        } else {
            result.push(c);
        }
    }
    Ok(result)
}
