//! The PostgreSQL side of the retention engine: holds, due buckets, bucket purges and deletion
//! certificates, retention events and re-sealed records, tenant terminations and scheduled
//! deletions, and the destruction lock every node shares (an advisory lock).

use async_trait::async_trait;
use custodian_core::hold::{Hold, Release};
use custodian_core::ids::{DataTypeName, RecordId, TenantId};
use jiff::Timestamp;
use tokio_postgres::{Row, Transaction};

use super::{
    DESTRUCTION_LOCK, PostgresStore, RECORD_COLUMNS, append_audit_tx, db_err, record_from_row,
};
use crate::retention::{
    AppliedRetention, BucketCount, BucketRecord, BucketSummary, CancelOutcome, CertificateRow,
    DeletionState, DestructionLock, RekeyedRecord, ReleaseOutcome, RetentionEvent, RetentionStore,
    ScheduledDeletion, Termination, TerminationCancel, scope_from_columns, scope_to_columns,
    state_from_columns, state_to_columns, target_from_columns, target_to_columns,
};
use crate::{
    AuditEntry, Result, StoreError, StoredRecord, parse_data_type, parse_record_id, parse_tenant,
    unpack_subjects,
};

const HOLD_COLUMNS: &str =
    "id, scope_kind, scope_value, case_id, reason, placed_by, placed_at, released_by, released_at";

fn hold_from_row(row: &Row) -> Result<Hold> {
    let released = match (row.get::<_, Option<String>>(7), row.get(8)) {
        (Some(by), Some(at)) => Some(Release { by, at }),
        _ => None,
    };
    Ok(Hold {
        id: row.get(0),
        scope: scope_from_columns(row.get(1), row.get(2))?,
        case_id: row.get(3),
        reason: row.get(4),
        placed_by: row.get(5),
        placed_at: row.get(6),
        released,
    })
}

const EVENT_COLUMNS: &str = "event, reference, at, recorded_by";

fn event_from_row(row: &Row) -> RetentionEvent {
    RetentionEvent {
        event: row.get(0),
        reference: row.get(1),
        at: row.get(2),
        recorded_by: row.get(3),
    }
}

const TERMINATION_COLUMNS: &str =
    "tenant_id, requested_by, reason, terminated_at, purge_at, purged_at, certificate_id";

fn termination_from_row(row: &Row) -> Result<Termination> {
    Ok(Termination {
        tenant: parse_tenant(row.get(0))?,
        requested_by: row.get(1),
        reason: row.get(2),
        terminated_at: row.get(3),
        purge_at: row.get(4),
        purged_at: row.get(5),
        certificate_id: row.get(6),
    })
}

const DELETION_COLUMNS: &str = "tenant_id, id, target_kind, target, reason, requested_by, requested_at, due_at, cancelled_by, cancelled_at, done_at, certificate_id";

fn deletion_from_row(row: &Row) -> Result<ScheduledDeletion> {
    Ok(ScheduledDeletion {
        tenant: parse_tenant(row.get(0))?,
        id: row.get(1),
        target: target_from_columns(row.get(2), row.get(3))?,
        reason: row.get(4),
        requested_by: row.get(5),
        requested_at: row.get(6),
        due_at: row.get(7),
        state: state_from_columns(row.get(8), row.get(9), row.get(10), row.get(11))?,
    })
}

fn certificate_from_row(row: &Row) -> CertificateRow {
    CertificateRow {
        id: row.get(0),
        scope: row.get(1),
        issued_at: row.get(2),
        note: row.get(3),
    }
}

/// Stores `certificate` unless one of its scope exists, inside the caller's transaction, and
/// returns the id of the one stored for that scope: a repeated destruction names the first.
async fn store_certificate(
    tx: &Transaction<'_>,
    tenant: &str,
    certificate: &CertificateRow,
) -> Result<String> {
    // ON CONFLICT waits for a concurrent insert of the scope to commit, so the row read
    // afterwards is the one that stays.
    tx.execute(
        "INSERT INTO deletion_certificates (tenant_id, id, scope, issued_at, note)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        &[
            &tenant,
            &certificate.id,
            &certificate.scope,
            &certificate.issued_at,
            &certificate.note,
        ],
    )
    .await
    .map_err(db_err)?;
    let row = tx
        .query_opt(
            "SELECT id FROM deletion_certificates WHERE tenant_id = $1 AND scope = $2",
            &[&tenant, &certificate.scope],
        )
        .await
        .map_err(db_err)?;
    // Skipped for its id, not its scope: another scope's certificate holds that id.
    row.map(|r| r.get(0)).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "certificate id {} is taken by another scope",
            certificate.id
        ))
    })
}

#[async_trait]
impl RetentionStore for PostgresStore {
    async fn insert_hold(&self, tenant: &TenantId, hold: &Hold, audit: AuditEntry) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        // Waits for a destruction running on any node, and keeps the next one from starting
        // until this hold is committed (the lock is released with the transaction).
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DESTRUCTION_LOCK])
            .await
            .map_err(db_err)?;
        let (kind, value) = scope_to_columns(&hold.scope);
        tx.execute(
            "INSERT INTO holds (tenant_id, id, scope_kind, scope_value, case_id, reason, placed_by, placed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &tenant.as_str(),
                &hold.id,
                &kind,
                &value,
                &hold.case_id,
                &hold.reason,
                &hold.placed_by,
                &hold.placed_at,
            ],
        )
        .await
        .map_err(db_err)?;
        append_audit_tx(&tx, tenant.as_str(), &[audit]).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn release_hold(
        &self,
        tenant: &TenantId,
        id: &str,
        release: Release,
        audit: AuditEntry,
    ) -> Result<ReleaseOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let row = tx
            .query_opt(
                &format!(
                    "SELECT {HOLD_COLUMNS} FROM holds WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
                ),
                &[&tenant.as_str(), &id],
            )
            .await
            .map_err(db_err)?;
        let Some(hold) = row.as_ref().map(hold_from_row).transpose()? else {
            return Ok(ReleaseOutcome::NotFound);
        };
        if !hold.is_active() {
            return Ok(ReleaseOutcome::AlreadyReleased(hold));
        }
        tx.execute(
            "UPDATE holds SET released_by = $3, released_at = $4 WHERE tenant_id = $1 AND id = $2",
            &[&tenant.as_str(), &id, &release.by, &release.at],
        )
        .await
        .map_err(db_err)?;
        append_audit_tx(&tx, tenant.as_str(), &[audit]).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(ReleaseOutcome::Released(Hold {
            released: Some(release),
            ..hold
        }))
    }

    async fn holds(&self, tenant: &TenantId) -> Result<Vec<Hold>> {
        self.select(
            &format!(
                "SELECT {HOLD_COLUMNS} FROM holds WHERE tenant_id = $1 ORDER BY placed_at, id"
            ),
            &[&tenant.as_str()],
            hold_from_row,
        )
        .await
    }

    async fn due_buckets(
        &self,
        tenant: Option<&TenantId>,
        at: Timestamp,
    ) -> Result<Vec<BucketSummary>> {
        let tenant = tenant.map(TenantId::as_str);
        self.client()
            .await?
            .query(
                "SELECT tenant_id, data_type, key_bucket, COUNT(*), MIN(expires_at), MAX(expires_at), MIN(event_time)
                 FROM records
                 WHERE $1::TEXT IS NULL OR tenant_id = $1
                 GROUP BY tenant_id, data_type, key_bucket
                 HAVING COUNT(expires_at) = COUNT(*) AND MAX(expires_at) <= $2
                 ORDER BY MIN(expires_at), tenant_id, data_type, key_bucket",
                &[&tenant, &at],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| {
                Ok(BucketSummary {
                    tenant: parse_tenant(r.get(0))?,
                    data_type: parse_data_type(r.get(1))?,
                    bucket: r.get(2),
                    records: r.get::<_, i64>(3) as u64,
                    oldest_expiry: r.get(4),
                    newest_expiry: r.get(5),
                    oldest_event_time: r.get(6),
                })
            })
            .collect()
    }

    async fn bucket_records(
        &self,
        tenant: &TenantId,
        data_type: &DataTypeName,
        bucket: &str,
    ) -> Result<Vec<BucketRecord>> {
        self.client()
            .await?
            .query(
                "SELECT id, event_time, key_subjects, octet_length(sealed)::BIGINT FROM records
                 WHERE tenant_id = $1 AND data_type = $2 AND key_bucket = $3 ORDER BY id",
                &[&tenant.as_str(), &data_type.as_str(), &bucket],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| {
                Ok(BucketRecord {
                    id: parse_record_id(r.get(0))?,
                    event_time: r.get(1),
                    subjects: unpack_subjects(r.get(2))?,
                    sealed_len: r.get::<_, i64>(3) as u64,
                })
            })
            .collect()
    }

    async fn purge_bucket(
        &self,
        tenant: &TenantId,
        data_type: &DataTypeName,
        bucket: &str,
        certificate: CertificateRow,
        audit: AuditEntry,
    ) -> Result<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let (t, dt) = (tenant.as_str(), data_type.as_str());
        tx.execute(
            "DELETE FROM record_subjects s USING records r
             WHERE s.tenant_id = $1 AND r.tenant_id = $1 AND r.data_type = $2 AND r.key_bucket = $3
               AND s.record_id = r.id",
            &[&t, &dt, &bucket],
        )
        .await
        .map_err(db_err)?;
        let purged = tx
            .execute(
                "DELETE FROM records WHERE tenant_id = $1 AND data_type = $2 AND key_bucket = $3",
                &[&t, &dt, &bucket],
            )
            .await
            .map_err(db_err)?;
        tx.execute(
            "INSERT INTO deletion_certificates (tenant_id, id, scope, issued_at, note)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[
                &t,
                &certificate.id,
                &certificate.scope,
                &certificate.issued_at,
                &certificate.note,
            ],
        )
        .await
        .map_err(db_err)?;
        append_audit_tx(&tx, t, &[audit]).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(purged)
    }

    async fn certificates(&self, tenant: &TenantId) -> Result<Vec<CertificateRow>> {
        Ok(self
            .client()
            .await?
            .query(
                "SELECT id, scope, issued_at, note FROM deletion_certificates
                 WHERE tenant_id = $1 ORDER BY issued_at, id",
                &[&tenant.as_str()],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(certificate_from_row)
            .collect())
    }

    async fn certificate(&self, tenant: &TenantId, id: &str) -> Result<Option<CertificateRow>> {
        Ok(self
            .client()
            .await?
            .query_opt(
                "SELECT id, scope, issued_at, note FROM deletion_certificates
                 WHERE tenant_id = $1 AND id = $2",
                &[&tenant.as_str(), &id],
            )
            .await
            .map_err(db_err)?
            .as_ref()
            .map(certificate_from_row))
    }

    async fn rekey_records(
        &self,
        tenant: &TenantId,
        records: Vec<RekeyedRecord>,
        audit: AuditEntry,
    ) -> Result<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let n = records.len();
        let mut ids = Vec::with_capacity(n);
        let mut buckets = Vec::with_capacity(n);
        let mut expiries = Vec::with_capacity(n);
        let mut pending = Vec::with_capacity(n);
        let mut sealed = Vec::with_capacity(n);
        for r in &records {
            ids.push(r.id.to_string());
            buckets.push(r.key_bucket.as_str());
            expiries.push(r.expires_at);
            pending.push(r.pending_event.as_deref());
            sealed.push(r.sealed.as_slice());
        }
        let updated = tx
            .execute(
                "UPDATE records r
                 SET key_bucket = u.key_bucket, expires_at = u.expires_at,
                     pending_event = u.pending_event, sealed = u.sealed
                 FROM UNNEST($2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::bytea[])
                     AS u(id, key_bucket, expires_at, pending_event, sealed)
                 WHERE r.tenant_id = $1 AND r.id = u.id",
                &[
                    &tenant.as_str(),
                    &ids,
                    &buckets,
                    &expiries,
                    &pending,
                    &sealed,
                ],
            )
            .await
            .map_err(db_err)?;
        append_audit_tx(&tx, tenant.as_str(), &[audit]).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(updated)
    }

    async fn record_event(
        &self,
        tenant: &TenantId,
        event: &RetentionEvent,
        audit: AuditEntry,
    ) -> Result<Option<RetentionEvent>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let t = tenant.as_str();
        // ON CONFLICT waits for a concurrent recording of the same event to commit, so the row
        // read afterwards is the first one, for good.
        let inserted = tx
            .execute(
                "INSERT INTO retention_events (tenant_id, event, reference, at, recorded_by)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[
                    &t,
                    &event.event,
                    &event.reference,
                    &event.at,
                    &event.recorded_by,
                ],
            )
            .await
            .map_err(db_err)?;
        if inserted == 0 {
            let first = tx
                .query_one(
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM retention_events
                         WHERE tenant_id = $1 AND event = $2 AND reference = $3"
                    ),
                    &[&t, &event.event, &event.reference],
                )
                .await
                .map_err(db_err)?;
            return Ok(Some(event_from_row(&first)));
        }
        append_audit_tx(&tx, t, &[audit]).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(None)
    }

    async fn events(
        &self,
        tenant: &TenantId,
        event: &str,
        references: &[String],
    ) -> Result<Vec<RetentionEvent>> {
        Ok(self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM retention_events
                     WHERE tenant_id = $1 AND event = $2 AND reference = ANY($3)
                     ORDER BY reference"
                ),
                &[&tenant.as_str(), &event, &references],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(event_from_row)
            .collect())
    }

    async fn pending_records(
        &self,
        tenant: &TenantId,
        event: &str,
        reference: &str,
        limit: u32,
    ) -> Result<Vec<StoredRecord>> {
        self.select(
            &format!(
                "SELECT {RECORD_COLUMNS} FROM records
                     WHERE tenant_id = $1 AND pending_event = $2 AND event_ref = $3
                     ORDER BY id LIMIT $4"
            ),
            &[&tenant.as_str(), &event, &reference, &i64::from(limit)],
            record_from_row,
        )
        .await
    }

    async fn tenant_buckets(&self, tenant: &TenantId) -> Result<Vec<BucketCount>> {
        self.client()
            .await?
            .query(
                "SELECT data_type, key_bucket, COUNT(*) FROM records
                 WHERE tenant_id = $1
                 GROUP BY data_type, key_bucket
                 ORDER BY data_type, key_bucket",
                &[&tenant.as_str()],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| {
                Ok(BucketCount {
                    data_type: parse_data_type(r.get(0))?,
                    bucket: r.get(1),
                    records: r.get::<_, i64>(2) as u64,
                })
            })
            .collect()
    }

    async fn terminate_tenant(
        &self,
        termination: &Termination,
        audit: AuditEntry,
    ) -> Result<Option<Termination>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let t = termination.tenant.as_str();
        // ON CONFLICT waits for a concurrent termination of the tenant to commit, so the row
        // read afterwards is the first one, for good.
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO tenant_terminations ({TERMINATION_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
                ),
                &[
                    &t,
                    &termination.requested_by,
                    &termination.reason,
                    &termination.terminated_at,
                    &termination.purge_at,
                    &termination.purged_at,
                    &termination.certificate_id,
                ],
            )
            .await
            .map_err(db_err)?;
        if inserted == 0 {
            let first = tx
                .query_one(
                    &format!(
                        "SELECT {TERMINATION_COLUMNS} FROM tenant_terminations WHERE tenant_id = $1"
                    ),
                    &[&t],
                )
                .await
                .map_err(db_err)?;
            return termination_from_row(&first).map(Some);
        }
        append_audit_tx(&tx, t, &[audit]).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(None)
    }

    async fn termination(&self, tenant: &TenantId) -> Result<Option<Termination>> {
        self.client()
            .await?
            .query_opt(
                &format!(
                    "SELECT {TERMINATION_COLUMNS} FROM tenant_terminations WHERE tenant_id = $1"
                ),
                &[&tenant.as_str()],
            )
            .await
            .map_err(db_err)?
            .as_ref()
            .map(termination_from_row)
            .transpose()
    }

    async fn cancel_termination(
        &self,
        tenant: &TenantId,
        at: Timestamp,
        audit: AuditEntry,
    ) -> Result<TerminationCancel> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let Some(row) = tx
            .query_opt(
                &format!(
                    "SELECT {TERMINATION_COLUMNS} FROM tenant_terminations WHERE tenant_id = $1 FOR UPDATE"
                ),
                &[&tenant.as_str()],
            )
            .await
            .map_err(db_err)?
        else {
            return Ok(TerminationCancel::NotTerminated);
        };
        let termination = termination_from_row(&row)?;
        if termination.purged_at.is_some() || termination.purge_at <= at {
            return Ok(TerminationCancel::PurgeStarted(termination));
        }
        tx.execute(
            "DELETE FROM tenant_terminations WHERE tenant_id = $1",
            &[&tenant.as_str()],
        )
        .await
        .map_err(db_err)?;
        append_audit_tx(&tx, tenant.as_str(), &[audit]).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(TerminationCancel::Cancelled(termination))
    }

    async fn terminations(&self) -> Result<Vec<Termination>> {
        self.select(
                &format!(
                    "SELECT {TERMINATION_COLUMNS} FROM tenant_terminations ORDER BY terminated_at, tenant_id"
                ),
                &[],
termination_from_row,
).await
    }

    async fn finish_termination(
        &self,
        tenant: &TenantId,
        purged_at: Timestamp,
        certificate: CertificateRow,
        audit: AuditEntry,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let t = tenant.as_str();
        let certificate_id = store_certificate(&tx, t, &certificate).await?;
        let n = tx
            .execute(
                "UPDATE tenant_terminations
                 SET purged_at = COALESCE(purged_at, $2),
                     certificate_id = COALESCE(certificate_id, $3)
                 WHERE tenant_id = $1",
                &[&t, &purged_at, &certificate_id],
            )
            .await
            .map_err(db_err)?;
        if n == 0 {
            // Dropping the transaction rolls the certificate back with it: nothing certifies a
            // purge never asked for.
            return Err(StoreError::Corrupt(format!(
                "tenant {t} has no termination to finish"
            )));
        }
        append_audit_tx(&tx, t, &[audit]).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn schedule_deletion(
        &self,
        deletion: &ScheduledDeletion,
        audit: AuditEntry,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let t = deletion.tenant.as_str();
        let (kind, target) = target_to_columns(&deletion.target);
        let (cancelled_by, cancelled_at, done_at, certificate_id) =
            state_to_columns(&deletion.state);
        tx.execute(
            &format!(
                "INSERT INTO scheduled_deletions ({DELETION_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ),
            &[
                &t,
                &deletion.id,
                &kind,
                &target,
                &deletion.reason,
                &deletion.requested_by,
                &deletion.requested_at,
                &deletion.due_at,
                &cancelled_by,
                &cancelled_at,
                &done_at,
                &certificate_id,
            ],
        )
        .await
        .map_err(db_err)?;
        append_audit_tx(&tx, t, &[audit]).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn cancel_deletion(
        &self,
        tenant: &TenantId,
        id: &str,
        by: &str,
        at: Timestamp,
        audit: AuditEntry,
    ) -> Result<CancelOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let t = tenant.as_str();
        // Locked, so a concurrent cancel or completion decides after this one, on its outcome.
        let row = tx
            .query_opt(
                &format!(
                    "SELECT {DELETION_COLUMNS} FROM scheduled_deletions
                     WHERE tenant_id = $1 AND id = $2 FOR UPDATE"
                ),
                &[&t, &id],
            )
            .await
            .map_err(db_err)?;
        let Some(deletion) = row.as_ref().map(deletion_from_row).transpose()? else {
            return Ok(CancelOutcome::NotFound);
        };
        if deletion.state != DeletionState::Scheduled {
            return Ok(CancelOutcome::NotCancellable(deletion));
        }
        tx.execute(
            "UPDATE scheduled_deletions SET cancelled_by = $3, cancelled_at = $4
             WHERE tenant_id = $1 AND id = $2",
            &[&t, &id, &by, &at],
        )
        .await
        .map_err(db_err)?;
        append_audit_tx(&tx, t, &[audit]).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(CancelOutcome::Cancelled(ScheduledDeletion {
            state: DeletionState::Cancelled {
                by: by.to_owned(),
                at,
            },
            ..deletion
        }))
    }

    async fn scheduled_deletions(&self, tenant: &TenantId) -> Result<Vec<ScheduledDeletion>> {
        self.select(
            &format!(
                "SELECT {DELETION_COLUMNS} FROM scheduled_deletions
                     WHERE tenant_id = $1 ORDER BY requested_at, id"
            ),
            &[&tenant.as_str()],
            deletion_from_row,
        )
        .await
    }

    async fn due_deletions(&self, at: Timestamp) -> Result<Vec<ScheduledDeletion>> {
        self.select(
            &format!(
                "SELECT {DELETION_COLUMNS} FROM scheduled_deletions
                     WHERE cancelled_at IS NULL AND done_at IS NULL AND due_at <= $1
                     ORDER BY due_at, tenant_id, id"
            ),
            &[&at],
            deletion_from_row,
        )
        .await
    }

    async fn complete_deletion(
        &self,
        tenant: &TenantId,
        deletion: Option<&str>,
        records: &[RecordId],
        certificate: CertificateRow,
        audit: AuditEntry,
    ) -> Result<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let t = tenant.as_str();
        let ids: Vec<String> = records.iter().map(RecordId::to_string).collect();
        tx.execute(
            "DELETE FROM record_subjects WHERE tenant_id = $1 AND record_id = ANY($2)",
            &[&t, &ids],
        )
        .await
        .map_err(db_err)?;
        let deleted = tx
            .execute(
                "DELETE FROM records WHERE tenant_id = $1 AND id = ANY($2)",
                &[&t, &ids],
            )
            .await
            .map_err(db_err)?;
        let certificate_id = store_certificate(&tx, t, &certificate).await?;
        if let Some(deletion) = deletion {
            // A deletion already done keeps its first completion.
            tx.execute(
                "UPDATE scheduled_deletions SET done_at = $3, certificate_id = $4
                 WHERE tenant_id = $1 AND id = $2 AND done_at IS NULL",
                &[&t, &deletion, &certificate.issued_at, &certificate_id],
            )
            .await
            .map_err(db_err)?;
        }
        append_audit_tx(&tx, t, &[audit]).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(deleted)
    }

    async fn applied_retentions(&self, tenant: &TenantId) -> Result<Vec<AppliedRetention>> {
        self.client()
            .await?
            .query(
                "SELECT data_type, rule, since, applied FROM applied_retentions
                 WHERE tenant_id = $1 ORDER BY data_type",
                &[&tenant.as_str()],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| {
                Ok(AppliedRetention {
                    data_type: parse_data_type(r.get(0))?,
                    rule: r.get(1),
                    since: r.get(2),
                    applied: r.get(3),
                })
            })
            .collect()
    }

    async fn put_applied_retention(
        &self,
        tenant: &TenantId,
        applied: &AppliedRetention,
        audit: Option<AuditEntry>,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        tx.execute(
            "INSERT INTO applied_retentions (tenant_id, data_type, rule, since, applied)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, data_type)
             DO UPDATE SET rule = excluded.rule, since = excluded.since, applied = excluded.applied",
            &[
                &tenant.as_str(),
                &applied.data_type.as_str(),
                &applied.rule,
                &applied.since,
                &applied.applied,
            ],
        )
        .await
        .map_err(db_err)?;
        if let Some(audit) = audit {
            append_audit_tx(&tx, tenant.as_str(), &[audit]).await?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn records_of_type(
        &self,
        tenant: &TenantId,
        data_type: &DataTypeName,
        after: Option<RecordId>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>> {
        let after = after.map(|id| id.to_string()).unwrap_or_default();
        self.select(
            &format!(
                "SELECT {RECORD_COLUMNS} FROM records
                     WHERE tenant_id = $1 AND data_type = $2 AND id > $3
                     ORDER BY id LIMIT $4"
            ),
            &[
                &tenant.as_str(),
                &data_type.as_str(),
                &after,
                &i64::from(limit),
            ],
            record_from_row,
        )
        .await
    }

    async fn lock_destruction(&self) -> Result<DestructionLock> {
        // A session lock lives as long as its connection, so that connection must never go
        // back to the pool still holding it. It leaves the pool before the lock is even asked
        // for: if this future is dropped while waiting, or the guard is dropped later, the
        // connection is closed, its session ends, and the server releases the lock, whatever
        // state the client or the runtime is in. Unlocking and then returning the connection
        // would need an await in a destructor (a spawned task that may never run at shutdown,
        // or fail, and hand a locked connection to the next caller).
        let conn = deadpool_postgres::Object::take(self.client().await?);
        conn.execute("SELECT pg_advisory_lock($1)", &[&DESTRUCTION_LOCK])
            .await
            .map_err(db_err)?;
        Ok(DestructionLock::postgres_session(conn))
    }
}
