//! What the retention engine asks of storage: legal holds, expiry buckets that are due, the
//! facts a hold is decided on, the purge of a destroyed bucket, and the deletion certificates
//! that prove it; the events that start `after_event` clocks and the re-sealing of records
//! under new buckets; tenant terminations; two-step (scheduled) deletions; and the lock that
//! serialises destruction across nodes. Both backends implement [`RetentionStore`]; the
//! conformance suite runs it.

use async_trait::async_trait;
use custodian_core::hold::{Hold, HoldScope, Release};
use custodian_core::ids::{DataTypeName, RecordId, TenantId};
use jiff::Timestamp;

use crate::{AuditEntry, Result, StoreError, StoredRecord};

/// One expiry bucket of one tenant's data type: its records share a data key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketSummary {
    pub tenant: TenantId,
    pub data_type: DataTypeName,
    pub bucket: String,
    pub records: u64,
    pub oldest_expiry: Timestamp,
    pub newest_expiry: Timestamp,
    /// The earliest event time of the bucket's records.
    pub oldest_event_time: Timestamp,
}

/// What a hold is decided on for one record of a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketRecord {
    pub id: RecordId,
    pub event_time: Timestamp,
    pub subjects: Vec<[u8; 32]>,
    /// Bytes of ciphertext, for the destroyed-bytes figure.
    pub sealed_len: u64,
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

/// A record sealed anew under another bucket key: held records moved out of a bucket that is
/// about to be destroyed, and `after_event` records whose clock started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RekeyedRecord {
    pub id: RecordId,
    pub key_bucket: String,
    pub expires_at: Option<Timestamp>,
    pub pending_event: Option<String>,
    pub sealed: Vec<u8>,
}

/// An event that starts `after_event` retention clocks (e.g. `ticket_closed` for `INC-42`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionEvent {
    pub event: String,
    pub reference: String,
    pub at: Timestamp,
    pub recorded_by: String,
}

/// A tenant's termination: writes refused from `terminated_at`, everything not held purged at
/// `purge_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Termination {
    pub tenant: TenantId,
    pub requested_by: String,
    pub reason: String,
    pub terminated_at: Timestamp,
    pub purge_at: Timestamp,
    pub purged_at: Option<Timestamp>,
    pub certificate_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TerminationCancel {
    Cancelled(Termination),
    /// Its purge time has come (or the purge is done): it can no longer be withdrawn.
    PurgeStarted(Termination),
    NotTerminated,
}

/// What a scheduled (two-step) deletion destroys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeletionTarget {
    Record(RecordId),
    /// Every record of a subject, named by its keyed pseudonym.
    Subject([u8; 32]),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeletionState {
    Scheduled,
    Cancelled {
        by: String,
        at: Timestamp,
    },
    Done {
        at: Timestamp,
        certificate_id: String,
    },
}

/// A deletion requested now and carried out at `due_at`, unless cancelled before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledDeletion {
    pub id: String,
    pub tenant: TenantId,
    pub target: DeletionTarget,
    pub reason: String,
    pub requested_by: String,
    pub requested_at: Timestamp,
    pub due_at: Timestamp,
    pub state: DeletionState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled(ScheduledDeletion),
    /// Done or cancelled before; left as it was.
    NotCancellable(ScheduledDeletion),
    NotFound,
}

/// Every bucket of a tenant, whatever its expiries (for termination).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketCount {
    pub data_type: DataTypeName,
    pub bucket: String,
    pub records: u64,
}

/// The destruction lock, held until dropped: while one holder has it, no other destruction
/// starts and no hold is placed, on this node or any other sharing the database, so a hold is
/// never placed between a destruction's hold check and its shred.
///
/// On PostgreSQL it is a session advisory lock on a connection taken out of the pool for the
/// purpose: dropping the guard closes that connection, which ends the session and so releases
/// the lock. On SQLite one process owns the database, which serialises its destructions
/// in memory, so the guard holds nothing.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct DestructionLock {
    /// Only ever dropped: that is what releases the lock.
    pg_session: Option<deadpool_postgres::ClientWrapper>,
}

impl DestructionLock {
    /// A guard that holds nothing, for a database only one process uses.
    pub(crate) fn in_process() -> DestructionLock {
        DestructionLock { pg_session: None }
    }

    /// A guard over a connection whose session holds the advisory lock. The connection must
    /// not belong to a pool: it is closed, not returned, when the guard is dropped.
    pub(crate) fn postgres_session(conn: deadpool_postgres::ClientWrapper) -> DestructionLock {
        DestructionLock {
            pg_session: Some(conn),
        }
    }
}

impl std::fmt::Debug for DestructionLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestructionLock")
            .field("postgres_session", &self.pg_session.is_some())
            .finish()
    }
}

#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Stores a new hold and appends `audit` to the tenant's log, in one transaction. Waits
    /// while the destruction lock is held (see [`RetentionStore::lock_destruction`]).
    async fn insert_hold(&self, tenant: &TenantId, hold: &Hold, audit: AuditEntry) -> Result<()>;

    /// Releases an active hold and appends `audit`, in one transaction. A hold already
    /// released or unknown is left alone and nothing is appended.
    async fn release_hold(
        &self,
        tenant: &TenantId,
        id: &str,
        release: Release,
        audit: AuditEntry,
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
        audit: AuditEntry,
    ) -> Result<u64>;

    /// The tenant's deletion certificates, oldest first.
    async fn certificates(&self, tenant: &TenantId) -> Result<Vec<CertificateRow>>;

    /// One of the tenant's deletion certificates, by id.
    async fn certificate(&self, tenant: &TenantId, id: &str) -> Result<Option<CertificateRow>>;

    /// Seals records anew: sets the bucket, expiry, pending event and ciphertext of each listed
    /// record of the tenant (its event reference stays) and appends `audit`, in one
    /// transaction. Returns the number of records updated; ids the tenant does not have are
    /// skipped.
    async fn rekey_records(
        &self,
        tenant: &TenantId,
        records: Vec<RekeyedRecord>,
        audit: AuditEntry,
    ) -> Result<u64>;

    /// Records that an event happened and appends `audit`, in one transaction. The first
    /// recording of an (event, reference) wins: a later one changes nothing, appends nothing,
    /// and gets the first back.
    async fn record_event(
        &self,
        tenant: &TenantId,
        event: &RetentionEvent,
        audit: AuditEntry,
    ) -> Result<Option<RetentionEvent>>;

    /// The recorded events named `event` among `references`, by reference.
    async fn events(
        &self,
        tenant: &TenantId,
        event: &str,
        references: &[String],
    ) -> Result<Vec<RetentionEvent>>;

    /// The tenant's records still waiting for `event` on `reference`, in id order, `limit` at
    /// most.
    async fn pending_records(
        &self,
        tenant: &TenantId,
        event: &str,
        reference: &str,
        limit: u32,
    ) -> Result<Vec<StoredRecord>>;

    /// Every bucket of the tenant with its record count, whatever its expiries, by data type
    /// and bucket.
    async fn tenant_buckets(&self, tenant: &TenantId) -> Result<Vec<BucketCount>>;

    /// Records a tenant's termination and appends `audit` to its log, in one transaction. A
    /// tenant is terminated once: a second request changes nothing, appends nothing, and gets
    /// the first termination back.
    async fn terminate_tenant(
        &self,
        termination: &Termination,
        audit: AuditEntry,
    ) -> Result<Option<Termination>>;

    async fn termination(&self, tenant: &TenantId) -> Result<Option<Termination>>;

    /// Withdraws a termination whose purge is still ahead (`purge_at` after `at`): the tenant
    /// takes writes again. Appends `audit` only when it was withdrawn, in one transaction.
    async fn cancel_termination(
        &self,
        tenant: &TenantId,
        at: Timestamp,
        audit: AuditEntry,
    ) -> Result<TerminationCancel>;

    /// Every tenant's termination, oldest first (for the sweeper, across tenants).
    async fn terminations(&self) -> Result<Vec<Termination>>;

    /// Marks a termination purged: stores `certificate` (unless one of its scope exists), sets
    /// the termination's purge time and certificate (the stored one of that scope) and appends
    /// `audit`, in one transaction. A termination already finished keeps its first purge time
    /// and certificate.
    async fn finish_termination(
        &self,
        tenant: &TenantId,
        purged_at: Timestamp,
        certificate: CertificateRow,
        audit: AuditEntry,
    ) -> Result<()>;

    /// Stores a scheduled deletion and appends `audit` to its tenant's log, in one transaction.
    async fn schedule_deletion(
        &self,
        deletion: &ScheduledDeletion,
        audit: AuditEntry,
    ) -> Result<()>;

    /// Cancels a deletion still scheduled and appends `audit`, in one transaction. One done or
    /// cancelled before, or unknown, is left alone and nothing is appended.
    async fn cancel_deletion(
        &self,
        tenant: &TenantId,
        id: &str,
        by: &str,
        at: Timestamp,
        audit: AuditEntry,
    ) -> Result<CancelOutcome>;

    /// Every scheduled deletion of the tenant, whatever its state, oldest request first.
    async fn scheduled_deletions(&self, tenant: &TenantId) -> Result<Vec<ScheduledDeletion>>;

    /// Deletions still scheduled and due at or before `at`, of every tenant, oldest due first.
    async fn due_deletions(&self, at: Timestamp) -> Result<Vec<ScheduledDeletion>>;

    /// Carries out a deletion: deletes the listed records of the tenant with their
    /// subject-index entries, stores `certificate` (unless one of its scope exists), marks the
    /// scheduled deletion `deletion` (when given) done at the certificate's issue time with the
    /// stored certificate of that scope, and appends `audit`, in one transaction. Returns the
    /// number of records deleted; run again, it deletes nothing and stores no second
    /// certificate.
    async fn complete_deletion(
        &self,
        tenant: &TenantId,
        deletion: Option<&str>,
        records: &[RecordId],
        certificate: CertificateRow,
        audit: AuditEntry,
    ) -> Result<u64>;

    /// Takes the destruction lock, waiting while anyone else (any node) holds it. Held until
    /// the guard is dropped; [`RetentionStore::insert_hold`] waits for it too, so never place
    /// a hold while holding it.
    async fn lock_destruction(&self) -> Result<DestructionLock>;

    /// The retention each of the tenant's data types was last applied with.
    async fn applied_retentions(&self, tenant: &TenantId) -> Result<Vec<AppliedRetention>>;

    /// Stores (or replaces) the retention applied to one data type, appending `audit` when
    /// given, in one transaction.
    async fn put_applied_retention(
        &self,
        tenant: &TenantId,
        applied: &AppliedRetention,
        audit: Option<AuditEntry>,
    ) -> Result<()>;

    /// The tenant's records of one type in id order, `limit` at most, after `after`.
    async fn records_of_type(
        &self,
        tenant: &TenantId,
        data_type: &DataTypeName,
        after: Option<RecordId>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>>;
}

/// The retention a data type's stored records were last computed with. A policy whose
/// retention differs is applied to them (`applied` false until every record is done), with
/// `since` the moment the change was first seen: the grace period of a shortening runs from
/// there, whatever restarts happen in between.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedRetention {
    pub data_type: DataTypeName,
    /// The effective retention as the policy renders it, e.g. `180d (tier standard)`.
    pub rule: String,
    pub since: Timestamp,
    pub applied: bool,
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

/// A deletion target as stored: its kind and one value column (the record id's text, or the
/// subject's pseudonym).
pub(crate) fn target_to_columns(target: &DeletionTarget) -> (&'static str, Vec<u8>) {
    match target {
        DeletionTarget::Record(id) => ("record", id.to_string().into_bytes()),
        DeletionTarget::Subject(p) => ("subject", p.to_vec()),
    }
}

pub(crate) fn target_from_columns(kind: &str, value: &[u8]) -> Result<DeletionTarget> {
    let corrupt = || StoreError::Corrupt(format!("bad deletion target {kind}"));
    Ok(match kind {
        "record" => DeletionTarget::Record(
            std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(corrupt)?,
        ),
        "subject" => DeletionTarget::Subject(value.try_into().map_err(|_| corrupt())?),
        _ => return Err(corrupt()),
    })
}

/// The state columns of a scheduled deletion: `(cancelled_by, cancelled_at, done_at,
/// certificate_id)`.
pub(crate) type StateColumns<'a> = (
    Option<&'a str>,
    Option<Timestamp>,
    Option<Timestamp>,
    Option<&'a str>,
);

pub(crate) fn state_to_columns(state: &DeletionState) -> StateColumns<'_> {
    match state {
        DeletionState::Scheduled => (None, None, None, None),
        DeletionState::Cancelled { by, at } => (Some(by), Some(*at), None, None),
        DeletionState::Done { at, certificate_id } => (None, None, Some(*at), Some(certificate_id)),
    }
}

/// A deletion marked done is done, whatever else its row says: its data is gone.
pub(crate) fn state_from_columns(
    cancelled_by: Option<String>,
    cancelled_at: Option<Timestamp>,
    done_at: Option<Timestamp>,
    certificate_id: Option<String>,
) -> Result<DeletionState> {
    Ok(
        match (done_at, certificate_id, cancelled_by, cancelled_at) {
            (Some(at), Some(certificate_id), _, _) => DeletionState::Done { at, certificate_id },
            (None, None, Some(by), Some(at)) => DeletionState::Cancelled { by, at },
            (None, None, None, None) => DeletionState::Scheduled,
            (None, None, _, _) => {
                return Err(StoreError::Corrupt(
                    "a cancelled deletion lacks its canceller or time".into(),
                ));
            }
            _ => {
                return Err(StoreError::Corrupt(
                    "a done deletion lacks its time or certificate".into(),
                ));
            }
        },
    )
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

    #[test]
    fn every_deletion_target_and_state_round_trips_through_its_columns() {
        let targets = [
            DeletionTarget::Record(RecordId::from_ulid(ulid::Ulid::from_parts(7, 7))),
            DeletionTarget::Subject([4; 32]),
        ];
        for target in targets {
            let (kind, value) = target_to_columns(&target);
            assert_eq!(target_from_columns(kind, &value).unwrap(), target);
        }
        assert!(target_from_columns("record", b"not a ulid").is_err());
        assert!(target_from_columns("subject", &[1]).is_err());
        assert!(target_from_columns("tenant", &[]).is_err());
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let states = [
            DeletionState::Scheduled,
            DeletionState::Cancelled {
                by: "token:a".into(),
                at,
            },
            DeletionState::Done {
                at,
                certificate_id: "cert_1".into(),
            },
        ];
        for state in states {
            let (by, cancelled, done, cert) = state_to_columns(&state);
            let back = state_from_columns(
                by.map(str::to_owned),
                cancelled,
                done,
                cert.map(str::to_owned),
            )
            .unwrap();
            assert_eq!(back, state);
        }
        assert!(state_from_columns(Some("x".into()), None, None, None).is_err());
        assert!(state_from_columns(None, None, Some(at), None).is_err());
    }
}
