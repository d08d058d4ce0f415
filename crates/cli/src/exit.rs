//! Failures of a command and their exit codes (documented in `custodian --help`).

use std::process::ExitCode;

#[derive(Debug)]
pub enum Failure {
    /// The input was invalid: a policy with errors, a request the server refused.
    Invalid(anyhow::Error),
    /// A server or database could not be reached.
    Unreachable(anyhow::Error),
    /// The server or the store failed unexpectedly.
    Internal(anyhow::Error),
}

impl Failure {
    pub fn report(self) -> ExitCode {
        let (code, error) = match self {
            Failure::Invalid(e) => (1, e),
            Failure::Unreachable(e) => (3, e),
            Failure::Internal(e) => (4, e),
        };
        eprintln!("error: {error:#}");
        ExitCode::from(code)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Internal(e)
    }
}

pub type CmdResult = Result<(), Failure>;

/// `Failure::Invalid` from anything printable.
pub fn invalid(msg: impl std::fmt::Display) -> Failure {
    Failure::Invalid(anyhow::anyhow!("{msg}"))
}
