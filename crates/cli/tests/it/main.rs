//! Integration tests of custodian: the HTTP API against a real in-process server (SQLite and
//! PostgreSQL), tenant isolation, encryption at rest, and the `custodian` binary itself.

mod harness;

mod api;
mod at_rest;
mod audit;
mod cli;
mod deidentify;
mod grants;
mod isolation;
mod keys;
mod oidc;
#[path = "../support/oidc_provider.rs"]
mod oidc_provider;
mod retention;
mod retention_year;
mod scan;
mod seal;
mod subjects;
