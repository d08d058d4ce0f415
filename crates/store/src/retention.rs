//! What the retention engine asks of storage: legal holds, expiry buckets that are due, the
//! facts a hold is decided on, the purge of a destroyed bucket, and the deletion certificates
//! that prove it. Both backends implement [`RetentionStore`]; the conformance suite runs it.

use async_trait::async_trait;
use custodian_core::hold::{Hold, HoldScope, Release};
use custodian_core::ids::{DataTypeName, RecordId, TenantId};
use jiff::Timestamp;

use crate::{Result, StoreError};

/// One expiry bucket of one tenant's data type: its records share a data key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketSummary {
    pub tenant: TenantId,
    pub data_type: DataTypeName,
    pub bucket: String,
    pub records: u64,
    pub oldest_expiry: Timestamp,
    pub newest_expiry: Timestamp,
}

/// What a hold is decided on for one record of a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketRecord {
    pub id: RecordId,
    pub event_time: Timestamp,
    pub subjects: Vec<[u8; 32]>,
}

/// A signed deletion certificate as stored. `scope` names what was destroyed
/// (`bucket/<type>/<bucket>`, …); one certificate per scope, so a repeated destruction
/// (after a crash) never issues a second one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRow {
    pub id: String,
    pub scope: String,
    pub issued_at: Timestamp,
    /// The certificate as a signed note.
    pub note: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Released(Hold),
    AlreadyReleased(Hold),
    NotFound,
}

#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Stores a new hold and appends `audit` to the tenant's log, in one transaction.
    async fn insert_hold(&self, tenant: &TenantId, hold: &Hold, audit: Vec<u8>) -> Result<()>;

    /// Releases an active hold and appends `audit`, in one transaction. A hold already
    /// released or unknown is left alone and nothing is appended.
    async fn release_hold(
        &self,
        tenant: &TenantId,
        id: &str,
        release: Release,
        audit: Vec<u8>,
    ) -> Result<ReleaseOutcome>;

    /// Every hold of the tenant, released ones included, oldest first.
    async fn holds(&self, tenant: &TenantId) -> Result<Vec<Hold>>;

    /// Expiry buckets whose every record expired at or before `at`, of one tenant or of all,
    /// oldest expiry first.
    async fn due_buckets(
        &self,
        tenant: Option<&TenantId>,
        at: Timestamp,
    ) -> Result<Vec<BucketSummary>>;

    /// The records of one bucket, without their ciphertext, in id order.
    async fn bucket_records(
        &self,
        tenant: &TenantId,
        data_type: &DataTypeName,
        bucket: &str,
    ) -> Result<Vec<BucketRecord>>;

    /// Deletes every record of a bucket with its subject-index entries, stores `certificate`
    /// (unless one of its scope exists) and appends `audit`, in one transaction. Returns the
    /// number of records deleted.
    async fn purge_bucket(
        &self,
        tenant: &TenantId,
        data_type: &DataTypeName,
        bucket: &str,
        certificate: CertificateRow,
        audit: Vec<u8>,
    ) -> Result<u64>;

    /// The tenant's deletion certificates, oldest first.
    async fn certificates(&self, tenant: &TenantId) -> Result<Vec<CertificateRow>>;
}

/// A hold scope as stored: its kind and one value column (data type name, pseudonym, or
/// the range as two big-endian microsecond counts).
pub(crate) fn scope_to_columns(scope: &HoldScope) -> (&'static str, Vec<u8>) {
    let value = match scope {
        HoldScope::Tenant => Vec::new(),
        HoldScope::DataType(t) => t.as_str().as_bytes().to_vec(),
        HoldScope::Subject(p) => p.to_vec(),
        HoldScope::EventTime { from, to } => {
            let mut v = from.as_microsecond().to_be_bytes().to_vec();
            v.extend_from_slice(&to.as_microsecond().to_be_bytes());
            v
        }
    };
    (scope.kind(), value)
}

pub(crate) fn scope_from_columns(kind: &str, value: &[u8]) -> Result<HoldScope> {
    let corrupt = || StoreError::Corrupt(format!("bad hold scope {kind}"));
    Ok(match kind {
        "tenant" => HoldScope::Tenant,
        "data_type" => HoldScope::DataType(
            std::str::from_utf8(value)
                .ok()
                .and_then(|s| DataTypeName::new(s).ok())
                .ok_or_else(corrupt)?,
        ),
        "subject" => HoldScope::Subject(value.try_into().map_err(|_| corrupt())?),
        "event_time" => {
            let (from, to) = value.split_at_checked(8).ok_or_else(corrupt)?;
            let us = |b: &[u8]| -> Result<Timestamp> {
                let n = i64::from_be_bytes(b.try_into().map_err(|_| corrupt())?);
                Timestamp::from_microsecond(n).map_err(|_| corrupt())
            };
            HoldScope::EventTime {
                from: us(from)?,
                to: us(to)?,
            }
        }
        _ => return Err(corrupt()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_round_trips_through_its_columns() {
        let scopes = [
            HoldScope::Tenant,
            HoldScope::DataType(DataTypeName::new("app_log").unwrap()),
            HoldScope::Subject([9; 32]),
            HoldScope::EventTime {
                from: "2026-01-01T00:00:00Z".parse().unwrap(),
                to: "2026-02-01T00:00:00.5Z".parse().unwrap(),
            },
        ];
        for scope in scopes {
            let (kind, value) = scope_to_columns(&scope);
            assert_eq!(scope_from_columns(kind, &value).unwrap(), scope);
        }
        assert!(scope_from_columns("subject", &[1, 2]).is_err());
        assert!(scope_from_columns("galaxy", &[]).is_err());
    }
}
