//! Shamir secret sharing of the root key (GF(256), by the `blahaj` crate) and the text form of a
//! share that operators keep: `cus1-` then hex of threshold, index, the 32 share bytes and a
//! 4-byte checksum, so a mistyped share is caught before it is ever combined.
//!
//! Each share also has a fingerprint (a hash of its index and bytes) that the deployment stores
//! at initialisation, so a share from another deployment or a wrong one is refused as soon as
//! it is offered, not after the threshold is reached. A share is as random as the key it
//! splits, so its hash reveals nothing usable.

use std::fmt;

use blahaj::{Share as RawShare, Sharks};
use zeroize::Zeroizing;

use crate::CryptoError;

const PREFIX: &str = "cus1-";
const SHARE_BYTES: usize = 32;
/// threshold, index, share bytes, checksum.
const ENCODED_BYTES: usize = 1 + 1 + SHARE_BYTES + 4;

/// One operator's share of the root key.
pub struct Share {
    threshold: u8,
    index: u8,
    bytes: Zeroizing<[u8; SHARE_BYTES]>,
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Share(index {}, threshold {}, ..)",
            self.index, self.threshold
        )
    }
}

fn share_error(reason: impl Into<String>) -> CryptoError {
    CryptoError::Share(reason.into())
}

impl Share {
    pub fn index(&self) -> u8 {
        self.index
    }

    pub fn threshold(&self) -> u8 {
        self.threshold
    }

    /// Parses the text form; says what is wrong with a damaged share.
    pub fn parse(text: &str) -> Result<Share, CryptoError> {
        let hex = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| share_error(format!("a share starts with {PREFIX:?}")))?;
        if hex.len() != ENCODED_BYTES * 2 {
            return Err(share_error(format!(
                "a share has {} hex digits after {PREFIX:?}, this one has {}",
                ENCODED_BYTES * 2,
                hex.len()
            )));
        }
        let mut raw = Zeroizing::new([0u8; ENCODED_BYTES]);
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => raw[i] = (hi * 16 + lo) as u8,
                _ => return Err(share_error("a share is hexadecimal after its prefix")),
            }
        }
        let (body, check) = raw.split_at(ENCODED_BYTES - 4);
        if checksum(body) != check {
            return Err(share_error(
                "the share's checksum does not match: it was mistyped or truncated",
            ));
        }
        let (threshold, index) = (body[0], body[1]);
        if threshold < 2 || index == 0 {
            return Err(share_error("the share's header is invalid"));
        }
        let mut bytes = Zeroizing::new([0u8; SHARE_BYTES]);
        bytes.copy_from_slice(&body[2..]);
        Ok(Share {
            threshold,
            index,
            bytes,
        })
    }

    /// The text an operator keeps.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut body = Zeroizing::new(Vec::with_capacity(ENCODED_BYTES));
        body.push(self.threshold);
        body.push(self.index);
        body.extend_from_slice(self.bytes.as_ref());
        let check = checksum(&body);
        body.extend_from_slice(&check);
        let mut text = Zeroizing::new(String::from(PREFIX));
        for b in body.iter() {
            text.push_str(&format!("{b:02x}"));
        }
        text
    }

    /// What the deployment stores to recognise this share later.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut input = Zeroizing::new(b"custodian/share-fingerprint/v1".to_vec());
        input.push(self.threshold);
        input.push(self.index);
        input.extend_from_slice(self.bytes.as_ref());
        crate::sha256(&input)
    }
}

fn checksum(body: &[u8]) -> [u8; 4] {
    let mut input = b"custodian/share-checksum/v1".to_vec();
    input.extend_from_slice(body);
    let digest = crate::sha256(&input);
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Splits `secret` into `shares` shares, any `threshold` of which rebuild it.
pub fn split(secret: &[u8; 32], shares: u8, threshold: u8) -> Result<Vec<Share>, CryptoError> {
    if threshold < 2 || threshold > shares {
        return Err(share_error(format!(
            "need 2 <= threshold <= shares, got threshold {threshold} of {shares} shares"
        )));
    }
    Sharks(threshold)
        .dealer(secret)
        .take(shares as usize)
        .map(|raw| {
            let encoded = Zeroizing::new(Vec::from(&raw));
            let (index, y) = encoded
                .split_first()
                .ok_or_else(|| share_error("the dealer produced an empty share"))?;
            let mut bytes = Zeroizing::new([0u8; SHARE_BYTES]);
            bytes.copy_from_slice(y);
            Ok(Share {
                threshold,
                index: *index,
                bytes,
            })
        })
        .collect()
}

/// Rebuilds the secret from at least `threshold` distinct shares. It cannot tell a wrong
/// share from a right one: the caller checks the result against the root check.
pub fn combine(shares: &[Share]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let threshold = shares
        .first()
        .map(|s| s.threshold)
        .ok_or_else(|| share_error("no shares given"))?;
    if shares.iter().any(|s| s.threshold != threshold) {
        return Err(share_error("the shares disagree on the threshold"));
    }
    let raw = shares
        .iter()
        .map(|s| {
            let mut encoded = Zeroizing::new(Vec::with_capacity(1 + SHARE_BYTES));
            encoded.push(s.index);
            encoded.extend_from_slice(s.bytes.as_ref());
            RawShare::try_from(encoded.as_slice()).map_err(share_error)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let secret = Zeroizing::new(
        Sharks(threshold)
            .recover(&raw)
            .map_err(|e| share_error(e.to_string()))?,
    );
    crate::root::key32(&secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reparse(s: &Share) -> Share {
        Share::parse(&s.to_text()).unwrap()
    }

    #[test]
    fn any_threshold_subset_rebuilds_the_secret() {
        let secret = [7u8; 32];
        let shares = split(&secret, 5, 3).unwrap();
        assert_eq!(shares.len(), 5);
        for a in 0..5 {
            for b in a + 1..5 {
                for c in b + 1..5 {
                    let subset = [
                        reparse(&shares[a]),
                        reparse(&shares[b]),
                        reparse(&shares[c]),
                    ];
                    assert_eq!(*combine(&subset).unwrap(), secret);
                }
            }
        }
    }

    #[test]
    fn fewer_than_threshold_shares_do_not_rebuild_it() {
        let secret = [0x42u8; 32];
        let shares = split(&secret, 3, 2).unwrap();
        assert!(combine(&[reparse(&shares[0])]).is_err());
        // Two copies of one share are one share.
        assert!(combine(&[reparse(&shares[0]), reparse(&shares[0])]).is_err());
    }

    #[test]
    fn text_form_round_trips_and_catches_typos() {
        let shares = split(&[1u8; 32], 3, 2).unwrap();
        let text = shares[1].to_text();
        assert!(text.starts_with("cus1-"));
        let parsed = Share::parse(&text).unwrap();
        assert_eq!(parsed.index(), shares[1].index());
        assert_eq!(parsed.threshold(), 2);
        assert_eq!(parsed.fingerprint(), shares[1].fingerprint());
        assert_ne!(shares[0].fingerprint(), shares[1].fingerprint());

        let mut typo = text.to_string();
        let pos = 20;
        let c = if &typo[pos..=pos] == "0" { "1" } else { "0" };
        typo.replace_range(pos..=pos, c);
        let err = Share::parse(&typo).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        let err = Share::parse(&text[..text.len() - 2])
            .unwrap_err()
            .to_string();
        assert!(err.contains("hex digits"), "{err}");
        assert!(Share::parse("hello").is_err());
        assert!(Share::parse(&text.replace("cus1-", "cus1-zz")).is_err());
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(split(&[0; 32], 3, 1).is_err());
        assert!(split(&[0; 32], 2, 3).is_err());
        assert!(combine(&[]).is_err());
    }

    #[test]
    fn debug_shows_no_share_bytes() {
        let shares = split(&[0xab; 32], 2, 2).unwrap();
        let debug = format!("{:?}", shares[0]);
        assert_eq!(
            debug,
            format!("Share(index {}, threshold 2, ..)", shares[0].index())
        );
    }
}
