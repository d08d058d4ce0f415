//! custodian's domain: identifiers, classes, the policy model with its parser and renderer,
//! retention maths and access decisions. Pure: no I/O, no clock, no randomness. Time enters as
//! a parameter, so retention and expiry are testable across years in microseconds.

#![forbid(unsafe_code)]

pub mod access;
pub mod audit;
pub mod clock;
pub mod duration;
pub mod error;
pub mod grant;
pub mod hold;
pub mod ids;
pub mod policy;
pub mod retention;

pub use error::Error;
