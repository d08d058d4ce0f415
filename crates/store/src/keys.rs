//! The key store: wrapped tenant keys, kept apart from the data (its own SQLite file, its own
//! PostgreSQL schema) so a data backup holds ciphertext without keys, and destroying a key here
//! makes every copy of its records unreadable, old backups included.
//!
//! It holds only wrapped keys: KEKs and index keys wrapped by the root key, bucket DEKs and
//! subject keys wrapped by a KEK. Destroyed keys leave a line in the shred log (which key,
//! when), so a read can tell "destroyed" from "missing", and a restored old key-store backup can
//! be brought back in line by replaying the log.

use async_trait::async_trait;
use custodian_core::ids::TenantId;
use jiff::Timestamp;

use crate::Result;

/// A version of a tenant's KEK, wrapped by the root key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKek {
    pub version: u32,
    pub wrapped: Vec<u8>,
    pub created_at: Timestamp,
}

/// A bucket DEK or subject key (by its text id), wrapped by KEK version `kek_version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedDataKey {
    pub id: String,
    pub kek_version: u32,
    pub wrapped: Vec<u8>,
}

/// What a shred destroys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShredScope {
    /// These data keys (bucket DEKs or subject keys).
    Keys(Vec<String>),
    /// Every key of the tenant: KEKs, index key, data keys.
    Tenant,
}

/// The shred log's id for a whole-tenant shred.
pub const TENANT_SHRED: &str = "*";

/// How many data keys each KEK version wraps, for status and rotation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyCounts {
    pub by_kek_version: Vec<(u32, u64)>,
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    fn backend(&self) -> &'static str;

    /// The tenant's subject-index key, wrapped by the root key.
    async fn index_key(&self, tenant: &TenantId) -> Result<Option<Vec<u8>>>;
    /// Stores the index key unless the tenant has one; false if another was there first.
    async fn insert_index_key(&self, tenant: &TenantId, wrapped: Vec<u8>) -> Result<bool>;

    /// Every live KEK version of the tenant, oldest first.
    async fn keks(&self, tenant: &TenantId) -> Result<Vec<WrappedKek>>;
    /// Stores a KEK version unless it exists; false if another was there first.
    async fn insert_kek(&self, tenant: &TenantId, kek: WrappedKek) -> Result<bool>;
    /// Destroys KEK versions older than `version` once no data key is wrapped by them; returns
    /// the versions destroyed. Refuses (destroys nothing) while any data key still needs one.
    async fn destroy_keks_before(
        &self,
        tenant: &TenantId,
        version: u32,
        at: Timestamp,
    ) -> Result<Vec<u32>>;

    /// The wrapped data keys among `ids` that exist.
    async fn data_keys(&self, tenant: &TenantId, ids: &[String]) -> Result<Vec<WrappedDataKey>>;
    /// Stores data keys that do not exist yet (a concurrent writer's key wins; reload after).
    async fn insert_data_keys(&self, tenant: &TenantId, keys: Vec<WrappedDataKey>) -> Result<()>;
    /// Up to `limit` data keys wrapped by a KEK version below `version`, by id after `after`.
    async fn data_keys_below(
        &self,
        tenant: &TenantId,
        version: u32,
        after: &str,
        limit: u32,
    ) -> Result<Vec<WrappedDataKey>>;
    /// Replaces the wrapping of existing data keys (rotation). A key destroyed meanwhile
    /// stays destroyed.
    async fn rewrap_data_keys(&self, tenant: &TenantId, keys: Vec<WrappedDataKey>) -> Result<()>;
    async fn count_data_keys(&self, tenant: &TenantId) -> Result<KeyCounts>;

    /// Destroys keys and logs it; returns the ids actually destroyed now (a repeat destroys
    /// nothing more and returns an empty list).
    async fn shred(
        &self,
        tenant: &TenantId,
        scope: ShredScope,
        at: Timestamp,
    ) -> Result<Vec<String>>;
    /// Which of `ids` were shredded (a whole-tenant shred counts for every id).
    async fn shredded(&self, tenant: &TenantId, ids: &[String]) -> Result<Vec<String>>;
}
