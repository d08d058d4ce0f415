//! De-identification transforms: what replaces a sensitive value once it is found.
//!
//! Unkeyed transforms ([`redact`], [`mask`], [`truncate_ip`], [`generalize`]) lose information
//! for good. Keyed ones take a [`SecretKey`] from the caller, which decides whose key it is (per
//! tenant, per purpose): [`pseudonymize`] is one-way but stable, so records about the same
//! person still join; [`tokenize`] and [`fpe`](fn@fpe) are reversible by whoever holds the key;
//! [`date_shift`] moves dates by a per-subject secret offset so intervals survive.
//!
//! Keys live in zeroizing buffers and never appear in `Debug` output or errors.

mod dates;
mod ff1;
mod pseudonym;
mod token;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use zeroize::Zeroizing;

use crate::{DetectError, Entity, Finding};

pub use dates::{MAX_SHIFT_DAYS, date_shift, date_shift_days};
pub use ff1::{FPE_MAX_DIGITS, FPE_MIN_DIGITS, fpe, fpe_decrypt};
pub use pseudonym::{PSEUDONYM_PREFIX, pseudonymize};
pub use token::{TOKEN_PREFIX, detokenize, tokenize};

/// Key bytes for a keyed transform, wiped from memory when dropped.
///
/// Which lengths are accepted depends on the transform: [`pseudonymize`] and [`date_shift`]
/// take any key of at least 16 bytes, [`tokenize`] 32 or 64 bytes (AES-128/256-SIV),
/// [`fpe`](fn@fpe) 16, 24 or 32 bytes (AES-128/192/256).
#[derive(Clone)]
pub struct SecretKey(Zeroizing<Vec<u8>>);

impl SecretKey {
    /// Copies `bytes` into a zeroizing buffer.
    pub fn new(bytes: &[u8]) -> SecretKey {
        SecretKey(Zeroizing::new(bytes.to_vec()))
    }

    /// The key's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the key is empty (no transform accepts an empty key).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretKey {
    fn from(bytes: Zeroizing<Vec<u8>>) -> SecretKey {
        SecretKey(bytes)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// The replacement for a redacted value: `marker` if given, else the entity's name in angle
/// brackets (`<EMAIL_ADDRESS>`), as Presidio's anonymizer writes it.
pub fn redact(entity: Entity, marker: Option<&str>) -> String {
    match marker {
        Some(m) => m.to_owned(),
        None => format!("<{}>", entity.as_str()),
    }
}

/// How [`mask`] hides a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskOptions {
    /// How many characters stay visible at the end (letters and digits only when
    /// `keep_separators` is set).
    pub keep_last: usize,
    /// Leave punctuation and spaces as they are, so `4111 1111 1111 1111` becomes
    /// `**** **** **** 1111` rather than `***************1111`.
    pub keep_separators: bool,
    /// The character that replaces hidden ones.
    pub mask_char: char,
}

impl Default for MaskOptions {
    fn default() -> Self {
        MaskOptions {
            keep_last: 4,
            keep_separators: true,
            mask_char: '*',
        }
    }
}

/// Replaces every character of `value` but the last `keep_last` with the mask character.
pub fn mask(value: &str, opts: &MaskOptions) -> String {
    let significant = |c: char| !opts.keep_separators || c.is_alphanumeric();
    let total = value.chars().filter(|&c| significant(c)).count();
    let hide = total.saturating_sub(opts.keep_last);
    let mut seen = 0;
    value
        .chars()
        .map(|c| {
            if !significant(c) {
                return c;
            }
            seen += 1;
            if seen <= hide { opts.mask_char } else { c }
        })
        .collect()
}

/// The network part of an IP address: IPv4 truncated to its /24, IPv6 to its /48, written in
/// canonical form (`192.0.2.77` → `192.0.2.0`, `2001:db8:85a3:8d3::1` → `2001:db8:85a3::`).
pub fn truncate_ip(value: &str) -> Result<String, DetectError> {
    let ip = IpAddr::from_str(value.trim())
        .map_err(|_| DetectError::InvalidInput("expected an IPv4 or IPv6 address"))?;
    Ok(match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            std::net::Ipv4Addr::new(a, b, c, 0).to_string()
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string()
        }
    })
}

/// What [`generalize`] keeps of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generalization {
    /// A date (`YYYY-MM-DD` or RFC 3339) becomes its year.
    Year,
    /// An age in years becomes its ten-year band (`34` → `30-39`); 90 and over become `90+`,
    /// as HIPAA's Safe Harbor method requires.
    AgeBand,
    /// A ZIP or postcode keeps its first three characters (`94107` → `941`,
    /// `SW1A 1AA` → `SW1`).
    Postcode,
}

/// Coarsens `value` as `kind` says.
pub fn generalize(kind: Generalization, value: &str) -> Result<String, DetectError> {
    let value = value.trim();
    match kind {
        Generalization::Year => {
            let (date, _) = dates::parse(value)?;
            Ok(date.year().to_string())
        }
        Generalization::AgeBand => {
            let age: u32 = value
                .parse()
                .map_err(|_| DetectError::InvalidInput("expected an age in whole years"))?;
            Ok(if age >= 90 {
                "90+".to_owned()
            } else {
                let low = age / 10 * 10;
                format!("{low}-{}", low + 9)
            })
        }
        Generalization::Postcode => {
            let kept: String = value
                .chars()
                .filter(|c| !c.is_whitespace())
                .take(3)
                .collect();
            if kept.chars().count() < 3 {
                return Err(DetectError::InvalidInput(
                    "expected a postcode of at least three characters",
                ));
            }
            Ok(kept)
        }
    }
}

/// Rewrites `text`, replacing each finding's value by what `replace` returns for it. Findings
/// must come from scanning `text` (sorted, not overlapping, on char boundaries, as
/// [`Scanner::scan`](crate::Scanner::scan) returns them); ones that are not are refused.
pub fn apply(
    text: &str,
    findings: &[Finding],
    mut replace: impl FnMut(&Finding, &str) -> Result<String, DetectError>,
) -> Result<String, DetectError> {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for f in findings {
        if f.start < pos {
            return Err(DetectError::InvalidInput(
                "findings overlap or are not sorted",
            ));
        }
        let (Some(before), Some(value)) = (text.get(pos..f.start), text.get(f.start..f.end)) else {
            return Err(DetectError::InvalidInput("finding outside the text"));
        };
        out.push_str(before);
        out.push_str(&replace(f, value)?);
        pos = f.end;
    }
    out.push_str(text.get(pos..).unwrap_or(""));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_debug_hides_bytes() {
        let k = SecretKey::new(&[0x41; 32]);
        let d = format!("{k:?}");
        assert!(
            !d.contains("65") && !d.contains("41") && !d.contains('A'),
            "{d}"
        );
    }
}
