//! The PostgreSQL side of data-subject requests: each tenant's request log with its answers,
//! and the reseal of a subject's records in place with their subject index entries replaced
//! in the same transaction.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use custodian_core::ids::TenantId;
use jiff::Timestamp;
use tokio_postgres::Row;

use super::{PostgresStore, append_audit_tx, db_err};
use crate::subjects::{ResealedRecord, SubjectRequest, SubjectStore};
use crate::{AuditEntry, Result, hash32, pack_subjects, parse_tenant};

const REQUEST_COLUMNS: &str = "tenant_id, id, kind, subject, reference, reason, requested_by, received_at, due_at, status, completed_at, outcome, certificate_id";

fn request_from_row(row: &Row) -> Result<SubjectRequest> {
    Ok(SubjectRequest {
        tenant: parse_tenant(row.get(0))?,
        id: row.get(1),
        kind: row.get(2),
        subject: hash32(row.get(3), "request subject")?,
        reference: row.get(4),
        reason: row.get(5),
        requested_by: row.get(6),
        received_at: row.get(7),
        due_at: row.get(8),
        status: row.get(9),
        completed_at: row.get(10),
        outcome: row.get(11),
        certificate_id: row.get(12),
    })
}

#[async_trait]
impl SubjectStore for PostgresStore {
    async fn insert_subject_request(
        &self,
        request: &SubjectRequest,
        audit: AuditEntry,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let r = request;
        tx.execute(
            &format!(
                "INSERT INTO subject_requests ({REQUEST_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            ),
            &[
                &r.tenant.as_str(),
                &r.id,
                &r.kind,
                &r.subject.as_slice(),
                &r.reference,
                &r.reason,
                &r.requested_by,
                &r.received_at,
                &r.due_at,
                &r.status,
                &r.completed_at,
                &r.outcome,
                &r.certificate_id,
            ],
        )
        .await
        .map_err(db_err)?;
        append_audit_tx(&tx, r.tenant.as_str(), &[audit]).await?;
        tx.commit().await.map_err(db_err)
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
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        // A concurrent answer holds the row until it commits; this one then finds it no longer
        // open, so exactly one answer (and one audit entry) is ever written.
        let n = tx
            .execute(
                "UPDATE subject_requests
                 SET status = $3, outcome = $4, completed_at = $5, certificate_id = $6
                 WHERE tenant_id = $1 AND id = $2 AND status = 'open'",
                &[
                    &tenant.as_str(),
                    &id,
                    &status,
                    &outcome,
                    &at,
                    &certificate_id,
                ],
            )
            .await
            .map_err(db_err)?;
        if n == 0 {
            // Dropping the transaction rolls it back: nothing written, nothing appended.
            return Ok(false);
        }
        append_audit_tx(&tx, tenant.as_str(), &[audit]).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn subject_request(&self, tenant: &TenantId, id: &str) -> Result<Option<SubjectRequest>> {
        self.client()
            .await?
            .query_opt(
                &format!(
                    "SELECT {REQUEST_COLUMNS} FROM subject_requests WHERE tenant_id = $1 AND id = $2"
                ),
                &[&tenant.as_str(), &id],
            )
            .await
            .map_err(db_err)?
            .as_ref()
            .map(request_from_row)
            .transpose()
    }

    async fn subject_requests(
        &self,
        tenant: &TenantId,
        subject: Option<&[u8; 32]>,
        limit: u32,
    ) -> Result<Vec<SubjectRequest>> {
        // Two statements rather than `$2 IS NULL OR …`, so each plan walks its index backwards
        // and stops at the limit instead of sorting the tenant's whole log.
        match subject {
            Some(subject) => {
                self.select(
                    &format!(
                        "SELECT {REQUEST_COLUMNS} FROM subject_requests
                         WHERE tenant_id = $1 AND subject = $2 ORDER BY id DESC LIMIT $3"
                    ),
                    &[&tenant.as_str(), &subject.as_slice(), &i64::from(limit)],
                    request_from_row,
                )
                .await
            }
            None => {
                self.select(
                    &format!(
                        "SELECT {REQUEST_COLUMNS} FROM subject_requests
                         WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2"
                    ),
                    &[&tenant.as_str(), &i64::from(limit)],
                    request_from_row,
                )
                .await
            }
        }
    }

    async fn reseal_records(
        &self,
        tenant: &TenantId,
        records: Vec<ResealedRecord>,
        audit: AuditEntry,
    ) -> Result<u64> {
        // One row per id, its last listing winning: an UPDATE … FROM joined to the same row
        // twice applies only one of them, unpredictably, and the index must follow that one.
        let latest: BTreeMap<String, &ResealedRecord> =
            records.iter().map(|r| (r.id.to_string(), r)).collect();
        let mut ids = Vec::with_capacity(latest.len());
        let mut sealed = Vec::with_capacity(latest.len());
        let mut key_subjects = Vec::with_capacity(latest.len());
        for (id, r) in &latest {
            ids.push(id.as_str());
            sealed.push(r.sealed.as_slice());
            key_subjects.push(pack_subjects(&r.key_subjects));
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let t = tenant.as_str();
        let updated: HashSet<String> = tx
            .query(
                "UPDATE records r SET sealed = u.sealed, key_subjects = u.key_subjects
                 FROM UNNEST($2::text[], $3::bytea[], $4::bytea[]) AS u(id, sealed, key_subjects)
                 WHERE r.tenant_id = $1 AND r.id = u.id
                 RETURNING r.id",
                &[&t, &ids, &sealed, &key_subjects],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let updated_ids: Vec<&str> = updated.iter().map(String::as_str).collect();
        tx.execute(
            "DELETE FROM record_subjects WHERE tenant_id = $1 AND record_id = ANY($2::text[])",
            &[&t, &updated_ids],
        )
        .await
        .map_err(db_err)?;
        let mut subject_hashes: Vec<&[u8]> = Vec::new();
        let mut subject_records: Vec<&str> = Vec::new();
        for (id, r) in &latest {
            if updated.contains(id) {
                for s in &r.key_subjects {
                    subject_hashes.push(s.as_slice());
                    subject_records.push(id.as_str());
                }
            }
        }
        if !subject_hashes.is_empty() {
            tx.execute(
                "INSERT INTO record_subjects (tenant_id, subject, record_id)
                 SELECT $1, * FROM UNNEST($2::bytea[], $3::text[]) ON CONFLICT DO NOTHING",
                &[&t, &subject_hashes, &subject_records],
            )
            .await
            .map_err(db_err)?;
        }
        // Last, so the log's head row is locked only for the commit.
        append_audit_tx(&tx, t, &[audit]).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(updated.len() as u64)
    }
}
