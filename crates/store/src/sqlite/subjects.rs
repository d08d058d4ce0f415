//! The SQLite side of data-subject requests: each tenant's request log with its answers, and
//! the reseal of a subject's records in place, which keeps the subject index exact although
//! new index entries are staged and merged later on this backend.

use async_trait::async_trait;
use custodian_core::ids::TenantId;
use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, append_audit_tx, db_err, from_us, merge_staged_entries, opt_from_us, us};
use crate::subjects::{ResealedRecord, SubjectRequest, SubjectStore};
use crate::{AuditEntry, Result, hash32, pack_subjects, parse_tenant};

const REQUEST_COLUMNS: &str = "tenant_id, id, kind, subject, reference, reason, requested_by, received_at_us, due_at_us, status, completed_at_us, outcome, certificate_id";

fn read_request(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRequest> {
    Ok(RawRequest {
        tenant: row.get(0)?,
        id: row.get(1)?,
        kind: row.get(2)?,
        subject: row.get(3)?,
        reference: row.get(4)?,
        reason: row.get(5)?,
        requested_by: row.get(6)?,
        received_at_us: row.get(7)?,
        due_at_us: row.get(8)?,
        status: row.get(9)?,
        completed_at_us: row.get(10)?,
        outcome: row.get(11)?,
        certificate_id: row.get(12)?,
    })
}

struct RawRequest {
    tenant: String,
    id: String,
    kind: String,
    subject: Vec<u8>,
    reference: String,
    reason: String,
    requested_by: String,
    received_at_us: i64,
    due_at_us: i64,
    status: String,
    completed_at_us: Option<i64>,
    outcome: Option<String>,
    certificate_id: Option<String>,
}

impl RawRequest {
    fn into_request(self) -> Result<SubjectRequest> {
        Ok(SubjectRequest {
            tenant: parse_tenant(self.tenant)?,
            id: self.id,
            kind: self.kind,
            subject: hash32(self.subject, "request subject")?,
            reference: self.reference,
            reason: self.reason,
            requested_by: self.requested_by,
            received_at: from_us(self.received_at_us)?,
            due_at: from_us(self.due_at_us)?,
            status: self.status,
            completed_at: opt_from_us(self.completed_at_us)?,
            outcome: self.outcome,
            certificate_id: self.certificate_id,
        })
    }
}

#[async_trait]
impl SubjectStore for SqliteStore {
    async fn insert_subject_request(
        &self,
        request: &SubjectRequest,
        audit: AuditEntry,
    ) -> Result<()> {
        let r = request.clone();
        self.write(move |tx| {
            let tenant = r.tenant.as_str();
            tx.execute(
                &format!(
                    "INSERT INTO subject_requests ({REQUEST_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                ),
                params![
                    tenant,
                    r.id,
                    r.kind,
                    r.subject.as_slice(),
                    r.reference,
                    r.reason,
                    r.requested_by,
                    us(r.received_at),
                    us(r.due_at),
                    r.status,
                    r.completed_at.map(us),
                    r.outcome,
                    r.certificate_id,
                ],
            )
            .map_err(db_err)?;
            append_audit_tx(tx, tenant, &[audit])?;
            Ok(())
        })
        .await
    }

    async fn finish_subject_request(
        &self,
        tenant: &TenantId,
        id: &str,
        status: &str,
        outcome: &str,
        at: Timestamp,
        certificate_id: Option<&str>,
        audit: AuditEntry,
    ) -> Result<bool> {
        let (tenant, id, status, outcome) = (
            tenant.as_str().to_owned(),
            id.to_owned(),
            status.to_owned(),
            outcome.to_owned(),
        );
        let certificate_id = certificate_id.map(str::to_owned);
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE subject_requests
                     SET status = ?3, outcome = ?4, completed_at_us = ?5, certificate_id = ?6
                     WHERE tenant_id = ?1 AND id = ?2 AND status = 'open'",
                    params![tenant, id, status, outcome, us(at), certificate_id],
                )
                .map_err(db_err)?;
            if n == 0 {
                // The first answer stands; a second attempt leaves no trace in the log either.
                return Ok(false);
            }
            append_audit_tx(tx, &tenant, &[audit])?;
            Ok(true)
        })
        .await
    }

    async fn subject_request(&self, tenant: &TenantId, id: &str) -> Result<Option<SubjectRequest>> {
        let (tenant, id) = (tenant.as_str().to_owned(), id.to_owned());
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {REQUEST_COLUMNS} FROM subject_requests WHERE tenant_id = ?1 AND id = ?2"
            ))
            .and_then(|mut s| s.query_row(params![tenant, id], read_request).optional())
            .map_err(db_err)?
            .map(RawRequest::into_request)
            .transpose()
        })
        .await
    }

    async fn subject_requests(
        &self,
        tenant: &TenantId,
        subject: Option<&[u8; 32]>,
        limit: u32,
    ) -> Result<Vec<SubjectRequest>> {
        let tenant = tenant.as_str().to_owned();
        let subject = subject.map(|s| s.to_vec());
        self.read(move |c| {
            // Two statements rather than `?2 IS NULL OR …`, so each walks its index backwards
            // and stops at the limit instead of sorting the tenant's whole log.
            let mut stmt = c
                .prepare_cached(&match subject {
                    Some(_) => format!(
                        "SELECT {REQUEST_COLUMNS} FROM subject_requests
                         WHERE tenant_id = ?1 AND subject = ?2 ORDER BY id DESC LIMIT ?3"
                    ),
                    None => format!(
                        "SELECT {REQUEST_COLUMNS} FROM subject_requests
                         WHERE tenant_id = ?1 ORDER BY id DESC LIMIT ?2"
                    ),
                })
                .map_err(db_err)?;
            let rows = match &subject {
                Some(s) => stmt.query_map(params![tenant, s, limit], read_request),
                None => stmt.query_map(params![tenant, limit], read_request),
            }
            .map_err(db_err)?;
            rows.map(|r| r.map_err(db_err).and_then(RawRequest::into_request))
                .collect()
        })
        .await
    }

    async fn reseal_records(
        &self,
        tenant: &TenantId,
        records: Vec<ResealedRecord>,
        audit: AuditEntry,
    ) -> Result<u64> {
        let tenant = tenant.as_str().to_owned();
        self.write(move |tx| {
            // A record's first index entries may still be staged. Left there, listings would
            // keep finding it under subjects it no longer has, and the next merge would write
            // those entries back into the index (the record still exists). Merged first, they
            // are replaced below like any other entry.
            merge_staged_entries(tx, Some(&tenant))?;
            // Distinct ids: a record listed twice is one record updated (its last listing wins).
            let mut updated = std::collections::HashSet::new();
            {
                let mut update = tx
                    .prepare_cached(
                        "UPDATE records SET sealed = ?3, key_subjects = ?4
                         WHERE tenant_id = ?1 AND id = ?2",
                    )
                    .map_err(db_err)?;
                let mut unindex = tx
                    .prepare_cached(
                        "DELETE FROM record_subjects WHERE tenant_id = ?1 AND record_id = ?2",
                    )
                    .map_err(db_err)?;
                // Straight into the index, not staged: reseals are few, and a staged entry
                // would need this same care again at the next reseal.
                let mut index = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO record_subjects (tenant_id, subject, record_id)
                         VALUES (?1, ?2, ?3)",
                    )
                    .map_err(db_err)?;
                for r in &records {
                    let id = r.id.to_string();
                    let n = update
                        .execute(params![
                            tenant,
                            id,
                            r.sealed,
                            pack_subjects(&r.key_subjects)
                        ])
                        .map_err(db_err)?;
                    if n == 0 {
                        continue;
                    }
                    unindex.execute(params![tenant, id]).map_err(db_err)?;
                    for s in &r.key_subjects {
                        index
                            .execute(params![tenant, s.as_slice(), id])
                            .map_err(db_err)?;
                    }
                    updated.insert(id);
                }
            }
            append_audit_tx(tx, &tenant, &[audit])?;
            Ok(updated.len() as u64)
        })
        .await
    }
}
