//! Data-subject requests: each tenant's log of access, erasure, rectification and
//! anonymisation requests with the answer given and when, and the write that changes a
//! subject's records in place (rectification, anonymisation). Erasure itself purges through
//! [`crate::RetentionStore::complete_deletion`], like every other destruction.
//!
//! Subjects appear here only as keyed pseudonyms, never in clear.

use async_trait::async_trait;
use custodian_core::ids::{RecordId, TenantId};
use jiff::Timestamp;

use crate::{AuditEntry, Result};

/// One request from (or for) a data subject, and its answer once given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectRequest {
    pub tenant: TenantId,
    /// A ULID.
    pub id: String,
    /// `access`, `erasure`, `rectification` or `anonymisation`.
    pub kind: String,
    /// The subject's keyed pseudonym.
    pub subject: [u8; 32],
    /// The caller's reference for the request (a ticket or case id).
    pub reference: String,
    pub reason: String,
    pub requested_by: String,
    pub received_at: Timestamp,
    /// When the answer is due (GDPR Art. 12(3): one month).
    pub due_at: Timestamp,
    /// `open`, `completed`, `partial` (held records kept) or `refused` (a hold covers it).
    pub status: String,
    pub completed_at: Option<Timestamp>,
    /// What was done, as JSON text (counts, hold ids, record ids); never payloads.
    pub outcome: Option<String>,
    /// The certificate issued for an erasure.
    pub certificate_id: Option<String>,
}

/// A record sealed anew with new subject links: rectified (same subjects, new payload) or
/// anonymised (no subjects left).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResealedRecord {
    pub id: RecordId,
    pub sealed: Vec<u8>,
    /// Sorted and distinct; they become the record's subject-index entries.
    pub key_subjects: Vec<[u8; 32]>,
}

#[async_trait]
pub trait SubjectStore: Send + Sync {
    /// Stores a new request and appends `audit` to the tenant's log, in one transaction.
    async fn insert_subject_request(
        &self,
        request: &SubjectRequest,
        audit: AuditEntry,
    ) -> Result<()>;

    /// Records the answer to an open request (status, outcome, completion time, certificate)
    /// and appends `audit`, in one transaction. `false` (nothing written, nothing appended)
    /// when the tenant has no such request or it was answered already.
    #[allow(clippy::too_many_arguments)]
    async fn finish_subject_request(
        &self,
        tenant: &TenantId,
        id: &str,
        status: &str,
        outcome: &str,
        at: Timestamp,
        certificate_id: Option<&str>,
        audit: AuditEntry,
    ) -> Result<bool>;

    async fn subject_request(&self, tenant: &TenantId, id: &str) -> Result<Option<SubjectRequest>>;

    /// The tenant's requests, newest first (by id), at most `limit`, optionally only those of
    /// one subject.
    async fn subject_requests(
        &self,
        tenant: &TenantId,
        subject: Option<&[u8; 32]>,
        limit: u32,
    ) -> Result<Vec<SubjectRequest>>;

    /// Sets each listed record's ciphertext and key subjects, replaces its subject-index
    /// entries with exactly `key_subjects`, and appends `audit`, in one transaction. Other
    /// columns (type, times, bucket, expiry) stay. Returns the number of records updated; ids
    /// the tenant does not have are skipped.
    async fn reseal_records(
        &self,
        tenant: &TenantId,
        records: Vec<ResealedRecord>,
        audit: AuditEntry,
    ) -> Result<u64>;
}
