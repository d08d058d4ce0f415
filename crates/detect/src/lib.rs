//! custodian's PII and secret detection, and the de-identification transforms applied to what
//! it finds.
//!
//! Detection is a [`Scanner`]: built once from a [`ScanConfig`], shared between threads, and
//! asked to [`scan`](Scanner::scan) text. It reports [`Finding`]s, byte ranges tagged with an
//! [`Entity`] (named as Presidio names them where Presidio has the entity), a score in 0..=1 and
//! a `test` flag for values that are reserved for documentation or testing. A finding never holds
//! the matched text: the caller slices the input it already has, so nothing here can leak a value
//! through `Debug` or an error message.
//!
//! Every detector validates what its pattern matches (Luhn and issuer ranges for cards, mod-97
//! for IBANs, area/group/serial rules for SSNs, `std::net` for IP addresses, libphonenumber's
//! metadata for phone numbers, a JSON header for JWTs, Shannon entropy for generic secrets), so a
//! number that merely has the right shape is not reported. Patterns run on the `regex` crate,
//! whose searches take linear time, behind cheap prefilters: one pass over the bytes finds the
//! few places where numbers, addresses and IBANs can be (digit groups, hex-and-colon runs, an
//! '@'), the numeric and address detectors run only there, and one Aho-Corasick pass finds the
//! prefixes and keywords that secret detectors start from.
//!
//! The [`transform`] module holds the de-identification functions (redaction, masking, keyed
//! pseudonyms, reversible tokens, format-preserving encryption, IP truncation, date shifting and
//! generalisation). They are pure: keys come in as [`SecretKey`]s from the caller, which owns key
//! management.
//!
//! This crate does no I/O and does not panic on any input.

#![forbid(unsafe_code)]

pub mod anonymise;
mod entity;
mod phone;
mod pii;
mod scan;
mod secrets;
mod swar;
pub mod transform;
pub mod validate;

pub use entity::Entity;
pub use scan::{Finding, ScanConfig, Scanner};
pub use transform::SecretKey;

/// Everything that can go wrong in this crate.
///
/// No variant carries a scanned or transformed value, nor key material: errors end up in logs.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DetectError {
    /// An entity name that is not one of [`Entity::ALL`].
    #[error("unknown entity name {0:?}")]
    UnknownEntity(String),
    /// A phone region in [`ScanConfig::phone_regions`] that is not an ISO 3166-1 alpha-2 code
    /// known to the phone number metadata.
    #[error("unknown phone region {0:?}: expected an ISO 3166-1 alpha-2 code such as \"US\"")]
    UnknownRegion(String),
    /// A scanner setting out of its range.
    #[error("invalid scanner configuration: {0}")]
    Config(&'static str),
    /// A built-in pattern failed to compile; a bug in this crate, reported instead of panicking.
    #[error("internal pattern failed to compile: {0}")]
    Pattern(&'static str),
    /// A key of the wrong length for the transform it was given to.
    #[error("{transform} needs a key of {expected}, got {got} bytes")]
    KeyLength {
        transform: &'static str,
        expected: &'static str,
        got: usize,
    },
    /// Format-preserving encryption needs a domain of at least one million values (NIST SP
    /// 800-38G), which for decimal digits means six of them.
    #[error("format-preserving encryption needs at least {min} digits, the value has {got}")]
    TooFewDigits { got: usize, min: usize },
    /// A value with more digits than format-preserving encryption accepts here.
    #[error("format-preserving encryption accepts at most {max} digits, the value has {got}")]
    TooManyDigits { got: usize, max: usize },
    /// A token that is not of the form this crate produces.
    #[error("malformed token: {0}")]
    MalformedToken(&'static str),
    /// A token that does not authenticate under the key and context: tampered, from another key,
    /// or from another context. AES-SIV cannot tell which.
    #[error("token rejected: it was altered, or made under another key or context")]
    TokenRejected,
    /// A value that the transform cannot interpret; the reason names the expected form.
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// A date that would leave the supported calendar range once shifted.
    #[error("the shifted date is outside the supported range")]
    DateOutOfRange,
    /// The underlying cipher reported a failure that the checks above should have prevented.
    #[error("cipher failure: {0}")]
    Cipher(&'static str),
}
