//! The PostgreSQL side of just-in-time grants.

use async_trait::async_trait;
use custodian_core::grant::Grant;
use custodian_core::ids::TenantId;
use jiff::Timestamp;
use tokio_postgres::Row;

use super::{PostgresStore, append_audit_tx, db_err};
use crate::grants::{GrantStore, closed, grant_from_json, grant_json};
use crate::{AuditEntry, Result};

fn body(row: &Row) -> Result<Grant> {
    grant_from_json(row.get(0))
}

#[async_trait]
impl GrantStore for PostgresStore {
    async fn insert_grant(&self, grant: &Grant, audit: AuditEntry) -> Result<()> {
        let json = grant_json(grant)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        tx.execute(
            "INSERT INTO grants (id, tenant_id, grantee, expires_at, closed, version, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &grant.id,
                &grant.tenant.as_str(),
                &grant.grantee,
                &grant.expires_at,
                &closed(grant),
                &i64::from(grant.version),
                &json,
            ],
        )
        .await
        .map_err(db_err)?;
        append_audit_tx(&tx, grant.tenant.as_str(), &[audit]).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn update_grant(&self, grant: &Grant, audit: AuditEntry) -> Result<bool> {
        let json = grant_json(grant)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        // A concurrent transition holds the row until it commits; this one then finds the
        // version moved on and writes nothing.
        let n = tx
            .execute(
                "UPDATE grants SET expires_at = $3, closed = $4, version = $5, body = $6
                 WHERE id = $1 AND tenant_id = $2 AND version = $5::BIGINT - 1",
                &[
                    &grant.id,
                    &grant.tenant.as_str(),
                    &grant.expires_at,
                    &closed(grant),
                    &i64::from(grant.version),
                    &json,
                ],
            )
            .await
            .map_err(db_err)?;
        if n == 0 {
            return Ok(false);
        }
        append_audit_tx(&tx, grant.tenant.as_str(), &[audit]).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn grant(&self, tenant: Option<&TenantId>, id: &str) -> Result<Option<Grant>> {
        let tenant = tenant.map(TenantId::as_str);
        self.client()
            .await?
            .query_opt(
                "SELECT body FROM grants WHERE id = $1 AND ($2::TEXT IS NULL OR tenant_id = $2)",
                &[&id, &tenant],
            )
            .await
            .map_err(db_err)?
            .as_ref()
            .map(body)
            .transpose()
    }

    async fn grants(
        &self,
        tenant: Option<&TenantId>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Grant>> {
        let tenant = tenant.map(TenantId::as_str);
        self.select(
            "SELECT body FROM grants
             WHERE ($1::TEXT IS NULL OR tenant_id = $1) AND ($2::TEXT IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
            &[&tenant, &before, &i64::from(limit)],
            body,
        )
        .await
    }

    async fn live_grants(
        &self,
        tenant: &TenantId,
        grantee: &str,
        now: Timestamp,
    ) -> Result<Vec<Grant>> {
        self.select(
            "SELECT body FROM grants
             WHERE tenant_id = $1 AND grantee = $2 AND expires_at > $3 AND NOT closed",
            &[&tenant.as_str(), &grantee, &now],
            body,
        )
        .await
    }
}
