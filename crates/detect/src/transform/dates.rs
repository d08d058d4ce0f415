//! Date shifting: every date of one subject moves by the same secret number of days.
//!
//! The offset is derived from HMAC-SHA-256 of the subject under the caller's key, so it is
//! stable without storing anything, differs between subjects (dates of different people cannot
//! be re-aligned by one known offset), and is unknowable without the key. Intervals between one
//! subject's dates survive, which is what makes shifted data still useful. The offset is never
//! zero, so no date is left in place by chance.

use jiff::civil::Date;
use jiff::{Span, Timestamp};

use super::SecretKey;
use super::pseudonym::hmac_sha256;
use crate::DetectError;

/// The widest shift range accepted: ten years either way.
pub const MAX_SHIFT_DAYS: u32 = 3650;

const DOMAIN: &[u8] = b"custodian-detect/date-shift/v1\0";

/// The subject's offset in days: in `-max_days..=-1` or `1..=max_days`, the same for every
/// call with the same key and subject.
pub fn date_shift_days(key: &SecretKey, subject: &str, max_days: u32) -> Result<i32, DetectError> {
    if !(1..=MAX_SHIFT_DAYS).contains(&max_days) {
        return Err(DetectError::InvalidInput("max_days must be in 1..=3650"));
    }
    let tag = hmac_sha256(key, "date_shift", DOMAIN, subject.as_bytes())?;
    let mut first = [0u8; 8];
    first.copy_from_slice(&tag.as_ref()[..8]);
    let max = u64::from(max_days);
    // 2^64 is not a multiple of 2·max, but the bias is below 2^-50: immaterial here.
    let r = u64::from_be_bytes(first) % (2 * max);
    let offset = if r < max {
        -((max - r) as i64)
    } else {
        (r - max + 1) as i64
    };
    i32::try_from(offset).map_err(|_| DetectError::InvalidInput("max_days too large"))
}

/// Shifts a `YYYY-MM-DD` date, or the date of an RFC 3339 timestamp (time and offset kept as
/// written), by the subject's offset from [`date_shift_days`].
pub fn date_shift(
    key: &SecretKey,
    subject: &str,
    value: &str,
    max_days: u32,
) -> Result<String, DetectError> {
    let days = date_shift_days(key, subject, max_days)?;
    let (date, rest) = parse(value.trim())?;
    let shifted = date
        .checked_add(Span::new().days(days))
        .map_err(|_| DetectError::DateOutOfRange)?;
    if !(1..=9999).contains(&shifted.year()) {
        return Err(DetectError::DateOutOfRange);
    }
    Ok(format!("{shifted}{rest}"))
}

/// Splits a date or RFC 3339 timestamp into its calendar date and the rest of the text after
/// the date (empty, or the `T…` time and offset).
pub(super) fn parse(value: &str) -> Result<(Date, &str), DetectError> {
    const EXPECTED: &str = "expected a date as YYYY-MM-DD or an RFC 3339 timestamp";
    let b = value.as_bytes();
    let shaped = b.len() >= 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b[..10]
            .iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return Err(DetectError::InvalidInput(EXPECTED));
    }
    let (date_part, rest) = value.split_at(10);
    let date: Date = date_part
        .parse()
        .map_err(|_| DetectError::InvalidInput(EXPECTED))?;
    if !rest.is_empty() {
        // The time part must be a real RFC 3339 time with an offset: `rest` is kept verbatim,
        // so anything else would pass arbitrary text through.
        let sep_ok = matches!(rest.as_bytes()[0], b'T' | b't' | b' ');
        if !sep_ok || value.parse::<Timestamp>().is_err() {
            return Err(DetectError::InvalidInput(EXPECTED));
        }
    }
    Ok((date, rest))
}
