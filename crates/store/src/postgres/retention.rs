//! The PostgreSQL side of the retention engine: holds, due buckets, bucket purges and deletion
//! certificates.

use async_trait::async_trait;
use custodian_core::hold::{Hold, Release};
use custodian_core::ids::{DataTypeName, TenantId};
use jiff::Timestamp;
use tokio_postgres::Row;

use super::{PostgresStore, append_audit_tx, db_err};
use crate::retention::{
    BucketRecord, BucketSummary, CertificateRow, ReleaseOutcome, RetentionStore,
    scope_from_columns, scope_to_columns,
};
use crate::{Result, parse_data_type, parse_record_id, parse_tenant, unpack_subjects};

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

#[async_trait]
impl RetentionStore for PostgresStore {
    async fn insert_hold(&self, tenant: &TenantId, hold: &Hold, audit: Vec<u8>) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
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
        audit: Vec<u8>,
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
        self.client()
            .await?
            .query(
                &format!(
                    "SELECT {HOLD_COLUMNS} FROM holds WHERE tenant_id = $1 ORDER BY placed_at, id"
                ),
                &[&tenant.as_str()],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(hold_from_row)
            .collect()
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
                "SELECT tenant_id, data_type, key_bucket, COUNT(*), MIN(expires_at), MAX(expires_at)
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
                "SELECT id, event_time, key_subjects FROM records
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
        audit: Vec<u8>,
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
            .map(|r| CertificateRow {
                id: r.get(0),
                scope: r.get(1),
                issued_at: r.get(2),
                note: r.get(3),
            })
            .collect())
    }
}
