//! The SQLite side of just-in-time grants.

use async_trait::async_trait;
use custodian_core::grant::Grant;
use custodian_core::ids::TenantId;
use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, append_audit_tx, db_err, us};
use crate::grants::{GrantStore, closed, grant_from_json, grant_json};
use crate::{AuditEntry, Result};

fn bodies(rows: rusqlite::Result<Vec<String>>) -> Result<Vec<Grant>> {
    rows.map_err(db_err)?
        .iter()
        .map(|b| grant_from_json(b))
        .collect()
}

#[async_trait]
impl GrantStore for SqliteStore {
    async fn insert_grant(&self, grant: &Grant, audit: AuditEntry) -> Result<()> {
        let body = grant_json(grant)?;
        let g = grant.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO grants (id, tenant_id, grantee, expires_at_us, closed, version, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    g.id,
                    g.tenant.as_str(),
                    g.grantee,
                    g.expires_at.map(us),
                    closed(&g),
                    g.version,
                    body
                ],
            )
            .map_err(db_err)?;
            append_audit_tx(tx, g.tenant.as_str(), &[audit])?;
            Ok(())
        })
        .await
    }

    async fn update_grant(&self, grant: &Grant, audit: AuditEntry) -> Result<bool> {
        let body = grant_json(grant)?;
        let g = grant.clone();
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE grants SET expires_at_us = ?3, closed = ?4, version = ?5, body = ?6
                     WHERE id = ?1 AND tenant_id = ?2 AND version = ?5 - 1",
                    params![
                        g.id,
                        g.tenant.as_str(),
                        g.expires_at.map(us),
                        closed(&g),
                        g.version,
                        body
                    ],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Ok(false);
            }
            append_audit_tx(tx, g.tenant.as_str(), &[audit])?;
            Ok(true)
        })
        .await
    }

    async fn grant(&self, tenant: Option<&TenantId>, id: &str) -> Result<Option<Grant>> {
        let (tenant, id) = (tenant.map(|t| t.as_str().to_owned()), id.to_owned());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT body FROM grants WHERE id = ?1 AND (?2 IS NULL OR tenant_id = ?2)",
            )
            .and_then(|mut s| {
                s.query_row(params![id, tenant], |r| r.get::<_, String>(0))
                    .optional()
            })
            .map_err(db_err)?
            .map(|b| grant_from_json(&b))
            .transpose()
        })
        .await
    }

    async fn grants(
        &self,
        tenant: Option<&TenantId>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Grant>> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        let before = before.map(str::to_owned);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT body FROM grants
                     WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR id < ?2)
                     ORDER BY id DESC LIMIT ?3",
                )
                .map_err(db_err)?;
            bodies(
                stmt.query_map(params![tenant, before, limit], |r| r.get(0))
                    .and_then(Iterator::collect),
            )
        })
        .await
    }

    async fn live_grants(
        &self,
        tenant: &TenantId,
        grantee: &str,
        now: Timestamp,
    ) -> Result<Vec<Grant>> {
        let (tenant, grantee) = (tenant.as_str().to_owned(), grantee.to_owned());
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT body FROM grants
                     WHERE tenant_id = ?1 AND grantee = ?2 AND expires_at_us > ?3 AND NOT closed",
                )
                .map_err(db_err)?;
            bodies(
                stmt.query_map(params![tenant, grantee, us(now)], |r| r.get(0))
                    .and_then(Iterator::collect),
            )
        })
        .await
    }
}
