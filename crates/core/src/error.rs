//! The error type of the domain crate. Each variant says what was wrong and what would be valid,
//! because these messages reach operators through `custodian policy check` and API problems.

use std::fmt;

use crate::policy::Diagnostics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    #[error("invalid duration: {0}")]
    Duration(#[from] DurationError),
    #[error("{0}")]
    Policy(Diagnostics),
}

/// A string that is not a valid identifier of its kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: expected {rule}")]
pub struct InvalidId {
    pub kind: &'static str,
    pub value: String,
    pub rule: &'static str,
}

/// Why a duration string was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurationError {
    Malformed,
    MissingUnit,
    AmbiguousMonth,
    UnknownUnit(String),
    Zero,
    TooLong { max: String },
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Malformed => f.write_str("not a duration"),
            DurationError::MissingUnit => f.write_str("the unit is missing"),
            DurationError::AmbiguousMonth => f.write_str("'m' is ambiguous; write 'mo' for months"),
            DurationError::UnknownUnit(u) => write!(f, "unknown unit {u:?}"),
            DurationError::Zero => f.write_str("a duration must be longer than zero"),
            DurationError::TooLong { max } => write!(f, "longer than the maximum of {max}"),
        }
    }
}

impl std::error::Error for DurationError {}
