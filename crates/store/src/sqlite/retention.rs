//! The SQLite side of the retention engine: holds, due buckets, bucket purges and deletion
//! certificates, retention events and re-sealed records, tenant terminations and scheduled
//! deletions. One process owns the file, so the destruction lock lives in that process.

use async_trait::async_trait;
use custodian_core::hold::{Hold, Release};
use custodian_core::ids::{DataTypeName, RecordId, TenantId};
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    RECORD_COLUMNS, RawRecord, SqliteStore, append_audit_tx, db_err, delete_record_tx, from_us,
    json_strings, opt_from_us, read_record, us,
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

const HOLD_COLUMNS: &str = "id, scope_kind, scope_value, case_id, reason, placed_by, placed_at_us, released_by, released_at_us";

fn read_hold(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawHold> {
    Ok(RawHold {
        id: row.get(0)?,
        kind: row.get(1)?,
        value: row.get(2)?,
        case_id: row.get(3)?,
        reason: row.get(4)?,
        placed_by: row.get(5)?,
        placed_at_us: row.get(6)?,
        released_by: row.get(7)?,
        released_at_us: row.get(8)?,
    })
}

struct RawHold {
    id: String,
    kind: String,
    value: Vec<u8>,
    case_id: String,
    reason: String,
    placed_by: String,
    placed_at_us: i64,
    released_by: Option<String>,
    released_at_us: Option<i64>,
}

impl RawHold {
    fn into_hold(self) -> Result<Hold> {
        let released = match (self.released_by, opt_from_us(self.released_at_us)?) {
            (Some(by), Some(at)) => Some(Release { by, at }),
            _ => None,
        };
        Ok(Hold {
            id: self.id,
            scope: scope_from_columns(&self.kind, &self.value)?,
            case_id: self.case_id,
            reason: self.reason,
            placed_by: self.placed_by,
            placed_at: from_us(self.placed_at_us)?,
            released,
        })
    }
}

fn find_hold(c: &rusqlite::Connection, tenant: &str, id: &str) -> Result<Option<Hold>> {
    c.query_row(
        &format!("SELECT {HOLD_COLUMNS} FROM holds WHERE tenant_id = ?1 AND id = ?2"),
        params![tenant, id],
        read_hold,
    )
    .optional()
    .map_err(db_err)?
    .map(RawHold::into_hold)
    .transpose()
}

fn read_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, i64, String)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn into_event(
    (event, reference, at, recorded_by): (String, String, i64, String),
) -> Result<RetentionEvent> {
    Ok(RetentionEvent {
        event,
        reference,
        at: from_us(at)?,
        recorded_by,
    })
}

const TERMINATION_COLUMNS: &str =
    "tenant_id, requested_by, reason, terminated_at_us, purge_at_us, purged_at_us, certificate_id";

type RawTermination = (
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
);

fn read_termination(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawTermination> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn into_termination(raw: RawTermination) -> Result<Termination> {
    let (tenant, requested_by, reason, terminated_at, purge_at, purged_at, certificate_id) = raw;
    Ok(Termination {
        tenant: parse_tenant(tenant)?,
        requested_by,
        reason,
        terminated_at: from_us(terminated_at)?,
        purge_at: from_us(purge_at)?,
        purged_at: opt_from_us(purged_at)?,
        certificate_id,
    })
}

fn find_termination(c: &Connection, tenant: &str) -> Result<Option<Termination>> {
    c.prepare_cached(&format!(
        "SELECT {TERMINATION_COLUMNS} FROM tenant_terminations WHERE tenant_id = ?1"
    ))
    .and_then(|mut s| s.query_row(params![tenant], read_termination).optional())
    .map_err(db_err)?
    .map(into_termination)
    .transpose()
}

const DELETION_COLUMNS: &str = "tenant_id, id, target_kind, target, reason, requested_by, requested_at_us, due_at_us, cancelled_by, cancelled_at_us, done_at_us, certificate_id";

fn read_deletion(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawDeletion> {
    Ok(RawDeletion {
        tenant: row.get(0)?,
        id: row.get(1)?,
        target_kind: row.get(2)?,
        target: row.get(3)?,
        reason: row.get(4)?,
        requested_by: row.get(5)?,
        requested_at_us: row.get(6)?,
        due_at_us: row.get(7)?,
        cancelled_by: row.get(8)?,
        cancelled_at_us: row.get(9)?,
        done_at_us: row.get(10)?,
        certificate_id: row.get(11)?,
    })
}

struct RawDeletion {
    tenant: String,
    id: String,
    target_kind: String,
    target: Vec<u8>,
    reason: String,
    requested_by: String,
    requested_at_us: i64,
    due_at_us: i64,
    cancelled_by: Option<String>,
    cancelled_at_us: Option<i64>,
    done_at_us: Option<i64>,
    certificate_id: Option<String>,
}

impl RawDeletion {
    fn into_deletion(self) -> Result<ScheduledDeletion> {
        Ok(ScheduledDeletion {
            id: self.id,
            tenant: parse_tenant(self.tenant)?,
            target: target_from_columns(&self.target_kind, &self.target)?,
            reason: self.reason,
            requested_by: self.requested_by,
            requested_at: from_us(self.requested_at_us)?,
            due_at: from_us(self.due_at_us)?,
            state: state_from_columns(
                self.cancelled_by,
                opt_from_us(self.cancelled_at_us)?,
                opt_from_us(self.done_at_us)?,
                self.certificate_id,
            )?,
        })
    }
}

fn find_deletion(c: &Connection, tenant: &str, id: &str) -> Result<Option<ScheduledDeletion>> {
    c.prepare_cached(&format!(
        "SELECT {DELETION_COLUMNS} FROM scheduled_deletions WHERE tenant_id = ?1 AND id = ?2"
    ))
    .and_then(|mut s| s.query_row(params![tenant, id], read_deletion).optional())
    .map_err(db_err)?
    .map(RawDeletion::into_deletion)
    .transpose()
}

fn read_certificate(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, i64, String)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn into_certificate(
    (id, scope, issued_at, note): (String, String, i64, String),
) -> Result<CertificateRow> {
    Ok(CertificateRow {
        id,
        scope,
        issued_at: from_us(issued_at)?,
        note,
    })
}

/// Stores `certificate` unless one of its scope exists, inside the caller's transaction, and
/// returns the id of the one stored for that scope: a repeated destruction names the first.
fn store_certificate(
    tx: &Connection,
    tenant: &str,
    certificate: &CertificateRow,
) -> Result<String> {
    tx.execute(
        "INSERT OR IGNORE INTO deletion_certificates (tenant_id, id, scope, issued_at_us, note)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            tenant,
            certificate.id,
            certificate.scope,
            us(certificate.issued_at),
            certificate.note
        ],
    )
    .map_err(db_err)?;
    tx.query_row(
        "SELECT id FROM deletion_certificates WHERE tenant_id = ?1 AND scope = ?2",
        params![tenant, certificate.scope],
        |r| r.get(0),
    )
    .optional()
    .map_err(db_err)?
    // Ignored for its id, not its scope: another scope's certificate holds that id.
    .ok_or_else(|| {
        StoreError::Corrupt(format!(
            "certificate id {} is taken by another scope",
            certificate.id
        ))
    })
}

#[async_trait]
impl RetentionStore for SqliteStore {
    async fn insert_hold(&self, tenant: &TenantId, hold: &Hold, audit: AuditEntry) -> Result<()> {
        // No cross-process lock to wait for: the destruction lock is the owning process's own.
        let tenant = tenant.as_str().to_owned();
        let hold = hold.clone();
        self.write(move |tx| {
            let (kind, value) = scope_to_columns(&hold.scope);
            tx.execute(
                "INSERT INTO holds (tenant_id, id, scope_kind, scope_value, case_id, reason, placed_by, placed_at_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    tenant,
                    hold.id,
                    kind,
                    value,
                    hold.case_id,
                    hold.reason,
                    hold.placed_by,
                    us(hold.placed_at)
                ],
            )
            .map_err(db_err)?;
            append_audit_tx(tx, &tenant, &[audit])?;
            Ok(())
        })
        .await
    }

    async fn release_hold(
        &self,
        tenant: &TenantId,
        id: &str,
        release: Release,
        audit: AuditEntry,
    ) -> Result<ReleaseOutcome> {
        let (tenant, id) = (tenant.as_str().to_owned(), id.to_owned());
        self.write(move |tx| {
            let Some(hold) = find_hold(tx, &tenant, &id)? else {
                return Ok(ReleaseOutcome::NotFound);
            };
            if !hold.is_active() {
                return Ok(ReleaseOutcome::AlreadyReleased(hold));
            }
            tx.execute(
                "UPDATE holds SET released_by = ?3, released_at_us = ?4 WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, id, release.by, us(release.at)],
            )
            .map_err(db_err)?;
            append_audit_tx(tx, &tenant, &[audit])?;
            Ok(ReleaseOutcome::Released(Hold {
                released: Some(release),
                ..hold
            }))
        })
        .await
    }

    async fn holds(&self, tenant: &TenantId) -> Result<Vec<Hold>> {
        let tenant = tenant.as_str().to_owned();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {HOLD_COLUMNS} FROM holds WHERE tenant_id = ?1 ORDER BY placed_at_us, id"
                ))
                .map_err(db_err)?;
            let rows = stmt.query_map(params![tenant], read_hold).map_err(db_err)?;
            rows.map(|r| r.map_err(db_err).and_then(RawHold::into_hold))
                .collect()
        })
        .await
    }

    async fn due_buckets(
        &self,
        tenant: Option<&TenantId>,
        at: Timestamp,
    ) -> Result<Vec<BucketSummary>> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        self.read(move |c| {
            // One pass over the covering bucket index; a bucket is due when every record in it
            // has an expiry and none is later than `at`.
            let mut stmt = c
                .prepare_cached(
                    "SELECT tenant_id, data_type, key_bucket, COUNT(*), MIN(expires_at_us), MAX(expires_at_us), MIN(event_time_us)
                     FROM records INDEXED BY records_by_bucket
                     WHERE ?1 IS NULL OR tenant_id = ?1
                     GROUP BY tenant_id, data_type, key_bucket
                     HAVING COUNT(expires_at_us) = COUNT(*) AND MAX(expires_at_us) <= ?2
                     ORDER BY MIN(expires_at_us), tenant_id, data_type, key_bucket",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant, us(at)], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                })
                .map_err(db_err)?;
            rows.map(|r| {
                let (tenant, data_type, bucket, records, oldest, newest, first_event) =
                    r.map_err(db_err)?;
                Ok(BucketSummary {
                    tenant: parse_tenant(tenant)?,
                    data_type: parse_data_type(data_type)?,
                    bucket,
                    records: records as u64,
                    oldest_expiry: from_us(oldest)?,
                    newest_expiry: from_us(newest)?,
                    oldest_event_time: from_us(first_event)?,
                })
            })
            .collect()
        })
        .await
    }

    async fn bucket_records(
        &self,
        tenant: &TenantId,
        data_type: &DataTypeName,
        bucket: &str,
    ) -> Result<Vec<BucketRecord>> {
        let (tenant, data_type, bucket) = (
            tenant.as_str().to_owned(),
            data_type.as_str().to_owned(),
            bucket.to_owned(),
        );
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    // Named index: without statistics SQLite may walk the tenant's rows instead.
                    "SELECT id, event_time_us, key_subjects, length(sealed) FROM records INDEXED BY records_by_bucket
                     WHERE tenant_id = ?1 AND data_type = ?2 AND key_bucket = ?3 ORDER BY id",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant, data_type, bucket], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(db_err)?;
            rows.map(|r| {
                let (id, event_time, subjects, sealed_len) = r.map_err(db_err)?;
                Ok(BucketRecord {
                    id: parse_record_id(&id)?,
                    event_time: from_us(event_time)?,
                    subjects: unpack_subjects(&subjects)?,
                    sealed_len: sealed_len as u64,
                })
            })
            .collect()
        })
        .await
    }

    async fn purge_bucket(
        &self,
        tenant: &TenantId,
        data_type: &DataTypeName,
        bucket: &str,
        certificate: CertificateRow,
        audit: AuditEntry,
    ) -> Result<u64> {
        let (tenant, data_type, bucket) = (
            tenant.as_str().to_owned(),
            data_type.as_str().to_owned(),
            bucket.to_owned(),
        );
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM record_subjects WHERE tenant_id = ?1 AND record_id IN (
                     SELECT id FROM records WHERE tenant_id = ?1 AND data_type = ?2 AND key_bucket = ?3
                 )",
                params![tenant, data_type, bucket],
            )
            .map_err(db_err)?;
            let purged = tx
                .execute(
                    "DELETE FROM records WHERE tenant_id = ?1 AND data_type = ?2 AND key_bucket = ?3",
                    params![tenant, data_type, bucket],
                )
                .map_err(db_err)?;
            tx.execute(
                "INSERT OR IGNORE INTO deletion_certificates (tenant_id, id, scope, issued_at_us, note)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    tenant,
                    certificate.id,
                    certificate.scope,
                    us(certificate.issued_at),
                    certificate.note
                ],
            )
            .map_err(db_err)?;
            append_audit_tx(tx, &tenant, &[audit])?;
            Ok(purged as u64)
        })
        .await
    }

    async fn certificates(&self, tenant: &TenantId) -> Result<Vec<CertificateRow>> {
        let tenant = tenant.as_str().to_owned();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, scope, issued_at_us, note FROM deletion_certificates
                     WHERE tenant_id = ?1 ORDER BY issued_at_us, id",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant], read_certificate)
                .map_err(db_err)?;
            rows.map(|r| r.map_err(db_err).and_then(into_certificate))
                .collect()
        })
        .await
    }

    async fn certificate(&self, tenant: &TenantId, id: &str) -> Result<Option<CertificateRow>> {
        let (tenant, id) = (tenant.as_str().to_owned(), id.to_owned());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id, scope, issued_at_us, note FROM deletion_certificates
                 WHERE tenant_id = ?1 AND id = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![tenant, id], read_certificate)
                    .optional()
            })
            .map_err(db_err)?
            .map(into_certificate)
            .transpose()
        })
        .await
    }

    async fn rekey_records(
        &self,
        tenant: &TenantId,
        records: Vec<RekeyedRecord>,
        audit: AuditEntry,
    ) -> Result<u64> {
        let tenant = tenant.as_str().to_owned();
        self.write(move |tx| {
            let mut updated = 0;
            {
                let mut update = tx
                    .prepare_cached(
                        "UPDATE records SET key_bucket = ?3, expires_at_us = ?4, pending_event = ?5, sealed = ?6
                         WHERE tenant_id = ?1 AND id = ?2",
                    )
                    .map_err(db_err)?;
                for r in &records {
                    updated += update
                        .execute(params![
                            tenant,
                            r.id.to_string(),
                            r.key_bucket,
                            r.expires_at.map(us),
                            r.pending_event,
                            r.sealed,
                        ])
                        .map_err(db_err)?;
                }
            }
            append_audit_tx(tx, &tenant, &[audit])?;
            Ok(updated as u64)
        })
        .await
    }

    async fn record_event(
        &self,
        tenant: &TenantId,
        event: &RetentionEvent,
        audit: AuditEntry,
    ) -> Result<Option<RetentionEvent>> {
        let tenant = tenant.as_str().to_owned();
        let event = event.clone();
        self.write(move |tx| {
            // The single writer runs this whole closure alone: no other recording can slip in
            // between the look-up and the insert.
            let first = tx
                .prepare_cached(
                    "SELECT event, reference, at_us, recorded_by FROM retention_events
                     WHERE tenant_id = ?1 AND event = ?2 AND reference = ?3",
                )
                .and_then(|mut s| {
                    s.query_row(params![tenant, event.event, event.reference], read_event)
                        .optional()
                })
                .map_err(db_err)?;
            if let Some(first) = first {
                return into_event(first).map(Some);
            }
            tx.execute(
                "INSERT INTO retention_events (tenant_id, event, reference, at_us, recorded_by)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    tenant,
                    event.event,
                    event.reference,
                    us(event.at),
                    event.recorded_by
                ],
            )
            .map_err(db_err)?;
            append_audit_tx(tx, &tenant, &[audit])?;
            Ok(None)
        })
        .await
    }

    async fn events(
        &self,
        tenant: &TenantId,
        event: &str,
        references: &[String],
    ) -> Result<Vec<RetentionEvent>> {
        let (tenant, event) = (tenant.as_str().to_owned(), event.to_owned());
        let references = json_strings(references);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT event, reference, at_us, recorded_by FROM retention_events
                     WHERE tenant_id = ?1 AND event = ?2 AND reference IN (SELECT value FROM json_each(?3))
                     ORDER BY reference",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant, event, references], read_event)
                .map_err(db_err)?;
            rows.map(|r| r.map_err(db_err).and_then(into_event))
                .collect()
        })
        .await
    }

    async fn pending_records(
        &self,
        tenant: &TenantId,
        event: &str,
        reference: &str,
        limit: u32,
    ) -> Result<Vec<StoredRecord>> {
        let (tenant, event, reference) = (
            tenant.as_str().to_owned(),
            event.to_owned(),
            reference.to_owned(),
        );
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {RECORD_COLUMNS} FROM records
                     WHERE tenant_id = ?1 AND pending_event = ?2 AND event_ref = ?3
                     ORDER BY id LIMIT ?4"
                ))
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant, event, reference, limit], read_record)
                .map_err(db_err)?;
            rows.map(|r| r.map_err(db_err).and_then(RawRecord::into_record))
                .collect()
        })
        .await
    }

    async fn tenant_buckets(&self, tenant: &TenantId) -> Result<Vec<BucketCount>> {
        let tenant = tenant.as_str().to_owned();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT data_type, key_bucket, COUNT(*) FROM records INDEXED BY records_by_bucket
                     WHERE tenant_id = ?1
                     GROUP BY data_type, key_bucket
                     ORDER BY data_type, key_bucket",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(db_err)?;
            rows.map(|r| {
                let (data_type, bucket, records) = r.map_err(db_err)?;
                Ok(BucketCount {
                    data_type: parse_data_type(data_type)?,
                    bucket,
                    records: records as u64,
                })
            })
            .collect()
        })
        .await
    }

    async fn terminate_tenant(
        &self,
        termination: &Termination,
        audit: AuditEntry,
    ) -> Result<Option<Termination>> {
        let t = termination.clone();
        self.write(move |tx| {
            let tenant = t.tenant.as_str();
            if let Some(first) = find_termination(tx, tenant)? {
                return Ok(Some(first));
            }
            tx.execute(
                &format!(
                    "INSERT INTO tenant_terminations ({TERMINATION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ),
                params![
                    tenant,
                    t.requested_by,
                    t.reason,
                    us(t.terminated_at),
                    us(t.purge_at),
                    t.purged_at.map(us),
                    t.certificate_id,
                ],
            )
            .map_err(db_err)?;
            append_audit_tx(tx, tenant, &[audit])?;
            Ok(None)
        })
        .await
    }

    async fn termination(&self, tenant: &TenantId) -> Result<Option<Termination>> {
        let tenant = tenant.as_str().to_owned();
        self.read(move |c| find_termination(c, &tenant)).await
    }

    async fn cancel_termination(
        &self,
        tenant: &TenantId,
        at: Timestamp,
        audit: AuditEntry,
    ) -> Result<TerminationCancel> {
        let tenant = tenant.as_str().to_owned();
        self.write(move |tx| {
            let Some(termination) = find_termination(tx, &tenant)? else {
                return Ok(TerminationCancel::NotTerminated);
            };
            if termination.purged_at.is_some() || termination.purge_at <= at {
                return Ok(TerminationCancel::PurgeStarted(termination));
            }
            tx.execute(
                "DELETE FROM tenant_terminations WHERE tenant_id = ?1",
                params![tenant],
            )
            .map_err(db_err)?;
            append_audit_tx(tx, &tenant, &[audit])?;
            Ok(TerminationCancel::Cancelled(termination))
        })
        .await
    }

    async fn terminations(&self) -> Result<Vec<Termination>> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {TERMINATION_COLUMNS} FROM tenant_terminations ORDER BY terminated_at_us, tenant_id"
                ))
                .map_err(db_err)?;
            let rows = stmt.query_map([], read_termination).map_err(db_err)?;
            rows.map(|r| r.map_err(db_err).and_then(into_termination))
                .collect()
        })
        .await
    }

    async fn finish_termination(
        &self,
        tenant: &TenantId,
        purged_at: Timestamp,
        certificate: CertificateRow,
        audit: AuditEntry,
    ) -> Result<()> {
        let tenant = tenant.as_str().to_owned();
        self.write(move |tx| {
            let certificate_id = store_certificate(tx, &tenant, &certificate)?;
            let n = tx
                .execute(
                    "UPDATE tenant_terminations
                     SET purged_at_us = COALESCE(purged_at_us, ?2),
                         certificate_id = COALESCE(certificate_id, ?3)
                     WHERE tenant_id = ?1",
                    params![tenant, us(purged_at), certificate_id],
                )
                .map_err(db_err)?;
            if n == 0 {
                // Rolls the certificate back with it: nothing certifies a purge never asked for.
                return Err(StoreError::Corrupt(format!(
                    "tenant {tenant} has no termination to finish"
                )));
            }
            append_audit_tx(tx, &tenant, &[audit])?;
            Ok(())
        })
        .await
    }

    async fn schedule_deletion(
        &self,
        deletion: &ScheduledDeletion,
        audit: AuditEntry,
    ) -> Result<()> {
        let d = deletion.clone();
        self.write(move |tx| {
            let tenant = d.tenant.as_str();
            let (kind, target) = target_to_columns(&d.target);
            let (cancelled_by, cancelled_at, done_at, certificate_id) = state_to_columns(&d.state);
            tx.execute(
                &format!(
                    "INSERT INTO scheduled_deletions ({DELETION_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                ),
                params![
                    tenant,
                    d.id,
                    kind,
                    target,
                    d.reason,
                    d.requested_by,
                    us(d.requested_at),
                    us(d.due_at),
                    cancelled_by,
                    cancelled_at.map(us),
                    done_at.map(us),
                    certificate_id,
                ],
            )
            .map_err(db_err)?;
            append_audit_tx(tx, tenant, &[audit])?;
            Ok(())
        })
        .await
    }

    async fn cancel_deletion(
        &self,
        tenant: &TenantId,
        id: &str,
        by: &str,
        at: Timestamp,
        audit: AuditEntry,
    ) -> Result<CancelOutcome> {
        let (tenant, id, by) = (tenant.as_str().to_owned(), id.to_owned(), by.to_owned());
        self.write(move |tx| {
            let Some(deletion) = find_deletion(tx, &tenant, &id)? else {
                return Ok(CancelOutcome::NotFound);
            };
            if deletion.state != DeletionState::Scheduled {
                return Ok(CancelOutcome::NotCancellable(deletion));
            }
            tx.execute(
                "UPDATE scheduled_deletions SET cancelled_by = ?3, cancelled_at_us = ?4
                 WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, id, by, us(at)],
            )
            .map_err(db_err)?;
            append_audit_tx(tx, &tenant, &[audit])?;
            Ok(CancelOutcome::Cancelled(ScheduledDeletion {
                state: DeletionState::Cancelled { by, at },
                ..deletion
            }))
        })
        .await
    }

    async fn scheduled_deletions(&self, tenant: &TenantId) -> Result<Vec<ScheduledDeletion>> {
        let tenant = tenant.as_str().to_owned();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {DELETION_COLUMNS} FROM scheduled_deletions
                     WHERE tenant_id = ?1 ORDER BY requested_at_us, id"
                ))
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant], read_deletion)
                .map_err(db_err)?;
            rows.map(|r| r.map_err(db_err).and_then(RawDeletion::into_deletion))
                .collect()
        })
        .await
    }

    async fn due_deletions(&self, at: Timestamp) -> Result<Vec<ScheduledDeletion>> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {DELETION_COLUMNS} FROM scheduled_deletions
                     WHERE cancelled_at_us IS NULL AND done_at_us IS NULL AND due_at_us <= ?1
                     ORDER BY due_at_us, tenant_id, id"
                ))
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![us(at)], read_deletion)
                .map_err(db_err)?;
            rows.map(|r| r.map_err(db_err).and_then(RawDeletion::into_deletion))
                .collect()
        })
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
        let tenant = tenant.as_str().to_owned();
        let deletion = deletion.map(str::to_owned);
        let records: Vec<String> = records.iter().map(RecordId::to_string).collect();
        self.write(move |tx| {
            let mut deleted = 0;
            for id in &records {
                deleted += u64::from(delete_record_tx(tx, &tenant, id)?);
            }
            let certificate_id = store_certificate(tx, &tenant, &certificate)?;
            if let Some(deletion) = &deletion {
                // A deletion already done keeps its first completion.
                tx.execute(
                    "UPDATE scheduled_deletions SET done_at_us = ?3, certificate_id = ?4
                     WHERE tenant_id = ?1 AND id = ?2 AND done_at_us IS NULL",
                    params![tenant, deletion, us(certificate.issued_at), certificate_id],
                )
                .map_err(db_err)?;
            }
            append_audit_tx(tx, &tenant, &[audit])?;
            Ok(deleted)
        })
        .await
    }

    async fn applied_retentions(&self, tenant: &TenantId) -> Result<Vec<AppliedRetention>> {
        let tenant = tenant.as_str().to_owned();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT data_type, rule, since_us, applied FROM applied_retentions
                     WHERE tenant_id = ?1 ORDER BY data_type",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, bool>(3)?,
                    ))
                })
                .map_err(db_err)?;
            rows.map(|r| {
                let (data_type, rule, since, applied) = r.map_err(db_err)?;
                Ok(AppliedRetention {
                    data_type: parse_data_type(data_type)?,
                    rule,
                    since: from_us(since)?,
                    applied,
                })
            })
            .collect()
        })
        .await
    }

    async fn put_applied_retention(
        &self,
        tenant: &TenantId,
        applied: &AppliedRetention,
        audit: Option<AuditEntry>,
    ) -> Result<()> {
        let tenant = tenant.as_str().to_owned();
        let applied = applied.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO applied_retentions (tenant_id, data_type, rule, since_us, applied)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant_id, data_type)
                 DO UPDATE SET rule = excluded.rule, since_us = excluded.since_us, applied = excluded.applied",
                params![
                    tenant,
                    applied.data_type.as_str(),
                    applied.rule,
                    us(applied.since),
                    applied.applied
                ],
            )
            .map_err(db_err)?;
            if let Some(audit) = audit {
                append_audit_tx(tx, &tenant, &[audit])?;
            }
            Ok(())
        })
        .await
    }

    async fn records_of_type(
        &self,
        tenant: &TenantId,
        data_type: &DataTypeName,
        after: Option<RecordId>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>> {
        let (tenant, data_type) = (tenant.as_str().to_owned(), data_type.as_str().to_owned());
        let after = after.map(|id| id.to_string()).unwrap_or_default();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {RECORD_COLUMNS} FROM records
                     WHERE tenant_id = ?1 AND data_type = ?2 AND id > ?3
                     ORDER BY id LIMIT ?4"
                ))
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant, data_type, after, limit], read_record)
                .map_err(db_err)?;
            rows.map(|r| r.map_err(db_err).and_then(RawRecord::into_record))
                .collect()
        })
        .await
    }

    async fn lock_destruction(&self) -> Result<DestructionLock> {
        // A single process owns the database file and serialises its destructions (and hold
        // placements) in memory; there is no other node to exclude.
        Ok(DestructionLock::in_process())
    }
}
