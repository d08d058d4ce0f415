//! The SQLite side of the retention engine: holds, due buckets, bucket purges and deletion
//! certificates.

use async_trait::async_trait;
use custodian_core::hold::{Hold, Release};
use custodian_core::ids::{DataTypeName, TenantId};
use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, append_audit_tx, db_err, from_us, opt_from_us, us};
use crate::retention::{
    BucketRecord, BucketSummary, CertificateRow, ReleaseOutcome, RetentionStore,
    scope_from_columns, scope_to_columns,
};
use crate::{Result, parse_data_type, parse_record_id, parse_tenant, unpack_subjects};

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

#[async_trait]
impl RetentionStore for SqliteStore {
    async fn insert_hold(&self, tenant: &TenantId, hold: &Hold, audit: Vec<u8>) -> Result<()> {
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
        audit: Vec<u8>,
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
                    "SELECT tenant_id, data_type, key_bucket, COUNT(*), MIN(expires_at_us), MAX(expires_at_us)
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
                    ))
                })
                .map_err(db_err)?;
            rows.map(|r| {
                let (tenant, data_type, bucket, records, oldest, newest) = r.map_err(db_err)?;
                Ok(BucketSummary {
                    tenant: parse_tenant(tenant)?,
                    data_type: parse_data_type(data_type)?,
                    bucket,
                    records: records as u64,
                    oldest_expiry: from_us(oldest)?,
                    newest_expiry: from_us(newest)?,
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
                    "SELECT id, event_time_us, key_subjects FROM records
                     WHERE tenant_id = ?1 AND data_type = ?2 AND key_bucket = ?3 ORDER BY id",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant, data_type, bucket], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                    ))
                })
                .map_err(db_err)?;
            rows.map(|r| {
                let (id, event_time, subjects) = r.map_err(db_err)?;
                Ok(BucketRecord {
                    id: parse_record_id(&id)?,
                    event_time: from_us(event_time)?,
                    subjects: unpack_subjects(&subjects)?,
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
        audit: Vec<u8>,
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
                .query_map(params![tenant], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })
                .map_err(db_err)?;
            rows.map(|r| {
                let (id, scope, issued_at, note) = r.map_err(db_err)?;
                Ok(CertificateRow {
                    id,
                    scope,
                    issued_at: from_us(issued_at)?,
                    note,
                })
            })
            .collect()
        })
        .await
    }
}
