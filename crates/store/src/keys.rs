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

/// One line of the shred log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShredEntry {
    pub tenant: TenantId,
    /// A data key id, `kek/<version>` (an old KEK after rotation) or [`TENANT_SHRED`].
    pub id: String,
    pub at: Timestamp,
}

/// The whole key store, for backup. Every key in it is wrapped (by the root key or a KEK).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeySnapshot {
    pub index_keys: Vec<(TenantId, Vec<u8>)>,
    pub keks: Vec<(TenantId, WrappedKek)>,
    pub data_keys: Vec<(TenantId, WrappedDataKey)>,
    pub shred_log: Vec<ShredEntry>,
    pub meta: Vec<(String, Vec<u8>)>,
}

/// What a restore put back and what the shred-log replay destroyed again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub data_keys: u64,
    pub keks: u64,
    /// Keys in the backup destroyed again because the shred log says they were shredded.
    pub reshredded: u64,
}

/// Which keys a merged shred log destroys in a restored snapshot: every data key named, and
/// every key of a tenant shredded whole. Old KEK versions (`kek/N`, retired by rotation) are
/// not destroyed again: a backup from before the rotation still has data keys wrapped by
/// them, and those keys are as live as their rotated copies were.
pub fn replay_shreds(snapshot: &mut KeySnapshot, log: &[ShredEntry]) -> u64 {
    use std::collections::HashSet;
    let tenants: HashSet<&TenantId> = log
        .iter()
        .filter(|e| e.id == TENANT_SHRED)
        .map(|e| &e.tenant)
        .collect();
    let keys: HashSet<(&TenantId, &str)> = log
        .iter()
        .filter(|e| e.id != TENANT_SHRED && !e.id.starts_with("kek/"))
        .map(|e| (&e.tenant, e.id.as_str()))
        .collect();
    let before = snapshot.data_keys.len() + snapshot.keks.len() + snapshot.index_keys.len();
    snapshot
        .data_keys
        .retain(|(t, k)| !tenants.contains(t) && !keys.contains(&(t, k.id.as_str())));
    snapshot.keks.retain(|(t, _)| !tenants.contains(t));
    snapshot.index_keys.retain(|(t, _)| !tenants.contains(t));
    let after = snapshot.data_keys.len() + snapshot.keks.len() + snapshot.index_keys.len();
    (before - after) as u64
}

/// What a backend's `restore` writes: the snapshot with the current shred log merged in and
/// replayed, and the report of it.
pub fn prepare_restore(
    mut snapshot: KeySnapshot,
    current_log: &[ShredEntry],
) -> (KeySnapshot, RestoreReport) {
    snapshot.shred_log = merge_shred_logs(&snapshot.shred_log, current_log);
    let log = std::mem::take(&mut snapshot.shred_log);
    let reshredded = replay_shreds(&mut snapshot, &log);
    snapshot.shred_log = log;
    let report = RestoreReport {
        data_keys: snapshot.data_keys.len() as u64,
        keks: snapshot.keks.len() as u64,
        reshredded,
    };
    (snapshot, report)
}

/// The union of two shred logs, each line once, in time order.
pub fn merge_shred_logs(a: &[ShredEntry], b: &[ShredEntry]) -> Vec<ShredEntry> {
    let mut all: Vec<ShredEntry> = a.iter().chain(b).cloned().collect();
    all.sort_by(|x, y| {
        (x.at, x.tenant.as_str(), x.id.as_str()).cmp(&(y.at, y.tenant.as_str(), y.id.as_str()))
    });
    all.dedup();
    all
}

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
    /// Stores data keys that do not exist yet and returns the ids that did exist: a concurrent
    /// writer's key wins, and the caller loads those instead of its own.
    async fn insert_data_keys(
        &self,
        tenant: &TenantId,
        keys: Vec<WrappedDataKey>,
    ) -> Result<Vec<String>>;
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

    /// A deployment-wide value (the root check, Shamir share fingerprints, wrapped secrets).
    async fn meta(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Stores a value unless the name has one; false if another was there first.
    async fn insert_meta(&self, name: &str, value: Vec<u8>) -> Result<bool>;

    /// Everything in the key store, read in one transaction.
    async fn snapshot(&self) -> Result<KeySnapshot>;
    /// Replaces the whole key store with `snapshot` in one transaction, after merging the
    /// current shred log into the snapshot's and replaying it, so a key shredded after the
    /// backup was taken stays destroyed.
    async fn restore(&self, snapshot: KeySnapshot) -> Result<RestoreReport>;
}
