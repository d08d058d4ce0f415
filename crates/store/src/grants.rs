//! Just-in-time grants as stored: each grant whole (its JSON), with the columns it is found by.
//! A transition replaces the stored grant only when it still holds the version the transition
//! started from, so two approvers acting at once cannot both count, and a revocation cannot be
//! lost to a concurrent approval. Every write appends its audit entry to the grant's tenant log
//! in the same transaction.

use async_trait::async_trait;
use custodian_core::grant::Grant;
use custodian_core::ids::TenantId;
use jiff::Timestamp;

use crate::{AuditEntry, Result, StoreError};

#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Stores a new grant (version 0) and appends `audit` to its tenant's log.
    async fn insert_grant(&self, grant: &Grant, audit: AuditEntry) -> Result<()>;

    /// Stores `grant` in place of the same grant at `grant.version - 1` and appends `audit`,
    /// in one transaction. `false` (nothing written) when the stored grant has moved on.
    async fn update_grant(&self, grant: &Grant, audit: AuditEntry) -> Result<bool>;

    /// A grant by id; with `tenant`, only when it is that tenant's.
    async fn grant(&self, tenant: Option<&TenantId>, id: &str) -> Result<Option<Grant>>;

    /// Grants newest first, at most `limit`, ids below `before` when given; with `tenant`, only
    /// that tenant's.
    async fn grants(
        &self,
        tenant: Option<&TenantId>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Grant>>;

    /// The grants of `grantee` on `tenant` that are active or could be at `now`: approved,
    /// not expired, not closed. The caller decides with [`Grant::status`].
    async fn live_grants(
        &self,
        tenant: &TenantId,
        grantee: &str,
        now: Timestamp,
    ) -> Result<Vec<Grant>>;
}

pub(crate) fn grant_json(grant: &Grant) -> Result<String> {
    serde_json::to_string(grant).map_err(|e| StoreError::Corrupt(format!("grant: {e}")))
}

pub(crate) fn grant_from_json(json: &str) -> Result<Grant> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("stored grant: {e}")))
}

/// Whether a grant is closed (denied or revoked): closed grants are never live again.
pub(crate) fn closed(grant: &Grant) -> bool {
    grant.denied.is_some() || grant.revoked.is_some()
}
